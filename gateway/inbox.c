/*  inbox.c - the gateway's commit point: webhook alerts made durable in batches.
 *
 *  Request threads queue items and sleep on a semaphore; committer threads take every waiting
 *  item (up to batch_max) and commit them with one prepared statement. Batching is what makes
 *  durable accepts cheap: one round trip and one WAL flush serve the whole batch, and batches
 *  form by themselves under load (while one commits, the next fills up), with no added delay
 *  when the gateway is idle.
 *
 *  The statement takes the batch as binary arrays (no quoting, no text escaping of the raw
 *  bodies) and does everything in one snapshot:
 *
 *      WITH d AS (unnest of the arrays),
 *           ins AS (INSERT INTO inbox ... ON CONFLICT (idem_key) DO NOTHING RETURNING id),
 *           ev AS (INSERT INTO events ... rows of d that ins returned RETURNING corr, seq)
 *      SELECT the new rows' (id, seq)
 *
 *  Items whose row was not inserted are duplicates; the ids of their existing rows are read by
 *  a second statement, only when there are any, and with a fresh snapshot, because the first
 *  one cannot see a row another transaction committed while it waited on that key. In autocommit
 *  the second statement runs after the first committed, which is fine: it only reads rows that
 *  were there anyway. Keys are deduplicated inside the batch (the first item leads,
 *  the others are duplicates of it) and sorted, so two batches always lock keys in the same
 *  order and cannot deadlock. A batch that fails on a data error is retried item by item, so
 *  one bad item cannot fail its neighbours; a connection failure or a timeout fails the batch.
 *
 *  PostgreSQL access is raw libpq in non-blocking mode, because every wait here has a deadline
 *  (common/pg.c blocks without one).
 */
#include "gateway/inbox.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/pgarray.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_QUEUED  1
#define S_TAKEN   2
#define S_DONE    3

#define S_OID_UUID_ARRAY        2951
#define S_OID_TEXT_ARRAY        1009
#define S_OID_BYTEA_ARRAY       1001
#define S_OID_JSONB_ARRAY       3807
#define S_OID_TIMESTAMPTZ_ARRAY 1185
#define S_OID_INT8              20

#define S_BATCH_MIN    8            /* items that justify a second batch in parallel */
#define S_LINGER_US    2000         /* longest a small queue waits for a busy committer */
#define S_NPARAMS      11           /* arrays; the window is one more, a scalar */

static const char s_commit_sql[] =
    "WITH d AS ("
    "  SELECT * FROM unnest ($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[],"
    "                        $6::jsonb[], $7::text[], $8::uuid[], $9::timestamptz[],"
    "                        $10::bytea[], $11::text[])"
    "    AS t (id, idem_key, source, content_type, body, alert, remote_addr, event_id, ts,"
    "          envelope, prev_key)"
    "), p AS MATERIALIZED ("
    //  Per item, one probe of the idem_key index (a join here may be planned as a scan of
    //  the whole inbox); only for items that have a previous-window key.
    "  SELECT * FROM ("
    "    SELECT d.id, (SELECT i.id FROM inbox i WHERE i.idem_key = d.prev_key"
    "                     AND i.received_at > now () - $12::bigint * interval '1 millisecond')"
    "                  AS dup_of"
    "      FROM d WHERE d.prev_key <> '') x WHERE dup_of IS NOT NULL"
    "), ins AS ("
    "  INSERT INTO inbox (id, idem_key, source, content_type, body, alert, remote_addr)"
    "  SELECT id, idem_key, source, content_type, body, alert, remote_addr FROM d"
    "   WHERE NOT EXISTS (SELECT 1 FROM p WHERE p.id = d.id)"
    "  ON CONFLICT (idem_key) DO NOTHING"
    "  RETURNING id"
    "), ev AS ("
    "  INSERT INTO events (id, type, corr, src, ts, envelope)"
    "  SELECT d.event_id, 'webhook.received', d.id, 'gateway', d.ts, d.envelope"
    "  FROM d JOIN ins ON ins.id = d.id"
    "  RETURNING corr, seq"
    ")"
    " SELECT ev.corr, ev.seq, NULL::uuid AS dup_of FROM ev"
    " UNION ALL SELECT p.id, NULL, p.dup_of FROM p";

static const char s_lookup_sql[] =
    "SELECT id, idem_key FROM inbox WHERE idem_key = ANY ($1::text[])";

typedef struct {
    fks_inbox_t *inbox;
    int index;
    pthread_t thread;
    PGconn *conn;
    fks_pg_array_t params[S_NPARAMS];
    fks_pg_array_t lookup;
} s_committer_t;

