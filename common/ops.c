/*  ops.c - /health, /ready and /metrics for every FKS process, over civetweb.
 *
 *  Kubernetes probes and Prometheus scrapes land here. /health only says the process answers
 *  (its body is built once, at creation); /ready runs the process's own readiness check on the
 *  civetweb thread that serves the probe; /metrics renders a metrics registry. Each answer
 *  carries Content-Length and Cache-Control: no-store, goes through civetweb's response-header
 *  calls (so civetweb knows the status for its keep-alive rules and its end_request callback),
 *  and is counted in fks_http_requests_total{path,code} of the registry it serves.
 *
 *  Workers and the bus let ops run its own small civetweb server (fks_ops_listen: a fixed,
 *  small thread pool, keep-alive off, a request timeout, no file serving); the gateway mounts
 *  the three handlers on the context it already runs (fks_ops_register). Only these three exact
 *  paths are answered; anything else falls through to civetweb (404, or the gateway's routes).
 *  Nothing here logs a secret: readiness reasons are written by the process's own check, and
 *  civetweb's messages are logged with query strings cut out.
 */
#include "common/ops.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ENV_MAX      256             /* bytes of FKS_ENV shown by /health (escaped) */
#define S_WHY_MAX      256             /* bytes of a readiness reason */
#define S_THREADS      "4"
#define S_TIMEOUT_MS   "10000"
#define S_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum { S_HEALTH, S_READY, S_METRICS, S_PATH_COUNT } s_path_t;

static const char *const s_paths[S_PATH_COUNT] = { "/health", "/ready", "/metrics" };

typedef struct {
    struct fks_ops_t *ops;
    s_path_t path;
} s_route_t;

struct fks_ops_t {
    s_route_t routes[S_PATH_COUNT];     /* civetweb's cbdata for each path */
    char *health;                       /* the /health body */
    size_t health_len;
    fks_ops_ready_fn *ready;
    void *arg;
    fks_ops_ready_fn *live;             /* liveness check for /health, or NULL */
    void *live_arg;
    fks_metrics_t *metrics;
    fks_metric_family_t *requests;      /* fks_http_requests_total{path,code}, may be NULL */
    _Atomic int last_ready;             /* 1 ready, 0 not, -1 not asked yet: logs transitions */
    struct mg_context *ctx;             /* own server, or NULL */
    int port;
};

fks_ops_t *
fks_ops_new (const char *env, fks_ops_ready_fn *ready, void *arg, fks_metrics_t *metrics)
{
    if (!metrics && !(metrics = fks_metrics_default ()))
        return NULL;
    fks_ops_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ready = ready;
    self->arg = arg;
    self->metrics = metrics;
    self->port = -1;
    for (int p = 0; p < S_PATH_COUNT; p++)
        self->routes[p] = (s_route_t) { self, (s_path_t) p };
    atomic_init (&self->last_ready, -1);

    const char *e = env ? env : "";
    char escaped[S_ENV_MAX];
    fks_json_escape (escaped, sizeof escaped, e, strnlen (e, S_ENV_MAX));
    size_t cap = strlen (escaped) + 64;
    if (!(self->health = malloc (cap))) {
        free (self);
        return NULL;
    }
    int n = snprintf (self->health, cap, "{\"status\":\"healthy\",\"env\":\"%s\"}", escaped);
    self->health_len = (size_t) n;

    static const char *const labels[] = { "path", "code" };
    self->requests = fks_metrics_family (metrics, "fks_http_requests_total",
                                         "HTTP requests answered, by path and status code.",
                                         FKS_COUNTER, labels, 2, NULL, 0);
    if (!self->requests)
        fks_warn ("ops: fks_http_requests_total is registered differently; ops requests "
                  "will not be counted");
    return self;
}

