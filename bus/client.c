/*  client.c - the bus client: publish envelopes, join a consumer group, receive, ack, reject.
 *
 *  Two DEALER sockets on a private ZeroMQ context. The publish socket is used under a mutex
 *  by whichever thread publishes; ZMQ_IMMEDIATE keeps it from queueing for a broker that is
 *  not connected, so a publish either reaches a live connection or fails within its timeout.
 *
 *  The consumer socket is used by one thread at a time: whoever holds the "I/O role" (a flag
 *  under the client's mutex). A thread in fks_bus_recv that finds no delivery waiting takes
 *  the role and reads the socket itself, so in a worker's loop a message goes from the socket
 *  to the handler with no thread hand-off. While the worker is busy in its handler, the agent
 *  thread takes the role every heartbeat interval (or every millisecond while acks are
 *  waiting) to send heartbeats and acks and to read what arrived, so a long handler never
 *  makes the replica look dead. Whoever holds the role flushes the acks, rejects and touches
 *  that callers queued (acks are therefore batched: all acks queued since the last pass go in
 *  one ACK). fks_bus_fd switches the agent to reading continuously, since a poll-loop caller
 *  only calls fks_bus_recv once the fd says a delivery is there.
 *
 *  Joining is a small state machine run by the role holder. JOIN is sent on a fresh or
 *  reconnected socket; until WELCOME comes back the replica is "joining" and deliveries are
 *  dropped (they belong to an earlier registration, which the broker takes back). Every JOIN
 *  starts a new epoch: deliveries of earlier epochs are purged from the queue, and acking one
 *  is dropped quietly. The broker's ERROR "unknown replica" (it restarted, or dropped us)
 *  triggers a JOIN at once; silence for `liveness` heartbeats makes the client throw the socket
 *  away and start over on a new one.
 *
 *  Stopping (fks_bus_drain): DRAIN goes out ahead of the next flush's releases, the buffered
 *  deliveries are released right after it, and nothing is handed out any more; what arrives
 *  later is released once the broker answers DRAINED, and stays for the LEAVE when it never
 *  does (a broker older than DRAIN).
 */
#include "bus/client.h"
#include "bus/envelope.h"
#include "bus/protocol.h"
#include "common/config.h"
#include "common/id.h"
#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_READ_BURST      256       /* messages read per pass before looking at the lists */
#define S_REFUSED_WAIT_MS 5000      /* a refused JOIN is tried again after this */
#define S_LEAVE_LINGER_MS 1000
#define S_ACK_TICK_MS     1         /* the agent's pace while acks are being made */
#define S_ACTIVE_MS       100       /* ... for this long after the last one */
#define S_ACK_EAGER       64        /* acks waiting that fks_bus_recv sends itself, ... */
#define S_ACK_EAGER_DIV   4         /* ... or this fraction of the window, if fewer */
#define S_MAXF            (1 + 2 * FKS_BUS_DELIVER_BATCH_MAX)

struct fks_bus_msg_t {
    zmq_msg_t env_msg;              /* the envelope's frame, or a DELIVER_BATCH's, shared */
    uint32_t env_off, env_size;     /* where the envelope lies in it */
    char topic[FKS_TYPE_MAX];
    fks_id_t id;
    uint64_t tag;
    uint32_t attempt;
    uint64_t epoch;
    fks_bus_msg_t *next;
};

typedef struct {
    uint64_t tag;
    uint8_t action;
    char reason[FKS_BUS_REASON_MAX + 1];
} s_reject_t;

typedef enum { S_IDLE = 0, S_JOINING, S_JOINED, S_WAITING } s_state_t;

typedef struct {
    uint64_t *v;
    size_t n, cap;
} s_tags_t;

struct fks_bus_client_t {
    void *zctx;
    char *url;
    char name[FKS_BUS_NAME_MAX];
    int publish_timeout_ms;

    //  Publishing
    pthread_mutex_t pub_lock;
    void *pub;
    uint64_t published, publish_failed;

