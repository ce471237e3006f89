/*  client.h - the bus client: publish envelopes, join a consumer group, receive, ack, reject.
 *
 *  The gateway and every worker use one fks_bus_client_t to talk to the broker (fks-bus).
 *
 *  Publishing goes through its own DEALER socket guarded by a mutex, so fks_bus_publish may
 *  be called from any number of threads (civetweb's, for the gateway). It is fire-and-forget:
 *  the envelope was committed to the `events` outbox before it is published, and if the broker
 *  is down or restarts, the reconciler publishes it again later. A publish waits at most
 *  publish_timeout_ms for a connected broker and room in the send queue, then fails.
 *
 *  Consuming goes through a second DEALER. After fks_bus_join the client joins the group with a
 *  credit window of N: the broker keeps at most N un-acked deliveries at this replica. The
 *  thread that calls fks_bus_recv reads that socket itself when nothing is buffered (no thread
 *  hand-off between the socket and the handler); while the handler runs, a background thread
 *  (the agent) sends heartbeats and queued acks and buffers what arrives, so a handler may
 *  take as long as it needs (the ack deadline, see fks_bus_touch, is what bounds one message).
 *  When the broker is silent for `liveness` heartbeats, restarts, or was not running yet, the
 *  client reconnects and joins again by itself. After a rejoin the broker treats this replica
 *  as new: messages received before it are given to someone else, and acking them is a
 *  harmless no-op (the consumer's `consumed` row makes the redelivery a no-op too).
 *
 *  The worker loop:
 *
 *      fks_bus_msg_t *msg = fks_bus_recv (bus, 1000);
 *      if (msg) {
 *          ... in one transaction: check/insert consumed, write the effect, insert events ...
 *          ... after COMMIT: fks_bus_publish the new envelopes ...
 *          fks_bus_ack (bus, &msg);         // or fks_bus_reject (bus, &msg, ..., "why")
 *      }
 *
 *  Every function is thread-safe except fks_bus_client_destroy. Errors are logged through
 *  common/log.h; functions return 0 / -1 or NULL.
 */
#ifndef FKS_BUS_CLIENT_H
#define FKS_BUS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/config.h"
#include "common/id.h"

typedef struct fks_bus_client_t fks_bus_client_t;
typedef struct fks_bus_msg_t fks_bus_msg_t;

typedef struct {
    const char *url;            /* broker ROUTER endpoint; NULL: FKS_BUS_URL, else
                                   tcp://127.0.0.1:5570 */
    const char *name;           /* this process in the broker's logs, e.g. "signal"; NULL:
                                   "client" */
    int heartbeat_ms;           /* 0: 1000 until the broker's WELCOME says otherwise */
    int liveness;               /* heartbeats of silence before reconnecting; 0: 3 */
    int publish_timeout_ms;     /* 0: 100; -1: never wait (fail at once when not connected) */
} fks_bus_client_opts_t;

/*  What a reject asks for. */
typedef enum {
    FKS_BUS_RETRY = 0,          /* try again later (back of the queue); counts as an attempt */
    FKS_BUS_DEAD  = 1           /* dead letter now */
} fks_bus_reject_t;

typedef struct {
    uint64_t published;         /* envelopes handed to the publish socket */
    uint64_t publish_failed;    /* fks_bus_publish calls that returned -1 */
    uint64_t received;          /* deliveries received */
    uint64_t acked;             /* acks sent (batched) */
    uint64_t rejected;          /* rejects sent */
    uint64_t released;          /* deliveries given back unhandled (fks_bus_release) */
    uint64_t stale;             /* acks/rejects/releases dropped: they predate a rejoin */
    uint64_t joins;             /* WELCOMEs received: 1 + rejoins */
    uint64_t reconnects;        /* consumer socket re-created after broker silence */
    uint64_t bad_frames;        /* messages from the broker dropped as malformed */
} fks_bus_client_stats_t;

/*  Creates a client; opts may be NULL (all defaults). Connects the publish socket (in the
 *  background: the broker may start later). Returns NULL (logged) on a bad option or when
 *  FKS_BUS_URL is invalid. */
