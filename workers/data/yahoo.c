/*  yahoo.c - the Yahoo Finance adapter: bars from the chart endpoint.
 *
 *  GET <base>/v8/finance/chart/<symbol>?period1=<s>&period2=<s>&interval=1d answers
 *
 *      {"chart": {"result": [{"meta": {...},
 *                             "timestamp": [1709217000, ...],
 *                             "indicators": {"quote": [{"open": [...], "high": [...],
 *                                                       "low": [...], "close": [...],
 *                                                       "volume": [...]}]}}],
 *                 "error": null}}
 *
 *  with times in Unix seconds (a daily bar is stamped at the session's open) and one entry
 *  per time in each quote array; an entry may be null where Yahoo has no trade. A row whose
 *  open, high, low and close are all null is skipped (no trade in that interval); a row with
 *  some of them null is passed on with NaN, for the quality checks to report; a null volume
 *  (indices have none) is 0. Errors come as {"chart": {"result": null, "error": {"code":
 *  "Not Found", "description": "..."}}}; HTTP 429 means too many requests. Symbols such as
 *  ^GSPC or BRK-B are percent-encoded in the path. Intervals: 1m 2m 5m 15m 30m 60m 90m 1h
 *  1d 5d 1wk 1mo 3mo, which FKS spells 1w, 1M and 3M for the last three.
 */
#include "workers/data/adapter.h"

#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
fks_yahoo_interval (const char *interval)
{
    static const char *const map[][2] = {
        { "1m", "1m" }, { "2m", "2m" }, { "5m", "5m" }, { "15m", "15m" }, { "30m", "30m" },
        { "60m", "60m" }, { "90m", "90m" }, { "1h", "1h" }, { "1d", "1d" }, { "5d", "5d" },
        { "1w", "1wk" }, { "1M", "1mo" }, { "3M", "3mo" } };
    for (size_t i = 0; interval && i < sizeof map / sizeof map[0]; i++)
        if (strcmp (map[i][0], interval) == 0)
            return map[i][1];
    return NULL;
}

//  A number or null (NaN) from a quote array; -1 for any other type.
static int
s_point (const json_t *v, double *out)
{
    if (json_is_null (v) || !v) {
        *out = NAN;
        return 0;
    }
    if (!json_is_number (v))
        return -1;
    *out = json_number_value (v);
    return 0;
}