    //  Under lock
    pthread_mutex_t lock;
    pthread_cond_t cond;            /* queue changed, or the I/O role was released */
    pthread_cond_t agent_cond;      /* wakes the agent */
    bool joined_requested;
    char group[FKS_BUS_GROUP_MAX];
    char prefixes[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
    size_t n_prefixes;
    uint32_t window;
    fks_bus_msg_t *q_head, *q_tail;
    size_t q_len;
    s_tags_t acks, touches, releases;
    s_reject_t *rejects;
    size_t n_rejects, cap_rejects;
    uint64_t epoch;
    s_state_t state;
    int64_t last_heard;             /* monotonic ms */
    int64_t last_request;           /* when an ack/reject/touch was last queued */
    int heartbeat_ms, liveness;
    int64_t ack_deadline_ms;        /* the broker's (its WELCOME), 0 before the first */
    int64_t next_queue_touch;       /* when the buffered deliveries are touched next */
    fks_bus_client_stats_t stats;
    bool io_busy;                   /* someone holds the I/O role */
    bool io_polling;                /* ... and waits in zmq_poll: write wake_fd to stir it */
    bool agent_sleeping;            /* the agent is in a long sleep: signal agent_cond */
    bool agent_reads;               /* fks_bus_fd was called: the agent reads continuously */
    bool draining;                  /* fks_bus_drain: nothing more is handed out */
    bool drain_unsent;              /* ... and DRAIN goes out with the next flush */
    bool drained;                   /* ... and the broker answered DRAINED (this epoch) */
    bool stop;
    int ready_fd;                   /* readable while q_len > 0 */
    int wake_fd;                    /* stirs the I/O role holder out of zmq_poll */

    //  Owned by the I/O role holder
    void *sock;
    int64_t next_heartbeat;
    int64_t retry_at;               /* S_WAITING: when to join again */
    int64_t bad_logged;
    atomic_uint_fast64_t bad_frames;    /* s_bad_frame calls, from any thread */

    pthread_t agent;
    bool agent_started;
};

static int64_t
s_now_ms (void)
{
    return fks_mono_ns () / 1000000;
}

static void
s_abs_deadline (struct timespec *ts, int64_t ms)
{
    *ts = fks_clock_after (CLOCK_MONOTONIC, ms * 1000000);
}

//  --------------------------------------------------------------------------
//  Messages

void
fks_bus_msg_destroy (fks_bus_msg_t **msg_p)
{
    if (!msg_p || !*msg_p)
        return;
    zmq_msg_close (&(*msg_p)->env_msg);
    free (*msg_p);
    *msg_p = NULL;
}

const char *
fks_bus_msg_topic (const fks_bus_msg_t *msg)
{
    return msg->topic;
}

const uint8_t *
fks_bus_msg_data (const fks_bus_msg_t *msg, size_t *size_out)
{
    if (size_out)
        *size_out = msg->env_size;
    return (const uint8_t *) zmq_msg_data ((zmq_msg_t *) &msg->env_msg) + msg->env_off;
}

const fks_id_t *
fks_bus_msg_id (const fks_bus_msg_t *msg)
{
    return &msg->id;
}

uint32_t
fks_bus_msg_attempt (const fks_bus_msg_t *msg)
{
    return msg->attempt;
}

//  --------------------------------------------------------------------------
//  Helpers under lock

static int
s_tags_add (s_tags_t *tags, uint64_t tag)
{
    if (tags->n == tags->cap) {
        size_t cap = tags->cap ? tags->cap * 2 : 256;
        uint64_t *v = realloc (tags->v, cap * sizeof *v);
        if (!v)
            return -1;
        tags->v = v;
        tags->cap = cap;
    }
    tags->v[tags->n++] = tag;
    return 0;
}

static void
s_fd_write (int fd)
{
    uint64_t one = 1;
    ssize_t rc = write (fd, &one, sizeof one);
    (void) rc;
}

static void
s_fd_drain (int fd)
{
    uint64_t v;
    ssize_t rc = read (fd, &v, sizeof v);
    (void) rc;
}

//  How often a held delivery's ack deadline is renewed: a third of the broker's deadline, so
//  that one late renewal still arrives in time.
static int64_t
s_lease_every (const fks_bus_client_t *self)
{
    int64_t every = self->ack_deadline_ms > 0 ? self->ack_deadline_ms / 3 : 1000;
    return every < 1 ? 1 : every;
}

//  A request (ack, reject, touch) was queued: make sure someone sends it soon.
static void
s_requested (fks_bus_client_t *self)
{
    self->last_request = s_now_ms ();
    if (self->io_polling)
        s_fd_write (self->wake_fd);
    else
    if (self->agent_sleeping) {
        self->agent_sleeping = false;
        pthread_cond_signal (&self->agent_cond);
    }
}

//  Deliveries wait in the queue until a handler asks for them, which may be long while every
//  handler is busy (retrying through an outage, say): the agent renews their ack deadlines,
//  so that waiting here never makes the broker take them back and count an attempt. Caller
//  holds the lock.
static void
s_touch_queue (fks_bus_client_t *self, int64_t now)
{
    if (now < self->next_queue_touch)
        return;
    self->next_queue_touch = now + s_lease_every (self);
    if (self->state != S_JOINED || !self->q_head)
        return;
    for (fks_bus_msg_t *m = self->q_head; m; m = m->next)
        if (m->epoch == self->epoch)
            s_tags_add (&self->touches, m->tag);
    s_requested (self);
}

//  Frees every queued delivery (a new epoch begins: the broker took them back).
static void
s_purge_queue (fks_bus_client_t *self)
{
    while (self->q_head) {
        fks_bus_msg_t *msg = self->q_head;
        self->q_head = msg->next;
        fks_bus_msg_destroy (&msg);
    }
    self->q_tail = NULL;
    if (self->q_len > 0)
        s_fd_drain (self->ready_fd);
    self->q_len = 0;
}

//  Gives back every queued delivery (they were never handed out): their tags go out in the
//  next RELEASE, ahead of anything released later. Caller holds the lock.
static void
s_release_queue (fks_bus_client_t *self)
{
    if (!self->q_head)
        return;
    if (self->state == S_JOINED)
        for (fks_bus_msg_t *m = self->q_head; m; m = m->next)
            if (m->epoch == self->epoch && s_tags_add (&self->releases, m->tag) != 0)
                return;             /* out of memory: they stay for the LEAVE */
    s_purge_queue (self);
    s_requested (self);
}

//  --------------------------------------------------------------------------
//  Socket work, done by the I/O role holder only

static int
s_send_cmd (void *sock, uint8_t command, bool more)
{
    uint8_t hdr[FKS_BUS_HDR_SIZE];
    fks_bus_put_hdr (hdr, command);
    return zmq_send (sock, hdr, sizeof hdr, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1
         ? -1 : 0;
}

//  Sends JOIN and starts a new epoch. Caller holds the lock and the I/O role.
static void
s_join (fks_bus_client_t *self, int64_t now)
{
    self->epoch++;
    s_purge_queue (self);
    self->acks.n = 0;
    self->touches.n = 0;
    self->releases.n = 0;
    self->n_rejects = 0;
    //  A new registration is not draining at the broker: say it again once joined.
    self->drain_unsent = self->draining;
    self->drained = false;
    self->state = S_JOINING;
    self->last_heard = now;
    uint8_t window[8];
    fks_bus_put_u32 (window, self->window);
    fks_bus_put_u32 (window + 4, FKS_BUS_JOIN_BATCH);
    if (s_send_cmd (self->sock, FKS_BUS_JOIN, true) != 0)
        return;                     /* the silence rule tries again */
    zmq_send (self->sock, self->group, strlen (self->group), ZMQ_SNDMORE);
    zmq_send (self->sock, window, sizeof window, ZMQ_SNDMORE);
    zmq_send (self->sock, self->name, strlen (self->name), ZMQ_SNDMORE);
    for (size_t i = 0; i < self->n_prefixes; i++)
        zmq_send (self->sock, self->prefixes[i], strlen (self->prefixes[i]),
                  i + 1 < self->n_prefixes ? ZMQ_SNDMORE : 0);
}

static void *
s_new_socket (fks_bus_client_t *self)
{
    void *sock = zmq_socket (self->zctx, ZMQ_DEALER);
    if (!sock)
        return NULL;
    int linger = 0, hwm = 100000, ivl = self->heartbeat_ms;
    int timeout = self->heartbeat_ms * self->liveness;
    int64_t maxmsg = 2 * FKS_ENVELOPE_MAX_SIZE;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt (sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt (sock, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
    if (zmq_connect (sock, self->url) != 0) {
        zmq_close (sock);
        return NULL;
    }
    return sock;
}

static void
s_reconnect (fks_bus_client_t *self, int64_t now)
{
    if (self->sock)
        zmq_close (self->sock);
    self->sock = s_new_socket (self);
    pthread_mutex_lock (&self->lock);
    if (self->sock)
        s_join (self, now);
    else {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: cannot create a socket for %s",
                 self->url);
        self->state = S_WAITING;
        self->retry_at = now + self->heartbeat_ms;
    }
    pthread_mutex_unlock (&self->lock);
    self->next_heartbeat = now + self->heartbeat_ms;
}

static void
s_bad_frame (fks_bus_client_t *self, const char *what)
{
    atomic_fetch_add (&self->bad_frames, 1);
    int64_t now = s_now_ms ();
    if (now - self->bad_logged >= 1000) {
        fks_log (FKS_LOG_WARN, NULL, NULL, "bus client: dropped a bad frame from the broker (%s)",
                 what);
        self->bad_logged = now;
    }
}

//  Queues one delivery: meta (FKS_BUS_META_SIZE bytes), its topic (checked by the caller) and
//  its envelope: the frame env, moved into the message (size 0), or the size bytes at off in
//  the batch frame env, which the message shares (zmq_msg_copy counts references, it does
//  not copy). Caller holds the lock.
static void
s_enqueue (fks_bus_client_t *self, const uint8_t *meta, const uint8_t *topic, size_t tlen,
           zmq_msg_t *env, size_t off, size_t size)
{
    fks_bus_msg_t *msg = malloc (sizeof *msg);
    if (!msg) {
        //  Not acked, so the broker redelivers it after the deadline.
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: out of memory for a delivery");
        return;
    }
    msg->tag = fks_bus_get_u64 (meta);
    msg->attempt = fks_bus_get_u32 (meta + 8);
    memcpy (msg->id.b, meta + 12, FKS_ID_SIZE);
    memcpy (msg->topic, topic, tlen);
    msg->topic[tlen] = 0;
    zmq_msg_init (&msg->env_msg);
    if (size == 0) {
        zmq_msg_move (&msg->env_msg, env);
        msg->env_off = 0;
        msg->env_size = (uint32_t) zmq_msg_size (&msg->env_msg);
    }
    else {
        zmq_msg_copy (&msg->env_msg, env);
        msg->env_off = (uint32_t) off;
        msg->env_size = (uint32_t) size;
    }
    msg->epoch = self->epoch;
    msg->next = NULL;
    if (self->q_tail)
        self->q_tail->next = msg;
    else
        self->q_head = msg;
    self->q_tail = msg;
    self->q_len++;
    self->stats.received++;
}

static bool
s_topic_ok (const uint8_t *topic, size_t tlen)
{
    return tlen > 0 && tlen < FKS_TYPE_MAX && !memchr (topic, 0, tlen);
}

//  The records of a DELIVER_PACKED metas frame must describe exactly n envelopes.
static bool
s_metas_ok (const uint8_t *p, size_t len, size_t n)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (len - off < FKS_BUS_META_SIZE + 1)
            return false;
        size_t tlen = p[off + FKS_BUS_META_SIZE];
        if (len - off - FKS_BUS_META_SIZE - 1 < tlen
            || !s_topic_ok (p + off + FKS_BUS_META_SIZE + 1, tlen))
            return false;
        off += FKS_BUS_META_SIZE + 1 + tlen;
    }
    return off == len;
}

//  The records of a DELIVER_BATCH must describe n envelopes (n as many as fit, up to
//  FKS_BUS_DELIVER_BATCH_MAX) that fill the envelopes frame of `body` bytes exactly. Returns n,
//  or 0 when the frames disagree.
static size_t
s_batch_ok (const uint8_t *p, size_t len, size_t body)
{
    size_t off = 0, n = 0, sum = 0;
    while (off < len) {
        if (n == FKS_BUS_DELIVER_BATCH_MAX || len - off < FKS_BUS_META_SIZE + 5)
            return 0;
        size_t size = fks_bus_get_u32 (p + off + FKS_BUS_META_SIZE);
        size_t tlen = p[off + FKS_BUS_META_SIZE + 4];
        if (size == 0 || size > FKS_ENVELOPE_MAX_SIZE || size > body - sum
            || len - off - FKS_BUS_META_SIZE - 5 < tlen
            || !s_topic_ok (p + off + FKS_BUS_META_SIZE + 5, tlen))
            return 0;
        sum += size;
        off += FKS_BUS_META_SIZE + 5 + tlen;
        n++;
    }
    return sum == body ? n : 0;
}

typedef enum { S_FRAMED = 0, S_PACKED, S_BATCH } s_framing_t;

static void
s_on_deliver (fks_bus_client_t *self, zmq_msg_t *f, size_t n, s_framing_t framing)
{
    //  f: ([meta+topic][envelope])+, n checked to be even; packed: [metas][envelope]+;
    //  batch: [records][envelopes].
    pthread_mutex_lock (&self->lock);
    if (self->state != S_JOINED) {
        //  Sent to an earlier registration, which the broker has dropped.
        pthread_mutex_unlock (&self->lock);
        return;
    }
    bool was_empty = self->q_len == 0;
    if (framing == S_BATCH) {
        const uint8_t *p = zmq_msg_data (&f[0]);
        size_t body = zmq_msg_size (&f[1]);
        //  Bad records drop the whole batch: the broker redelivers it after the ack deadline.
        if (s_batch_ok (p, zmq_msg_size (&f[0]), body) == 0)
            s_bad_frame (self, "DELIVER_BATCH records");
        else
            for (size_t off = 0, at = 0; at < body; ) {
                size_t size = fks_bus_get_u32 (p + off + FKS_BUS_META_SIZE);
                size_t tlen = p[off + FKS_BUS_META_SIZE + 4];
                s_enqueue (self, p + off, p + off + FKS_BUS_META_SIZE + 5, tlen, &f[1], at,
                           size);
                off += FKS_BUS_META_SIZE + 5 + tlen;
                at += size;
            }
    }
    else
    if (framing == S_PACKED) {
        const uint8_t *p = zmq_msg_data (&f[0]);
        size_t len = zmq_msg_size (&f[0]);
        //  A bad metas frame drops the whole batch: the broker redelivers it after the ack
        //  deadline.
        if (!s_metas_ok (p, len, n - 1))
            s_bad_frame (self, "DELIVER_PACKED records");
        else
            for (size_t i = 1, off = 0; i < n; i++) {
                size_t tlen = p[off + FKS_BUS_META_SIZE];
                s_enqueue (self, p + off, p + off + FKS_BUS_META_SIZE + 1, tlen, &f[i], 0, 0);
                off += FKS_BUS_META_SIZE + 1 + tlen;
            }
    }
    else
        for (size_t i = 0; i + 1 < n; i += 2) {
            size_t len = zmq_msg_size (&f[i]);
            const uint8_t *m = zmq_msg_data (&f[i]);
            size_t tlen = len > FKS_BUS_META_SIZE ? len - FKS_BUS_META_SIZE : 0;
            if (!s_topic_ok (m + FKS_BUS_META_SIZE, tlen)) {
                s_bad_frame (self, "delivery");
                continue;
            }
            s_enqueue (self, m, m + FKS_BUS_META_SIZE, tlen, &f[i + 1], 0, 0);
        }
    if (self->drained)
        s_release_queue (self);     /* sent before the broker read DRAIN: to the others */
    else
    if (was_empty && self->q_len > 0 && !self->draining) {
        s_fd_write (self->ready_fd);
        pthread_cond_broadcast (&self->cond);
    }
    pthread_mutex_unlock (&self->lock);
}

static void
s_on_message (fks_bus_client_t *self, zmq_msg_t *f, size_t n, int64_t now)
{
    if (zmq_msg_size (&f[0]) != FKS_BUS_HDR_SIZE) {
        s_bad_frame (self, "no header");
        return;
    }
    const uint8_t *hdr = zmq_msg_data (&f[0]);
    if (hdr[0] != FKS_BUS_SIGNATURE || hdr[1] != FKS_BUS_PROTO_VERSION) {
        s_bad_frame (self, "signature or version");
        return;
    }
    pthread_mutex_lock (&self->lock);
    //  While joining only the WELCOME counts as an answer: a broker that lost our JOIN (it
    //  was stopping when we sent it) keeps replying "unknown" to other things, and those
    //  must not keep us waiting for a WELCOME that will never come.
    if (self->state == S_JOINED)
        self->last_heard = now;
    switch (hdr[2]) {
        case FKS_BUS_WELCOME:
            if (n != 4 || zmq_msg_size (&f[1]) != 4 || zmq_msg_size (&f[2]) != 4
                || zmq_msg_size (&f[3]) != 4) {
                s_bad_frame (self, "WELCOME");
                break;
            }
            if (self->state == S_JOINING) {
                self->last_heard = now;
                uint32_t hb = fks_bus_get_u32 (zmq_msg_data (&f[1]));
                uint32_t live = fks_bus_get_u32 (zmq_msg_data (&f[2]));
                if (hb >= 10 && hb <= 600000)
                    self->heartbeat_ms = (int) hb;
                if (live >= 2 && live <= 100)
                    self->liveness = (int) live;
                uint32_t deadline = fks_bus_get_u32 (zmq_msg_data (&f[3]));
                if (deadline >= 10)
                    self->ack_deadline_ms = deadline;
                self->next_queue_touch = now + s_lease_every (self);
                self->state = S_JOINED;
                self->stats.joins++;
                char fields[128] = "";
                fks_log_field_str (fields, sizeof fields, "group", self->group);
                fks_log (FKS_LOG_INFO, NULL, fields, "joined the bus");
            }
            break;
        case FKS_BUS_DELIVER:
            if (n < 3 || (n - 1) % 2 != 0) {
                s_bad_frame (self, "DELIVER");
                break;
            }
            pthread_mutex_unlock (&self->lock);
            s_on_deliver (self, f + 1, n - 1, S_FRAMED);
            return;
        case FKS_BUS_DELIVER_PACKED:
            if (n < 3 || n - 2 > FKS_BUS_DELIVER_BATCH_MAX) {
                s_bad_frame (self, "DELIVER_PACKED");
                break;
            }
            pthread_mutex_unlock (&self->lock);
            s_on_deliver (self, f + 1, n - 1, S_PACKED);
            return;
        case FKS_BUS_DELIVER_BATCH:
            if (n != 3 || zmq_msg_size (&f[2]) == 0) {
                s_bad_frame (self, "DELIVER_BATCH");
                break;
            }
            pthread_mutex_unlock (&self->lock);
            s_on_deliver (self, f + 1, n - 1, S_BATCH);
            return;
        case FKS_BUS_HEARTBEAT:
            break;
        case FKS_BUS_DRAINED:
            //  Nothing comes after it (one connection keeps order): what arrived between the
            //  DRAIN and this goes to the other replicas.
            if (n != 1)
                s_bad_frame (self, "DRAINED");
            else
            if (self->draining && self->state == S_JOINED && !self->drain_unsent) {
                self->drained = true;
                s_release_queue (self);
            }
            break;
        case FKS_BUS_ERROR: {
            uint8_t code = n >= 2 && zmq_msg_size (&f[1]) == 1
                         ? *(const uint8_t *) zmq_msg_data (&f[1]) : 0;
            char text[160] = "";
            if (n >= 3) {
                size_t len = zmq_msg_size (&f[2]);
                if (len >= sizeof text)
                    len = sizeof text - 1;
                const uint8_t *p = zmq_msg_data (&f[2]);
                for (size_t i = 0; i < len; i++)
                    text[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char) p[i] : '?';
                text[len] = 0;
            }
            //  Errors that answer what we sent before our last JOIN arrive while we are
            //  joining: they are about the old registration and change nothing.
            if (code == FKS_BUS_ERR_UNKNOWN && self->state == S_JOINED)
                s_join (self, now);
            else
            if ((code == FKS_BUS_ERR_REFUSED || code == FKS_BUS_ERR_SHUTDOWN)
                && (self->state == S_JOINING || self->state == S_JOINED)) {
                fks_log (code == FKS_BUS_ERR_REFUSED ? FKS_LOG_ERROR : FKS_LOG_INFO, NULL, NULL,
                         "bus: join %s: %s", code == FKS_BUS_ERR_REFUSED
                         ? "refused" : "postponed, the broker is stopping", text);
                self->state = S_WAITING;
                self->retry_at = now + (code == FKS_BUS_ERR_REFUSED ? S_REFUSED_WAIT_MS
                                                                    : self->heartbeat_ms);
            }
            break;
        }
        default:
            s_bad_frame (self, "unknown command");
    }
    pthread_mutex_unlock (&self->lock);
}

//  Reads what the broker sent, up to a burst. Returns the number of messages read.
static int
s_read (fks_bus_client_t *self, int64_t now)
{
    zmq_msg_t f[S_MAXF];
    int burst;
    for (burst = 0; burst < S_READ_BURST; burst++) {
        size_t n = 0;
        bool more = true, extra = false;
        while (more) {
            zmq_msg_t scratch;
            zmq_msg_t *m = n < S_MAXF ? &f[n] : &scratch;
            zmq_msg_init (m);
            if (zmq_msg_recv (m, self->sock, ZMQ_DONTWAIT) == -1) {
                zmq_msg_close (m);
                break;
            }
            more = zmq_msg_more (m);
            if (m == &scratch) {
                zmq_msg_close (m);
                extra = true;
            }
            else
                n++;
        }
        if (n == 0)
            break;
        if (extra)
            s_bad_frame (self, "too many frames");
        else
            s_on_message (self, f, n, now);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close (&f[i]);
    }
    return burst;
}

static void
s_send_tags (void *sock, uint8_t command, const uint64_t *tags, size_t n)
{
    uint8_t buf[8 * FKS_BUS_TAGS_MAX];
    for (size_t off = 0; off < n; off += FKS_BUS_TAGS_MAX) {
        size_t k = n - off < FKS_BUS_TAGS_MAX ? n - off : FKS_BUS_TAGS_MAX;
        for (size_t i = 0; i < k; i++)
            fks_bus_put_u64 (buf + 8 * i, tags[off + i]);
        if (s_send_cmd (sock, command, true) == 0)
            zmq_send (sock, buf, 8 * k, 0);
    }
}

//  Sends what the callers queued: acks, touches, releases, rejects.
static void
s_flush_requests (fks_bus_client_t *self)
{
    pthread_mutex_lock (&self->lock);
    if (self->state == S_JOINED && self->sock) {
        //  DRAIN first: a RELEASE after it on this connection can no longer be delivered
        //  straight back to this replica. What waits in the queue is newer than anything the
        //  caller released (it took its messages from here), so it goes last in the RELEASE
        //  below, or in a later one, which the broker puts ahead: either way older first.
        if (self->drain_unsent && s_send_cmd (self->sock, FKS_BUS_DRAIN, false) == 0) {
            self->drain_unsent = false;
            s_release_queue (self);
        }
        if (self->acks.n > 0) {
            s_send_tags (self->sock, FKS_BUS_ACK, self->acks.v, self->acks.n);
            self->stats.acked += self->acks.n;
        }
        if (self->touches.n > 0)
            s_send_tags (self->sock, FKS_BUS_TOUCH, self->touches.v, self->touches.n);
        if (self->releases.n > 0) {
            s_send_tags (self->sock, FKS_BUS_RELEASE, self->releases.v, self->releases.n);
            self->stats.released += self->releases.n;
        }
        for (size_t i = 0; i < self->n_rejects; i++) {
            s_reject_t *r = &self->rejects[i];
            uint8_t tag[8];
            fks_bus_put_u64 (tag, r->tag);
            if (s_send_cmd (self->sock, FKS_BUS_REJECT, true) != 0)
                continue;
            zmq_send (self->sock, tag, sizeof tag, ZMQ_SNDMORE);
            zmq_send (self->sock, &r->action, 1, ZMQ_SNDMORE);
            zmq_send (self->sock, r->reason, strlen (r->reason), 0);
            self->stats.rejected++;
        }
    }
    self->acks.n = 0;
    self->touches.n = 0;
    self->releases.n = 0;
    self->n_rejects = 0;
    pthread_mutex_unlock (&self->lock);
}

//  One pass of socket work: flush requests, read, keep time (heartbeats, silence, retries).
//  When wait_ms > 0 and nothing arrived, waits up to wait_ms (bounded by the next heartbeat)
//  in zmq_poll for the broker or for a caller's request, then reads again.
static void
s_io_pass (fks_bus_client_t *self, int wait_ms)
{
    int64_t now = s_now_ms ();
    if (!self->sock) {
        //  First pass: the socket is made here, by whoever does I/O first.
        s_reconnect (self, now);
    }
    s_flush_requests (self);
    int got = s_read (self, now);
    if (got == 0 && wait_ms > 0) {
        int64_t due = self->next_heartbeat - now;
        long timeout = wait_ms < due ? wait_ms : (long) (due > 0 ? due : 0);
        zmq_pollitem_t items[2] = {
            { self->sock, 0, ZMQ_POLLIN, 0 },
            { NULL, self->wake_fd, ZMQ_POLLIN, 0 } };
        pthread_mutex_lock (&self->lock);
        self->io_polling = true;
        bool go = !self->stop;
        pthread_mutex_unlock (&self->lock);
        if (go)
            zmq_poll (items, 2, timeout);
        pthread_mutex_lock (&self->lock);
        self->io_polling = false;
        pthread_mutex_unlock (&self->lock);
        if (items[1].revents & ZMQ_POLLIN)
            s_fd_drain (self->wake_fd);
        now = s_now_ms ();
        s_flush_requests (self);
        s_read (self, now);
    }

    pthread_mutex_lock (&self->lock);
    s_state_t state = self->state;
    int64_t silent = now - self->last_heard;
    int64_t limit = (int64_t) self->heartbeat_ms * self->liveness;
    int hb = self->heartbeat_ms;
    if ((state == S_JOINING || state == S_JOINED) && silent > limit) {
        self->stats.reconnects++;
        fks_log (FKS_LOG_WARN, NULL, NULL, "bus: no word from the broker for %lld ms; "
                 "reconnecting", (long long) silent);
    }
    pthread_mutex_unlock (&self->lock);
    if (state == S_WAITING && now >= self->retry_at)
        s_reconnect (self, now);
    else
    if ((state == S_JOINING || state == S_JOINED) && silent > limit)
        s_reconnect (self, now);
    else
    if (now >= self->next_heartbeat) {
        if (self->sock && state == S_JOINED)
            s_send_cmd (self->sock, FKS_BUS_HEARTBEAT, false);
        self->next_heartbeat = now + hb;
    }
}

//  Takes the I/O role if it is free. Caller holds the lock.
static bool
s_io_take (fks_bus_client_t *self)
{
    if (self->io_busy)
        return false;
    self->io_busy = true;
    return true;
}

//  Gives the role back and tells the waiters. Caller holds the lock.
static void
s_io_give (fks_bus_client_t *self)
{
    self->io_busy = false;
    pthread_cond_broadcast (&self->cond);
}

//  Leaving: acks first, then LEAVE with what was never given out. Role held.
static void
s_leave (fks_bus_client_t *self)
{
    if (!self->sock)
        return;
    s_flush_requests (self);
    pthread_mutex_lock (&self->lock);
    if (self->state == S_JOINED) {
        //  The deliveries never handed out ride on the LEAVE itself (at most a window of
        //  them): released and left in one step at the broker.
        uint8_t *buf = malloc (8 * (size_t) FKS_BUS_WINDOW_MAX);
        size_t n = 0;
        for (fks_bus_msg_t *m = self->q_head; buf && m && n < FKS_BUS_WINDOW_MAX; m = m->next)
            fks_bus_put_u64 (buf + 8 * n++, m->tag);
        if (s_send_cmd (self->sock, FKS_BUS_LEAVE, n > 0) == 0 && n > 0)
            zmq_send (self->sock, buf, 8 * n, 0);
        free (buf);
    }
    s_purge_queue (self);
    self->state = S_IDLE;
    pthread_mutex_unlock (&self->lock);
    int linger = S_LEAVE_LINGER_MS;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (self->sock);
    self->sock = NULL;
}

static void *
s_agent (void *arg)
{
    fks_bus_client_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        s_touch_queue (self, s_now_ms ());
        if (s_io_take (self)) {
            bool reads = self->agent_reads;
            pthread_mutex_unlock (&self->lock);
            s_io_pass (self, reads ? self->heartbeat_ms : 0);
            pthread_mutex_lock (&self->lock);
            s_io_give (self);
            if (reads)
                continue;
        }
        if (self->stop)
            break;
        //  Sleep: briefly while acks are being made (they are flushed within a tick), else
        //  until the next heartbeat, unless a request or fks_bus_fd wakes us.
        int64_t now = s_now_ms ();
        bool active = now - self->last_request < S_ACTIVE_MS;
        int64_t sleep_ms = active ? S_ACK_TICK_MS : self->next_heartbeat - now;
        if (sleep_ms > self->next_queue_touch - now)
            sleep_ms = self->next_queue_touch - now;
        if (sleep_ms < 1)
            sleep_ms = 1;
        struct timespec ts;
        s_abs_deadline (&ts, sleep_ms);
        self->agent_sleeping = !active;
        pthread_cond_timedwait (&self->agent_cond, &self->lock, &ts);
        self->agent_sleeping = false;
    }
    //  Stopping: wait for the role, then leave the group.
    while (self->io_busy) {
        struct timespec ts;
        s_abs_deadline (&ts, 100);
        pthread_cond_timedwait (&self->cond, &self->lock, &ts);
    }
    self->io_busy = true;
    pthread_mutex_unlock (&self->lock);
    s_leave (self);
    pthread_mutex_lock (&self->lock);
    s_io_give (self);
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Public API

fks_bus_client_t *
fks_bus_client_new (const fks_bus_client_opts_t *opts)
{
    fks_bus_client_opts_t o = { 0 };
    if (opts)
        o = *opts;
    if (o.heartbeat_ms < 0 || o.heartbeat_ms > 600000 || o.liveness < 0 || o.liveness > 100
        || o.publish_timeout_ms < -1 || o.publish_timeout_ms > 600000
        || (o.name && !fks_bus_name_valid (o.name, strlen (o.name)))) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: invalid options");
        return NULL;
    }
    fks_bus_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ready_fd = self->wake_fd = -1;
    pthread_mutex_init (&self->pub_lock, NULL);
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init (&ca);
    pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
    pthread_cond_init (&self->cond, &ca);
    pthread_cond_init (&self->agent_cond, &ca);
    pthread_condattr_destroy (&ca);
    if (o.url)
        self->url = strdup (o.url);
    else {
        fks_config_err_t err;
        if (fks_config_str ("FKS_BUS_URL", "tcp://127.0.0.1:5570", &self->url, &err) < 0) {
            fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: %s", err.msg);
            fks_bus_client_destroy (&self);
            return NULL;
        }
    }
    snprintf (self->name, sizeof self->name, "%s", o.name ? o.name : "client");
    self->heartbeat_ms = o.heartbeat_ms ? o.heartbeat_ms : 1000;
    self->liveness = o.liveness ? o.liveness : 3;
    self->publish_timeout_ms = o.publish_timeout_ms == 0 ? 100
                             : o.publish_timeout_ms == -1 ? 0 : o.publish_timeout_ms;
    self->ready_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->zctx = zmq_ctx_new ();
    if (!self->url || self->ready_fd < 0 || self->wake_fd < 0 || !self->zctx) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: cannot set up (memory or descriptors)");
        fks_bus_client_destroy (&self);
        return NULL;
    }
    zmq_ctx_set (self->zctx, ZMQ_BLOCKY, 0);
    self->pub = zmq_socket (self->zctx, ZMQ_DEALER);
    int on = 1, linger = 0, hwm = 100000;
    if (self->pub) {
        zmq_setsockopt (self->pub, ZMQ_IMMEDIATE, &on, sizeof on);
        zmq_setsockopt (self->pub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt (self->pub, ZMQ_SNDTIMEO, &self->publish_timeout_ms,
                        sizeof self->publish_timeout_ms);
        int ivl = self->heartbeat_ms, timeout = self->heartbeat_ms * self->liveness;
        zmq_setsockopt (self->pub, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt (self->pub, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
    }
    if (!self->pub || zmq_connect (self->pub, self->url) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus client: cannot connect to '%s': %s", self->url,
                 zmq_strerror (zmq_errno ()));
        fks_bus_client_destroy (&self);
        return NULL;
    }
    return self;
}

void
fks_bus_client_destroy (fks_bus_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_bus_client_t *self = *self_p;
    if (self->agent_started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_broadcast (&self->agent_cond);
        pthread_cond_broadcast (&self->cond);
        s_fd_write (self->wake_fd);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->agent, NULL);
    }
    if (self->pub)
        zmq_close (self->pub);
    if (self->zctx)
        zmq_ctx_term (self->zctx);
    s_purge_queue (self);
    free (self->acks.v);
    free (self->touches.v);
    free (self->releases.v);
    free (self->rejects);
    if (self->ready_fd >= 0)
        close (self->ready_fd);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    pthread_cond_destroy (&self->cond);
    pthread_cond_destroy (&self->agent_cond);
    pthread_mutex_destroy (&self->lock);
    pthread_mutex_destroy (&self->pub_lock);
    free (self->url);
    free (self);
    *self_p = NULL;
}

