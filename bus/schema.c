/*  schema.c - the body schema of every message type on the bus.
 *
 *  One constant table per type, then fks_schema_check, which holds a msgpack body against a
 *  table. The tables say what each consumer may rely on: a field marked required is present and
 *  not nil, and every present field has its kind and bounds, so workers read bodies without
 *  re-checking types. Meaning and units of every field are in schemas/envelope.md, which
 *  tests/bus/test_schema.c compares with these tables row by row; change both together.
 *
 *  Nothing here allocates; checking a body costs one pass over the schema's fields, each
 *  looked up with a pass over the body's keys (bodies have tens of keys, frames are bounded).
 */
#include "bus/schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define S_REQ true
#define S_OPT false

#define S_STR(name, req, max, values) { name, FKS_FIELD_STR, req, max, values }
#define S_INT(name, req)   { name, FKS_FIELD_INT,   req, 0, NULL }
#define S_F64(name, req)   { name, FKS_FIELD_F64,   req, 0, NULL }
#define S_BOOL(name, req)  { name, FKS_FIELD_BOOL,  req, 0, NULL }
#define S_ID(name, req)    { name, FKS_FIELD_ID,    req, 0, NULL }
#define S_MAP(name, req)   { name, FKS_FIELD_MAP,   req, 0, NULL }

#define S_COUNT(a) (sizeof (a) / sizeof ((a)[0]))

//  Shared bounds, so the same field has the same limit in every type.
#define S_SYMBOL_MAX    64
#define S_STRATEGY_MAX  128
#define S_INTERVAL_MAX  16
#define S_REASON_MAX    512
#define S_DETAIL_MAX    1024
#define S_ACTOR_MAX     128
#define S_COID_MAX      64
#define S_BROKER_MAX    32

static const char *const s_sources[] = { "tradingview", "script", "api", NULL };
static const char *const s_actions[] = {
    "buy", "sell", "long", "short", "close", "flat", "exit", "cancel", "add", NULL };
static const char *const s_quantity_types[] = {
    "fixed_quantity", "dollar_amount", "risk_dollar_amount", "risk_percent",
    "percent_of_equity", "percent_of_position", NULL };
static const char *const s_order_types[] = { "market", "limit", NULL };
static const char *const s_market_positions[] = { "long", "short", "flat", NULL };
static const char *const s_sentiments[] = { "bullish", "long", "bearish", "short", "flat", NULL };
static const char *const s_sides[] = { "buy", "sell", NULL };
static const char *const s_filter_stages[] = { "signal", "ai", NULL };
static const char *const s_quality_kinds[] = { "gap", "stale", "outlier", "bad_value", NULL };

static const fks_schema_field_t s_webhook_received[] = {
    S_ID  ("inbox_id", S_REQ),
    S_STR ("source", S_REQ, 16, s_sources),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("action", S_REQ, 16, s_actions),
    S_F64 ("quantity", S_OPT),
    S_STR ("quantity_type", S_OPT, 32, s_quantity_types),
    S_F64 ("price", S_OPT),
    S_STR ("order_type", S_OPT, 16, s_order_types),
    S_F64 ("limit_price", S_OPT),
    S_F64 ("signal_price", S_OPT),
    S_MAP ("stop_loss", S_OPT),
    S_MAP ("take_profit", S_OPT),
    S_STR ("strategy", S_OPT, S_STRATEGY_MAX, NULL),
    S_STR ("interval", S_OPT, S_INTERVAL_MAX, NULL),
    S_STR ("exchange", S_OPT, 64, NULL),
    S_INT ("alert_time", S_OPT),
    S_F64 ("position_size", S_OPT),
    S_STR ("market_position", S_OPT, 16, s_market_positions),
    S_STR ("sentiment", S_OPT, 16, s_sentiments),
    S_F64 ("confidence", S_OPT),
    S_STR ("client_id", S_OPT, 128, NULL),
    S_STR ("comment", S_OPT, S_DETAIL_MAX, NULL),
};

