/*  gen_golden.c - writes the golden envelopes in schemas/golden/ from fixed example values.
 *
 *  Usage: gen_golden DIR. For every message type it packs an example body with the fks_pack_*
 *  helpers, wraps it with fks_envelope_encode (so every golden file passed the schema check)
 *  and writes DIR/<type>.msgpack and DIR/<type>.json, the same envelope as readable JSON: ids
 *  as canonical UUID text, floats in their shortest round-trip form with a ".0" when integral,
 *  so a JSON reader can tell a msgpack float from an int. Ids and timestamps are fixed, so
 *  the output is byte-identical on every run; tests/bus/test_envelope.c runs this program into
 *  a temporary folder and compares the result with the committed files.
 *
 *  To change an example: edit it here, run `gen_golden schemas/golden` from the build folder,
 *  and commit the new files together with the change that needed them.
 */
#include "bus/envelope.h"
#include "bus/schema.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Fixed ids (UUIDv7 shapes) and the fixed clock: 2024-07-03T09:46:40Z.
#define S_ALERT_ID      "01907a3c-5e10-7a4b-8c2d-3e4f5a6b7c8d"
#define S_SIGNAL_ID     "01907a3c-5e12-7b01-9a11-22334455aa01"
#define S_ORDER_ID      "01907a3c-5e15-7c02-8b22-33445566bb02"
#define S_MANUAL_ID     "01907a3c-6000-7d03-a333-445566778803"
#define S_TS_BASE       1720000000000000000LL
#define S_ALERT_MS      1720000000000LL

typedef void (s_body_fn) (msgpack_packer *pk);

typedef struct {
    const char *type;
    const char *src;
    bool has_corr;              //  corr = the alert id; otherwise nil
    const char *cause;          //  the type whose example caused this one, or NULL
    int64_t seq;
    s_body_fn *body;
} s_example_t;

static fks_id_t
s_id (const char *text)
{
    fks_id_t id;
    if (fks_id_parse (text, strlen (text), &id) != 0) {
        fprintf (stderr, "gen_golden: bad fixed id %s\n", text);
        exit (1);
    }
    return id;
}

//  The envelope id of the example at index i: 01907a3c-5e10-7000-8000-0000000000NN.
static fks_id_t
s_envelope_id (size_t i)
{
    char text[FKS_ID_STR_SIZE];
    snprintf (text, sizeof text, "01907a3c-5e10-7000-8000-%012zx", i + 1);
    return s_id (text);
}

static void
s_pack_id (msgpack_packer *pk, const char *key, const char *text)
{
    fks_id_t id = s_id (text);
    fks_pack_kv_id (pk, key, &id);
}

static void
s_webhook_received (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 22);
    s_pack_id (pk, "inbox_id", S_ALERT_ID);
    fks_pack_kv_str (pk, "source", "tradingview");
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "action", "buy");
    fks_pack_kv_f64 (pk, "quantity", 0.25);
    fks_pack_kv_str (pk, "quantity_type", "fixed_quantity");
    fks_pack_kv_f64 (pk, "price", 61234.5);
    fks_pack_kv_str (pk, "order_type", "limit");
    fks_pack_kv_f64 (pk, "limit_price", 61200.0);
    fks_pack_kv_f64 (pk, "signal_price", 61234.5);
    fks_pack_str (pk, "stop_loss");
    msgpack_pack_map (pk, 2);
    fks_pack_kv_str (pk, "type", "stop");
    fks_pack_kv_f64 (pk, "stop_price", 60000.0);
    fks_pack_str (pk, "take_profit");
    msgpack_pack_map (pk, 1);
    fks_pack_kv_f64 (pk, "limit_price", 64000.0);
    fks_pack_kv_str (pk, "strategy", "ema-cross-15m");
    fks_pack_kv_str (pk, "interval", "15");
    fks_pack_kv_str (pk, "exchange", "BINANCE");
    fks_pack_kv_i64 (pk, "alert_time", S_ALERT_MS);
    fks_pack_kv_f64 (pk, "position_size", 0.25);
    fks_pack_kv_str (pk, "market_position", "long");
    fks_pack_kv_str (pk, "sentiment", "bullish");
    fks_pack_kv_f64 (pk, "confidence", 0.82);
    fks_pack_kv_str (pk, "client_id", "tv-7f3a9c");
    fks_pack_kv_str (pk, "comment", "Breakout above the 15m range \xe2\x80\x94 entry 1");
}

