/*  test_feed.c - feeds (workers/data/feed.c): what is asked when, back-off and Retry-After,
 *  quality findings on the way, and replay pacing. Times are passed in, so nothing here
 *  depends on how fast the machine is.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "workers/data/feed.h"

#define MIN   60000LL
#define BASE  1709251200000LL           /* the recorded klines start here (2024-03-01) */
#define T     (BASE + 11 * MIN + 30000) /* halfway through the last recorded minute */

static void
s_init (void)
{
    fks_http_global_init ();
}

TestSuite (feed, .init = s_init, .fini = dai_cleanup);

static fks_feed_cfg_t
s_cfg (const char *symbol, const char *interval, size_t batch)
{
    fks_feed_cfg_t c = { .raw_symbol = symbol, .symbol = symbol, .interval = interval,
                         .every_ms = 30000, .lookback = 500, .speed = 0, .batch = batch };
    fks_quality_cfg_defaults (&c.quality);
    return c;
}

Test (feed, live_feed_asks_for_the_lookback_then_from_its_newest_bar)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 500);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    cr_assert (f, "%s", err);
    cr_assert_str_eq (fks_feed_name (f), "binance BTCUSDT 1m");
    cr_assert_not (fks_feed_is_history (f));
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 12);
    cr_assert_eq (out.n_findings, 0);
    cr_assert_not (out.bars.v[11].closed, "the newest minute is still forming");
    cr_assert_eq (fks_feed_next_ms (f), T + 30000);
    fks_feed_out_clear (&out);
    cr_assert_eq (fks_feed_poll (f, T + 1000, &out, &e), FKS_FEED_IDLE);
    cr_assert_eq (fks_feed_poll (f, T + 30000, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 1, "only the newest bar, asked again");
    char *seen = dai_fake_requests ();
    char want[160];
    snprintf (want, sizeof want, "limit=500&startTime=%lld&endTime=%lld",
              (long long) (T - 500 * MIN), (long long) (T + MIN));
    cr_assert (strstr (seen, want), "first poll: %s in %s", want, seen);
    snprintf (want, sizeof want, "startTime=%lld&endTime=", (long long) (BASE + 11 * MIN));
    cr_assert (strstr (seen, want), "second poll: %s in %s", want, seen);
    free (seen);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

//  Polls f at T while it asks to be polled at once (at most 10 times): the newest bar's open
//  time in *newest, the number of polls returned.
static int
s_poll_while_behind (fks_feed_t *f, int64_t *newest)
{
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    int polls = 0;
    *newest = 0;
    while (polls < 10 && fks_feed_next_ms (f) <= T) {
        cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
        *newest = out.bars.v[out.bars.n - 1].open_time;
        polls++;
    }
    fks_feed_out_free (&out);
    return polls;
}

Test (feed, full_page_behind_the_clock_is_followed_at_once)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 5);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    int64_t newest;
    int polls = s_poll_while_behind (f, &newest);
    cr_assert_eq (polls, 3, "pages of 5: minutes 0-4, 4-8, 8-11");
    cr_assert_eq (newest, BASE + 11 * MIN);
    cr_assert_eq (fks_feed_next_ms (f), T + 30000);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

//  A source that serves at most 3 bars a request, minutes BASE..BASE+11 (as Binance serves at
//  most 1000, whatever FKS_DATA_BATCH asks).
static int
s_capped_fetch (void *impl, const fks_fetch_req_t *req, fks_bars_t *out, fks_fetch_err_t *err)
{
    (void) impl;
    (void) err;
    size_t n = 0;
    for (int64_t t = BASE; t <= BASE + 11 * MIN && n < req->limit && n < 3; t += MIN) {
        if (t < req->start_ms || t > req->end_ms)
            continue;
        fks_bar_t b = { .open_time = t, .open = 10, .high = 11, .low = 9, .close = 10,
                        .volume = 1, .closed = t + MIN <= req->now_ms };
        snprintf (b.symbol, sizeof b.symbol, "%s", req->symbol);
        snprintf (b.interval, sizeof b.interval, "%s", req->interval);
        cr_assert_eq (fks_bars_push (out, &b), 0);
        n++;
    }
    return 0;
}

