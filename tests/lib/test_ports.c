/*  test_ports.c - the port picker the integration harnesses share (tests/lib/ports.c).
 *
 *  What a harness relies on: the ports are below the kernel's ephemeral range (where no
 *  outgoing connection takes one), free when handed out, and never handed out twice, so that
 *  several can be taken before the programs that bind them start.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/ports.h"

static int
s_ephemeral_low (void)
{
    int low = 32768, high = 60999;
    FILE *f = fopen ("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        cr_assert_eq (fscanf (f, "%d %d", &low, &high), 2);
        fclose (f);
    }
    return low;
}

static int
s_listen (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    if (bind (fd, (struct sockaddr *) &a, sizeof a) != 0 || listen (fd, 4) != 0) {
        close (fd);
        return -1;
    }
    return fd;
}

Test (ports, picks_are_below_the_ephemeral_range_and_never_repeat)
{
    int low = s_ephemeral_low ();
    enum { N = 300 };
    int seen[N];
    for (int i = 0; i < N; i++) {
        int p = fks_test_free_port ();
        cr_assert (p >= FKS_TEST_PORT_LOW && p <= FKS_TEST_PORT_HIGH, "port %d", p);
        if (low > FKS_TEST_PORT_LOW + 1000)
            cr_assert_lt (p, low, "port %d is in the ephemeral range from %d", p, low);
        for (int j = 0; j < i; j++)
            cr_assert_neq (seen[j], p, "port %d handed out twice", p);
        seen[i] = p;
    }
}

Test (ports, each_picked_port_can_be_listened_on)
{
    //  As a harness does: take several ports, then start the programs that listen on them.
    enum { N = 40 };
    int ports[N], fds[N];
    for (int i = 0; i < N; i++)
        ports[i] = fks_test_free_port ();
    for (int i = 0; i < N; i++) {
        fds[i] = s_listen (ports[i]);
        cr_assert_geq (fds[i], 0, "port %d was handed out but cannot be listened on", ports[i]);
    }
    for (int i = 0; i < N; i++)
        close (fds[i]);
}