static void
s_signal_fields (msgpack_packer *pk, size_t extra)
{
    msgpack_pack_map (pk, 14 + extra);
    s_pack_id (pk, "signal_id", S_SIGNAL_ID);
    s_pack_id (pk, "inbox_id", S_ALERT_ID);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "side", "buy");
    fks_pack_kv_f64 (pk, "qty", 0.25);
    fks_pack_kv_str (pk, "order_type", "limit");
    fks_pack_kv_f64 (pk, "limit_price", 61200.0);
    fks_pack_kv_f64 (pk, "price", 61234.5);
    fks_pack_kv_f64 (pk, "stop_loss", 60000.0);
    fks_pack_kv_f64 (pk, "take_profit", 64000.0);
    fks_pack_kv_str (pk, "strategy", "ema-cross-15m");
    fks_pack_kv_f64 (pk, "confidence", 0.82);
    fks_pack_kv_bool (pk, "reduce_only", false);
    fks_pack_kv_str (pk, "reason", "tradingview alert: buy 0.25 BTCUSDT limit 61200");
}

static void
s_signal_created (msgpack_packer *pk)
{
    s_signal_fields (pk, 0);
}

static void
s_signal_scored (msgpack_packer *pk)
{
    s_signal_fields (pk, 3);
    fks_pack_kv_f64 (pk, "score", 0.74);
    fks_pack_kv_f64 (pk, "threshold", 0.6);
    fks_pack_kv_str (pk, "model_version", "logreg-2024-07-01");
}

static void
s_signal_filtered (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 7);
    s_pack_id (pk, "signal_id", S_SIGNAL_ID);
    s_pack_id (pk, "inbox_id", S_ALERT_ID);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "stage", "ai");
    fks_pack_kv_str (pk, "reason", "score 0.41 below the threshold 0.6");
    fks_pack_kv_f64 (pk, "score", 0.41);
    fks_pack_kv_f64 (pk, "threshold", 0.6);
}

static void
s_risk_rejected (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 8);
    s_pack_id (pk, "signal_id", S_SIGNAL_ID);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "side", "buy");
    fks_pack_kv_f64 (pk, "qty", 0.25);
    fks_pack_kv_str (pk, "rule", "max_notional");
    fks_pack_kv_f64 (pk, "limit", 10000.0);
    fks_pack_kv_f64 (pk, "value", 15308.625);
    fks_pack_kv_str (pk, "message", "notional 15308.625 exceeds max_notional 10000");
}

static void
s_order_requested (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 7);
    s_pack_id (pk, "order_id", S_MANUAL_ID);
    fks_pack_kv_str (pk, "symbol", "ETHUSDT");
    fks_pack_kv_str (pk, "side", "sell");
    fks_pack_kv_str (pk, "type", "market");
    fks_pack_kv_f64 (pk, "qty", 1.5);
    fks_pack_kv_nil (pk, "limit_price");           //  an optional field may be nil
    fks_pack_kv_str (pk, "requested_by", "api-key:ops");
}

static void
s_order_cancel_requested (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    s_pack_id (pk, "order_id", S_ORDER_ID);
    fks_pack_kv_str (pk, "requested_by", "api-key:ops");
}

