/*  test_schedule.c - FKS_DATA_FEEDS (workers/data/schedule.c): what an operator writes, what
 *  the data worker polls, and the errors a mistake gives.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "workers/data/schedule.h"

static fks_schedule_t
s_ok (const char *text)
{
    fks_schedule_t s;
    char err[256] = "";
    cr_assert_eq (fks_schedule_parse (text, &s, err, sizeof err), 0, "%s", err);
    return s;
}

static void
s_bad (const char *text, const char *needle)
{
    fks_schedule_t s;
    char err[256] = "";
    cr_assert_eq (fks_schedule_parse (text, &s, err, sizeof err), -1, "refused: %s", text);
    cr_assert (strstr (err, needle), "'%s' in '%s'", needle, err);
    cr_assert_null (s.v);
    cr_assert_eq (s.n, 0);
}

Test (schedule, the_documented_example)
{
    fks_schedule_t s = s_ok ("binance BTCUSDT,ETHUSDT 1m; yahoo AAPL,^GSPC=SPX 1d every=15m;\n"
                             "replay tools/data/ttrc_ohlcv.csv TTRC 1d speed=0 "
                             "calendar=weekdays");
    cr_assert_eq (s.n, 5);
    cr_assert_eq (s.v[0].source, FKS_SOURCE_BINANCE);
    cr_assert_str_eq (s.v[0].raw_symbol, "BTCUSDT");
    cr_assert_str_eq (s.v[1].symbol, "ETHUSDT");
    cr_assert_str_eq (s.v[0].interval, "1m");
    cr_assert_eq (s.v[0].every_ms, 30000, "half a minute");
    cr_assert_eq (s.v[0].lookback, 500);
    cr_assert_eq (s.v[0].calendar, FKS_CALENDAR_24X7);
    cr_assert_eq (s.v[2].source, FKS_SOURCE_YAHOO);
    cr_assert_eq (s.v[2].every_ms, 900000);
    cr_assert_eq (s.v[2].calendar, FKS_CALENDAR_WEEKDAYS, "stocks: weekdays by default");
    cr_assert_str_eq (s.v[3].raw_symbol, "^GSPC");
    cr_assert_str_eq (s.v[3].symbol, "SPX");
    cr_assert_eq (s.v[4].source, FKS_SOURCE_REPLAY);
    cr_assert_str_eq (s.v[4].path, "tools/data/ttrc_ohlcv.csv");
    cr_assert_str_eq (s.v[4].symbol, "TTRC");
    cr_assert_eq (s.v[4].speed, 0);
    cr_assert_eq (s.v[4].calendar, FKS_CALENDAR_WEEKDAYS);
    fks_schedule_free (&s);
}

Test (schedule, symbols_are_normalised)
{
    fks_schedule_t s = s_ok ("binance btcusdt 1h; replay x.csv DAX 1d column=DAX speed=86400");
    cr_assert_str_eq (s.v[0].raw_symbol, "btcusdt", "the source's spelling is kept for asking");
    cr_assert_str_eq (s.v[0].symbol, "BTCUSDT");
    cr_assert_eq (s.v[0].every_ms, 300000, "half an hour, capped at 5 min");
    cr_assert_str_eq (s.v[1].column, "DAX");
    cr_assert_eq (s.v[1].speed, 86400);
    fks_schedule_free (&s);
}

Test (schedule, options)
{
    fks_schedule_t s = s_ok ("binance BTCUSDT 1s every=1s lookback=10000 calendar=none");
    cr_assert_eq (s.v[0].every_ms, 1000);
    cr_assert_eq (s.v[0].lookback, 10000);
    cr_assert_eq (s.v[0].calendar, FKS_CALENDAR_NONE);
    fks_schedule_free (&s);
    s = s_ok ("binance BTCUSDT 1s");
    cr_assert_eq (s.v[0].every_ms, 5000, "at least 5 s by default");
    fks_schedule_free (&s);
}

Test (schedule, empty_is_no_feeds)
{
    fks_schedule_t s = s_ok ("");
    cr_assert_eq (s.n, 0);
    s = s_ok (" ;\n ; ");
    cr_assert_eq (s.n, 0);
    s = s_ok (NULL);
    cr_assert_eq (s.n, 0);
}

Test (schedule, mistakes_name_the_entry)
{
    s_bad ("binance BTCUSDT 1m; kraken XBT 1m", "entry 2: unknown source 'kraken'");
    s_bad ("yahoo AAPL daily", "entry 1: 'daily' is not an interval");
    s_bad ("yahoo AAPL", "expected 'SOURCE SYMBOLS INTERVAL', got 2 words");
    s_bad ("replay file.csv 1d", "expected 'replay FILE SYMBOL INTERVAL'");
    s_bad ("binance BTCUSDT 1m every=100ms", "every=100ms: expected a duration from 1s to 24h");
    s_bad ("binance BTCUSDT 1m every=fast", "every=fast");
    s_bad ("binance BTCUSDT 1m lookback=0", "lookback=0: expected 1 to 10000 bars");
    s_bad ("binance BTCUSDT 1m speed=2", "unknown option 'speed' for binance");
    s_bad ("replay f.csv X 1d every=1m", "unknown option 'every' for replay");
    s_bad ("replay f.csv X 1d speed=-1", "speed=-1");
    s_bad ("binance BTCUSDT 1m calendar=weekends", "calendar=weekends: expected 24x7, weekdays "
           "or none");
    s_bad ("binance BTCUSDT 1m fast", "'fast' is not an option");
    s_bad ("binance BTCUSDT,BTC-USDT 1m", "binance BTCUSDT 1m is listed twice");
    s_bad ("binance BTCUSDT 1m; binance BTCUSDT 1m", "entry 2: binance BTCUSDT 1m is listed "
           "twice");
    s_bad ("replay f.csv A,B 1d", "a replay takes one symbol");
    s_bad ("yahoo ^GSPC 1d", "symbol '^GSPC'");
    s_bad ("yahoo ^GSPC 1d", "(store it under another name with SYMBOL=NAME)");
    s_bad ("yahoo AAPL,,MSFT 1d; yahoo , 1d", "no symbol");
}

Test (schedule, durations)
{
    int64_t ms;
    cr_assert_eq (fks_duration_parse ("250ms", &ms), 0);
    cr_assert_eq (ms, 250);
    cr_assert_eq (fks_duration_parse ("30s", &ms), 0);
    cr_assert_eq (ms, 30000);
    cr_assert_eq (fks_duration_parse ("5m", &ms), 0);
    cr_assert_eq (ms, 300000);
    cr_assert_eq (fks_duration_parse ("1h", &ms), 0);
    cr_assert_eq (ms, 3600000);
    cr_assert_eq (fks_duration_parse ("1d", &ms), -1);
    cr_assert_eq (fks_duration_parse ("-1s", &ms), -1);
    cr_assert_eq (fks_duration_parse ("s", &ms), -1);
    cr_assert_str_eq (fks_source_name (FKS_SOURCE_YAHOO), "yahoo");
}
