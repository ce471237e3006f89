/*  test_execution.c - the execution worker's rules where they meet batches, replays and bars
 *  (workers/execution/execute.c), with fks-execution, fks-signal and fks-bus as real processes
 *  against PostgreSQL and Redis.
 *
 *  Integration suite: needs FKS_TEST_PG_URL and FKS_TEST_REDIS_URL (tools/test.sh). Each test
 *  starts its own bus and workers against a fresh database and stops them with SIGTERM at the
 *  end. A batch is made the way it happens under load: the handler thread is busy (here held
 *  on a position lock the test takes) while messages queue up for it, and takes them together
 *  once free. The replica runs two handler threads and routes by symbol, so the symbols of one
 *  batch are chosen to land on one thread (fks_worker_key). No assertion depends on timing:
 *  waits poll the database until the expected state or a generous deadline.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/breaker.h"
#include "common/redis.h"
#include "tests/workers/harness.h"
#include "workers/runtime.h"

#define REDIS_DB 10
#define WAIT_MS  30000
#define THREADS  2                  /* FKS_WORKER_THREADS, as the harness starts workers */

static h_stack_t s;

static void
s_teardown (void)
{
    h_stack_stop (&s);
}

static void
s_wait_sql (const char *sql, long long want)
{
    long long got = h_wait_int (sql, want, WAIT_MS);
    if (got != want) {
        h_dump_logs ();
        cr_assert_fail ("%s: %lld, expected %lld", sql, got, want);
    }
}

static long long
s_consumed (void)
{
    return h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'");
}

//  The i-th symbol "<prefix><n>USDT" that the execution replica's router gives to handler
//  thread `thread`.
static void
s_symbol_on (int thread, const char *prefix, int i, char out[32])
{
    for (int n = 0, found = 0; n < 100000; n++) {
        snprintf (out, 32, "%s%dUSDT", prefix, n);
        if ((int) (fks_worker_key (out) % THREADS) == thread && found++ == i)
            return;
    }
    cr_assert_fail ("no symbol for thread %d", thread);
}

//  A market.bar for symbol at open_time, of the interval given.
static void
s_bar_of (const char *symbol, const char *interval, int64_t open_time, double open,
          double high, double low, double close, double volume)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 9);
    fks_pack_kv_str (&pk, "symbol", symbol);
    fks_pack_kv_str (&pk, "interval", interval);
    fks_pack_kv_i64 (&pk, "open_time", open_time);
    fks_pack_kv_f64 (&pk, "open", open);
    fks_pack_kv_f64 (&pk, "high", high);
    fks_pack_kv_f64 (&pk, "low", low);
    fks_pack_kv_f64 (&pk, "close", close);
    fks_pack_kv_f64 (&pk, "volume", volume);
    fks_pack_kv_str (&pk, "source", "csv");
    h_publish_body (&s, "market.bar", "data", body.data, body.size);
    msgpack_sbuffer_destroy (&body);
}

//  A 1-minute market.bar.
static void
s_bar (const char *symbol, int64_t open_time, double open, double high, double low,
       double close, double volume)
{
    s_bar_of (symbol, "1m", open_time, open, high, low, close, volume);
}

//  Publishes a bar and waits until the execution worker has consumed it.
static void
s_bar_consumed (const char *symbol, int64_t open_time, double open, double high, double low,
                double close, double volume)
{
    long long before = s_consumed ();
    s_bar (symbol, open_time, open, high, low, close, volume);
    char q[128];
    s_wait_sql (h_sqlf (q, sizeof q, "SELECT count(*) FROM consumed WHERE grp = 'execution'"),
                before + 1);
}

//  The n-th signal.created envelope stored (oldest first): header and a copy of its body.
static void
s_signal_envelope (int n, fks_envelope_hdr_t *hdr, uint8_t **body, size_t *len)
{
    PGconn *conn = PQconnectdb (h_db_url ());
    cr_assert (PQstatus (conn) == CONNECTION_OK);
    char q[160];
    h_sqlf (q, sizeof q, "SELECT envelope FROM events WHERE type = 'signal.created'"
         " ORDER BY seq OFFSET %d LIMIT 1", n);
    PGresult *r = PQexecParams (conn, q, 0, NULL, NULL, NULL, NULL, 1);
    cr_assert (PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1);
    const uint8_t *b;
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_peek (PQgetvalue (r, 0, 0), (size_t) PQgetlength (r, 0, 0), hdr,
                                     &b, len, &err), 0, "%s", err.msg);
    *body = malloc (*len);
    memcpy (*body, b, *len);
    PQclear (r);
    PQfinish (conn);
}

//  Stores and publishes a body under a fresh envelope id (corr and cause as in hdr), as a
//  producer that sent it twice would.
static void
s_publish_copy (const fks_envelope_hdr_t *hdr, const char *type, const char *src,
                const uint8_t *body, size_t body_len)
{
    h_publish_body_as (&s, type, src, &hdr->corr, &hdr->cause, body, body_len);
}

//  Makes the next messages of a handler thread arrive as one batch: the thread is held on a
//  first message (an order for `symbol`, whose position lock the test holds) while the
//  others queue up behind it; s_unblock lets it go, and it takes them all together.
static PGconn *s_blocker;

static void
s_block (const char *symbol)
{
    s_blocker = PQconnectdb (h_db_url ());
    cr_assert (PQstatus (s_blocker) == CONNECTION_OK);
    const char *values[1] = { symbol };
    PGresult *r = PQexecParams (s_blocker, "SELECT pg_advisory_lock (hashtextextended "
                                "('fks.position:' || $1, 0))", 1, NULL, values, NULL, NULL, 0);
    cr_assert (PQresultStatus (r) == PGRES_TUPLES_OK, "%s", PQerrorMessage (s_blocker));
    PQclear (r);
    h_alert_t a = { .symbol = symbol, .action = "buy", .quantity = 1, .price = 10 };
    h_inject_alert (&s, &a, NULL, NULL);
    s_wait_sql ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database"
                "                  WHERE datname = current_database ())", 1);
}

//  Lets the held thread go, once the bus had time to hand it what was published meanwhile.
static void
s_unblock (void)
{
    usleep (500 * 1000);
    PQfinish (s_blocker);
    s_blocker = NULL;
}

