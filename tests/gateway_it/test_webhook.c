/*  test_webhook.c - POST /webhook/tradingview and /webhook against the real fks-gateway.
 *
 *  One gateway (with a real fks-bus) for the file, on its own database. Every answer code of
 *  the webhook contract and every body form TradingView sends is posted over HTTP; what a user
 *  would see is asserted: the status, the JSON body, the row in the inbox (or its absence),
 *  the security event, the webhook.received envelope on the bus. Each test sends from its own
 *  client address (X-Forwarded-For, trusted from 127.0.0.1) so rate limits never mix tests.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "bus/envelope.h"
#include "gateway/alert.h"
#include "gateway/auth.h"
#include "gateway/inbox.h"
#include <libpq-fe.h>

static const char *const s_env[] = {
    "FKS_GATEWAY_RATE_LIMIT_IP=20",
    "FKS_GATEWAY_RATE_WINDOW=60s",
    "FKS_GATEWAY_BODY_MAX=4096",
    NULL
};

ReportHook (PRE_ALL) (struct criterion_test_set *set)
{
    (void) set;
    it_setup ("webhook", true, s_env);
}

ReportHook (POST_ALL) (struct criterion_global_stats *stats)
{
    it_teardown (stats->tests_failed + stats->tests_crashed > 0);
}

//  A value no other test or run uses, for client ids and quantities.
static long
s_inbox_rows (const it_ctx_t *ctx, const char *id)
{
    return it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid", id);
}

static long
s_inbox_total (const it_ctx_t *ctx)
{
    return it_sql_long (ctx, "SELECT count(*) FROM inbox", NULL);
}

//  Posts, expects `status`, and returns the answer's id (accepted/duplicate) in id.
static void
s_expect (const it_ctx_t *ctx, const char *path, const char *ctype, const char *body,
          long status, char id[64])
{
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    cr_assert_eq (it_webhook (ctx, path, ctype, body, addr, &r), 0, "no answer (log %s)",
                  ctx->log_path);
    cr_assert_eq (r.status, status, "POST %s %s -> %ld %s (log %s)", path, body, r.status,
                  r.body, ctx->log_path);
    if (id) {
        id[0] = '\0';
        cr_assert (it_json_str (r.body, "id", id, 64), "no id in %s", r.body);
    }
    it_resp_free (&r);
}

Test (webhook, json_body_is_accepted_with_202_and_committed_before_the_answer)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id[64];
    snprintf (body, sizeof body,
              "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"contracts\":0.5,\"price\":42000,"
              "\"id\":\"c-%lu\",\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    cr_assert_eq (it_webhook (ctx, "/webhook/tradingview", "application/json", body, addr, &r), 0);
    cr_assert_eq (r.status, 202, "got %ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"status\":\"accepted\""), "%s", r.body);
    cr_assert (it_json_str (r.body, "id", id, sizeof id));
    it_resp_free (&r);
    //  The row is there the moment the answer is: the commit happened first.
    cr_assert_eq (s_inbox_rows (ctx, id), 1);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE corr = $1::uuid"
                                    " AND type = 'webhook.received'", id), 1);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND source = 'tradingview' AND alert->>'symbol' = 'BTCUSDT'",
                               id), 1);
    //  The raw body is kept, but never with the passphrase in it.
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND position('\"ticker\":\"BTCUSDT\"' in"
                                    " convert_from (body, 'UTF8')) > 0"
                                    " AND position('" IT_SECRET "' in convert_from (body, 'UTF8')) = 0",
                               id), 1);
}

Test (webhook, an_escaped_passphrase_keeps_the_raw_body_out_of_the_inbox)
{
    const it_ctx_t *ctx = it_ctx ();
    //  The secret's first character written as a JSON escape: it cannot be found verbatim.
    char body[256], id[64], addr[32];
    snprintf (body, sizeof body,
              "{\"ticker\":\"ETHUSDT\",\"action\":\"buy\",\"qty\":1,\"id\":\"e-%lu\","
              "\"passphrase\":\"\\u%04x%s\"}", it_unique (), (unsigned) IT_SECRET[0],
              &IT_SECRET[1]);
    it_unique_addr (addr);
    it_resp_t r;
    cr_assert_eq (it_webhook (ctx, "/webhook/tradingview", "application/json", body, addr, &r), 0);
    cr_assert_eq (r.status, 202, "got %ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id, sizeof id));
    it_resp_free (&r);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND length (body) = 0 AND alert->>'symbol' = 'ETHUSDT'",
                               id), 1);
}

Test (webhook, the_secret_anywhere_else_in_the_alert_is_stored_and_published_nowhere)
{
    const it_ctx_t *ctx = it_ctx ();
    //  Authenticated by ?token=, with the secret pasted into the comment, the strategy and
    //  the id as well: none of it may reach the inbox, the envelope or the REST API.
    char body[512], id[64];
    snprintf (body, sizeof body,
              "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"qty\":1,\"id\":\"s-%lu-" IT_SECRET "\","
              "\"strategy\":\"EMA " IT_SECRET "\",\"comment\":\"key " IT_SECRET " end\"}",
              it_unique ());
    s_expect (ctx, "/webhook/tradingview?token=" IT_SECRET, "application/json", body, 202, id);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND position('" IT_SECRET "' in convert_from (body, 'UTF8')) = 0"
                                    " AND position('" IT_SECRET "' in alert::text) = 0"
                                    " AND position('" IT_SECRET "' in idem_key) = 0"
                                    " AND alert->>'comment' LIKE 'key %*** end'", id), 1,
                  "the secret is in the inbox row");
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE corr = $1::uuid"
                                    " AND position(convert_to ('" IT_SECRET "', 'UTF8')"
                                    " in envelope) = 0", id), 1,
                  "the secret is in webhook.received");
}

Test (webhook, plain_text_json_with_trailing_newline_is_accepted)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id[64];
    snprintf (body, sizeof body, "{\"ticker\":\"ETHUSDT\",\"action\":\"sell\",\"qty\":\"%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}\n", it_unique () % 1000 + 1);
    s_expect (ctx, "/webhook/tradingview", "text/plain; charset=utf-8", body, 202, id);
    cr_assert_eq (s_inbox_rows (ctx, id), 1);
}

Test (webhook, plain_text_key_value_line_is_accepted)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id[64];
    snprintf (body, sizeof body, "ticker=SPY action=buy qty=%lu price=501.25 passphrase=%s",
              it_unique () % 100000 + 1, IT_SECRET);
    s_expect (ctx, "/webhook/tradingview", "text/plain", body, 202, id);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND alert->>'symbol' = 'SPY'", id), 1);
}

Test (webhook, plain_text_action_ticker_qty_price_with_token_is_accepted)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[128], id[64];
    snprintf (body, sizeof body, "buy BTCUSDT 0.%lu @42000\n", it_unique () % 100000 + 1);
    s_expect (ctx, "/webhook/tradingview?token=" IT_SECRET, "text/plain", body, 202, id);
    cr_assert_eq (s_inbox_rows (ctx, id), 1);
}

Test (webhook, numbers_as_strings_and_aliases_are_accepted)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[512], id[64];
    snprintf (body, sizeof body,
              "{\"symbol\":\"AAPL\",\"side\":\"sell\",\"quantity\":\"%lu\",\"price\":\"185.5\","
              "\"timenow\":\"2024-05-01T12:00:00Z\",\"interval\":\"5\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique () % 1000 + 1);
    s_expect (ctx, "/webhook", "application/json", body, 202, id);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND alert->>'symbol' = 'AAPL'", id), 1);
}

Test (webhook, strategy_placeholders_values_are_accepted)
{
    //  What {{strategy.order.action}} and {{strategy.market_position}} become.
    const it_ctx_t *ctx = it_ctx ();
    char body[512], id[64];
    snprintf (body, sizeof body,
              "{\"ticker\":\"ETHUSDT\",\"action\":\"sell\",\"market_position\":\"flat\","
              "\"position_size\":\"0\",\"contracts\":\"%lu\",\"strategy\":\"ema\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique () % 1000 + 1);
    s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, id);
    cr_assert_eq (s_inbox_rows (ctx, id), 1);
}

Test (webhook, unfilled_placeholder_is_400_naming_the_field_and_stores_nothing)
{
    const it_ctx_t *ctx = it_ctx ();
    long before = s_inbox_total (ctx);
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json",
                "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"price\":\"{{close}}\","
                "\"passphrase\":\"" IT_SECRET "\"}", addr, &r);
    cr_assert_eq (r.status, 400, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"code\":\"invalid_field\""), "%s", r.body);
    cr_assert (strstr (r.body, "\"field\":\"price\""), "%s", r.body);
    it_resp_free (&r);
    cr_assert_eq (s_inbox_total (ctx), before);
}

Test (webhook, missing_symbol_is_400_and_stores_nothing)
{
    const it_ctx_t *ctx = it_ctx ();
    long before = s_inbox_total (ctx);
    s_expect (ctx, "/webhook/tradingview", "application/json",
              "{\"action\":\"buy\",\"passphrase\":\"" IT_SECRET "\"}", 400, NULL);
    cr_assert_eq (s_inbox_total (ctx), before);
}

Test (webhook, wrong_passphrase_is_401_a_security_event_and_no_row)
{
    const it_ctx_t *ctx = it_ctx ();
    long before = s_inbox_total (ctx);
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json",
                "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"passphrase\":\"wrong-secret-xyz\"}",
                addr, &r);
    cr_assert_eq (r.status, 401, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"code\":\"unauthorized\""), "%s", r.body);
    cr_assert_null (strstr (r.body, "wrong-secret-xyz"), "the answer quotes the secret");
    it_resp_free (&r);
    cr_assert_eq (s_inbox_total (ctx), before);
    //  The security event is stored by a background thread: wait for it a little.
    long n = 0;
    for (int i = 0; i < 100 && n < 1; i++) {
        n = it_sql_long (ctx, "SELECT count(*) FROM security_events WHERE remote_addr = $1"
                              " AND kind = 'auth.bad_secret'", addr);
        if (n < 1)
            usleep (20000);
    }
    cr_assert_eq (n, 1, "no security event for %s", addr);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM security_events WHERE"
                                    " detail LIKE '%wrong-secret%'", NULL), 0);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM events WHERE type = 'security.event'",
                               NULL) >= 1, 1);
}

Test (webhook, no_credentials_is_401)
{
    const it_ctx_t *ctx = it_ctx ();
    s_expect (ctx, "/webhook/tradingview", "application/json",
              "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\"}", 401, NULL);
}

Test (webhook, wrong_token_is_401)
{
    const it_ctx_t *ctx = it_ctx ();
    s_expect (ctx, "/webhook/tradingview?token=nope-nope-nope", "text/plain",
              "buy BTCUSDT 1", 401, NULL);
}

//  Posts body signed at time ts with the HMAC headers; returns the status.
static long
s_post_signed (const it_ctx_t *ctx, const char *body, long ts, const char *secret, char id[64])
{
    char tss[32], sig[FKS_AUTH_SIGNATURE_MAX];
    snprintf (tss, sizeof tss, "%ld", ts);
    cr_assert_eq (fks_auth_hmac_sign (secret, strlen (secret), tss, body, strlen (body), sig), 0);
    char h1[64], h2[128], addr[32], fwd[64], url[256];
    snprintf (h1, sizeof h1, "X-FKS-Timestamp: %s", tss);
    snprintf (h2, sizeof h2, "X-FKS-Signature: %s", sig);
    it_unique_addr (addr);
    snprintf (fwd, sizeof fwd, "X-Forwarded-For: %s", addr);
    const char *headers[] = { "Content-Type: application/json", h1, h2, fwd, NULL };
    snprintf (url, sizeof url, "%s/webhook", ctx->base);
    it_resp_t r;
    cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
    long st = r.status;
    if (id && !it_json_str (r.body, "id", id, 64))
        id[0] = '\0';
    it_resp_free (&r);
    return st;
}

Test (webhook, hmac_signed_script_alert_is_accepted_as_source_script)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id[64];
    snprintf (body, sizeof body, "{\"ticker\":\"SOLUSDT\",\"action\":\"buy\",\"qty\":%lu}",
              it_unique () % 1000 + 1);
    cr_assert_eq (s_post_signed (ctx, body, (long) time (NULL), IT_SECRET, id), 202);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND source = 'script'", id), 1);
}

Test (webhook, hmac_outside_the_replay_window_is_401)
{
    const it_ctx_t *ctx = it_ctx ();
    cr_assert_eq (s_post_signed (ctx, "{\"ticker\":\"SOLUSDT\",\"action\":\"buy\"}",
                                 (long) time (NULL) - 3600, IT_SECRET, NULL), 401);
}

Test (webhook, hmac_with_the_wrong_key_is_401)
{
    const it_ctx_t *ctx = it_ctx ();
    cr_assert_eq (s_post_signed (ctx, "{\"ticker\":\"SOLUSDT\",\"action\":\"buy\"}",
                                 (long) time (NULL), "another-secret-entirely", NULL), 401);
}

Test (webhook, source_outside_the_allowlist_is_403_and_a_security_event)
{
    const it_ctx_t *ctx = it_ctx ();
    long before = s_inbox_total (ctx);
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json",
                "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"passphrase\":\"" IT_SECRET "\"}",
                "192.0.2.77", &r);
    cr_assert_eq (r.status, 403, "%ld %s", r.status, r.body);
    it_resp_free (&r);
    cr_assert_eq (s_inbox_total (ctx), before);
    long n = 0;
    for (int i = 0; i < 100 && n < 1; i++) {
        n = it_sql_long (ctx, "SELECT count(*) FROM security_events WHERE remote_addr = "
                              "'192.0.2.77' AND kind = 'source.denied'", NULL);
        if (n < 1)
            usleep (20000);
    }
    cr_assert_eq (n, 1);
}

Test (webhook, body_over_the_limit_is_413_and_stores_nothing)
{
    const it_ctx_t *ctx = it_ctx ();
    long before = s_inbox_total (ctx);
    char *big = malloc (8192);
    memset (big, ' ', 8191);
    memcpy (big, "{\"ticker\":\"A\",\"action\":\"buy\"}", 29);
    big[8191] = '\0';
    s_expect (ctx, "/webhook/tradingview", "application/json", big, 413, NULL);
    free (big);
    cr_assert_eq (s_inbox_total (ctx), before);
}

Test (webhook, unsupported_media_type_is_415)
{
    const it_ctx_t *ctx = it_ctx ();
    s_expect (ctx, "/webhook/tradingview", "application/x-www-form-urlencoded",
              "ticker=A&action=buy", 415, NULL);
}

Test (webhook, get_is_405)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256];
    snprintf (url, sizeof url, "%s/webhook/tradingview", ctx->base);
    it_resp_t r;
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 405);
    char allow[32];
    cr_assert (it_resp_header (&r, "Allow", allow, sizeof allow));
    cr_assert_str_eq (allow, "POST");
    it_resp_free (&r);
}

Test (webhook, too_many_requests_from_one_address_is_429_with_retry_after)
{
    const it_ctx_t *ctx = it_ctx ();
    char addr[32];
    it_unique_addr (addr);
    long last = 0;
    int n429 = 0;
    char retry[16] = "";
    for (int i = 0; i < 25; i++) {
        it_resp_t r;
        it_webhook (ctx, "/webhook/tradingview", "application/json", "{}", addr, &r);
        last = r.status;
        if (r.status == 429) {
            n429++;
            it_resp_header (&r, "Retry-After", retry, sizeof retry);
        }
        it_resp_free (&r);
    }
    //  The limit is 20 per minute: the first 20 get an answer (400 here), the rest 429.
    cr_assert_eq (n429, 5, "429s: %d", n429);
    cr_assert_eq (last, 429);
    cr_assert (atoi (retry) >= 1 && atoi (retry) <= 120, "Retry-After: '%s'", retry);
    cr_assert (it_metric (ctx, "fks_gateway_ratelimit_rejections_total{scope=\"ip\"}") >= 5);
}

Test (webhook, the_same_alert_twice_is_one_row_and_200_duplicate_with_the_same_id)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id1[64], id2[64];
    snprintf (body, sizeof body, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"id\":\"dup-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, id1);
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json", body, addr, &r);
    cr_assert_eq (r.status, 200, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "\"status\":\"duplicate\""), "%s", r.body);
    cr_assert (it_json_str (r.body, "id", id2, sizeof id2));
    it_resp_free (&r);
    cr_assert_str_eq (id1, id2);
    cr_assert_eq (s_inbox_rows (ctx, id1), 1);
}

Test (webhook, the_same_alert_without_id_twice_is_a_duplicate_by_its_content)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256], id1[64], id2[64];
    snprintf (body, sizeof body, "buy XRPUSDT %lu @0.5", it_unique () % 100000 + 1);
    s_expect (ctx, "/webhook/tradingview?token=" IT_SECRET, "text/plain", body, 202, id1);
    s_expect (ctx, "/webhook/tradingview?token=" IT_SECRET, "text/plain", body, 200, id2);
    cr_assert_str_eq (id1, id2);
}

//  Sleeps until the wall clock (the gateway's bucket clock) is `phase` ms into a window of
//  `window` ms.
static void
s_sleep_to_phase (long window, long phase)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    long ms = (long) ((now.tv_sec % 86400) * 1000 + now.tv_nsec / 1000000) % window;
    long wait = (phase - ms + window) % window;
    usleep ((useconds_t) wait * 1000);
}

//  Posts body as text/plain to url; the status, and the answer's id in id.
static long
s_post_text (const char *url, const char *body, char id[64])
{
    it_resp_t r;
    const char *headers[] = { "Content-Type: text/plain", NULL };
    cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
    long st = r.status;
    if (!it_json_str (r.body, "id", id, 64))
        id[0] = '\0';
    it_resp_free (&r);
    return st;
}

Test (webhook, the_same_alert_either_side_of_a_window_boundary_is_a_duplicate)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-window.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_IDEM_WINDOW=2s", NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char url[160], body[64], id1[64], id2[64], id3[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview?token=" IT_SECRET, port);
    snprintf (body, sizeof body, "buy XRPUSDT %lu @0.5", it_unique () % 100000 + 1);
    //  Late in one 2 s window, then early in the next: the keys differ (one per window) but
    //  the second is 300 ms after the first, well inside the window.
    s_sleep_to_phase (2000, 1700);
    cr_assert_eq (s_post_text (url, body, id1), 202);
    s_sleep_to_phase (2000, 0);
    cr_assert_eq (s_post_text (url, body, id2), 200);
    cr_assert_str_eq (id2, id1);
    //  More than a window after the first accept, the same alert is a new one.
    usleep (2300 * 1000);
    cr_assert_eq (s_post_text (url, body, id3), 202);
    cr_assert_str_neq (id3, id1);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id IN ($1::uuid)", id1), 1);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

Test (webhook, a_replayed_signed_request_is_a_duplicate_for_the_whole_replay_window)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-replay.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_IDEM_WINDOW=1s", "FKS_GATEWAY_REPLAY_WINDOW=300",
                          NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char body[128], tss[32], sig[FKS_AUTH_SIGNATURE_MAX], h1[64], h2[128], url[128];
    snprintf (body, sizeof body, "{\"ticker\":\"SOLUSDT\",\"action\":\"buy\",\"qty\":%lu}",
              it_unique () % 1000 + 1);
    snprintf (tss, sizeof tss, "%ld", (long) time (NULL));
    cr_assert_eq (fks_auth_hmac_sign (IT_SECRET, strlen (IT_SECRET), tss, body, strlen (body),
                                      sig), 0);
    snprintf (h1, sizeof h1, "X-FKS-Timestamp: %s", tss);
    snprintf (h2, sizeof h2, "X-FKS-Signature: %s", sig);
    const char *headers[] = { "Content-Type: application/json", h1, h2, NULL };
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook", port);
    char ids[2][64];
    long st[2];
    for (int i = 0; i < 2; i++) {
        //  The same request, byte for byte, again 2.5 s later: past the 1 s idempotency window,
        //  inside the 300 s replay window.
        if (i == 1)
            usleep (2500 * 1000);
        it_resp_t r;
        cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
        st[i] = r.status;
        cr_assert (it_json_str (r.body, "id", ids[i], 64), "%s", r.body);
        it_resp_free (&r);
    }
    cr_assert_eq (st[0], 202);
    cr_assert_eq (st[1], 200);
    cr_assert_str_eq (ids[1], ids[0]);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

//  An inbox item with its own ids, key `key` and previous-window key `prev` (may be NULL),
//  and a real webhook.received envelope (env must outlive the submit).
static void
s_item (fks_inbox_item_t *it, const char *key, const char *prev, msgpack_sbuffer *env)
{
    memset (it, 0, sizeof *it);
    cr_assert_eq (fks_id_new (&it->id), 0);
    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &it->id, NULL), 0);
    fks_alert_t alert;
    fks_alert_secret_t pass;
    fks_alert_err_t perr;
    cr_assert_eq (fks_alert_parse ("text/plain", "buy X 1", 7, "tradingview", &alert, &pass,
                                   &perr), 0);
    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &packed, msgpack_sbuffer_write);
    cr_assert_eq (fks_alert_pack (&alert, &it->id, &pk), 0);
    fks_envelope_err_t err = { "" };
    msgpack_sbuffer_init (env);
    cr_assert_eq (fks_envelope_encode (&hdr, packed.data, packed.size, env, &err), 0, "%s",
                  err.msg);
    msgpack_sbuffer_destroy (&packed);
    it->event_id = hdr.id;
    it->ts_ns = hdr.ts;
    it->idem_key = key;
    it->prev_key = prev;
    it->source = "tradingview";
    it->content_type = "text/plain";
    it->body = "buy X 1";
    it->body_len = 7;
    it->alert_json = "{}";
    it->alert_json_len = 2;
    it->remote_addr = "127.0.0.1";
    it->envelope = env->data;
    it->envelope_len = env->size;
}

typedef struct {
    fks_inbox_t *inbox;
    fks_inbox_item_t item;
    fks_inbox_result_t res;
} s_submit_t;

static void *
s_submitter (void *arg)
{
    s_submit_t *s = arg;
    s->res = fks_inbox_submit (s->inbox, &s->item);
    return NULL;
}

Test (webhook, an_alert_and_its_copy_from_the_window_before_in_one_batch_are_one_row)
{
    const it_ctx_t *ctx = it_ctx ();
    //  One committer; a table lock held elsewhere stalls its first batch (z) while a and b
    //  queue behind it, so that a and b are committed by one statement.
    PGconn *lock = PQconnectdb (ctx->db_url);
    cr_assert_eq (PQstatus (lock), CONNECTION_OK);
    PQclear (PQexec (lock, "BEGIN"));
    PGresult *r = PQexec (lock, "LOCK TABLE inbox IN SHARE MODE");
    cr_assert_eq (PQresultStatus (r), PGRES_COMMAND_OK);
    PQclear (r);
    fks_inbox_opts_t o = { .pg_url = ctx->db_url, .committers = 1, .timeout_ms = 20000,
                           .idem_window_ms = 60000 };
    fks_inbox_t *inbox = fks_inbox_new (&o);
    cr_assert (inbox);
    char kz[64], ka[64], kb[64];
    unsigned long u = it_unique ();
    snprintf (kz, sizeof kz, "h:it-z-%lu", u);
    snprintf (ka, sizeof ka, "h:it-a-%lu", u);         /* the window before */
    snprintf (kb, sizeof kb, "h:it-b-%lu", u);         /* this window */
    s_submit_t sub[3];
    msgpack_sbuffer env[3];
    const char *keys[3] = { kz, ka, kb };
    const char *prevs[3] = { NULL, NULL, ka };
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        sub[i].inbox = inbox;
        s_item (&sub[i].item, keys[i], prevs[i], &env[i]);
        cr_assert_eq (pthread_create (&th[i], NULL, s_submitter, &sub[i]), 0);
        usleep (i == 0 ? 300000 : 100000);
    }
    usleep (200000);
    PQclear (PQexec (lock, "COMMIT"));
    PQfinish (lock);
    for (int i = 0; i < 3; i++)
        pthread_join (th[i], NULL);
    cr_assert_eq (sub[0].res, FKS_INBOX_ACCEPTED, "z: %s", sub[0].item.why);
    cr_assert_eq (sub[1].res, FKS_INBOX_ACCEPTED, "a: %s", sub[1].item.why);
    cr_assert_eq (sub[2].res, FKS_INBOX_DUPLICATE, "b: %d %s", sub[2].res, sub[2].item.why);
    cr_assert_eq (memcmp (sub[2].item.result_id.b, sub[1].item.id.b, FKS_ID_SIZE), 0);
    char ida[FKS_ID_STR_SIZE];
    fks_id_format (&sub[1].item.id, ida);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE idem_key LIKE 'h:it-_-'"
                                    " || split_part ((SELECT idem_key FROM inbox"
                                    "                  WHERE id = $1::uuid), '-', 3)", ida), 2);
    //  The same copy in a batch of its own: found in the table, received inside the window.
    s_submit_t again = { .inbox = inbox };
    msgpack_sbuffer env2;
    char kc[64];
    snprintf (kc, sizeof kc, "h:it-c-%lu", u);
    s_item (&again.item, kc, ka, &env2);
    cr_assert_eq (fks_inbox_submit (inbox, &again.item), FKS_INBOX_DUPLICATE);
    cr_assert_eq (memcmp (again.item.result_id.b, sub[1].item.id.b, FKS_ID_SIZE), 0);
    fks_inbox_destroy (&inbox);
    for (int i = 0; i < 3; i++)
        msgpack_sbuffer_destroy (&env[i]);
    msgpack_sbuffer_destroy (&env2);
}