static void
s_order_submitted (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 10);
    s_pack_id (pk, "order_id", S_ORDER_ID);
    fks_pack_kv_str (pk, "client_order_id", "fks-01907a3c5e157c02");
    s_pack_id (pk, "signal_id", S_SIGNAL_ID);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "side", "buy");
    fks_pack_kv_str (pk, "type", "limit");
    fks_pack_kv_f64 (pk, "qty", 0.25);
    fks_pack_kv_f64 (pk, "limit_price", 61200.0);
    fks_pack_kv_str (pk, "broker", "paper");
    fks_pack_kv_str (pk, "exchange_order_id", "paper-000042");
}

static void
s_order_fill (msgpack_packer *pk, const char *fill_id, double qty, double price, double fee,
              double filled_qty, double avg_fill_price)
{
    msgpack_pack_map (pk, 12);
    s_pack_id (pk, "order_id", S_ORDER_ID);
    fks_pack_kv_str (pk, "client_order_id", "fks-01907a3c5e157c02");
    fks_pack_kv_str (pk, "fill_id", fill_id);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "side", "buy");
    fks_pack_kv_f64 (pk, "qty", qty);
    fks_pack_kv_f64 (pk, "price", price);
    fks_pack_kv_f64 (pk, "fee", fee);
    fks_pack_kv_str (pk, "fee_asset", "USDT");
    fks_pack_kv_f64 (pk, "filled_qty", filled_qty);
    fks_pack_kv_f64 (pk, "avg_fill_price", avg_fill_price);
    fks_pack_kv_str (pk, "broker", "paper");
}

static void
s_order_filled (msgpack_packer *pk)
{
    s_order_fill (pk, "paper-000042-2", 0.15, 61190.0, 9.1785, 0.25, 61194.0);
}

static void
s_order_partially_filled (msgpack_packer *pk)
{
    s_order_fill (pk, "paper-000042-1", 0.1, 61200.0, 6.12, 0.1, 61200.0);
}

static void
s_order_rejected (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    s_pack_id (pk, "order_id", S_ORDER_ID);
    fks_pack_kv_str (pk, "client_order_id", "fks-01907a3c5e157c02");
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "reason", "insufficient balance");
}

static void
s_order_cancelled (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 5);
    s_pack_id (pk, "order_id", S_ORDER_ID);
    fks_pack_kv_str (pk, "client_order_id", "fks-01907a3c5e157c02");
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "reason", "cancelled by api-key:ops");
    fks_pack_kv_f64 (pk, "filled_qty", 0.1);
}

static void
s_position_updated (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 7);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_f64 (pk, "qty", 0.25);
    fks_pack_kv_f64 (pk, "avg_price", 61194.0);
    fks_pack_kv_f64 (pk, "realized_pnl", 0.0);
    fks_pack_kv_f64 (pk, "unrealized_pnl", -48.5);
    fks_pack_kv_f64 (pk, "last_price", 61000.0);
    s_pack_id (pk, "order_id", S_ORDER_ID);
}

static void
s_market_bar (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 10);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "interval", "1m");
    fks_pack_kv_i64 (pk, "open_time", S_ALERT_MS - 60000);
    fks_pack_kv_f64 (pk, "open", 61210.0);
    fks_pack_kv_f64 (pk, "high", 61250.5);
    fks_pack_kv_f64 (pk, "low", 61190.25);
    fks_pack_kv_f64 (pk, "close", 61234.5);
    fks_pack_kv_f64 (pk, "volume", 12.345);
    fks_pack_kv_str (pk, "source", "binance");
    fks_pack_kv_bool (pk, "closed", true);
}

static void
s_data_quality (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 6);
    fks_pack_kv_str (pk, "symbol", "BTCUSDT");
    fks_pack_kv_str (pk, "interval", "1m");
    fks_pack_kv_str (pk, "kind", "gap");
    fks_pack_kv_i64 (pk, "value", 3);                //  f64 fields accept msgpack ints
    fks_pack_kv_i64 (pk, "threshold", 1);
    fks_pack_kv_str (pk, "detail", "3 bars missing after 2024-07-03T09:40:00Z");
}

