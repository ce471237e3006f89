/*  stream.c - GET /api/v1/stream: every event as Server-Sent Events or WebSocket messages.
 *
 *  Positions. An event's place in the stream is (xid, seq): the inserting transaction and the
 *  row's seq. Rows are read only when their xid is below pg_snapshot_xmin of the reading
 *  statement's snapshot: every transaction older than that has ended, and every later one
 *  gets a larger xid, so the set of rows below it is final and (xid, seq) order never gets a
 *  row inserted behind a reader. Clients only ever see seq (the SSE id); a resume looks the
 *  row up again to get its xid.
 *
 *  The hub. One thread keeps the stream's tail: a ring of the latest events (at most
 *  stream_buffer entries and S_RING_BYTES of JSON), each with its position, contiguous in
 *  position order, covering (base, tail]. It only works while clients are connected; when the
 *  last one leaves it forgets the ring, and the next client starts a new one at the then
 *  current tail. It is woken by any message on the bus's event stream (its SUB socket is
 *  subscribed only while clients exist) and otherwise polls every stream_poll_ms, since a row
 *  may become final later than its publish (an older transaction was still running). A
 *  monitor on the SUB socket tells /ready whether the bus is reachable.
 *
 *  A client. Its cursor is a position. While the cursor is below the ring's base it reads the
 *  missing rows from the table itself (never beyond the hub's tail), a page at a time; once
 *  the cursor is inside the ring it follows the ring by absolute index. Both paths move
 *  strictly forward in the same order over the same final rows, which is why the seam has
 *  neither gap nor duplicate. If the hub overwrites entries the client has not sent yet, the
 *  client is too slow and is disconnected: it may come back with Last-Event-ID.
 *
 *  The key. A client's key was checked when its stream opened; a stream lasts for days, and a
 *  revoke must end it too, not only refuse the next request. So each client asks again (one
 *  query by the key's row id, fks_apikey_recheck) every heartbeat interval, at most every
 *  S_KEY_RECHECK_MAX_MS, whatever the traffic: never per event. A key that was revoked (or no
 *  longer grants read) ends the stream: SSE with a comment saying so, WebSocket with close
 *  1008. A database that cannot be asked ends nothing (a healthy stream is not cut for an
 *  outage; the next interval asks again), and is logged once until a check works again.
 */
#include "gateway/stream.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg.h"

#include <civetweb.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define S_RING_BYTES     (32u * 1024 * 1024)
#define S_PAGE           500             /* rows per hub read, and per catch-up read */
#define S_PAGES_PER_WAKE 20
#define S_SEND_BATCH     64              /* events copied out of the ring at once */
#define S_PREFIXES_MAX   16
#define S_PREFIX_MAX     64
#define S_DRAIN_MAX      10000           /* bus messages drained per wake */
#define S_HUB_WAIT_MS    5000            /* a new client waits this long for the hub */
#define S_KEY_RECHECK_MAX_MS 15000       /* a client's key is asked again at least this often */
#define S_KEY_POOL_WAIT_MS   1000        /* ... waiting at most this long for a connection */
#define S_MONITOR_URL    "inproc://fks-stream-monitor"

typedef struct {
    uint64_t xid;
    int64_t seq;
} s_pos_t;

static int
s_pos_cmp (s_pos_t a, s_pos_t b)
{
    if (a.xid != b.xid)
        return a.xid < b.xid ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
}

typedef struct {
    s_pos_t pos;
    char type[64];
    char *json;
    size_t len;
} s_ev_t;

struct fks_stream_t {
    const fks_gateway_config_t *cfg;
    fks_api_t *api;
    pthread_mutex_t mutex;
    pthread_cond_t cond;            /* new ring entries, hub (in)validated, stop */
    s_ev_t *ring;
    size_t cap;
    uint64_t first, next;           /* absolute indexes: ring holds [first, next) */
    size_t bytes;
    s_pos_t base, tail;
    bool valid;                     /* the hub's tail is known and the ring is live */
    int clients;
    char (*owners)[FKS_APIKEY_OWNER_MAX];   /* per place: the stored key holding it, or "" */
    int n_owners;
    int ws_closing;                 /* WebSocket writers that have not sent their close yet */
    bool stop;                      /* clients finish */
    bool hub_stop;
    pthread_t thread;
    bool have_thread;
    void *zctx;
    atomic_bool bus_up;
    atomic_bool key_check_failing;  /* the last key re-check could not ask the database */
    fks_metric_t *m_clients;
    fks_metric_t *m_sent;
    fks_metric_family_t *m_disconnects;
};

//  One client's state, SSE or WebSocket.
typedef struct {
    fks_stream_t *stream;
    struct mg_connection *conn;
    bool ws;
    char prefixes[S_PREFIXES_MAX][S_PREFIX_MAX];
    int n_prefixes;
    s_pos_t cursor;
    bool resume;                    /* cursor given by the client */
    fks_sbuf_t out;                 /* SSE: events waiting for one write */
    int queued;                     /* SSE: how many events out holds */
    int64_t last_write_ns;          /* monotonic time of the last write to the client */
    fks_apikey_info_t key;          /* the key the stream was opened with */
    int place;                      /* its index in owners (a stored key's), or -1 */
    int64_t key_checked_ns;         /* monotonic time it was last asked about */
    bool gone;                      /* WebSocket: the client closed, or the connection's read
                                       loop ended or is ending (stream mutex) */
} s_client_t;

// ---------------------------------------------------------------------------------------------
//  The hub

