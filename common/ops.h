/*  ops.h - the operations endpoints every FKS process serves: /health, /ready and /metrics.
 *
 *  GET /health answers 200 {"status":"healthy","env":"<FKS_ENV>"} while the process runs (and,
 *  when the process set a liveness check, while that passes: else 503 {"status":"unhealthy",
 *  "reason":"..."}, so that Kubernetes' liveness probe restarts a process that is stuck).
 *  GET /ready calls the process's readiness check (PostgreSQL, Redis, bus...) and answers 200
 *  {"status":"ready"} or 503 {"status":"not_ready","reason":"..."}; GET /metrics renders the
 *  metrics registry in Prometheus text format (text/plain; version=0.0.4). HEAD answers the
 *  same headers without a body; other methods on these paths get 405 with Allow: GET, HEAD.
 *  Only the exact paths are answered (a query string is ignored; "/health/x" is not ours).
 *  Every answer is counted in fks_http_requests_total{path,code} of the registry served.
 *
 *  A process either lets ops run its own small civetweb server (workers, bus), or registers
 *  the three handlers on a civetweb context it already runs (the gateway).
 */
#ifndef FKS_OPS_H
#define FKS_OPS_H

#include <stddef.h>
#include "common/metrics.h"

struct mg_context;

/*  Readiness check: returns 0 when ready, else -1 with a short reason (no secrets) in why.
 *  Called from civetweb threads, possibly concurrently: it must be thread-safe. */
typedef int (fks_ops_ready_fn) (void *arg, char *why, size_t cap);

typedef struct fks_ops_t fks_ops_t;

/*  env is FKS_ENV's value (copied, JSON-escaped, at most 256 bytes shown); ready may be NULL
 *  (always ready); metrics is the registry /metrics serves and must outlive the ops object
 *  (NULL: the default registry). Returns NULL when memory runs out. Destroying stops the own server, if any (civetweb 1.15's
 *  mg_stop may take up to 2 s), and nulls the caller's pointer; destroying NULL is a no-op. */
fks_ops_t *fks_ops_new (const char *env, fks_ops_ready_fn *ready, void *arg,
                        fks_metrics_t *metrics);
void fks_ops_destroy (fks_ops_t **self_p);

/*  Starts an own civetweb server on bind_addr:port (bind_addr an IPv4 address such as
 *  "127.0.0.1" or "0.0.0.0"; port 0 picks a free port) with 4 threads, keep-alive off and a
 *  10 s request timeout. Returns 0, or -1 (logged, naming the address and the reason) when the
 *  address or port is invalid, the port cannot be bound, or this object already listens; a
 *  failed call leaves the object usable. Stopped by fks_ops_destroy. */
int fks_ops_listen (fks_ops_t *self, const char *bind_addr, int port);

/*  Installs the three handlers on an existing civetweb context (replacing any handlers of
 *  those paths). self must outlive ctx: stop the context before destroying self. */
void fks_ops_register (fks_ops_t *self, struct mg_context *ctx);

/*  Sets the liveness check /health asks (same contract as the readiness check; NULL: none).
 *  For a fault only a restart mends (a handler thread stuck for good), never for a
 *  dependency being down: that is what /ready is for. Call before serving. */
void fks_ops_set_live (fks_ops_t *self, fks_ops_ready_fn *live, void *arg);

/*  The port actually bound by fks_ops_listen (useful with port 0), or -1. */
int fks_ops_port (fks_ops_t *self);

#endif
