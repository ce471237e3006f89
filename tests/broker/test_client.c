/*  test_client.c - the bus client API (bus/client.h) against the real fks-bus: what a gateway
 *  or worker author relies on. Publishing with no broker, joining before the broker exists,
 *  receive timeouts, the poll fd, reject and attempt numbers, touch, deliveries waiting in the
 *  client, a graceful leave that hands back unread deliveries, publishing from many threads,
 *  acks made stale by a broker restart, a malformed DELIVER_BATCH from a fake broker, and a drain
 *  against a fake broker with and without DRAIN. Needs FKS_TEST_PG_URL
 *  (tools/test.sh), like every test that starts fks-bus.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "bus/envelope.h"
#include "bus/protocol.h"
#include "tests/broker/harness.h"

TestSuite (client, .init = h_setup, .fini = h_teardown, .timeout = 60);

static fks_bus_client_t *
s_consumer (const char *name, unsigned window)
{
    fks_bus_client_opts_t opts = { .url = h.bus_url, .name = name, .heartbeat_ms = 200 };
    fks_bus_client_t *c = fks_bus_client_new (&opts);
    cr_assert_not_null (c);
    const char *prefixes[1] = { "market." };
    cr_assert_eq (fks_bus_join (c, "g", prefixes, 1, window), 0);
    return c;
}

static void
s_wait_joined (fks_bus_client_t *c)
{
    long long end = h_now_ms () + 10000;
    while (!fks_bus_joined (c) && h_now_ms () < end)
        h_sleep_ms (20);
    cr_assert (fks_bus_joined (c), "the client did not join");
}

Test (client, publish_fails_within_its_timeout_when_no_broker_runs)
{
    fks_bus_client_opts_t opts = { .url = h.bus_url, .publish_timeout_ms = 100 };
    fks_bus_client_t *pub = fks_bus_client_new (&opts);
    cr_assert_not_null (pub);
    msgpack_sbuffer b;
    msgpack_sbuffer_init (&b);
    fks_envelope_hdr_t hdr;
    h_envelope (0, &b, &hdr);
    long long t0 = h_now_ms ();
    cr_assert_eq (fks_bus_publish (pub, "market.bar", b.data, b.size), -1);
    long long took = h_now_ms () - t0;
    cr_assert_geq (took, 80, "it gave up after %lld ms, before its timeout", took);
    cr_assert_lt (took, 1000, "it waited %lld ms", took);
    //  Invalid arguments fail at once.
    cr_assert_eq (fks_bus_publish (pub, "", b.data, b.size), -1);
    cr_assert_eq (fks_bus_publish (pub, "market.bar", b.data, 0), -1);
    fks_bus_client_stats_t st;
    fks_bus_client_stats (pub, &st);
    cr_assert_eq (st.publish_failed, 3);
    cr_assert_eq (st.published, 0);
    msgpack_sbuffer_destroy (&b);
    fks_bus_client_destroy (&pub);
    cr_assert_null (pub);
}

Test (client, a_consumer_started_before_the_broker_joins_when_it_comes_up)
{
    fks_bus_client_t *c = s_consumer ("early", 10);
    h_sleep_ms (700);
    cr_assert_not (fks_bus_joined (c));
    cr_assert_null (fks_bus_recv (c, 0));
    h_bus_start (NULL);
    s_wait_joined (c);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 3), 0);
    for (int i = 0; i < 3; i++) {
        fks_bus_msg_t *msg = fks_bus_recv (c, 5000);
        cr_assert_not_null (msg, "delivery %d did not come", i);
        fks_bus_ack (c, &msg);
        cr_assert_null (msg);
    }
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, recv_waits_as_long_as_asked_and_a_delivery_carries_its_envelope)
{
    h_bus_start (NULL);
    fks_bus_client_t *c = s_consumer ("c", 10);
    s_wait_joined (c);
    long long t0 = h_now_ms ();
    cr_assert_null (fks_bus_recv (c, 0));
    cr_assert_null (fks_bus_recv (c, 300));
    long long took = h_now_ms () - t0;
    cr_assert_geq (took, 280);
    cr_assert_lt (took, 1500);
    fks_bus_client_t *pub = h_publisher ();
    msgpack_sbuffer b;
    msgpack_sbuffer_init (&b);
    fks_envelope_hdr_t hdr;
    h_envelope (7, &b, &hdr);
    cr_assert_eq (fks_bus_publish (pub, "market.bar", b.data, b.size), 0);
    fks_bus_msg_t *msg = fks_bus_recv (c, -1);
    cr_assert_not_null (msg);
    cr_assert_str_eq (fks_bus_msg_topic (msg), "market.bar");
    cr_assert_eq (fks_bus_msg_attempt (msg), 1);
    cr_assert_eq (memcmp (fks_bus_msg_id (msg)->b, hdr.id.b, FKS_ID_SIZE), 0);
    size_t size;
    const uint8_t *data = fks_bus_msg_data (msg, &size);
    cr_assert_eq (size, b.size);
    cr_assert_eq (memcmp (data, b.data, size), 0, "the envelope arrived changed");
    fks_bus_ack (c, &msg);
    msgpack_sbuffer_destroy (&b);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, the_fd_polls_readable_exactly_while_a_delivery_waits)
{
    h_bus_start (NULL);
    fks_bus_client_t *c = s_consumer ("poller", 10);
    int fd = fks_bus_fd (c);
    cr_assert_geq (fd, 0);
    s_wait_joined (c);
    struct pollfd p = { fd, POLLIN, 0 };
    cr_assert_eq (poll (&p, 1, 0), 0);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 2), 0);
    cr_assert_eq (poll (&p, 1, 5000), 1, "the fd never became readable");
    fks_bus_msg_t *msg = fks_bus_recv (c, 0);
    cr_assert_not_null (msg);
    fks_bus_ack (c, &msg);
    //  The second one arrives too; once taken, the fd is quiet again.
    cr_assert_eq (poll (&p, 1, 5000), 1);
    msg = fks_bus_recv (c, 0);
    cr_assert_not_null (msg);
    fks_bus_ack (c, &msg);
    cr_assert_eq (poll (&p, 1, 200), 0, "readable with nothing waiting");
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, a_rejected_delivery_comes_back_with_the_next_attempt_number)
{
    h_bus_start (NULL);
    fks_bus_client_t *c = s_consumer ("c", 10);
    s_wait_joined (c);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1), 0);
    fks_bus_msg_t *msg = fks_bus_recv (c, 5000);
    cr_assert_not_null (msg);
    fks_id_t id = *fks_bus_msg_id (msg);
    cr_assert_eq (fks_bus_reject (c, &msg, FKS_BUS_RETRY, "not now"), 0);
    cr_assert_null (msg);
    msg = fks_bus_recv (c, 5000);
    cr_assert_not_null (msg);
    cr_assert_eq (memcmp (fks_bus_msg_id (msg)->b, id.b, FKS_ID_SIZE), 0);
    cr_assert_eq (fks_bus_msg_attempt (msg), 2);
    fks_bus_ack (c, &msg);
    cr_assert_eq (h_wait_metric ("fks_bus_rejects_total{group=\"g\"}", 1, 3000), 1);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, touch_keeps_a_slow_handler_from_losing_its_message)
{
    const char *env[] = { "FKS_BUS_ACK_DEADLINE=1s", NULL };
    h_bus_start (env);
    fks_bus_client_t *slow = s_consumer ("slow", 1);
    s_wait_joined (slow);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1), 0);
    fks_bus_msg_t *msg = fks_bus_recv (slow, 5000);
    cr_assert_not_null (msg);
    fks_bus_client_t *other = s_consumer ("other", 1);
    s_wait_joined (other);
    //  2.4 s of work, touching every 400 ms: more than twice the 1 s deadline.
    for (int i = 0; i < 6; i++) {
        h_sleep_ms (400);
        cr_assert_eq (fks_bus_touch (slow, msg), 0);
    }
    cr_assert_null (fks_bus_recv (other, 0), "the message went to another replica");
    fks_bus_ack (slow, &msg);
    h_sleep_ms (300);
    cr_assert_eq (h_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"deadline\"}"), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_acks_total{group=\"g\"}", 1, 3000), 1);
    //  Without touching, the deadline takes it back and the other replica gets it.
    cr_assert_eq (h_produce (pub, 1), 0);
    fks_bus_client_t *holder = NULL, *rest = NULL;
    long long end = h_now_ms () + 5000;
    while (!msg && h_now_ms () < end) {
        if ((msg = fks_bus_recv (slow, 50)))
            holder = slow, rest = other;
        else
        if ((msg = fks_bus_recv (other, 50)))
            holder = other, rest = slow;
    }
    cr_assert_not_null (msg);
    fks_bus_msg_t *again = fks_bus_recv (rest, 5000);
    cr_assert_not_null (again, "an expired delivery was not handed to the other replica "
                        "(taken back: %.0f, deliveries: %.0f, holder: %s)",
                        h_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"deadline\"}"),
                        h_metric ("fks_bus_deliveries_total{group=\"g\"}"),
                        holder == slow ? "slow" : "other");
    cr_assert_eq (fks_bus_msg_attempt (again), 2);
    fks_bus_ack (rest, &again);
    fks_bus_ack (holder, &msg);                 /* late: stale at the broker, harmless */
    cr_assert_geq (h_wait_metric ("fks_bus_stale_total", 1, 3000), 1);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&other);
    fks_bus_client_destroy (&slow);
}