static void
s_ring_clear (fks_stream_t *self)
{
    for (uint64_t i = self->first; i < self->next; i++)
        free (self->ring[i % self->cap].json);
    self->first = self->next;
    self->bytes = 0;
}

//  Appends one rendered event (mutex held); takes json.
static void
s_ring_push (fks_stream_t *self, s_pos_t pos, const char *type, char *json, size_t len)
{
    while (self->next - self->first >= self->cap
           || (self->next > self->first && self->bytes + len > S_RING_BYTES)) {
        s_ev_t *old = &self->ring[self->first % self->cap];
        self->base = old->pos;
        self->bytes -= old->len;
        free (old->json);
        old->json = NULL;
        self->first++;
    }
    s_ev_t *e = &self->ring[self->next % self->cap];
    e->pos = pos;
    snprintf (e->type, sizeof e->type, "%s", type);
    e->json = json;
    e->len = len;
    self->bytes += len;
    self->next++;
    self->tail = pos;
}

//  The queries below select xid::text (libpq reads xid8 as text) and order by events.xid:
//  a bare "xid" in ORDER BY would name the text output column, and "999" sorts after
//  "10000".

//  Reads the position of the newest final row. 0 or -1.
static int
s_read_tail (fks_pg_t *pg, s_pos_t *out)
{
    fks_pg_err_t err;
    PGresult *r = fks_pg_query (pg,
        "SELECT xid::text, seq FROM events WHERE xid < pg_snapshot_xmin (pg_current_snapshot ())"
        " ORDER BY events.xid DESC, events.seq DESC LIMIT 1", 0, NULL, NULL, NULL, &err);
    if (!r)
        return -1;
    out->xid = 0;
    out->seq = 0;
    if (PQntuples (r) == 1) {
        out->xid = strtoull (PQgetvalue (r, 0, 0), NULL, 10);
        out->seq = strtoll (PQgetvalue (r, 0, 1), NULL, 10);
    }
    PQclear (r);
    return 0;
}

//  Reads up to limit final rows after `after` (and not beyond `upto` when given), in order.
static PGresult *
s_read_after (fks_pg_t *pg, s_pos_t after, const s_pos_t *upto, int limit, fks_pg_err_t *err)
{
    char xid[24], seq[24], uxid[24], useq[24], lim[16];
    snprintf (xid, sizeof xid, "%" PRIu64, after.xid);
    snprintf (seq, sizeof seq, "%" PRId64, after.seq);
    snprintf (lim, sizeof lim, "%d", limit);
    if (upto) {
        snprintf (uxid, sizeof uxid, "%" PRIu64, upto->xid);
        snprintf (useq, sizeof useq, "%" PRId64, upto->seq);
    }
    const char *values[5] = { xid, seq, upto ? uxid : NULL, upto ? useq : NULL, lim };
    return fks_pg_query (pg,
        "SELECT seq, xid::text, type, envelope FROM events"
        " WHERE (xid, seq) > ($1::xid8, $2::bigint)"
        " AND xid < pg_snapshot_xmin (pg_current_snapshot ())"
        " AND ($3::xid8 IS NULL OR (xid, seq) <= ($3::xid8, $4::bigint))"
        " ORDER BY events.xid, events.seq LIMIT $5::int", 5, values, NULL, NULL, err);
}

//  Renders row i of a s_read_after result. Returns malloc'd JSON (and its length), or NULL.
static char *
s_render (PGresult *r, int i, s_pos_t *pos, size_t *len)
{
    pos->seq = strtoll (PQgetvalue (r, i, 0), NULL, 10);
    pos->xid = strtoull (PQgetvalue (r, i, 1), NULL, 10);
    size_t elen = 0;
    unsigned char *env = PQunescapeBytea ((const unsigned char *) PQgetvalue (r, i, 3), &elen);
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_api_event_json (&b, pos->seq, env, env ? elen : 0);
    PQfreemem (env);
    if (b.failed || !b.data) {
        fks_sbuf_free (&b);
        return NULL;
    }
    *len = b.len;
    return b.data;                  /* the sbuf's buffer is a plain malloc'd string */
}

//  Reads what became final since the tail and appends it. 0, or -1 on a database error.
static int
s_hub_fetch (fks_stream_t *self, fks_pg_t *pg)
{
    for (int page = 0; page < S_PAGES_PER_WAKE; page++) {
        pthread_mutex_lock (&self->mutex);
        s_pos_t tail = self->tail;
        pthread_mutex_unlock (&self->mutex);
        fks_pg_err_t err;
        PGresult *r = s_read_after (pg, tail, NULL, S_PAGE, &err);
        if (!r) {
            fks_warn ("stream: cannot read events: %s", err.msg);
            return -1;
        }
        int n = PQntuples (r);
        for (int i = 0; i < n; i++) {
            s_pos_t pos;
            size_t len = 0;
            char *json = s_render (r, i, &pos, &len);
            if (!json) {
                PQclear (r);
                return -1;
            }
            pthread_mutex_lock (&self->mutex);
            s_ring_push (self, pos, PQgetvalue (r, i, 2), json, len);
            pthread_mutex_unlock (&self->mutex);
        }
        PQclear (r);
        if (n > 0) {
            pthread_mutex_lock (&self->mutex);
            pthread_cond_broadcast (&self->cond);
            pthread_mutex_unlock (&self->mutex);
        }
        if (n < S_PAGE)
            break;
    }
    return 0;
}