static void
s_breaker_opened (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    fks_pack_kv_str (pk, "scope", "exchange:binance");
    fks_pack_kv_str (pk, "reason", "5 errors from the exchange within 60 s");
    fks_pack_kv_i64 (pk, "failures", 5);
    fks_pack_kv_i64 (pk, "window_s", 60);
}

static void
s_breaker_closed (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    fks_pack_kv_str (pk, "scope", "exchange:binance");
    fks_pack_kv_str (pk, "reason", "reset by api-key:ops");
}

static void
s_security_event (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 3);
    fks_pack_kv_str (pk, "kind", "auth_failed");
    fks_pack_kv_str (pk, "source_addr", "203.0.113.7");
    fks_pack_kv_str (pk, "detail", "webhook passphrase missing or wrong");
}

static void s_dead_letter (msgpack_packer *pk);

//  In the order of fks_schema_at; an example's envelope id follows from its index.
static const s_example_t s_examples[] = {
    { "webhook.received",       "gateway",   true,  NULL,                     1,  s_webhook_received },
    { "signal.created",         "signal",    true,  "webhook.received",       2,  s_signal_created },
    { "signal.scored",          "ai",        true,  "signal.created",         3,  s_signal_scored },
    { "signal.filtered",        "ai",        true,  "signal.created",         4,  s_signal_filtered },
    { "risk.rejected",          "execution", true,  "signal.scored",          5,  s_risk_rejected },
    { "order.requested",        "gateway",   false, NULL,                     6,  s_order_requested },
    { "order.cancel_requested", "gateway",   true,  NULL,                     7,  s_order_cancel_requested },
    { "order.submitted",        "execution", true,  "signal.scored",          8,  s_order_submitted },
    { "order.filled",           "execution", true,  "order.submitted",        10, s_order_filled },
    { "order.partially_filled", "execution", true,  "order.submitted",        9,  s_order_partially_filled },
    { "order.rejected",         "execution", true,  "order.submitted",        11, s_order_rejected },
    { "order.cancelled",        "execution", true,  "order.cancel_requested", 12, s_order_cancelled },
    { "position.updated",       "execution", true,  "order.filled",           13, s_position_updated },
    { "market.bar",             "data",      false, NULL,                     0,  s_market_bar },
    { "data.quality",           "data",      false, "market.bar",             14, s_data_quality },
    { "breaker.opened",         "execution", false, NULL,                     15, s_breaker_opened },
    { "breaker.closed",         "execution", false, NULL,                     16, s_breaker_closed },
    { "security.event",         "gateway",   false, NULL,                     17, s_security_event },
    { "dead.letter",            "bus",       true,  "signal.scored",          18, s_dead_letter },
};

#define S_NEXAMPLES (sizeof s_examples / sizeof s_examples[0])

static size_t
s_example_index (const char *type)
{
    for (size_t i = 0; i < S_NEXAMPLES; i++)
        if (strcmp (s_examples[i].type, type) == 0)
            return i;
    fprintf (stderr, "gen_golden: no example for %s\n", type);
    exit (1);
}

static void
s_dead_letter (msgpack_packer *pk)
{
    fks_id_t dead = s_envelope_id (s_example_index ("signal.scored"));
    msgpack_pack_map (pk, 5);
    fks_pack_kv_str (pk, "grp", "execution");
    fks_pack_kv_id (pk, "msg_id", &dead);
    fks_pack_kv_str (pk, "msg_type", "signal.scored");
    fks_pack_kv_i64 (pk, "attempts", 5);
    fks_pack_kv_str (pk, "reason", "handler failed 5 times: exchange unavailable");
}

//  --------------------------------------------------------------------------------------------
//  JSON: a small writer for the readable twin of each frame.