struct fks_inbox_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    fks_inbox_item_t *head, *tail;
    size_t queued;
    int busy;                       /* committers inside s_process */
    bool stop;
    char *pg_url;
    int n_committers;
    int batch_max;
    size_t queue_max;
    int timeout_ms;
    int retry_ms;
    int64_t idem_window_ms;
    fks_inbox_commit_fn *on_commit;
    void *on_commit_arg;
    s_committer_t *committers;
    int started;
    atomic_int connected;           /* committers holding a working connection */
    atomic_llong down_until_ms;     /* monotonic ms: fail fast until then */
    atomic_int down_logged;
    fks_metric_t *m_batch;
    fks_metric_t *m_commit_s;
    fks_metric_t *m_queue;
    fks_metric_family_t *m_fail;
};

static int64_t
s_mono_ms (void)
{
    return fks_mono_ns () / 1000000;
}

//  --------------------------------------------------------------------------
//  libpq with deadlines

static bool
s_sql_retryable (const char *sqlstate)
{
    //  Connection trouble (08), shutdown (57P01..03), deadlock (40P01), serialisation (40001).
    return sqlstate && (strncmp (sqlstate, "08", 2) == 0 || strncmp (sqlstate, "57", 2) == 0
                        || strcmp (sqlstate, "40P01") == 0 || strcmp (sqlstate, "40001") == 0);
}

//  Waits until the connection's socket is ready for `events` or the deadline passes.
//  0 ready, -1 timeout or error.
static int
s_poll (PGconn *conn, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - s_mono_ms ();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = PQsocket (conn), .events = events };
        int rc = poll (&p, 1, (int) (left > 1000 ? 1000 : left));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

//  Flushes what was sent, then collects the statement's last result before the deadline.
//  Returns the result (caller PQclear's; may be an error result) or NULL on timeout / lost
//  connection (why filled).
static PGresult *
s_finish (PGconn *conn, int64_t deadline_ms, char *why, size_t cap)
{
    int f;
    while ((f = PQflush (conn)) == 1)
        if (s_poll (conn, POLLOUT | POLLIN, deadline_ms) != 0) {
            snprintf (why, cap, "timed out sending to the database");
            return NULL;
        }
    if (f < 0) {
        snprintf (why, cap, "database connection lost while sending");
        return NULL;
    }
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy (conn)) {
            if (s_poll (conn, POLLIN, deadline_ms) != 0) {
                PQclear (last);
                snprintf (why, cap, "timed out waiting for the database");
                return NULL;
            }
            if (!PQconsumeInput (conn)) {
                PQclear (last);
                snprintf (why, cap, "database connection lost");
                return NULL;
            }
        }
        PGresult *r = PQgetResult (conn);
        if (!r)
            break;
        PQclear (last);
        last = r;
    }
    if (!last)
        snprintf (why, cap, "database connection lost (no result)");
    return last;
}

//  True when an idle connection still looks usable. A server writes to an idle connection
//  only to say goodbye (restart, pg_terminate_backend: an error, then EOF), and we never
//  LISTEN, so anything to read means the connection is done for.
static bool
s_idle_ok (PGconn *conn)
{
    if (PQstatus (conn) != CONNECTION_OK)
        return false;
    struct pollfd p = { .fd = PQsocket (conn), .events = POLLIN };
    return poll (&p, 1, 0) == 0;
}

static void
s_disconnect (s_committer_t *c)
{
    if (c->conn) {
        PQfinish (c->conn);
        c->conn = NULL;
        atomic_fetch_sub (&c->inbox->connected, 1);
    }
}

