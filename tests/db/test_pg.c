/*  test_pg.c - common/pg.c: statements, errors, reconnects, URL redaction.
 *
 *  Suite pg_url needs nothing running (meson suite 'unit'). Suite pg talks to the PostgreSQL
 *  at FKS_TEST_PG_URL (meson suite 'integration'); without it every test fails and says to
 *  run tools/test.sh. A server "restart" is simulated with pg_terminate_backend on the
 *  handle's own backend, from a second connection.
 */
#include "common/pg.h"
#include "common/pgarray.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *
s_pg_url (void)
{
    const char *url = getenv ("FKS_TEST_PG_URL");
    cr_assert (url && *url, "FKS_TEST_PG_URL is not set: run tools/test.sh, which starts "
               "PostgreSQL and Redis and sets it (a superuser URL such as "
               "postgresql://postgres@127.0.0.1:PORT/postgres)");
    return url;
}

static fks_pg_t *
s_new (const fks_pg_stmt_t *stmts, size_t n)
{
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (s_pg_url (), stmts, n, &err);
    cr_assert (pg, "fks_pg_new: %s", err.msg);
    return pg;
}

//  One value from a one-row result, as a malloc'd string.
static char *
s_scalar (fks_pg_t *pg, const char *sql)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_query (pg, sql, 0, NULL, NULL, NULL, &err);
    cr_assert (res, "%s: %s %s", sql, err.sqlstate, err.msg);
    cr_assert_eq (PQntuples (res), 1);
    char *v = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return v;
}

//  A loopback TCP port nobody listens on (bound then released).
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert (bind (fd, (struct sockaddr *) &a, sizeof a) == 0);
    cr_assert (getsockname (fd, (struct sockaddr *) &a, &len) == 0);
    close (fd);
    return ntohs (a.sin_port);
}

//  A loopback listener that accepts connections (in the kernel backlog) and never answers.
static int
s_silent_listener (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert (bind (fd, (struct sockaddr *) &a, sizeof a) == 0);
    cr_assert (listen (fd, 8) == 0);
    cr_assert (getsockname (fd, (struct sockaddr *) &a, &len) == 0);
    *port = ntohs (a.sin_port);
    return fd;
}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

//  Terminates the backend with this pid from a separate connection and waits until it is gone,
//  so the handle's socket holds the server's goodbye.
static void
s_terminate_backend (const char *pid)
{
    fks_pg_t *admin = s_new (NULL, 0);
    fks_pg_err_t err;
    const char *params[1] = { pid };
    PGresult *res = fks_pg_query (admin, "SELECT pg_terminate_backend($1::integer)", 1, params,
                                  NULL, NULL, &err);
    cr_assert (res, "pg_terminate_backend: %s", err.msg);
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "t");
    PQclear (res);
    bool gone = false;
    for (int i = 0; i < 500 && !gone; i++) {
        res = fks_pg_query (admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::integer",
                            1, params, NULL, NULL, &err);
        cr_assert (res, "pg_stat_activity: %s", err.msg);
        gone = strcmp (PQgetvalue (res, 0, 0), "0") == 0;
        PQclear (res);
        if (!gone)
            usleep (10 * 1000);
    }
    cr_assert (gone, "backend %s did not go away", pid);
    fks_pg_destroy (&admin);
}


//  --------------------------------------------------------------------------
//  pg_url: no server needed

//  fks_pg_url_redacted shows what libpq reads, as keyword=value pairs, secrets as ***.
static void
s_redacts_to (const char *url, const char *want)
{
    char *r = fks_pg_url_redacted (url);
    cr_assert (r);
    cr_assert_str_eq (r, want, "%s", url);
    free (r);
}

Test (pg_url, uri_password_is_hidden)
{
    s_redacts_to ("postgresql://fks:s3cret@db.example:5432/fks",
                  "user=fks password=*** dbname=fks host=db.example port=5432");
}

Test (pg_url, uri_without_password_shows_every_option)
{
    s_redacts_to ("postgres://fks@127.0.0.1:5432/fks?sslmode=disable",
                  "user=fks dbname=fks host=127.0.0.1 port=5432 sslmode=disable");
}

Test (pg_url, uri_password_parameter_is_hidden)
{
    s_redacts_to ("postgresql://db/fks?user=a&password=s3cret&sslmode=require",
                  "user=a password=*** dbname=fks host=db sslmode=require");
}

//  Spellings libpq accepts that a hand-written parser missed: a raw '@' or '?' in the password,
//  a percent-encoded parameter name, the ssl key's password.
Test (pg_url, every_password_libpq_reads_is_hidden)
{
    const char *urls[] = {
        "postgresql://u:p@ss@host/db",
        "postgresql://fks:Tr0ub?4dor@db:5432/fks",
        "postgresql://db/fks?user=fks&pass%77ord=s3cret",
        "postgresql://db/fks?sslpassword=s3cret",
        "postgresql://fks:a%22b%27c%20s3cret@db/fks",
        "host=db password=s3cret user=fks",
        "password = 'a b\\' c s3cret' host=db",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char *r = fks_pg_url_redacted (urls[i]);
        cr_assert (r);
        cr_assert (strstr (r, "***"), "nothing hidden in %s: %s", urls[i], r);
        cr_assert_null (strstr (r, "s3cret"), "leaked: %s", r);
        cr_assert_null (strstr (r, "Tr0ub"), "leaked: %s", r);
        cr_assert_null (strstr (r, "ss@"), "leaked: %s", r);
        free (r);
    }
    s_redacts_to ("host=db password=", "password=*** host=db");
    //  libpq reads "p" as the password and "ss@host" as the host: both hidden.
    s_redacts_to ("postgresql://u:p@ss@host/db", "user=u password=*** dbname=db host=***");
    s_redacts_to ("host='a b' user=o\\'k", "user='o\\'k' host='a b'");
}

