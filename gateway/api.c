/*  api.c - the REST API under /api/v1: bearer keys with scopes, lists, manual orders.
 *
 *  One handler takes every /api/v1/... request, authenticates it, and dispatches on the path
 *  segments. Reads are single parameterised statements whose rows PostgreSQL renders as JSON
 *  (json_build_object, times as UTC ISO 8601 with milliseconds), so this file only stitches
 *  rows into the {"items","next"} envelope. Pages are keyset pages: a list asks for limit + 1
 *  rows ordered by (time DESC, id DESC), and the extra row's presence yields the cursor
 *  "<unix microseconds>.<uuid>" of the last row shown; the next page continues strictly below
 *  it, so rows inserted meanwhile never shift a page.
 *
 *  The events feed follows the stream's no-gap rule (docs/ARCHITECTURE.gateway.md): rows in
 *  (xid, seq) order, only below the snapshot's xmin, resumed from the (xid, seq) of the row
 *  named by ?after=<seq>.
 *
 *  Writes (manual order, cancel) are an envelope inserted in the events outbox and published
 *  after commit; with an Idempotency-Key header the order id and envelope id are derived from
 *  the key and the caller's API key (its owner, apikeys.h: unique, unlike its name), so a
 *  retried POST finds its first envelope and answers 200 duplicate instead of ordering twice.
 *  The stored envelope is the record of the first request: a retry asking for something else
 *  (another order, or the cancel of another order) is answered 422 idempotency_key_reused.
 *  That record is read before any check of what the request acts on, since the first request
 *  may have changed it: a cancel retried after its order ended is still 200 duplicate.
 *
 *  Every parameter is checked here before its query, so a 400 names the parameter at fault
 *  (a ?since= time is read by PostgreSQL itself, in a statement of its own).
 */
#include "gateway/api.h"
#include "bus/client.h"
#include "bus/envelope.h"
#include "common/breaker.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/prices.h"
#include "common/redis.h"
#include "common/symbol.h"
#include "gateway/auth.h"

#include <civetweb.h>
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_LIMIT_DEFAULT  100
#define S_LIMIT_MAX      1000
#define S_POOL_WAIT_MS   2000
#define S_BODY_MAX       (16 * 1024)
#define S_ID_KEY_MAX     128

//  A timestamptz column as UTC ISO 8601 text.
#define S_TS(col) "to_char (" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
//  The keyset cursor columns of a row.
#define S_CURSOR(col) "(extract (epoch FROM " col ") * 1000000)::bigint"
//  The keyset condition: $4 microseconds, $5 uuid.
#define S_BELOW(col) \
    "($4::bigint IS NULL OR (" col ", id) < (timestamptz 'epoch' + $4::bigint * interval '1 microsecond', $5::uuid))"

#define S_ORDER_JSON \
    "json_build_object ('id', id, 'client_order_id', client_order_id, 'signal_id', signal_id," \
    " 'corr', corr, 'symbol', symbol, 'side', side, 'type', type, 'qty', qty," \
    " 'limit_price', limit_price, 'status', status, 'filled_qty', filled_qty," \
    " 'avg_fill_price', avg_fill_price, 'broker', broker, 'exchange_order_id', exchange_order_id," \
    " 'reason', reason, 'created_at', " S_TS ("created_at") ", 'updated_at', " \
    S_TS ("updated_at") ")::text"

#define S_SIGNAL_JSON \
    "json_build_object ('id', id, 'inbox_id', inbox_id, 'corr', corr, 'source', source," \
    " 'symbol', symbol, 'action', action, 'side', side, 'qty', qty," \
    " 'quantity_type', quantity_type, 'target_position', target_position," \
    " 'order_type', order_type, 'price', price, 'limit_price', limit_price," \
    " 'stop_loss', stop_loss, 'take_profit', take_profit, 'strategy', strategy," \
    " 'interval', interval, 'confidence', confidence, 'params', params, 'status', status," \
    " 'reason', reason, 'created_at', " S_TS ("created_at") ", 'updated_at', " \
    S_TS ("updated_at") ")::text"

#define S_ALERT_JSON \
    "json_build_object ('id', id, 'source', source, 'status', status, 'received_at', " \
    S_TS ("received_at") ", 'updated_at', " S_TS ("updated_at") ", 'content_type', content_type," \
    " 'remote_addr', remote_addr, 'idem_key', idem_key, 'alert', alert)::text"

#define S_FILL_JSON \
    "json_build_object ('id', id, 'order_id', order_id, 'broker', broker," \
    " 'exchange_fill_id', exchange_fill_id, 'symbol', symbol, 'side', side, 'qty', qty," \
    " 'price', price, 'fee', fee, 'fee_asset', fee_asset, 'ts', " S_TS ("ts") "," \
    " 'created_at', " S_TS ("created_at") ")::text"

//  $1 symbol, $2 status, $3 since, $4/$5 cursor, $6 limit + 1. Unused filters stay NULL.
static const char s_sql_alerts[] =
    "SELECT " S_ALERT_JSON ", " S_CURSOR ("received_at") ", id FROM inbox"
    " WHERE ($1::text IS NULL OR alert->>'symbol' = $1) AND ($2::text IS NULL OR status = $2)"
    " AND ($3::timestamptz IS NULL OR received_at >= $3) AND " S_BELOW ("received_at")
    " ORDER BY received_at DESC, id DESC LIMIT $6";

static const char s_sql_signals[] =
    "SELECT " S_SIGNAL_JSON ", " S_CURSOR ("created_at") ", id FROM signals"
    " WHERE ($1::text IS NULL OR symbol = $1) AND ($2::text IS NULL OR status = $2)"
    " AND ($3::timestamptz IS NULL OR created_at >= $3) AND " S_BELOW ("created_at")
    " ORDER BY created_at DESC, id DESC LIMIT $6";

static const char s_sql_orders[] =
    "SELECT " S_ORDER_JSON ", " S_CURSOR ("created_at") ", id FROM orders"
    " WHERE ($1::text IS NULL OR symbol = $1) AND ($2::text IS NULL OR status = $2)"
    " AND ($3::timestamptz IS NULL OR created_at >= $3) AND " S_BELOW ("created_at")
    " ORDER BY created_at DESC, id DESC LIMIT $6";

static const char s_sql_fills[] =
    "SELECT " S_FILL_JSON ", " S_CURSOR ("created_at") ", id FROM fills"
    " WHERE ($1::text IS NULL OR symbol = $1) AND ($2::text IS NULL)"
    " AND ($3::timestamptz IS NULL OR created_at >= $3) AND " S_BELOW ("created_at")
    " ORDER BY created_at DESC, id DESC LIMIT $6";

typedef struct {
    const char *name;               /* path segment */
    const char *sql;
    bool has_status;
    const char *const *statuses;    /* allowed ?status= values */
} s_list_t;

static const char *const s_alert_statuses[] = { "accepted", "signalled", "scored", "filtered",
    "rejected", "ordered", "filled", "failed", NULL };
static const char *const s_signal_statuses[] = { "created", "scored", "filtered", "rejected",
    "ordered", "failed", NULL };
static const char *const s_order_statuses[] = { "new", "submitted", "partially_filled",
    "filled", "rejected", "cancelled", NULL };

static const s_list_t s_lists[] = {
    { "alerts", s_sql_alerts, true, s_alert_statuses },
    { "signals", s_sql_signals, true, s_signal_statuses },
    { "orders", s_sql_orders, true, s_order_statuses },
    { "fills", s_sql_fills, false, NULL },
};

struct fks_api_t {
    fks_api_opts_t o;
    pthread_mutex_t pool_mutex;
    pthread_cond_t pool_cond;
    fks_pg_t **free_pg;             /* idle connections */
    size_t n_free;
    size_t n_pool;
    fks_metric_family_t *m_requests;
    fks_metric_family_t *m_auth_fail;
    pthread_mutex_t redis_mutex;    /* the circuit breaker's Redis handle */
    fks_redis_t *redis;
    fks_breaker_cfg_t breaker_cfg;
    fks_cidr_list_t *proxies;       /* FKS_GATEWAY_TRUSTED_PROXIES: whose X-Forwarded-For counts */
};

// ---------------------------------------------------------------------------------------------
//  Pool

fks_pg_t *
fks_api_pg_get (fks_api_t *self, int timeout_ms)
{
    struct timespec ts = fks_clock_after (CLOCK_REALTIME, (int64_t) timeout_ms * 1000000);
    pthread_mutex_lock (&self->pool_mutex);
    while (self->n_free == 0)
        if (pthread_cond_timedwait (&self->pool_cond, &self->pool_mutex, &ts) != 0)
            break;
    fks_pg_t *pg = self->n_free ? self->free_pg[--self->n_free] : NULL;
    pthread_mutex_unlock (&self->pool_mutex);
    return pg;
}

void
fks_api_pg_put (fks_api_t *self, fks_pg_t *pg)
{
    if (!pg)
        return;
    pthread_mutex_lock (&self->pool_mutex);
    self->free_pg[self->n_free++] = pg;
    pthread_cond_signal (&self->pool_cond);
    pthread_mutex_unlock (&self->pool_mutex);
}