static fks_redis_t *
s_redis (void)
{
    const char *url = strchr (s.redis_env, '=') + 1;
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (url, 2000, 2000, &err);
    cr_assert (r, "%s", err.msg);
    return r;
}



//  --------------------------------------------------------------------------
//  The orders-per-minute counter

Test (execution, orders_per_minute_counts_an_order_once_when_its_batch_is_redone,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_RISK_MAX_ORDERS_PER_MINUTE=10",
                                                        NULL } };
    h_stack_start (&s, &o);
    //  Eight buys and a signal whose symbol does not normalise, in one batch: the bad one
    //  fails it, and the runtime handles the nine again one by one. The bad one has no
    //  symbol key: thread 0, so the buys go there too.
    char sym[32], hold[32];
    s_symbol_on (0, "OPM", 0, sym);
    s_symbol_on (0, "HOLD", 0, hold);
    s_block (hold);                                     /* an order too: 1 of 10 */
    fks_id_t alerts[8];
    for (int i = 0; i < 8; i++) {
        h_alert_t a = { .symbol = sym, .action = "buy", .quantity = 1, .price = 10 };
        alerts[i] = h_inject_alert (&s, &a, NULL, NULL);
    }
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 9);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    fks_id_t sid;
    cr_assert_eq (fks_id_new (&sid), 0);
    msgpack_pack_map (&pk, 5);
    fks_pack_kv_id (&pk, "signal_id", &sid);
    fks_pack_kv_str (&pk, "symbol", "$$$");
    fks_pack_kv_str (&pk, "side", "buy");
    fks_pack_kv_f64 (&pk, "qty", 1);
    fks_pack_kv_str (&pk, "order_type", "market");
    h_publish_body (&s, "signal.created", "signal", body.data, body.size);
    msgpack_sbuffer_destroy (&body);
    s_unblock ();

    for (int i = 0; i < 8; i++)
        h_wait_alert_status (&alerts[i], "filled");
    s_wait_sql ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 10);
    cr_assert_geq (h_metric (s.execution_ports[0],
                             "fks_worker_batches_split_total{group=\"execution\"}"), 1,
                   "the batch was taken apart");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'filled'"), 9);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals WHERE status = 'rejected'"), 0);
    //  One more fits in this minute's ten (or the next minute's, should it have turned).
    h_alert_t more = { .symbol = sym, .action = "buy", .quantity = 1, .price = 10 };
    fks_id_t a = h_inject_alert (&s, &more, NULL, NULL);
    h_wait_alert_status (&a, "filled");
}

Test (execution, orders_per_minute_counts_neither_copies_nor_breaker_refusals,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_RISK_MAX_ORDERS_PER_MINUTE=4",
                                                        "FKS_BREAKER_FAILURES=1",
                                                        "FKS_BREAKER_COOLDOWN=1h",
                                                        "FKS_BREAKER_MIN_REQUESTS=1000",
                                                        NULL } };
    h_stack_start (&s, &o);
    h_alert_t buy = { .symbol = "BTCUSDT", .action = "buy", .quantity = 1, .price = 100 };
    fks_id_t a1 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a1, "filled");                                  /* 1 of 4 */
    //  Three copies of its signal under new message ids: the order exists, nothing is sent.
    fks_envelope_hdr_t hdr;
    uint8_t *body;
    size_t len;
    s_signal_envelope (0, &hdr, &body, &len);
    for (int i = 0; i < 3; i++)
        s_publish_copy (&hdr, "signal.created", "signal", body, len);
    free (body);
    s_wait_sql ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 4);
    fks_id_t a2 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a2, "filled");                                  /* 2 of 4 */
    //  A broker refusal counts (the order reached the broker) and opens the breaker...
    h_alert_t unpriced = { .symbol = "NOPRICEUSDT", .action = "buy", .quantity = 1 };
    fks_id_t a3 = h_inject_alert (&s, &unpriced, NULL, NULL);
    h_wait_alert_status (&a3, "failed");                                  /* 3 of 4 */
    //  ... whose refusals do not: those orders never went anywhere.
    for (int i = 0; i < 3; i++) {
        fks_id_t a = h_inject_alert (&s, &buy, NULL, NULL);
        h_wait_alert_status (&a, "rejected");
    }
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals WHERE status = 'rejected'"
                             " AND reason LIKE '%circuit breaker%'"), 3);
    fks_redis_t *r = s_redis ();
    fks_breaker_t *b = fks_breaker_new (r, "global", NULL);
    fks_breaker_status_t st;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_reset (b, "test", fks_now_ms (), &st, NULL, &err), 0, "%s",
                  err.msg);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
    fks_id_t a4 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a4, "filled");                                  /* 4 of 4 */
    char reason[512] = "";
    char *got = h_sql_text ("SELECT coalesce (string_agg (reason, '; '), '') FROM signals"
                            " WHERE reason LIKE '%orders in this minute%'");
    snprintf (reason, sizeof reason, "%s", got);
    free (got);
    cr_assert_str_eq (reason, "", "refused by the rate: %s", reason);
}


Test (execution, orders_per_minute_gives_back_what_the_breaker_refuses_in_a_redone_batch,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_RISK_MAX_ORDERS_PER_MINUTE=4",
                                                        "FKS_BREAKER_FAILURES=1",
                                                        "FKS_BREAKER_COOLDOWN=1h",
                                                        "FKS_BREAKER_MIN_REQUESTS=1000",
                                                        NULL } };
    h_stack_start (&s, &o);
    char priced[32], unpriced[32], hold[32];
    s_symbol_on (0, "RATE", 0, priced);
    s_symbol_on (0, "NOPX", 0, unpriced);
    s_symbol_on (0, "HOLD", 0, hold);
    //  A broker refusal and two good orders in one batch: the refusal opens the breaker,
    //  which would refuse the other two, so the batch is handled again one by one; the two
    //  are refused then, and must give their places in the minute back.
    s_block (hold);                                     /* 1 of 4 */
    h_alert_t bad = { .symbol = unpriced, .action = "buy", .quantity = 1 };
    fks_id_t a1 = h_inject_alert (&s, &bad, NULL, NULL);
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 2);
    h_alert_t good = { .symbol = priced, .action = "buy", .quantity = 1, .price = 10 };
    fks_id_t refused[2];
    for (int i = 0; i < 2; i++)
        refused[i] = h_inject_alert (&s, &good, NULL, NULL);
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 4);
    s_unblock ();
    h_wait_alert_status (&a1, "failed");                      /* 2 of 4: it reached the broker */
    for (int i = 0; i < 2; i++)
        h_wait_alert_status (&refused[i], "rejected");
    cr_assert_geq (h_metric (s.execution_ports[0],
                             "fks_worker_batches_split_total{group=\"execution\"}"), 1,
                   "the batch was taken apart");
    fks_redis_t *r = s_redis ();
    fks_breaker_t *b = fks_breaker_new (r, "global", NULL);
    fks_breaker_status_t st;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_reset (b, "test", fks_now_ms (), &st, NULL, &err), 0, "%s",
                  err.msg);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
    for (int i = 0; i < 2; i++) {                       /* 3 and 4 of 4 */
        fks_id_t a = h_inject_alert (&s, &good, NULL, NULL);
        h_wait_alert_status (&a, "filled");
    }
}