int
fks_bus_publish (fks_bus_client_t *self, const char *topic, const void *data, size_t size)
{
    size_t tlen = topic ? strlen (topic) : 0;
    if (!self || tlen == 0 || tlen >= FKS_TYPE_MAX || !data || size == 0
        || size > FKS_ENVELOPE_MAX_SIZE) {
        if (self) {
            pthread_mutex_lock (&self->pub_lock);
            self->publish_failed++;
            pthread_mutex_unlock (&self->pub_lock);
        }
        return -1;
    }
    //  One frame, the header followed by the envelope, and no topic: the broker routes by
    //  the envelope's type, which it reads anyway. Each frame costs every thread it crosses
    //  about as much as its bytes do, so this is the cheapest form. The topic argument
    //  states the type for the caller's reader; only its bounds are checked here.
    uint8_t hdr[FKS_BUS_HDR_SIZE];
    fks_bus_put_hdr (hdr, FKS_BUS_PUBLISH);
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, FKS_BUS_HDR_SIZE + size) != 0) {
        pthread_mutex_lock (&self->pub_lock);
        self->publish_failed++;
        pthread_mutex_unlock (&self->pub_lock);
        return -1;
    }
    memcpy (zmq_msg_data (&frame), hdr, FKS_BUS_HDR_SIZE);
    memcpy ((uint8_t *) zmq_msg_data (&frame) + FKS_BUS_HDR_SIZE, data, size);
    pthread_mutex_lock (&self->pub_lock);
    //  With ZMQ_IMMEDIATE the send waits (up to SNDTIMEO) for a connected broker with room.
    int rc = zmq_msg_send (&frame, self->pub, 0);
    if (rc != -1)
        self->published++;
    else {
        zmq_msg_close (&frame);
        self->publish_failed++;
    }
    pthread_mutex_unlock (&self->pub_lock);
    return rc == -1 ? -1 : 0;
}

