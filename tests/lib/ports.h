/*  ports.h - free loopback TCP ports for the programs a test starts.
 *
 *  A test that starts fks-bus, fks-gateway or a worker must tell it a port before the program
 *  binds it. Asking the kernel for port 0 and passing the number on is racy: such a port comes
 *  from the ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default), from which
 *  the kernel also picks the local port of every outgoing connection, so a libpq, curl or
 *  ZeroMQ connection of a test running in parallel can take it before the program binds it.
 *  fks_test_free_port picks below that range instead, where no connection is ever placed.
 *
 *  Used by the harnesses of tests/broker, tests/gateway_it, tests/workers and tests/data_ai.
 */
#ifndef FKS_TEST_PORTS_H
#define FKS_TEST_PORTS_H

/*  The low and high ends (inclusive) of the band ports are picked from, unless the ephemeral
 *  range reaches into it (then the band ends below the range). */
#define FKS_TEST_PORT_LOW  20000
#define FKS_TEST_PORT_HIGH 31999

/*  Returns a TCP port on 127.0.0.1 that nothing had bound when it was checked (bound, without
 *  SO_REUSEADDR, and released), in the band above and outside the kernel's ephemeral range.
 *  The process never gets the same port twice (among its first 4096), so a harness can take
 *  several in a row before starting anything. Another process may still take the port
 *  before the program binds it (a chance of about one in ten thousand per pair of picks);
 *  tests name the port in their errors. Returns -1, after a message on stderr, when no free
 *  port was found in 1000 tries.
 *  Thread-safe. */
int fks_test_free_port (void);

#endif
