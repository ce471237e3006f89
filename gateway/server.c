/*  server.c - the gateway's civetweb server and what every handler shares.
 *
 *  Configuration is read once at start with common/config.h and then only read. The civetweb
 *  context gets its limits from it: num_threads, max_request_size (the header limit),
 *  request_timeout_ms (headers must arrive within it, counted from the first byte, and each
 *  read of a body must make progress within it), keep_alive_timeout_ms (an idle kept-alive
 *  connection gives its thread back after it), tcp_nodelay (replies are small: Nagle would add
 *  40 ms), and no document root (nothing is served from disk).
 *
 *  Replies are written as one buffer. A per-thread flag, reset by civetweb's begin_request
 *  callback, remembers when a connection must close after the reply; the same callbacks
 *  count the requests in flight for /metrics.
 *
 *  The security-event recorder logs each event at once and hands it to a thread that stores
 *  it (security_events plus a security.event envelope in the outbox, one statement) and
 *  publishes the envelope. A full queue drops events (counted): an attacker must not be able
 *  to make the gateway queue without bound or wait on the database.
 */
#include "gateway/server.h"
#include "bus/client.h"
#include "bus/envelope.h"
#include "common/config.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg.h"
#include "gateway/ratelimit.h"

#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

// ---------------------------------------------------------------------------------------------
//  Configuration

static void
s_wipe_free (char **p)
{
    if (*p) {
        volatile char *v = *p;
        for (size_t i = 0; v[i]; i++)
            v[i] = 0;
        free (*p);
        *p = NULL;
    }
}

void
fks_gateway_config_free (fks_gateway_config_t *cfg)
{
    if (!cfg)
        return;
    free (cfg->env);
    free (cfg->bind);
    s_wipe_free (&cfg->pg_url);         /* URLs may hold passwords */
    s_wipe_free (&cfg->redis_url);
    free (cfg->bus_url);
    free (cfg->bus_stream_url);
    s_wipe_free (&cfg->webhook_secret);
    s_wipe_free (&cfg->admin_key);
    free (cfg->allowlist);
    free (cfg->trusted_proxies);
    memset (cfg, 0, sizeof *cfg);
}