int
fks_bus_join (fks_bus_client_t *self, const char *group, const char *const *prefixes,
              size_t n_prefixes, unsigned window)
{
    if (!self || !group || !fks_bus_group_valid (group, strlen (group)) || !prefixes
        || n_prefixes == 0 || n_prefixes > FKS_BUS_PREFIXES_MAX || window == 0
        || window > FKS_BUS_WINDOW_MAX) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus: invalid join (group name, 1-%d prefixes, "
                 "window 1-%d)", FKS_BUS_PREFIXES_MAX, FKS_BUS_WINDOW_MAX);
        return -1;
    }
    for (size_t i = 0; i < n_prefixes; i++)
        if (!prefixes[i] || !fks_bus_prefix_valid (prefixes[i], strlen (prefixes[i]))) {
            fks_log (FKS_LOG_ERROR, NULL, NULL, "bus: invalid type prefix");
            return -1;
        }
    pthread_mutex_lock (&self->lock);
    if (self->joined_requested) {
        pthread_mutex_unlock (&self->lock);
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus: this client has joined a group already");
        return -1;
    }
    self->joined_requested = true;
    snprintf (self->group, sizeof self->group, "%s", group);
    for (size_t i = 0; i < n_prefixes; i++)
        snprintf (self->prefixes[i], sizeof self->prefixes[i], "%s", prefixes[i]);
    self->n_prefixes = n_prefixes;
    self->window = window;
    pthread_mutex_unlock (&self->lock);
    if (pthread_create (&self->agent, NULL, s_agent, self) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus: cannot start the client's agent thread");
        pthread_mutex_lock (&self->lock);
        self->joined_requested = false;
        pthread_mutex_unlock (&self->lock);
        return -1;
    }
    self->agent_started = true;
    return 0;
}