static bool
s_capped_supports (void *impl, const char *interval)
{
    (void) impl;
    return strcmp (interval, "1m") == 0;
}

static void
s_capped_destroy (void *impl)
{
    (void) impl;
}

//  A full page of a source that caps pages below the batch (FKS_DATA_BATCH 2000 with Binance's
//  1000) is still a full page: the catch-up follows it at once. It took the capped page for
//  the end and waited a poll interval per page (and could report the feed stale meanwhile).
Test (feed, a_page_capped_by_the_source_below_the_batch_is_followed_at_once)
{
    static const fks_adapter_ops_t ops = { .name = "capped", .page_max = 3,
                                           .fetch = s_capped_fetch,
                                           .supports = s_capped_supports,
                                           .destroy = s_capped_destroy };
    static int impl;
    fks_adapter_t *a = fks_adapter_new (&ops, &impl);
    cr_assert (a);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 5);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    cr_assert (f, "%s", err);
    int64_t newest;
    int polls = s_poll_while_behind (f, &newest);
    cr_assert_eq (newest, BASE + 11 * MIN, "caught up to minute %lld after %d polls",
                  (long long) ((newest - BASE) / MIN), polls);
    cr_assert_eq (fks_feed_next_ms (f), T + 30000);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

Test (feed, rate_limited_poll_waits_for_retry_after_then_backs_off)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":429,"
                     "\"headers\":{\"Retry-After\":\"7\"},"
                     "\"fixture\":\"binance_error_rate_limited.json\"},"
                     "{\"path\":\"/api/v3/klines\",\"status\":500,\"body\":\"oops\"}]");
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 500);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_FAILED);
    cr_assert_eq (e.http_status, 429);
    cr_assert_eq (fks_feed_next_ms (f), T + 7000, "Retry-After: 7 is honoured");
    cr_assert_eq (fks_feed_poll (f, T + 6999, &out, &e), FKS_FEED_IDLE);
    cr_assert_eq (fks_feed_poll (f, T + 7000, &out, &e), FKS_FEED_FAILED);
    cr_assert_eq (e.http_status, 500);
    cr_assert_eq (fks_feed_next_ms (f), T + 7000 + 2000, "the back-off doubles: 1 s, 2 s");
    cr_assert_eq (fks_feed_poll (f, T + 9000, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 12);
    cr_assert_eq (fks_feed_next_ms (f), T + 9000 + 30000);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

Test (feed, quality_findings_come_out_with_the_bars)
{
    //  ETHUSDT's recording lacks minutes 5 and 6, and minute 9 has its high below its low.
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("ETHUSDT", "1m", 500);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 9, "10 recorded, 1 refused");
    cr_assert_eq (out.rejected, 1);
    for (size_t i = 0; i < out.bars.n; i++)
        cr_assert_neq (out.bars.v[i].open_time, BASE + 9 * MIN, "the bad bar is not handed out");
    cr_assert_eq (out.n_findings, 3);
    cr_assert_eq (out.findings[0].kind, FKS_QUALITY_GAP);
    cr_assert_float_eq (out.findings[0].value, 2, 1e-12);
    cr_assert_eq (out.findings[1].kind, FKS_QUALITY_BAD_VALUE);
    cr_assert (strstr (out.findings[1].detail, "is below low"), "%s", out.findings[1].detail);
    cr_assert_eq (out.findings[2].kind, FKS_QUALITY_GAP, "minute 9 is missing from the table");
    cr_assert_float_eq (out.findings[2].value, 1, 1e-12);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

Test (feed, live_feed_goes_stale_when_no_bar_comes)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 500);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    fks_quality_finding_t st;
    //  The newest bar opened at minute 11 and closes at 12; stale after 3 more minutes.
    cr_assert_not (fks_feed_stale (f, BASE + 15 * MIN, &st));
    cr_assert (fks_feed_stale (f, BASE + 15 * MIN + 1000, &st));
    cr_assert_str_eq (st.symbol, "BTCUSDT");
    cr_assert_float_eq (st.value, 181, 1e-9);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

