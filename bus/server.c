/*  server.c - the broker's sockets: the ROUTER that publishers and replicas talk to, the XPUB
 *  event stream, and the in-process socket through which the persistence and reconciler
 *  threads hand messages to the broker.
 *
 *  One thread runs everything here, on raw libzmq (zmq_msg_t, zmq_poll): each received frame
 *  stays a zmq_msg_t that the core and the stream share by reference, so an envelope is never
 *  copied on its way through. Deliveries to one replica leave as one multipart DELIVER of up
 *  to FKS_BUS_DELIVER_BATCH_MAX messages, and each poll wake-up reads up to a few thousand
 *  messages before dispatching, so batches form by themselves under load.
 *
 *  The stream never blocks the broker. libzmq's XPUB skips a subscriber whose queue is full
 *  (lossy mode) and says nothing; with ZMQ_XPUB_NODROP it refuses the whole message (EAGAIN)
 *  when any matching subscriber is full, so one stuck observer would stall all the others.
 *  The server keeps NODROP on to see the moment an observer overflows, counts it
 *  (fks_bus_stream_overflows_total), and sends that message again in lossy mode so the other
 *  observers still get it. libzmq then leaves the full observer out until it has drained its
 *  queue, without reporting how many messages it skipped: what can be counted honestly is each
 *  overflow (each costs that observer one message at least). docs/BUS.md has the details.
 */
#include "bus/server.h"
#include "bus/envelope.h"
#include "bus/protocol.h"
#include "common/id.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FRAMES_MAX     (5 + FKS_BUS_PREFIXES_MAX)     /* the longest command: JOIN */
#define S_ROUTER_BURST   4096       /* messages read per wake-up before dispatching */
#define S_INTERNAL_BURST 1024
#define S_STREAM_BURST   256
#define S_TICK_MAX_MS    50         /* housekeeping at least this often */
#define S_SYNC_MS        100        /* metrics brought up to date this often */
#define S_ROUTER_RCVHWM  10000      /* messages queued per peer before TCP pushes back */

typedef enum {
    S_SOCK_ROUTER = 0, S_SOCK_STREAM, S_SOCK_INTERNAL, S_SOCK_COUNT
} s_sock_t;

typedef enum {
    S_BAD_GARBAGE = 0,          /* no FKS signature */
    S_BAD_VERSION,              /* another protocol version */
    S_BAD_OVERSIZED,            /* an envelope over FKS_ENVELOPE_MAX_SIZE */
    S_BAD_MALFORMED,            /* wrong frame count or sizes for the command */
    S_BAD_COMMAND,              /* unknown command */
    S_BAD_ENVELOPE,             /* fks_envelope_peek refused it, or topic != type */
    S_BAD_COUNT
} s_bad_t;

static const char *const s_sock_names[S_SOCK_COUNT] = { "router", "stream", "internal" };
static const char *const s_bad_names[S_BAD_COUNT] = {
    "garbage", "version", "oversized", "malformed", "unknown_command", "envelope" };

typedef struct {
    fks_metric_t *depth, *bytes, *in_flight, *consumers;
    fks_metric_t *routed, *deliveries, *redeliveries, *acks, *rejects, *expired, *lost;
    fks_metric_t *released, *drains, *dead, *refused, *duplicates;
} s_group_metrics_t;

struct fks_bus_server_t {
    fks_bus_server_cfg_t cfg;
    char *bind, *stream_bind;
    void *zctx;
    void *router;
    void *stream;
    void *internal;
    void *store;                            /* PUSH to the store thread, or NULL */
    char internal_ep[64];
    fks_broker_t *broker;
    bool draining;

    fks_metrics_t *metrics;
    s_group_metrics_t *gm;                  /* per group, cfg.broker.max_groups */
    fks_broker_group_stats_t *prev;         /* last synced figures per group */
    size_t n_synced;
    fks_broker_stats_t prev_global;
    fks_metric_family_t *f_depth, *f_bytes, *f_in_flight, *f_consumers, *f_routed;
    fks_metric_family_t *f_deliveries, *f_redeliveries, *f_acks, *f_rejects, *f_taken_back;
    fks_metric_family_t *f_drains, *f_dead, *f_refused, *f_duplicates;
    fks_metric_t *m_published, *m_unrouted, *m_reconciled, *m_stream_sent;
    fks_metric_t *m_stream_overflows, *m_replicas, *m_replicas_dropped, *m_stale;
    fks_metric_t *m_dead_unrecorded, *m_unknown_peer;
    uint64_t published, reconciled, unrouted, stream_sent;   /* added to the metrics at sync */
    long stream_topics;                     /* distinct topics observers subscribe to */
    uint64_t *leave_tags;                   /* FKS_BUS_WINDOW_MAX, for LEAVE */
    uint64_t synced_published, synced_reconciled, synced_unrouted, synced_stream_sent;
    fks_metric_t *m_bad[S_SOCK_COUNT][S_BAD_COUNT];
    int64_t bad_logged[S_SOCK_COUNT][S_BAD_COUNT];
    uint64_t bad_suppressed[S_SOCK_COUNT][S_BAD_COUNT];
    int64_t join_logged;                    /* refused JOINs: logged at most once a second */
    uint64_t join_suppressed;
};

void
fks_bus_server_cfg_defaults (fks_bus_server_cfg_t *cfg)
{
    memset (cfg, 0, sizeof *cfg);
    fks_broker_cfg_defaults (&cfg->broker);
    cfg->bind = "tcp://127.0.0.1:5570";
    cfg->stream_bind = "tcp://127.0.0.1:5571";
    cfg->stream_hwm = 10000;
    cfg->drain_timeout_ms = 10000;
    cfg->max_frame = 2 * FKS_ENVELOPE_MAX_SIZE;
    cfg->metrics = NULL;
}

//  --------------------------------------------------------------------------
//  Bad frames: counted always, logged at most once a second per socket and kind

static void
s_bad (fks_bus_server_t *self, s_sock_t sock, s_bad_t bad, const char *detail)
{
    fks_metric_inc (self->m_bad[sock][bad]);
    int64_t now = fks_mono_ns () / 1000000;
    if (self->bad_logged[sock][bad] != 0 && now - self->bad_logged[sock][bad] < 1000) {
        self->bad_suppressed[sock][bad]++;
        return;
    }
    char fields[512] = "";
    fks_log_field_str (fields, sizeof fields, "socket", s_sock_names[sock]);
    fks_log_field_str (fields, sizeof fields, "reason", s_bad_names[bad]);
    if (detail)
        fks_log_field_str (fields, sizeof fields, "detail", detail);
    fks_log_field_int (fields, sizeof fields, "suppressed",
                       (long long) self->bad_suppressed[sock][bad]);
    fks_log (FKS_LOG_WARN, NULL, fields, "bad frame dropped");
    self->bad_logged[sock][bad] = now;
    self->bad_suppressed[sock][bad] = 0;
}