bool
fks_bus_joined (fks_bus_client_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool joined = self->state == S_JOINED
               && s_now_ms () - self->last_heard <= (int64_t) self->heartbeat_ms * self->liveness;
    pthread_mutex_unlock (&self->lock);
    return joined;
}

fks_bus_msg_t *
fks_bus_recv (fks_bus_client_t *self, int timeout_ms)
{
    if (!self || !self->agent_started)
        return NULL;
    int64_t end = timeout_ms < 0 ? INT64_MAX : s_now_ms () + timeout_ms;
    fks_bus_msg_t *msg = NULL;
    pthread_mutex_lock (&self->lock);
    //  A busy replica's queue never runs dry, so the pass that an empty queue triggers never
    //  comes, and its acks would wait for the agent's next tick (a millisecond, in which a
    //  small window runs out of credit). Enough acks waiting: send them now, and read what
    //  came, without waiting.
    if (self->q_head && self->state == S_JOINED
        && (self->acks.n >= S_ACK_EAGER
            || self->acks.n * S_ACK_EAGER_DIV >= (size_t) self->window)
        && s_io_take (self)) {
        pthread_mutex_unlock (&self->lock);
        s_io_pass (self, 0);
        pthread_mutex_lock (&self->lock);
        s_io_give (self);
    }
    while (!self->stop && !self->draining) {
        if (self->q_head) {
            msg = self->q_head;
            self->q_head = msg->next;
            if (!self->q_head)
                self->q_tail = NULL;
            msg->next = NULL;
            if (--self->q_len == 0)
                s_fd_drain (self->ready_fd);
            break;
        }
        int64_t left = end - s_now_ms ();
        if (s_io_take (self)) {
            //  Nothing waiting: read the socket ourselves, in a pass that may wait.
            pthread_mutex_unlock (&self->lock);
            s_io_pass (self, left <= 0 ? 0 : left > 1000000 ? 1000000 : (int) left);
            pthread_mutex_lock (&self->lock);
            s_io_give (self);
            if (!self->q_head && end - s_now_ms () <= 0)
                break;
            continue;
        }
        if (left <= 0)
            break;
        //  Someone else holds the role: they queue what arrives and wake us.
        struct timespec ts;
        s_abs_deadline (&ts, left < 100 ? left : 100);
        pthread_cond_timedwait (&self->cond, &self->lock, &ts);
    }
    pthread_mutex_unlock (&self->lock);
    return msg;
}

