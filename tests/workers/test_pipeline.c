/*  test_pipeline.c - the signal and execution workers as real processes, with fks-bus,
 *  fks-gateway, PostgreSQL and Redis: alerts become orders, fills and positions, once.
 *
 *  Integration suite: needs FKS_TEST_PG_URL and FKS_TEST_REDIS_URL (tools/test.sh). Each test
 *  starts its own bus and workers on free ports against a fresh database, and stops them with
 *  SIGTERM at the end, asserting they drain and exit 0. No assertion depends on timing: waits
 *  poll the database until the expected state or a generous deadline.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/redis.h"
#include "tests/workers/harness.h"

#define REDIS_DB 13
#define WAIT_MS  30000

static h_stack_t s;

static void
s_teardown (void)
{
    h_stack_stop (&s);
}

static long long s_position_is (const char *symbol, const char *qty);
static void s_copy_signal_of (const fks_id_t *alert, int n);

static const char *
s_signal_reason (const fks_id_t *alert, char *buf, size_t cap)
{
    char id[FKS_ID_STR_SIZE], q[256];
    fks_id_format (alert, id);
    h_sqlf (q, sizeof q, "SELECT coalesce (max (reason), '') FROM signals WHERE inbox_id = '%s'", id);
    char *r = h_sql_text (q);
    snprintf (buf, cap, "%s", r);
    free (r);
    return buf;
}


//  --------------------------------------------------------------------------
//  Through the gateway, as a user would do it

Test (pipeline, alert_posted_to_the_gateway_becomes_a_filled_order_and_a_position,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .gateway = true,
                         .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_stream_ready (&s);

    char *body = NULL;
    int st = h_http ("POST", s.gateway_port, "/webhook?token=" H_WEBHOOK_SECRET, NULL,
                     "application/json",
                     "{\"ticker\":\"BINANCE:BTCUSDT\",\"action\":\"buy\",\"contracts\":\"0.5\","
                     "\"price\":\"42000\",\"strategy\":\"ema-cross\"}", &body);
    cr_assert_eq (st, 202, "gateway answered %d: %s", st, body);
    char *idp = strstr (body, "\"id\":\"");
    cr_assert (idp, "%s", body);
    fks_id_t alert;
    cr_assert_eq (fks_id_parse (idp + 6, 36, &alert), 0);
    free (body);

    h_wait_alert_status (&alert, "filled");
    char id[FKS_ID_STR_SIZE], q[512];
    fks_id_format (&alert, id);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE corr = '%s' AND status = 'filled'"
         " AND symbol = 'BTCUSDT' AND side = 'buy' AND qty = 0.5 AND filled_qty = 0.5", id);
    cr_assert_eq (h_sql_int (q), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'BTCUSDT'"
                             " AND qty = 0.5 AND avg_price = 42000"), 1);

    //  On the stream, in order.
    char types[8][64];
    int n = h_stream_types (&s, &alert, types, 5, 10000);
    cr_assert_eq (n, 5, "saw %d of the alert's events on the stream", n);
    const char *want[] = { "webhook.received", "signal.created", "order.submitted",
                           "order.filled", "position.updated" };
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq (types[i], want[i], "event %d", i);

    //  Through the REST API.
    char path[128];
    snprintf (path, sizeof path, "/api/v1/alerts/%s", id);
    st = h_http ("GET", s.gateway_port, path, H_ADMIN_KEY, NULL, NULL, &body);
    cr_assert_eq (st, 200, "%s", body);
    cr_assert (strstr (body, "\"filled\""), "%s", body);
    const char *at = body;
    for (int i = 0; i < 5; i++) {
        char needle[80];
        snprintf (needle, sizeof needle, "\"type\":\"%s\"", want[i]);
        const char *hit = strstr (at, needle);
        cr_assert (hit, "stage %s missing or out of order in %s", want[i], body);
        at = hit + 1;
    }
    free (body);
    st = h_http ("GET", s.gateway_port, "/api/v1/orders", H_ADMIN_KEY, NULL, NULL, &body);
    cr_assert_eq (st, 200);
    cr_assert (strstr (body, "BTCUSDT") && strstr (body, "filled"), "%s", body);
    free (body);
    st = h_http ("GET", s.gateway_port, "/api/v1/positions", H_ADMIN_KEY, NULL, NULL, &body);
    cr_assert_eq (st, 200);
    cr_assert (strstr (body, "BTCUSDT"), "%s", body);
    free (body);
}

Test (pipeline, manual_order_and_cancel_from_the_rest_api_take_the_same_path,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .gateway = true,
                         .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_set_price (&s, "ETHUSDT", 2000);
    char *body = NULL;
    int st = h_http ("POST", s.gateway_port, "/api/v1/orders", H_ADMIN_KEY, "application/json",
                     "{\"symbol\":\"ETHUSDT\",\"side\":\"buy\",\"type\":\"limit\",\"qty\":1,"
                     "\"limit_price\":1900}", &body);
    cr_assert (st == 202 || st == 201 || st == 200, "POST /orders answered %d: %s", st, body);
    char *idp = strstr (body, "\"id\":\"");
    cr_assert (idp, "%s", body);
    char id[FKS_ID_STR_SIZE];
    memcpy (id, idp + 6, 36);
    id[36] = '\0';
    free (body);
    char q[256];
    h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE id = '%s' AND status = 'submitted'", id);
    if (h_wait_int (q, 1, WAIT_MS) != 1) {
        h_dump_logs ();
        cr_assert_fail ("the manual limit order did not rest as submitted");
    }
    char path[128];
    snprintf (path, sizeof path, "/api/v1/orders/%s", id);
    st = h_http ("DELETE", s.gateway_port, path, H_ADMIN_KEY, NULL, NULL, &body);
    cr_assert (st >= 200 && st < 300, "DELETE answered %d: %s", st, body);
    free (body);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE id = '%s' AND status = 'cancelled'", id);
    cr_assert_eq (h_wait_int (q, 1, WAIT_MS), 1, "the order was not cancelled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.cancelled'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 0);
}


//  --------------------------------------------------------------------------
//  Alerts published as the gateway would (the workers' own behaviour)

//  TradingView's continuous futures: CME_MINI:ES1! is ordered, filled and held as ES1!, and the
//  REST API values the position at the latest price.
Test (pipeline, a_continuous_futures_alert_is_ordered_and_its_position_valued,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .gateway = true,
                         .redis_db = REDIS_DB };
    h_stack_start (&s, &o);

    char *body = NULL;
    int st = h_http ("POST", s.gateway_port, "/webhook?token=" H_WEBHOOK_SECRET, NULL,
                     "text/plain", "buy CME_MINI:ES1! 2 @5000.25", &body);
    cr_assert_eq (st, 202, "gateway answered %d: %s", st, body);
    char *idp = strstr (body, "\"id\":\"");
    cr_assert (idp, "%s", body);
    fks_id_t alert;
    cr_assert_eq (fks_id_parse (idp + 6, 36, &alert), 0);
    free (body);

    h_wait_alert_status (&alert, "filled");
    char id[FKS_ID_STR_SIZE], q[512];
    fks_id_format (&alert, id);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id = '%s' AND symbol = 'ES1!'", id);
    cr_assert_eq (h_sql_int (q), 1);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE corr = '%s' AND status = 'filled'"
         " AND symbol = 'ES1!' AND side = 'buy' AND qty = 2", id);
    cr_assert_eq (h_sql_int (q), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE symbol = 'ES1!'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'ES1!'"
                             " AND qty = 2 AND avg_price = 5000.25"), 1);

    //  A newer price, as the data worker records it: the position shows its unrealised PnL.
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (strchr (s.redis_env, '=') + 1, 1000, 2000, &err);   //  the stack's
    cr_assert_not_null (r, "%s", err.msg);
    redisReply *rep = fks_redis_command (r, &err, "HSET fks:price:ES1! price 5010.5 ts %lld",
                                         (long long) fks_now_ms ());
    cr_assert_not_null (rep, "%s", err.msg);
    freeReplyObject (rep);
    fks_redis_destroy (&r);
    st = h_http ("GET", s.gateway_port, "/api/v1/positions?symbol=ES1%21", H_ADMIN_KEY, NULL,
                 NULL, &body);
    cr_assert_eq (st, 200, "%s", body);
    cr_assert (strstr (body, "\"symbol\" : \"ES1!\""), "%s", body);
    cr_assert (strstr (body, "\"mark_price\" : 5010.5"), "%s", body);
    cr_assert (strstr (body, "\"unrealized_pnl\" : 20.5"), "(5010.5 - 5000.25) * 2: %s", body);
    free (body);
}

//  Posts TradingView's default strategy message (text/plain, ?token=) and waits for its alert
//  to end in status.
static void
s_post_fill_message (const char *text, const char *status)
{
    char *body = NULL;
    int st = h_http ("POST", s.gateway_port, "/webhook/tradingview?token=" H_WEBHOOK_SECRET, NULL,
                     "text/plain", text, &body);
    cr_assert_eq (st, 202, "gateway answered %d to '%s': %s", st, text, body);
    char *idp = strstr (body, "\"id\":\"");
    cr_assert (idp, "%s", body);
    fks_id_t alert;
    cr_assert_eq (fks_id_parse (idp + 6, 36, &alert), 0);
    free (body);
    h_wait_alert_status (&alert, status);
}

Test (pipeline, tradingviews_default_strategy_message_trades_to_its_new_position,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .gateway = true,
                         .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_set_price (&s, "BTCUSDT", 100);       /* the message carries no price */

    s_post_fill_message ("EMA Cross (9, 21): order buy @ 1 filled on BTCUSDT. New strategy "
                         "position is 1\n", "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'BTCUSDT'"
                             " AND qty = 1"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals WHERE strategy = 'EMA Cross'"), 1);

    //  The reversal's order is 2 (from long 1 to short 1): the new position is the target.
    s_post_fill_message ("EMA Cross (9, 21): order sell @ 2 filled on BTCUSDT. New strategy "
                         "position is -1\n", "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'BTCUSDT'"
                             " AND qty = -1"), 1, "a sell of 2 from long 1 ends short 1");

    //  The exit: to 0 from the short, whatever the order's own size.
    s_post_fill_message ("EMA Cross (9, 21): order buy @ 1 filled on BTCUSDT. New strategy "
                         "position is 0\n", "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'BTCUSDT'"
                             " AND qty = 0"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE symbol = 'BTCUSDT'"
                             " AND status = 'filled'"), 3);
}