Test (pg_url, unparseable_connection_string_shows_nothing)
{
    char *r = fks_pg_url_redacted ("host=db password='s3cret");
    cr_assert_null (strstr (r, "s3cret"), "leaked: %s", r);
    free (r);
    r = fks_pg_url_redacted ("postgresql://fks:ab\"s3cret%zz@db/fks");
    cr_assert_null (strstr (r, "s3cret"), "leaked: %s", r);
    free (r);
}

Test (pg_url, bad_url_is_refused_without_quoting_it)
{
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new ("postgresql://u:hunter2@[::1/db", NULL, 0, &err);
    cr_assert_null (pg);
    cr_assert (strstr (err.msg, "invalid PostgreSQL URL"), "message: %s", err.msg);
    cr_assert_null (strstr (err.msg, "hunter2"), "leaked: %s", err.msg);
    pg = fks_pg_new ("host=db passwrod=hunter2", NULL, 0, &err);
    cr_assert_null (pg);
    cr_assert_null (strstr (err.msg, "hunter2"), "leaked: %s", err.msg);
    cr_assert_eq (err.conn_lost, false);
    //  A quote in the password once shifted the hiding of quoted spans onto the rest of it.
    pg = fks_pg_new ("postgresql://fks:ab\"MySecretPw%zz@db/fks", NULL, 0, &err);
    cr_assert_null (pg);
    cr_assert (strstr (err.msg, "invalid percent-encoded token"), "message: %s", err.msg);
    cr_assert_null (strstr (err.msg, "MySecret"), "leaked: %s", err.msg);
    pg = fks_pg_new ("postgresql://fks:x\"y\"hunter2%zz@db/fks", NULL, 0, &err);
    cr_assert_null (pg);
    cr_assert_null (strstr (err.msg, "hunter2"), "leaked: %s", err.msg);
}

Test (pg_url, malformed_statement_table_is_refused)
{
    fks_pg_err_t err;
    fks_pg_stmt_t stmts[] = { { "a", "SELECT 1", 0 }, { "a", "SELECT 2", 0 } };
    cr_assert_null (fks_pg_new ("postgresql://db/fks", stmts, 2, &err));
    cr_assert (strstr (err.msg, "used twice"), "message: %s", err.msg);
    fks_pg_stmt_t nameless[] = { { NULL, "SELECT 1", 0 } };
    cr_assert_null (fks_pg_new ("postgresql://db/fks", nameless, 1, &err));
}

Test (pg_url, new_does_not_connect)
{
    fks_pg_err_t err;
    //  Nothing listens on port 1; creation must still succeed.
    fks_pg_t *pg = fks_pg_new ("postgresql://127.0.0.1:1/fks", NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    cr_assert_eq (fks_pg_connected (pg), false);
    cr_assert_null (fks_pg_conn (pg));
    fks_pg_destroy (&pg);
    cr_assert_null (pg);
    fks_pg_destroy (&pg);       /* destroying NULL is a no-op */
}


//  --------------------------------------------------------------------------
//  pg: against a server

Test (pg, prepared_statement_runs_with_text_parameters)
{
    fks_pg_stmt_t stmts[] = { { "add", "SELECT $1::integer + $2::integer", 2 } };
    fks_pg_t *pg = s_new (stmts, 1);
    cr_assert_eq (fks_pg_connected (pg), false, "connecting must be lazy");
    fks_pg_err_t err;
    const char *values[2] = { "2", "40" };
    PGresult *res = fks_pg_exec (pg, "add", 2, values, NULL, NULL, &err);
    cr_assert (res, "%s %s", err.sqlstate, err.msg);
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "42");
    PQclear (res);
    cr_assert (fks_pg_connected (pg));
    fks_pg_destroy (&pg);
}

Test (pg, null_parameter_is_sql_null)
{
    fks_pg_stmt_t stmts[] = { { "isnull", "SELECT $1::text IS NULL, coalesce($1::text, 'none')", 1 } };
    fks_pg_t *pg = s_new (stmts, 1);
    fks_pg_err_t err;
    const char *values[1] = { NULL };
    PGresult *res = fks_pg_exec (pg, "isnull", 1, values, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "t");
    cr_assert_str_eq (PQgetvalue (res, 0, 1), "none");
    PQclear (res);
    fks_pg_destroy (&pg);
}

Test (pg, binary_parameter_round_trips_every_byte)
{
    fks_pg_stmt_t stmts[] = { { "echo", "SELECT $1::bytea, octet_length($1::bytea)", 1 } };
    fks_pg_t *pg = s_new (stmts, 1);
    char bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (char) (255 - i);        /* includes NUL, quotes, backslash, 0xff */
    const char *values[1] = { bytes };
    int lengths[1] = { 256 };
    int formats[1] = { 1 };
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (pg, "echo", 1, values, lengths, formats, &err);
    cr_assert (res, "%s", err.msg);
    cr_assert_str_eq (PQgetvalue (res, 0, 1), "256");
    size_t n = 0;
    unsigned char *back = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, 0, 0), &n);
    cr_assert_eq (n, 256);
    cr_assert_eq (memcmp (back, bytes, 256), 0);
    PQfreemem (back);
    PQclear (res);
    fks_pg_destroy (&pg);
}

