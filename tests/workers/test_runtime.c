/*  test_runtime.c - the worker runtime (workers/runtime.c) in this process, against a real
 *  fks-bus and PostgreSQL: one transaction per batch with the consumed ids and the outbox,
 *  publish after commit, redelivery made harmless, retries, failures recorded, draining.
 *
 *  Integration suite: needs FKS_TEST_PG_URL and FKS_TEST_REDIS_URL (tools/test.sh). The test
 *  worker consumes data.quality (its `detail` tells the handler what to do) and produces
 *  security.event, and writes its effect into a table of the test's own (rt_effects). The
 *  routing tests key messages by their `symbol` and number them in `detail` ("n:<seq>"); the
 *  handler notes which thread handled which.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "tests/workers/harness.h"
#include "workers/runtime.h"

#define REDIS_DB 12
#define WAIT_MS  20000

static h_stack_t s;
static atomic_int s_calls;          /* handler calls */
static atomic_int s_retries_left;   /* "retry" messages fail this many times first */
static atomic_int s_fail_calls;     /* on_fail calls */
static atomic_int s_started;        /* "slow" messages started */
static atomic_bool s_gate_open;     /* the first "block" call waits until this is true */
static atomic_int s_block_calls;    /* "block" calls so far */
static atomic_int s_blocked;        /* calls waiting at the gate now */

//  What the handler saw of numbered messages ("n:<seq>"): key, number, thread, in call order.
#define MAX_SEEN 1024
typedef struct {
    char symbol[16];
    int seq;
    pthread_t thread;
    const void *replica;            /* the runner whose worker handled it (the def's arg) */
    uint32_t attempt;
} s_seen_t;
static s_seen_t s_seen[MAX_SEEN];
static size_t s_n_seen;
static pthread_mutex_t s_seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void
s_note (fks_worker_tx_t *tx, const fks_envelope_t *env, const char *detail, const void *replica)
{
    if (strncmp (detail, "n:", 2) != 0)
        return;
    pthread_mutex_lock (&s_seen_lock);
    if (s_n_seen < MAX_SEEN) {
        s_seen_t *e = &s_seen[s_n_seen++];
        fks_envelope_get_str (env, "symbol", e->symbol, sizeof e->symbol);
        e->seq = atoi (detail + 2);
        e->thread = pthread_self ();
        e->replica = replica;
        e->attempt = fks_worker_attempt (tx);
    }
    pthread_mutex_unlock (&s_seen_lock);
}

//  The test worker's routing key: its symbol.
static uint64_t
s_route (const fks_envelope_t *env, void *arg)
{
    (void) arg;
    char symbol[16];
    if (fks_envelope_get_str (env, "symbol", symbol, sizeof symbol) != 0)
        return 0;
    return fks_worker_key (symbol);
}

static const fks_pg_stmt_t s_stmts[] = {
    { "rt_insert", "INSERT INTO rt_effects (msg_id, detail) VALUES ($1, $2)", 2 },
    { "rt_xid", "SELECT txid_current () % 4294967296, $1::int", 1 },
    { "rt_note", "INSERT INTO rt_prefetch (xid, seen) VALUES ($1, $2)", 2 },
};

//  The prefetch test's hooks: prefetch asks for the transaction's id and says how many
//  messages it saw; begin writes both down, in the same transaction as the handlers' rows.
static bool s_with_prefetch;
static int s_statement_timeout_ms;  /* the workers' FKS_PG_STATEMENT_TIMEOUT_MS */
static __thread char s_seen_text[16];

static size_t
s_prefetch (fks_worker_tx_t *tx, fks_pg_call_t *calls, size_t max, void *arg)
{
    (void) arg;
    static __thread const char *values[1];
    snprintf (s_seen_text, sizeof s_seen_text, "%zu", fks_worker_batch_size (tx));
    values[0] = s_seen_text;
    cr_assert_geq (max, 1);
    calls[0] = (fks_pg_call_t) { "rt_xid", 1, values, NULL, NULL };
    return 1;
}

static int
s_begin (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    const PGresult *r = fks_worker_prefetched (tx, 0);
    if (!r || fks_worker_prefetched (tx, 1))
        return fks_worker_fail (tx, "the prefetched result is missing, or one too many");
    const char *values[2] = { PQgetvalue (r, 0, 0), PQgetvalue (r, 0, 1) };
    fks_pg_err_t err;
    PGresult *w = fks_pg_exec (fks_worker_pg (tx), "rt_note", 2, values, NULL, NULL, &err);
    if (!w)
        return fks_worker_pg_error (tx, &err, "rt_note");
    PQclear (w);
    return FKS_WORKER_OK;
}

//  A handler thread that hangs: the first call waits until the test opens the gate (60 s at
//  most, so that a failed test cannot hold its process for ever); copies of its message go on.
static void
s_block_at_gate (void)
{
    if (atomic_fetch_add (&s_block_calls, 1) > 0)
        return;
    atomic_fetch_add (&s_blocked, 1);
    for (int i = 0; i < 6000 && !atomic_load (&s_gate_open); i++)
        usleep (10000);
    atomic_fetch_sub (&s_blocked, 1);
}

static int
s_handler (fks_worker_tx_t *tx, const fks_envelope_t *env, void *arg)
{
    atomic_fetch_add (&s_calls, 1);
    char detail[64] = "";
    fks_envelope_get_str (env, "detail", detail, sizeof detail);
    char id[FKS_ID_STR_SIZE];
    fks_id_format (&fks_envelope_hdr (env)->id, id);
    const char *values[2] = { id, detail };
    if (strcmp (detail, "hang") == 0 && fks_worker_attempt (tx) == 1)
        sleep (9);                  /* a first attempt stuck without a timeout */
    if (strcmp (detail, "block") == 0)
        s_block_at_gate ();         /* stuck (inside its transaction) until the test says */
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "rt_insert", 2, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "rt_insert");
    PQclear (r);
    if (strcmp (detail, "fail") == 0)
        return fks_worker_fail (tx, "this message can never work");
    if (strcmp (detail, "retry") == 0 && atomic_fetch_sub (&s_retries_left, 1) > 0)
        return fks_worker_retry (tx, "a transient problem");
    if (strcmp (detail, "slow") == 0) {
        atomic_fetch_add (&s_started, 1);
        usleep (300000);
    }
    s_note (tx, env, detail, arg);
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 3);
    fks_pack_kv_str (pk, "kind", "rt_handled");
    fks_pack_kv_str (pk, "source_addr", "127.0.0.1");
    fks_pack_kv_str (pk, "detail", detail);
    return fks_worker_emit (tx, "security.event", NULL, NULL);
}