fks_api_t *
fks_api_new (const fks_api_opts_t *opts)
{
    if (!opts || !opts->cfg || !opts->keys || !opts->rl)
        return NULL;
    fks_api_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->o = *opts;
    pthread_mutex_init (&self->pool_mutex, NULL);
    pthread_cond_init (&self->pool_cond, NULL);
    pthread_mutex_init (&self->redis_mutex, NULL);
    char berr[256];
    self->proxies = fks_cidr_list_new ();
    if (!self->proxies
        || fks_cidr_list_add (self->proxies, opts->cfg->trusted_proxies, berr, sizeof berr) != 0) {
        fks_error ("api: FKS_GATEWAY_TRUSTED_PROXIES: %s", self->proxies ? berr : "no memory");
        fks_api_destroy (&self);
        return NULL;
    }
    if (fks_breaker_cfg_load (&self->breaker_cfg, berr, sizeof berr) != 0) {
        fks_error ("api: %s", berr);
        fks_api_destroy (&self);
        return NULL;
    }
    fks_redis_err_t rerr;
    self->redis = fks_redis_new (opts->cfg->redis_url, 1000, 2000, &rerr);
    if (!self->redis) {
        fks_error ("api: FKS_REDIS_URL: %s", rerr.msg);
        fks_api_destroy (&self);
        return NULL;
    }
    size_t n = (size_t) opts->cfg->db_pool;
    self->free_pg = calloc (n, sizeof *self->free_pg);
    if (!self->free_pg) {
        fks_api_destroy (&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        fks_pg_err_t err;
        fks_pg_t *pg = fks_pg_new (opts->cfg->pg_url, fks_apikey_stmts, fks_apikey_stmts_n, &err);
        if (pg && fks_pg_set_statement_timeout (pg, opts->cfg->statement_timeout_ms, &err) != 0)
            fks_pg_destroy (&pg);
        if (!pg) {
            fks_error ("api: FKS_PG_URL: %s", err.msg);
            fks_api_destroy (&self);
            return NULL;
        }
        self->free_pg[self->n_free++] = pg;
        self->n_pool++;
    }
    static const char *const labels[] = { "route", "status" };
    static const char *const kind_label[] = { "kind" };
    self->m_requests = fks_counter_family ("fks_gateway_api_requests_total",
        "REST API requests by route and status", labels, 2);
    self->m_auth_fail = fks_counter_family ("fks_gateway_api_auth_failures_total",
        "REST API requests refused for their key, by kind", kind_label, 1);
    return self;
}

void
fks_api_destroy (fks_api_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_api_t *self = *self_p;
    pthread_mutex_lock (&self->pool_mutex);
    for (size_t i = 0; i < self->n_free; i++)
        fks_pg_destroy (&self->free_pg[i]);
    pthread_mutex_unlock (&self->pool_mutex);
    free (self->free_pg);
    fks_redis_destroy (&self->redis);
    fks_cidr_list_destroy (&self->proxies);
    pthread_cond_destroy (&self->pool_cond);
    pthread_mutex_destroy (&self->pool_mutex);
    pthread_mutex_destroy (&self->redis_mutex);
    free (self);
    *self_p = NULL;
}

// ---------------------------------------------------------------------------------------------
//  Authentication

int
fks_api_authorize (fks_api_t *self, struct mg_connection *conn, unsigned scope,
                   bool allow_query, fks_apikey_info_t *info)
{
    const char *auth = fks_http_header (conn, "Authorization");
    char qkey[FKS_APIKEY_PRESENTED_MAX + 1];
    const char *key = NULL;
    size_t klen = 0;
    if (auth) {
        size_t alen = strnlen (auth, FKS_APIKEY_PRESENTED_MAX + 16);
        if (alen > 7 && strncasecmp (auth, "Bearer ", 7) == 0) {
            key = auth + 7;
            while (*key == ' ')
                key++;
            klen = strnlen (key, FKS_APIKEY_PRESENTED_MAX + 1);
            while (klen > 0 && key[klen - 1] == ' ')
                klen--;
        }
    }
    else if (allow_query) {
        int n = fks_http_query (conn, "access_token", qkey, sizeof qkey);
        if (n >= 0) {
            key = qkey;
            klen = (size_t) n;
        }
        else if (n == -2) {
            key = qkey;
            klen = FKS_APIKEY_PRESENTED_MAX + 1;        /* too long: refused below */
        }
    }
    static const char www[] = "WWW-Authenticate: Bearer realm=\"fks\"\r\n";
    if (!key) {
        fks_metric_inc (fks_metric_get1 (self->m_auth_fail, "missing"));
        return fks_http_error (conn, 401, www, "unauthorized", NULL,
                               "send an API key: Authorization: Bearer <key>");
    }
    //  Keys that are not valid have a budget per client address (FKS_GATEWAY_RATE_LIMIT_IP
    //  per window, the address as the webhooks take it: X-Forwarded-For only from a trusted
    //  proxy). Over it, a key is not even looked at: without it anyone could try keys - a
    //  weak FKS_ADMIN_KEY among them - as fast as the gateway answers, each costing a digest
    //  and a query on the REST pool. A valid key is never counted.
    char addr[FKS_AUTH_ADDR_TEXT_MAX];
    char xff[FKS_AUTH_XFF_MAX + 2];
    fks_ipaddr_t client;
    memset (&client, 0, sizeof client);
    if (fks_auth_client_addr (fks_http_peer (conn),
                              fks_http_header_all (conn, "X-Forwarded-For", xff, sizeof xff),
                              self->proxies, &client) == FKS_AUTH_OK && client.family)
        fks_ipaddr_format (&client, addr);
    else
        snprintf (addr, sizeof addr, "%s", fks_http_peer (conn));
    int retry = 1;
    if (fks_ratelimit_over (self->o.rl, "api_auth", addr, self->o.cfg->rate_ip, &retry)) {
        OPENSSL_cleanse (qkey, sizeof qkey);
        fks_metric_inc (fks_metric_get1 (self->m_auth_fail, "throttled"));
        char hdr[48];
        snprintf (hdr, sizeof hdr, "Retry-After: %d\r\n", retry);
        return fks_http_error (conn, 429, hdr, "rate_limited", NULL,
                               "too many keys that are not valid from this address; retry "
                               "after the given seconds");
    }
    fks_pg_t *pg = fks_api_pg_get (self, S_POOL_WAIT_MS);
    int rc = fks_apikeys_verify (self->o.keys, pg, key, klen, info);
    fks_api_pg_put (self, pg);
    OPENSSL_cleanse (qkey, sizeof qkey);
    if (rc > 0)
        fks_ratelimit_hit (self->o.rl, "api_auth", addr, self->o.cfg->rate_ip, &retry);
    if (rc < 0)
        return fks_http_error (conn, 503, "Retry-After: 1\r\n", "unavailable", NULL,
                               "the key could not be checked: the database is unavailable");
    if (rc > 0) {
        fks_metric_inc (fks_metric_get1 (self->m_auth_fail, "bad_key"));
        fks_security_record (self->o.security, "api.bad_key", fks_http_peer (conn),
                             fks_http_path (conn), "an unknown or revoked API key was presented");
        return fks_http_error (conn, 401, www, "unauthorized", NULL,
                               "the API key is not valid");
    }
    //  The key's budget counts every request it makes, also those its scopes refuse (403):
    //  each one cost a lookup, and a read key could send POST /api/v1/orders without limit.
    const char *rl_key = info->bootstrap ? "admin" : info->prefix;
    if (fks_ratelimit_hit (self->o.rl, "key", rl_key, self->o.cfg->rate_key, &retry) != 0) {
        char hdr[48];
        snprintf (hdr, sizeof hdr, "Retry-After: %d\r\n", retry);
        return fks_http_error (conn, 429, hdr, "rate_limited", NULL,
                               "too many requests with this key; retry after the given seconds");
    }
    if (!fks_apikey_allows (info->scopes, scope)) {
        char msg[96];
        char need[24];
        fks_apikey_scopes_format (scope, need, sizeof need);
        snprintf (msg, sizeof msg, "this key lacks the %s scope", need);
        fks_metric_inc (fks_metric_get1 (self->m_auth_fail, "scope"));
        return fks_http_error (conn, 403, NULL, "forbidden", NULL, msg);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
//  Event JSON (msgpack to JSON)

static void
s_json_id (fks_sbuf_t *out, const fks_id_t *id)
{
    if (fks_id_is_nil (id)) {
        fks_sbuf_puts (out, "null");
        return;
    }
    char s[FKS_ID_STR_SIZE];
    fks_id_format (id, s);
    fks_sbuf_printf (out, "\"%s\"", s);
}

static void
s_mp_json (fks_sbuf_t *out, const msgpack_object *o, int depth)
{
    if (depth > FKS_ENVELOPE_MAX_DEPTH + 1) {
        fks_sbuf_puts (out, "null");
        return;
    }
    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            fks_sbuf_puts (out, "null");
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            fks_sbuf_puts (out, o->via.boolean ? "true" : "false");
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fks_sbuf_printf (out, "%" PRIu64, o->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fks_sbuf_printf (out, "%" PRId64, o->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            fks_sbuf_json_double (out, o->via.f64);
            break;
        case MSGPACK_OBJECT_STR:
            fks_sbuf_json_str (out, o->via.str.ptr, o->via.str.size);
            break;
        case MSGPACK_OBJECT_BIN:
            if (o->via.bin.size == FKS_ID_SIZE) {
                fks_id_t id;
                memcpy (id.b, o->via.bin.ptr, FKS_ID_SIZE);
                char s[FKS_ID_STR_SIZE];
                fks_id_format (&id, s);
                fks_sbuf_printf (out, "\"%s\"", s);
            }
            else {
                fks_sbuf_puts (out, "\"");
                for (uint32_t i = 0; i < o->via.bin.size; i++)
                    fks_sbuf_printf (out, "%02x", (unsigned char) o->via.bin.ptr[i]);
                fks_sbuf_puts (out, "\"");
            }
            break;
        case MSGPACK_OBJECT_ARRAY:
            fks_sbuf_puts (out, "[");
            for (uint32_t i = 0; i < o->via.array.size; i++) {
                if (i)
                    fks_sbuf_puts (out, ",");
                s_mp_json (out, &o->via.array.ptr[i], depth + 1);
            }
            fks_sbuf_puts (out, "]");
            break;
        case MSGPACK_OBJECT_MAP:
            fks_sbuf_puts (out, "{");
            for (uint32_t i = 0; i < o->via.map.size; i++) {
                const msgpack_object_kv *kv = &o->via.map.ptr[i];
                if (i)
                    fks_sbuf_puts (out, ",");
                if (kv->key.type == MSGPACK_OBJECT_STR)
                    fks_sbuf_json_str (out, kv->key.via.str.ptr, kv->key.via.str.size);
                else
                    fks_sbuf_puts (out, "\"?\"");
                fks_sbuf_puts (out, ":");
                s_mp_json (out, &kv->val, depth + 1);
            }
            fks_sbuf_puts (out, "}");
            break;
        default:
            fks_sbuf_puts (out, "null");
            break;
    }
}

int
fks_api_event_json (fks_sbuf_t *out, int64_t seq, const void *envelope, size_t len)
{
    fks_envelope_err_t err;
    fks_envelope_t *env = fks_envelope_decode (envelope, len, &err);
    if (!env) {
        fks_envelope_hdr_t hdr;
        bool peek = fks_envelope_peek (envelope, len, &hdr, NULL, NULL, &err) == 0;
        fks_sbuf_printf (out, "{\"seq\":%" PRId64 ",\"type\":", seq);
        fks_sbuf_json_str (out, peek ? hdr.type : "", peek ? strlen (hdr.type) : 0);
        fks_sbuf_puts (out, ",\"error\":");
        fks_sbuf_json_str (out, err.msg, strlen (err.msg));
        fks_sbuf_puts (out, "}");
        return out->failed ? -1 : 0;
    }
    const fks_envelope_hdr_t *h = fks_envelope_hdr (env);
    fks_sbuf_printf (out, "{\"seq\":%" PRId64 ",\"id\":", seq);
    s_json_id (out, &h->id);
    fks_sbuf_puts (out, ",\"type\":");
    fks_sbuf_json_str (out, h->type, strlen (h->type));
    fks_sbuf_puts (out, ",\"corr\":");
    s_json_id (out, &h->corr);
    fks_sbuf_puts (out, ",\"cause\":");
    s_json_id (out, &h->cause);
    time_t secs = (time_t) (h->ts / 1000000000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    char when[40];
    strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fks_sbuf_printf (out, ",\"ts\":%" PRId64 ",\"time\":\"%s.%03dZ\",\"src\":", h->ts, when,
                     (int) ((h->ts / 1000000) % 1000));
    fks_sbuf_json_str (out, h->src, strlen (h->src));
    fks_sbuf_puts (out, ",\"body\":");
    s_mp_json (out, fks_envelope_body (env), 1);
    fks_sbuf_puts (out, "}");
    fks_envelope_destroy (&env);
    return out->failed ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
//  Request helpers

//  A request's context inside this file.
typedef struct {
    fks_api_t *api;
    struct mg_connection *conn;
    const char *route;              /* metrics label */
    fks_apikey_info_t key;
} s_req_t;

static int
s_done (s_req_t *r, int status)
{
    char st[8];
    snprintf (st, sizeof st, "%d", status);
    const char *labels[2] = { r->route, st };
    fks_metric_inc (fks_metric_get (r->api->m_requests, labels));
    return status;
}

static int
s_bad (s_req_t *r, const char *field, const char *message)
{
    return s_done (r, fks_http_error (r->conn, 400, NULL, "invalid_field", field, message));
}

static int
s_unavailable (s_req_t *r, const char *why)
{
    if (why)
        fks_warn ("api: %s", why);
    return s_done (r, fks_http_error (r->conn, 503, "Retry-After: 1\r\n", "unavailable", NULL,
                                      "the database is unavailable; retry"));
}

static int
s_not_found (s_req_t *r, const char *what)
{
    return s_done (r, fks_http_error (r->conn, 404, NULL, "not_found", NULL, what));
}

static bool
s_in (const char *v, const char *const *set)
{
    for (; set && *set; set++)
        if (strcmp (v, *set) == 0)
            return true;
    return false;
}

//  A symbol as the tables allow it (0004_symbols.sql): 1-32 of [A-Za-z0-9._:/!-], the first a
//  letter or a digit ('!' ends TradingView's continuous futures, ES1!).
#define S_SYMBOL_RULE "1-32 characters [A-Za-z0-9._:/!-], the first a letter or a digit"

static bool
s_symbol_ok (const char *s)
{
    size_t n = strlen (s);
    if (n < 1 || n > 32 || !isalnum ((unsigned char) s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum ((unsigned char) s[i]) && !strchr ("._:/!-", s[i]))
            return false;
    return true;
}

//  ?symbol= into out: -1 when absent (or, with required, answered 400), 0 when given. Tables
//  that hold the workers' symbols are asked in its one spelling (common/symbol.h: ?symbol=
//  BINANCE:btc/usdt finds BTCUSDT's orders); the alerts list (`spelled`) by the symbol as sent.
//  *st is the error reply's status, 0 when none was sent.
static int
s_symbol_query (s_req_t *r, bool required, bool spelled, char out[40], int *st)
{
    char raw[40];
    *st = 0;
    int n = fks_http_query (r->conn, "symbol", raw, sizeof raw);
    if (n == -1 && !required)
        return -1;
    if (n < 0 || !s_symbol_ok (raw)) {
        *st = s_bad (r, "symbol", required ? "symbol is required: " S_SYMBOL_RULE
                                           : "symbol must be " S_SYMBOL_RULE);
        return -1;
    }
    char why[160], msg[200];
    if (spelled)
        memcpy (out, raw, sizeof raw);
    else if (fks_symbol_normalize (raw, out, why, sizeof why) != 0) {
        snprintf (msg, sizeof msg, "symbol: %s", why);
        *st = s_bad (r, "symbol", msg);
        return -1;
    }
    return 0;
}

//  ?limit= into *limit, def when absent. 0, or the error reply's status.
static int
s_limit_or (s_req_t *r, int def, int *limit)
{
    char v[16];
    int n = fks_http_query (r->conn, "limit", v, sizeof v);
    *limit = def;
    if (n == -1)
        return 0;
    char *end = NULL;
    long l = n > 0 ? strtol (v, &end, 10) : 0;
    if (n < 0 || !end || *end || l < 1 || l > S_LIMIT_MAX)
        return s_bad (r, "limit", "limit must be an integer from 1 to 1000");
    *limit = (int) l;
    return 0;
}

static int
s_limit (s_req_t *r, int *limit)
{
    return s_limit_or (r, S_LIMIT_DEFAULT, limit);
}

//  The microseconds part of a keyset cursor: 1-18 digits, at most 9999-12-31T23:59:59.999999Z
//  (every time PostgreSQL can add to the epoch; the API only gives cursors of stored rows).
#define S_CURSOR_US_MAX 253402300799999999LL

static bool
s_cursor_us_ok (const char *s, size_t n)
{
    if (n < 1 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit ((unsigned char) s[i]))
            return false;
    char buf[20];
    memcpy (buf, s, n);
    buf[n] = '\0';
    return strtoll (buf, NULL, 10) <= S_CURSOR_US_MAX;
}

//  A UUID from a path segment; 0 or the error reply's status.
static int
s_path_id (s_req_t *r, const char *seg, fks_id_t *id, char out[FKS_ID_STR_SIZE])
{
    if (fks_id_parse (seg, strlen (seg), id) != 0)
        return s_bad (r, "id", "the id must be a UUID");
    fks_id_format (id, out);
    return 0;
}

//  Runs a query and returns its result, or NULL after answering (*status set): 400 when
//  PostgreSQL refused a parameter's value (SQLSTATE class 22, data exception), naming
//  bad_field when the statement has only that one parameter to refuse, and no field otherwise
//  (every parameter is checked before its query, so this is a fallback that must not blame a
//  field it cannot know); 503 for the rest.
static PGresult *
s_query (s_req_t *r, fks_pg_t *pg, const char *sql, int n, const char *const *values,
         const char *bad_field, int *status)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_query (pg, sql, n, values, NULL, NULL, &err);
    if (res)
        return res;
    if (strncmp (err.sqlstate, "22", 2) == 0)
        *status = s_bad (r, bad_field, bad_field ? "the value is not valid here"
                                                 : "a query parameter is not valid here");
    else if (strcmp (err.sqlstate, "57014") == 0) {
        fks_warn ("api: a query ran into FKS_PG_STATEMENT_TIMEOUT_MS and was cancelled");
        *status = s_done (r, fks_http_error (r->conn, 503, "Retry-After: 1\r\n", "unavailable",
                                             NULL, "the query took longer than the database "
                                             "statement timeout; retry later"));
    }
    else
        *status = s_unavailable (r, err.msg);
    return NULL;
}

// ---------------------------------------------------------------------------------------------
//  Lists

//  A query string's '+' is a space (form encoding), so an offset sent unencoded
//  (?since=2026-01-02T09:00:00+01:00) arrives as "...09:00:00 01:00", which no parser takes.
//  A time followed by a space and HH, HHMM or HH:MM can only be that: the '+' is put back.
//  ("2026-01-02 09:00", a date and a time, has no ':' before its space and is left alone.)
static void
s_since_offset (char *since)
{
    char *sp = strrchr (since, ' ');
    if (!sp || !memchr (since, ':', (size_t) (sp - since)))
        return;
    const char *z = sp + 1;
    size_t n = strlen (z);
    bool hh = n >= 2 && isdigit ((unsigned char) z[0]) && isdigit ((unsigned char) z[1]);
    bool ok = hh && (n == 2
                     || (n == 4 && isdigit ((unsigned char) z[2]) && isdigit ((unsigned char) z[3]))
                     || (n == 5 && z[2] == ':' && isdigit ((unsigned char) z[3])
                         && isdigit ((unsigned char) z[4])));
    if (ok)
        *sp = '+';
}

static int
s_list (s_req_t *r, const s_list_t *list)
{
    char symbol[40], status[24], since[48], cursor[80];
    int limit;
    int st = s_limit (r, &limit);
    if (st)
        return st;
    int n_sym = s_symbol_query (r, false, list->sql == s_sql_alerts, symbol, &st);
    if (st)
        return st;
    int n_st = fks_http_query (r->conn, "status", status, sizeof status);
    if (n_st != -1 && (!list->has_status || n_st < 0 || !s_in (status, list->statuses)))
        return s_bad (r, "status", list->has_status ? "unknown status for this list"
                                                    : "this list has no status filter");
    int n_since = fks_http_query (r->conn, "since", since, sizeof since);
    if (n_since == -2 || n_since == 0)
        return s_bad (r, "since", "since must be an ISO 8601 time");
    if (n_since > 0)
        for (int i = 0; i < n_since; i++)
            if (!isdigit ((unsigned char) since[i]) && !strchr ("-:.TZ+ ", since[i]))
                return s_bad (r, "since", "since must be an ISO 8601 time");
    if (n_since > 0)
        s_since_offset (since);
    char us[24] = "", cid[FKS_ID_STR_SIZE] = "";
    int n_cur = fks_http_query (r->conn, "cursor", cursor, sizeof cursor);
    if (n_cur != -1) {
        char *dot = n_cur > 0 ? strchr (cursor, '.') : NULL;
        fks_id_t id;
        bool ok = dot && s_cursor_us_ok (cursor, (size_t) (dot - cursor));
        ok = ok && fks_id_parse (dot + 1, strlen (dot + 1), &id) == 0;
        if (!ok)
            return s_bad (r, "cursor", "cursor must be a value of a previous page's next");
        memcpy (us, cursor, (size_t) (dot - cursor));
        us[dot - cursor] = '\0';
        fks_id_format (&id, cid);
    }
    char lim[16];
    snprintf (lim, sizeof lim, "%d", limit + 1);
    const char *values[6] = { n_sym >= 0 ? symbol : NULL, n_st >= 0 ? status : NULL,
                              n_since > 0 ? since : NULL, us[0] ? us : NULL,
                              cid[0] ? cid : NULL, lim };
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    int status_code = 0;
    PGresult *res;
    if (n_since > 0) {
        //  PostgreSQL's own reading of the time (what the list query will do with it), so a
        //  refusal names since and no other parameter.
        const char *v1[1] = { since };
        res = s_query (r, pg, "SELECT $1::timestamptz", 1, v1, "since", &status_code);
        if (!res) {
            fks_api_pg_put (r->api, pg);
            return status_code;
        }
        PQclear (res);
    }
    res = s_query (r, pg, list->sql, 6, values, NULL, &status_code);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return status_code;
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_puts (&b, "{\"items\":[");
    int rows = PQntuples (res);
    int shown = rows > limit ? limit : rows;
    for (int i = 0; i < shown; i++) {
        if (i)
            fks_sbuf_puts (&b, ",");
        fks_sbuf_puts (&b, PQgetvalue (res, i, 0));
    }
    fks_sbuf_puts (&b, "],\"next\":");
    if (rows > limit && shown > 0)
        fks_sbuf_printf (&b, "\"%s.%s\"}", PQgetvalue (res, shown - 1, 1),
                         PQgetvalue (res, shown - 1, 2));
    else
        fks_sbuf_puts (&b, "null}");
    PQclear (res);
    if (b.failed) {
        fks_sbuf_free (&b);
        return s_unavailable (r, "the page does not fit in memory");
    }
    st = fks_http_json (r->conn, 200, b.data, b.len);
    fks_sbuf_free (&b);
    return s_done (r, st);
}

typedef struct {
    bool known;
    double price;               /* > 0, finite */
    int64_t ts_ms;              /* Unix ms of the price; 0 when not stored */
    const char *source;         /* "price" (Redis) or "fill" (the symbol's newest fill) */
} s_mark_t;

//  Reads the marks of the n symbols in column col of res into marks (all unknown first), in
//  one Redis round trip (common/prices.h). Returns 0, or -1 when Redis could not be read
//  (every mark stays unknown).
static int
s_marks (fks_api_t *api, PGresult *res, int col, s_mark_t *marks, size_t n)
{
    if (n == 0)
        return 0;
    memset (marks, 0, n * sizeof *marks);
    const char **names = calloc (n, sizeof *names);
    double *prices = calloc (n, sizeof *prices);
    int64_t *ts = calloc (n, sizeof *ts);
    bool *found = calloc (n, sizeof *found);
    int rc = -1;
    if (!names || !prices || !ts || !found)
        fks_warn ("api: positions: out of memory for the price lookup");
    else {
        for (size_t i = 0; i < n; i++)
            names[i] = PQgetvalue (res, (int) i, col);
        fks_redis_err_t err = { .msg = "" };
        pthread_mutex_lock (&api->redis_mutex);
        rc = fks_price_get_many (api->redis, names, n, prices, ts, found, &err);
        pthread_mutex_unlock (&api->redis_mutex);
        if (rc != 0)
            fks_warn ("api: positions: latest prices unavailable, valued at the last fills: %s",
                      err.msg);
        for (size_t i = 0; rc == 0 && i < n; i++)
            marks[i] = (s_mark_t) { found[i], prices[i], ts[i], "price" };
    }
    free (names);
    free (prices);
    free (ts);
    free (found);
    return rc;
}

//  A money amount computed in double precision, rounded to 8 decimal places (below 9e7, where
//  that is finer than a double's own precision), so that (42100.3 - 42000.1) * 0.1 shows as
//  10.02 rather than 10.020000000000437.
static double
s_round8 (double v)
{
    if (fabs (v) < 9e7)
        v = round (v * 1e8) / 1e8;
    return v == 0 ? 0 : v;              /* never -0 */
}

//  GET /api/v1/positions: the rows, each valued at its symbol's latest price (mark_price, of
//  mark_time), unrealized_pnl = (mark_price - avg_price) * qty, which has the right sign for
//  shorts (qty < 0). Without a latest price (no market data feed, or Redis cannot be read)
//  the position is valued at the price of its symbol's newest fill, as the execution worker
//  values it in position.updated (envelope.md, last_price), so the list and the stream agree;
//  mark_source says which. A flat position's unrealized_pnl is 0; otherwise it is null while
//  neither is known (the positions are still listed). A price is used however old it is;
//  mark_time says how old.
static int
s_positions (s_req_t *r)
{
    char symbol[40], cursor[40];
    int limit, st = s_limit_or (r, S_LIMIT_MAX, &limit);
    if (st)
        return st;
    int n_sym = s_symbol_query (r, false, false, symbol, &st);
    if (st)
        return st;
    //  The cursor is the last symbol of the page before (the list is in symbol order).
    int n_cur = fks_http_query (r->conn, "cursor", cursor, sizeof cursor);
    bool cur_ok = n_cur == -1 || (n_cur > 0 && n_cur <= 32);
    for (int i = 0; cur_ok && i < n_cur; i++)
        cur_ok = isalnum ((unsigned char) cursor[i]) || strchr ("._/!:-", cursor[i]);
    if (!cur_ok)
        return s_bad (r, "cursor", "cursor must be a value of a previous page's next");
    char lim[16];
    snprintf (lim, sizeof lim, "%d", limit + 1);
    const char *values[3] = { n_sym >= 0 ? symbol : NULL, n_cur > 0 ? cursor : NULL, lim };
    //  The symbol's newest fill: the one stored last (created_at, then id, the order of
    //  fills_symbol_created_idx), the last one the execution worker applied to the position.
    static const char sql[] =
        "SELECT json_build_object ('symbol', p.symbol, 'qty', p.qty, 'avg_price', p.avg_price,"
        " 'realized_pnl', p.realized_pnl, 'fees', p.fees,"
        " 'updated_at', " S_TS ("p.updated_at") ")::text, p.symbol, p.qty::float8,"
        " p.avg_price::float8, f.price::float8, (extract (epoch FROM f.ts) * 1000)::bigint"
        " FROM positions p LEFT JOIN LATERAL (SELECT price, ts FROM fills"
        "   WHERE fills.symbol = p.symbol ORDER BY created_at DESC, id DESC LIMIT 1) f ON true"
        " WHERE ($1::text IS NULL OR p.symbol = $1) AND ($2::text IS NULL OR p.symbol > $2)"
        " ORDER BY p.symbol LIMIT $3::int";
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    PGresult *res = s_query (r, pg, sql, 3, values, NULL, &st);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return st;
    size_t rows = (size_t) PQntuples (res);
    bool more = rows > (size_t) limit;
    if (more)
        rows = (size_t) limit;
    s_mark_t *marks = rows ? calloc (rows, sizeof *marks) : NULL;
    if (rows && !marks) {
        PQclear (res);
        return s_unavailable (r, "out of memory");
    }
    s_marks (r->api, res, 1, marks, rows);
    for (size_t i = 0; i < rows; i++) {
        double last = PQgetisnull (res, (int) i, 4) ? 0
                    : strtod (PQgetvalue (res, (int) i, 4), NULL);
        if (!marks[i].known && last > 0 && isfinite (last))
            marks[i] = (s_mark_t) { true, last,
                                    strtoll (PQgetvalue (res, (int) i, 5), NULL, 10), "fill" };
    }
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_puts (&b, "{\"items\":[");
    for (size_t i = 0; i < rows; i++) {
        const char *obj = PQgetvalue (res, (int) i, 0);
        size_t olen = strlen (obj);
        if (i)
            fks_sbuf_puts (&b, ",");
        fks_sbuf_put (&b, obj, olen > 0 ? olen - 1 : 0);       /* without the closing brace */
        double qty = strtod (PQgetvalue (res, (int) i, 2), NULL);
        double avg = strtod (PQgetvalue (res, (int) i, 3), NULL);
        fks_sbuf_puts (&b, ", \"mark_price\" : ");
        if (marks[i].known)
            fks_sbuf_json_double (&b, marks[i].price);
        else
            fks_sbuf_puts (&b, "null");
        fks_sbuf_puts (&b, ", \"mark_time\" : ");
        if (marks[i].known && marks[i].ts_ms > 0) {
            time_t secs = (time_t) (marks[i].ts_ms / 1000);
            struct tm tm;
            char when[40];
            gmtime_r (&secs, &tm);
            strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
            fks_sbuf_printf (&b, "\"%s.%03dZ\"", when, (int) (marks[i].ts_ms % 1000));
        }
        else
            fks_sbuf_puts (&b, "null");
        fks_sbuf_puts (&b, ", \"mark_source\" : ");
        if (marks[i].known)
            fks_sbuf_printf (&b, "\"%s\"", marks[i].source);
        else
            fks_sbuf_puts (&b, "null");
        fks_sbuf_puts (&b, ", \"unrealized_pnl\" : ");
        if (qty == 0)
            fks_sbuf_puts (&b, "0");
        else if (marks[i].known)
            fks_sbuf_json_double (&b, s_round8 ((marks[i].price - avg) * qty));
        else
            fks_sbuf_puts (&b, "null");
        fks_sbuf_puts (&b, "}");
    }
    fks_sbuf_puts (&b, "],\"next\":");
    if (more)
        fks_sbuf_json_str (&b, PQgetvalue (res, (int) rows - 1, 1),
                           strlen (PQgetvalue (res, (int) rows - 1, 1)));
    else
        fks_sbuf_puts (&b, "null");
    fks_sbuf_puts (&b, "}");
    PQclear (res);
    free (marks);
    if (b.failed) {
        fks_sbuf_free (&b);
        return s_unavailable (r, "the page does not fit in memory");
    }
    st = fks_http_json (r->conn, 200, b.data, b.len);
    fks_sbuf_free (&b);
    return s_done (r, st);
}

static int
s_bars (s_req_t *r)
{
    char symbol[40], interval[16], cursor[24];
    int limit;
    int st = s_limit (r, &limit);
    if (st)
        return st;
    s_symbol_query (r, true, false, symbol, &st);
    if (st)
        return st;
    int n_iv = fks_http_query (r->conn, "interval", interval, sizeof interval);
    bool iv_ok = n_iv > 1 && n_iv <= 5 && strchr ("smhdwM", interval[n_iv - 1]);
    for (int i = 0; iv_ok && i < n_iv - 1; i++)
        iv_ok = isdigit ((unsigned char) interval[i]) && !(i == 0 && interval[i] == '0');
    if (!iv_ok)
        return s_bad (r, "interval", "interval is required, e.g. 1m, 5m, 1h, 1d");
    int n_cur = fks_http_query (r->conn, "cursor", cursor, sizeof cursor);
    bool cur_ok = n_cur == -1 || (n_cur > 0 && s_cursor_us_ok (cursor, (size_t) n_cur));
    if (!cur_ok)
        return s_bad (r, "cursor", "cursor must be a value of a previous page's next");
    char lim[16];
    snprintf (lim, sizeof lim, "%d", limit + 1);
    const char *values[4] = { symbol, interval, n_cur > 0 ? cursor : NULL, lim };
    static const char sql[] =
        "SELECT json_build_object ('symbol', symbol, 'interval', interval, 'open_time', "
        S_TS ("open_time") ", 'open', open, 'high', high, 'low', low, 'close', close,"
        " 'volume', volume, 'source', source)::text, " S_CURSOR ("open_time")
        " FROM bars WHERE symbol = $1 AND interval = $2"
        " AND ($3::bigint IS NULL OR open_time < timestamptz 'epoch' + $3::bigint * interval '1 microsecond')"
        " ORDER BY open_time DESC LIMIT $4";
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    PGresult *res = s_query (r, pg, sql, 4, values, NULL, &st);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return st;
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_puts (&b, "{\"items\":[");
    int rows = PQntuples (res);
    int shown = rows > limit ? limit : rows;
    for (int i = 0; i < shown; i++) {
        if (i)
            fks_sbuf_puts (&b, ",");
        fks_sbuf_puts (&b, PQgetvalue (res, i, 0));
    }
    fks_sbuf_puts (&b, "],\"next\":");
    if (rows > limit && shown > 0)
        fks_sbuf_printf (&b, "\"%s\"}", PQgetvalue (res, shown - 1, 1));
    else
        fks_sbuf_puts (&b, "null}");
    PQclear (res);
    st = fks_http_json (r->conn, 200, b.data ? b.data : "", b.len);
    fks_sbuf_free (&b);
    return s_done (r, st);
}

//  An event position parameter (?after=, ?cursor=): absent (0, *given false), an event seq
//  of 1-18 digits (0, *seq set), or the 400 reply's status.
static int
s_event_pos (s_req_t *r, const char *name, bool *given, long long *seq)
{
    char v[24];
    int n = fks_http_query (r->conn, name, v, sizeof v);
    *given = n != -1;
    *seq = 0;
    if (n == -1)
        return 0;
    bool ok = n > 0 && n <= 18;
    for (int i = 0; ok && i < n; i++)
        ok = isdigit ((unsigned char) v[i]);
    if (!ok)
        return s_bad (r, name, strcmp (name, "cursor") == 0
                               ? "cursor must be a value of a previous page's next"
                               : "after must be an event seq (a non-negative integer)");
    *seq = strtoll (v, NULL, 10);
    return 0;
}

//  GET /api/v1/events?after=<seq>&type=<prefix>&limit=, or ?cursor=<next> as every list
//  pages: `next` is the seq of the page's last event, so the two name the same kind of
//  position. Given both, both hold - events after the later of the two -, so a pager that
//  started with ?after= and adds the cursor it was given moves on page by page.
static int
s_events (s_req_t *r)
{
    char after[24], type[64], like[130];
    int limit;
    int st = s_limit (r, &limit);
    if (st)
        return st;
    bool has_after, has_cursor;
    long long after_seq, cursor_seq;
    if ((st = s_event_pos (r, "after", &has_after, &after_seq)) != 0
        || (st = s_event_pos (r, "cursor", &has_cursor, &cursor_seq)) != 0)
        return st;
    bool by_cursor = has_cursor && (!has_after || cursor_seq >= after_seq);
    snprintf (after, sizeof after, "%lld", by_cursor ? cursor_seq : has_after ? after_seq : 0);
    const char *pos_field = by_cursor ? "cursor" : "after";
    int n_type = fks_http_query (r->conn, "type", type, sizeof type);
    if (n_type != -1) {
        bool ok = n_type > 0;
        for (int i = 0; ok && i < n_type; i++)
            ok = (type[i] >= 'a' && type[i] <= 'z') || isdigit ((unsigned char) type[i])
                 || type[i] == '.' || type[i] == '_';
        if (!ok)
            return s_bad (r, "type", "type must be a type or a prefix such as order.");
        size_t k = 0;
        for (int i = 0; i < n_type; i++) {
            if (type[i] == '_')
                like[k++] = '\\';
            like[k++] = type[i];
        }
        like[k++] = '%';
        like[k] = '\0';
    }
    char lim[16], xid[24] = "0";
    snprintf (lim, sizeof lim, "%d", limit + 1);
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    //  The no-gap rule: resume after the (xid, seq) of the row named by after; only rows whose
    //  transaction is older than every running one (final), in (xid, seq) order.
    PGresult *res = NULL;
    if (strcmp (after, "0") != 0) {
        const char *v1[1] = { after };
        res = s_query (r, pg, "SELECT xid::text FROM events WHERE seq = $1::bigint", 1, v1,
                       NULL, &st);
        if (!res) {
            fks_api_pg_put (r->api, pg);
            return st;
        }
        bool found = PQntuples (res) == 1;
        if (found)
            snprintf (xid, sizeof xid, "%s", PQgetvalue (res, 0, 0));
        PQclear (res);
        if (!found) {
            fks_api_pg_put (r->api, pg);
            return s_bad (r, pos_field, by_cursor ? "cursor names no stored event"
                                                   : "after names no stored event");
        }
    }
    const char *values[4] = { xid, after, n_type >= 0 ? like : NULL, lim };
    static const char sql[] =
        "SELECT seq, envelope FROM events"
        " WHERE (xid, seq) > ($1::xid8, $2::bigint)"
        " AND xid < pg_snapshot_xmin (pg_current_snapshot ())"
        " AND ($3::text IS NULL OR type LIKE $3)"
        " ORDER BY xid, seq LIMIT $4";
    res = s_query (r, pg, sql, 4, values, NULL, &st);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return st;
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_puts (&b, "{\"items\":[");
    int rows = PQntuples (res);
    int shown = rows > limit ? limit : rows;
    for (int i = 0; i < shown; i++) {
        if (i)
            fks_sbuf_puts (&b, ",");
        size_t elen = 0;
        unsigned char *env = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, i, 1),
                                              &elen);
        fks_api_event_json (&b, strtoll (PQgetvalue (res, i, 0), NULL, 10), env, env ? elen : 0);
        PQfreemem (env);
    }
    fks_sbuf_puts (&b, "],\"next\":");
    if (rows > limit && shown > 0)
        fks_sbuf_printf (&b, "\"%s\"}", PQgetvalue (res, shown - 1, 0));
    else
        fks_sbuf_puts (&b, "null}");
    PQclear (res);
    if (b.failed) {
        fks_sbuf_free (&b);
        return s_unavailable (r, "the page does not fit in memory");
    }
    st = fks_http_json (r->conn, 200, b.data, b.len);
    fks_sbuf_free (&b);
    return s_done (r, st);
}

// ---------------------------------------------------------------------------------------------
//  One item

//  GET /api/v1/<signals|orders|fills>/{id}
static int
s_get_one (s_req_t *r, const char *sql, const char *seg, const char *what)
{
    fks_id_t id;
    char ids[FKS_ID_STR_SIZE];
    int st = s_path_id (r, seg, &id, ids);
    if (st)
        return st;
    const char *values[1] = { ids };
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    PGresult *res = s_query (r, pg, sql, 1, values, NULL, &st);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return st;
    if (PQntuples (res) == 0) {
        PQclear (res);
        return s_not_found (r, what);
    }
    st = fks_http_json (r->conn, 200, PQgetvalue (res, 0, 0),
                        (size_t) PQgetlength (res, 0, 0));
    PQclear (res);
    return s_done (r, st);
}

//  GET /api/v1/alerts/{id}: the alert, its stages (events with corr = id), its signal and
//  orders, read in one repeatable-read snapshot.
static int
s_alert (s_req_t *r, const char *seg)
{
    fks_id_t id;
    char ids[FKS_ID_STR_SIZE];
    int st = s_path_id (r, seg, &id, ids);
    if (st)
        return st;
    const char *values[1] = { ids };
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg)
        return s_unavailable (r, "no database connection came free");
    fks_pg_err_t err;
    PGresult *a = NULL, *ev = NULL, *sig = NULL, *ord = NULL;
    if (fks_pg_command (pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &err) != 0) {
        fks_api_pg_put (r->api, pg);
        return s_unavailable (r, err.msg);
    }
    a = fks_pg_query (pg, "SELECT " S_ALERT_JSON " FROM inbox WHERE id = $1::uuid", 1, values,
                      NULL, NULL, &err);
    if (a && PQntuples (a) > 0) {
        ev = fks_pg_query (pg, "SELECT seq, envelope FROM events WHERE corr = $1::uuid"
                               " ORDER BY seq LIMIT 1000", 1, values, NULL, NULL, &err);
        if (ev)
            sig = fks_pg_query (pg, "SELECT " S_SIGNAL_JSON " FROM signals WHERE inbox_id = $1::uuid",
                                1, values, NULL, NULL, &err);
        if (sig)
            ord = fks_pg_query (pg, "SELECT " S_ORDER_JSON " FROM orders WHERE corr = $1::uuid"
                                    " ORDER BY created_at, id LIMIT 100", 1, values, NULL, NULL,
                                &err);
    }
    bool ok = a && (PQntuples (a) == 0 || ord);
    if (ok)
        fks_pg_commit (pg, &err);
    else
        fks_pg_rollback (pg);
    fks_api_pg_put (r->api, pg);
    if (!ok) {
        PQclear (a);
        PQclear (ev);
        PQclear (sig);
        return s_unavailable (r, err.msg);
    }
    if (PQntuples (a) == 0) {
        PQclear (a);
        return s_not_found (r, "no alert with this id");
    }
    //  The alert object, with stages, signal and orders added to it.
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    const char *obj = PQgetvalue (a, 0, 0);
    size_t olen = strlen (obj);
    fks_sbuf_put (&b, obj, olen > 0 ? olen - 1 : 0);       /* without the closing brace */
    fks_sbuf_puts (&b, ",\"stages\":[");
    for (int i = 0; i < PQntuples (ev); i++) {
        if (i)
            fks_sbuf_puts (&b, ",");
        size_t elen = 0;
        unsigned char *env = PQunescapeBytea ((const unsigned char *) PQgetvalue (ev, i, 1),
                                              &elen);
        fks_api_event_json (&b, strtoll (PQgetvalue (ev, i, 0), NULL, 10), env, env ? elen : 0);
        PQfreemem (env);
    }
    fks_sbuf_puts (&b, "],\"signal\":");
    fks_sbuf_puts (&b, PQntuples (sig) > 0 ? PQgetvalue (sig, 0, 0) : "null");
    fks_sbuf_puts (&b, ",\"orders\":[");
    for (int i = 0; i < PQntuples (ord); i++) {
        if (i)
            fks_sbuf_puts (&b, ",");
        fks_sbuf_puts (&b, PQgetvalue (ord, i, 0));
    }
    fks_sbuf_puts (&b, "]}");
    PQclear (a);
    PQclear (ev);
    PQclear (sig);
    PQclear (ord);
    if (b.failed) {
        fks_sbuf_free (&b);
        return s_unavailable (r, "the alert does not fit in memory");
    }
    st = fks_http_json (r->conn, 200, b.data, b.len);
    fks_sbuf_free (&b);
    return s_done (r, st);
}

// ---------------------------------------------------------------------------------------------
//  Writes

//  An id derived from the caller's Idempotency-Key: SHA-256 over (what, owner, key), cut to
//  16 bytes with the UUID version 8 and variant bits. owner is the API key's owner
//  (apikeys.h: its row id, or "bootstrap"), never its name, which other keys may share.
static void
s_derived_id (const char *what, const char *owner, const char *idem, fks_id_t *out)
{
    uint8_t d[32];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL);
    EVP_DigestUpdate (ctx, what, strlen (what) + 1);
    EVP_DigestUpdate (ctx, owner, strlen (owner) + 1);
    EVP_DigestUpdate (ctx, idem, strlen (idem));
    EVP_DigestFinal_ex (ctx, d, &n);
    EVP_MD_CTX_free (ctx);
    memcpy (out->b, d, FKS_ID_SIZE);
    out->b[6] = (uint8_t) ((out->b[6] & 0x0f) | 0x80);
    out->b[8] = (uint8_t) ((out->b[8] & 0x3f) | 0x80);
}

//  The Idempotency-Key header: absent (0, *out empty), valid (0), or the 400 reply's status.
static int
s_idem_header (s_req_t *r, char out[S_ID_KEY_MAX + 1])
{
    out[0] = '\0';
    const char *h = fks_http_header (r->conn, "Idempotency-Key");
    if (!h)
        return 0;
    size_t n = strnlen (h, S_ID_KEY_MAX + 1);
    bool ok = n >= 1 && n <= S_ID_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char) h[i] > 0x20 && (unsigned char) h[i] < 0x7f;
    if (!ok)
        return s_bad (r, "Idempotency-Key", "Idempotency-Key must be 1-128 printable characters");
    memcpy (out, h, n);
    out[n] = '\0';
    return 0;
}

//  Stores an envelope in the outbox (one statement, autocommit) and publishes it. Returns 0,
//  1 when an envelope with this id exists (a retried request), -1 after answering 503.
static int
s_outbox (s_req_t *r, const fks_envelope_hdr_t *hdr, const msgpack_sbuffer *body, int *status)
{
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    fks_envelope_err_t eerr;
    if (fks_envelope_encode (hdr, body->data, body->size, &frame, &eerr) != 0) {
        msgpack_sbuffer_destroy (&frame);
        fks_error ("api: cannot encode %s: %s", hdr->type, eerr.msg);
        *status = s_done (r, fks_http_error (r->conn, 500, NULL, "internal", NULL,
                                             "the request could not be encoded"));
        return -1;
    }
    char id_s[FKS_ID_STR_SIZE], corr_s[FKS_ID_STR_SIZE], us[24];
    fks_id_format (&hdr->id, id_s);
    fks_id_format (&hdr->corr, corr_s);
    snprintf (us, sizeof us, "%" PRId64, hdr->ts / 1000);
    const char *values[5] = { id_s, hdr->type, corr_s, us, frame.data };
    int lengths[5] = { 0, 0, 0, 0, (int) frame.size };
    int formats[5] = { 0, 0, 0, 0, 1 };
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg) {
        msgpack_sbuffer_destroy (&frame);
        *status = s_unavailable (r, "no database connection came free");
        return -1;
    }
    fks_pg_err_t err;
    PGresult *res = fks_pg_query (pg,
        "INSERT INTO events (id, type, corr, src, ts, envelope)"
        " VALUES ($1::uuid, $2, $3::uuid, 'gateway',"
        "         timestamptz 'epoch' + $4::bigint * interval '1 microsecond', $5)"
        " ON CONFLICT (id) DO NOTHING RETURNING seq", 5, values, lengths, formats, &err);
    fks_api_pg_put (r->api, pg);
    if (!res) {
        msgpack_sbuffer_destroy (&frame);
        *status = s_unavailable (r, err.msg);
        return -1;
    }
    int inserted = PQntuples (res);
    PQclear (res);
    if (inserted && r->api->o.bus)
        fks_bus_publish (r->api->o.bus, hdr->type, frame.data, frame.size);
    msgpack_sbuffer_destroy (&frame);
    return inserted ? 0 : 1;
}