Test (pipeline, close_and_flat_exit_the_open_position, .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_alert_t buy = { .symbol = "BINANCE:SOLUSDT", .action = "buy", .quantity = 2,
                      .price = 100 };
    fks_id_t a1 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a1, "filled");

    h_alert_t close = { .symbol = "SOL/USDT", .action = "close", .price = 110 };
    fks_id_t a2 = h_inject_alert (&s, &close, NULL, NULL);
    h_wait_alert_status (&a2, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'SOLUSDT'"
                             " AND qty = 0 AND avg_price = 0 AND realized_pnl = 20"), 1,
                  "the close must leave SOLUSDT flat with 2 * (110 - 100) realised");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE symbol = 'SOLUSDT'"
                             " AND side = 'sell' AND qty = 2"), 1);

    //  A strategy's exit with nothing open: filtered, with the reason.
    h_alert_t flat = { .symbol = "SOLUSDT", .action = "sell", .quantity = 1, .price = 110,
                       .market_position = "flat" };
    fks_id_t a3 = h_inject_alert (&s, &flat, NULL, NULL);
    h_wait_alert_status (&a3, "filtered");
    char reason[512];
    cr_assert (strstr (s_signal_reason (&a3, reason, sizeof reason), "nothing to close"),
               "%s", reason);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'signal.filtered'"), 1);

    //  flat as the action closes a short too.
    h_alert_t sell = { .symbol = "SOLUSDT", .action = "sell", .quantity = 3, .price = 100 };
    fks_id_t a4 = h_inject_alert (&s, &sell, NULL, NULL);
    h_wait_alert_status (&a4, "filled");
    h_alert_t flat2 = { .symbol = "SOLUSDT", .action = "flat", .price = 90 };
    fks_id_t a5 = h_inject_alert (&s, &flat2, NULL, NULL);
    h_wait_alert_status (&a5, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'SOLUSDT'"
                             " AND qty = 0 AND realized_pnl = 50"), 1);
}

//  Posts body as JSON to the gateway; returns the alert id of a 202, or asserts the status.
static fks_id_t
s_post_alert (const char *json, int want_status, char **body_out)
{
    char *body = NULL;
    int st = h_http ("POST", s.gateway_port, "/webhook?token=" H_WEBHOOK_SECRET, NULL,
                     "application/json", json, &body);
    cr_assert_eq (st, want_status, "gateway answered %d to %s: %s", st, json, body);
    fks_id_t alert = { { 0 } };
    if (st == 202) {
        char *idp = strstr (body, "\"id\":\"");
        cr_assert (idp, "%s", body);
        cr_assert_eq (fks_id_parse (idp + 6, 36, &alert), 0);
    }
    if (body_out)
        *body_out = body;
    else
        free (body);
    return alert;
}

//  TradersPost-style templates send "sentiment": "{{strategy.market_position}}": a partial
//  take-profit of a long is a sell with sentiment long. It used to close the long and open
//  a short of the quantity (long 3, sell 1 bullish: short 1); it reduces the long to 2. And
//  position_size the unsigned {{strategy.market_position_size}} beside market_position short
//  is refused at the door naming the field, instead of targeting a long.
Test (pipeline, a_sell_that_leaves_the_strategy_long_reduces_the_long,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .gateway = true,
                         .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    fks_id_t a1 = s_post_alert ("{\"ticker\":\"BYBIT:SOLUSDT.P\",\"action\":\"buy\","
                                "\"quantity\":\"3\",\"price\":\"100\",\"sentiment\":\"long\"}",
                                202, NULL);
    h_wait_alert_status (&a1, "filled");
    fks_id_t a2 = s_post_alert ("{\"ticker\":\"BYBIT:SOLUSDT.P\",\"action\":\"sell\","
                                "\"quantity\":\"1\",\"price\":\"110\",\"sentiment\":\"bullish\"}",
                                202, NULL);
    h_wait_alert_status (&a2, "filled");
    cr_assert_eq (s_position_is ("SOLUSDT.P", "2"), 1, "the sell must leave a long of 2");
    char q[256], id[FKS_ID_STR_SIZE];
    fks_id_format (&a2, id);
    cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE corr = '%s'"
                                     " AND side = 'sell' AND qty = 1", id)), 1);

    char *body = NULL;
    s_post_alert ("{\"ticker\":\"SOLUSDT.P\",\"action\":\"sell\",\"contracts\":\"4\","
                  "\"market_position\":\"short\",\"position_size\":\"2\",\"price\":\"100\"}",
                  400, &body);
    cr_assert (strstr (body, "\"field\":\"position_size\""), "%s", body);
    free (body);
    cr_assert_eq (s_position_is ("SOLUSDT.P", "2"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM inbox"), 2, "a refused alert is not stored");
}

Test (pipeline, stale_future_and_malformed_alerts_are_filtered_with_the_reason,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .extra_env = (const char *[]) { "FKS_SIGNAL_MAX_AGE=60s", NULL } };
    h_stack_start (&s, &o);
    h_alert_t stale = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100,
                        .alert_time_ms = fks_now_ms () - 600000 };
    h_alert_t future = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100,
                         .alert_time_ms = fks_now_ms () + 600000 };
    h_alert_t bad_conf = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100,
                           .has_confidence = true, .confidence = 7 };
    h_alert_t bad_symbol = { .symbol = "BTC USDT", .action = "buy", .quantity = 1,
                             .price = 100 };
    h_alert_t no_qty = { .symbol = "BTCUSDT", .action = "buy", .price = 100 };
    fks_id_t a1 = h_inject_alert (&s, &stale, NULL, NULL);
    fks_id_t a2 = h_inject_alert (&s, &future, NULL, NULL);
    fks_id_t a3 = h_inject_alert (&s, &bad_conf, NULL, NULL);
    fks_id_t a4 = h_inject_alert (&s, &bad_symbol, NULL, NULL);
    fks_id_t a5 = h_inject_alert (&s, &no_qty, NULL, NULL);
    h_wait_alert_status (&a1, "filtered");
    h_wait_alert_status (&a2, "filtered");
    h_wait_alert_status (&a3, "filtered");
    h_wait_alert_status (&a4, "filtered");
    h_wait_alert_status (&a5, "filtered");
    char reason[512];
    cr_assert (strstr (s_signal_reason (&a1, reason, sizeof reason), "stale"), "%s", reason);
    cr_assert (strstr (s_signal_reason (&a2, reason, sizeof reason), "in the future"), "%s",
               reason);
    cr_assert (strstr (s_signal_reason (&a5, reason, sizeof reason), "FKS_SIGNAL_SIZING"), "%s",
               reason);
    //  A malformed alert has no usable signal row; its reason travels in signal.filtered.
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'signal.filtered'"), 5);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
}