//  Deliveries that wait in the client for a handler (all of them busy) keep their lease: the
//  client renews their deadline itself, so waiting never costs an attempt.
Test (client, deliveries_waiting_in_the_client_keep_their_lease)
{
    const char *env[] = { "FKS_BUS_ACK_DEADLINE=1s", NULL };
    h_bus_start (env);
    fks_bus_client_t *c = s_consumer ("busy", 8);
    s_wait_joined (c);
    cr_assert_eq (fks_bus_ack_deadline_ms (c), 1000, "the deadline of the broker's WELCOME");
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 3), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_deliveries_total{group=\"g\"}", 3, 5000), 3);
    h_sleep_ms (2600);                          /* more than twice the deadline, unread */
    for (int i = 0; i < 3; i++) {
        fks_bus_msg_t *msg = fks_bus_recv (c, 2000);
        cr_assert_not_null (msg, "delivery %d is gone", i + 1);
        cr_assert_eq (fks_bus_msg_attempt (msg), 1, "delivery %d was taken back meanwhile",
                      i + 1);
        fks_bus_ack (c, &msg);
    }
    cr_assert_eq (h_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"deadline\"}"), 0);
    cr_assert_eq (h_wait_metric ("fks_bus_acks_total{group=\"g\"}", 3, 3000), 3);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, leaving_hands_back_unread_deliveries_without_spending_an_attempt)
{
    h_bus_start (NULL);
    fks_bus_client_t *a = s_consumer ("a", 20);
    s_wait_joined (a);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 20), 0);
    fks_bus_msg_t *held = fks_bus_recv (a, 5000);
    cr_assert_not_null (held);
    //  Let the agent read the rest of the window into a's buffer.
    fks_bus_client_stats_t st;
    long long end = h_now_ms () + 10000;
    do {
        h_sleep_ms (50);
        fks_bus_client_stats (a, &st);
    } while (st.received < 20 && h_now_ms () < end);
    cr_assert_eq (st.received, 20);
    fks_bus_client_destroy (&a);                /* held is neither acked nor rejected */
    fks_bus_msg_destroy (&held);
    fks_bus_client_t *b = s_consumer ("b", 50);
    s_wait_joined (b);
    int got = 0, second = 0;
    fks_bus_msg_t *msg;
    while (got < 20 && (msg = fks_bus_recv (b, 5000))) {
        got++;
        if (fks_bus_msg_attempt (msg) > 1)
            second++;
        fks_bus_ack (b, &msg);
    }
    cr_assert_eq (got, 20);
    cr_assert_eq (second, 1, "only the delivery a held should count a second attempt, not %d "
                  "(released %.0f, lost %.0f)", second,
                  h_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"released\"}"),
                  h_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"lost\"}"));
    cr_assert_eq (h_wait_metric ("fks_bus_taken_back_total{group=\"g\",reason=\"released\"}",
                                 19, 3000), 19);
    fks_bus_client_destroy (&b);
    fks_bus_client_destroy (&pub);
}

