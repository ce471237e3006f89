/*  store.c - the broker's persistence thread: dead letters and consumer groups in PostgreSQL.
 *
 *  See store.h for the contract. The thread reads records from its inproc PULL socket into a
 *  bounded FIFO, and writes the FIFO's head to PostgreSQL for as long as that works; a record
 *  that PostgreSQL refuses for its content (a constraint, which would fail forever) is logged
 *  and skipped, while a connection failure stops the flush until the next retry. A dead
 *  letter's row and its `dead.letter` outbox event commit together, and the event is
 *  published only when the row was new (ON CONFLICT DO NOTHING), so a message that fails
 *  twice (the reconciler brought it back) still makes one dead letter.
 */
#include "bus/store.h"
#include "bus/envelope.h"
#include "bus/protocol.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_RETRY_MS       1000
#define S_POLL_MS        200
#define S_REASON_MAX     512        /* dead.letter's reason field */

typedef enum { S_REC_DEAD = 1, S_REC_GROUP } s_kind_t;

typedef struct {
    s_kind_t kind;
    char group[FKS_BUS_GROUP_MAX];
    fks_id_t id;
    uint32_t attempts;
    char reason[S_REASON_MAX + 1];
    char prefixes[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
    size_t n_prefixes;
    uint8_t *env;
    size_t env_len;
} s_rec_t;

struct fks_bus_store_t {
    void *pull;
    void *push;
    char endpoint[64];
    fks_pg_t *pg;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool pg_ok;
    atomic_bool groups_loaded;
    atomic_size_t pending_n;

    s_rec_t **fifo;                 /* dead letters: ring of FKS_BUS_STORE_PENDING_MAX */
    size_t head, count;
    s_rec_t **groups;               /* group records: the latest of each group, in order */
    size_t n_groups, cap_groups;

    fks_metric_t *m_pending, *m_recorded, *m_dropped, *m_errors;
};

static const fks_pg_stmt_t s_stmts[] = {
    { "bus_dead_insert",
      "INSERT INTO dead_letters (grp, msg_id, type, corr, attempts, reason, envelope) "
      "VALUES ($1, $2::uuid, $3, $4::uuid, $5::integer, $6, $7) "
      "ON CONFLICT (grp, msg_id) DO NOTHING RETURNING 1", 7 },
    { "bus_event_insert",
      "INSERT INTO events (id, type, corr, cause, src, ts, envelope) "
      "VALUES ($1::uuid, $2, $3::uuid, $4::uuid, $5, "
      "timestamptz 'epoch' + ($6::bigint / 1000) * interval '1 microsecond', $7)", 7 },
    { "bus_group_upsert",
      "INSERT INTO bus_groups (grp, prefixes) VALUES ($1, $2::text[]) "
      "ON CONFLICT (grp) DO UPDATE SET prefixes = EXCLUDED.prefixes, updated_at = now(), "
      //  New prefixes may match rows the reconciler's walk passed: it starts again.
      "reconciled_xid = CASE WHEN bus_groups.prefixes = EXCLUDED.prefixes "
      "                      THEN bus_groups.reconciled_xid END, "
      "reconciled_seq = CASE WHEN bus_groups.prefixes = EXCLUDED.prefixes "
      "                      THEN bus_groups.reconciled_seq END", 2 },
    { "bus_groups_load", "SELECT grp, prefixes FROM bus_groups ORDER BY grp LIMIT 1024", 0 },
};

static void
s_rec_free (s_rec_t **rec_p)
{
    if (*rec_p) {
        free ((*rec_p)->env);
        free (*rec_p);
        *rec_p = NULL;
    }
}

static void
s_log_pg (const char *what, const fks_pg_err_t *err)
{
    char fields[128] = "";
    fks_log_field_str (fields, sizeof fields, "sqlstate", err->sqlstate);
    fks_log (FKS_LOG_ERROR, NULL, fields, "%s: %s", what, err->msg);
}

//  --------------------------------------------------------------------------
//  Receiving records from the broker

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

static s_rec_t *
s_parse (zmq_msg_t *f, int n)
{
    s_rec_t *rec = calloc (1, sizeof *rec);
    if (!rec)
        return NULL;
    char kind = n > 0 && zmq_msg_size (&f[0]) == 1 ? *(char *) zmq_msg_data (&f[0]) : 0;
    if (kind == 'D' && n == 7 && zmq_msg_size (&f[2]) == FKS_ID_SIZE
        && zmq_msg_size (&f[3]) == 4 && s_frame_str (&f[1], rec->group, sizeof rec->group) == 0) {
        rec->kind = S_REC_DEAD;
        memcpy (rec->id.b, zmq_msg_data (&f[2]), FKS_ID_SIZE);
        rec->attempts = fks_bus_get_u32 (zmq_msg_data (&f[3]));
        size_t rlen = zmq_msg_size (&f[4]);
        if (rlen > S_REASON_MAX)
            rlen = S_REASON_MAX;
        memcpy (rec->reason, zmq_msg_data (&f[4]), rlen);
        rec->reason[rlen] = 0;
        //  f[5] is the topic; the envelope carries its type.
        rec->env_len = zmq_msg_size (&f[6]);
        rec->env = malloc (rec->env_len ? rec->env_len : 1);
        if (!rec->env) {
            free (rec);
            return NULL;
        }
        memcpy (rec->env, zmq_msg_data (&f[6]), rec->env_len);
        return rec;
    }
    if (kind == 'G' && n >= 3 && n <= 2 + FKS_BUS_PREFIXES_MAX
        && s_frame_str (&f[1], rec->group, sizeof rec->group) == 0) {
        rec->kind = S_REC_GROUP;
        for (int i = 2; i < n; i++)
            if (s_frame_str (&f[i], rec->prefixes[i - 2], FKS_BUS_PREFIX_MAX) != 0) {
                free (rec);
                return NULL;
            }
        rec->n_prefixes = (size_t) n - 2;
        return rec;
    }
    free (rec);
    return NULL;
}

//  Records waiting: dead letters and groups.
static size_t
s_pending (const fks_bus_store_t *self)
{
    return self->count + self->n_groups;
}

//  A group record is never dropped: nothing else would ever offer that group's prefixes to
//  PostgreSQL again (a dead letter's envelope is still in the outbox, for the reconciler).
//  Only the latest record of a group matters (an upsert), so a newer one replaces a waiting
//  one: they are bounded by the broker's groups (FKS_BUS_MAX_GROUPS), not by the dead letters.
static void
s_push_group (fks_bus_store_t *self, s_rec_t *rec)
{
    for (size_t i = 0; i < self->n_groups; i++)
        if (strcmp (self->groups[i]->group, rec->group) == 0) {
            s_rec_free (&self->groups[i]);
            self->groups[i] = rec;
            return;
        }
    if (self->n_groups == self->cap_groups) {
        size_t cap = self->cap_groups ? self->cap_groups * 2 : 16;
        s_rec_t **p = realloc (self->groups, cap * sizeof *p);
        if (!p) {
            char fields[128] = "";
            fks_log_field_str (fields, sizeof fields, "group", rec->group);
            fks_log (FKS_LOG_ERROR, NULL, fields, "store: out of memory: a group record is lost");
            fks_metric_inc (self->m_dropped);
            s_rec_free (&rec);
            return;
        }
        self->groups = p;
        self->cap_groups = cap;
    }
    self->groups[self->n_groups++] = rec;
}

static void
s_push (fks_bus_store_t *self, s_rec_t *rec)
{
    if (rec->kind == S_REC_GROUP) {
        s_push_group (self, rec);
        return;
    }
    if (self->count == FKS_BUS_STORE_PENDING_MAX) {
        s_rec_t **oldest = &self->fifo[self->head];
        char fields[256] = "";
        char id_text[FKS_ID_STR_SIZE];
        fks_log_field_str (fields, sizeof fields, "group", (*oldest)->group);
        fks_id_format (&(*oldest)->id, id_text);
        fks_log_field_str (fields, sizeof fields, "msg_id", id_text);
        fks_log (FKS_LOG_ERROR, NULL, fields,
                 "store queue full (PostgreSQL down too long): dropped the oldest dead letter "
                 "from memory (it comes back through the reconciler)");
        fks_metric_inc (self->m_dropped);
        s_rec_free (oldest);
        self->head = (self->head + 1) % FKS_BUS_STORE_PENDING_MAX;
        self->count--;
    }
    self->fifo[(self->head + self->count) % FKS_BUS_STORE_PENDING_MAX] = rec;
    self->count++;
}

static void
s_receive (fks_bus_store_t *self)
{
    for (int burst = 0; burst < 1000; burst++) {
        zmq_msg_t f[2 + FKS_BUS_PREFIXES_MAX];
        int n = 0;
        bool more = true, extra = false;
        while (more) {
            zmq_msg_t scratch;
            zmq_msg_t *m = n < (int) (sizeof f / sizeof f[0]) ? &f[n] : &scratch;
            zmq_msg_init (m);
            if (zmq_msg_recv (m, self->pull, ZMQ_DONTWAIT) == -1) {
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
            return;
        s_rec_t *rec = extra ? NULL : s_parse (f, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close (&f[i]);
        if (rec)
            s_push (self, rec);
        else
            fks_log (FKS_LOG_ERROR, NULL, NULL, "store: malformed record from the broker");
    }
}

//  --------------------------------------------------------------------------
//  Writing

//  0 written (or skipped for good), -1 PostgreSQL unavailable (keep it, retry later).
static int
s_write_group (fks_bus_store_t *self, const s_rec_t *rec)
{
    //  An array literal; prefixes hold only [a-z0-9._-], so quoting each is enough.
    char array[FKS_BUS_PREFIXES_MAX * (FKS_BUS_PREFIX_MAX + 3) + 3];
    size_t len = 0;
    array[len++] = '{';
    for (size_t i = 0; i < rec->n_prefixes; i++)
        len += (size_t) snprintf (array + len, sizeof array - len, "%s\"%s\"", i ? "," : "",
                                  rec->prefixes[i]);
    array[len++] = '}';
    array[len] = 0;
    const char *values[2] = { rec->group, array };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "bus_group_upsert", 2, values, NULL, NULL, &err);
    if (!res) {
        s_log_pg ("cannot persist group", &err);
        fks_metric_inc (self->m_errors);
        return err.sqlstate[0] && !err.conn_lost ? 0 : -1;
    }
    PQclear (res);
    return 0;
}

static int
s_write_dead (fks_bus_store_t *self, const s_rec_t *rec)
{
    fks_envelope_hdr_t orig;
    fks_envelope_err_t eerr;
    if (fks_envelope_peek (rec->env, rec->env_len, &orig, NULL, NULL, &eerr) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "dead letter with an unreadable envelope: %s",
                 eerr.msg);
        return 0;
    }
    //  The dead.letter envelope: caused by the message, in the same alert's story.
    fks_envelope_hdr_t hdr;
    if (fks_envelope_hdr_init (&hdr, "dead.letter", "bus",
                               fks_id_is_nil (&orig.corr) ? NULL : &orig.corr, &rec->id) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "cannot make a dead.letter header");
        return -1;
    }
    msgpack_sbuffer body, out;
    msgpack_sbuffer_init (&body);
    msgpack_sbuffer_init (&out);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    fks_pack_kv_str (&pk, "grp", rec->group);
    fks_pack_kv_id (&pk, "msg_id", &rec->id);
    fks_pack_kv_str (&pk, "msg_type", orig.type);
    fks_pack_kv_i64 (&pk, "attempts", rec->attempts);
    fks_pack_kv_str (&pk, "reason", rec->reason[0] ? rec->reason : "no reason");
    int rc = fks_envelope_encode (&hdr, body.data, body.size, &out, &eerr);
    msgpack_sbuffer_destroy (&body);
    if (rc != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "cannot encode dead.letter: %s", eerr.msg);
        msgpack_sbuffer_destroy (&out);
        return 0;
    }

    char id_text[FKS_ID_STR_SIZE], corr_text[FKS_ID_STR_SIZE], new_id[FKS_ID_STR_SIZE];
    char attempts[16], ts[24];
    fks_id_format (&rec->id, id_text);
    fks_id_format (&orig.corr, corr_text);
    fks_id_format (&hdr.id, new_id);
    snprintf (attempts, sizeof attempts, "%u", rec->attempts ? rec->attempts : 1);
    snprintf (ts, sizeof ts, "%lld", (long long) hdr.ts);
    bool has_corr = !fks_id_is_nil (&orig.corr);
    const char *reason = rec->reason[0] ? rec->reason : "no reason";

    fks_pg_err_t err;
    int result = -1;
    bool inserted = false;
    if (fks_pg_begin (self->pg, &err) != 0)
        goto pg_failed;
    const char *dv[7] = { rec->group, id_text, orig.type, has_corr ? corr_text : NULL,
                          attempts, reason, (const char *) rec->env };
    int dl[7] = { 0, 0, 0, 0, 0, 0, (int) rec->env_len };
    int df[7] = { 0, 0, 0, 0, 0, 0, 1 };
    PGresult *res = fks_pg_exec (self->pg, "bus_dead_insert", 7, dv, dl, df, &err);
    if (!res)
        goto pg_failed;
    inserted = PQntuples (res) == 1;
    PQclear (res);
    if (inserted) {
        const char *ev[7] = { new_id, "dead.letter", has_corr ? corr_text : NULL, id_text,
                              "bus", ts, (const char *) out.data };
        int el[7] = { 0, 0, 0, 0, 0, 0, (int) out.size };
        res = fks_pg_exec (self->pg, "bus_event_insert", 7, ev, el, df, &err);
        if (!res)
            goto pg_failed;
        PQclear (res);
    }
    if (fks_pg_commit (self->pg, &err) != 0)
        goto pg_failed;
    fks_metric_inc (self->m_recorded);
    if (inserted) {
        //  Published after commit, like every outbox event.
        if (zmq_send (self->push, "P", 1, ZMQ_SNDMORE) == -1
            || zmq_send (self->push, "dead.letter", 11, ZMQ_SNDMORE) == -1
            || zmq_send (self->push, out.data, out.size, 0) == -1)
            fks_log (FKS_LOG_WARN, NULL, NULL, "dead.letter recorded but not published: %s "
                     "(the reconciler publishes it)", zmq_strerror (errno));
    }
    msgpack_sbuffer_destroy (&out);
    return 0;

pg_failed:
    fks_pg_rollback (self->pg);
    s_log_pg ("cannot record dead letter", &err);
    fks_metric_inc (self->m_errors);
    msgpack_sbuffer_destroy (&out);
    //  A refusal of the content itself would fail forever: log it and go on. Anything that
    //  may pass later (a deadlock or a serialisation failure included) is tried again.
    if (!fks_pg_err_transient (&err))
        result = 0;
    return result;
}

