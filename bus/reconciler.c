/*  reconciler.c - publishes again what PostgreSQL shows is overdue at its next stage.
 *
 *  See reconciler.h for why. One pass: read the groups, then for each group run the overdue
 *  query from its cursor, send every row to the broker as ['G'][group][type][envelope], and
 *  move the cursor to the last seq sent; a query that returns fewer rows than the batch means
 *  the group's backlog has been walked to its end, and the next pass starts from the
 *  beginning of the window again. A PostgreSQL error ends the pass (logged, counted); the next
 *  one tries again. Every row is validated before it is sent (the broker checks the envelope
 *  again, like any frame).
 */
#include "bus/reconciler.h"
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
#include <time.h>
#include <zmq.h>

#define S_GROUPS_MAX 1024

typedef struct {
    char name[FKS_BUS_GROUP_MAX];
    int64_t cursor;             /* last seq sent in the current walk */
} s_cursor_t;

struct fks_reconciler_t {
    fks_reconciler_cfg_t cfg;
    fks_pg_t *pg;
    void *push;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    s_cursor_t cursors[S_GROUPS_MAX];
    size_t n_cursors;
    fks_metric_family_t *f_sent;
    fks_metric_t *m_passes, *m_errors;
};

static const fks_pg_stmt_t s_stmts[] = {
    { "rec_groups", "SELECT grp FROM bus_groups ORDER BY grp LIMIT 1024", 0 },
    { "rec_overdue",
      "SELECT e.seq, e.type, e.envelope "
      "  FROM events e JOIN bus_groups g ON g.grp = $1 "
      " WHERE e.seq > $2::bigint "
      "   AND e.created_at < now() - $3::bigint * interval '1 millisecond' "
      "   AND e.created_at > now() - $4::bigint * interval '1 millisecond' "
      "   AND EXISTS (SELECT 1 FROM unnest (g.prefixes) AS p (prefix) "
      "                WHERE starts_with (e.type, p.prefix)) "
      "   AND NOT EXISTS (SELECT 1 FROM consumed c WHERE c.grp = $1 AND c.msg_id = e.id) "
      "   AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.grp = $1 AND d.msg_id = e.id) "
      " ORDER BY e.seq LIMIT $5::integer", 5 },
};

void
fks_reconciler_cfg_defaults (fks_reconciler_cfg_t *cfg)
{
    cfg->pg_url = NULL;
    cfg->interval_ms = 5000;
    cfg->after_ms = 60000;
    cfg->max_age_ms = 3600 * 1000;
    cfg->batch = 1000;
}

static s_cursor_t *
s_cursor (fks_reconciler_t *self, const char *group)
{
    for (size_t i = 0; i < self->n_cursors; i++)
        if (strcmp (self->cursors[i].name, group) == 0)
            return &self->cursors[i];
    if (self->n_cursors == S_GROUPS_MAX)
        return NULL;
    s_cursor_t *c = &self->cursors[self->n_cursors++];
    snprintf (c->name, sizeof c->name, "%s", group);
    c->cursor = 0;
    return c;
}

static void
s_pg_error (fks_reconciler_t *self, const char *what, const fks_pg_err_t *err)
{
    fks_metric_inc (self->m_errors);
    char fields[128] = "";
    fks_log_field_str (fields, sizeof fields, "sqlstate", err->sqlstate);
    fks_log (FKS_LOG_WARN, NULL, fields, "reconciler: %s: %s", what, err->msg);
}

//  Sends one row to the broker. 0, or -1 when the broker's socket did not take it.
static int
s_send (fks_reconciler_t *self, const char *group, const char *type, const uint8_t *env,
        size_t len)
{
    if (zmq_send (self->push, "G", 1, ZMQ_SNDMORE) == -1)
        return -1;
    zmq_send (self->push, group, strlen (group), ZMQ_SNDMORE);
    zmq_send (self->push, type, strlen (type), ZMQ_SNDMORE);
    zmq_send (self->push, env, len, 0);
    return 0;
}

