/*  test_broker.c - the broker's core (bus/broker.c) driven directly, without sockets.
 *
 *  A fake transport records every delivery, heartbeat and dead letter; time is a number the
 *  test moves forward. Each test states one rule of docs/BUS.md and checks what a replica or
 *  an operator would see.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "bus/broker.h"
#include "common/log.h"

#define MAX_REC 4096

typedef struct {
    char rid[16];
    uint64_t tag;
    uint32_t attempt;
    uint32_t flags;
    char payload[32];
} rec_t;

typedef struct {
    rec_t got[MAX_REC];
    size_t n_got;
    char heartbeats[64][16];
    size_t n_heartbeats;
    char dead_group[64][32];
    char dead_payload[64][32];
    char dead_reason[64][300];
    uint32_t dead_attempts[64];
    size_t n_dead;
    char changed[64][32];
    size_t n_changed;
    int refuse_changes;             /* group_changed refuses this many times first */
    const char *unreachable;        /* deliveries to this rid fail */
} fake_t;

static fake_t fake;

static int
s_deliver (void *arg, const uint8_t *rid, size_t rid_len, uint32_t flags,
           const fks_broker_delivery_t *batch, size_t n)
{
    fake_t *f = arg;
    if (f->unreachable && rid_len == strlen (f->unreachable)
        && memcmp (rid, f->unreachable, rid_len) == 0)
        return -1;
    for (size_t i = 0; i < n && f->n_got < MAX_REC; i++) {
        rec_t *r = &f->got[f->n_got++];
        r->flags = flags;
        snprintf (r->rid, sizeof r->rid, "%.*s", (int) rid_len, (const char *) rid);
        r->tag = batch[i].tag;
        r->attempt = batch[i].attempt;
        snprintf (r->payload, sizeof r->payload, "%.*s", (int) zmq_msg_size (batch[i].env),
                  (const char *) zmq_msg_data (batch[i].env));
    }
    return 0;
}

static void
s_heartbeat (void *arg, const uint8_t *rid, size_t rid_len)
{
    fake_t *f = arg;
    if (f->n_heartbeats < 64)
        snprintf (f->heartbeats[f->n_heartbeats++], 16, "%.*s", (int) rid_len,
                  (const char *) rid);
}

static void
s_dead_letter (void *arg, const char *group, const fks_id_t *id, uint32_t attempts,
               const char *reason, zmq_msg_t *topic, zmq_msg_t *env)
{
    fake_t *f = arg;
    (void) id;
    (void) topic;
    if (f->n_dead < 64) {
        snprintf (f->dead_group[f->n_dead], 32, "%s", group);
        snprintf (f->dead_payload[f->n_dead], 32, "%.*s", (int) zmq_msg_size (env),
                  (const char *) zmq_msg_data (env));
        snprintf (f->dead_reason[f->n_dead], 300, "%s", reason);
        f->dead_attempts[f->n_dead] = attempts;
        f->n_dead++;
    }
}

static bool
s_group_changed (void *arg, const char *group, const char *const *prefixes, size_t n)
{
    fake_t *f = arg;
    (void) prefixes;
    (void) n;
    if (f->refuse_changes > 0) {
        f->refuse_changes--;
        return false;
    }
    if (f->n_changed < 64)
        snprintf (f->changed[f->n_changed++], 32, "%s", group);
    return true;
}

static fks_broker_t *
s_broker (const fks_broker_cfg_t *cfg)
{
    memset (&fake, 0, sizeof fake);
    fks_log_set_level (FKS_LOG_ERROR);
    fks_broker_io_t io = { &fake, s_deliver, s_heartbeat, s_dead_letter, s_group_changed };
    fks_broker_t *b = fks_broker_new (cfg, &io);
    cr_assert_not_null (b);
    return b;
}

static fks_broker_cfg_t
s_cfg (void)
{
    fks_broker_cfg_t cfg;
    fks_broker_cfg_defaults (&cfg);
    cfg.ack_deadline_ms = 1000;
    cfg.heartbeat_ms = 100;
    cfg.liveness = 3;
    cfg.max_deliveries = 3;
    return cfg;
}

//  Publishes a message whose envelope bytes are `payload` and whose id is derived from it.
static fks_broker_publish_result_t
s_pub (fks_broker_t *b, const char *topic, const char *payload, const char *group)
{
    zmq_msg_t t, e;
    zmq_msg_init_size (&t, strlen (topic));
    memcpy (zmq_msg_data (&t), topic, strlen (topic));
    zmq_msg_init_size (&e, strlen (payload));
    memcpy (zmq_msg_data (&e), payload, strlen (payload));
    fks_id_t id;
    memset (&id, 0, sizeof id);
    snprintf ((char *) id.b, sizeof id.b, "%s", payload);
    fks_broker_publish_result_t res;
    cr_assert_eq (fks_broker_publish (b, &t, &e, &id, group, &res), 0);
    zmq_msg_close (&t);
    zmq_msg_close (&e);
    return res;
}