typedef struct {
    fks_bus_client_t *pub;
    int base;
    int failed;
} pub_arg_t;

static void *
s_publish_many (void *arg)
{
    pub_arg_t *p = arg;
    for (int i = 0; i < 500; i++) {
        msgpack_sbuffer b;
        msgpack_sbuffer_init (&b);
        fks_envelope_hdr_t hdr;
        h_envelope (p->base + i, &b, &hdr);
        if (fks_bus_publish (p->pub, "market.bar", b.data, b.size) != 0)
            p->failed++;
        msgpack_sbuffer_destroy (&b);
    }
    return NULL;
}

Test (client, many_threads_can_publish_through_one_client)
{
    h_bus_start (NULL);
    fks_bus_client_t *c = s_consumer ("c", 100);
    s_wait_joined (c);
    fks_bus_client_t *pub = h_publisher ();
    pthread_t th[4];
    pub_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (pub_arg_t) { pub, i * 1000, 0 };
        pthread_create (&th[i], NULL, s_publish_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join (th[i], NULL);
        cr_assert_eq (args[i].failed, 0);
    }
    int got = 0;
    fks_bus_msg_t *msg;
    while (got < 2000 && (msg = fks_bus_recv (c, 5000))) {
        got++;
        fks_bus_ack (c, &msg);
    }
    cr_assert_eq (got, 2000);
    cr_assert_null (fks_bus_recv (c, 300), "more deliveries than publishes");
    fks_bus_client_stats_t st;
    fks_bus_client_stats (pub, &st);
    cr_assert_eq (st.published, 2000);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

Test (client, acks_from_before_a_broker_restart_are_dropped_as_stale)
{
    h_bus_start (NULL);
    fks_bus_client_t *c = s_consumer ("c", 10);
    s_wait_joined (c);
    fks_bus_client_t *pub = h_publisher ();
    cr_assert_eq (h_produce (pub, 1), 0);
    fks_bus_msg_t *msg = fks_bus_recv (c, 5000);
    cr_assert_not_null (msg);
    cr_assert_eq (h_bus_stop (SIGKILL, 5000), 128 + SIGKILL);
    h_bus_start (NULL);
    long long end = h_now_ms () + 10000;
    fks_bus_client_stats_t st;
    do {
        h_sleep_ms (50);
        fks_bus_client_stats (c, &st);
    } while ((st.joins < 2 || !fks_bus_joined (c)) && h_now_ms () < end);
    cr_assert_eq (st.joins, 2, "the client did not join the new broker");
    fks_bus_ack (c, &msg);
    fks_bus_client_stats (c, &st);
    cr_assert_eq (st.stale, 1);
    //  The reconciler publishes it again (its events row has no consumed row).
    msg = fks_bus_recv (c, 15000);
    cr_assert_not_null (msg, "the unacked message never came back");
    fks_bus_ack (c, &msg);
    fks_bus_client_destroy (&pub);
    fks_bus_client_destroy (&c);
}

//  A broker that sends a malformed DELIVER_BATCH: the client drops the batch (the real broker
//  would redeliver it after the ack deadline), counts it, and takes the next good one whole.
//  Played by a bare ROUTER here, since fks-bus never sends a bad batch.
static void
s_fake_send (void *r, zmq_msg_t *rid, const void *const *p, const size_t *s, int n)
{
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    zmq_msg_copy (&copy, rid);
    cr_assert_neq (zmq_msg_send (&copy, r, ZMQ_SNDMORE), -1);
    for (int i = 0; i < n; i++)
        cr_assert_neq (zmq_send (r, p[i], s[i], i + 1 < n ? ZMQ_SNDMORE : 0), -1);
}

//  One DELIVER_BATCH record: meta (tag, attempt 1, id), envelope size, topic.
static size_t
s_record (uint8_t *p, uint64_t tag, const fks_envelope_hdr_t *hdr, uint32_t size,
          const char *topic)
{
    size_t tlen = strlen (topic);
    fks_bus_put_u64 (p, tag);
    fks_bus_put_u32 (p + 8, 1);
    memcpy (p + 12, hdr->id.b, FKS_ID_SIZE);
    fks_bus_put_u32 (p + FKS_BUS_META_SIZE, size);
    p[FKS_BUS_META_SIZE + 4] = (uint8_t) tlen;
    memcpy (p + FKS_BUS_META_SIZE + 5, topic, tlen);
    return FKS_BUS_META_SIZE + 5 + tlen;
}

//  A fake broker (a bare ROUTER) and a client joined to it: the JOIN read and checked, the
//  WELCOME sent. rid is the client's routing id; e/h two envelopes (1 and 2) to deliver.
typedef struct {
    void *zctx, *r;
    zmq_msg_t rid;
    fks_bus_client_t *c;
    msgpack_sbuffer e[2];
    fks_envelope_hdr_t h[2];
} s_fake_t;

static void
s_fake_start (s_fake_t *fk)
{
    fk->zctx = zmq_ctx_new ();
    fk->r = zmq_socket (fk->zctx, ZMQ_ROUTER);
    cr_assert_eq (zmq_bind (fk->r, "tcp://127.0.0.1:*"), 0);
    char url[64];
    size_t url_len = sizeof url;
    zmq_getsockopt (fk->r, ZMQ_LAST_ENDPOINT, url, &url_len);
    int timeout = 10000;
    zmq_setsockopt (fk->r, ZMQ_RCVTIMEO, &timeout, sizeof timeout);

    fks_bus_client_opts_t opts = { .url = url, .name = "c", .heartbeat_ms = 1000 };
    fk->c = fks_bus_client_new (&opts);
    cr_assert_not_null (fk->c);
    const char *prefixes[1] = { "market." };
    cr_assert_eq (fks_bus_join (fk->c, "g", prefixes, 1, 10), 0);
    cr_assert_null (fks_bus_recv (fk->c, 0));       /* makes the consumer socket: JOIN */

    //  The JOIN: [rid][hdr][group][window+flags][name][prefix], asking for batches.
    zmq_msg_t f[8];
    int n = 0;
    for (bool more = true; more && n < 8; n++) {
        zmq_msg_init (&f[n]);
        cr_assert_neq (zmq_msg_recv (&f[n], fk->r, 0), -1, "no JOIN came");
        more = zmq_msg_more (&f[n]);
    }
    cr_assert_eq (n, 6);
    cr_assert_eq (((const uint8_t *) zmq_msg_data (&f[1]))[2], FKS_BUS_JOIN);
    cr_assert_eq (zmq_msg_size (&f[3]), 8);
    cr_assert (fks_bus_get_u32 ((const uint8_t *) zmq_msg_data (&f[3]) + 4)
               & FKS_BUS_JOIN_BATCH, "the client does not ask for DELIVER_BATCH");
    zmq_msg_init (&fk->rid);
    zmq_msg_move (&fk->rid, &f[0]);
    for (int i = 0; i < n; i++)
        zmq_msg_close (&f[i]);
    uint8_t welcome[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_WELCOME };
    uint8_t hb[4], live[4], dl[4];
    fks_bus_put_u32 (hb, 1000);
    fks_bus_put_u32 (live, 10);
    fks_bus_put_u32 (dl, 30000);
    { const void *p[] = { welcome, hb, live, dl }; size_t sz[] = { 3, 4, 4, 4 };
      s_fake_send (fk->r, &fk->rid, p, sz, 4); }
    s_wait_joined (fk->c);
    for (int i = 0; i < 2; i++) {
        msgpack_sbuffer_init (&fk->e[i]);
        h_envelope (i + 1, &fk->e[i], &fk->h[i]);
    }
}

static void
s_fake_stop (s_fake_t *fk)
{
    for (int i = 0; i < 2; i++)
        msgpack_sbuffer_destroy (&fk->e[i]);
    fks_bus_client_destroy (&fk->c);
    zmq_msg_close (&fk->rid);
    int linger = 0;
    zmq_setsockopt (fk->r, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (fk->r);
    zmq_ctx_term (fk->zctx);
}

Test (client, a_malformed_delivery_batch_is_dropped_and_counted_and_a_good_one_arrives_whole)
{
    s_fake_t fk;
    s_fake_start (&fk);
    void *r = fk.r;
    fks_bus_client_t *c = fk.c;
    zmq_msg_t *rid = &fk.rid;
    const msgpack_sbuffer e1 = fk.e[0], e2 = fk.e[1];
    const fks_envelope_hdr_t h1 = fk.h[0], h2 = fk.h[1];
    uint8_t body[2 * FKS_ENVELOPE_MAX_SIZE];
    cr_assert_lt (e1.size + e2.size, sizeof body);
    memcpy (body, e1.data, e1.size);
    memcpy (body + e1.size, e2.data, e2.size);
    size_t both = e1.size + e2.size;
    uint8_t hdr[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_DELIVER_BATCH };
    uint8_t rec[4 * (FKS_BUS_META_SIZE + 5 + FKS_TYPE_MAX)];
    size_t len;

    //  1. Sizes that add up to less than the envelopes frame.
    len = s_record (rec, 1, &h1, (uint32_t) e1.size, "market.bar");
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len, both };
      s_fake_send (r, rid, p, s, 3); }
    //  2. A size past the end of the envelopes frame.
    len = s_record (rec, 1, &h1, (uint32_t) e1.size, "market.bar");
    len += s_record (rec + len, 2, &h2, (uint32_t) both, "market.bar");
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len, both };
      s_fake_send (r, rid, p, s, 3); }
    //  3. A zero size.
    len = s_record (rec, 1, &h1, 0, "market.bar");
    len += s_record (rec + len, 2, &h2, (uint32_t) both, "market.bar");
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len, both };
      s_fake_send (r, rid, p, s, 3); }
    //  4. A topic with a NUL in it.
    len = s_record (rec, 1, &h1, (uint32_t) e1.size, "market.bar");
    len += s_record (rec + len, 2, &h2, (uint32_t) e2.size, "market.bar");
    rec[FKS_BUS_META_SIZE + 5 + 3] = 0;
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len, both };
      s_fake_send (r, rid, p, s, 3); }
    //  5. A record cut short.
    len = s_record (rec, 1, &h1, (uint32_t) e1.size, "market.bar");
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len - 12, e1.size };
      s_fake_send (r, rid, p, s, 3); }
    //  6. No envelopes frame.
    { const void *p[] = { hdr, rec }; size_t s[] = { 3, len };
      s_fake_send (r, rid, p, s, 2); }
    //  7. The good one: two envelopes, tags 7 and 8.
    len = s_record (rec, 7, &h1, (uint32_t) e1.size, "market.bar");
    len += s_record (rec + len, 8, &h2, (uint32_t) e2.size, "market.bar");
    { const void *p[] = { hdr, rec, body }; size_t s[] = { 3, len, both };
      s_fake_send (r, rid, p, s, 3); }

    const msgpack_sbuffer *want[2] = { &e1, &e2 };
    const fks_envelope_hdr_t *want_hdr[2] = { &h1, &h2 };
    for (int i = 0; i < 2; i++) {
        fks_bus_msg_t *msg = fks_bus_recv (c, 10000);
        cr_assert_not_null (msg, "delivery %d of the good batch did not come", i + 1);
        cr_assert_str_eq (fks_bus_msg_topic (msg), "market.bar");
        cr_assert_eq (memcmp (fks_bus_msg_id (msg)->b, want_hdr[i]->id.b, FKS_ID_SIZE), 0,
                      "delivery %d: not the envelope of the good batch", i + 1);
        size_t size;
        const uint8_t *data = fks_bus_msg_data (msg, &size);
        cr_assert_eq (size, want[i]->size);
        cr_assert_eq (memcmp (data, want[i]->data, size), 0, "delivery %d changed", i + 1);
        fks_bus_ack (c, &msg);
    }
    cr_assert_null (fks_bus_recv (c, 200), "a bad batch was delivered");
    fks_bus_client_stats_t st;
    fks_bus_client_stats (c, &st);
    cr_assert_eq (st.received, 2);
    cr_assert_eq (st.bad_frames, 6);

    //  The acks of the good batch reach the broker, both tags in order (in one ACK, or in two
    //  when the client's tick sent the first before the second was acked).
    uint64_t tags[2];
    size_t n_tags = 0;
    for (int tries = 0; tries < 50 && n_tags < 2; tries++) {
        zmq_msg_t a[4];
        int k = 0;
        for (bool more = true; more && k < 4; k++) {
            zmq_msg_init (&a[k]);
            cr_assert_neq (zmq_msg_recv (&a[k], r, 0), -1, "no ACK came");
            more = zmq_msg_more (&a[k]);
        }
        if (k == 3 && ((const uint8_t *) zmq_msg_data (&a[1]))[2] == FKS_BUS_ACK) {
            size_t size = zmq_msg_size (&a[2]);
            cr_assert (size > 0 && size % 8 == 0 && n_tags + size / 8 <= 2,
                       "an ACK of %zu bytes after %zu tags", size, n_tags);
            for (size_t j = 0; j < size / 8; j++)
                tags[n_tags++] = fks_bus_get_u64 ((const uint8_t *) zmq_msg_data (&a[2]) + 8 * j);
        }
        for (int i = 0; i < k; i++)
            zmq_msg_close (&a[i]);
    }
    cr_assert_eq (n_tags, 2, "the acks never reached the broker");
    cr_assert_eq (tags[0], 7);
    cr_assert_eq (tags[1], 8);
    s_fake_stop (&fk);
}

