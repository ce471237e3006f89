/*  test_ratelimit.c - gateway/ratelimit.c: sliding windows, shared through Redis, local when
 *  Redis is down. Uses the test Redis (FKS_TEST_REDIS_URL) directly, with a key prefix of its
 *  own so that runs never share counts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/id.h"
#include "gateway/ratelimit.h"
#include "harness.h"

static const char *
s_redis (void)
{
    const char *url = getenv ("FKS_TEST_REDIS_URL");
    if (!url || !*url)
        cr_assert_fail ("FKS_TEST_REDIS_URL is not set: run the integration tests with "
                        "tools/test.sh, which starts Redis");
    return url;
}

static void
s_prefix (char out[64])
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    snprintf (out, 64, "fks:test:rl:%d:%ld:", (int) getpid (), ts.tv_nsec);
}

Test (ratelimit, the_limit_is_exact_within_one_replica)
{
    fks_ratelimit_opts_t o = { .window_ms = 60000 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    cr_assert_not_null (rl);
    int retry = 0, allowed = 0;
    for (int i = 0; i < 15; i++)
        allowed += fks_ratelimit_hit (rl, "ip", "10.0.0.1", 10, &retry) == 0;
    cr_assert_eq (allowed, 10);
    cr_assert (retry >= 1 && retry <= 120, "Retry-After %d", retry);
    //  Another address has its own budget; a limit of 0 means none.
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.0.0.2", 10, &retry), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.0.0.1", 0, &retry), 0);
    cr_assert_eq (fks_ratelimit_shared (rl), false, "no Redis: counts are local");
    fks_ratelimit_destroy (&rl);
    cr_assert_null (rl);
}

Test (ratelimit, the_previous_window_still_counts_after_it_ends)
{
    fks_ratelimit_opts_t o = { .window_ms = 1000 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    int retry;
    //  Fill a window, then wait until just after the next one begins.
    int64_t now = fks_now_ms ();
    usleep ((useconds_t) ((1000 - now % 1000) + 20) * 1000);
    for (int i = 0; i < 10; i++)
        cr_assert_eq (fks_ratelimit_hit (rl, "key", "k", 10, &retry), 0);
    now = fks_now_ms ();
    usleep ((useconds_t) ((1000 - now % 1000) + 20) * 1000);
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += fks_ratelimit_hit (rl, "key", "k", 10, &retry) == 0;
    int64_t elapsed = fks_now_ms () % 1000;
    //  A fixed window would allow 10 again; the sliding one only what has slid out of it
    //  (10 x elapsed / window), whatever the scheduler made of the sleep.
    cr_assert (allowed <= 10 * elapsed / 1000 + 1, "allowed %d, %d ms into the new window",
               allowed, (int) elapsed);
    cr_assert (allowed < 10);
    fks_ratelimit_destroy (&rl);
}

Test (ratelimit, two_replicas_share_one_budget_through_redis)
{
    char prefix[64];
    s_prefix (prefix);
    fks_ratelimit_opts_t o = { .redis_url = s_redis (), .window_ms = 60000, .sync_ms = 60000,
                               .key_prefix = prefix };
    fks_ratelimit_t *a = fks_ratelimit_new (&o);
    fks_ratelimit_t *b = fks_ratelimit_new (&o);
    cr_assert (a && b);
    int retry;
    for (int i = 0; i < 6; i++)
        cr_assert_eq (fks_ratelimit_hit (a, "ip", "192.0.2.9", 10, &retry), 0);
    cr_assert_eq (fks_ratelimit_hit (b, "ip", "192.0.2.9", 10, &retry), 0);   /* b knows it now */
    cr_assert_eq (fks_ratelimit_sync_now (a), 0);
    cr_assert_eq (fks_ratelimit_sync_now (b), 0);
    cr_assert (fks_ratelimit_shared (a) && fks_ratelimit_shared (b));
    //  Seven are spent (6 on a, 1 on b): b may take three more.
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += fks_ratelimit_hit (b, "ip", "192.0.2.9", 10, &retry) == 0;
    cr_assert_eq (allowed, 3);
    fks_ratelimit_destroy (&a);
    fks_ratelimit_destroy (&b);
}

Test (ratelimit, redis_down_falls_back_to_local_counts)
{
    char url[64];
    int nobody = fks_test_free_port ();                 //  no Redis there
    cr_assert_gt (nobody, 0);
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", nobody);
    fks_ratelimit_opts_t o = { .redis_url = url, .window_ms = 60000, .sync_ms = 60000 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    cr_assert_not_null (rl, "a Redis that is down is no reason to refuse to start");
    int retry, allowed = 0;
    for (int i = 0; i < 5; i++)
        allowed += fks_ratelimit_hit (rl, "ip", "10.1.1.1", 3, &retry) == 0;
    cr_assert_eq (fks_ratelimit_sync_now (rl), -1);
    cr_assert_eq (fks_ratelimit_shared (rl), false);
    cr_assert_eq (allowed, 3, "the local limiter still limits");
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.1.1.1", 3, &retry), 1);
    fks_ratelimit_destroy (&rl);
}

Test (ratelimit, a_full_table_refuses_new_sources)
{
    fks_ratelimit_opts_t o = { .window_ms = 60000, .max_entries = 4 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    int retry;
    char addr[32];
    for (int i = 0; i < 4; i++) {
        snprintf (addr, sizeof addr, "10.2.0.%d", i);
        cr_assert_eq (fks_ratelimit_hit (rl, "ip", addr, 100, &retry), 0);
    }
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.2.0.99", 100, &retry), 1,
                  "a flood of new addresses must not switch the limits off");
    cr_assert_eq (retry, 1);
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.2.0.1", 100, &retry), 0,
                  "known sources keep their budget");
    fks_ratelimit_destroy (&rl);
}

Test (ratelimit, long_keys_are_bounded_and_kept_apart)
{
    fks_ratelimit_opts_t o = { .window_ms = 60000 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    char a[300], b[300];
    memset (a, 'a', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy (b, a, sizeof b);
    b[250] = 'b';
    int retry;
    cr_assert_eq (fks_ratelimit_hit (rl, "key", a, 1, &retry), 0);
    cr_assert_eq (fks_ratelimit_hit (rl, "key", a, 1, &retry), 1);
    cr_assert_eq (fks_ratelimit_hit (rl, "key", b, 1, &retry), 0, "a different long key");
    fks_ratelimit_destroy (&rl);
}
