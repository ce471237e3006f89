/*  reconciler.c - publishes again what PostgreSQL shows is overdue at its next stage.
 *
 *  See reconciler.h for the why and the shape. One pass:
 *
 *      read the transaction horizon (pg_snapshot_xmin) and remember it with the time;
 *      pick the bound H: the newest horizon read at least `after` ago (right after a start,
 *          none is that old: then the current one, and the walk stops at the first row that
 *          is younger than `after`, which it cannot judge yet);
 *      for each group in bus_groups:
 *          check its pending rows again by seq: publish the ones still pending, forget the
 *              ones consumed or dead-lettered, log and forget the ones past `max_age`;
 *          walk on from its position below H, `scan` rows per query, classifying each row
 *              in SQL (settled, too young, pending) and returning only the pending ones;
 *          save the position it would restart from when that moved.
 *
 *  A PostgreSQL error ends the pass (logged, counted); the next one tries again from the same
 *  positions. Every row is validated before it is sent (the broker checks the envelope again,
 *  like any frame). A row the broker's socket does not take stays pending and is sent on a
 *  later pass.
 */
#include "bus/reconciler.h"
#include "bus/envelope.h"
#include "bus/protocol.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pg.h"
#include "common/sbuf.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define S_GROUPS_MAX     1024
#define S_SAMPLES_MAX    1024       /* horizons remembered (one per pass) */
#define S_CHUNKS_MAX     50         /* walk queries per group per pass */
#define S_PREFIXES_MAX   2048       /* the text form of a group's prefixes */

//  A place in (xid, seq) order. Rows "after" it are those with (xid, seq) > (pos.xid, pos.seq).
typedef struct {
    uint64_t xid;
    int64_t seq;
} s_pos_t;

typedef struct {
    char name[FKS_BUS_GROUP_MAX];
    char prefixes[S_PREFIXES_MAX];  /* as bus_groups holds them ('{a.,b.}') */
    bool walking;                   /* walk is set */
    s_pos_t walk;
    bool saved;                     /* `stored` is what bus_groups holds */
    s_pos_t stored;
    s_pos_t *pending;               /* in (xid, seq) order; cfg.batch of them at most */
    size_t n_pending;
    fks_metric_t *m_sent, *m_expired, *m_pending;
} s_group_t;

typedef struct {
    int64_t ms;                     /* monotonic */
    uint64_t xmin;
} s_sample_t;

struct fks_reconciler_t {
    fks_reconciler_cfg_t cfg;
    fks_pg_t *pg;
    void *push;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    s_group_t *groups[S_GROUPS_MAX];
    size_t n_groups;
    s_sample_t samples[S_SAMPLES_MAX];
    size_t n_samples;
    fks_metric_family_t *f_sent, *f_expired, *f_pending;
    fks_metric_t *m_passes, *m_errors, *m_examined;
};

#define S_MS "::bigint * interval '1 millisecond'"