//  The next command the client sent the fake broker, heartbeats skipped; the tags of its
//  tags frame, if any, in tags (up to cap) and *n_tags. -1 when nothing came within 10 s.
static int
s_fake_next (s_fake_t *fk, uint64_t *tags, size_t cap, size_t *n_tags)
{
    for (;;) {
        zmq_msg_t a[4];
        int k = 0;
        bool ok = true;
        for (bool more = true; more && k < 4; k++) {
            zmq_msg_init (&a[k]);
            if (zmq_msg_recv (&a[k], fk->r, 0) == -1) {
                zmq_msg_close (&a[k]);
                ok = false;
                break;
            }
            more = zmq_msg_more (&a[k]);
        }
        int cmd = ok && k >= 2 && zmq_msg_size (&a[1]) == FKS_BUS_HDR_SIZE
                ? ((const uint8_t *) zmq_msg_data (&a[1]))[2] : -1;
        *n_tags = 0;
        if (ok && k == 3)
            for (size_t j = 0; j < zmq_msg_size (&a[2]) / 8 && *n_tags < cap; j++)
                tags[(*n_tags)++] = fks_bus_get_u64 ((const uint8_t *) zmq_msg_data (&a[2])
                                                     + 8 * j);
        for (int i = 0; i < k; i++)
            zmq_msg_close (&a[i]);
        if (!ok || cmd != FKS_BUS_HEARTBEAT)
            return ok ? cmd : -1;
    }
}