//  The outbox envelope stored under id (a request's derived id), decoded; NULL after
//  answering 503 (*status set), or NULL with *status 0 when there is none or it does not
//  decode (then it cannot be compared). *found, when given, says whether one is stored: a
//  lookup made before the request's own insert must tell none from one that does not decode.
static fks_envelope_t *
s_stored_envelope (s_req_t *r, const fks_id_t *id, bool *found, int *status)
{
    char ids[FKS_ID_STR_SIZE];
    fks_id_format (id, ids);
    const char *values[1] = { ids };
    *status = 0;
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg) {
        *status = s_unavailable (r, "no database connection came free");
        return NULL;
    }
    PGresult *res = s_query (r, pg, "SELECT envelope FROM events WHERE id = $1::uuid", 1, values,
                             NULL, status);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return NULL;
    fks_envelope_t *env = NULL;
    if (found)
        *found = PQntuples (res) == 1;
    if (PQntuples (res) == 1) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, 0, 0), &len);
        fks_envelope_err_t eerr;
        env = raw ? fks_envelope_decode (raw, len, &eerr) : NULL;
        if (!env)
            fks_warn ("api: the stored envelope %s does not decode", ids);
        PQfreemem (raw);
    }
    PQclear (res);
    return env;
}

//  422: the caller's Idempotency-Key was first used for another request.
static int
s_idem_reused (s_req_t *r, const char *what)
{
    char fields[256] = "";
    fks_log_field_str (fields, sizeof fields, "key", r->key.name);
    fks_log (FKS_LOG_INFO, NULL, fields, "an Idempotency-Key was reused for another %s", what);
    char msg[160];
    snprintf (msg, sizeof msg, "this Idempotency-Key was used for another %s; use a new key for a"
              " new request", what);
    return s_done (r, fks_http_error (r->conn, 422, NULL, "idempotency_key_reused",
                                      "Idempotency-Key", msg));
}