//  signal.scored repeats signal.created and adds the score; one list keeps them in step.
#define S_SIGNAL_FIELDS \
    S_ID  ("signal_id", S_REQ), \
    S_ID  ("inbox_id", S_OPT), \
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL), \
    S_STR ("side", S_REQ, 8, s_sides), \
    S_F64 ("qty", S_REQ), \
    S_STR ("order_type", S_REQ, 16, s_order_types), \
    S_F64 ("limit_price", S_OPT), \
    S_F64 ("price", S_OPT), \
    S_F64 ("stop_loss", S_OPT), \
    S_F64 ("take_profit", S_OPT), \
    S_STR ("strategy", S_OPT, S_STRATEGY_MAX, NULL), \
    S_F64 ("confidence", S_OPT), \
    S_BOOL ("reduce_only", S_OPT), \
    S_BOOL ("close_position", S_OPT), \
    S_F64 ("open_qty", S_OPT), \
    S_F64 ("target", S_OPT), \
    S_F64 ("position_share", S_OPT), \
    S_INT ("qty_decimals", S_OPT), \
    S_STR ("reason", S_OPT, S_REASON_MAX, NULL)

static const fks_schema_field_t s_signal_created[] = {
    S_SIGNAL_FIELDS,
};

static const fks_schema_field_t s_signal_scored[] = {
    S_SIGNAL_FIELDS,
    S_F64 ("score", S_REQ),
    S_F64 ("threshold", S_REQ),
    S_STR ("model_version", S_OPT, 64, NULL),
};

static const fks_schema_field_t s_signal_filtered[] = {
    S_ID  ("signal_id", S_OPT),
    S_ID  ("inbox_id", S_OPT),
    S_STR ("symbol", S_OPT, S_SYMBOL_MAX, NULL),
    S_STR ("stage", S_REQ, 8, s_filter_stages),
    S_STR ("reason", S_REQ, S_REASON_MAX, NULL),
    S_F64 ("score", S_OPT),
    S_F64 ("threshold", S_OPT),
};

static const fks_schema_field_t s_risk_rejected[] = {
    S_ID  ("signal_id", S_OPT),
    S_ID  ("order_id", S_OPT),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("side", S_OPT, 8, s_sides),
    S_F64 ("qty", S_OPT),
    S_STR ("rule", S_REQ, 64, NULL),
    S_F64 ("limit", S_OPT),
    S_F64 ("value", S_OPT),
    S_STR ("message", S_REQ, S_REASON_MAX, NULL),
};

static const fks_schema_field_t s_order_requested[] = {
    S_ID  ("order_id", S_REQ),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("side", S_REQ, 8, s_sides),
    S_STR ("type", S_REQ, 16, s_order_types),
    S_F64 ("qty", S_REQ),
    S_F64 ("limit_price", S_OPT),
    S_STR ("requested_by", S_OPT, S_ACTOR_MAX, NULL),
};

static const fks_schema_field_t s_order_cancel_requested[] = {
    S_ID  ("order_id", S_REQ),
    S_STR ("requested_by", S_OPT, S_ACTOR_MAX, NULL),
};

static const fks_schema_field_t s_order_submitted[] = {
    S_ID  ("order_id", S_REQ),
    S_STR ("client_order_id", S_REQ, S_COID_MAX, NULL),
    S_ID  ("signal_id", S_OPT),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("side", S_REQ, 8, s_sides),
    S_STR ("type", S_REQ, 16, s_order_types),
    S_F64 ("qty", S_REQ),
    S_F64 ("limit_price", S_OPT),
    S_STR ("broker", S_REQ, S_BROKER_MAX, NULL),
    S_STR ("exchange_order_id", S_OPT, 128, NULL),
};

//  order.filled and order.partially_filled share one body.
static const fks_schema_field_t s_order_fill[] = {
    S_ID  ("order_id", S_REQ),
    S_STR ("client_order_id", S_REQ, S_COID_MAX, NULL),
    S_STR ("fill_id", S_REQ, 128, NULL),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("side", S_REQ, 8, s_sides),
    S_F64 ("qty", S_REQ),
    S_F64 ("price", S_REQ),
    S_F64 ("fee", S_REQ),
    S_STR ("fee_asset", S_OPT, 16, NULL),
    S_F64 ("filled_qty", S_REQ),
    S_F64 ("avg_fill_price", S_REQ),
    S_STR ("broker", S_OPT, S_BROKER_MAX, NULL),
};