Test (pipeline, risk_rules_refuse_with_the_rule_and_the_numbers, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = {
        .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
        .exec_env = (const char *[]) { "FKS_RISK_SYMBOLS=BTCUSDT,ETHUSDT",
                                       "FKS_RISK_MAX_QTY=5", "FKS_RISK_MAX_NOTIONAL=100000",
                                       "FKS_RISK_MAX_POSITION=6",
                                       "FKS_RISK_MAX_ORDERS_PER_MINUTE=3", NULL }
    };
    h_stack_start (&s, &o);
    h_alert_t not_allowed = { .symbol = "DOGEUSDT", .action = "buy", .quantity = 1, .price = 1 };
    h_alert_t too_many = { .symbol = "BTCUSDT", .action = "buy", .quantity = 6, .price = 1 };
    h_alert_t too_big = { .symbol = "BTCUSDT", .action = "buy", .quantity = 3,
                          .price = 40000 };
    fks_id_t a1 = h_inject_alert (&s, &not_allowed, NULL, NULL);
    h_wait_alert_status (&a1, "rejected");
    fks_id_t a2 = h_inject_alert (&s, &too_many, NULL, NULL);
    h_wait_alert_status (&a2, "rejected");
    fks_id_t a3 = h_inject_alert (&s, &too_big, NULL, NULL);
    h_wait_alert_status (&a3, "rejected");
    char reason[512];
    cr_assert (strstr (s_signal_reason (&a1, reason, sizeof reason), "allowlist"), "%s", reason);
    cr_assert (strstr (s_signal_reason (&a2, reason, sizeof reason), "quantity 6"), "%s",
               reason);
    cr_assert (strstr (s_signal_reason (&a3, reason, sizeof reason), "notional 120000"), "%s",
               reason);

    //  Position: 4 is fine, 4 more would make 8 > 6.
    h_alert_t four = { .symbol = "ETHUSDT", .action = "buy", .quantity = 4, .price = 10 };
    fks_id_t a4 = h_inject_alert (&s, &four, NULL, NULL);
    h_wait_alert_status (&a4, "filled");
    fks_id_t a5 = h_inject_alert (&s, &four, NULL, NULL);
    h_wait_alert_status (&a5, "rejected");
    cr_assert (strstr (s_signal_reason (&a5, reason, sizeof reason), "position would be 8"),
               "%s", reason);

    //  Orders per minute (3): the filled one counted; two more pass, the next is refused.
    //  (A minute boundary in between would reset the count: then the refusal comes later.)
    h_alert_t one = { .symbol = "ETHUSDT", .action = "sell", .quantity = 0.1, .price = 10 };
    int refused = 0;
    for (int i = 0; i < 6 && !refused; i++) {
        fks_id_t a = h_inject_alert (&s, &one, NULL, NULL);
        char id[FKS_ID_STR_SIZE], q[256];
        fks_id_format (&a, id);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s'"
             " AND status IN ('filled', 'rejected')", id);
        cr_assert_eq (h_wait_int (q, 1, WAIT_MS), 1);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s' AND status = 'rejected'",
             id);
        refused = (int) h_sql_int (q);
        if (refused)
            cr_assert (strstr (s_signal_reason (&a, reason, sizeof reason), "orders in this "
                       "minute"), "%s", reason);
    }
    cr_assert (refused, "the orders-per-minute limit never refused an order");
    //  Every rejection is a risk.rejected event.
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 5);
}

Test (pipeline, limit_order_rests_until_a_bar_crosses_then_fills_in_parts,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_MAX_VOLUME_SHARE=0.5",
                                                        "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_alert_t lim = { .symbol = "ADAUSDT", .action = "buy", .quantity = 10, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.9 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'submitted'"
                             " AND type = 'limit' AND limit_price = 0.9"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 0);

    //  A bar through the limit with volume 12: half of it (6) fills, then the rest.
    for (int i = 0; i < 2; i++) {
        msgpack_sbuffer body;
        msgpack_sbuffer_init (&body);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 9);
        fks_pack_kv_str (&pk, "symbol", "ADAUSDT");
        fks_pack_kv_str (&pk, "interval", "1m");
        fks_pack_kv_i64 (&pk, "open_time", fks_now_ms () - 60000 + i);
        fks_pack_kv_f64 (&pk, "open", 0.95);
        fks_pack_kv_f64 (&pk, "high", 0.96);
        fks_pack_kv_f64 (&pk, "low", 0.85);
        fks_pack_kv_f64 (&pk, "close", 0.88);
        fks_pack_kv_f64 (&pk, "volume", 12);
        fks_pack_kv_str (&pk, "source", "csv");
        h_publish_body (&s, "market.bar", "data", body.data, body.size);
        msgpack_sbuffer_destroy (&body);
        if (i == 0)
            cr_assert_eq (h_wait_int ("SELECT count(*) FROM orders WHERE status ="
                                      " 'partially_filled' AND filled_qty = 6", 1, WAIT_MS), 1);
    }
    h_wait_alert_status (&a, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE price = 0.9"), 2);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'ADAUSDT'"
                             " AND qty = 10 AND avg_price = 0.9"), 1, "position: %s",
                  h_sql_text ("SELECT qty || ' at ' || avg_price FROM positions"
                              " WHERE symbol = 'ADAUSDT'"));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.partially_filled'"),
                  1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.filled'"), 1);

    //  `cancel` alerts cancel what rests (a limit below the last close, 0.88, rests).
    h_alert_t low = lim;
    low.limit_price = 0.8;
    fks_id_t b = h_inject_alert (&s, &low, NULL, NULL);
    h_wait_alert_status (&b, "ordered");
    h_alert_t cancel = { .symbol = "ADAUSDT", .action = "cancel" };
    fks_id_t c = h_inject_alert (&s, &cancel, NULL, NULL);
    h_wait_alert_status (&c, "signalled");
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM orders WHERE status = 'cancelled'", 1,
                              WAIT_MS), 1);
}


//  --------------------------------------------------------------------------
//  Scale and failures

static void
s_assert_books_balance (void)
{
    //  Every position equals the signed sum of its fills.
    long long bad = h_sql_int (
        "SELECT count(*) FROM (SELECT f.symbol, sum (CASE f.side WHEN 'buy' THEN f.qty"
        "        ELSE -f.qty END) AS q FROM fills f GROUP BY f.symbol) x"
        " FULL JOIN positions p ON p.symbol = x.symbol"
        " WHERE coalesce (p.qty, 0) <> coalesce (x.q, 0)");
    cr_assert_eq (bad, 0, "%lld positions differ from the sum of their fills: %s", bad,
                  h_sql_text ("SELECT string_agg (coalesce (p.symbol, x.symbol) || ' position '"
                              " || coalesce (p.qty, 0) || ' fills ' || coalesce (x.q, 0), '; ')"
                              " FROM (SELECT f.symbol, sum (CASE f.side WHEN 'buy' THEN f.qty"
                              "        ELSE -f.qty END) AS q FROM fills f GROUP BY f.symbol) x"
                              " FULL JOIN positions p ON p.symbol = x.symbol"
                              " WHERE coalesce (p.qty, 0) <> coalesce (x.q, 0)"));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders o WHERE o.filled_qty <>"
                             " (SELECT coalesce (sum (qty), 0) FROM fills f"
                             "   WHERE f.order_id = o.id)"), 0);
}

