/*  test_api.c - the REST API under /api/v1 against the real fks-gateway.
 *
 *  One gateway and bus for the file. Keys are made the way `fks keys create` makes them
 *  (gateway/apikeys.c on the file's database); rows the workers would write (signals, orders,
 *  fills, positions) are inserted with SQL, since this suite tests what the API shows. The
 *  last test walks schemas/openapi.yaml and calls every operation it documents.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include "common/pg.h"
#include "common/redis.h"
#include "gateway/apikeys.h"

#include <jansson.h>

ReportHook (PRE_ALL) (struct criterion_test_set *set)
{
    (void) set;
    static const char *const env[] = { "FKS_GATEWAY_RATE_LIMIT_KEY=100000",
                                       "FKS_PG_STATEMENT_TIMEOUT_MS=1000", NULL };
    it_setup ("api", true, env);
}

ReportHook (POST_ALL) (struct criterion_global_stats *stats)
{
    it_teardown (stats->tests_failed + stats->tests_crashed > 0);
}

//  A new key with scopes, stored as `fks keys create` stores it.
static void
s_make_key (const it_ctx_t *ctx, const char *scopes, char key[FKS_APIKEY_LEN + 1])
{
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    unsigned bits;
    cr_assert_eq (fks_apikey_scopes_parse (scopes, &bits), 0);
    char name[64], err[256];
    snprintf (name, sizeof name, "k%lu", it_unique ());
    cr_assert_eq (fks_apikey_create (pg, name, bits, key, err, sizeof err), 0, "%s", err);
    fks_pg_destroy (&pg);
}

//  A request with a bearer key (NULL: none).
static void
s_req (const it_ctx_t *ctx, const char *method, const char *path, const char *key,
       const char *body, it_resp_t *r)
{
    char url[512], auth[600];
    snprintf (url, sizeof url, "%s%s", ctx->base, path);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key ? key : "");
    const char *headers[] = { "Content-Type: application/json", key ? auth : NULL, NULL };
    cr_assert_eq (it_http (method, url, headers, body, body ? strlen (body) : 0, r), 0,
                  "%s %s: no answer (log %s)", method, path, ctx->log_path);
}

//  Each case answers 400 naming its field: cases[i][0] is the path of a GET (path NULL), or
//  the body sent to path with method; cases[i][1] the field.
static void
s_expect_400_fields (const it_ctx_t *ctx, const char *method, const char *path,
                     const char *cases[][2], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        it_resp_t r;
        s_req (ctx, method, path ? path : cases[i][0], IT_ADMIN_KEY, path ? cases[i][0] : NULL,
               &r);
        cr_assert_eq (r.status, 400, "%s -> %ld %s", cases[i][0], r.status, r.body);
        char field[32];
        cr_assert (it_json_str (r.body, "field", field, sizeof field), "%s", r.body);
        cr_assert_str_eq (field, cases[i][1], "%s -> %s", cases[i][0], r.body);
        it_resp_free (&r);
    }
}


static void
s_webhook (const it_ctx_t *ctx, const char *symbol, char id[64])
{
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"%s\",\"action\":\"buy\",\"id\":\"api-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", symbol, it_unique ());
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json", body, NULL, &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id, 64));
    it_resp_free (&r);
}

Test (api, no_key_is_401_with_www_authenticate)
{
    const it_ctx_t *ctx = it_ctx ();
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/orders", NULL, NULL, &r);
    cr_assert_eq (r.status, 401);
    char h[64];
    cr_assert (it_resp_header (&r, "WWW-Authenticate", h, sizeof h));
    cr_assert (strstr (r.body, "\"code\":\"unauthorized\""), "%s", r.body);
    it_resp_free (&r);
}

Test (api, unknown_key_is_401_and_a_security_event)
{
    const it_ctx_t *ctx = it_ctx ();
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/orders", "fks_AAAAAAAA_0000000000000000000000000000000000000000",
           NULL, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
    long n = 0;
    for (int i = 0; i < 100 && n < 1; i++) {
        n = it_sql_long (ctx, "SELECT count(*) FROM security_events WHERE kind = 'api.bad_key'",
                         NULL);
        if (n < 1)
            usleep (20000);
    }
    cr_assert (n >= 1);
}

Test (api, a_read_key_reads_but_cannot_order)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "read", key);
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/orders", key, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    it_resp_free (&r);
    s_req (ctx, "POST", "/api/v1/orders", key,
           "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1}", &r);
    cr_assert_eq (r.status, 403, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "trade"), "%s", r.body);
    it_resp_free (&r);
}

Test (api, a_revoked_key_is_refused_at_once)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "read", key);
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/positions", key, NULL, &r);
    cr_assert_eq (r.status, 200);
    it_resp_free (&r);
    char prefix[FKS_APIKEY_PREFIX_LEN + 1];
    memcpy (prefix, key, FKS_APIKEY_PREFIX_LEN);
    prefix[FKS_APIKEY_PREFIX_LEN] = '\0';
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    char err[256];
    cr_assert_eq (fks_apikey_revoke (pg, prefix, NULL, err, sizeof err), 0, "%s", err);
    fks_pg_destroy (&pg);
    s_req (ctx, "GET", "/api/v1/positions", key, NULL, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
}

//  GET /api/v1/positions with key: the status.
static long
s_status_with (const it_ctx_t *ctx, const char *key)
{
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/positions", key, NULL, &r);
    long st = r.status;
    it_resp_free (&r);
    return st;
}

//  The audit's case: key ci-bot has prefix fks_n35QYGEZ and an admin key is named
//  fks_n35QYGEZ. `fks keys revoke fks_n35QYGEZ` matched name OR prefix and revoked both while
//  reporting one. The name wins; the prefix is the fallback, only when no key has that name.
Test (api, revoking_a_name_that_is_another_keys_prefix_revokes_only_the_named_key)
{
    const it_ctx_t *ctx = it_ctx ();
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    char bot_name[32], bot[FKS_APIKEY_LEN + 1], bot_prefix[FKS_APIKEY_PREFIX_LEN + 1];
    char named[FKS_APIKEY_LEN + 1], named_prefix[FKS_APIKEY_PREFIX_LEN + 1], err[256];
    snprintf (bot_name, sizeof bot_name, "ci-bot-%lu", it_unique ());
    cr_assert_eq (fks_apikey_create (pg, bot_name, FKS_SCOPE_READ, bot, err, sizeof err), 0,
                  "%s", err);
    snprintf (bot_prefix, sizeof bot_prefix, "%.*s", FKS_APIKEY_PREFIX_LEN, bot);
    //  An admin key whose name is ci-bot's prefix.
    cr_assert_eq (fks_apikey_create (pg, bot_prefix, FKS_SCOPE_ADMIN, named, err, sizeof err), 0,
                  "%s", err);
    snprintf (named_prefix, sizeof named_prefix, "%.*s", FKS_APIKEY_PREFIX_LEN, named);
    cr_assert_eq (s_status_with (ctx, bot), 200);
    cr_assert_eq (s_status_with (ctx, named), 200);

    fks_apikey_info_t gone;
    cr_assert_eq (fks_apikey_revoke (pg, bot_prefix, &gone, err, sizeof err), 0, "%s", err);
    cr_assert_eq (s_status_with (ctx, named), 401, "the named key is still valid");
    cr_assert_eq (s_status_with (ctx, bot), 200, "ci-bot was revoked with the key named after "
                  "its prefix");
    cr_assert_str_eq (gone.name, bot_prefix, "reported '%s', not the key of that name",
                      gone.name);
    cr_assert_str_eq (gone.prefix, named_prefix);
    const char *params[2] = { bot_prefix, bot_name };
    PGresult *res = it_sql (ctx, "SELECT count (*) FROM api_keys WHERE revoked_at IS NOT NULL"
                                 " AND (name = $1 OR name = $2)", 2, params);
    cr_assert (res && PQntuples (res) == 1);
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "1", "one revoke, one key");
    PQclear (res);

    //  No key is called that any more: now the prefix finds ci-bot, and says so.
    cr_assert_eq (fks_apikey_revoke (pg, bot_prefix, &gone, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq (gone.name, bot_name);
    cr_assert_str_eq (gone.prefix, bot_prefix);
    cr_assert_eq (s_status_with (ctx, bot), 401);
    //  And then nothing matches.
    cr_assert_eq (fks_apikey_revoke (pg, bot_prefix, &gone, err, sizeof err), 1);
    cr_assert (strstr (err, bot_prefix), "%s", err);
    fks_pg_destroy (&pg);
}

Test (api, alerts_list_pages_newest_first_with_a_cursor)
{
    const it_ctx_t *ctx = it_ctx ();
    char sym[16], ids[3][64];
    snprintf (sym, sizeof sym, "P%lu", it_unique () % 100000000);
    for (int i = 0; i < 3; i++)
        s_webhook (ctx, sym, ids[i]);
    char path[256];
    snprintf (path, sizeof path, "/api/v1/alerts?symbol=%s&limit=2", sym);
    it_resp_t r;
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    //  Newest first: the third alert, then the second; a cursor to the rest.
    const char *a = strstr (r.body, ids[2]), *b = strstr (r.body, ids[1]);
    cr_assert (a && b && a < b, "%s", r.body);
    cr_assert_null (strstr (r.body, ids[0]));
    char next[128];
    cr_assert (it_json_str (r.body, "next", next, sizeof next), "no next: %s", r.body);
    it_resp_free (&r);
    snprintf (path, sizeof path, "/api/v1/alerts?symbol=%s&limit=2&cursor=%s", sym, next);
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, ids[0]) && !strstr (r.body, ids[1]), "%s", r.body);
    cr_assert (strstr (r.body, "\"next\":null"), "%s", r.body);
    it_resp_free (&r);
}

Test (api, list_parameters_are_checked)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "/api/v1/orders?limit=0", "limit" }, { "/api/v1/orders?limit=1001", "limit" },
        { "/api/v1/orders?status=lost", "status" }, { "/api/v1/orders?cursor=abc", "cursor" },
        { "/api/v1/orders?since=yesterday", "since" }, { "/api/v1/fills?status=new", "status" },
        { "/api/v1/bars?symbol=BTCUSDT", "interval" }, { "/api/v1/events?after=-1", "after" },
        { "/api/v1/alerts/not-a-uuid", "id" }, { "/api/v1/orders?since=2024-13-45", "since" },
    };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
}

//  Sends req on a new connection and reads what comes back until the gateway has been quiet
//  for 500 ms (or 5 s in all) into out (cap bytes, NUL-terminated). Returns the bytes read.
static size_t
s_raw_exchange (const it_ctx_t *ctx, const char *req, char *out, size_t cap)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert (fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) ctx->port) };
    inet_pton (AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq (connect (fd, (struct sockaddr *) &a, sizeof a), 0);
    cr_assert_eq (write (fd, req, strlen (req)), (ssize_t) strlen (req));
    size_t len = 0;
    for (int i = 0; i < 10 && len + 1 < cap; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll (&p, 1, 500) <= 0)
            break;
        ssize_t n = read (fd, out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t) n;
    }
    out[len] = '\0';
    close (fd);
    return len;
}

//  HEAD is GET without content (RFC 9110): the gateway wrote the body anyway (and answered
//  405), and on a kept-alive connection that body was read as the start of the next response.
//  A method no server is expected to know is well formed, only not served: 501 in the JSON
//  shape (civetweb said 400 "Bad request"). A method the gateway knows but a route does not
//  take stays 405 with Allow.
Test (api, an_unknown_http_method_is_501_and_a_known_one_not_taken_here_405)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *paths[] = { "/api/v1/orders", "/webhook/tradingview", "/health" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        it_resp_t r;
        char url[256];
        snprintf (url, sizeof url, "%s%s", ctx->base, paths[i]);
        cr_assert_eq (it_http ("BREW", url, NULL, NULL, 0, &r), 0);
        cr_assert_eq (r.status, 501, "BREW %s -> %ld %s", paths[i], r.status, r.body);
        char code[32];
        cr_assert (it_json_str (r.body, "code", code, sizeof code), "%s", r.body);
        cr_assert_str_eq (code, "not_implemented");
        it_resp_free (&r);
    }
    it_resp_t r;
    s_req (ctx, "PATCH", "/api/v1/orders", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 405, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

Test (api, a_head_request_gets_the_headers_only_and_the_connection_stays_in_step)
{
    const it_ctx_t *ctx = it_ctx ();
    static const char *const paths[] = { "/api/v1/stream", "/api/v1/nowhere",
                                         "/api/v1/orders?limit=1" };
    static const char *const heads[] = { "HTTP/1.1 405 ", "HTTP/1.1 404 ", "HTTP/1.1 200 " };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char req[512];
        snprintf (req, sizeof req,
                  "HEAD %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " IT_ADMIN_KEY "\r\n\r\n"
                  "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", paths[i]);
        char *out = malloc (16384);
        s_raw_exchange (ctx, req, out, 16384);
        cr_assert (strncmp (out, heads[i], strlen (heads[i])) == 0, "HEAD %s -> %.200s",
                   paths[i], out);
        //  Right after the HEAD answer's headers: the GET's status line, nothing in between.
        char *end = strstr (out, "\r\n\r\n");
        cr_assert_not_null (end, "%s", out);
        cr_assert (strncmp (end + 4, "HTTP/1.1 200 ", 13) == 0,
                   "HEAD %s: after its headers came %.120s", paths[i], end + 4);
        cr_assert_not_null (strstr (end + 4, "\"status\":\"healthy\""), "%s", end + 4);
        //  The HEAD answer says how long the GET's body would be.
        cr_assert_not_null (strstr (out, "Content-Length: "), "%s", out);
        free (out);
    }
}

//  A %00 in a query value decoded to a NUL the C strings stopped at: ?symbol=BTC%00USDT listed
//  BTC's orders, ?limit=5%00x was limit 5. Such a value is 400 naming the parameter.
Test (api, a_query_value_holding_a_nul_byte_is_400)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "/api/v1/orders?symbol=BTC%00USDT", "symbol" }, { "/api/v1/orders?limit=5%00x", "limit" },
        { "/api/v1/events?type=order.%00", "type" },
        { "/api/v1/orders?since=2024-01-01%00x", "since" },
    };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
}

//  A parameter the route does not read was ignored: /events?types=order. (the stream's
//  spelling) listed every event, ?limt=5 listed 100. 400 naming it, saying what the route takes.
Test (api, a_parameter_the_route_does_not_take_is_400_naming_it)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "/api/v1/events?types=order.", "types" },
        { "/api/v1/orders?limt=5", "limt" },
        { "/api/v1/positions?status=new", "status" },
        { "/api/v1/orders/01900000-0000-7000-8000-000000000000?symbol=BTCUSDT", "symbol" },
        { "/api/v1/bars?symbol=BTCUSDT&interval=1m&after=1", "after" },
    };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/events?types=order.", IT_ADMIN_KEY, NULL, &r);
    cr_assert (strstr (r.body, "it takes limit, cursor, after, type"), "%s", r.body);
    it_resp_free (&r);
}

//  Only the first of a repeated parameter was read: ?limit=1&limit=1000 was limit 1 here and
//  may be 1000 to a proxy or a client library that takes the last. 400 naming it (any case,
//  as the parameters are matched).
Test (api, a_query_parameter_given_twice_is_400_naming_it)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "/api/v1/orders?limit=1&limit=1000", "limit" },
        { "/api/v1/orders?status=new&symbol=BTCUSDT&STATUS=filled", "STATUS" },
        { "/api/v1/events?after=1&type=order.&type=signal.", "type" },
        { "/api/v1/breaker?scope=a&scope=b", "scope" },
    };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
    //  Different parameters are fine.
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/orders?limit=1&status=new&symbol=BTCUSDT", IT_ADMIN_KEY, NULL,
           &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

Test (api, an_alert_shows_its_path_through_the_stages)
{
    const it_ctx_t *ctx = it_ctx ();
    char id[64], path[128];
    s_webhook (ctx, "ETHUSDT", id);
    snprintf (path, sizeof path, "/api/v1/alerts/%s", id);
    it_resp_t r;
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"status\" : \"accepted\"") || strstr (r.body, "\"status\":\"accepted\""),
               "%s", r.body);
    cr_assert (strstr (r.body, "\"stages\":[{\"seq\":"), "%s", r.body);
    cr_assert (strstr (r.body, "\"type\":\"webhook.received\""), "%s", r.body);
    cr_assert (strstr (r.body, "\"signal\":null"), "%s", r.body);
    cr_assert (strstr (r.body, "\"orders\":[]"), "%s", r.body);
    cr_assert_null (strstr (r.body, IT_SECRET), "the raw body must not be shown");
    it_resp_free (&r);
    s_req (ctx, "GET", "/api/v1/alerts/01900000-0000-7000-8000-000000000000", IT_ADMIN_KEY,
           NULL, &r);
    cr_assert_eq (r.status, 404);
    it_resp_free (&r);
}

Test (api, an_alert_with_a_signal_and_an_order_shows_both)
{
    const it_ctx_t *ctx = it_ctx ();
    char id[64];
    s_webhook (ctx, "SOLUSDT", id);
    char sig[40], ord[40], coid[40];
    snprintf (sig, sizeof sig, "01900000-0000-7000-8000-%012lu", it_unique () % 1000000000000UL);
    snprintf (ord, sizeof ord, "01900000-0000-7000-9000-%012lu", it_unique () % 1000000000000UL);
    snprintf (coid, sizeof coid, "c%lu", it_unique ());
    const char *p1[] = { sig, id };
    PQclear (it_sql (ctx, "INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side,"
                          " qty) VALUES ($1::uuid, $2::uuid, $2::uuid, 'tradingview', 'SOLUSDT',"
                          " 'buy', 'buy', 2)", 2, p1));
    const char *p2[] = { ord, coid, sig, id };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side,"
                          " type, qty, status, broker) VALUES ($1::uuid, $2, $3::uuid, $4::uuid,"
                          " 'SOLUSDT', 'buy', 'market', 2, 'submitted', 'paper')", 4, p2));
    char path[128];
    snprintf (path, sizeof path, "/api/v1/alerts/%s", id);
    it_resp_t r;
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, sig) && strstr (r.body, ord) && strstr (r.body, coid), "%s",
               r.body);
    it_resp_free (&r);
    //  The order carries the contract's fields.
    snprintf (path, sizeof path, "/api/v1/orders/%s", ord);
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    const char *fields[] = { "id", "client_order_id", "signal_id", "corr", "symbol", "side",
                             "type", "qty", "limit_price", "status", "filled_qty",
                             "avg_fill_price", "created_at", "updated_at" };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char k[48];
        snprintf (k, sizeof k, "\"%s\" :", fields[i]);
        cr_assert (strstr (r.body, k), "order has no %s: %s", fields[i], r.body);
    }
    it_resp_free (&r);
    snprintf (path, sizeof path, "/api/v1/signals/%s", sig);
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200);
    it_resp_free (&r);
    s_req (ctx, "GET", "/api/v1/orders?symbol=SOLUSDT&status=submitted", IT_ADMIN_KEY, NULL, &r);
    cr_assert (strstr (r.body, ord), "%s", r.body);
    it_resp_free (&r);
}

Test (api, positions_and_fills_are_listed)
{
    const it_ctx_t *ctx = it_ctx ();
    char ord[40], coid[40], fill[40], fid[40];
    snprintf (ord, sizeof ord, "01900000-0000-7000-a000-%012lu", it_unique () % 1000000000000UL);
    snprintf (fill, sizeof fill, "01900000-0000-7000-b000-%012lu", it_unique () % 1000000000000UL);
    snprintf (coid, sizeof coid, "f%lu", it_unique ());
    snprintf (fid, sizeof fid, "x%lu", it_unique ());
    const char *p1[] = { ord, coid };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " status, filled_qty, avg_fill_price, broker) VALUES ($1::uuid, $2,"
                          " 'XRPUSDT', 'buy', 'market', 10, 'filled', 10, 0.5, 'paper')", 2, p1));
    const char *p2[] = { fill, ord, fid };
    PQclear (it_sql (ctx, "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol,"
                          " side, qty, price, ts) VALUES ($1::uuid, $2::uuid, 'paper', $3,"
                          " 'XRPUSDT', 'buy', 10, 0.5, now ())", 3, p2));
    PQclear (it_sql (ctx, "INSERT INTO positions (symbol, qty, avg_price) VALUES ('XRPUSDT', 10,"
                          " 0.5) ON CONFLICT (symbol) DO UPDATE SET qty = 10", 0, NULL));
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/fills?symbol=XRPUSDT", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, fill) && strstr (r.body, fid), "%s", r.body);
    it_resp_free (&r);
    s_req (ctx, "GET", "/api/v1/positions", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, "\"symbol\" : \"XRPUSDT\""), "%s", r.body);
    const char *fields[] = { "qty", "avg_price", "realized_pnl", "unrealized_pnl" };
    for (size_t i = 0; i < 4; i++) {
        char k[48];
        snprintf (k, sizeof k, "\"%s\" :", fields[i]);
        cr_assert (strstr (r.body, k), "position has no %s: %s", fields[i], r.body);
    }
    it_resp_free (&r);
}

//  Positions come in pages in symbol order: every one once, whatever their number (the list
//  stopped at 1000 and said there was no next page).
Test (api, positions_are_paged_by_symbol)
{
    const it_ctx_t *ctx = it_ctx ();
    char mine[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf (mine[i], sizeof mine[i], "PG%luUSDT", it_unique ());
        const char *p[] = { mine[i] };
        PQclear (it_sql (ctx, "INSERT INTO positions (symbol, qty, avg_price) VALUES ($1, 1, 1)",
                         1, p));
    }
    long total = it_sql_long (ctx, "SELECT count(*) FROM positions", NULL);
    int seen[3] = { 0, 0, 0 };
    long items = 0;
    char path[128] = "/api/v1/positions?limit=2";
    for (int page = 0; page < 1000; page++) {
        it_resp_t r;
        s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
        cr_assert_eq (r.status, 200, "%s -> %ld %s", path, r.status, r.body);
        int n = 0;
        for (const char *q = r.body; (q = strstr (q, "\"symbol\" : ")); q++)
            n++;
        cr_assert (n <= 2, "%d items on a page of 2: %s", n, r.body);
        items += n;
        for (int i = 0; i < 3; i++) {
            char k[48];
            snprintf (k, sizeof k, "\"symbol\" : \"%.31s\"", mine[i]);
            seen[i] += strstr (r.body, k) != NULL;
        }
        char next[40];
        bool more = it_json_str (r.body, "next", next, sizeof next);
        it_resp_free (&r);
        if (!more)
            break;
        snprintf (path, sizeof path, "/api/v1/positions?limit=2&cursor=%s", next);
    }
    cr_assert_eq (items, total, "%ld positions listed of %ld", items, total);
    for (int i = 0; i < 3; i++)
        cr_assert_eq (seen[i], 1, "%s listed %d times", mine[i], seen[i]);
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/positions?cursor=a%20b", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 400, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

//  The item of a positions page with this symbol, or NULL.
static json_t *
s_position (json_t *page, const char *symbol)
{
    json_t *items = json_object_get (page, "items");
    for (size_t i = 0; i < json_array_size (items); i++) {
        json_t *it = json_array_get (items, i);
        if (strcmp (json_string_value (json_object_get (it, "symbol")), symbol) == 0)
            return it;
    }
    return NULL;
}

static void
s_expect_number (json_t *pos, const char *key, double want)
{
    json_t *v = json_object_get (pos, key);
    cr_assert (json_is_number (v), "%s is not a number", key);
    cr_assert (fabs (json_number_value (v) - want) < 1e-9, "%s = %.17g, want %.17g", key,
               json_number_value (v), want);
}

Test (api, positions_are_valued_at_the_latest_price)
{
    const it_ctx_t *ctx = it_ctx ();
    //  Symbols of this run only: Redis is shared with other suites.
    unsigned long u = it_unique () % 100000000UL;
    char lng[32], sht[32], flat[32], none[32], lng_key[48], sht_key[48];
    snprintf (lng, sizeof lng, "L%lu1!", u);            //  a continuous future, long
    snprintf (sht, sizeof sht, "S%luUSDT", u);          //  short
    snprintf (flat, sizeof flat, "F%luUSDT", u);        //  flat, no price
    snprintf (none, sizeof none, "N%luUSDT", u);        //  open, no price
    snprintf (lng_key, sizeof lng_key, "fks:price:%s", lng);
    snprintf (sht_key, sizeof sht_key, "fks:price:%s", sht);
    const char *p[] = { lng, sht, flat, none };
    PQclear (it_sql (ctx, "INSERT INTO positions (symbol, qty, avg_price, realized_pnl) VALUES"
                          " ($1, 2, 5000.25, 7), ($2, -0.1, 42100.3, 0), ($3, 0, 0, -3),"
                          " ($4, 1, 10, 0)", 4, p));
    //  The hashes as workers/prices.c writes them: price as %.17g, ts in Unix ms.
    fks_redis_err_t rerr;
    fks_redis_t *redis = fks_redis_new (ctx->redis_url, 1000, 2000, &rerr);
    cr_assert_not_null (redis, "%s", rerr.msg);
    redisReply *rr = fks_redis_command (redis, &rerr, "HSET %s price %s ts %s", lng_key,
                                        "5010.5", "1700000000123");
    cr_assert_not_null (rr, "%s", rerr.msg);
    freeReplyObject (rr);
    rr = fks_redis_command (redis, &rerr, "HSET %s price %s ts %s", sht_key,
                            "42000.099999999999", "1700000060000");
    cr_assert_not_null (rr, "%s", rerr.msg);
    freeReplyObject (rr);

    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/positions", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    json_error_t jerr;
    json_t *page = json_loads (r.body, 0, &jerr);
    cr_assert_not_null (page, "not JSON (%s): %s", jerr.text, r.body);

    json_t *pos = s_position (page, lng);
    cr_assert_not_null (pos, "no %s in %s", lng, r.body);
    s_expect_number (pos, "qty", 2);
    s_expect_number (pos, "avg_price", 5000.25);
    s_expect_number (pos, "realized_pnl", 7);
    s_expect_number (pos, "mark_price", 5010.5);
    s_expect_number (pos, "unrealized_pnl", 20.5);      //  (5010.5 - 5000.25) * 2
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_time")),
                      "2023-11-14T22:13:20.123Z");
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_source")), "price");

    pos = s_position (page, sht);
    cr_assert_not_null (pos, "no %s in %s", sht, r.body);
    s_expect_number (pos, "mark_price", 42000.1);
    //  A short gains when the price falls: (42000.1 - 42100.3) * -0.1 = 10.02, shown exactly.
    s_expect_number (pos, "unrealized_pnl", 10.02);
    cr_assert (strstr (r.body, "\"unrealized_pnl\" : 10.02}"), "%s", r.body);
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_time")),
                      "2023-11-14T22:14:20.000Z");

    pos = s_position (page, flat);
    cr_assert_not_null (pos, "no %s in %s", flat, r.body);
    s_expect_number (pos, "unrealized_pnl", 0);
    cr_assert (json_is_null (json_object_get (pos, "mark_price")), "%s", r.body);

    pos = s_position (page, none);
    cr_assert_not_null (pos, "no %s in %s", none, r.body);
    cr_assert (json_is_null (json_object_get (pos, "unrealized_pnl")), "%s", r.body);
    cr_assert (json_is_null (json_object_get (pos, "mark_price")), "%s", r.body);
    cr_assert (json_is_null (json_object_get (pos, "mark_time")), "%s", r.body);
    cr_assert (json_is_null (json_object_get (pos, "mark_source")), "%s", r.body);
    json_decref (page);
    it_resp_free (&r);

    //  The price moves: the next read values the position at the new price.
    rr = fks_redis_command (redis, &rerr, "HSET %s price %s ts %s", lng_key, "4990.25",
                            "1700000120000");
    cr_assert_not_null (rr, "%s", rerr.msg);
    freeReplyObject (rr);
    char path[96];
    snprintf (path, sizeof path, "/api/v1/positions?symbol=L%lu1%%21", u);   //  '!' encoded
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    page = json_loads (r.body, 0, &jerr);
    cr_assert_not_null (page, "not JSON: %s", r.body);
    cr_assert_eq (json_array_size (json_object_get (page, "items")), 1, "%s", r.body);
    pos = s_position (page, lng);
    cr_assert_not_null (pos, "%s", r.body);
    s_expect_number (pos, "unrealized_pnl", -20);       //  (4990.25 - 5000.25) * 2
    json_decref (page);
    it_resp_free (&r);

    const char *keys[] = { "DEL", lng_key, sht_key };
    rr = fks_redis_command_argv (redis, 3, keys, NULL, &rerr);
    freeReplyObject (rr);
    fks_redis_destroy (&redis);
}

//  With no market data feed there is no fks:price:<SYMBOL>, yet the execution worker valued
//  the position at its fill's price in position.updated: the list shows that price too (the
//  symbol's newest fill, mark_source fill), so REST and the stream agree. A latest price in
//  Redis, when there is one, wins.
Test (api, a_position_without_a_latest_price_is_valued_at_its_last_fill)
{
    const it_ctx_t *ctx = it_ctx ();
    unsigned long u = it_unique () % 100000000UL;
    char two[32], one[32], ord[40], ord1[40], coid[40], coid1[40], f1[40], f2[40], f3[40];
    char x1[40], x2[40], x3[40], price_key[48];
    snprintf (two, sizeof two, "W%luUSDT", u);          //  two fills, the newer at 102
    snprintf (one, sizeof one, "V%luUSDT", u);          //  one fill at the position's price
    snprintf (price_key, sizeof price_key, "fks:price:%s", two);
    snprintf (ord, sizeof ord, "01900000-0000-7000-a100-%012lu", it_unique () % 1000000000000UL);
    snprintf (ord1, sizeof ord1, "01900000-0000-7000-a100-%012lu", it_unique () % 1000000000000UL);
    snprintf (f1, sizeof f1, "01900000-0000-7000-b100-%012lu", it_unique () % 1000000000000UL);
    snprintf (f2, sizeof f2, "01900000-0000-7000-b100-%012lu", it_unique () % 1000000000000UL);
    snprintf (f3, sizeof f3, "01900000-0000-7000-b100-%012lu", it_unique () % 1000000000000UL);
    snprintf (coid, sizeof coid, "m%lu", it_unique ());
    snprintf (coid1, sizeof coid1, "m%lu", it_unique ());
    snprintf (x1, sizeof x1, "y%lu", it_unique ());
    snprintf (x2, sizeof x2, "y%lu", it_unique ());
    snprintf (x3, sizeof x3, "y%lu", it_unique ());
    const char *po[] = { ord, coid, two, ord1, coid1, one };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " status, filled_qty, avg_fill_price, broker) VALUES"
                          " ($1::uuid, $2, $3, 'buy', 'market', 2, 'filled', 2, 101, 'paper'),"
                          " ($4::uuid, $5, $6, 'buy', 'market', 3, 'filled', 3, 50.5, 'paper')",
                     6, po));
    //  The older fill stored a minute before the newer one; its exchange time is later, so
    //  the newest fill is the one stored last, as the worker applied them.
    const char *pf[] = { f1, ord, x1, two, f2, x2, f3, ord1, x3, one };
    PQclear (it_sql (ctx, "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol,"
                          " side, qty, price, ts, created_at) VALUES"
                          " ($1::uuid, $2::uuid, 'paper', $3, $4, 'buy', 1, 100,"
                          "  '2024-01-02T03:05:00Z', now () - interval '1 minute'),"
                          " ($5::uuid, $2::uuid, 'paper', $6, $4, 'buy', 1, 102,"
                          "  '2024-01-02T03:04:05.678Z', now ()),"
                          " ($7::uuid, $8::uuid, 'paper', $9, $10, 'buy', 3, 50.5,"
                          "  '2024-01-02T03:04:06Z', now ())", 10, pf));
    const char *pp[] = { two, one };
    PQclear (it_sql (ctx, "INSERT INTO positions (symbol, qty, avg_price) VALUES ($1, 2, 101),"
                          " ($2, 3, 50.5)", 2, pp));

    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/positions", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    json_error_t jerr;
    json_t *page = json_loads (r.body, 0, &jerr);
    cr_assert_not_null (page, "not JSON (%s): %s", jerr.text, r.body);
    json_t *pos = s_position (page, two);
    cr_assert_not_null (pos, "no %s in %s", two, r.body);
    s_expect_number (pos, "mark_price", 102);
    s_expect_number (pos, "unrealized_pnl", 2);         //  (102 - 101) * 2
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_source")), "fill");
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_time")),
                      "2024-01-02T03:04:05.678Z");
    pos = s_position (page, one);
    cr_assert_not_null (pos, "no %s in %s", one, r.body);
    s_expect_number (pos, "mark_price", 50.5);
    s_expect_number (pos, "unrealized_pnl", 0);         //  right after the fill at its price
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_source")), "fill");
    json_decref (page);
    it_resp_free (&r);

    //  A market data feed starts: its price wins over the fill's.
    fks_redis_err_t rerr;
    fks_redis_t *redis = fks_redis_new (ctx->redis_url, 1000, 2000, &rerr);
    cr_assert_not_null (redis, "%s", rerr.msg);
    redisReply *rr = fks_redis_command (redis, &rerr, "HSET %s price %s ts %s", price_key,
                                        "103", "1700000000123");
    cr_assert_not_null (rr, "%s", rerr.msg);
    freeReplyObject (rr);
    char path[96];
    snprintf (path, sizeof path, "/api/v1/positions?symbol=%s", two);
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    page = json_loads (r.body, 0, &jerr);
    cr_assert_not_null (page, "not JSON: %s", r.body);
    pos = s_position (page, two);
    cr_assert_not_null (pos, "%s", r.body);
    s_expect_number (pos, "mark_price", 103);
    s_expect_number (pos, "unrealized_pnl", 4);         //  (103 - 101) * 2
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_source")), "price");
    cr_assert_str_eq (json_string_value (json_object_get (pos, "mark_time")),
                      "2023-11-14T22:13:20.123Z");
    json_decref (page);
    it_resp_free (&r);
    const char *keys[] = { "DEL", price_key };
    rr = fks_redis_command_argv (redis, 2, keys, NULL, &rerr);
    freeReplyObject (rr);
    fks_redis_destroy (&redis);
}

//  A list waiting on a lock (here an operator's ACCESS EXCLUSIVE lock on fills, held in an
//  open transaction) is cancelled after FKS_PG_STATEMENT_TIMEOUT_MS (1 s in this suite) and
//  answered 503 with Retry-After, and does not keep its pooled connection: once the lock is
//  gone the same list answers 200.
Test (api, a_list_waiting_on_a_lock_is_cancelled_and_answered_503)
{
    const it_ctx_t *ctx = it_ctx ();
    PGconn *holder = PQconnectdb (ctx->db_url);
    cr_assert (PQstatus (holder) == CONNECTION_OK);
    PGresult *res = PQexec (holder, "BEGIN; LOCK TABLE fills IN ACCESS EXCLUSIVE MODE");
    cr_assert (PQresultStatus (res) == PGRES_COMMAND_OK, "%s", PQerrorMessage (holder));
    PQclear (res);
    struct timespec t0, t1;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/fills", IT_ADMIN_KEY, NULL, &r);
    clock_gettime (CLOCK_MONOTONIC, &t1);
    double s_taken = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_eq (r.status, 503, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "statement timeout"), "%s", r.body);
    cr_assert_lt (s_taken, 10.0, "answered after %.1f s", s_taken);
    it_resp_free (&r);
    res = PQexec (holder, "COMMIT");
    PQclear (res);
    PQfinish (holder);
    for (int i = 0; i < 8; i++) {           /* every pooled connection is usable again */
        s_req (ctx, "GET", "/api/v1/fills", IT_ADMIN_KEY, NULL, &r);
        cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
        it_resp_free (&r);
    }
}