//  True when the stored order.requested body asks for the same order: the canonical request
//  is (symbol, side, type, qty, limit_price), as parsed, so JSON spelling does not matter.
static bool
s_same_order (const fks_envelope_t *env, const char *symbol, const char *side, const char *type,
              double qty, bool has_limit, double limit_price)
{
    char raw[40], s_symbol[FKS_SYMBOL_MAX], s_side[16], s_type[16];
    double s_qty = 0, s_limit = 0;
    //  Stored as sent before the gateway normalised it: compared in its one spelling.
    if (fks_envelope_get_str (env, "symbol", raw, sizeof raw) != 0
        || fks_symbol_normalize (raw, s_symbol, NULL, 0) != 0
        || fks_envelope_get_str (env, "side", s_side, sizeof s_side) != 0
        || fks_envelope_get_str (env, "type", s_type, sizeof s_type) != 0
        || fks_envelope_get_f64 (env, "qty", &s_qty) != 0)
        return false;
    int lrc = fks_envelope_get_f64 (env, "limit_price", &s_limit);
    if (lrc < 0 || (lrc == 0) != has_limit)
        return false;
    return strcmp (s_symbol, symbol) == 0 && strcmp (s_side, side) == 0
           && strcmp (s_type, type) == 0 && s_qty == qty && (!has_limit || s_limit == limit_price);
}