static void
s_json_str (FILE *f, const char *s, size_t len)
{
    fputc ('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == '"' || c == '\\')
            fprintf (f, "\\%c", c);
        else
        if (c < 0x20)
            fprintf (f, "\\u%04x", c);
        else
            fputc (c, f);               //  UTF-8 passes through (the schema checked it)
    }
    fputc ('"', f);
}

//  The shortest text that reads back as exactly d: plain decimals (at least one digit after
//  the point) for everyday magnitudes, the exponent form otherwise.
static void
s_json_f64 (FILE *f, double d)
{
    char buf[64];
    double mag = fabs (d);
    if (d == 0 || (mag >= 1e-4 && mag < 1e15)) {
        for (int digits = 1; digits <= 20; digits++) {
            snprintf (buf, sizeof buf, "%.*f", digits, d);
            if (strtod (buf, NULL) == d) {
                fputs (buf, f);
                return;
            }
        }
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf (buf, sizeof buf, "%.*e", prec, d);
        if (strtod (buf, NULL) == d)
            break;
    }
    fputs (buf, f);
}

static void
s_json_id (FILE *f, const fks_id_t *id)
{
    if (fks_id_is_nil (id)) {
        fputs ("null", f);
        return;
    }
    char text[FKS_ID_STR_SIZE];
    fks_id_format (id, text);
    fprintf (f, "\"%s\"", text);
}

static int
s_json_value (FILE *f, const msgpack_object *o, int indent)
{
    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            fputs ("null", f);
            return 0;
        case MSGPACK_OBJECT_BOOLEAN:
            fputs (o->via.boolean ? "true" : "false", f);
            return 0;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fprintf (f, "%llu", (unsigned long long) o->via.u64);
            return 0;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fprintf (f, "%lld", (long long) o->via.i64);
            return 0;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            s_json_f64 (f, o->via.f64);
            return 0;
        case MSGPACK_OBJECT_STR:
            s_json_str (f, o->via.str.ptr, o->via.str.size);
            return 0;
        case MSGPACK_OBJECT_BIN: {
            if (o->via.bin.size != FKS_ID_SIZE)
                return -1;
            fks_id_t id;
            memcpy (id.b, o->via.bin.ptr, FKS_ID_SIZE);
            s_json_id (f, &id);
            return 0;
        }
        case MSGPACK_OBJECT_MAP: {
            if (o->via.map.size == 0) {
                fputs ("{}", f);
                return 0;
            }
            fputs ("{\n", f);
            for (uint32_t i = 0; i < o->via.map.size; i++) {
                const msgpack_object_kv *kv = &o->via.map.ptr[i];
                if (kv->key.type != MSGPACK_OBJECT_STR)
                    return -1;
                fprintf (f, "%*s", indent + 2, "");
                s_json_str (f, kv->key.via.str.ptr, kv->key.via.str.size);
                fputs (": ", f);
                if (s_json_value (f, &kv->val, indent + 2) != 0)
                    return -1;
                fputs (i + 1 < o->via.map.size ? ",\n" : "\n", f);
            }
            fprintf (f, "%*s}", indent, "");
            return 0;
        }
        case MSGPACK_OBJECT_ARRAY: {
            fputs ("[", f);
            for (uint32_t i = 0; i < o->via.array.size; i++) {
                if (i)
                    fputs (", ", f);
                if (s_json_value (f, &o->via.array.ptr[i], indent) != 0)
                    return -1;
            }
            fputs ("]", f);
            return 0;
        }
        default:
            return -1;
    }
}