Test (api, the_event_feed_resumes_after_a_seq_without_repeating)
{
    const it_ctx_t *ctx = it_ctx ();
    char id1[64], id2[64];
    s_webhook (ctx, "ADAUSDT", id1);
    long seq1 = it_sql_long (ctx, "SELECT seq FROM events WHERE corr = $1::uuid", id1);
    s_webhook (ctx, "ADAUSDT", id2);
    char path[128];
    snprintf (path, sizeof path, "/api/v1/events?after=%ld&type=webhook.", seq1);
    it_resp_t r;
    //  Events become visible once every older transaction has ended: poll a little.
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
        cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
        seen = strstr (r.body, id2) != NULL;
        cr_assert_null (strstr (r.body, id1), "after=%ld repeats the event itself", seq1);
        it_resp_free (&r);
        if (!seen)
            usleep (50000);
    }
    cr_assert (seen);
    s_req (ctx, "GET", "/api/v1/events?after=999999999", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 400, "an unknown seq is refused, not silently restarted");
    it_resp_free (&r);
}

Test (api, a_manual_order_goes_to_the_outbox_once_per_idempotency_key)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "trade", key);
    char url[256], auth[128], idem[64];
    snprintf (url, sizeof url, "%s/api/v1/orders", ctx->base);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf (idem, sizeof idem, "Idempotency-Key: order-%lu", it_unique ());
    const char *headers[] = { "Content-Type: application/json", auth, idem, NULL };
    const char *body = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":0.25,"
                       "\"limit_price\":41000}";
    it_resp_t r;
    it_http ("POST", url, headers, body, strlen (body), &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    char id[64], id2[64];
    cr_assert (it_json_str (r.body, "id", id, sizeof id));
    cr_assert (strstr (r.body, "\"status\":\"requested\""));
    it_resp_free (&r);
    it_http ("POST", url, headers, body, strlen (body), &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id2, sizeof id2));
    cr_assert (strstr (r.body, "\"status\":\"duplicate\""));
    it_resp_free (&r);
    cr_assert_str_eq (id, id2);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'order.requested'"
                                    " AND corr = $1::uuid", id), 1);
}