//  POST /api/v1/orders {symbol, side, type, qty, limit_price}
static int
s_order_create (s_req_t *r)
{
    char idem[S_ID_KEY_MAX + 1];
    int st = s_idem_header (r, idem);
    if (st)
        return st;
    const char *ct = fks_http_header (r->conn, "Content-Type");
    if (!ct || strncasecmp (ct, "application/json", 16) != 0
        || (ct[16] && ct[16] != ';' && ct[16] != ' ' && ct[16] != '\t'))
        return s_done (r, fks_http_error (r->conn, 415, NULL, "unsupported_media_type",
                                          "Content-Type", "send the order as application/json"));
    char *body = malloc (S_BODY_MAX);           /* civetweb's stacks are small */
    if (!body)
        return s_unavailable (r, "out of memory");
    size_t len = 0;
    int rb = fks_http_read_body (r->conn, body, S_BODY_MAX, &len);
    if (rb != 0) {
        free (body);
        if (rb == 1)
            return s_done (r, fks_http_error (r->conn, 413, NULL, "body_too_large", "body",
                                              "the body is larger than 16384 bytes"));
        return s_done (r, fks_http_error (r->conn, 408, NULL, "request_timeout", "body",
                                          "the body did not arrive in time"));
    }
    json_error_t jerr;
    json_t *j = json_loadb (body, len, JSON_REJECT_DUPLICATES, &jerr);
    free (body);
    if (!j || !json_is_object (j)) {
        json_decref (j);
        return s_bad (r, "body", "the body must be a JSON object");
    }
    const char *field = NULL, *msg = NULL;
    json_t *v;
    const char *side = NULL, *type = "market";
    char symbol[FKS_SYMBOL_MAX], why[160], whymsg[200];
    //  A field this endpoint does not take is refused, not dropped: an order sent with a
    //  stop_loss (or a misspelt limit price) was placed without it, and nothing said so.
    static const char *const known[] = { "symbol", "side", "type", "qty", "limit_price", NULL };
    const char *k;
    json_object_foreach (j, k, v) {
        if (!s_in (k, known)) {
            snprintf (whymsg, sizeof whymsg, "unknown field: an order takes symbol, side, type,"
                      " qty and limit_price only");
            char name[64];              /* the field as sent, cut to 63 bytes */
            snprintf (name, sizeof name, "%s", k);
            json_decref (j);
            return s_bad (r, name, whymsg);
        }
    }
    double qty = 0, limit_price = 0;
    bool has_limit = false;
    v = json_object_get (j, "symbol");
    if (!json_is_string (v) || !s_symbol_ok (json_string_value (v))) {
        field = "symbol";
        msg = "symbol is required: " S_SYMBOL_RULE;
        goto invalid;
    }
    //  In the one spelling the workers use (BINANCE:BTCUSDT is BTCUSDT); a symbol that has
    //  none ("BINANCE:") is refused here rather than accepted and never ordered.
    if (fks_symbol_normalize (json_string_value (v), symbol, why, sizeof why) != 0) {
        snprintf (whymsg, sizeof whymsg, "symbol: %s", why);
        field = "symbol";
        msg = whymsg;
        goto invalid;
    }
    v = json_object_get (j, "side");
    if (!json_is_string (v) || (strcmp (json_string_value (v), "buy") != 0
                                && strcmp (json_string_value (v), "sell") != 0)) {
        field = "side";
        msg = "side must be buy or sell";
        goto invalid;
    }
    side = json_string_value (v);
    v = json_object_get (j, "type");
    if (v && !json_is_null (v)) {
        if (!json_is_string (v) || (strcmp (json_string_value (v), "market") != 0
                                    && strcmp (json_string_value (v), "limit") != 0)) {
            field = "type";
            msg = "type must be market or limit";
            goto invalid;
        }
        type = json_string_value (v);
    }
    v = json_object_get (j, "qty");
    //  1e-12: the finest step a quantity is kept to (workers/qty.h, 12 decimals).
    if (!json_is_number (v) || !isfinite (json_number_value (v))
        || json_number_value (v) < 1e-12 || json_number_value (v) > 1e12) {
        field = "qty";
        msg = "qty must be a number from 1e-12 to 1e12";
        goto invalid;
    }
    qty = json_number_value (v);
    v = json_object_get (j, "limit_price");
    if (v && !json_is_null (v)) {
        if (!json_is_number (v) || !isfinite (json_number_value (v))
            || json_number_value (v) <= 0 || json_number_value (v) > 1e12) {
            field = "limit_price";
            msg = "limit_price must be a number above 0";
            goto invalid;
        }
        limit_price = json_number_value (v);
        has_limit = true;
    }
    if (strcmp (type, "limit") == 0 && !has_limit) {
        field = "limit_price";
        msg = "a limit order needs limit_price";
        goto invalid;
    }
    if (strcmp (type, "market") == 0 && has_limit) {
        field = "limit_price";
        msg = "a market order takes no limit_price";
        goto invalid;
    }

    fks_id_t order_id;
    fks_envelope_hdr_t hdr;
    if (idem[0])
        s_derived_id ("order", r->key.owner, idem, &order_id);
    else if (fks_id_new (&order_id) != 0) {
        json_decref (j);
        return s_unavailable (r, "no random ids");
    }
    if (fks_envelope_hdr_init (&hdr, "order.requested", "gateway", &order_id, NULL) != 0) {
        json_decref (j);
        return s_unavailable (r, "no envelope header");
    }
    if (idem[0])
        s_derived_id ("order.requested", r->key.owner, idem, &hdr.id);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, has_limit ? 7 : 6);
    fks_pack_kv_id (&pk, "order_id", &order_id);
    fks_pack_kv_str (&pk, "symbol", symbol);
    fks_pack_kv_str (&pk, "side", side);
    fks_pack_kv_str (&pk, "type", type);
    fks_pack_kv_f64 (&pk, "qty", qty);
    if (has_limit)
        fks_pack_kv_f64 (&pk, "limit_price", limit_price);
    fks_pack_kv_str (&pk, "requested_by", r->key.name);
    int rc = s_outbox (r, &hdr, &sb, &st);
    msgpack_sbuffer_destroy (&sb);
    if (rc == 1) {
        //  A retry, or the key reused for another order: compare with the stored request
        //  (the envelope is the record of it; no schema change needed).
        fks_envelope_t *prev = s_stored_envelope (r, &hdr.id, NULL, &st);
        bool same = !prev || s_same_order (prev, symbol, side, type, qty, has_limit,
                                           limit_price);
        fks_envelope_destroy (&prev);
        if (st) {
            json_decref (j);
            return st;
        }
        if (!same) {
            json_decref (j);
            return s_idem_reused (r, "order");
        }
    }
    json_decref (j);                    /* side and type point into it until here */
    if (rc < 0)
        return st;
    char ids[FKS_ID_STR_SIZE], out[128];
    fks_id_format (&order_id, ids);
    int n = snprintf (out, sizeof out, "{\"id\":\"%s\",\"status\":\"%s\"}", ids,
                      rc == 0 ? "requested" : "duplicate");
    char fields[256] = "";
    fks_log_field_str (fields, sizeof fields, "key", r->key.name);
    fks_log_field_str (fields, sizeof fields, "symbol", symbol);
    fks_log (FKS_LOG_INFO, ids, fields, "manual order %s", rc == 0 ? "requested" : "repeated");
    return s_done (r, fks_http_json (r->conn, rc == 0 ? 202 : 200, out, (size_t) n));