static void
s_join (fks_broker_t *b, const char *rid, const char *group, const char *prefix,
        uint32_t window, int64_t now)
{
    const char *prefixes[1] = { prefix };
    char why[128] = "";
    int rc = fks_broker_join (b, (const uint8_t *) rid, strlen (rid), group, prefixes, 1, window, 0,
                              rid, now, why, sizeof why);
    cr_assert_eq (rc, 0, "join %s refused: %s", rid, why);
}

static int
s_ack (fks_broker_t *b, const char *rid, uint64_t tag, int64_t now)
{
    return fks_broker_ack (b, (const uint8_t *) rid, strlen (rid), &tag, 1, now);
}

static size_t
s_count_for (const char *rid)
{
    size_t n = 0;
    for (size_t i = 0; i < fake.n_got; i++)
        if (strcmp (fake.got[i].rid, rid) == 0)
            n++;
    return n;
}

static fks_broker_group_stats_t
s_group (fks_broker_t *b, const char *name)
{
    fks_broker_group_stats_t st;
    for (size_t i = 0; i < fks_broker_group_count (b); i++) {
        fks_broker_group_stats (b, i, &st);
        if (strcmp (st.name, name) == 0)
            return st;
    }
    cr_assert_fail ("no group %s", name);
    return st;
}

Test (broker, message_goes_once_to_every_group_whose_prefix_matches)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "d1", "data", "market.", 10, 0);
    s_join (b, "a1", "ai", "market.bar", 10, 0);
    s_join (b, "s1", "signal", "webhook.", 10, 0);
    fks_broker_publish_result_t res = s_pub (b, "market.bar", "m1", NULL);
    cr_assert_eq (res.queued, 2);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 2);
    cr_assert_eq (s_count_for ("d1"), 1);
    cr_assert_eq (s_count_for ("a1"), 1);
    cr_assert_eq (s_count_for ("s1"), 0);
    fks_broker_destroy (&b);
    cr_assert_null (b);
}

Test (broker, each_replica_gets_its_deliveries_with_the_flags_it_joined_with)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    const char *prefixes[1] = { "market." };
    char why[128] = "";
    cr_assert_eq (fks_broker_join (b, (const uint8_t *) "p1", 2, "data", prefixes, 1, 10, 1,
                                   "p1", 0, why, sizeof why), 0, "%s", why);
    s_join (b, "o1", "ai", "market.", 10, 0);
    s_pub (b, "market.bar", "m1", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 2);
    for (size_t i = 0; i < fake.n_got; i++)
        cr_assert_eq (fake.got[i].flags, strcmp (fake.got[i].rid, "p1") == 0 ? 1u : 0u,
                      "%s got flags %u", fake.got[i].rid, fake.got[i].flags);
    fks_broker_destroy (&b);
}

Test (broker, empty_prefix_takes_every_type_and_unknown_types_go_nowhere)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "all", "audit", "", 10, 0);
    s_join (b, "s1", "signal", "webhook.", 10, 0);
    cr_assert_eq (s_pub (b, "order.filled", "m1", NULL).queued, 1);
    s_join (b, "x", "exec", "signal.", 10, 0);
    fks_broker_publish_result_t res = s_pub (b, "breaker.opened", "m2", NULL);
    cr_assert_eq (res.queued, 1);       /* only audit */
    fks_broker_destroy (&b);
}

Test (broker, a_replica_never_holds_more_than_its_credit_window)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 2, 0);
    for (int i = 0; i < 5; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
    }
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 2, "window 2 gave %zu deliveries", fake.n_got);
    cr_assert_eq (s_group (b, "g").queued, 3);
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 1), 1);
    fks_broker_dispatch (b, 1);
    cr_assert_eq (fake.n_got, 3);
    cr_assert_str_eq (fake.got[2].payload, "m2");
    fks_broker_destroy (&b);
}

Test (broker, the_first_replica_to_join_is_not_flooded)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 100, 0);
    s_join (b, "r2", "g", "t.", 100, 0);
    s_join (b, "r3", "g", "t.", 100, 0);
    for (int i = 0; i < 30; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
    }
    fks_broker_dispatch (b, 0);
    cr_assert_eq (s_count_for ("r1"), 10);
    cr_assert_eq (s_count_for ("r2"), 10);
    cr_assert_eq (s_count_for ("r3"), 10);
    fks_broker_destroy (&b);
}