//  A live feed restarted after more than its lookback (3 minutes here, 8 minutes later):
//  seeded with the bars stored before, it asks from the newest of them, so minutes 5-7 are
//  fetched; it once asked for the lookback alone and left them a hole nobody reported.
Test (feed, restarted_live_feed_continues_from_the_newest_stored_bar)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 500);
    c.lookback = 3;
    c.catchup = 60;                     //  fetched back to a stored bar up to an hour old
    char err[256];
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    int64_t t1 = BASE + 3 * MIN + 30000;
    fks_feed_t *f = fks_feed_new (a, &c, t1, err, sizeof err);
    cr_assert_eq (fks_feed_poll (f, t1, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.v[out.bars.n - 1].open_time, BASE + 4 * MIN, "the next minute too");
    fks_bars_t stored = { 0 };          //  what fks_ingest_newest gives: the newest two
    fks_bars_push (&stored, &out.bars.v[out.bars.n - 2]);
    fks_bars_push (&stored, &out.bars.v[out.bars.n - 1]);
    fks_feed_destroy (&f);
    fks_feed_out_clear (&out);

    f = fks_feed_new (a, &c, T, err, sizeof err);
    cr_assert_eq (fks_feed_seed (f, &stored, T), FKS_FEED_SEED_RESUMED);
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 8, "minutes 4 (stored, asked again) to 11");
    cr_assert_eq (out.bars.v[0].open_time, BASE + 4 * MIN);
    cr_assert_eq (out.n_findings, 0, "nothing is missing");
    cr_assert_eq (fks_feed_seed (f, &stored, T), FKS_FEED_SEED_NONE, "it has seen newer");
    fks_feed_destroy (&f);
    fks_feed_out_free (&out);
    fks_bars_free (&stored);
    fks_adapter_destroy (&a);
}

//  Stored bars older than the catch-up (5 minutes): the feed fetches no further back than
//  that, and the quality checks, continuing from the stored bar, report the hole as a gap.
//  Pages behind the clock are not stale.
Test (feed, restart_beyond_the_catch_up_reports_the_hole_as_a_gap)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "1m", 2);
    c.lookback = 3;
    c.catchup = 5;
    c.quality.stale_factor = 1;
    fks_bar_t old = { .symbol = "BTCUSDT", .interval = "1m", .open_time = BASE - 5 * MIN,
                      .open = 60000, .high = 60000, .low = 60000, .close = 60000,
                      .closed = true };
    fks_bars_t stored = { 0 };
    fks_bars_push (&stored, &old);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, T, err, sizeof err);
    cr_assert_eq (fks_feed_seed (f, &stored, T), FKS_FEED_SEED_GAP);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 2, "a page of 2 from 5 minutes back: minutes 7 and 8");
    cr_assert_eq (out.bars.v[0].open_time, BASE + 7 * MIN);
    cr_assert_eq (out.n_findings, 1);
    cr_assert_eq (out.findings[0].kind, FKS_QUALITY_GAP);
    cr_assert_float_eq (out.findings[0].value, 11, 1e-12, "minutes -4 to 6: %s",
                        out.findings[0].detail);
    fks_quality_finding_t st;
    cr_assert_eq (fks_feed_next_ms (f), T, "behind the clock: the next page at once");
    cr_assert_not (fks_feed_stale (f, T, &st), "catching up is not stale");
    while (fks_feed_next_ms (f) <= T)
        cr_assert_eq (fks_feed_poll (f, T, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.v[out.bars.n - 1].open_time, BASE + 11 * MIN);
    cr_assert_eq (out.n_findings, 1, "one gap, once");
    fks_feed_destroy (&f);
    fks_feed_out_free (&out);
    fks_bars_free (&stored);
    fks_adapter_destroy (&a);
}

static fks_adapter_t *
s_ttrc (void)
{
    char err[256];
    fks_csv_opts_t o = { .symbol = "TTRC", .interval = "1d" };
    char path[512];
    snprintf (path, sizeof path, "%s/ttrc_ohlcv.csv", getenv ("FKS_TOOLS_DATA"));
    fks_adapter_t *a = fks_adapter_replay_new (path, &o, err, sizeof err);
    cr_assert (a, "%s", err);
    cr_assert_eq (fks_adapter_replay_size (a), 5550);
    return a;
}

