/*  runtime.c - what every FKS worker shares, so that a worker's own code is its domain logic.
 *
 *  See runtime.h for the contract. Shape: the main thread owns the bus client, the ops server
 *  and the stop fd; N handler threads share the client (its receive, ack and publish calls
 *  are thread-safe) and own one PostgreSQL and one Redis connection each. A handler thread
 *  loops: wait up to 250 ms for a message, take whatever else is already waiting up to the
 *  batch size, handle the batch in one transaction (s_handle), repeat until told to stop. The
 *  ready check has its own connections behind a mutex because civetweb calls it from its own
 *  threads.
 *
 *  With a route hook and more than one thread, the handler threads do not receive: a
 *  dispatcher thread (s_dispatch_main) does, decodes, and appends each message with its
 *  envelope to the queue of the thread its key names (s_queue_t: a ring of `window` slots
 *  behind a mutex and a condition, "filled"), or hands it back to the bus when that thread
 *  cannot take it (s_route_one); it never waits for a thread. A handler thread then waits on
 *  its own queue instead of the bus, and everything after that is the same code. A keeper
 *  thread renews the leases of what the threads hold and finds threads that hang (s_hung).
 *
 *  The outbox insert uses one statement per batch: the events' columns travel as seven binary
 *  array parameters (common/pgarray.h) and are unnested on the server, so a batch of 64
 *  messages producing 200 events costs one round trip, not 200, and no text parsing.
 */
#include "workers/runtime.h"
#include "common/symbol.h"
#include "bus/client.h"
#include "bus/protocol.h"
#include "common/config.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ops.h"
#include "common/pgarray.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define S_RECV_WAIT_MS     250
#define S_IDLE_EVERY_MS    1000
#define S_BACKOFF_MIN_MS   100
#define S_BACKOFF_MAX_MS   5000
#define S_MAX_STMTS        64
#define S_REDIS_TIMEOUT_MS 2000
#define S_PARK_MS          100      /* a message a thread cannot take is handed back after */
#define S_LATER_PAUSE_MS   100      /* a message its handler defers is handed back after */
#define S_DEFERRED_MAX     256      /* messages a thread remembers handing back for later, */
#define S_DEFERRED_KEEP_MS 60000    /* ... for this long after the last time */
#define S_LOST_SLACK_MS 5000        /* the reconciler's pass and the hop to a worker, at most */
#define S_HELD_MAX_MS      2000     /* a key handed back waits this long for its message */

typedef struct {
    fks_id_t id, corr, cause;
    int64_t ts;
    char type[FKS_TYPE_MAX];
    uint8_t *data;
    size_t size;
} s_event_t;

typedef struct s_thread_t s_thread_t;

//  A message routed to a handler thread, with the envelope the dispatcher decoded (NULL when
//  it did not decode: the handler thread finds that out again and records the failure).
typedef struct {
    fks_bus_msg_t *msg;
    fks_envelope_t *env;
} s_item_t;

//  A handler thread's queue (routed workers only). The dispatcher appends, the thread takes.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t filled;                  /* an item arrived, or the worker stops */
    s_item_t *items;                        /* ring of cap slots */
    size_t cap, head, n;
    bool ready;                             /* lock and conditions initialised */
    bool hung;                              /* its thread hangs: it takes nothing (s_hung) */
} s_queue_t;

struct fks_worker_tx_t {
    s_thread_t *th;
    fks_pg_t *pg;
    fks_redis_t *redis;
    void *state;
    const fks_envelope_hdr_t *hdr;          /* the message being handled */
    uint32_t attempt;
    char corr_text[FKS_ID_STR_SIZE];
    msgpack_sbuffer body;
    msgpack_packer pk;
    size_t batch;                           /* fresh messages in the open transaction */
    size_t current;                         /* the handler's message among them (else SIZE_MAX) */
    const fks_envelope_t **envs;            /* their envelopes (batch of them) */
    s_event_t *events;                      /* the outbox of the open transaction */
    size_t n_events, cap_events;
    PGresult *prefetched[FKS_WORKER_PREFETCH_MAX];  /* the prefetch hook's results, */
    size_t n_prefetched;                            /* until begin returns */
    fks_pg_call_t deferred[FKS_WORKER_DEFER_MAX];   /* writes for the commit's round trip */
    size_t n_deferred;
    char reason[FKS_WORKER_REASON_MAX];
};

struct s_thread_t {
    fks_worker_t *w;
    int index;
    pthread_t tid;
    bool started;
    fks_pg_t *pg;
    fks_redis_t *redis;
    fks_worker_tx_t tx;
    fks_bus_msg_t **batch;                  /* batch slots */
    fks_envelope_t **given;                 /* per batch slot: decoded by the dispatcher */
    bool *fresh;                            /* per batch slot: not consumed before */
    fks_envelope_t **decoded;               /* per batch slot: its envelope, once decoded */
    fks_pg_array_t consumed;                /* the batch's message ids (s_begin_consumed) */
    fks_pg_array_t outbox[7];               /* the outbox's columns (s_insert_events_commit) */
    s_queue_t queue;                        /* routed workers: what the dispatcher gave it */
    fks_bus_lease_t *leases;                /* the batch it holds (worker's lease_lock) */
    size_t n_leases;
    _Atomic int64_t progress_ms;            /* monotonic: its last attempt, pause or wait */
    atomic_bool hung;                       /* no progress for too long (the keeper) */
    size_t deferred;                        /* handed back for later since the last log line */
    int64_t deferred_logged_ms;
    struct {                                /* what it handed back for later (fks_worker_later) */
        fks_id_t id;
        int64_t first_ms, last_ms;          /* monotonic */
    } deferred_ids[S_DEFERRED_MAX];
    size_t n_deferred_ids;
};

struct fks_worker_t {
    const fks_worker_def_t *def;
    fks_worker_cfg_t cfg;
    fks_pg_stmt_t stmts[S_MAX_STMTS];
    size_t n_stmts;
    fks_bus_client_t *bus;
    fks_ops_t *ops;
    s_thread_t *threads;
    bool routed;                            /* a route hook and more than one thread */
    pthread_t dispatcher;
    bool dispatcher_started;
    pthread_t keeper;                       /* renews the leases of what the threads hold */
    bool keeper_started;
    atomic_bool keeper_stop;
    pthread_mutex_t lease_lock;
    atomic_bool stop;
    atomic_int in_flight;
    pthread_mutex_t ready_lock;
    fks_pg_t *ready_pg;
    fks_redis_t *ready_redis;
    fks_metric_t *m_ok, *m_dup, *m_failed, *m_dead, *m_retries, *m_pub_fail, *m_split;
    fks_metric_t *m_handler, *m_batch, *m_batch_size, *m_in_flight, *m_hung, *m_deferred;
};

static const char *s_sql_consumed =
    "INSERT INTO consumed (grp, msg_id) SELECT $1, unnest ($2::uuid[]) "
    "ON CONFLICT DO NOTHING RETURNING msg_id";
static const char *s_sql_events =
    "INSERT INTO events (id, type, corr, cause, src, ts, envelope) "
    "SELECT * FROM unnest ($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], "
    "$6::timestamptz[], $7::bytea[])";


//  --------------------------------------------------------------------------
//  Configuration

int
fks_worker_cfg_load (const fks_worker_def_t *def, fks_worker_cfg_t *cfg, char *err, size_t cap)
{
    memset (cfg, 0, sizeof *cfg);
    fks_config_err_t e;
    int64_t v;
#define S_TRY(call) do { if ((call) < 0) goto fail; } while (0)
    S_TRY (fks_config_str ("FKS_ENV", "local", &cfg->env, &e));
    S_TRY (fks_config_str ("FKS_PG_URL", NULL, &cfg->pg_url, &e));
    if (!cfg->pg_url) {
        snprintf (e.msg, sizeof e.msg, "FKS_PG_URL is required (set FKS_PG_URL or FKS_PG_URL_FILE)");
        goto fail;
    }
    S_TRY (fks_config_str ("FKS_REDIS_URL", NULL, &cfg->redis_url, &e));
    if (!cfg->redis_url) {
        snprintf (e.msg, sizeof e.msg,
                  "FKS_REDIS_URL is required (set FKS_REDIS_URL or FKS_REDIS_URL_FILE)");
        goto fail;
    }
    S_TRY (fks_config_str ("FKS_BUS_URL", NULL, &cfg->bus_url, &e));
    S_TRY (fks_config_str ("FKS_HTTP_BIND", "127.0.0.1", &cfg->http_bind, &e));
    if (def->port_var) {
        //  Port 0 (tests: any free port) is allowed here, unlike fks_config_port.
        S_TRY (fks_config_int (def->port_var, def->default_port, 0, 65535, &v, &e));
        cfg->port = (int) v;
    }
    else
        cfg->port = def->default_port;
    S_TRY (fks_config_int ("FKS_WORKER_THREADS", 2, 1, 64, &v, &e));
    cfg->threads = (int) v;
    S_TRY (fks_config_int ("FKS_WORKER_BATCH", 64, 1, 1024, &v, &e));
    cfg->batch = (int) v;
    S_TRY (fks_config_int ("FKS_WORKER_WINDOW", 256, 1, 10000, &v, &e));
    cfg->window = (int) v;
    //  A statement (a lock wait included) that runs longer is cancelled (57014, retried like
    //  any transient failure), so that a lock held elsewhere cannot hold a handler thread and
    //  the messages behind it for ever.
    S_TRY (fks_config_int ("FKS_PG_STATEMENT_TIMEOUT_MS", 30000, 0, 3600000, &v, &e));
    cfg->statement_timeout_ms = (int) v;
    int64_t interval, after;
    S_TRY (fks_bus_reconcile_timing (&interval, &after, &e));
    cfg->lost_after_ms = after + 2 * interval + S_LOST_SLACK_MS;
#undef S_TRY
    return 0;
fail:
    snprintf (err, cap, "%s", e.msg);
    fks_worker_cfg_free (cfg);
    return -1;
}

static void
s_wipe_free (char *s)
{
    if (s) {
        //  URLs may hold passwords: do not leave them in freed memory.
        volatile char *p = s;
        while (*p)
            *p++ = '\0';
        free (s);
    }
}

