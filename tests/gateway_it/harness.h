/*  harness.h - what the gateway's integration tests share: a fresh database, a real fks-bus
 *  and fks-gateway on free loopback ports, HTTP through libcurl, SQL through libpq.
 *
 *  Each test file starts its programs once, in Criterion's PRE_ALL hook (the runner process),
 *  and stops them in POST_ALL. Criterion runs every test in a worker process that inherits the
 *  runner's environment, so the hook publishes what the tests need as FKS_IT_* variables, and
 *  it_ctx() reads them back in the test. When FKS_TEST_PG_URL / FKS_TEST_REDIS_URL are unset,
 *  or a program does not start, every test fails with the reason (never a silent pass):
 *  tools/test.sh starts the services and sets the variables.
 */
#ifndef FKS_IT_HARNESS_H
#define FKS_IT_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "tests/lib/ports.h"                 /* fks_test_free_port, for extra programs */

#define IT_SECRET    "it-webhook-secret-0123456789"
#define IT_ADMIN_KEY "it-admin-key-abcdefghijklmnopqrstuvwxyz"

typedef struct {
    char db_url[512];           /* the file's own database (key=value conninfo) */
    char redis_url[256];
    char base[64];              /* http://127.0.0.1:<gateway port> */
    int port;
    int bus_stream_port;
    int bus_port;
    char log_path[256];         /* the gateway's log */
} it_ctx_t;

/*  Runner side (PRE_ALL / POST_ALL). name (short, [a-z0-9_]) names the database and logs.
 *  with_bus starts fks-bus first; extra_env holds "NAME=value" strings for the gateway (NULL
 *  terminated, may be NULL). Never fails loudly: a problem is recorded for it_ctx to report. */
void it_setup (const char *name, bool with_bus, const char *const *extra_env);

/*  Stops the programs, drops the database, and removes the logs unless keep_logs (a test
 *  failed: their paths are printed instead). */
void it_teardown (bool keep_logs);

/*  Test side: the context, or a failed assertion naming what is missing. */
const it_ctx_t *it_ctx (void);

/*  Starts an extra fks-gateway with the context's settings plus extra_env (which wins), on a
 *  new port written to *port. Returns its pid, or -1. it_stop_pid stops it (SIGTERM, then
 *  SIGKILL after 10 s) and returns its exit status (or -1). */
pid_t it_start_gateway (const it_ctx_t *ctx, const char *const *extra_env, int *port,
                        const char *log_path);
int it_stop_pid (pid_t pid);

/*  HTTP. headers: NULL-terminated "Name: value" lines (may be NULL). body may be NULL. */
typedef struct {
    long status;
    char *body;                 /* NUL-terminated */
    size_t len;
    char headers[8192];
} it_resp_t;

int it_http (const char *method, const char *url, const char *const *headers, const char *body,
             size_t len, it_resp_t *out);

/*  it_http giving up after timeout_ms (for streams: the status and headers still count). */
int it_http_timeout (const char *method, const char *url, const char *const *headers,
                     const char *body, size_t len, long timeout_ms, it_resp_t *out);
void it_resp_free (it_resp_t *r);

/*  A response header's value (case-insensitive name), copied into out; false when absent. */
bool it_resp_header (const it_resp_t *r, const char *name, char *out, size_t cap);

/*  POSTs a webhook body to path with Content-Type ctype from address xff (X-Forwarded-For;
 *  the gateway trusts 127.0.0.1 as a proxy in these tests). */
int it_webhook (const it_ctx_t *ctx, const char *path, const char *ctype, const char *body,
                const char *xff, it_resp_t *out);

/*  SQL on the file's database: one value of the first row as a long (count queries), or -1. */
long it_sql_long (const it_ctx_t *ctx, const char *sql, const char *param);

/*  Runs a statement; returns the result (caller PQclear's) or NULL. */
PGresult *it_sql (const it_ctx_t *ctx, const char *sql, int n, const char *const *params);

/*  Reads a JSON string member "key":"value" from a flat JSON text into out. */
bool it_json_str (const char *json, const char *key, char *out, size_t cap);

/*  The current value of a Prometheus series line starting with `series` in /metrics, or -1. */
double it_metric (const it_ctx_t *ctx, const char *series);

/*  A number no other call in this suite's run returns (for idempotency keys and ids): the
 *  wall clock in microseconds times 1000 plus a counter, mixed by a bijection, so calls in one
 *  test differ by the counter and the tests, which run one after the other in their own
 *  processes, by the clock. (The copies this replaces, microseconds within the second plus
 *  the pid, repeated across seconds: a webhook of one test came back "duplicate" once.) */
unsigned long it_unique (void);

/*  A client address for X-Forwarded-For unique to this test process: 10.<a>.<b>.<c>. */
void it_unique_addr (char out[32]);

#endif