static const char *s_symbols[] = { "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT" };

Test (pipeline, thousand_alerts_with_200_duplicates_over_3_replicas_make_800_orders,
      .fini = s_teardown, .timeout = 180)
{
    h_stack_opts_t o = { .signal_replicas = 3, .execution_replicas = 3, .gateway = true,
                         .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    //  800 distinct alerts through the gateway, 100 of them posted twice (the gateway answers
    //  200 duplicate), and 100 more delivered twice on the bus (the workers' consumed rows
    //  make the second delivery a no-op).
    int accepted = 0, duplicates = 0;
    uint8_t *envs[100];
    size_t lens[100];
    for (int i = 0; i < 700; i++) {
        char json[256];
        snprintf (json, sizeof json, "{\"ticker\":\"%s\",\"action\":\"%s\",\"contracts\":"
                  "\"0.%d\",\"price\":\"%d\",\"id\":\"alert-%d\"}", s_symbols[i % 4],
                  i % 3 ? "buy" : "sell", 1 + i % 9, 100 + i % 7, i);
        for (int k = 0; k < (i < 100 ? 2 : 1); k++) {
            //  503 means "not persisted, send it again", as the contract says.
            int st = 503;
            for (int t = 0; t < 5 && st == 503; t++)
                st = h_http ("POST", s.gateway_port, "/webhook?token=" H_WEBHOOK_SECRET, NULL,
                             "application/json", json, NULL);
            cr_assert (st == 202 || st == 200, "gateway answered %d", st);
            accepted += st == 202;
            duplicates += st == 200;
        }
    }
    cr_assert_eq (accepted, 700);
    cr_assert_eq (duplicates, 100);
    for (int i = 0; i < 100; i++) {
        h_alert_t a = { .symbol = s_symbols[i % 4], .action = i % 2 ? "buy" : "sell",
                        .quantity = 0.25, .price = 50 };
        h_inject_alert (&s, &a, &envs[i], &lens[i]);
    }
    long long orders = h_wait_int ("SELECT count(*) FROM orders WHERE status = 'filled'", 800,
                                   120000);
    if (orders != 800)
        h_dump_logs ();
    cr_assert_eq (orders, 800);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM inbox WHERE status <> 'filled'", 0, WAIT_MS),
                  0);
    //  Now the 100 injected alerts are delivered a second time: the signal replicas find
    //  their consumed rows and ack them without doing anything.
    for (int i = 0; i < 100; i++) {
        h_publish (&s, "webhook.received", envs[i], lens[i]);
        free (envs[i]);
    }
    double dups = 0;
    for (int t = 0; t < 400 && dups < 100; t++) {
        dups = 0;
        for (int r = 0; r < 3; r++) {
            double v = h_metric (s.signal_ports[r], "fks_worker_messages_total{group=\"signal\","
                                 "result=\"duplicate\"}");
            dups += v > 0 ? v : 0;
        }
        if (dups < 100)
            usleep (50000);
    }
    cr_assert_eq (dups, 100, "second deliveries acked as duplicates: %g", dups);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 800);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals"), 800);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 800);
    cr_assert_eq (h_sql_int ("SELECT count(DISTINCT signal_id) FROM orders"), 800);
    s_assert_books_balance ();
}

//  1 when the symbol's position row holds qty (SQL text), else 0.
static long long
s_position_is (const char *symbol, const char *qty)
{
    char q[256];
    return h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM positions WHERE symbol = '%s'"
                              " AND qty = %s", symbol, qty));
}

//  Alerts signalled before the orders of the ones before them are filled (the execution worker
//  is stopped meanwhile, so the signal worker sees none of their fills): an exit still closes
//  everything the entries bought, a sell that reverses a long sells that long as it is when it
//  is ordered, not as the signal worker last saw it.
Test (pipeline, exits_and_reversals_are_sized_from_the_position_when_ordered,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    //  A long of 2 that the signal worker sees.
    h_alert_t first = { .symbol = "RACEUSDT", .action = "buy", .quantity = 2, .price = 10 };
    fks_id_t a0 = h_inject_alert (&s, &first, NULL, NULL);
    h_wait_alert_status (&a0, "filled");

    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    //  buy 1 (a long of 3 when ordered), then exit: must close 3, not the 2 last seen.
    h_alert_t more = { .symbol = "RACEUSDT", .action = "buy", .quantity = 1, .price = 11 };
    h_alert_t exit = { .symbol = "RACEUSDT", .action = "exit", .price = 12 };
    fks_id_t a1 = h_inject_alert (&s, &more, NULL, NULL);
    fks_id_t a2 = h_inject_alert (&s, &exit, NULL, NULL);
    //  A long of 2 on another symbol; then its close (flat) and a sell of 1 that the signal
    //  worker, seeing the long of 2, would size as 3: once the close has run it is a sell of 1.
    h_alert_t b_long = { .symbol = "FLIPUSDT", .action = "buy", .quantity = 2, .price = 20 };
    h_alert_t b_close = { .symbol = "FLIPUSDT", .action = "sell", .quantity = 2, .price = 21,
                          .market_position = "flat" };
    h_alert_t b_short = { .symbol = "FLIPUSDT", .action = "sell", .quantity = 1, .price = 21,
                          .market_position = "short" };
    fks_id_t b0 = h_inject_alert (&s, &b_long, NULL, NULL);
    h_wait_alert_status (&a2, "signalled");
    h_wait_alert_status (&b0, "signalled");
    h_stack_start_execution (&s, 0);
    h_wait_alert_status (&b0, "filled");
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    fks_id_t b1 = h_inject_alert (&s, &b_close, NULL, NULL);
    fks_id_t b2 = h_inject_alert (&s, &b_short, NULL, NULL);
    h_wait_alert_status (&b2, "signalled");
    h_stack_start_execution (&s, 0);

    h_wait_alert_status (&a1, "filled");
    h_wait_alert_status (&a2, "filled");
    h_wait_alert_status (&b1, "filled");
    h_wait_alert_status (&b2, "filled");
    cr_assert_eq (s_position_is ("RACEUSDT", "0"), 1, "the exit must close the long of 3");
    char q[256];
    fks_id_format (&a2, q + 128);
    cr_assert_eq (h_sql_int (h_sqlf (q, 128, "SELECT count(*) FROM orders WHERE corr = '%s'"
                                     " AND side = 'sell' AND qty = 3", q + 128)), 1);
    cr_assert_eq (s_position_is ("FLIPUSDT", "-1"), 1, "close 2, then open a short of 1");

    //  A target position: the signal worker sees 1 and would buy 1; a buy of 2 ordered before
    //  it makes the position 3, so reaching 2 is a sell of 1.
    h_alert_t t_first = { .symbol = "TGTUSDT", .action = "buy", .quantity = 1, .price = 5 };
    fks_id_t t0 = h_inject_alert (&s, &t_first, NULL, NULL);
    h_wait_alert_status (&t0, "filled");
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    h_alert_t t_more = { .symbol = "TGTUSDT", .action = "buy", .quantity = 2, .price = 5 };
    h_alert_t t_target = { .symbol = "TGTUSDT", .action = "buy", .price = 5,
                           .position_size = 2, .has_position_size = true };
    fks_id_t t1 = h_inject_alert (&s, &t_more, NULL, NULL);
    fks_id_t t2 = h_inject_alert (&s, &t_target, NULL, NULL);
    h_wait_alert_status (&t2, "signalled");
    h_stack_start_execution (&s, 0);
    h_wait_alert_status (&t1, "filled");
    h_wait_alert_status (&t2, "filled");
    cr_assert_eq (s_position_is ("TGTUSDT", "2"), 1, "the target, from the position of 3");
    s_assert_books_balance ();
}