static const fks_pg_stmt_t s_stmts[] = {
    { "rec_groups",
      "SELECT grp, prefixes::text, reconciled_xid::text, reconciled_seq FROM bus_groups "
      "ORDER BY grp LIMIT 1024", 0 },
    { "rec_horizon", "SELECT pg_snapshot_xmin (pg_current_snapshot ())::text", 0 },
    //  The window's first row in (xid, seq) order: every row of the window is read once
    //  (through the created_at index), which happens only for a group with no saved position.
    //  Ordered by w.xid, the xid8: a bare "xid" would name the text output column, where
    //  "10000" sorts before "999" and the walk would start behind rows it then never sees.
    { "rec_start",
      "WITH w AS MATERIALIZED (SELECT xid, seq FROM events"
      "                         WHERE created_at > now () - $1" S_MS ")"
      " SELECT xid::text, seq FROM w ORDER BY w.xid, w.seq LIMIT 1", 1, FKS_PG_CUSTOM_PLAN },
    //  $1 group, $2/$3 walk position, $4 bound H, $5 rows to examine, $6 after, $7 max age,
    //  $8 pending rows to return at most, $9 the group's prefixes. Rows: kind 0 (the last row
    //  examined, n = rows examined), kind 1 (the first row too young to judge), kind 2 (the
    //  pending rows, with their type and envelope), kind 3 (the rows the group never took that
    //  passed the max age while the walk waited), in (xid, seq) order within a kind.
    { "rec_walk",
      "WITH scan AS MATERIALIZED ("
      "  SELECT e.xid, e.seq, e.id, e.type, e.created_at FROM events e"
      "   WHERE (e.xid, e.seq) > ($2::xid8, $3::bigint) AND e.xid < $4::xid8"
      "   ORDER BY e.xid, e.seq LIMIT $5::integer),"
      " cls AS MATERIALIZED ("
      "  SELECT s.xid, s.seq,"
      "         CASE WHEN NOT EXISTS (SELECT 1 FROM unnest ($9::text[]) AS p (prefix)"
      "                                WHERE starts_with (s.type, p.prefix)) THEN 0"
      "              WHEN s.created_at > now () - $6" S_MS " THEN 1"
      "              WHEN EXISTS (SELECT 1 FROM consumed c"
      "                            WHERE c.grp = $1 AND c.msg_id = s.id) THEN 0"
      "              WHEN EXISTS (SELECT 1 FROM dead_letters d"
      "                            WHERE d.grp = $1 AND d.msg_id = s.id) THEN 0"
      "              WHEN s.created_at <= now () - $7" S_MS " THEN 3"
      "              ELSE 2 END AS state"
      "    FROM scan s),"
      " out AS ("
      "  (SELECT 0 AS kind, xid, seq, count (*) OVER () AS n FROM cls"
      "    ORDER BY xid DESC, seq DESC LIMIT 1)"
      "  UNION ALL"
      "  (SELECT 1, xid, seq, 0 FROM cls WHERE state = 1 ORDER BY xid, seq LIMIT 1)"
      "  UNION ALL"
      "  (SELECT 2, xid, seq, 0 FROM cls WHERE state = 2 ORDER BY xid, seq LIMIT $8::integer)"
      "  UNION ALL"
      "  (SELECT 3, xid, seq, 0 FROM cls WHERE state = 3))"
      " SELECT o.kind, o.xid::text, o.seq, o.n, e.type, e.envelope"
      "   FROM out o LEFT JOIN events e ON o.kind = 2 AND e.seq = o.seq"
      "  ORDER BY o.kind, o.xid, o.seq", 9, FKS_PG_CUSTOM_PLAN },
    //  $1 group, $2 seqs, $3 max age. state 0 settled, 2 pending (with its envelope), 3 past
    //  the max age. A row that is gone (deleted by an operator) is simply not returned.
    { "rec_recheck",
      "SELECT e.xid::text, e.seq, e.type,"
      "       CASE WHEN EXISTS (SELECT 1 FROM consumed c WHERE c.grp = $1 AND c.msg_id = e.id)"
      "              OR EXISTS (SELECT 1 FROM dead_letters d"
      "                          WHERE d.grp = $1 AND d.msg_id = e.id) THEN 0"
      "            WHEN e.created_at <= now () - $3" S_MS " THEN 3"
      "            ELSE 2 END AS state,"
      "       e.envelope"
      "  FROM events e WHERE e.seq = ANY ($2::bigint[])"
      " ORDER BY e.xid, e.seq", 3, FKS_PG_CUSTOM_PLAN },
    //  Only while the prefixes are the ones the position was computed for: fks-bus resets
    //  the position when a JOIN changes them.
    { "rec_save",
      "UPDATE bus_groups SET reconciled_xid = $2::xid8, reconciled_seq = $3::bigint"
      " WHERE grp = $1 AND prefixes = $4::text[]", 4 },
};

void
fks_reconciler_cfg_defaults (fks_reconciler_cfg_t *cfg)
{
    cfg->pg_url = NULL;
    cfg->interval_ms = 5000;
    cfg->after_ms = 60000;
    cfg->max_age_ms = 3600 * 1000;
    cfg->batch = 5000;
    cfg->scan = 10000;
}

