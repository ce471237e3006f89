/*  reconciler.h - publishes again what PostgreSQL shows is overdue at its next stage.
 *
 *  The broker keeps its queues in memory, so a broker killed with SIGKILL forgets what it
 *  held; a publish can also be lost in a broken connection or refused by a full queue. None of
 *  that loses a message, because every envelope was committed to the `events` outbox before
 *  it was published, and every consumer group records `consumed (grp, msg_id)` in the same
 *  transaction as its effect. The reconciler closes the loop: an event whose type matches a
 *  group's prefixes, older than `after`, with neither a `consumed` nor a `dead_letters` row
 *  for that group, is published again to that group only. The broker ignores one it still
 *  holds (queued or in flight), so a slow consumer is not handed the same message twice.
 *
 *  The work of a pass is proportional to what happened since the last one, not to the window.
 *  For each group it keeps:
 *
 *  - a walk position in (xid, seq) order (the stream's order). Each pass examines the rows
 *    after it whose xid is below a horizon H: the snapshot xmin it read at least `after` ago.
 *    Every transaction below H had ended when H was read, so no row can ever appear behind the
 *    walk, and those rows are all `after` old. Each row is examined once per group.
 *  - the rows it found pending (not consumed, not dead-lettered, younger than `max_age`),
 *    bounded by `batch`. Each pass checks them again by seq, publishes those still pending
 *    and forgets the rest; one older than `max_age` is logged and left to an operator. While
 *    the set is full the walk waits.
 *
 *  The position it restarts from (the first pending row, else the walk) is saved in
 *  bus_groups.reconciled_xid/_seq, so a restarted fks-bus resumes there. A group never walked
 *  starts at the first row of its window (`max_age`) in (xid, seq) order, found by reading the
 *  window once; a change of a group's prefixes restarts its walk there too.
 *
 *  It runs as a thread inside fks-bus (one replica, so one reconciler) with its own
 *  PostgreSQL connection and talks to the broker through its internal inproc socket.
 *  Metrics: fks_bus_reconciler_republished_total{group}, _examined_total (rows the walks read),
 *  _expired_total{group}, _pending{group}, _passes_total, _errors_total.
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
    int batch;                  /* pending rows kept (and published) per group; default 5000 */
    int scan;                   /* rows one walk query examines; default 10000 */
} fks_reconciler_cfg_t;

void fks_reconciler_cfg_defaults (fks_reconciler_cfg_t *cfg);

/*  Starts the thread: it connects a PUSH socket on zctx to server_endpoint (the broker's
 *  internal endpoint). Returns NULL (logged) on a bad config or URL. */
fks_reconciler_t *fks_reconciler_new (void *zctx, const fks_reconciler_cfg_t *cfg,
                                      const char *server_endpoint);

/*  Stops the thread (finishing the query under way) and frees. NULL-safe. */
void fks_reconciler_destroy (fks_reconciler_t **self_p);

#endif