//  --------------------------------------------------------------------------
//  Resting limit orders

Test (execution, resting_limit_orders_count_against_max_position, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_RISK_MAX_POSITION=1",
                                                        "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "ADAUSDT", 1.0);
    h_alert_t lim = { .symbol = "ADAUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a1 = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a1, "ordered");
    //  The position is flat, but the first buy may fill: a second one would make it 2.
    fks_id_t a2 = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a2, "rejected");
    char *reason = h_sql_text ("SELECT coalesce (max (reason), '') FROM signals"
                               " WHERE status = 'rejected'");
    cr_assert (strstr (reason, "position would be 2") && strstr (reason, "open orders"), "%s",
               reason);
    free (reason);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 1);
    s_bar_consumed ("ADAUSDT", fks_now_ms (), 0.6, 0.7, 0.4, 0.45, 100);
    s_wait_sql ("SELECT count(*) FROM orders WHERE status = 'filled'", 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'ADAUSDT'"
                             " AND qty = 1"), 1, "position %s",
                  h_sql_text ("SELECT string_agg (qty::text, ',') FROM positions"));
    //  A sell still may: it brings the position back towards flat.
    h_alert_t sell = { .symbol = "ADAUSDT", .action = "sell", .quantity = 1, .price = 0.45,
                       .market_position = "flat" };
    fks_id_t a3 = h_inject_alert (&s, &sell, NULL, NULL);
    h_wait_alert_status (&a3, "filled");
}

Test (execution, a_resting_reduce_only_order_is_cut_to_the_position_it_finds,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "SOLUSDT", 100);
    h_alert_t buy = { .symbol = "SOLUSDT", .action = "buy", .quantity = 2, .price = 100 };
    fks_id_t a1 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a1, "filled");
    //  A close with a limit above the market rests (reduce-only, 2)...
    h_alert_t close = { .symbol = "SOLUSDT", .action = "close", .price = 100,
                        .order_type = "limit", .limit_price = 120 };
    fks_id_t a2 = h_inject_alert (&s, &close, NULL, NULL);
    h_wait_alert_status (&a2, "ordered");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'submitted'"
                             " AND side = 'sell' AND qty = 2"), 1);
    //  ... a market order then reduces the long to 1 ...
    h_alert_t reduce = { .symbol = "SOLUSDT", .action = "sell", .quantity = 1, .price = 100,
                         .market_position = "long" };
    fks_id_t a3 = h_inject_alert (&s, &reduce, NULL, NULL);
    h_wait_alert_status (&a3, "filled");
    //  ... and the bar through the limit fills only what is left to close.
    s_bar_consumed ("SOLUSDT", fks_now_ms (), 110, 130, 105, 125, 1000);
    h_wait_alert_status (&a2, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE limit_price = 120"
                             " AND status = 'filled' AND qty = 1 AND filled_qty = 1"), 1,
                  "orders: %s", h_sql_text ("SELECT string_agg (status || ' ' || qty || ' '"
                                            " || filled_qty, '; ') FROM orders"));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'SOLUSDT'"
                             " AND qty = 0"), 1, "position %s",
                  h_sql_text ("SELECT qty::text FROM positions WHERE symbol = 'SOLUSDT'"));

    //  Flattened before the bar comes: the resting close has nothing to do and ends.
    fks_id_t a4 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a4, "filled");
    h_alert_t close2 = close;
    close2.limit_price = 150;                           /* above the last close, 125 */
    fks_id_t a5 = h_inject_alert (&s, &close2, NULL, NULL);
    h_wait_alert_status (&a5, "ordered");
    h_alert_t flat = { .symbol = "SOLUSDT", .action = "close", .price = 125 };
    fks_id_t a6 = h_inject_alert (&s, &flat, NULL, NULL);
    h_wait_alert_status (&a6, "filled");
    s_bar_consumed ("SOLUSDT", fks_now_ms (), 126, 160, 120, 130, 1000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'SOLUSDT'"
                             " AND qty = 0"), 1, "position %s",
                  h_sql_text ("SELECT qty::text FROM positions WHERE symbol = 'SOLUSDT'"));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'cancelled'"
                             " AND filled_qty = 0 AND reason LIKE 'reduce_only:%'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'order.cancelled'"), 1);
}

