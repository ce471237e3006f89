/*  ops.h - the operations endpoints every FKS process serves: /health, /ready and /metrics.
 *
 *  GET /health answers 200 {"status":"healthy","env":"<FKS_ENV>"} while the process runs.
 *  GET /ready calls the process's readiness check (PostgreSQL, Redis, bus...) and answers 200
 *  {"status":"ready"} or 503 {"status":"not_ready","reason":"..."}; GET /metrics renders the
 *  metrics registry in Prometheus text format. Other methods on these paths get 405.
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

/*  env is FKS_ENV's value (copied); ready may be NULL (always ready); metrics NULL means the
 *  default registry. */
fks_ops_t *fks_ops_new (const char *env, fks_ops_ready_fn *ready, void *arg,
                        fks_metrics_t *metrics);
void fks_ops_destroy (fks_ops_t **self_p);

/*  Starts an own civetweb server on bind_addr:port (bind_addr e.g. "127.0.0.1" or "0.0.0.0")
 *  with a few threads. Returns 0, or -1 (logged) when the port cannot be bound. Stopped by
 *  fks_ops_destroy. */
int fks_ops_listen (fks_ops_t *self, const char *bind_addr, int port);

/*  Installs the three handlers on an existing civetweb context. self must outlive ctx. */
void fks_ops_register (fks_ops_t *self, struct mg_context *ctx);

/*  The port actually bound by fks_ops_listen (useful with port 0), or -1. */
int fks_ops_port (fks_ops_t *self);

#endif
