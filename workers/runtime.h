/*  runtime.h - what every FKS worker shares, so that a worker's own code is its domain logic.
 *
 *  A worker is a consumer group on the bus (bus/client.h) plus a handler. The runtime joins
 *  the group with a credit window and runs FKS_WORKER_THREADS handler threads, each with its
 *  own PostgreSQL and Redis connection. A thread takes what is waiting (up to
 *  FKS_WORKER_BATCH messages) and, in ONE transaction:
 *
 *      INSERT INTO consumed (grp, msg_id) ... ON CONFLICT DO NOTHING RETURNING msg_id
 *          a message whose row already exists was handled before: it is only acked
 *      [the prefetch hook's reads, if it has one]
 *      decode the new messages; the begin hook (it sees the whole batch)
 *      for each new message: run the handler, which writes its effect and adds the
 *          envelopes it produces with fks_worker_emit
 *      the flush hook (writes a handler gathered for the whole batch)
 *      INSERT INTO events ... (the outbox: every envelope produced, one statement)
 *      COMMIT
 *
 *  (BEGIN travels with the consumed insert and the prefetch reads, and the outbox insert with
 *  COMMIT, in one round trip each: libpq's pipeline mode, common/pg.h), then publishes the produced envelopes and
 *  acks the messages. Inserting `consumed` first also serialises two replicas that got the
 *  same message (after an ack deadline): the second waits on the first one's row and then
 *  finds it. If the bus loses a publish, the broker's
 *  reconciler publishes the outbox row again, so "publish after commit" loses nothing.
 *
 *  Failures. A handler returns FKS_WORKER_OK, FKS_WORKER_RETRY (transient: PostgreSQL or
 *  Redis unreachable, a deadlock) or FKS_WORKER_FAIL (permanent: this message can never be
 *  handled). On any failure the transaction is rolled back and nothing is published. A batch
 *  that failed for another reason than a lost connection is taken apart and each message is
 *  handled alone, so one bad message never holds back the others. A transient failure is
 *  retried in place with a growing pause (100 ms to 5 s), keeping the messages (their ack
 *  deadline is renewed), until it succeeds or the worker stops. A permanent failure is
 *  recorded: the definition's on_fail hook writes the domain's record of it (e.g.
 *  signal.filtered with the reason) with the message marked consumed; without a hook, or when
 *  the hook fails too, the message is rejected as a dead letter, which the bus stores in
 *  dead_letters and publishes as dead.letter. Nothing is dropped silently.
 *
 *  Not yet (FKS_WORKER_LATER): a message that must wait for another one, which may be queued
 *  behind it (an exit whose entry has not come yet), is rolled back (its batch taken apart
 *  first) and, after a pause of 100 ms, handed back to the bus (fks_bus_release: no attempt
 *  counted), so that what is queued behind it is handled first and it comes again after. A
 *  retry would keep it in place, in front of what it waits for. The handler bounds how long
 *  it says so (fks_worker_deferred_total{group} counts the hand-backs).
 *
 *  Operations: /health, /ready (no handler thread hangs, PostgreSQL, Redis and the bus) and
 *  /metrics on the worker's port (common/ops.h). Metrics: fks_worker_messages_total{group,
 *  result} (ok, duplicate, failed, dead), fks_worker_handler_seconds{group} per message,
 *  fks_worker_batch_seconds{group} per transaction, fks_worker_batch_size{group},
 *  fks_worker_in_flight{group}, fks_worker_retries_total{group},
 *  fks_worker_publish_failures_total{group}, fks_worker_threads_hung{group}.
 *
 *  Hangs. A handler thread that shows no progress (a new attempt, a retry's pause, a wait for
 *  messages) for longer than an attempt may take (FKS_PG_STATEMENT_TIMEOUT_MS, else the ack
 *  deadline) plus the bus's ack deadline is taken to hang: the leases of what it holds lapse
 *  (the broker gives those messages to another replica), /ready and /health answer 503 until
 *  it goes on (a liveness probe restarts a pod whose thread is stuck for good),
 *  and in a routed worker what waits in its queue or comes for it is handed back to the bus
 *  (fks_bus_release: no attempt counted). The message it hangs on still takes effect once:
 *  its transaction holds that message's `consumed` row, so a copy elsewhere waits for it and
 *  then is a duplicate, or does the work if the hung transaction rolled back; a thread that
 *  wakes finds the row and only acks (runtime.c, s_hung).
 *
 *  Routing (optional, the definition's route hook). Without it every handler thread receives
 *  from the bus itself, so any thread may get any message, and two threads whose batches lock
 *  the same rows (a symbol's position) take turns on those locks. With it, and more than one
 *  thread, one dispatcher thread receives from the bus, decodes each message, asks route for
 *  its key and appends it to the queue of handler thread key % FKS_WORKER_THREADS; a handler
 *  thread takes its batch from its own queue only. So every message of one key is handled by
 *  one thread, in the order the bus delivered them, and the threads of one replica never wait
 *  on each other for a key (replicas still do: that is what the locks are for). The queues
 *  hold at most FKS_WORKER_WINDOW messages each, which the credit window already ensures.
 *  The dispatcher never waits for a thread: a message whose thread's queue is full (old
 *  deliveries still queued after a rejoin or a lapsed lease) or whose thread hangs (below) is
 *  handed back to the bus after 100 ms (fks_bus_release: the head of the group's queue, no
 *  attempt counted), and so is every later message of its key until that one is queued, so
 *  that handing back never reorders a key on this replica. While a thread retries, the ack
 *  deadlines of the messages waiting in its queue are renewed together with its batch's.
 *
 *  Stopping: SIGTERM or SIGINT (or the stop fd given to fks_worker_run) drains: threads stop
 *  taking messages, finish and commit what they hold, publish, ack, and the client leaves the
 *  group, handing back what it had not started. Messages routed to a thread's queue but not
 *  started are handed back too (released: the broker gives them to another replica at once,
 *  at the head of the queue, without counting an attempt). Exit code 0.
 *
 *  Configuration: FKS_ENV, FKS_PG_URL, FKS_REDIS_URL (both required), FKS_BUS_URL,
 *  FKS_HTTP_BIND (127.0.0.1), the worker's port variable, FKS_WORKER_THREADS (2),
 *  FKS_WORKER_BATCH (64), FKS_WORKER_WINDOW (256 un-acked messages per replica).
 */