static int
s_pos_cmp (s_pos_t a, s_pos_t b)
{
    if (a.xid != b.xid)
        return a.xid < b.xid ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

//  The position just before a row: the walk includes the row again.
static s_pos_t
s_before (s_pos_t p)
{
    p.seq--;
    return p;
}

static bool
s_parse_pos (const char *xid, const char *seq, s_pos_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull (xid, &end, 10);
    if (errno || end == xid || *end)
        return false;
    long long s = strtoll (seq, &end, 10);
    if (errno || end == seq || *end)
        return false;
    out->xid = (uint64_t) x;
    out->seq = (int64_t) s;
    return true;
}

static void
s_pg_error (fks_reconciler_t *self, const char *what, const fks_pg_err_t *err)
{
    fks_metric_inc (self->m_errors);
    char fields[128] = "";
    fks_log_field_str (fields, sizeof fields, "sqlstate", err->sqlstate);
    fks_log (FKS_LOG_WARN, NULL, fields, "reconciler: %s: %s", what, err->msg);
}

static s_group_t *
s_group (fks_reconciler_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_groups; i++)
        if (strcmp (self->groups[i]->name, name) == 0)
            return self->groups[i];
    if (self->n_groups == S_GROUPS_MAX)
        return NULL;
    s_group_t *g = calloc (1, sizeof *g);
    if (g)
        g->pending = malloc ((size_t) self->cfg.batch * sizeof *g->pending);
    if (!g || !g->pending) {
        if (g)
            free (g);
        return NULL;
    }
    snprintf (g->name, sizeof g->name, "%s", name);
    g->m_sent = fks_metric_get1 (self->f_sent, name);
    g->m_expired = fks_metric_get1 (self->f_expired, name);
    g->m_pending = fks_metric_get1 (self->f_pending, name);
    self->groups[self->n_groups++] = g;
    return g;
}

//  Sends one row to the broker as ['G'][group][type][envelope]. 0, or -1 when the broker's
//  socket did not take it (its queue is full): the caller keeps the row pending.
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

//  Publishes one pending row (its type and envelope in columns type_col and env_col of res's
//  row r) unless the pass's budget is spent or the broker stopped taking rows. Returns false
//  when the row is not a valid envelope of that type (it is logged and must not stay pending).
static bool
s_publish (fks_reconciler_t *self, s_group_t *g, PGresult *res, int r, int type_col,
           int env_col, s_pos_t pos, long *budget, bool *busy)
{
    const char *type = PQgetvalue (res, r, type_col);
    size_t len = 0;
    unsigned char *env = PQunescapeBytea (
        (const unsigned char *) PQgetvalue (res, r, env_col), &len);
    fks_envelope_hdr_t hdr;
    fks_envelope_err_t eerr;
    if (!env || len > FKS_ENVELOPE_MAX_SIZE
        || fks_envelope_peek (env, len, &hdr, NULL, NULL, &eerr) != 0
        || strcmp (hdr.type, type) != 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL,
                 "reconciler: events row seq %" PRId64 " holds an invalid envelope; skipped",
                 pos.seq);
        if (env)
            PQfreemem (env);
        return false;
    }
    if (*budget > 0 && !*busy) {
        if (s_send (self, g->name, type, env, len) == 0) {
            (*budget)--;
            fks_metric_inc (g->m_sent);
        }
        else {
            *busy = true;
            fks_log (FKS_LOG_WARN, NULL, NULL,
                     "reconciler: broker busy (%s); the rest waits for the next pass",
                     zmq_strerror (errno));
        }
    }
    PQfreemem (env);
    return true;
}

//  Events the group never took within the max age: no longer published again, counted and
//  logged for an operator.
static void
s_expired (s_group_t *g, long expired)
{
    if (expired <= 0)
        return;
    fks_metric_add (g->m_expired, (double) expired);
    char fields[128] = "";
    fks_log_field_str (fields, sizeof fields, "group", g->name);
    fks_log_field_int (fields, sizeof fields, "events", expired);
    fks_log (FKS_LOG_ERROR, NULL, fields,
             "reconciler: events not consumed within the max age are no longer published "
             "again; an operator must look at them (events rows with no consumed row)");
}

