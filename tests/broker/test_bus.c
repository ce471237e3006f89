/*  test_bus.c - the bus end to end: the real fks-bus program, real consumer processes
 *  (bus-test-consumer) that write their effects to PostgreSQL with a unique key, a fresh
 *  database per test, loopback ports.
 *
 *  Each test is one promise of docs/BUS.md: work shared exactly once, nothing lost when a
 *  replica or the broker is killed, dead letters, the queue-full policy, observers that cannot
 *  stall the pipeline, bad frames ignored. Needs FKS_TEST_PG_URL (tools/test.sh).
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bus/envelope.h"
#include "bus/protocol.h"
#include "tests/broker/harness.h"

TestSuite (bus, .init = h_setup, .fini = h_teardown, .timeout = 60);

#define EFFECTS "SELECT count(*) FROM t_effects"

static const char *const s_consumer_args[] = {
    "--group", "g", "--prefix", "market.", "--window", "50", NULL };

static void
s_wait_consumers (int n)
{
    double got = h_wait_metric ("fks_bus_consumers{group=\"g\"}", n, 15000);
    cr_assert_geq (got, n, "only %.0f of %d consumers joined; logs in /tmp/fks-bus-tests", got,
                   n);
}

static long
s_count_by (const char *replica)
{
    char sql[160];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM t_effects WHERE replica = '%s'", replica);
    return h_sql_long (sql);
}

static void
s_assert_exactly_once (long n)
{
    cr_assert_eq (h_sql_long (EFFECTS), n, "effects: %ld of %ld", h_sql_long (EFFECTS), n);
    cr_assert_eq (h_sql_long ("SELECT count(DISTINCT msg_id) FROM t_effects"), n);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM events e WHERE e.type = 'market.bar' AND "
                              "NOT EXISTS (SELECT 1 FROM t_effects t WHERE t.msg_id = e.id)"), 0,
                  "some published messages never reached their end");
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM t_violations"), 0,
                  "a message was processed by two replicas at the same time");
}

Test (bus, three_replicas_share_10000_messages_each_processed_exactly_once)
{
    h_bus_start (NULL);
    char body[256];
    long long ready_by = h_now_ms () + 10000;
    while (h_http_get (h.http_port, "/ready", body, sizeof body) != 200 && h_now_ms () < ready_by)
        h_sleep_ms (50);
    cr_assert_eq (h_http_get (h.http_port, "/ready", body, sizeof body), 200,
                  "fks-bus with a working PostgreSQL is not ready: %s", body);
    h_consumer_start ("c1", s_consumer_args);
    h_consumer_start ("c2", s_consumer_args);
    h_consumer_start ("c3", s_consumer_args);
    s_wait_consumers (3);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 10000), 0, "some publishes failed");
    long n = h_wait_sql (EFFECTS, 10000, 45000);
    cr_assert_eq (n, 10000, "only %ld of 10000 processed; logs in /tmp/fks-bus-tests", n);
    s_assert_exactly_once (10000);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM t_dups"), 0,
                  "a message was delivered again although nothing failed");
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM consumed WHERE grp = 'g'"), 10000);
    //  Spread over all three: each did a real share.
    for (int i = 1; i <= 3; i++) {
        char name[8];
        snprintf (name, sizeof name, "c%d", i);
        long mine = s_count_by (name);
        cr_log_info ("%s processed %ld", name, mine);
        cr_assert_geq (mine, 1000, "%s processed only %ld of 10000", name, mine);
    }
    cr_assert_eq (h_wait_metric ("fks_bus_acks_total{group=\"g\"}", 10000, 5000), 10000);
    cr_assert_eq (h_metric ("fks_bus_redeliveries_total{group=\"g\"}"), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_in_flight{group=\"g\"}", 0, 2000), 0);
    fks_bus_client_destroy (&pub);
}

Test (bus, a_replica_killed_while_holding_messages_loses_none_and_effects_happen_once)
{
    h_bus_start (NULL);
    const char *args[] = { "--group", "g", "--prefix", "market.", "--window", "20",
                           "--delay-ms", "10", NULL };
    h_consumer_start ("c1", args);
    pid_t victim = h_consumer_start ("c2", args);
    h_consumer_start ("c3", args);
    s_wait_consumers (3);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 900), 0);
    h_wait_sql ("SELECT count(*) FROM t_effects WHERE replica = 'c2'", 30, 20000);
    //  c2 holds up to its window of deliveries, one of them inside an open transaction.
    kill (victim, SIGKILL);
    long before = s_count_by ("c2");
    cr_assert_eq (h_wait_exit (victim, 5000), 128 + SIGKILL);
    double lost = h_wait_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"lost\"}", 1,
                                 10000);
    cr_assert_geq (lost, 1, "the killed replica's messages were never taken back");
    long n = h_wait_sql (EFFECTS, 900, 45000);
    cr_assert_eq (n, 900, "only %ld of 900 processed", n);
    s_assert_exactly_once (900);
    cr_assert_eq (s_count_by ("c2"), before, "a killed replica cannot have processed more");
    cr_assert_geq (h_wait_metric ("fks_bus_redeliveries_total{group=\"g\"}", lost, 5000), lost,
                   "what c2 held must have been delivered to the others");
    cr_assert_eq (h_wait_metric_eq ("fks_bus_consumers{group=\"g\"}", 2, 5000), 2);
    fks_bus_client_destroy (&pub);
}

Test (bus, replicas_added_and_removed_during_a_run_lose_and_repeat_nothing)
{
    h_bus_start (NULL);
    const char *args[] = { "--group", "g", "--prefix", "market.", "--window", "10",
                           "--delay-ms", "5", NULL };
    pid_t c1 = h_consumer_start ("c1", args);
    h_consumer_start ("c2", args);
    s_wait_consumers (2);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1500), 0);
    h_wait_sql (EFFECTS, 300, 20000);
    h_consumer_start ("c3", args);                  /* scale up */
    h_wait_sql ("SELECT count(*) FROM t_effects WHERE replica = 'c3'", 50, 20000);
    kill (c1, SIGTERM);                              /* scale down, the HPA way */
    cr_assert_eq (h_wait_exit (c1, 10000), 0, "c1 did not leave cleanly");
    long c1_done = s_count_by ("c1");
    long n = h_wait_sql (EFFECTS, 1500, 45000);
    cr_assert_eq (n, 1500, "only %ld of 1500 processed", n);
    s_assert_exactly_once (1500);
    char dups[2048];
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM t_dups"), 0,
                  "a graceful scale-down made a message be processed twice: %s",
                  h_sql_text ("SELECT string_agg (e.replica || ' then ' || d.replica || "
                              "' attempt ' || e.attempt, ', ') FROM t_dups d "
                              "JOIN t_effects e USING (msg_id)", dups, sizeof dups));
    cr_assert_gt (s_count_by ("c3"), 0);
    cr_assert_eq (s_count_by ("c1"), c1_done);
    cr_assert_eq (h_wait_metric_eq ("fks_bus_consumers{group=\"g\"}", 2, 5000), 2);
    fks_bus_client_destroy (&pub);
}