static atomic_int s_flush_fail;     /* flushes of a batch to fail */
static atomic_int s_flushed_alone;  /* flushes of single messages */

static int
s_flush (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    if (fks_worker_batch_size (tx) > 1 && atomic_fetch_sub (&s_flush_fail, 1) > 0)
        return fks_worker_fail (tx, "a gathered write met a conflict");
    if (fks_worker_batch_size (tx) == 1)
        atomic_fetch_add (&s_flushed_alone, 1);
    return FKS_WORKER_OK;
}

static int
s_on_fail (fks_worker_tx_t *tx, const fks_envelope_t *env, const char *reason, void *arg)
{
    (void) env;
    (void) arg;
    atomic_fetch_add (&s_fail_calls, 1);
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 3);
    fks_pack_kv_str (pk, "kind", "rt_failed");
    fks_pack_kv_str (pk, "source_addr", "127.0.0.1");
    fks_pack_kv_str (pk, "detail", reason);
    return fks_worker_emit (tx, "security.event", NULL, NULL);
}

typedef struct {
    fks_worker_def_t def;
    fks_worker_t *w;
    int stop_fd;
    pthread_t thread;
    bool running;
    int rc;
} s_runner_t;

static s_runner_t *s_current;       /* stopped by the teardown if a test failed midway */
static s_runner_t *s_second;        /* a second replica, likewise */

static void *
s_run (void *arg)
{
    s_runner_t *r = arg;
    r->rc = fks_worker_run (r->w, r->stop_fd);
    return NULL;
}

static const char *s_prefixes[] = { "data.quality" };

static void
s_start_with (s_runner_t *r, bool with_on_fail, int batch, int threads,
              fks_worker_route_fn *route)
{
    memset (r, 0, sizeof *r);
    r->def = (fks_worker_def_t) {
        .program = "rt-test", .group = "rt", .src = "rt", .port_var = NULL,
        .default_port = 0, .prefixes = s_prefixes, .n_prefixes = 1,
        .stmts = s_stmts, .n_stmts = sizeof s_stmts / sizeof s_stmts[0],
        .handler = s_handler, .on_fail = with_on_fail ? s_on_fail : NULL,
        .flush = s_flush, .route = route,
        .prefetch = s_with_prefetch ? s_prefetch : NULL,
        .begin = s_with_prefetch ? s_begin : NULL,
        .arg = r,
    };
    fks_worker_cfg_t cfg = {
        .env = "test", .pg_url = (char *) h_db_url (), .bus_url = s.bus_url,
        .http_bind = "127.0.0.1", .port = 0, .threads = threads, .batch = batch, .window = 64,
        .statement_timeout_ms = s_statement_timeout_ms,
    };
    char redis[320];
    snprintf (redis, sizeof redis, "%s", s.redis_env + strlen ("FKS_REDIS_URL="));
    cfg.redis_url = redis;
    r->w = fks_worker_new (&r->def, &cfg);
    cr_assert (r->w);
    r->stop_fd = eventfd (0, EFD_CLOEXEC);
    pthread_create (&r->thread, NULL, s_run, r);
    r->running = true;
    s_current = r;
    for (int i = 0; i < 200 && fks_worker_port (r->w) <= 0; i++)
        usleep (20000);
    cr_assert (fks_worker_port (r->w) > 0, "the worker did not start");
    cr_assert (h_wait_http (fks_worker_port (r->w), "/ready", 10000), "not ready");
}

static void
s_start (s_runner_t *r, bool with_on_fail, int batch)
{
    s_start_with (r, with_on_fail, batch, 2, NULL);
}

static int
s_stop (s_runner_t *r)
{
    if (!r->running)
        return r->rc;
    r->running = false;
    uint64_t one = 1;
    cr_assert_eq (write (r->stop_fd, &one, sizeof one), (ssize_t) sizeof one);
    pthread_join (r->thread, NULL);
    close (r->stop_fd);
    fks_worker_destroy (&r->w);
    return r->rc;
}

static const char *const *s_bus_env;     /* the bus's extra settings (a test's own setup) */

static void
s_setup (void)
{
    atomic_store (&s_calls, 0);
    atomic_store (&s_fail_calls, 0);
    atomic_store (&s_retries_left, 0);
    atomic_store (&s_started, 0);
    atomic_store (&s_gate_open, false);
    atomic_store (&s_blocked, 0);
    atomic_store (&s_block_calls, 0);
    atomic_store (&s_flush_fail, 0);
    atomic_store (&s_flushed_alone, 0);
    pthread_mutex_lock (&s_seen_lock);
    s_n_seen = 0;
    pthread_mutex_unlock (&s_seen_lock);
    h_stack_opts_t o = { .redis_db = REDIS_DB, .extra_env = s_bus_env };
    h_stack_start (&s, &o);
    h_sql_exec ("CREATE TABLE rt_effects (msg_id uuid PRIMARY KEY, detail text)");
    h_sql_exec ("CREATE TABLE rt_prefetch (xid bigint PRIMARY KEY, seen int NOT NULL)");
    s_with_prefetch = false;
    s_statement_timeout_ms = 0;
}

static void
s_teardown (void)
{
    atomic_store (&s_gate_open, true);      /* a thread blocked by a failed test goes on */
    if (s_current)
        s_stop (s_current);
    s_current = NULL;
    if (s_second)
        s_stop (s_second);
    s_second = NULL;
    h_stack_stop (&s);
}