//  --------------------------------------------------------------------------
//  Sending

static int
s_send_hdr (void *sock, const uint8_t *rid, size_t rid_len, uint8_t command, bool more)
{
    uint8_t hdr[FKS_BUS_HDR_SIZE];
    fks_bus_put_hdr (hdr, command);
    if (zmq_send (sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    if (zmq_send (sock, hdr, sizeof hdr, more ? ZMQ_SNDMORE : 0) == -1)
        return -1;
    return 0;
}

static void
s_send_error (fks_bus_server_t *self, const uint8_t *rid, size_t rid_len, uint8_t code,
              const char *text)
{
    if (s_send_hdr (self->router, rid, rid_len, FKS_BUS_ERROR, true) != 0)
        return;
    zmq_send (self->router, &code, 1, ZMQ_SNDMORE);
    zmq_send (self->router, text, strlen (text), 0);
}

//  Sends the batch as DELIVER_PACKED: every message's meta and topic in one frame, then the
//  envelopes, shared with the queue (zmq_msg_copy), one frame each.
static int
s_deliver_packed (fks_bus_server_t *self, const uint8_t *rid, size_t rid_len,
                  const fks_broker_delivery_t *batch, size_t n)
{
    uint8_t metas[FKS_BUS_DELIVER_BATCH_MAX * (FKS_BUS_META_SIZE + 1 + FKS_TYPE_MAX)];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t tlen = zmq_msg_size (batch[i].topic);
        uint8_t *p = metas + len;
        fks_bus_put_u64 (p, batch[i].tag);
        fks_bus_put_u32 (p + 8, batch[i].attempt);
        memcpy (p + 12, batch[i].id->b, FKS_ID_SIZE);
        p[FKS_BUS_META_SIZE] = (uint8_t) tlen;
        memcpy (p + FKS_BUS_META_SIZE + 1, zmq_msg_data (batch[i].topic), tlen);
        len += FKS_BUS_META_SIZE + 1 + tlen;
    }
    if (s_send_hdr (self->router, rid, rid_len, FKS_BUS_DELIVER_PACKED, true) != 0)
        return -1;
    zmq_send (self->router, metas, len, ZMQ_SNDMORE);
    for (size_t i = 0; i < n; i++) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        zmq_msg_copy (&part, batch[i].env);
        if (zmq_msg_send (&part, self->router, i + 1 < n ? ZMQ_SNDMORE : 0) == -1)
            zmq_msg_close (&part);
    }
    return 0;
}

//  Sends the batch as DELIVER_BATCH: every message's meta, size and topic in one frame, then
//  the envelopes end to end in another. Copying 300 bytes costs the broker less than the frame
//  it saves costs each of the four threads a frame crosses (broker, its I/O thread, the
//  replica's I/O thread, the replica).
static int
s_deliver_batch (fks_bus_server_t *self, const uint8_t *rid, size_t rid_len,
                 const fks_broker_delivery_t *batch, size_t n)
{
    uint8_t recs[FKS_BUS_DELIVER_BATCH_MAX * (FKS_BUS_META_SIZE + 5 + FKS_TYPE_MAX)];
    size_t len = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t tlen = zmq_msg_size (batch[i].topic);
        size_t elen = zmq_msg_size (batch[i].env);
        uint8_t *p = recs + len;
        fks_bus_put_u64 (p, batch[i].tag);
        fks_bus_put_u32 (p + 8, batch[i].attempt);
        memcpy (p + 12, batch[i].id->b, FKS_ID_SIZE);
        fks_bus_put_u32 (p + FKS_BUS_META_SIZE, (uint32_t) elen);
        p[FKS_BUS_META_SIZE + 4] = (uint8_t) tlen;
        memcpy (p + FKS_BUS_META_SIZE + 5, zmq_msg_data (batch[i].topic), tlen);
        len += FKS_BUS_META_SIZE + 5 + tlen;
        total += elen;
    }
    zmq_msg_t body;
    if (zmq_msg_init_size (&body, total) != 0)
        return -1;
    uint8_t *out = zmq_msg_data (&body);
    for (size_t i = 0; i < n; i++) {
        size_t elen = zmq_msg_size (batch[i].env);
        memcpy (out, zmq_msg_data (batch[i].env), elen);
        out += elen;
    }
    if (s_send_hdr (self->router, rid, rid_len, FKS_BUS_DELIVER_BATCH, true) != 0) {
        zmq_msg_close (&body);
        return -1;
    }
    zmq_send (self->router, recs, len, ZMQ_SNDMORE);
    if (zmq_msg_send (&body, self->router, 0) == -1)
        zmq_msg_close (&body);
    return 0;
}

static int
s_deliver (void *arg, const uint8_t *rid, size_t rid_len, uint32_t flags,
           const fks_broker_delivery_t *batch, size_t n)
{
    fks_bus_server_t *self = arg;
    //  ROUTER_MANDATORY: the routing-id frame fails (EHOSTUNREACH) when the peer is gone, or
    //  EAGAIN when its queue is full, which credit makes impossible for a live replica.
    if (flags & FKS_BUS_JOIN_BATCH)
        return s_deliver_batch (self, rid, rid_len, batch, n);
    if (flags & FKS_BUS_JOIN_PACKED)
        return s_deliver_packed (self, rid, rid_len, batch, n);
    if (s_send_hdr (self->router, rid, rid_len, FKS_BUS_DELIVER, true) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        //  meta and topic share a frame: one frame fewer per message on both sides.
        uint8_t meta[FKS_BUS_META_SIZE + FKS_TYPE_MAX];
        size_t tlen = zmq_msg_size (batch[i].topic);
        fks_bus_put_u64 (meta, batch[i].tag);
        fks_bus_put_u32 (meta + 8, batch[i].attempt);
        memcpy (meta + 12, batch[i].id->b, FKS_ID_SIZE);
        memcpy (meta + FKS_BUS_META_SIZE, zmq_msg_data (batch[i].topic), tlen);
        zmq_send (self->router, meta, FKS_BUS_META_SIZE + tlen, ZMQ_SNDMORE);
        zmq_msg_t part;
        zmq_msg_init (&part);
        zmq_msg_copy (&part, batch[i].env);
        if (zmq_msg_send (&part, self->router, i + 1 < n ? ZMQ_SNDMORE : 0) == -1)
            zmq_msg_close (&part);
    }
    return 0;
}