int
fks_gateway_config_load (fks_gateway_config_t *cfg, char *err, size_t cap)
{
    memset (cfg, 0, sizeof *cfg);
    fks_config_err_t e = { "" };
    int64_t v;
    bool b;
#define S_TRY(call) do { if ((call) < 0) goto fail; } while (0)
    S_TRY (fks_config_str ("FKS_ENV", "local", &cfg->env, &e));
    S_TRY (fks_config_str ("FKS_HTTP_BIND", "127.0.0.1", &cfg->bind, &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_PORT", 8001, 0, 65535, &v, &e));
    cfg->port = (int) v;
    S_TRY (fks_config_secret ("FKS_PG_URL", 1, &cfg->pg_url, &e));
    S_TRY (fks_config_secret ("FKS_REDIS_URL", 1, &cfg->redis_url, &e));
    S_TRY (fks_config_str ("FKS_BUS_URL", "tcp://127.0.0.1:5570", &cfg->bus_url, &e));
    S_TRY (fks_config_str ("FKS_BUS_STREAM_URL", "tcp://127.0.0.1:5571", &cfg->bus_stream_url,
                           &e));
    S_TRY (fks_config_secret ("FKS_WEBHOOK_SECRET", 16, &cfg->webhook_secret, &e));
    S_TRY (fks_config_secret ("FKS_ADMIN_KEY", 24, &cfg->admin_key, &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_THREADS", 64, 8, 1024, &v, &e));
    cfg->threads = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_STREAM_MAX", cfg->threads / 4, 0, cfg->threads / 2, &v,
                           &e));
    cfg->stream_max = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_STREAM_MAX_PER_KEY",
                           cfg->stream_max / 2 > 1 ? cfg->stream_max / 2 : 1, 1, 1024, &v, &e));
    cfg->stream_max_per_key = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_BODY_MAX", 64 * 1024, 1024, 64 * 1024, &cfg->body_max,
                           &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_HEADER_MAX", 16 * 1024, 2048, 256 * 1024,
                           &cfg->header_max, &e));
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_REQUEST_TIMEOUT", 5000, 100, 120000,
                                   &cfg->request_timeout_ms, &e));
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_KEEPALIVE_TIMEOUT", 5000, 10, 120000,
                                   &cfg->keepalive_timeout_ms, &e));
    S_TRY (fks_config_bool ("FKS_GATEWAY_KEEPALIVE", true, &b, &e));
    cfg->keep_alive = b;
    S_TRY (fks_config_int ("FKS_GATEWAY_COMMITTERS", 2, 1, 64, &v, &e));
    cfg->committers = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_BATCH_MAX", 256, 1, 4096, &v, &e));
    cfg->batch_max = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_QUEUE_MAX", 4096, 1, 1000000, &v, &e));
    cfg->queue_max = (int) v;
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_COMMIT_TIMEOUT", 1000, 10, 60000,
                                   &cfg->commit_timeout_ms, &e));
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_IDEM_WINDOW", 60000, 1000, 7LL * 86400 * 1000,
                                   &cfg->idem_window_ms, &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_REPLAY_WINDOW", 300, 1, 86400, &cfg->replay_window_s,
                           &e));
    S_TRY (fks_config_str ("FKS_GATEWAY_ALLOWLIST", "", &cfg->allowlist, &e));
    S_TRY (fks_config_str ("FKS_GATEWAY_TRUSTED_PROXIES", "", &cfg->trusted_proxies, &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_RATE_LIMIT_IP", 600, 0, INT64_C(1) << 40, &cfg->rate_ip,
                           &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_RATE_LIMIT_KEY", 1200, 0, INT64_C(1) << 40,
                           &cfg->rate_key, &e));
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_RATE_WINDOW", 60000, 1000, 86400 * 1000LL,
                                   &cfg->rate_window_ms, &e));
    S_TRY (fks_config_int ("FKS_GATEWAY_DB_POOL", 4, 1, 64, &v, &e));
    cfg->db_pool = (int) v;
    //  A REST query waiting longer (on a lock, or over a huge table) is cancelled and answered
    //  503, so a few slow ones cannot hold the whole pool.
    S_TRY (fks_config_int ("FKS_PG_STATEMENT_TIMEOUT_MS", 30000, 0, 3600000, &v, &e));
    cfg->statement_timeout_ms = (int) v;
    S_TRY (fks_config_int ("FKS_GATEWAY_STREAM_BUFFER", 4096, 64, 1 << 20, &v, &e));
    cfg->stream_buffer = (int) v;
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_STREAM_POLL", 250, 10, 60000,
                                   &cfg->stream_poll_ms, &e));
    S_TRY (fks_config_duration_ms ("FKS_GATEWAY_STREAM_HEARTBEAT", 15000, 100, 300000,
                                   &cfg->stream_heartbeat_ms, &e));
#undef S_TRY
    return 0;
fail:
    snprintf (err, cap, "%s", e.msg);
    fks_gateway_config_free (cfg);
    return -1;
}

// ---------------------------------------------------------------------------------------------
//  The server

struct fks_server_t {
    struct mg_context *ctx;
    const fks_gateway_config_t *cfg;
    int port;
};

static const fks_gateway_config_t *s_cfg;       /* for the reply helpers (one server per process) */
static __thread bool s_must_close;
static fks_metric_t *s_inflight;

static int
s_begin_request (struct mg_connection *conn)
{
    (void) conn;
    s_must_close = false;
    fks_metric_add (s_inflight, 1);
    return 0;                           /* civetweb goes on with the request */
}

static void
s_end_request (const struct mg_connection *conn, int status)
{
    (void) conn;
    (void) status;
    fks_metric_add (s_inflight, -1);
}

//  civetweb's own error messages (bad requests, socket errors). They may quote a request
//  line, whose query string may hold a token: everything from a '?' to the next blank goes.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    char clean[512];
    size_t n = 0;
    bool skipping = false;
    for (const char *p = message; *p && n + 4 < sizeof clean; p++) {
        if (*p == '?') {
            skipping = true;
            memcpy (clean + n, "?...", 4);
            n += 4;
            continue;
        }
        if (skipping && (*p == ' ' || *p == '"'))
            skipping = false;
        if (!skipping)
            clean[n++] = *p;
    }
    clean[n] = '\0';
    while (n > 0 && (clean[n - 1] == '\n' || clean[n - 1] == '\r'))
        clean[--n] = '\0';
    fks_log (FKS_LOG_DEBUG, NULL, NULL, "civetweb: %s", clean);
    return 1;                           /* handled: civetweb does not print it */
}

static const char *s_status_text (int status);