//  Reads the monitor's events: the SUB socket connected or lost the bus.
static void
s_drain_monitor (fks_stream_t *self, void *mon)
{
    for (int guard = 0; guard < 64; guard++) {
        zmq_msg_t m;
        zmq_msg_init (&m);
        if (zmq_msg_recv (&m, mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&m);
            return;
        }
        if (zmq_msg_size (&m) >= 6) {
            uint16_t ev;
            memcpy (&ev, zmq_msg_data (&m), 2);
            if (ev == ZMQ_EVENT_CONNECTED)
                atomic_store (&self->bus_up, true);
            else if (ev == ZMQ_EVENT_DISCONNECTED)
                atomic_store (&self->bus_up, false);
        }
        int more = zmq_msg_more (&m);
        zmq_msg_close (&m);
        while (more) {                  /* the address frame */
            zmq_msg_init (&m);
            if (zmq_msg_recv (&m, mon, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&m);
                return;
            }
            more = zmq_msg_more (&m);
            zmq_msg_close (&m);
        }
    }
}

static void *
s_hub (void *arg)
{
    fks_stream_t *self = arg;
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (self->cfg->pg_url, NULL, 0, &err);
    void *sub = zmq_socket (self->zctx, ZMQ_SUB);
    void *mon = NULL;
    if (sub) {
        int hwm = 10000, linger = 0;
        zmq_setsockopt (sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt (sub, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_socket_monitor (sub, S_MONITOR_URL, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED)
            == 0) {
            mon = zmq_socket (self->zctx, ZMQ_PAIR);
            if (mon) {
                zmq_setsockopt (mon, ZMQ_LINGER, &linger, sizeof linger);
                zmq_connect (mon, S_MONITOR_URL);
            }
        }
        if (zmq_connect (sub, self->cfg->bus_stream_url) != 0)
            fks_error ("stream: FKS_BUS_STREAM_URL: cannot connect: %s", zmq_strerror (errno));
    }
    if (!pg || !sub)
        fks_error ("stream: the hub cannot start (%s)", pg ? "no ZeroMQ socket" : err.msg);
    bool subscribed = false;
    bool db_warned = false;
    while (pg && sub) {
        zmq_pollitem_t items[2] = { { sub, 0, ZMQ_POLLIN, 0 }, { mon, 0, ZMQ_POLLIN, 0 } };
        zmq_poll (items, mon ? 2 : 1, (long) self->cfg->stream_poll_ms);
        for (int i = 0; i < S_DRAIN_MAX; i++) {
            zmq_msg_t m;
            zmq_msg_init (&m);
            int rc = zmq_msg_recv (&m, sub, ZMQ_DONTWAIT);
            zmq_msg_close (&m);
            if (rc < 0)
                break;
        }
        if (mon)
            s_drain_monitor (self, mon);

        pthread_mutex_lock (&self->mutex);
        if (self->hub_stop) {
            pthread_mutex_unlock (&self->mutex);
            break;
        }
        int clients = self->clients;
        if (clients == 0 && self->valid) {
            s_ring_clear (self);
            self->valid = false;
        }
        bool valid = self->valid;
        pthread_mutex_unlock (&self->mutex);

        if (clients == 0) {
            if (subscribed && zmq_setsockopt (sub, ZMQ_UNSUBSCRIBE, "", 0) == 0)
                subscribed = false;
            continue;
        }
        if (!subscribed && zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "", 0) == 0)
            subscribed = true;
        if (!valid) {
            s_pos_t tail;
            if (s_read_tail (pg, &tail) != 0) {
                if (!db_warned)
                    fks_warn ("stream: cannot read the events table's tail");
                db_warned = true;
                continue;
            }
            pthread_mutex_lock (&self->mutex);
            s_ring_clear (self);
            self->base = self->tail = tail;
            self->valid = true;
            pthread_cond_broadcast (&self->cond);
            pthread_mutex_unlock (&self->mutex);
        }
        if (s_hub_fetch (self, pg) == 0)
            db_warned = false;
    }
    if (mon) {
        zmq_socket_monitor (sub, NULL, 0);
        zmq_close (mon);
    }
    if (sub)
        zmq_close (sub);
    fks_pg_destroy (&pg);
    return NULL;
}

fks_stream_t *
fks_stream_new (const fks_gateway_config_t *cfg, fks_api_t *api)
{
    fks_stream_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->api = api;
    self->cap = (size_t) cfg->stream_buffer;
    self->ring = calloc (self->cap, sizeof *self->ring);
    self->n_owners = cfg->stream_max + 1;
    self->owners = calloc ((size_t) self->n_owners, sizeof *self->owners);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    self->zctx = zmq_ctx_new ();
    self->m_clients = fks_metric_get (fks_gauge_family ("fks_gateway_stream_clients",
        "Event stream clients connected (SSE and WebSocket)", NULL, 0), NULL);
    self->m_sent = fks_metric_get (fks_counter_family ("fks_gateway_stream_events_sent_total",
        "Events sent to stream clients", NULL, 0), NULL);
    static const char *const reason_label[] = { "reason" };
    self->m_disconnects = fks_counter_family ("fks_gateway_stream_disconnects_total",
        "Stream clients that ended, by reason (closed, slow, shutdown, error, revoked)",
        reason_label, 1);
    if (!self->ring || !self->zctx || !self->owners
        || pthread_create (&self->thread, NULL, s_hub, self) != 0) {
        fks_stream_destroy (&self);
        return NULL;
    }
    self->have_thread = true;
    return self;
}