int
fks_yahoo_parse (const char *body, size_t len, const fks_fetch_req_t *req, fks_bars_t *out,
                 fks_fetch_err_t *err)
{
    int64_t iv;
    if (fks_interval_parse (req->interval, &iv, NULL) != 0) {
        snprintf (err->msg, sizeof err->msg, "invalid interval");
        return FKS_FETCH_ERROR;
    }
    json_error_t jerr;
    json_t *root = json_loadb (body, len, 0, &jerr);
    if (!root) {
        snprintf (err->msg, sizeof err->msg, "malformed response: not JSON (%s at line %d)",
                  jerr.text, jerr.line);
        return FKS_FETCH_ERROR;
    }
    int rc = FKS_FETCH_ERROR;
    size_t before = out->n;
    json_t *chart = json_object_get (root, "chart");
    json_t *error = json_object_get (chart, "error");
    if (json_is_object (error)) {
        json_t *code = json_object_get (error, "code");
        json_t *desc = json_object_get (error, "description");
        snprintf (err->msg, sizeof err->msg, "Yahoo: %.60s: %.160s",
                  json_is_string (code) ? json_string_value (code) : "error",
                  json_is_string (desc) ? json_string_value (desc) : "");
        goto done;
    }
    json_t *result = json_object_get (chart, "result");
    if (!json_is_array (result) || json_array_size (result) < 1
        || !json_is_object (json_array_get (result, 0))) {
        snprintf (err->msg, sizeof err->msg, "malformed response: no chart.result[0] object");
        goto done;
    }
    json_t *r0 = json_array_get (result, 0);
    json_t *ts = json_object_get (r0, "timestamp");
    if (!ts) {
        rc = 0;                     //  Yahoo leaves it out when the period holds no bar
        goto done;
    }
    size_t n = json_array_size (ts);
    if (!json_is_array (ts) || n > FKS_YAHOO_POINTS_MAX) {
        snprintf (err->msg, sizeof err->msg, "malformed response: timestamp is not an array "
                  "of at most %d times", FKS_YAHOO_POINTS_MAX);
        goto done;
    }
    json_t *quote = json_array_get (json_object_get (json_object_get (r0, "indicators"),
                                                     "quote"), 0);
    static const char *const names[] = { "open", "high", "low", "close", "volume" };
    json_t *col[5];
    for (int f = 0; f < 5; f++) {
        col[f] = json_object_get (quote, names[f]);
        if (!json_is_array (col[f]) || json_array_size (col[f]) != n) {
            snprintf (err->msg, sizeof err->msg, "malformed response: indicators.quote[0].%s "
                      "is not an array of %zu values", names[f], n);
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get (ts, i);
        if (!json_is_integer (t)) {
            snprintf (err->msg, sizeof err->msg, "malformed response: timestamp %zu is not an "
                      "integer", i);
            goto done;
        }
        double v[5];
        for (int f = 0; f < 5; f++)
            if (s_point (json_array_get (col[f], i), &v[f]) != 0) {
                snprintf (err->msg, sizeof err->msg, "malformed response: %s[%zu] is not a "
                          "number or null", names[f], i);
                goto done;
            }
        if (isnan (v[0]) && isnan (v[1]) && isnan (v[2]) && isnan (v[3]))
            continue;               //  no trade in this interval
        //  Bounded in seconds before it becomes milliseconds: a time whose milliseconds do
        //  not fit in 64 bits lies outside any window a request can name, and multiplying it
        //  would overflow (undefined behaviour) into a time that might lie inside one.
        json_int_t sec = json_integer_value (t);
        if (sec > INT64_MAX / 1000 || sec < INT64_MIN / 1000)
            continue;
        fks_bar_t bar;
        memset (&bar, 0, sizeof bar);
        bar.open_time = (int64_t) sec * 1000;
        if (bar.open_time < req->start_ms || bar.open_time > req->end_ms)
            continue;
        if (out->n - before >= req->limit)
            break;
        snprintf (bar.symbol, sizeof bar.symbol, "%s", req->symbol);
        snprintf (bar.interval, sizeof bar.interval, "%s", req->interval);
        bar.open = v[0];
        bar.high = v[1];
        bar.low = v[2];
        bar.close = v[3];
        bar.volume = isnan (v[4]) ? 0 : v[4];
        //  open_time may be near INT64_MAX: compare without adding to it.
        bar.closed = bar.open_time <= req->now_ms - iv;
        if (fks_bars_push (out, &bar) != 0) {
            snprintf (err->msg, sizeof err->msg, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0)
        out->n = before;
    json_decref (root);
    return rc;
}

static void
s_error_text (const char *body, size_t len, char *out, size_t cap)
{
    fks_fetch_req_t dummy = { .interval = "1d", .symbol = "X", .raw_symbol = "X", .limit = 1 };
    fks_bars_t none = { 0 };
    fks_fetch_err_t e;
    memset (&e, 0, sizeof e);
    if (fks_yahoo_parse (body, len, &dummy, &none, &e) != 0 && strncmp (e.msg, "Yahoo: ", 7) == 0)
        snprintf (out, cap, "%.200s", e.msg + 7);
    else {
        size_t k = 0;
        for (size_t i = 0; i < len && k + 1 < cap && k < 120; i++)
            out[k++] = isprint ((unsigned char) body[i]) ? body[i] : '?';
        out[k] = '\0';
    }
    fks_bars_free (&none);
}

static int
s_fetch (void *impl, const fks_fetch_req_t *req, fks_bars_t *out, fks_fetch_err_t *err)
{
    fks_http_endpoint_t *self = impl;
    const char *iv = fks_yahoo_interval (req->interval);
    if (!iv || strlen (req->raw_symbol) >= FKS_RAW_SYMBOL_MAX) {
        snprintf (err->msg, sizeof err->msg, "%s", iv ? "symbol too long"
                                                      : "interval not served by Yahoo");
        return FKS_FETCH_ERROR;
    }
    int64_t ivms;
    fks_interval_parse (req->interval, &ivms, NULL);
    int64_t end = req->end_ms < req->now_ms ? req->end_ms : req->now_ms;
    int64_t start = req->start_ms > 0 ? req->start_ms : 0;
    char *sym = curl_easy_escape (NULL, req->raw_symbol, 0);
    if (!sym) {
        snprintf (err->msg, sizeof err->msg, "out of memory");
        return FKS_FETCH_ERROR;
    }
    char url[1024];
    int w = snprintf (url, sizeof url, "%s/v8/finance/chart/%s?period1=%" PRId64
                      "&period2=%" PRId64 "&interval=%s&includePrePost=false&events=history",
                      self->base, sym, start / 1000, end / 1000 + 1, iv);
    curl_free (sym);
    if (w >= (int) sizeof url) {
        snprintf (err->msg, sizeof err->msg, "request URL too long");
        return FKS_FETCH_ERROR;
    }
    fks_http_resp_t resp;
    char why[200];
    if (fks_http_get (url, &self->http, &resp, why, sizeof why) != 0) {
        snprintf (err->msg, sizeof err->msg, "GET %.60s/v8/finance/chart: %.160s", self->base, why);
        return FKS_FETCH_ERROR;
    }
    err->http_status = resp.status;
    int rc;
    char text[240];
    if (resp.status == 429) {
        s_error_text (resp.body, resp.len, text, sizeof text);
        err->retry_after_ms = resp.retry_after_ms;
        snprintf (err->msg, sizeof err->msg, "HTTP 429 from Yahoo (rate limited): %.200s", text);
        rc = FKS_FETCH_RATE_LIMITED;
    }
    else if (resp.status != 200) {
        s_error_text (resp.body, resp.len, text, sizeof text);
        snprintf (err->msg, sizeof err->msg, "HTTP %ld from Yahoo: %.200s", resp.status, text);
        rc = FKS_FETCH_ERROR;
    }
    else
        rc = fks_yahoo_parse (resp.body, resp.len, req, out, err);
    fks_http_resp_free (&resp);
    return rc;
}

static bool
s_supports (void *impl, const char *interval)
{
    (void) impl;
    return fks_yahoo_interval (interval) != NULL;
}

static const fks_adapter_ops_t s_ops = {
    .name = "yahoo",
    .history = false,
    .fetch = s_fetch,
    .supports = s_supports,
    .destroy = fks_http_endpoint_destroy,
};

fks_adapter_t *
fks_adapter_yahoo_new (const char *base_url, const fks_http_opts_t *http)
{
    fks_http_endpoint_t *self = fks_http_endpoint_new (base_url, http);
    return self ? fks_adapter_new (&s_ops, self) : NULL;
}