Test (execution, bars_from_before_an_order_was_placed_do_not_fill_it, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_set_price (&s, "XRPUSDT", 1.0);
    h_alert_t lim = { .symbol = "XRPUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    //  Yesterday's bar, replayed: it went through the limit, but the order was not there.
    s_bar_consumed ("XRPUSDT", fks_now_ms () - 86400000, 0.45, 0.5, 0.40, 0.42, 1000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'submitted'"), 1);
    //  The bar that is open now does.
    s_bar_consumed ("XRPUSDT", fks_now_ms (), 0.6, 0.7, 0.4, 0.45, 1000);
    h_wait_alert_status (&a, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE price = 0.5"), 1);
}

Test (execution, a_bar_fills_at_most_its_volume_share_across_all_orders, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_MAX_VOLUME_SHARE=0.1",
                                                        NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "DOTUSDT", 1.0);
    h_alert_t lim = { .symbol = "DOTUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t first = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&first, "ordered");
    for (int i = 0; i < 2; i++) {
        fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
        h_wait_alert_status (&a, "ordered");
    }
    //  Volume 10 at a share of 0.1: 1 to fill, for all three together; the oldest first.
    s_bar_consumed ("DOTUSDT", fks_now_ms (), 0.6, 0.7, 0.4, 0.45, 10);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'DOTUSDT'"
                             " AND qty = 1"), 1, "position %s",
                  h_sql_text ("SELECT qty::text FROM positions WHERE symbol = 'DOTUSDT'"));
    h_wait_alert_status (&first, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE status = 'submitted'"), 2);
}


//  Feeds announce the forming bar again at every poll, with the same open time, the range so
//  far and the volume so far. The share of its volume is granted once over all announcements:
//  volume 4, then 5, at a share of 0.5, fills 2.5 in all (not 2 + 2.5).
Test (execution, a_re_announced_forming_bar_fills_at_most_its_volume_share,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_MAX_VOLUME_SHARE=0.5",
                                                        "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "ATOMUSDT", 1.0);
    h_alert_t lim = { .symbol = "ATOMUSDT", .action = "buy", .quantity = 10, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    int64_t t = fks_now_ms () / 60000 * 60000;          /* the forming 1m bar */
    s_bar_consumed ("ATOMUSDT", t, 0.6, 0.7, 0.4, 0.45, 4);     /* first poll: volume 4 */
    s_bar_consumed ("ATOMUSDT", t, 0.6, 0.7, 0.4, 0.45, 5);     /* next poll: volume 5 */
    s_bar_consumed ("ATOMUSDT", t, 0.6, 0.7, 0.4, 0.45, 5);     /* the same again */
    char *f = h_sql_text ("SELECT coalesce (sum (qty), 0)::text FROM fills");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE qty = 2"), 1, "fills %s", f);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE qty = 0.5"), 1, "fills %s", f);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 2, "fills %s", f);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE qty = 2.5"), 1);
    free (f);
}

//  The forming bar was announced with low 0.4 before the order existed; the market is at 1.0
//  when a buy limit at 0.5 is placed and rests. The next poll announces the same range with
//  more volume: nothing traded at 0.5 since the order was placed, so nothing fills. A poll
//  after that with a new low of 0.45 does fill it, at its limit.
Test (execution, a_re_announced_bar_fills_only_on_prices_made_since_the_order,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    int64_t t = fks_now_ms () / 60000 * 60000;          /* the forming 1m bar */
    s_bar_consumed ("FILUSDT", t, 0.8, 1.05, 0.4, 1.0, 100);
    h_set_price (&s, "FILUSDT", 1.0);
    h_alert_t lim = { .symbol = "FILUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    s_bar_consumed ("FILUSDT", t, 0.8, 1.05, 0.4, 1.0, 120);   /* same range, more volume */
    char *f = h_sql_text ("SELECT coalesce (string_agg (qty || ' at ' || price, '; '), 'none')"
                          " FROM fills");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 0,
                  "filled %s on a low the market made before the order existed", f);
    free (f);
    s_bar_consumed ("FILUSDT", t, 0.8, 1.05, 0.39, 0.6, 150);  /* a new low since */
    h_wait_alert_status (&a, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE qty = 1 AND price = 0.5"), 1);
}

//  A fill within 1e-9 of the rest completes the order: the fill and the position are the
//  order's rest, so the order, its fills and the position agree (volume 1.999999999 at a share
//  of 0.5 offers 0.9999999995 of an order of 1).
Test (execution, an_order_filled_within_the_tolerance_equals_the_sum_of_its_fills,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_MAX_VOLUME_SHARE=0.5",
                                                        "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "NEARUSDT", 1.0);
    h_alert_t lim = { .symbol = "NEARUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    s_bar_consumed ("NEARUSDT", fks_now_ms (), 0.6, 0.7, 0.4, 0.45, 1.999999999);
    h_wait_alert_status (&a, "filled");
    char *d = h_sql_text ("SELECT 'order ' || o.filled_qty || ' fills ' || (SELECT sum (qty)"
                          " FROM fills) || ' position ' || (SELECT qty FROM positions)"
                          " FROM orders o");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders o WHERE o.filled_qty ="
                             " (SELECT sum (qty) FROM fills f WHERE f.order_id = o.id)"
                             " AND o.filled_qty = (SELECT qty FROM positions)"), 1, "%s", d);
    free (d);
}

//  A buy is ordered with its signal's quantity, all of its digits (8 decimals here,
//  FKS_SIGNAL_QTY_DECIMALS), not rounded to 12 significant ones (12345.1234568: more).
Test (execution, an_order_has_the_quantity_of_its_signal, .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "DOGEUSDT", 0.1);
    h_alert_t buy = { .symbol = "DOGEUSDT", .action = "buy", .quantity = 12345.12345678,
                      .price = 0.1 };
    fks_id_t a1 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a1, "filled");
    char *d = h_sql_text ("SELECT 'signal ' || s.qty || ', order ' || o.qty || ', position '"
                          " || p.qty FROM signals s JOIN orders o ON o.signal_id = s.id"
                          " JOIN positions p ON p.symbol = o.symbol");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM signals s JOIN orders o"
                             " ON o.signal_id = s.id JOIN positions p ON p.symbol = o.symbol"
                             " WHERE o.qty = s.qty AND p.qty = s.qty"), 1, "%s", d);
    free (d);
}

