/*  pg.h - one PostgreSQL connection with reconnect and prepared statements.
 *
 *  A fks_pg_t owns one libpq connection and a table of named statements that it prepares on
 *  every (re)connect, so callers run statements by name and never think about reconnecting.
 *  Connecting is lazy: fks_pg_new only checks the URL; the first call that needs the server
 *  connects. When a call finds the connection broken it resets it once, re-prepares, and then
 *  runs the call; a failure in the middle of a call is reported (conn_lost = true) and never
 *  retried here, because the server may have applied it: the caller decides (effects are made
 *  idempotent by unique keys, see schemas/migrations). A connection lost inside a transaction
 *  is not replaced: every call fails (conn_lost, SQLSTATE 08006) until fks_pg_rollback, so the
 *  rest of a transaction never runs in autocommit on a new connection.
 *
 *  Every failure returns an error with the SQLSTATE and a one-line message (no parameter
 *  values, which may hold secrets). Not thread-safe: one fks_pg_t per thread.
 */
#ifndef FKS_PG_H
#define FKS_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fks_pg_t fks_pg_t;

/*  Plans. A prepared statement is planned once per connection and reused (PostgreSQL's
 *  default: five custom plans, then a generic one if it is not dearer). That suits lookups by
 *  key, and PostgreSQL's own foreign-key checks, which are prepared statements too. It does not
 *  suit a statement that joins a batch (an unnest of array parameters) against a table: the
 *  generic plan assumes a 10-row unnest, and one made while the table was small (a fresh
 *  install) joins every later batch against a sequential scan of the whole table until the
 *  table is next analyzed. Flag those FKS_PG_CUSTOM_PLAN: they are sent with their SQL on
 *  every run (still checked by a prepare on connect), so every run is planned for its own
 *  parameters. */
#define FKS_PG_CUSTOM_PLAN 0x1

typedef struct {
    const char *name;   /* statement name, unique in the table */
    const char *sql;    /* with $1..$n placeholders */
    int n_params;
    int flags;          /* FKS_PG_CUSTOM_PLAN, or 0 */
} fks_pg_stmt_t;

typedef struct {
    char sqlstate[6];   /* "" when not from the server, e.g. connection refused */
    bool conn_lost;     /* the connection failed; the call may or may not have been applied */
    char msg[256];
} fks_pg_err_t;

#define FKS_PG_UNIQUE_VIOLATION "23505"

/*  True when err may pass if the same call is tried again later: the connection failed or
 *  never answered, or the server's SQLSTATE class is 08 (connection), 40 (deadlock,
 *  serialisation), 53 (resources), 57 (cancelled: a statement timeout, a shutdown) or 58
 *  (system error). Any other SQLSTATE is the statement's own fault and will fail again. */
bool fks_pg_err_transient (const fks_pg_err_t *err);

/*  Creates a handle for url (a libpq URI or key=value string). stmts (may be NULL) is copied;
 *  it is prepared on each connect. Returns NULL and fills err if the URL does not parse or a
 *  statement is malformed (NULL name or sql). Does not connect. */
fks_pg_t *fks_pg_new (const char *url, const fks_pg_stmt_t *stmts, size_t n_stmts,
                      fks_pg_err_t *err);
void fks_pg_destroy (fks_pg_t **self_p);

/*  Connects now if not connected (resetting a broken connection). 0 or -1. connect_timeout
 *  is 5 s unless the URL says otherwise. */
int fks_pg_connect (fks_pg_t *self, fks_pg_err_t *err);

/*  Adds a server setting for this handle's sessions (`-c name=value` in libpq's options, after
 *  any the URL gives, so it wins), from the next connect on: e.g. statement_timeout for a
 *  service whose threads must not wait on a lock forever. Plain words only. 0 or -1. */
int fks_pg_set_option (fks_pg_t *self, const char *name, const char *value, fks_pg_err_t *err);

/*  statement_timeout for this handle's sessions (fks_pg_set_option), in milliseconds; 0 or
 *  less sets nothing (PostgreSQL's default: no limit). A statement running longer, a lock wait
 *  included, fails with SQLSTATE 57014. 0 or -1. */
