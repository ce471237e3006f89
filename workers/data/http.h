/*  http.h - one bounded HTTP GET through libcurl, for the market-data adapters.
 *
 *  The Binance and Yahoo adapters are real HTTP clients pointed at a base URL from
 *  configuration. Every request has a total timeout, a cap on the body it will read (a larger
 *  answer is an error, never a large allocation), no redirects, and only http and https. The
 *  answer's status, body and Retry-After header (seconds, or an HTTP date) come back whatever
 *  the status, so the caller decides what a 429 or a 418 means.
 *
 *  Call fks_http_global_init once at start, before threads (libcurl's global init is not
 *  thread-safe). After that fks_http_get may be called from any thread.
 */
#ifndef FKS_DATA_HTTP_H
#define FKS_DATA_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define FKS_HTTP_BODY_MAX (8 * 1024 * 1024)

typedef struct {
    int timeout_ms;             /* whole request; 0: 10000 */
    size_t max_body;            /* bytes; 0: FKS_HTTP_BODY_MAX */
    const char *user_agent;     /* NULL: "fks-data" */
} fks_http_opts_t;

typedef struct {
    long status;                /* HTTP status */
    char *body;                 /* NUL-terminated (len bytes before the NUL); caller frees */
    size_t len;
    int64_t retry_after_ms;     /* from Retry-After, or -1 when absent or unreadable */
} fks_http_resp_t;

/*  Initialises libcurl for the process. 0 or -1. */
int fks_http_global_init (void);

/*  GETs url. Returns 0 when an HTTP answer arrived (any status; out filled, free it with
 *  fks_http_resp_free), or -1 with a one-line reason in err (cap bytes): connection refused,
 *  timeout, a body over the cap, an invalid URL. opts may be NULL. */
int fks_http_get (const char *url, const fks_http_opts_t *opts, fks_http_resp_t *out,
                  char *err, size_t cap);

void fks_http_resp_free (fks_http_resp_t *resp);

/*  Where an adapter sends its requests: a base URL and the request options. */
typedef struct {
    char *base;                 /* http:// or https://, no trailing '/' */
    fks_http_opts_t http;
} fks_http_endpoint_t;

/*  A new endpoint for base_url (http:// or https://, at most 512 bytes; trailing '/' are
 *  dropped) with a copy of http (NULL: defaults). NULL when base_url is invalid or memory
 *  runs out. */
fks_http_endpoint_t *fks_http_endpoint_new (const char *base_url, const fks_http_opts_t *http);

/*  Frees an endpoint; takes a void pointer so that it can be an adapter's destroy. NULL-safe. */
void fks_http_endpoint_destroy (void *endpoint);

/*  Reads a Retry-After value: whole seconds (at most a day) or an HTTP date, relative to
 *  now_s. Returns milliseconds (0 for a date in the past), or -1 when it does not parse. */
int64_t fks_http_retry_after (const char *value, int64_t now_s);

#endif