Test (api, a_manual_order_for_a_continuous_future_is_accepted)
{
    const it_ctx_t *ctx = it_ctx ();
    it_resp_t r;
    s_req (ctx, "POST", "/api/v1/orders", IT_ADMIN_KEY,
           "{\"symbol\":\"ES1!\",\"side\":\"buy\",\"qty\":1}", &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    char id[64];
    cr_assert (it_json_str (r.body, "id", id, sizeof id), "%s", r.body);
    it_resp_free (&r);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'order.requested'"
                                    " AND corr = $1::uuid", id), 1);
    s_req (ctx, "GET", "/api/v1/orders?symbol=ES1%21", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "a '!' in the symbol filter: %ld %s", r.status, r.body);
    it_resp_free (&r);
}

Test (api, a_bad_manual_order_is_400_naming_the_field)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":-1}", "qty" },
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1e-300}", "qty" },
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"hold\",\"qty\":1}", "side" },
        { "{\"symbol\":\"BTC USDT\",\"side\":\"buy\",\"qty\":1}", "symbol" },
        { "{\"symbol\":\"!ES\",\"side\":\"buy\",\"qty\":1}", "symbol" },
        //  Within the characters allowed but with no instrument left once normalised.
        { "{\"symbol\":\"BINANCE:\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":1,"
          "\"limit_price\":1900}", "symbol" },
        { "{\"symbol\":\"B:--\",\"side\":\"buy\",\"qty\":1}", "symbol" },
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":1}", "limit_price" },
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":\"1\"}", "qty" },
        { "[1]", "body" },
        //  A field the endpoint does not take is named, not dropped: the order was placed
        //  without the stop, or at market with a misspelt limit price.
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1,\"stop_loss\":39000}",
          "stop_loss" },
        { "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1,\"limitPrice\":100}",
          "limitPrice" },
    };
    long before = it_sql_long (ctx, "SELECT count(*) FROM events"
                                    " WHERE type = 'order.requested'", NULL);
    s_expect_400_fields (ctx, "POST", "/api/v1/orders", bad, sizeof bad / sizeof bad[0]);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'order.requested'",
                               NULL), before, "a refused order left an order.requested");
}