Test (broker, an_acked_message_is_gone_and_a_late_republish_of_it_is_ignored)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 10, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 1), 1);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.in_flight, 0);
    cr_assert_eq (st.acks, 1);
    cr_assert_eq (fks_broker_in_flight (b), 0);
    //  A second ack of the same delivery is stale.
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 1), 0);
    //  The reconciler may have read the row just before the ack: its republish is ignored.
    fks_broker_publish_result_t res = s_pub (b, "t.x", "m1", "g");
    cr_assert_eq (res.queued, 0);
    cr_assert_eq (res.duplicate, 1);
    fks_broker_destroy (&b);
}

Test (broker, only_the_last_recent_ids_are_remembered)
{
    fks_broker_cfg_t cfg = s_cfg ();
    cfg.recent_ids = 2;
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 10, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    s_pub (b, "t.x", "m3", NULL);
    fks_broker_dispatch (b, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq (s_ack (b, "r1", fake.got[i].tag, 1), 1);
    //  Two generations of 2 / 2 + 1 = 2: m1 and m2 filled the first, m3 started the second.
    cr_assert_eq (s_pub (b, "t.x", "m2", "g").duplicate, 1);
    cr_assert_eq (s_pub (b, "t.x", "m3", "g").duplicate, 1);
    //  One more finished id fills the second generation; the next one empties the first.
    s_pub (b, "t.x", "m4", NULL);
    s_pub (b, "t.x", "m5", NULL);
    fks_broker_dispatch (b, 1);
    cr_assert_eq (s_ack (b, "r1", fake.got[3].tag, 1), 1);
    cr_assert_eq (s_ack (b, "r1", fake.got[4].tag, 1), 1);
    cr_assert_eq (s_pub (b, "t.x", "m1", "g").queued, 1, "m1 should be forgotten");
    cr_assert_eq (s_pub (b, "t.x", "m5", "g").duplicate, 1);
    fks_broker_destroy (&b);
}

//  A dead letter's row comes from the store after the broker made it, and the store may lose
//  it: the reconciler's republish of a dead-lettered id is queued again (it ends as a dead
//  letter again, recorded then), while an acked id's is ignored.
Test (broker, a_dead_letter_republished_by_the_reconciler_is_queued_again)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 10, 0);
    s_pub (b, "t.x", "bad", NULL);
    fks_broker_dispatch (b, 0);
    fks_broker_reject (b, (const uint8_t *) "r1", 2, fake.got[0].tag, FKS_BUS_REJECT_DEAD,
                       "no", 1);
    cr_assert_eq (fake.n_dead, 1);
    fks_broker_publish_result_t res = s_pub (b, "t.x", "bad", "g");
    cr_assert_eq (res.queued, 1, "a lost dead letter could never come back");
    cr_assert_eq (s_pub (b, "t.x", "bad", "g").duplicate, 1, "queued twice");
    fks_broker_dispatch (b, 1);
    cr_assert_eq (fake.n_got, 2);
    fks_broker_reject (b, (const uint8_t *) "r1", 2, fake.got[1].tag, FKS_BUS_REJECT_DEAD,
                       "no", 2);
    cr_assert_eq (fake.n_dead, 2, "it ends as a dead letter again");
    fks_broker_destroy (&b);
}

Test (broker, many_acked_ids_grow_the_memory_and_stay_findable)
{
    fks_broker_cfg_t cfg = s_cfg ();
    cfg.recent_ids = 5000;
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 100, 0);
    size_t seen = 0;
    for (int i = 0; i < 3000; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
        fks_broker_dispatch (b, 0);
        for (; seen < fake.n_got; seen++)
            s_ack (b, "r1", fake.got[seen].tag, 0);
        if (fake.n_got > MAX_REC - 200)
            fake.n_got = seen = 0;
    }
    for (int i = 0; i < 3000; i += 7) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        cr_assert_eq (s_pub (b, "t.x", p, "g").duplicate, 1, "%s forgotten", p);
    }
    //  A client's publish of a finished id is new work (only the reconciler is filtered).
    cr_assert_eq (s_pub (b, "t.x", "m0", NULL).queued, 1);
    fks_broker_destroy (&b);
}

Test (broker, a_message_already_queued_or_in_flight_is_not_queued_twice)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 1, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);             /* m1 in flight, m2 queued */
    fks_broker_publish_result_t res = s_pub (b, "t.x", "m1", NULL);
    cr_assert_eq (res.queued, 0);
    cr_assert_eq (res.duplicate, 1);
    cr_assert_eq (s_pub (b, "t.x", "m2", NULL).duplicate, 1);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.queued, 1);
    cr_assert_eq (st.duplicates, 2);
    fks_broker_destroy (&b);
}