//  civetweb's own error answers - a request it could not read (headers over the limit, or cut
//  off by the request timeout), a bad HTTP version, a path no handler serves - in the
//  contract's JSON shape instead of its plain text, and a method it does not know as 501 (it
//  says 400). A request it could not read leaves the connection in an unknown state: it is
//  closed after the answer.
//  True when m is an HTTP method token (RFC 9110 tchar, 1..32 of them) that no HTTP server is
//  expected to know: civetweb refuses a method outside its list with a 400, and such a request
//  is well formed, only not served: 501.
static bool
s_unknown_method (const char *m)
{
    static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
        "OPTIONS", "TRACE", "PATCH", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK",
        "UNLOCK", "MKCALENDAR", "REPORT", NULL };
    size_t n = m ? strlen (m) : 0;
    if (n == 0 || n > 32 || strspn (m, "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "abcdefghijklmnopqrstuvwxyz") != n)
        return false;
    for (const char *const *k = known; *k; k++)
        if (strcmp (m, *k) == 0)
            return false;
    return true;
}

static int
s_http_error (struct mg_connection *conn, int status, const char *msg)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (status == 400 && ri && s_unknown_method (ri->request_method)) {
        fks_http_must_close (conn);
        fks_http_error (conn, 501, NULL, "not_implemented", NULL,
                        "this server does not implement that HTTP method");
        return 0;
    }
    const char *code;
    switch (status) {
        case 404: code = "not_found"; break;
        case 405: code = "method_not_allowed"; break;
        case 408: code = "request_timeout"; break;
        case 413: code = "too_large"; break;
        case 431: code = "headers_too_large"; break;
        case 505: code = "http_version_not_supported"; break;
        default: code = status >= 500 ? "internal" : "bad_request"; break;
    }
    if (status != 404 && status != 405)
        fks_http_must_close (conn);
    fks_http_error (conn, status, NULL, code, NULL,
                    msg && *msg ? msg : s_status_text (status));
    return 0;                           /* answered: civetweb sends nothing of its own */
}

fks_server_t *
fks_server_new (const fks_gateway_config_t *cfg)
{
    fks_server_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    s_cfg = cfg;
    s_inflight = fks_metric_get (fks_gauge_family ("fks_gateway_requests_in_flight",
        "HTTP requests being served right now", NULL, 0), NULL);

    char ports[128], threads[16], header_max[24], req_to[24], ka_to[24], queue[16], ws_to[24];
    snprintf (ports, sizeof ports, "%s:%d", cfg->bind, cfg->port);
    snprintf (threads, sizeof threads, "%d", cfg->threads);
    snprintf (header_max, sizeof header_max, "%" PRId64, cfg->header_max);
    snprintf (req_to, sizeof req_to, "%" PRId64, cfg->request_timeout_ms);
    snprintf (ka_to, sizeof ka_to, "%" PRId64, cfg->keepalive_timeout_ms);
    snprintf (queue, sizeof queue, "%d", cfg->threads * 4);
    snprintf (ws_to, sizeof ws_to, "%" PRId64, cfg->stream_heartbeat_ms * 3);
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", threads,
        "max_request_size", header_max,
        "request_timeout_ms", req_to,
        "keep_alive_timeout_ms", ka_to,
        "enable_keep_alive", cfg->keep_alive ? "yes" : "no",
        "tcp_nodelay", "1",
        "connection_queue", queue,
        "listen_backlog", "1024",
        "websocket_timeout_ms", ws_to,
        "enable_directory_listing", "no",
        "decode_url", "yes",
        NULL
    };
    struct mg_callbacks cb;
    memset (&cb, 0, sizeof cb);
    cb.begin_request = s_begin_request;
    cb.end_request = s_end_request;
    cb.log_message = s_log_message;
    cb.http_error = s_http_error;
    self->ctx = mg_start (&cb, self, options);
    if (!self->ctx) {
        fks_error ("cannot listen on %s (FKS_HTTP_BIND / FKS_GATEWAY_PORT): is the port in use?",
                   ports);
        free (self);
        return NULL;
    }
    struct mg_server_port sp[4];
    int n = mg_get_server_ports (self->ctx, 4, sp);
    self->port = n > 0 ? sp[0].port : cfg->port;
    return self;
}

void
fks_server_destroy (fks_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_server_t *self = *self_p;
    if (self->ctx)
        mg_stop (self->ctx);
    free (self);
    *self_p = NULL;
}

