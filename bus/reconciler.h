/*  reconciler.h - publishes again what PostgreSQL shows is overdue at its next stage.
 *
 *  The broker keeps its queues in memory, so a broker killed with SIGKILL forgets what it
 *  held; a publish can also be lost in a broken connection or refused by a full queue. None of
 *  that loses a message, because every envelope was committed to the `events` outbox before
 *  it was published, and every consumer group records `consumed (grp, msg_id)` in the same
 *  transaction as its effect. The reconciler closes the loop: every interval, for each group
 *  in `bus_groups`, it selects the events whose type matches the group's prefixes, created
 *  more than `after` ago (and less than `max_age` ago, to bound the scan), with neither a
 *  `consumed` nor a `dead_letters` row for that group, and publishes each to that group only.
 *  The broker ignores one it still holds (queued or in flight), so a slow consumer is not
 *  handed the same message twice.
 *
 *  It runs as a thread inside fks-bus (one replica, so one reconciler) with its own
 *  PostgreSQL connection and talks to the broker through its internal inproc socket. Each
 *  query is bounded by `batch` rows and resumes from a per-group cursor, so a long backlog is
 *  walked through over several passes instead of the same first rows being sent every time.
 */
#ifndef FKS_RECONCILER_H
#define FKS_RECONCILER_H

#include <stdint.h>

typedef struct fks_reconciler_t fks_reconciler_t;

typedef struct {
    const char *pg_url;
    int64_t interval_ms;        /* between passes; default 5 s */
    int64_t after_ms;           /* an event unconsumed this long is overdue; default 60 s */
    int64_t max_age_ms;         /* older events are left to an operator; default 1 h */
    int batch;                  /* rows per query; default 1000 */
} fks_reconciler_cfg_t;

void fks_reconciler_cfg_defaults (fks_reconciler_cfg_t *cfg);

/*  Starts the thread: it connects a PUSH socket on zctx to server_endpoint (the broker's
 *  internal endpoint). Returns NULL (logged) on a bad config or URL. */
fks_reconciler_t *fks_reconciler_new (void *zctx, const fks_reconciler_cfg_t *cfg,
                                      const char *server_endpoint);

/*  Stops the thread (finishing the query under way) and frees. NULL-safe. */
void fks_reconciler_destroy (fks_reconciler_t **self_p);

#endif