//  A session setting (a service's statement timeout) applies from the connect on, after and
//  together with what the URL's own options say; anything but plain words is refused.
Test (pg, session_settings_join_the_urls_options_and_apply_on_connect)
{
    char url[1024];
    snprintf (url, sizeof url, "%s%soptions=-c%%20work_mem%%3D5MB", s_pg_url (),
              strchr (s_pg_url (), '?') ? "&" : "?");
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (url, NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    cr_assert_eq (fks_pg_set_option (pg, "statement_timeout", "200", &err), 0, "%s", err.msg);
    cr_assert_eq (fks_pg_set_option (pg, "lock_timeout", "150", &err), 0, "%s", err.msg);
    char *v = s_scalar (pg, "SELECT current_setting ('work_mem') || ' '"
                            " || current_setting ('statement_timeout') || ' '"
                            " || current_setting ('lock_timeout')");
    cr_assert_str_eq (v, "5MB 200ms 150ms");
    free (v);
    PGresult *res = fks_pg_query (pg, "SELECT pg_sleep (2)", 0, NULL, NULL, NULL, &err);
    cr_assert_null (res, "a statement over the timeout must be cancelled");
    cr_assert_str_eq (err.sqlstate, "57014", "%s", err.msg);
    cr_assert (fks_pg_err_transient (&err), "a cancelled statement may pass later");
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "the connection stays usable: %s", err.msg);
    fks_pg_destroy (&pg);

    pg = s_new (NULL, 0);
    const char *bad[][2] = { { "statement_timeout", "1 s" }, { "statement_timeout", "1;x" },
                             { "Statement", "1" }, { "statement_timeout", "" },
                             { "a b", "1" } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (fks_pg_set_option (pg, bad[i][0], bad[i][1], &err), -1, "%s=%s accepted",
                      bad[i][0], bad[i][1]);
    cr_assert_eq (fks_pg_set_statement_timeout (pg, 0, &err), 0, "0: no limit, nothing set");
    v = s_scalar (pg, "SELECT current_setting ('statement_timeout')");
    cr_assert_str_eq (v, "0", "nothing was set");
    free (v);
    fks_pg_destroy (&pg);

    pg = s_new (NULL, 0);
    cr_assert_eq (fks_pg_set_statement_timeout (pg, 1500, &err), 0, "%s", err.msg);
    v = s_scalar (pg, "SELECT current_setting ('statement_timeout')");
    cr_assert_str_eq (v, "1500ms");
    free (v);
    fks_pg_destroy (&pg);
}

//  common/pgarray: every element type FKS sends in binary, NULLs and empty values included,
//  comes back from the server as it went.
Test (pg, binary_arrays_round_trip_through_unnest)
{
    fks_pg_stmt_t stmts[] = { { "unnest",
        "SELECT u, t, ts, encode (b, 'hex'), j->>'k', j IS NULL"
        "  FROM unnest ($1::uuid[], $2::text[], $3::timestamptz[], $4::bytea[], $5::jsonb[])"
        "    AS x (u, t, ts, b, j)", 5 } };
    fks_pg_t *pg = s_new (stmts, 1);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "SET TIME ZONE 'UTC'", &err), 0, "%s", err.msg);
    fks_pg_array_t a[5];
    static const uint32_t elem[5] = { FKS_PG_OID_UUID, FKS_PG_OID_TEXT, FKS_PG_OID_TIMESTAMPTZ,
                                      FKS_PG_OID_BYTEA, FKS_PG_OID_JSONB };
    for (int k = 0; k < 5; k++) {
        fks_pg_array_init (&a[k]);
        fks_pg_array_begin (&a[k], elem[k]);
    }
    fks_id_t id;
    cr_assert_eq (fks_id_parse ("018f0000-0000-7000-8000-0000000000a1", 36, &id), 0);
    //  Row 1: values with quotes, backslashes, commas, braces and a NUL byte.
    fks_pg_array_add_uuid (&a[0], &id);
    fks_pg_array_add_text (&a[1], "a \"b\", {c}\\");
    fks_pg_array_add_timestamptz (&a[2], INT64_C(1700000000123456));
    fks_pg_array_add (&a[3], "\0\x01\xff", 3);
    fks_pg_array_add_jsonb (&a[4], "{\"k\": \"v\"}", 10);
    //  Row 2: NULLs and empty values; a time before 2000.
    fks_pg_array_add_uuid (&a[0], NULL);
    fks_pg_array_add_text (&a[1], "");
    fks_pg_array_add_timestamptz (&a[2], INT64_C(0));
    fks_pg_array_add (&a[3], "", 0);
    fks_pg_array_add_jsonb (&a[4], NULL, 0);
    const char *values[5];
    int lengths[5], formats[5];
    for (int k = 0; k < 5; k++) {
        cr_assert_eq (fks_pg_array_end (&a[k]), 0);
        values[k] = a[k].buf.data;
        lengths[k] = (int) a[k].buf.len;
        formats[k] = 1;
    }
    PGresult *res = fks_pg_exec (pg, "unnest", 5, values, lengths, formats, &err);
    cr_assert (res, "%s %s", err.sqlstate, err.msg);
    cr_assert_eq (PQntuples (res), 2);
    cr_assert_str_eq (PQgetvalue (res, 0, 0), "018f0000-0000-7000-8000-0000000000a1");
    cr_assert_str_eq (PQgetvalue (res, 0, 1), "a \"b\", {c}\\");
    cr_assert_str_eq (PQgetvalue (res, 0, 2), "2023-11-14 22:13:20.123456+00");
    cr_assert_str_eq (PQgetvalue (res, 0, 3), "0001ff");
    cr_assert_str_eq (PQgetvalue (res, 0, 4), "v");
    cr_assert (PQgetisnull (res, 1, 0));
    cr_assert_str_eq (PQgetvalue (res, 1, 1), "");
    cr_assert (!PQgetisnull (res, 1, 1));
    cr_assert_str_eq (PQgetvalue (res, 1, 2), "1970-01-01 00:00:00+00");
    cr_assert_str_eq (PQgetvalue (res, 1, 3), "");
    cr_assert_str_eq (PQgetvalue (res, 1, 5), "t");
    PQclear (res);
    //  A header naming another element type than the statement's is refused, not misread.
    fks_pg_array_begin (&a[1], FKS_PG_OID_BYTEA);
    fks_pg_array_add_text (&a[1], "x");
    cr_assert_eq (fks_pg_array_end (&a[1]), 0);
    values[1] = a[1].buf.data;
    lengths[1] = (int) a[1].buf.len;
    res = fks_pg_exec (pg, "unnest", 5, values, lengths, formats, &err);
    cr_assert_null (res);
    cr_assert_str_eq (err.sqlstate, "42804", "%s", err.msg);
    for (int k = 0; k < 5; k++)
        fks_pg_array_free (&a[k]);
    fks_pg_destroy (&pg);
}