struct mg_context *
fks_server_ctx (fks_server_t *self)
{
    return self->ctx;
}

int
fks_server_port (fks_server_t *self)
{
    return self->port;
}

// ---------------------------------------------------------------------------------------------
//  HTTP helpers

static const char *
s_status_text (int status)
{
    switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default:  return "Status";
    }
}

//  Whether the connection stays open after this reply (civetweb's rule plus ours).
static bool
s_keep_alive (struct mg_connection *conn)
{
    if (s_must_close || !s_cfg || !s_cfg->keep_alive)
        return false;
    const char *c = mg_get_header (conn, "Connection");
    if (c)
        return strcasestr (c, "keep-alive") != NULL;
    const struct mg_request_info *ri = mg_get_request_info (conn);
    return ri && ri->http_version && strcmp (ri->http_version, "1.1") == 0;
}

void
fks_http_must_close (struct mg_connection *conn)
{
    s_must_close = true;
    mg_disable_connection_keep_alive (conn);
}

int
fks_http_reply (struct mg_connection *conn, int status, const char *content_type,
                const char *extra_headers, const void *body, size_t len)
{
    bool ka = s_keep_alive (conn);
    if (!ka)
        mg_disable_connection_keep_alive (conn);
    char head[1024];
    int hn = snprintf (head, sizeof head,
                       "HTTP/1.1 %d %s\r\n"
                       "%s%s%s"
                       "Content-Length: %zu\r\n"
                       "Cache-Control: no-store\r\n"
                       "X-Content-Type-Options: nosniff\r\n"
                       "Connection: %s\r\n",
                       status, s_status_text (status),
                       content_type ? "Content-Type: " : "", content_type ? content_type : "",
                       content_type ? "\r\n" : "",
                       len, ka ? "keep-alive" : "close");
    if (hn < 0 || (size_t) hn >= sizeof head)
        return status;
    size_t extra = extra_headers ? strlen (extra_headers) : 0;
    size_t total = (size_t) hn + extra + 2 + len;
    char stackbuf[4096];
    char *out = total <= sizeof stackbuf ? stackbuf : malloc (total);
    if (!out) {
        fks_http_must_close (conn);
        return status;
    }
    memcpy (out, head, (size_t) hn);
    if (extra)
        memcpy (out + hn, extra_headers, extra);
    memcpy (out + hn + extra, "\r\n", 2);
    //  A HEAD response has no content (RFC 9110, 9.3.2): its Content-Length says what a GET
    //  would get. Written anyway, the body would be read as the start of the next response on
    //  a kept-alive connection.
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (ri && ri->request_method && strcmp (ri->request_method, "HEAD") == 0)
        total -= len;
    else if (len)
        memcpy (out + hn + extra + 2, body, len);
    mg_write (conn, out, total);
    if (out != stackbuf)
        free (out);
    return status;
}

int
fks_http_json (struct mg_connection *conn, int status, const char *json, size_t len)
{
    return fks_http_reply (conn, status, "application/json", NULL, json, len);
}

int
fks_http_error (struct mg_connection *conn, int status, const char *extra_headers,
                const char *code, const char *field, const char *message)
{
    char code_e[128], field_e[256], msg_e[1024], body[1536];
    fks_json_escape (code_e, sizeof code_e, code, strlen (code));
    fks_json_escape (msg_e, sizeof msg_e, message, strlen (message));
    int n;
    if (field) {
        fks_json_escape (field_e, sizeof field_e, field, strlen (field));
        n = snprintf (body, sizeof body,
                      "{\"error\":{\"code\":\"%s\",\"field\":\"%s\",\"message\":\"%s\"}}",
                      code_e, field_e, msg_e);
    }
    else
        n = snprintf (body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                      code_e, msg_e);
    if (n < 0 || (size_t) n >= sizeof body)
        n = snprintf (body, sizeof body, "{\"error\":{\"code\":\"%s\"}}", code_e);
    return fks_http_reply (conn, status, "application/json", extra_headers, body, (size_t) n);
}

//  The body's deadline. civetweb's mg_read waits for every byte it was asked for as long as
//  bytes keep coming, whatever the total time, so checking the clock between reads does not
//  stop a client that trickles its body a byte at a time. A per-thread timer armed at the
//  deadline (and every S_BODY_POKE_MS after it, so a signal that lands outside the poll is
//  sent again) signals the reading thread; the handler does nothing, but civetweb's poll
//  fails with EINTR, mg_read returns what it has, and the read loop sees the deadline. The
//  timer fires only while armed (between s_body_timer_arm and _disarm) and only at this
//  thread. Without a timer (timer_create refused), the clock is still checked between reads.
#define S_BODY_POKE_MS 50