//  The reason of the alert's signal refused by risk: "risk: <the risk.rejected message>", ""
//  when it was not refused (caller frees).
static char *
s_rejection (const fks_id_t *alert)
{
    char id[FKS_ID_STR_SIZE], q[400];
    fks_id_format (alert, id);
    return h_sql_text (h_sqlf (q, sizeof q, "SELECT coalesce (max (s.reason), '') FROM signals s"
                               " WHERE s.inbox_id = '%s' AND s.status = 'rejected'", id));
}

//  A share of the position (quantity_type percent_of_position) is taken of the position when
//  it is ordered, not of the one the signal worker expected. Here that expectation is wrong: it
//  counts an entry (a buy of 6) that risk then refuses (FKS_RISK_MAX_QTY 5), so the signal
//  worker sizes "sell 50 %" behind "buy 2" as 4 (half of 2 + 6): ordered so, it would close
//  the long of 2. The execution worker sells half of the long it locks, 1.
Test (pipeline, a_share_of_the_position_is_taken_of_the_position_when_ordered,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0",
                                                        "FKS_RISK_MAX_QTY=5", NULL } };
    h_stack_start (&s, &o);
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    const char *pct = "percent_of_position";
    //  A: buy 6 (refused), buy 2, sell 50 %: long 1.   B: the same with add 50 %: long 3.
    //  C: buy 6 (refused), sell 50 %: nothing to reduce.  D: buy 6 (refused), add 50 %: nothing
    //  to add to.
    const char *sym[4] = { "SHAREAUSDT", "SHAREBUSDT", "SHARECUSDT", "SHAREDUSDT" };
    fks_id_t refused[4], entry[2], share[4];
    for (int i = 0; i < 4; i++) {
        h_alert_t big = { .symbol = sym[i], .action = "buy", .quantity = 6, .price = 10 };
        h_alert_t two = { .symbol = sym[i], .action = "buy", .quantity = 2, .price = 10 };
        h_alert_t part = { .symbol = sym[i], .action = i % 2 ? "add" : "sell", .quantity = 50,
                           .price = 10, .quantity_type = pct };
        refused[i] = h_inject_alert (&s, &big, NULL, NULL);
        h_wait_alert_status (&refused[i], "signalled");
        if (i < 2) {
            entry[i] = h_inject_alert (&s, &two, NULL, NULL);
            h_wait_alert_status (&entry[i], "signalled");
        }
        share[i] = h_inject_alert (&s, &part, NULL, NULL);
        h_wait_alert_status (&share[i], "signalled");
    }
    //  The signal worker's estimates: half of 8, half of 6.
    char q[600], id[FKS_ID_STR_SIZE];
    double want_estimate[4] = { 4, 4, 3, 3 };
    for (int i = 0; i < 4; i++) {
        fks_id_format (&share[i], id);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id = '%s' AND qty = %g",
                id, want_estimate[i]);
        cr_assert_eq (h_sql_int (q), 1, "%s: %s", sym[i], h_sql_text (h_sqlf (q, sizeof q,
                      "SELECT qty || ' ' || params::text FROM signals WHERE inbox_id = '%s'",
                      id)));
    }
    h_stack_start_execution (&s, 0);
    for (int i = 0; i < 4; i++)
        h_wait_alert_status (&refused[i], "rejected");
    for (int i = 0; i < 2; i++) {
        h_wait_alert_status (&entry[i], "filled");
        h_wait_alert_status (&share[i], "filled");
    }
    cr_assert_eq (s_position_is (sym[0], "1"), 1, "half of the long of 2 sold: %s",
                  h_sql_text ("SELECT string_agg (symbol || ' ' || qty, ', ') FROM positions"));
    cr_assert_eq (s_position_is (sym[1], "3"), 1, "half of the long of 2 added: %s",
                  h_sql_text ("SELECT string_agg (symbol || ' ' || qty, ', ') FROM positions"));
    h_wait_alert_status (&share[2], "rejected");
    h_wait_alert_status (&share[3], "rejected");
    //  The orders say how they were sized.
    for (int i = 0; i < 2; i++) {
        fks_id_format (&share[i], id);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE corr = '%s' AND qty = 1"
                " AND side = '%s' AND reason LIKE 'sized when ordered: 50 %% of the long"
                " position of 2 is 1 (the signal''s estimate was 4)'", id,
                i == 0 ? "sell" : "buy");
        cr_assert_eq (h_sql_int (q), 1, "%s", h_sql_text (h_sqlf (q, sizeof q,
                      "SELECT side || ' ' || qty || ' ' || coalesce (reason, '') FROM orders"
                      " WHERE corr = '%s'", id)));
    }
    //  Nothing to take a share of: refused as any reduce-only order with nothing to reduce,
    //  and an add with nothing to add to; the event names the share.
    char *why = s_rejection (&share[2]);
    cr_assert_str_eq (why, "risk: nothing to reduce: no open long position in SHARECUSDT"
                      " for a sell of 50 % of it");
    free (why);
    why = s_rejection (&share[3]);
    cr_assert_str_eq (why, "risk: nothing to add to: no open long position in SHAREDUSDT"
                      " for a buy of 50 % of it");
    free (why);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 6);
    int port = s.execution_ports[0];
    cr_assert_eq (h_metric (port, "fks_execution_risk_rejections_total{rule=\"max_qty\"}"), 4);
    cr_assert_eq (h_metric (port, "fks_execution_risk_rejections_total{rule=\"reduce_only\"}"),
                  1);
    cr_assert_eq (h_metric (port,
                            "fks_execution_risk_rejections_total{rule=\"position_share\"}"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE symbol IN ('SHARECUSDT',"
                             " 'SHAREDUSDT')"), 0);
    //  The share each signal travelled with, in its params for the REST API.
    for (int i = 0; i < 4; i++) {
        fks_id_format (&share[i], id);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id = '%s'"
                " AND (params->>'position_share')::numeric = 0.5"
                " AND (params->>'qty_decimals')::int = 8", id);
        cr_assert_eq (h_sql_int (q), 1, "%s: %s", sym[i], h_sql_text (h_sqlf (q, sizeof q,
                      "SELECT params::text FROM signals WHERE inbox_id = '%s'", id)));
    }
    s_assert_books_balance ();
}

//  An exit that comes before the entry ahead of it is filled (execution stopped: the signal
//  worker sees no position at all) closes what that entry opens instead of finding "nothing
//  to close"; likewise a strategy's flat exit, an add, and an exit right behind its entry in
//  one signal batch (signal worker stopped while both wait on the bus). The position the
//  signal worker decides with counts the signals not yet filled.
Test (pipeline, an_exit_behind_an_entry_not_yet_filled_closes_it,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    h_alert_t in_a = { .symbol = "PENDAUSDT", .action = "buy", .quantity = 2, .price = 10 };
    h_alert_t out_a = { .symbol = "PENDAUSDT", .action = "exit", .price = 11 };
    h_alert_t in_b = { .symbol = "PENDBUSDT", .action = "buy", .quantity = 3, .price = 10 };
    h_alert_t out_b = { .symbol = "PENDBUSDT", .action = "sell", .quantity = 3, .price = 11,
                        .market_position = "flat" };
    h_alert_t in_c = { .symbol = "PENDCUSDT", .action = "sell", .quantity = 1, .price = 10 };
    h_alert_t add_c = { .symbol = "PENDCUSDT", .action = "add", .quantity = 2, .price = 10 };
    fks_id_t ids[6];
    ids[0] = h_inject_alert (&s, &in_a, NULL, NULL);
    h_wait_alert_status (&ids[0], "signalled");
    ids[1] = h_inject_alert (&s, &out_a, NULL, NULL);
    ids[2] = h_inject_alert (&s, &in_b, NULL, NULL);
    h_wait_alert_status (&ids[2], "signalled");
    ids[3] = h_inject_alert (&s, &out_b, NULL, NULL);
    ids[4] = h_inject_alert (&s, &in_c, NULL, NULL);
    h_wait_alert_status (&ids[4], "signalled");
    ids[5] = h_inject_alert (&s, &add_c, NULL, NULL);
    for (int i = 0; i < 6; i++)
        h_wait_alert_status (&ids[i], "signalled");
    h_stack_start_execution (&s, 0);
    for (int i = 0; i < 6; i++)
        h_wait_alert_status (&ids[i], "filled");
    cr_assert_eq (s_position_is ("PENDAUSDT", "0"), 1, "the exit closes the long of 2");
    cr_assert_eq (s_position_is ("PENDBUSDT", "0"), 1, "the flat sell closes the long of 3");
    cr_assert_eq (s_position_is ("PENDCUSDT", "-3"), 1, "the add adds to the short of 1");

    //  Entry and exit in one batch of the signal worker: they wait in the stopped replica's
    //  client behind a stale alert of the symbol (the thread takes it alone, or with them,
    //  and they queue meanwhile), so the entry is not in the database when the exit is decided.
    cr_assert_eq (kill (s.signal[0]->pid, SIGSTOP), 0);
    h_alert_t stale = { .symbol = "PENDDUSDT", .action = "buy", .quantity = 1, .price = 10,
                        .alert_time_ms = fks_now_ms () - 3600000 };
    h_alert_t in_d = { .symbol = "PENDDUSDT", .action = "buy", .quantity = 4, .price = 10 };
    h_alert_t out_d = { .symbol = "PENDDUSDT", .action = "close", .price = 11 };
    fks_id_t st = h_inject_alert (&s, &stale, NULL, NULL);
    fks_id_t d0 = h_inject_alert (&s, &in_d, NULL, NULL);
    fks_id_t d1 = h_inject_alert (&s, &out_d, NULL, NULL);
    usleep (200 * 1000);            /* the bus delivers to the stopped replica's client */
    cr_assert_eq (kill (s.signal[0]->pid, SIGCONT), 0);
    h_wait_alert_status (&d0, "filled");
    h_wait_alert_status (&d1, "filled");
    h_wait_alert_status (&st, "filtered");
    cr_assert_eq (s_position_is ("PENDDUSDT", "0"), 1, "the close closes the long of 4");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals WHERE status = 'filtered'"), 1,
                  "the stale alert only");
    s_assert_books_balance ();
}