static void
s_heartbeat (void *arg, const uint8_t *rid, size_t rid_len)
{
    fks_bus_server_t *self = arg;
    s_send_hdr (self->router, rid, rid_len, FKS_BUS_HEARTBEAT, false);
}

static void
s_dead_letter (void *arg, const char *group, const fks_id_t *id, uint32_t attempts,
               const char *reason, zmq_msg_t *topic, zmq_msg_t *env)
{
    fks_bus_server_t *self = arg;
    if (!self->store) {
        fks_metric_inc (self->m_dead_unrecorded);
        return;
    }
    uint8_t att[4];
    fks_bus_put_u32 (att, attempts);
    int rc = zmq_send (self->store, "D", 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc != -1) {
        zmq_send (self->store, group, strlen (group), ZMQ_SNDMORE);
        zmq_send (self->store, id->b, FKS_ID_SIZE, ZMQ_SNDMORE);
        zmq_send (self->store, att, sizeof att, ZMQ_SNDMORE);
        zmq_send (self->store, reason, strlen (reason), ZMQ_SNDMORE);
        zmq_msg_t part;
        zmq_msg_init (&part);
        zmq_msg_move (&part, topic);
        if (zmq_msg_send (&part, self->store, ZMQ_SNDMORE) == -1)
            zmq_msg_close (&part);
        zmq_msg_init (&part);
        zmq_msg_move (&part, env);
        if (zmq_msg_send (&part, self->store, 0) == -1)
            zmq_msg_close (&part);
        return;
    }
    //  The store is not keeping up. The envelope is still in the outbox with no consumed row,
    //  so the reconciler brings it back and it ends here again.
    fks_metric_inc (self->m_dead_unrecorded);
    char id_text[FKS_ID_STR_SIZE];
    fks_id_format (id, id_text);
    char fields[256] = "";
    fks_log_field_str (fields, sizeof fields, "group", group);
    fks_log_field_str (fields, sizeof fields, "msg_id", id_text);
    fks_log (FKS_LOG_ERROR, NULL, fields,
             "dead letter not recorded: the store's queue is full (the reconciler will "
             "redeliver it)");
}