Test (bus, a_slow_replica_takes_only_its_share_and_does_not_slow_the_others)
{
    h_bus_start (NULL);
    const char *fast[] = { "--group", "g", "--prefix", "market.", "--window", "20", NULL };
    const char *slow[] = { "--group", "g", "--prefix", "market.", "--window", "5",
                           "--delay-ms", "200", NULL };
    h_consumer_start ("fast1", fast);
    h_consumer_start ("fast2", fast);
    s_wait_consumers (2);
    fks_bus_client_t *pub = h_publisher ();
    //  Baseline: the two fast replicas alone.
    long long t0 = h_now_ms ();
    cr_assert_eq (h_produce (pub, 1500), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 1500, 30000), 1500);
    long long base = h_now_ms () - t0;
    //  The same amount with a slow replica added.
    h_consumer_start ("slow", slow);
    s_wait_consumers (3);
    t0 = h_now_ms ();
    cr_assert_eq (h_produce (pub, 1500), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 3000, 40000), 3000);
    long long with_slow = h_now_ms () - t0;
    long slow_n = s_count_by ("slow");
    cr_log_info ("1500 messages: %lld ms with two fast replicas, %lld ms with a slow one added "
                 "(it processed %ld)", base, with_slow, slow_n);
    //  Credit: the slow replica never gets more than it can finish plus its window.
    cr_assert_leq (slow_n, with_slow / 200 + 5 + 2,
                   "the slow replica got %ld messages in %lld ms", slow_n, with_slow);
    //  Evenly split, the slow one alone would need 500 x 200 ms = 100 s.
    cr_assert_lt (with_slow, 2 * base + 5 * 200 + 3000,
                  "with a slow replica the run took %lld ms against %lld ms", with_slow, base);
    s_assert_exactly_once (3000);
    fks_bus_client_destroy (&pub);
}

Test (bus, a_message_that_always_fails_ends_as_one_dead_letter)
{
    const char *env[] = { "FKS_BUS_MAX_DELIVERIES=3", "FKS_BUS_RECONCILE_AFTER=1s", NULL };
    h_bus_start (env);
    //  An observer of dead letters on the stream.
    void *zctx = zmq_ctx_new ();
    void *sub = zmq_socket (zctx, ZMQ_SUB);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "dead.letter", 11);
    cr_assert_eq (zmq_connect (sub, h.stream_url), 0);
    const char *args[] = { "--group", "g", "--prefix", "market.", "--fail", NULL };
    h_consumer_start ("failing", args);
    s_wait_consumers (1);
    h_sleep_ms (300);                                /* the subscription reaches the XPUB */
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1), 0);
    cr_assert_eq (h_wait_sql ("SELECT count(*) FROM dead_letters", 1, 15000), 1);
    //  Give the reconciler (1 s) several passes: it must not bring the message back.
    h_sleep_ms (3000);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM t_attempts"), 3);
    cr_assert_eq (h_sql_long ("SELECT max(attempt) FROM t_attempts"), 3);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM dead_letters WHERE grp = 'g' AND "
                              "attempts = 3 AND type = 'market.bar' AND "
                              "reason LIKE '%always fails%' AND msg_id = "
                              "(SELECT id FROM events WHERE type = 'market.bar')"), 1);
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM events WHERE type = 'dead.letter' AND "
                              "cause = (SELECT id FROM events WHERE type = 'market.bar')"), 1);
    cr_assert_eq (h_wait_metric ("fks_bus_dead_letters_total{group=\"g\"}", 1, 5000), 1);
    //  The stream carried it: a schema-valid dead.letter naming the group and the message.
    int timeout = 5000;
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char topic[64];
    int tlen = zmq_recv (sub, topic, sizeof topic, 0);
    cr_assert_eq (tlen, 11, "no dead.letter on the stream");
    static uint8_t buf[65536];
    int len = zmq_recv (sub, buf, sizeof buf, 0);
    cr_assert_gt (len, 0);
    fks_envelope_err_t err;
    fks_envelope_t *env_msg = fks_envelope_decode (buf, (size_t) len, &err);
    cr_assert_not_null (env_msg, "%s", err.msg);
    char grp[32];
    cr_assert_eq (fks_envelope_get_str (env_msg, "grp", grp, sizeof grp), 0);
    cr_assert_str_eq (grp, "g");
    int64_t attempts;
    cr_assert_eq (fks_envelope_get_i64 (env_msg, "attempts", &attempts), 0);
    cr_assert_eq (attempts, 3);
    fks_envelope_destroy (&env_msg);
    zmq_close (sub);
    zmq_ctx_term (zctx);
    fks_bus_client_destroy (&pub);
}

