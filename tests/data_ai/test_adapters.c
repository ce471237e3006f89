/*  test_adapters.c - the Binance and Yahoo adapters against recorded answers and the local
 *  fake market server (fake_market.py): bars as the public formats give them, and every way
 *  an answer can go wrong (429 with Retry-After, 418, 4xx with the server's message, a
 *  malformed body, an oversized body, a refused connection, a timeout).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "workers/data/adapter.h"

static void
s_init (void)
{
    fks_http_global_init ();
}

TestSuite (binance, .init = s_init, .fini = dai_cleanup);
TestSuite (yahoo, .init = s_init, .fini = dai_cleanup);

//  The text of a fixture (caller frees).
static char *
s_fixture (const char *name, size_t *len)
{
    char path[512];
    snprintf (path, sizeof path, "%s/fixtures/%s", getenv ("FKS_TEST_DATA"), name);
    FILE *f = fopen (path, "rb");
    cr_assert (f, "fixture %s", path);
    char *buf = malloc (1 << 20);
    *len = fread (buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose (f);
    return buf;
}

static fks_fetch_req_t
s_req (const char *raw, const char *symbol, const char *interval)
{
    return (fks_fetch_req_t) { .raw_symbol = raw, .symbol = symbol, .interval = interval,
                               .start_ms = INT64_MIN, .end_ms = INT64_MAX, .limit = 1000,
                               .now_ms = 1893456000000LL /* 2030 */ };
}

//  --------------------------------------------------------------------------
//  Binance

Test (binance, recorded_klines_become_bars)
{
    size_t len;
    char *body = s_fixture ("binance_klines_BTCUSDT_1m.json", &len);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_binance_parse (body, len, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 12);
    //  [1709251200000,"61130.98000000","61138.36000000","61066.85000000","61098.67000000",
    //   "7.53527000",1709251259999,...]
    cr_assert_eq (bars.v[0].open_time, 1709251200000LL);
    cr_assert_float_eq (bars.v[0].open, 61130.98, 1e-9);
    cr_assert_float_eq (bars.v[0].high, 61138.36, 1e-9);
    cr_assert_float_eq (bars.v[0].low, 61066.85, 1e-9);
    cr_assert_float_eq (bars.v[0].close, 61098.67, 1e-9);
    cr_assert_float_eq (bars.v[0].volume, 7.53527, 1e-12);
    cr_assert_str_eq (bars.v[0].symbol, "BTCUSDT");
    cr_assert_str_eq (bars.v[0].interval, "1m");
    cr_assert (bars.v[0].closed);
    cr_assert_eq (bars.v[11].open_time, 1709251200000LL + 11 * 60000);
    fks_bars_free (&bars);
    free (body);
}

Test (binance, kline_whose_close_time_is_ahead_is_still_forming)
{
    size_t len;
    char *body = s_fixture ("binance_klines_BTCUSDT_1m.json", &len);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    req.now_ms = 1709251200000LL + 11 * 60000 + 30000;          //  halfway through the last
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_binance_parse (body, len, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert (bars.v[10].closed);
    cr_assert_not (bars.v[11].closed);
    fks_bars_free (&bars);
    free (body);
}

Test (binance, window_and_limit_are_respected)
{
    size_t len;
    char *body = s_fixture ("binance_klines_BTCUSDT_1m.json", &len);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    req.start_ms = 1709251200000LL + 3 * 60000;
    req.limit = 4;
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_binance_parse (body, len, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 4);
    cr_assert_eq (bars.v[0].open_time, req.start_ms);
    fks_bars_free (&bars);
    free (body);
}

//  Parses body (text) and expects a malformed-response error containing needle.
static void
s_binance_bad (const char *body, const char *needle)
{
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_bar_t keep = { .open_time = 42 };
    fks_bars_push (&bars, &keep);
    fks_fetch_err_t err;
    cr_assert_eq (fks_binance_parse (body, strlen (body), &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, needle), "'%s' in '%s'", needle, err.msg);
    cr_assert_eq (bars.n, 1, "nothing added on an error");
    fks_bars_free (&bars);
}

Test (binance, malformed_answers_are_refused)
{
    size_t len;
    char *trunc = s_fixture ("binance_malformed_truncated.json", &len);
    s_binance_bad (trunc, "malformed response: not JSON");
    free (trunc);
    char *kline = s_fixture ("binance_malformed_kline.json", &len);
    s_binance_bad (kline, "kline 1: open time is not an integer");
    free (kline);
    s_binance_bad ("{\"symbol\":\"BTCUSDT\"}", "expected an array of klines, got an object");
    s_binance_bad ("[[1,\"abc\",\"1\",\"1\",\"1\",\"1\",2]]", "kline 0: open is not a number");
    s_binance_bad ("[[1,\"1\",\"1\"]]", "kline 0 is not an array of at least 6 values");
    s_binance_bad ("[[1,\"1\",\"1\",\"1\",\"1\",null,2]]", "kline 0: volume is not a number");
}

Test (binance, fetch_asks_for_symbol_interval_window_and_limit)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    cr_assert (a);
    cr_assert_str_eq (fks_adapter_name (a), "binance");
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    req.start_ms = 1709251260000LL;
    req.end_ms = 1709251500000LL;
    req.limit = 3;
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 3);
    cr_assert_eq (bars.v[0].open_time, 1709251260000LL);
    char *seen = dai_fake_requests ();
    cr_assert (strstr (seen, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3"
                       "&startTime=1709251260000&endTime=1709251500000"), "%s", seen);
    free (seen);
    fks_bars_free (&bars);
    fks_adapter_destroy (&a);
    cr_assert_null (a);
}