static bool
s_group_changed (void *arg, const char *group, const char *const *prefixes, size_t n)
{
    fks_bus_server_t *self = arg;
    if (!self->store)
        return true;
    if (zmq_send (self->store, "G", 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "group %s not persisted yet: the store's queue is "
                 "full (tried again every heartbeat)", group);
        return false;
    }
    zmq_send (self->store, group, strlen (group), n > 0 ? ZMQ_SNDMORE : 0);
    for (size_t i = 0; i < n; i++)
        zmq_send (self->store, prefixes[i], strlen (prefixes[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
    return true;
}

//  Sends one envelope on the stream; see the file's opening paragraph.
static void
s_stream_send (fks_bus_server_t *self, zmq_msg_t *topic, zmq_msg_t *env)
{
    zmq_msg_t t, e;
    zmq_msg_init (&t);
    zmq_msg_copy (&t, topic);
    if (zmq_msg_send (&t, self->stream, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        if (errno != EAGAIN) {
            zmq_msg_close (&t);
            return;
        }
        fks_metric_inc (self->m_stream_overflows);
        int off = 0, on = 1;
        zmq_setsockopt (self->stream, ZMQ_XPUB_NODROP, &off, sizeof off);
        if (zmq_msg_send (&t, self->stream, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&t);
            zmq_setsockopt (self->stream, ZMQ_XPUB_NODROP, &on, sizeof on);
            return;
        }
        zmq_msg_init (&e);
        zmq_msg_copy (&e, env);
        if (zmq_msg_send (&e, self->stream, ZMQ_DONTWAIT) == -1)
            zmq_msg_close (&e);
        zmq_setsockopt (self->stream, ZMQ_XPUB_NODROP, &on, sizeof on);
        self->stream_sent++;
        return;
    }
    zmq_msg_init (&e);
    zmq_msg_copy (&e, env);
    //  The second part meets the same queues as the first: it cannot find one full.
    if (zmq_msg_send (&e, self->stream, ZMQ_DONTWAIT) == -1)
        zmq_msg_close (&e);
    self->stream_sent++;
}

//  --------------------------------------------------------------------------
//  Receiving

//  Reads one whole message into frames (at most max kept; the rest are read and dropped,
//  *extra set). Returns the number of frames kept, 0 when nothing was waiting, -1 on error.
static int
s_recv (void *sock, zmq_msg_t *frames, size_t max, bool *extra)
{
    size_t n = 0;
    *extra = false;
    for (;;) {
        zmq_msg_t scratch;
        zmq_msg_t *m = n < max ? &frames[n] : &scratch;
        zmq_msg_init (m);
        if (zmq_msg_recv (m, sock, ZMQ_DONTWAIT) == -1) {
            int err = errno;
            zmq_msg_close (m);
            if (n > 0) {
                //  libzmq delivers multipart messages whole; should it not, keep what came.
                return (int) n;
            }
            errno = err;
            return err == EAGAIN ? 0 : -1;
        }
        bool more = zmq_msg_more (m);
        if (m == &scratch) {
            zmq_msg_close (m);
            *extra = true;
        }
        else
            n++;
        if (!more)
            return (int) n;
    }
}

static void
s_close_frames (zmq_msg_t *frames, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close (&frames[i]);
}

//  Copies a frame into a NUL-terminated string of at most cap-1 bytes. -1 when too long or
//  when it holds a NUL.
static int
s_frame_str (zmq_msg_t *frame, char *buf, size_t cap)
{
    size_t len = zmq_msg_size (frame);
    if (len >= cap || memchr (zmq_msg_data (frame), 0, len))
        return -1;
    memcpy (buf, zmq_msg_data (frame), len);
    buf[len] = 0;
    return 0;
}

static int64_t
s_now_ms (void)
{
    return fks_mono_ns () / 1000000;
}

//  Validates and routes one envelope. group NULL: every interested group, plus the stream.
static void
s_publish (fks_bus_server_t *self, s_sock_t sock, zmq_msg_t *topic, zmq_msg_t *env,
           const char *group)
{
    size_t tlen = topic ? zmq_msg_size (topic) : 1;
    size_t elen = zmq_msg_size (env);
    if (elen > FKS_ENVELOPE_MAX_SIZE) {
        char detail[64];
        snprintf (detail, sizeof detail, "envelope of %zu bytes", elen);
        s_bad (self, sock, S_BAD_OVERSIZED, detail);
        return;
    }
    if (tlen == 0 || tlen >= FKS_TYPE_MAX) {
        s_bad (self, sock, S_BAD_MALFORMED, "topic size");
        return;
    }
    fks_envelope_hdr_t hdr;
    fks_envelope_err_t err;
    if (fks_envelope_peek (zmq_msg_data (env), elen, &hdr, NULL, NULL, &err) != 0) {
        s_bad (self, sock, S_BAD_ENVELOPE, err.msg);
        return;
    }
    //  Without a topic frame the topic is the envelope's type (a short frame: zmq keeps it
    //  inside the zmq_msg_t, no allocation).
    zmq_msg_t own_topic;
    if (!topic) {
        tlen = strlen (hdr.type);
        zmq_msg_init_size (&own_topic, tlen);
        memcpy (zmq_msg_data (&own_topic), hdr.type, tlen);
        topic = &own_topic;
    }
    else
    if (strlen (hdr.type) != tlen || memcmp (hdr.type, zmq_msg_data (topic), tlen) != 0) {
        s_bad (self, sock, S_BAD_ENVELOPE, "topic differs from the envelope's type");
        return;
    }
    if (group)
        self->reconciled++;
    else
        self->published++;
    fks_broker_publish_result_t res;
    fks_broker_publish (self->broker, topic, env, &hdr.id, group, &res);
    if (res.queued + res.duplicate + res.refused == 0)
        self->unrouted++;
    //  With no observer subscribed to anything, the XPUB would only throw the copies away.
    if (!group && !self->draining && self->stream_topics > 0)
        s_stream_send (self, topic, env);
    if (topic == &own_topic)
        zmq_msg_close (&own_topic);
}

static size_t
s_tags (zmq_msg_t *frame, uint64_t *tags, size_t max)
{
    size_t len = zmq_msg_size (frame);
    if (len == 0 || len % 8 != 0 || len / 8 > max)
        return 0;
    const uint8_t *p = zmq_msg_data (frame);
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++)
        tags[i] = fks_bus_get_u64 (p + 8 * i);
    return n;
}

static void
s_handle_join (fks_bus_server_t *self, const uint8_t *rid, size_t rid_len, zmq_msg_t *f,
               int n, int64_t now)
{
    //  f[2] group, f[3] window, f[4] name, f[5..] prefixes
    char group[FKS_BUS_GROUP_MAX], name[FKS_BUS_NAME_MAX];
    char prefix_buf[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
    const char *prefixes[FKS_BUS_PREFIXES_MAX];
    size_t wlen = n >= 4 ? zmq_msg_size (&f[3]) : 0;
    if (n < 6 || n > 5 + FKS_BUS_PREFIXES_MAX || (wlen != 4 && wlen != 8)
        || s_frame_str (&f[2], group, sizeof group) != 0
        || s_frame_str (&f[4], name, sizeof name) != 0) {
        s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "JOIN");
        s_send_error (self, rid, rid_len, FKS_BUS_ERR_REFUSED, "malformed JOIN");
        return;
    }
    size_t n_prefixes = (size_t) n - 5;
    for (size_t i = 0; i < n_prefixes; i++) {
        if (s_frame_str (&f[5 + i], prefix_buf[i], sizeof prefix_buf[i]) != 0) {
            s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "JOIN prefix");
            s_send_error (self, rid, rid_len, FKS_BUS_ERR_REFUSED, "type prefix too long");
            return;
        }
        prefixes[i] = prefix_buf[i];
    }
    uint32_t window = fks_bus_get_u32 (zmq_msg_data (&f[3]));
    uint32_t flags = wlen == 8 ? fks_bus_get_u32 ((const uint8_t *) zmq_msg_data (&f[3]) + 4)
                                 & FKS_BUS_JOIN_FLAGS : 0;
    char why[160];
    if (fks_broker_join (self->broker, rid, rid_len, group, prefixes, n_prefixes, window, flags,
                         name, now, why, sizeof why) != 0) {
        char fields[256] = "";
        if (fks_bus_group_valid (group, strlen (group)))
            fks_log_field_str (fields, sizeof fields, "group", group);
        if (fks_bus_name_valid (name, strlen (name)))
            fks_log_field_str (fields, sizeof fields, "replica", name);
        if (self->join_logged != 0 && now - self->join_logged < 1000)
            self->join_suppressed++;
        else {
            fks_log_field_int (fields, sizeof fields, "suppressed",
                               (long long) self->join_suppressed);
            fks_log (FKS_LOG_WARN, NULL, fields, "join refused: %s", why);
            self->join_logged = now;
            self->join_suppressed = 0;
        }
        s_send_error (self, rid, rid_len,
                      self->draining ? FKS_BUS_ERR_SHUTDOWN : FKS_BUS_ERR_REFUSED, why);
        return;
    }
    if (s_send_hdr (self->router, rid, rid_len, FKS_BUS_WELCOME, true) != 0)
        return;
    uint8_t w[12];
    fks_bus_put_u32 (w, (uint32_t) self->cfg.broker.heartbeat_ms);
    fks_bus_put_u32 (w + 4, self->cfg.broker.liveness);
    fks_bus_put_u32 (w + 8, (uint32_t) self->cfg.broker.ack_deadline_ms);
    zmq_send (self->router, w, 4, ZMQ_SNDMORE);
    zmq_send (self->router, w + 4, 4, ZMQ_SNDMORE);
    zmq_send (self->router, w + 8, 4, 0);
}

//  Replaces control bytes so a peer's reason is safe in logs, SQL text and msgpack str.
static void
s_clean_reason (zmq_msg_t *frame, char *buf, size_t cap)
{
    size_t len = zmq_msg_size (frame);
    if (len >= cap)
        len = cap - 1;
    const uint8_t *p = zmq_msg_data (frame);
    for (size_t i = 0; i < len; i++)
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char) p[i] : '?';
    buf[len] = 0;
}

static void
s_handle_router (fks_bus_server_t *self, zmq_msg_t *f, int n, bool extra, int64_t now)
{
    const uint8_t *rid = zmq_msg_data (&f[0]);
    size_t rid_len = zmq_msg_size (&f[0]);
    if (n < 2) {
        s_bad (self, S_SOCK_ROUTER, S_BAD_GARBAGE, "no header frame");
        return;
    }
    const uint8_t *hdr = zmq_msg_data (&f[1]);
    size_t hdr_len = zmq_msg_size (&f[1]);
    if (hdr_len < FKS_BUS_HDR_SIZE || hdr[0] != FKS_BUS_SIGNATURE) {
        s_bad (self, S_SOCK_ROUTER, S_BAD_GARBAGE, NULL);
        return;
    }
    if (hdr[1] != FKS_BUS_PROTO_VERSION) {
        char detail[48];
        snprintf (detail, sizeof detail, "version %u", hdr[1]);
        s_bad (self, S_SOCK_ROUTER, S_BAD_VERSION, detail);
        return;
    }
    if (extra) {
        s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "too many frames");
        return;
    }
    if (hdr_len > FKS_BUS_HDR_SIZE) {
        //  Only a PUBLISH carries its envelope in the header frame. The envelope is copied
        //  out so that the queue holds it alone.
        if (hdr[2] != FKS_BUS_PUBLISH || n != 2) {
            s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "header frame size");
            return;
        }
        zmq_msg_t env;
        zmq_msg_init_size (&env, hdr_len - FKS_BUS_HDR_SIZE);
        memcpy (zmq_msg_data (&env), hdr + FKS_BUS_HDR_SIZE, hdr_len - FKS_BUS_HDR_SIZE);
        s_publish (self, S_SOCK_ROUTER, NULL, &env, NULL);
        zmq_msg_close (&env);
        return;
    }
    uint64_t tags[FKS_BUS_TAGS_MAX];
    size_t n_tags;
    int rc = 0;
    switch (hdr[2]) {
        case FKS_BUS_PUBLISH:
            if (n != 3 && n != 4) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "PUBLISH");
                return;
            }
            s_publish (self, S_SOCK_ROUTER, n == 4 ? &f[2] : NULL, &f[n - 1], NULL);
            return;
        case FKS_BUS_JOIN:
            s_handle_join (self, rid, rid_len, f, n, now);
            return;
        case FKS_BUS_ACK:
        case FKS_BUS_RELEASE:
        case FKS_BUS_TOUCH:
            if (n != 3 || (n_tags = s_tags (&f[2], tags, FKS_BUS_TAGS_MAX)) == 0) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "tags");
                return;
            }
            if (hdr[2] == FKS_BUS_ACK)
                rc = fks_broker_ack (self->broker, rid, rid_len, tags, n_tags, now);
            else
            if (hdr[2] == FKS_BUS_RELEASE)
                rc = fks_broker_release (self->broker, rid, rid_len, tags, n_tags, now);
            else
                rc = fks_broker_touch (self->broker, rid, rid_len, tags, n_tags, now);
            break;
        case FKS_BUS_REJECT: {
            if (n != 5 || zmq_msg_size (&f[2]) != 8 || zmq_msg_size (&f[3]) != 1
                || zmq_msg_size (&f[4]) > FKS_BUS_REASON_MAX) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "REJECT");
                return;
            }
            uint8_t action = *(const uint8_t *) zmq_msg_data (&f[3]);
            if (action != FKS_BUS_REJECT_RETRY && action != FKS_BUS_REJECT_DEAD) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "REJECT action");
                return;
            }
            char reason[FKS_BUS_REASON_MAX + 1];
            s_clean_reason (&f[4], reason, sizeof reason);
            rc = fks_broker_reject (self->broker, rid, rid_len,
                                    fks_bus_get_u64 (zmq_msg_data (&f[2])), action, reason, now);
            break;
        }
        case FKS_BUS_HEARTBEAT:
            if (n != 2) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "HEARTBEAT");
                return;
            }
            rc = fks_broker_heard (self->broker, rid, rid_len, now) ? 0 : -1;
            break;
        case FKS_BUS_LEAVE:
            if (n > 3 || (n == 3 && (n_tags = s_tags (&f[2], self->leave_tags,
                                                      FKS_BUS_WINDOW_MAX)) == 0)) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "LEAVE");
                return;
            }
            //  Release and leave in one step: no dispatch can come between them.
            if (n == 3)
                fks_broker_release (self->broker, rid, rid_len, self->leave_tags, n_tags, now);
            fks_broker_leave (self->broker, rid, rid_len, now);
            return;
        case FKS_BUS_DRAIN:
            if (n != 2) {
                s_bad (self, S_SOCK_ROUTER, S_BAD_MALFORMED, "DRAIN");
                return;
            }
            rc = fks_broker_drain_replica (self->broker, rid, rid_len, now);
            if (rc == 0)
                s_send_hdr (self->router, rid, rid_len, FKS_BUS_DRAINED, false);
            break;
        default: {
            char detail[32];
            snprintf (detail, sizeof detail, "command 0x%02x", hdr[2]);
            s_bad (self, S_SOCK_ROUTER, S_BAD_COMMAND, detail);
            return;
        }
    }
    if (rc == -1) {
        //  A replica the broker does not know (it restarted, or dropped it): join again.
        fks_metric_inc (self->m_unknown_peer);
        s_send_error (self, rid, rid_len, self->draining ? FKS_BUS_ERR_SHUTDOWN
                                                         : FKS_BUS_ERR_UNKNOWN,
                      "unknown replica: join again");
    }
}