void
fks_worker_cfg_free (fks_worker_cfg_t *cfg)
{
    if (!cfg)
        return;
    free (cfg->env);
    s_wipe_free (cfg->pg_url);
    s_wipe_free (cfg->redis_url);
    free (cfg->bus_url);
    free (cfg->http_bind);
    memset (cfg, 0, sizeof *cfg);
}

static char *
s_strdup (const char *s)
{
    return s ? strdup (s) : NULL;
}


//  --------------------------------------------------------------------------
//  Handler API

fks_pg_t *
fks_worker_pg (fks_worker_tx_t *tx)
{
    return tx->pg;
}

fks_redis_t *
fks_worker_redis (fks_worker_tx_t *tx)
{
    return tx->redis;
}

void *
fks_worker_state (fks_worker_tx_t *tx)
{
    return tx->state;
}

const fks_envelope_hdr_t *
fks_worker_msg (fks_worker_tx_t *tx)
{
    return tx->hdr;
}

const char *
fks_worker_corr_text (fks_worker_tx_t *tx)
{
    return tx->corr_text;
}

uint32_t
fks_worker_attempt (fks_worker_tx_t *tx)
{
    return tx->attempt;
}

size_t
fks_worker_batch_size (fks_worker_tx_t *tx)
{
    return tx->batch;
}

const fks_envelope_t *
fks_worker_batch_env (fks_worker_tx_t *tx, size_t i)
{
    return i < tx->batch ? tx->envs[i] : NULL;
}

int64_t
fks_worker_deferred_ms (fks_worker_tx_t *tx)
{
    s_thread_t *th = tx->th;
    if (!tx->hdr || !th)
        return 0;
    int64_t now = fks_mono_ns () / 1000000;
    for (size_t i = 0; i < th->n_deferred_ids; i++)
        if (memcmp (th->deferred_ids[i].id.b, tx->hdr->id.b, FKS_ID_SIZE) == 0)
            return now - th->deferred_ids[i].last_ms > S_DEFERRED_KEEP_MS
                   ? 0 : now - th->deferred_ids[i].first_ms;
    return 0;
}

bool
fks_worker_batch_has_id (fks_worker_tx_t *tx, const char *field, const fks_id_t *id)
{
    size_t upto = tx->current < tx->batch ? tx->current : tx->batch;
    for (size_t i = 0; i < upto; i++) {
        fks_id_t v;
        if (tx->envs[i] && fks_envelope_get_id (tx->envs[i], field, &v) == 0
            && memcmp (v.b, id->b, FKS_ID_SIZE) == 0)
            return true;
    }
    return false;
}

int
fks_worker_count_before (fks_worker_tx_t *tx, const char *stmt, const char *key,
                         const fks_id_t *before, int64_t since_ms, const char *field, int *n,
                         int64_t *newest_ms)
{
    *n = 0;
    if (newest_ms)
        *newest_ms = 0;
    if (fks_id_ms (before) < 0)
        return FKS_WORKER_OK;
    fks_id_t floor;
    fks_id_floor (since_ms, &floor);
    char lo[FKS_ID_STR_SIZE], hi[FKS_ID_STR_SIZE];
    fks_id_format (&floor, lo);
    fks_id_format (before, hi);
    const char *values[3] = { key, hi, lo };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (tx->pg, stmt, 3, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "looking for what came before");
    for (int i = 0; i < PQntuples (r); i++) {
        fks_id_t id;
        const char *text = PQgetvalue (r, i, 0);
        if (fks_id_parse (text, strlen (text), &id) == 0
            && !fks_worker_batch_has_id (tx, field, &id)) {
            (*n)++;
            if (newest_ms && fks_id_ms (&id) > *newest_ms)
                *newest_ms = fks_id_ms (&id);
        }
    }
    PQclear (r);
    return FKS_WORKER_OK;
}

bool
fks_worker_keep_waiting (fks_worker_tx_t *tx, int64_t window_ms, int64_t newest_ms)
{
    if (fks_worker_deferred_ms (tx) < window_ms)
        return true;
    return tx->th && fks_now_ms () - newest_ms < tx->th->w->cfg.lost_after_ms;
}

const PGresult *
fks_worker_prefetched (fks_worker_tx_t *tx, size_t i)
{
    return i < tx->n_prefetched ? tx->prefetched[i] : NULL;
}

int
fks_worker_defer (fks_worker_tx_t *tx, const fks_pg_call_t *call)
{
    if (tx->n_deferred == FKS_WORKER_DEFER_MAX)     /* a worker's mistake: it would repeat */
        return fks_worker_fail (tx, "more than %d deferred writes in one transaction",
                                FKS_WORKER_DEFER_MAX);
    tx->deferred[tx->n_deferred++] = *call;
    return FKS_WORKER_OK;
}

static void
s_prefetched_clear (fks_worker_tx_t *tx)
{
    for (size_t i = 0; i < tx->n_prefetched; i++)
        PQclear (tx->prefetched[i]);
    tx->n_prefetched = 0;
}

void
fks_worker_array_init (fks_worker_array_t *a)
{
    memset (a, 0, sizeof *a);
}

void
fks_worker_array_reset (fks_worker_array_t *a)
{
    a->len = 0;
    a->n = 0;
    a->failed = false;
}

static void
s_array_put (fks_worker_array_t *a, const char *s, size_t n)
{
    if (a->failed)
        return;
    if (a->len + n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->len + n + 2)
            cap *= 2;
        char *p = realloc (a->data, cap);
        if (!p) {
            a->failed = true;
            return;
        }
        a->data = p;
        a->cap = cap;
    }
    memcpy (a->data + a->len, s, n);
    a->len += n;
    a->data[a->len] = '\0';
}

void
fks_worker_array_add (fks_worker_array_t *a, const char *value)
{
    s_array_put (a, a->n ? "," : "{", 1);
    a->n++;
    if (!value) {
        s_array_put (a, "NULL", 4);
        return;
    }
    s_array_put (a, "\"", 1);
    const char *run = value;
    for (const char *p = value; *p; p++)
        if (*p == '"' || *p == '\\') {
            s_array_put (a, run, (size_t) (p - run));
            s_array_put (a, "\\", 1);
            run = p;
        }
    s_array_put (a, run, strlen (run));
    s_array_put (a, "\"", 1);
}

const char *
fks_worker_array_end (fks_worker_array_t *a)
{
    if (a->n == 0)
        s_array_put (a, "{", 1);
    s_array_put (a, "}", 1);
    return a->failed ? NULL : a->data;
}

void
fks_worker_array_free (fks_worker_array_t *a)
{
    free (a->data);
    memset (a, 0, sizeof *a);
}

msgpack_packer *
fks_worker_body (fks_worker_tx_t *tx)
{
    msgpack_sbuffer_clear (&tx->body);
    return &tx->pk;
}

int
fks_worker_emit (fks_worker_tx_t *tx, const char *type, const fks_id_t *corr, fks_id_t *id_out)
{
    fks_worker_t *w = tx->th->w;
    fks_envelope_hdr_t hdr;
    const fks_id_t *cause = tx->hdr ? &tx->hdr->id : NULL;
    if (!corr && tx->hdr && !fks_id_is_nil (&tx->hdr->corr))
        corr = &tx->hdr->corr;
    if (fks_envelope_hdr_init (&hdr, type, w->def->src, corr, cause) != 0)
        return fks_worker_fail (tx, "cannot make an envelope of type %s", type);
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    fks_envelope_err_t err;
    if (fks_envelope_encode (&hdr, tx->body.data, tx->body.size, &out, &err) != 0) {
        msgpack_sbuffer_destroy (&out);
        fks_log (FKS_LOG_ERROR, tx->corr_text[0] ? tx->corr_text : NULL, NULL,
                 "%s: produced an invalid %s: %s", w->def->program, type, err.msg);
        return fks_worker_fail (tx, "internal error: invalid %s (%s)", type, err.msg);
    }
    if (tx->n_events == tx->cap_events) {
        size_t cap = tx->cap_events ? tx->cap_events * 2 : 16;
        s_event_t *p = realloc (tx->events, cap * sizeof *p);
        if (!p) {
            msgpack_sbuffer_destroy (&out);
            return fks_worker_retry (tx, "out of memory");
        }
        tx->events = p;
        tx->cap_events = cap;
    }
    s_event_t *ev = &tx->events[tx->n_events++];
    ev->id = hdr.id;
    ev->corr = hdr.corr;
    ev->cause = hdr.cause;
    ev->ts = hdr.ts;
    snprintf (ev->type, sizeof ev->type, "%s", type);
    ev->data = (uint8_t *) out.data;        /* taken over from the sbuffer */
    ev->size = out.size;
    if (id_out)
        *id_out = hdr.id;
    return 0;
}

static int
s_reason (fks_worker_tx_t *tx, int rc, const char *fmt, va_list ap)
{
    vsnprintf (tx->reason, sizeof tx->reason, fmt, ap);
    return rc;
}

int
fks_worker_fail (fks_worker_tx_t *tx, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int rc = s_reason (tx, FKS_WORKER_FAIL, fmt, ap);
    va_end (ap);
    return rc;
}

int
fks_worker_retry (fks_worker_tx_t *tx, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int rc = s_reason (tx, FKS_WORKER_RETRY, fmt, ap);
    va_end (ap);
    return rc;
}

int
fks_worker_later (fks_worker_tx_t *tx, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int rc = s_reason (tx, FKS_WORKER_LATER, fmt, ap);
    va_end (ap);
    return rc;
}

int
fks_worker_pg_error (fks_worker_tx_t *tx, const fks_pg_err_t *err, const char *what)
{
    const char *s = err->sqlstate;
    bool transient = fks_pg_err_transient (err);
    snprintf (tx->reason, sizeof tx->reason, "%s: %s%s%s", what, err->msg,
              s[0] ? " (SQLSTATE " : "", s[0] ? s : "");
    if (s[0])
        strncat (tx->reason, ")", sizeof tx->reason - strlen (tx->reason) - 1);
    return transient ? FKS_WORKER_RETRY : FKS_WORKER_FAIL;
}