Test (broker, deliveries_past_their_deadline_come_back_first_in_line_in_order)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 2, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    s_pub (b, "t.x", "m3", NULL);
    fks_broker_dispatch (b, 0);             /* r1 holds m1, m2 */
    //  r1 keeps heartbeating but never acks.
    fks_broker_heard (b, (const uint8_t *) "r1", 2, 900);
    fks_broker_tick (b, 1000);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.expired, 2);
    cr_assert_eq (st.queued, 3);
    s_join (b, "r2", "g", "t.", 3, 1000);
    fks_broker_dispatch (b, 1000);
    //  r1 got m1, m2 back (credit freed), or r2 did: either way the order is m1, m2, m3.
    cr_assert_eq (fake.n_got, 5);
    cr_assert_str_eq (fake.got[2].payload, "m1");
    cr_assert_eq (fake.got[2].attempt, 2);
    cr_assert_str_eq (fake.got[3].payload, "m2");
    cr_assert_eq (fake.got[3].attempt, 2);
    cr_assert_str_eq (fake.got[4].payload, "m3");
    cr_assert_eq (fake.got[4].attempt, 1);
    fks_broker_destroy (&b);
}

Test (broker, a_replica_that_leaves_hands_its_messages_to_the_others_first)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 3, 0);
    for (int i = 1; i <= 5; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
    }
    fks_broker_dispatch (b, 0);             /* r1: m1..m3; queue: m4, m5 */
    s_join (b, "r2", "g", "t.", 1, 0);
    fks_broker_dispatch (b, 0);             /* r2: m4 */
    cr_assert_str_eq (fake.got[3].payload, "m4");
    cr_assert_eq (fks_broker_leave (b, (const uint8_t *) "r1", 2, 10), 0);
    cr_assert_eq (s_group (b, "g").queued, 4);   /* m1, m2, m3, m5 */
    cr_assert_eq (s_ack (b, "r2", fake.got[3].tag, 10), 1);
    fks_broker_dispatch (b, 10);
    cr_assert_str_eq (fake.got[4].payload, "m1");
    cr_assert_eq (s_group (b, "g").lost, 3);
    fks_broker_destroy (&b);
}

//  DRAIN: a stopping replica is given nothing more, even with credit, so what it releases and
//  what comes later go to the other replica; what it holds stays its own (touch, ack), its
//  heartbeats keep it, and after its LEAVE every message was acked once, none lost.
Test (broker, a_draining_replica_gets_nothing_more_and_keeps_what_it_holds)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    const uint8_t *r1 = (const uint8_t *) "r1";
    s_join (b, "r1", "g", "t.", 4, 0);
    for (int i = 1; i <= 4; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
    }
    fks_broker_dispatch (b, 0);                         /* r1: m1..m4 */
    cr_assert_eq (fake.n_got, 4);
    s_join (b, "r2", "g", "t.", 2, 0);
    cr_assert_eq (fks_broker_drain_replica (b, (const uint8_t *) "rX", 2, 0), -1);
    cr_assert_eq (fks_broker_drain_replica (b, r1, 2, 0), 0);
    cr_assert_eq (fks_broker_drain_replica (b, r1, 2, 0), 0, "a second DRAIN is harmless");
    //  m3 and m4 were never started: released. m1 is acked: r1 has credit again.
    uint64_t back[2] = { fake.got[2].tag, fake.got[3].tag };
    cr_assert_eq (fks_broker_release (b, r1, 2, back, 2, 10), 2);
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 10), 1);
    for (int i = 5; i <= 8; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        s_pub (b, "t.x", p, NULL);
    }
    //  r2 (window 2) takes them two at a time; r1 never gets one.
    int64_t now = 10;
    for (int round = 0; round < 10 && s_group (b, "g").queued > 0; round++) {
        size_t from = fake.n_got;
        fks_broker_dispatch (b, now);
        for (size_t i = from; i < fake.n_got; i++) {
            cr_assert_str_eq (fake.got[i].rid, "r2", "%s went to the draining replica",
                              fake.got[i].payload);
            cr_assert_eq (fake.got[i].attempt, 1, "%s: attempt %u", fake.got[i].payload,
                          fake.got[i].attempt);
            cr_assert_eq (s_ack (b, "r2", fake.got[i].tag, now), 1);
        }
        now += 250;
        cr_assert (fks_broker_heard (b, r1, 2, now), "the draining replica is still known");
        fks_broker_tick (b, now);
    }
    cr_assert_eq (s_count_for ("r1"), 4);
    cr_assert_eq (s_count_for ("r2"), 6, "m3..m8 went to r2");
    cr_assert_str_eq (fake.got[4].payload, "m3", "released in order, ahead of the new ones");
    cr_assert_str_eq (fake.got[5].payload, "m4");
    //  Heartbeats kept the draining replica past several liveness periods; it still holds m2.
    fks_broker_stats_t st;
    fks_broker_stats (b, &st);
    cr_assert_eq (st.replicas, 2);
    cr_assert_eq (st.replicas_dropped, 0);
    cr_assert_eq (fks_broker_touch (b, r1, 2, &fake.got[1].tag, 1, now), 1);
    cr_assert_eq (s_ack (b, "r1", fake.got[1].tag, now), 1, "its in-flight ack is taken");
    cr_assert_eq (fks_broker_leave (b, r1, 2, now), 0);
    fks_broker_group_stats_t g = s_group (b, "g");
    cr_assert_eq (g.queued, 0);
    cr_assert_eq (g.in_flight, 0);
    cr_assert_eq (g.acks, 8, "each of m1..m8 acked once");
    cr_assert_eq (g.deliveries, 10);
    cr_assert_eq (g.redeliveries, 0);
    cr_assert_eq (g.released, 2);
    cr_assert_eq (g.lost, 0);
    cr_assert_eq (g.drains, 1);
    cr_assert_eq (g.consumers, 1);
    fks_broker_destroy (&b);
}