static int
s_drain_router (fks_bus_server_t *self, int64_t now)
{
    zmq_msg_t f[S_FRAMES_MAX];
    for (int i = 0; i < S_ROUTER_BURST; i++) {
        bool extra;
        int n = s_recv (self->router, f, S_FRAMES_MAX, &extra);
        if (n == 0)
            return 0;
        if (n < 0)
            return errno == ETERM ? -1 : 0;
        s_handle_router (self, f, n, extra, now);
        s_close_frames (f, n);
    }
    return 0;
}

static void
s_handle_internal (fks_bus_server_t *self, zmq_msg_t *f, int n, bool extra)
{
    if (n < 1 || zmq_msg_size (&f[0]) != 1 || extra) {
        s_bad (self, S_SOCK_INTERNAL, S_BAD_MALFORMED, NULL);
        return;
    }
    char kind = *(const char *) zmq_msg_data (&f[0]);
    char group[FKS_BUS_GROUP_MAX];
    if (kind == 'P' && n == 3)
        s_publish (self, S_SOCK_INTERNAL, &f[1], &f[2], NULL);
    else
    if (kind == 'G' && n == 4 && s_frame_str (&f[1], group, sizeof group) == 0)
        s_publish (self, S_SOCK_INTERNAL, &f[2], &f[3], group);
    else
    if (kind == 'D' && n >= 3 && n <= 2 + FKS_BUS_PREFIXES_MAX
        && s_frame_str (&f[1], group, sizeof group) == 0) {
        char buf[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
        const char *prefixes[FKS_BUS_PREFIXES_MAX];
        for (int i = 2; i < n; i++) {
            if (s_frame_str (&f[i], buf[i - 2], sizeof buf[i - 2]) != 0) {
                s_bad (self, S_SOCK_INTERNAL, S_BAD_MALFORMED, "prefix");
                return;
            }
            prefixes[i - 2] = buf[i - 2];
        }
        fks_broker_declare (self->broker, group, prefixes, (size_t) n - 2);
    }
    else
        s_bad (self, S_SOCK_INTERNAL, S_BAD_MALFORMED, NULL);
}

static int
s_drain_internal (fks_bus_server_t *self)
{
    zmq_msg_t f[S_FRAMES_MAX];
    for (int i = 0; i < S_INTERNAL_BURST; i++) {
        bool extra;
        int n = s_recv (self->internal, f, S_FRAMES_MAX, &extra);
        if (n == 0)
            return 0;
        if (n < 0)
            return errno == ETERM ? -1 : 0;
        s_handle_internal (self, f, n, extra);
        s_close_frames (f, n);
    }
    return 0;
}

//  Observers send subscriptions (first byte 1) and cancellations (0); anything else that
//  reaches the XPUB is counted and dropped. libzmq passes up the first subscription to a topic
//  and the cancellation of its last subscriber (also when that subscriber disconnects), so
//  counting them tells whether anyone is listening at all.
static int
s_drain_stream (fks_bus_server_t *self)
{
    zmq_msg_t f[2];
    for (int i = 0; i < S_STREAM_BURST; i++) {
        bool extra;
        int n = s_recv (self->stream, f, 1, &extra);
        if (n == 0)
            return 0;
        if (n < 0)
            return errno == ETERM ? -1 : 0;
        const uint8_t *p = zmq_msg_data (&f[0]);
        size_t len = zmq_msg_size (&f[0]);
        if (len == 0 || (p[0] != 0 && p[0] != 1) || extra)
            s_bad (self, S_SOCK_STREAM, S_BAD_GARBAGE, NULL);
        else
        if (p[0] == 1)
            self->stream_topics++;
        else
        if (self->stream_topics > 0)
            self->stream_topics--;
        s_close_frames (f, n);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Metrics

static void
s_group_series (fks_bus_server_t *self, size_t i, const char *group)
{
    s_group_metrics_t *m = &self->gm[i];
    m->depth = fks_metric_get1 (self->f_depth, group);
    m->bytes = fks_metric_get1 (self->f_bytes, group);
    m->in_flight = fks_metric_get1 (self->f_in_flight, group);
    m->consumers = fks_metric_get1 (self->f_consumers, group);
    m->routed = fks_metric_get1 (self->f_routed, group);
    m->deliveries = fks_metric_get1 (self->f_deliveries, group);
    m->redeliveries = fks_metric_get1 (self->f_redeliveries, group);
    m->acks = fks_metric_get1 (self->f_acks, group);
    m->rejects = fks_metric_get1 (self->f_rejects, group);
    const char *labels[2] = { group, "deadline" };
    m->expired = fks_metric_get (self->f_taken_back, labels);
    labels[1] = "lost";
    m->lost = fks_metric_get (self->f_taken_back, labels);
    labels[1] = "released";
    m->released = fks_metric_get (self->f_taken_back, labels);
    m->drains = fks_metric_get1 (self->f_drains, group);
    m->dead = fks_metric_get1 (self->f_dead, group);
    m->refused = fks_metric_get1 (self->f_refused, group);
    m->duplicates = fks_metric_get1 (self->f_duplicates, group);
}

static void
s_sync_metrics (fks_bus_server_t *self)
{
    size_t n = fks_broker_group_count (self->broker);
    for (size_t i = 0; i < n; i++) {
        fks_broker_group_stats_t s;
        fks_broker_group_stats (self->broker, i, &s);
        if (i >= self->n_synced) {
            s_group_series (self, i, s.name);
            memset (&self->prev[i], 0, sizeof self->prev[i]);
            self->n_synced = i + 1;
        }
        s_group_metrics_t *m = &self->gm[i];
        fks_broker_group_stats_t *p = &self->prev[i];
        fks_metric_set (m->depth, (double) s.queued);
        fks_metric_set (m->bytes, (double) s.queued_bytes);
        fks_metric_set (m->in_flight, (double) s.in_flight);
        fks_metric_set (m->consumers, (double) s.consumers);
        fks_metric_add (m->routed, (double) (s.routed - p->routed));
        fks_metric_add (m->deliveries, (double) (s.deliveries - p->deliveries));
        fks_metric_add (m->redeliveries, (double) (s.redeliveries - p->redeliveries));
        fks_metric_add (m->acks, (double) (s.acks - p->acks));
        fks_metric_add (m->rejects, (double) (s.rejects - p->rejects));
        fks_metric_add (m->expired, (double) (s.expired - p->expired));
        fks_metric_add (m->lost, (double) (s.lost - p->lost));
        fks_metric_add (m->released, (double) (s.released - p->released));
        fks_metric_add (m->drains, (double) (s.drains - p->drains));
        fks_metric_add (m->dead, (double) (s.dead_letters - p->dead_letters));
        fks_metric_add (m->refused, (double) (s.refused - p->refused));
        fks_metric_add (m->duplicates, (double) (s.duplicates - p->duplicates));
        *p = s;
    }
    fks_metric_add (self->m_published, (double) (self->published - self->synced_published));
    fks_metric_add (self->m_reconciled, (double) (self->reconciled - self->synced_reconciled));
    fks_metric_add (self->m_unrouted, (double) (self->unrouted - self->synced_unrouted));
    fks_metric_add (self->m_stream_sent,
                    (double) (self->stream_sent - self->synced_stream_sent));
    self->synced_published = self->published;
    self->synced_reconciled = self->reconciled;
    self->synced_unrouted = self->unrouted;
    self->synced_stream_sent = self->stream_sent;
    fks_broker_stats_t g;
    fks_broker_stats (self->broker, &g);
    fks_metric_set (self->m_replicas, (double) g.replicas);
    fks_metric_add (self->m_replicas_dropped,
                    (double) (g.replicas_dropped - self->prev_global.replicas_dropped));
    fks_metric_add (self->m_stale, (double) (g.stale - self->prev_global.stale));
    self->prev_global = g;
}

static int
s_register_metrics (fks_bus_server_t *self)
{
    fks_metrics_t *r = self->metrics;
    static const char *const grp[] = { "group" };
    static const char *const grp_reason[] = { "group", "reason" };
    static const char *const sock_reason[] = { "socket", "reason" };
#define S_FAM(var, name, help, type, labels, n) \
    if (!(var = fks_metrics_family (r, name, help, type, labels, n, NULL, 0))) return -1
    S_FAM (self->f_depth, "fks_bus_queue_depth",
           "Messages waiting in a group's queue (what the HPA scales workers on).",
           FKS_GAUGE, grp, 1);
    S_FAM (self->f_bytes, "fks_bus_queue_bytes", "Bytes waiting in a group's queue.",
           FKS_GAUGE, grp, 1);
    S_FAM (self->f_in_flight, "fks_bus_in_flight",
           "Messages delivered to a group's replicas and not yet acked.", FKS_GAUGE, grp, 1);
    S_FAM (self->f_consumers, "fks_bus_consumers", "Replicas joined to a group.",
           FKS_GAUGE, grp, 1);
    S_FAM (self->f_routed, "fks_bus_routed_total", "Published messages a group took.",
           FKS_COUNTER, grp, 1);
    S_FAM (self->f_deliveries, "fks_bus_deliveries_total",
           "Deliveries to a group's replicas, first ones and redeliveries.", FKS_COUNTER, grp, 1);
    S_FAM (self->f_redeliveries, "fks_bus_redeliveries_total",
           "Deliveries of a message that had been delivered before.", FKS_COUNTER, grp, 1);
    S_FAM (self->f_acks, "fks_bus_acks_total", "Deliveries acknowledged.", FKS_COUNTER, grp, 1);
    S_FAM (self->f_rejects, "fks_bus_rejects_total", "Deliveries rejected by a replica.",
           FKS_COUNTER, grp, 1);
    S_FAM (self->f_taken_back, "fks_bus_taken_back_total",
           "Un-acked deliveries taken back: deadline passed, replica lost, or released.",
           FKS_COUNTER, grp_reason, 2);
    S_FAM (self->f_drains, "fks_bus_drains_total",
           "Replicas of a group that said they were stopping (DRAIN): given nothing more.",
           FKS_COUNTER, grp, 1);
    S_FAM (self->f_dead, "fks_bus_dead_letters_total", "Messages that became dead letters.",
           FKS_COUNTER, grp, 1);
    S_FAM (self->f_refused, "fks_bus_refused_total",
           "Publishes a group refused because its queue was full or the broker was stopping "
           "(the reconciler brings them back).", FKS_COUNTER, grp, 1);
    S_FAM (self->f_duplicates, "fks_bus_duplicates_total",
           "Publishes ignored because the group already held that message id.",
           FKS_COUNTER, grp, 1);
    fks_metric_family_t *f;
#define S_ONE(var, name, help, type) \
    S_FAM (f, name, help, type, NULL, 0); var = fks_metric_get (f, NULL)
    S_ONE (self->m_published, "fks_bus_published_total", "Envelopes published to the broker.",
           FKS_COUNTER);
    S_ONE (self->m_unrouted, "fks_bus_unrouted_total",
           "Published envelopes that no group subscribes to.", FKS_COUNTER);
    S_ONE (self->m_reconciled, "fks_bus_reconciled_total",
           "Envelopes the reconciler published again to a group.", FKS_COUNTER);
    S_ONE (self->m_stream_sent, "fks_bus_stream_sent_total",
           "Envelopes sent on the event stream.", FKS_COUNTER);
    S_ONE (self->m_stream_overflows, "fks_bus_stream_overflows_total",
           "Times an observer's stream queue was full; each cost that observer messages "
           "(at least one) until it caught up.", FKS_COUNTER);
    S_ONE (self->m_replicas, "fks_bus_replicas", "Replicas joined, all groups.", FKS_GAUGE);
    S_ONE (self->m_replicas_dropped, "fks_bus_replicas_dropped_total",
           "Replicas dropped: silent, unreachable or replaced by a rejoin.", FKS_COUNTER);
    S_ONE (self->m_stale, "fks_bus_stale_total",
           "Acks, rejects, releases and touches of deliveries no longer in flight.",
           FKS_COUNTER);
    S_ONE (self->m_dead_unrecorded, "fks_bus_dead_letters_unrecorded_total",
           "Dead letters the store could not take (no store, or its queue full).",
           FKS_COUNTER);
    S_ONE (self->m_unknown_peer, "fks_bus_unknown_peer_total",
           "Commands from peers the broker did not know (told to join again).", FKS_COUNTER);
    fks_metric_family_t *bad;
    S_FAM (bad, "fks_bus_bad_frames_total", "Frames dropped as invalid, by socket and reason.",
           FKS_COUNTER, sock_reason, 2);
    for (int s = 0; s < S_SOCK_COUNT; s++)
        for (int b = 0; b < S_BAD_COUNT; b++) {
            const char *labels[2] = { s_sock_names[s], s_bad_names[b] };
            self->m_bad[s][b] = fks_metric_get (bad, labels);
        }
#undef S_ONE
#undef S_FAM
    return 0;
}

//  --------------------------------------------------------------------------
//  Construction

static void *
s_socket (fks_bus_server_t *self, int type, const char *endpoint, int sndhwm, int rcvhwm,
          int max_frame)
{
    void *sock = zmq_socket (self->zctx, type);
    if (!sock)
        return NULL;
    int linger = 0;
    int64_t maxmsg = max_frame;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    if (max_frame > 0)
        zmq_setsockopt (sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        //  ZMTP heartbeats find dead TCP peers (a host gone, a cable pulled) on every socket.
        int ivl = (int) self->cfg.broker.heartbeat_ms;
        int timeout = (int) (self->cfg.broker.heartbeat_ms * self->cfg.broker.liveness);
        zmq_setsockopt (sock, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt (sock, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
    }
    if (type == ZMQ_ROUTER) {
        int on = 1;
        zmq_setsockopt (sock, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    }
    if (type == ZMQ_XPUB) {
        int on = 1;
        zmq_setsockopt (sock, ZMQ_XPUB_NODROP, &on, sizeof on);
        //  Options must be set before bind: the listener copies them.
        if (self->cfg.stream_sndbuf > 0)
            zmq_setsockopt (sock, ZMQ_SNDBUF, &self->cfg.stream_sndbuf,
                            sizeof self->cfg.stream_sndbuf);
    }
    if (zmq_bind (sock, endpoint) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "cannot bind %s: %s", endpoint,
                 zmq_strerror (zmq_errno ()));
        zmq_close (sock);
        return NULL;
    }
    return sock;
}

fks_bus_server_t *
fks_bus_server_new (void *zctx, const fks_bus_server_cfg_t *cfg)
{
    if (!zctx || !cfg || !cfg->bind || !cfg->stream_bind || cfg->stream_hwm <= 0
        || cfg->stream_sndbuf < 0 || cfg->drain_timeout_ms < 0
        || cfg->max_frame < FKS_ENVELOPE_MAX_SIZE + 1024) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus server: invalid configuration");
        return NULL;
    }
    fks_bus_server_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->zctx = zctx;
    self->bind = strdup (cfg->bind);
    self->stream_bind = strdup (cfg->stream_bind);
    self->cfg.bind = self->bind;
    self->cfg.stream_bind = self->stream_bind;
    self->metrics = cfg->metrics ? cfg->metrics : fks_metrics_default ();
    self->gm = calloc (cfg->broker.max_groups, sizeof *self->gm);
    self->leave_tags = malloc (FKS_BUS_WINDOW_MAX * sizeof *self->leave_tags);
    self->prev = calloc (cfg->broker.max_groups, sizeof *self->prev);
    fks_broker_io_t io = {
        .arg = self, .deliver = s_deliver, .heartbeat = s_heartbeat,
        .dead_letter = s_dead_letter, .group_changed = s_group_changed };
    if (!self->bind || !self->stream_bind || !self->gm || !self->prev || !self->leave_tags
        || s_register_metrics (self) != 0
        || !(self->broker = fks_broker_new (&cfg->broker, &io))) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus server: cannot set up (memory, metrics or "
                 "broker configuration)");
        fks_bus_server_destroy (&self);
        return NULL;
    }
    //  Outgoing: deliveries are bounded by credit (at most a window per replica) and the rest
    //  by time, so the send queue per peer can be roomy; it must never be the reason a
    //  delivery fails. Incoming: what one peer may have queued before TCP pushes back is
    //  S_ROUTER_RCVHWM frames of at most max_frame bytes.
    self->router = s_socket (self, ZMQ_ROUTER, self->bind, 100000, S_ROUTER_RCVHWM,
                             cfg->max_frame);
    //  What observers send is subscriptions: a flag byte and a type prefix (under
    //  FKS_TYPE_MAX), so a longer message costs its sender the connection.
    self->stream = s_socket (self, ZMQ_XPUB, self->stream_bind, cfg->stream_hwm, 1000,
                             1 + FKS_TYPE_MAX);
    snprintf (self->internal_ep, sizeof self->internal_ep, "inproc://fks-bus-internal-%p",
              (void *) self);
    self->internal = s_socket (self, ZMQ_PULL, self->internal_ep, 10000, 10000, 0);
    if (!self->router || !self->stream || !self->internal) {
        fks_bus_server_destroy (&self);
        return NULL;
    }
    return self;
}

void
fks_bus_server_destroy (fks_bus_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_bus_server_t *self = *self_p;
    fks_broker_destroy (&self->broker);
    if (self->router)
        zmq_close (self->router);
    if (self->stream)
        zmq_close (self->stream);
    if (self->internal)
        zmq_close (self->internal);
    if (self->store)
        zmq_close (self->store);
    free (self->gm);
    free (self->prev);
    free (self->leave_tags);
    free (self->bind);
    free (self->stream_bind);
    free (self);
    *self_p = NULL;
}

const char *
fks_bus_server_internal_endpoint (const fks_bus_server_t *self)
{
    return self->internal_ep;
}

int
fks_bus_server_set_store (fks_bus_server_t *self, const char *store_endpoint)
{
    void *sock = zmq_socket (self->zctx, ZMQ_PUSH);
    if (!sock)
        return -1;
    int hwm = 10000, linger = 2000;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (sock, store_endpoint) != 0) {
        zmq_close (sock);
        return -1;
    }
    if (self->store)
        zmq_close (self->store);
    self->store = sock;
    return 0;
}

//  --------------------------------------------------------------------------
//  The loop

int
fks_bus_server_run (fks_bus_server_t *self, int stop_fd)
{
    zmq_pollitem_t items[4] = {
        { self->router, 0, ZMQ_POLLIN, 0 },
        { self->internal, 0, ZMQ_POLLIN, 0 },
        { self->stream, 0, ZMQ_POLLIN, 0 },
        { NULL, stop_fd, ZMQ_POLLIN, 0 } };
    int64_t now = s_now_ms ();
    int64_t next_tick = now;
    int64_t next_sync = now;
    int64_t drain_end = 0;
    fks_log (FKS_LOG_INFO, NULL, NULL, "bus broker running: %s, stream %s", self->bind,
             self->stream_bind);
    for (;;) {
        now = s_now_ms ();
        long timeout = (long) ((next_tick < next_sync ? next_tick : next_sync) - now);
        if (timeout < 0)
            timeout = 0;
        if (timeout > S_TICK_MAX_MS)
            timeout = S_TICK_MAX_MS;
        if (zmq_poll (items, stop_fd >= 0 ? 4 : 3, timeout) == -1) {
            if (errno == EINTR)
                continue;
            fks_log (FKS_LOG_ERROR, NULL, NULL, "zmq_poll: %s", zmq_strerror (errno));
            return -1;
        }
        now = s_now_ms ();
        if (((items[0].revents & ZMQ_POLLIN) && s_drain_router (self, now) != 0)
            || ((items[1].revents & ZMQ_POLLIN) && s_drain_internal (self) != 0)
            || ((items[2].revents & ZMQ_POLLIN) && s_drain_stream (self) != 0))
            return -1;
        if (stop_fd >= 0 && (items[3].revents & ZMQ_POLLIN) && !self->draining) {
            self->draining = true;
            items[3].events = 0;
            fks_broker_drain (self->broker);
            drain_end = now + self->cfg.drain_timeout_ms;
            fks_log (FKS_LOG_INFO, NULL, NULL,
                     "stopping: no new work taken, waiting up to %lld ms for %zu in flight",
                     (long long) self->cfg.drain_timeout_ms,
                     fks_broker_in_flight (self->broker));
        }
        fks_broker_dispatch (self->broker, now);
        if (now >= next_tick)
            next_tick = fks_broker_tick (self->broker, now);
        if (now >= next_sync) {
            s_sync_metrics (self);
            next_sync = now + S_SYNC_MS;
        }
        if (self->draining) {
            size_t left = fks_broker_in_flight (self->broker);
            if (left == 0 || now >= drain_end) {
                s_sync_metrics (self);
                fks_log (FKS_LOG_INFO, NULL, NULL,
                         "stopped: %zu deliveries still un-acked (the reconciler redelivers "
                         "them after the next start)", left);
                return 0;
            }
        }
    }
}