void
fks_ops_destroy (fks_ops_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_ops_t *self = *self_p;
    if (self->ctx)
        mg_stop (self->ctx);            /* joins every civetweb thread */
    free (self->health);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Answers

//  Paths and codes are a short fixed list, so the counter's series stay few.
static void
s_count (fks_ops_t *self, s_path_t path, int status)
{
    char code[8];
    snprintf (code, sizeof code, "%d", status);
    const char *values[2] = { s_paths[path], code };
    fks_metric_inc (fks_metric_get (self->requests, values));
}

//  Counts the answer, then sends it: counted first, so that a client that has its answer
//  finds it in fks_http_requests_total.
static int
s_reply (const s_route_t *route, struct mg_connection *conn, int status,
         const char *content_type, const char *allow, const char *body, size_t len,
         bool head_only)
{
    s_count (route->ops, route->path, status);
    char length[24];
    snprintf (length, sizeof length, "%zu", len);
    mg_response_header_start (conn, status);
    mg_response_header_add (conn, "Content-Type", content_type, -1);
    mg_response_header_add (conn, "Content-Length", length, -1);
    mg_response_header_add (conn, "Cache-Control", "no-store", -1);
    if (allow)
        mg_response_header_add (conn, "Allow", allow, -1);
    mg_response_header_send (conn);
    if (!head_only && len)
        mg_write (conn, body, len);
    return status;
}

//  /health: 200 with the prebuilt body, or 503 with the reason when the liveness check fails.
//  503 {"status":"<status>","reason":"<why, JSON-escaped>"}.
static int
s_reply_503 (const s_route_t *route, struct mg_connection *conn, const char *status,
             const char *why, bool head_only)
{
    char escaped[S_WHY_MAX * 6];
    fks_json_escape (escaped, sizeof escaped, why, strlen (why));
    char body[sizeof escaped + 64];
    int n = snprintf (body, sizeof body, "{\"status\":\"%s\",\"reason\":\"%s\"}", status,
                      escaped);
    return s_reply (route, conn, 503, "application/json", NULL, body, (size_t) n, head_only);
}

static int
s_health (const s_route_t *route, struct mg_connection *conn, bool head_only)
{
    fks_ops_t *self = route->ops;
    char why[S_WHY_MAX] = "";
    if (!self->live || self->live (self->live_arg, why, sizeof why) == 0)
        return s_reply (route, conn, 200, "application/json", NULL, self->health,
                        self->health_len, head_only);
    why[sizeof why - 1] = '\0';
    return s_reply_503 (route, conn, "unhealthy", *why ? why : "liveness check failed",
                        head_only);
}

static int
s_ready (const s_route_t *route, struct mg_connection *conn, bool head_only)
{
    fks_ops_t *self = route->ops;
    char why[S_WHY_MAX] = "";
    int rc = self->ready ? self->ready (self->arg, why, sizeof why) : 0;
    why[sizeof why - 1] = '\0';
    int now = rc == 0 ? 1 : 0;
    int before = atomic_exchange (&self->last_ready, now);
    if (now) {
        if (before == 0)
            fks_info ("ops: ready again");
        static const char body[] = "{\"status\":\"ready\"}";
        return s_reply (route, conn, 200, "application/json", NULL, body, sizeof body - 1,
                        head_only);
    }
    if (!*why)
        snprintf (why, sizeof why, "readiness check failed");
    char fields[S_WHY_MAX * 6 + 32];
    fields[0] = '\0';
    fks_log_field_str (fields, sizeof fields, "reason", why);
    if (before != 0)
        fks_log (FKS_LOG_WARN, NULL, fields, "ops: not ready");
    return s_reply_503 (route, conn, "not_ready", why, head_only);
}

static int
s_metrics (const s_route_t *route, struct mg_connection *conn, bool head_only)
{
    fks_ops_t *self = route->ops;
    size_t len = 0;
    char *text = fks_metrics_render (self->metrics, &len);
    if (!text) {
        static const char body[] = "metrics could not be rendered (out of memory)\n";
        return s_reply (route, conn, 500, "text/plain; charset=utf-8", NULL, body,
                        sizeof body - 1, head_only);
    }
    int status = s_reply (route, conn, 200, S_METRICS_TYPE, NULL, text, len, head_only);
    free (text);
    return status;
}

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    const s_route_t *route = cbdata;
    const struct mg_request_info *ri = mg_get_request_info (conn);
    //  civetweb also routes "/health/x" here: only the exact path is ours.
    if (!ri || !ri->local_uri || strcmp (ri->local_uri, s_paths[route->path]) != 0)
        return 0;
    const char *method = ri->request_method ? ri->request_method : "";
    bool head_only = strcmp (method, "HEAD") == 0;
    int status;
    if (!head_only && strcmp (method, "GET") != 0) {
        static const char body[] = "{\"error\":{\"code\":\"method_not_allowed\","
                                   "\"message\":\"use GET or HEAD\"}}";
        status = s_reply (route, conn, 405, "application/json", "GET, HEAD", body,
                          sizeof body - 1, false);
    }
    else if (route->path == S_HEALTH)
        status = s_health (route, conn, head_only);
    else if (route->path == S_READY)
        status = s_ready (route, conn, head_only);
    else
        status = s_metrics (route, conn, head_only);
    return status;
}