//  Content-Type application/jsonx (or anything else starting with application/json) was
//  taken as JSON: only application/json, with parameters or not, is.
Test (api, a_manual_order_in_another_media_type_is_415)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256], auth[128];
    snprintf (url, sizeof url, "%s/api/v1/orders", ctx->base);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
    static const char body[] = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1}";
    long before = it_sql_long (ctx, "SELECT count(*) FROM events"
                                    " WHERE type = 'order.requested'", NULL);
    static const char *const types[] = { "Content-Type: application/jsonx",
                                         "Content-Type: application/json-patch+json" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *headers[] = { types[i], auth, NULL };
        it_resp_t r;
        cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
        cr_assert_eq (r.status, 415, "%s -> %ld %s", types[i], r.status, r.body);
        it_resp_free (&r);
    }
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'order.requested'",
                               NULL), before, "an order in another media type was requested");
    //  With a parameter it is still JSON.
    const char *headers[] = { "Content-Type: application/json; charset=utf-8", auth, NULL };
    it_resp_t r;
    cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

//  A manual order names its instrument as the workers do (BINANCE:btc/usdt is BTCUSDT): the
//  same order spelled another way, under the same Idempotency-Key, is a repeat, not a new one.
Test (api, a_manual_order_symbol_is_taken_in_its_one_spelling)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256], auth[128], idem[64];
    snprintf (url, sizeof url, "%s/api/v1/orders", ctx->base);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
    snprintf (idem, sizeof idem, "Idempotency-Key: spelling-%lu", it_unique ());
    const char *headers[] = { "Content-Type: application/json", auth, idem, NULL };
    const char *a = "{\"symbol\":\"BINANCE:btc/usdt\",\"side\":\"buy\",\"qty\":0.5}";
    const char *b = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":0.5}";
    const char *c = "{\"symbol\":\"ETHUSDT\",\"side\":\"buy\",\"qty\":0.5}";
    it_resp_t r;
    it_http ("POST", url, headers, a, strlen (a), &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    it_resp_free (&r);
    it_http ("POST", url, headers, b, strlen (b), &r);
    cr_assert_eq (r.status, 200, "the same order spelled BTCUSDT: %ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"status\":\"duplicate\""), "%s", r.body);
    it_resp_free (&r);
    it_http ("POST", url, headers, c, strlen (c), &r);
    cr_assert_eq (r.status, 422, "another instrument under the key: %ld %s", r.status, r.body);
    it_resp_free (&r);
    //  Asked for in any spelling, the lists look it up in the one the tables hold.
    char ord[40], coid[40];
    snprintf (ord, sizeof ord, "01900000-0000-7000-a000-%012lu", it_unique () % 1000000000000UL);
    snprintf (coid, sizeof coid, "s%lu", it_unique ());
    const char *p1[] = { ord, coid };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " status, filled_qty, avg_fill_price, broker) VALUES ($1::uuid, $2,"
                          " 'SPELLUSDT', 'buy', 'market', 1, 'filled', 1, 2, 'paper')", 2, p1));
    PQclear (it_sql (ctx, "INSERT INTO positions (symbol, qty, avg_price) VALUES ('SPELLUSDT',"
                          " 1, 2) ON CONFLICT (symbol) DO NOTHING", 0, NULL));
    const char *spellings[] = { "SPELLUSDT", "binance:spell%2Fusdt", "SPELL-USDT" };
    for (size_t i = 0; i < 3; i++) {
        char path[128];
        snprintf (path, sizeof path, "/api/v1/positions?symbol=%s", spellings[i]);
        s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
        cr_assert_eq (r.status, 200, "%s: %ld %s", path, r.status, r.body);
        cr_assert (strstr (r.body, "\"SPELLUSDT\""), "%s: %s", path, r.body);
        it_resp_free (&r);
        snprintf (path, sizeof path, "/api/v1/orders?symbol=%s", spellings[i]);
        s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
        cr_assert_eq (r.status, 200, "%s: %ld %s", path, r.status, r.body);
        cr_assert (strstr (r.body, ord), "%s: %s", path, r.body);
        it_resp_free (&r);
    }
    s_req (ctx, "GET", "/api/v1/orders?symbol=BINANCE:", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 400, "%ld %s", r.status, r.body);
    char field[32];
    cr_assert (it_json_str (r.body, "field", field, sizeof field));
    cr_assert_str_eq (field, "symbol");
    it_resp_free (&r);
}

