/*  test_data_it.c - the fks-data program as an operator runs it: a replay of the shipped
 *  sample, live feeds from the fake Binance and Yahoo (with a 429 on the way), a stale feed,
 *  and configuration mistakes (suite integration).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "bus/envelope.h"
#include "workers/ai/model.h"
#include "workers/data/adapter.h"

TestSuite (data_it, .fini = dai_cleanup);

typedef struct {
    int port;
    char log[128];
    char env[10][1200];
    const char *envp[11];
    int n;
} s_run_t;

static void
s_env (s_run_t *r, const char *fmt, const char *value)
{
    cr_assert_lt (r->n, 10);
    snprintf (r->env[r->n], sizeof r->env[r->n], fmt, value);
    r->envp[r->n] = r->env[r->n];
    r->n++;
    r->envp[r->n] = NULL;
}

//  The usual environment for fks-data on the current database.
static void
s_run_init (s_run_t *r, const char *db, const char *feeds)
{
    memset (r, 0, sizeof *r);
    r->port = dai_free_port ();
    snprintf (r->log, sizeof r->log, "/tmp/fks-dai-data-%d.log", (int) getpid ());
    char port[16], bus[64];
    snprintf (port, sizeof port, "%d", r->port);
    snprintf (bus, sizeof bus, "tcp://127.0.0.1:%d", dai_free_port ());   //  no broker there
    s_env (r, "FKS_PG_URL=%s", db);
    s_env (r, "FKS_REDIS_URL=%s", dai_redis_url ());
    s_env (r, "FKS_DATA_PORT=%s", port);
    s_env (r, "FKS_BUS_URL=%s", bus);
    s_env (r, "FKS_DATA_FEEDS=%s", feeds);
}

//  fks-data replaying the sample (5,550 daily bars) as a symbol of its own: prefix + pid.
static void
s_replay_init (s_run_t *r, const char *db, const char *prefix, char symbol[32])
{
    char feeds[512];
    snprintf (symbol, 32, "%s%d", prefix, (int) getpid ());
    snprintf (feeds, sizeof feeds, "replay %s %s 1d calendar=weekdays",
              dai_source ("tools/data/ttrc_ohlcv.csv"), symbol);
    s_run_init (r, db, feeds);
}

static long
s_rows (const char *symbol)
{
    const char *p[1] = { symbol };
    return dai_sql_long ("SELECT count(*) FROM bars WHERE symbol = $1", 1, p);
}

//  The data.quality events of symbol: how many, and how many of kind.
static long
s_quality (const char *symbol, const char *kind)
{
    PGresult *r = PQexec (dai_pg (), "SELECT envelope FROM events WHERE type = 'data.quality'");
    long n = 0;
    for (int i = 0; i < PQntuples (r); i++) {
        size_t len;
        unsigned char *raw = PQunescapeBytea ((unsigned char *) PQgetvalue (r, i, 0), &len);
        fks_envelope_t *env = fks_envelope_decode (raw, len, NULL);
        PQfreemem (raw);
        cr_assert (env);
        char s[40], k[32];
        fks_envelope_get_str (env, "symbol", s, sizeof s);
        fks_envelope_get_str (env, "kind", k, sizeof k);
        if (!strcmp (s, symbol) && (!kind || !strcmp (k, kind)))
            n++;
        fks_envelope_destroy (&env);
    }
    PQclear (r);
    return n;
}

static long
s_bar_events (void)
{
    return dai_sql_long ("SELECT count(*) FROM events WHERE type = 'market.bar'", 0, NULL);
}

//  market.bar events whose envelope names one of these symbols (they are unique to a test, so
//  another test's feed cannot move the count).
static long
s_bar_events_of (const char *const syms[4])
{
    char sql[400];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM events WHERE type = 'market.bar' AND ("
              "position (convert_to ('%s', 'UTF8') in envelope) > 0 OR "
              "position (convert_to ('%s', 'UTF8') in envelope) > 0 OR "
              "position (convert_to ('%s', 'UTF8') in envelope) > 0 OR "
              "position (convert_to ('%s', 'UTF8') in envelope) > 0)",
              syms[0], syms[1], syms[2], syms[3]);
    return dai_sql_long (sql, 0, NULL);
}

static double
s_metric_wait (int port, const char *series, double want, int timeout_ms)
{
    double v = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        v = dai_metric (port, series);
        if (v >= want)
            break;
        usleep (100000);
    }
    return v;
}

Test (data_it, replay_of_the_sample_lands_every_bar_once)
{
    const char *db = dai_db ();
    char symbol[32];
    s_run_t r;
    s_replay_init (&r, db, "TTRCD", symbol);
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    char url[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/ready", r.port);
    cr_assert_eq (dai_http ("GET", url, NULL, NULL), 200, "ready with PostgreSQL and Redis");

    char sql[160];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM bars WHERE symbol = '%s'", symbol);
    cr_assert_eq (dai_wait_count (sql, 5550, 60000), 5550, "log: %s", r.log);
    cr_assert_eq (s_bar_events (), 5550);
    long gaps = s_quality (symbol, "gap");
    cr_assert_gt (gaps, 100, "holidays are gaps in a weekday series");
    cr_assert_eq (s_quality (symbol, NULL), gaps, "nothing but gaps in the sample");
    cr_assert_float_eq (s_metric_wait (r.port, "fks_data_bars_total{source=\"replay\","
                                       "result=\"stored\"}", 5550, 10000), 5550, 1e-9);
    cr_assert_float_eq (dai_metric (r.port, "fks_data_quality_total{kind=\"gap\"}"),
                        (double) gaps, 1e-9);
    //  The last bar, 2006-12-29, closed at 51.95: the latest price, as of its close.
    char *price = dai_redis ("HGET fks:price:%s price", symbol);
    char *ts = dai_redis ("HGET fks:price:%s ts", symbol);
    cr_assert (price && ts);
    cr_assert_float_eq (strtod (price, NULL), 51.95, 1e-9);
    cr_assert_str_eq (ts, "1167436800000");
    free (price);
    free (ts);
    cr_assert_eq (dai_stop (pid), 0, "SIGTERM: a clean stop");

    //  The same replay again: every bar is already there, nothing is stored or announced.
    pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    cr_assert_float_eq (s_metric_wait (r.port, "fks_data_bars_total{source=\"replay\","
                                       "result=\"unchanged\"}", 5550, 60000), 5550, 1e-9);
    cr_assert_eq (s_rows (symbol), 5550);
    cr_assert_eq (s_bar_events (), 5550);
    cr_assert_eq (s_quality (symbol, NULL), gaps, "gaps already reported are not repeated");
    cr_assert_eq (dai_stop (pid), 0);
    free (dai_redis ("DEL fks:price:%s", symbol));
    char *log = dai_slurp (r.log);
    cr_assert (strstr (log, "replay finished: 5550 bars read, 0 stored, 5550 unchanged"), "%s",
               r.log);
    free (log);
}

//  A store that waits on a lock held elsewhere longer than FKS_PG_STATEMENT_TIMEOUT_MS is
//  cancelled, rolled back and tried again once the lock is gone: every bar lands once.
Test (data_it, a_store_waiting_on_a_lock_is_cancelled_and_tried_again)
{
    const char *db = dai_db ();
    PGconn *holder = PQconnectdb (db);
    cr_assert_eq (PQstatus (holder), CONNECTION_OK, "%s", PQerrorMessage (holder));
    PGresult *res = PQexec (holder, "BEGIN; LOCK TABLE bars IN SHARE MODE");    //  no writes
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s", PQerrorMessage (holder));
    PQclear (res);

    char symbol[32];
    s_run_t r;
    s_replay_init (&r, db, "TTRCL", symbol);
    s_env (&r, "FKS_PG_STATEMENT_TIMEOUT_MS=%s", "300");
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    char *log = NULL;
    for (int waited = 0; waited < 20000; waited += 100) {
        free (log);
        log = dai_slurp (r.log);
        if (log && strstr (log, "SQLSTATE 57014"))
            break;
        usleep (100000);
    }
    cr_assert (log && strstr (log, "bars not stored, trying again in")
               && strstr (log, "SQLSTATE 57014"), "a cancelled store, logged: %s", log);
    free (log);
    cr_assert_eq (s_rows (symbol), 0, "nothing stored while the table is locked");

    res = PQexec (holder, "COMMIT");
    PQclear (res);
    PQfinish (holder);
    char sql[160];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM bars WHERE symbol = '%s'", symbol);
    cr_assert_eq (dai_wait_count (sql, 5550, 60000), 5550, "log: %s", r.log);
    cr_assert_gt (dai_metric (r.port, "fks_data_store_failures_total"), 0);
    cr_assert_eq (dai_stop (pid), 0);
    cr_assert_eq (s_rows (symbol), 5550, "every bar once");
    free (dai_redis ("DEL fks:price:%s", symbol));
}

Test (data_it, live_feeds_from_binance_and_yahoo_with_a_429_on_the_way)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (true);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":429,"
                     "\"headers\":{\"Retry-After\":\"1\"},"
                     "\"fixture\":\"binance_error_rate_limited.json\"}]");
    int p = (int) getpid ();
    char b[32], e[32], a[32], m[32], feeds[512];
    snprintf (b, sizeof b, "DAIB%d", p);
    snprintf (e, sizeof e, "DAIE%d", p);
    snprintf (a, sizeof a, "DAIA%d", p);
    snprintf (m, sizeof m, "DAIM%d", p);
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s,ETHUSDT=%s 1m every=1s; "
              "yahoo AAPL=%s,MSFT=%s 1d every=1s", b, e, a, m);
    s_run_t r;
    s_run_init (&r, db, feeds);
    s_env (&r, "FKS_BINANCE_URL=%s", market);
    s_env (&r, "FKS_YAHOO_URL=%s", market);
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    char sql[200];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM bars WHERE symbol IN ('%s', '%s', '%s', "
              "'%s')", b, e, a, m);
    cr_assert_eq (dai_wait_count (sql, 12 + 9 + 10 + 8, 30000), 12 + 9 + 10 + 8, "log: %s",
                  r.log);
    cr_assert_eq (s_rows (b), 12);
    cr_assert_eq (s_rows (e), 9, "ETHUSDT: 10 recorded, one with its high below its low");
    cr_assert_eq (s_rows (a), 10);
    cr_assert_eq (s_rows (m), 8, "MSFT: one day without a trade, one without an open");
    cr_assert_eq (s_quality (e, "gap"), 2);
    cr_assert_eq (s_quality (e, "bad_value"), 1);
    cr_assert_eq (s_quality (m, "bad_value"), 1);
    cr_assert_eq (s_quality (m, "gap"), 2);
    cr_assert_eq (s_quality (a, NULL), 0, "AAPL: a clean fortnight, weekends are no gap");
    cr_assert_eq (s_quality (b, NULL), 0);
    cr_assert_float_eq (dai_metric (r.port, "fks_data_fetch_total{source=\"binance\","
                                    "result=\"rate_limited\"}"), 1, 1e-9);
    //  More polls come (every second) and find nothing new: no second event for any bar.
    const char *const syms[4] = { b, e, a, m };
    long events = s_bar_events_of (syms);
    cr_assert_eq (events, 12 + 9 + 10 + 8);
    double polls = dai_metric (r.port, "fks_data_fetch_total{source=\"binance\",result=\"ok\"}");
    s_metric_wait (r.port, "fks_data_fetch_total{source=\"binance\",result=\"ok\"}",
                   polls + 4, 10000);
    cr_assert_eq (s_bar_events_of (syms), events, "unchanged bars are not announced again");
    cr_assert_eq (s_rows (b), 12);
    //  The latest price of each symbol is its newest close.
    char *price = dai_redis ("HGET fks:price:%s price", b);
    cr_assert (price);
    const char *pb[1] = { b };
    double newest = dai_sql_double ("SELECT close FROM bars WHERE symbol = $1 "
                                    "ORDER BY open_time DESC LIMIT 1", 1, pb);
    cr_assert_float_eq (strtod (price, NULL), newest, 1e-9);
    free (price);
    cr_assert_eq (dai_stop (pid), 0);
    cr_assert_null (dai_redis ("GET fks:data:lease:binance:%s:1m", b),
                    "a stopped replica gives its leases back");
    const char *keys[] = { b, e, a, m };
    for (int i = 0; i < 4; i++)
        free (dai_redis ("DEL fks:price:%s", keys[i]));
}

//  Binance and Yahoo count requests by address: after a 429 no feed of that source may ask
//  before the Retry-After, or every symbol sends its own request into the limit (and repeated
//  429s become a 418 ban).
Test (data_it, rate_limit_holds_every_feed_of_the_source)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (true);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":429,"
                     "\"headers\":{\"Retry-After\":\"3600\"},"
                     "\"fixture\":\"binance_error_rate_limited.json\"}]");
    int p = (int) getpid ();
    char b[32], e[32], feeds[256];
    snprintf (b, sizeof b, "DAIRB%d", p);
    snprintf (e, sizeof e, "DAIRE%d", p);
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s,ETHUSDT=%s 1m every=1s", b, e);
    s_run_t r;
    s_run_init (&r, db, feeds);
    s_env (&r, "FKS_BINANCE_URL=%s", market);
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    cr_assert_float_eq (s_metric_wait (r.port, "fks_data_fetch_total{source=\"binance\","
                                       "result=\"rate_limited\"}", 1, 30000), 1, 1e-9,
                        "log: %s", r.log);
    //  Passes of the loop go by (a second each at most, the feeds are due every second):
    //  no other request reaches the limited source, whichever feed met the 429.
    for (int i = 0; i < 30; i++) {
        char *seen = dai_fake_requests ();
        int klines = 0;
        for (const char *q = seen; (q = strstr (q, "/api/v3/klines")); q++)
            klines++;
        cr_assert_eq (klines, 1, "a request after the 429 and its Retry-After of an hour "
                      "(pass %d): %s", i, seen);
        free (seen);
        usleep (100000);
    }
    cr_assert_eq (s_rows (b) + s_rows (e), 0);
    char *log = dai_slurp (r.log);
    cr_assert (strstr (log, "(and 1 other binance feed: the limit is the address's)"), "%s",
               log);
    free (log);
    cr_assert_eq (dai_stop (pid), 0);
}

Test (data_it, feed_without_bars_goes_stale)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (false);   //  recorded in 2024: nothing recent
    char sym[32], feeds[256];
    snprintf (sym, sizeof sym, "DAIS%d", (int) getpid ());
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s 1m every=1s", sym);
    s_run_t r;
    s_run_init (&r, db, feeds);
    s_env (&r, "FKS_BINANCE_URL=%s", market);
    s_env (&r, "FKS_DATA_STALE_FACTOR=%s", "0.05");         //  3 s for minute bars
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    long n = 0;
    for (int waited = 0; waited < 20000 && n == 0; waited += 200) {
        n = s_quality (sym, "stale");
        usleep (200000);
    }
    cr_assert_eq (n, 1, "one stale finding (log: %s)", r.log);
    cr_assert_eq (s_rows (sym), 0);
    usleep (1500000);
    cr_assert_eq (s_quality (sym, "stale"), 1, "reported once per episode");
    cr_assert_eq (dai_stop (pid), 0);
}

//  Live feeds restarted after more than their lookback (3 minutes): the feed continues from
//  the newest stored bar, so the hole is fetched (HOLE: stored up to minute 3, 8 minutes
//  back); where that bar is older than FKS_DATA_CATCHUP (GAP: 30 minutes before the recorded
//  ones, catch-up 15), the hole is reported as a gap. Both once asked for the lookback only:
//  minutes left out, nothing reported.
Test (data_it, restarted_live_feed_fetches_its_hole_or_reports_it)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (true);
    //  The recorded minutes as the fake market serves them now (moved to the current minute).
    fks_http_global_init ();
    fks_adapter_t *a = fks_adapter_binance_new (market, NULL);
    fks_fetch_req_t req = { .raw_symbol = "BTCUSDT", .symbol = "X", .interval = "1m",
                            .start_ms = 0, .end_ms = INT64_MAX / 2, .limit = 500,
                            .now_ms = fks_now_ms () };
    fks_bars_t rec = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_adapter_fetch (a, &req, &rec, &e), 0, "%s", e.msg);
    fks_adapter_destroy (&a);
    cr_assert_eq (rec.n, 12);
    char hole[32], gap[32], feeds[256], sql[400];
    snprintf (hole, sizeof hole, "DAIH%d", (int) getpid ());
    snprintf (gap, sizeof gap, "DAIG%d", (int) getpid ());
    const char *ins = "INSERT INTO bars (symbol, interval, open_time, open, high, low, close,"
                      " volume, source) VALUES ('%s', '1m', timestamptz 'epoch' + %lld *"
                      " interval '1 millisecond', %.10g, %.10g, %.10g, %.10g, %.10g, 'binance')";
    const fks_bar_t *b = &rec.v[3];
    snprintf (sql, sizeof sql, ins, hole, (long long) b->open_time, b->open, b->high, b->low,
              b->close, b->volume);
    dai_sql_exec (sql);
    b = &rec.v[0];
    snprintf (sql, sizeof sql, ins, gap, (long long) (b->open_time - 30 * 60000), b->open,
              b->open, b->open, b->open, 1.0);
    dai_sql_exec (sql);
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s,BTCUSDT=%s 1m every=10s lookback=3",
              hole, gap);
    s_run_t r;
    s_run_init (&r, db, feeds);
    s_env (&r, "FKS_BINANCE_URL=%s", market);
    s_env (&r, "FKS_DATA_CATCHUP=%s", "15");
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    snprintf (sql, sizeof sql, "SELECT count(*) FROM bars WHERE symbol IN ('%s', '%s')", hole,
              gap);
    cr_assert_eq (dai_wait_count (sql, 9 + 13, 10000), 9 + 13, "log: %s", r.log);
    cr_assert_eq (s_rows (hole), 9, "minutes 3 to 11: none left out");
    cr_assert_eq (s_quality (hole, NULL), 0, "nothing missing, nothing reported");
    cr_assert_eq (s_rows (gap), 13, "the old bar and the 12 the catch-up reaches");
    cr_assert_eq (s_quality (gap, "gap"), 1, "the 29 minutes before them");
    cr_assert_eq (dai_stop (pid), 0);
    char *log = dai_slurp (r.log);
    cr_assert (strstr (log, "continuing from the newest stored bar"), "%s", r.log);
    cr_assert (strstr (log, "29 1m bars missing between"), "%s", r.log);
    free (log);
    free (dai_redis ("DEL fks:price:%s", hole));
    free (dai_redis ("DEL fks:price:%s", gap));
    fks_bars_free (&rec);
}

//  A stale episode yields one finding: if storing it fails (a lock held on the outbox past
//  the statement timeout), it is stored once PostgreSQL takes it again, not lost.
Test (data_it, stale_finding_whose_store_failed_is_stored_later)
{
    const char *db = dai_db ();
    PGconn *holder = PQconnectdb (db);
    cr_assert_eq (PQstatus (holder), CONNECTION_OK, "%s", PQerrorMessage (holder));
    PGresult *res = PQexec (holder, "BEGIN; LOCK TABLE events IN SHARE MODE");    //  no writes
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s", PQerrorMessage (holder));
    PQclear (res);
    const char *market = dai_fake_market (false);   //  recorded in 2024: nothing recent
    char sym[32], feeds[256];
    snprintf (sym, sizeof sym, "DAIT%d", (int) getpid ());
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s 1m every=1s", sym);
    s_run_t r;
    s_run_init (&r, db, feeds);
    s_env (&r, "FKS_BINANCE_URL=%s", market);
    s_env (&r, "FKS_DATA_STALE_FACTOR=%s", "0.02");         //  1.2 s for minute bars
    s_env (&r, "FKS_PG_STATEMENT_TIMEOUT_MS=%s", "300");
    pid_t pid = dai_start ("workers/fks-data", r.envp, r.port, r.log);
    char *log = NULL;
    for (int waited = 0; waited < 10000; waited += 100) {
        free (log);
        log = dai_slurp (r.log);
        if (strstr (log, "1 data-quality findings not stored, trying again in"))
            break;
        usleep (100000);
    }
    cr_assert (strstr (log, "1 data-quality findings not stored, trying again in"),
               "the stale finding's store failed: %s", r.log);
    free (log);
    res = PQexec (holder, "COMMIT");
    PQclear (res);
    PQfinish (holder);
    const char *kind = "SELECT count(*) FROM events WHERE type = 'data.quality'";
    cr_assert_eq (dai_wait_count (kind, 1, 10000), 1, "stored once the lock is gone (log: %s)",
                  r.log);
    cr_assert_eq (s_quality (sym, "stale"), 1);
    cr_assert_float_eq (s_metric_wait (r.port, "fks_data_quality_total{kind=\"stale\"}", 1,
                                       5000), 1, 1e-9);
    cr_assert_eq (dai_stop (pid), 0);
    cr_assert_eq (s_quality (sym, "stale"), 1, "and only once");
}

//  Starts fks-data with feeds and expects it to stop at once with status 2 and needle in
//  its log.
static void
s_refused (const char *db, const char *feeds, const char *needle)
{
    s_run_t r;
    s_run_init (&r, db, feeds);
    r.port = 0;
    pid_t pid = dai_start ("workers/fks-data", r.envp, 0, r.log);
    cr_assert_eq (dai_wait_exit (pid, 10000), 2, "exit status 2 for '%s'", feeds);
    char *log = dai_slurp (r.log);
    cr_assert (strstr (log, needle), "'%s' in: %s", needle, log);
    free (log);
}

Test (data_it, configuration_mistakes_stop_it_with_the_reason)
{
    const char *db = dai_db ();
    s_refused (db, "kraken XBTUSD 1m", "FKS_DATA_FEEDS entry 1: unknown source 'kraken'");
    s_refused (db, "replay /nonexistent/history.csv X 1d",
               "/nonexistent/history.csv: No such file or directory");
    s_refused (db, "binance BTCUSDT 2m", "binance does not serve the interval 2m");
    s_run_t r;
    s_run_init (&r, db, "");
    r.envp[0] = "FKS_PG_URL_UNUSED=1";
    pid_t pid = dai_start ("workers/fks-data", r.envp, 0, r.log);
    cr_assert_eq (dai_wait_exit (pid, 10000), 2);
    char *log = dai_slurp (r.log);
    cr_assert (strstr (log, "FKS_PG_URL is required (set FKS_PG_URL or FKS_PG_URL_FILE)"),
               "%s", log);
    free (log);
}

Test (data_it, trainer_fits_on_bars_from_the_database)
{
    const char *db = dai_db ();
    //  400 daily bars of a wavy series, as the data worker would have stored them.
    dai_sql_exec ("INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume,"
                  " source) SELECT 'WAVE', '1d', timestamptz '2020-01-01' + g * interval '1 day',"
                  " c, c, c, c, 1000 + g, 'replay' FROM (SELECT g, round ((100 + 10 * sin (g / 7.0)"
                  " + g * 0.01)::numeric, 4) AS c FROM generate_series (0, 399) g) s");
    char dir[] = "/tmp/fks-train-db-XXXXXX";
    cr_assert (mkdtemp (dir));
    char out[128], url[1200], log[128];
    snprintf (out, sizeof out, "%s/wave.txt", dir);
    snprintf (url, sizeof url, "FKS_PG_URL=%s", db);
    snprintf (log, sizeof log, "%s/train.log", dir);
    const char *env[] = { url, NULL };
    //  dai_start runs a program without arguments: go through a shell for them.
    char script[512];
    snprintf (script, sizeof script, "%s/train.sh", dir);
    FILE *f = fopen (script, "w");
    cr_assert (f);
    fprintf (f, "#!/bin/sh\nexec '%s' --db --symbol wave --interval 1d --out '%s'\n",
             dai_build ("tools/fks-train"), out);
    fclose (f);
    cr_assert_eq (chmod (script, 0755), 0);
    pid_t pid = dai_start (script, env, 0, log);
    cr_assert_eq (dai_wait_exit (pid, 20000), 0, "fks-train --db failed: see %s", log);
    char *text = dai_slurp (log);
    cr_assert (strstr (text, "data: 400 bars of WAVE 1d from the bars table"), "%s", text);
    cr_assert (strstr (text, "out-of-sample accuracy: "), "%s", text);
    free (text);
    fks_model_t m;
    char err[512];
    cr_assert_eq (fks_model_load (out, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq (strncmp (m.version, "wave-1d-h5-", 11), 0, "%s", m.version);
    cr_assert (strstr (m.trained, "bars-table rows="), "%s", m.trained);
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq (system (cmd), 0);
}

Test (data_it, two_replicas_share_a_feed_without_polling_it_twice)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (true);
    char sym[32], feeds[256];
    snprintf (sym, sizeof sym, "DAIR%d", (int) getpid ());
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s 1m every=1s", sym);
    s_run_t one, two;
    s_run_init (&one, db, feeds);
    s_env (&one, "FKS_BINANCE_URL=%s", market);
    s_run_init (&two, db, feeds);
    s_env (&two, "FKS_BINANCE_URL=%s", market);
    snprintf (two.log, sizeof two.log, "/tmp/fks-dai-data2-%d.log", (int) getpid ());
    pid_t first = dai_start ("workers/fks-data", one.envp, one.port, one.log);
    const char *ok = "fks_data_fetch_total{source=\"binance\",result=\"ok\"}";
    cr_assert_geq (s_metric_wait (one.port, ok, 1, 10000), 1, "the first replica polls");
    pid_t second = dai_start ("workers/fks-data", two.envp, two.port, two.log);
    double before = dai_metric (one.port, ok);
    cr_assert_geq (s_metric_wait (one.port, ok, before + 3, 10000), before + 3);
    cr_assert_lt (dai_metric (two.port, ok), 1, "the second waits: the feed is leased");
    char rows_sql[128];
    snprintf (rows_sql, sizeof rows_sql, "SELECT count(*) FROM bars WHERE symbol = '%s'", sym);
    //  A fetch is counted before its bars commit: give the commit time on a loaded machine.
    cr_assert_eq (dai_wait_count (rows_sql, 12, 15000), 12, "log: %s", one.log);
    //  The first stops and gives the lease back: the second takes the feed over.
    cr_assert_eq (dai_stop (first), 0);
    cr_assert_geq (s_metric_wait (two.port, ok, 1, 10000), 1, "log: %s", two.log);
    cr_assert_eq (s_rows (sym), 12, "nothing stored twice");
    cr_assert_eq (dai_stop (second), 0);
    free (dai_redis ("DEL fks:price:%s", sym));
}

//  A feed polled less often than the lease's TTL: the lease is renewed between its polls, so
//  the second replica still waits (it once took the lapsed lease and polled too).
Test (data_it, lease_outlives_a_poll_interval_longer_than_its_ttl)
{
    const char *db = dai_db ();
    const char *market = dai_fake_market (true);
    char sym[32], feeds[256];
    snprintf (sym, sizeof sym, "DAIL%d", (int) getpid ());
    snprintf (feeds, sizeof feeds, "binance BTCUSDT=%s 1m every=10s", sym);
    s_run_t one, two;
    s_run_init (&one, db, feeds);
    s_env (&one, "FKS_BINANCE_URL=%s", market);
    s_env (&one, "FKS_DATA_LEASE_TTL=%s", "1s");
    s_run_init (&two, db, feeds);
    s_env (&two, "FKS_BINANCE_URL=%s", market);
    s_env (&two, "FKS_DATA_LEASE_TTL=%s", "1s");
    snprintf (two.log, sizeof two.log, "/tmp/fks-dai-data2-%d.log", (int) getpid ());
    pid_t first = dai_start ("workers/fks-data", one.envp, one.port, one.log);
    const char *ok = "fks_data_fetch_total{source=\"binance\",result=\"ok\"}";
    cr_assert_geq (s_metric_wait (one.port, ok, 1, 10000), 1, "the first replica polls");
    pid_t second = dai_start ("workers/fks-data", two.envp, two.port, two.log);
    //  The first's lease, unrenewed, lapses 1 s after its poll and the second looks every
    //  second: 2.5 s is past both, still well before the first polls again (10 s).
    cr_assert_lt (s_metric_wait (two.port, ok, 1, 2500), 1, "the second waits (log: %s)",
                  two.log);
    cr_assert_eq (dai_metric (one.port, ok), 1, "the first has not polled again");
    char *ttl = dai_redis ("PTTL fks:data:lease:binance:%s:1m", sym);
    cr_assert (ttl && atol (ttl) > 0, "the lease is held: PTTL %s", ttl ? ttl : "nil");
    free (ttl);
    //  Both stop at once (each takes a moment to leave the bus).
    kill (first, SIGTERM);
    kill (second, SIGTERM);
    cr_assert_eq (dai_stop (first), 0);
    cr_assert_eq (dai_stop (second), 0);
    free (dai_redis ("DEL fks:price:%s", sym));
}