Test (pg, unique_violation_reports_sqlstate_without_values)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "CREATE TEMP TABLE t (k text PRIMARY KEY)", &err), 0,
                  "%s", err.msg);
    const char *values[1] = { "secret-value-123" };
    PGresult *res = fks_pg_query (pg, "INSERT INTO t VALUES ($1)", 1, values, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    PQclear (res);
    res = fks_pg_query (pg, "INSERT INTO t VALUES ($1)", 1, values, NULL, NULL, &err);
    cr_assert_null (res);
    cr_assert_str_eq (err.sqlstate, FKS_PG_UNIQUE_VIOLATION);
    cr_assert_eq (err.conn_lost, false);
    cr_assert (strstr (err.msg, "duplicate key"), "message: %s", err.msg);
    cr_assert_null (strstr (err.msg, "secret-value-123"), "leaked a value: %s", err.msg);
    cr_assert_null (strchr (err.msg, '\n'), "not one line: %s", err.msg);
    //  The connection is still good.
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, syntax_error_reports_sqlstate)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "SELEC 1", &err), -1);
    cr_assert_str_eq (err.sqlstate, "42601");
    cr_assert_eq (err.conn_lost, false);
    fks_pg_destroy (&pg);
}

Test (pg, unknown_statement_or_wrong_arity_is_an_error)
{
    fks_pg_stmt_t stmts[] = { { "one", "SELECT $1::integer", 1 } };
    fks_pg_t *pg = s_new (stmts, 1);
    fks_pg_err_t err;
    cr_assert_null (fks_pg_exec (pg, "nope", 0, NULL, NULL, NULL, &err));
    cr_assert (strstr (err.msg, "unknown statement"), "message: %s", err.msg);
    cr_assert_null (fks_pg_exec (pg, "one", 0, NULL, NULL, NULL, &err));
    cr_assert (strstr (err.msg, "takes 1 parameters"), "message: %s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, statement_that_does_not_prepare_fails_the_connect)
{
    fks_pg_stmt_t stmts[] = { { "bad", "SELECT FROM WHERE", 0 } };
    fks_pg_t *pg = s_new (stmts, 1);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_connect (pg, &err), -1);
    cr_assert_str_eq (err.sqlstate, "42601");
    cr_assert (strstr (err.msg, "bad"), "names the statement: %s", err.msg);
    cr_assert_eq (fks_pg_connected (pg), false);
    fks_pg_destroy (&pg);
}

Test (pg, terminated_backend_reconnects_on_next_call_and_re_prepares)
{
    fks_pg_stmt_t stmts[] = { { "pid", "SELECT pg_backend_pid()", 0 } };
    fks_pg_t *pg = s_new (stmts, 1);
    fks_pg_err_t err;
    PGresult *res = fks_pg_exec (pg, "pid", 0, NULL, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    char *pid1 = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);

    s_terminate_backend (pid1);

    //  Found broken before sending: reset once, statement prepared again, call succeeds.
    res = fks_pg_exec (pg, "pid", 0, NULL, NULL, NULL, &err);
    cr_assert (res, "after a terminated backend: %s %s (conn_lost %d)", err.sqlstate, err.msg,
               err.conn_lost);
    cr_assert_str_neq (PQgetvalue (res, 0, 0), pid1, "must be a new backend");
    PQclear (res);
    free (pid1);
    fks_pg_destroy (&pg);
}

Test (pg, connection_lost_inside_transaction_is_not_replaced_until_rollback)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "CREATE TEMP TABLE t (x integer)", &err), 0);
    cr_assert_eq (fks_pg_begin (pg, &err), 0, "%s", err.msg);
    cr_assert_eq (fks_pg_command (pg, "INSERT INTO t VALUES (1)", &err), 0, "%s", err.msg);
    char *pid = s_scalar (pg, "SELECT pg_backend_pid()");

    s_terminate_backend (pid);
    free (pid);

    //  The rest of the transaction must not run in autocommit on a new connection.
    cr_assert_eq (fks_pg_command (pg, "SELECT 1", &err), -1);
    cr_assert (err.conn_lost);
    cr_assert (strstr (err.msg, "transaction"), "message: %s", err.msg);
    cr_assert_eq (fks_pg_commit (pg, &err), -1, "a COMMIT must not succeed on a new connection");
    cr_assert (err.conn_lost);

    fks_pg_rollback (pg);
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "usable again after rollback: %s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, failure_after_send_is_reported_as_conn_lost)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    //  The server kills the connection while running the statement: reported, not retried.
    cr_assert_eq (fks_pg_command (pg, "SELECT pg_terminate_backend(pg_backend_pid())", &err), -1);
    cr_assert (err.conn_lost, "conn_lost must be set (sqlstate %s, %s)", err.sqlstate, err.msg);
    cr_assert_eq (fks_pg_connected (pg), false);
    //  The next call reconnects.
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, commit_of_a_failed_transaction_fails)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_begin (pg, &err), 0);
    cr_assert_eq (fks_pg_command (pg, "SELECT 1/0", &err), -1);
    cr_assert_str_eq (err.sqlstate, "22012");
    cr_assert_eq (fks_pg_commit (pg, &err), -1);
    cr_assert_str_eq (err.sqlstate, "25P02");
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

//  The pipelined pair a worker's transaction starts and ends with: BEGIN + a statement, then a
//  statement + COMMIT, one round trip each.
static const fks_pg_stmt_t s_pipe_stmts[] = {
    { "p_ins", "INSERT INTO t_pipe (k) SELECT unnest ($1::integer[]) RETURNING k", 1 },
    { "p_ins_custom", "INSERT INTO t_pipe (k) SELECT unnest ($1::integer[]) RETURNING k", 1,
      FKS_PG_CUSTOM_PLAN },
    { "p_count", "SELECT count(*) FROM t_pipe", 0 },
    { "p_lock", "SELECT pg_advisory_xact_lock ($1::bigint)", 1 },
    { "p_die", "SELECT pg_terminate_backend (pg_backend_pid ())", 0 } };