//  Publishes a data.quality message (stored in events first, as producers do); returns its
//  encoded envelope for publishing again.
static void
s_send_to (const char *symbol, const char *detail, uint8_t **copy, size_t *len)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    fks_pack_kv_str (&pk, "symbol", symbol);
    fks_pack_kv_str (&pk, "kind", "gap");
    fks_pack_kv_str (&pk, "detail", detail);
    fks_id_t corr;
    fks_id_new (&corr);
    msgpack_sbuffer frame;
    h_store_body ("data.quality", "data", &corr, NULL, body.data, body.size, &frame);
    h_publish (&s, "data.quality", (const uint8_t *) frame.data, frame.size);
    if (copy) {
        *copy = malloc (frame.size);
        memcpy (*copy, frame.data, frame.size);
        *len = frame.size;
    }
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
}

static void
s_send (const char *detail, uint8_t **copy, size_t *len)
{
    s_send_to ("BTCUSDT", detail, copy, len);
}

Test (runtime, a_message_delivered_twice_takes_effect_once, .init = s_setup, .fini = s_teardown,
      .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 16);
    uint8_t *copy;
    size_t len;
    s_send ("ok", &copy, &len);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 1, WAIT_MS), 1);
    //  Delivered again (the broker ignores a publish while the first delivery is still in
    //  flight, so send until two more deliveries came): acked without running the handler.
    double dup = 0;
    for (int i = 0; i < 200 && dup < 2; i++) {
        h_publish (&s, "data.quality", copy, len);
        usleep (50000);
        dup = h_metric (fks_worker_port (r.w),
                        "fks_worker_messages_total{group=\"rt\",result=\"duplicate\"}");
    }
    free (copy);
    cr_assert (dup >= 2, "redeliveries seen: %g", dup);
    cr_assert_eq (atomic_load (&s_calls), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 1);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, produced_envelopes_are_committed_then_published_with_cause_and_corr,
      .init = s_setup, .fini = s_teardown, .timeout = 60)
{
    h_stream_ready (&s);
    static s_runner_t r;
    s_start (&r, true, 16);
    s_send ("ok", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'security.event'", 1,
                              WAIT_MS), 1);
    cr_assert_eq (h_sql_int (
        "SELECT count(*) FROM events o JOIN events i ON i.type = 'data.quality'"
        " AND o.cause = i.id AND o.corr = i.corr WHERE o.type = 'security.event'"
        " AND o.src = 'rt'"), 1, "the outbox row carries cause, corr and src");
    char *corr = h_sql_text ("SELECT corr FROM events WHERE type = 'security.event'");
    fks_id_t c;
    cr_assert_eq (fks_id_parse (corr, strlen (corr), &c), 0);
    free (corr);
    char types[4][64];
    cr_assert_eq (h_stream_types (&s, &c, types, 2, 10000), 2);
    cr_assert_str_eq (types[0], "data.quality");
    cr_assert_str_eq (types[1], "security.event", "published after its commit");
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_transient_failure_is_retried_until_it_works, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    atomic_store (&s_retries_left, 2);
    static s_runner_t r;
    s_start (&r, true, 16);
    s_send ("retry", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'security.event'", 1,
                              WAIT_MS), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 1,
                  "the failed attempts were rolled back");
    cr_assert_eq (atomic_load (&s_calls), 3);
    cr_assert_eq (h_metric (fks_worker_port (r.w), "fks_worker_retries_total{group=\"rt\"}"), 2);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
    cr_assert_eq (s_stop (&r), 0);
}

//  Polls a metric of the worker on port until it reaches want (or timeout_ms passes); its value.
static double
s_wait_metric (int port, const char *series, double want, int timeout_ms)
{
    double v = h_metric (port, series);
    for (int waited = 0; v < want && waited < timeout_ms; waited += 50) {
        usleep (50000);
        v = h_metric (port, series);
    }
    return v;
}

//  A table lock on rt_effects in an open transaction of another session, and its release.
static PGconn *
s_lock_effects (void)
{
    PGconn *holder = PQconnectdb (h_db_url ());
    cr_assert (PQstatus (holder) == CONNECTION_OK);
    PGresult *res = PQexec (holder, "BEGIN; LOCK TABLE rt_effects IN EXCLUSIVE MODE");
    cr_assert (PQresultStatus (res) == PGRES_COMMAND_OK, "%s", PQerrorMessage (holder));
    PQclear (res);
    return holder;
}

static void
s_unlock_effects (PGconn *holder)
{
    PQclear (PQexec (holder, "COMMIT"));
    PQfinish (holder);
}