typedef struct {
    const it_ctx_t *ctx;
    const char *body;
    long status;
    char id[64];
} s_post_t;

static void *
s_poster (void *arg)
{
    s_post_t *p = arg;
    char addr[32];
    it_unique_addr (addr);
    it_resp_t r;
    if (it_webhook (p->ctx, "/webhook/tradingview", "application/json", p->body, addr, &r) == 0) {
        p->status = r.status;
        if (!it_json_str (r.body, "id", p->id, sizeof p->id))
            p->id[0] = '\0';
    }
    it_resp_free (&r);
    return NULL;
}

Test (webhook, twenty_concurrent_posts_of_one_alert_give_one_row_one_202_and_19_duplicates)
{
    const it_ctx_t *ctx = it_ctx ();
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"BTCUSDT\",\"action\":\"sell\",\"id\":\"race-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    s_post_t posts[20];
    pthread_t th[20];
    for (int i = 0; i < 20; i++) {
        posts[i] = (s_post_t) { .ctx = ctx, .body = body };
        pthread_create (&th[i], NULL, s_poster, &posts[i]);
    }
    for (int i = 0; i < 20; i++)
        pthread_join (th[i], NULL);
    int accepted = 0, dup = 0;
    for (int i = 0; i < 20; i++) {
        accepted += posts[i].status == 202;
        dup += posts[i].status == 200;
        cr_assert_str_eq (posts[i].id, posts[0].id, "every answer names the same alert");
    }
    cr_assert_eq (accepted, 1, "202s: %d", accepted);
    cr_assert_eq (dup, 19, "200s: %d", dup);
    char key[96];
    snprintf (key, sizeof key, "id:race-%s", strstr (body, "race-") + 5);
    *strchr (key, '"') = '\0';
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE idem_key = $1", key), 1);
}