Test (binance, http_429_is_rate_limited_with_retry_after)
{
    const char *base = dai_fake_market (false);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":429,"
                     "\"headers\":{\"Retry-After\":\"7\"},"
                     "\"fixture\":\"binance_error_rate_limited.json\"}]");
    fks_adapter_t *a = fks_adapter_binance_new (base, NULL);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_RATE_LIMITED);
    cr_assert_eq (err.http_status, 429);
    cr_assert_eq (err.retry_after_ms, 7000);
    cr_assert (strstr (err.msg, "HTTP 429 from Binance (rate limited): Too many requests"),
               "%s", err.msg);
    cr_assert (strstr (err.msg, "(code -1003)"), "%s", err.msg);
    cr_assert_eq (bars.n, 0);
    //  The next request is served normally.
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 12);
    fks_bars_free (&bars);
    fks_adapter_destroy (&a);
}

Test (binance, http_418_ban_is_rate_limited)
{
    const char *base = dai_fake_market (false);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":418,"
                     "\"headers\":{\"Retry-After\":\"120\"},"
                     "\"fixture\":\"binance_error_banned.json\"}]");
    fks_adapter_t *a = fks_adapter_binance_new (base, NULL);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_RATE_LIMITED);
    cr_assert_eq (err.retry_after_ms, 120000);
    cr_assert (strstr (err.msg, "address banned"), "%s", err.msg);
    fks_adapter_destroy (&a);
}

Test (binance, unknown_symbol_gives_the_servers_message)
{
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), NULL);
    fks_fetch_req_t req = s_req ("NOSUCH", "NOSUCH", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert_eq (err.http_status, 400);
    cr_assert (strstr (err.msg, "HTTP 400 from Binance: Invalid symbol. (code -1121)"), "%s",
               err.msg);
    fks_adapter_destroy (&a);
}

Test (binance, malformed_body_over_http_is_an_error)
{
    const char *base = dai_fake_market (false);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"status\":200,"
                     "\"fixture\":\"binance_malformed_truncated.json\"},"
                     "{\"path\":\"/api/v3/klines\",\"status\":502,"
                     "\"body\":\"<html><body>Bad Gateway</body></html>\"}]");
    fks_adapter_t *a = fks_adapter_binance_new (base, NULL);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "malformed response: not JSON"), "%s", err.msg);
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "HTTP 502 from Binance: <html><body>Bad Gateway"), "%s",
               err.msg);
    cr_assert_eq (bars.n, 0);
    fks_adapter_destroy (&a);
}

Test (binance, oversized_answer_is_refused)
{
    fks_http_opts_t http = { .max_body = 100 };
    fks_adapter_t *a = fks_adapter_binance_new (dai_fake_market (false), &http);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "response larger than 100 bytes"), "%s", err.msg);
    fks_adapter_destroy (&a);
}

Test (binance, refused_connection_and_timeout_are_errors)
{
    char base[64];
    snprintf (base, sizeof base, "http://127.0.0.1:%d", dai_free_port ());
    fks_adapter_t *a = fks_adapter_binance_new (base, NULL);
    fks_fetch_req_t req = s_req ("BTCUSDT", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert_eq (err.http_status, 0);
    cr_assert (strstr (err.msg, "GET http://127.0.0.1:"), "%s", err.msg);
    fks_adapter_destroy (&a);

    const char *fake = dai_fake_market (false);
    dai_fake_script ("[{\"path\":\"/api/v3/klines\",\"delay\":3,\"status\":200,\"body\":\"[]\"}]");
    fks_http_opts_t http = { .timeout_ms = 300 };
    a = fks_adapter_binance_new (fake, &http);
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "imeout") || strstr (err.msg, "timed out"), "%s", err.msg);
    fks_adapter_destroy (&a);
}