//  A lock held elsewhere (here a table lock in an open transaction) does not hold a handler
//  thread for ever: its statement is cancelled after FKS_PG_STATEMENT_TIMEOUT_MS, retried with
//  the transient failures' pause, and goes through once the lock is released.
Test (runtime, a_statement_waiting_on_a_lock_times_out_and_is_retried, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    s_statement_timeout_ms = 200;
    static s_runner_t r;
    s_start (&r, true, 16);
    PGconn *holder = s_lock_effects ();
    s_send ("locked", NULL, NULL);
    cr_assert_geq (s_wait_metric (fks_worker_port (r.w),
                                  "fks_worker_retries_total{group=\"rt\"}", 2, WAIT_MS), 2,
                   "the waiting insert was not cancelled");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 0);
    s_unlock_effects (holder);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM events WHERE type = 'security.event'", 1,
                              WAIT_MS), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects WHERE detail = 'locked'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_permanent_failure_is_recorded_by_the_worker, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 16);
    s_send ("fail", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'", 1, WAIT_MS), 1);
    cr_assert_eq (atomic_load (&s_fail_calls), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 0,
                  "the handler's effect was rolled back");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
    cr_assert_eq (h_metric (fks_worker_port (r.w),
                            "fks_worker_messages_total{group=\"rt\",result=\"failed\"}"), 1);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_permanent_failure_without_a_record_becomes_a_dead_letter, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, false, 16);
    s_send ("fail", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM dead_letters WHERE grp = 'rt'"
                              " AND reason LIKE '%can never work%'", 1, WAIT_MS), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 0);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, one_bad_message_does_not_hold_back_its_batch, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    //  Messages sent while the group has no replica wait in the broker, so they come at once
    //  when one joins, and make a batch.
    s_start (&r, true, 64);
    cr_assert_eq (s_stop (&r), 0);
    for (int i = 0; i < 20; i++)
        s_send (i == 7 ? "fail" : "ok", NULL, NULL);
    s_start (&r, true, 64);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'", 20, WAIT_MS), 20);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 19);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 20,
                  "19 handled and 1 failure record");
    cr_assert_eq (atomic_load (&s_fail_calls), 1);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_batch_whose_flush_fails_is_handled_message_by_message, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 64);
    cr_assert_eq (s_stop (&r), 0);
    for (int i = 0; i < 10; i++)
        s_send ("ok", NULL, NULL);
    atomic_store (&s_flush_fail, 1000);
    s_start (&r, true, 64);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 10, WAIT_MS), 10);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 10);
    cr_assert_eq (atomic_load (&s_fail_calls), 0, "nothing was a failure");
    cr_assert (atomic_load (&s_flushed_alone) >= 10 - 1);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, stopping_drains_what_is_in_hand_and_hands_back_the_rest, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 1);
    for (int i = 0; i < 10; i++)
        s_send ("slow", NULL, NULL);
    for (int i = 0; i < 250 && atomic_load (&s_started) == 0; i++)
        usleep (20000);
    cr_assert (atomic_load (&s_started) > 0);
    cr_assert_eq (s_stop (&r), 0, "a drained stop returns 0");
    long long done = h_sql_int ("SELECT count(*) FROM rt_effects");
    cr_assert (done >= 1, "what was started was finished and committed");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), done);
    //  A new replica finishes the rest, each exactly once.
    s_start (&r, true, 16);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 10, WAIT_MS), 10);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 10);
    cr_assert_eq (s_stop (&r), 0);
}

//  The thread that handled the numbered messages of symbol, checking on the way that there
//  was one and that it saw them in the order they were sent. Returns how many it saw.
static size_t
s_one_thread_in_order (const char *symbol, pthread_t *thread)
{
    size_t n = 0;
    int last = -1;
    for (size_t i = 0; i < s_n_seen; i++) {
        if (strcmp (s_seen[i].symbol, symbol) != 0)
            continue;
        if (n == 0)
            *thread = s_seen[i].thread;
        cr_assert (pthread_equal (*thread, s_seen[i].thread),
                   "%s: message %d handled on another thread than the first", symbol,
                   s_seen[i].seq);
        cr_assert (s_seen[i].seq > last, "%s: message %d handled after message %d", symbol,
                   s_seen[i].seq, last);
        last = s_seen[i].seq;
        n++;
    }
    return n;
}

Test (runtime, routed_messages_of_one_key_are_handled_once_on_one_thread_in_bus_order,
      .init = s_setup, .fini = s_teardown, .timeout = 120)
{
    enum { KEYS = 6, PER_KEY = 40, N = KEYS * PER_KEY };
    static s_runner_t r;
    s_start_with (&r, true, 16, 4, s_route);
    for (int i = 0; i < N; i++) {
        char symbol[16], detail[32];
        snprintf (symbol, sizeof symbol, "KEY%d", i % KEYS);
        snprintf (detail, sizeof detail, "n:%d", i);
        s_send_to (symbol, detail, NULL, NULL);
    }
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'", N, WAIT_MS), N);
    cr_assert_eq (s_stop (&r), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), N);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), N);
    cr_assert_eq (atomic_load (&s_calls), N, "each message was handled exactly once");
    cr_assert_eq (s_n_seen, (size_t) N);
    for (int k = 0; k < KEYS; k++) {
        char symbol[16];
        snprintf (symbol, sizeof symbol, "KEY%d", k);
        pthread_t thread;
        cr_assert_eq (s_one_thread_in_order (symbol, &thread), (size_t) PER_KEY, "%s", symbol);
    }
}

Test (runtime, routed_keys_spread_over_the_threads_by_key_modulo_threads, .init = s_setup,
      .fini = s_teardown, .timeout = 120)
{
    enum { KEYS = 32, THREADS = 4 };
    static s_runner_t r;
    s_start_with (&r, true, 16, THREADS, s_route);
    for (int i = 0; i < KEYS; i++) {
        char symbol[16], detail[32];
        snprintf (symbol, sizeof symbol, "SYM%d", i);
        snprintf (detail, sizeof detail, "n:%d", i);
        s_send_to (symbol, detail, NULL, NULL);
    }
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", KEYS, WAIT_MS), KEYS);
    cr_assert_eq (s_stop (&r), 0);
    //  Two keys share a thread exactly when their keys agree modulo the thread count.
    pthread_t thread[KEYS];
    int buckets = 0;
    bool bucket_used[THREADS] = { false };
    for (int i = 0; i < KEYS; i++) {
        char symbol[16];
        snprintf (symbol, sizeof symbol, "SYM%d", i);
        cr_assert_eq (s_one_thread_in_order (symbol, &thread[i]), 1, "%s", symbol);
        uint64_t b = fks_worker_key (symbol) % THREADS;
        if (!bucket_used[b])
            buckets++;
        bucket_used[b] = true;
        for (int j = 0; j < i; j++) {
            char other[16];
            snprintf (other, sizeof other, "SYM%d", j);
            bool same_bucket = fks_worker_key (other) % THREADS == b;
            cr_assert_eq (pthread_equal (thread[i], thread[j]) != 0, same_bucket,
                          "%s and %s: same thread %d, same key modulo %d %d", symbol, other,
                          pthread_equal (thread[i], thread[j]) != 0, THREADS, same_bucket);
        }
    }
    cr_assert (buckets > 1, "%d distinct keys fell on %d thread(s)", KEYS, buckets);
}