Test (api, cancel_asks_the_execution_worker_only_for_open_orders)
{
    const it_ctx_t *ctx = it_ctx ();
    char open_id[40], done_id[40], c1[40], c2[40];
    snprintf (open_id, sizeof open_id, "01900000-0000-7000-c000-%012lu",
              it_unique () % 1000000000000UL);
    snprintf (done_id, sizeof done_id, "01900000-0000-7000-d000-%012lu",
              it_unique () % 1000000000000UL);
    snprintf (c1, sizeof c1, "o%lu", it_unique ());
    snprintf (c2, sizeof c2, "d%lu", it_unique ());
    const char *p1[] = { open_id, c1 };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " limit_price, status, broker) VALUES ($1::uuid, $2, 'BTCUSDT', 'buy',"
                          " 'limit', 1, 30000, 'submitted', 'paper')", 2, p1));
    const char *p2[] = { done_id, c2 };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " status, filled_qty, avg_fill_price, broker) VALUES ($1::uuid, $2,"
                          " 'BTCUSDT', 'buy', 'market', 1, 'filled', 1, 30000, 'paper')", 2, p2));
    char path[128];
    it_resp_t r;
    snprintf (path, sizeof path, "/api/v1/orders/%s", open_id);
    s_req (ctx, "DELETE", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "cancel_requested"));
    it_resp_free (&r);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type ="
                                    " 'order.cancel_requested' AND corr = $1::uuid", open_id), 1);
    snprintf (path, sizeof path, "/api/v1/orders/%s", done_id);
    s_req (ctx, "DELETE", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 409, "%ld %s", r.status, r.body);
    it_resp_free (&r);
    s_req (ctx, "DELETE", "/api/v1/orders/01900000-0000-7000-8000-0000000000ff", IT_ADMIN_KEY,
           NULL, &r);
    cr_assert_eq (r.status, 404);
    it_resp_free (&r);
}

//  DELETE /api/v1/orders/{id} with an Idempotency-Key; the answer's id and code (or "").
static long
s_cancel (const it_ctx_t *ctx, const char *key, const char *idem, const char *order_id,
          char id[64], char code[64])
{
    char url[256], auth[600], ih[200];
    snprintf (url, sizeof url, "%s/api/v1/orders/%s", ctx->base, order_id);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf (ih, sizeof ih, "Idempotency-Key: %s", idem ? idem : "");
    const char *headers[] = { auth, idem ? ih : NULL, NULL };
    it_resp_t r;
    cr_assert_eq (it_http ("DELETE", url, headers, NULL, 0, &r), 0);
    long st = r.status;
    id[0] = code[0] = '\0';
    it_json_str (r.body, "id", id, 64);
    it_json_str (r.body, "code", code, 64);
    if (st == 200)
        cr_assert (strstr (r.body, "\"status\":\"duplicate\""), "%s", r.body);
    it_resp_free (&r);
    return st;
}

//  The order a cancel asked for ends (here set cancelled by hand: no execution worker runs in
//  this suite) before the client, which lost the first answer, retries: the retry is the same
//  request, 200 duplicate, not 409 for an order its own first request cancelled. The key
//  reused for another (ended) order is still 422, and a cancel without a key still 409.
Test (api, a_cancel_retried_after_the_order_ended_is_a_duplicate)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "trade", key);
    char open_id[40], done_id[40], c1[40], c2[40], idem[64], id[64], code[64];
    snprintf (open_id, sizeof open_id, "01900000-0000-7000-c100-%012lu",
              it_unique () % 1000000000000UL);
    snprintf (done_id, sizeof done_id, "01900000-0000-7000-d100-%012lu",
              it_unique () % 1000000000000UL);
    snprintf (c1, sizeof c1, "q%lu", it_unique ());
    snprintf (c2, sizeof c2, "q%lu", it_unique ());
    snprintf (idem, sizeof idem, "c2-%lu", it_unique ());
    const char *p[] = { open_id, c1, done_id, c2 };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " limit_price, status, filled_qty, avg_fill_price, broker) VALUES"
                          " ($1::uuid, $2, 'BTCUSDT', 'buy', 'limit', 1, 30000, 'submitted', 0,"
                          " NULL, 'paper'), ($3::uuid, $4, 'BTCUSDT', 'buy', 'limit', 1, 30000,"
                          " 'filled', 1, 30000, 'paper')", 4, p));
    cr_assert_eq (s_cancel (ctx, key, idem, open_id, id, code), 202, "%s", code);
    cr_assert_str_eq (id, open_id);
    const char *p1[] = { open_id };
    PQclear (it_sql (ctx, "UPDATE orders SET status = 'cancelled', updated_at = now()"
                          " WHERE id = $1::uuid", 1, p1));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq (s_cancel (ctx, key, idem, open_id, id, code), 200,
                      "retry %d of the cancel of a cancelled order: %s", i, code);
        cr_assert_str_eq (id, open_id);
    }
    cr_assert_eq (s_cancel (ctx, key, idem, done_id, id, code), 422);
    cr_assert_str_eq (code, "idempotency_key_reused");
    cr_assert_eq (s_cancel (ctx, key, NULL, done_id, id, code), 409);
    cr_assert_str_eq (code, "not_cancellable");
    cr_assert_eq (s_cancel (ctx, key, NULL, open_id, id, code), 409);
    cr_assert_str_eq (code, "not_cancellable");
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type ="
                                    " 'order.cancel_requested' AND corr = $1::uuid", open_id), 1);
}