static int
s_days_from_civil (int y, int m, int d)
{
    //  Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's formula).
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

Test (feed, replay_as_fast_as_possible_comes_in_batches_and_finishes)
{
    fks_adapter_t *a = s_ttrc ();
    fks_feed_cfg_t c = s_cfg ("TTRC", "1d", 2000);
    c.quality.calendar = FKS_CALENDAR_WEEKDAYS;
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, BASE, err, sizeof err);
    cr_assert (f, "%s", err);
    cr_assert (fks_feed_is_history (f));
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    size_t sizes[3];
    for (int i = 0; i < 3; i++) {
        size_t before = out.bars.n;
        cr_assert_eq (fks_feed_poll (f, BASE, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
        sizes[i] = out.bars.n - before;
    }
    cr_assert_eq (sizes[0], 2000);
    cr_assert_eq (sizes[1], 2000);
    cr_assert_eq (sizes[2], 1550);
    cr_assert (fks_feed_done (f));
    cr_assert_eq (fks_feed_poll (f, BASE, &out, &e), FKS_FEED_DONE);
    cr_assert_eq (fks_feed_served (f), 5550);
    //  Every finding is a weekday gap, and they add up: the weekdays from the first bar to
    //  the last, minus the bars there are, is what is missing (counted independently here).
    int first = s_days_from_civil (1985, 1, 2), last = s_days_from_civil (2006, 12, 29);
    long weekdays = 0;
    for (int d = first; d <= last; d++) {
        int dow = ((d % 7) + 11) % 7;                   //  1970-01-01 was a Thursday (4)
        weekdays += dow != 0 && dow != 6;
    }
    double missing = 0;
    for (size_t i = 0; i < out.n_findings; i++) {
        cr_assert_eq (out.findings[i].kind, FKS_QUALITY_GAP, "%s", out.findings[i].detail);
        missing += out.findings[i].value;
    }
    cr_assert_float_eq (missing, (double) (weekdays - 5550), 1e-9);
    cr_assert_gt (out.n_findings, 100, "holidays: about nine a year");
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

//  A file with two rows for one time replays the same whatever the batch: the second row
//  once fell into the next batch's window (cursor = last served + 1 ms) or not.
Test (feed, replay_of_a_repeated_time_does_not_depend_on_the_batch)
{
    char path[] = "/tmp/fks-feed-dup-XXXXXX";
    int fd = mkstemp (path);
    cr_assert (fd >= 0);
    const char *text = "date,open,high,low,close,volume\n2024-01-01,10,10,10,10,1\n"
                       "2024-01-02,11,11,11,11,1\n2024-01-02,12,12,12,12,1\n"
                       "2024-01-03,13,13,13,13,1\n";
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    fks_csv_opts_t o = { .symbol = "DUP", .interval = "1d" };
    char err[256];
    fks_adapter_t *a = fks_adapter_replay_new (path, &o, err, sizeof err);
    unlink (path);
    cr_assert (a, "%s", err);
    cr_assert_eq (fks_adapter_replay_stats (a)->duplicates, 1);
    const size_t batches[] = { 1, 2, 3, 500 };
    for (size_t k = 0; k < 4; k++) {
        fks_feed_cfg_t c = s_cfg ("DUP", "1d", batches[k]);
        fks_feed_t *f = fks_feed_new (a, &c, BASE, err, sizeof err);
        cr_assert (f, "%s", err);
        fks_feed_out_t out = { 0 };
        fks_fetch_err_t e;
        for (int polls = 0; polls < 10 && !fks_feed_done (f); polls++)
            cr_assert_eq (fks_feed_poll (f, BASE, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
        cr_assert (fks_feed_done (f));
        cr_assert_eq (out.bars.n, 3, "batch %zu: one bar per time", batches[k]);
        cr_assert_eq (fks_feed_served (f), 3);
        cr_assert_eq (out.bars.v[1].open_time, 1704153600000LL);
        cr_assert_float_eq (out.bars.v[1].close, 12, 1e-12, "batch %zu: the file's last row "
                            "for 2024-01-02", batches[k]);
        fks_feed_out_free (&out);
        fks_feed_destroy (&f);
    }
    fks_adapter_destroy (&a);
}

Test (feed, paced_replay_follows_the_bar_clock)
{
    fks_adapter_t *a = s_ttrc ();
    fks_feed_cfg_t c = s_cfg ("TTRC", "1d", 500);
    c.speed = 86400;                            //  one day of bars per second
    char err[256];
    int64_t t0 = BASE;
    fks_feed_t *f = fks_feed_new (a, &c, t0, err, sizeof err);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, t0, &out, &e), FKS_FEED_POLLED, "%s", e.msg);
    cr_assert_eq (out.bars.n, 1, "1985-01-02, due at once");
    cr_assert_eq (fks_feed_next_ms (f), t0 + 1000, "1985-01-03 is one day later");
    cr_assert_eq (fks_feed_poll (f, t0 + 1000, &out, &e), FKS_FEED_POLLED);
    cr_assert_eq (fks_feed_poll (f, t0 + 2000, &out, &e), FKS_FEED_POLLED);
    cr_assert_eq (out.bars.n, 3);
    cr_assert_eq (fks_feed_next_ms (f), t0 + 5000, "Friday 1985-01-04, then Monday the 7th");
    cr_assert_eq (fks_feed_poll (f, t0 + 4999, &out, &e), FKS_FEED_IDLE);
    //  Late by 10 s: everything due by then comes in one poll.
    cr_assert_eq (fks_feed_poll (f, t0 + 15000, &out, &e), FKS_FEED_POLLED);
    cr_assert_eq (out.bars.v[out.bars.n - 1].open_time, 474768000000LL,
                  "15 s after the start, bars up to 15 days after the first: 1985-01-17");
    cr_assert_eq (out.bars.n, 12, "Jan 2-4, 7-11, 14-17");
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

Test (feed, undone_poll_gives_the_same_bars_again)
{
    fks_adapter_t *a = s_ttrc ();
    fks_feed_cfg_t c = s_cfg ("TTRC", "1d", 10);
    char err[256];
    fks_feed_t *f = fks_feed_new (a, &c, BASE, err, sizeof err);
    fks_feed_out_t out = { 0 };
    fks_fetch_err_t e;
    cr_assert_eq (fks_feed_poll (f, BASE, &out, &e), FKS_FEED_POLLED);
    cr_assert_eq (fks_feed_poll (f, BASE, &out, &e), FKS_FEED_POLLED);
    int64_t second_first = out.bars.v[10].open_time;
    fks_feed_undo (f, BASE + 500);
    cr_assert_eq (fks_feed_served (f), 10);
    cr_assert_eq (fks_feed_poll (f, BASE + 499, &out, &e), FKS_FEED_IDLE, "due again later");
    fks_feed_out_clear (&out);
    cr_assert_eq (fks_feed_poll (f, BASE + 500, &out, &e), FKS_FEED_POLLED);
    cr_assert_eq (out.bars.n, 10);
    cr_assert_eq (out.bars.v[0].open_time, second_first);
    fks_feed_out_free (&out);
    fks_feed_destroy (&f);
    fks_adapter_destroy (&a);
}

Test (feed, interval_the_source_does_not_serve_is_refused)
{
    fks_adapter_t *a = fks_adapter_binance_new ("http://127.0.0.1:1", NULL);
    fks_feed_cfg_t c = s_cfg ("BTCUSDT", "2m", 500);
    char err[256];
    cr_assert_null (fks_feed_new (a, &c, 0, err, sizeof err));
    cr_assert (strstr (err, "binance does not serve the interval 2m"), "%s", err);
    c = s_cfg ("BTCUSDT", "1x", 500);
    cr_assert_null (fks_feed_new (a, &c, 0, err, sizeof err));
    cr_assert (strstr (err, "'1x' is not an interval"), "%s", err);
    c = s_cfg ("BTCUSDT", "1m", 0);
    cr_assert_null (fks_feed_new (a, &c, 0, err, sizeof err));
    fks_adapter_destroy (&a);
}