//  Sends one DELIVER_BATCH of one envelope under tag.
static void
s_fake_deliver (s_fake_t *fk, uint64_t tag, const fks_envelope_hdr_t *hdr,
                const msgpack_sbuffer *env)
{
    uint8_t head[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_DELIVER_BATCH };
    uint8_t rec[FKS_BUS_META_SIZE + 5 + FKS_TYPE_MAX];
    size_t len = s_record (rec, tag, hdr, (uint32_t) env->size, "market.bar");
    const void *p[] = { head, rec, env->data };
    size_t sz[] = { 3, len, env->size };
    s_fake_send (fk->r, &fk->rid, p, sz, 3);
}

static void
s_wait_received (fks_bus_client_t *c, uint64_t want)
{
    fks_bus_client_stats_t st;
    long long end = h_now_ms () + 10000;
    do {
        h_sleep_ms (20);
        fks_bus_client_stats (c, &st);
    } while (st.received < want && h_now_ms () < end);
    cr_assert_eq (st.received, want);
}

//  fks_bus_drain against a broker that knows DRAIN (it answers DRAINED) and one that does not
//  (it counts and drops it, and delivers the released message straight back). Either way: DRAIN
//  goes out before the RELEASE of what was never handed out; nothing is handed out after the
//  drain; what the application holds is still acked; a delivery that arrives after the drain
//  goes back, released once DRAINED came, else listed in the LEAVE (no attempt counted).
static void
s_drain_against (bool knows_drain)
{
    s_fake_t fk;
    s_fake_start (&fk);
    s_fake_deliver (&fk, 1, &fk.h[0], &fk.e[0]);
    s_fake_deliver (&fk, 2, &fk.h[1], &fk.e[1]);
    fks_bus_msg_t *held = fks_bus_recv (fk.c, 10000);
    cr_assert_not_null (held);
    cr_assert_eq (memcmp (fks_bus_msg_id (held)->b, fk.h[0].id.b, FKS_ID_SIZE), 0);
    s_wait_received (fk.c, 2);

    cr_assert_eq (fks_bus_drain (fk.c), 0);
    cr_assert_eq (fks_bus_drain (fk.c), 0, "a second drain is a no-op");
    uint64_t tags[16];
    size_t n;
    cr_assert_eq (s_fake_next (&fk, tags, 16, &n), FKS_BUS_DRAIN, "DRAIN did not come first");
    cr_assert_eq (n, 0);
    cr_assert_eq (s_fake_next (&fk, tags, 16, &n), FKS_BUS_RELEASE);
    cr_assert_eq (n, 1);
    cr_assert_eq (tags[0], 2, "the buffered delivery was not the one released");

    //  A broker without DRAIN delivers the released message again at once; one with DRAIN
    //  may have sent a delivery before it read the DRAIN, then answers DRAINED.
    s_fake_deliver (&fk, 3, &fk.h[1], &fk.e[1]);
    if (knows_drain) {
        uint8_t drained[3] = { FKS_BUS_SIGNATURE, FKS_BUS_PROTO_VERSION, FKS_BUS_DRAINED };
        const void *p[] = { drained };
        size_t sz[] = { 3 };
        s_fake_send (fk.r, &fk.rid, p, sz, 1);
    }
    s_wait_received (fk.c, 3);
    cr_assert_null (fks_bus_recv (fk.c, 200), "a delivery was handed out after the drain");
    if (knows_drain) {
        cr_assert_eq (s_fake_next (&fk, tags, 16, &n), FKS_BUS_RELEASE,
                      "what came before DRAINED was not released after it");
        cr_assert_eq (n, 1);
        cr_assert_eq (tags[0], 3);
    }
    cr_assert_eq (fks_bus_ack (fk.c, &held), 0);
    cr_assert_eq (s_fake_next (&fk, tags, 16, &n), FKS_BUS_ACK, "the held delivery's ack");
    cr_assert_eq (n, 1);
    cr_assert_eq (tags[0], 1);

    fks_bus_client_destroy (&fk.c);
    cr_assert_eq (s_fake_next (&fk, tags, 16, &n), FKS_BUS_LEAVE);
    if (knows_drain)
        cr_assert_eq (n, 0, "the LEAVE lists %zu tag(s); everything went back before", n);
    else {
        cr_assert_eq (n, 1, "the LEAVE does not carry what came back after the drain");
        cr_assert_eq (tags[0], 3);
    }
    s_fake_stop (&fk);
}

Test (client, draining_releases_the_unread_after_drain_and_what_comes_before_drained)
{
    s_drain_against (true);
}

Test (client, draining_against_a_broker_without_drain_hands_nothing_out_and_leaves_the_rest)
{
    s_drain_against (false);
}