Test (runtime, routed_messages_waiting_in_a_queue_are_handed_back_on_stop, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    //  One key, batches of 1, slow messages: the first is handled while the others wait in
    //  that thread's queue.
    s_start_with (&r, true, 1, 4, s_route);
    for (int i = 0; i < 10; i++)
        s_send_to ("ONEKEY", "slow", NULL, NULL);
    for (int i = 0; i < 250 && atomic_load (&s_started) == 0; i++)
        usleep (20000);
    cr_assert (atomic_load (&s_started) > 0);
    cr_assert_eq (s_stop (&r), 0, "a drained stop returns 0");
    long long done = h_sql_int ("SELECT count(*) FROM rt_effects");
    cr_assert (done >= 1, "what was started was finished and committed");
    cr_assert (done < 10, "messages were still queued when it stopped (%lld done)", done);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), done);
    //  A new replica finishes the rest, each exactly once.
    s_start_with (&r, true, 16, 4, s_route);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 10, WAIT_MS), 10);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 10);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM dead_letters"), 0);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_route_hook_with_one_thread_handles_everything, .init = s_setup,
      .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_start_with (&r, true, 16, 1, s_route);
    for (int i = 0; i < 20; i++) {
        char symbol[16], detail[32];
        snprintf (symbol, sizeof symbol, "ONE%d", i % 3);
        snprintf (detail, sizeof detail, "n:%d", i);
        s_send_to (symbol, detail, NULL, NULL);
    }
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 20, WAIT_MS), 20);
    cr_assert_eq (s_stop (&r), 0);
    cr_assert_eq (atomic_load (&s_calls), 20);
}

//  The prefetch hook's reads run in the transaction of the batch (BEGIN, consumed, then them,
//  one round trip) and their results reach begin: every handler row was written by a
//  transaction whose prefetched id begin recorded, and prefetch saw whole batches.
Test (runtime, a_prefetch_hooks_reads_run_in_the_batchs_transaction_and_reach_begin,
      .init = s_setup, .fini = s_teardown, .timeout = 60)
{
    static s_runner_t r;
    s_with_prefetch = true;
    s_start (&r, true, 64);
    cr_assert_eq (s_stop (&r), 0);
    for (int i = 0; i < 30; i++)
        s_send ("ok", NULL, NULL);
    s_start (&r, true, 64);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 30, WAIT_MS), 30);
    cr_assert_eq (s_stop (&r), 0);
    cr_assert_eq (atomic_load (&s_fail_calls), 0, "no message failed");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects e WHERE NOT EXISTS"
                             " (SELECT 1 FROM rt_prefetch p"
                             "   WHERE p.xid = e.xmin::text::bigint)"), 0,
                  "a row was written outside a transaction whose prefetch begin saw");
    cr_assert_geq (h_sql_int ("SELECT count(*) FROM rt_prefetch"), 1);
    cr_assert_geq (h_sql_int ("SELECT max (seen) FROM rt_prefetch"), 2,
                   "prefetch saw the batches, not single messages");
    cr_assert_eq (h_sql_int ("SELECT sum (seen) FROM rt_prefetch p WHERE EXISTS"
                             " (SELECT 1 FROM rt_effects e WHERE p.xid = e.xmin::text::bigint)"),
                  30, "each message was seen by exactly one committed prefetch");
}

