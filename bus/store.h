/*  store.h - the broker's persistence thread: dead letters and consumer groups in PostgreSQL.
 *
 *  The broker's own thread never waits on PostgreSQL. It hands dead letters and group changes
 *  to this thread through an inproc socket (see fks_bus_server_set_store); the thread writes
 *  them with its own connection and, for each dead letter, in one transaction inserts the
 *  `dead_letters` row and the `dead.letter` envelope into `events` (the outbox), then gives
 *  that envelope back to the broker to publish. At start it reads `bus_groups` and declares
 *  every group to the broker, so messages for a group are queued before its replicas return.
 *
 *  While PostgreSQL is down the records wait in memory and are retried every second;
 *  fks_bus_store_ready says why the broker is not ready. Dead letters: at most
 *  FKS_BUS_STORE_PENDING_MAX; past that the oldest is dropped, counted and logged (its
 *  envelope is still in the outbox, so the reconciler brings it back and it fails its way here
 *  again). Group records are never dropped: only the latest of each group waits (an upsert),
 *  so they are bounded by the broker's groups, and they are written first.
 */
#ifndef FKS_BUS_STORE_H
#define FKS_BUS_STORE_H

#include <stddef.h>

#define FKS_BUS_STORE_PENDING_MAX 10000

typedef struct fks_bus_store_t fks_bus_store_t;

/*  Starts the thread: binds an inproc PULL socket on zctx (fks_bus_store_endpoint) and
 *  connects a PUSH to the broker's internal endpoint. pg_url is copied. Returns NULL (logged)
 *  on a bad URL or when the thread cannot start. */
fks_bus_store_t *fks_bus_store_new (void *zctx, const char *pg_url, const char *server_endpoint);

/*  Stops the thread after one last attempt to write what is pending (records still pending
 *  are logged as lost from memory: the reconciler covers them). NULL-safe. */
void fks_bus_store_destroy (fks_bus_store_t **self_p);

/*  The inproc endpoint to give fks_bus_server_set_store. */
const char *fks_bus_store_endpoint (const fks_bus_store_t *self);

/*  Readiness: 0 when PostgreSQL answered on the last attempt and the groups were loaded,
 *  else -1 with a reason (no secrets). Thread-safe. */
int fks_bus_store_ready (fks_bus_store_t *self, char *why, size_t cap);

#endif