invalid:
    json_decref (j);
    return s_bad (r, field, msg);
}

//  The cancel stored under env_id (the derived id of the caller's Idempotency-Key), against a
//  cancel of order_id: 0 when none is stored, 1 when it asked to cancel this order (the request
//  repeated), -1 after answering (*status set): 422 when it was another order's cancel, 503.
//  A stored cancel that does not decode cannot be compared and counts as this one, as a
//  repeated manual order does.
static int
s_cancel_stored (s_req_t *r, const fks_id_t *env_id, const fks_id_t *order_id, int *status)
{
    bool found = false;
    fks_envelope_t *prev = s_stored_envelope (r, env_id, &found, status);
    fks_id_t prev_id;
    bool same = !prev || (fks_envelope_get_id (prev, "order_id", &prev_id) == 0
                          && memcmp (prev_id.b, order_id->b, FKS_ID_SIZE) == 0);
    fks_envelope_destroy (&prev);
    if (*status)
        return -1;
    if (!found)
        return 0;
    if (!same) {
        *status = s_idem_reused (r, "cancel");
        return -1;
    }
    return 1;
}

//  Asks the execution worker to cancel the order id (its text ids) if it is still open: 0 when
//  the request went to the outbox, 1 when env_id (NULL without an Idempotency-Key) was stored
//  meanwhile by the same request sent twice at once, -1 after answering (*status set): 404,
//  409 for an order that has ended, 422, 503.
static int
s_cancel_request (s_req_t *r, const fks_id_t *id, const char *ids, const fks_id_t *env_id,
                  int *status)
{
    const char *values[1] = { ids };
    fks_pg_t *pg = fks_api_pg_get (r->api, S_POOL_WAIT_MS);
    if (!pg) {
        *status = s_unavailable (r, "no database connection came free");
        return -1;
    }
    PGresult *res = s_query (r, pg, "SELECT status, corr FROM orders WHERE id = $1::uuid", 1,
                             values, NULL, status);
    fks_api_pg_put (r->api, pg);
    if (!res)
        return -1;
    if (PQntuples (res) == 0) {
        PQclear (res);
        *status = s_not_found (r, "no order with this id");
        return -1;
    }
    const char *state = PQgetvalue (res, 0, 0);
    if (strcmp (state, "filled") == 0 || strcmp (state, "rejected") == 0
        || strcmp (state, "cancelled") == 0) {
        char msg[96];
        snprintf (msg, sizeof msg, "the order is %s: nothing to cancel", state);
        PQclear (res);
        *status = s_done (r, fks_http_error (r->conn, 409, NULL, "not_cancellable", NULL, msg));
        return -1;
    }
    fks_id_t corr = *id;
    if (!PQgetisnull (res, 0, 1))
        fks_id_parse (PQgetvalue (res, 0, 1), (size_t) PQgetlength (res, 0, 1), &corr);
    PQclear (res);
    fks_envelope_hdr_t hdr;
    if (fks_envelope_hdr_init (&hdr, "order.cancel_requested", "gateway", &corr, NULL) != 0) {
        *status = s_unavailable (r, "no envelope header");
        return -1;
    }
    if (env_id)
        hdr.id = *env_id;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    fks_pack_kv_id (&pk, "order_id", id);
    fks_pack_kv_str (&pk, "requested_by", r->key.name);
    int rc = s_outbox (r, &hdr, &sb, status);
    msgpack_sbuffer_destroy (&sb);
    if (rc == 1 && s_cancel_stored (r, &hdr.id, id, status) < 0)
        return -1;              /* the key's other request won the race */
    return rc;
}