//  Checks the group's pending rows again: keeps (and publishes) the ones still pending.
static int
s_recheck (fks_reconciler_t *self, s_group_t *g, long *budget, bool *busy)
{
    if (g->n_pending == 0)
        return 0;
    fks_sbuf_t seqs;
    fks_sbuf_init (&seqs, 0);
    fks_sbuf_puts (&seqs, "{");
    for (size_t i = 0; i < g->n_pending; i++)
        fks_sbuf_printf (&seqs, i ? ",%" PRId64 : "%" PRId64, g->pending[i].seq);
    fks_sbuf_puts (&seqs, "}");
    if (seqs.failed) {
        fks_sbuf_free (&seqs);
        return -1;
    }
    char max_age[24];
    snprintf (max_age, sizeof max_age, "%" PRId64, self->cfg.max_age_ms);
    const char *values[3] = { g->name, seqs.data, max_age };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_recheck", 3, values, NULL, NULL, &err);
    fks_sbuf_free (&seqs);
    if (!res) {
        s_pg_error (self, "checking pending events again", &err);
        return -1;
    }
    size_t kept = 0;
    long expired = 0;
    int rows = PQntuples (res);
    for (int r = 0; r < rows && kept < g->n_pending; r++) {
        s_pos_t pos;
        if (!s_parse_pos (PQgetvalue (res, r, 0), PQgetvalue (res, r, 1), &pos))
            continue;
        int state = atoi (PQgetvalue (res, r, 3));
        if (state == 3)
            expired++;
        else if (state == 2 && s_publish (self, g, res, r, 2, 4, pos, budget, busy))
            g->pending[kept++] = pos;
    }
    PQclear (res);
    g->n_pending = kept;
    s_expired (g, expired);
    return 0;
}

//  One walk query from g->walk. Returns 1 when the walk may go on (a full chunk, nothing too
//  young, room left), 0 when it is done for this pass, -1 on error.
static int
s_walk_chunk (fks_reconciler_t *self, s_group_t *g, uint64_t bound, long *budget, bool *busy)
{
    size_t room = (size_t) self->cfg.batch - g->n_pending;
    if (room == 0)
        return 0;
    char xid[24], seq[24], hz[24], scan[16], after[24], max_age[24], limit[24];
    snprintf (xid, sizeof xid, "%" PRIu64, g->walk.xid);
    snprintf (seq, sizeof seq, "%" PRId64, g->walk.seq);
    snprintf (hz, sizeof hz, "%" PRIu64, bound);
    snprintf (scan, sizeof scan, "%d", self->cfg.scan);
    snprintf (after, sizeof after, "%" PRId64, self->cfg.after_ms);
    snprintf (max_age, sizeof max_age, "%" PRId64, self->cfg.max_age_ms);
    snprintf (limit, sizeof limit, "%zu", room);
    const char *values[9] = { g->name, xid, seq, hz, scan, after, max_age, limit, g->prefixes };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_walk", 9, values, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "walking the outbox", &err);
        return -1;
    }
    bool has_last = false, has_young = false;
    s_pos_t last = { 0, 0 }, young = { 0, 0 }, last_pending = { 0, 0 };
    long examined = 0;
    size_t returned = 0;
    int rows = PQntuples (res), first_expired = rows;
    for (int r = 0; r < rows; r++) {
        s_pos_t pos;
        if (!s_parse_pos (PQgetvalue (res, r, 1), PQgetvalue (res, r, 2), &pos))
            continue;
        int kind = atoi (PQgetvalue (res, r, 0));
        if (kind == 0) {
            last = pos;
            has_last = true;
            examined = strtol (PQgetvalue (res, r, 3), NULL, 10);
        }
        else if (kind == 1) {
            young = pos;
            has_young = true;
        }
        else if (kind == 3) {
            if (first_expired == rows)
                first_expired = r;
        }
        else if (kind == 2) {
            returned++;
            last_pending = pos;
            //  Rows after a too-young one are found again once the walk gets past it.
            if (has_young && s_pos_cmp (pos, young) > 0)
                continue;
            if (g->n_pending < (size_t) self->cfg.batch
                && s_publish (self, g, res, r, 4, 5, pos, budget, busy))
                g->pending[g->n_pending++] = pos;
        }
    }
    fks_metric_add (self->m_examined, (double) examined);
    if (!has_last) {
        PQclear (res);
        return 0;                   /* nothing below the bound after the walk */
    }
    s_pos_t next = last;
    if (returned == room && s_pos_cmp (last_pending, next) < 0)
        next = last_pending;        /* the rows after the last one returned are not judged */
    if (has_young && s_pos_cmp (s_before (young), next) < 0)
        next = s_before (young);
    //  Rows past the max age that the walk now leaves behind are given up: said once each
    //  (the ones after next are judged again by the next walk).
    long expired = 0;
    for (int r = first_expired; r < rows; r++) {
        s_pos_t pos;
        if (atoi (PQgetvalue (res, r, 0)) == 3
            && s_parse_pos (PQgetvalue (res, r, 1), PQgetvalue (res, r, 2), &pos)
            && s_pos_cmp (pos, next) <= 0)
            expired++;
    }
    PQclear (res);
    s_expired (g, expired);
    g->walk = next;
    return !has_young && returned < room && examined >= self->cfg.scan;
}

