/*  broker.h - the broker's core: consumer groups, their queues, credit, in-flight messages,
 *  ack deadlines, redelivery and dead letters.
 *
 *  This is the state machine behind fks-bus, with no sockets in it: bus/server.c reads frames
 *  off the wire, validates them and calls these functions; the core answers through the
 *  callbacks in fks_broker_io_t (send these deliveries to that replica, send a heartbeat, this
 *  message is now a dead letter). Tests drive it directly with zmq_msg_t payloads and a fake
 *  clock. Times are monotonic milliseconds supplied by the caller.
 *
 *  Rules it enforces (docs/BUS.md explains why):
 *  - A published message goes to every group with a matching type prefix (or to one named
 *    group, for the reconciler); a group that already holds the same envelope id, queued or in
 *    flight, ignores it (counted as duplicate); a full group refuses it (counted as refused).
 *    A republish by the reconciler is also ignored when the group finished that id recently
 *    (acked or dead-lettered: at least the last recent_ids / 2 of them), which closes the
 *    reconciler's race: its query can see a message as not consumed just before the ack.
 *  - Inside a group a message is in flight at exactly one replica at a time. Replicas get
 *    messages only while they have credit (window minus un-acked), round robin, each taking at
 *    most its fair share of the queue per turn.
 *  - An un-acked delivery goes back to the head of the queue, in its original order, when its
 *    deadline passes or its replica leaves, rejoins or falls silent; a reject with retry goes
 *    to the tail. A message delivered max_deliveries times and not acked becomes a dead letter.
 *  - After fks_broker_drain, nothing new is accepted or delivered; acks are still taken.
 *  - A replica that drains (fks_broker_drain_replica: it is stopping) is given nothing more;
 *    what it holds stays its own until it acks, rejects or releases it, leaves, or is lost.
 *
 *  Not thread-safe: one thread (the broker's) owns it.
 */
#ifndef FKS_BROKER_H
#define FKS_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>
#include "bus/protocol.h"
#include "common/id.h"

typedef struct fks_broker_t fks_broker_t;

typedef struct {
    int64_t ack_deadline_ms;    /* an un-acked delivery is taken back after this long */
    int64_t heartbeat_ms;       /* heartbeat interval, both ways */
    uint32_t liveness;          /* heartbeats of silence before a replica is dropped */
    uint32_t max_deliveries;    /* deliveries before a message becomes a dead letter */
    uint32_t queue_limit;       /* messages waiting per group */
    size_t queue_max_bytes;     /* bytes waiting per group (topic + envelope) */
    uint32_t max_groups;
    uint32_t max_replicas;
    uint32_t recent_ids;        /* acked/dead ids remembered per group, about (0: none) */
} fks_broker_cfg_t;

/*  Defaults: 30 s, 1 s, 3, 5, 100000, 256 MiB, 64, 4096, 20000. */
void fks_broker_cfg_defaults (fks_broker_cfg_t *cfg);

/*  One delivery as handed to fks_broker_io_t.deliver. topic and env belong to the core: the
 *  callback sends copies (zmq_msg_copy) and must not close them. */
typedef struct {
    uint64_t tag;
    uint32_t attempt;           /* 1 on the first delivery */
    const fks_id_t *id;
    zmq_msg_t *topic;
    zmq_msg_t *env;
} fks_broker_delivery_t;

/*  Why a message left a group without an ack. */
typedef enum {
    FKS_BROKER_REDELIVER_DEADLINE = 0,  /* its ack deadline passed */
    FKS_BROKER_REDELIVER_LOST,          /* its replica left, rejoined or fell silent */
    FKS_BROKER_REDELIVER_REJECTED       /* its replica rejected it (retry) */
} fks_broker_redeliver_t;

