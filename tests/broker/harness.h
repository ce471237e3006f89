/*  harness.h - what the broker's integration tests share: a fresh migrated database per test,
 *  the real fks-bus and bus-test-consumer programs started as child processes on free
 *  loopback ports, and small readers for SQL counts, /metrics and /health.
 *
 *  Paths come from the environment that tests/broker/meson.build sets (FKS_BUS_BIN,
 *  FKS_TEST_CONSUMER_BIN); the PostgreSQL server from FKS_TEST_PG_URL (tools/test.sh). Every
 *  child gets PR_SET_PDEATHSIG, so a failed test never leaves processes behind, and writes its
 *  log to a file named in the failure messages.
 */
#ifndef FKS_TEST_BROKER_HARNESS_H
#define FKS_TEST_BROKER_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <msgpack.h>

#include "bus/client.h"
#include "bus/envelope.h"

#define H_MAX_CHILDREN 16

typedef struct {
    char db_name[64];
    char db_url[1024];          /* key=value conninfo of the test database */
    PGconn *pg;                 /* a connection to it, for the test's own queries */
    int bus_port, stream_port, http_port;
    char bus_url[64], stream_url[64];
    pid_t bus_pid;
    char bus_log[256];
    pid_t children[H_MAX_CHILDREN];
    char child_logs[H_MAX_CHILDREN][256];
    int n_children;
    char extra_dbs[4][80];
    int n_extra_dbs;
} h_env_t;

extern h_env_t h;

/*  Criterion fixtures: fresh database with every migration and the test tables, free ports;
 *  teardown kills every child and drops the database. Fails the test when FKS_TEST_PG_URL is
 *  unset. */
void h_setup (void);
void h_teardown (void);

/*  Another database for this test, named after the test's own with `suffix`: its conninfo
 *  goes to url (cap bytes). When create is true it is created and migrated now; either way it
 *  is dropped at teardown. Call h_create_extra_db later to create a deferred one. */
void h_extra_db (const char *suffix, bool create, char *url, size_t cap);
void h_create_extra_db (const char *suffix);

/*  Starts fks-bus with the test defaults plus extra "NAME=value" entries (NULL-terminated
 *  array, may be NULL), and waits until /health answers. Returns its pid. */
pid_t h_bus_start (const char *const *extra_env);

/*  Sends sig to the broker and waits up to timeout_ms for it to exit. Returns its exit
 *  status (0..255), 128+signal when killed by one, or -1 when it did not exit in time. */
int h_bus_stop (int sig, int timeout_ms);

/*  Starts bus-test-consumer with these arguments (NULL-terminated; the harness adds --url and
 *  --pg). Returns its pid. */
pid_t h_consumer_start (const char *name, const char *const *args);

/*  Waits up to timeout_ms for pid to exit; returns as h_bus_stop. */
int h_wait_exit (pid_t pid, int timeout_ms);

/*  The first column of the first row of sql as a number (-1 on error, logged). */
long h_sql_long (const char *sql);

/*  The first column of the first row of sql as text, copied into buf (cap bytes); "" when
 *  there is none. For failure messages. Returns buf. */
const char *h_sql_text (const char *sql, char *buf, size_t cap);

/*  Runs sql; fails the test on error. */
void h_sql (const char *sql);

/*  Polls sql every 100 ms until it returns at least want; returns the last value. */
long h_wait_sql (const char *sql, long want, int timeout_ms);

/*  The value of one series on the broker's /metrics, e.g.
 *  "fks_bus_acks_total{group=\"g\"}"; -1 when absent or unreachable. */
double h_metric (const char *series);

/*  Polls h_metric until it is at least want; returns the last value. */
double h_wait_metric (const char *series, double want, int timeout_ms);

/*  Polls h_metric until it equals want; returns the last value. */
double h_wait_metric_eq (const char *series, double want, int timeout_ms);

/*  GET on 127.0.0.1:port; returns the HTTP status (or -1) and copies the body. */
int h_http_get (int port, const char *path, char *body, size_t cap);

/*  Makes n market.bar envelopes: inserts each into `events` (one transaction per 500) and,
 *  when pub is not NULL, publishes it. Returns how many publishes failed. */
int h_produce (fks_bus_client_t *pub, int n);

/*  Encodes the i-th test envelope (a market.bar with a fresh id) into out; hdr receives its
 *  header. Thread-safe. */
void h_envelope (int i, msgpack_sbuffer *out, fks_envelope_hdr_t *hdr);

/*  A publishing client for the test broker. */
fks_bus_client_t *h_publisher (void);

/*  Milliseconds on a monotonic clock. */
long long h_now_ms (void);

void h_sleep_ms (int ms);

#endif