Test (webhook, accepted_alert_is_published_on_the_bus_with_its_id_as_corr)
{
    const it_ctx_t *ctx = it_ctx ();
    void *zctx = zmq_ctx_new ();
    void *sub = zmq_socket (zctx, ZMQ_SUB);
    char ep[64];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", ctx->bus_stream_port);
    zmq_connect (sub, ep);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "webhook.received", 16);
    int to = 200;
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &to, sizeof to);
    usleep (300000);                    /* the subscription reaches the broker */
    char body[256], id[64];
    snprintf (body, sizeof body, "{\"ticker\":\"ADAUSDT\",\"action\":\"buy\",\"id\":\"pub-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, id);
    bool found = false;
    for (int i = 0; i < 50 && !found; i++) {
        char topic[64];
        int n = zmq_recv (sub, topic, sizeof topic, 0);
        if (n < 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init (&m);
        zmq_msg_recv (&m, sub, 0);
        fks_envelope_err_t err;
        fks_envelope_t *env = fks_envelope_decode (zmq_msg_data (&m), zmq_msg_size (&m), &err);
        if (env) {
            char corr[FKS_ID_STR_SIZE];
            fks_id_format (&fks_envelope_hdr (env)->corr, corr);
            char sym[16] = "";
            fks_envelope_get_str (env, "symbol", sym, sizeof sym);
            found = strcmp (corr, id) == 0 && strcmp (sym, "ADAUSDT") == 0;
            fks_envelope_destroy (&env);
        }
        zmq_msg_close (&m);
    }
    zmq_close (sub);
    zmq_ctx_term (zctx);
    cr_assert (found, "no webhook.received with corr %s on the bus", id);
}

Test (webhook, health_ready_and_metrics_answer)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256];
    it_resp_t r;
    snprintf (url, sizeof url, "%s/health", ctx->base);
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, "\"status\":\"healthy\"") && strstr (r.body, "\"env\":\"it\""),
               "%s", r.body);
    it_resp_free (&r);
    snprintf (url, sizeof url, "%s/ready", ctx->base);
    long st = 0;
    for (int i = 0; i < 50 && st != 200; i++) {
        it_http ("GET", url, NULL, NULL, 0, &r);
        st = r.status;
        it_resp_free (&r);
        if (st != 200)
            usleep (100000);
    }
    cr_assert_eq (st, 200, "/ready with PostgreSQL, Redis and the bus up");
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"DOTUSDT\",\"action\":\"buy\",\"id\":\"m-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, NULL);
    snprintf (url, sizeof url, "%s/metrics", ctx->base);
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, "fks_gateway_webhooks_total{result=\"accepted\"}"), "no counts");
    cr_assert (strstr (r.body, "fks_gateway_webhook_accept_seconds_bucket"), "no histogram");
    cr_assert (strstr (r.body, "fks_gateway_requests_in_flight"), "no in-flight gauge");
    cr_assert (strstr (r.body, "fks_gateway_stream_clients"), "no stream gauge");
    it_resp_free (&r);
    cr_assert (it_metric (ctx, "fks_gateway_webhooks_total{result=\"accepted\"}") >= 1);
}