//  Connects and prepares the statements. 0, or -1 with why.
static int
s_connect (s_committer_t *c, char *why, size_t cap)
{
    fks_inbox_t *self = c->inbox;
    const char *keys[] = { "connect_timeout", "fallback_application_name", "keepalives",
                           "keepalives_idle", "keepalives_interval", "keepalives_count",
                           "dbname", NULL };
    const char *vals[] = { "2", "fks-gateway-inbox", "1", "10", "5", "3", self->pg_url, NULL };
    PGconn *conn = PQconnectdbParams (keys, vals, 1);
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        const char *m = conn ? PQerrorMessage (conn) : "out of memory";
        snprintf (why, cap, "cannot connect to PostgreSQL: %.*s", (int) strcspn (m, "\n"), m);
        PQfinish (conn);
        return -1;
    }
    static const uint32_t types[S_NPARAMS + 1] = {
        S_OID_UUID_ARRAY, S_OID_TEXT_ARRAY, S_OID_TEXT_ARRAY, S_OID_TEXT_ARRAY,
        S_OID_BYTEA_ARRAY, S_OID_JSONB_ARRAY, S_OID_TEXT_ARRAY, S_OID_UUID_ARRAY,
        S_OID_TIMESTAMPTZ_ARRAY, S_OID_BYTEA_ARRAY, S_OID_TEXT_ARRAY, S_OID_INT8 };
    static const uint32_t lookup_types[1] = { S_OID_TEXT_ARRAY };
    PGresult *r = PQprepare (conn, "fks_inbox_commit", s_commit_sql, S_NPARAMS + 1, types);
    bool ok = r && PQresultStatus (r) == PGRES_COMMAND_OK;
    PQclear (r);
    if (ok) {
        r = PQprepare (conn, "fks_inbox_lookup", s_lookup_sql, 1, lookup_types);
        ok = r && PQresultStatus (r) == PGRES_COMMAND_OK;
        PQclear (r);
    }
    if (!ok) {
        const char *m = PQerrorMessage (conn);
        snprintf (why, cap, "cannot prepare the inbox statements: %.*s",
                  (int) strcspn (m, "\n"), m);
        PQfinish (conn);
        return -1;
    }
    PQsetnonblocking (conn, 1);
    c->conn = conn;
    atomic_fetch_add (&self->connected, 1);
    return 0;
}

//  --------------------------------------------------------------------------
//  One batch

//  Orders leaders by idempotency key, so batches lock keys in one order.
static int
s_cmp_key (const void *a, const void *b)
{
    const fks_inbox_item_t *x = *(fks_inbox_item_t *const *) a;
    const fks_inbox_item_t *y = *(fks_inbox_item_t *const *) b;
    return strcmp (x->idem_key, y->idem_key);
}

static void
s_fail (fks_inbox_item_t *item, const char *why)
{
    item->result = FKS_INBOX_FAILED;
    snprintf (item->why, sizeof item->why, "%.*s", (int) sizeof item->why - 1, why);
}

//  Finds the leader whose key is key[0..len) (leaders are sorted by key).
static fks_inbox_item_t *
s_leader_by_key (fks_inbox_item_t **leaders, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp (leaders[mid]->idem_key, key);
        if (c == 0)
            return leaders[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static fks_inbox_item_t *
s_leader_by_id (fks_inbox_item_t **leaders, size_t n, const fks_id_t *id)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp (leaders[i]->id.b, id->b, FKS_ID_SIZE) == 0)
            return leaders[i];
    return NULL;
}

//  Looks up the existing rows of the leaders still unresolved (state S_TAKEN and result
//  FAILED with an empty why), with a fresh snapshot. 0 or -1 with why.
static int
s_lookup_rest (s_committer_t *c, fks_inbox_item_t **leaders, size_t n, int64_t deadline_ms,
               char *why, size_t cap)
{
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        if (leaders[i]->result == FKS_INBOX_FAILED && !leaders[i]->why[0])
            missing++;
    if (missing == 0)
        return 0;
    fks_pg_array_t *b = &c->lookup;
    fks_pg_array_begin (b, FKS_PG_OID_TEXT);
    for (size_t i = 0; i < n; i++)
        if (leaders[i]->result == FKS_INBOX_FAILED && !leaders[i]->why[0])
            fks_pg_array_add_text (b, leaders[i]->idem_key);
    if (fks_pg_array_end (b) != 0) {
        snprintf (why, cap, "out of memory");
        return -1;
    }
    const char *values[1] = { b->buf.data };
    int lengths[1] = { (int) b->buf.len };
    int formats[1] = { 1 };
    if (!PQsendQueryPrepared (c->conn, "fks_inbox_lookup", 1, values, lengths, formats, 0)) {
        snprintf (why, cap, "database connection lost");
        return -1;
    }
    PGresult *r = s_finish (c->conn, deadline_ms, why, cap);
    if (!r)
        return -1;
    if (PQresultStatus (r) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorMessage (r);
        snprintf (why, cap, "database error: %.*s", (int) strcspn (m, "\n"), m);
        PQclear (r);
        return -1;
    }
    for (int row = 0; row < PQntuples (r); row++) {
        fks_inbox_item_t *l = s_leader_by_key (leaders, n, PQgetvalue (r, row, 1));
        fks_id_t id;
        const char *t = PQgetvalue (r, row, 0);
        if (l && fks_id_parse (t, strlen (t), &id) == 0) {
            l->result = FKS_INBOX_DUPLICATE;
            l->result_id = id;
        }
    }
    PQclear (r);
    return 0;
}