//  An exit's signal that reaches the execution worker before its entry's (the entry's
//  replica published late, or two ai replicas crossed), on the same replica and handler
//  thread: the exit is handed back for later (FKS_WORKER_LATER), so the entry, queued behind
//  it, is filled first; a retry in place would keep the entry waiting behind it until the exit
//  was refused "nothing to reduce". The entry is made here as the signal worker makes it, and
//  published only once the exit is being held back.
Test (execution, an_exit_ahead_of_its_entry_on_one_thread_lets_the_entry_go_first,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "AHEADUSDT", 10);
    fks_id_t inbox, sig;
    cr_assert_eq (fks_id_new (&inbox), 0);
    cr_assert_eq (fks_id_new (&sig), 0);
    char iid[FKS_ID_STR_SIZE], sid[FKS_ID_STR_SIZE], q[900];
    fks_id_format (&inbox, iid);
    fks_id_format (&sig, sid);
    h_sql_exec (h_sqlf (q, sizeof q,
        "WITH i AS (INSERT INTO inbox (id, idem_key, source, body, alert, status)"
        "           VALUES ('%s', '%s', 'tradingview', ''::bytea,"
        "                   '{\"symbol\":\"AHEADUSDT\",\"action\":\"buy\"}', 'signalled'))"
        " INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty,"
        "                      quantity_type, order_type, price, params, status)"
        " VALUES ('%s', '%s', '%s', 'tradingview', 'AHEADUSDT', 'buy', 'buy', 2,"
        "         'fixed_quantity', 'market', 10, '{\"reduce_only\":false}', 'created')",
        iid, iid, sid, iid, iid));
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 9);
    fks_pack_kv_id (&pk, "signal_id", &sig);
    fks_pack_kv_id (&pk, "inbox_id", &inbox);
    fks_pack_kv_str (&pk, "symbol", "AHEADUSDT");
    fks_pack_kv_str (&pk, "side", "buy");
    fks_pack_kv_f64 (&pk, "qty", 2);
    fks_pack_kv_str (&pk, "order_type", "market");
    fks_pack_kv_f64 (&pk, "price", 10);
    fks_pack_kv_bool (&pk, "reduce_only", false);
    fks_pack_kv_f64 (&pk, "open_qty", 2);
    msgpack_sbuffer frame;
    h_store_body ("signal.created", "signal", &inbox, &inbox, body.data, body.size, &frame);
    //  The exit: the signal worker counts the entry's pending signal and closes 2.
    h_alert_t out = { .symbol = "AHEADUSDT", .action = "exit", .price = 11 };
    fks_id_t x = h_inject_alert (&s, &out, NULL, NULL);
    h_wait_alert_status (&x, "signalled");
    usleep (600 * 1000);
    char xid[FKS_ID_STR_SIZE];
    fks_id_format (&x, xid);
    cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s'"
                                     " AND status = 'signalled'", xid)), 1,
                  "the exit was decided before its entry came");
    h_publish (&s, "signal.created", (const uint8_t *) frame.data, frame.size);
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
    h_wait_alert_status (&inbox, "filled");
    h_wait_alert_status (&x, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM positions WHERE symbol = 'AHEADUSDT'"
                             " AND qty = 0"), 1, "the exit closes the entry's 2");
    cr_assert (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'") == 0);
}

//  A symbol polled in two intervals (1m and 1h): the hour's bar holds the same trades as its
//  minutes, so only the minutes fill its orders; an hour bar that went through the limit
//  fills nothing, the next minute bar that does fills it.
Test (execution, a_symbol_in_two_intervals_fills_from_the_shorter_only, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "ICPUSDT", 1.0);
    h_alert_t lim = { .symbol = "ICPUSDT", .action = "buy", .quantity = 1, .price = 1.0,
                      .order_type = "limit", .limit_price = 0.5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "ordered");
    int64_t now = fks_now_ms ();
    s_bar_consumed ("ICPUSDT", now / 60000 * 60000, 0.9, 1.0, 0.8, 0.9, 10);
    long long before = s_consumed ();
    s_bar_of ("ICPUSDT", "1h", now / 3600000 * 3600000, 0.9, 1.0, 0.4, 0.9, 600);
    char q[128];
    s_wait_sql (h_sqlf (q, sizeof q, "SELECT count(*) FROM consumed WHERE grp = 'execution'"),
                before + 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills"), 0,
                  "the hour bar filled what its minutes did not reach");
    s_bar_consumed ("ICPUSDT", now / 60000 * 60000 + 60000, 0.9, 1.0, 0.45, 0.6, 10);
    h_wait_alert_status (&a, "filled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM fills WHERE qty = 1 AND price = 0.5"), 1);
}

//  --------------------------------------------------------------------------
//  Cancels

//  A strategy sends "buy limit" and, a moment later, "cancel" while execution is busy on the
//  symbol: the limit signal has no order yet when the cancel comes. It must never rest.
//  Whichever comes first under the symbol's lock, the limit is closed before it is ordered
//  (filtered, under its own alert) or ordered and then cancelled: no working order is left.
Test (execution, a_cancel_alert_cancels_a_limit_signal_not_yet_ordered, .fini = s_teardown,
      .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "LINKUSDT", 10);
    s_block ("LINKUSDT");                               /* execution busy on LINKUSDT */
    h_alert_t lim = { .symbol = "LINKUSDT", .action = "buy", .quantity = 1, .price = 10,
                      .order_type = "limit", .limit_price = 5 };
    fks_id_t a = h_inject_alert (&s, &lim, NULL, NULL);
    h_wait_alert_status (&a, "signalled");
    h_alert_t cancel = { .symbol = "LINKUSDT", .action = "cancel" };
    fks_id_t c = h_inject_alert (&s, &cancel, NULL, NULL);
    //  The cancel waits for the symbol's lock behind the busy execution transaction (or, had
    //  it not taken the lock, is handled at once).
    char id[FKS_ID_STR_SIZE], lid[FKS_ID_STR_SIZE], q[600];
    fks_id_format (&c, id);
    fks_id_format (&a, lid);
    s_wait_sql (h_sqlf (q, sizeof q, "SELECT CASE WHEN (SELECT count(*) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND NOT granted AND database ="
                        " (SELECT oid FROM pg_database WHERE datname = current_database ()))"
                        " = 2 OR (SELECT status FROM inbox WHERE id = '%s') <> 'accepted'"
                        " THEN 1 ELSE 0 END", id), 1);
    s_unblock ();
    h_wait_alert_status (&c, "signalled");
    //  The limit ends either way: filtered before it was ordered, or ordered and cancelled.
    s_wait_sql (h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s'"
                        " AND status IN ('filtered', 'ordered')", lid), 1);
    s_wait_sql ("SELECT count(*) FROM orders WHERE type = 'limit'"
                " AND status IN ('new', 'submitted', 'partially_filled')", 0);
    sleep (1);                                          /* nothing placed late */
    char *st = h_sql_text ("SELECT coalesce (string_agg (type || ' ' || status, '; '), 'none')"
                           " FROM orders WHERE type = 'limit'");
    char *sig = h_sql_text (h_sqlf (q, sizeof q, "SELECT status || ': ' || coalesce (reason, '')"
                                    " FROM signals WHERE inbox_id = '%s'", lid));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE type = 'limit'"
                             " AND status IN ('new', 'submitted', 'partially_filled')"), 0,
                  "the cancel left the limit order working: %s (signal %s)", st, sig);
    if (h_sql_int ("SELECT count(*) FROM orders WHERE type = 'limit'") == 0) {
        //  Closed before it was ordered: said under the limit's own alert.
        cr_assert (strstr (sig, "filtered: cancelled by alert ") != NULL, "%s", sig);
        cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM events"
                                         " WHERE type = 'signal.filtered' AND corr = '%s'",
                                         lid)), 1);
        cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox"
                                         " WHERE id = '%s' AND status = 'filtered'", lid)), 1);
    }
    else
        cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders WHERE type = 'limit'"
                                 " AND status = 'cancelled'"), 1, "%s", st);
    free (st);
    free (sig);
}