int
fks_worker_redis_error (fks_worker_tx_t *tx, const fks_redis_err_t *err, const char *what)
{
    snprintf (tx->reason, sizeof tx->reason, "%s: Redis: %s", what, err->msg);
    return FKS_WORKER_RETRY;
}

const char *
fks_worker_num (char buf[48], double v)
{
    if (!isfinite (v))
        v = 0;
    snprintf (buf, 48, "%.15g", v);
    if (strcmp (buf, "-0") == 0)
        strcpy (buf, "0");
    return buf;
}

double
fks_worker_parse_num (const char *text, double def)
{
    if (!text || !*text)
        return def;
    char *end;
    double v = strtod (text, &end);
    return (end != text && *end == '\0' && isfinite (v)) ? v : def;
}

uint64_t
fks_worker_key (const char *text)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *) (text ? text : ""); *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t
fks_worker_route_symbol (const fks_envelope_t *env, void *arg)
{
    (void) arg;
    char raw[65], symbol[FKS_SYMBOL_MAX];
    if (fks_envelope_get_str (env, "symbol", raw, sizeof raw) != 0
        || fks_symbol_normalize (raw, symbol, NULL, 0) != 0)
        return 0;
    return fks_worker_key (symbol);
}

const char *
fks_worker_uuid (char buf[FKS_ID_STR_SIZE], const fks_id_t *id)
{
    fks_id_format (id, buf);
    return buf;
}


//  --------------------------------------------------------------------------
//  The transaction

static void
s_events_clear (fks_worker_tx_t *tx)
{
    for (size_t i = 0; i < tx->n_events; i++)
        free (tx->events[i].data);
    tx->n_events = 0;
}

//  Sends the deferred writes, the transaction's outbox rows (one statement, the columns as
//  binary arrays) and COMMIT in one round trip; COMMIT alone when there is nothing to write.
static int
s_insert_events_commit (fks_worker_tx_t *tx, fks_pg_err_t *err)
{
    fks_pg_call_t calls[FKS_WORKER_DEFER_MAX + 1];
    size_t n = tx->n_deferred;
    memcpy (calls, tx->deferred, n * sizeof *calls);
    tx->n_deferred = 0;
    fks_pg_array_t *a = tx->th->outbox;
    const char *values[7];
    int lengths[7], formats[7];
    if (tx->n_events > 0) {
        static const uint32_t elem[7] = {
            FKS_PG_OID_UUID, FKS_PG_OID_TEXT, FKS_PG_OID_UUID, FKS_PG_OID_UUID, FKS_PG_OID_TEXT,
            FKS_PG_OID_TIMESTAMPTZ, FKS_PG_OID_BYTEA };
        for (int k = 0; k < 7; k++)
            fks_pg_array_begin (&a[k], elem[k]);
        for (size_t i = 0; i < tx->n_events; i++) {
            s_event_t *ev = &tx->events[i];
            fks_pg_array_add_uuid (&a[0], &ev->id);
            fks_pg_array_add_text (&a[1], ev->type);
            fks_pg_array_add_uuid (&a[2], fks_id_is_nil (&ev->corr) ? NULL : &ev->corr);
            fks_pg_array_add_uuid (&a[3], fks_id_is_nil (&ev->cause) ? NULL : &ev->cause);
            fks_pg_array_add_text (&a[4], tx->th->w->def->src);
            fks_pg_array_add_timestamptz (&a[5], ev->ts / 1000);
            fks_pg_array_add (&a[6], ev->data, ev->size);
        }
        for (int k = 0; k < 7; k++) {
            if (fks_pg_array_end (&a[k]) != 0) {
                memset (err, 0, sizeof *err);
                snprintf (err->msg, sizeof err->msg, "out of memory building the outbox insert");
                err->conn_lost = true;  /* transient */
                return -1;
            }
            values[k] = a[k].buf.data;
            lengths[k] = (int) a[k].buf.len;
            formats[k] = 1;
        }
        calls[n++] = (fks_pg_call_t) { "fks_w_events", 7, values, lengths, formats };
    }
    return n ? fks_pg_commit_pipeline (tx->pg, calls, n, err) : fks_pg_commit (tx->pg, err);
}

//  Opens the transaction with the consumed rows of msgs; fresh[i] tells whether message i is
//  new to the group. BEGIN goes in the same round trip, and so do the n_extra calls after it
//  (the prefetch hook's), whose results go to tx->prefetched.
static int
s_begin_consumed (s_thread_t *th, fks_bus_msg_t **msgs, size_t n,
                  const fks_pg_call_t *extra, size_t n_extra, fks_pg_err_t *err)
{
    th->tx.n_deferred = 0;
    fks_pg_array_t *ids = &th->consumed;
    fks_pg_array_begin (ids, FKS_PG_OID_UUID);
    for (size_t i = 0; i < n; i++) {
        fks_pg_array_add_uuid (ids, fks_bus_msg_id (msgs[i]));
        th->fresh[i] = false;
    }
    if (fks_pg_array_end (ids) != 0) {
        memset (err, 0, sizeof *err);
        snprintf (err->msg, sizeof err->msg, "out of memory");
        err->conn_lost = true;
        return -1;
    }
    const char *values[2] = { th->w->def->group, ids->buf.data };
    const int lengths[2] = { 0, (int) ids->buf.len }, formats[2] = { 0, 1 };
    PGresult *r = NULL;
    fks_pg_call_t calls[1 + FKS_WORKER_PREFETCH_MAX];
    PGresult *out[1 + FKS_WORKER_PREFETCH_MAX];
    calls[0] = (fks_pg_call_t) { "fks_w_consumed", 2, values, lengths, formats };
    for (size_t i = 0; i < n_extra; i++)
        calls[1 + i] = extra[i];
    if (fks_pg_begin_pipeline (th->pg, calls, 1 + n_extra, out, err) == 0) {
        r = out[0];
        for (size_t i = 0; i < n_extra; i++)
            th->tx.prefetched[i] = out[1 + i];
        th->tx.n_prefetched = n_extra;
    }
    if (!r)
        return -1;
    int rows = PQntuples (r);
    for (int k = 0; k < rows; k++) {
        fks_id_t got;
        const char *text = PQgetvalue (r, k, 0);
        if (fks_id_parse (text, strlen (text), &got) != 0)
            continue;
        //  The first message with this id is the fresh one; a second copy in the same batch
        //  is a duplicate.
        for (size_t i = 0; i < n; i++)
            if (!th->fresh[i] && memcmp (fks_bus_msg_id (msgs[i])->b, got.b, FKS_ID_SIZE) == 0) {
                th->fresh[i] = true;
                break;
            }
    }
    PQclear (r);
    return 0;
}

static void
s_tx_set_msg (fks_worker_tx_t *tx, const fks_envelope_hdr_t *hdr, fks_bus_msg_t *msg)
{
    tx->hdr = hdr;
    tx->attempt = msg ? fks_bus_msg_attempt (msg) : 0;
    if (hdr && !fks_id_is_nil (&hdr->corr))
        fks_id_format (&hdr->corr, tx->corr_text);
    else
        tx->corr_text[0] = '\0';
}

typedef enum { S_DONE = 0, S_TRANSIENT, S_PERMANENT, S_LATER } s_outcome_t;

static s_outcome_t
s_outcome (int rc)
{
    return rc == FKS_WORKER_RETRY ? S_TRANSIENT : rc == FKS_WORKER_LATER ? S_LATER
                                                                         : S_PERMANENT;
}

//  Ends the attempt's envelopes: those it decoded are freed, those the dispatcher decoded
//  (envs[i], owned by the handler thread's loop) are only forgotten.
static void
s_decoded_free (s_thread_t *th, fks_envelope_t **envs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (envs && envs[i])
            th->decoded[i] = NULL;
        else
            fks_envelope_destroy (&th->decoded[i]);
    }
    th->tx.batch = 0;
}

//  Decodes message i into th->decoded[i] (the dispatcher's envs[i] when it decoded it) and,
//  while the prefetch hook runs, into the batch it sees. 0, or -1 with why (may be NULL).
static int
s_decode_slot (s_thread_t *th, fks_bus_msg_t **msgs, fks_envelope_t **envs, size_t i,
               char why[FKS_WORKER_REASON_MAX])
{
    if (envs && envs[i])
        th->decoded[i] = envs[i];
    else {
        size_t size;
        const uint8_t *data = fks_bus_msg_data (msgs[i], &size);
        fks_envelope_err_t eerr;
        th->decoded[i] = fks_envelope_decode (data, size, &eerr);
        if (!th->decoded[i]) {
            if (why)
                snprintf (why, FKS_WORKER_REASON_MAX, "undecodable %s: %s",
                          fks_bus_msg_topic (msgs[i]), eerr.msg);
            return -1;
        }
    }
    th->tx.envs[th->tx.batch++] = th->decoded[i];
    return 0;
}

//  The worker's own threads leave signals to the thread that runs fks_worker_run.
static void
s_block_signals (void)
{
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
}

//  The thread shows it is alive: the keeper renews its leases only while it does.
static void
s_progress (s_thread_t *th)
{
    if (th)
        atomic_store (&th->progress_ms, fks_mono_ns () / 1000000);
}