int
fks_bus_fd (fks_bus_client_t *self)
{
    if (!self || !self->agent_started)
        return -1;
    pthread_mutex_lock (&self->lock);
    if (!self->agent_reads) {
        self->agent_reads = true;
        pthread_cond_signal (&self->agent_cond);
    }
    pthread_mutex_unlock (&self->lock);
    return self->ready_fd;
}

int
fks_bus_drain (fks_bus_client_t *self)
{
    if (!self || !self->agent_started)
        return -1;
    pthread_mutex_lock (&self->lock);
    if (!self->draining) {
        self->draining = true;
        self->drain_unsent = true;
        self->drained = false;
        //  What waits in the queue is released right after the DRAIN (s_flush_requests).
        //  With a broker that does not know DRAIN it comes straight back and waits here
        //  for the LEAVE.
        s_requested (self);
        s_fd_drain (self->ready_fd);    /* fks_bus_recv has nothing more to give */
        pthread_cond_broadcast (&self->cond);
    }
    pthread_mutex_unlock (&self->lock);
    return 0;
}

//  Queues msg's tag on list (acks or releases) for the next flush, unless it predates a
//  rejoin; destroys *msg_p. The callers have checked their arguments.
static int
s_finish_msg (fks_bus_client_t *self, fks_bus_msg_t **msg_p, s_tags_t *list)
{
    fks_bus_msg_t *msg = *msg_p;
    pthread_mutex_lock (&self->lock);
    if (msg->epoch == self->epoch && self->state == S_JOINED) {
        if (s_tags_add (list, msg->tag) == 0)
            s_requested (self);
    }
    else
        self->stats.stale++;
    pthread_mutex_unlock (&self->lock);
    fks_bus_msg_destroy (msg_p);
    return 0;
}