//  order.rejected and order.cancelled share one body.
static const fks_schema_field_t s_order_end[] = {
    S_ID  ("order_id", S_REQ),
    S_STR ("client_order_id", S_REQ, S_COID_MAX, NULL),
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("reason", S_REQ, S_REASON_MAX, NULL),
    S_F64 ("filled_qty", S_OPT),
};

static const fks_schema_field_t s_position_updated[] = {
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_F64 ("qty", S_REQ),
    S_F64 ("avg_price", S_REQ),
    S_F64 ("realized_pnl", S_REQ),
    S_F64 ("unrealized_pnl", S_REQ),
    S_F64 ("last_price", S_OPT),
    S_ID  ("order_id", S_OPT),
};

static const fks_schema_field_t s_market_bar[] = {
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("interval", S_REQ, S_INTERVAL_MAX, NULL),
    S_INT ("open_time", S_REQ),
    S_F64 ("open", S_REQ),
    S_F64 ("high", S_REQ),
    S_F64 ("low", S_REQ),
    S_F64 ("close", S_REQ),
    S_F64 ("volume", S_REQ),
    S_STR ("source", S_REQ, 32, NULL),
    S_BOOL ("closed", S_OPT),
};

static const fks_schema_field_t s_data_quality[] = {
    S_STR ("symbol", S_REQ, S_SYMBOL_MAX, NULL),
    S_STR ("interval", S_OPT, S_INTERVAL_MAX, NULL),
    S_STR ("kind", S_REQ, 16, s_quality_kinds),
    S_F64 ("value", S_OPT),
    S_F64 ("threshold", S_OPT),
    S_STR ("detail", S_REQ, S_DETAIL_MAX, NULL),
};

//  breaker.opened and breaker.closed share one body.
static const fks_schema_field_t s_breaker[] = {
    S_STR ("scope", S_REQ, 64, NULL),
    S_STR ("reason", S_REQ, S_REASON_MAX, NULL),
    S_INT ("failures", S_OPT),
    S_INT ("window_s", S_OPT),
};

static const fks_schema_field_t s_security_event[] = {
    S_STR ("kind", S_REQ, 64, NULL),
    S_STR ("source_addr", S_REQ, 64, NULL),
    S_STR ("detail", S_OPT, S_DETAIL_MAX, NULL),
};

static const fks_schema_field_t s_dead_letter[] = {
    S_STR ("grp", S_REQ, 32, NULL),
    S_ID  ("msg_id", S_REQ),
    S_STR ("msg_type", S_REQ, 63, NULL),
    S_INT ("attempts", S_REQ),
    S_STR ("reason", S_REQ, S_REASON_MAX, NULL),
};

#define S_TYPE(name, fields) { name, fields, S_COUNT (fields) }

static const fks_schema_t s_schemas[] = {
    S_TYPE ("webhook.received", s_webhook_received),
    S_TYPE ("signal.created", s_signal_created),
    S_TYPE ("signal.scored", s_signal_scored),
    S_TYPE ("signal.filtered", s_signal_filtered),
    S_TYPE ("risk.rejected", s_risk_rejected),
    S_TYPE ("order.requested", s_order_requested),
    S_TYPE ("order.cancel_requested", s_order_cancel_requested),
    S_TYPE ("order.submitted", s_order_submitted),
    S_TYPE ("order.filled", s_order_fill),
    S_TYPE ("order.partially_filled", s_order_fill),
    S_TYPE ("order.rejected", s_order_end),
    S_TYPE ("order.cancelled", s_order_end),
    S_TYPE ("position.updated", s_position_updated),
    S_TYPE ("market.bar", s_market_bar),
    S_TYPE ("data.quality", s_data_quality),
    S_TYPE ("breaker.opened", s_breaker),
    S_TYPE ("breaker.closed", s_breaker),
    S_TYPE ("security.event", s_security_event),
    S_TYPE ("dead.letter", s_dead_letter),
};