//  Commits leaders[0..n) (distinct keys, sorted). Sets each leader's result. Returns 0 when
//  the statement ran (each leader then accepted or duplicate, or failed with why), -1 with
//  *sqlstate_out / why when the statement failed as a whole (nothing committed, or outcome
//  unknown when the connection died), -2 when it could not even be sent (nothing reached the
//  server, so it may be sent again on a new connection).
static int
s_commit_leaders (s_committer_t *c, fks_inbox_item_t **leaders, size_t n, int64_t deadline_ms,
                  char *sqlstate_out, char *why, size_t cap)
{
    sqlstate_out[0] = '\0';
    fks_pg_array_t *p = c->params;
    static const uint32_t elem[S_NPARAMS] = {
        FKS_PG_OID_UUID, FKS_PG_OID_TEXT, FKS_PG_OID_TEXT, FKS_PG_OID_TEXT, FKS_PG_OID_BYTEA,
        FKS_PG_OID_JSONB, FKS_PG_OID_TEXT, FKS_PG_OID_UUID, FKS_PG_OID_TIMESTAMPTZ,
        FKS_PG_OID_BYTEA, FKS_PG_OID_TEXT };
    for (int k = 0; k < S_NPARAMS; k++)
        fks_pg_array_begin (&p[k], elem[k]);
    for (size_t i = 0; i < n; i++) {
        fks_inbox_item_t *it = leaders[i];
        fks_pg_array_add_uuid (&p[0], &it->id);
        fks_pg_array_add_text (&p[1], it->idem_key);
        fks_pg_array_add_text (&p[2], it->source);
        fks_pg_array_add_text (&p[3], it->content_type);
        fks_pg_array_add (&p[4], it->body ? it->body : "", it->body_len);
        fks_pg_array_add_jsonb (&p[5], it->alert_json, it->alert_json_len);
        fks_pg_array_add_text (&p[6], it->remote_addr);
        fks_pg_array_add_uuid (&p[7], &it->event_id);
        fks_pg_array_add_timestamptz (&p[8], it->ts_ns / 1000);
        fks_pg_array_add (&p[9], it->envelope, it->envelope_len);
        fks_pg_array_add_text (&p[10], it->prev_key ? it->prev_key : "");  /* '' matches no key */
        it->result = FKS_INBOX_FAILED;
        it->why[0] = '\0';
    }
    const char *values[S_NPARAMS + 1];
    int lengths[S_NPARAMS + 1];
    int formats[S_NPARAMS + 1];
    for (int i = 0; i < S_NPARAMS; i++) {
        if (fks_pg_array_end (&p[i]) != 0) {
            snprintf (why, cap, "out of memory");
            return -1;
        }
        values[i] = p[i].buf.data;
        lengths[i] = (int) p[i].buf.len;
        formats[i] = 1;
    }
    char window[24];
    snprintf (window, sizeof window, "%" PRId64, c->inbox->idem_window_ms);
    values[S_NPARAMS] = window;
    lengths[S_NPARAMS] = 0;
    formats[S_NPARAMS] = 0;
    if (!PQsendQueryPrepared (c->conn, "fks_inbox_commit", S_NPARAMS + 1, values, lengths,
                              formats, 0)) {
        snprintf (why, cap, "database connection lost");
        snprintf (sqlstate_out, 6, "08006");
        return -2;                  /* nothing reached the server: safe to try again */
    }
    PGresult *r = s_finish (c->conn, deadline_ms, why, cap);
    if (!r) {
        snprintf (sqlstate_out, 6, "08006");
        return -1;
    }
    if (PQresultStatus (r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField (r, PG_DIAG_SQLSTATE);
        const char *m = PQresultErrorMessage (r);
        snprintf (sqlstate_out, 6, "%s", st ? st : "08006");
        snprintf (why, cap, "database error %s: %.*s", sqlstate_out, (int) strcspn (m, "\n"), m);
        PQclear (r);
        return -1;
    }
    for (int row = 0; row < PQntuples (r); row++) {
        const char *t = PQgetvalue (r, row, 0);
        fks_id_t id;
        if (fks_id_parse (t, strlen (t), &id) != 0)
            continue;
        fks_inbox_item_t *l = s_leader_by_id (leaders, n, &id);
        if (!l)
            continue;
        if (PQgetisnull (r, row, 2)) {
            l->result = FKS_INBOX_ACCEPTED;
            l->result_id = id;
            l->seq = strtoll (PQgetvalue (r, row, 1), NULL, 10);
        }
        else {
            //  Its prev_key's row, received inside the window: a duplicate of that one.
            const char *d = PQgetvalue (r, row, 2);
            if (fks_id_parse (d, strlen (d), &l->result_id) == 0)
                l->result = FKS_INBOX_DUPLICATE;
        }
    }
    PQclear (r);
    //  Keys that conflicted (duplicates): their rows' ids, with a fresh snapshot, which also
    //  sees a row another transaction committed while this one waited on the key.
    if (s_lookup_rest (c, leaders, n, deadline_ms, why, cap) != 0) {
        for (size_t i = 0; i < n; i++)
            if (leaders[i]->result == FKS_INBOX_FAILED && !leaders[i]->why[0])
                s_fail (leaders[i], why);
        if (PQstatus (c->conn) != CONNECTION_OK)
            s_disconnect (c);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (leaders[i]->result == FKS_INBOX_FAILED && !leaders[i]->why[0])
            s_fail (leaders[i], "the idempotency key conflicted but its row was not found");
    return 0;
}

//  Processes one batch taken from the queue (items in state S_TAKEN): sets every item's result
//  and wakes it, then hands the accepted envelopes to on_commit.
static void
s_process (s_committer_t *c, fks_inbox_item_t **items, size_t n)
{
    fks_inbox_t *self = c->inbox;
    char why[200] = "";
    int64_t started = fks_mono_ns ();

    //  Leaders: the first item of each distinct key, sorted by key.
    fks_inbox_item_t **leaders = malloc (n * sizeof *leaders);
    fks_inbox_item_t **byorder = malloc (n * sizeof *byorder);
    fks_inbox_item_t **sent = malloc (n * sizeof *sent);
    if (!leaders || !byorder || !sent) {
        for (size_t i = 0; i < n; i++)
            s_fail (items[i], "out of memory");
        goto wake;
    }
    memcpy (byorder, items, n * sizeof *items);
    qsort (byorder, n, sizeof *byorder, s_cmp_key);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        byorder[i]->chain = NULL;
        if (nl > 0 && strcmp (leaders[nl - 1]->idem_key, byorder[i]->idem_key) == 0)
            continue;
        leaders[nl++] = byorder[i];
    }
    //  A leader whose prev_key is another leader's key - the same alert either side of a
    //  window boundary, in one batch - is a duplicate of that leader: the statement cannot see
    //  rows it inserts itself, so it is settled here and not sent. `sent` keeps key order.
    size_t ns = 0;
    for (size_t i = 0; i < nl; i++) {
        fks_inbox_item_t *l = leaders[i];
        if (l->prev_key && l->prev_key[0] && self->idem_window_ms > 0)
            l->chain = s_leader_by_key (leaders, nl, l->prev_key);
        if (l->chain == l)
            l->chain = NULL;
    }
    for (size_t i = 0; i < nl; i++)
        if (!leaders[i]->chain)
            sent[ns++] = leaders[i];

    int64_t deadline = s_mono_ms () + self->timeout_ms;
    if (c->conn && !s_idle_ok (c->conn))
        s_disconnect (c);           /* the server said goodbye (restart, terminate) */
    if (!c->conn) {
        int64_t now = s_mono_ms ();
        if (now < atomic_load (&self->down_until_ms) && atomic_load (&self->connected) == 0) {
            snprintf (why, sizeof why, "the database is unavailable");
            for (size_t i = 0; i < n; i++)
                s_fail (items[i], why);
            goto wake;
        }
        if (s_connect (c, why, sizeof why) != 0) {
            atomic_store (&self->down_until_ms, s_mono_ms () + self->retry_ms);
            if (!atomic_exchange (&self->down_logged, 1))
                fks_error ("inbox: %s", why);
            for (size_t i = 0; i < n; i++)
                s_fail (items[i], why);
            goto wake;
        }
        if (atomic_exchange (&self->down_logged, 0))
            fks_info ("inbox: connected to PostgreSQL again");
    }

    char sqlstate[6];
    int rc = s_commit_leaders (c, sent, ns, deadline, sqlstate, why, sizeof why);
    if (rc == -2) {
        //  The connection died while idle and nothing was sent: one new connection, one retry.
        s_disconnect (c);
        if (s_connect (c, why, sizeof why) == 0)
            rc = s_commit_leaders (c, sent, ns, deadline, sqlstate, why, sizeof why);
        else
            rc = -1;
    }
    if (rc < 0)
        rc = -1;
    if (rc != 0 && (strcmp (sqlstate, "40P01") == 0 || strcmp (sqlstate, "40001") == 0))
        rc = s_commit_leaders (c, sent, ns, deadline, sqlstate, why, sizeof why);
    if (rc != 0 && !s_sql_retryable (sqlstate) && ns > 1 && PQstatus (c->conn) == CONNECTION_OK) {
        //  A data error in one item: commit them one by one, so only that one fails.
        fks_warn ("inbox: a batch of %zu failed (%s); committing its items one by one", ns, why);
        for (size_t i = 0; i < ns; i++) {
            char one_why[200];
            char st[6];
            if (s_commit_leaders (c, &sent[i], 1, deadline, st, one_why, sizeof one_why) != 0)
                s_fail (sent[i], one_why);
        }
        rc = 0;
        if (PQstatus (c->conn) != CONNECTION_OK)
            s_disconnect (c);
    }
    if (rc != 0) {
        for (size_t i = 0; i < ns; i++)
            s_fail (sent[i], why);
        if (s_sql_retryable (sqlstate) || PQstatus (c->conn) != CONNECTION_OK
            || strstr (why, "timed out")) {
            //  Abandon the connection: the server rolls back what it had not committed.
            s_disconnect (c);
            atomic_store (&self->down_until_ms, 0);
        }
        fks_error ("inbox: batch of %zu not committed: %s", ns, why);
    }

    //  Followers take their leader's outcome: a duplicate of the same row.
    for (size_t i = 0; i < n; i++) {
        fks_inbox_item_t *it = items[i];
        fks_inbox_item_t *l = s_leader_by_key (leaders, nl, it->idem_key);
        for (size_t d = 0; l && l->chain && d < nl; d++)
            l = l->chain;               /* a chained leader's outcome is its target's */
        if (!l || l == it)
            continue;
        if (l->chain)                   /* keys in a cycle: only a hash collision does that */
            s_fail (it, "the idempotency keys of a batch form a cycle");
        else if (l->result == FKS_INBOX_FAILED)
            s_fail (it, l->why);
        else {
            it->result = FKS_INBOX_DUPLICATE;
            it->result_id = l->result_id;
        }
    }

wake:;
    fks_metric_observe (self->m_batch, (double) n);
    fks_metric_observe (self->m_commit_s, (double) (fks_mono_ns () - started) / 1e9);
    //  Published before the answers go out, so that an alert answered before another was
    //  posted is on the bus before it (one symbol's alerts reach the workers in the order they
    //  were accepted). The envelopes are read in place: an item lives on its request's stack
    //  until it is woken. When the arrays cannot be made, the reconciler publishes them.
    size_t n_acc = 0;
    for (size_t i = 0; i < n; i++)
        n_acc += items[i]->result == FKS_INBOX_ACCEPTED;
    const void **envs = NULL;
    size_t *lens = NULL;
    const char **types = NULL;
    if (n_acc && self->on_commit) {
        envs = malloc (n_acc * sizeof *envs);
        lens = malloc (n_acc * sizeof *lens);
        types = malloc (n_acc * sizeof *types);
        size_t k = 0;
        for (size_t i = 0; i < n && envs && lens && types; i++)
            if (items[i]->result == FKS_INBOX_ACCEPTED) {
                envs[k] = items[i]->envelope;
                lens[k] = items[i]->envelope_len;
                types[k] = "webhook.received";
                k++;
            }
        if (envs && lens && types)
            self->on_commit (self->on_commit_arg, n_acc, types, envs, lens);
    }
    for (size_t i = 0; i < n; i++)
        if (items[i]->result == FKS_INBOX_FAILED)
            fks_metric_inc (fks_metric_get1 (self->m_fail, strstr (items[i]->why, "timed out")
                                             ? "timeout" : "database"));
    pthread_mutex_lock (&self->mutex);
    for (size_t i = 0; i < n; i++)
        items[i]->state = S_DONE;
    pthread_mutex_unlock (&self->mutex);
    for (size_t i = 0; i < n; i++)
        sem_post (&items[i]->done);     /* the item may vanish right after this */
    free (envs);
    free (lens);
    free (types);
    free (leaders);
    free (byorder);
    free (sent);
}

//  --------------------------------------------------------------------------
//  Queue and threads

static void
s_unlink (fks_inbox_t *self, fks_inbox_item_t *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        self->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        self->tail = it->prev;
    it->prev = it->next = NULL;
    self->queued--;
}

static void *
s_committer (void *arg)
{
    s_committer_t *c = arg;
    fks_inbox_t *self = c->inbox;
    fks_inbox_item_t **batch = malloc ((size_t) self->batch_max * sizeof *batch);
    if (!batch) {
        fks_error ("inbox: committer %d: out of memory", c->index);
        return NULL;
    }
    pthread_mutex_lock (&self->mutex);
    for (;;) {
        while (!self->head && !self->stop)
            pthread_cond_wait (&self->cond, &self->mutex);
        if (self->stop)
            break;
        //  While another committer is at work, a small queue waits for it (it takes all
        //  there is when it comes back) rather than becoming a batch of its own: per-statement
        //  costs dominate small batches. Past S_LINGER_US, or with S_BATCH_MIN items waiting,
        //  this committer goes ahead, so a slow commit never holds the others back for long.
        if (self->busy > 0 && self->queued < S_BATCH_MIN) {
            struct timespec ts = fks_clock_after (CLOCK_REALTIME, S_LINGER_US * 1000LL);
            pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
            if (self->stop)
                break;
            if (!self->head)
                continue;
        }
        size_t n = 0;
        while (self->head && n < (size_t) self->batch_max) {
            fks_inbox_item_t *it = self->head;
            s_unlink (self, it);
            it->state = S_TAKEN;
            batch[n++] = it;
        }
        self->busy++;
        fks_metric_set (self->m_queue, (double) self->queued);
        pthread_mutex_unlock (&self->mutex);
        s_process (c, batch, n);
        pthread_mutex_lock (&self->mutex);
        self->busy--;
        if (self->head)
            pthread_cond_signal (&self->cond);      /* what queued meanwhile */
    }
    pthread_mutex_unlock (&self->mutex);
    free (batch);
    s_disconnect (c);
    return NULL;
}

static bool
s_text_ok (const char *s, size_t min, size_t max)
{
    if (!s)
        return false;
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char) s[n] < 0x20 || (unsigned char) s[n] > 0x7e || n >= max)
            return false;
    return n >= min;
}