//  BEGIN and one statement in one round trip, as a worker opens its transaction: its result,
//  or NULL with err.
static PGresult *
s_begin_exec (fks_pg_t *pg, const char *name, int n, const char *const *values,
              fks_pg_err_t *err)
{
    fks_pg_call_t call = { name, n, values, NULL, NULL };
    PGresult *res = NULL;
    return fks_pg_begin_pipeline (pg, &call, 1, &res, err) == 0 ? res : NULL;
}

//  One statement and COMMIT in one round trip, as a worker closes its transaction.
static int
s_exec_commit (fks_pg_t *pg, const char *name, int n, const char *const *values,
               fks_pg_err_t *err)
{
    fks_pg_call_t call = { name, n, values, NULL, NULL };
    return fks_pg_commit_pipeline (pg, &call, 1, err);
}

static fks_pg_t *
s_pipe_new (void)
{
    fks_pg_t *setup = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (setup, "DROP TABLE IF EXISTS t_pipe; "
                                         "CREATE TABLE t_pipe (k integer PRIMARY KEY)", &err),
                  0, "%s", err.msg);
    fks_pg_destroy (&setup);
    return s_new (s_pipe_stmts, sizeof s_pipe_stmts / sizeof s_pipe_stmts[0]);
}

static long
s_pipe_rows (void)
{
    fks_pg_t *other = s_new (NULL, 0);
    char *n = s_scalar (other, "SELECT count(*) FROM t_pipe");
    long v = atol (n);
    free (n);
    fks_pg_destroy (&other);
    return v;
}

Test (pg, begin_exec_and_exec_commit_make_one_transaction)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    const char *first[1] = { "{1,2}" }, *second[1] = { "{3}" };
    PGresult *res = s_begin_exec (pg, "p_ins", 1, first, &err);
    cr_assert (res, "%s %s", err.sqlstate, err.msg);
    cr_assert_eq (PQntuples (res), 2, "the statement's rows come back");
    PQclear (res);
    cr_assert_eq (PQtransactionStatus (fks_pg_conn (pg)), PQTRANS_INTRANS);
    cr_assert_eq (s_pipe_rows (), 0, "nothing is visible before COMMIT");
    cr_assert_eq (s_exec_commit (pg, "p_ins_custom", 1, second, &err), 0,
                  "%s %s", err.sqlstate, err.msg);
    cr_assert_eq (PQtransactionStatus (fks_pg_conn (pg)), PQTRANS_IDLE);
    cr_assert_eq (s_pipe_rows (), 3);
    //  The handle is an ordinary one afterwards.
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, a_failing_statement_before_commit_commits_nothing)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    const char *first[1] = { "{1}" }, *dup[1] = { "{2,1}" };
    PGresult *res = s_begin_exec (pg, "p_ins", 1, first, &err);
    cr_assert (res, "%s", err.msg);
    PQclear (res);
    cr_assert_eq (s_exec_commit (pg, "p_ins", 1, dup, &err), -1);
    cr_assert_str_eq (err.sqlstate, "23505", "the statement's error, not COMMIT's: %s", err.msg);
    cr_assert_not (err.conn_lost);
    fks_pg_rollback (pg);
    cr_assert_eq (s_pipe_rows (), 0, "the first insert must not be committed");
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, a_failing_statement_after_begin_is_reported_and_rolls_back)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    const char *bad[1] = { "{1,1}" };
    cr_assert_null (s_begin_exec (pg, "p_ins", 1, bad, &err));
    cr_assert_str_eq (err.sqlstate, "23505", "%s", err.msg);
    fks_pg_rollback (pg);
    cr_assert_eq (PQtransactionStatus (fks_pg_conn (pg)), PQTRANS_IDLE);
    cr_assert_null (s_begin_exec (pg, "p_nope", 1, bad, &err));
    cr_assert (strstr (err.msg, "unknown statement"), "%s", err.msg);
    const char *good[1] = { "{7}" };
    PGresult *res = s_begin_exec (pg, "p_ins", 1, good, &err);
    cr_assert (res, "usable after a failure: %s", err.msg);
    PQclear (res);
    cr_assert_eq (s_exec_commit (pg, "p_ins", 1, (const char *[]) { "{8}" }, &err), 0, "%s",
                  err.msg);
    cr_assert_eq (s_pipe_rows (), 2);
    fks_pg_destroy (&pg);
}

//  Several statements before COMMIT (a worker's deferred writes, then its outbox): all of them
//  commit together, or, when one fails, the ones after it and COMMIT are skipped.
Test (pg, commit_pipeline_runs_every_call_then_commits_or_none)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    PGresult *res = s_begin_exec (pg, "p_ins", 1, (const char *[]) { "{1}" }, &err);
    cr_assert (res, "%s", err.msg);
    PQclear (res);
    fks_pg_call_t calls[3] = {
        { "p_ins", 1, (const char *[]) { "{2}" }, NULL, NULL },
        { "p_ins_custom", 1, (const char *[]) { "{3,4}" }, NULL, NULL },
        { "p_ins", 1, (const char *[]) { "{5}" }, NULL, NULL } };
    cr_assert_eq (fks_pg_commit_pipeline (pg, calls, 3, &err), 0, "%s", err.msg);
    cr_assert_eq (PQtransactionStatus (fks_pg_conn (pg)), PQTRANS_IDLE);
    cr_assert_eq (s_pipe_rows (), 5);

    res = s_begin_exec (pg, "p_ins", 1, (const char *[]) { "{6}" }, &err);
    cr_assert (res, "%s", err.msg);
    PQclear (res);
    calls[0].values = (const char *[]) { "{7}" };
    calls[1].values = (const char *[]) { "{1}" };       /* exists: 23505 */
    calls[2].values = (const char *[]) { "{8}" };
    cr_assert_eq (fks_pg_commit_pipeline (pg, calls, 3, &err), -1);
    cr_assert_str_eq (err.sqlstate, "23505", "the failing call's error: %s", err.msg);
    fks_pg_rollback (pg);
    cr_assert_eq (s_pipe_rows (), 5, "nothing of the second transaction is committed");
    cr_assert_eq (fks_pg_commit_pipeline (pg, calls, 0, &err), -1, "no call: refused");
    fks_pg_destroy (&pg);
}