Test (broker, a_silent_replica_is_dropped_and_its_messages_redelivered)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_join (b, "r2", "g", "t.", 5, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (s_count_for ("r1"), 1);
    //  r2 heartbeats, r1 stays silent for more than liveness x heartbeat (300 ms).
    for (int64_t t = 100; t <= 400; t += 100) {
        fks_broker_heard (b, (const uint8_t *) "r2", 2, t);
        fks_broker_tick (b, t);
    }
    fks_broker_stats_t st;
    fks_broker_stats (b, &st);
    cr_assert_eq (st.replicas, 1);
    cr_assert_eq (st.replicas_dropped, 1);
    fks_broker_dispatch (b, 400);
    cr_assert_eq (fake.n_got, 3);
    cr_assert_str_eq (fake.got[2].rid, "r2");
    cr_assert_eq (fake.got[2].attempt, 2);
    //  A command from the dropped replica is refused: it must join again.
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 400), -1);
    fks_broker_destroy (&b);
}

Test (broker, an_idle_replica_gets_heartbeats)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    fks_broker_tick (b, 50);
    cr_assert_eq (fake.n_heartbeats, 0);
    int64_t next = fks_broker_tick (b, 100);
    cr_assert_eq (fake.n_heartbeats, 1);
    cr_assert_str_eq (fake.heartbeats[0], "r1");
    cr_assert_leq (next, 200);
    fks_broker_destroy (&b);
}

Test (broker, a_message_that_always_fails_becomes_one_dead_letter_after_max_deliveries)
{
    fks_broker_cfg_t cfg = s_cfg ();        /* max_deliveries 3 */
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_pub (b, "t.x", "poison", NULL);
    for (int i = 0; i < 5; i++) {
        fks_broker_dispatch (b, i);
        if (fake.n_got == (size_t) i)
            break;
        int rc = fks_broker_reject (b, (const uint8_t *) "r1", 2, fake.got[i].tag,
                                    FKS_BUS_REJECT_RETRY, "boom", i);
        cr_assert_eq (rc, 1);
    }
    cr_assert_eq (fake.n_got, 3, "delivered %zu times", fake.n_got);
    cr_assert_eq (fake.got[2].attempt, 3);
    cr_assert_eq (fake.n_dead, 1);
    cr_assert_str_eq (fake.dead_group[0], "g");
    cr_assert_str_eq (fake.dead_payload[0], "poison");
    cr_assert_eq (fake.dead_attempts[0], 3);
    cr_assert (strstr (fake.dead_reason[0], "boom") != NULL, "reason: %s", fake.dead_reason[0]);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.dead_letters, 1);
    cr_assert_eq (st.queued + st.in_flight, 0);
    fks_broker_destroy (&b);
}

Test (broker, a_message_that_times_out_every_time_also_ends_as_a_dead_letter)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_pub (b, "t.x", "slow", NULL);
    int64_t t = 0;
    for (int i = 0; i < 4; i++) {
        fks_broker_dispatch (b, t);
        t += 1000;
        fks_broker_heard (b, (const uint8_t *) "r1", 2, t);
        fks_broker_tick (b, t);
    }
    cr_assert_eq (fake.n_got, 3);
    cr_assert_eq (fake.n_dead, 1);
    cr_assert (strstr (fake.dead_reason[0], "deadline") != NULL);
    fks_broker_destroy (&b);
}

Test (broker, reject_dead_makes_a_dead_letter_at_once)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_pub (b, "t.x", "bad", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fks_broker_reject (b, (const uint8_t *) "r1", 2, fake.got[0].tag,
                                     FKS_BUS_REJECT_DEAD, "unparseable", 1), 1);
    cr_assert_eq (fake.n_dead, 1);
    cr_assert_eq (fake.dead_attempts[0], 1);
    cr_assert (strstr (fake.dead_reason[0], "unparseable") != NULL);
    fks_broker_destroy (&b);
}