Test (bus, the_broker_killed_mid_run_and_restarted_loses_nothing_with_the_reconciler)
{
    //  The consumers start first: they must join by themselves once the broker is up.
    const char *args[] = { "--group", "g", "--prefix", "market.", "--window", "20",
                           "--delay-ms", "2", NULL };
    h_consumer_start ("c1", args);
    h_consumer_start ("c2", args);
    h_sleep_ms (500);
    h_bus_start (NULL);
    s_wait_consumers (2);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1000), 0);
    h_wait_sql (EFFECTS, 200, 20000);
    cr_assert_eq (h_bus_stop (SIGKILL, 5000), 128 + SIGKILL);
    long at_kill = h_sql_long (EFFECTS);
    //  While the broker is down, stages keep committing to the outbox; the publish is lost.
    h_produce (NULL, 500);
    h_bus_start (NULL);
    s_wait_consumers (2);
    cr_assert_eq (h_produce (pub, 500), 0, "publishing after the restart failed");
    long n = h_wait_sql (EFFECTS, 2000, 45000);
    cr_log_info ("%ld processed when the broker was killed, %ld in the end", at_kill, n);
    cr_assert_eq (n, 2000, "only %ld of 2000 reached their end; see /tmp/fks-bus-tests", n);
    s_assert_exactly_once (2000);
    cr_assert_gt (h_wait_metric ("fks_bus_reconciled_total", 1, 5000), 0,
                  "the reconciler should have published the lost messages again");
    fks_bus_client_destroy (&pub);
}

typedef struct {
    const char *url;
    atomic_long got;
    atomic_bool stop;
} observer_t;

static void *
s_observer (void *arg)
{
    observer_t *o = arg;
    void *zctx = zmq_ctx_new ();
    void *sub = zmq_socket (zctx, ZMQ_SUB);
    int hwm = 0, timeout = 100;
    zmq_setsockopt (sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "market.", 7);
    zmq_connect (sub, o->url);
    char buf[4096];
    while (!atomic_load (&o->stop)) {
        if (zmq_recv (sub, buf, sizeof buf, 0) < 0)
            continue;
        int more = 0;
        size_t sz = sizeof more;
        zmq_getsockopt (sub, ZMQ_RCVMORE, &more, &sz);
        if (more && zmq_recv (sub, buf, sizeof buf, 0) >= 0)
            atomic_fetch_add (&o->got, 1);
    }
    zmq_close (sub);
    zmq_ctx_term (zctx);
    return NULL;
}

Test (bus, a_stuck_observer_does_not_change_the_pipelines_throughput)
{
    //  The high-water mark is every observer's (one PUB socket): low enough that the stuck
    //  one overflows within the 4,000 messages it is sent, high enough that the healthy one,
    //  its thread starved for a while on a loaded machine (an ASan build beside compilers),
    //  still has room; at 500 it lost messages to a quarter second of starvation.
    const char *env[] = { "FKS_BUS_STREAM_HWM=2000", "FKS_BUS_STREAM_SNDBUF=65536", NULL };
    h_bus_start (env);
    h_consumer_start ("c1", s_consumer_args);
    h_consumer_start ("c2", s_consumer_args);
    s_wait_consumers (2);
    observer_t healthy = { .url = h.stream_url };
    pthread_t th;
    pthread_create (&th, NULL, s_observer, &healthy);
    h_sleep_ms (300);
    fks_bus_client_t *pub = h_publisher ();

    long long t0 = h_now_ms ();
    cr_assert_eq (h_produce (pub, 2000), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 2000, 30000), 2000);
    long long alone = h_now_ms () - t0;

    //  An observer that subscribes to everything and never reads.
    void *zctx = zmq_ctx_new ();
    void *stuck = zmq_socket (zctx, ZMQ_SUB);
    int one = 1, small = 1024;
    zmq_setsockopt (stuck, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt (stuck, ZMQ_RCVBUF, &small, sizeof small);
    zmq_setsockopt (stuck, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq (zmq_connect (stuck, h.stream_url), 0);
    h_sleep_ms (300);

    t0 = h_now_ms ();
    cr_assert_eq (h_produce (pub, 4000), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 6000, 40000), 6000);
    long long with_stuck = h_now_ms () - t0;
    cr_log_info ("2000 messages in %lld ms with no stuck observer; 4000 in %lld ms with one",
                 alone, with_stuck);
    double overflows = h_wait_metric ("fks_bus_stream_overflows_total", 1, 5000);
    cr_assert_geq (overflows, 1, "the stuck observer's losses were not counted");
    //  The healthy observer missed nothing, although the stuck one was full.
    long long end = h_now_ms () + 10000;
    while (atomic_load (&healthy.got) < 6000 && h_now_ms () < end)
        h_sleep_ms (50);
    cr_assert_eq (atomic_load (&healthy.got), 6000);
    //  Twice the messages in about twice the time, not blocked.
    cr_assert_lt (with_stuck, 3 * 2 * alone + 3000, "throughput fell with a stuck observer");
    s_assert_exactly_once (6000);
    atomic_store (&healthy.stop, true);
    pthread_join (th, NULL);
    zmq_close (stuck);
    zmq_ctx_term (zctx);
    fks_bus_client_destroy (&pub);
}