static int
s_write_json (FILE *f, const fks_envelope_t *env)
{
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    fprintf (f, "{\n  \"v\": %u,\n  \"type\": ", hdr->v);
    s_json_str (f, hdr->type, strlen (hdr->type));
    fputs (",\n  \"id\": ", f);
    s_json_id (f, &hdr->id);
    fputs (",\n  \"corr\": ", f);
    s_json_id (f, &hdr->corr);
    fputs (",\n  \"cause\": ", f);
    s_json_id (f, &hdr->cause);
    fprintf (f, ",\n  \"ts\": %lld,\n  \"src\": ", (long long) hdr->ts);
    s_json_str (f, hdr->src, strlen (hdr->src));
    fprintf (f, ",\n  \"seq\": %lld,\n  \"body\": ", (long long) hdr->seq);
    if (s_json_value (f, fks_envelope_body (env), 2) != 0)
        return -1;
    fputs ("\n}\n", f);
    return 0;
}

//  --------------------------------------------------------------------------------------------

static int
s_write_file (const char *dir, const char *type, const char *ext, const void *data, size_t len,
              const fks_envelope_t *env)
{
    char path[4096];
    if (snprintf (path, sizeof path, "%s/%s.%s", dir, type, ext) >= (int) sizeof path) {
        fprintf (stderr, "gen_golden: path too long\n");
        return -1;
    }
    FILE *f = fopen (path, "wb");
    if (!f) {
        fprintf (stderr, "gen_golden: cannot write %s: %s\n", path, strerror (errno));
        return -1;
    }
    int rc = env ? s_write_json (f, env) : (fwrite (data, 1, len, f) == len ? 0 : -1);
    if (fclose (f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf (stderr, "gen_golden: failed writing %s\n", path);
    return rc;
}

static int
s_generate (const char *dir, size_t i)
{
    const s_example_t *ex = &s_examples[i];
    fks_envelope_hdr_t hdr;
    memset (&hdr, 0, sizeof hdr);
    hdr.v = FKS_ENVELOPE_VERSION;
    snprintf (hdr.type, sizeof hdr.type, "%s", ex->type);
    snprintf (hdr.src, sizeof hdr.src, "%s", ex->src);
    hdr.id = s_envelope_id (i);
    if (ex->has_corr)
        hdr.corr = s_id (S_ALERT_ID);
    if (ex->cause)
        hdr.cause = s_envelope_id (s_example_index (ex->cause));
    hdr.ts = S_TS_BASE + (int64_t) i * 1500000;
    hdr.seq = ex->seq;

    msgpack_sbuffer body, frame;
    msgpack_sbuffer_init (&body);
    msgpack_sbuffer_init (&frame);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    ex->body (&pk);

    int rc = -1;
    fks_envelope_err_t err;
    fks_envelope_t *env = NULL;
    if (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err) != 0)
        fprintf (stderr, "gen_golden: %s: %s\n", ex->type, err.msg);
    else
    if (!(env = fks_envelope_decode (frame.data, frame.size, &err)))
        fprintf (stderr, "gen_golden: %s does not decode: %s\n", ex->type, err.msg);
    else
    if (s_write_file (dir, ex->type, "msgpack", frame.data, frame.size, NULL) == 0
    &&  s_write_file (dir, ex->type, "json", NULL, 0, env) == 0)
        rc = 0;
    fks_envelope_destroy (&env);
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
    return rc;
}

int
main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: gen_golden DIR   (writes DIR/<type>.msgpack and .json)\n");
        return 2;
    }
    //  Every known type has exactly one example, in the schema's order.
    if (S_NEXAMPLES != fks_schema_count ()) {
        fprintf (stderr, "gen_golden: %zu examples for %zu types\n",
                 S_NEXAMPLES, fks_schema_count ());
        return 1;
    }
    for (size_t i = 0; i < S_NEXAMPLES; i++) {
        if (strcmp (fks_schema_at (i)->type, s_examples[i].type) != 0) {
            fprintf (stderr, "gen_golden: example %zu is %s, the schema has %s\n",
                     i, s_examples[i].type, fks_schema_at (i)->type);
            return 1;
        }
        if (s_generate (argv[1], i) != 0)
            return 1;
    }
    return 0;
}