Test (api, the_circuit_breaker_is_read_with_read_and_reset_with_admin)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "read,trade", key);
    char path[128];
    snprintf (path, sizeof path, "/api/v1/breaker?scope=it-%lu", it_unique ());
    it_resp_t r;
    s_req (ctx, "GET", path, key, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"state\":\"closed\""), "%s", r.body);
    it_resp_free (&r);
    snprintf (path, sizeof path, "/api/v1/breaker/reset?scope=it-%lu", it_unique ());
    s_req (ctx, "POST", path, key, NULL, &r);
    cr_assert_eq (r.status, 403);
    it_resp_free (&r);
    s_req (ctx, "POST", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

Test (api, a_key_over_its_rate_limit_gets_429)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-api-%d-rl.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_RATE_LIMIT_KEY=5", NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "read", key);
    char url[128], auth[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/positions", port);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    const char *headers[] = { auth, NULL };
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        it_resp_t r;
        it_http ("GET", url, headers, NULL, 0, &r);
        ok += r.status == 200;
        if (r.status == 429) {
            char retry[16];
            cr_assert (it_resp_header (&r, "Retry-After", retry, sizeof retry));
            limited++;
        }
        it_resp_free (&r);
    }
    //  Requests its scopes refuse count too: a read key sending orders got 403 without limit,
    //  each one a key lookup.
    char rkey[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "read", rkey);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/orders", port);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", rkey);
    const char *oheaders[] = { auth, "Content-Type: application/json", NULL };
    static const char order[] = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1}";
    long st[8];
    for (int i = 0; i < 8; i++) {
        it_resp_t r;
        it_http ("POST", url, oheaders, order, strlen (order), &r);
        st[i] = r.status;
        it_resp_free (&r);
    }
    it_stop_pid (pid);
    unlink (log_path);
    cr_assert_eq (ok, 5);
    cr_assert_eq (limited, 3);
    for (int i = 0; i < 8; i++)
        cr_assert_eq (st[i], i < 5 ? 403 : 429, "order %d with a read key: %ld", i, st[i]);
}

//  Keys that are not valid had no limit at all (the per-key limit counts valid keys only, and
//  the REST API asked no per-address limit): anyone could try keys - FKS_ADMIN_KEY is any
//  text of 24 bytes or more - as fast as the gateway answered, each costing a digest and a
//  query. Now they have FKS_GATEWAY_RATE_LIMIT_IP per window per client address; past it no
//  key from there is looked at, the right one included, while valid keys are never counted
//  and other addresses go on.
Test (api, keys_that_are_not_valid_are_limited_per_address)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-api-%d-authrl.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_RATE_LIMIT_IP=3", NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char url[128], addr[32], other[32], xff[64], xff2[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/breaker", port);
    it_unique_addr (addr);
    it_unique_addr (other);
    snprintf (xff, sizeof xff, "X-Forwarded-For: %s", addr);
    snprintf (xff2, sizeof xff2, "X-Forwarded-For: %s", other);
    const char *good[] = { "Authorization: Bearer " IT_ADMIN_KEY, xff, NULL };
    const char *bad[] = { "Authorization: Bearer not-the-admin-key-0123456789abcdef", xff, NULL };
    const char *good_other[] = { "Authorization: Bearer " IT_ADMIN_KEY, xff2, NULL };
    long st[12];
    int n = 0;
    it_resp_t r;
    //  Valid keys are not counted...
    for (int i = 0; i < 5; i++) {
        it_http ("GET", url, good, NULL, 0, &r);
        st[n++] = r.status;
        it_resp_free (&r);
    }
    //  ... keys that are not valid are, up to the budget ...
    for (int i = 0; i < 4; i++) {
        it_http ("GET", url, bad, NULL, 0, &r);
        st[n++] = r.status;
        if (i == 3) {
            char retry[16];
            cr_assert (it_resp_header (&r, "Retry-After", retry, sizeof retry), "%s", r.body);
        }
        it_resp_free (&r);
    }
    //  ... and past it even the right key from that address is not looked at.
    it_http ("GET", url, good, NULL, 0, &r);
    st[n++] = r.status;
    it_resp_free (&r);
    it_http ("GET", url, good_other, NULL, 0, &r);
    st[n++] = r.status;
    it_resp_free (&r);
    it_stop_pid (pid);
    unlink (log_path);
    static const long want[] = { 200, 200, 200, 200, 200, 401, 401, 401, 429, 429, 200 };
    for (int i = 0; i < n; i++)
        cr_assert_eq (st[i], want[i], "request %d: %ld, wanted %ld", i, st[i], want[i]);
}

// ---------------------------------------------------------------------------------------------
//  Paging the events feed, parameters, idempotency scope, the documented statuses