Test (runtime, serves_health_ready_and_metrics, .init = s_setup, .fini = s_teardown,
      .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 16);
    int port = fks_worker_port (r.w);
    char *body = NULL;
    cr_assert_eq (h_http ("GET", port, "/health", NULL, NULL, NULL, &body), 200);
    cr_assert (strstr (body, "\"healthy\""), "%s", body);
    free (body);
    cr_assert_eq (h_http ("GET", port, "/ready", NULL, NULL, NULL, &body), 200, "%s", body);
    free (body);
    s_send ("ok", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 1, WAIT_MS), 1);
    cr_assert_eq (h_http ("GET", port, "/metrics", NULL, NULL, NULL, &body), 200);
    cr_assert (strstr (body, "fks_worker_handler_seconds_count{group=\"rt\"} 1"), "%s", body);
    cr_assert (strstr (body, "fks_worker_in_flight{group=\"rt\"}"), "%s", body);
    free (body);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime_cfg, configuration_errors_name_the_variable)
{
    fks_worker_def_t def = { .program = "x", .group = "x", .port_var = "FKS_X_PORT",
                             .default_port = 8002 };
    fks_worker_cfg_t cfg;
    char err[256];
    unsetenv ("FKS_PG_URL");
    unsetenv ("FKS_PG_URL_FILE");
    cr_assert_eq (fks_worker_cfg_load (&def, &cfg, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_PG_URL is required"), "%s", err);
    setenv ("FKS_PG_URL", "postgresql://x@127.0.0.1/x", 1);
    setenv ("FKS_REDIS_URL", "redis://127.0.0.1:6379/0", 1);
    setenv ("FKS_WORKER_BATCH", "0", 1);
    cr_assert_eq (fks_worker_cfg_load (&def, &cfg, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_WORKER_BATCH"), "%s", err);
    unsetenv ("FKS_WORKER_BATCH");
    cr_assert_eq (fks_worker_cfg_load (&def, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq (cfg.port, 8002);
    cr_assert_eq (cfg.threads, 2);
    cr_assert_eq (cfg.statement_timeout_ms, 30000);
    fks_worker_cfg_free (&cfg);
    setenv ("FKS_PG_STATEMENT_TIMEOUT_MS", "-1", 1);
    cr_assert_eq (fks_worker_cfg_load (&def, &cfg, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_PG_STATEMENT_TIMEOUT_MS"), "%s", err);
    unsetenv ("FKS_PG_STATEMENT_TIMEOUT_MS");
    unsetenv ("FKS_PG_URL");
    unsetenv ("FKS_REDIS_URL");
}

Test (runtime_num, numbers_for_numeric_columns_are_exact_decimals)
{
    char buf[48];
    cr_assert_str_eq (fks_worker_num (buf, 0.1 + 0.2), "0.3");
    cr_assert_str_eq (fks_worker_num (buf, 42000), "42000");
    cr_assert_str_eq (fks_worker_num (buf, -0.0), "0");
    cr_assert_str_eq (fks_worker_num (buf, 1e-7), "1e-07");
    cr_assert_float_eq (fks_worker_parse_num ("12.5", 0), 12.5, 1e-12);
    cr_assert_float_eq (fks_worker_parse_num ("", 3), 3, 1e-12);
    cr_assert_float_eq (fks_worker_parse_num ("abc", 3), 3, 1e-12);
}

// ---------------------------------------------------------------------------------------------
//  Leases: what a replica holds is never taken back while it works on it

//  A short ack deadline and two deliveries before a dead letter: without renewals, anything
//  held for more than about 4 s would become a dead letter.
static const char *const s_short_lease_env[] = { "FKS_BUS_ACK_DEADLINE=2s",
                                                 "FKS_BUS_MAX_DELIVERIES=2", NULL };

static void
s_setup_short_lease (void)
{
    s_bus_env = s_short_lease_env;
    s_setup ();
    s_bus_env = NULL;
}

static long long
s_dead_letters (void)
{
    return h_sql_int ("SELECT count(*) FROM dead_letters WHERE grp = 'rt'");
}

//  Messages routed to a thread but never started, given back by two graceful stops in a row,
//  are released, not taken back as lost: no attempt is counted, so with two deliveries before
//  a dead letter none becomes one (a rolling restart or a scale-down must not use up a
//  message's deliveries).
static const char *const s_two_deliveries_env[] = { "FKS_BUS_ACK_DEADLINE=10s",
                                                    "FKS_BUS_MAX_DELIVERIES=2", NULL };

//  Two deliveries before a dead letter, with leases that outlast a stop (the ops server's
//  stop and the in-flight handler took 2 s under ASan, as long as a 2 s lease: a lapse then
//  counted an attempt of its own, which is not what the test is about).
static void
s_setup_two_deliveries (void)
{
    s_bus_env = s_two_deliveries_env;
    s_setup ();
    s_bus_env = NULL;
}

Test (runtime, routed_messages_handed_back_on_stop_count_no_attempt,
      .init = s_setup_two_deliveries, .fini = s_teardown, .timeout = 120)
{
    static s_runner_t r;
    s_start_with (&r, true, 1, 4, s_route);
    for (int i = 0; i < 10; i++)
        s_send_to ("ONEKEY", "slow", NULL, NULL);
    for (int round = 0; round < 2; round++) {
        if (round > 0)
            s_start_with (&r, true, 1, 4, s_route);
        int before = atomic_load (&s_started);
        for (int i = 0; i < 250 && atomic_load (&s_started) == before; i++)
            usleep (20000);
        cr_assert_eq (s_stop (&r), 0);
    }
    cr_assert_lt (h_sql_int ("SELECT count(*) FROM rt_effects"), 10,
                  "nothing was left queued at the stops");
    s_start_with (&r, true, 16, 4, s_route);
    long long done = h_wait_int ("SELECT count(*) FROM rt_effects", 10, 15000);
    long long dead = s_dead_letters ();
    cr_assert_eq (s_stop (&r), 0);
    cr_assert_eq (dead, 0, "%lld message(s) never handled became dead letters; %lld of 10 done",
                  dead, done);
    cr_assert_eq (done, 10);
}

//  Sends a "block" message of key and n numbered ones ("n:0"...) behind it; returns once the
//  first blocks its handler thread (at the gate).
static void
s_block_then (const char *key, int n)
{
    s_send_to (key, "block", NULL, NULL);
    for (int i = 0; i < n; i++) {
        char d[16];
        snprintf (d, sizeof d, "n:%d", i);
        s_send_to (key, d, NULL, NULL);
    }
    for (int i = 0; i < 1000 && atomic_load (&s_blocked) == 0; i++)
        usleep (10000);
    cr_assert_eq (atomic_load (&s_blocked), 1, "the first message did not block its thread");
}

//  A replica stopped (SIGTERM) while one handler is blocked (the gate, which only the test
//  opens, so that "before" below does not depend on timing) and N messages wait behind it,
//  in its bus client's buffer (no route hook) or in the thread's queue (routed): the other
//  replica handles all N before the blocked handler finishes, each once and on its first
//  attempt (handed back, not taken back). Before DRAIN they went back only with the LEAVE,
//  after the blocked handler had finished: the other replica handled none while it was
//  blocked.
static void
s_stop_hands_the_queued_to_the_other_replica (fks_worker_route_fn *route)
{
    enum { N = 9 };
    static s_runner_t r1, r2;
    int threads = route ? 2 : 1;
    s_start_with (&r1, true, 1, threads, route);
    s_block_then ("KA", N);
    //  All of them are with the first replica before the second joins.
    double held = -1;
    for (int i = 0; i < 200 && held != N + 1; i++) {
        usleep (50000);
        held = h_metric (s.bus_port, "fks_bus_in_flight{group=\"rt\"}");
    }
    cr_assert_eq (held, N + 1, "the first replica holds %g message(s), not %d", held, N + 1);
    s_start_with (&r2, true, 1, threads, route);
    s_second = &r1;                             /* s_current is r2 now */

    //  SIGTERM to the first replica (its stop fd), not waiting for it: it stays blocked.
    uint64_t one = 1;
    cr_assert_eq (write (r1.stop_fd, &one, sizeof one), (ssize_t) sizeof one);
    long long moved = h_wait_int ("SELECT count(*) FROM rt_effects WHERE detail LIKE 'n:%'", N,
                                  20000);
    cr_assert_eq (atomic_load (&s_blocked), 1, "the blocked handler went on by itself");
    cr_assert_eq (moved, N, "%lld of the %d queued messages were handled while the stopping "
                  "replica's handler was blocked", moved, N);

    atomic_store (&s_gate_open, true);
    cr_assert_eq (s_stop (&r1), 0, "a drained stop returns 0");
    s_second = NULL;
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", N + 1, WAIT_MS), N + 1);
    usleep (300000);
    cr_assert_eq (s_stop (&r2), 0);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), N + 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), N + 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), N + 1,
                  "a message's effect was applied twice");
    cr_assert_eq (atomic_load (&s_block_calls), 1, "the blocked message was handled twice");
    cr_assert_eq (s_dead_letters (), 0);
    cr_assert_eq (s_n_seen, (size_t) N, "%zu calls for %d queued messages", s_n_seen, N);
    int last = -1;
    for (size_t i = 0; i < s_n_seen; i++) {
        cr_assert_eq (s_seen[i].replica, &r2, "n:%d was handled by the stopping replica",
                      s_seen[i].seq);
        cr_assert_eq (s_seen[i].attempt, 1, "n:%d: attempt %u, not its first", s_seen[i].seq,
                      s_seen[i].attempt);
        cr_assert_gt (s_seen[i].seq, last, "n:%d after n:%d", s_seen[i].seq, last);
        last = s_seen[i].seq;
    }
}

Test (runtime, a_stopping_replicas_buffered_messages_go_to_the_other_replica_at_once,
      .init = s_setup, .fini = s_teardown, .timeout = 120)
{
    s_stop_hands_the_queued_to_the_other_replica (NULL);
}

Test (runtime, a_stopping_replicas_routed_queue_goes_to_the_other_replica_at_once,
      .init = s_setup, .fini = s_teardown, .timeout = 120)
{
    s_stop_hands_the_queued_to_the_other_replica (s_route);
}

//  One message that fails 7 times (6-11 s of back-off) and 9 that wait behind it: in the
//  thread's batch while it is retried alone (batch 64), or in the bus client's buffer (batch
//  1). Every one takes effect once, and none becomes a dead letter.
static void
s_wait_behind_a_retry (int batch)
{
    static s_runner_t r;
    s_start_with (&r, true, batch, 1, NULL);        /* the group exists: messages wait for it */
    cr_assert_eq (s_stop (&r), 0);
    s_send ("retry", NULL, NULL);
    for (int i = 0; i < 9; i++)
        s_send ("ok", NULL, NULL);
    atomic_store (&s_retries_left, 7);
    s_start_with (&r, true, batch, 1, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 10, 60000), 10);
    usleep (500000);
    cr_assert_eq (s_dead_letters (), 0, "messages waiting behind a retry became dead letters");
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), 10);
    cr_assert_eq (s_stop (&r), 0);
}

Test (runtime, a_batch_waiting_while_one_of_it_is_retried_keeps_its_lease,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 120)
{
    s_wait_behind_a_retry (64);
}

Test (runtime, deliveries_buffered_behind_a_retry_keep_their_lease,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 120)
{
    s_wait_behind_a_retry (1);
}

//  An attempt that waits on a lock for longer than the ack deadline (here the statement
//  timeout is the deadline, as the defaults have it: 30 s and 30 s) keeps its message.
Test (runtime, an_attempt_longer_than_the_ack_deadline_keeps_its_lease,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 120)
{
    s_statement_timeout_ms = 2000;
    static s_runner_t r;
    s_start (&r, true, 16);
    PGconn *holder = s_lock_effects ();
    s_send ("locked", NULL, NULL);
    sleep (7);
    s_unlock_effects (holder);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 1, WAIT_MS), 1);
    usleep (500000);
    cr_assert_eq (s_dead_letters (), 0, "a message held through a lock wait became a dead letter");
    cr_assert_eq (s_stop (&r), 0);
}