int fks_pg_set_statement_timeout (fks_pg_t *self, int64_t ms, fks_pg_err_t *err);

/*  True if the connection is up (no server round trip). */
bool fks_pg_connected (fks_pg_t *self);

/*  Runs `SELECT 1`. 0 or -1. */
int fks_pg_ping (fks_pg_t *self, fks_pg_err_t *err);

/*  Runs a prepared statement by name with text parameters (values[i] may be NULL for SQL
 *  NULL; lengths/formats may be NULL for all-text; a format of 1 means binary with the given
 *  length). Returns the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK; caller PQclear's it) or
 *  NULL with err filled. */
PGresult *fks_pg_exec (fks_pg_t *self, const char *name, int n_params,
                       const char *const *values, const int *lengths, const int *formats,
                       fks_pg_err_t *err);

/*  One call of a named statement, for fks_pg_exec_pipeline. */
typedef struct {
    const char *name;
    int n_params;
    const char *const *values;
    const int *lengths;     /* NULL: all text */
    const int *formats;     /* NULL: all text */
} fks_pg_call_t;

#define FKS_PG_PIPELINE_MAX 16

/*  Runs 1..FKS_PG_PIPELINE_MAX named statements in order in one round trip (libpq's pipeline
 *  mode), for the statements of a transaction that do not depend on each other's results.
 *  Each statement has its own snapshot, as with separate fks_pg_exec calls (a lock taken by
 *  one is held when the next reads). Results go to out[i] (caller PQclear's each; out may be
 *  NULL). 0, or -1 with err from the first that failed, every out[i] NULL, and the statements
 *  after the failed one skipped: inside a transaction, roll it back. Outside one, the calls
 *  run as one implicit transaction. */
int fks_pg_exec_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n,
                          PGresult **out, fks_pg_err_t *err);

/*  BEGIN, then the calls, in one round trip: fks_pg_exec_pipeline opening a transaction. On
 *  failure the transaction may be open: call fks_pg_rollback. */
int fks_pg_begin_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n,
                           PGresult **out, fks_pg_err_t *err);

/*  The calls, then COMMIT, in one round trip: fks_pg_exec_pipeline closing a transaction; the
 *  results are discarded. 0, or -1 with err from the part that failed: a statement's error
 *  (what follows it, COMMIT included, is skipped; call fks_pg_rollback), 25P02 like
 *  fks_pg_commit when the server had rolled the transaction back, or conn_lost when the
 *  connection broke (the commit may or may not have happened). */
int fks_pg_commit_pipeline (fks_pg_t *self, const fks_pg_call_t *calls, size_t n,
                            fks_pg_err_t *err);

/*  Runs SQL text with parameters (PQexecParams), same contract as fks_pg_exec. With n_params
 *  0 it may hold several statements (PQexec), for migrations. */
PGresult *fks_pg_query (fks_pg_t *self, const char *sql, int n_params,
                        const char *const *values, const int *lengths, const int *formats,
                        fks_pg_err_t *err);

/*  Runs a command and discards the result: 0 or -1. For BEGIN / COMMIT / ROLLBACK and the
 *  like. fks_pg_commit also fails (SQLSTATE 25P02) when the server rolled the transaction
 *  back because a statement in it had failed. fks_pg_rollback never fails the caller (errors
 *  are logged) and makes the handle usable again after a connection lost in a transaction. */
int fks_pg_command (fks_pg_t *self, const char *sql, fks_pg_err_t *err);
int fks_pg_begin (fks_pg_t *self, fks_pg_err_t *err);
int fks_pg_commit (fks_pg_t *self, fks_pg_err_t *err);
void fks_pg_rollback (fks_pg_t *self);

/*  The raw connection, for what this wrapper does not cover (COPY, pipelining). May be NULL
 *  when not connected. */
PGconn *fks_pg_conn (fks_pg_t *self);

/*  For logs: what libpq reads from url (URI or keyword=value), as keyword=value pairs with every
 *  secret (password, sslpassword, a host holding a password's tail) shown as "***", or a fixed
 *  text when libpq cannot parse it. Caller frees. */
char *fks_pg_url_redacted (const char *url);

#endif