//  A cancel with nothing open and nothing on its way is filtered, and says why.
Test (execution, a_cancel_alert_with_nothing_to_cancel_is_filtered, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB };
    h_stack_start (&s, &o);
    h_set_price (&s, "LINKUSDT", 10);
    h_alert_t buy = { .symbol = "LINKUSDT", .action = "buy", .quantity = 1, .price = 10 };
    fks_id_t b = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&b, "filled");
    h_alert_t cancel = { .symbol = "LINKUSDT", .action = "cancel" };
    fks_id_t c = h_inject_alert (&s, &cancel, NULL, NULL);
    h_wait_alert_status (&c, "filtered");
    char id[FKS_ID_STR_SIZE], q[200];
    fks_id_format (&c, id);
    cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id"
                                     " = '%s' AND reason LIKE 'nothing to cancel:%%'", id)), 1);
}


//  --------------------------------------------------------------------------
//  Big batches

Test (execution, positions_stay_exact_when_a_batch_has_more_symbols_than_the_cache,
      .fini = s_teardown, .timeout = 180)
{
    //  A transaction keeps 64 symbols' positions in memory; a batch of more writes them out
    //  and starts over. A symbol traded before and after that must move once per fill.
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_WORKER_BATCH=200",
                                                        "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    char again[32], hold[32];
    s_symbol_on (1, "AGN", 0, again);
    s_symbol_on (1, "HOLD", 0, hold);
    s_block (hold);
    h_alert_t a = { .symbol = again, .action = "buy", .quantity = 1, .price = 10 };
    h_inject_alert (&s, &a, NULL, NULL);
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 2);
    for (int i = 0; i < 70; i++) {
        char sym[32];
        s_symbol_on (1, "BIG", i, sym);
        h_alert_t b = { .symbol = sym, .action = "buy", .quantity = 1, .price = 10 };
        h_inject_alert (&s, &b, NULL, NULL);
    }
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 72);
    h_inject_alert (&s, &a, NULL, NULL);
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 73);
    s_unblock ();

    s_wait_sql ("SELECT count(*) FROM orders WHERE status = 'filled'", 73);
    char q[256];
    h_sqlf (q, sizeof q, "SELECT count(*) FROM positions WHERE symbol = '%s' AND qty = 2", again);
    cr_assert_eq (h_sql_int (q), 1, "position %s",
                  h_sql_text ("SELECT string_agg (symbol || ' ' || qty, ', ') FROM positions"
                              " WHERE qty <> 1"));
    //  Every position equals the signed sum of its fills.
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM (SELECT symbol, sum (qty) AS q FROM fills"
                             "  GROUP BY symbol) f FULL JOIN positions p USING (symbol)"
                             " WHERE coalesce (p.qty, 0) <> coalesce (f.q, 0)"), 0);
}


//  --------------------------------------------------------------------------
//  Notional

Test (execution, a_limit_order_is_valued_at_the_price_it_may_fill_at, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_RISK_MAX_NOTIONAL=1000", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "LINKUSDT", 100);
    //  Sell 10 at 150 or better: 1500 at least, whatever the last price says.
    h_alert_t sell = { .symbol = "LINKUSDT", .action = "sell", .quantity = 10, .price = 100,
                       .order_type = "limit", .limit_price = 150 };
    fks_id_t a1 = h_inject_alert (&s, &sell, NULL, NULL);
    h_wait_alert_status (&a1, "rejected");
    char *reason = h_sql_text ("SELECT coalesce (max (reason), '') FROM signals"
                               " WHERE status = 'rejected'");
    cr_assert (strstr (reason, "notional 1500"), "%s", reason);
    free (reason);
    //  Buy 10 at 90 or better: at most 900, though the last price makes it 1000 now.
    h_alert_t buy = { .symbol = "LINKUSDT", .action = "buy", .quantity = 10, .price = 100,
                      .order_type = "limit", .limit_price = 90 };
    fks_id_t a2 = h_inject_alert (&s, &buy, NULL, NULL);
    h_wait_alert_status (&a2, "ordered");
}


//  --------------------------------------------------------------------------
//  The circuit breaker

Test (execution, the_breaker_counts_an_order_once_when_its_batch_is_redone,
      .fini = s_teardown, .timeout = 120)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_BREAKER_FAILURES=100",
                                                        "FKS_BREAKER_MIN_REQUESTS=1000",
                                                        NULL } };
    h_stack_start (&s, &o);
    char priced[32], unpriced[32];
    s_symbol_on (0, "BRK", 0, priced);
    s_symbol_on (0, "NOPX", 0, unpriced);
    h_alert_t ok = { .symbol = priced, .action = "buy", .quantity = 1, .price = 10 };
    fks_id_t first = h_inject_alert (&s, &ok, NULL, NULL);
    h_wait_alert_status (&first, "filled");                  /* one outcome: a success */
    //  Three broker refusals and a copy of the first signal in one batch: the copy's order
    //  exists, the batch's insert fails with COMMIT, and the four are handled again alone.
    fks_envelope_hdr_t hdr;
    uint8_t *body;
    size_t len;
    s_signal_envelope (0, &hdr, &body, &len);
    char hold[32];
    s_symbol_on (0, "HOLD", 0, hold);
    s_block (hold);                                     /* a second success */
    fks_id_t bad[3];
    for (int i = 0; i < 3; i++) {
        h_alert_t b = { .symbol = unpriced, .action = "buy", .quantity = 1 };
        bad[i] = h_inject_alert (&s, &b, NULL, NULL);
    }
    s_wait_sql ("SELECT count(*) FROM events WHERE type = 'signal.created'", 5);
    s_publish_copy (&hdr, "signal.created", "signal", body, len);
    free (body);
    s_unblock ();
    for (int i = 0; i < 3; i++)
        h_wait_alert_status (&bad[i], "failed");
    s_wait_sql ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 6);
    cr_assert_geq (h_metric (s.execution_ports[0],
                             "fks_worker_batches_split_total{group=\"execution\"}"), 1,
                   "the batch was taken apart");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 5);

    fks_redis_t *r = s_redis ();
    fks_breaker_t *b = fks_breaker_new (r, "global", NULL);
    fks_breaker_status_t st;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_status (b, fks_now_ms (), &st, &err), 0, "%s", err.msg);
    cr_assert_eq (st.window_failures, 3, "3 refusals recorded as %lld",
                  (long long) st.window_failures);
    cr_assert_eq (st.window_total, 5, "5 orders recorded as %lld",
                  (long long) st.window_total);
    cr_assert_eq (st.consecutive, 3);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}