Test (pg, exec_commit_on_a_connection_lost_inside_the_transaction_is_conn_lost)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    PGresult *res = s_begin_exec (pg, "p_ins", 1, (const char *[]) { "{1}" }, &err);
    cr_assert (res, "%s", err.msg);
    PQclear (res);
    char *pid = s_scalar (pg, "SELECT pg_backend_pid()");
    s_terminate_backend (pid);
    free (pid);
    cr_assert_eq (s_exec_commit (pg, "p_ins", 1, (const char *[]) { "{2}" }, &err), -1,
                  "a COMMIT must not succeed on a new connection");
    cr_assert (err.conn_lost, "%s %s", err.sqlstate, err.msg);
    fks_pg_rollback (pg);
    cr_assert_eq (s_pipe_rows (), 0);
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "usable again after rollback: %s", err.msg);
    fks_pg_destroy (&pg);
}

//  The connection dies in the round trip that opens the transaction: the transaction is lost,
//  and the next call must not run in autocommit on a new connection.
Test (pg, a_connection_lost_in_the_pipeline_that_begins_is_a_lost_transaction)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    cr_assert_null (s_begin_exec (pg, "p_die", 0, NULL, &err));
    cr_assert (err.conn_lost, "%s %s", err.sqlstate, err.msg);
    PGresult *res = s_begin_exec (pg, "p_ins", 1, (const char *[]) { "{1}" }, &err);
    cr_assert_null (res, "a call after a lost BEGIN must fail until rollback");
    cr_assert (err.conn_lost);
    cr_assert_eq (fks_pg_command (pg, "SELECT 1", &err), -1);
    cr_assert (strstr (err.msg, "transaction"), "message: %s", err.msg);
    fks_pg_rollback (pg);
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "usable again after rollback: %s", err.msg);
    cr_assert_eq (s_pipe_rows (), 0);
    fks_pg_destroy (&pg);
}

Test (pg, a_pipeline_runs_its_statements_in_order_in_one_call_and_returns_each_result)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_begin (pg, &err), 0, "%s", err.msg);
    const char *a[1] = { "{1,2}" }, *b[1] = { "{3}" };
    fks_pg_call_t calls[3] = { { "p_ins", 1, a, NULL, NULL }, { "p_ins_custom", 1, b, NULL, NULL },
                               { "p_count", 0, NULL, NULL, NULL } };
    PGresult *out[3];
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 3, out, &err), 0, "%s %s", err.sqlstate,
                  err.msg);
    cr_assert_eq (PQntuples (out[0]), 2);
    cr_assert_eq (PQntuples (out[1]), 1);
    cr_assert_str_eq (PQgetvalue (out[2], 0, 0), "3", "a later statement sees the earlier ones");
    for (int i = 0; i < 3; i++)
        PQclear (out[i]);
    cr_assert_eq (PQtransactionStatus (fks_pg_conn (pg)), PQTRANS_INTRANS);
    cr_assert_eq (s_pipe_rows (), 0, "nothing is visible before COMMIT");
    cr_assert_eq (fks_pg_commit (pg, &err), 0, "%s", err.msg);
    cr_assert_eq (s_pipe_rows (), 3);
    fks_pg_destroy (&pg);
}

Test (pg, a_failing_statement_in_a_pipeline_skips_the_rest_and_returns_no_result)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_begin (pg, &err), 0, "%s", err.msg);
    const char *one[1] = { "{1}" }, *two[1] = { "{2}" };
    fks_pg_call_t calls[3] = { { "p_ins", 1, one, NULL, NULL }, { "p_ins", 1, one, NULL, NULL },
                               { "p_ins", 1, two, NULL, NULL } };
    PGresult *out[3] = { (PGresult *) 1, (PGresult *) 1, (PGresult *) 1 };
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 3, out, &err), -1);
    cr_assert_str_eq (err.sqlstate, "23505", "the failing statement's error: %s", err.msg);
    cr_assert_not (err.conn_lost);
    cr_assert (!out[0] && !out[1] && !out[2], "a failed pipeline keeps no result");
    fks_pg_rollback (pg);
    cr_assert_eq (s_pipe_rows (), 0);
    cr_assert_eq (fks_pg_ping (pg, &err), 0, "usable again after rollback: %s", err.msg);
    fks_pg_destroy (&pg);
}

Test (pg, a_pipeline_with_a_bad_call_sends_nothing)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_err_t err;
    const char *one[1] = { "{1}" };
    fks_pg_call_t calls[FKS_PG_PIPELINE_MAX + 1];
    for (int i = 0; i <= FKS_PG_PIPELINE_MAX; i++)
        calls[i] = (fks_pg_call_t) { "p_ins", 1, one, NULL, NULL };
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 0, NULL, &err), -1);
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, FKS_PG_PIPELINE_MAX + 1, NULL, &err), -1);
    cr_assert (strstr (err.msg, "1 to"), "%s", err.msg);
    calls[1] = (fks_pg_call_t) { "p_nope", 1, one, NULL, NULL };
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 2, NULL, &err), -1);
    cr_assert (strstr (err.msg, "p_nope"), "%s", err.msg);
    calls[1] = (fks_pg_call_t) { "p_ins", 2, one, NULL, NULL };
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 2, NULL, &err), -1);
    cr_assert_eq (s_pipe_rows (), 0, "the good first call must not have run");
    fks_pg_destroy (&pg);
}

