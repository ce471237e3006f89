/*  test_ingest.c - bars into PostgreSQL and Redis, events into the outbox and onto the bus
 *  (workers/data/ingest.c), against the real services (suite integration).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "bus/envelope.h"
#include "workers/data/feed.h"
#include "workers/data/ingest.h"
#include "common/prices.h"

#define MIN  60000LL
#define BASE 1709251200000LL

TestSuite (ingest, .fini = dai_cleanup);

typedef struct {
    fks_pg_t *pg;
    fks_redis_t *redis;
    char symbol[FKS_SYMBOL_MAX];
} s_ctx_t;

static s_ctx_t
s_ctx (void)
{
    s_ctx_t c;
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    c.pg = fks_pg_new (dai_db (), fks_ingest_stmts, fks_ingest_n_stmts, &perr);
    cr_assert (c.pg, "%s", perr.msg);
    c.redis = fks_redis_new (dai_redis_url (), 2000, 2000, &rerr);
    cr_assert (c.redis, "%s", rerr.msg);
    //  A symbol of this test process alone: Redis is shared with other tests.
    snprintf (c.symbol, sizeof c.symbol, "ING%d", (int) getpid ());
    return c;
}

static void
s_ctx_free (s_ctx_t *c)
{
    fks_pg_destroy (&c->pg);
    fks_redis_destroy (&c->redis);
}

static fks_bar_t
s_bar (const char *symbol, int64_t t, double c)
{
    fks_bar_t b;
    memset (&b, 0, sizeof b);
    snprintf (b.symbol, sizeof b.symbol, "%s", symbol);
    strcpy (b.interval, "1m");
    b.open_time = t;
    b.open = c;
    b.high = c + 1;
    b.low = c - 1;
    b.close = c;
    b.volume = 3.25;
    b.closed = true;
    return b;
}

static long
s_count (const char *sql, const char *symbol)
{
    const char *p[1] = { symbol };
    return dai_sql_long (sql, 1, p);
}

static const char *s_rows = "SELECT count(*) FROM bars WHERE symbol = $1";
static const char *s_bar_events = "SELECT count(*) FROM events WHERE type = 'market.bar' AND "
                                  "position ($1 in encode (envelope, 'escape')) > 0";

Test (ingest, bar_is_stored_once_and_reingesting_updates_it)
{
    s_ctx_t c = s_ctx ();
    fks_bars_t bars = { 0 };
    for (int i = 0; i < 3; i++) {
        fks_bar_t b = s_bar (c.symbol, BASE + i * MIN, 100 + i);
        fks_bars_push (&bars, &b);
    }
    fks_ingest_stats_t st = { 0 };
    fks_pg_err_t err;
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &bars, NULL, 0, BASE, &st, &err), 0,
                  "%s", err.msg);
    cr_assert_eq (st.stored, 3);
    cr_assert_eq (st.events, 3);
    cr_assert_eq (s_count (s_rows, c.symbol), 3);
    cr_assert_eq (s_count (s_bar_events, c.symbol), 3);
    cr_assert_float_eq (dai_sql_double ("SELECT close FROM bars WHERE open_time = "
                                        "'2024-03-01 00:02:00+00'", 0, NULL), 102, 1e-12);
    cr_assert_eq (dai_sql_long ("SELECT count(*) FROM bars WHERE source = 'binance' AND "
                                "volume = 3.25 AND interval = '1m'", 0, NULL), 3);

    //  The same bars again: nothing changes, nothing is announced.
    memset (&st, 0, sizeof st);
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &bars, NULL, 0, BASE, &st, &err), 0);
    cr_assert_eq (st.stored, 0);
    cr_assert_eq (st.unchanged, 3);
    cr_assert_eq (st.events, 0);
    cr_assert_eq (s_count (s_rows, c.symbol), 3);
    cr_assert_eq (s_count (s_bar_events, c.symbol), 3);

    //  The last bar with a new close: updated in place, one market.bar.
    bars.v[2].close = 102.5;
    bars.v[2].high = 103.5;
    memset (&st, 0, sizeof st);
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &bars, NULL, 0, BASE, &st, &err), 0);
    cr_assert_eq (st.stored, 1);
    cr_assert_eq (st.unchanged, 2);
    cr_assert_eq (s_count (s_rows, c.symbol), 3);
    cr_assert_eq (s_count (s_bar_events, c.symbol), 4);
    cr_assert_float_eq (dai_sql_double ("SELECT close FROM bars WHERE open_time = "
                                        "'2024-03-01 00:02:00+00'", 0, NULL), 102.5, 1e-12);
    fks_bars_free (&bars);
    s_ctx_free (&c);
}

Test (ingest, same_bar_twice_in_one_batch_keeps_the_last)
{
    s_ctx_t c = s_ctx ();
    fks_bars_t bars = { 0 };
    fks_bar_t a = s_bar (c.symbol, BASE, 100), b = s_bar (c.symbol, BASE, 101);
    fks_bars_push (&bars, &a);
    fks_bars_push (&bars, &b);
    fks_ingest_stats_t st = { 0 };
    fks_pg_err_t err;
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "replay", &bars, NULL, 0, BASE, &st, &err), 0,
                  "%s", err.msg);
    cr_assert_eq (st.stored, 1);
    cr_assert_eq (s_count (s_rows, c.symbol), 1);
    cr_assert_float_eq (dai_sql_double ("SELECT close FROM bars", 0, NULL), 101, 1e-12);
    fks_bars_free (&bars);
    s_ctx_free (&c);
}

//  Decodes the data.quality events in the outbox, oldest first.
static size_t
s_quality_events (fks_envelope_t **out, size_t cap)
{
    PGresult *r = PQexec (dai_pg (), "SELECT envelope FROM events WHERE type = 'data.quality' "
                                     "ORDER BY seq");
    cr_assert_eq (PQresultStatus (r), PGRES_TUPLES_OK);
    size_t n = 0;
    for (int i = 0; i < PQntuples (r) && n < cap; i++) {
        size_t len;
        unsigned char *raw = PQunescapeBytea ((unsigned char *) PQgetvalue (r, i, 0), &len);
        fks_envelope_err_t err;
        out[n] = fks_envelope_decode (raw, len, &err);
        cr_assert (out[n], "%s", err.msg);
        PQfreemem (raw);
        n++;
    }
    PQclear (r);
    return n;
}

Test (ingest, bad_values_never_reach_the_table_and_findings_are_events)
{
    //  The ETHUSDT recording through a feed: minutes 5 and 6 missing, minute 9 impossible.
    s_ctx_t c = s_ctx ();
    fks_http_global_init ();
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t fc = { .raw_symbol = "ETHUSDT", .symbol = c.symbol, .interval = "1m",
                          .every_ms = 1000, .lookback = 500, .batch = 500 };
    fks_quality_cfg_defaults (&fc.quality);
    char why[256];
    int64_t now = BASE + 12 * MIN;
    fks_feed_t *f = fks_feed_new (a, &fc, now, why, sizeof why);
    cr_assert (f, "%s", why);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t fe;
    cr_assert_eq (fks_feed_poll (f, now, &out, &fe), FKS_FEED_POLLED, "%s", fe.msg);
    fks_ingest_stats_t st = { 0 };
    fks_pg_err_t err;
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &out.bars, out.findings,
                              out.n_findings, now, &st, &err), 0, "%s", err.msg);
    cr_assert_eq (s_count (s_rows, c.symbol), 9);
    cr_assert_eq (dai_sql_long ("SELECT count(*) FROM bars WHERE open_time = "
                                "'2024-03-01 00:09:00+00'", 0, NULL), 0,
                  "the bar with its high below its low is not stored");
    fks_envelope_t *ev[8];
    size_t n = s_quality_events (ev, 8);
    cr_assert_eq (n, 3);
    char kind[32], detail[1100], sym[40], iv[16];
    double value, threshold;
    const char *kinds[3] = { "gap", "bad_value", "gap" };
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq (fks_envelope_get_str (ev[i], "kind", kind, sizeof kind), 0);
        cr_assert_str_eq (kind, kinds[i]);
        cr_assert_eq (fks_envelope_get_str (ev[i], "symbol", sym, sizeof sym), 0);
        cr_assert_str_eq (sym, c.symbol);
        cr_assert_eq (fks_envelope_get_str (ev[i], "interval", iv, sizeof iv), 0);
        cr_assert_str_eq (iv, "1m");
        cr_assert_eq (fks_envelope_get_str (ev[i], "detail", detail, sizeof detail), 0);
        cr_assert_str_eq (fks_envelope_hdr (ev[i])->src, "data");
    }
    cr_assert_eq (fks_envelope_get_f64 (ev[0], "value", &value), 0);
    cr_assert_float_eq (value, 2, 1e-12, "two bars missing");
    cr_assert_eq (fks_envelope_get_f64 (ev[0], "threshold", &threshold), 0);
    cr_assert_float_eq (threshold, 1, 1e-12);
    fks_envelope_get_str (ev[1], "detail", detail, sizeof detail);
    cr_assert (strstr (detail, "is below low"), "%s", detail);
    for (size_t i = 0; i < n; i++)
        fks_envelope_destroy (&ev[i]);

    //  The same poll stored again (a restart over the lookback): no gap is reported twice.
    memset (&st, 0, sizeof st);
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &out.bars, out.findings,
                              out.n_findings, now, &st, &err), 0, "%s", err.msg);
    cr_assert_eq (st.repeated, 2);
    n = s_quality_events (ev, 8);
    cr_assert_eq (n, 4, "only the bad value again: it is never stored, so never 'seen'");
    for (size_t i = 0; i < n; i++)
        fks_envelope_destroy (&ev[i]);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
    s_ctx_free (&c);
}

Test (ingest, failure_commits_nothing)
{
    s_ctx_t c = s_ctx ();
    fks_bars_t bars = { 0 };
    fks_bar_t good = s_bar (c.symbol, BASE, 100), bad = s_bar (c.symbol, BASE + MIN, 100);
    strcpy (bad.interval, "1x");            //  refused by the bars table's check
    fks_bars_push (&bars, &good);
    fks_bars_push (&bars, &bad);
    fks_quality_finding_t f = { .kind = FKS_QUALITY_STALE, .has_value = true, .value = 5 };
    snprintf (f.symbol, sizeof f.symbol, "%s", c.symbol);
    strcpy (f.interval, "1m");
    strcpy (f.detail, "stale");
    fks_ingest_stats_t st = { 0 };
    fks_pg_err_t err;
    cr_assert_eq (fks_ingest (c.pg, c.redis, NULL, "binance", &bars, &f, 1, BASE, &st, &err),
                  -1);
    cr_assert_str_eq (err.sqlstate, "23514", "a check violation: %s", err.msg);
    cr_assert_eq (s_count (s_rows, c.symbol), 0);
    cr_assert_eq (dai_sql_long ("SELECT count(*) FROM events", 0, NULL), 0);
    cr_assert_eq (st.stored + st.events + st.prices, 0);
    //  The connection is usable afterwards.
    bars.n = 1;
    cr_assert_eq (fks_ingest (c.pg, NULL, NULL, "binance", &bars, &f, 1, BASE, &st, &err), 0,
                  "%s", err.msg);
    cr_assert_eq (dai_sql_long ("SELECT count(*) FROM events", 0, NULL), 2);
    fks_bars_free (&bars);
    s_ctx_free (&c);
}

Test (ingest, latest_price_goes_to_redis_and_never_backwards)
{
    s_ctx_t c = s_ctx ();
    fks_bars_t bars = { 0 };
    fks_bar_t a = s_bar (c.symbol, BASE, 100), b = s_bar (c.symbol, BASE + MIN, 105);
    b.closed = false;                       //  forming: its price is as of now
    fks_bars_push (&bars, &b);
    fks_bars_push (&bars, &a);
    fks_ingest_stats_t st = { 0 };
    fks_pg_err_t err;
    int64_t now = BASE + MIN + 20000;
    cr_assert_eq (fks_ingest (c.pg, c.redis, NULL, "binance", &bars, NULL, 0, now, &st, &err),
                  0, "%s", err.msg);
    cr_assert_eq (st.prices, 1, "one price per symbol: the newest bar's close");
    double price;
    int64_t ts;
    fks_redis_err_t rerr;
    cr_assert_eq (fks_price_get (c.redis, c.symbol, &price, &ts, &rerr), 0);
    cr_assert_float_eq (price, 105, 1e-12);
    cr_assert_eq (ts, now);
    //  An older bar, replayed later, does not move the price back.
    fks_bars_clear (&bars);
    fks_bar_t old = s_bar (c.symbol, BASE - 10 * MIN, 90);
    fks_bars_push (&bars, &old);
    cr_assert_eq (fks_ingest (c.pg, c.redis, NULL, "replay", &bars, NULL, 0, now + 5000, &st,
                              &err), 0);
    cr_assert_eq (fks_price_get (c.redis, c.symbol, &price, &ts, &rerr), 0);
    cr_assert_float_eq (price, 105, 1e-12);
    char *raw = dai_redis ("HGET fks:price:%s price", c.symbol);
    cr_assert (raw && strtod (raw, NULL) == 105, "%s", raw ? raw : "(nil)");
    free (raw);
    free (dai_redis ("DEL fks:price:%s", c.symbol));
    fks_bars_free (&bars);
    s_ctx_free (&c);
}

//  The execution worker reads a batch's prices in one call: known, unknown and unusable
//  prices each come back as such, in the order asked.
Test (ingest, many_prices_are_read_in_one_call_each_as_stored)
{
    s_ctx_t c = s_ctx ();
    char sym[4][sizeof c.symbol + 2];
    for (int i = 0; i < 4; i++)
        snprintf (sym[i], sizeof sym[i], "%s%c", c.symbol, 'A' + i);
    fks_redis_err_t rerr;
    cr_assert_eq (fks_price_set (c.redis, sym[0], 101.5, 1000, &rerr), 0, "%s", rerr.msg);
    cr_assert_eq (fks_price_set (c.redis, sym[2], 0.25, 1000, &rerr), 0, "%s", rerr.msg);
    free (dai_redis ("HSET fks:price:%s price garbage ts 1", sym[3]));
    const char *names[5] = { sym[0], sym[1], sym[2], sym[3], sym[0] };
    double prices[5];
    int64_t ts[5];
    bool found[5];
    cr_assert_eq (fks_price_get_many (c.redis, names, 5, prices, ts, found, &rerr), 0, "%s",
                  rerr.msg);
    cr_assert (ts[0] == 1000 && ts[2] == 1000 && ts[4] == 1000 && ts[1] == 0 && ts[3] == 0);
    cr_assert (found[0] && found[2] && found[4]);
    cr_assert_not (found[1], "never stored");
    cr_assert_not (found[3], "not a number");
    cr_assert_float_eq (prices[0], 101.5, 1e-12);
    cr_assert_float_eq (prices[2], 0.25, 1e-12);
    cr_assert_float_eq (prices[4], 101.5, 1e-12);
    cr_assert_eq (prices[1], 0);
    cr_assert_eq (prices[3], 0);
    //  Bounds: nothing asked is nothing done; a bad symbol or too many is an error.
    cr_assert_eq (fks_price_get_many (c.redis, names, 0, prices, NULL, found, &rerr), 0);
    const char *bad[2] = { sym[0], "" };
    cr_assert_eq (fks_price_get_many (c.redis, bad, 2, prices, NULL, found, &rerr), -1);
    cr_assert_eq (fks_price_get_many (c.redis, names, FKS_PRICE_MANY_MAX + 1, prices, NULL, found,
                                      &rerr), -1);
    for (int i = 0; i < 4; i++)
        free (dai_redis ("DEL fks:price:%s", sym[i]));
    s_ctx_free (&c);
}

Test (ingest, market_bar_is_published_on_the_event_stream)
{
    s_ctx_t c = s_ctx ();
    fks_bus_client_opts_t opts = { .url = dai_start_bus (), .name = "test" };
    fks_bus_client_t *bus = fks_bus_client_new (&opts);
    cr_assert (bus);
    void *zctx = zmq_ctx_new ();
    void *sub = zmq_socket (zctx, ZMQ_SUB);
    cr_assert_eq (zmq_connect (sub, dai_bus_stream_url ()), 0);
    cr_assert_eq (zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "market.bar", 10), 0);
    int timeout = 250;
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    //  A subscription takes a moment to reach the broker: store a changed bar until one
    //  arrives (each attempt is a new close, so each one is published).
    fks_envelope_t *got = NULL;
    for (int attempt = 0; attempt < 40 && !got; attempt++) {
        fks_bars_t bars = { 0 };
        fks_bar_t b = s_bar (c.symbol, BASE, 100 + attempt);
        fks_bars_push (&bars, &b);
        fks_ingest_stats_t st = { 0 };
        fks_pg_err_t err;
        cr_assert_eq (fks_ingest (c.pg, NULL, bus, "binance", &bars, NULL, 0, BASE, &st, &err),
                      0, "%s", err.msg);
        fks_bars_free (&bars);
        char topic[64];
        uint8_t frame[4096];
        int tn = zmq_recv (sub, topic, sizeof topic, 0);
        if (tn <= 0)
            continue;
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt (sub, ZMQ_RCVMORE, &more, &ml);
        cr_assert (more);
        int fn = zmq_recv (sub, frame, sizeof frame, 0);
        cr_assert_gt (fn, 0);
        fks_envelope_err_t eerr;
        got = fks_envelope_decode (frame, (size_t) fn, &eerr);
        cr_assert (got, "%s", eerr.msg);
    }
    cr_assert (got, "no market.bar reached the event stream");
    char sym[40], src[40];
    cr_assert_str_eq (fks_envelope_hdr (got)->type, "market.bar");
    cr_assert (fks_id_is_nil (&fks_envelope_hdr (got)->corr), "a bar concerns no alert");
    fks_envelope_get_str (got, "symbol", sym, sizeof sym);
    fks_envelope_get_str (got, "source", src, sizeof src);
    cr_assert_str_eq (sym, c.symbol);
    cr_assert_str_eq (src, "binance");
    int64_t t;
    cr_assert_eq (fks_envelope_get_i64 (got, "open_time", &t), 0);
    cr_assert_eq (t, BASE);
    fks_envelope_destroy (&got);
    zmq_close (sub);
    zmq_ctx_term (zctx);
    fks_bus_client_destroy (&bus);
    s_ctx_free (&c);
}