//  One attempt at a batch in one transaction. envs (may be NULL) holds envelopes already
//  decoded, per message (NULL: decode it here). On failure *bad is the index of the message
//  that failed (n when the failure was not a message's), and th->tx.reason says why.
static s_outcome_t
s_attempt (s_thread_t *th, fks_bus_msg_t **msgs, fks_envelope_t **envs, size_t n, size_t *bad)
{
    fks_worker_t *w = th->w;
    fks_worker_tx_t *tx = &th->tx;
    fks_pg_err_t err;
    s_progress (th);
    *bad = n;
    tx->reason[0] = '\0';
    tx->current = SIZE_MAX;
    s_events_clear (tx);
    int64_t t0 = fks_mono_ns ();
    //  With a prefetch hook every message is decoded before BEGIN (those the group handled
    //  before too: they cannot be told apart yet), so that the hook's reads can travel with
    //  BEGIN and the consumed insert; otherwise only the new ones, after it.
    bool early = w->def->prefetch != NULL;
    fks_pg_call_t extra[FKS_WORKER_PREFETCH_MAX];
    size_t n_extra = 0;
    tx->batch = 0;
    for (size_t i = 0; i < n; i++) {
        th->decoded[i] = NULL;
        if (early)
            s_decode_slot (th, msgs, envs, i, NULL);
    }
    if (early) {
        n_extra = w->def->prefetch (tx, extra, FKS_WORKER_PREFETCH_MAX, w->def->arg);
        if (n_extra > FKS_WORKER_PREFETCH_MAX)
            n_extra = 0;
    }
    if (s_begin_consumed (th, msgs, n, extra, n_extra, &err) != 0) {
        int rc = fks_worker_pg_error (tx, &err, "BEGIN and recording consumed messages");
        s_decoded_free (th, envs, n);
        fks_pg_rollback (th->pg);
        return s_outcome (rc);
    }
    //  The batch begin and the handlers see: the new messages, every one decoded.
    tx->batch = 0;
    for (size_t i = 0; i < n; i++) {
        if (!th->fresh[i]) {
            if (th->decoded[i] && !(envs && envs[i]))
                fks_envelope_destroy (&th->decoded[i]);
            th->decoded[i] = NULL;
            continue;
        }
        char why[FKS_WORKER_REASON_MAX];
        if (th->decoded[i])
            tx->envs[tx->batch++] = th->decoded[i];
        else if (s_decode_slot (th, msgs, envs, i, why) != 0) {
            snprintf (tx->reason, sizeof tx->reason, "%s", why);
            s_prefetched_clear (tx);
            s_decoded_free (th, envs, n);
            fks_pg_rollback (th->pg);
            *bad = i;
            return S_PERMANENT;
        }
    }
    if (w->def->begin) {
        int rc = w->def->begin (tx, w->def->arg);
        s_prefetched_clear (tx);
        if (rc != FKS_WORKER_OK) {
            if (!tx->reason[0])
                snprintf (tx->reason, sizeof tx->reason, "the transaction could not begin");
            s_decoded_free (th, envs, n);
            fks_pg_rollback (th->pg);
            return s_outcome (rc);
        }
    }
    s_prefetched_clear (tx);            /* prefetched without a begin hook to read it */
    tx->current = 0;
    for (size_t i = 0; i < n; i++) {
        if (!th->decoded[i])
            continue;
        const fks_envelope_t *env = th->decoded[i];
        s_tx_set_msg (tx, fks_envelope_hdr (env), msgs[i]);
        int64_t h0 = fks_mono_ns ();
        int rc = w->def->handler (tx, env, w->def->arg);
        fks_metric_observe (w->m_handler, (double) (fks_mono_ns () - h0) / 1e9);
        s_tx_set_msg (tx, NULL, NULL);
        tx->current++;
        if (rc != FKS_WORKER_OK) {
            tx->current = SIZE_MAX;
            if (!tx->reason[0])
                snprintf (tx->reason, sizeof tx->reason, "the handler failed");
            s_decoded_free (th, envs, n);
            fks_pg_rollback (th->pg);
            *bad = i;
            return s_outcome (rc);
        }
    }
    tx->current = SIZE_MAX;
    if (w->def->flush) {
        int rc = w->def->flush (tx, w->def->arg);
        if (rc != FKS_WORKER_OK) {
            if (!tx->reason[0])
                snprintf (tx->reason, sizeof tx->reason, "the flush failed");
            s_decoded_free (th, envs, n);
            fks_pg_rollback (th->pg);
            return s_outcome (rc);
        }
    }
    s_decoded_free (th, envs, n);
    if (s_insert_events_commit (tx, &err) != 0) {
        int rc = fks_worker_pg_error (tx, &err, "writing the batch and the outbox, COMMIT");
        fks_pg_rollback (th->pg);
        return s_outcome (rc);
    }
    fks_metric_observe (w->m_batch, (double) (fks_mono_ns () - t0) / 1e9);
    return S_DONE;
}

//  After COMMIT: publish what was produced, then ack, counting each message as `as` (NULL:
//  ok, or duplicate when it was consumed before).
static void
s_finish (s_thread_t *th, fks_bus_msg_t **msgs, size_t n, fks_metric_t *as)
{
    fks_worker_t *w = th->w;
    fks_worker_tx_t *tx = &th->tx;
    for (size_t i = 0; i < tx->n_events; i++) {
        s_event_t *ev = &tx->events[i];
        if (fks_bus_publish (w->bus, ev->type, ev->data, ev->size) != 0)
            fks_metric_inc (w->m_pub_fail);     /* the reconciler publishes it later */
    }
    s_events_clear (tx);
    for (size_t i = 0; i < n; i++) {
        fks_metric_inc (as ? as : th->fresh[i] ? w->m_ok : w->m_dup);
        fks_bus_ack (w->bus, &msgs[i]);
    }
}

static bool
s_stopping (fks_worker_t *w)
{
    return atomic_load (&w->stop);
}


//  --------------------------------------------------------------------------
//  Routing: the handler threads' queues

//  The absolute CLOCK_MONOTONIC time ms from now, for the queues' timed waits.
static void
s_deadline (struct timespec *ts, int64_t ms)
{
    *ts = fks_clock_after (CLOCK_MONOTONIC, ms * 1000000);
}

static int
s_queue_init (s_queue_t *q, size_t cap)
{
    memset (q, 0, sizeof *q);
    q->items = calloc (cap, sizeof *q->items);
    if (!q->items)
        return -1;
    q->cap = cap;
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_mutex_init (&q->lock, NULL);
    pthread_cond_init (&q->filled, &attr);
    pthread_condattr_destroy (&attr);
    q->ready = true;
    return 0;
}

//  Hands back what is still queued (released to the broker through bus when given, so that no
//  attempt is counted; else freed un-acked); returns how many. Call with no thread using the
//  queue any more, or under its lock.
static size_t
s_queue_clear (s_queue_t *q, fks_bus_client_t *bus)
{
    size_t n = q->n;
    for (; q->n > 0; q->n--) {
        s_item_t *it = &q->items[q->head];
        if (bus)
            fks_bus_release (bus, &it->msg);
        fks_bus_msg_destroy (&it->msg);
        fks_envelope_destroy (&it->env);
        q->head = (q->head + 1) % q->cap;
    }
    q->head = 0;
    return n;
}

static void
s_queue_destroy (s_queue_t *q)
{
    if (q->items)
        s_queue_clear (q, NULL);
    if (q->ready) {
        pthread_mutex_destroy (&q->lock);
        pthread_cond_destroy (&q->filled);
    }
    free (q->items);
    memset (q, 0, sizeof *q);
}

//  Appends a message for the queue's thread (the dispatcher), never waiting: returns 0, or -1
//  when the queue is full or its thread hangs (the caller keeps the item and hands it back to
//  the bus). The queue holds a window of messages, so it fills only with deliveries the
//  broker took back and delivered again while older copies still wait here (a rejoin, a
//  thread that hangs); waiting for room there would hold every other key (s_dispatch_main).
static int
s_queue_offer (s_queue_t *q, s_item_t item)
{
    pthread_mutex_lock (&q->lock);
    if (q->n == q->cap || q->hung) {
        pthread_mutex_unlock (&q->lock);
        return -1;
    }
    q->items[(q->head + q->n) % q->cap] = item;
    if (q->n++ == 0)
        pthread_cond_signal (&q->filled);
    pthread_mutex_unlock (&q->lock);
    return 0;
}

//  Takes up to max queued messages into msgs/envs (the queue's thread), waiting up to
//  wait_ms for the first. Returns how many (0 on timeout, and once the worker stops: a
//  stopping thread takes nothing more).
static size_t
s_queue_take (fks_worker_t *w, s_queue_t *q, fks_bus_msg_t **msgs, fks_envelope_t **envs,
              size_t max, int64_t wait_ms)
{
    struct timespec ts;
    s_deadline (&ts, wait_ms);
    pthread_mutex_lock (&q->lock);
    while (q->n == 0 && !s_stopping (w))
        if (pthread_cond_timedwait (&q->filled, &q->lock, &ts) == ETIMEDOUT)
            break;
    size_t n = 0;
    if (!s_stopping (w)) {
        while (n < max && q->n > 0) {
            s_item_t *it = &q->items[q->head];
            msgs[n] = it->msg;
            envs[n] = it->env;
            it->msg = NULL;
            it->env = NULL;
            q->head = (q->head + 1) % q->cap;
            q->n--;
            n++;
        }
    }
    pthread_mutex_unlock (&q->lock);
    return n;
}

//  Renews the ack deadlines of what waits in the queue (the keeper, while its thread works).
static void
s_queue_touch (fks_worker_t *w, s_queue_t *q)
{
    pthread_mutex_lock (&q->lock);
    for (size_t i = 0; i < q->n; i++)
        fks_bus_touch (w->bus, q->items[(q->head + i) % q->cap].msg);
    pthread_mutex_unlock (&q->lock);
}

//  Wakes whoever waits on a queue, so that a stop is seen at once.
static void
s_queue_wake (s_queue_t *q)
{
    pthread_mutex_lock (&q->lock);
    pthread_cond_broadcast (&q->filled);
    pthread_mutex_unlock (&q->lock);
}

//  Sleeps ms unless stop becomes true, showing th's progress (NULL: none) as it goes. (What
//  the thread holds keeps its lease meanwhile: the keeper renews it.)
static void
s_pause (s_thread_t *th, const atomic_bool *stop, int64_t ms)
{
    int64_t end = fks_mono_ns () + ms * 1000000;
    while (!atomic_load (stop)) {
        s_progress (th);
        int64_t left = (end - fks_mono_ns ()) / 1000000;
        if (left <= 0)
            break;
        struct timespec ts = { 0, (long) (left > 50 ? 50 : left) * 1000000L };
        nanosleep (&ts, NULL);
    }
}

//  Notes the leases of the batch a thread is about to handle (n = 0: it holds nothing).
static void
s_hold (s_thread_t *th, fks_bus_msg_t **msgs, size_t n)
{
    s_progress (th);
    pthread_mutex_lock (&th->w->lease_lock);
    for (size_t i = 0; i < n; i++)
        fks_bus_msg_lease (msgs[i], &th->leases[i]);
    th->n_leases = n;
    pthread_mutex_unlock (&th->w->lease_lock);
}