static void
s_send_frames (void *sock, const void *const *parts, const size_t *sizes, int n)
{
    for (int i = 0; i < n; i++)
        zmq_send (sock, parts[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

static void
s_raw_tcp_garbage (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0) {
        char junk[1000];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (char) (i * 37 + 11);
        ssize_t rc = write (fd, junk, sizeof junk);
        (void) rc;
    }
    close (fd);
}

Test (bus, bad_frames_on_every_socket_are_counted_and_ignored)
{
    h_bus_start (NULL);
    void *zctx = zmq_ctx_new ();
    void *d = zmq_socket (zctx, ZMQ_DEALER);
    cr_assert_eq (zmq_connect (d, h.bus_url), 0);
    uint8_t pub_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_PUBLISH };
    uint8_t join_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_JOIN };
    uint8_t ack_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_ACK };
    uint8_t v9_hdr[3] = { FKS_BUS_SIGNATURE, 9, FKS_BUS_PUBLISH };
    uint8_t bad_cmd[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, 0x7f };
    static uint8_t big[300 * 1024];
    memset (big, 0xc1, sizeof big);

    zmq_send (d, "garbage", 7, 0);                                  /* no signature */
    { const void *p[] = { v9_hdr, "market.bar", "x" }; size_t s[] = { 3, 10, 1 };
      s_send_frames (d, p, s, 3); }                                 /* wrong version */
    { const void *p[] = { pub_hdr, "market.bar", big }; size_t s[] = { 3, 10, sizeof big };
      s_send_frames (d, p, s, 3); }                                 /* oversized */
    { const void *p[] = { pub_hdr, "market.bar", "\xdf\x0a\xff\x2e\x0a" };
      size_t s[] = { 3, 10, 5 }; s_send_frames (d, p, s, 3); }      /* map32 bomb */
    { const void *p[] = { bad_cmd }; size_t s[] = { 3 }; s_send_frames (d, p, s, 1); }
    { const void *p[] = { join_hdr, "g" }; size_t s[] = { 3, 1 };
      s_send_frames (d, p, s, 2); }                                 /* JOIN missing frames */
    { const void *p[] = { ack_hdr, "12345" }; size_t s[] = { 3, 5 };
      s_send_frames (d, p, s, 2); }                                 /* tags not 8 bytes */
    uint8_t inline_pub[8] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_PUBLISH,
                              0x81, 0xa1, 'v', 0x01, 0x00 };
    { const void *p[] = { inline_pub, "x" }; size_t s[] = { 8, 1 };
      s_send_frames (d, p, s, 2); }                 /* inline PUBLISH and one frame more */
    uint8_t long_ack[5] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_ACK, 0, 0 };
    { const void *p[] = { long_ack, "12345678" }; size_t s[] = { 5, 8 };
      s_send_frames (d, p, s, 2); }                 /* only PUBLISH may carry bytes inline */
    { const void *p[] = { inline_pub }; size_t s[] = { 7 };
      s_send_frames (d, p, s, 1); }                 /* inline PUBLISH of a bad envelope */
    //  A valid envelope under a topic that is not its type.
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (NULL, 1), 0);
    PGresult *res = PQexec (h.pg, "SELECT envelope FROM events LIMIT 1");
    size_t elen = 0;
    unsigned char *env = PQunescapeBytea ((unsigned char *) PQgetvalue (res, 0, 0), &elen);
    PQclear (res);
    { const void *p[] = { pub_hdr, "signal.created", env }; size_t s[] = { 3, 14, elen };
      s_send_frames (d, p, s, 3); }
    //  A frame over the transport limit (512 KiB): libzmq cuts that connection.
    void *d2 = zmq_socket (zctx, ZMQ_DEALER);
    zmq_connect (d2, h.bus_url);
    size_t huge_len = 5 * 1024 * 1024;
    uint8_t *huge = calloc (1, huge_len);
    { const void *p[] = { pub_hdr, "market.bar", huge }; size_t s[] = { 3, 10, huge_len };
      s_send_frames (d2, p, s, 3); }
    //  The stream: a non-subscription message from an XSUB, and raw TCP garbage on both.
    void *x = zmq_socket (zctx, ZMQ_XSUB);
    zmq_connect (x, h.stream_url);
    h_sleep_ms (200);
    zmq_send (x, "\x07garbage", 8, 0);
    s_raw_tcp_garbage (h.bus_port);
    s_raw_tcp_garbage (h.stream_port);
    s_raw_tcp_garbage (h.http_port);

    cr_assert_geq (h_wait_metric ("fks_bus_bad_frames_total{socket=\"stream\",reason="
                                  "\"garbage\"}", 1, 5000), 1);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason=\"garbage\"}"),
                   1);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason=\"version\"}"),
                   1);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason="
                             "\"oversized\"}"), 1);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason="
                             "\"envelope\"}"), 3);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason="
                             "\"unknown_command\"}"), 1);
    cr_assert_geq (h_metric ("fks_bus_bad_frames_total{socket=\"router\",reason="
                             "\"malformed\"}"), 4);
    cr_assert_eq (h_metric ("fks_bus_published_total"), 0, "a bad frame was published");

    //  Still alive and still doing its job.
    int status;
    cr_assert_eq (waitpid (h.bus_pid, &status, WNOHANG), 0, "fks-bus died; see %s", h.bus_log);
    char body[256];
    cr_assert_eq (h_http_get (h.http_port, "/health", body, sizeof body), 200);
    h_consumer_start ("c1", s_consumer_args);
    s_wait_consumers (1);
    cr_assert_eq (fks_bus_publish (pub, "market.bar", env, elen), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 1, 10000), 1);
    PQfreemem (env);
    //  The client leaves the topic frame out; a PUBLISH that carries it, equal to the
    //  envelope's type, is routed too.
    cr_assert_eq (h_produce (NULL, 1), 0);
    res = PQexec (h.pg, "SELECT envelope FROM events ORDER BY seq DESC LIMIT 1");
    env = PQunescapeBytea ((unsigned char *) PQgetvalue (res, 0, 0), &elen);
    PQclear (res);
    { const void *p[] = { pub_hdr, "market.bar", env }; size_t s[] = { 3, 10, elen };
      s_send_frames (d, p, s, 3); }
    cr_assert_eq (h_wait_sql (EFFECTS, 2, 10000), 2, "a PUBLISH with its topic frame was lost");
    PQfreemem (env);
    free (huge);
    zmq_close (d);
    zmq_close (d2);
    zmq_close (x);
    zmq_ctx_term (zctx);
    fks_bus_client_destroy (&pub);
}

