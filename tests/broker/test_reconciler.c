/*  test_reconciler.c - the reconciler inside the real fks-bus: it finds every overdue outbox
 *  row, and its work follows what happened since its last pass, not the size of the window.
 *
 *  Each test starts fks-bus (passes every 500 ms, overdue after 1 s) and bus-test-consumer
 *  processes on a fresh database; "lost" rows are committed to the outbox without being
 *  published (h_produce with no publisher), which is what a broker killed with SIGKILL leaves.
 *  Needs FKS_TEST_PG_URL (tools/test.sh).
 */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/envelope.h"
#include "tests/broker/harness.h"

TestSuite (reconciler, .init = h_setup, .fini = h_teardown, .timeout = 90);

#define EFFECTS  "SELECT count(*) FROM t_effects"
#define EXAMINED "fks_bus_reconciler_examined_total"

static const char *const s_env[] = { "FKS_BUS_RECONCILE_AFTER=1s", NULL };
static const char *const s_consumer_args[] = {
    "--group", "g", "--prefix", "market.", "--window", "50", NULL };

static void
s_start (void)
{
    h_bus_start (s_env);
    h_consumer_start ("c1", s_consumer_args);
    double got = h_wait_metric ("fks_bus_consumers{group=\"g\"}", 1, 15000);
    cr_assert_geq (got, 1, "the consumer did not join; logs in /tmp/fks-bus-tests");
}

//  Waits until the reconciler's examined count has reached at_least (rows become due only a
//  second after they were written, later on a loaded machine), then until it has stayed the
//  same for a few passes.
static double
s_settled_examined (double at_least)
{
    h_wait_metric (EXAMINED, at_least, 30000);
    double last = -2, now = -1;
    for (int i = 0; i < 60 && now != last; i++) {
        last = now;
        h_sleep_ms (1500);
        now = h_metric (EXAMINED);
    }
    cr_assert_eq (now, last, "the reconciler kept examining rows with nothing new");
    return now;
}

Test (reconciler, examines_each_row_once_and_finds_a_lost_one_after_many_consumed)
{
    s_start ();
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 3000), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 3000, 30000), 3000);
    double first = s_settled_examined (3000);
    //  Right after its start the reconciler has no horizon `after` old yet, so it may read
    //  rows that were too young to judge more than once; from then on each row once.
    cr_assert_geq (first, 3000, "the walk did not get through the outbox");
    cr_assert_eq (h_produce (pub, 3000), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 6000, 30000), 6000);
    double examined = s_settled_examined (first + 3000);
    cr_assert_geq (examined - first, 3000, "the walk did not get through the new rows");
    cr_assert_leq (examined - first, 3000, "%.0f rows examined for 3000 new ones",
                   examined - first);

    //  One message lost among them: found, handled once, and it costs about one row.
    h_produce (NULL, 1);
    cr_assert_eq (h_wait_sql (EFFECTS, 6001, 15000), 6001, "the lost message never arrived");
    //  (Published again on a later pass too if the consumer had not committed it yet.)
    cr_assert_geq (h_wait_metric ("fks_bus_reconciler_republished_total{group=\"g\"}", 1,
                                  5000), 1);
    double after = s_settled_examined (examined + 1);
    cr_assert_leq (after - examined, 50, "finding one row examined %.0f", after - examined);
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), 6001);
    //  Its position is saved: past every row.
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM bus_groups WHERE grp = 'g' AND "
                              "(reconciled_xid, reconciled_seq) >= "
                              "(SELECT xid, seq FROM events ORDER BY xid DESC, seq DESC LIMIT 1)"),
                  1, "the saved position is not past the last row");
    fks_bus_client_destroy (&pub);
}