//  A thread that shows no progress for longer than its bound (s_keeper_main) hangs: it is
//  marked so (/ready fails while any thread is), and its queue takes nothing until it shows
//  progress again (s_recover): the dispatcher hands back (releases: no attempt counted) what
//  waits in it and what comes for it, for another replica to take (s_dispatch_main).
//  Called by the keeper.
//
//  Why the message it hangs on still takes effect once, whoever finishes it: the hung
//  thread's transaction opened by inserting the batch's `consumed` rows (s_begin_consumed),
//  and its leases lapse, so the broker hands the message to another replica (or to this one,
//  whose dispatcher hands it back while the thread hangs). A copy's transaction inserts the
//  same `consumed` row first: it waits for the hung transaction's row (its statement
//  timeout cancels the wait and the copy is retried, the thread showing progress), and then
//  finds the row committed (the copy is acked as a duplicate: the hung thread did the work)
//  or gone (the hung transaction rolled back, its connection closed with the pod: the copy
//  does the work). A thread that hangs before BEGIN (in a prefetch hook) holds no row: the
//  copy does the work, and the thread, waking, finds the row and only acks. Its late ack
//  names a delivery the broker took back, so the broker ignores it. Either way the effect,
//  its outbox rows and its `consumed` row commit once (test
//  runtime::a_hung_routed_thread_does_not_stop_the_other_keys).
//  Marks th hung or not; its queue (routed workers) under the queue's lock, so that the
//  dispatcher never adds to the queue of a thread taken to hang. Returns whether it changed.
static bool
s_mark (fks_worker_t *w, s_thread_t *th, bool hung)
{
    if (w->routed)
        pthread_mutex_lock (&th->queue.lock);
    th->queue.hung = hung;
    bool was = atomic_exchange (&th->hung, hung);
    if (w->routed)
        pthread_mutex_unlock (&th->queue.lock);
    return was != hung;
}

static void
s_hung (fks_worker_t *w, s_thread_t *th, int64_t quiet_ms)
{
    s_mark (w, th, true);
    fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: handler thread %d has shown no progress for %lld "
             "ms: taken to hang; its lease lapses, %s/ready fails until it goes on",
             w->def->program, th->index, (long long) quiet_ms,
             w->routed ? "its messages are handed back to the bus, " : "");
}

//  A thread that was taken to hang shows progress again: it takes messages again.
static void
s_recover (fks_worker_t *w, s_thread_t *th)
{
    if (!atomic_load (&th->hung) || !s_mark (w, th, false))
        return;
    fks_log (FKS_LOG_WARN, NULL, NULL, "%s: handler thread %d goes on after hanging",
             w->def->program, th->index);
}

//  The keeper: every third of the ack deadline, renews the leases of every message a handler
//  thread holds (the whole batch, including those waiting while one is retried alone) and of
//  those waiting in the threads' queues. An attempt may take longer than the deadline (a lock
//  wait up to the statement timeout), a retry may go on through an outage: neither makes the
//  broker take a message back, count an attempt and dead-letter it while this replica still
//  works on it. (Deliveries waiting in the bus client are renewed by the client.) A thread
//  that shows no progress (a new attempt, a retry's pause, a wait for messages) for longer
//  than an attempt can take (the statement timeout, or the deadline when there is none) plus
//  the deadline is taken to hang (s_hung): its leases lapse, and the broker gives its
//  messages to another replica, as the ack deadline is there for. It runs until the handler
//  threads have stopped.
static void *
s_keeper_main (void *arg)
{
    fks_worker_t *w = arg;
    s_block_signals ();
    while (!atomic_load (&w->keeper_stop)) {
        int64_t deadline = fks_bus_ack_deadline_ms (w->bus);
        if (deadline <= 0)
            deadline = 3000;
        s_pause (NULL, &w->keeper_stop, deadline / 3 > 0 ? deadline / 3 : 1);
        if (atomic_load (&w->keeper_stop))
            break;
        int64_t quiet_max = (w->cfg.statement_timeout_ms > 0 ? w->cfg.statement_timeout_ms
                                                              : deadline) + deadline;
        int64_t now = fks_mono_ns () / 1000000;
        bool alive[w->cfg.threads];
        int hung = 0;
        for (int i = 0; i < w->cfg.threads; i++) {
            s_thread_t *th = &w->threads[i];
            int64_t quiet = now - atomic_load (&th->progress_ms);
            alive[i] = quiet <= quiet_max;
            if (!alive[i] && !atomic_load (&th->hung))
                s_hung (w, th, quiet);
            else if (alive[i])
                s_recover (w, th);
            hung += !alive[i];
        }
        fks_metric_set (w->m_hung, hung);
        pthread_mutex_lock (&w->lease_lock);
        for (int i = 0; i < w->cfg.threads; i++)
            if (alive[i])
                fks_bus_touch_leases (w->bus, w->threads[i].leases, w->threads[i].n_leases);
        pthread_mutex_unlock (&w->lease_lock);
        if (w->routed)
            for (int i = 0; i < w->cfg.threads; i++)
                if (alive[i])
                    s_queue_touch (w, &w->threads[i].queue);
    }
    return NULL;
}

static void
s_release (s_thread_t *th, fks_bus_msg_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fks_bus_release (th->w->bus, &msgs[i]);
    fks_log (FKS_LOG_INFO, NULL, NULL, "%s: stopping; %zu message(s) handed back unhandled",
             th->w->def->program, n);
}

static void
s_log_retry (s_thread_t *th, int tries, const char *corr)
{
    //  Log the first failure and then every tenth, so an outage does not flood the log.
    if (tries == 1 || tries % 10 == 0)
        fks_log (FKS_LOG_WARN, corr && *corr ? corr : NULL, NULL,
                 "%s: transient failure (try %d), retrying: %s", th->w->def->program, tries,
                 th->tx.reason);
}

//  A message that can never be handled: let the worker record it, else dead-letter it.
static void
s_fail_one (s_thread_t *th, fks_bus_msg_t *msg, const char *why)
{
    fks_worker_t *w = th->w;
    fks_worker_tx_t *tx = &th->tx;
    char reason[FKS_WORKER_REASON_MAX];
    snprintf (reason, sizeof reason, "%s", why);
    size_t size;
    const uint8_t *data = fks_bus_msg_data (msg, &size);
    fks_envelope_err_t eerr;
    fks_envelope_t *env = fks_envelope_decode (data, size, &eerr);
    char corr[FKS_ID_STR_SIZE] = "";
    if (env && !fks_id_is_nil (&fks_envelope_hdr (env)->corr))
        fks_id_format (&fks_envelope_hdr (env)->corr, corr);
    fks_log (FKS_LOG_ERROR, corr[0] ? corr : NULL, NULL, "%s: cannot handle %s: %s",
             w->def->program, fks_bus_msg_topic (msg), reason);

    int64_t backoff = S_BACKOFF_MIN_MS;
    for (int tries = 1;; tries++) {
        s_progress (th);
        int rc = FKS_WORKER_FAIL;
        fks_pg_err_t err;
        tx->reason[0] = '\0';
        s_events_clear (tx);
        if (w->def->on_fail) {
            if (s_begin_consumed (th, &msg, 1, NULL, 0, &err) != 0)
                rc = fks_worker_pg_error (tx, &err, "BEGIN and recording the consumed message");
            else if (!th->fresh[0]) {
                //  Another replica finished it meanwhile.
                rc = fks_pg_commit (th->pg, &err) == 0 ? FKS_WORKER_OK
                                                        : fks_worker_pg_error (tx, &err, "COMMIT");
                if (rc == FKS_WORKER_OK) {
                    fks_envelope_destroy (&env);
                    fks_metric_inc (w->m_dup);
                    fks_bus_ack (w->bus, &msg);
                    return;
                }
            }
            else {
                tx->batch = env ? 1 : 0;
                tx->envs[0] = env;
                rc = w->def->begin ? w->def->begin (tx, w->def->arg) : FKS_WORKER_OK;
                s_tx_set_msg (tx, env ? fks_envelope_hdr (env) : NULL, msg);
                if (rc == FKS_WORKER_OK)
                    rc = w->def->on_fail (tx, env, reason, w->def->arg);
                s_tx_set_msg (tx, NULL, NULL);
                tx->batch = 0;
                if (rc == FKS_WORKER_OK && w->def->flush)
                    rc = w->def->flush (tx, w->def->arg);
                if (rc == FKS_WORKER_OK && s_insert_events_commit (tx, &err) != 0)
                    rc = fks_worker_pg_error (tx, &err, "writing the batch and the outbox, "
                                              "COMMIT");
            }
            if (rc != FKS_WORKER_OK)
                fks_pg_rollback (th->pg);
        }
        if (rc == FKS_WORKER_OK) {
            fks_envelope_destroy (&env);
            fks_bus_msg_t *one[1] = { msg };
            s_finish (th, one, 1, w->m_failed); /* publishes; acks */
            return;
        }
        if (rc == FKS_WORKER_RETRY) {
            fks_metric_inc (w->m_retries);
            s_log_retry (th, tries, corr);
            if (s_stopping (w)) {
                fks_envelope_destroy (&env);
                s_release (th, &msg, 1);
                return;
            }
            s_pause (th, &w->stop, backoff);
            backoff = backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        //  Nothing recorded it: the bus keeps it as a dead letter.
        if (w->def->on_fail)
            fks_log (FKS_LOG_ERROR, corr[0] ? corr : NULL, NULL,
                     "%s: could not record the failure either: %s", w->def->program,
                     tx->reason);
        s_events_clear (tx);
        fks_envelope_destroy (&env);
        fks_metric_inc (w->m_dead);
        fks_bus_reject (w->bus, &msg, FKS_BUS_DEAD, reason);
        return;
    }
}

//  A message its handler says is not to be handled yet (FKS_WORKER_LATER): handed back to the
//  bus after S_LATER_PAUSE_MS (without the pause one replica and the broker would pass it back
//  and forth while what it waits for is not there), so that what is queued behind it goes
//  first. No attempt is counted. Said in the log at most every 10 s per thread.
static void
s_later (s_thread_t *th, fks_bus_msg_t **msg)
{
    fks_worker_t *w = th->w;
    fks_metric_inc (w->m_deferred);
    th->deferred++;
    int64_t now = fks_mono_ns () / 1000000;
    //  Remembered with the first time, so that the handler can bound how long it defers it
    //  (fks_worker_deferred_ms); the one seen least lately makes room.
    const fks_id_t *id = fks_bus_msg_id (*msg);
    size_t at = th->n_deferred_ids;
    for (size_t i = 0; i < th->n_deferred_ids; i++) {
        if (memcmp (th->deferred_ids[i].id.b, id->b, FKS_ID_SIZE) == 0) {
            at = i;
            break;
        }
    }
    if (at == th->n_deferred_ids) {
        if (at == S_DEFERRED_MAX) {
            at = 0;
            for (size_t i = 1; i < S_DEFERRED_MAX; i++)
                if (th->deferred_ids[i].last_ms < th->deferred_ids[at].last_ms)
                    at = i;
        }
        else
            th->n_deferred_ids++;
        th->deferred_ids[at].id = *id;
        th->deferred_ids[at].first_ms = now;
    }
    else if (now - th->deferred_ids[at].last_ms > S_DEFERRED_KEEP_MS)
        th->deferred_ids[at].first_ms = now;
    th->deferred_ids[at].last_ms = now;
    if (now - th->deferred_logged_ms >= 10000) {
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: %zu message(s) handed back for later (%s)",
                 w->def->program, th->deferred, th->tx.reason);
        th->deferred_logged_ms = now;
        th->deferred = 0;
    }
    if (!s_stopping (w))
        s_pause (th, &w->stop, S_LATER_PAUSE_MS);
    fks_bus_release (w->bus, msg);
}