//  Where a restarted reconciler must begin for this group: its first pending row, else its walk.
static s_pos_t
s_resume_pos (const s_group_t *g)
{
    return g->n_pending ? s_before (g->pending[0]) : g->walk;
}

//  Sets the walk of a group that has none: its saved position or the window's first row,
//  whichever is later (a position saved long ago must not make the walk read a day of rows
//  past their max age). Never past the horizon: rows of transactions still running are not
//  visible yet, and they come after it.
static int
s_start_walk (fks_reconciler_t *self, s_group_t *g, const char *saved_xid, const char *saved_seq,
              uint64_t xmin)
{
    char max_age[24];
    snprintf (max_age, sizeof max_age, "%" PRId64, self->cfg.max_age_ms);
    const char *values[1] = { max_age };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_start", 1, values, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "finding the window's start", &err);
        return -1;
    }
    s_pos_t first;
    g->walk = (s_pos_t) { xmin, 0 };
    if (PQntuples (res) == 1
        && s_parse_pos (PQgetvalue (res, 0, 0), PQgetvalue (res, 0, 1), &first)
        && s_pos_cmp (s_before (first), g->walk) < 0)
        g->walk = s_before (first);
    PQclear (res);
    s_pos_t saved;
    g->saved = *saved_xid && s_parse_pos (saved_xid, saved_seq, &saved);
    if (g->saved) {
        g->stored = saved;
        if (s_pos_cmp (saved, g->walk) > 0)
            g->walk = saved;
    }
    g->walking = true;
    return 0;
}

static int
s_save (fks_reconciler_t *self, s_group_t *g)
{
    s_pos_t pos = s_resume_pos (g);
    if (g->saved && s_pos_cmp (pos, g->stored) == 0)
        return 0;
    char xid[24], seq[24];
    snprintf (xid, sizeof xid, "%" PRIu64, pos.xid);
    snprintf (seq, sizeof seq, "%" PRId64, pos.seq);
    const char *values[4] = { g->name, xid, seq, g->prefixes };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_save", 4, values, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "saving the position", &err);
        return -1;
    }
    PQclear (res);
    g->stored = pos;
    g->saved = true;
    return 0;
}

//  One group's share of a pass. 0, or -1 on a PostgreSQL error.
static int
s_group_pass (fks_reconciler_t *self, PGresult *groups, int r, uint64_t xmin, uint64_t bound)
{
    const char *name = PQgetvalue (groups, r, 0);
    const char *prefixes = PQgetvalue (groups, r, 1);
    if (!fks_bus_group_valid (name, strlen (name)) || strlen (prefixes) >= S_PREFIXES_MAX)
        return 0;
    s_group_t *g = s_group (self, name);
    if (!g)
        return 0;
    if (strcmp (g->prefixes, prefixes) != 0) {
        //  New to us, or its prefixes changed: start again from what bus_groups says (fks-bus
        //  cleared it if the prefixes changed).
        snprintf (g->prefixes, sizeof g->prefixes, "%s", prefixes);
        g->walking = false;
        g->n_pending = 0;
    }
    if (!g->walking && s_start_walk (self, g, PQgetvalue (groups, r, 2),
                                     PQgetvalue (groups, r, 3), xmin) != 0)
        return -1;
    long budget = self->cfg.batch;
    bool busy = false;
    if (s_recheck (self, g, &budget, &busy) != 0)
        return -1;
    int more = 1;
    for (int chunk = 0; more == 1 && chunk < S_CHUNKS_MAX && !atomic_load (&self->stop); chunk++)
        more = s_walk_chunk (self, g, bound, &budget, &busy);
    fks_metric_set (g->m_pending, (double) g->n_pending);
    long sent = self->cfg.batch - budget;
    if (sent > 0) {
        char fields[128] = "";
        fks_log_field_str (fields, sizeof fields, "group", g->name);
        fks_log_field_int (fields, sizeof fields, "republished", sent);
        fks_log (FKS_LOG_INFO, NULL, fields, "reconciler published overdue events again");
    }
    if (more < 0)
        return -1;
    return s_save (self, g);
}