typedef struct {
    timer_t id;
} s_body_timer_t;

static pthread_once_t s_body_once = PTHREAD_ONCE_INIT;
static pthread_key_t s_body_key;
static bool s_body_ok;
static __thread s_body_timer_t *s_body_timer;
static __thread bool s_body_failed;

static void
s_body_alarm (int sig)
{
    (void) sig;
}

static void
s_body_timer_free (void *p)
{
    s_body_timer_t *t = p;
    timer_delete (t->id);
    free (t);
}

static void
s_body_init (void)
{
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_body_alarm;
    sigemptyset (&sa.sa_mask);
    s_body_ok = sigaction (SIGRTMIN, &sa, NULL) == 0
                && pthread_key_create (&s_body_key, s_body_timer_free) == 0;
}

//  The no-op handler installed and SIGRTMIN unblocked on this thread. False when not.
static bool
s_wake_ready (void)
{
    pthread_once (&s_body_once, s_body_init);
    if (!s_body_ok)
        return false;
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGRTMIN);
    return pthread_sigmask (SIG_UNBLOCK, &set, NULL) == 0;
}

bool
fks_http_interruptible (void)
{
    return s_wake_ready ();
}

int
fks_http_interrupt (pthread_t thread)
{
    return pthread_kill (thread, SIGRTMIN) == 0 ? 0 : -1;
}

//  Arms this thread's timer to fire in ms, then every S_BODY_POKE_MS. False when there is none.
static bool
s_body_timer_arm (int64_t ms)
{
    if (s_body_failed || !s_wake_ready ())
        return false;
    if (!s_body_timer) {
        s_body_timer_t *t = malloc (sizeof *t);
        struct sigevent ev;
        memset (&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = SIGRTMIN;
        ev._sigev_un._tid = gettid ();      /* sigev_notify_thread_id (glibc >= 2.37) */
        if (!t || timer_create (CLOCK_MONOTONIC, &ev, &t->id) != 0) {
            fks_warn ("gateway: no body timer for this thread (%s); a body is timed between "
                      "reads only", strerror (errno));
            free (t);
            s_body_failed = true;
            return false;
        }
        if (pthread_setspecific (s_body_key, t) != 0) {
            s_body_timer_free (t);
            s_body_failed = true;
            return false;
        }
        s_body_timer = t;
    }
    if (ms < 1)
        ms = 1;
    struct itimerspec its = {
        .it_value = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 },
        .it_interval = { .tv_sec = 0, .tv_nsec = S_BODY_POKE_MS * 1000000L },
    };
    return timer_settime (s_body_timer->id, 0, &its, NULL) == 0;
}

static void
s_body_timer_disarm (void)
{
    struct itimerspec off;
    memset (&off, 0, sizeof off);
    timer_settime (s_body_timer->id, 0, &off, NULL);
}

int
fks_http_read_body (struct mg_connection *conn, char *buf, size_t cap, size_t *len_out)
{
    *len_out = 0;
    const struct mg_request_info *ri = mg_get_request_info (conn);
    long long declared = ri ? ri->content_length : -1;
    if (declared > (long long) cap) {
        fks_http_must_close (conn);
        return 1;
    }
    if (declared == 0)
        return 0;
    int64_t timeout_ms = s_cfg ? s_cfg->request_timeout_ms : 5000;
    int64_t deadline = fks_mono_ns () / 1000000 + timeout_ms;
    bool armed = s_body_timer_arm (timeout_ms);
    int rc = 0;
    size_t len = 0;
    for (;;) {
        size_t want = declared >= 0 ? (size_t) declared - len : cap - len;
        if (declared >= 0 && want == 0)
            break;
        if (want == 0) {
            //  Unknown length and the buffer is full: one more byte means too large.
            char extra;
            int r = mg_read (conn, &extra, 1);
            rc = r > 0 ? 1 : r < 0 ? -1 : 0;
            break;
        }
        int r = mg_read (conn, buf + len, want);
        if (r == 0) {
            if (declared >= 0 && len < (size_t) declared)
                rc = -1;                /* the client closed before sending it all */
            break;
        }
        if (r < 0) {
            rc = -1;                    /* a socket error, or the timer cut a slow read */
            break;
        }
        len += (size_t) r;
        if (fks_mono_ns () / 1000000 > deadline && (declared < 0 || len < (size_t) declared)) {
            rc = -1;                    /* a body trickling in: the thread is not theirs */
            break;
        }
    }
    if (armed)
        s_body_timer_disarm ();
    if (rc != 0) {
        fks_http_must_close (conn);
        return rc;
    }
    *len_out = len;
    return 0;
}