//  A message whose failure on_fail records is counted once, as failed (not also duplicate).
Test (runtime, a_recorded_failure_counts_as_failed_only, .init = s_setup, .fini = s_teardown,
      .timeout = 60)
{
    static s_runner_t r;
    s_start (&r, true, 16);
    s_send ("fail", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'", 1, WAIT_MS), 1);
    int port = fks_worker_port (r.w);
    double failed = 0;
    for (int i = 0; i < 100 && failed < 1; i++) {
        failed = h_metric (port, "fks_worker_messages_total{group=\"rt\",result=\"failed\"}");
        if (failed < 1)
            usleep (20000);
    }
    cr_assert_eq (failed, 1);
    cr_assert_eq (h_metric (port, "fks_worker_messages_total{group=\"rt\",result=\"duplicate\"}"),
                  0);
    cr_assert_eq (h_metric (port, "fks_worker_messages_total{group=\"rt\",result=\"ok\"}"), 0);
    cr_assert_eq (s_stop (&r), 0);
}

//  A handler thread that hangs (no new attempt, no pause) keeps its lease only for as long as
//  an attempt may take plus the deadline: then the broker takes the message back and delivers
//  it again (here its copy waits on the hanging transaction's lock, and is a duplicate once
//  that commits). It takes effect once.
Test (runtime, a_hanging_handler_loses_its_lease_and_its_message_takes_effect_once,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 120)
{
    static s_runner_t r;
    s_start (&r, true, 1);                      /* two threads */
    s_send ("hang", NULL, NULL);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 1, 30000), 1,
                  "the message waited for the hanging thread");
    cr_assert_geq (h_metric (s.bus_port,
                             "fks_bus_taken_back_total{group=\"rt\",reason=\"deadline\"}"), 1,
                   "the hanging thread kept its lease");
    sleep (10);                                 /* the hanging thread wakes, finds it done */
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 1);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), 1);
    cr_assert_eq (s_stop (&r), 0);
}

