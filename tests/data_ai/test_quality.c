/*  test_quality.c - the data-quality rules (workers/data/quality.c), one behaviour each. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "workers/data/csv.h"
#include "workers/data/quality.h"

#define MIN  60000LL
#define DAY  86400000LL

//  2024-03-01 was a Friday; 2024-03-04 a Monday.
static int64_t
s_ms (const char *text)
{
    int64_t ms;
    cr_assert_eq (fks_csv_parse_time (text, &ms), 0);
    return ms;
}

static fks_bar_t
s_bar (const char *interval, int64_t t, double o, double h, double l, double c, double v)
{
    fks_bar_t b;
    memset (&b, 0, sizeof b);
    strcpy (b.symbol, "BTCUSDT");
    strcpy (b.interval, interval);
    b.open_time = t;
    b.open = o;
    b.high = h;
    b.low = l;
    b.close = c;
    b.volume = v;
    b.closed = true;
    return b;
}

static fks_bar_t
s_flat (const char *interval, int64_t t, double c)
{
    return s_bar (interval, t, c, c, c, c, 1);
}

static fks_quality_t
s_series (const char *interval, fks_calendar_t cal)
{
    fks_quality_cfg_t cfg;
    fks_quality_cfg_defaults (&cfg);
    cfg.calendar = cal;
    fks_quality_t q;
    cr_assert_eq (fks_quality_init (&q, &cfg, interval, 0), 0);
    return q;
}

//  Checks bar; returns the number of findings (copied into f, up to 4).
static size_t
s_check (fks_quality_t *q, fks_bar_t b, bool *stored, fks_quality_finding_t f[4])
{
    size_t n = 0;
    bool ok = fks_quality_check (q, &b, b.open_time + DAY, f, 4, &n);
    if (stored)
        *stored = ok;
    return n;
}

Test (quality, clean_series_has_no_findings)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq (s_check (&q, s_bar ("1m", i * MIN, 100, 101, 99, 100 + i * 0.1, 5),
                               &stored, f), 0);
        cr_assert (stored);
    }
}

//  One bad bar: refused, one bad_value finding whose detail contains `needle`.
static void
s_expect_bad (fks_bar_t b, const char *needle)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored = true;
    size_t n = s_check (&q, b, &stored, f);
    cr_assert_not (stored, "a bad value never reaches the bars table (%s)", needle);
    cr_assert_eq (n, 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_BAD_VALUE);
    cr_assert_str_eq (fks_quality_kind_name (f[0].kind), "bad_value");
    cr_assert_str_eq (f[0].symbol, "BTCUSDT");
    cr_assert_str_eq (f[0].interval, "1m");
    cr_assert (strstr (f[0].detail, needle), "'%s' in '%s'", needle, f[0].detail);
    cr_assert_not (q.has_last, "the series does not remember a refused bar");
}

Test (quality, nan_close_is_a_bad_value)
{
    s_expect_bad (s_bar ("1m", 0, 100, 101, 99, NAN, 5), "close is missing or not a number");
}

Test (quality, infinite_volume_is_a_bad_value)
{
    s_expect_bad (s_bar ("1m", 0, 100, 101, 99, 100, INFINITY), "volume is infinite");
}

Test (quality, negative_or_zero_price_is_a_bad_value)
{
    s_expect_bad (s_bar ("1m", 0, -5, 101, 99, 100, 5), "open -5 is not a positive price");
    s_expect_bad (s_bar ("1m", 0, 100, 101, 0, 100, 5), "low 0 is not a positive price");
}

Test (quality, negative_volume_is_a_bad_value)
{
    s_expect_bad (s_bar ("1m", 0, 100, 101, 99, 100, -1), "volume -1 is negative");
}

Test (quality, high_below_low_is_a_bad_value_with_both_numbers)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    cr_assert_eq (s_check (&q, s_bar ("1m", 0, 100, 99.5, 100.2, 100, 1), &stored, f), 1);
    cr_assert_not (stored);
    cr_assert (strstr (f[0].detail, "high 99.5 is below low 100.2"), "%s", f[0].detail);
    cr_assert (f[0].has_value && f[0].has_threshold);
    cr_assert_float_eq (f[0].value, 99.5, 1e-12);
    cr_assert_float_eq (f[0].threshold, 100.2, 1e-12);
}

Test (quality, open_or_close_outside_the_range_is_a_bad_value)
{
    s_expect_bad (s_bar ("1m", 0, 130, 120, 100, 110, 1),
                  "open 130 is outside [low 100, high 120]");
    s_expect_bad (s_bar ("1m", 0, 110, 120, 100, 90, 1),
                  "close 90 is outside [low 100, high 120]");
}

Test (quality, bar_opening_in_the_future_is_a_bad_value)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    size_t n = 0;
    fks_bar_t b = s_flat ("1m", 10 * MIN, 100);
    cr_assert_not (fks_quality_check (&q, &b, 0, f, 4, &n));
    cr_assert_eq (n, 1);
    cr_assert (strstr (f[0].detail, "opens 600 s in the future"), "%s", f[0].detail);
    //  The forming bar (opened now, or one interval ahead at most) is fine.
    n = 0;
    b.open_time = MIN;
    cr_assert (fks_quality_check (&q, &b, 0, f, 4, &n));
    cr_assert_eq (n, 0);
}

Test (quality, missing_minutes_are_a_gap_with_the_count)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    s_check (&q, s_flat ("1m", 0, 100), NULL, f);
    s_check (&q, s_flat ("1m", MIN, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1m", 5 * MIN, 100), &stored, f), 1);
    cr_assert (stored, "a bar after a gap is stored");
    cr_assert_eq (f[0].kind, FKS_QUALITY_GAP);
    cr_assert_float_eq (f[0].value, 3, 1e-12, "bars at 2, 3 and 4 minutes are missing");
    cr_assert_float_eq (f[0].threshold, 1, 1e-12);
    cr_assert (strstr (f[0].detail, "3 1m bars missing between 1970-01-01 00:01:00 and "
                       "1970-01-01 00:05:00"), "%s", f[0].detail);
}

Test (quality, gap_smaller_than_the_threshold_is_not_reported)
{
    fks_quality_cfg_t cfg;
    fks_quality_cfg_defaults (&cfg);
    cfg.gap_min = 3;
    fks_quality_t q;
    cr_assert_eq (fks_quality_init (&q, &cfg, "1h", 0), 0);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1h", 0, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1h", 3 * 3600000LL, 100), NULL, f), 0, "2 missing");
    cr_assert_eq (s_check (&q, s_flat ("1h", 7 * 3600000LL, 100), NULL, f), 1, "3 missing");
    cr_assert_float_eq (f[0].value, 3, 1e-12);
}

Test (quality, weekend_is_no_gap_in_the_weekdays_calendar)
{
    fks_quality_t q = s_series ("1d", FKS_CALENDAR_WEEKDAYS);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1d", s_ms ("2024-03-01"), 100), NULL, f);                //  Friday
    cr_assert_eq (s_check (&q, s_flat ("1d", s_ms ("2024-03-04"), 100), NULL, f), 0);
    //  Thursday then Monday: the Friday is missing (a holiday counts).
    q = s_series ("1d", FKS_CALENDAR_WEEKDAYS);
    s_check (&q, s_flat ("1d", s_ms ("2024-02-29"), 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1d", s_ms ("2024-03-04"), 100), NULL, f), 1);
    cr_assert_float_eq (f[0].value, 1, 1e-12);
    //  Stock bars stamped at the market open (13:30 UTC) too.
    q = s_series ("1d", FKS_CALENDAR_WEEKDAYS);
    s_check (&q, s_flat ("1d", s_ms ("2024-03-01 14:30"), 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1d", s_ms ("2024-03-04 14:30"), 100), NULL, f), 0);
}

Test (quality, weekend_is_a_gap_around_the_clock)
{
    fks_quality_t q = s_series ("1d", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1d", s_ms ("2024-03-01"), 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1d", s_ms ("2024-03-04"), 100), NULL, f), 1);
    cr_assert_float_eq (f[0].value, 2, 1e-12);
}

Test (quality, calendar_none_turns_gaps_off)
{
    fks_quality_t q = s_series ("1h", FKS_CALENDAR_NONE);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1h", 0, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1h", 100 * 3600000LL, 100), NULL, f), 0);
}

Test (quality, missing_months_are_counted_in_calendar_months)
{
    fks_quality_t q = s_series ("1M", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1M", s_ms ("2024-01-01"), 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1M", s_ms ("2024-02-01"), 100), NULL, f), 0,
                  "February is 31 days after January: no gap");
    cr_assert_eq (s_check (&q, s_flat ("1M", s_ms ("2024-05-01"), 100), NULL, f), 1);
    cr_assert_float_eq (f[0].value, 2, 1e-12, "March and April");
}

Test (quality, price_jump_beyond_the_threshold_is_an_outlier_but_stored)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    s_check (&q, s_flat ("1m", 0, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1m", MIN, 119), &stored, f), 0, "19%% is below 20%%");
    cr_assert_eq (s_check (&q, s_flat ("1m", 2 * MIN, 89), &stored, f), 1);
    cr_assert (stored);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    cr_assert_float_eq (f[0].value, 30.0 / 119.0, 1e-12);
    cr_assert_float_eq (f[0].threshold, 0.2, 1e-12);
    cr_assert (strstr (f[0].detail, "close moved 25.2% from 119 to 89 (limit 20.0%)"), "%s",
               f[0].detail);
}

Test (quality, forming_bar_update_is_compared_with_the_bar_before)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1m", 0, 100), NULL, f);
    s_check (&q, s_flat ("1m", MIN, 101), NULL, f);
    //  The same minute again, now at 130: 30 % above the previous bar's 100.
    cr_assert_eq (s_check (&q, s_flat ("1m", MIN, 130), NULL, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    cr_assert_float_eq (f[0].value, 0.3, 1e-12);
    cr_assert_float_eq (q.last_close, 130, 1e-12);
    //  The next bar compares with the updated close.
    cr_assert_eq (s_check (&q, s_flat ("1m", 2 * MIN, 131), NULL, f), 0);
}

//  A live feed asks for its newest bar on every poll until it closes, and a forming bar's
//  values change on every poll: its jump is news once, not on every poll of the day.
Test (quality, forming_bar_beyond_the_outlier_limit_is_reported_once)
{
    fks_quality_t q = s_series ("1d", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    s_check (&q, s_flat ("1d", 0, 100), NULL, f);
    //  The new day opens 30 % up: an outlier.
    cr_assert_eq (s_check (&q, s_flat ("1d", DAY, 130), &stored, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    //  The same forming day on the next polls, still beyond the limit: stored, not reported.
    for (int i = 1; i <= 5; i++) {
        cr_assert_eq (s_check (&q, s_flat ("1d", DAY, 130 + i), &stored, f), 0,
                      "update %d of the forming bar reported again", i);
        cr_assert (stored);
    }
    cr_assert_float_eq (q.last_close, 135, 1e-12);
    //  The next day is a new bar: compared with the day before and reported on its own.
    cr_assert_eq (s_check (&q, s_flat ("1d", 2 * DAY, 200), NULL, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    cr_assert_float_eq (f[0].value, 200.0 / 135.0 - 1, 1e-12);
    //  A bar that crosses the limit only on a later update is reported then, once.
    cr_assert_eq (s_check (&q, s_flat ("1d", 3 * DAY, 210), NULL, f), 0);
    cr_assert_eq (s_check (&q, s_flat ("1d", 3 * DAY, 300), NULL, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    cr_assert_eq (s_check (&q, s_flat ("1d", 3 * DAY, 310), NULL, f), 0);
}

Test (quality, series_seeded_with_stored_bars_continues_from_them)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    fks_bars_t stored = { 0 };
    fks_bar_t b0 = s_flat ("1m", 0, 100), b1 = s_flat ("1m", MIN, 101);
    fks_bars_push (&stored, &b0);
    fks_bars_push (&stored, &b1);
    fks_quality_seed (&q, &stored);
    //  The newest stored minute again, at 130: compared with the stored bar before it.
    cr_assert_eq (s_check (&q, s_flat ("1m", MIN, 130), NULL, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_OUTLIER);
    cr_assert_float_eq (f[0].value, 0.3, 1e-12);
    //  Minutes 2 to 4 never came: a gap from the stored bar.
    cr_assert_eq (s_check (&q, s_flat ("1m", 5 * MIN, 130), NULL, f), 1);
    cr_assert_eq (f[0].kind, FKS_QUALITY_GAP);
    cr_assert_float_eq (f[0].value, 3, 1e-12);
    //  Stored bars older than what the series has seen change nothing.
    fks_quality_seed (&q, &stored);
    cr_assert_eq (q.last_open, 5 * MIN);
    cr_assert_float_eq (q.last_close, 130, 1e-12);
    fks_bars_free (&stored);
}

Test (quality, older_bar_is_checked_for_bad_values_only)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    bool stored;
    s_check (&q, s_flat ("1m", 100 * MIN, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1m", 10 * MIN, 500), &stored, f), 0);
    cr_assert (stored);
    cr_assert_eq (q.last_open, 100 * MIN, "a backfill does not move the series");
}

Test (quality, gap_and_outlier_together)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4];
    s_check (&q, s_flat ("1m", 0, 100), NULL, f);
    cr_assert_eq (s_check (&q, s_flat ("1m", 3 * MIN, 150), NULL, f), 2);
    cr_assert_eq (f[0].kind, FKS_QUALITY_GAP);
    cr_assert_eq (f[1].kind, FKS_QUALITY_OUTLIER);
}

Test (quality, feed_without_a_new_bar_is_stale_once_per_episode)
{
    fks_quality_t q = s_series ("1m", FKS_CALENDAR_24X7);
    fks_quality_finding_t f[4], st;
    s_check (&q, s_flat ("1m", 0, 100), NULL, f);
    //  The bar closes at 1 min; stale after 3 more minutes.
    cr_assert_not (fks_quality_stale (&q, "BTCUSDT", 4 * MIN, &st));
    cr_assert (fks_quality_stale (&q, "BTCUSDT", 4 * MIN + 1000, &st));
    cr_assert_eq (st.kind, FKS_QUALITY_STALE);
    cr_assert_float_eq (st.value, 181, 1e-9, "seconds since the last bar closed");
    cr_assert_float_eq (st.threshold, 180, 1e-9);
    cr_assert_str_eq (st.symbol, "BTCUSDT");
    cr_assert_str_eq (st.interval, "1m");
    cr_assert (strstr (st.detail, "no new 1m bar for 181 s"), "%s", st.detail);
    cr_assert_not (fks_quality_stale (&q, "BTCUSDT", 10 * MIN, &st), "reported once");
    s_check (&q, s_flat ("1m", 10 * MIN, 100), NULL, f);
    cr_assert_not (fks_quality_stale (&q, "BTCUSDT", 11 * MIN, &st));
    cr_assert (fks_quality_stale (&q, "BTCUSDT", 15 * MIN, &st), "a new episode");
}

Test (quality, feed_that_never_delivered_is_stale)
{
    fks_quality_cfg_t cfg;
    fks_quality_cfg_defaults (&cfg);
    fks_quality_t q;
    cr_assert_eq (fks_quality_init (&q, &cfg, "1m", 1000), 0);
    fks_quality_finding_t st;
    cr_assert_not (fks_quality_stale (&q, "X", 1000 + 3 * MIN, &st));
    cr_assert (fks_quality_stale (&q, "X", 1000 + 3 * MIN + 1, &st));
    cr_assert (strstr (st.detail, "no 1m bar at all"), "%s", st.detail);
}

Test (quality, weekend_does_not_make_a_daily_stock_feed_stale)
{
    fks_quality_t q = s_series ("1d", FKS_CALENDAR_WEEKDAYS);
    fks_quality_finding_t f[4], st;
    s_check (&q, s_flat ("1d", s_ms ("2024-03-01"), 100), NULL, f);                //  Friday
    cr_assert_not (fks_quality_stale (&q, "X", s_ms ("2024-03-06 12:00"), &st),
                   "Saturday to Wednesday noon is 2.5 weekdays");
    cr_assert (fks_quality_stale (&q, "X", s_ms ("2024-03-07 00:00:01"), &st));
    cr_assert_float_eq (st.value, 3 * 86400.0 + 1, 1e-9);
    q = s_series ("1d", FKS_CALENDAR_24X7);
    s_check (&q, s_flat ("1d", s_ms ("2024-03-01"), 100), NULL, f);
    cr_assert (fks_quality_stale (&q, "X", s_ms ("2024-03-05 00:00:01"), &st));
}

Test (quality, weekday_milliseconds)
{
    cr_assert_eq (fks_weekday_ms (s_ms ("2024-03-01"), s_ms ("2024-03-04")), DAY);
    cr_assert_eq (fks_weekday_ms (s_ms ("2024-03-02"), s_ms ("2024-03-04")), 0);
    cr_assert_eq (fks_weekday_ms (s_ms ("2024-03-01 12:00"), s_ms ("2024-03-04 06:00")),
                  DAY / 2 + DAY / 4);
    cr_assert_eq (fks_weekday_ms (s_ms ("2024-03-04"), s_ms ("2024-03-18")), 10 * DAY);
    cr_assert_eq (fks_weekday_ms (s_ms ("2024-03-05"), s_ms ("2024-03-05 01:00")), DAY / 24);
    cr_assert_eq (fks_weekday_ms (10, 5), 0);
    cr_assert_eq (fks_weekday_ms (s_ms ("1960-01-04"), s_ms ("1960-01-11")), 5 * DAY,
                  "before 1970 too");
}

Test (quality, calendar_and_interval_names)
{
    fks_calendar_t c;
    cr_assert_eq (fks_calendar_parse ("weekdays", &c), 0);
    cr_assert_eq (c, FKS_CALENDAR_WEEKDAYS);
    cr_assert_eq (fks_calendar_parse ("Weekdays", &c), -1);
    cr_assert_str_eq (fks_calendar_name (FKS_CALENDAR_24X7), "24x7");
    fks_quality_cfg_t cfg;
    fks_quality_cfg_defaults (&cfg);
    fks_quality_t q;
    cr_assert_eq (fks_quality_init (&q, &cfg, "1x", 0), -1);
    cr_assert_eq (fks_quality_init (&q, &cfg, "01m", 0), -1);
    int64_t ms;
    char unit;
    cr_assert_eq (fks_interval_parse ("15m", &ms, &unit), 0);
    cr_assert_eq (ms, 15 * MIN);
    cr_assert_eq (unit, 'm');
    cr_assert_eq (fks_interval_parse ("9999M", &ms, NULL), 0);
    cr_assert_eq (fks_interval_parse ("10000m", &ms, NULL), -1);
    cr_assert_eq (fks_interval_parse ("1", &ms, NULL), -1);
    cr_assert_eq (fks_interval_parse ("1dd", &ms, NULL), -1);
}