typedef struct {
    void *arg;
    /*  Sends n deliveries (n <= FKS_BUS_DELIVER_BATCH_MAX) to the replica with this routing
     *  id and the flags it joined with. Returns 0, or -1 when the replica cannot be reached:
     *  the core then drops it and puts the batch back (the attempts are not counted). */
    int (*deliver) (void *arg, const uint8_t *rid, size_t rid_len, uint32_t flags,
                    const fks_broker_delivery_t *batch, size_t n);
    /*  Sends a heartbeat to a replica. May be NULL. */
    void (*heartbeat) (void *arg, const uint8_t *rid, size_t rid_len);
    /*  A message became a dead letter of group after `attempts` deliveries. The callback may
     *  take the payloads with zmq_msg_move (the core closes whatever is left). May be NULL. */
    void (*dead_letter) (void *arg, const char *group, const fks_id_t *id, uint32_t attempts,
                         const char *reason, zmq_msg_t *topic, zmq_msg_t *env);
    /*  A group appeared or its prefixes changed (to persist them). Returns false when it
     *  could not take the change (the store's queue is full): the core offers it again on
     *  each tick until it is taken. May be NULL. */
    bool (*group_changed) (void *arg, const char *group, const char *const *prefixes,
                           size_t n_prefixes);
} fks_broker_io_t;

/*  Creates a core. cfg NULL means defaults; io is copied (its callbacks may be NULL except
 *  deliver). Returns NULL on a bad config or when out of memory. */
fks_broker_t *fks_broker_new (const fks_broker_cfg_t *cfg, const fks_broker_io_t *io);
void fks_broker_destroy (fks_broker_t **self_p);

/*  Declares a group without a replica (groups persisted by an earlier run), so messages for
 *  it are queued before its replicas come back. Same rules as a JOIN's group and prefixes; a
 *  group that exists already is left as it is (a live JOIN wins). No group_changed callback.
 *  0 or -1 (invalid, or too many groups). */
int fks_broker_declare (fks_broker_t *self, const char *group, const char *const *prefixes,
                        size_t n_prefixes);

/*  Result of fks_broker_publish. */
typedef struct {
    uint32_t queued;            /* groups that took it */
    uint32_t duplicate;         /* groups that already held it */
    uint32_t refused;           /* groups whose queue was full (or draining) */
} fks_broker_publish_result_t;

/*  Routes a message (its topic, envelope and envelope id) to every group whose prefixes match
 *  the topic, or only to `group` when not NULL. The core takes references to the payloads
 *  (zmq_msg_copy); the caller keeps and closes its own. Deliveries happen in
 *  fks_broker_dispatch. 0, or -1 when out of memory (counted as refused). */
int fks_broker_publish (fks_broker_t *self, zmq_msg_t *topic, zmq_msg_t *env,
                        const fks_id_t *id, const char *group,
                        fks_broker_publish_result_t *result);

/*  A replica (routing id rid) joins group with prefixes and a credit window, at time now.
 *  flags belong to the transport (how this replica wants its deliveries framed): the core
 *  keeps them and hands them back to io.deliver. A replica already known under rid is
 *  dropped first (its un-acked messages requeued). The group is created if new; its
 *  prefixes become these. Returns 0, or -1 with a reason in why (cap bytes) when refused. */
int fks_broker_join (fks_broker_t *self, const uint8_t *rid, size_t rid_len, const char *group,
                     const char *const *prefixes, size_t n_prefixes, uint32_t window,
                     uint32_t flags, const char *name, int64_t now, char *why, size_t cap);

/*  Is rid a known replica? Records that it was heard from at `now`. */
bool fks_broker_heard (fks_broker_t *self, const uint8_t *rid, size_t rid_len, int64_t now);

/*  Acks: each tag that is in flight at this replica is done (others are stale and counted).
 *  Returns the number of tags accepted, or -1 when the replica is unknown. */
int fks_broker_ack (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                    const uint64_t *tags, size_t n, int64_t now);

