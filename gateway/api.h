/*  api.h - the REST API under /api/v1: bearer keys with scopes, lists, manual orders.
 *
 *  Every request carries `Authorization: Bearer <key>` (the stream also takes ?access_token=,
 *  since browsers cannot set headers on EventSource and WebSocket). Keys are checked by
 *  apikeys.c; GET needs the read scope, manual orders and cancels trade, the circuit breaker
 *  reset admin. Each key has its own rate limit (FKS_GATEWAY_RATE_LIMIT_KEY per window).
 *
 *  Reads return what the tables hold, as JSON built by PostgreSQL (json_build_object), in the
 *  contract's shape: lists are {"items":[...],"next":"<cursor>"|null}, newest first, with
 *  ?limit= (1..1000, default 100), ?cursor= and filters (?symbol=, ?status=, ?since=) where
 *  they make sense; GET /api/v1/alerts/{id} gives one alert's path through the stages. The
 *  events feed is the exception: oldest first from ?after=<seq> (or ?cursor=<next>, the same
 *  position), as the stream resumes.
 *  Writes (POST /api/v1/orders, DELETE /api/v1/orders/{id}, POST /api/v1/breaker/reset) put
 *  an envelope in the events outbox and publish it after commit, for the execution worker.
 *
 *  schemas/openapi.yaml describes every route; tests/gateway_it checks each one answers.
 *  Database access goes through a small pool of connections shared with stream.c.
 */
#ifndef FKS_API_H
#define FKS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/pg.h"
#include "gateway/apikeys.h"
#include "gateway/ratelimit.h"
#include "gateway/server.h"

struct mg_connection;
struct mg_context;

typedef struct fks_api_t fks_api_t;

typedef struct {
    const fks_gateway_config_t *cfg;
    fks_apikeys_t *keys;
    fks_ratelimit_t *rl;
    fks_security_t *security;
    fks_bus_client_t *bus;          /* may be NULL: writes are then only in the outbox */
} fks_api_opts_t;

/*  Creates the API and its connection pool (connections open lazily). NULL on bad options. */
fks_api_t *fks_api_new (const fks_api_opts_t *opts);
void fks_api_destroy (fks_api_t **self_p);

/*  Installs the /api/v1 routes (all but /api/v1/stream) and a JSON 404 for unknown paths. */
void fks_api_register (fks_api_t *self, struct mg_context *ctx);

/*  Authenticates the request (bearer key, or ?access_token= when allow_query) and checks the
 *  scope and the key's rate limit. Returns 0 with *info filled, or the status of the error
 *  reply it already sent (401, 403, 429, 503). */
int fks_api_authorize (fks_api_t *self, struct mg_connection *conn, unsigned scope,
                       bool allow_query, fks_apikey_info_t *info);

/*  Borrows a pool connection, waiting at most timeout_ms; NULL when none came free. Give it
 *  back with fks_api_pg_put. */
fks_pg_t *fks_api_pg_get (fks_api_t *self, int timeout_ms);
void fks_api_pg_put (fks_api_t *self, fks_pg_t *pg);

/*  Appends one stored event as the JSON the API and the stream show:
 *  {"seq","id","type","corr","cause","ts","time","src","body"} with the body decoded from
 *  msgpack (ids as UUID strings). An envelope that does not decode gives its seq, type and
 *  "error". Returns 0, or -1 when out is full. */
int fks_api_event_json (fks_sbuf_t *out, int64_t seq, const void *envelope, size_t len);

#endif