const fks_schema_t *
fks_schema_find (const char *type)
{
    if (!type)
        return NULL;
    //  The broker looks up the type of every frame it routes: the first byte rules out most
    //  of the table before any strcmp.
    for (size_t i = 0; i < S_COUNT (s_schemas); i++)
        if (s_schemas[i].type[0] == type[0] && strcmp (s_schemas[i].type, type) == 0)
            return &s_schemas[i];
    return NULL;
}

size_t
fks_schema_count (void)
{
    return S_COUNT (s_schemas);
}

const fks_schema_t *
fks_schema_at (size_t index)
{
    return index < S_COUNT (s_schemas) ? &s_schemas[index] : NULL;
}

const fks_schema_field_t *
fks_schema_field (const fks_schema_t *schema, const char *name)
{
    if (!schema || !name)
        return NULL;
    for (size_t i = 0; i < schema->nfields; i++)
        if (strcmp (schema->fields[i].name, name) == 0)
            return &schema->fields[i];
    return NULL;
}

const char *
fks_field_kind_name (fks_field_kind_t kind)
{
    switch (kind) {
        case FKS_FIELD_STR:   return "str";
        case FKS_FIELD_INT:   return "int";
        case FKS_FIELD_F64:   return "f64";
        case FKS_FIELD_BOOL:  return "bool";
        case FKS_FIELD_ID:    return "id";
        case FKS_FIELD_MAP:   return "map";
        case FKS_FIELD_ARRAY: return "array";
    }
    return "?";
}

bool
fks_utf8_valid (const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf)      { n = 1; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; min = 0x10000; }
        else
            return false;               //  continuation byte, overlong lead or above U+10FFFF
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

static const char *
s_object_type_name (msgpack_object_type type)
{
    switch (type) {
        case MSGPACK_OBJECT_NIL:              return "nil";
        case MSGPACK_OBJECT_BOOLEAN:          return "bool";
        case MSGPACK_OBJECT_POSITIVE_INTEGER: return "int";
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
        case MSGPACK_OBJECT_FLOAT32:          return "float";
        case MSGPACK_OBJECT_FLOAT64:          return "float";
        case MSGPACK_OBJECT_STR:              return "str";
        case MSGPACK_OBJECT_ARRAY:            return "array";
        case MSGPACK_OBJECT_MAP:              return "map";
        case MSGPACK_OBJECT_BIN:              return "bin";
        case MSGPACK_OBJECT_EXT:              return "ext";
    }
    return "unknown";
}

//  True when key is the str name. Compares bytewise without strlen: most keys differ from a
//  given name in their first byte, and this runs fields x keys times per body.
static bool
s_key_is (const msgpack_object *key, const char *name)
{
    if (key->type != MSGPACK_OBJECT_STR)
        return false;
    const char *p = key->via.str.ptr;
    uint32_t n = key->via.str.size;
    for (uint32_t i = 0; i < n; i++)
        if (name[i] != p[i] || name[i] == '\0')
            return false;
    return name[n] == '\0';
}