//  Remembers this pass's horizon and returns the bound for the walks: the newest horizon read
//  at least `after` ago, else the current one.
static uint64_t
s_bound (fks_reconciler_t *self, uint64_t xmin)
{
    int64_t now = fks_mono_ns () / 1000000;
    if (self->n_samples == S_SAMPLES_MAX) {
        memmove (self->samples, self->samples + 1, (S_SAMPLES_MAX - 1) * sizeof self->samples[0]);
        self->n_samples--;
    }
    self->samples[self->n_samples++] = (s_sample_t) { now, xmin };
    //  Drop the samples older than the newest one that is old enough.
    size_t keep = 0;
    while (keep + 1 < self->n_samples && self->samples[keep + 1].ms <= now - self->cfg.after_ms)
        keep++;
    if (keep > 0) {
        memmove (self->samples, self->samples + keep,
                 (self->n_samples - keep) * sizeof self->samples[0]);
        self->n_samples -= keep;
    }
    if (self->samples[0].ms <= now - self->cfg.after_ms)
        return self->samples[0].xmin;
    return xmin;
}

static void
s_pass (fks_reconciler_t *self)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (self->pg, "rec_horizon", 0, NULL, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "reading the transaction horizon", &err);
        return;
    }
    unsigned long long xmin = strtoull (PQgetvalue (res, 0, 0), NULL, 10);
    PQclear (res);
    uint64_t bound = s_bound (self, (uint64_t) xmin);
    res = fks_pg_exec (self->pg, "rec_groups", 0, NULL, NULL, NULL, &err);
    if (!res) {
        s_pg_error (self, "reading bus_groups", &err);
        return;
    }
    int rows = PQntuples (res);
    for (int r = 0; r < rows && !atomic_load (&self->stop); r++)
        if (s_group_pass (self, res, r, (uint64_t) xmin, bound) < 0)
            break;
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
        || cfg->max_age_ms <= cfg->after_ms || cfg->batch <= 0 || cfg->batch > 100000
        || cfg->scan <= 0 || cfg->scan > 1000000) {
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
    //  No JIT: the walk's estimated cost passes jit_above_cost, and PostgreSQL then compiled
    //  it on every pass, 130-180 ms of a 245-424 ms walk at 2,500 alerts/s (auto_explain).
    if (self->pg && fks_pg_set_option (self->pg, "jit", "off", &err) != 0)
        fks_pg_destroy (&self->pg);
    if (!self->pg) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "reconciler: %s", err.msg);
        free (self);
        return NULL;
    }
    static const char *const grp[] = { "group" };
    self->f_sent = fks_counter_family ("fks_bus_reconciler_republished_total",
                                       "Overdue events the reconciler published again.", grp, 1);
    self->f_expired = fks_counter_family (
        "fks_bus_reconciler_expired_total",
        "Events a group had not consumed within the reconciler's max age: no longer published "
        "again, left to an operator.", grp, 1);
    self->f_pending = fks_gauge_family ("fks_bus_reconciler_pending",
                                        "Overdue events the reconciler is waiting on.", grp, 1);
    fks_metric_family_t *f = fks_counter_family ("fks_bus_reconciler_passes_total",
                                                 "Reconciler passes.", NULL, 0);
    self->m_passes = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_reconciler_errors_total",
                            "Reconciler passes that met a PostgreSQL error.", NULL, 0);
    self->m_errors = f ? fks_metric_get (f, NULL) : NULL;
    f = fks_counter_family ("fks_bus_reconciler_examined_total",
                            "Outbox rows the reconciler's walks examined (all groups).", NULL, 0);
    self->m_examined = f ? fks_metric_get (f, NULL) : NULL;
    self->push = zmq_socket (zctx, ZMQ_PUSH);
    int timeout = 1000, linger = 0, hwm = 10000;
    if (self->push) {
        zmq_setsockopt (self->push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt (self->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    }
    if (!self->f_sent || !self->f_expired || !self->f_pending || !self->m_passes
        || !self->m_errors || !self->m_examined || !self->push
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
    for (size_t i = 0; i < self->n_groups; i++) {
        free (self->groups[i]->pending);
        free (self->groups[i]);
    }
    free (self);
    *self_p = NULL;
}