//  Walks one group's overdue rows from its cursor. Returns rows sent, or -1 on error.
static long
s_group_pass (fks_reconciler_t *self, const char *group)
{
    s_cursor_t *c = s_cursor (self, group);
    if (!c)
        return 0;
    char cursor[24], after[24], max_age[24], limit[16];
    snprintf (cursor, sizeof cursor, "%lld", (long long) c->cursor);
    snprintf (after, sizeof after, "%lld", (long long) self->cfg.after_ms);
    snprintf (max_age, sizeof max_age, "%lld", (long long) self->cfg.max_age_ms);
    snprintf (limit, sizeof limit, "%d", self->cfg.batch);
    const char *values[5] = { group, cursor, after, max_age, limit };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_overdue", 5, values, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "overdue query", &err);
        return -1;
    }
    int rows = PQntuples (res);
    long sent = 0;
    fks_metric_t *m_sent = fks_metric_get1 (self->f_sent, group);
    for (int r = 0; r < rows && !atomic_load (&self->stop); r++) {
        long long seq = strtoll (PQgetvalue (res, r, 0), NULL, 10);
        const char *type = PQgetvalue (res, r, 1);
        size_t len = 0;
        unsigned char *env = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, r, 2),
                                              &len);
        fks_envelope_hdr_t hdr;
        fks_envelope_err_t eerr;
        if (!env || len > FKS_ENVELOPE_MAX_SIZE
            || fks_envelope_peek (env, len, &hdr, NULL, NULL, &eerr) != 0
            || strcmp (hdr.type, type) != 0) {
            fks_log (FKS_LOG_ERROR, NULL, NULL,
                     "reconciler: events row seq %lld holds an invalid envelope; skipped", seq);
            if (env)
                PQfreemem (env);
            c->cursor = seq;
            continue;
        }
        int rc = s_send (self, group, type, env, len);
        PQfreemem (env);
        if (rc != 0) {
            fks_log (FKS_LOG_WARN, NULL, NULL, "reconciler: broker busy (%s); pass cut short",
                     zmq_strerror (errno));
            break;
        }
        c->cursor = seq;
        sent++;
        fks_metric_inc (m_sent);
    }
    if (rows < self->cfg.batch)
        c->cursor = 0;              /* walked to the end: start over next pass */
    PQclear (res);
    if (sent > 0) {
        char fields[128] = "";
        fks_log_field_str (fields, sizeof fields, "group", group);
        fks_log_field_int (fields, sizeof fields, "republished", sent);
        fks_log (FKS_LOG_INFO, NULL, fields, "reconciler published overdue events again");
    }
    return sent;
}

static void
s_pass (fks_reconciler_t *self)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_groups", 0, NULL, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "reading bus_groups", &err);
        return;
    }
    int rows = PQntuples (res);
    for (int r = 0; r < rows && !atomic_load (&self->stop); r++) {
        const char *group = PQgetvalue (res, r, 0);
        if (!fks_bus_group_valid (group, strlen (group)))
            continue;
        if (s_group_pass (self, group) < 0)
            break;
    }
    PQclear (res);
    fks_metric_inc (self->m_passes);
}

static void *
s_thread (void *arg)
{
    fks_reconciler_t *self = arg;
    int64_t next = fks_mono_ns () / 1000000 + self->cfg.interval_ms;
    while (!atomic_load (&self->stop)) {
        int64_t now = fks_mono_ns () / 1000000;
        if (now < next) {
            int64_t wait = next - now < 100 ? next - now : 100;
            struct timespec ts = { 0, (long) wait * 1000000L };
            nanosleep (&ts, NULL);
            continue;
        }
        s_pass (self);
        next = fks_mono_ns () / 1000000 + self->cfg.interval_ms;
    }
    return NULL;
}

fks_reconciler_t *
fks_reconciler_new (void *zctx, const fks_reconciler_cfg_t *cfg, const char *server_endpoint)
{
    if (!cfg || !cfg->pg_url || cfg->interval_ms <= 0 || cfg->after_ms <= 0
        || cfg->max_age_ms <= cfg->after_ms || cfg->batch <= 0 || cfg->batch > 100000) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "reconciler: invalid configuration");
        return NULL;
    }
    fks_reconciler_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->cfg.pg_url = NULL;        /* not kept: fks_pg_t has its own copy */
    fks_pg_err_t err;
    self->pg = fks_pg_new (cfg->pg_url, s_stmts, sizeof s_stmts / sizeof s_stmts[0], &err);
    if (!self->pg) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "reconciler: %s", err.msg);
        free (self);
        return NULL;
    }
    static const char *const grp[] = { "group" };
    self->f_sent = fks_counter_family ("fks_bus_reconciler_republished_total",
                                       "Overdue events the reconciler published again.", grp, 1);
    fks_metric_family_t *f = fks_counter_family ("fks_bus_reconciler_passes_total",
                                                 "Reconciler passes.", NULL, 0);
    self->m_passes = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_reconciler_errors_total",
                            "Reconciler passes that met a PostgreSQL error.", NULL, 0);
    self->m_errors = f ? fks_metric_get (f, NULL) : NULL;
    self->push = zmq_socket (zctx, ZMQ_PUSH);
    int timeout = 1000, linger = 0, hwm = 10000;
    if (self->push) {
        zmq_setsockopt (self->push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt (self->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    }
    if (!self->f_sent || !self->m_passes || !self->m_errors || !self->push
        || zmq_connect (self->push, server_endpoint) != 0
        || pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "reconciler: cannot start");
        fks_reconciler_destroy (&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void
fks_reconciler_destroy (fks_reconciler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_reconciler_t *self = *self_p;
    if (self->started) {
        atomic_store (&self->stop, true);
        pthread_join (self->thread, NULL);
    }
    if (self->push)
        zmq_close (self->push);
    fks_pg_destroy (&self->pg);
    free (self);
    *self_p = NULL;
}