fks_inbox_result_t
fks_inbox_submit (fks_inbox_t *self, fks_inbox_item_t *item)
{
    item->result = FKS_INBOX_FAILED;
    item->seq = 0;
    item->why[0] = '\0';
    memset (&item->result_id, 0, sizeof item->result_id);
    //  What the table's CHECKs would refuse is refused here, so it cannot fail a batch.
    bool ok = s_text_ok (item->idem_key, 1, 256) && s_text_ok (item->source, 1, 32)
              && s_text_ok (item->content_type, 0, 256) && item->alert_json
              && item->alert_json_len > 0 && item->envelope && item->envelope_len > 0
              && item->body_len <= 16u * 1024 * 1024
              && (!item->remote_addr || s_text_ok (item->remote_addr, 0, 64));
    if (!ok) {
        snprintf (item->why, sizeof item->why, "invalid inbox item");
        return FKS_INBOX_FAILED;
    }
    if (s_mono_ms () < atomic_load (&self->down_until_ms)
        && atomic_load (&self->connected) == 0) {
        snprintf (item->why, sizeof item->why, "the database is unavailable");
        fks_metric_inc (fks_metric_get1 (self->m_fail, "unavailable"));
        return FKS_INBOX_FAILED;
    }
    if (sem_init (&item->done, 0, 0) != 0) {
        snprintf (item->why, sizeof item->why, "cannot wait");
        return FKS_INBOX_FAILED;
    }
    pthread_mutex_lock (&self->mutex);
    if (self->stop || self->queued >= self->queue_max) {
        pthread_mutex_unlock (&self->mutex);
        sem_destroy (&item->done);
        snprintf (item->why, sizeof item->why, "%s",
                  self->stop ? "shutting down" : "too many alerts waiting for the database");
        fks_metric_inc (fks_metric_get1 (self->m_fail, "overloaded"));
        return FKS_INBOX_FAILED;
    }
    item->state = S_QUEUED;
    item->next = NULL;
    item->prev = self->tail;
    if (self->tail)
        self->tail->next = item;
    else
        self->head = item;
    self->tail = item;
    self->queued++;
    pthread_cond_signal (&self->cond);
    pthread_mutex_unlock (&self->mutex);

    struct timespec ts = fks_clock_after (CLOCK_MONOTONIC, (int64_t) self->timeout_ms * 1000000);
    while (sem_clockwait (&item->done, CLOCK_MONOTONIC, &ts) != 0) {
        if (errno == EINTR)
            continue;
        //  Timed out. Still queued: withdraw it, it will never be committed. Taken: a
        //  committer owns it until its statement ends (bounded by its own deadline): wait.
        pthread_mutex_lock (&self->mutex);
        bool queued = item->state == S_QUEUED;
        if (queued) {
            s_unlink (self, item);
            fks_metric_set (self->m_queue, (double) self->queued);
        }
        pthread_mutex_unlock (&self->mutex);
        if (queued) {
            sem_destroy (&item->done);
            snprintf (item->why, sizeof item->why, "timed out waiting for a database connection");
            fks_metric_inc (fks_metric_get1 (self->m_fail, "timeout"));
            return FKS_INBOX_FAILED;
        }
        while (sem_wait (&item->done) != 0 && errno == EINTR)
            ;
        break;
    }
    sem_destroy (&item->done);
    return item->result;
}