fks_bus_client_t *fks_bus_client_new (const fks_bus_client_opts_t *opts);

/*  Leaves the group gracefully if joined: queued acks are sent, then one LEAVE hands back the
 *  deliveries not yet returned by fks_bus_recv (no attempt counted) and makes the broker
 *  requeue whatever else is un-acked. Waits up to 1 s for that to be sent, stops the agent,
 *  closes the sockets.
 *  Messages still held by the caller stay valid (free them with fks_bus_msg_destroy); acking
 *  them afterwards is not possible. NULL or *self_p NULL is a no-op. */
void fks_bus_client_destroy (fks_bus_client_t **self_p);

/*  Publishes one envelope: topic is its type (e.g. "signal.created"), data/size the encoded
 *  envelope (bus/envelope.h). The broker routes by the type inside the envelope; topic is
 *  checked for its bounds only. The bytes are copied. Returns 0 once queued for sending, -1 when
 *  the arguments are invalid (topic empty or longer than FKS_TYPE_MAX-1, size 0 or over
 *  FKS_ENVELOPE_MAX_SIZE) or no broker took it within publish_timeout_ms. Thread-safe. */
int fks_bus_publish (fks_bus_client_t *self, const char *topic, const void *data, size_t size);

/*  Joins consumer group `group` (1..31 chars [a-z0-9_-], first a letter) for the types
 *  starting with any of prefixes[0..n_prefixes-1] (1..16 prefixes, each 0..63 chars
 *  [a-z0-9._-]; "" is every type), with a credit window of 1..10000 un-acked messages.
 *  Returns at once (0), the agent joining in the background; -1 on invalid arguments or when
 *  already joined. The last JOIN of a group defines its prefixes (docs/BUS.md). One group per
 *  client. */
int fks_bus_join (fks_bus_client_t *self, const char *group, const char *const *prefixes,
                  size_t n_prefixes, unsigned window);

/*  True when the agent has joined and the broker answered recently (for /ready). */
bool fks_bus_joined (fks_bus_client_t *self);

/*  Returns the next delivery, waiting up to timeout_ms (0: do not wait; -1: wait forever), or
 *  NULL on timeout / not joined / interrupted. The caller owns the message and must end it with
 *  fks_bus_ack, fks_bus_reject or fks_bus_msg_destroy. */
fks_bus_msg_t *fks_bus_recv (fks_bus_client_t *self, int timeout_ms);

/*  A file descriptor that polls readable (POLLIN) while deliveries are waiting, for callers
 *  with their own poll loop; then fks_bus_recv (bus, 0) returns one. Do not read or close it.
 *  Once called, the agent reads the socket continuously (one thread hand-off per batch, the
 *  price of an outside poll loop). -1 before fks_bus_join. */
int fks_bus_fd (fks_bus_client_t *self);

/*  Acknowledges a delivery after its effect is committed; destroys *msg_p and sets it to NULL.
 *  Acks are batched: they leave with the next fks_bus_recv, or from the agent within about a
 *  millisecond. Returns 0; -1 only on invalid arguments. A message received before a rejoin is dropped silently (counted as
 *  stale): the broker already handed it to another replica. */
int fks_bus_ack (fks_bus_client_t *self, fks_bus_msg_t **msg_p);

/*  Rejects a delivery: FKS_BUS_RETRY puts it back at the end of the queue (it becomes a dead
 *  letter once delivered FKS_BUS_MAX_DELIVERIES times), FKS_BUS_DEAD makes it a dead letter
 *  now. reason (may be NULL; truncated to FKS_BUS_REASON_MAX bytes) is stored with the dead
 *  letter. Destroys *msg_p. 0, or -1 on invalid arguments. */
int fks_bus_reject (fks_bus_client_t *self, fks_bus_msg_t **msg_p, fks_bus_reject_t how,
                    const char *reason);

/*  Gives a delivery back unhandled (a worker stopping before it started it): the broker puts
 *  it back at the head of the queue without counting an attempt, as it does for what LEAVE
 *  lists. Batched like acks (and sent before the LEAVE of fks_bus_client_destroy). Destroys
 *  *msg_p. 0, or -1 on invalid arguments. */