//  With two signal replicas, an entry and its exit posted together can go one to each: the
//  exit's replica must not decide "nothing to close" while the entry is still in the other's
//  hands. Replica 0 is stopped while pairs are posted (the bus hands out one message at a time,
//  to each replica in turn, so of the two pairs, with a filler between, one has its entry at
//  the stopped replica and its exit at the running one), and goes on 500 ms later.
Test (pipeline, an_exit_at_another_replica_than_its_entry_waits_for_it,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 2, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    cr_assert_eq (kill (s.signal[0]->pid, SIGSTOP), 0);
    h_alert_t in_a = { .symbol = "TWOAUSDT", .action = "buy", .quantity = 2, .price = 10 };
    h_alert_t out_a = { .symbol = "TWOAUSDT", .action = "exit", .price = 11 };
    h_alert_t filler = { .symbol = "FILLUSDT", .action = "buy", .quantity = 1, .price = 10 };
    h_alert_t in_b = { .symbol = "TWOBUSDT", .action = "buy", .quantity = 3, .price = 10 };
    h_alert_t out_b = { .symbol = "TWOBUSDT", .action = "exit", .price = 11 };
    const h_alert_t *seq[5] = { &in_a, &out_a, &filler, &in_b, &out_b };
    fks_id_t ids[5];
    for (int i = 0; i < 5; i++) {
        ids[i] = h_inject_alert (&s, seq[i], NULL, NULL);
        usleep (50 * 1000);         /* dispatched alone: one message per turn */
    }
    usleep (500 * 1000);
    cr_assert_eq (kill (s.signal[0]->pid, SIGCONT), 0);
    for (int i = 0; i < 5; i++)
        h_wait_alert_status (&ids[i], "filled");
    cr_assert_eq (s_position_is ("TWOAUSDT", "0"), 1, "the exit closes the long of 2");
    cr_assert_eq (s_position_is ("TWOBUSDT", "0"), 1, "the exit closes the long of 3");
    s_assert_books_balance ();
}

//  The same at the execution stage: with two execution replicas an entry's signal and its
//  exit's go one to each. Execution replica 0 is stopped while the pairs are posted, so one
//  exit comes to the running replica while its entry waits at the stopped one: the exit must
//  wait for the entry to be filled, not be refused "nothing to reduce".
Test (pipeline, an_exit_ordered_by_another_replica_than_its_entry_waits_for_it,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 2, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    cr_assert_eq (kill (s.execution[0]->pid, SIGSTOP), 0);
    h_alert_t in_a = { .symbol = "EXAUSDT", .action = "buy", .quantity = 2, .price = 10 };
    h_alert_t out_a = { .symbol = "EXAUSDT", .action = "exit", .price = 11 };
    h_alert_t filler = { .symbol = "EXFUSDT", .action = "buy", .quantity = 1, .price = 10 };
    h_alert_t in_b = { .symbol = "EXBUSDT", .action = "buy", .quantity = 3, .price = 10 };
    h_alert_t out_b = { .symbol = "EXBUSDT", .action = "exit", .price = 11 };
    const h_alert_t *seq[5] = { &in_a, &out_a, &filler, &in_b, &out_b };
    fks_id_t ids[5];
    for (int i = 0; i < 5; i++) {
        ids[i] = h_inject_alert (&s, seq[i], NULL, NULL);
        char id[FKS_ID_STR_SIZE], q[200];
        fks_id_format (&ids[i], id);
        h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s'"
                " AND status <> 'accepted'", id);
        cr_assert_eq (h_wait_int (q, 1, 30000), 1, "alert %d not signalled", i);
        usleep (50 * 1000);         /* its signal.created dispatched alone */
    }
    usleep (500 * 1000);
    cr_assert_eq (kill (s.execution[0]->pid, SIGCONT), 0);
    for (int i = 0; i < 5; i++)
        h_wait_alert_status (&ids[i], "filled");
    cr_assert_eq (s_position_is ("EXAUSDT", "0"), 1, "the exit closes the long of 2");
    cr_assert_eq (s_position_is ("EXBUSDT", "0"), 1, "the exit closes the long of 3");
    s_assert_books_balance ();
}

//  The same, step by step: the exit's alert comes while an alert accepted before it (the
//  entry, here only in the inbox) is not handled yet; it waits, and once the entry's signal is
//  committed (as another replica would), the exit closes what the entry will open.
static void
s_exit_waits_for (const char *symbol, bool backlog)
{
    fks_id_t entry, sig;
    cr_assert_eq (fks_id_new (&entry), 0);
    cr_assert_eq (fks_id_new (&sig), 0);
    char eid[FKS_ID_STR_SIZE], sid[FKS_ID_STR_SIZE], q[1200];
    fks_id_format (&entry, eid);
    fks_id_format (&sig, sid);
    h_sql_exec (h_sqlf (q, sizeof q, "INSERT INTO inbox (id, idem_key, source, body, alert)"
                        " VALUES ('%s', 'entry-%s', 'tradingview', ''::bytea,"
                        " '{\"symbol\":\"BINANCE:%s\",\"action\":\"buy\","
                        "\"quantity\":2}')", eid, eid, symbol));
    if (backlog)
        cr_assert_eq (kill (s.signal[0]->pid, SIGSTOP), 0);
    h_alert_t out = { .symbol = symbol, .action = "exit", .price = 11 };
    fks_id_t exit_id = h_inject_alert (&s, &out, NULL, NULL);
    if (backlog) {
        sleep (6);                  /* the exit is 6 s old when the worker comes to it */
        cr_assert_eq (kill (s.signal[0]->pid, SIGCONT), 0);
    }
    usleep (300 * 1000);
    char xid[FKS_ID_STR_SIZE];
    fks_id_format (&exit_id, xid);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s' AND status = 'accepted'",
            xid);
    cr_assert_eq (h_sql_int (q), 1, "the exit was decided before the entry was handled%s",
                  backlog ? " (the exit was 6 s old)" : "");
    //  The entry's signal, committed as another replica would.
    h_sql_exec (h_sqlf (q, sizeof q,
                        "WITH s AS (INSERT INTO signals (id, inbox_id, corr, source, symbol,"
                        " action, side, qty, quantity_type, order_type, params, status)"
                        " VALUES ('%s', '%s', '%s', 'tradingview', '%s', 'buy', 'buy', 2,"
                        " 'fixed_quantity', 'market', '{}', 'created') RETURNING id)"
                        " UPDATE inbox SET status = 'signalled' WHERE id = '%s'",
                        sid, eid, eid, symbol, eid));
    h_wait_alert_status (&exit_id, "signalled");
    h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id = '%s' AND side = 'sell'"
            " AND qty = 2", xid);
    cr_assert_eq (h_sql_int (q), 1, "%s", h_sql_text (h_sqlf (q, sizeof q,
                  "SELECT side || ' ' || qty || ' ' || status || ' ' || coalesce (reason, '')"
                  " FROM signals WHERE inbox_id = '%s'", xid)));
}