int
fks_http_query_nth (struct mg_connection *conn, const char *name, int nth, char *out, size_t cap)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (cap == 0)
        return -2;
    out[0] = '\0';
    if (!ri || !ri->query_string || nth < 0)
        return -1;
    size_t qlen = strnlen (ri->query_string, 16384);
    int n = mg_get_var2 (ri->query_string, qlen, name, out, cap, nth);
    if (n == -1)
        return -1;
    //  A %00 decodes to a NUL the callers' C strings would stop at: ?symbol=BTC%00USDT was
    //  read as BTC. Such a value is not one any parameter takes.
    if (n < 0 || memchr (out, '\0', (size_t) n)) {
        out[0] = '\0';
        return -2;
    }
    return n;
}

int
fks_http_query (struct mg_connection *conn, const char *name, char *out, size_t cap)
{
    return fks_http_query_nth (conn, name, 0, out, cap);
}

//  Whether the name (nl bytes, raw) is in list (NULL-terminated, may be NULL), without case.
static bool
s_listed (const char *const *list, const char *name, size_t nl)
{
    for (const char *const *m = list; m && *m; m++)
        if (strlen (*m) == nl && strncasecmp (*m, name, nl) == 0)
            return true;
    return false;
}

fks_query_check_t
fks_http_query_check (struct mg_connection *conn, const char *const *many,
                      const char *const *known, char *name, size_t cap)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (cap)
        name[0] = '\0';
    if (!ri || !ri->query_string)
        return FKS_QUERY_OK;
    //  The names as civetweb's mg_get_var2 matches them: raw (not decoded), without case.
    enum { S_NAMES_MAX = 64 };
    const char *at[S_NAMES_MAX];
    size_t len[S_NAMES_MAX];
    int n = 0;
    const char *p = ri->query_string;
    const char *end = p + strnlen (p, 16384);
    while (p < end) {
        const char *amp = memchr (p, '&', (size_t) (end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr (p, '=', (size_t) (stop - p));
        size_t nl = (size_t) ((eq ? eq : stop) - p);
        if (nl > 0 && known && !s_listed (known, p, nl)) {
            snprintf (name, cap, "%.*s", (int) nl, p);
            return FKS_QUERY_UNKNOWN;
        }
        if (nl > 0 && !s_listed (many, p, nl)) {
            for (int i = 0; i < n; i++)
                if (len[i] == nl && strncasecmp (at[i], p, nl) == 0) {
                    snprintf (name, cap, "%.*s", (int) nl, p);
                    return FKS_QUERY_REPEATED;
                }
            if (n == S_NAMES_MAX) {
                snprintf (name, cap, "query");
                return FKS_QUERY_TOO_MANY;      /* more parameters than any route takes */
            }
            at[n] = p;
            len[n++] = nl;
        }
        p = stop + 1;
    }
    return FKS_QUERY_OK;
}
const char *
fks_http_header (struct mg_connection *conn, const char *name)
{
    return mg_get_header (conn, name);
}

const char *
fks_http_header_all (struct mg_connection *conn, const char *name, char *buf, size_t cap)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (!ri || cap == 0)
        return NULL;
    size_t len = 0;
    bool found = false;
    //  civetweb keeps at most MG_MAX_HEADERS (64) field lines: the loop is bounded by it.
    for (int i = 0; i < ri->num_headers && i < MG_MAX_HEADERS; i++) {
        const struct mg_header *h = &ri->http_headers[i];
        if (!h->name || !h->value || strcasecmp (h->name, name) != 0)
            continue;
        const char *parts[2] = { found ? ", " : "", h->value };
        found = true;
        for (int k = 0; k < 2; k++) {
            size_t n = strlen (parts[k]);
            if (n > cap - 1 - len)
                n = cap - 1 - len;
            memcpy (buf + len, parts[k], n);
            len += n;
        }
    }
    if (!found)
        return NULL;
    buf[len] = '\0';
    return buf;
}