void
fks_stream_stop (fks_stream_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock (&self->mutex);
    self->stop = true;
    pthread_cond_broadcast (&self->cond);
    //  WebSocket clients are told why before civetweb stops writing (bounded: a writer stuck
    //  on a client that does not read is not waited for).
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    while (self->ws_closing > 0)
        if (pthread_cond_timedwait (&self->cond, &self->mutex, &ts) != 0)
            break;
    pthread_mutex_unlock (&self->mutex);
}

void
fks_stream_destroy (fks_stream_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_stream_t *self = *self_p;
    fks_stream_stop (self);
    if (self->have_thread) {
        pthread_mutex_lock (&self->mutex);
        self->hub_stop = true;
        pthread_mutex_unlock (&self->mutex);
        pthread_join (self->thread, NULL);
    }
    if (self->ring) {
        s_ring_clear (self);
        free (self->ring);
    }
    free (self->owners);
    if (self->zctx)
        zmq_ctx_term (self->zctx);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

bool
fks_stream_bus_connected (fks_stream_t *self)
{
    return atomic_load (&self->bus_up);
}

// ---------------------------------------------------------------------------------------------
//  A client

static bool
s_wanted (const s_client_t *c, const char *type)
{
    if (c->n_prefixes == 0)
        return true;
    for (int i = 0; i < c->n_prefixes; i++)
        if (strncmp (type, c->prefixes[i], strlen (c->prefixes[i])) == 0)
            return true;
    return false;
}

//  Queues (SSE) or sends (WebSocket) one event. 0 or -1 when the client is gone.
static int
s_send_event (s_client_t *c, int64_t seq, const char *type, const char *json, size_t len)
{
    if (c->ws) {
        if (mg_websocket_write (c->conn, MG_WEBSOCKET_OPCODE_TEXT, json, len) <= 0)
            return -1;
        c->last_write_ns = fks_mono_ns ();
    }
    else {
        fks_sbuf_printf (&c->out, "id: %" PRId64 "\nevent: %s\ndata: ", seq, type);
        fks_sbuf_put (&c->out, json, len);
        fks_sbuf_puts (&c->out, "\n\n");
        if (c->out.failed)
            return -1;
        c->queued++;        //  counted as sent once written (s_flush)
        return 0;
    }
    fks_metric_inc (c->stream->m_sent);
    return 0;
}

//  Writes what s_send_event queued (SSE), and counts its events as sent once written. 0 or
//  -1.
static int
s_flush (s_client_t *c)
{
    if (c->ws || c->out.len == 0)
        return 0;
    int rc = mg_write (c->conn, c->out.data, c->out.len) == (int) c->out.len ? 0 : -1;
    if (rc == 0)
        fks_metric_add (c->stream->m_sent, c->queued);
    c->queued = 0;
    c->out.len = 0;
    c->last_write_ns = fks_mono_ns ();
    if (c->out.data)
        c->out.data[0] = '\0';
    return rc;
}

//  A keepalive (SSE comment or WebSocket ping). It also finds a client that has gone: the
//  write fails, and the client gives its place back. 0 or -1.
static int
s_heartbeat (s_client_t *c)
{
    c->last_write_ns = fks_mono_ns ();
    if (c->ws)
        return mg_websocket_write (c->conn, MG_WEBSOCKET_OPCODE_PING, "", 0) < 0 ? -1 : 0;
    static const char ping[] = ": keepalive\n\n";
    return mg_write (c->conn, ping, sizeof ping - 1) == (int) sizeof ping - 1 ? 0 : -1;
}

//  Sends the final rows between the cursor and upto from the table. 0, or -1 when the client
//  is gone or the database failed (reason set).
static int
s_catch_up (s_client_t *c, s_pos_t upto, const char **reason)
{
    fks_pg_t *pg = fks_api_pg_get (c->stream->api, 2000);
    if (!pg) {
        *reason = "error";
        return -1;
    }
    fks_pg_err_t err;
    PGresult *r = s_read_after (pg, c->cursor, &upto, S_PAGE, &err);
    fks_api_pg_put (c->stream->api, pg);
    if (!r) {
        fks_warn ("stream: catch-up read failed: %s", err.msg);
        *reason = "error";
        return -1;
    }
    int n = PQntuples (r);
    int64_t t0 = fks_mono_ns ();
    const char *gone = "closed";
    for (int i = 0; i < n; i++) {
        s_pos_t pos;
        pos.seq = strtoll (PQgetvalue (r, i, 0), NULL, 10);
        pos.xid = strtoull (PQgetvalue (r, i, 1), NULL, 10);
        const char *type = PQgetvalue (r, i, 2);
        if (s_wanted (c, type)) {
            size_t len = 0;
            char *json = s_render (r, i, &pos, &len);
            int rc = json ? s_send_event (c, pos.seq, type, json, len) : -1;
            free (json);
            if (rc != 0 || (c->out.len > 65536 && s_flush (c) != 0)) {
                PQclear (r);
                *reason = fks_mono_ns () - t0 >= c->stream->cfg->request_timeout_ms * 500000LL
                          ? "slow" : gone;
                return -1;
            }
        }
        c->cursor = pos;
    }
    PQclear (r);
    if (n == 0)
        c->cursor = upto;           /* nothing final in between: the ring takes over */
    if (s_flush (c) != 0) {
        *reason = fks_mono_ns () - t0 >= c->stream->cfg->request_timeout_ms * 500000LL
                  ? "slow" : gone;
        return -1;
    }
    return 0;
}

//  Asks again whether the client's key may still read (without the mutex). False once it may
//  not. When the database cannot be asked the answer is true: the stream goes on and the next
//  interval asks again, and the failure is logged once (for every client) until a check works.
static bool
s_key_still_valid (s_client_t *c)
{
    fks_stream_t *self = c->stream;
    if (c->key.bootstrap) {
        c->key_checked_ns = fks_mono_ns ();
        return true;                /* FKS_ADMIN_KEY is not a row: nothing to ask */
    }
    char err[256] = "no database connection came free";
    fks_pg_t *pg = fks_api_pg_get (self->api, S_KEY_POOL_WAIT_MS);
    int rc = pg ? fks_apikey_recheck (pg, &c->key, FKS_SCOPE_READ, err, sizeof err) : -1;
    fks_api_pg_put (self->api, pg);
    c->key_checked_ns = fks_mono_ns ();
    if (rc < 0) {
        if (!atomic_exchange (&self->key_check_failing, true))
            fks_warn ("stream: cannot re-check the stream clients' API keys (%s); their streams "
                      "go on until a check works", err);
        return true;
    }
    if (atomic_exchange (&self->key_check_failing, false))
        fks_info ("stream: the stream clients' API keys are re-checked again");
    if (rc > 0)
        fks_info ("stream: API key '%s' (%s) is no longer valid: its stream ends", c->key.name,
                  c->key.prefix);
    return rc == 0;
}

//  Gives a client's place back (mutex held).
static void
s_release (fks_stream_t *self, s_client_t *c)
{
    self->clients--;
    fks_metric_set (self->m_clients, self->clients);
    if (c->place >= 0 && c->place < self->n_owners)
        self->owners[c->place][0] = '\0';
    c->place = -1;
}

//  First ring index whose position is after pos (mutex held).
static uint64_t
s_ring_find (fks_stream_t *self, s_pos_t pos)
{
    uint64_t lo = self->first, hi = self->next;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s_pos_cmp (self->ring[mid % self->cap].pos, pos) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

//  The client's life after its headers: catch up, then follow the ring until the client goes,
//  falls behind, its key is revoked, or the gateway stops. A heartbeat goes out whenever
//  nothing was written to the client for the heartbeat interval, whatever woke the loop:
//  events the client's filter drops wake it too, and a client that gets no write is never
//  found gone. The key is asked again on its own clock, not at the heartbeat, which a client
//  that is sent events all the time never gets. Returns the reason it ended ("revoked": the
//  caller tells the client).
static const char *
s_run (s_client_t *c)
{
    fks_stream_t *self = c->stream;
    const char *reason = "closed";
    uint64_t idx = 0;
    bool in_ring = false;
    int64_t heartbeat_ns = self->cfg->stream_heartbeat_ms * 1000000LL;
    int64_t recheck_ns = heartbeat_ns < S_KEY_RECHECK_MAX_MS * 1000000LL
                         ? heartbeat_ns : S_KEY_RECHECK_MAX_MS * 1000000LL;
    c->last_write_ns = fks_mono_ns ();          /* the head was just written */
    c->key_checked_ns = c->last_write_ns;       /* ... and the key checked just before */
    pthread_mutex_lock (&self->mutex);
    for (;;) {
        if (self->stop) {
            reason = "shutdown";
            break;
        }
        if (c->gone)
            break;
        if (fks_mono_ns () - c->key_checked_ns >= recheck_ns) {
            pthread_mutex_unlock (&self->mutex);
            bool valid = s_key_still_valid (c);
            pthread_mutex_lock (&self->mutex);
            if (!valid) {
                reason = "revoked";
                break;
            }
            continue;
        }
        if (fks_mono_ns () - c->last_write_ns >= heartbeat_ns) {
            pthread_mutex_unlock (&self->mutex);
            int rc = s_heartbeat (c);
            pthread_mutex_lock (&self->mutex);
            if (rc != 0)
                break;
            continue;
        }
        if (!self->valid) {
            in_ring = false;
            struct timespec ts;
            clock_gettime (CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
            continue;
        }
        if (!c->resume) {
            c->cursor = self->tail;         /* live only: start at the tail */
            c->resume = true;
        }
        if (!in_ring) {
            if (s_pos_cmp (c->cursor, self->base) < 0) {
                s_pos_t upto = self->tail;
                pthread_mutex_unlock (&self->mutex);
                int rc = s_catch_up (c, upto, &reason);
                pthread_mutex_lock (&self->mutex);
                if (rc != 0)
                    break;
                continue;
            }
            idx = s_ring_find (self, c->cursor);
            in_ring = true;
        }
        if (idx < self->first) {
            reason = "slow";
            break;
        }
        if (idx == self->next) {
            //  Wait for new entries until the next heartbeat or key check is due (the loop's
            //  top does them).
            int64_t due = c->last_write_ns + heartbeat_ns;
            if (c->key_checked_ns + recheck_ns < due)
                due = c->key_checked_ns + recheck_ns;
            int64_t left = due - fks_mono_ns ();
            if (left < 1000000)
                left = 1000000;
            struct timespec ts = fks_clock_after (CLOCK_REALTIME, left);
            pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
            continue;
        }
        //  Copy a batch out of the ring, send it without the lock.
        s_ev_t batch[S_SEND_BATCH];
        int n = 0;
        while (idx < self->next && n < S_SEND_BATCH) {
            s_ev_t *e = &self->ring[idx % self->cap];
            if (s_wanted (c, e->type)) {
                batch[n] = *e;
                batch[n].json = malloc (e->len);
                if (!batch[n].json)
                    break;
                memcpy (batch[n].json, e->json, e->len);
                n++;
            }
            c->cursor = e->pos;
            idx++;
        }
        pthread_mutex_unlock (&self->mutex);
        int rc = 0;
        int64_t t0 = fks_mono_ns ();
        for (int i = 0; i < n; i++) {
            if (rc == 0)
                rc = s_send_event (c, batch[i].pos.seq, batch[i].type, batch[i].json,
                                   batch[i].len);
            free (batch[i].json);
        }
        if (rc == 0)
            rc = s_flush (c);
        pthread_mutex_lock (&self->mutex);
        if (rc != 0) {
            //  A write that failed after stalling, or a ring that moved past the client
            //  meanwhile: the client could not keep up. Otherwise it went away.
            bool stalled = fks_mono_ns () - t0 >= self->cfg->request_timeout_ms * 500000LL;
            reason = stalled || idx < self->first ? "slow" : "closed";
            break;
        }
    }
    s_release (self, c);
    pthread_mutex_unlock (&self->mutex);
    fks_metric_inc (fks_metric_get1 (self->m_disconnects, reason));
    return reason;
}

//  Adds the prefixes of a ?types= (or ?type=) value to the client's. 0 or -1.
static int
s_parse_types (s_client_t *c, const char *text)
{
    const char *p = text;
    while (*p) {
        size_t n = strcspn (p, ",");
        if (n >= S_PREFIX_MAX || c->n_prefixes >= S_PREFIXES_MAX)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (!((p[i] >= 'a' && p[i] <= 'z') || isdigit ((unsigned char) p[i]) || p[i] == '.'
                  || p[i] == '_'))
                return -1;
        if (n > 0) {
            memcpy (c->prefixes[c->n_prefixes], p, n);
            c->prefixes[c->n_prefixes][n] = '\0';
            c->n_prefixes++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

//  Everything before the stream starts, shared by SSE and WebSocket: authorisation, filters,
//  the resume position, and a place under the cap. 0, or the status of the reply sent.
static int
s_admit (fks_stream_t *self, struct mg_connection *conn, s_client_t *c)
{
    memset (c, 0, sizeof *c);
    c->place = -1;
    c->stream = self;
    c->conn = conn;
    int st = fks_api_authorize (self->api, conn, FKS_SCOPE_READ, true, &c->key);
    if (st)
        return st;
    //  ?types= and, as GET /api/v1/events spells it, ?type=: both lists of prefixes, each
    //  may be given more than once (an event matching any prefix passes; only the first was
    //  read, and ?types=order.&types=signal. silently lost signal.). Other parameters are
    //  ignored, but none may be given twice (?after=, ?access_token=: which one would count?).
    static const char *const filters[] = { "types", "type", NULL };
    char twice[48];
    if (fks_http_query_check (conn, filters, NULL, twice, sizeof twice) != FKS_QUERY_OK)
        return fks_http_error (conn, 400, NULL, "invalid_field", twice,
                               strcmp (twice, "query") == 0
                               ? "the query has more than 64 parameters"
                               : "this parameter is given more than once");
    char types[S_PREFIXES_MAX * S_PREFIX_MAX];
    int n = 0;
    for (int i = 0; filters[i]; i++)
        for (int k = 0; k <= S_PREFIXES_MAX; k++) {
            n = fks_http_query_nth (conn, filters[i], k, types, sizeof types);
            if (n == -1)
                break;
            if (n == -2 || k == S_PREFIXES_MAX || s_parse_types (c, types) != 0)
                return fks_http_error (conn, 400, NULL, "invalid_field", filters[i],
                                       "a comma-separated list of up to 16 type prefixes");
        }
    char after[32];
    const char *lei = fks_http_header (conn, "Last-Event-ID");
    const char *field = "Last-Event-ID";
    if (lei)
        snprintf (after, sizeof after, "%.31s", lei);
    else {
        n = fks_http_query (conn, "after", after, sizeof after);
        field = "after";
        if (n == -2)
            return fks_http_error (conn, 400, NULL, "invalid_field", field,
                                   "must be an event id (seq)");
        if (n == -1)
            after[0] = '\0';
    }
    if (after[0]) {
        size_t len = strlen (after);
        bool ok = len <= 18;
        for (size_t i = 0; ok && i < len; i++)
            ok = isdigit ((unsigned char) after[i]);
        if (!ok)
            return fks_http_error (conn, 400, NULL, "invalid_field", field,
                                   "must be an event id (seq)");
        if (strcmp (after, "0") == 0)
            c->cursor = (s_pos_t) { 0, 0 };
        else {
            fks_pg_t *pg = fks_api_pg_get (self->api, 2000);
            if (!pg)
                return fks_http_error (conn, 503, "Retry-After: 1\r\n", "unavailable", NULL,
                                       "the database is unavailable; retry");
            const char *values[1] = { after };
            fks_pg_err_t err;
            PGresult *r = fks_pg_query (pg, "SELECT xid::text FROM events WHERE seq = $1::bigint",
                                        1, values, NULL, NULL, &err);
            fks_api_pg_put (self->api, pg);
            if (!r)
                return fks_http_error (conn, 503, "Retry-After: 1\r\n", "unavailable", NULL,
                                       "the database is unavailable; retry");
            bool found = PQntuples (r) == 1;
            if (found) {
                c->cursor.xid = strtoull (PQgetvalue (r, 0, 0), NULL, 10);
                c->cursor.seq = strtoll (after, NULL, 10);
            }
            PQclear (r);
            if (!found)
                return fks_http_error (conn, 400, NULL, "invalid_field", field,
                                       "no stored event has this id");
        }
        c->resume = true;
    }
    //  A stored key holds at most stream_max_per_key places, so one key (a dashboard's that
    //  leaked, a client reconnecting in a loop) cannot take every place from the others.
    //  FKS_ADMIN_KEY, the operator's, is not limited.
    pthread_mutex_lock (&self->mutex);
    bool full = self->clients >= self->cfg->stream_max || self->stop;
    int held = 0, free_place = -1;
    for (int i = 0; !c->key.bootstrap && i < self->n_owners; i++) {
        if (!self->owners[i][0]) {
            if (free_place < 0)
                free_place = i;
        }
        else if (strcmp (self->owners[i], c->key.owner) == 0)
            held++;
    }
    bool key_full = !c->key.bootstrap && (held >= self->cfg->stream_max_per_key
                                          || free_place < 0);
    if (!full && !key_full) {
        self->clients++;
        fks_metric_set (self->m_clients, self->clients);
        if (!c->key.bootstrap) {
            snprintf (self->owners[free_place], sizeof self->owners[free_place], "%s",
                      c->key.owner);
            c->place = free_place;
        }
    }
    pthread_mutex_unlock (&self->mutex);
    if (full)
        return fks_http_error (conn, 503, "Retry-After: 5\r\n", "too_many_streams", NULL,
                               "the gateway serves as many streams as it may; retry later");
    if (key_full)
        return fks_http_error (conn, 429, "Retry-After: 5\r\n", "too_many_streams", NULL,
                               "this key holds as many streams as one key may "
                               "(FKS_GATEWAY_STREAM_MAX_PER_KEY); close one first");
    return 0;
}

//  civetweb gives a handler of /api/v1/stream every path below it too: /api/v1/stream/x was
//  served as the stream. Only the path itself is (with a trailing slash, as the REST routes).
static bool
s_is_stream_path (struct mg_connection *conn)
{
    const char *path = fks_http_path (conn);
    return path && (strcmp (path, "/api/v1/stream") == 0 || strcmp (path, "/api/v1/stream/") == 0);
}

static int
s_sse (struct mg_connection *conn, void *cbdata)
{
    fks_stream_t *self = cbdata;
    if (!s_is_stream_path (conn))
        return fks_http_error (conn, 404, NULL, "not_found", NULL, "no such route");
    if (strcmp (fks_http_method (conn), "GET") != 0)
        return fks_http_error (conn, 405, "Allow: GET\r\n", "method_not_allowed", NULL,
                               "the stream is read with GET");
    s_client_t c;
    int st = s_admit (self, conn, &c);
    if (st)
        return st;
    fks_http_must_close (conn);
    static const char head[] =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\n"
        "X-Accel-Buffering: no\r\n"
        "Connection: close\r\n"
        "\r\n"
        "retry: 2000\n\n";
    fks_sbuf_init (&c.out, 8u * 1024 * 1024);
    if (mg_write (conn, head, sizeof head - 1) == (int) sizeof head - 1) {
        //  A comment, not an event: it reaches no client's handler of event types, and an
        //  EventSource that reconnects is refused with 401 and stops.
        static const char revoked[] = ": key revoked\n\n";
        if (strcmp (s_run (&c), "revoked") == 0)
            mg_write (conn, revoked, sizeof revoked - 1);
    }
    else {
        pthread_mutex_lock (&self->mutex);
        s_release (self, &c);
        pthread_mutex_unlock (&self->mutex);
    }
    fks_sbuf_free (&c.out);
    return 200;
}

//  WebSocket. civetweb reads a WebSocket's frames on the connection's thread, and only once
//  the ready handler has returned; a stream written from that handler would leave the
//  client's close and ping frames unread for as long as it runs. So the stream is written
//  from a thread of its own (the writer) while the connection's thread reads: it answers
//  pings, and a close frame ends the writer and is answered. mg_websocket_write locks the
//  connection, so the two threads' frames never interleave.
//
//  When the writer ends first (the client is slow, the gateway stops, a write failed), it
//  sends a close frame and waits S_WS_CLOSE_WAIT_MS for the client's; a client that does not
//  answer has its read cut (fks_http_interrupt, again every S_WS_POKE_MS until the read loop
//  has ended), so no client keeps a civetweb thread after its stream has ended. The close
//  handler joins the writer; the connection's memory is freed there.
#define S_WS_CLOSE_WAIT_MS 1000
#define S_WS_POKE_MS       50

typedef struct {
    s_client_t c;                   /* c.conn the connection, c.gone its read loop's end */
    pthread_t conn_thread;          /* civetweb's thread reading the connection */
    bool interruptible;             /* ... and fks_http_interrupt can cut its read */
    pthread_t writer;
    bool streamed;                  /* the writer was started (its s_run gives the place back) */
    bool writer_started;            /* ... and is not joined yet */
    atomic_bool close_sent;
} s_ws_t;

//  Sends a close frame with code and a short reason (may be NULL), once, whichever thread is
//  first. 0 or -1.
static int
s_ws_close_frame (s_ws_t *w, unsigned code, const char *why)
{
    if (atomic_exchange (&w->close_sent, true))
        return 0;
    char payload[2 + 64] = { (char) (code >> 8), (char) (code & 0xff) };
    size_t len = why ? strnlen (why, sizeof payload - 2) : 0;
    memcpy (payload + 2, why ? why : "", len);
    return mg_websocket_write (w->c.conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, 2 + len)
           > 0 ? 0 : -1;
}

//  Waits until the connection's read loop has ended, cutting its read when the client does
//  not answer the close in time.
static void
s_ws_await_read_end (s_ws_t *w)
{
    fks_stream_t *self = w->c.stream;
    int64_t poke_at = fks_mono_ns () + S_WS_CLOSE_WAIT_MS * 1000000LL;
    pthread_mutex_lock (&self->mutex);
    while (!w->c.gone) {
        int64_t now = fks_mono_ns ();
        if (now >= poke_at) {
            if (w->interruptible)
                fks_http_interrupt (w->conn_thread);
            poke_at = now + S_WS_POKE_MS * 1000000LL;
        }
        struct timespec ts = fks_clock_after (CLOCK_REALTIME, S_WS_POKE_MS * 1000000LL);
        pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
    }
    pthread_mutex_unlock (&self->mutex);
}

static void *
s_ws_writer (void *arg)
{
    s_ws_t *w = arg;
    const char *reason = s_run (&w->c);
    fks_stream_t *self = w->c.stream;
    pthread_mutex_lock (&self->mutex);
    bool client_closed = w->c.gone;
    pthread_mutex_unlock (&self->mutex);
    if (!client_closed) {           /* else the connection's thread answers the client's */
        //  1001 going away, 1013 try again later (resume with the last id), 1011 server error,
        //  1008 policy violation: the key was revoked (a retry with it is refused).
        bool revoked = strcmp (reason, "revoked") == 0;
        unsigned code = strcmp (reason, "shutdown") == 0 ? 1001
                      : strcmp (reason, "slow") == 0 ? 1013
                      : strcmp (reason, "error") == 0 ? 1011
                      : revoked ? 1008 : 1000;
        s_ws_close_frame (w, code, revoked ? "key revoked" : NULL);
    }
    pthread_mutex_lock (&self->mutex);
    self->ws_closing--;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    if (!client_closed)
        s_ws_await_read_end (w);
    return NULL;
}

//  The read loop is ending: the writer stops and is joined. Called on the connection's thread.
static void
s_ws_end_writer (s_ws_t *w)
{
    fks_stream_t *self = w->c.stream;
    pthread_mutex_lock (&self->mutex);
    w->c.gone = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    if (w->writer_started) {
        pthread_join (w->writer, NULL);
        w->writer_started = false;
    }
}

//  Admitted in the connect handler, where an HTTP error reply is still possible.
static int
s_ws_connect (const struct mg_connection *cconn, void *cbdata)
{
    fks_stream_t *self = cbdata;
    struct mg_connection *conn = (struct mg_connection *) cconn;
    if (!s_is_stream_path (conn)) {
        fks_http_error (conn, 404, NULL, "not_found", NULL, "no such route");
        return 1;
    }
    s_ws_t *w = calloc (1, sizeof *w);
    if (!w)
        return 1;
    int st = s_admit (self, conn, &w->c);
    if (st) {
        free (w);
        return 1;
    }
    w->c.ws = true;
    mg_set_user_connection_data (conn, w);
    return 0;
}

static void
s_ws_ready (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    s_ws_t *w = mg_get_user_connection_data (conn);
    if (!w)
        return;
    w->conn_thread = pthread_self ();
    w->interruptible = fks_http_interruptible ();
    w->c.last_write_ns = fks_mono_ns ();
    fks_stream_t *self = w->c.stream;
    pthread_mutex_lock (&self->mutex);
    self->ws_closing++;
    pthread_mutex_unlock (&self->mutex);
    if (pthread_create (&w->writer, NULL, s_ws_writer, w) == 0)
        w->streamed = w->writer_started = true;
    else {
        pthread_mutex_lock (&self->mutex);
        self->ws_closing--;
        pthread_mutex_unlock (&self->mutex);
        fks_warn ("stream: no thread for a WebSocket client: %s", strerror (errno));
        s_ws_close_frame (w, 1013, NULL);   /* the close handler gives its place back */
    }
}

static int
s_ws_data (struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    (void) cbdata;
    s_ws_t *w = mg_get_user_connection_data (conn);
    int op = bits & 0x0f;
    if (op == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
        //  Answered with the client's own code once the writer has stopped (RFC 6455 5.5.1).
        if (w)
            s_ws_end_writer (w);
        if (!w || !atomic_exchange (&w->close_sent, true))
            mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE,
                                len >= 2 ? data : "\x03\xe8", 2);
        return 0;
    }
    if (op == MG_WEBSOCKET_OPCODE_PING && !(w && atomic_load (&w->close_sent)))
        mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_PONG, data, len);
    //  The stream is one-way: other frames from the client are ignored.
    return 1;
}

static void
s_ws_close (const struct mg_connection *conn, void *cbdata)
{
    fks_stream_t *self = cbdata;
    s_ws_t *w = mg_get_user_connection_data (conn);
    if (!w)
        return;
    mg_set_user_connection_data (conn, NULL);
    s_ws_end_writer (w);
    if (!w->streamed) {
        //  Admitted but never streamed (the handshake failed, no thread): its place back.
        pthread_mutex_lock (&self->mutex);
        s_release (self, &w->c);
        pthread_mutex_unlock (&self->mutex);
    }
    fks_sbuf_free (&w->c.out);
    free (w);
}

void
fks_stream_register (fks_stream_t *self, struct mg_context *ctx)
{
    mg_set_request_handler (ctx, "/api/v1/stream", s_sse, self);
    mg_set_websocket_handler (ctx, "/api/v1/stream", s_ws_connect, s_ws_ready, s_ws_data,
                              s_ws_close, self);
}