//  Also when the worker comes to the exit late (a backlog): the wait is bounded by how long
//  the worker has held it back, not by the exit's age.
Test (pipeline, an_exit_waits_for_the_entry_accepted_before_it, .fini = s_teardown,
      .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    s_exit_waits_for ("WAITUSDT", false);
    s_exit_waits_for ("LATEUSDT", true);
}

//  An entry whose message the bus lost (fks-bus restarted between the gateway's commit and the
//  delivery) is published again by the reconciler once it is overdue (here 10 s, passes every
//  second). Its exit, accepted just after and delivered at once, found nothing to close, waited
//  5 s for the entry, then was filtered ("nothing to close"); the entry was then filled and the
//  strategy, flat by its own account, held a long. The exit now waits as long as the
//  reconciler may take (after + 2 x interval + 5 s), and closes it.
Test (pipeline, an_exit_waits_for_an_entry_the_bus_lost_until_it_is_published_again,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_alert_t entry = { .symbol = "LOSTUSDT", .action = "buy", .quantity = 2, .price = 10,
                        .lost = true };
    fks_id_t entry_id = h_inject_alert (&s, &entry, NULL, NULL);
    h_alert_t out = { .symbol = "LOSTUSDT", .action = "exit", .price = 11 };
    fks_id_t exit_id = h_inject_alert (&s, &out, NULL, NULL);
    h_wait_alert_status (&entry_id, "filled");
    h_wait_alert_status (&exit_id, "filled");
    char q[256];
    cr_assert_eq (s_position_is ("LOSTUSDT", "0"), 1, "the exit must close the entry: %s",
                  h_sql_text (h_sqlf (q, sizeof q, "SELECT string_agg (status || ' '"
                              " || coalesce (reason, ''), '; ') FROM signals WHERE symbol ="
                              " 'LOSTUSDT'")));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE symbol = 'LOSTUSDT'"
                             " AND status = 'filled'"), 2);
}

//  A signal.created whose signal was filtered, refused or failed meanwhile (the ai stage
//  filtered it, then the execution input was switched from signal.scored to signal.created and
//  the reconciler handed it over) is consumed and never ordered: in a batch and alone.
Test (pipeline, a_signal_filtered_before_it_reaches_execution_is_never_ordered,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    fks_id_t ids[7];
    for (int i = 0; i < 7; i++) {
        h_alert_t a = { .symbol = i % 2 ? "AAAUSDT" : "BBBUSDT", .action = "buy",
                        .quantity = 1, .price = 10 };
        ids[i] = h_inject_alert (&s, &a, NULL, NULL);
    }
    for (int i = 0; i < 7; i++)
        h_wait_alert_status (&ids[i], "signalled");
    //  Every other signal of the six ends filtered, as the ai stage would leave it.
    char q[256], id[FKS_ID_STR_SIZE];
    for (int i = 0; i < 6; i += 2) {
        fks_id_format (&ids[i], id);
        h_sql_exec (h_sqlf (q, sizeof q, "UPDATE signals SET status = 'filtered' WHERE inbox_id"
                            " = '%s'", id));
    }
    h_stack_start_execution (&s, 0);
    for (int i = 1; i < 6; i += 2)
        h_wait_alert_status (&ids[i], "filled");
    //  The seventh, alone in its transaction, filtered before execution starts again.
    h_wait_alert_status (&ids[6], "filled");
    cr_assert_eq (h_stop (s.execution[0], SIGTERM, 10000), 0);
    h_alert_t last = { .symbol = "AAAUSDT", .action = "sell", .quantity = 1, .price = 10 };
    fks_id_t l = h_inject_alert (&s, &last, NULL, NULL);
    h_wait_alert_status (&l, "signalled");
    fks_id_format (&l, id);
    h_sql_exec (h_sqlf (q, sizeof q, "UPDATE signals SET status = 'filtered' WHERE inbox_id"
                        " = '%s'", id));
    h_stack_start_execution (&s, 0);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 8,
                              WAIT_MS), 8, "every signal consumed");
    cr_assert_eq (h_metric (s.execution_ports[0],
                            "fks_execution_orders_total{outcome=\"closed_signal\"}"), 1,
                  "the last one, in this process");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 4);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals s WHERE status = 'filtered'"
                             " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.signal_id = s.id)"),
                  4);
}

Test (pipeline, execution_killed_mid_run_and_restarted_leaves_one_order_per_signal,
      .fini = s_teardown, .timeout = 180)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    for (int i = 0; i < 1000; i++) {
        h_alert_t a = { .symbol = s_symbols[i % 4], .action = i % 2 ? "buy" : "sell",
                        .quantity = 1 + i % 3, .price = 10 + i % 5 };
        h_inject_alert (&s, &a, NULL, NULL);
        if (i == 400) {
            //  Once some orders are in, kill the execution worker mid-stream.
            h_wait_int ("SELECT least (count(*), 100) FROM orders", 100, WAIT_MS);
            cr_assert_eq (h_stop (s.execution[0], SIGKILL, 5000), 128 + SIGKILL);
        }
    }
    long long before = h_sql_int ("SELECT count(*) FROM orders");
    cr_assert (before < 1000, "the kill came too late to test anything (%lld orders)", before);
    h_stack_start_execution (&s, 0);
    long long orders = h_wait_int ("SELECT count(*) FROM orders", 1000, 120000);
    if (orders != 1000)
        h_dump_logs ();
    cr_assert_eq (orders, 1000);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM inbox WHERE status <> 'filled'", 0,
                              WAIT_MS), 0, "alerts left unfinished");
    cr_assert_eq (h_sql_int ("SELECT count(DISTINCT signal_id) FROM orders"), 1000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status <> 'filled'"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 1000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
    s_assert_books_balance ();
}