Test (webhook, unknown_route_is_a_json_404)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256];
    snprintf (url, sizeof url, "%s/webhook/other", ctx->base);
    it_resp_t r;
    it_http ("POST", url, NULL, "{}", 2, &r);
    cr_assert_eq (r.status, 404);
    cr_assert (strstr (r.body, "\"code\":\"not_found\""), "%s", r.body);
    it_resp_free (&r);
}

Test (webhook, readme_example_is_accepted)
{
    //  The example of docs/ARCHITECTURE.gateway.md ("Try it"), as curl sends it.
    const it_ctx_t *ctx = it_ctx ();
    char body[256];
    snprintf (body, sizeof body,
              "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"contracts\":\"0.01\","
              "\"price\":\"%lu\",\"passphrase\":\"" IT_SECRET "\"}", 60000 + it_unique () % 1000);
    s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, NULL);
}

//  A second gateway whose database is unreachable: 503, promptly, and nothing stored.
Test (webhook, database_down_is_503_promptly)
{
    const it_ctx_t *ctx = it_ctx ();
    char pg[128], log_path[128];
    int nobody = fks_test_free_port ();                 //  nothing listens there
    cr_assert_gt (nobody, 0);
    snprintf (pg, sizeof pg, "FKS_PG_URL=postgresql://postgres@127.0.0.1:%d/none?connect_timeout=2",
              nobody);
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-down.log", (int) getpid ());
    const char *env[] = { pg, NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "the gateway must start without its database (log %s)", log_path);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview", port);
    const char *headers[] = { "Content-Type: application/json", NULL };
    const char *body = "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"passphrase\":\"" IT_SECRET "\"}";
    struct timespec a, b;
    clock_gettime (CLOCK_MONOTONIC, &a);
    it_resp_t r;
    it_http ("POST", url, headers, body, strlen (body), &r);
    clock_gettime (CLOCK_MONOTONIC, &b);
    cr_assert_eq (r.status, 503, "%ld %s", r.status, r.body);
    char retry[16];
    cr_assert (it_resp_header (&r, "Retry-After", retry, sizeof retry));
    it_resp_free (&r);
    double secs = (double) (b.tv_sec - a.tv_sec) + (double) (b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert (secs < 3.0, "503 took %.2f s", secs);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/ready", port);
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 503);
    it_resp_free (&r);
    cr_assert_eq (it_stop_pid (pid), 0, "clean exit on SIGTERM");
    unlink (log_path);
}