Test (bus, a_full_queue_refuses_and_the_reconciler_brings_the_rest_back)
{
    //  The group is known from an earlier run (bus_groups) but no replica is connected.
    h_sql ("INSERT INTO bus_groups (grp, prefixes) VALUES ('g', '{market.}')");
    const char *env[] = { "FKS_BUS_QUEUE_LIMIT=100", "FKS_BUS_RECONCILE_AFTER=2s", NULL };
    h_bus_start (env);
    cr_assert_geq (h_wait_metric ("fks_bus_queue_depth{group=\"g\"}", 0, 10000), 0,
                   "the persisted group was not declared at start");
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 150), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_refused_total{group=\"g\"}", 50, 5000), 50);
    cr_assert_eq (h_metric ("fks_bus_queue_depth{group=\"g\"}"), 100);
    h_consumer_start ("c1", s_consumer_args);
    long n = h_wait_sql (EFFECTS, 150, 30000);
    cr_assert_eq (n, 150, "only %ld of 150: refused messages must come back", n);
    s_assert_exactly_once (150);
    cr_assert_geq (h_wait_metric ("fks_bus_reconciled_total", 50, 5000), 50);
    fks_bus_client_destroy (&pub);
}

Test (bus, sigterm_lets_in_flight_finish_and_a_restarted_broker_gets_the_rest)
{
    const char *env[] = { "FKS_BUS_DRAIN_TIMEOUT=5s", NULL };
    h_bus_start (env);
    const char *args[] = { "--group", "g", "--prefix", "market.", "--window", "3",
                           "--delay-ms", "300", NULL };
    h_consumer_start ("c1", args);
    s_wait_consumers (1);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 20), 0);
    h_wait_sql (EFFECTS, 2, 10000);
    long long t0 = h_now_ms ();
    cr_assert_eq (h_bus_stop (SIGTERM, 8000), 0, "fks-bus did not exit cleanly on SIGTERM");
    cr_log_info ("drained in %lld ms", h_now_ms () - t0);
    //  What was in flight got acked before the exit: nothing was processed twice.
    h_bus_start (env);
    long n = h_wait_sql (EFFECTS, 20, 30000);
    cr_assert_eq (n, 20, "only %ld of 20 after the restart", n);
    s_assert_exactly_once (20);
    char dups[2048];
    cr_assert_eq (h_sql_long ("SELECT count(*) FROM t_dups"), 0,
                  "an in-flight message was handed out again although it was acked: %s",
                  h_sql_text ("SELECT string_agg (e.replica || ' at ' || e.at || ' then ' || "
                              "d.replica, ', ') FROM t_dups d JOIN t_effects e USING (msg_id)",
                              dups, sizeof dups));
    fks_bus_client_destroy (&pub);
}

Test (bus, ready_says_why_when_postgresql_is_unreachable_but_routing_goes_on)
{
    //  Port 1 on loopback: nothing listens there.
    const char *env[] = { "FKS_PG_URL=postgresql://postgres@127.0.0.1:1/x?connect_timeout=1",
                          NULL };
    h_bus_start (env);
    //  Past the first connection attempts (connect_timeout=1), it still says why.
    h_sleep_ms (2500);
    char body[512];
    cr_assert_eq (h_http_get (h.http_port, "/ready", body, sizeof body), 503);
    cr_assert (strstr (body, "postgresql unavailable") != NULL, "/ready said: %s", body);
    h_consumer_start ("c1", s_consumer_args);
    s_wait_consumers (1);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 10), 0);
    cr_assert_eq (h_wait_sql (EFFECTS, 10, 10000), 10);
    fks_bus_client_destroy (&pub);
}

//  The broker, whose database (url, cap bytes) does not exist yet: to fks-bus that is
//  PostgreSQL being down; a consumer of group g that fails every message; a publisher.
static fks_bus_client_t *
s_bus_without_its_database (const char *max_deliveries, char *url, size_t cap)
{
    char env_url[1100];
    h_extra_db ("late", false, url, cap);
    snprintf (env_url, sizeof env_url, "FKS_PG_URL=%s", url);
    const char *env[] = { env_url, max_deliveries, NULL };
    h_bus_start (env);
    const char *args[] = { "--group", "g", "--prefix", "market.", "--fail", NULL };
    h_consumer_start ("failing", args);
    s_wait_consumers (1);
    return h_publisher ();
}

Test (bus, dead_letters_wait_in_memory_while_postgresql_is_away_and_are_written_after)
{
    char url[1024];
    fks_bus_client_t *pub = s_bus_without_its_database ("FKS_BUS_MAX_DELIVERIES=2", url,
                                                        sizeof url);
    cr_assert_eq (h_produce (pub, 1), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_dead_letters_total{group=\"g\"}", 1, 10000), 1);
    cr_assert_eq (h_wait_metric ("fks_bus_store_pending", 2, 5000), 2,
                  "the dead letter and the group should wait in memory");
    char body[512];
    cr_assert_eq (h_http_get (h.http_port, "/ready", body, sizeof body), 503);
    cr_assert (strstr (body, "2 record(s) waiting") != NULL, "/ready said: %s", body);
    //  PostgreSQL comes back (the database appears): everything is written, ready again.
    h_create_extra_db ("late");
    cr_assert_eq (h_wait_metric_eq ("fks_bus_store_pending", 0, 10000), 0);
    long long end = h_now_ms () + 10000;
    while (h_http_get (h.http_port, "/ready", body, sizeof body) != 200 && h_now_ms () < end)
        h_sleep_ms (100);
    cr_assert_eq (h_http_get (h.http_port, "/ready", body, sizeof body), 200, "%s", body);
    PGconn *late = PQconnectdb (url);
    cr_assert_eq (PQstatus (late), CONNECTION_OK);
    PGresult *res = PQexec (late, "SELECT (SELECT count(*) FROM dead_letters WHERE grp = 'g' "
                                  "AND attempts = 2) || ',' || (SELECT count(*) FROM events "
                                  "WHERE type = 'dead.letter') || ',' || (SELECT count(*) "
                                  "FROM bus_groups WHERE grp = 'g')");
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "1,1,1");
    PQclear (res);
    PQfinish (late);
    fks_bus_client_destroy (&pub);
}