//  Handles a batch: in one transaction if it can, else message by message.
static void
s_handle (s_thread_t *th, fks_bus_msg_t **msgs, fks_envelope_t **envs, size_t n)
{
    fks_worker_t *w = th->w;
    int64_t backoff = S_BACKOFF_MIN_MS;
    for (int tries = 1;; tries++) {
        size_t bad;
        s_outcome_t out = s_attempt (th, msgs, envs, n, &bad);
        if (out == S_DONE) {
            s_finish (th, msgs, n, NULL);
            return;
        }
        bool conn_lost = !fks_pg_connected (th->pg);
        if (n > 1 && !conn_lost) {
            //  One message (or a deadlock between replicas) spoiled the batch: take it apart.
            fks_metric_inc (w->m_split);
            s_events_clear (&th->tx);
            for (size_t i = 0; i < n; i++)
                s_handle (th, &msgs[i], envs ? &envs[i] : NULL, 1);
            return;
        }
        if (out == S_LATER && n == 1 && !conn_lost) {
            s_events_clear (&th->tx);
            s_later (th, &msgs[0]);
            return;
        }
        if (out == S_PERMANENT && n == 1) {
            char why[FKS_WORKER_REASON_MAX];
            snprintf (why, sizeof why, "%s", th->tx.reason);
            s_events_clear (&th->tx);
            s_fail_one (th, msgs[0], why);
            return;
        }
        s_events_clear (&th->tx);
        fks_metric_inc (w->m_retries);
        s_log_retry (th, tries, NULL);
        if (s_stopping (w)) {
            s_release (th, msgs, n);
            return;
        }
        s_pause (th, &w->stop, backoff);
        backoff = backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : backoff * 2;
    }
}

static void *
s_thread_main (void *arg)
{
    s_thread_t *th = arg;
    fks_worker_t *w = th->w;
    s_block_signals ();
    if (w->def->thread_init)
        th->tx.state = w->def->thread_init (th->pg, th->redis, w->def->arg);
    int64_t last_idle = 0;
    while (!s_stopping (w)) {
        s_progress (th);                /* waiting for messages is no hang */
        size_t n = 0;
        if (w->routed)
            n = s_queue_take (w, &th->queue, th->batch, th->given, (size_t) w->cfg.batch,
                              S_RECV_WAIT_MS);
        else {
            fks_bus_msg_t *msg = fks_bus_recv (w->bus, S_RECV_WAIT_MS);
            if (msg) {
                th->batch[n++] = msg;
                while (n < (size_t) w->cfg.batch && (msg = fks_bus_recv (w->bus, 0)) != NULL)
                    th->batch[n++] = msg;
            }
        }
        if (n == 0) {
            int64_t now = fks_mono_ns () / 1000000;
            if (w->def->idle && now - last_idle >= S_IDLE_EVERY_MS) {
                last_idle = now;
                w->def->idle (th->tx.state, w->def->arg);
            }
            continue;
        }
        atomic_fetch_add (&w->in_flight, (int) n);
        fks_metric_add (w->m_in_flight, (double) n);
        fks_metric_observe (w->m_batch_size, (double) n);
        s_hold (th, th->batch, n);
        s_handle (th, th->batch, w->routed ? th->given : NULL, n);
        s_hold (th, NULL, 0);
        s_recover (w, th);
        if (w->routed)
            for (size_t i = 0; i < n; i++)
                fks_envelope_destroy (&th->given[i]);
        atomic_fetch_sub (&w->in_flight, (int) n);
        fks_metric_add (w->m_in_flight, -(double) n);
    }
    if (w->def->thread_fini)
        w->def->thread_fini (th->tx.state, w->def->arg);
    th->tx.state = NULL;
    return NULL;
}

//  The dispatcher's state: the messages it handed back and has not seen again, and those it
//  holds for a moment before handing them back.
typedef struct {
    uint64_t key;
    fks_id_t id;
    int64_t since_ms;                       /* when it was last handed back */
} s_held_t;

typedef struct {
    fks_worker_t *w;
    s_held_t *held;                         /* in the keys' order (s_route_one) */
    size_t n_held, cap_held;
    fks_bus_msg_t **parked;                 /* to hand back at park_until, in arrival order */
    size_t n_parked, cap_parked;
    int64_t park_until;
    size_t handed_back;                     /* since the last log line */
} s_dispatch_t;

//  Notes that message id of key was handed back (again): a new one goes at the end of the
//  list, or at its start (front: what a hung thread's queue held, which came before any
//  other message of its keys handed back so far).
static void
s_held_note (s_dispatch_t *d, uint64_t key, const fks_id_t *id, int64_t now, bool front)
{
    for (size_t i = 0; i < d->n_held; i++)
        if (memcmp (d->held[i].id.b, id->b, FKS_ID_SIZE) == 0) {
            d->held[i].since_ms = now;
            return;
        }
    if (d->n_held == d->cap_held) {
        size_t cap = d->cap_held ? d->cap_held * 2 : 64;
        s_held_t *p = realloc (d->held, cap * sizeof *p);
        if (!p)
            return;                         /* out of memory: that key's order is not kept */
        d->held = p;
        d->cap_held = cap;
    }
    size_t at = front ? 0 : d->n_held;
    memmove (&d->held[at + 1], &d->held[at], (d->n_held - at) * sizeof *d->held);
    d->held[at] = (s_held_t) { key, *id, now };
    d->n_held++;
}

//  Whether a message of key may be queued now: none of key was handed back, or this one
//  (id) is the first of them. Forgets on the way the ones handed back more than
//  S_HELD_MAX_MS ago: they went to another replica (or were acked there), and the order
//  across replicas is not this replica's to keep (docs/ARCHITECTURE.md).
static bool
s_held_turn (s_dispatch_t *d, uint64_t key, const fks_id_t *id, int64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < d->n_held; i++)
        if (now - d->held[i].since_ms <= S_HELD_MAX_MS)
            d->held[k++] = d->held[i];
    d->n_held = k;
    for (size_t i = 0; i < d->n_held; i++)
        if (d->held[i].key == key)
            return memcmp (d->held[i].id.b, id->b, FKS_ID_SIZE) == 0;
    return true;
}

//  Forgets message id (it was queued).
static void
s_held_drop (s_dispatch_t *d, const fks_id_t *id)
{
    for (size_t i = 0; i < d->n_held; i++)
        if (memcmp (d->held[i].id.b, id->b, FKS_ID_SIZE) == 0) {
            memmove (&d->held[i], &d->held[i + 1], (d->n_held - i - 1) * sizeof *d->held);
            d->n_held--;
            return;
        }
}

//  Hands back (releases: no attempt counted) what is parked.
static void
s_unpark (s_dispatch_t *d)
{
    for (size_t i = 0; i < d->n_parked; i++)
        fks_bus_release (d->w->bus, &d->parked[i]);
    d->handed_back += d->n_parked;
    d->n_parked = 0;
}

//  Holds msg for S_PARK_MS, then hands it back: the broker puts it back at the head of its
//  queue and delivers it again at once, to this replica when it is the only one, so handing
//  back at once would spin while a thread hangs.
static void
s_park (s_dispatch_t *d, fks_bus_msg_t *msg, int64_t now)
{
    if (d->n_parked == d->cap_parked) {
        size_t cap = d->cap_parked ? d->cap_parked * 2 : 64;
        fks_bus_msg_t **p = realloc (d->parked, cap * sizeof *p);
        if (!p) {
            fks_bus_release (d->w->bus, &msg);
            d->handed_back++;
            return;
        }
        d->parked = p;
        d->cap_parked = cap;
    }
    if (d->n_parked == 0)
        d->park_until = now + S_PARK_MS;
    d->parked[d->n_parked++] = msg;
}

static uint64_t
s_route_key (fks_worker_t *w, const fks_envelope_t *env)
{
    return env ? w->def->route (env, w->def->arg) : 0;
}

