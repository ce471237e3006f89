/*  http.c - one bounded HTTP GET through libcurl, for the market-data adapters.
 *
 *  See http.h. The body is collected by a write callback that refuses to grow past the cap
 *  (curl then fails the transfer with CURLE_WRITE_ERROR, reported as "larger than N bytes");
 *  the header callback only looks for Retry-After.
 */
#include "workers/data/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S_RETRY_AFTER_MAX_S 86400

typedef struct {
    char *data;
    size_t len, cap, max;
    bool too_big;
    char retry_after[64];
} s_sink_t;

int
fks_http_global_init (void)
{
    return curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int64_t
fks_http_retry_after (const char *value, int64_t now_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit ((unsigned char) *value)) {
        int64_t s = 0;
        const char *p = value;
        while (isdigit ((unsigned char) *p)) {
            s = s * 10 + (*p - '0');
            if (s > S_RETRY_AFTER_MAX_S)
                s = S_RETRY_AFTER_MAX_S;
            p++;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        return *p ? -1 : s * 1000;
    }
    time_t t = curl_getdate (value, NULL);
    if (t < 0)
        return -1;
    int64_t delta = (int64_t) t - now_s;
    if (delta < 0)
        delta = 0;
    if (delta > S_RETRY_AFTER_MAX_S)
        delta = S_RETRY_AFTER_MAX_S;
    return delta * 1000;
}

static size_t
s_write (char *ptr, size_t size, size_t nmemb, void *userdata)
{
    s_sink_t *s = userdata;
    size_t n = size * nmemb;
    if (n > s->max - s->len) {
        s->too_big = true;
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 16384;
        while (cap < s->len + n + 1)
            cap *= 2;
        if (cap > s->max + 1)
            cap = s->max + 1;
        char *p = realloc (s->data, cap);
        if (!p)
            return 0;
        s->data = p;
        s->cap = cap;
    }
    memcpy (s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

static size_t
s_header (char *buf, size_t size, size_t nitems, void *userdata)
{
    s_sink_t *s = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp (buf, name, sizeof name - 1) == 0) {
        size_t vlen = n - (sizeof name - 1);
        const char *v = buf + sizeof name - 1;
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
            vlen--;
        if (vlen >= sizeof s->retry_after)
            vlen = sizeof s->retry_after - 1;
        memcpy (s->retry_after, v, vlen);
        s->retry_after[vlen] = '\0';
    }
    return n;
}

int
fks_http_get (const char *url, const fks_http_opts_t *opts, fks_http_resp_t *out, char *err,
              size_t cap)
{
    memset (out, 0, sizeof *out);
    out->retry_after_ms = -1;
    int timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
    s_sink_t sink = { .max = opts && opts->max_body ? opts->max_body : FKS_HTTP_BODY_MAX };
    CURL *c = curl_easy_init ();
    if (!c) {
        snprintf (err, cap, "cannot create an HTTP handle");
        return -1;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
    curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT_MS, (long) (timeout_ms < 5000 ? timeout_ms
                                                                              : 5000));
    curl_easy_setopt (c, CURLOPT_USERAGENT, opts && opts->user_agent ? opts->user_agent
                                                                     : "fks-data");
    curl_easy_setopt (c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt (c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt (c, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt (c, CURLOPT_HEADERDATA, &sink);
    curl_easy_setopt (c, CURLOPT_ERRORBUFFER, curl_err);
    CURLcode rc = curl_easy_perform (c);
    int result = -1;
    if (sink.too_big)
        snprintf (err, cap, "response larger than %zu bytes", sink.max);
    else if (rc != CURLE_OK)
        snprintf (err, cap, "%s", curl_err[0] ? curl_err : curl_easy_strerror (rc));
    else {
        curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &out->status);
        if (!sink.data) {
            sink.data = calloc (1, 1);
            if (!sink.data) {
                snprintf (err, cap, "out of memory");
                goto done;
            }
        }
        out->body = sink.data;
        out->len = sink.len;
        sink.data = NULL;
        if (sink.retry_after[0])
            out->retry_after_ms = fks_http_retry_after (sink.retry_after, (int64_t) time (NULL));
        result = 0;
    }
done:
    free (sink.data);
    curl_easy_cleanup (c);
    return result;
}

void
fks_http_resp_free (fks_http_resp_t *resp)
{
    if (!resp)
        return;
    free (resp->body);
    resp->body = NULL;
    resp->len = 0;
}

fks_http_endpoint_t *
fks_http_endpoint_new (const char *base_url, const fks_http_opts_t *http)
{
    if (!base_url || (strncmp (base_url, "http://", 7) != 0
                      && strncmp (base_url, "https://", 8) != 0) || strlen (base_url) > 512)
        return NULL;
    fks_http_endpoint_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->base = strdup (base_url);
    if (!self->base) {
        free (self);
        return NULL;
    }
    size_t n = strlen (self->base);
    while (n > 0 && self->base[n - 1] == '/')
        self->base[--n] = '\0';
    if (http)
        self->http = *http;
    return self;
}

void
fks_http_endpoint_destroy (void *endpoint)
{
    fks_http_endpoint_t *self = endpoint;
    if (self) {
        free (self->base);
        free (self);
    }
}
