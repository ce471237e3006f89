/*  binance.c - the Binance adapter: klines from Binance's public REST API.
 *
 *  GET <base>/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=..&endTime=..&limit=..
 *  answers a JSON array with one array per kline, as Binance documents it:
 *
 *      [ open time (ms), "open", "high", "low", "close", "volume", close time (ms),
 *        "quote asset volume", trades, "taker buy base volume", "taker buy quote volume",
 *        "ignore" ]
 *
 *  Prices and volumes come as decimal strings. A kline whose close time has not passed yet
 *  is the forming bar (closed false). Errors come as {"code": -1121, "msg": "Invalid
 *  symbol."} with an HTTP 4xx; HTTP 429 means the request weight limit was hit and 418 that
 *  the address is banned for ignoring 429s: both carry Retry-After (seconds), which the feed
 *  honours. Nothing in the answer is trusted: every element's type is checked, and the array
 *  may hold at most twice the largest limit Binance serves.
 */
#include "workers/data/adapter.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_intervals[] = {
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
    "1w", "1M", NULL };

const char *
fks_binance_interval (const char *interval)
{
    for (const char *const *i = s_intervals; interval && *i; i++)
        if (strcmp (*i, interval) == 0)
            return *i;
    return NULL;
}

//  A decimal given as a JSON string (Binance's way) or a number. 0, or -1 when neither.
static int
s_decimal (const json_t *v, double *out)
{
    if (json_is_number (v)) {
        *out = json_number_value (v);
        return 0;
    }
    if (!json_is_string (v))
        return -1;
    const char *s = json_string_value (v);
    char *end;
    double d = strtod (s, &end);
    if (end == s || *end != '\0')
        return -1;
    *out = d;
    return 0;
}