Test (broker, reject_retry_goes_to_the_back_of_the_queue)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 1, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);
    fks_broker_reject (b, (const uint8_t *) "r1", 2, fake.got[0].tag, FKS_BUS_REJECT_RETRY,
                       "later", 1);
    fks_broker_dispatch (b, 1);
    cr_assert_str_eq (fake.got[1].payload, "m2");
    s_ack (b, "r1", fake.got[1].tag, 2);
    fks_broker_dispatch (b, 2);
    cr_assert_str_eq (fake.got[2].payload, "m1");
    cr_assert_eq (fake.got[2].attempt, 2);
    fks_broker_destroy (&b);
}

Test (broker, released_deliveries_do_not_count_as_attempts)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 2, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);
    uint64_t tags[2] = { fake.got[0].tag, fake.got[1].tag };
    cr_assert_eq (fks_broker_release (b, (const uint8_t *) "r1", 2, tags, 2, 1), 2);
    fks_broker_leave (b, (const uint8_t *) "r1", 2, 1);
    s_join (b, "r2", "g", "t.", 2, 1);
    fks_broker_dispatch (b, 1);
    cr_assert_str_eq (fake.got[2].payload, "m1");
    cr_assert_eq (fake.got[2].attempt, 1);
    cr_assert_str_eq (fake.got[3].payload, "m2");
    cr_assert_eq (fake.got[3].attempt, 1);
    cr_assert_eq (s_group (b, "g").released, 2);
    fks_broker_destroy (&b);
}

Test (broker, a_late_ack_from_the_first_replica_cannot_ack_the_redelivery)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 1, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    uint64_t first = fake.got[0].tag;
    fks_broker_leave (b, (const uint8_t *) "r1", 2, 1);
    s_join (b, "r1", "g", "t.", 1, 1);      /* same routing id, new registration */
    fks_broker_dispatch (b, 1);
    cr_assert_eq (fake.n_got, 2);
    cr_assert_neq (fake.got[1].tag, first);
    cr_assert_eq (s_ack (b, "r1", first, 2), 0);
    cr_assert_eq (s_group (b, "g").in_flight, 1);
    fks_broker_stats_t st;
    fks_broker_stats (b, &st);
    cr_assert_eq (st.stale, 1);
    cr_assert_eq (s_ack (b, "r1", fake.got[1].tag, 2), 1);
    fks_broker_destroy (&b);
}

Test (broker, another_replica_cannot_ack_what_it_was_not_given)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 1, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    s_join (b, "r2", "g", "t.", 1, 0);
    cr_assert_eq (s_ack (b, "r2", fake.got[0].tag, 1), 0);
    cr_assert_eq (s_group (b, "g").in_flight, 1);
    fks_broker_destroy (&b);
}

Test (broker, joining_again_under_the_same_routing_id_requeues_what_was_held)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    s_join (b, "r1", "g", "t.", 5, 1);
    fks_broker_dispatch (b, 1);
    cr_assert_eq (fake.n_got, 2);
    cr_assert_str_eq (fake.got[1].payload, "m1");
    cr_assert_eq (fake.got[1].attempt, 2);
    fks_broker_destroy (&b);
}

Test (broker, a_full_queue_refuses_and_counts_instead_of_dropping_silently)
{
    fks_broker_cfg_t cfg = s_cfg ();
    cfg.queue_limit = 3;
    fks_broker_t *b = s_broker (&cfg);
    const char *prefixes[1] = { "t." };
    cr_assert_eq (fks_broker_declare (b, "g", prefixes, 1), 0);
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf (p, sizeof p, "m%d", i);
        cr_assert_eq (s_pub (b, "t.x", p, NULL).queued, 1);
    }
    fks_broker_publish_result_t res = s_pub (b, "t.x", "m9", NULL);
    cr_assert_eq (res.queued, 0);
    cr_assert_eq (res.refused, 1);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.queued, 3);
    cr_assert_eq (st.refused, 1);
    //  Messages come out; then there is room again.
    s_join (b, "r1", "g", "t.", 10, 0);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (s_pub (b, "t.x", "m9", NULL).queued, 1);
    fks_broker_destroy (&b);
}