//  A second gateway with no bus at all: alerts are still accepted (the reconciler publishes
//  them later).
Test (webhook, bus_down_still_accepts)
{
    const it_ctx_t *ctx = it_ctx ();
    char bus[96], stream[96], log_path[128];
    int bus_port = fks_test_free_port (), stream_port = fks_test_free_port ();
    cr_assert (bus_port > 0 && stream_port > 0);
    snprintf (bus, sizeof bus, "FKS_BUS_URL=tcp://127.0.0.1:%d", bus_port);
    snprintf (stream, sizeof stream, "FKS_BUS_STREAM_URL=tcp://127.0.0.1:%d", stream_port);
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-nobus.log", (int) getpid ());
    const char *env[] = { bus, stream, NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char url[128], body[256], id[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview", port);
    snprintf (body, sizeof body, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"id\":\"nobus-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    const char *headers[] = { "Content-Type: application/json", NULL };
    it_resp_t r;
    it_http ("POST", url, headers, body, strlen (body), &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id, sizeof id));
    it_resp_free (&r);
    cr_assert_eq (s_inbox_rows (ctx, id), 1);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/ready", port);
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 503, "/ready says the bus is down");
    cr_assert (strstr (r.body, "bus"), "%s", r.body);
    it_resp_free (&r);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

Test (webhook, database_connection_killed_is_survived)
{
    //  PostgreSQL ends the inbox's connections (as on a restart): the next alerts still commit.
    const it_ctx_t *ctx = it_ctx ();
    PGresult *res = it_sql (ctx, "SELECT pg_terminate_backend (pid) FROM pg_stat_activity"
                                 " WHERE application_name = 'fks-gateway-inbox'"
                                 " AND datname = current_database ()", 0, NULL);
    PQclear (res);
    usleep (100000);
    for (int i = 0; i < 5; i++) {
        char body[256];
        snprintf (body, sizeof body, "{\"ticker\":\"LTCUSDT\",\"action\":\"buy\","
                  "\"id\":\"kill-%lu\",\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
        s_expect (ctx, "/webhook/tradingview", "application/json", body, 202, NULL);
    }
}

//  Opens a raw connection to port on loopback.
static int
s_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    cr_assert_eq (connect (fd, (struct sockaddr *) &a, sizeof a), 0);
    return fd;
}

//  Seconds until the server closes fd (reading and discarding what it sends), at most limit.
static double
s_seconds_until_closed (int fd, double limit, char *first, size_t cap)
{
    struct timespec a, b;
    clock_gettime (CLOCK_MONOTONIC, &a);
    struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t got = 0;
    for (;;) {
        char buf[512];
        ssize_t n = read (fd, buf, sizeof buf);
        clock_gettime (CLOCK_MONOTONIC, &b);
        double secs = (double) (b.tv_sec - a.tv_sec) + (double) (b.tv_nsec - a.tv_nsec) / 1e9;
        if (n > 0 && first && got + 1 < cap) {
            size_t take = (size_t) n < cap - 1 - got ? (size_t) n : cap - 1 - got;
            memcpy (first + got, buf, take);
            got += take;
            first[got] = '\0';
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return secs;
        if (secs > limit)
            return secs;
    }
}

Test (webhook, slow_senders_are_cut_off_by_the_request_timeout)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-slow.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_REQUEST_TIMEOUT=1s", NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    //  Headers that never end (slowloris): the connection is closed, the thread freed.
    int fd = s_connect (port);
    const char *partial = "POST /webhook/tradingview HTTP/1.1\r\nHost: x\r\n";
    cr_assert (write (fd, partial, strlen (partial)) > 0);
    double secs = s_seconds_until_closed (fd, 10, NULL, 0);
    close (fd);
    cr_assert (secs < 5, "a stalled header held the connection %.1f s", secs);
    //  A body that stops half-way: 408, connection closed, nothing stored.
    long before = s_inbox_total (ctx);
    fd = s_connect (port);
    const char *head = "POST /webhook/tradingview HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"ticker\":";
    cr_assert (write (fd, head, strlen (head)) > 0);
    char answer[256] = "";
    secs = s_seconds_until_closed (fd, 10, answer, sizeof answer);
    close (fd);
    cr_assert (secs < 5, "a stalled body held the connection %.1f s", secs);
    cr_assert (strncmp (answer, "HTTP/1.1 408", 12) == 0, "answer: %s", answer);
    cr_assert_eq (s_inbox_total (ctx), before);
    //  A body that keeps coming, a byte every 200 ms (each read makes progress, so civetweb
    //  alone would wait for all 100 bytes, 20 s): cut at the request timeout (1 s) with 408.
    fd = s_connect (port);
    const char *head2 = "POST /webhook/tradingview HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    cr_assert (write (fd, head2, strlen (head2)) > 0);
    struct timespec t0, t1;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    answer[0] = '\0';
    for (int i = 0; i < 100; i++) {
        if (send (fd, "{", 1, MSG_NOSIGNAL) != 1)
            break;
        if (s_seconds_until_closed (fd, 0.2, answer, sizeof answer) < 0.2)
            break;                      /* closed */
    }
    clock_gettime (CLOCK_MONOTONIC, &t1);
    close (fd);
    secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert (secs < 3, "a trickling body held the connection %.1f s", secs);
    cr_assert (strncmp (answer, "HTTP/1.1 408", 12) == 0, "answer: %s", answer);
    cr_assert (strstr (answer, "\"request_timeout\""), "answer: %s", answer);
    cr_assert_eq (s_inbox_total (ctx), before);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

Test (webhook, civetwebs_own_errors_answer_in_the_contracts_json)
{
    const it_ctx_t *ctx = it_ctx ();
    //  Headers far over the limit: civetweb refuses them before any handler runs.
    int fd = s_connect (ctx->port);
    char big[40000];
    int n = snprintf (big, sizeof big, "POST /webhook/tradingview HTTP/1.1\r\nHost: x\r\n"
                      "X-Filler: ");
    memset (big + n, 'a', sizeof big - (size_t) n - 8);
    memcpy (big + sizeof big - 8, "\r\n\r\n\0\0\0\0", 8);
    ssize_t w = send (fd, big, strlen (big), MSG_NOSIGNAL);
    cr_assert (w > 0);
    char answer[1024] = "";
    double secs = s_seconds_until_closed (fd, 10, answer, sizeof answer);
    close (fd);
    cr_assert (secs < 10);
    cr_assert (strncmp (answer, "HTTP/1.1 4", 10) == 0, "answer: %s", answer);
    cr_assert (strstr (answer, "Content-Type: application/json"), "answer: %s", answer);
    cr_assert (strstr (answer, "{\"error\":{\"code\":"), "answer: %s", answer);
    //  A request line civetweb cannot take.
    fd = s_connect (ctx->port);
    const char *bad = "GET / HTTP/2.0\r\nHost: x\r\n\r\n";
    cr_assert (write (fd, bad, strlen (bad)) > 0);
    answer[0] = '\0';
    s_seconds_until_closed (fd, 10, answer, sizeof answer);
    close (fd);
    cr_assert (strstr (answer, "{\"error\":{\"code\":"), "answer: %s", answer);
}

//  Posts a fresh alert with the given X-Forwarded-For lines (NULL-terminated); the status.
static long
s_post_forwarded (const char *url, const char *const *xff)
{
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"id\":\"xff2-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    const char *headers[8] = { "Content-Type: application/json" };
    char lines[4][96];
    int n = 1;
    for (int i = 0; xff[i] && i < 4; i++) {
        snprintf (lines[i], sizeof lines[i], "X-Forwarded-For: %s", xff[i]);
        headers[n++] = lines[i];
    }
    headers[n] = NULL;
    it_resp_t r;
    cr_assert_eq (it_http ("POST", url, headers, body, strlen (body), &r), 0);
    long st = r.status;
    it_resp_free (&r);
    return st;
}

Test (webhook, every_x_forwarded_for_line_is_read_not_only_the_first)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-xff2.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_TRUSTED_PROXIES=127.0.0.1",
                          "FKS_GATEWAY_ALLOWLIST=198.51.100.0/24", NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview", port);
    long before = s_inbox_total (ctx);
    //  The proxy (127.0.0.1, trusted) appends the address it saw, here on a line of its own:
    //  that right-most entry is the client, whatever the client wrote in its own line.
    const char *forged[] = { "198.51.100.7", "192.0.2.1", NULL };
    cr_assert_eq (s_post_forwarded (url, forged), 403);
    const char *forged_one_line[] = { "198.51.100.7, 192.0.2.1", NULL };
    cr_assert_eq (s_post_forwarded (url, forged_one_line), 403);
    cr_assert_eq (s_inbox_total (ctx), before);
    const char *allowed[] = { "192.0.2.1", "198.51.100.7", NULL };
    cr_assert_eq (s_post_forwarded (url, allowed), 202);
    const char *allowed_one[] = { "198.51.100.8", NULL };
    cr_assert_eq (s_post_forwarded (url, allowed_one), 202);
    cr_assert_eq (s_inbox_total (ctx), before + 2);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

Test (webhook, x_forwarded_for_from_an_untrusted_peer_is_ignored)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    snprintf (log_path, sizeof log_path, "/tmp/fks-it-webhook-%d-xff.log", (int) getpid ());
    const char *env[] = { "FKS_GATEWAY_TRUSTED_PROXIES=", "FKS_GATEWAY_ALLOWLIST=127.0.0.1",
                          NULL };
    int port = 0;
    pid_t pid = it_start_gateway (ctx, env, &port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    char url[128], body[256], id[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview", port);
    snprintf (body, sizeof body, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"id\":\"xff-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", it_unique ());
    //  The header claims an address outside the allowlist; the peer is not a trusted proxy,
    //  so the claim is ignored: the client is 127.0.0.1, allowed, and stored as such.
    const char *headers[] = { "Content-Type: application/json", "X-Forwarded-For: 192.0.2.1",
                              NULL };
    it_resp_t r;
    it_http ("POST", url, headers, body, strlen (body), &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id, sizeof id));
    it_resp_free (&r);
    cr_assert_eq (it_sql_long (ctx, "SELECT count(*) FROM inbox WHERE id = $1::uuid"
                                    " AND remote_addr = '127.0.0.1'", id), 1);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}