//  A routed handler thread that hangs (here: blocked in its handler, inside its transaction)
//  must not stop the replica's other keys. Once it shows no progress for longer than an
//  attempt may take plus the ack deadline (1 s + 2 s here), it is taken to hang: /ready fails,
//  what waits in its queue is handed back, and the dispatcher hands back what comes for it
//  instead of waiting for room in its queue. Before, the hung thread's redelivered copies
//  filled its queue and the dispatcher waited there for good, holding every other key; the
//  copies became dead letters and then took effect when the thread woke. When it goes on
//  (the gate opens), every message takes effect once: no dead letter, no failure, one outbox
//  row each.
Test (runtime, a_hung_routed_thread_does_not_stop_the_other_keys,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 90)
{
    s_statement_timeout_ms = 1000;
    static s_runner_t r;
    s_start_with (&r, true, 1, 2, s_route);
    int port = fks_worker_port (r.w);
    const char *ka = "KA";
    char kb[16] = "";
    for (int i = 0; i < 100 && !kb[0]; i++) {
        char c[16];
        snprintf (c, sizeof c, "KB%d", i);
        if (fks_worker_key (c) % 2 != fks_worker_key (ka) % 2)
            snprintf (kb, sizeof kb, "%s", c);
    }
    cr_assert (kb[0]);
    s_block_then (ka, 40);
    //  The hung thread's leases lapse and the broker delivers its messages again, to this
    //  replica: before, its queue (64) filled with them and the dispatcher waited on it.
    char *why = NULL;
    int ready = 200;
    for (int i = 0; i < 120 && ready == 200; i++) {
        usleep (100000);
        free (why);
        why = NULL;
        ready = h_http ("GET", port, "/ready", NULL, NULL, NULL, &why);
    }
    for (int i = 100; i < 110; i++) {
        char d[16];
        snprintf (d, sizeof d, "n:%d", i);
        s_send_to (kb, d, NULL, NULL);
    }
    long long b = h_wait_int ("SELECT count(*) FROM rt_effects WHERE detail LIKE 'n:1__'", 10,
                              10000);
    cr_assert_eq (b, 10, "another key's messages waited behind a hung thread: %lld of 10 "
                  "handled in 10 s (dead letters: %lld)", b, s_dead_letters ());
    cr_assert_eq (ready, 503, "/ready answered %d while a thread hung: %s", ready,
                  why ? why : "");
    cr_assert (why && strstr (why, "hung"), "%s", why ? why : "");
    free (why);
    //  And /health, the liveness probe's path: only a restart mends a thread stuck for good.
    why = NULL;
    int live = h_http ("GET", port, "/health", NULL, NULL, NULL, &why);
    cr_assert_eq (live, 503, "/health answered %d while a thread hung: %s", live,
                  why ? why : "");
    cr_assert (why && strstr (why, "unhealthy"), "%s", why ? why : "");
    free (why);
    cr_assert_eq (atomic_load (&s_blocked), 1, "the thread is still blocked");

    atomic_store (&s_gate_open, true);
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'", 51, 30000), 51);
    cr_assert (h_wait_http (port, "/ready", 10000), "/ready still fails after the thread woke");
    cr_assert (h_wait_http (port, "/health", 10000), "/health still fails after the thread woke");
    usleep (500000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 51);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 51,
                  "a message's effect was applied twice");
    cr_assert_eq (atomic_load (&s_fail_calls), 0);
    cr_assert_eq (s_dead_letters (), 0, "messages of the hung key became dead letters");
    cr_assert_eq (s_stop (&r), 0);
    //  Handed back and delivered again, the hung key's messages still ran in bus order.
    int last_a = -1, last_b = -1, n_a = 0;
    for (size_t i = 0; i < s_n_seen; i++) {
        int *last = strcmp (s_seen[i].symbol, ka) == 0 ? &last_a : &last_b;
        n_a += last == &last_a;
        cr_assert_gt (s_seen[i].seq, *last, "%s: n:%d after n:%d", s_seen[i].symbol,
                      s_seen[i].seq, *last);
        *last = s_seen[i].seq;
    }
    cr_assert_eq (n_a, 40);
}

//  The other half of a hang: the hung thread's key goes to another replica. The copy of the
//  message it hangs on waits there for the hung transaction's `consumed` row; once that
//  transaction ends (here its connection is closed, as when the pod is restarted), the other
//  replica does the work of the whole key while the thread still hangs. When the thread wakes
//  (its connection gone, it tries again), it finds the message consumed and only acks: every
//  effect happens once.
Test (runtime, a_hung_threads_key_goes_to_another_replica_and_takes_effect_once,
      .init = s_setup_short_lease, .fini = s_teardown, .timeout = 90)
{
    s_statement_timeout_ms = 1000;
    static s_runner_t r1, r2;
    s_start_with (&r1, true, 1, 2, s_route);
    s_block_then ("KA", 20);
    int port1 = fks_worker_port (r1.w);
    int ready = 200;
    for (int i = 0; i < 150 && ready == 200; i++) {
        usleep (100000);
        ready = h_http ("GET", port1, "/ready", NULL, NULL, NULL, NULL);
    }
    cr_assert_eq (ready, 503, "/ready answered %d while a thread hung", ready);
    s_start_with (&r2, true, 1, 2, s_route);
    s_second = &r1;                             /* s_current is r2 now */
    cr_assert_eq (h_sql_int ("SELECT count(pg_terminate_backend (pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database () "
                             "AND state = 'idle in transaction'"), 1,
                  "the hung transaction is not the only one open");
    cr_assert_eq (h_wait_int ("SELECT count(*) FROM rt_effects", 21, 20000), 21,
                  "the other replica did not take the hung thread's key");
    cr_assert_eq (atomic_load (&s_blocked), 1, "the thread is still blocked");

    atomic_store (&s_gate_open, true);
    cr_assert (h_wait_http (port1, "/ready", 15000), "/ready still fails after the thread woke");
    usleep (500000);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM rt_effects"), 21);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM consumed WHERE grp = 'rt'"), 21);
    cr_assert_eq (h_sql_int ("SELECT count(*) FROM events WHERE type = 'security.event'"), 21,
                  "a message's effect was applied twice");
    cr_assert_eq (atomic_load (&s_fail_calls), 0);
    cr_assert_eq (s_dead_letters (), 0);
    cr_assert_eq (s_stop (&r2), 0);
    cr_assert_eq (s_stop (&r1), 0);
    s_second = NULL;
}