Test (broker, the_byte_limit_of_a_queue_is_enforced_too)
{
    fks_broker_cfg_t cfg = s_cfg ();
    cfg.queue_max_bytes = 20;
    fks_broker_t *b = s_broker (&cfg);
    const char *prefixes[1] = { "t." };
    fks_broker_declare (b, "g", prefixes, 1);
    cr_assert_eq (s_pub (b, "t.x", "aaaaaaaa", NULL).queued, 1);        /* 11 bytes */
    cr_assert_eq (s_pub (b, "t.x", "bbbbbbbbbb", NULL).refused, 1);     /* would be 24 */
    fks_broker_destroy (&b);
}

//  A group change the store cannot take (its queue full) is offered again on every tick until
//  it is taken: a group never stays unpersisted because the store was busy once.
Test (broker, a_group_change_the_store_could_not_take_is_offered_again)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    fake.refuse_changes = 2;
    s_join (b, "r1", "g", "t.", 5, 0);
    cr_assert_eq (fake.n_changed, 0);
    fks_broker_tick (b, 10);                    /* refused again */
    cr_assert_eq (fake.n_changed, 0);
    fks_broker_tick (b, 20);
    cr_assert_eq (fake.n_changed, 1);
    cr_assert_str_eq (fake.changed[0], "g");
    fks_broker_tick (b, 30);
    cr_assert_eq (fake.n_changed, 1, "offered again once taken");
    fks_broker_destroy (&b);
}

Test (broker, a_group_persisted_earlier_queues_before_its_replicas_return)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    const char *prefixes[2] = { "signal.", "webhook." };
    cr_assert_eq (fks_broker_declare (b, "signal", prefixes, 2), 0);
    cr_assert_eq (s_pub (b, "webhook.received", "w1", NULL).queued, 1);
    cr_assert_eq (fake.n_changed, 0);
    s_join (b, "r1", "signal", "webhook.", 5, 0);        /* the JOIN's prefixes win */
    cr_assert_eq (fake.n_changed, 1);
    fks_broker_dispatch (b, 0);
    cr_assert_str_eq (fake.got[0].payload, "w1");
    //  A declare of an existing group changes nothing.
    cr_assert_eq (fks_broker_declare (b, "signal", prefixes, 2), 0);
    cr_assert_eq (s_pub (b, "signal.created", "s1", NULL).queued, 0);
    fks_broker_destroy (&b);
}

Test (broker, the_reconciler_can_target_one_group)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "a", "ga", "t.", 5, 0);
    s_join (b, "b", "gb", "t.", 5, 0);
    fks_broker_publish_result_t res = s_pub (b, "t.x", "m1", "gb");
    cr_assert_eq (res.queued, 1);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 1);
    cr_assert_str_eq (fake.got[0].rid, "b");
    cr_assert_eq (s_pub (b, "t.x", "m2", "nosuch").queued, 0);
    fks_broker_destroy (&b);
}

Test (broker, an_unreachable_replica_is_dropped_without_spending_an_attempt)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "gone", "g", "t.", 5, 0);
    s_join (b, "r2", "g", "t.", 5, 0);
    fake.unreachable = "gone";
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 1);
    cr_assert_str_eq (fake.got[0].rid, "r2");
    cr_assert_eq (fake.got[0].attempt, 1);
    fks_broker_stats_t st;
    fks_broker_stats (b, &st);
    cr_assert_eq (st.replicas, 1);
    fks_broker_destroy (&b);
}

//  A replica that held a delivery and then cannot be reached: what it held is lost (and its
//  next delivery a redelivery); the batch that could not be sent was never delivered (its next
//  delivery is a first one), and goes behind what the replica held.
Test (broker, an_unreachable_replica_loses_what_it_held_not_what_never_reached_it)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "gone", "g", "t.", 5, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 1);
    fake.unreachable = "gone";
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);
    cr_assert_eq (s_group (b, "g").lost, 1, "m1 was lost with the replica");
    cr_assert_eq (s_group (b, "g").queued, 2);
    s_join (b, "r2", "g", "t.", 5, 0);
    fake.n_got = 0;
    fks_broker_dispatch (b, 0);
    cr_assert_eq (fake.n_got, 2);
    cr_assert_str_eq (fake.got[0].payload, "m1", "what the replica held comes first");
    cr_assert_eq (fake.got[0].attempt, 2);
    cr_assert_str_eq (fake.got[1].payload, "m2");
    cr_assert_eq (fake.got[1].attempt, 1, "m2 never reached the replica");
    cr_assert_eq (s_group (b, "g").redeliveries, s_group (b, "g").lost,
                  "every lost delivery is delivered again, and nothing else counts as such");
    fks_broker_destroy (&b);
}