const char *
fks_http_path (struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    return ri && ri->local_uri ? ri->local_uri : "/";
}

const char *
fks_http_method (struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    return ri && ri->request_method ? ri->request_method : "";
}

const char *
fks_http_peer (struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info (conn);
    return ri ? ri->remote_addr : "";
}

// ---------------------------------------------------------------------------------------------
//  Security events

#define S_SEC_QUEUE 1024

typedef struct {
    char kind[64];
    char addr[64];
    char path[256];
    char detail[512];
    int64_t ts_ns;
} s_sec_event_t;

struct fks_security_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    s_sec_event_t *queue;
    size_t head, count;
    bool stop;
    pthread_t thread;
    bool have_thread;
    fks_pg_t *pg;
    fks_bus_client_t *bus;
    fks_ratelimit_t *rl;
    int64_t per_source;
    fks_metric_family_t *m_events;
    fks_metric_t *m_dropped;
    bool db_down_logged;
};

static const fks_pg_stmt_t s_sec_stmts[] = {
    { "fks_security_insert",
      "WITH s AS (INSERT INTO security_events (id, kind, remote_addr, path, detail)"
      "           VALUES ($1::uuid, $2, $3, $4, $5))"
      " INSERT INTO events (id, type, corr, src, ts, envelope)"
      " VALUES ($6::uuid, 'security.event', NULL, 'gateway',"
      "         to_timestamp ($7::bigint / 1000000.0), $8)", 8 },
};

static bool
s_kind_ok (const char *k)
{
    if (!k || !(*k >= 'a' && *k <= 'z'))
        return false;
    size_t n = 0;
    for (; k[n]; n++)
        if (n >= 63 || !((k[n] >= 'a' && k[n] <= 'z') || (k[n] >= '0' && k[n] <= '9')
                         || k[n] == '_' || k[n] == '.'))
            return false;
    return true;
}