int fks_bus_release (fks_bus_client_t *self, fks_bus_msg_t **msg_p);

/*  The replica is stopping: says DRAIN to the broker, which delivers nothing more to it, and
 *  gives back (as fks_bus_release does, and ahead of what is released after this call) every
 *  delivery waiting in the client that fks_bus_recv never returned, so that the group's other
 *  replicas take them at once instead of after the LEAVE. From now on fks_bus_recv returns
 *  NULL and the fd never polls readable. Deliveries that still arrive (sent before the broker
 *  read the DRAIN) are given back when it answers DRAINED; a broker older than DRAIN ignores
 *  it and may deliver the given-back ones to this replica again: they wait here, never handed
 *  out, and go back with the LEAVE of fks_bus_client_destroy. Acks, rejects, releases and
 *  touches of what the caller holds work as before; after a rejoin the client says DRAIN
 *  again. Call it once the caller will take nothing more, then release what it was given but
 *  did not start, then finish the rest and destroy the client. Thread-safe; a second call is
 *  a no-op. 0, or -1 before fks_bus_join. */
int fks_bus_drain (fks_bus_client_t *self);

/*  Tells the broker the handler is still working on msg: its ack deadline starts again.
 *  0, or -1 on invalid arguments. */
int fks_bus_touch (fks_bus_client_t *self, const fks_bus_msg_t *msg);

/*  The broker's ack deadline (announced when the client joins), 0 before the first join. While
 *  a delivery waits in the client for a handler, the client renews its deadline itself (every
 *  third of it); once handed out, the handler (or whoever keeps its lease) does. */
int64_t fks_bus_ack_deadline_ms (fks_bus_client_t *self);

/*  A delivery's name for the broker, kept by value: touching a lease whose message was acked,
 *  rejected or freed meanwhile is harmless (the broker ignores tags it no longer holds, and a
 *  lease from before a rejoin is ignored here). */
typedef struct {
    uint64_t epoch, tag;
} fks_bus_lease_t;

void fks_bus_msg_lease (const fks_bus_msg_t *msg, fks_bus_lease_t *out);

/*  fks_bus_touch for n leases at once. 0, or -1 on invalid arguments. */
int fks_bus_touch_leases (fks_bus_client_t *self, const fks_bus_lease_t *leases, size_t n);

/*  Frees a message without acking it: the broker delivers it again when its ack deadline
 *  passes or this replica goes away. NULL or *msg_p NULL is a no-op. */
void fks_bus_msg_destroy (fks_bus_msg_t **msg_p);

/*  The delivery's topic (its type, NUL-terminated). */
const char *fks_bus_msg_topic (const fks_bus_msg_t *msg);

/*  The encoded envelope; *size_out receives its size. Valid until the message is destroyed. */
const uint8_t *fks_bus_msg_data (const fks_bus_msg_t *msg, size_t *size_out);

/*  The envelope's id, as routed by the broker (the `id` field of the envelope). */
const fks_id_t *fks_bus_msg_id (const fks_bus_msg_t *msg);

/*  1 on the first delivery, 2 on the second, ... */
uint32_t fks_bus_msg_attempt (const fks_bus_msg_t *msg);

/*  Copies the client's counters. */
void fks_bus_client_stats (fks_bus_client_t *self, fks_bus_client_stats_t *out);

/*  The bus reconciler's timing, which any program may read (fks-bus runs the reconciler; the
 *  workers bound how long they wait for a message the bus may have lost by it):
 *  FKS_BUS_RECONCILE_INTERVAL (5 s: between its passes) and FKS_BUS_RECONCILE_AFTER (60 s: an
 *  event unconsumed this long is published again). A message lost on its way (fks-bus
 *  restarted) is published again at most after + 2 x interval after its commit. 0, or -1 with
 *  err naming the variable. */
int fks_bus_reconcile_timing (int64_t *interval_ms, int64_t *after_ms, fks_config_err_t *err);

#endif