//  Gives msg (decoded as env, may be NULL) to the queue of the thread its key names, or hands
//  it back to the bus: when that thread hangs or its queue is full (never waiting there,
//  which held every other key), or when an earlier message of the same key was handed back
//  and has not been queued since. The last rule keeps a key's order on this replica: a later
//  message of the key (in the same delivery, or sent by the broker before it took the first
//  back) must not be queued before it; it goes back behind it. The broker puts what one
//  RELEASE lists back at the head of its queue in order, but what two RELEASEs list comes
//  back in either order, so a message that comes back before an earlier one of its key goes
//  back again, until the earlier one is here.
static void
s_route_one (s_dispatch_t *d, fks_bus_msg_t *msg, fks_envelope_t *env, uint64_t key,
             int64_t now)
{
    fks_worker_t *w = d->w;
    s_thread_t *th = &w->threads[key % (uint64_t) w->cfg.threads];
    const fks_id_t *id = fks_bus_msg_id (msg);
    if (s_held_turn (d, key, id, now) && s_queue_offer (&th->queue, (s_item_t) { msg, env }) == 0) {
        s_held_drop (d, id);
        return;
    }
    s_held_note (d, key, id, now, false);
    fks_envelope_destroy (&env);
    s_park (d, msg, now);
}

//  Hands back what waits in the queue of a thread taken to hang (s_hung), in its order and
//  ahead of anything of its keys handed back before (those came after it).
static void
s_drain_hung (s_dispatch_t *d, s_thread_t *th, int64_t now)
{
    s_queue_t *q = &th->queue;
    pthread_mutex_lock (&q->lock);
    if (q->hung) {
        for (size_t i = q->n; i-- > 0;) {       /* last first: each goes to the front */
            s_item_t *it = &q->items[(q->head + i) % q->cap];
            s_held_note (d, s_route_key (d->w, it->env), fks_bus_msg_id (it->msg), now, true);
        }
        for (; q->n > 0; q->n--) {
            s_item_t *it = &q->items[q->head];
            fks_envelope_destroy (&it->env);
            s_park (d, it->msg, now);
            it->msg = NULL;
            q->head = (q->head + 1) % q->cap;
        }
    }
    pthread_mutex_unlock (&q->lock);
}

//  Routed workers: the only reader of the bus. Each message goes, decoded, to the queue of the
//  thread its key names (s_route_one); one that does not decode goes to thread 0, whose
//  attempt finds that out again and records the failure as for any undecodable message.
static void *
s_dispatch_main (void *arg)
{
    s_dispatch_t d = { .w = arg };
    fks_worker_t *w = d.w;
    s_block_signals ();
    int64_t logged = 0;
    while (!s_stopping (w)) {
        int64_t now = fks_mono_ns () / 1000000;
        int64_t wait = S_RECV_WAIT_MS;
        if (d.n_parked > 0)
            wait = d.park_until > now ? (d.park_until - now < wait ? d.park_until - now : wait)
                                      : 0;
        fks_bus_msg_t *msg = fks_bus_recv (w->bus, (int) wait);
        now = fks_mono_ns () / 1000000;
        for (int i = 0; i < w->cfg.threads; i++)
            if (atomic_load (&w->threads[i].hung))
                s_drain_hung (&d, &w->threads[i], now);
        if (d.n_parked > 0 && now >= d.park_until)
            s_unpark (&d);
        if (d.handed_back > 0 && now - logged >= 10000) {
            logged = now;
            fks_log (FKS_LOG_WARN, NULL, NULL, "%s: %zu message(s) handed back to the bus: "
                     "their thread hangs or its queue was full", w->def->program,
                     d.handed_back);
            d.handed_back = 0;
        }
        if (!msg)
            continue;
        size_t size;
        const uint8_t *data = fks_bus_msg_data (msg, &size);
        fks_envelope_t *env = fks_envelope_decode (data, size, NULL);
        s_route_one (&d, msg, env, s_route_key (w, env), now);
    }
    d.handed_back = 0;
    s_unpark (&d);
    if (d.handed_back)
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: stopping; %zu message(s) handed back unhandled",
                 w->def->program, d.handed_back);
    free (d.parked);
    free (d.held);
    return NULL;
}


//  --------------------------------------------------------------------------
//  The worker

//  Liveness (/health): a hung handler thread holds its messages and its keys, and only a
//  restart mends a thread stuck for good (its transaction then rolls back, and another
//  replica does the work once: s_hung), so /health fails while one is, and Kubernetes'
//  liveness probe restarts the pod.
static int
s_live (void *arg, char *why, size_t cap)
{
    fks_worker_t *w = arg;
    for (int i = 0; w->threads && i < w->cfg.threads; i++)
        if (atomic_load (&w->threads[i].hung)) {
            int64_t quiet = fks_mono_ns () / 1000000 - atomic_load (&w->threads[i].progress_ms);
            snprintf (why, cap, "handler thread %d hung: no progress for %lld s", i,
                      (long long) (quiet / 1000));
            return -1;
        }
    return 0;
}

static int
s_ready (void *arg, char *why, size_t cap)
{
    fks_worker_t *w = arg;
    int rc = 0;
    //  A hung thread takes the replica out of its Service too.
    if (s_live (w, why, cap) != 0)
        return -1;
    pthread_mutex_lock (&w->ready_lock);
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    if (fks_pg_ping (w->ready_pg, &perr) != 0) {
        snprintf (why, cap, "PostgreSQL: %s", perr.msg);
        rc = -1;
    }
    else if (fks_redis_ping (w->ready_redis, &rerr) != 0) {
        snprintf (why, cap, "Redis: %s", rerr.msg);
        rc = -1;
    }
    else if (!fks_bus_joined (w->bus)) {
        snprintf (why, cap, "bus: not joined to group %s", w->def->group);
        rc = -1;
    }
    pthread_mutex_unlock (&w->ready_lock);
    return rc;
}

fks_worker_t *
fks_worker_new (const fks_worker_def_t *def, const fks_worker_cfg_t *cfg)
{
    assert (def && cfg);
    if (!def->program || !def->group || !def->src || !def->handler || !def->prefixes
        || def->n_prefixes == 0 || def->n_stmts + 2 > S_MAX_STMTS || !cfg->pg_url
        || !cfg->redis_url || cfg->threads < 1 || cfg->batch < 1 || cfg->window < 1) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "worker: invalid definition or configuration");
        return NULL;
    }
    fks_worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->def = def;
    self->cfg = *cfg;
    self->cfg.env = s_strdup (cfg->env ? cfg->env : "local");
    self->cfg.pg_url = s_strdup (cfg->pg_url);
    self->cfg.redis_url = s_strdup (cfg->redis_url);
    self->cfg.bus_url = s_strdup (cfg->bus_url);
    self->cfg.http_bind = s_strdup (cfg->http_bind ? cfg->http_bind : "127.0.0.1");
    self->routed = def->route && cfg->threads > 1;
    pthread_mutex_init (&self->ready_lock, NULL);
    pthread_mutex_init (&self->lease_lock, NULL);
    atomic_init (&self->stop, false);
    atomic_init (&self->in_flight, 0);

    self->stmts[0] = (fks_pg_stmt_t) { "fks_w_consumed", s_sql_consumed, 2 };
    self->stmts[1] = (fks_pg_stmt_t) { "fks_w_events", s_sql_events, 7 };
    for (size_t i = 0; i < def->n_stmts; i++)
        self->stmts[2 + i] = def->stmts[i];
    self->n_stmts = 2 + def->n_stmts;

    const char *g[] = { def->group };
    const char *gr[2] = { def->group, NULL };
    fks_metric_family_t *f_msgs = fks_counter_family ("fks_worker_messages_total",
        "Messages handled by a worker group, by result (ok, duplicate, failed, dead)",
        (const char *[]) { "group", "result" }, 2);
    gr[1] = "ok";        self->m_ok = fks_metric_get (f_msgs, gr);
    gr[1] = "duplicate"; self->m_dup = fks_metric_get (f_msgs, gr);
    gr[1] = "failed";    self->m_failed = fks_metric_get (f_msgs, gr);
    gr[1] = "dead";      self->m_dead = fks_metric_get (f_msgs, gr);
    self->m_retries = fks_metric_get (fks_counter_family ("fks_worker_retries_total",
        "Transient failures a worker retried (PostgreSQL or Redis unreachable, deadlocks)",
        (const char *[]) { "group" }, 1), g);
    self->m_split = fks_metric_get (fks_counter_family ("fks_worker_batches_split_total",
        "Batches that failed as a whole (a conflict in a gathered write, a bad message, a "
        "deadlock) and were handled again message by message",
        (const char *[]) { "group" }, 1), g);
    self->m_pub_fail = fks_metric_get (fks_counter_family ("fks_worker_publish_failures_total",
        "Envelopes committed but not published (the bus reconciler publishes them later)",
        (const char *[]) { "group" }, 1), g);
    self->m_handler = fks_metric_get (fks_histogram_family ("fks_worker_handler_seconds",
        "Time a handler spent on one message, inside its transaction",
        (const char *[]) { "group" }, 1, NULL, 0), g);
    self->m_batch = fks_metric_get (fks_histogram_family ("fks_worker_batch_seconds",
        "Time from BEGIN to COMMIT of one batch",
        (const char *[]) { "group" }, 1, NULL, 0), g);
    static const double size_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
    self->m_batch_size = fks_metric_get (fks_histogram_family ("fks_worker_batch_size",
        "Messages taken as one batch (one transaction; a batch that fails is then handled one "
        "message per transaction)", (const char *[]) { "group" }, 1, size_buckets,
        sizeof size_buckets / sizeof size_buckets[0]), g);
    self->m_in_flight = fks_metric_get (fks_gauge_family ("fks_worker_in_flight",
        "Messages a worker replica is handling now", (const char *[]) { "group" }, 1), g);
    self->m_deferred = fks_metric_get (fks_counter_family ("fks_worker_deferred_total",
        "Messages a handler said were not to be handled yet, handed back to the bus for later",
        (const char *[]) { "group" }, 1), g);
    self->m_hung = fks_metric_get (fks_gauge_family ("fks_worker_threads_hung",
        "Handler threads that showed no progress for longer than an attempt may take plus the "
        "ack deadline (taken to hang: /ready fails)", (const char *[]) { "group" }, 1), g);
    if (!self->m_ok || !self->m_retries || !self->m_handler || !self->m_in_flight
        || !self->m_batch_size || !self->m_pub_fail || !self->m_batch || !self->m_split
        || !self->m_hung || !self->m_deferred) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "worker: cannot register metrics");
        fks_worker_destroy (&self);
        return NULL;
    }
    return self;
}