int
fks_bus_ack (fks_bus_client_t *self, fks_bus_msg_t **msg_p)
{
    if (!self || !msg_p || !*msg_p)
        return -1;
    return s_finish_msg (self, msg_p, &self->acks);
}

int
fks_bus_release (fks_bus_client_t *self, fks_bus_msg_t **msg_p)
{
    if (!self || !msg_p || !*msg_p)
        return -1;
    return s_finish_msg (self, msg_p, &self->releases);
}

int
fks_bus_reject (fks_bus_client_t *self, fks_bus_msg_t **msg_p, fks_bus_reject_t how,
                const char *reason)
{
    if (!self || !msg_p || !*msg_p || (how != FKS_BUS_RETRY && how != FKS_BUS_DEAD))
        return -1;
    fks_bus_msg_t *msg = *msg_p;
    pthread_mutex_lock (&self->lock);
    if (msg->epoch == self->epoch && self->state == S_JOINED) {
        if (self->n_rejects == self->cap_rejects) {
            size_t cap = self->cap_rejects ? self->cap_rejects * 2 : 16;
            s_reject_t *r = realloc (self->rejects, cap * sizeof *r);
            if (r) {
                self->rejects = r;
                self->cap_rejects = cap;
            }
        }
        if (self->n_rejects < self->cap_rejects) {
            s_reject_t *r = &self->rejects[self->n_rejects++];
            r->tag = msg->tag;
            r->action = how == FKS_BUS_DEAD ? FKS_BUS_REJECT_DEAD : FKS_BUS_REJECT_RETRY;
            snprintf (r->reason, sizeof r->reason, "%s", reason ? reason : "");
            s_requested (self);
        }
    }
    else
        self->stats.stale++;
    pthread_mutex_unlock (&self->lock);
    fks_bus_msg_destroy (msg_p);
    return 0;
}