#ifndef FKS_WORKER_RUNTIME_H
#define FKS_WORKER_RUNTIME_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "bus/envelope.h"
#include "common/id.h"
#include "common/pg.h"
#include "common/redis.h"

#define FKS_WORKER_OK      0
#define FKS_WORKER_RETRY  -1
#define FKS_WORKER_FAIL   -2
#define FKS_WORKER_LATER  -3

#define FKS_WORKER_REASON_MAX 512

typedef struct fks_worker_t fks_worker_t;

/*  One handler thread's view of the message (and transaction) being handled. */
typedef struct fks_worker_tx_t fks_worker_tx_t;

/*  Handles one decoded message inside the transaction. Returns FKS_WORKER_OK, _RETRY or _FAIL
 *  (set a reason with fks_worker_fail / fks_worker_retry). */
typedef int (fks_worker_handler_fn) (fks_worker_tx_t *tx, const fks_envelope_t *env,
                                     void *arg);

/*  Records a permanent failure of one message, in a fresh transaction (env is NULL when the
 *  message could not even be decoded; data/size are then its raw bytes). Returns
 *  FKS_WORKER_OK when recorded, else the message becomes a dead letter. */
typedef int (fks_worker_fail_fn) (fks_worker_tx_t *tx, const fks_envelope_t *env,
                                  const char *reason, void *arg);

/*  Per-thread state: made when a handler thread starts (its connections exist but may not be
 *  connected yet), freed when it ends. */
typedef void *(fks_worker_thread_init_fn) (fks_pg_t *pg, fks_redis_t *redis, void *arg);
typedef void (fks_worker_thread_fini_fn) (void *state, void *arg);

/*  Called on a handler thread about once a second while no message is waiting, outside any
 *  transaction (e.g. to refresh a gauge from Redis). */
typedef void (fks_worker_idle_fn) (void *state, void *arg);

/*  Transaction hooks, for handlers that keep state for the length of one transaction (a
 *  cache of rows they locked, writes they gather to do once): begin runs after BEGIN and the
 *  consumed insert, before the first handler call, and sees the whole batch
 *  (fks_worker_batch_env), e.g. to lock what it will touch in a fixed order; flush runs after
 *  the last handler call, before the outbox insert and COMMIT. Both may use the database and
 *  return FKS_WORKER_OK, _RETRY or _FAIL like a handler. A transaction that fails is rolled
 *  back whatever they did, and the next one starts with begin again, so state kept between
 *  the two must be reset in begin. */