Test (broker, touch_restarts_the_ack_deadline)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 5, 0);
    s_pub (b, "t.x", "m1", NULL);
    fks_broker_dispatch (b, 0);
    uint64_t tag = fake.got[0].tag;
    cr_assert_eq (fks_broker_touch (b, (const uint8_t *) "r1", 2, &tag, 1, 900), 1);
    fks_broker_heard (b, (const uint8_t *) "r1", 2, 1200);
    fks_broker_tick (b, 1200);
    fks_broker_heard (b, (const uint8_t *) "r1", 2, 1500);
    fks_broker_tick (b, 1500);
    cr_assert_eq (s_group (b, "g").expired, 0);
    fks_broker_heard (b, (const uint8_t *) "r1", 2, 1800);
    fks_broker_tick (b, 1900);
    cr_assert_eq (s_group (b, "g").expired, 1);
    fks_broker_destroy (&b);
}

Test (broker, draining_refuses_new_work_but_still_takes_acks)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    s_join (b, "r1", "g", "t.", 1, 0);
    s_pub (b, "t.x", "m1", NULL);
    s_pub (b, "t.x", "m2", NULL);
    fks_broker_dispatch (b, 0);
    fks_broker_drain (b);
    cr_assert_eq (s_pub (b, "t.x", "m3", NULL).refused, 1);
    cr_assert_eq (fks_broker_in_flight (b), 1);
    cr_assert_eq (s_ack (b, "r1", fake.got[0].tag, 1), 1);
    cr_assert_eq (fks_broker_in_flight (b), 0);
    cr_assert_eq (fks_broker_dispatch (b, 1), 0);   /* m2 stays queued */
    cr_assert_eq (fake.n_got, 1);
    char why[128];
    const char *prefixes[1] = { "t." };
    cr_assert_eq (fks_broker_join (b, (const uint8_t *) "r9", 2, "g", prefixes, 1, 1, 0, "r9", 1,
                                   why, sizeof why), -1);
    fks_broker_destroy (&b);
}

Test (broker, invalid_joins_are_refused_with_a_reason)
{
    fks_broker_cfg_t cfg = s_cfg ();
    cfg.max_groups = 1;
    fks_broker_t *b = s_broker (&cfg);
    char why[128];
    const char *good[1] = { "t." };
    const char *bad[1] = { "T/X" };
    const uint8_t *rid = (const uint8_t *) "r1";
    cr_assert_eq (fks_broker_join (b, rid, 2, "Bad Name", good, 1, 5, 0, "r1", 0, why, 128), -1);
    cr_assert (strstr (why, "group") != NULL, "%s", why);
    cr_assert_eq (fks_broker_join (b, rid, 2, "g", bad, 1, 5, 0, "r1", 0, why, 128), -1);
    cr_assert (strstr (why, "prefix") != NULL, "%s", why);
    cr_assert_eq (fks_broker_join (b, rid, 2, "g", good, 0, 5, 0, "r1", 0, why, 128), -1);
    cr_assert_eq (fks_broker_join (b, rid, 2, "g", good, 1, 0, 0, "r1", 0, why, 128), -1);
    cr_assert (strstr (why, "window") != NULL, "%s", why);
    cr_assert_eq (fks_broker_join (b, rid, 2, "g", good, 1, 5, 0, "r1", 0, why, 128), 0);
    cr_assert_eq (fks_broker_join (b, (const uint8_t *) "r2", 2, "h", good, 1, 5, 0, "r2", 0, why,
                                   128), -1);
    cr_assert (strstr (why, "too many groups") != NULL, "%s", why);
    fks_broker_destroy (&b);
}

Test (broker, many_messages_through_many_replicas_are_each_acked_once)
{
    fks_broker_cfg_t cfg = s_cfg ();
    fks_broker_t *b = s_broker (&cfg);
    const char *rids[4] = { "r0", "r1", "r2", "r3" };
    for (int i = 0; i < 4; i++)
        s_join (b, rids[i], "g", "t.", 7, 0);
    int published = 0, acked = 0;
    size_t seen = 0;
    //  Publish in bursts, ack everything delivered, until 3000 messages went through.
    for (int round = 0; round < 10000 && acked < 3000; round++) {
        for (int k = 0; k < 13 && published < 3000; k++) {
            char p[16];
            snprintf (p, sizeof p, "m%d", published++);
            s_pub (b, "t.x", p, NULL);
        }
        fks_broker_dispatch (b, round);
        for (; seen < fake.n_got; seen++)
            acked += s_ack (b, fake.got[seen].rid, fake.got[seen].tag, round);
        if (fake.n_got > MAX_REC - 100) {
            fake.n_got = 0;                 /* everything seen is acked: start over */
            seen = 0;
        }
    }
    cr_assert_eq (acked, 3000);
    fks_broker_group_stats_t st = s_group (b, "g");
    cr_assert_eq (st.acks, 3000);
    cr_assert_eq (st.deliveries, 3000);
    cr_assert_eq (st.queued + st.in_flight, 0);
    fks_broker_destroy (&b);
}