bool
fks_inbox_ready (fks_inbox_t *self)
{
    return atomic_load (&self->connected) > 0;
}

fks_inbox_t *
fks_inbox_new (const fks_inbox_opts_t *opts)
{
    if (!opts || !opts->pg_url) {
        fks_error ("inbox: a PostgreSQL URL is required");
        return NULL;
    }
    fks_inbox_opts_t o = *opts;
    if (o.committers == 0)
        o.committers = 2;
    if (o.batch_max == 0)
        o.batch_max = 256;
    if (o.queue_max == 0)
        o.queue_max = 4096;
    if (o.timeout_ms == 0)
        o.timeout_ms = 1000;
    if (o.retry_ms == 0)
        o.retry_ms = 250;
    if (o.committers < 1 || o.committers > 64 || o.batch_max < 1 || o.batch_max > 4096
        || o.queue_max < 1 || o.queue_max > 1000000 || o.timeout_ms < 1 || o.timeout_ms > 60000
        || o.retry_ms < 1 || o.retry_ms > 60000 || o.idem_window_ms < 0) {
        fks_error ("inbox: invalid options");
        return NULL;
    }
    PQconninfoOption *parsed = PQconninfoParse (o.pg_url, NULL);
    if (!parsed) {
        fks_error ("inbox: FKS_PG_URL is not a valid PostgreSQL URL");
        return NULL;
    }
    PQconninfoFree (parsed);

    fks_inbox_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cond, NULL);
    self->pg_url = strdup (o.pg_url);
    self->n_committers = o.committers;
    self->batch_max = o.batch_max;
    self->queue_max = (size_t) o.queue_max;
    self->timeout_ms = o.timeout_ms;
    self->retry_ms = o.retry_ms;
    self->idem_window_ms = o.idem_window_ms;
    self->on_commit = o.on_commit;
    self->on_commit_arg = o.on_commit_arg;
    self->committers = calloc ((size_t) o.committers, sizeof *self->committers);

    static const double batch_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
    self->m_batch = fks_metric_get (fks_histogram_family ("fks_gateway_inbox_batch_size",
        "Alerts committed per inbox statement", NULL, 0, batch_buckets,
        sizeof batch_buckets / sizeof batch_buckets[0]), NULL);
    self->m_commit_s = fks_metric_get (fks_histogram_family ("fks_gateway_inbox_commit_seconds",
        "Time to commit one inbox batch", NULL, 0, NULL, 0), NULL);
    self->m_queue = fks_metric_get (fks_gauge_family ("fks_gateway_inbox_queue",
        "Alerts waiting for a committer", NULL, 0), NULL);
    static const char *const reason_label[] = { "reason" };
    self->m_fail = fks_counter_family ("fks_gateway_inbox_failures_total",
        "Alerts that could not be committed (answered 503), by reason", reason_label, 1);

    if (!self->pg_url || !self->committers) {
        fks_inbox_destroy (&self);
        return NULL;
    }
    for (int i = 0; i < o.committers; i++) {
        s_committer_t *c = &self->committers[i];
        for (int k = 0; k < S_NPARAMS; k++)
            fks_pg_array_init (&c->params[k]);
        fks_pg_array_init (&c->lookup);
    }
    for (int i = 0; i < o.committers; i++) {
        s_committer_t *c = &self->committers[i];
        c->inbox = self;
        c->index = i;
        if (pthread_create (&c->thread, NULL, s_committer, c) != 0) {
            fks_error ("inbox: cannot start committer threads");
            fks_inbox_destroy (&self);
            return NULL;
        }
        self->started++;
    }
    return self;
}

void
fks_inbox_destroy (fks_inbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_inbox_t *self = *self_p;
    pthread_mutex_lock (&self->mutex);
    self->stop = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
    for (int i = 0; i < self->started; i++)
        pthread_join (self->committers[i].thread, NULL);
    //  Whatever is still queued fails; its requests answer 503.
    pthread_mutex_lock (&self->mutex);
    while (self->head) {
        fks_inbox_item_t *it = self->head;
        s_unlink (self, it);
        s_fail (it, "shutting down");
        it->state = S_DONE;
        sem_post (&it->done);
    }
    pthread_mutex_unlock (&self->mutex);
    if (self->committers)
        for (int i = 0; i < self->n_committers; i++) {
            s_committer_t *c = &self->committers[i];
            for (int k = 0; k < S_NPARAMS; k++)
                fks_pg_array_free (&c->params[k]);
            fks_pg_array_free (&c->lookup);
        }
    free (self->committers);
    free (self->pg_url);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}