//  DELETE /api/v1/orders/{id}
static int
s_order_cancel (s_req_t *r, const char *seg)
{
    fks_id_t id;
    char ids[FKS_ID_STR_SIZE];
    int st = s_path_id (r, seg, &id, ids);
    if (st)
        return st;
    char idem[S_ID_KEY_MAX + 1];
    st = s_idem_header (r, idem);
    if (st)
        return st;
    //  The Idempotency-Key before the order's state: the cancel a retry repeats may well be
    //  what ended the order, and a retry is answered as its first request was (200
    //  duplicate), never 409. A key first used for another order's cancel is 422 whatever
    //  state this order is in.
    fks_id_t env_id;
    int rc = 0;
    if (idem[0]) {
        s_derived_id ("order.cancel_requested", r->key.owner, idem, &env_id);
        rc = s_cancel_stored (r, &env_id, &id, &st);
    }
    if (rc == 0)
        rc = s_cancel_request (r, &id, ids, idem[0] ? &env_id : NULL, &st);
    if (rc < 0)
        return st;
    char out[128];
    int n = snprintf (out, sizeof out, "{\"id\":\"%s\",\"status\":\"%s\"}", ids,
                      rc == 0 ? "cancel_requested" : "duplicate");
    return s_done (r, fks_http_json (r->conn, rc == 0 ? 202 : 200, out, (size_t) n));
}


