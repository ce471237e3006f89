/*  ports.c - free loopback TCP ports for the programs a test starts (see ports.h).
 *
 *  Candidates are drawn at random from the band, seeded with the process id and the clock (again
 *  after a fork) so that test processes walk different sequences, and checked by binding them. The
 *  ephemeral range is read from /proc once; if it starts inside the band, the band ends below
 *  it, and if that leaves too few ports the whole band is used with a warning (the race of
 *  ports.h is then possible again, but only on such an unusual machine).
 */
#include "tests/lib/ports.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_TRIES        1000
#define S_MIN_BAND     1000         /* fewer ports than this below the ephemeral range: warn */
#define S_GIVEN_MAX    4096         /* ports remembered so as not to hand one out twice: more
                                       than a test process ever takes (the test takes 300) */

static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool s_ready;
static pid_t s_pid;                 /* the process the seed was made for */
static unsigned s_seed;
static int s_low, s_high;           /* the band, inclusive */
static int s_given[S_GIVEN_MAX];
static size_t s_n_given;

//  The ephemeral range's first port, or 32768 (Linux's default) when it cannot be read.
static int
s_ephemeral_low (void)
{
    int low = 32768, high = 60999;
    FILE *f = fopen ("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf (f, "%d %d", &low, &high) != 2 || low < 1 || low > 65535)
            low = 32768;
        fclose (f);
    }
    return low;
}

//  A seed of this process's own: Criterion forks a process per test, and a child must not
//  repeat its parent's sequence.
static void
s_reseed (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    s_pid = getpid ();
    s_seed = (unsigned) s_pid * 2654435761u ^ (unsigned) ts.tv_nsec;
}

static void
s_init (void)
{
    s_low = FKS_TEST_PORT_LOW;
    s_high = FKS_TEST_PORT_HIGH;
    int eph = s_ephemeral_low ();
    if (eph <= s_high) {
        if (eph - s_low >= S_MIN_BAND)
            s_high = eph - 1;
        else
            fprintf (stderr, "fks_test_free_port: the ephemeral port range starts at %d, inside "
                     "%d-%d: a port picked for a test may be taken by an outgoing connection\n",
                     eph, FKS_TEST_PORT_LOW, FKS_TEST_PORT_HIGH);
    }
    s_ready = true;
}

static bool
s_given_before (int port)
{
    for (size_t i = 0; i < s_n_given && i < S_GIVEN_MAX; i++)
        if (s_given[i] == port)
            return true;
    return false;
}

//  True when port can be bound on 127.0.0.1 right now. No SO_REUSEADDR: a port that a
//  listener, a connection or a TIME_WAIT holds is refused.
static bool
s_bindable (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    bool ok = bind (fd, (struct sockaddr *) &a, sizeof a) == 0;
    close (fd);
    return ok;
}

int
fks_test_free_port (void)
{
    pthread_mutex_lock (&s_mutex);
    if (!s_ready)
        s_init ();
    if (s_pid != getpid ())
        s_reseed ();
    int port = -1;
    for (int tries = 0; tries < S_TRIES && port < 0; tries++) {
        int p = s_low + (int) (rand_r (&s_seed) % (unsigned) (s_high - s_low + 1));
        if (!s_given_before (p) && s_bindable (p))
            port = p;
    }
    if (port > 0)
        s_given[s_n_given++ % S_GIVEN_MAX] = port;
    else
        fprintf (stderr, "fks_test_free_port: no free port in 127.0.0.1:%d-%d after %d tries\n",
                 s_low, s_high, S_TRIES);
    pthread_mutex_unlock (&s_mutex);
    return port;
}