//  --------------------------------------------------------------------------
//  Sized from the position it locks

//  A signal as the signal worker leaves it. Zero fields are left out of signal.created.
typedef struct {
    const char *symbol;
    const char *side;
    double qty;                     /* the signal worker's estimate */
    bool reduce_only;
    double share;                   /* > 0 (or has_share): position_share */
    bool has_share;
    int decimals;                   /* >= 0: qty_decimals; -1 left out */
    bool has_target;
    double target;
} s_sig_t;

//  Its alert and signal rows (signalled, created) and its signal.created in the outbox, the
//  frame left in *frame to publish when the test wants (h_publish). Returns the alert id.
static fks_id_t
s_sig_stored (const s_sig_t *g, msgpack_sbuffer *frame)
{
    fks_id_t inbox, sig;
    cr_assert_eq (fks_id_new (&inbox), 0);
    cr_assert_eq (fks_id_new (&sig), 0);
    char iid[FKS_ID_STR_SIZE], sid[FKS_ID_STR_SIZE], q[1200];
    fks_id_format (&inbox, iid);
    fks_id_format (&sig, sid);
    h_sql_exec (h_sqlf (q, sizeof q,
        "WITH i AS (INSERT INTO inbox (id, idem_key, source, body, alert, status)"
        "           VALUES ('%s', '%s', 'tradingview', ''::bytea,"
        "                   '{\"symbol\":\"%s\",\"action\":\"%s\"}', 'signalled'))"
        " INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty,"
        "                      quantity_type, order_type, price, params, status)"
        " VALUES ('%s', '%s', '%s', 'tradingview', '%s', '%s', '%s', %.10g,"
        "         '%s', 'market', 10, '{\"reduce_only\":%s}', 'created')",
        iid, iid, g->symbol, g->side, sid, iid, iid, g->symbol, g->side, g->side, g->qty,
        g->share > 0 ? "percent_of_position" : "fixed_quantity",
        g->reduce_only ? "true" : "false"));
    bool share = g->share > 0 || g->has_share;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8 + share + (g->decimals >= 0) + g->has_target);
    fks_pack_kv_id (&pk, "signal_id", &sig);
    fks_pack_kv_id (&pk, "inbox_id", &inbox);
    fks_pack_kv_str (&pk, "symbol", g->symbol);
    fks_pack_kv_str (&pk, "side", g->side);
    fks_pack_kv_f64 (&pk, "qty", g->qty);
    fks_pack_kv_str (&pk, "order_type", "market");
    fks_pack_kv_f64 (&pk, "price", 10);
    fks_pack_kv_bool (&pk, "reduce_only", g->reduce_only);
    if (share)
        fks_pack_kv_f64 (&pk, "position_share", g->share);
    if (g->decimals >= 0)
        fks_pack_kv_i64 (&pk, "qty_decimals", g->decimals);
    if (g->has_target)
        fks_pack_kv_f64 (&pk, "target", g->target);
    h_store_body ("signal.created", "signal", &inbox, &inbox, body.data, body.size, frame);
    msgpack_sbuffer_destroy (&body);
    return inbox;
}

//  Stores and publishes the signal at once.
static fks_id_t
s_sig (const s_sig_t *g)
{
    msgpack_sbuffer frame;
    fks_id_t id = s_sig_stored (g, &frame);
    h_publish (&s, "signal.created", (const uint8_t *) frame.data, frame.size);
    msgpack_sbuffer_destroy (&frame);
    return id;
}

static void
s_assert_position (const char *symbol, const char *qty)
{
    char q[200];
    h_sqlf (q, sizeof q, "SELECT count(*) FROM positions WHERE symbol = '%s' AND qty = %s",
            symbol, qty);
    cr_assert_eq (h_sql_int (q), 1, "%s: position %s, expected %s", symbol,
                  h_sql_text (h_sqlf (q, sizeof q, "SELECT coalesce (max (qty)::text, 'none')"
                                      " FROM positions WHERE symbol = '%s'", symbol)), qty);
}

//  A share of the position (position_share) that reaches execution before the entry it is a
//  share of, with an estimate that is wrong (the signal worker counted what it should not):
//  the partial exit finds nothing to reduce and the add nothing to add to, so each is handed
//  back until the entry, queued behind it, is filled; then each takes its share of the long
//  the entry opened (2), not its estimate (5, 7).
Test (execution, a_share_ahead_of_its_entry_waits_for_it_then_takes_its_share,
      .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    const char *sym[2] = { "HALFUSDT", "MOREUSDT" };
    for (int i = 0; i < 2; i++) {
        h_set_price (&s, sym[i], 10);
        s_sig_t entry = { .symbol = sym[i], .side = "buy", .qty = 2, .decimals = -1 };
        s_sig_t part = { .symbol = sym[i], .side = i == 0 ? "sell" : "buy",
                         .qty = i == 0 ? 5 : 7, .reduce_only = i == 0, .share = 0.5,
                         .decimals = 8 };
        msgpack_sbuffer frame;
        fks_id_t e = s_sig_stored (&entry, &frame);
        fks_id_t p = s_sig (&part);
        usleep (600 * 1000);
        char pid[FKS_ID_STR_SIZE], q[300];
        fks_id_format (&p, pid);
        cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s'"
                                         " AND status = 'signalled'", pid)), 1,
                      "%s: the share was decided before its entry came", sym[i]);
        h_publish (&s, "signal.created", (const uint8_t *) frame.data, frame.size);
        msgpack_sbuffer_destroy (&frame);
        h_wait_alert_status (&e, "filled");
        h_wait_alert_status (&p, "filled");
        cr_assert_eq (h_sql_int (h_sqlf (q, sizeof q, "SELECT count(*) FROM orders WHERE corr ="
                                         " '%s' AND qty = 1", pid)), 1,
                      "%s: half of the long of 2", sym[i]);
    }
    s_assert_position ("HALFUSDT", "1");
    s_assert_position ("MOREUSDT", "3");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 0);
}