int
fks_binance_parse (const char *body, size_t len, const fks_fetch_req_t *req, fks_bars_t *out,
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
    if (!json_is_array (root)) {
        snprintf (err->msg, sizeof err->msg, "malformed response: expected an array of "
                  "klines, got %s", json_is_object (root) ? "an object" : "another value");
        goto done;
    }
    size_t n = json_array_size (root);
    if (n > 2 * FKS_BINANCE_LIMIT_MAX) {
        snprintf (err->msg, sizeof err->msg, "malformed response: %zu klines, more than "
                  "Binance ever sends", n);
        goto done;
    }
    static const char *const names[] = { "open", "high", "low", "close", "volume" };
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get (root, i);
        if (!json_is_array (k) || json_array_size (k) < 6) {
            snprintf (err->msg, sizeof err->msg, "malformed response: kline %zu is not an "
                      "array of at least 6 values", i);
            goto done;
        }
        json_t *t = json_array_get (k, 0);
        if (!json_is_integer (t)) {
            snprintf (err->msg, sizeof err->msg, "malformed response: kline %zu: open time "
                      "is not an integer", i);
            goto done;
        }
        double v[5];
        for (int f = 0; f < 5; f++)
            if (s_decimal (json_array_get (k, (size_t) f + 1), &v[f]) != 0) {
                snprintf (err->msg, sizeof err->msg, "malformed response: kline %zu: %s is "
                          "not a number", i, names[f]);
                goto done;
            }
        fks_bar_t bar;
        memset (&bar, 0, sizeof bar);
        bar.open_time = (int64_t) json_integer_value (t);
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
        bar.volume = v[4];
        json_t *ct = json_array_get (k, 6);
        int64_t close_time = json_is_integer (ct) ? (int64_t) json_integer_value (ct)
                                                  : bar.open_time + iv - 1;
        bar.closed = close_time < req->now_ms;
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

//  The server's own message from an error body {"code": .., "msg": ".."}, else the start of
//  the body with anything unprintable replaced.
static void
s_error_text (const char *body, size_t len, char *out, size_t cap)
{
    json_t *root = json_loadb (body, len, 0, NULL);
    json_t *msg = root ? json_object_get (root, "msg") : NULL;
    json_t *code = root ? json_object_get (root, "code") : NULL;
    if (json_is_string (msg))
        snprintf (out, cap, "%.160s", json_string_value (msg));
    else {
        size_t k = 0;
        for (size_t i = 0; i < len && k + 1 < cap && k < 120; i++)
            out[k++] = isprint ((unsigned char) body[i]) ? body[i] : '?';
        out[k] = '\0';
    }
    if (json_is_integer (code)) {
        size_t used = strlen (out);
        snprintf (out + used, cap - used, " (code %" JSON_INTEGER_FORMAT ")",
                  json_integer_value (code));
    }
    json_decref (root);
}

static bool
s_symbol_ok (const char *s)
{
    size_t n = strlen (s);
    if (n < 1 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isupper ((unsigned char) s[i]) && !isdigit ((unsigned char) s[i]))
            return false;
    return true;
}

static int
s_fetch (void *impl, const fks_fetch_req_t *req, fks_bars_t *out, fks_fetch_err_t *err)
{
    fks_http_endpoint_t *self = impl;
    const char *iv = fks_binance_interval (req->interval);
    if (!iv || !s_symbol_ok (req->raw_symbol)) {
        snprintf (err->msg, sizeof err->msg, "%s", iv ? "symbol not valid for Binance "
                  "(1-20 of A-Z, 0-9)" : "interval not served by Binance");
        return FKS_FETCH_ERROR;
    }
    size_t limit = req->limit > FKS_BINANCE_LIMIT_MAX ? FKS_BINANCE_LIMIT_MAX : req->limit;
    char url[1024];
    int w = snprintf (url, sizeof url, "%s/api/v3/klines?symbol=%s&interval=%s&limit=%zu",
                      self->base, req->raw_symbol, iv, limit);
    if (req->start_ms > 0)
        w += snprintf (url + w, sizeof url - (size_t) w, "&startTime=%" PRId64, req->start_ms);
    if (req->end_ms > 0 && req->end_ms < INT64_MAX)
        w += snprintf (url + w, sizeof url - (size_t) w, "&endTime=%" PRId64, req->end_ms);
    if (w >= (int) sizeof url) {
        snprintf (err->msg, sizeof err->msg, "request URL too long");
        return FKS_FETCH_ERROR;
    }
    fks_http_resp_t resp;
    char why[200];
    if (fks_http_get (url, &self->http, &resp, why, sizeof why) != 0) {
        snprintf (err->msg, sizeof err->msg, "GET %.60s/api/v3/klines: %.160s", self->base, why);
        return FKS_FETCH_ERROR;
    }
    err->http_status = resp.status;
    int rc;
    if (resp.status == 429 || resp.status == 418) {
        char text[200];
        s_error_text (resp.body, resp.len, text, sizeof text);
        err->retry_after_ms = resp.retry_after_ms;
        snprintf (err->msg, sizeof err->msg, "HTTP %ld from Binance (%s): %.180s", resp.status,
                  resp.status == 418 ? "address banned" : "rate limited", text);
        rc = FKS_FETCH_RATE_LIMITED;
    }
    else if (resp.status != 200) {
        char text[200];
        s_error_text (resp.body, resp.len, text, sizeof text);
        snprintf (err->msg, sizeof err->msg, "HTTP %ld from Binance: %.180s", resp.status, text);
        rc = FKS_FETCH_ERROR;
    }
    else
        rc = fks_binance_parse (resp.body, resp.len, req, out, err);
    fks_http_resp_free (&resp);
    return rc;
}

static bool
s_supports (void *impl, const char *interval)
{
    (void) impl;
    return fks_binance_interval (interval) != NULL;
}

static const fks_adapter_ops_t s_ops = {
    .name = "binance",
    .history = false,
    .page_max = FKS_BINANCE_LIMIT_MAX,
    .fetch = s_fetch,
    .supports = s_supports,
    .destroy = fks_http_endpoint_destroy,
};

fks_adapter_t *
fks_adapter_binance_new (const char *base_url, const fks_http_opts_t *http)
{
    fks_http_endpoint_t *self = fks_http_endpoint_new (base_url, http);
    return self ? fks_adapter_new (&s_ops, self) : NULL;
}