Test (binance, intervals_and_symbols_it_serves)
{
    fks_adapter_t *a = fks_adapter_binance_new ("http://127.0.0.1:1", NULL);
    cr_assert (fks_adapter_supports (a, "1m"));
    cr_assert (fks_adapter_supports (a, "1M"));
    cr_assert_not (fks_adapter_supports (a, "2m"));
    cr_assert_not (fks_adapter_supports (a, "7d"));
    fks_fetch_req_t req = s_req ("btc/usdt", "BTCUSDT", "1m");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "symbol not valid for Binance"), "%s", err.msg);
    fks_adapter_destroy (&a);
    cr_assert_null (fks_adapter_binance_new ("ftp://example", NULL));
    cr_assert_null (fks_adapter_binance_new (NULL, NULL));
}

//  --------------------------------------------------------------------------
//  Yahoo

Test (yahoo, recorded_chart_becomes_bars)
{
    size_t len;
    char *body = s_fixture ("yahoo_chart_AAPL_1d.json", &len);
    fks_fetch_req_t req = s_req ("AAPL", "AAPL", "1d");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_yahoo_parse (body, len, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 10);
    cr_assert_eq (bars.v[0].open_time, 1708957800000LL, "2024-02-26 14:30 UTC, the open");
    cr_assert_eq (bars.v[9].open_time, 1709908200000LL);
    for (size_t i = 0; i < bars.n; i++) {
        cr_assert (bars.v[i].low <= bars.v[i].open && bars.v[i].open <= bars.v[i].high);
        cr_assert_gt (bars.v[i].volume, 1e6);
        cr_assert (bars.v[i].closed);
    }
    fks_bars_free (&bars);
    free (body);
}

Test (yahoo, empty_rows_are_skipped_and_partial_rows_keep_nan)
{
    size_t len;
    char *body = s_fixture ("yahoo_chart_MSFT_1d.json", &len);
    fks_fetch_req_t req = s_req ("MSFT", "MSFT", "1d");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_yahoo_parse (body, len, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 9, "row 7 has no trade at all");
    cr_assert (isnan (bars.v[4].open), "row 4 has no open: passed on for the quality check");
    cr_assert_not (isnan (bars.v[4].close));
    fks_bars_free (&bars);
    free (body);
}

//  Times whose milliseconds do not fit in 64 bits are skipped, not multiplied: the product
//  would overflow (UBSan stops the sanitizer build) and, wrapped, land somewhere in the window.
Test (yahoo, timestamps_beyond_64_bit_milliseconds_are_skipped)
{
    const char *body = "{\"chart\":{\"result\":[{\"timestamp\":[9223372036854775807,"
        "9223372036854776,-9223372036854775807,-9223372036854776,1708957800,"
        "9223372036854775],\"indicators\":{\"quote\":[{\"open\":[1,1,1,1,1,1],"
        "\"high\":[1,1,1,1,1,1],\"low\":[1,1,1,1,1,1],\"close\":[1,1,1,1,1,1],"
        "\"volume\":[1,1,1,1,1,1]}]}}],\"error\":null}}";
    fks_fetch_req_t req = s_req ("X", "X", "1d");       //  the widest window there is
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_yahoo_parse (body, strlen (body), &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 2, "the four times out of range are skipped");
    cr_assert_eq (bars.v[0].open_time, 1708957800000LL);
    cr_assert_eq (bars.v[1].open_time, 9223372036854775000LL, "the largest that fits");
    fks_bars_free (&bars);
}

Test (yahoo, index_without_volume_and_escaped_symbol)
{
    fks_adapter_t *a = fks_adapter_yahoo_new (dai_fake_market (false), NULL);
    cr_assert (a);
    fks_fetch_req_t req = s_req ("^GSPC", "SPX", "1d");
    req.start_ms = 1708957800000LL;
    req.end_ms = 1709908200000LL;
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 10);
    cr_assert_str_eq (bars.v[0].symbol, "SPX");
    cr_assert_float_eq (bars.v[0].volume, 0, 1e-12, "a null volume is 0");
    char *seen = dai_fake_requests ();
    cr_assert (strstr (seen, "/v8/finance/chart/%5EGSPC?period1=1708957800&period2=1709908201"
                       "&interval=1d&includePrePost=false&events=history"), "%s", seen);
    free (seen);
    fks_bars_free (&bars);
    fks_adapter_destroy (&a);
}