typedef int (fks_worker_begin_fn) (fks_worker_tx_t *tx, void *arg);
typedef int (fks_worker_flush_fn) (fks_worker_tx_t *tx, void *arg);

/*  Reads for begin, sent in the round trip that opens the transaction (BEGIN, the consumed
 *  insert, then these): called before BEGIN with every message of the batch decoded
 *  (fks_worker_batch_env; messages the group handled before are among them, since that is
 *  not known yet, and undecodable ones are left out). Fills up to max calls of the worker's
 *  prepared statements and returns how many (0: none). Each statement has its own snapshot,
 *  taken after the ones before it ran (a lock taken by one is held when the next reads).
 *  The values must stay valid until begin is called, which finds the results with
 *  fks_worker_prefetched. If the round trip fails the transaction is retried or failed like
 *  any other. */
#define FKS_WORKER_PREFETCH_MAX 4
typedef size_t (fks_worker_prefetch_fn) (fks_worker_tx_t *tx, fks_pg_call_t *calls,
                                         size_t max, void *arg);

/*  The routing key of a message (see Routing above): messages with equal keys are handled by
 *  handler thread key % FKS_WORKER_THREADS, in bus order. Called on the dispatcher thread for
 *  every message received, with the message decoded and checked against its schema (the
 *  handler then gets this same envelope: nothing is decoded twice). It runs outside any
 *  transaction and beside the handler threads: it must be quick, must not block, and may read
 *  only env and what arg holds immutably (never per-thread state). A message it cannot key
 *  (no usable field) should get key 0; a message that does not decode is not given to it and
 *  goes to thread 0. Hash text keys with fks_worker_key. */
typedef uint64_t (fks_worker_route_fn) (const fks_envelope_t *env, void *arg);

typedef struct {
    const char *program;            /* "fks-signal": the client name and log lines */
    const char *group;              /* consumer group, e.g. "signal" */
    const char *src;                /* the src of envelopes it produces, e.g. "signal" */
    const char *port_var;           /* "FKS_SIGNAL_PORT" */
    int default_port;               /* 8002 */
    const char *const *prefixes;    /* the types it consumes (type prefixes) */
    size_t n_prefixes;
    const fks_pg_stmt_t *stmts;     /* the handler's prepared statements (may be NULL) */
    size_t n_stmts;
    fks_worker_handler_fn *handler;
    fks_worker_fail_fn *on_fail;    /* may be NULL */
    fks_worker_thread_init_fn *thread_init;     /* may be NULL */
    fks_worker_thread_fini_fn *thread_fini;     /* may be NULL */
    fks_worker_idle_fn *idle;       /* may be NULL */
    void *arg;                      /* passed to every hook */
    fks_worker_begin_fn *begin;     /* may be NULL */
    fks_worker_flush_fn *flush;     /* may be NULL */
    fks_worker_route_fn *route;     /* may be NULL: any thread takes any message */
    fks_worker_prefetch_fn *prefetch;   /* may be NULL */
} fks_worker_def_t;

typedef struct {
    char *env;
    char *pg_url;
    char *redis_url;
    char *bus_url;                  /* NULL: the bus client's default (FKS_BUS_URL) */
    char *http_bind;
    int port;                       /* 0: any free port (tests) */
    int threads;
    int batch;
    int window;
    int statement_timeout_ms;       /* FKS_PG_STATEMENT_TIMEOUT_MS: 0 none */
    int64_t lost_after_ms;          /* a message the bus lost is here again this long after
                                       its commit, at most (fks_bus_reconcile_timing: after +
                                       2 x interval, and 5 s for the pass and the hop) */
} fks_worker_cfg_t;

/*  Reads the runtime's configuration (see above) for def. 0, or -1 with a message naming the
 *  variable in err (cap bytes). On failure cfg holds nothing to free. */
int fks_worker_cfg_load (const fks_worker_def_t *def, fks_worker_cfg_t *cfg, char *err,
                         size_t cap);
void fks_worker_cfg_free (fks_worker_cfg_t *cfg);

/*  Creates a worker (def and everything it points to must outlive it; cfg is copied). Does
 *  not connect yet. NULL (logged) on invalid definitions or configuration. */
fks_worker_t *fks_worker_new (const fks_worker_def_t *def, const fks_worker_cfg_t *cfg);

/*  Starts the ops server, joins the group, runs the handler threads, and returns once stop_fd
 *  polls readable (an eventfd or a pipe the caller writes to), after draining. Returns 0, or
 *  -1 when it could not start (the port is taken, a statement does not prepare...). */