int64_t
fks_bus_ack_deadline_ms (fks_bus_client_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->lock);
    int64_t ms = self->ack_deadline_ms;
    pthread_mutex_unlock (&self->lock);
    return ms;
}

void
fks_bus_msg_lease (const fks_bus_msg_t *msg, fks_bus_lease_t *out)
{
    out->epoch = msg ? msg->epoch : 0;
    out->tag = msg ? msg->tag : 0;
}

int
fks_bus_touch_leases (fks_bus_client_t *self, const fks_bus_lease_t *leases, size_t n)
{
    if (!self || (!leases && n > 0))
        return -1;
    pthread_mutex_lock (&self->lock);
    bool any = false;
    if (self->state == S_JOINED)
        for (size_t i = 0; i < n; i++)
            if (leases[i].epoch == self->epoch && s_tags_add (&self->touches, leases[i].tag) == 0)
                any = true;
    if (any)
        s_requested (self);
    pthread_mutex_unlock (&self->lock);
    return 0;
}

int
fks_bus_touch (fks_bus_client_t *self, const fks_bus_msg_t *msg)
{
    if (!self || !msg)
        return -1;
    pthread_mutex_lock (&self->lock);
    if (msg->epoch == self->epoch && self->state == S_JOINED) {
        if (s_tags_add (&self->touches, msg->tag) == 0)
            s_requested (self);
    }
    pthread_mutex_unlock (&self->lock);
    return 0;
}

void
fks_bus_client_stats (fks_bus_client_t *self, fks_bus_client_stats_t *out)
{
    pthread_mutex_lock (&self->lock);
    *out = self->stats;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_lock (&self->pub_lock);
    out->published = self->published;
    out->publish_failed = self->publish_failed;
    pthread_mutex_unlock (&self->pub_lock);
    out->bad_frames = atomic_load (&self->bad_frames);
}

int
fks_bus_reconcile_timing (int64_t *interval_ms, int64_t *after_ms, fks_config_err_t *err)
{
    if (fks_config_duration_ms ("FKS_BUS_RECONCILE_INTERVAL", 5000, 100, 3600000, interval_ms,
                                err) < 0
        || fks_config_duration_ms ("FKS_BUS_RECONCILE_AFTER", 60000, 100, 86400000, after_ms,
                                   err) < 0)
        return -1;
    return 0;
}
