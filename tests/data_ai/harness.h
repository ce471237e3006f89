/*  harness.h - what the data and ai worker tests share: the fake market-data server, a fresh
 *  migrated database per test, FKS programs started on free ports, HTTP, SQL and Redis.
 *
 *  Everything is started by the test that needs it and stopped by dai_cleanup (call it from
 *  the suite's .fini), so each test is independent. Integration tests call dai_need_services
 *  first: without FKS_TEST_PG_URL / FKS_TEST_REDIS_URL it fails the test with a message
 *  saying to run tools/test.sh, never a silent pass.
 */
#ifndef FKS_TESTS_DATA_AI_HARNESS_H
#define FKS_TESTS_DATA_AI_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*  Stops everything this process started (programs, the fake server) and drops its
 *  databases. */
void dai_cleanup (void);

/*  The fake market-data server (fake_market.py over fixtures/), started once per test
 *  process; returns its base URL (http://127.0.0.1:<port>). rebase: see fake_market.py. */
const char *dai_fake_market (bool rebase);

/*  Queues canned answers on the fake server (a JSON list, see fake_market.py). */
void dai_fake_script (const char *json);

/*  The requests the fake server received, as its JSON text (caller frees). */
char *dai_fake_requests (void);

/*  HTTP through libcurl: status, and the body (malloc'd, NUL-terminated) in *body when not
 *  NULL. -1 when no answer. */
long dai_http (const char *method, const char *url, const char *body, char **out);

/*  Asserts that FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are set (else fails the test with a
 *  message naming tools/test.sh). */
void dai_need_services (void);

/*  Creates a fresh database, migrated with `fks migrate`, dropped by dai_cleanup. Returns its
 *  conninfo (static storage, valid until the next call). */
const char *dai_db (void);

/*  A connection to the last dai_db database (kept open until dai_cleanup). */
PGconn *dai_pg (void);

/*  One value of the first row as a long (-1 when no row or NULL); params may be NULL. */
long dai_sql_long (const char *sql, int n, const char *const *params);

/*  One value of the first row as a double (NAN when none). */
double dai_sql_double (const char *sql, int n, const char *const *params);

/*  Runs a statement and asserts it succeeded. */
void dai_sql_exec (const char *sql);

/*  The Redis URL of the tests (FKS_TEST_REDIS_URL). */
const char *dai_redis_url (void);

/*  A Redis command through hiredis, its reply as text (caller frees; NULL for nil). */
char *dai_redis (const char *fmt, ...);

/*  A free loopback TCP port below the ephemeral range (tests/lib/ports.h); the test fails
 *  when there is none. */
int dai_free_port (void);

/*  Starts a program of the build (e.g. "workers/fks-data"; an absolute path is taken as it is)
 *  with the environment of this process minus FKS_* (but FKS_TEST_*), plus env
 *  (NULL-terminated "NAME=value" strings), logging to log_path. Waits until
 *  http://127.0.0.1:<port>/health answers 200 when port > 0. Returns the pid (stopped by
 *  dai_cleanup or dai_stop). */
pid_t dai_start (const char *program, const char *const *env, int port, const char *log_path);

/*  Starts fks-bus for the current database on free ports (reconciling every second, events
 *  overdue after 2 s); returns its client URL. dai_bus_stream_url gives its event stream. */
const char *dai_start_bus (void);
const char *dai_bus_stream_url (void);

/*  SIGTERM, then SIGKILL after 10 s. Returns the exit status, or -1. */
int dai_stop (pid_t pid);

/*  Waits up to timeout_ms for pid to exit by itself. Returns its exit status, or -1 (it is
 *  then stopped). */
int dai_wait_exit (pid_t pid, int timeout_ms);

/*  The text of a file (caller frees; "" when unreadable). */
char *dai_slurp (const char *path);

/*  The value of a series in a program's /metrics (the line starting with `series`), or -1. */
double dai_metric (int port, const char *series);

/*  Polls sql (a count) until it reaches at least want, or timeout_ms passes. Returns the
 *  last value. For waiting on asynchronous stages, never for timing. */
long dai_wait_count (const char *sql, long want, int timeout_ms);

/*  A file of the source tree or the build (FKS_SOURCE_ROOT / FKS_BUILD_ROOT + rel). */
const char *dai_source (const char *rel);
const char *dai_build (const char *rel);

#endif