//  --------------------------------------------------------------------------
//  Mounting and listening

void
fks_ops_set_live (fks_ops_t *self, fks_ops_ready_fn *live, void *arg)
{
    if (self) {
        self->live = live;
        self->live_arg = arg;
    }
}

void
fks_ops_register (fks_ops_t *self, struct mg_context *ctx)
{
    if (!self || !ctx)
        return;
    for (int p = 0; p < S_PATH_COUNT; p++)
        mg_set_request_handler (ctx, s_paths[p], s_handle, &self->routes[p]);
}

//  The first message civetweb gave while this thread was starting a server: mg_start2's own
//  error text says only "Failed to setup server ports", the message says which and why.
static __thread char s_start_message[512];
static __thread bool s_starting;

//  civetweb's own messages (bind errors, bad requests). A request line may carry a query
//  string, which may hold a token: everything from '?' to the next blank or quote goes.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    char clean[512];
    size_t n = 0;
    bool skipping = false;
    for (const char *p = message; *p && n + 5 < sizeof clean; p++) {
        if (*p == '?' && !skipping) {
            skipping = true;
            memcpy (clean + n, "?...", 4);
            n += 4;
        }
        else if (skipping && (*p == ' ' || *p == '"' || *p == '\n'))
            skipping = false;
        if (!skipping)
            clean[n++] = *p;
    }
    while (n > 0 && (clean[n - 1] == '\n' || clean[n - 1] == '\r'))
        n--;
    clean[n] = '\0';
    if (s_starting && !*s_start_message)
        snprintf (s_start_message, sizeof s_start_message, "%s", clean);
    fks_log (FKS_LOG_DEBUG, NULL, NULL, "civetweb: %s", clean);
    return 1;                           /* handled: civetweb prints nothing itself */
}

static pthread_once_t s_civetweb_once = PTHREAD_ONCE_INIT;

static void
s_civetweb_init (void)
{
    mg_init_library (0);
}

int
fks_ops_listen (fks_ops_t *self, const char *bind_addr, int port)
{
    if (!self)
        return -1;
    if (self->ctx) {
        fks_error ("ops: already listening on port %d", self->port);
        return -1;
    }
    struct in_addr addr;
    if (!bind_addr || strlen (bind_addr) > 15 || inet_pton (AF_INET, bind_addr, &addr) != 1) {
        fks_error ("ops: bind address '%.64s' is not an IPv4 address (civetweb has no IPv6)",
                   bind_addr ? bind_addr : "(null)");
        return -1;
    }
    if (port < 0 || port > 65535) {
        fks_error ("ops: port %d is outside 0-65535", port);
        return -1;
    }
    pthread_once (&s_civetweb_once, s_civetweb_init);

    char ports[32];
    snprintf (ports, sizeof ports, "%s:%d", bind_addr, port);
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", S_THREADS,
        "request_timeout_ms", S_TIMEOUT_MS,
        "enable_keep_alive", "no",
        "max_request_size", "16384",
        "enable_directory_listing", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    struct mg_init_data init = { &callbacks, self, options };
    unsigned code = 0;
    char text[256] = "";
    struct mg_error_data error = { &code, text, sizeof text };
    s_start_message[0] = '\0';
    s_starting = true;
    struct mg_context *ctx = mg_start2 (&init, &error);
    s_starting = false;
    if (!ctx) {
        fks_error ("ops: cannot listen on %s: %s", ports,
                   *s_start_message ? s_start_message : *text ? text : "civetweb failed");
        return -1;
    }
    fks_ops_register (self, ctx);
    struct mg_server_port sp[4];
    int n = mg_get_server_ports (ctx, 4, sp);
    self->ctx = ctx;
    self->port = n > 0 && sp[0].port > 0 ? sp[0].port : port;
    fks_info ("ops: /health, /ready, /metrics on %s:%d", bind_addr, self->port);
    return 0;
}

int
fks_ops_port (fks_ops_t *self)
{
    return self && self->ctx ? self->port : -1;
}