//  A group's record waits in the store's memory with the dead letters, but past the store's
//  bound (10,000) only dead letters are dropped (the reconciler brings them back): nothing
//  else would offer the group to PostgreSQL again. Until 2026-11-29 the oldest record of any
//  kind was dropped, here the group, which then never reached bus_groups.
Test (bus, a_group_waiting_for_postgresql_is_never_dropped_for_dead_letters, .timeout = 120)
{
    char url[1024];
    fks_bus_client_t *pub = s_bus_without_its_database ("FKS_BUS_MAX_DELIVERIES=1", url,
                                                        sizeof url);
    cr_assert_eq (h_produce (pub, 10050), 0);
    cr_assert_geq (h_wait_metric ("fks_bus_store_dropped_total", 1, 60000), 1,
                   "the store's memory did not overflow");
    h_create_extra_db ("late");
    PGconn *late = PQconnectdb (url);
    cr_assert_eq (PQstatus (late), CONNECTION_OK);
    long long end = h_now_ms () + 15000, groups = 0;
    while (groups == 0 && h_now_ms () < end) {
        PGresult *res = PQexec (late, "SELECT count(*) FROM bus_groups WHERE grp = 'g'");
        groups = PQresultStatus (res) == PGRES_TUPLES_OK ? atoll (PQgetvalue (res, 0, 0)) : 0;
        PQclear (res);
        if (groups == 0)
            h_sleep_ms (100);
    }
    PQfinish (late);
    fks_bus_client_destroy (&pub);
    cr_assert_eq (groups, 1, "the group's record was dropped from the store's memory");
}

//  Lines of the bus log that contain text.
static int
s_log_lines_with (const char *text)
{
    FILE *f = fopen (h.bus_log, "r");
    cr_assert_not_null (f, "no log at %s", h.bus_log);
    char line[4096];
    int n = 0;
    while (fgets (line, sizeof line, f))
        n += strstr (line, text) != NULL;
    fclose (f);
    return n;
}

//  A peer that keeps sending JOINs the broker refuses is answered every time, but logged at
//  most once a second, with the number left out.
Test (bus, refused_joins_are_answered_each_time_and_logged_once_a_second)
{
    h_bus_start (NULL);
    void *zctx = zmq_ctx_new ();
    void *d = zmq_socket (zctx, ZMQ_DEALER);
    cr_assert_eq (zmq_connect (d, h.bus_url), 0);
    uint8_t join_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_JOIN };
    uint8_t window[4] = { 0, 0, 0, 0 };                 /* a window of 0: refused */
    for (int i = 0; i < 200; i++) {
        const void *p[] = { join_hdr, "g", window, "r1", "market." };
        size_t sz[] = { 3, 1, 4, 2, 7 };
        s_send_frames (d, p, sz, 5);
    }
    int answered = 0, timeout_ms = 5000;
    zmq_setsockopt (d, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    for (; answered < 200; answered++) {
        zmq_msg_t m;
        zmq_msg_init (&m);
        int rc = zmq_msg_recv (&m, d, 0);
        bool error = rc == 3 && ((const uint8_t *) zmq_msg_data (&m))[2] == FKS_BUS_ERROR;
        while (rc != -1 && zmq_msg_more (&m))
            rc = zmq_msg_recv (&m, d, 0);       /* the code and the text */
        zmq_msg_close (&m);
        if (rc == -1 || !error)
            break;
    }
    cr_assert_eq (answered, 200, "ERROR answers: %d", answered);
    h_sleep_ms (200);
    int logged = s_log_lines_with ("join refused");
    cr_assert (logged >= 1 && logged <= 3, "%d lines for 200 refused JOINs", logged);
    //  The next one after a second is logged, with the count of the ones that were not.
    h_sleep_ms (1100);
    const void *p[] = { join_hdr, "g", window, "r1", "market." };
    size_t sz[] = { 3, 1, 4, 2, 7 };
    s_send_frames (d, p, sz, 5);
    h_sleep_ms (300);
    cr_assert_eq (s_log_lines_with ("join refused"), logged + 1);
    char said[64];
    snprintf (said, sizeof said, "\"suppressed\":%d}", 200 - logged);
    cr_assert_eq (s_log_lines_with (said), 1, "no line with %s", said);
    zmq_close (d);
    zmq_ctx_term (zctx);
}

//  A peer joining again and again (each JOIN drops its previous replica) is served every
//  time, but the log gets at most a budget of replica lines, then the number left out.
Test (bus, a_peer_joining_in_a_loop_does_not_flood_the_log)
{
    h_bus_start (NULL);
    void *zctx = zmq_ctx_new ();
    void *d = zmq_socket (zctx, ZMQ_DEALER);
    cr_assert_eq (zmq_connect (d, h.bus_url), 0);
    uint8_t join_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_JOIN };
    uint8_t window[4] = { 0, 0, 0, 10 };
    for (int i = 0; i < 500; i++) {
        const void *p[] = { join_hdr, "g", window, "r1", "market." };
        size_t sz[] = { 3, 1, 4, 2, 7 };
        s_send_frames (d, p, sz, 5);
    }
    cr_assert_geq (h_wait_metric ("fks_bus_consumers{group=\"g\"}", 1, 5000), 1);
    h_sleep_ms (500);
    int joined = s_log_lines_with ("replica joined");
    int dropped = s_log_lines_with ("joined again");
    cr_assert (joined + dropped <= 20 && joined >= 1, "%d joined and %d dropped lines for 500 "
               "JOINs", joined, dropped);
    cr_assert_eq (h_metric ("fks_bus_consumers{group=\"g\"}"), 1, "one replica in the end");
    zmq_close (d);
    zmq_ctx_term (zctx);
}

