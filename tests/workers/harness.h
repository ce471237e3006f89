/*  harness.h - what the workers' integration tests share: a database of their own, a Redis
 *  database of their own, real programs started and stopped, HTTP, the bus and its stream.
 *
 *  Every test that needs services calls h_require_services first: without FKS_TEST_PG_URL and
 *  FKS_TEST_REDIS_URL it fails, telling the user to run tools/test.sh. Each test gets a fresh
 *  PostgreSQL database (created and migrated by h_db_create, dropped by h_db_drop) and a
 *  Redis database number of its binary's own, flushed at the start, so tests of different
 *  binaries can run in parallel. Programs are found through FKS_BUS_BIN, FKS_GATEWAY_BIN,
 *  FKS_SIGNAL_BIN and FKS_EXECUTION_BIN (set by tests/workers/meson.build); their logs go to
 *  files that h_dump_logs prints when a test fails. Every wait is bounded.
 */
#ifndef FKS_TEST_WORKERS_HARNESS_H
#define FKS_TEST_WORKERS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "bus/client.h"
#include "bus/envelope.h"
#include "common/id.h"
#include "common/pg.h"

#define H_MAX_PROCS 16

/*  Fails the test unless FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are set. */
void h_require_services (void);

/*  Creates and migrates this test's database; returns its connection string. */
const char *h_db_create (void);
void h_db_drop (void);
const char *h_db_url (void);

/*  FKS_TEST_REDIS_URL with database number db, flushed. Suites that run at once must not share
 *  one: 10 execution, 11 breaker, 12 runtime, 13 pipeline; 14 and 15 are the k8s checks'
 *  (tests/k8s/fkslocal.py REDIS_DBS); 0 is shared by suites that keep to their own keys. */
const char *h_redis_url (int db);

/*  Runs SQL on the test database (no parameters) and returns the first column of the first
 *  row as an integer / as text (caller frees); asserts it worked. */
long long h_sql_int (const char *sql);
char *h_sql_text (const char *sql);
void h_sql_exec (const char *sql);

/*  Polls sql every 50 ms until it returns want or timeout_ms passes; returns the last value. */
long long h_wait_int (const char *sql, long long want, int timeout_ms);