//  A GET with the bootstrap key that must answer 200 with JSON.
static json_t *
s_get_json (const it_ctx_t *ctx, const char *path)
{
    it_resp_t r;
    s_req (ctx, "GET", path, IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%s -> %ld %s", path, r.status, r.body);
    json_error_t jerr;
    json_t *j = json_loads (r.body, 0, &jerr);
    cr_assert_not_null (j, "%s: not JSON: %s", path, r.body);
    it_resp_free (&r);
    return j;
}

static json_int_t
s_item_seq (json_t *page, size_t i)
{
    json_t *it = json_array_get (json_object_get (page, "items"), i);
    cr_assert (json_is_integer (json_object_get (it, "seq")), "item %zu has no seq", i);
    return json_integer_value (json_object_get (it, "seq"));
}

//  A generic pager passes `next` back as ?cursor=: the events feed must go on from there
//  (it used to start over, so such a pager looped for ever).
Test (api, the_event_feed_pages_with_the_cursor_it_gives)
{
    const it_ctx_t *ctx = it_ctx ();
    char sym[16], id0[64], ids[4][64];
    snprintf (sym, sizeof sym, "E%lu", it_unique () % 100000000);
    s_webhook (ctx, sym, id0);
    long seq0 = it_sql_long (ctx, "SELECT seq FROM events WHERE corr = $1::uuid", id0);
    for (int i = 0; i < 4; i++)
        s_webhook (ctx, sym, ids[i]);
    //  The whole feed after seq0 once all four are final (rows only ever join at its end).
    char path[256];
    snprintf (path, sizeof path, "/api/v1/events?after=%ld&type=webhook.&limit=1000", seq0);
    json_t *full = NULL;
    for (int i = 0; i < 100; i++) {
        full = s_get_json (ctx, path);
        char *text = json_dumps (full, JSON_COMPACT);
        bool all = text && strstr (text, ids[0]) && strstr (text, ids[1]) && strstr (text, ids[2])
                   && strstr (text, ids[3]);
        free (text);
        if (all)
            break;
        json_decref (full);
        full = NULL;
        usleep (50000);
    }
    cr_assert_not_null (full, "the four events did not become visible");
    cr_assert (json_array_size (json_object_get (full, "items")) >= 4);

    snprintf (path, sizeof path, "/api/v1/events?after=%ld&type=webhook.&limit=2", seq0);
    json_t *p1 = s_get_json (ctx, path);
    cr_assert_eq (json_array_size (json_object_get (p1, "items")), 2);
    cr_assert_eq (s_item_seq (p1, 0), s_item_seq (full, 0));
    cr_assert_eq (s_item_seq (p1, 1), s_item_seq (full, 1));
    const char *next = json_string_value (json_object_get (p1, "next"));
    cr_assert_not_null (next, "no next on a full page");
    char next_s[32];
    snprintf (next_s, sizeof next_s, "%s", next);
    //  The next page, as a generic pager asks for it: the same query plus ?cursor=.
    snprintf (path, sizeof path, "/api/v1/events?type=webhook.&limit=2&cursor=%s", next_s);
    json_t *p2 = s_get_json (ctx, path);
    cr_assert_eq (json_array_size (json_object_get (p2, "items")), 2);
    cr_assert_eq (s_item_seq (p2, 0), s_item_seq (full, 2), "the second page started over");
    cr_assert_eq (s_item_seq (p2, 1), s_item_seq (full, 3));
    json_decref (p2);
    //  A pager that started with ?after= and adds the cursor it was given: both hold, the
    //  later one decides, and the pages move on (either order of the two).
    snprintf (path, sizeof path, "/api/v1/events?type=webhook.&limit=2&after=%ld&cursor=%s",
              seq0, next_s);
    p2 = s_get_json (ctx, path);
    cr_assert_eq (s_item_seq (p2, 0), s_item_seq (full, 2), "the cursor was not followed");
    json_decref (p2);
    snprintf (path, sizeof path, "/api/v1/events?type=webhook.&limit=2&cursor=%ld&after=%s",
              seq0, next_s);
    p2 = s_get_json (ctx, path);
    cr_assert_eq (s_item_seq (p2, 0), s_item_seq (full, 2));
    json_decref (p2);
    json_decref (p1);
    json_decref (full);
}

//  A value PostgreSQL cannot take is refused before the query, naming its own parameter (an
//  out-of-range cursor was reported as `since`, and on bars as a 503).
Test (api, a_cursor_out_of_range_is_400_naming_cursor)
{
    const it_ctx_t *ctx = it_ctx ();
    const char *bad[][2] = {
        { "/api/v1/orders?cursor=9999999999999999999.00000000-0000-0000-0000-000000000000",
          "cursor" },
        { "/api/v1/alerts?cursor=9223372036854775807.00000000-0000-0000-0000-000000000000",
          "cursor" },
        { "/api/v1/fills?since=2024-01-01&cursor=9999999999999999999.00000000-0000-0000-0000-"
          "000000000000", "cursor" },
        { "/api/v1/bars?symbol=BTCUSDT&interval=1m&cursor=99999999999999999999", "cursor" },
        { "/api/v1/bars?symbol=BTCUSDT&interval=1m&cursor=9223372036854775807", "cursor" },
        { "/api/v1/events?cursor=12x", "cursor" },
        { "/api/v1/signals?since=2024-02-30", "since" },
        { "/api/v1/orders?since=2024-01-01T25:00:00Z", "since" },
    };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
    //  A cursor the API gave (the newest order's) is still taken.
    it_resp_t r;
    s_req (ctx, "GET", "/api/v1/orders?cursor=1700000000000000.01900000-0000-7000-8000-"
                       "000000000000&since=2020-01-01T00:00:00Z", IT_ADMIN_KEY, NULL, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    it_resp_free (&r);
}

//  A '+' in a query string is a space: an offset sent unencoded (?since=...T09:00:00+01:00, as
//  people type it) reached PostgreSQL as "...09:00:00 01:00" and was a 400. It is read as the
//  offset it was, and gives the same page as %2B.
Test (api, an_unencoded_plus_in_since_is_the_offset_it_was)
{
    const it_ctx_t *ctx = it_ctx ();
    it_resp_t a, b;
    s_req (ctx, "GET", "/api/v1/alerts?since=2000-01-01T09:00:00+05:00&limit=5", IT_ADMIN_KEY,
           NULL, &a);
    cr_assert_eq (a.status, 200, "%ld %s", a.status, a.body);
    s_req (ctx, "GET", "/api/v1/alerts?since=2000-01-01T09:00:00%2B05:00&limit=5", IT_ADMIN_KEY,
           NULL, &b);
    cr_assert_eq (b.status, 200, "%ld %s", b.status, b.body);
    cr_assert_str_eq (a.body, b.body);
    it_resp_free (&a);
    it_resp_free (&b);
    //  Each spelling of an offset is taken (and a date and a time apart, as before): a time in
    //  2999 lists nothing.
    const char *later[] = { "/api/v1/alerts?since=2999-01-01T00:00:00+0530",
                            "/api/v1/alerts?since=2999-01-01T00:00+05",
                            "/api/v1/alerts?since=2999-01-01+00:00:00" };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        s_req (ctx, "GET", later[i], IT_ADMIN_KEY, NULL, &a);
        cr_assert_eq (a.status, 200, "%s: %ld %s", later[i], a.status, a.body);
        cr_assert (strstr (a.body, "\"items\":[]"), "%s: %s", later[i], a.body);
        it_resp_free (&a);
    }
    //  What is not an offset is still refused.
    const char *bad[][2] = { { "/api/v1/alerts?since=2024-01-01T00:00:00+5", "since" },
                             { "/api/v1/alerts?since=2024-01-01T00:00:00+123", "since" } };
    s_expect_400_fields (ctx, "GET", NULL, bad, sizeof bad / sizeof bad[0]);
}

//  A stored key named name (any active key of that name is revoked first).
static void
s_make_named_key (const it_ctx_t *ctx, const char *name, const char *scopes,
                  char key[FKS_APIKEY_LEN + 1])
{
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    unsigned bits;
    cr_assert_eq (fks_apikey_scopes_parse (scopes, &bits), 0);
    char err[256];
    fks_apikey_revoke (pg, name, NULL, err, sizeof err);
    cr_assert_eq (fks_apikey_create (pg, name, bits, key, err, sizeof err), 0, "%s", err);
    fks_pg_destroy (&pg);
}

static void
s_revoke (const it_ctx_t *ctx, const char *name)
{
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    char err[256];
    cr_assert_eq (fks_apikey_revoke (pg, name, NULL, err, sizeof err), 0, "%s", err);
    fks_pg_destroy (&pg);
}

//  POST /api/v1/orders with a key and an Idempotency-Key; the answer's id into id.
static long
s_order (const it_ctx_t *ctx, const char *key, const char *idem, const char *body, char id[64],
         char code[64])
{
    char url[256], auth[600], ih[200];
    snprintf (url, sizeof url, "%s/api/v1/orders", ctx->base);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf (ih, sizeof ih, "Idempotency-Key: %s", idem);
    const char *headers[] = { "Content-Type: application/json", auth, ih, NULL };
    it_resp_t r;
    cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
    long st = r.status;
    id[0] = code[0] = '\0';
    it_json_str (r.body, "id", id, 64);
    it_json_str (r.body, "code", code, 64);
    if (st == 200)
        cr_assert (strstr (r.body, "\"status\":\"duplicate\""), "%s", r.body);
    it_resp_free (&r);
    return st;
}

//  Names are not unique (the bootstrap key is "admin", and `fks keys create admin` is allowed;
//  a revoked key's name can be given again): an Idempotency-Key belongs to the key itself.
Test (api, an_idempotency_key_belongs_to_the_api_key_not_to_its_name)
{
    const it_ctx_t *ctx = it_ctx ();
    char idem[64], id_boot[64], id_named[64], id[64], code[64];
    snprintf (idem, sizeof idem, "scope-%lu", it_unique ());
    const char *b1 = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":1}";
    const char *b2 = "{\"symbol\":\"ETHUSDT\",\"side\":\"sell\",\"qty\":2}";
    cr_assert_eq (s_order (ctx, IT_ADMIN_KEY, idem, b1, id_boot, code), 202);
    char named[FKS_APIKEY_LEN + 1];
    s_make_named_key (ctx, "admin", "trade", named);
    cr_assert_eq (s_order (ctx, named, idem, b2, id_named, code), 202,
                  "a stored key named admin got the bootstrap key's order");
    cr_assert_str_neq (id_named, id_boot);
    cr_assert_eq (s_order (ctx, named, idem, b2, id, code), 200);
    cr_assert_str_eq (id, id_named);
    cr_assert_eq (s_order (ctx, IT_ADMIN_KEY, idem, b1, id, code), 200);
    cr_assert_str_eq (id, id_boot, "the bootstrap key's scope is stable");
    //  A key made with the name of a revoked one is another key.
    char name[32], k1[FKS_APIKEY_LEN + 1], k2[FKS_APIKEY_LEN + 1], id1[64];
    snprintf (name, sizeof name, "reused%lu", it_unique ());
    s_make_named_key (ctx, name, "trade", k1);
    cr_assert_eq (s_order (ctx, k1, idem, b1, id1, code), 202);
    s_revoke (ctx, name);
    s_make_named_key (ctx, name, "trade", k2);
    cr_assert_eq (s_order (ctx, k2, idem, b1, id, code), 202);
    cr_assert_str_neq (id, id1);
    s_revoke (ctx, "admin");
    s_revoke (ctx, name);
}

//  The same key retrying with the same Idempotency-Key but another request is a client bug:
//  422 idempotency_key_reused, not 200 duplicate of an order it did not ask for.
Test (api, a_reused_idempotency_key_with_another_request_is_422)
{
    const it_ctx_t *ctx = it_ctx ();
    char key[FKS_APIKEY_LEN + 1];
    s_make_key (ctx, "trade", key);
    char idem[64], id1[64], id[64], code[64];
    snprintf (idem, sizeof idem, "reuse-%lu", it_unique ());
    const char *body = "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":0.5,"
                       "\"limit_price\":41000}";
    cr_assert_eq (s_order (ctx, key, idem, body, id1, code), 202);
    //  The same request written differently is the same request.
    cr_assert_eq (s_order (ctx, key, idem, "{ \"limit_price\": 41000.0, \"qty\": 0.50,"
                           " \"side\": \"buy\", \"type\": \"limit\", \"symbol\": \"BTCUSDT\" }",
                           id, code), 200);
    cr_assert_str_eq (id, id1);
    const char *other[] = {
        "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":0.6,\"limit_price\":41000}",
        "{\"symbol\":\"BTCUSDT\",\"side\":\"sell\",\"type\":\"limit\",\"qty\":0.5,\"limit_price\":41000}",
        "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":0.5,\"limit_price\":41001}",
        "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"qty\":0.5}",
        "{\"symbol\":\"ETHUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":0.5,\"limit_price\":41000}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        cr_assert_eq (s_order (ctx, key, idem, other[i], id, code), 422, "%s", other[i]);
        cr_assert_str_eq (code, "idempotency_key_reused");
    }
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'order.requested'"
                                    " AND corr = $1::uuid", id1), 1);
    //  A cancel's key, reused for another order, is refused the same way.
    char o1[40], o2[40], c1[40], c2[40];
    snprintf (o1, sizeof o1, "01900000-0000-7000-e000-%012lu", it_unique () % 1000000000000UL);
    snprintf (o2, sizeof o2, "01900000-0000-7000-e000-%012lu", it_unique () % 1000000000000UL);
    snprintf (c1, sizeof c1, "r%lu", it_unique ());
    snprintf (c2, sizeof c2, "r%lu", it_unique ());
    const char *p1[] = { o1, c1, o2, c2 };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " limit_price, status, broker) VALUES ($1::uuid, $2, 'BTCUSDT', 'buy',"
                          " 'limit', 1, 30000, 'submitted', 'paper'), ($3::uuid, $4, 'BTCUSDT',"
                          " 'buy', 'limit', 1, 30000, 'submitted', 'paper')", 4, p1));
    char url[256], auth[600], ih[200];
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf (ih, sizeof ih, "Idempotency-Key: cancel-%s", idem);
    const char *headers[] = { auth, ih, NULL };
    long want[3] = { 202, 200, 422 };
    const char *which[3] = { o1, o1, o2 };
    for (int i = 0; i < 3; i++) {
        snprintf (url, sizeof url, "%s/api/v1/orders/%s", ctx->base, which[i]);
        it_resp_t r;
        it_http ("DELETE", url, headers, NULL, 0, &r);
        cr_assert_eq (r.status, want[i], "cancel %d: %ld %s", i, r.status, r.body);
        if (want[i] == 422)
            cr_assert (strstr (r.body, "idempotency_key_reused"), "%s", r.body);
        it_resp_free (&r);
    }
}

//  True when schemas/openapi.yaml lists status among the responses of method on path (the
//  path as the document writes it).
static bool
s_spec_lists (const char *path, const char *method, int status)
{
    char spec_path[512];
    snprintf (spec_path, sizeof spec_path, "%s/schemas/openapi.yaml", FKS_SOURCE_ROOT);
    FILE *f = fopen (spec_path, "r");
    cr_assert_not_null (f, "no %s", spec_path);
    char line[512], want_path[300], want_method[32], want_status[16];
    snprintf (want_path, sizeof want_path, "  %s:\n", path);
    snprintf (want_method, sizeof want_method, "    %s:\n", method);
    snprintf (want_status, sizeof want_status, "        \"%d\":", status);
    bool in_path = false, in_method = false, in_resp = false, found = false;
    while (!found && fgets (line, sizeof line, f)) {
        if (strncmp (line, "components:", 11) == 0)
            break;
        if (strncmp (line, "  /", 3) == 0) {
            in_path = strcmp (line, want_path) == 0;
            in_method = in_resp = false;
        }
        else if (in_path && strncmp (line, "    ", 4) == 0 && line[4] != ' ') {
            in_method = strcmp (line, want_method) == 0;
            in_resp = false;
        }
        else if (in_method && strcmp (line, "      responses:\n") == 0)
            in_resp = true;
        else if (in_resp && strncmp (line, "        ", 8) != 0)
            in_resp = false;
        else if (in_resp && strncmp (line, want_status, strlen (want_status)) == 0)
            found = true;
    }
    fclose (f);
    return found;
}

