/*  server.h - the gateway's civetweb server and what every handler shares.
 *
 *  fks-gateway is one civetweb context on FKS_GATEWAY_PORT serving webhooks (webhook.c), the
 *  REST API (api.c), the event stream (stream.c) and /health, /ready, /metrics (common/ops.c).
 *  This module owns the context and its limits - a fixed pool of threads, each serving one
 *  connection at a time, so request, header and keep-alive timeouts bound what a slow or idle
 *  client can hold, and stream clients are capped well below the pool (stream.c) - plus the
 *  things every handler needs: the gateway's configuration, reading a bounded body, query
 *  parameters, writing a whole response in one write, the JSON error shape of the contract,
 *  a string builder for JSON bodies, and the security-event recorder.
 *
 *  Responses: every reply goes out as one buffer (status line, headers, body) with a
 *  Content-Length, so keep-alive works and a small reply costs one send. The Connection header
 *  follows the client's wish and FKS_GATEWAY_KEEPALIVE, and is "close" after
 *  fks_http_must_close (e.g. a 413 whose body was not read).
 */
#ifndef FKS_SERVER_H
#define FKS_SERVER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sbuf.h"

struct mg_connection;
struct mg_context;
typedef struct fks_bus_client_t fks_bus_client_t;
typedef struct fks_ratelimit_t fks_ratelimit_t;

// ---------------------------------------------------------------------------------------------
//  Configuration (FKS_* environment variables; see docs/ARCHITECTURE.gateway.md for the table)

typedef struct {
    char *env;                      /* FKS_ENV, default "local" */
    char *bind;                     /* FKS_HTTP_BIND, default 127.0.0.1 */
    int port;                       /* FKS_GATEWAY_PORT, default 8001 (0: any, for tests) */
    char *pg_url;                   /* FKS_PG_URL, required */
    char *redis_url;                /* FKS_REDIS_URL, required */
    char *bus_url;                  /* FKS_BUS_URL, default tcp://127.0.0.1:5570 */
    char *bus_stream_url;           /* FKS_BUS_STREAM_URL, default tcp://127.0.0.1:5571 */
    char *webhook_secret;           /* FKS_WEBHOOK_SECRET, required, >= 16 bytes */
    char *admin_key;                /* FKS_ADMIN_KEY, required, >= 24 bytes */
    int threads;                    /* FKS_GATEWAY_THREADS, default 64 */
    int stream_max;                 /* FKS_GATEWAY_STREAM_MAX, default threads / 4 */
    int stream_max_per_key;         /* FKS_GATEWAY_STREAM_MAX_PER_KEY, default stream_max / 2 */
    int64_t body_max;               /* FKS_GATEWAY_BODY_MAX, default 64 KiB */
    int64_t header_max;             /* FKS_GATEWAY_HEADER_MAX, default 16 KiB */
    int64_t request_timeout_ms;     /* FKS_GATEWAY_REQUEST_TIMEOUT, default 5 s */
    int64_t keepalive_timeout_ms;   /* FKS_GATEWAY_KEEPALIVE_TIMEOUT, default 5 s */
    bool keep_alive;                /* FKS_GATEWAY_KEEPALIVE, default yes */
    int committers;                 /* FKS_GATEWAY_COMMITTERS, default 2 */
    int batch_max;                  /* FKS_GATEWAY_BATCH_MAX, default 256 */
    int queue_max;                  /* FKS_GATEWAY_QUEUE_MAX, default 4096 */
    int64_t commit_timeout_ms;      /* FKS_GATEWAY_COMMIT_TIMEOUT, default 1 s */
    int64_t idem_window_ms;         /* FKS_GATEWAY_IDEM_WINDOW, default 60 s */
    int64_t replay_window_s;        /* FKS_GATEWAY_REPLAY_WINDOW, default 300 s */
    char *allowlist;                /* FKS_GATEWAY_ALLOWLIST, default "" (any source) */
    char *trusted_proxies;          /* FKS_GATEWAY_TRUSTED_PROXIES, default "" */
    int64_t rate_ip;                /* FKS_GATEWAY_RATE_LIMIT_IP per window, default 600 */
    int64_t rate_key;               /* FKS_GATEWAY_RATE_LIMIT_KEY per window, default 1200 */
    int64_t rate_window_ms;         /* FKS_GATEWAY_RATE_WINDOW, default 60 s */
    int db_pool;                    /* FKS_GATEWAY_DB_POOL, default 4 */
    int statement_timeout_ms;       /* FKS_PG_STATEMENT_TIMEOUT_MS (REST pool), default 30 s */
    int stream_buffer;              /* FKS_GATEWAY_STREAM_BUFFER events, default 4096 */
    int64_t stream_poll_ms;         /* FKS_GATEWAY_STREAM_POLL, default 250 ms */
    int64_t stream_heartbeat_ms;    /* FKS_GATEWAY_STREAM_HEARTBEAT, default 15 s */
} fks_gateway_config_t;

/*  Reads every setting. Returns 0, or -1 with a message naming the variable in err (cap
 *  bytes; a secret's value is never quoted). On failure cfg holds nothing to free. */
int fks_gateway_config_load (fks_gateway_config_t *cfg, char *err, size_t cap);

/*  Frees the strings (wiping the secrets first). */
void fks_gateway_config_free (fks_gateway_config_t *cfg);

// ---------------------------------------------------------------------------------------------
//  The server

typedef struct fks_server_t fks_server_t;

/*  Starts civetweb on cfg's bind address and port with cfg's limits (cfg must outlive the
 *  server). Handlers are added afterwards with civetweb's mg_set_request_handler on
 *  fks_server_ctx. Returns NULL (logged) when the port cannot be bound. */