/*  printf into buf (cap bytes); returns buf. For the tests' queries. */
char *h_sqlf (char *buf, size_t cap, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

/*  Waits up to 30 s until the alert's inbox status is `status`; otherwise prints the programs'
 *  logs and fails, naming the status found and the orders there are. */
void h_wait_alert_status (const fks_id_t *alert, const char *status);

/*  A free loopback TCP port below the ephemeral range (tests/lib/ports.h); the test fails
 *  when there is none. */
int h_free_port (void);

typedef struct {
    pid_t pid;
    char name[32];
    char log[256];
    int http_port;
} h_proc_t;

/*  Starts bin with the current environment plus env (NULL-terminated "K=V" strings), its
 *  output in a log file. */
h_proc_t *h_spawn (const char *name, const char *bin, const char *const *env, int http_port);

/*  Sends sig and waits up to timeout_ms for the exit; returns the exit status (128+signal
 *  when killed), SIGKILLing it after the timeout (then -1). */
int h_stop (h_proc_t *p, int sig, int timeout_ms);

/*  Waits until GET http://127.0.0.1:port/path answers 200; true if it did in time. */
bool h_wait_http (int port, const char *path, int timeout_ms);

/*  HTTP to 127.0.0.1:port. Returns the status (0 when no answer); *body (may be NULL) gets
 *  the body (caller frees). auth may be NULL (no Authorization header). */
int h_http (const char *method, int port, const char *path, const char *auth,
            const char *content_type, const char *data, char **body);

/*  Prints the last lines of every log of the processes started in this test. */
void h_dump_logs (void);

//  --------------------------------------------------------------------------
//  A whole pipeline

typedef struct {
    int signal_replicas;            /* 0: none */
    int execution_replicas;
    bool gateway;
    const char *const *extra_env;   /* added to every program (NULL-terminated) */
    const char *const *exec_env;    /* added to execution replicas only */
    int redis_db;
} h_stack_opts_t;

typedef struct {
    h_stack_opts_t opts;
    char bus_url[64], stream_url[64];
    int bus_port, gateway_port;
    h_proc_t *bus, *gateway;
    h_proc_t *signal[4], *execution[4];
    int signal_ports[4], execution_ports[4];
    char pg_env[1200], redis_env[300];
    fks_bus_client_t *client;       /* for publishing */
    void *zctx, *sub;               /* stream subscriber */
} h_stack_t;

#define H_WEBHOOK_SECRET "test-webhook-secret-0123456789"
#define H_ADMIN_KEY      "test-admin-key-0123456789abcdefghij"

/*  Creates the database, starts the programs, waits until every one is ready, connects a
 *  publishing client and a stream subscriber. */
void h_stack_start (h_stack_t *s, const h_stack_opts_t *opts);

/*  Starts one more execution replica (index i), e.g. after a kill. */
void h_stack_start_execution (h_stack_t *s, int i);

/*  Stops everything with SIGTERM and asserts each program exited 0 (drained), then drops the
 *  database. */
void h_stack_stop (h_stack_t *s);

/*  An alert, as the gateway would have accepted it. Zero / NULL fields are left out. */
typedef struct {
    const char *symbol;
    const char *action;
    double quantity;
    double price;
    const char *order_type;
    double limit_price;
    int64_t alert_time_ms;
    const char *market_position;
    const char *quantity_type;      /* NULL: left out (fixed_quantity) */
    double confidence;
    bool has_confidence;
    double position_size;           /* the strategy's target position, when has_position_size */
    bool has_position_size;
    const char *idem;               /* the inbox idempotency key; NULL: unique */
    bool lost;                      /* stored but never published: the bus lost it */
} h_alert_t;

/*  Does what the gateway does for an accepted alert: inserts the inbox row and the
 *  webhook.received envelope (events) in one transaction, then publishes it (unless a->lost:
 *  then only the bus's reconciler publishes it, once it is overdue). Returns the
 *  alert id; *env_out (may be NULL) gets a malloc'd copy of the envelope, *len_out its size,
 *  for publishing it again. */
fks_id_t h_inject_alert (h_stack_t *s, const h_alert_t *a, uint8_t **env_out, size_t *len_out);

/*  Inserts an encoded envelope into the test database's events table (the outbox). */
void h_store_event (const fks_envelope_hdr_t *hdr, const void *data, size_t len);

/*  Publishes raw envelope bytes of type on the bus. */
void h_publish (h_stack_t *s, const char *type, const uint8_t *data, size_t len);

/*  Publishes an envelope of type with a body packed by the caller (a msgpack map), corr nil.
 *  Inserted into events first, like every producer does. */
void h_publish_body (h_stack_t *s, const char *type, const char *src, const void *body,
                     size_t body_len);

/*  The same with the envelope's corr and cause (NULL: none). */
void h_publish_body_as (h_stack_t *s, const char *type, const char *src, const fks_id_t *corr,
                        const fks_id_t *cause, const void *body, size_t body_len);

/*  Encodes body as an envelope (corr and cause NULL for none) and stores it in events, as a
 *  producer does before publishing; the frame is left in *frame (initialised here, the caller
 *  destroys it), to publish when the test wants. */
void h_store_body (const char *type, const char *src, const fks_id_t *corr,
                   const fks_id_t *cause, const void *body, size_t body_len,
                   msgpack_sbuffer *frame);

/*  Reads stream envelopes for up to timeout_ms, collecting the types of those whose corr is
 *  corr, until n have been seen. Returns how many were seen; types[i] filled. */
int h_stream_types (h_stack_t *s, const fks_id_t *corr, char types[][64], int n,
                    int timeout_ms);

/*  Makes sure the stream subscription is live: publishes probes until one comes back. */
void h_stream_ready (h_stack_t *s);

/*  Sets the latest price of symbol in the stack's Redis. */
void h_set_price (h_stack_t *s, const char *symbol, double price);

/*  Reads a metric's value from GET /metrics on port (the line starting with `series `),
 *  or -1 when absent. */
double h_metric (int port, const char *series);

#endif
