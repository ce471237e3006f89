/*  stream.h - GET /api/v1/stream: every event as Server-Sent Events or WebSocket messages.
 *
 *  A client (read scope; the key may come as ?access_token= because browsers cannot set
 *  headers here) gets every stored event, optionally only the types starting with one of the
 *  prefixes in ?types=signal.,order.filled (?type=, as GET /api/v1/events spells it, is taken
 *  too; other query parameters are ignored). With SSE each event is
 *
 *      id: <seq>\nevent: <type>\ndata: <the event as JSON, as in GET /api/v1/events>\n\n
 *
 *  and over WebSocket each message is that JSON. A client that reconnects with Last-Event-ID
 *  (SSE) or ?after=<seq> (both) first gets what it missed from the events table, then live
 *  events, with no gap and no duplicate at the seam (docs/ARCHITECTURE.gateway.md explains
 *  the (xid, seq) order that makes this true). Without either it starts with live events.
 *
 *  One hub thread feeds every client: woken by the bus's event stream (FKS_BUS_STREAM_URL) or
 *  every FKS_GATEWAY_STREAM_POLL, it reads the new final rows of the events table once and puts
 *  them, rendered, in a bounded ring. Each client's civetweb thread sends from the ring; a
 *  client that falls so far behind that the ring has moved past it is disconnected (it can
 *  resume with its last id), so nothing is ever buffered per client. Whenever nothing was
 *  written to a client for FKS_GATEWAY_STREAM_HEARTBEAT (a filter may drop every event), it
 *  gets a keepalive (an SSE comment, a WebSocket ping); that write is also how a client that
 *  has gone is found and its place given back. The client's key is asked again every
 *  FKS_GATEWAY_STREAM_HEARTBEAT (at most every 15 s, one query, never per event): once it is
 *  revoked (or no longer grants read) the stream ends, SSE after a `: key revoked` comment,
 *  WebSocket with close 1008 "key revoked"; a database that cannot be asked ends no stream.
 *  FKS_ADMIN_KEY is not a row and stays valid. At most FKS_GATEWAY_STREAM_MAX clients at once
 *  (503 beyond), well below the thread pool, so streams can never take the threads that
 *  accept webhooks.
 */
#ifndef FKS_STREAM_H
#define FKS_STREAM_H

#include <stdbool.h>
#include "gateway/api.h"
#include "gateway/server.h"

struct mg_context;

typedef struct fks_stream_t fks_stream_t;

/*  Starts the hub (its own PostgreSQL connection and bus subscription, both lazy). cfg and
 *  api must outlive it. NULL (logged) on failure. */
fks_stream_t *fks_stream_new (const fks_gateway_config_t *cfg, fks_api_t *api);

/*  Tells every client to finish (they return within a heartbeat); call before stopping the
 *  server so that its threads come back. */
void fks_stream_stop (fks_stream_t *self);

/*  Stops the hub and frees. Call after the server is stopped. NULL is a no-op. */
void fks_stream_destroy (fks_stream_t **self_p);

/*  Installs GET /api/v1/stream (SSE) and its WebSocket upgrade on ctx. */
void fks_stream_register (fks_stream_t *self, struct mg_context *ctx);

/*  True while the hub's connection to the bus's event stream is up (for /ready). */
bool fks_stream_bus_connected (fks_stream_t *self);

#endif