static void
s_flush (fks_bus_store_t *self)
{
    //  Groups first: few, and what the reconciler walks by.
    size_t done = 0;
    while (done < self->n_groups && !atomic_load (&self->stop)) {
        if (s_write_group (self, self->groups[done]) != 0) {
            atomic_store (&self->pg_ok, false);
            break;
        }
        atomic_store (&self->pg_ok, true);
        s_rec_free (&self->groups[done++]);
    }
    if (done > 0 && done < self->n_groups)
        memmove (self->groups, self->groups + done,
                 (self->n_groups - done) * sizeof *self->groups);
    self->n_groups -= done;
    while (self->n_groups == 0 && self->count > 0 && !atomic_load (&self->stop)) {
        s_rec_t **rec = &self->fifo[self->head];
        int rc = s_write_dead (self, *rec);
        if (rc != 0) {
            atomic_store (&self->pg_ok, false);
            break;
        }
        atomic_store (&self->pg_ok, true);
        s_rec_free (rec);
        self->head = (self->head + 1) % FKS_BUS_STORE_PENDING_MAX;
        self->count--;
    }
    atomic_store (&self->pending_n, s_pending (self));
    fks_metric_set (self->m_pending, (double) s_pending (self));
}

static int
s_load_groups (fks_bus_store_t *self)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "bus_groups_load", 0, NULL, NULL, NULL, &err);
    if (!res) {
        s_log_pg ("cannot load consumer groups", &err);
        return -1;
    }
    int rows = PQntuples (res);
    for (int r = 0; r < rows; r++) {
        const char *grp = PQgetvalue (res, r, 0);
        const char *arr = PQgetvalue (res, r, 1);
        //  A text[] of [a-z0-9._-] elements prints as {a,b} or {"",x}: split it by hand.
        size_t alen = strlen (arr);
        if (!fks_bus_group_valid (grp, strlen (grp)) || alen < 2 || arr[0] != '{'
            || arr[alen - 1] != '}') {
            fks_log (FKS_LOG_WARN, NULL, NULL, "bus_groups: skipping an invalid row");
            continue;
        }
        char prefixes[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
        size_t n = 0;
        bool ok = true;
        const char *p = arr + 1, *end = arr + alen - 1;
        while (p < end && ok) {
            const char *comma = memchr (p, ',', (size_t) (end - p));
            const char *stop = comma ? comma : end;
            size_t len = (size_t) (stop - p);
            if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
                p++;
                len -= 2;
            }
            if (n == FKS_BUS_PREFIXES_MAX || !fks_bus_prefix_valid (p, len))
                ok = false;
            else {
                memcpy (prefixes[n], p, len);
                prefixes[n++][len] = 0;
            }
            p = comma ? comma + 1 : end;
        }
        if (!ok || n == 0) {
            fks_log (FKS_LOG_WARN, NULL, NULL, "bus_groups: skipping group %s (bad prefixes)",
                     grp);
            continue;
        }
        zmq_send (self->push, "D", 1, ZMQ_SNDMORE);
        zmq_send (self->push, grp, strlen (grp), ZMQ_SNDMORE);
        for (size_t i = 0; i < n; i++)
            zmq_send (self->push, prefixes[i], strlen (prefixes[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
    }
    PQclear (res);
    fks_log (FKS_LOG_INFO, NULL, NULL, "loaded %d consumer groups from PostgreSQL", rows);
    return 0;
}

static void *
s_thread (void *arg)
{
    fks_bus_store_t *self = arg;
    int64_t next_try = 0;
    while (!atomic_load (&self->stop)) {
        zmq_pollitem_t item = { self->pull, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, S_POLL_MS) == -1 && errno == ETERM)
            break;
        s_receive (self);
        atomic_store (&self->pending_n, s_pending (self));
        fks_metric_set (self->m_pending, (double) s_pending (self));
        int64_t now = fks_mono_ns () / 1000000;
        bool work = s_pending (self) > 0 || !atomic_load (&self->groups_loaded);
        if (!work || now < next_try)
            continue;
        if (!atomic_load (&self->groups_loaded)) {
            if (s_load_groups (self) == 0) {
                atomic_store (&self->groups_loaded, true);
                atomic_store (&self->pg_ok, true);
            }
            else
                atomic_store (&self->pg_ok, false);
        }
        if (atomic_load (&self->groups_loaded))
            s_flush (self);
        if (!atomic_load (&self->pg_ok))
            next_try = now + S_RETRY_MS;
    }
    //  Stopping: one last chance for what is pending.
    s_receive (self);
    if (s_pending (self) > 0 && atomic_load (&self->pg_ok))
        s_flush (self);
    if (s_pending (self) > 0)
        fks_log (FKS_LOG_ERROR, NULL, NULL, "store stopping with %zu records not written "
                 "(dead letters come back through the reconciler, groups with their next "
                 "JOIN)", s_pending (self));
    return NULL;
}

//  --------------------------------------------------------------------------

fks_bus_store_t *
fks_bus_store_new (void *zctx, const char *pg_url, const char *server_endpoint)
{
    fks_pg_err_t err;
    fks_bus_store_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fifo = calloc (FKS_BUS_STORE_PENDING_MAX, sizeof *self->fifo);
    self->pg = fks_pg_new (pg_url, s_stmts, sizeof s_stmts / sizeof s_stmts[0], &err);
    if (!self->fifo || !self->pg) {
        if (!self->pg)
            fks_log (FKS_LOG_ERROR, NULL, NULL, "bus store: %s", err.msg);
        fks_bus_store_destroy (&self);
        return NULL;
    }
    fks_metric_family_t *f;
    f = fks_gauge_family ("fks_bus_store_pending",
                          "Dead letters and group changes waiting to be written to PostgreSQL.",
                          NULL, 0);
    self->m_pending = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_store_written_total",
                            "Dead letters written to PostgreSQL.", NULL, 0);
    self->m_recorded = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_store_dropped_total",
                            "Records dropped from memory because PostgreSQL was down too long.",
                            NULL, 0);
    self->m_dropped = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_store_errors_total",
                            "Failed attempts to write to PostgreSQL.", NULL, 0);
    self->m_errors = f ? fks_metric_get (f, NULL) : NULL;
    if (!self->m_pending || !self->m_recorded || !self->m_dropped || !self->m_errors) {
        fks_bus_store_destroy (&self);
        return NULL;
    }

    snprintf (self->endpoint, sizeof self->endpoint, "inproc://fks-bus-store-%p", (void *) self);
    self->pull = zmq_socket (zctx, ZMQ_PULL);
    self->push = zmq_socket (zctx, ZMQ_PUSH);
    int hwm = 10000, linger = 1000;
    if (self->pull) {
        zmq_setsockopt (self->pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt (self->pull, ZMQ_LINGER, &linger, sizeof linger);
    }
    if (self->push) {
        int timeout = 1000;
        zmq_setsockopt (self->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    }
    if (!self->pull || !self->push || zmq_bind (self->pull, self->endpoint) != 0
        || zmq_connect (self->push, server_endpoint) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus store: sockets: %s",
                 zmq_strerror (zmq_errno ()));
        fks_bus_store_destroy (&self);
        return NULL;
    }
    if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "bus store: cannot start its thread");
        fks_bus_store_destroy (&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void
fks_bus_store_destroy (fks_bus_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_bus_store_t *self = *self_p;
    if (self->started) {
        atomic_store (&self->stop, true);
        pthread_join (self->thread, NULL);
    }
    if (self->pull)
        zmq_close (self->pull);
    if (self->push)
        zmq_close (self->push);
    if (self->fifo) {
        for (size_t i = 0; i < self->count; i++)
            s_rec_free (&self->fifo[(self->head + i) % FKS_BUS_STORE_PENDING_MAX]);
        free (self->fifo);
    }
    for (size_t i = 0; i < self->n_groups; i++)
        s_rec_free (&self->groups[i]);
    free (self->groups);
    fks_pg_destroy (&self->pg);
    free (self);
    *self_p = NULL;
}

const char *
fks_bus_store_endpoint (const fks_bus_store_t *self)
{
    return self->endpoint;
}

int
fks_bus_store_ready (fks_bus_store_t *self, char *why, size_t cap)
{
    size_t pending = atomic_load (&self->pending_n);
    if (!atomic_load (&self->groups_loaded) || !atomic_load (&self->pg_ok)) {
        snprintf (why, cap, "postgresql unavailable: %s%zu record(s) waiting to be written "
                  "(dead letters, groups)", atomic_load (&self->groups_loaded) ? ""
                  : "consumer groups not loaded yet, ", pending);
        return -1;
    }
    return 0;
}