//  The execution worker locks a batch's positions and reads them in one pipeline: the read
//  must see what the lock's previous holder committed, i.e. take its snapshot after the lock.
static void *
s_commit_later (void *arg)
{
    fks_pg_t *holder = arg;
    usleep (300 * 1000);
    const char *k[1] = { "{9}" };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (holder, "p_ins", 1, k, NULL, NULL, &err);
    PQclear (r);
    fks_pg_commit (holder, &err);
    return NULL;
}

Test (pg, a_read_after_a_lock_in_one_pipeline_sees_what_the_lock_holder_committed)
{
    fks_pg_t *pg = s_pipe_new ();
    fks_pg_t *holder = s_new (s_pipe_stmts, 4);
    fks_pg_err_t err;
    const char *key[1] = { "4242" };
    cr_assert_eq (fks_pg_begin (holder, &err), 0, "%s", err.msg);
    PGresult *r = fks_pg_exec (holder, "p_lock", 1, key, NULL, NULL, &err);
    cr_assert (r, "%s", err.msg);
    PQclear (r);
    pthread_t th;
    pthread_create (&th, NULL, s_commit_later, holder);
    cr_assert_eq (fks_pg_begin (pg, &err), 0, "%s", err.msg);
    fks_pg_call_t calls[2] = { { "p_lock", 1, key, NULL, NULL },
                               { "p_count", 0, NULL, NULL, NULL } };
    PGresult *out[2];
    cr_assert_eq (fks_pg_exec_pipeline (pg, calls, 2, out, &err), 0, "%s", err.msg);
    pthread_join (th, NULL);
    cr_assert_str_eq (PQgetvalue (out[1], 0, 0), "1", "the read ran on a snapshot from before "
                      "the lock was granted (%s rows; %ld committed)", PQgetvalue (out[1], 0, 0),
                      s_pipe_rows ());
    PQclear (out[0]);
    PQclear (out[1]);
    fks_pg_rollback (pg);
    fks_pg_destroy (&holder);
    fks_pg_destroy (&pg);
}

Test (pg, connect_timeout_defaults_to_5_seconds_unless_the_url_sets_it)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_connect (pg, &err), 0, "%s", err.msg);
    bool found = false;
    PQconninfoOption *opts = PQconninfo (fks_pg_conn (pg));
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp (o->keyword, "connect_timeout") == 0) {
            cr_assert_str_eq (o->val, "5");
            found = true;
        }
    PQconninfoFree (opts);
    cr_assert (found);
    fks_pg_destroy (&pg);

    //  Against a server that never answers, the URL's own timeout bounds the wait.
    int port;
    int listener = s_silent_listener (&port);
    char url[128];
    snprintf (url, sizeof url, "postgresql://postgres@127.0.0.1:%d/x?connect_timeout=1", port);
    pg = fks_pg_new (url, NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    double t0 = s_now ();
    cr_assert_eq (fks_pg_ping (pg, &err), -1);
    double took = s_now () - t0;
    cr_assert (err.conn_lost);
    cr_assert (took < 4.0, "took %.1f s with connect_timeout=1", took);
    fks_pg_destroy (&pg);
    close (listener);
}

//  A server that stops answering is noticed within about a minute, not the kernel's hours:
//  keepalive probes after 30 s of silence and a bound on unacknowledged data, unless the URL
//  says otherwise.
static const char *
s_conn_opt (fks_pg_t *pg, const char *key, char *buf, size_t cap)
{
    buf[0] = '\0';
    PQconninfoOption *opts = PQconninfo (fks_pg_conn (pg));
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp (o->keyword, key) == 0 && o->val)
            snprintf (buf, cap, "%s", o->val);
    PQconninfoFree (opts);
    return buf;
}

Test (pg, tcp_keepalives_and_a_user_timeout_are_on_unless_the_url_sets_them)
{
    fks_pg_t *pg = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_connect (pg, &err), 0, "%s", err.msg);
    char v[32];
    cr_assert_str_eq (s_conn_opt (pg, "keepalives", v, sizeof v), "1");
    cr_assert_str_eq (s_conn_opt (pg, "keepalives_idle", v, sizeof v), "30");
    cr_assert_str_eq (s_conn_opt (pg, "keepalives_interval", v, sizeof v), "10");
    cr_assert_str_eq (s_conn_opt (pg, "keepalives_count", v, sizeof v), "3");
    cr_assert_str_eq (s_conn_opt (pg, "tcp_user_timeout", v, sizeof v), "60000");
    fks_pg_destroy (&pg);

    char url[512];
    const char *base = getenv ("FKS_TEST_PG_URL");
    snprintf (url, sizeof url, "%s%skeepalives_idle=5&tcp_user_timeout=0", base,
              strchr (base, '?') ? "&" : "?");
    pg = fks_pg_new (url, NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    cr_assert_eq (fks_pg_connect (pg, &err), 0, "%s", err.msg);
    cr_assert_str_eq (s_conn_opt (pg, "keepalives_idle", v, sizeof v), "5", "the URL's wins");
    cr_assert_str_eq (s_conn_opt (pg, "tcp_user_timeout", v, sizeof v), "0");
    cr_assert_str_eq (s_conn_opt (pg, "keepalives_count", v, sizeof v), "3");
    fks_pg_destroy (&pg);
}