int fks_worker_run (fks_worker_t *self, int stop_fd);

/*  The ops port actually bound while running (-1 before). */
int fks_worker_port (fks_worker_t *self);

void fks_worker_destroy (fks_worker_t **self_p);

/*  The whole program: reads the configuration, installs SIGTERM/SIGINT handlers, runs until
 *  one arrives. Returns the exit code: 0 after a clean drain, 1 when it could not start, 2 on
 *  a configuration error. Call fks_log_init first. */
int fks_worker_main (const fks_worker_def_t *def);

//  --------------------------------------------------------------------------
//  For handlers

fks_pg_t *fks_worker_pg (fks_worker_tx_t *tx);
fks_redis_t *fks_worker_redis (fks_worker_tx_t *tx);
void *fks_worker_state (fks_worker_tx_t *tx);

/*  The header of the message being handled. */
const fks_envelope_hdr_t *fks_worker_msg (fks_worker_tx_t *tx);

/*  The message's corr as text ("" when nil), for log lines. */
const char *fks_worker_corr_text (fks_worker_tx_t *tx);

/*  The delivery attempt of the message (1 on the first). */
uint32_t fks_worker_attempt (fks_worker_tx_t *tx);

/*  How many messages this transaction handles (new to the group). A handler may gather its
 *  writes and do them once in flush when this is above 1; if such a gathered write finds a
 *  unique-key conflict, flush returns FKS_WORKER_FAIL and the runtime handles each message
 *  alone (this is then 1), where the handler writes row by row and can tell exactly which
 *  message was done before. */
size_t fks_worker_batch_size (fks_worker_tx_t *tx);

/*  Queues a write for the commit's round trip: it runs after everything the transaction did so
 *  far, before the outbox insert and COMMIT, so a batch's gathered writes (flush) cost no round
 *  trip of their own. Its result is not seen: a write whose outcome matters must fail when the
 *  outcome is wrong (no ON CONFLICT DO NOTHING: the unique violation is the signal), which
 *  rolls the transaction back and makes the runtime handle the batch's messages one by one.
 *  The call and what it points to must stay valid until the transaction ends. FKS_WORKER_OK,
 *  or FKS_WORKER_FAIL when FKS_WORKER_DEFER_MAX calls are queued already. */
#define FKS_WORKER_DEFER_MAX 4
int fks_worker_defer (fks_worker_tx_t *tx, const fks_pg_call_t *call);

/*  The decoded envelope of the i-th of those messages (0 <= i < fks_worker_batch_size), in
 *  the order the handler will see them. Valid until the transaction ends. */
const fks_envelope_t *fks_worker_batch_env (fks_worker_tx_t *tx, size_t i);

/*  Whether one of this transaction's messages handled before the current one (in a handler;
 *  any of them elsewhere) has id in its body's id field `field`: the alert or signal a row
 *  belongs to was handled here already, and its rows change at commit. */
bool fks_worker_batch_has_id (fks_worker_tx_t *tx, const char *field, const fks_id_t *id);

/*  For "is anything made before this one still on its way": runs the prepared statement stmt
 *  with $1 key, $2 the id `before` and $3 the smallest id of Unix ms since_ms (ids are UUIDv7,
 *  time first), a query whose first column is an id, and sets *n to how many of the ids it
 *  returns are not the `field` of one of this transaction's messages, and *newest_ms (may be
 *  NULL) to the time of the newest of those. *n is 0 when `before` is not a UUIDv7.
 *  FKS_WORKER_OK, or the failure (fks_worker_pg_error). */
int fks_worker_count_before (fks_worker_tx_t *tx, const char *stmt, const char *key,
                             const fks_id_t *before, int64_t since_ms, const char *field,
                             int *n, int64_t *newest_ms);

/*  Whether a message waiting for something made before it (the newest made at newest_ms, Unix
 *  ms) should be handed back once more (FKS_WORKER_LATER) rather than decided as things stand:
 *  while this replica has handed it back for less than window_ms (what it waits for is in
 *  another replica's hands or queued behind it; a backlog makes everything old, so not by
 *  age), and beyond that while what it waits for is younger than lost_after_ms: its message
 *  may have been lost (fks-bus restarted), and the reconciler publishes it again by then.
 *  Past both, it is not coming (dead-lettered, or stuck): decide. */
bool fks_worker_keep_waiting (fks_worker_tx_t *tx, int64_t window_ms, int64_t newest_ms);