//  Checks one present, non-nil value against its field. Returns 0 or -1 with err.
static int
s_check_value (const fks_schema_field_t *field, const msgpack_object *val, char *err, size_t cap)
{
    const char *got = s_object_type_name (val->type);
    switch (field->kind) {
        case FKS_FIELD_STR: {
            if (val->type != MSGPACK_OBJECT_STR) {
                snprintf (err, cap, "%s: expected str, got %s", field->name, got);
                return -1;
            }
            const char *s = val->via.str.ptr;
            uint32_t n = val->via.str.size;
            if (n > field->max_len) {
                snprintf (err, cap, "%s: %u bytes, longer than the limit of %u",
                          field->name, n, field->max_len);
                return -1;
            }
            if (n > 0 && memchr (s, '\0', n)) {
                snprintf (err, cap, "%s: contains a NUL byte", field->name);
                return -1;
            }
            if (!fks_utf8_valid (s, n)) {
                snprintf (err, cap, "%s: not valid UTF-8", field->name);
                return -1;
            }
            if (field->values) {
                for (const char *const *v = field->values; *v; v++)
                    if (strlen (*v) == n && memcmp (*v, s, n) == 0)
                        return 0;
                //  The value is bounded by max_len and valid UTF-8; quote it for the reader.
                int w = snprintf (err, cap, "%s: \"%.*s\" is not one of", field->name,
                                  (int) (n > 32 ? 32 : n), s);
                for (const char *const *v = field->values; *v && w >= 0 && (size_t) w < cap; v++) {
                    int more = snprintf (err + w, cap - (size_t) w, "%s%s",
                                         v == field->values ? " " : ", ", *v);
                    w = more < 0 ? -1 : w + more;
                }
                return -1;
            }
            return 0;
        }
        case FKS_FIELD_INT:
            if (val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                return 0;
            if (val->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                if (val->via.u64 > (uint64_t) INT64_MAX) {
                    snprintf (err, cap, "%s: integer out of the int64 range", field->name);
                    return -1;
                }
                return 0;
            }
            snprintf (err, cap, "%s: expected int, got %s", field->name, got);
            return -1;
        case FKS_FIELD_F64:
            if (val->type == MSGPACK_OBJECT_POSITIVE_INTEGER
            ||  val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                return 0;
            if (val->type == MSGPACK_OBJECT_FLOAT32 || val->type == MSGPACK_OBJECT_FLOAT64) {
                if (!isfinite (val->via.f64)) {
                    snprintf (err, cap, "%s: not a finite number", field->name);
                    return -1;
                }
                return 0;
            }
            snprintf (err, cap, "%s: expected f64 (int or float), got %s", field->name, got);
            return -1;
        case FKS_FIELD_BOOL:
            if (val->type == MSGPACK_OBJECT_BOOLEAN)
                return 0;
            snprintf (err, cap, "%s: expected bool, got %s", field->name, got);
            return -1;
        case FKS_FIELD_ID: {
            if (val->type != MSGPACK_OBJECT_BIN || val->via.bin.size != 16) {
                if (val->type == MSGPACK_OBJECT_BIN)
                    snprintf (err, cap, "%s: expected id (bin 16), got bin %u",
                              field->name, val->via.bin.size);
                else
                    snprintf (err, cap, "%s: expected id (bin 16), got %s", field->name, got);
                return -1;
            }
            static const uint8_t zero[16] = { 0 };
            if (memcmp (val->via.bin.ptr, zero, 16) == 0) {
                snprintf (err, cap, "%s: the nil UUID is not an id", field->name);
                return -1;
            }
            return 0;
        }
        case FKS_FIELD_MAP:
            if (val->type == MSGPACK_OBJECT_MAP)
                return 0;
            snprintf (err, cap, "%s: expected map, got %s", field->name, got);
            return -1;
        case FKS_FIELD_ARRAY:
            if (val->type == MSGPACK_OBJECT_ARRAY)
                return 0;
            snprintf (err, cap, "%s: expected array, got %s", field->name, got);
            return -1;
    }
    snprintf (err, cap, "%s: field has no valid kind in the schema", field->name);
    return -1;
}

int
fks_schema_check (const fks_schema_t *schema, const msgpack_object *body, char *err, size_t cap)
{
    char scratch[1];
    if (!err || cap == 0) {
        err = scratch;
        cap = sizeof scratch;
    }
    err[0] = '\0';
    if (!schema || !body) {
        snprintf (err, cap, "no schema or no body");
        return -1;
    }
    if (body->type != MSGPACK_OBJECT_MAP) {
        snprintf (err, cap, "body: expected map, got %s", s_object_type_name (body->type));
        return -1;
    }
    const msgpack_object_map *map = &body->via.map;
    for (size_t f = 0; f < schema->nfields; f++) {
        const fks_schema_field_t *field = &schema->fields[f];
        const msgpack_object *val = NULL;
        for (uint32_t i = 0; i < map->size; i++) {
            if (!s_key_is (&map->ptr[i].key, field->name))
                continue;
            if (val) {
                snprintf (err, cap, "%s: duplicate key", field->name);
                return -1;
            }
            val = &map->ptr[i].val;
        }
        if (!val || val->type == MSGPACK_OBJECT_NIL) {
            if (field->required) {
                snprintf (err, cap, "%s: required field missing", field->name);
                return -1;
            }
            continue;
        }
        if (s_check_value (field, val, err, cap) != 0)
            return -1;
    }
    return 0;
}