Test (reconciler, finds_a_row_whose_transaction_committed_long_after_it_began)
{
    s_start ();
    //  A stage's transaction writes its outbox row, then stalls before COMMIT.
    PGconn *slow = PQconnectdb (h.db_url);
    cr_assert_eq (PQstatus (slow), CONNECTION_OK, "%s", PQerrorMessage (slow));
    PQclear (PQexec (slow, "BEGIN"));
    msgpack_sbuffer b;
    msgpack_sbuffer_init (&b);
    fks_envelope_hdr_t hdr;
    h_envelope (99999, &b, &hdr);
    char id[FKS_ID_STR_SIZE];
    fks_id_format (&hdr.id, id);
    const char *values[2] = { id, b.data };
    int lengths[2] = { 0, (int) b.size };
    int formats[2] = { 0, 1 };
    PGresult *res = PQexecParams (slow, "INSERT INTO events (id, type, src, ts, envelope) "
                                        "VALUES ($1::uuid, 'market.bar', 'test', now(), $2)",
                                  2, NULL, values, lengths, formats, 0);
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s", PQerrorMessage (slow));
    PQclear (res);
    //  Meanwhile later transactions commit and are consumed; passes go by.
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 500), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 500, 20000), 500);
    h_sleep_ms (3000);
    //  Now it commits, already older than the deadline, and is never published.
    res = PQexec (slow, "COMMIT");
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s", PQerrorMessage (slow));
    PQclear (res);
    PQfinish (slow);
    msgpack_sbuffer_destroy (&b);
    char sql[200];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM t_effects WHERE msg_id = '%s'", id);
    cr_assert_eq (h_wait_sql (sql, 1, 15000), 1,
                  "the late-committed row was passed by the reconciler's walk");
    cr_assert_eq (h_sql_long (EFFECTS), 501);
    fks_bus_client_destroy (&pub);
}

//  Rows the broker refuses (its queue for the group is full) stay pending and are published
//  again on every pass until they are taken: the recheck of pending rows read the envelope from
//  the wrong column, dropped each row as "invalid" after its first republish and saved the
//  position past it, so a refused republish was never tried again.
Test (reconciler, a_refused_republish_is_tried_again_until_it_is_taken)
{
    static const char *const env[] = { "FKS_BUS_RECONCILE_AFTER=1s", "FKS_BUS_QUEUE_LIMIT=5",
                                       NULL };
    h_bus_start (env);
    pid_t c = h_consumer_start ("c1", s_consumer_args);
    cr_assert_geq (h_wait_metric ("fks_bus_consumers{group=\"g\"}", 1, 15000), 1);
    kill (c, SIGTERM);
    cr_assert_eq (h_wait_exit (c, 10000), 0);
    //  No consumer: the group's queue takes 5, the other 15 are refused, then refused again
    //  when the reconciler publishes them.
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 20), 0);
    cr_assert_geq (h_wait_metric ("fks_bus_reconciler_republished_total{group=\"g\"}", 15,
                                  15000), 15);
    h_sleep_ms (2000);                          /* a few passes with the queue still full */
    char buf[256];
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM dead_letters"), 0);
    h_consumer_start ("c2", s_consumer_args);
    cr_assert_eq (h_wait_sql (EFFECTS, 20, 30000), 20,
                  "refused rows were dropped by the reconciler (seqs never handled: %s)",
                  h_sql_text ("SELECT string_agg (seq::text, ',') FROM events e WHERE NOT EXISTS"
                              " (SELECT 1 FROM t_effects t WHERE t.msg_id = e.id)", buf,
                              sizeof buf));
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), 20);
    fks_bus_client_destroy (&pub);
}

Test (reconciler, a_restarted_broker_resumes_from_the_saved_position)
{
    s_start ();
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 3000), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 3000, 30000), 3000);
    s_settled_examined (3000);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM bus_groups "
                              "WHERE grp = 'g' AND reconciled_seq IS NOT NULL"), 1);
    cr_assert_eq (h_bus_stop (SIGKILL, 5000), 128 + SIGKILL);
    //  What the dead broker would have lost: committed, never published.
    h_produce (NULL, 20);
    h_bus_start (s_env);
    cr_assert_eq (h_wait_sql (EFFECTS, 3020, 30000), 3020, "lost messages never arrived");
    //  The new process walked from the saved position, not from the window's start.
    double examined = s_settled_examined (20);
    cr_assert_leq (examined, 200, "the restarted reconciler examined %.0f rows", examined);
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), 3020);
    fks_bus_client_destroy (&pub);
}

