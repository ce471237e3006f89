/*  test_breaker.c - the circuit breaker shared through Redis (common/breaker.c).
 *
 *  Integration suite: needs FKS_TEST_REDIS_URL (tools/test.sh). Time is passed in, so the
 *  cool-down is driven by the test, not waited for. "Replicas" are separate breaker objects
 *  on separate Redis connections.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "common/breaker.h"
#include "tests/workers/harness.h"

#define REDIS_DB 11
#define T0 1800000000000LL

static fks_redis_t *
s_redis (void)
{
    h_require_services ();
    static char url[300];
    snprintf (url, sizeof url, "%s", h_redis_url (REDIS_DB));
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (url, 2000, 2000, &err);
    cr_assert (r, "%s", err.msg);
    return r;
}

static fks_breaker_cfg_t
s_cfg (void)
{
    fks_breaker_cfg_t c;
    fks_breaker_cfg_defaults (&c);
    c.failures = 3;
    c.min_requests = 1000;
    c.cooldown_ms = 10000;
    c.half_open_successes = 2;
    return c;
}

static fks_breaker_transition_t
s_record (fks_breaker_t *b, bool ok, int64_t now, fks_breaker_status_t *st)
{
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_record (b, NULL, ok, ok ? NULL : "exchange timeout", now, st, &tr,
                                      &err), 0, "%s", err.msg);
    return tr;
}

static int
s_allow (fks_breaker_t *b, int64_t now, fks_breaker_status_t *st, fks_breaker_transition_t *tr)
{
    fks_redis_err_t err;
    int rc = fks_breaker_allow (b, NULL, now, st, tr, &err);
    cr_assert_neq (rc, -1, "%s", err.msg);
    return rc;
}

Test (breaker, opens_after_n_consecutive_failures_and_says_so_once)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:consecutive", &c);
    cr_assert (b);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    cr_assert_eq (s_allow (b, T0, &st, &tr), 1);
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    cr_assert_eq (s_record (b, false, T0, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (s_record (b, false, T0 + 1, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (s_record (b, false, T0 + 2, &st), FKS_BREAKER_OPENED);
    cr_assert_eq (st.state, FKS_BREAKER_OPEN);
    cr_assert (strstr (st.reason, "3 consecutive failures"), "%s", st.reason);
    cr_assert (strstr (st.reason, "exchange timeout"), "%s", st.reason);
    cr_assert_eq (s_record (b, false, T0 + 3, &st), FKS_BREAKER_NO_CHANGE,
                  "a late failure does not open it twice");
    cr_assert_eq (s_allow (b, T0 + 4, &st, &tr), 0, "an open breaker refuses");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, a_success_resets_the_consecutive_count)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:reset-count", &c);
    fks_breaker_status_t st;
    s_record (b, false, T0, &st);
    s_record (b, false, T0, &st);
    s_record (b, true, T0, &st);
    cr_assert_eq (st.consecutive, 0);
    cr_assert_eq (s_record (b, false, T0, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, a_failure_rate_over_the_window_opens_it)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    c.failures = 100;
    c.min_requests = 10;
    c.failure_rate = 0.5;
    c.window_ms = 10000;
    fks_breaker_t *b = fks_breaker_new (r, "test:rate", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr = FKS_BREAKER_NO_CHANGE;
    //  Alternating ok / fail: never two failures in a row, but half of them fail.
    int i;
    for (i = 0; i < 20 && tr != FKS_BREAKER_OPENED; i++)
        tr = s_record (b, i % 2 == 1, T0 + i, &st);
    cr_assert_eq (tr, FKS_BREAKER_OPENED);
    //  After 10 outcomes (5 failed) the rate is reached; it opens on the next failure.
    cr_assert_eq (st.window_total, 11);
    cr_assert (strstr (st.reason, "6 of 11"), "%s", st.reason);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, old_outcomes_leave_the_window)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    c.failures = 100;
    c.min_requests = 4;
    c.window_ms = 10000;
    fks_breaker_t *b = fks_breaker_new (r, "test:window", &c);
    fks_breaker_status_t st;
    s_record (b, false, T0, &st);
    s_record (b, false, T0, &st);
    s_record (b, true, T0, &st);
    //  Eleven seconds later the three are gone: one failure of one is under min_requests.
    cr_assert_eq (s_record (b, false, T0 + 11000, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (st.window_total, 1);
    cr_assert_eq (st.window_failures, 1);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, half_opens_after_the_cooldown_and_closes_after_successes)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:cycle", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    for (int i = 0; i < 3; i++)
        s_record (b, false, T0, &st);
    cr_assert_eq (s_allow (b, T0 + 9999, &st, &tr), 0, "still cooling down");
    cr_assert_eq (s_allow (b, T0 + 10000, &st, &tr), 1);
    cr_assert_eq (tr, FKS_BREAKER_HALF_OPENED);
    cr_assert_eq (st.state, FKS_BREAKER_HALF_OPEN);
    cr_assert_eq (s_record (b, true, T0 + 10001, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (st.state, FKS_BREAKER_HALF_OPEN, "one of two probes is not enough");
    cr_assert_eq (s_record (b, true, T0 + 10002, &st), FKS_BREAKER_CLOSED_NOW);
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    cr_assert_eq (st.window_total, 0, "closing starts a fresh window");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, a_failed_probe_opens_it_again)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:probe", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    for (int i = 0; i < 3; i++)
        s_record (b, false, T0, &st);
    s_allow (b, T0 + 10000, &st, &tr);
    cr_assert_eq (s_record (b, false, T0 + 10001, &st), FKS_BREAKER_OPENED);
    cr_assert (strstr (st.reason, "probe failed"), "%s", st.reason);
    cr_assert_eq (s_allow (b, T0 + 10002, &st, &tr), 0, "a new cool-down starts");
    cr_assert_eq (s_allow (b, T0 + 20001, &st, &tr), 1);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, try_asks_and_records_in_one_step)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    c.half_open_successes = 1;
    fks_breaker_t *b = fks_breaker_new (r, "test:try", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_try (b, NULL, false, "no price", T0, &st, &tr, &err), 1);
    cr_assert_eq (fks_breaker_try (b, NULL, false, "no price", T0, &st, &tr, &err), 1);
    cr_assert_eq (fks_breaker_try (b, NULL, false, "no price", T0, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_OPENED, "the third recorded failure opens it");
    cr_assert_eq (fks_breaker_try (b, NULL, true, NULL, T0 + 1, &st, &tr, &err), 0,
                  "an open breaker refuses, and records nothing");
    cr_assert_eq (st.window_total, 3);
    cr_assert_eq (fks_breaker_try (b, NULL, true, NULL, T0 + 10000, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_CLOSED_NOW, "after the cool-down a good probe closes it");
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, try_many_is_all_or_nothing)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:many", &c);
    fks_breaker_status_t st;
    fks_redis_err_t err;
    bool opened, closed;
    bool good[4] = { true, true, false, true };
    cr_assert_eq (fks_breaker_try_many (b, NULL, good, 4, "timeout", T0, &st, &opened, &closed,
                                        &err), 4, "%s", err.msg);
    cr_assert_eq (st.window_total, 4);
    cr_assert_eq (st.window_failures, 1);
    cr_assert (!opened && !closed);
    //  Three failures open it at the last outcome: every order was let through.
    bool bad[3] = { false, false, false };
    cr_assert_eq (fks_breaker_try_many (b, NULL, bad, 3, "timeout", T0 + 1, &st, &opened, &closed,
                                        &err), 3);
    cr_assert (opened);
    cr_assert_eq (st.state, FKS_BREAKER_OPEN);
    //  Four more: the breaker refuses the first, so nothing is recorded.
    cr_assert_eq (fks_breaker_try_many (b, NULL, good, 4, NULL, T0 + 2, &st, &opened, &closed,
                                        &err), 0);
    cr_assert_eq (st.window_total, 7, "a refused batch records nothing");
    //  Four failures where the third would already be refused (opened after 3 in a row).
    fks_breaker_reset (b, NULL, T0 + 3, &st, NULL, &err);
    bool four_bad[4] = { false, false, false, false };
    cr_assert_eq (fks_breaker_try_many (b, NULL, four_bad, 4, "x", T0 + 4, &st, &opened, &closed,
                                        &err), 0, "the 4th order would have met an open breaker");
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    cr_assert_eq (st.consecutive, 0);
    cr_assert_eq (fks_breaker_try_many (b, NULL, good, 0, NULL, T0, &st, NULL, NULL, &err), -1);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  Orders named by id: one outcome per order, however often its message is handled

Test (breaker, an_order_is_recorded_once_under_its_id)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:ids", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    for (int i = 0; i < 3; i++)
        cr_assert_eq (fks_breaker_record (b, "coid-a", false, "timeout", T0 + i, &st, &tr, &err),
                      0, "%s", err.msg);
    cr_assert_eq (st.window_total, 1, "one order, one outcome");
    cr_assert_eq (st.consecutive, 1);
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED, "three copies of one failure opened it");
    cr_assert_eq (fks_breaker_record (b, "coid-b", false, "timeout", T0 + 5, &st, &tr, &err), 0);
    cr_assert_eq (fks_breaker_try (b, "coid-c", true, NULL, T0 + 6, &st, &tr, &err), 1);
    cr_assert_eq (fks_breaker_try (b, "coid-c", false, "x", T0 + 7, &st, &tr, &err), 1);
    cr_assert_eq (st.window_total, 3);
    cr_assert_eq (st.window_failures, 2);
    cr_assert_eq (st.consecutive, 0, "the second try of coid-c was recorded");
    //  Unnamed outcomes are all recorded; an id must be 1..127 bytes.
    cr_assert_eq (fks_breaker_record (b, NULL, true, NULL, T0 + 8, &st, &tr, &err), 0);
    cr_assert_eq (fks_breaker_record (b, NULL, true, NULL, T0 + 9, &st, &tr, &err), 0);
    cr_assert_eq (st.window_total, 5);
    char long_id[FKS_BREAKER_ID_MAX + 1];
    memset (long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    cr_assert_eq (fks_breaker_record (b, "", true, NULL, T0, &st, &tr, &err), -1);
    cr_assert_eq (fks_breaker_allow (b, long_id, T0, &st, &tr, &err), -1);
    cr_assert (strstr (err.msg, "order id"), "%s", err.msg);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, an_order_let_through_before_is_let_through_again_when_it_has_opened)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:ids-open", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    const char *ids[3] = { "o-1", "o-2", "o-3" };
    bool bad[3] = { false, false, false };
    bool opened = false, closed = false;
    cr_assert_eq (fks_breaker_try_many (b, ids, bad, 3, "timeout", T0, &st, &opened, &closed,
                                        &err), 3, "%s", err.msg);
    cr_assert (opened);
    //  o-2's batch is redone: its order went through before the breaker opened.
    cr_assert_eq (fks_breaker_allow (b, "o-2", T0 + 1, &st, &tr, &err), 1);
    cr_assert_eq (fks_breaker_try (b, "o-2", false, "timeout", T0 + 1, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_NO_CHANGE, "o-2 did not open it");
    cr_assert_eq (fks_breaker_try_many (b, ids, bad, 3, "timeout", T0 + 2, &st, &opened, &closed,
                                        &err), 3);
    cr_assert (opened, "o-3's recording opened it: its redo publishes that (once committed)");
    cr_assert_eq (st.opened_at_ms, T0, "the breaker opened twice");
    cr_assert_eq (st.window_total, 3, "a redone order was recorded again");
    //  A new order is refused, and a refusal notes nothing.
    cr_assert_eq (fks_breaker_allow (b, "o-4", T0 + 3, &st, &tr, &err), 0);
    const char *more[2] = { "o-1", "o-5" };
    bool good[2] = { true, true };
    cr_assert_eq (fks_breaker_try_many (b, more, good, 2, NULL, T0 + 3, &st, &opened, &closed,
                                        &err), 0);
    cr_assert_eq (fks_breaker_reset (b, NULL, T0 + 4, &st, &tr, &err), 0);
    cr_assert_eq (fks_breaker_try_many (b, more, good, 2, NULL, T0 + 5, &st, &opened, &closed,
                                        &err), 2);
    cr_assert_eq (st.window_total, 1, "only o-5 is new after the reset");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

//  The execution worker publishes breaker.opened / breaker.closed in the transaction of the
//  order whose outcome moved the breaker. If that transaction rolls back after the script ran
//  (a batch redone message by message, a crash), the redo finds the id noted and records
//  nothing; it must still be told to publish the transition, or the event is lost (seen under
//  load: the breaker closed and no breaker.closed was ever published). Only the id that moved
//  it is told, and only while the breaker stands where that left it.
Test (breaker, a_redone_recording_reports_the_transition_it_made_while_it_stands)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:redo", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    const char *fail[3] = { "f-1", "f-2", "f-3" };
    for (int i = 0; i < 3; i++)
        cr_assert_eq (fks_breaker_record (b, fail[i], false, "timeout", T0 + i, &st, &tr, &err),
                      0, "%s", err.msg);
    cr_assert_eq (tr, FKS_BREAKER_OPENED);
    //  f-3's transaction rolled back: its redo is told again; f-2's is not.
    cr_assert_eq (fks_breaker_record (b, "f-3", false, "timeout", T0 + 5, &st, &tr, &err), 0);
    cr_assert_eq (tr, FKS_BREAKER_OPENED, "the redo of the opening recording was not told");
    cr_assert_eq (st.opened_at_ms, T0 + 2, "the redo opened it again");
    cr_assert_eq (st.consecutive, 3);
    cr_assert_eq (fks_breaker_record (b, "f-2", false, "timeout", T0 + 5, &st, &tr, &err), 0);
    cr_assert_eq (tr, FKS_BREAKER_NO_CHANGE);
    //  The same through try (the paper broker's path) and try_many (a batch).
    cr_assert_eq (fks_breaker_try (b, "f-3", false, "timeout", T0 + 6, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_OPENED);
    //  Two probes close it after the cool-down; the second one's redo is told, as one of a batch.
    cr_assert_eq (fks_breaker_try (b, "p-1", true, NULL, T0 + 2 + 10000, &st, &tr, &err), 1);
    cr_assert_eq (st.state, FKS_BREAKER_HALF_OPEN);
    cr_assert_eq (fks_breaker_try (b, "p-2", true, NULL, T0 + 2 + 10001, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_CLOSED_NOW);
    const char *batch[2] = { "p-1", "p-2" };
    bool ok[2] = { true, true };
    bool opened = true, closed = false;
    cr_assert_eq (fks_breaker_try_many (b, batch, ok, 2, NULL, T0 + 20000, &st, &opened,
                                        &closed, &err), 2, "%s", err.msg);
    cr_assert (closed, "the redo of the closing probe was not told");
    cr_assert_not (opened);
    //  f-3's opening no longer stands: the breaker closed since.
    cr_assert_eq (fks_breaker_record (b, "f-3", false, "timeout", T0 + 20001, &st, &tr, &err), 0);
    cr_assert_eq (tr, FKS_BREAKER_NO_CHANGE, "a superseded opening was told again");
    //  Nor does the closing once it has moved on (an operator's reset counts as a change).
    cr_assert_eq (fks_breaker_reset (b, NULL, T0 + 20002, &st, &tr, &err), 0);
    cr_assert_eq (fks_breaker_try (b, "p-2", true, NULL, T0 + 20003, &st, &tr, &err), 1);
    cr_assert_eq (tr, FKS_BREAKER_NO_CHANGE, "a superseded closing was told again");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, an_id_is_known_for_at_least_ten_minutes)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    c.window_ms = 3600000;
    fks_breaker_t *b = fks_breaker_new (r, "test:ids-age", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    //  T0 starts a ten-minute bucket: the id is known in its bucket and the next one.
    cr_assert_eq (fks_breaker_record (b, "aged", true, NULL, T0 + 599999, &st, &tr, &err), 0);
    cr_assert_eq (fks_breaker_record (b, "aged", true, NULL, T0 + 600000 + 599999, &st, &tr,
                                      &err), 0);
    cr_assert_eq (st.window_total, 1);
    cr_assert_eq (fks_breaker_record (b, "aged", true, NULL, T0 + 1200000, &st, &tr, &err), 0);
    cr_assert_eq (st.window_total, 2, "an id from two buckets ago counts as new");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, replicas_share_one_state)
{
    fks_redis_t *r1 = s_redis ();
    fks_redis_err_t err;
    fks_redis_t *r2 = fks_redis_new (h_redis_url (REDIS_DB), 2000, 2000, &err);
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *a = fks_breaker_new (r1, "test:shared", &c);
    fks_breaker_t *b = fks_breaker_new (r2, "test:shared", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    s_record (a, false, T0, &st);
    s_record (b, false, T0, &st);
    cr_assert_eq (s_record (a, false, T0, &st), FKS_BREAKER_OPENED);
    cr_assert_eq (s_allow (b, T0 + 1, &st, &tr), 0, "the other replica sees it open");
    fks_breaker_destroy (&a);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r1);
    fks_redis_destroy (&r2);
}

typedef struct {
    const char *url;
    int opened;
} s_racer_t;

static void *
s_race (void *arg)
{
    s_racer_t *x = arg;
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (x->url, 2000, 2000, &err);
    fks_breaker_cfg_t c = s_cfg ();
    c.failures = 10;
    fks_breaker_t *b = fks_breaker_new (r, "test:race", &c);
    for (int i = 0; i < 50; i++) {
        fks_breaker_transition_t tr;
        fks_breaker_status_t st;
        if (fks_breaker_record (b, NULL, false, "boom", T0, &st, &tr, &err) == 0
            && tr == FKS_BREAKER_OPENED)
            x->opened++;
    }
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
    return NULL;
}

Test (breaker, concurrent_replicas_see_exactly_one_opening)
{
    fks_redis_t *r = s_redis ();
    fks_redis_destroy (&r);
    char url[300];
    snprintf (url, sizeof url, "%s", h_redis_url (REDIS_DB));
    s_racer_t racers[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        racers[i] = (s_racer_t) { url, 0 };
        pthread_create (&t[i], NULL, s_race, &racers[i]);
    }
    int opened = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join (t[i], NULL);
        opened += racers[i].opened;
    }
    cr_assert_eq (opened, 1, "breaker.opened would be published %d times", opened);
}

Test (breaker, reset_closes_it_and_reports_whether_it_changed)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:reset", &c);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    fks_redis_err_t err;
    cr_assert_eq (fks_breaker_reset (b, "by admin", T0, &st, &tr, &err), 0);
    cr_assert_eq (tr, FKS_BREAKER_NO_CHANGE, "resetting a closed breaker changes nothing");
    for (int i = 0; i < 3; i++)
        s_record (b, false, T0, &st);
    cr_assert_eq (fks_breaker_status (b, T0, &st, &err), 0);
    cr_assert_eq (st.state, FKS_BREAKER_OPEN);
    cr_assert_eq (fks_breaker_reset (b, "by admin", T0 + 1, &st, &tr, &err), 0);
    cr_assert_eq (tr, FKS_BREAKER_CLOSED_NOW);
    cr_assert_eq (st.state, FKS_BREAKER_CLOSED);
    cr_assert_str_eq (st.reason, "by admin");
    cr_assert_eq (st.consecutive, 0);
    cr_assert_eq (s_allow (b, T0 + 2, &st, &tr), 1);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, survives_redis_forgetting_its_script)
{
    fks_redis_t *r = s_redis ();
    fks_breaker_cfg_t c = s_cfg ();
    fks_breaker_t *b = fks_breaker_new (r, "test:noscript", &c);
    fks_breaker_status_t st;
    s_record (b, false, T0, &st);
    fks_redis_err_t err;
    redisReply *rep = fks_redis_command (r, &err, "SCRIPT FLUSH");
    cr_assert (rep, "%s", err.msg);
    freeReplyObject (rep);
    cr_assert_eq (s_record (b, false, T0, &st), FKS_BREAKER_NO_CHANGE);
    cr_assert_eq (st.consecutive, 2, "the state survived, the script was loaded again");
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker, unreachable_redis_is_an_error_not_a_decision)
{
    h_require_services ();
    fks_redis_err_t err;
    char url[64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", h_free_port ());
    fks_redis_t *r = fks_redis_new (url, 200, 200, &err);
    fks_breaker_t *b = fks_breaker_new (r, "test:down", NULL);
    fks_breaker_status_t st;
    fks_breaker_transition_t tr;
    cr_assert_eq (fks_breaker_allow (b, NULL, T0, &st, &tr, &err), -1);
    cr_assert (err.msg[0]);
    fks_breaker_destroy (&b);
    fks_redis_destroy (&r);
}

Test (breaker_cfg, reads_the_environment_and_refuses_bad_values)
{
    setenv ("FKS_BREAKER_FAILURES", "7", 1);
    setenv ("FKS_BREAKER_COOLDOWN", "45s", 1);
    fks_breaker_cfg_t c;
    char err[256];
    cr_assert_eq (fks_breaker_cfg_load (&c, err, sizeof err), 0, "%s", err);
    cr_assert_eq (c.failures, 7);
    cr_assert_eq (c.cooldown_ms, 45000);
    cr_assert_eq (c.half_open_successes, 3);
    setenv ("FKS_BREAKER_FAILURE_RATE", "1.5", 1);
    cr_assert_eq (fks_breaker_cfg_load (&c, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_BREAKER_FAILURE_RATE"), "%s", err);
    unsetenv ("FKS_BREAKER_FAILURES");
    unsetenv ("FKS_BREAKER_COOLDOWN");
    unsetenv ("FKS_BREAKER_FAILURE_RATE");
}

Test (breaker_cfg, scopes_are_checked)
{
    cr_assert (fks_breaker_scope_valid ("broker:paper"));
    cr_assert (fks_breaker_scope_valid ("exchange:binance.spot-1"));
    cr_assert (!fks_breaker_scope_valid (""));
    cr_assert (!fks_breaker_scope_valid ("Broker"));
    cr_assert (!fks_breaker_scope_valid ("a b"));
    cr_assert_str_eq (fks_breaker_state_name (FKS_BREAKER_HALF_OPEN), "half_open");
}