/*  In begin: the result of the i-th call the prefetch hook made (NULL past the last, or
 *  without a prefetch hook). Freed when begin returns. */
const PGresult *fks_worker_prefetched (fks_worker_tx_t *tx, size_t i);

/*  Starts a new body: returns a packer writing into the transaction's body buffer (emptied).
 *  Pack one map, then call fks_worker_emit. */
msgpack_packer *fks_worker_body (fks_worker_tx_t *tx);

/*  Adds an envelope of `type` with the body just packed to the outbox of this transaction:
 *  cause is the message being handled, corr is `corr` when not NULL, else the message's corr.
 *  The envelope is validated against its schema here, inserted into `events` before COMMIT and
 *  published after it. Its id goes to *id_out (may be NULL). Returns 0, or FKS_WORKER_FAIL
 *  when the body does not match its schema (a bug: logged with the schema's complaint). */
int fks_worker_emit (fks_worker_tx_t *tx, const char *type, const fks_id_t *corr,
                     fks_id_t *id_out);

/*  Set the reason of a failure and return FKS_WORKER_FAIL / FKS_WORKER_RETRY. */
int fks_worker_fail (fks_worker_tx_t *tx, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
int fks_worker_retry (fks_worker_tx_t *tx, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
int fks_worker_later (fks_worker_tx_t *tx, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  How long ago (ms) this replica's thread first handed the message being handled back for
 *  later (FKS_WORKER_LATER), 0 when it has not: the handler's bound on how long it defers a
 *  message, whatever the message's age (a backlog makes every message old). */
int64_t fks_worker_deferred_ms (fks_worker_tx_t *tx);

/*  Classifies a PostgreSQL error: connection loss and SQLSTATE classes 08, 40 (deadlock,
 *  serialization), 53, 57 and 58 are transient (FKS_WORKER_RETRY); anything else, such as a
 *  constraint violation, is permanent (FKS_WORKER_FAIL). Sets the reason to "<what>: <error>". */
int fks_worker_pg_error (fks_worker_tx_t *tx, const fks_pg_err_t *err, const char *what);

/*  A Redis error is transient: sets the reason and returns FKS_WORKER_RETRY. */
int fks_worker_redis_error (fks_worker_tx_t *tx, const fks_redis_err_t *err, const char *what);

//  --------------------------------------------------------------------------
//  Helpers for SQL parameters

/*  Formats a double for a numeric parameter with 15 significant digits (what a double holds
 *  exactly), so 0.1 + 0.2 is stored as 0.3 and sums of stored values stay exact in numeric.
 *  buf needs 48 bytes. Returns buf. */
const char *fks_worker_num (char buf[48], double v);

/*  Parses a numeric column's text (NULL or "" gives def). */
double fks_worker_parse_num (const char *text, double def);

/*  A stable 64-bit hash of text (FNV-1a), for routing keys: the same text gives the same key
 *  in every process and on every run. NULL hashes like "". */
uint64_t fks_worker_key (const char *text);

/*  A route hook (fks_worker_route_fn) keyed by the body's `symbol`, normalised: every message
 *  of one instrument goes to one handler thread, in bus order, so a replica handles an entry
 *  and the exit after it in that order. Messages without a usable symbol get key 0. */
uint64_t fks_worker_route_symbol (const fks_envelope_t *env, void *arg);

/*  Formats an id as text for a uuid parameter (buf FKS_ID_STR_SIZE bytes). */
const char *fks_worker_uuid (char buf[FKS_ID_STR_SIZE], const fks_id_t *id);

/*  A PostgreSQL array literal built value by value, for multi-row statements
 *  (unnest ($1::text[], ...)): each value is quoted and escaped, NULL becomes SQL NULL. */
typedef struct {
    char *data;
    size_t len, cap;
    size_t n;                       /* values added */
    bool failed;                    /* out of memory: the literal is unusable */
} fks_worker_array_t;

void fks_worker_array_init (fks_worker_array_t *a);
/*  Empties a literal for the next batch, keeping its buffer (an earlier failure is forgotten). */
void fks_worker_array_reset (fks_worker_array_t *a);
void fks_worker_array_add (fks_worker_array_t *a, const char *value);
/*  The finished literal ("{...}"), or NULL when out of memory. Valid until freed. */
const char *fks_worker_array_end (fks_worker_array_t *a);
void fks_worker_array_free (fks_worker_array_t *a);

#endif