//  The share is rounded down to the signal worker's decimals (qty_decimals), and without them
//  kept to 15 significant digits; a share that rounds to nothing is refused with the numbers.
Test (execution, a_share_is_rounded_down_to_the_signal_workers_decimals, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "THIRDUSDT", 10);
    s_sig_t entry = { .symbol = "THIRDUSDT", .side = "buy", .qty = 1, .decimals = -1 };
    h_wait_alert_status ((fks_id_t[]) { s_sig (&entry) }, "filled");
    //  A third of 1 at 4 decimals: 0.3333.
    s_sig_t third = { .symbol = "THIRDUSDT", .side = "sell", .qty = 0.3333, .reduce_only = true,
                      .share = 1.0 / 3, .decimals = 4 };
    h_wait_alert_status ((fks_id_t[]) { s_sig (&third) }, "filled");
    s_assert_position ("THIRDUSDT", "0.6667");
    //  A tenth of 0.6667 without decimals: 0.06667.
    s_sig_t tenth = { .symbol = "THIRDUSDT", .side = "sell", .qty = 0.06, .reduce_only = true,
                      .share = 0.1, .decimals = -1 };
    h_wait_alert_status ((fks_id_t[]) { s_sig (&tenth) }, "filled");
    s_assert_position ("THIRDUSDT", "0.60003");
    //  A thousandth of it at 2 decimals: nothing.
    s_sig_t tiny = { .symbol = "THIRDUSDT", .side = "sell", .qty = 0.01, .reduce_only = true,
                     .share = 0.001, .decimals = 2 };
    fks_id_t t = s_sig (&tiny);
    h_wait_alert_status (&t, "rejected");
    char tid[FKS_ID_STR_SIZE], q[300];
    fks_id_format (&t, tid);
    char *why = h_sql_text (h_sqlf (q, sizeof q, "SELECT reason FROM signals WHERE inbox_id ="
                                    " '%s'", tid));
    cr_assert_str_eq (why, "risk: 0.1 % of the long position of 0.60003 in THIRDUSDT rounds to"
                      " nothing at 2 decimals");
    free (why);
    s_assert_position ("THIRDUSDT", "0.60003");
}

//  A share that is no share (more than all of the position, nothing, not a number) or decimals
//  that are no step are refused as unusable: the signal fails with the reason, nothing is
//  ordered. A signal without the share is ordered as before (the other tests).
Test (execution, an_unusable_share_or_decimals_is_refused, .fini = s_teardown, .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "BADUSDT", 10);
    s_sig_t entry = { .symbol = "BADUSDT", .side = "buy", .qty = 2, .decimals = -1 };
    h_wait_alert_status ((fks_id_t[]) { s_sig (&entry) }, "filled");
    s_sig_t bad[3] = {
        { .symbol = "BADUSDT", .side = "buy", .qty = 1, .share = 1.5, .decimals = 8 },
        { .symbol = "BADUSDT", .side = "buy", .qty = 1, .has_share = true, .share = 0,
          .decimals = 8 },
        { .symbol = "BADUSDT", .side = "buy", .qty = 1, .share = 0.5, .decimals = 13 },
    };
    const char *why[3] = { "position_share", "position_share", "qty_decimals" };
    for (int i = 0; i < 3; i++) {
        fks_id_t a = s_sig (&bad[i]);
        h_wait_alert_status (&a, "failed");
        char id[FKS_ID_STR_SIZE], q[300];
        fks_id_format (&a, id);
        char *reason = h_sql_text (h_sqlf (q, sizeof q, "SELECT reason FROM signals WHERE"
                                           " inbox_id = '%s' AND status = 'failed'", id));
        cr_assert (strstr (reason, "could not be executed") && strstr (reason, why[i]),
                   "%d: %s", i, reason);
        free (reason);
    }
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 1, "the entry's only");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 3);
    s_assert_position ("BADUSDT", "2");
}

//  A target already reached when the signal is ordered is refused (rule target), and nothing
//  else happens: no order with the signal's estimate after the refusal.
Test (execution, a_target_already_reached_is_refused_and_not_ordered, .fini = s_teardown,
      .timeout = 90)
{
    h_stack_opts_t o = { .signal_replicas = 1, .execution_replicas = 1, .redis_db = REDIS_DB,
                         .exec_env = (const char *[]) { "FKS_PAPER_FEE_BPS=0", NULL } };
    h_stack_start (&s, &o);
    h_set_price (&s, "THEREUSDT", 10);
    s_sig_t entry = { .symbol = "THEREUSDT", .side = "buy", .qty = 2, .decimals = -1 };
    h_wait_alert_status ((fks_id_t[]) { s_sig (&entry) }, "filled");
    //  The signal worker saw 1 and would buy 1 to reach 2.
    s_sig_t target = { .symbol = "THEREUSDT", .side = "buy", .qty = 1, .decimals = -1,
                       .has_target = true, .target = 2 };
    fks_id_t t = s_sig (&target);
    h_wait_alert_status (&t, "rejected");
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'execution'", 2,
                              WAIT_MS), 2);
    usleep (300 * 1000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM orders"), 1, "the entry's only: %s",
                  h_sql_text ("SELECT string_agg (side || ' ' || qty || ' ' || status, '; ')"
                              " FROM orders"));
    s_assert_position ("THEREUSDT", "2");
    char tid[FKS_ID_STR_SIZE], q[300];
    fks_id_format (&t, tid);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM signals WHERE inbox_id = '%s' AND status ="
            " 'rejected' AND reason = 'risk: already at the target position 2 in THEREUSDT'",
            tid);
    cr_assert_eq (h_sql_int (q), 1, "%s", h_sql_text (h_sqlf (q, sizeof q, "SELECT status || ' '"
                  " || coalesce (reason, '') FROM signals WHERE inbox_id = '%s'", tid)));
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'risk.rejected'"), 1);
}