Test (pipeline, breaker_opens_for_every_replica_and_closes_after_cooldown_or_reset,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = {
        .signal_replicas = 1, .execution_replicas = 2, .redis_db = REDIS_DB, .gateway = true,
        .exec_env = (const char *[]) { "FKS_BREAKER_FAILURES=3", "FKS_BREAKER_COOLDOWN=4s",
                                       "FKS_BREAKER_HALF_OPEN_SUCCESSES=1",
                                       "FKS_BREAKER_MIN_REQUESTS=1000", NULL }
    };
    h_stack_start (&s, &o);
    //  Market orders with no price anywhere: the paper broker refuses them (a broker failure).
    h_alert_t unpriced = { .symbol = "NOPRICEUSDT", .action = "buy", .quantity = 1 };
    for (int i = 0; i < 3; i++) {
        fks_id_t a = h_inject_alert (&s, &unpriced, NULL, NULL);
        h_wait_alert_status (&a, "failed");
    }
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'breaker.opened'", 1,
                              WAIT_MS), 1, "events: %s",
                  h_sql_text ("SELECT string_agg (type, ' ' ORDER BY seq) FROM events"));
    int64_t opened = fks_mono_ns ();
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.rejected'"), 3);

    //  Now even priced orders are refused, whichever replica takes them.
    h_alert_t priced = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100 };
    for (int i = 0; i < 8; i++) {
        fks_id_t a = h_inject_alert (&s, &priced, NULL, NULL);
        h_wait_alert_status (&a, "rejected");
    }
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals WHERE status = 'rejected'"
                             " AND reason LIKE '%circuit breaker global is open%'"), 8);
    //  Both replicas show the breaker open (their gauges refresh from Redis when idle).
    for (int r = 0; r < 2; r++) {
        double v = -1;
        for (int t = 0; t < 100 && v != 2; t++) {
            v = h_metric (s.execution_ports[r], "fks_breaker_state{scope=\"global\"}");
            if (v != 2)
                usleep (50000);
        }
        cr_assert_eq (v, 2, "replica %d shows breaker state %g", r, v);
    }

    //  After the cool-down (4 s) a probe goes through, succeeds, and closes it.
    while (fks_mono_ns () - opened < 4300000000LL)
        usleep (100000);
    fks_id_t a = h_inject_alert (&s, &priced, NULL, NULL);
    h_wait_alert_status (&a, "filled");
    long long closed = h_wait_int ("SELECT count(*) FROM events WHERE type = 'breaker.closed'",
                                   1, WAIT_MS);
    if (closed != 1)
        h_dump_logs ();
    cr_assert_eq (closed, 1, "events: %s", h_sql_text ("SELECT string_agg (type || ' ' || src,"
                                                       " ', ' ORDER BY seq) FROM events"));
    //  A copy of the probe's signal changes nothing, and publishes no second breaker.closed
    //  (the breaker tells a redo of the probe's recording the transition again: only a
    //  transaction that writes the order may publish it).
    long long consumed = h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'");
    s_copy_signal_of (&a, 1);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'",
                              consumed + 1, WAIT_MS), consumed + 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'breaker.closed'"), 1,
                  "the copy published breaker.closed again");
    for (int r = 0; r < 2; r++) {
        double v = -1;
        for (int t = 0; t < 100 && v != 0; t++) {
            v = h_metric (s.execution_ports[r], "fks_breaker_state{scope=\"global\"}");
            if (v != 0)
                usleep (50000);
        }
        cr_assert_eq (v, 0, "replica %d shows breaker state %g", r, v);
    }

    //  Opened again, an operator closes it through the REST API (admin).
    for (int i = 0; i < 3; i++) {
        fks_id_t b = h_inject_alert (&s, &unpriced, NULL, NULL);
        h_wait_alert_status (&b, "failed");
    }
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'breaker.opened'", 2,
                              WAIT_MS), 2);
    char *body = NULL;
    cr_assert_eq (h_http ("GET", s.gateway_port, "/api/v1/breaker", H_ADMIN_KEY, NULL, NULL,
                          &body), 200, "%s", body);
    cr_assert (strstr (body, "\"state\":\"open\""), "%s", body);
    free (body);
    cr_assert_eq (h_http ("POST", s.gateway_port, "/api/v1/breaker/reset", H_ADMIN_KEY,
                          "application/json", "{}", &body), 200, "%s", body);
    cr_assert (strstr (body, "\"state\":\"closed\""), "%s", body);
    free (body);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'breaker.closed'", 2,
                              WAIT_MS), 2);
    fks_id_t c = h_inject_alert (&s, &priced, NULL, NULL);
    h_wait_alert_status (&c, "filled");
}

//  Stores and publishes the envelope of hdr (its type, corr and cause, body) again under a
//  fresh envelope id, as a producer that sent it twice would.
static void
s_publish_copy (const fks_envelope_hdr_t *hdr, const char *type, const char *src,
                const uint8_t *body, size_t body_len)
{
    h_publish_body_as (&s, type, src, &hdr->corr, &hdr->cause, body, body_len);
}

//  Publishes n copies of the signal.created of the alert (fresh envelope ids).
static void
s_copy_signal_of (const fks_id_t *alert, int n)
{
    char id[FKS_ID_STR_SIZE];
    fks_id_format (alert, id);
    const char *values[1] = { id };
    PGconn *conn = PQconnectdb (h_db_url ());
    cr_assert (PQstatus (conn) == CONNECTION_OK);
    PGresult *r = PQexecParams (conn, "SELECT envelope FROM events WHERE type = 'signal.created'"
                                " AND corr = $1::uuid", 1, NULL, values, NULL, NULL, 1);
    cr_assert (PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1);
    fks_envelope_hdr_t hdr;
    const uint8_t *body;
    size_t body_len;
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_peek (PQgetvalue (r, 0, 0), (size_t) PQgetlength (r, 0, 0), &hdr,
                                     &body, &body_len, &err), 0, "%s", err.msg);
    for (int i = 0; i < n; i++)
        s_publish_copy (&hdr, "signal.created", "signal", body, body_len);
    PQclear (r);
    PQfinish (conn);
}

Test (pipeline, a_signal_seen_again_under_new_message_ids_is_never_ordered_twice,
      .fini = s_teardown, .timeout = 90)
{
    //  The consumed rows stop a redelivered message; the unique keys on orders stop the same
    //  signal arriving inside other messages (here three copies with fresh envelope ids,
    //  some in one batch): still one order.
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_alert_t a = { .symbol = "ETHUSDT", .action = "buy", .quantity = 1, .price = 2000 };
    fks_id_t alert = h_inject_alert (&s, &a, NULL, NULL);
    h_wait_alert_status (&alert, "filled");
    s_copy_signal_of (&alert, 3);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 4,
                              WAIT_MS), 4, "every copy was consumed");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE qty = 1"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.filled'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
}

Test (pipeline, an_alert_seen_again_under_new_message_ids_gets_one_signal,
      .fini = s_teardown, .timeout = 90)
{
    //  The same for the signal worker: copies of an alert that has its signal, arriving with
    //  fresh envelope ids among new alerts, make a batch's insert (sent with COMMIT) fail on
    //  the unique key; the batch is handled again message by message. One signal and one
    //  order per alert, nothing dead-lettered.
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_alert_t a = { .symbol = "ETHUSDT", .action = "buy", .quantity = 1, .price = 2000 };
    uint8_t *env = NULL;
    size_t len = 0;
    fks_id_t first = h_inject_alert (&s, &a, &env, &len);
    h_wait_alert_status (&first, "filled");
    fks_envelope_hdr_t hdr;
    const uint8_t *body;
    size_t body_len;
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_peek (env, len, &hdr, &body, &body_len, &err), 0, "%s", err.msg);
    //  Everything below waits in the stopped replica's client and arrives as one batch.
    cr_assert_eq (kill (s.signal[0]->pid, SIGSTOP), 0);
    fks_id_t others[8];
    for (int i = 0; i < 8; i++) {
        if (i % 2 == 0)
            s_publish_copy (&hdr, "webhook.received", "gateway", body, body_len);
        others[i] = h_inject_alert (&s, &a, NULL, NULL);
    }
    free (env);
    usleep (200 * 1000);            /* the bus delivers to the stopped replica's client */
    cr_assert_eq (kill (s.signal[0]->pid, SIGCONT), 0);
    for (int i = 0; i < 8; i++)
        h_wait_alert_status (&others[i], "filled");
    cr_assert_geq (h_metric (s.signal_ports[0],
                             "fks_worker_batches_split_total{group=\"signal\"}"), 1,
                   "the batch with the copies was taken apart");
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'signal'", 13,
                              WAIT_MS), 13, "every message, copies included, was consumed");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals"), 9);
    cr_assert_eq (h_sql_int ("SELECT count(DISTINCT inbox_id) FROM signals"), 9);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'signal.created'"), 9);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM orders WHERE status = 'filled'", 9,
                              WAIT_MS), 9);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE qty = 9"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
}

Test (pipeline, routing_to_execution_follows_the_configured_input, .fini = s_teardown,
      .timeout = 90)
{
    //  With the ai stage switched on, execution takes signal.scored: a signal.created alone
    //  must not trade.
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_EXECUTION_INPUT=signal.scored",
                                                        NULL } };
    h_stack_start (&s, &o);
    h_alert_t a = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100 };
    fks_id_t id = h_inject_alert (&s, &a, NULL, NULL);
    h_wait_alert_status (&id, "signalled");
    //  The execution group's subscription does not include signal.created: nothing consumed.
    usleep (500000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM bus_groups WHERE grp = 'execution'"
                             " AND prefixes @> ARRAY['signal.scored']"
                             " AND NOT prefixes @> ARRAY['signal.created']"), 1);
}