//  Copies src into dst (cap) keeping printable ASCII only: what reaches the table and the
//  log is plain text.
static void
s_copy_printable (char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (const char *p = src ? src : ""; *p && n + 1 < cap; p++)
        dst[n++] = ((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f) ? *p : '?';
    dst[n] = '\0';
}

static void
s_sec_store (fks_security_t *self, const s_sec_event_t *ev)
{
    fks_id_t id, env_id;
    if (fks_id_new (&id) != 0)
        return;
    fks_envelope_hdr_t hdr;
    if (fks_envelope_hdr_init (&hdr, "security.event", "gateway", NULL, NULL) != 0)
        return;
    hdr.ts = ev->ts_ns;
    env_id = hdr.id;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, ev->detail[0] ? 3 : 2);
    fks_pack_kv_str (&pk, "kind", ev->kind);
    fks_pack_kv_str (&pk, "source_addr", ev->addr[0] ? ev->addr : "unknown");
    if (ev->detail[0])
        fks_pack_kv_str (&pk, "detail", ev->detail);
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    fks_envelope_err_t eerr;
    if (fks_envelope_encode (&hdr, body.data, body.size, &frame, &eerr) != 0) {
        fks_warn ("security event not stored: %s", eerr.msg);
        goto done;
    }
    char id_s[FKS_ID_STR_SIZE], env_s[FKS_ID_STR_SIZE], ts_s[24];
    fks_id_format (&id, id_s);
    fks_id_format (&env_id, env_s);
    snprintf (ts_s, sizeof ts_s, "%" PRId64, ev->ts_ns / 1000);
    const char *values[8] = { id_s, ev->kind, ev->addr[0] ? ev->addr : NULL,
                              ev->path[0] ? ev->path : NULL, ev->detail, env_s, ts_s,
                              frame.data };
    int lengths[8] = { 0, 0, 0, 0, 0, 0, 0, (int) frame.size };
    int formats[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (self->pg, "fks_security_insert", 8, values, lengths, formats,
                               &perr);
    if (!r) {
        if (!self->db_down_logged)
            fks_warn ("security event not stored: %s", perr.msg);
        self->db_down_logged = true;
        goto done;
    }
    PQclear (r);
    self->db_down_logged = false;
    if (self->bus)
        fks_bus_publish (self->bus, "security.event", frame.data, frame.size);
done:
    msgpack_sbuffer_destroy (&frame);
    msgpack_sbuffer_destroy (&body);
}

static void *
s_sec_thread (void *arg)
{
    fks_security_t *self = arg;
    pthread_mutex_lock (&self->mutex);
    for (;;) {
        while (self->count == 0 && !self->stop)
            pthread_cond_wait (&self->cond, &self->mutex);
        if (self->count == 0 && self->stop)
            break;
        s_sec_event_t ev = self->queue[self->head];
        self->head = (self->head + 1) % S_SEC_QUEUE;
        self->count--;
        pthread_mutex_unlock (&self->mutex);
        s_sec_store (self, &ev);
        pthread_mutex_lock (&self->mutex);
    }
    pthread_mutex_unlock (&self->mutex);
    return NULL;
}

fks_security_t *
fks_security_new (const char *pg_url, fks_bus_client_t *bus, fks_ratelimit_t *rl,
                  int64_t per_source)
{
    fks_security_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    self->bus = bus;
    self->rl = rl;
    self->per_source = per_source;
    self->queue = calloc (S_SEC_QUEUE, sizeof *self->queue);
    static const char *const kind_label[] = { "kind" };
    self->m_events = fks_counter_family ("fks_gateway_security_events_total",
        "Security events (failed authentication, refused source), by kind", kind_label, 1);
    self->m_dropped = fks_metric_get (fks_counter_family (
        "fks_gateway_security_events_unstored_total",
        "Security events logged but not stored (per-source bound or full queue)", NULL, 0),
        NULL);
    fks_pg_err_t perr;
    if (pg_url)
        self->pg = fks_pg_new (pg_url, s_sec_stmts, 1, &perr);
    if (!self->queue || (pg_url && !self->pg)) {
        if (pg_url && !self->pg)
            fks_error ("security events: %s", perr.msg);
        fks_security_destroy (&self);
        return NULL;
    }
    if (self->pg) {
        if (pthread_create (&self->thread, NULL, s_sec_thread, self) != 0) {
            fks_security_destroy (&self);
            return NULL;
        }
        self->have_thread = true;
    }
    return self;
}

void
fks_security_destroy (fks_security_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_security_t *self = *self_p;
    if (self->have_thread) {
        pthread_mutex_lock (&self->mutex);
        self->stop = true;
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->mutex);
        pthread_join (self->thread, NULL);
    }
    fks_pg_destroy (&self->pg);
    free (self->queue);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

void
fks_security_record (fks_security_t *self, const char *kind, const char *remote_addr,
                     const char *path, const char *detail)
{
    if (!self || !s_kind_ok (kind))
        return;
    s_sec_event_t ev;
    memset (&ev, 0, sizeof ev);
    snprintf (ev.kind, sizeof ev.kind, "%s", kind);
    s_copy_printable (ev.addr, sizeof ev.addr, remote_addr);
    s_copy_printable (ev.path, sizeof ev.path, path);
    s_copy_printable (ev.detail, sizeof ev.detail, detail);
    ev.ts_ns = fks_now_ns ();
    fks_metric_inc (fks_metric_get1 (self->m_events, kind));

    //  Past the per-source bound an event is only counted and logged at debug level, so a
    //  flood of bad requests floods neither the table nor the log.
    bool bounded = false;
    if (self->rl && self->per_source > 0) {
        char key[160];
        snprintf (key, sizeof key, "%s|%s", ev.kind, ev.addr);
        int retry;
        bounded = fks_ratelimit_hit (self->rl, "security", key, self->per_source, &retry) != 0;
    }
    char fields[1024] = "";
    fks_log_field_str (fields, sizeof fields, "kind", ev.kind);
    fks_log_field_str (fields, sizeof fields, "remote_addr", ev.addr);
    fks_log_field_str (fields, sizeof fields, "path", ev.path);
    fks_log (bounded ? FKS_LOG_DEBUG : FKS_LOG_WARN, NULL, fields, "security event: %s",
             ev.detail);
    if (bounded) {
        fks_metric_inc (self->m_dropped);
        return;
    }
    pthread_mutex_lock (&self->mutex);
    bool full = self->count >= S_SEC_QUEUE || !self->have_thread;
    if (!full) {
        self->queue[(self->head + self->count) % S_SEC_QUEUE] = ev;
        self->count++;
        pthread_cond_signal (&self->cond);
    }
    pthread_mutex_unlock (&self->mutex);
    if (full)
        fks_metric_inc (self->m_dropped);
}