Test (reconciler, new_prefixes_walk_the_window_again)
{
    h_bus_start (s_env);
    //  Group g takes order.* for now.
    const char *args1[] = { "--group", "g", "--prefix", "order.", "--window", "50", NULL };
    h_consumer_start ("c1", args1);
    cr_assert_geq (h_wait_metric ("fks_bus_consumers{group=\"g\"}", 1, 15000), 1);
    //  Lost market.bar rows: nobody takes them yet, so the walk passes them.
    cr_assert_eq (h_produce (NULL, 300), 0);
    double before = s_settled_examined (300);
    cr_assert_geq (before, 300);
    cr_assert_eq (h_metric ("fks_bus_reconciler_republished_total{group=\"g\"}"), 0);
    cr_assert_eq (h_sql_long (EFFECTS), 0);
    //  A replica joins group g with market.: the last JOIN defines the group's prefixes, the
    //  saved position is reset, and the walk starts again from the window's start.
    const char *args2[] = { "--group", "g", "--prefix", "market.", "--window", "50", NULL };
    h_consumer_start ("c2", args2);
    cr_assert_eq (h_wait_sql (EFFECTS, 300, 20000), 300,
                  "after the prefix change the passed rows were not published again");
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), 300);
    cr_assert_geq (h_metric (EXAMINED), before + 300);
}

//  Commits a lost market.bar row (never published) whose xid column holds `xid`, as if an
//  old transaction had written it.
static void
s_lost_row_with_xid (PGconn *conn, int i, const char *xid)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init (&b);
    fks_envelope_hdr_t hdr;
    h_envelope (i, &b, &hdr);
    char id[FKS_ID_STR_SIZE];
    fks_id_format (&hdr.id, id);
    const char *values[3] = { id, b.data, xid };
    int lengths[3] = { 0, (int) b.size, 0 };
    int formats[3] = { 0, 1, 0 };
    PGresult *res = PQexecParams (conn, "INSERT INTO events (id, type, src, ts, envelope, xid) "
                                        "VALUES ($1::uuid, 'market.bar', 'test', now(), $2,"
                                        "        $3::xid8)", 3, NULL, values, lengths, formats, 0);
    cr_assert_eq (PQresultStatus (res), PGRES_COMMAND_OK, "%s", PQerrorMessage (conn));
    PQclear (res);
    msgpack_sbuffer_destroy (&b);
}

Test (reconciler, a_walk_starts_at_the_numerically_first_xid_not_the_textually_first)
{
    //  Lost rows whose xids have different numbers of digits (8 and 10: as text, "10" sorts
    //  first), in a window no walk has seen: the walk must start at 8, or that row is behind
    //  it for good.
    PGconn *conn = PQconnectdb (h.db_url);
    cr_assert_eq (PQstatus (conn), CONNECTION_OK, "%s", PQerrorMessage (conn));
    s_lost_row_with_xid (conn, 900001, "8");
    s_lost_row_with_xid (conn, 900002, "10");
    PQfinish (conn);
    s_start ();
    cr_assert_eq (h_wait_sql (EFFECTS, 2, 20000), 2, "a lost row was never published again");
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), 2);
}

//  Every row a group never consumed within the max age is counted (and logged) as expired,
//  also the rows that age out while the walk waits behind a full set of pending rows (they
//  were passed over as settled, silently).
Test (reconciler, every_row_that_outlives_the_max_age_is_counted_as_expired)
{
    static const char *const env[] = { "FKS_BUS_RECONCILE_AFTER=1s",
                                       "FKS_BUS_RECONCILE_MAX_AGE=4s",
                                       "FKS_BUS_RECONCILE_BATCH=2", NULL };
    h_bus_start (env);
    pid_t c = h_consumer_start ("c1", s_consumer_args);
    cr_assert_geq (h_wait_metric ("fks_bus_consumers{group=\"g\"}", 1, 15000), 1);
    kill (c, SIGTERM);
    cr_assert_eq (h_wait_exit (c, 10000), 0);
    h_produce (NULL, 10);                       /* ten rows nobody consumes */
    double expired = h_wait_metric ("fks_bus_reconciler_expired_total{group=\"g\"}", 10,
                                    15000);
    h_sleep_ms (2000);                          /* and never counted twice */
    expired = h_metric ("fks_bus_reconciler_expired_total{group=\"g\"}");
    long unconsumed = h_sql_long ("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 "
                                  "FROM consumed c WHERE c.grp = 'g' AND c.msg_id = e.id) "
                                  "AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE "
                                  "d.grp = 'g' AND d.msg_id = e.id)");
    cr_assert_eq (unconsumed, 10);
    cr_assert_eq (expired, (double) unconsumed, "%ld rows expired unconsumed, %.0f counted",
                  unconsumed, expired);
}