/*  Gives deliveries back without having processed them: head of the queue, the attempt not
 *  counted. Returns the number accepted, or -1 when the replica is unknown. */
int fks_broker_release (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                        const uint64_t *tags, size_t n, int64_t now);

/*  Restarts the ack deadline of each tag. Returns the number accepted or -1 (unknown). */
int fks_broker_touch (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                      const uint64_t *tags, size_t n, int64_t now);

/*  Rejects one delivery: FKS_BUS_REJECT_RETRY (tail of the queue, or a dead letter when its
 *  deliveries are used up) or FKS_BUS_REJECT_DEAD (dead letter now). reason is NUL-terminated.
 *  Returns 1 when accepted, 0 when the tag is stale, -1 when the replica is unknown. */
int fks_broker_reject (fks_broker_t *self, const uint8_t *rid, size_t rid_len, uint64_t tag,
                       int action, const char *reason, int64_t now);

/*  The replica is stopping (DRAIN): from now on no dispatch gives it anything, and what it
 *  releases goes to the group's other replicas. Its deliveries stay in flight at it (acks,
 *  rejects, releases and touches work as before), it stays alive while heard from, and
 *  fks_broker_leave ends it. Counted once per replica (stats.drains). 0, or -1 when the
 *  replica is unknown. */
int fks_broker_drain_replica (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                              int64_t now);

/*  The replica leaves: its un-acked deliveries go back to the head of the queue. 0 or -1. */
int fks_broker_leave (fks_broker_t *self, const uint8_t *rid, size_t rid_len, int64_t now);

/*  Hands queued messages to replicas with credit. Returns the number of deliveries made. */
size_t fks_broker_dispatch (fks_broker_t *self, int64_t now);

/*  Housekeeping at time now: takes back deliveries past their deadline, drops replicas silent
 *  for liveness heartbeats, sends due heartbeats. Returns the time of the next deadline or
 *  heartbeat (so the caller can sleep until then). */
int64_t fks_broker_tick (fks_broker_t *self, int64_t now);

/*  Stops accepting publishes and making deliveries (SIGTERM). Acks are still taken. */
void fks_broker_drain (fks_broker_t *self);

/*  Messages in flight across all groups (the drain waits for 0). */
size_t fks_broker_in_flight (const fks_broker_t *self);

/*  Per-group figures, for metrics and tests. Counters only grow. */
typedef struct {
    char name[FKS_BUS_GROUP_MAX];
    size_t queued;              /* waiting */
    size_t queued_bytes;
    size_t in_flight;           /* delivered, not acked */
    size_t consumers;           /* replicas joined */
    uint64_t routed;            /* published messages this group took */
    uint64_t deliveries;        /* deliveries made, first ones and redeliveries */
    uint64_t redeliveries;      /* deliveries with attempt > 1 */
    uint64_t acks;
    uint64_t rejects;
    uint64_t expired;           /* deliveries taken back at their deadline */
    uint64_t lost;              /* deliveries taken back from a replica that went away */
    uint64_t released;
    uint64_t drains;            /* replicas that said they were stopping (DRAIN) */
    uint64_t dead_letters;
    uint64_t refused;           /* publishes refused because the queue was full */
    uint64_t duplicates;        /* publishes ignored: already queued or in flight */
} fks_broker_group_stats_t;

/*  Number of groups, and the figures of group i (0-based). 0, or -1 when i is out of range. */
size_t fks_broker_group_count (const fks_broker_t *self);
int fks_broker_group_stats (const fks_broker_t *self, size_t i, fks_broker_group_stats_t *out);

/*  Process-wide figures. */
typedef struct {
    size_t replicas;
    uint64_t replicas_dropped;  /* silent, unreachable or replaced by a rejoin */
    uint64_t stale;             /* acks, rejects, releases, touches of tags not in flight */
} fks_broker_stats_t;

void fks_broker_stats (const fks_broker_t *self, fks_broker_stats_t *out);

#endif