//  An observer that sends the stream socket something longer than a subscription (a flag
//  byte and a type prefix) loses its connection (it would make libzmq keep it); a well-behaved
//  observer beside it gets the stream.
Test (bus, a_subscription_longer_than_a_type_costs_the_observer_its_connection)
{
    h_bus_start (NULL);
    void *zctx = zmq_ctx_new ();
    void *bad = zmq_socket (zctx, ZMQ_SUB);
    void *good = zmq_socket (zctx, ZMQ_SUB);
    char long_prefix[200];
    memset (long_prefix, 'm', sizeof long_prefix);
    zmq_setsockopt (bad, ZMQ_SUBSCRIBE, long_prefix, sizeof long_prefix);
    zmq_setsockopt (bad, ZMQ_SUBSCRIBE, "market.", 7);
    zmq_setsockopt (good, ZMQ_SUBSCRIBE, "market.", 7);
    cr_assert_eq (zmq_connect (bad, h.stream_url), 0);
    cr_assert_eq (zmq_connect (good, h.stream_url), 0);
    h_sleep_ms (500);                                /* the subscriptions reach the XPUB */
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1), 0);
    int timeout = 3000;
    zmq_setsockopt (good, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char topic[64];
    cr_assert_eq (zmq_recv (good, topic, sizeof topic, 0), 10, "the observer got nothing");
    timeout = 1000;
    zmq_setsockopt (bad, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq (zmq_recv (bad, topic, sizeof topic, 0), -1, "the long subscription was kept");
    char body[256];
    cr_assert_eq (h_http_get (h.http_port, "/health", body, sizeof body), 200);
    fks_bus_client_destroy (&pub);
    zmq_close (bad);
    zmq_close (good);
    zmq_ctx_term (zctx);
}

Test (bus, fks_bus_refuses_to_start_without_its_database_url)
{
    //  Start it by hand with FKS_PG_URL removed from the environment.
    const char *bin = getenv ("FKS_BUS_BIN");
    char log[256];
    snprintf (log, sizeof log, "/tmp/fks-bus-tests/%s-nourl.log", h.db_name);
    pid_t pid = fork ();
    if (pid == 0) {
        unsetenv ("FKS_PG_URL");
        unsetenv ("FKS_PG_URL_FILE");
        unsetenv ("FKS_BUS_STANDALONE");
        FILE *f = freopen (log, "w", stderr);
        (void) f;
        execl (bin, bin, (char *) NULL);
        _exit (127);
    }
    cr_assert_eq (h_wait_exit (pid, 5000), 2);
    FILE *f = fopen (log, "r");
    char text[512] = "";
    size_t r = fread (text, 1, sizeof text - 1, f);
    text[r] = 0;
    fclose (f);
    cr_assert (strstr (text, "FKS_PG_URL") != NULL, "stderr said: %s", text);
}

//  Reads one whole message from a raw DEALER into frames (at most max); -1 after timeout_ms.
static int
s_recv_frames (void *sock, zmq_msg_t *frames, int max, int timeout_ms)
{
    zmq_setsockopt (sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    int n = 0;
    for (;;) {
        cr_assert_lt (n, max, "more frames than expected");
        zmq_msg_init (&frames[n]);
        if (zmq_msg_recv (&frames[n], sock, 0) == -1) {
            zmq_msg_close (&frames[n]);
            return n > 0 ? n : -1;
        }
        bool more = zmq_msg_more (&frames[n]);
        n++;
        if (!more)
            return n;
    }
}

//  A replica of an earlier version (JOIN with a 4-byte window, no flags) must keep getting the
//  frame-pair DELIVER, one that asks for packing DELIVER_PACKED, and a current one
//  DELIVER_BATCH, from the same broker: replicas and broker are upgraded one Deployment at a
//  time.
typedef enum { S_FRAMED, S_PACKED, S_BATCH } s_framing_t;

static void
s_raw_replica_gets_deliveries (s_framing_t framing)
{
    bool packed = framing == S_PACKED;
    h_bus_start (NULL);
    void *zctx = zmq_ctx_new ();
    void *d = zmq_socket (zctx, ZMQ_DEALER);
    cr_assert_eq (zmq_connect (d, h.bus_url), 0);
    uint8_t join_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_JOIN };
    uint8_t window[8];
    fks_bus_put_u32 (window, 10);
    fks_bus_put_u32 (window + 4, (framing == S_BATCH ? FKS_BUS_JOIN_BATCH | FKS_BUS_JOIN_PACKED
                                                     : FKS_BUS_JOIN_PACKED)
                                 | 0x80000000u);                        /* + an unknown bit */
    { const void *p[] = { join_hdr, "raw", window, "raw-1", "market." };
      size_t s[] = { 3, 3, framing == S_FRAMED ? 4 : 8, 5, 7 }; s_send_frames (d, p, s, 5); }
    zmq_msg_t f[1 + 2 * FKS_BUS_DELIVER_BATCH_MAX];
    int n = s_recv_frames (d, f, 4, 5000);
    cr_assert_eq (n, 4, "no WELCOME");
    cr_assert_eq (((const uint8_t *) zmq_msg_data (&f[0]))[2], FKS_BUS_WELCOME);
    for (int i = 0; i < n; i++)
        zmq_msg_close (&f[i]);

    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 3), 0);
    int got = 0;
    uint64_t tags[3];
    while (got < 3) {
        n = s_recv_frames (d, f, 1 + 2 * FKS_BUS_DELIVER_BATCH_MAX, 5000);
        cr_assert_gt (n, 0, "only %d of 3 deliveries came", got);
        const uint8_t *hdr = zmq_msg_data (&f[0]);
        if (hdr[2] == FKS_BUS_HEARTBEAT)
            continue;
        cr_assert_eq (hdr[2], framing == S_BATCH ? FKS_BUS_DELIVER_BATCH
                            : packed ? FKS_BUS_DELIVER_PACKED : FKS_BUS_DELIVER,
                      "command 0x%02x", hdr[2]);
        if (framing == S_BATCH) {
            //  [records][envelopes]: each record's size cuts its envelope out of the second
            //  frame, and together they use it up.
            cr_assert_eq (n, 3, "%d frames", n);
            const uint8_t *rec = zmq_msg_data (&f[1]);
            size_t rlen = zmq_msg_size (&f[1]);
            const uint8_t *body = zmq_msg_data (&f[2]);
            size_t at = 0, off = 0;
            while (off < rlen) {
                cr_assert (got < 3, "more than 3 deliveries");
                cr_assert_leq (off + FKS_BUS_META_SIZE + 5, rlen);
                size_t size = fks_bus_get_u32 (rec + off + FKS_BUS_META_SIZE);
                size_t tlen = rec[off + FKS_BUS_META_SIZE + 4];
                cr_assert_eq (tlen, 10);
                cr_assert (memcmp (rec + off + FKS_BUS_META_SIZE + 5, "market.bar", 10) == 0);
                cr_assert_leq (at + size, zmq_msg_size (&f[2]));
                fks_envelope_hdr_t eh;
                fks_envelope_err_t err;
                cr_assert_eq (fks_envelope_peek (body + at, size, &eh, NULL, NULL, &err), 0,
                              "%s", err.msg);
                cr_assert (memcmp (eh.id.b, rec + off + 12, FKS_ID_SIZE) == 0, "id differs");
                cr_assert_eq (fks_bus_get_u32 (rec + off + 8), 1, "attempt");
                tags[got++] = fks_bus_get_u64 (rec + off);
                at += size;
                off += FKS_BUS_META_SIZE + 5 + tlen;
            }
            cr_assert_eq (at, zmq_msg_size (&f[2]), "envelopes frame has trailing bytes");
            for (int i = 0; i < n; i++)
                zmq_msg_close (&f[i]);
            continue;
        }
        int msgs = packed ? n - 2 : (n - 1) / 2;
        cr_assert (got + msgs <= 3 && msgs >= 1 && (packed || (n - 1) % 2 == 0), "%d frames", n);
        const uint8_t *metas = packed ? zmq_msg_data (&f[1]) : NULL;
        size_t off = 0;
        for (int i = 0; i < msgs; i++) {
            const uint8_t *meta;
            size_t tlen;
            zmq_msg_t *env;
            if (packed) {
                meta = metas + off;
                tlen = meta[FKS_BUS_META_SIZE];
                cr_assert_eq (tlen, 10);
                cr_assert (memcmp (meta + FKS_BUS_META_SIZE + 1, "market.bar", 10) == 0);
                off += FKS_BUS_META_SIZE + 1 + tlen;
                env = &f[2 + i];
            }
            else {
                meta = zmq_msg_data (&f[1 + 2 * i]);
                tlen = zmq_msg_size (&f[1 + 2 * i]) - FKS_BUS_META_SIZE;
                cr_assert_eq (tlen, 10);
                cr_assert (memcmp (meta + FKS_BUS_META_SIZE, "market.bar", 10) == 0);
                env = &f[2 + 2 * i];
            }
            fks_envelope_hdr_t eh;
            fks_envelope_err_t err;
            cr_assert_eq (fks_envelope_peek (zmq_msg_data (env), zmq_msg_size (env), &eh, NULL,
                                             NULL, &err), 0, "%s", err.msg);
            cr_assert (memcmp (eh.id.b, meta + 12, FKS_ID_SIZE) == 0, "meta id differs");
            cr_assert_eq (fks_bus_get_u32 (meta + 8), 1, "attempt");
            tags[got++] = fks_bus_get_u64 (meta);
        }
        if (packed)
            cr_assert_eq (off, zmq_msg_size (&f[1]), "metas frame has trailing bytes");
        for (int i = 0; i < n; i++)
            zmq_msg_close (&f[i]);
    }
    uint8_t ack_hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_ACK };
    uint8_t tag_bytes[24];
    for (int i = 0; i < 3; i++)
        fks_bus_put_u64 (tag_bytes + 8 * i, tags[i]);
    { const void *p[] = { ack_hdr, tag_bytes }; size_t s[] = { 3, 24 };
      s_send_frames (d, p, s, 2); }
    cr_assert_eq (h_wait_metric_eq ("fks_bus_acks_total{group=\"raw\"}", 3, 5000), 3);
    cr_assert_eq (h_metric ("fks_bus_in_flight{group=\"raw\"}"), 0);
    zmq_close (d);
    zmq_ctx_term (zctx);
    fks_bus_client_destroy (&pub);
}

Test (bus, a_replica_that_joins_without_flags_gets_a_frame_pair_per_delivery)
{
    s_raw_replica_gets_deliveries (S_FRAMED);
}

Test (bus, a_replica_that_joins_packed_gets_one_frame_per_delivery)
{
    s_raw_replica_gets_deliveries (S_PACKED);
}

Test (bus, a_replica_that_joins_batched_gets_two_frames_per_batch)
{
    s_raw_replica_gets_deliveries (S_BATCH);
}