//  What the gateway really answers is in the document: each case makes the gateway answer a
//  status and checks that the operation lists it; and every /api/v1 operation lists the
//  answers any of them can give (401 no or bad key, 429 the key's rate limit, 503 the
//  database).
Test (api, every_status_the_api_answers_is_in_openapi)
{
    const it_ctx_t *ctx = it_ctx ();
    static const char *const ops[][2] = {
        { "/api/v1/alerts", "get" }, { "/api/v1/alerts/{id}", "get" },
        { "/api/v1/signals", "get" }, { "/api/v1/signals/{id}", "get" },
        { "/api/v1/orders", "get" }, { "/api/v1/orders", "post" },
        { "/api/v1/orders/{id}", "get" }, { "/api/v1/orders/{id}", "delete" },
        { "/api/v1/fills", "get" }, { "/api/v1/fills/{id}", "get" },
        { "/api/v1/positions", "get" }, { "/api/v1/bars", "get" }, { "/api/v1/events", "get" },
        { "/api/v1/breaker", "get" }, { "/api/v1/breaker/reset", "post" },
        { "/api/v1/stream", "get" },
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (int k = 0; k < 3; k++) {
            int st = (int[]) { 401, 429, 503 }[k];
            cr_assert (s_spec_lists (ops[i][0], ops[i][1], st), "%s %s does not list %d",
                       ops[i][1], ops[i][0], st);
        }
    //  An open order for the duplicate cancel.
    char open_id[40], coid[40], idem[64];
    snprintf (open_id, sizeof open_id, "01900000-0000-7000-f000-%012lu",
              it_unique () % 1000000000000UL);
    snprintf (coid, sizeof coid, "s%lu", it_unique ());
    snprintf (idem, sizeof idem, "Idempotency-Key: spec-%lu", it_unique ());
    const char *p[] = { open_id, coid };
    PQclear (it_sql (ctx, "INSERT INTO orders (id, client_order_id, symbol, side, type, qty,"
                          " limit_price, status, broker) VALUES ($1::uuid, $2, 'BTCUSDT', 'buy',"
                          " 'limit', 1, 30000, 'submitted', 'paper')", 2, p));
    char cancel_path[96];
    snprintf (cancel_path, sizeof cancel_path, "/api/v1/orders/%s", open_id);
    static char big[20000];
    memset (big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    typedef struct {
        const char *op, *method, *path;
        bool key;
        const char *body, *header;
        int status;
    } s_case_t;
    const s_case_t cases[] = {
        { "/api/v1/alerts", "get", "/api/v1/alerts", false, NULL, NULL, 401 },
        { "/api/v1/alerts/{id}", "get", "/api/v1/alerts/abc", true, NULL, NULL, 400 },
        { "/api/v1/signals", "get", "/api/v1/signals?limit=0", true, NULL, NULL, 400 },
        { "/api/v1/signals/{id}", "get", "/api/v1/signals/abc", true, NULL, NULL, 400 },
        { "/api/v1/orders", "get", "/api/v1/orders?status=x", true, NULL, NULL, 400 },
        { "/api/v1/orders", "post", "/api/v1/orders", false, "{}", NULL, 401 },
        { "/api/v1/orders", "post", "/api/v1/orders", true, big, NULL, 413 },
        { "/api/v1/orders/{id}", "get", "/api/v1/orders/abc", true, NULL, NULL, 400 },
        { "/api/v1/orders/{id}", "delete", "/api/v1/orders/abc", true, NULL, NULL, 400 },
        { "/api/v1/orders/{id}", "delete", cancel_path, true, NULL, idem, 202 },
        { "/api/v1/orders/{id}", "delete", cancel_path, true, NULL, idem, 200 },
        { "/api/v1/fills", "get", "/api/v1/fills?status=new", true, NULL, NULL, 400 },
        { "/api/v1/fills/{id}", "get", "/api/v1/fills/abc", true, NULL, NULL, 400 },
        { "/api/v1/positions", "get", "/api/v1/positions?symbol=%20", true, NULL, NULL, 400 },
        { "/api/v1/events", "get", "/api/v1/events?cursor=x", true, NULL, NULL, 400 },
        { "/api/v1/breaker", "get", "/api/v1/breaker?scope=BAD%21", true, NULL, NULL, 400 },
        { "/api/v1/breaker/reset", "post", "/api/v1/breaker/reset?scope=BAD%21", true, NULL,
          NULL, 400 },
        { "/api/v1/stream", "get", "/api/v1/stream", false, NULL, NULL, 401 },
        { "/api/v1/stream", "get", "/api/v1/stream?types=BAD", true, NULL, NULL, 400 },
        { "/api/v1/stream", "post", "/api/v1/stream", true, NULL, NULL, 405 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const s_case_t *c = &cases[i];
        char url[512], auth[128], upper[16];
        snprintf (url, sizeof url, "%s%s", ctx->base, c->path);
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
        for (size_t k = 0; k <= strlen (c->method); k++)
            upper[k] = (char) toupper ((unsigned char) c->method[k]);
        const char *headers[] = { "Content-Type: application/json", c->key ? auth : c->header,
                                  c->key ? c->header : NULL, NULL };
        it_resp_t r;
        it_http_timeout (upper, url, headers, c->body, c->body ? strlen (c->body) : 0, 3000, &r);
        cr_assert_eq (r.status, c->status, "%s %s -> %ld %s", upper, c->path, r.status, r.body);
        it_resp_free (&r);
        //  The stream's 405 is for any method but GET: the document has only get.
        const char *doc_method = strcmp (c->op, "/api/v1/stream") == 0 ? "get" : c->method;
        cr_assert (s_spec_lists (c->op, doc_method, c->status), "%s %s answers %d; the document"
                   " does not list it", c->method, c->op, c->status);
    }
    //  Statuses the code gives that a test cannot easily provoke here.
    cr_assert (s_spec_lists ("/api/v1/orders", "post", 408));
    cr_assert (s_spec_lists ("/api/v1/orders", "post", 422));
    cr_assert (s_spec_lists ("/api/v1/orders/{id}", "delete", 422));
    cr_assert (s_spec_lists ("/api/v1/breaker/reset", "post", 503));
}

//  Every operation of schemas/openapi.yaml answers, with a status the document lists or the
//  errors every operation can give; a route the gateway does not know is a failure.
Test (api, every_route_in_openapi_answers)
{
    const it_ctx_t *ctx = it_ctx ();
    char spec_path[512];
    snprintf (spec_path, sizeof spec_path, "%s/schemas/openapi.yaml", FKS_SOURCE_ROOT);
    FILE *f = fopen (spec_path, "r");
    cr_assert_not_null (f, "no %s", spec_path);
    char line[512], path[256] = "";
    int operations = 0;
    bool in_paths = false;
    while (fgets (line, sizeof line, f)) {
        if (strncmp (line, "paths:", 6) == 0) {
            in_paths = true;
            continue;
        }
        if (in_paths && line[0] != ' ' && line[0] != '\n')
            break;
        if (!in_paths)
            continue;
        if (strncmp (line, "  /", 3) == 0) {
            snprintf (path, sizeof path, "%.*s", (int) strcspn (line + 2, ":"), line + 2);
            continue;
        }
        char method[16];
        if (sscanf (line, "    %15[a-z]:", method) != 1 || line[4] == ' ')
            continue;
        if (strcmp (method, "get") && strcmp (method, "post") && strcmp (method, "delete"))
            continue;
        //  A concrete URL for the template.
        char url[512] = "";
        const char *id = strstr (path, "{id}");
        if (id)
            snprintf (url, sizeof url, "%s%.*s01900000-0000-7000-8000-000000000001%s", ctx->base,
                      (int) (id - path), path, id + 4);
        else
            snprintf (url, sizeof url, "%s%s", ctx->base, path);
        if (strcmp (path, "/api/v1/bars") == 0)
            strncat (url, "?symbol=BTCUSDT&interval=1m", sizeof url - strlen (url) - 1);
        char upper[16];
        for (size_t i = 0; i <= strlen (method); i++)
            upper[i] = (char) toupper ((unsigned char) method[i]);
        const char *body = NULL;
        char wbody[256];
        if (strncmp (path, "/webhook", 8) == 0) {
            snprintf (wbody, sizeof wbody, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"id\":"
                      "\"spec-%lu\",\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
            body = wbody;
        }
        else if (strcmp (path, "/api/v1/orders") == 0 && strcmp (method, "post") == 0)
            body = "{\"symbol\":\"BTCUSDT\",\"side\":\"sell\",\"qty\":1}";
        char auth[128];
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
        const char *headers[] = { "Content-Type: application/json", auth, NULL };
        it_resp_t r;
        long status;
        if (strcmp (path, "/api/v1/stream") == 0) {
            //  A stream never ends: its headers are what count.
            char curl_url[600];
            snprintf (curl_url, sizeof curl_url, "%s?access_token=%s", url, IT_ADMIN_KEY);
            it_http_timeout (upper, curl_url, NULL, NULL, 0, 1000, &r);
            status = r.status;
        }
        else {
            it_http (upper, url, headers, body, body ? strlen (body) : 0, &r);
            status = r.status;
        }
        bool known = status != 405 && status < 500
                     && !(status == 404 && strstr (r.body, "no such route"));
        cr_assert (known, "%s %s -> %ld %s", upper, path, status, r.body);
        cr_assert (status == 200 || status == 202 || status == 404, "%s %s -> %ld %s", upper,
                   path, status, r.body);
        it_resp_free (&r);
        operations++;
    }
    fclose (f);
    cr_assert (operations >= 21, "only %d operations found in %s", operations, spec_path);
}