Test (yahoo, weekly_and_monthly_intervals_use_yahoos_names)
{
    cr_assert_str_eq (fks_yahoo_interval ("1w"), "1wk");
    cr_assert_str_eq (fks_yahoo_interval ("1M"), "1mo");
    cr_assert_str_eq (fks_yahoo_interval ("1h"), "1h");
    cr_assert_null (fks_yahoo_interval ("4h"));
    cr_assert_str_eq (fks_binance_interval ("1w"), "1w");
}

Test (yahoo, unknown_symbol_gives_yahoos_message)
{
    fks_adapter_t *a = fks_adapter_yahoo_new (dai_fake_market (false), NULL);
    fks_fetch_req_t req = s_req ("NOSUCH", "NOSUCH", "1d");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert_eq (err.http_status, 404);
    cr_assert (strstr (err.msg, "HTTP 404 from Yahoo: Not Found: No data found, symbol may be "
                       "delisted"), "%s", err.msg);
    fks_adapter_destroy (&a);
}

Test (yahoo, http_429_is_rate_limited_with_retry_after)
{
    const char *base = dai_fake_market (false);
    dai_fake_script ("[{\"path\":\"/v8/finance/chart/\",\"status\":429,"
                     "\"headers\":{\"Retry-After\":\"3\"},\"body\":\"Too Many Requests\"}]");
    fks_adapter_t *a = fks_adapter_yahoo_new (base, NULL);
    fks_fetch_req_t req = s_req ("AAPL", "AAPL", "1d");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), FKS_FETCH_RATE_LIMITED);
    cr_assert_eq (err.retry_after_ms, 3000);
    cr_assert (strstr (err.msg, "HTTP 429 from Yahoo (rate limited): Too Many Requests"), "%s",
               err.msg);
    fks_adapter_destroy (&a);
}

Test (yahoo, malformed_chart_is_refused)
{
    size_t len;
    char *body = s_fixture ("yahoo_malformed_lengths.json", &len);
    fks_fetch_req_t req = s_req ("AAPL", "AAPL", "1d");
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_yahoo_parse (body, len, &req, &bars, &err), FKS_FETCH_ERROR);
    cr_assert (strstr (err.msg, "indicators.quote[0].close is not an array of 10 values"), "%s",
               err.msg);
    free (body);
    const char *bad[][2] = {
        { "{\"chart\":{\"result\":[]}}", "no chart.result[0] object" },
        { "[1,2]", "no chart.result[0] object" },
        { "{\"chart\":{\"result\":[{\"timestamp\":[\"x\"],\"indicators\":{\"quote\":[{"
          "\"open\":[1],\"high\":[1],\"low\":[1],\"close\":[1],\"volume\":[1]}]}}]}}",
          "timestamp 0 is not an integer" },
        { "{\"chart\":{\"result\":[{\"timestamp\":[1],\"indicators\":{\"quote\":[{"
          "\"open\":[\"1\"],\"high\":[1],\"low\":[1],\"close\":[1],\"volume\":[1]}]}}]}}",
          "open[0] is not a number or null" },
        { "not json", "not JSON" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq (fks_yahoo_parse (bad[i][0], strlen (bad[i][0]), &req, &bars, &err),
                      FKS_FETCH_ERROR);
        cr_assert (strstr (err.msg, bad[i][1]), "'%s' in '%s'", bad[i][1], err.msg);
    }
    cr_assert_eq (bars.n, 0);
}

Test (yahoo, period_without_bars_is_empty_not_an_error)
{
    fks_adapter_t *a = fks_adapter_yahoo_new (dai_fake_market (false), NULL);
    fks_fetch_req_t req = s_req ("AAPL", "AAPL", "1d");
    req.start_ms = 946684800000LL;          //  2000-01-01
    req.end_ms = 978220800000LL;            //  2000-12-31
    fks_bars_t bars = { 0 };
    fks_fetch_err_t err;
    cr_assert_eq (fks_adapter_fetch (a, &req, &bars, &err), 0, "%s", err.msg);
    cr_assert_eq (bars.n, 0);
    fks_adapter_destroy (&a);
}

Test (yahoo, retry_after_forms)
{
    cr_assert_eq (fks_http_retry_after ("7", 0), 7000);
    cr_assert_eq (fks_http_retry_after (" 0 ", 0), 0);
    cr_assert_eq (fks_http_retry_after ("99999999", 0), 86400000, "capped at a day");
    cr_assert_eq (fks_http_retry_after ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10000);
    cr_assert_eq (fks_http_retry_after ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0,
                  "a date in the past: now");
    cr_assert_eq (fks_http_retry_after ("soon", 0), -1);
    cr_assert_eq (fks_http_retry_after ("5s", 0), -1);
}