// ---------------------------------------------------------------------------------------------
//  Circuit breaker (common/breaker.h): GET /api/v1/breaker, POST /api/v1/breaker/reset

static void
s_breaker_json (fks_sbuf_t *b, const char *scope, const fks_breaker_status_t *st)
{
    fks_sbuf_puts (b, "{\"scope\":");
    fks_sbuf_json_str (b, scope, strlen (scope));
    fks_sbuf_printf (b, ",\"state\":\"%s\",\"consecutive_failures\":%" PRId64
                     ",\"window_failures\":%" PRId64 ",\"window_total\":%" PRId64
                     ",\"half_open_successes\":%" PRId64 ",\"changed_at_ms\":%" PRId64
                     ",\"opened_at_ms\":%" PRId64 ",\"reason\":",
                     fks_breaker_state_name (st->state), st->consecutive, st->window_failures,
                     st->window_total, st->half_open_ok, st->changed_at_ms, st->opened_at_ms);
    fks_sbuf_json_str (b, st->reason, strlen (st->reason));
    fks_sbuf_puts (b, "}");
}

static int
s_breaker (s_req_t *r, bool reset)
{
    char scope[FKS_BREAKER_SCOPE_MAX];
    int n = fks_http_query (r->conn, "scope", scope, sizeof scope);
    if (n == -1)
        snprintf (scope, sizeof scope, "global");
    else if (n < 0 || !fks_breaker_scope_valid (scope))
        return s_bad (r, "scope", "scope is 1-63 characters [a-z0-9:._-], e.g. global");
    fks_breaker_status_t st;
    fks_breaker_transition_t tr = FKS_BREAKER_NO_CHANGE;
    fks_redis_err_t err = { .msg = "" };
    char reason[FKS_BREAKER_REASON_MAX];
    snprintf (reason, sizeof reason, "reset by %s through the REST API", r->key.name);
    pthread_mutex_lock (&r->api->redis_mutex);
    fks_breaker_t *br = fks_breaker_new (r->api->redis, scope, &r->api->breaker_cfg);
    int rc = -1;
    if (br)
        rc = reset ? fks_breaker_reset (br, reason, fks_now_ms (), &st, &tr, &err)
                   : fks_breaker_status (br, fks_now_ms (), &st, &err);
    fks_breaker_destroy (&br);
    pthread_mutex_unlock (&r->api->redis_mutex);
    if (rc != 0) {
        fks_warn ("api: circuit breaker: %s", err.msg);
        return s_done (r, fks_http_error (r->conn, 503, "Retry-After: 1\r\n", "unavailable",
                                          NULL, "the circuit breaker's store (Redis) is "
                                                "unavailable; retry"));
    }
    if (reset) {
        char fields[256] = "";
        fks_log_field_str (fields, sizeof fields, "scope", scope);
        fks_log_field_str (fields, sizeof fields, "key", r->key.name);
        fks_log (FKS_LOG_WARN, NULL, fields, "circuit breaker reset by an operator");
    }
    if (tr == FKS_BREAKER_CLOSED_NOW) {
        //  The reset closed it: tell everyone (breaker.closed through the outbox).
        fks_envelope_hdr_t hdr;
        if (fks_envelope_hdr_init (&hdr, "breaker.closed", "gateway", NULL, NULL) == 0) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init (&sb);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, 2);
            fks_pack_kv_str (&pk, "scope", scope);
            fks_pack_kv_str (&pk, "reason", reason);
            int ost = 0;
            int orc = s_outbox (r, &hdr, &sb, &ost);
            msgpack_sbuffer_destroy (&sb);
            if (orc < 0)
                return ost;
        }
    }
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    s_breaker_json (&b, scope, &st);
    int status = fks_http_json (r->conn, 200, b.data ? b.data : "{}", b.len);
    fks_sbuf_free (&b);
    return s_done (r, status);
}

// ---------------------------------------------------------------------------------------------
//  Routing

static int
s_method_not_allowed (s_req_t *r, const char *allow)
{
    char hdr[64];
    snprintf (hdr, sizeof hdr, "Allow: %s\r\n", allow);
    return s_done (r, fks_http_error (r->conn, 405, hdr, "method_not_allowed", NULL,
                                      "this method is not allowed here"));
}

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    fks_api_t *self = cbdata;
    s_req_t r = { .api = self, .conn = conn, .route = "unknown" };
    const char *path = fks_http_path (conn);
    const char *method = fks_http_method (conn);
    if (strncmp (path, "/api/v1/", 8) != 0)
        return s_not_found (&r, "no such route");
    //  Split what follows /api/v1/ into at most two segments.
    char rest[160];
    if (strlen (path + 8) >= sizeof rest)
        return s_not_found (&r, "no such route");
    snprintf (rest, sizeof rest, "%s", path + 8);
    size_t rl = strlen (rest);
    if (rl > 0 && rest[rl - 1] == '/')
        rest[--rl] = '\0';
    char *seg2 = strchr (rest, '/');
    if (seg2) {
        *seg2++ = '\0';
        if (strchr (seg2, '/'))
            return s_not_found (&r, "no such route");
    }
    const char *seg1 = rest;
    //  HEAD is GET without the content (server.c leaves the body out): every server must
    //  take it where it takes GET (RFC 9110, 9.1).
    bool get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;
    bool post = strcmp (method, "POST") == 0;
    bool del = strcmp (method, "DELETE") == 0;

    //  Which route, which scope; unknown routes are 404 before authentication.
    const s_list_t *list = NULL;
    for (size_t i = 0; i < sizeof s_lists / sizeof s_lists[0]; i++)
        if (strcmp (seg1, s_lists[i].name) == 0)
            list = &s_lists[i];
    bool breaker = strcmp (seg1, "breaker") == 0;
    bool known = list || breaker || strcmp (seg1, "positions") == 0
                 || strcmp (seg1, "bars") == 0 || strcmp (seg1, "events") == 0;
    bool seg2_ok = !seg2 || (list && *seg2) || (breaker && strcmp (seg2, "reset") == 0);
    if (!known || !seg2_ok)
        return s_not_found (&r, "no such route");
    r.route = seg1;
    unsigned scope = FKS_SCOPE_READ;
    if (breaker) {
        if (seg2 && !post)
            return s_method_not_allowed (&r, "POST");
        if (!seg2 && !get)
            return s_method_not_allowed (&r, "GET, HEAD");
        if (seg2)
            scope = FKS_SCOPE_ADMIN;
    }
    else if (list && strcmp (seg1, "orders") == 0) {
        if (!seg2 && !get && !post)
            return s_method_not_allowed (&r, "GET, HEAD, POST");
        if (seg2 && !get && !del)
            return s_method_not_allowed (&r, "GET, HEAD, DELETE");
        if (post || del)
            scope = FKS_SCOPE_TRADE;
    }
    else if (!get)
        return s_method_not_allowed (&r, "GET, HEAD");

    int st = fks_api_authorize (self, conn, scope, false, &r.key);
    if (st)
        return s_done (&r, st);
    //  The parameters each route reads, once each (fks_http_query takes the first): a second
    //  one, which a client or a proxy in front may take as the one that counts, is refused,
    //  and so is one the route does not take (?types= on /events, the stream's spelling, was
    //  ignored and every event listed).
    static const char *const p_none[] = { NULL };
    static const char *const p_list[] = { "limit", "cursor", "symbol", "status", "since", NULL };
    static const char *const p_positions[] = { "limit", "cursor", "symbol", NULL };
    static const char *const p_bars[] = { "limit", "cursor", "symbol", "interval", NULL };
    static const char *const p_events[] = { "limit", "cursor", "after", "type", NULL };
    static const char *const p_breaker[] = { "scope", NULL };
    const char *const *takes = breaker ? p_breaker
                             : strcmp (seg1, "positions") == 0 ? p_positions
                             : strcmp (seg1, "bars") == 0 ? p_bars
                             : strcmp (seg1, "events") == 0 ? p_events
                             : (list && !seg2 && get) ? p_list : p_none;
    char name[48];
    fks_query_check_t qc = fks_http_query_check (conn, NULL, takes, name, sizeof name);
    if (qc != FKS_QUERY_OK) {
        char msg[160];
        if (qc == FKS_QUERY_UNKNOWN) {
            int n = snprintf (msg, sizeof msg, "this route takes no parameter %s", name);
            for (int i = 0; takes[i] && n > 0 && (size_t) n < sizeof msg; i++)
                n += snprintf (msg + n, sizeof msg - (size_t) n, "%s%s",
                               i ? ", " : "; it takes ", takes[i]);
        }
        else if (qc == FKS_QUERY_TOO_MANY)
            snprintf (msg, sizeof msg, "the query has more than 64 parameters");
        else
            snprintf (msg, sizeof msg, "%s is given more than once", name);
        return s_bad (&r, name, msg);
    }

    if (breaker)
        return s_breaker (&r, seg2 != NULL);
    if (strcmp (seg1, "positions") == 0)
        return s_positions (&r);
    if (strcmp (seg1, "bars") == 0)
        return s_bars (&r);
    if (strcmp (seg1, "events") == 0)
        return s_events (&r);
    if (strcmp (seg1, "orders") == 0) {
        if (post)
            return s_order_create (&r);
        if (del)
            return s_order_cancel (&r, seg2);
        if (seg2)
            return s_get_one (&r, "SELECT " S_ORDER_JSON " FROM orders WHERE id = $1::uuid", seg2,
                              "no order with this id");
    }
    if (seg2) {
        if (strcmp (seg1, "alerts") == 0)
            return s_alert (&r, seg2);
        if (strcmp (seg1, "signals") == 0)
            return s_get_one (&r, "SELECT " S_SIGNAL_JSON " FROM signals WHERE id = $1::uuid",
                              seg2, "no signal with this id");
        return s_get_one (&r, "SELECT " S_FILL_JSON " FROM fills WHERE id = $1::uuid", seg2,
                          "no fill with this id");
    }
    return s_list (&r, list);
}

//  Anything no other handler took.
static int
s_not_found_handler (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    return fks_http_error (conn, 404, NULL, "not_found", NULL, "no such route");
}

void
fks_api_register (fks_api_t *self, struct mg_context *ctx)
{
    mg_set_request_handler (ctx, "/api/v1", s_handle, self);
    mg_set_request_handler (ctx, "**", s_not_found_handler, NULL);
}