int
fks_worker_port (fks_worker_t *self)
{
    return self && self->ops ? fks_ops_port (self->ops) : -1;
}

static void
s_threads_free (fks_worker_t *self)
{
    if (!self->threads)
        return;
    for (int i = 0; i < self->cfg.threads; i++) {
        s_thread_t *th = &self->threads[i];
        fks_pg_destroy (&th->pg);
        fks_redis_destroy (&th->redis);
        s_events_clear (&th->tx);
        free (th->tx.events);
        msgpack_sbuffer_destroy (&th->tx.body);
        s_queue_destroy (&th->queue);
        free (th->batch);
        free (th->leases);
        free (th->given);
        free (th->fresh);
        free (th->decoded);
        free (th->tx.envs);
        fks_pg_array_free (&th->consumed);
        for (int k = 0; k < 7; k++)
            fks_pg_array_free (&th->outbox[k]);
    }
    free (self->threads);
    self->threads = NULL;
}

static int
s_threads_make (fks_worker_t *self)
{
    self->threads = calloc ((size_t) self->cfg.threads, sizeof *self->threads);
    if (!self->threads)
        return -1;
    for (int i = 0; i < self->cfg.threads; i++) {
        s_thread_t *th = &self->threads[i];
        th->w = self;
        th->index = i;
        msgpack_sbuffer_init (&th->tx.body);
        msgpack_packer_init (&th->tx.pk, &th->tx.body, msgpack_sbuffer_write);
        th->tx.th = th;
        fks_pg_array_init (&th->consumed);
        for (int k = 0; k < 7; k++)
            fks_pg_array_init (&th->outbox[k]);
        th->batch = calloc ((size_t) self->cfg.batch, sizeof *th->batch);
        th->leases = calloc ((size_t) self->cfg.batch, sizeof *th->leases);
        th->given = calloc ((size_t) self->cfg.batch, sizeof *th->given);
        if (self->routed && s_queue_init (&th->queue, (size_t) self->cfg.window) != 0)
            return -1;
        th->fresh = calloc ((size_t) self->cfg.batch, sizeof *th->fresh);
        th->decoded = calloc ((size_t) self->cfg.batch, sizeof *th->decoded);
        th->tx.envs = calloc ((size_t) self->cfg.batch, sizeof *th->tx.envs);
        fks_pg_err_t perr;
        fks_redis_err_t rerr;
        th->pg = fks_pg_new (self->cfg.pg_url, self->stmts, self->n_stmts, &perr);
        if (th->pg
            && fks_pg_set_statement_timeout (th->pg, self->cfg.statement_timeout_ms, &perr) != 0)
            fks_pg_destroy (&th->pg);
        if (!th->pg)
            fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: PostgreSQL: %s", self->def->program,
                     perr.msg);
        th->redis = fks_redis_new (self->cfg.redis_url, S_REDIS_TIMEOUT_MS, S_REDIS_TIMEOUT_MS,
                                   &rerr);
        if (!th->redis)
            fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: Redis: %s", self->def->program, rerr.msg);
        if (!th->batch || !th->leases || !th->given || !th->fresh || !th->decoded
            || !th->tx.envs || !th->pg || !th->redis)
            return -1;
        th->tx.pg = th->pg;
        th->tx.redis = th->redis;
    }
    return 0;
}

int
fks_worker_run (fks_worker_t *self, int stop_fd)
{
    assert (self);
    const fks_worker_def_t *def = self->def;
    int rc = -1;
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    atomic_store (&self->stop, false);

    //  Connections for /ready, and a first check that the statements prepare: a typo in SQL
    //  should stop the program at start, not on the first message.
    self->ready_pg = fks_pg_new (self->cfg.pg_url, self->stmts, self->n_stmts, &perr);
    if (!self->ready_pg) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: PostgreSQL: %s", def->program, perr.msg);
        goto done;
    }
    if (fks_pg_connect (self->ready_pg, &perr) != 0) {
        if (!fks_pg_err_transient (&perr)) {
            fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: PostgreSQL refused the worker's "
                     "statements: %s (SQLSTATE %s)", def->program, perr.msg, perr.sqlstate);
            goto done;
        }
        fks_log (FKS_LOG_WARN, NULL, NULL, "%s: PostgreSQL not usable yet (%s); will retry",
                 def->program, perr.msg);
    }
    self->ready_redis = fks_redis_new (self->cfg.redis_url, S_REDIS_TIMEOUT_MS,
                                       S_REDIS_TIMEOUT_MS, &rerr);
    if (!self->ready_redis) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "%s: Redis: %s", def->program, rerr.msg);
        goto done;
    }
    char name[FKS_BUS_NAME_MAX];
    snprintf (name, sizeof name, "%s-%d", def->group, (int) getpid ());
    fks_bus_client_opts_t opts = { .url = self->cfg.bus_url, .name = name };
    self->bus = fks_bus_client_new (&opts);
    if (!self->bus)
        goto done;
    self->ops = fks_ops_new (self->cfg.env, s_ready, self, NULL);
    fks_ops_set_live (self->ops, s_live, self);
    if (!self->ops || fks_ops_listen (self->ops, self->cfg.http_bind, self->cfg.port) != 0)
        goto done;
    if (s_threads_make (self) != 0)
        goto done;
    if (fks_bus_join (self->bus, def->group, def->prefixes, def->n_prefixes,
                      (unsigned) self->cfg.window) != 0)
        goto done;
    for (int i = 0; i < self->cfg.threads; i++) {
        if (pthread_create (&self->threads[i].tid, NULL, s_thread_main, &self->threads[i]) != 0) {
            atomic_store (&self->stop, true);
            break;
        }
        self->threads[i].started = true;
    }
    if (!atomic_load (&self->stop)) {
        if (pthread_create (&self->keeper, NULL, s_keeper_main, self) != 0)
            atomic_store (&self->stop, true);
        else
            self->keeper_started = true;
    }
    if (self->routed && !atomic_load (&self->stop)) {
        if (pthread_create (&self->dispatcher, NULL, s_dispatch_main, self) != 0)
            atomic_store (&self->stop, true);
        else
            self->dispatcher_started = true;
    }
    if (!atomic_load (&self->stop)) {
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: running: group %s, %d thread(s)%s, batch %d, "
                 "window %d, ops on %s:%d", def->program, def->group, self->cfg.threads,
                 self->routed ? " routed by key" : "", self->cfg.batch, self->cfg.window,
                 self->cfg.http_bind, fks_ops_port (self->ops));
        struct pollfd pfd = { .fd = stop_fd, .events = POLLIN };
        while (poll (&pfd, 1, -1) < 0 && errno == EINTR)
            ;
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: stopping: draining %d message(s) in flight",
                 def->program, atomic_load (&self->in_flight));
        rc = 0;
    }
    atomic_store (&self->stop, true);
    if (self->routed)
        for (int i = 0; i < self->cfg.threads; i++)
            s_queue_wake (&self->threads[i].queue);
    //  What no thread has started goes to the other replicas now, not after the handlers in
    //  hand finish: DRAIN first (the broker gives this replica nothing more, so what is
    //  handed back cannot come straight back; the client's buffer goes back right after it),
    //  then what the dispatcher parked (as it ends) and the threads' queues.
    fks_bus_drain (self->bus);
    if (self->dispatcher_started) {
        pthread_join (self->dispatcher, NULL);
        self->dispatcher_started = false;
    }
    if (self->routed) {
        size_t n = 0;
        for (int i = 0; i < self->cfg.threads; i++) {
            s_queue_t *q = &self->threads[i].queue;
            pthread_mutex_lock (&q->lock);
            n += s_queue_clear (q, self->bus);
            pthread_mutex_unlock (&q->lock);
        }
        if (n)
            fks_log (FKS_LOG_INFO, NULL, NULL, "%s: stopping; %zu queued message(s) handed "
                     "back unhandled", def->program, n);
    }
    //  The ops server next (civetweb takes a moment to stop its threads), while the handler
    //  threads finish what they hold.
    fks_ops_destroy (&self->ops);
    for (int i = 0; i < self->cfg.threads; i++)
        if (self->threads[i].started) {
            pthread_join (self->threads[i].tid, NULL);
            self->threads[i].started = false;
        }
    if (self->keeper_started) {
        atomic_store (&self->keeper_stop, true);
        pthread_join (self->keeper, NULL);
        self->keeper_started = false;
    }
done:
    //  Leaving the group hands back whatever was received but not started.
    fks_bus_client_destroy (&self->bus);
    fks_ops_destroy (&self->ops);
    s_threads_free (self);
    fks_pg_destroy (&self->ready_pg);
    fks_redis_destroy (&self->ready_redis);
    if (rc == 0)
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: drained and stopped", def->program);
    return rc;
}

void
fks_worker_destroy (fks_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_worker_t *self = *self_p;
    fks_bus_client_destroy (&self->bus);
    fks_ops_destroy (&self->ops);
    s_threads_free (self);
    fks_pg_destroy (&self->ready_pg);
    fks_redis_destroy (&self->ready_redis);
    pthread_mutex_destroy (&self->ready_lock);
    pthread_mutex_destroy (&self->lease_lock);
    fks_worker_cfg_free (&self->cfg);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  The program

static int s_stop_fd = -1;

static void
s_on_signal (int sig)
{
    (void) sig;
    uint64_t one = 1;
    ssize_t rc = write (s_stop_fd, &one, sizeof one);
    (void) rc;
}

int
fks_worker_main (const fks_worker_def_t *def)
{
    fks_worker_cfg_t cfg;
    char err[FKS_CONFIG_ERR_MAX];
    if (fks_worker_cfg_load (def, &cfg, err, sizeof err) != 0) {
        fprintf (stderr, "%s: %s\n", def->program, err);
        return 2;
    }
    s_stop_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_stop_fd < 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "eventfd: %s", strerror (errno));
        fks_worker_cfg_free (&cfg);
        return 1;
    }
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    fks_worker_t *w = fks_worker_new (def, &cfg);
    fks_worker_cfg_free (&cfg);
    int rc = w && fks_worker_run (w, s_stop_fd) == 0 ? 0 : 1;
    fks_worker_destroy (&w);
    close (s_stop_fd);
    s_stop_fd = -1;
    return rc;
}