Test (pg, refused_port_is_an_error_with_conn_lost)
{
    s_pg_url ();
    char url[96];
    snprintf (url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", s_free_port ());
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (url, NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    cr_assert_eq (fks_pg_ping (pg, &err), -1);
    cr_assert (err.conn_lost);
    cr_assert (fks_pg_err_transient (&err));
    cr_assert_str_eq (err.sqlstate, "");
    cr_assert (strstr (err.msg, "cannot connect"), "message: %s", err.msg);
    cr_assert_eq (fks_pg_connected (pg), false);
    cr_assert_null (fks_pg_exec (pg, "none", 0, NULL, NULL, NULL, &err));
    //  Still an error, never a crash, on every later call.
    cr_assert_eq (fks_pg_begin (pg, &err), -1);
    fks_pg_rollback (pg);
    fks_pg_destroy (&pg);
}

//  What may pass if tried again, by SQLSTATE class, and what is the statement's own fault.
Test (pg, transient_errors_are_told_from_the_statements_own)
{
    const char *transient[] = { "", "08006", "40001", "40P01", "53300", "57014", "57P01",
                                "58030" };
    const char *lasting[] = { "23505", "23514", "42P01", "42601", "22P02", "25P02", "P0001" };
    fks_pg_err_t err;
    memset (&err, 0, sizeof err);
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        snprintf (err.sqlstate, sizeof err.sqlstate, "%s", transient[i]);
        cr_assert (fks_pg_err_transient (&err), "%s", transient[i]);
    }
    for (size_t i = 0; i < sizeof lasting / sizeof lasting[0]; i++) {
        snprintf (err.sqlstate, sizeof err.sqlstate, "%s", lasting[i]);
        err.conn_lost = false;
        cr_assert_not (fks_pg_err_transient (&err), "%s", lasting[i]);
        err.conn_lost = true;           //  the call may not even have reached the server
        cr_assert (fks_pg_err_transient (&err), "%s with the connection lost", lasting[i]);
    }
}

Test (pg, bad_database_name_is_a_server_error)
{
    s_pg_url ();
    fks_pg_err_t err;
    PQconninfoOption *opts = PQconninfoParse (s_pg_url (), NULL);
    cr_assert (opts);
    const char *host = "127.0.0.1", *port = "5432";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val && strcmp (o->keyword, "host") == 0) host = o->val;
        if (o->val && strcmp (o->keyword, "port") == 0) port = o->val;
    }
    char url[256];
    snprintf (url, sizeof url, "host=%s port=%s user=postgres dbname=fks_no_such_db", host, port);
    PQconninfoFree (opts);
    fks_pg_t *pg = fks_pg_new (url, NULL, 0, &err);
    cr_assert (pg);
    cr_assert_eq (fks_pg_ping (pg, &err), -1);
    cr_assert (strstr (err.msg, "fks_no_such_db"), "message: %s", err.msg);
    fks_pg_destroy (&pg);
}

//  A batch statement run while its table was small must not keep a plan made for that size.
//  With batches (here 64 ids, like a worker's), PostgreSQL's generic plan, chosen after five
//  runs because it assumes a 10-row unnest, joined by a hash over a sequential scan of the
//  table, and kept doing so for every call as the table grew, until the next ANALYZE. A
//  statement flagged FKS_PG_CUSTOM_PLAN is planned on every run: once the table has grown,
//  the run reads it through the index (counted in pg_stat_xact_user_tables).
Test (pg, a_batch_statement_first_run_on_a_small_table_uses_the_index_once_it_has_grown)
{
    fks_pg_t *setup = s_new (NULL, 0);
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (setup, "DROP TABLE IF EXISTS t_plan_growth", &err), 0, "%s",
                  err.msg);
    cr_assert_eq (fks_pg_command (setup, "CREATE TABLE t_plan_growth (id integer PRIMARY KEY,"
                                         " v text); INSERT INTO t_plan_growth SELECT g, 'a'"
                                         " FROM generate_series (1, 64) g", &err), 0, "%s",
                  err.msg);
    fks_pg_stmt_t stmts[] = {
        { "t_touch", "WITH x AS (SELECT * FROM unnest ($1::integer[]) AS u (id))"
                     " UPDATE t_plan_growth t SET v = 'b' FROM x WHERE t.id = x.id", 1,
          FKS_PG_CUSTOM_PLAN },
        { "t_scans", "SELECT coalesce (sum (seq_scan), 0), coalesce (sum (idx_scan), 0)"
                     "  FROM pg_stat_xact_user_tables WHERE relname = 't_plan_growth'", 0 } };
    fks_pg_t *pg = s_new (stmts, 2);
    char ids[512] = "{1";
    for (int i = 2; i <= 64; i++)
        snprintf (ids + strlen (ids), sizeof ids - strlen (ids), ",%d", i);
    strcat (ids, "}");
    const char *values[1] = { ids };
    for (int i = 0; i < 10; i++) {
        PGresult *res = fks_pg_exec (pg, "t_touch", 1, values, NULL, NULL, &err);
        cr_assert (res, "%s", err.msg);
        cr_assert_str_eq (PQcmdTuples (res), "64");
        PQclear (res);
    }
    cr_assert_eq (fks_pg_command (setup, "INSERT INTO t_plan_growth SELECT g, 'x'"
                                         " FROM generate_series (65, 200000) g", &err), 0, "%s",
                  err.msg);
    //  (The view also holds this backend's counts not yet flushed: compare before and after.)
    cr_assert_eq (fks_pg_begin (pg, &err), 0, "%s", err.msg);
    PGresult *res = fks_pg_exec (pg, "t_scans", 0, NULL, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    long seq = -atol (PQgetvalue (res, 0, 0)), idx = -atol (PQgetvalue (res, 0, 1));
    PQclear (res);
    res = fks_pg_exec (pg, "t_touch", 1, values, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    cr_assert_str_eq (PQcmdTuples (res), "64");
    PQclear (res);
    res = fks_pg_exec (pg, "t_scans", 0, NULL, NULL, NULL, &err);
    cr_assert (res, "%s", err.msg);
    seq += atol (PQgetvalue (res, 0, 0));
    idx += atol (PQgetvalue (res, 0, 1));
    PQclear (res);
    fks_pg_rollback (pg);
    cr_assert_eq (seq, 0, "the batch read the whole table (%ld sequential scans)", seq);
    cr_assert_geq (idx, 1, "the batch did not use the index");
    fks_pg_destroy (&pg);
    fks_pg_command (setup, "DROP TABLE t_plan_growth", &err);
    fks_pg_destroy (&setup);
}