fks_server_t *fks_server_new (const fks_gateway_config_t *cfg);

/*  Stops accepting, waits for the requests in flight, frees. NULL is a no-op. */
void fks_server_destroy (fks_server_t **self_p);

struct mg_context *fks_server_ctx (fks_server_t *self);

/*  The port bound (useful when cfg->port is 0). */
int fks_server_port (fks_server_t *self);

// ---------------------------------------------------------------------------------------------
//  HTTP helpers for handlers (all called from civetweb request threads)

/*  Sends a whole response: status, Content-Type (may be NULL for no body), extra header lines
 *  (each ending in \r\n; may be NULL), and body. Returns status (a civetweb handler returns it
 *  to say the request was served). */
int fks_http_reply (struct mg_connection *conn, int status, const char *content_type,
                    const char *extra_headers, const void *body, size_t len);

/*  fks_http_reply with application/json. */
int fks_http_json (struct mg_connection *conn, int status, const char *json, size_t len);

/*  The contract's error body {"error":{"code","field","message"}} (field omitted when NULL),
 *  with extra header lines (may be NULL). Returns status. */
int fks_http_error (struct mg_connection *conn, int status, const char *extra_headers,
                    const char *code, const char *field, const char *message);

/*  Makes the connection close after this response (the body was not read, or the client must
 *  not be kept). */
void fks_http_must_close (struct mg_connection *conn);

/*  Reads the request body into buf (cap bytes). Returns 0 with *len_out set, 1 when the body
 *  is larger than cap (a declared Content-Length is refused before reading anything; the
 *  connection is marked to close), -1 when the client stopped sending or was too slow
 *  (request timeout). */
int fks_http_read_body (struct mg_connection *conn, char *buf, size_t cap, size_t *len_out);

/*  One URL-decoded query parameter into out (cap bytes, NUL-terminated): the first of that
 *  name (matched without case, as civetweb does). Returns its length, -1 when absent, -2 when
 *  longer than cap - 1 or when it decodes to a NUL byte (%00), which no parameter may hold. */
int fks_http_query (struct mg_connection *conn, const char *name, char *out, size_t cap);

/*  fks_http_query for the nth (0: the first) parameter of that name. */
int fks_http_query_nth (struct mg_connection *conn, const char *name, int nth, char *out,
                        size_t cap);

/*  The query's parameter names checked (raw, without case, as civetweb matches them): one
 *  not in `known` (a NULL-terminated list; NULL: any name) is FKS_QUERY_UNKNOWN, one given
 *  twice (except the names in `many`, which may repeat; may be NULL) FKS_QUERY_REPEATED, more
 *  than 64 FKS_QUERY_TOO_MANY; the first such name (or "query") goes to name (cap bytes). A
 *  repeated parameter is ambiguous (fks_http_query reads the first, a client or a proxy may
 *  mean the last), and an unknown one is most often a misspelt filter that would be ignored. */
typedef enum {
    FKS_QUERY_OK = 0, FKS_QUERY_UNKNOWN, FKS_QUERY_REPEATED, FKS_QUERY_TOO_MANY
} fks_query_check_t;
fks_query_check_t fks_http_query_check (struct mg_connection *conn, const char *const *many,
                                        const char *const *known, char *name, size_t cap);

/*  A request header, or NULL. */
const char *fks_http_header (struct mg_connection *conn, const char *name);

/*  Every field line of header `name` (case-insensitive), joined with ", " in the order received,
 *  as a recipient may combine them (RFC 9110, 5.3), in buf: a header a client sent twice is read
 *  whole, not only its first line. Returns buf, or NULL when the request has no such header. A
 *  result longer than cap - 1 bytes is cut at cap - 1: a caller with a length limit sizes buf at
 *  least one byte beyond it, so that a cut value still exceeds the limit. */
const char *fks_http_header_all (struct mg_connection *conn, const char *name, char *buf,
                                 size_t cap);

/*  Lets another thread cut this civetweb thread's wait on its client short: after it,
 *  fks_http_interrupt (this thread) makes a read or write the thread is blocked in fail
 *  (civetweb's poll returns EINTR; the signal's handler does nothing). Used where a handler
 *  has handed its connection to a thread of its own. False when signals cannot be used. */
bool fks_http_interruptible (void);
int fks_http_interrupt (pthread_t thread);

/*  The path (without query string), the method, and the peer address of the request. */
const char *fks_http_path (struct mg_connection *conn);
const char *fks_http_method (struct mg_connection *conn);
const char *fks_http_peer (struct mg_connection *conn);

// ---------------------------------------------------------------------------------------------
//  Security events

typedef struct fks_security_t fks_security_t;

/*  A recorder of security events: each goes to the log at once, and is persisted by a
 *  background thread in security_events together with a security.event envelope in the
 *  events outbox (one transaction), then published on bus (may be NULL). Persisting is
 *  bounded: at most `per_source` events of one kind from one address per rate window are
 *  stored (the rest are counted and logged at debug level), and the queue holds at most 1024
 *  events. rl may be NULL (no per-source bound). */
fks_security_t *fks_security_new (const char *pg_url, fks_bus_client_t *bus,
                                  fks_ratelimit_t *rl, int64_t per_source);
void fks_security_destroy (fks_security_t **self_p);

/*  Records one event: kind matches ^[a-z][a-z0-9_.]{0,63}$ (e.g. "auth.bad_secret"),
 *  remote_addr and path may be NULL, detail is a short English sentence that must never hold
 *  a secret. Never blocks. Thread-safe. */
void fks_security_record (fks_security_t *self, const char *kind, const char *remote_addr,
                          const char *path, const char *detail);

#endif
