/*  test_ratelimit.c - gateway/ratelimit.c: sliding windows, shared through Redis, local when
 *  Redis is down. Uses the test Redis (FKS_TEST_REDIS_URL) directly, with a key prefix of its
 *  own so that runs never share counts.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/id.h"
#include "common/metrics.h"
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

//  fks_ratelimit_over asks without counting: a budget of failures is checked before the work
//  and counted only once a request has failed.
Test (ratelimit, over_asks_without_counting)
{
    fks_ratelimit_opts_t o = { .window_ms = 60000 };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    cr_assert_not_null (rl);
    int retry = 0;
    for (int i = 0; i < 100; i++)
        cr_assert_eq (fks_ratelimit_over (rl, "api_auth", "10.0.0.9", 3, &retry), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq (fks_ratelimit_over (rl, "api_auth", "10.0.0.9", 3, &retry), 0);
        cr_assert_eq (fks_ratelimit_hit (rl, "api_auth", "10.0.0.9", 3, &retry), 0);
    }
    cr_assert_eq (fks_ratelimit_over (rl, "api_auth", "10.0.0.9", 3, &retry), 1);
    cr_assert (retry >= 1 && retry <= 120, "Retry-After %d", retry);
    cr_assert_eq (fks_ratelimit_over (rl, "api_auth", "10.0.0.8", 3, &retry), 0);
    cr_assert_eq (fks_ratelimit_over (rl, "api_auth", "10.0.0.9", 0, &retry), 0);
    fks_ratelimit_destroy (&rl);
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

//  A private redis-server (no persistence) for a test that needs Redis to come back on a port
//  where nothing listened; it dies with the test's process if the test crashes.
static pid_t s_private_redis = -1;

static pid_t
s_private_redis_start (int port)
{
    char port_s[16];
    snprintf (port_s, sizeof port_s, "%d", port);
    pid_t pid = fork ();
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        int null = open ("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2 (null, STDOUT_FILENO);
            close (null);
        }
        execlp ("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port_s,
                "--save", "", "--appendonly", "no", (char *) NULL);
        _exit (127);
    }
    return pid;
}

static void
s_private_redis_stop (void)
{
    if (s_private_redis > 0) {
        kill (s_private_redis, SIGTERM);
        waitpid (s_private_redis, NULL, 0);
        s_private_redis = -1;
    }
}

Test (ratelimit, an_outage_does_not_leave_the_table_full_of_unpushed_counts,
      .fini = s_private_redis_stop)
{
    enum { WINDOW_MS = 100, MAX = 100 };
    char url[64], prefix[64], addr[32];
    int port = fks_test_free_port ();                   //  no Redis there, for now
    cr_assert_gt (port, 0);
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", port);
    s_prefix (prefix);
    fks_ratelimit_opts_t o = { .redis_url = url, .window_ms = WINDOW_MS, .sync_ms = 60000,
                               .max_entries = MAX, .key_prefix = prefix };
    fks_ratelimit_t *rl = fks_ratelimit_new (&o);
    cr_assert_not_null (rl);
    int retry;
    for (int i = 0; i < MAX; i++) {
        snprintf (addr, sizeof addr, "10.3.0.%d", i);
        cr_assert_eq (fks_ratelimit_hit (rl, "ip", addr, 10, &retry), 0);
    }
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.3.1.0", 10, &retry), 1, "the table is full");

    //  Redis stays down for three more windows: every sync fails.
    cr_assert_eq (fks_ratelimit_sync_now (rl), -1);
    for (int i = 0; i < 3; i++) {
        usleep (WINDOW_MS * 1000);
        cr_assert_eq (fks_ratelimit_sync_now (rl), -1);
    }

    //  Redis comes back on that port.
    s_private_redis = s_private_redis_start (port);
    cr_assert_gt (s_private_redis, 0);
    int ok = -1;
    for (int i = 0; i < 500 && ok != 0; i++) {
        if (waitpid (s_private_redis, NULL, WNOHANG) == s_private_redis) {
            s_private_redis = -1;
            cr_assert_fail ("redis-server did not start on port %d (is it on the PATH?)", port);
        }
        usleep (20 * 1000);
        ok = fks_ratelimit_sync_now (rl);
    }
    cr_assert_eq (ok, 0, "Redis on port %d answers again", port);

    //  The counts of the outage weigh in no window now: a new source gets in, and the table
    //  holds none of the old ones.
    cr_assert_eq (fks_ratelimit_hit (rl, "ip", "10.3.1.0", 10, &retry), 0,
                  "a new source is not refused after the outage");
    fks_metric_t *entries = fks_metric_get (fks_gauge_family ("fks_gateway_ratelimit_entries",
        "Source addresses and API keys currently tracked by the rate limiter", NULL, 0), NULL);
    cr_assert_eq (fks_metric_value (entries), 0, "entries tracked after the last sync");
    fks_ratelimit_destroy (&rl);
}
