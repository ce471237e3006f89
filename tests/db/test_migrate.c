/*  test_migrate.c - the migration runner (tools/migrate.c), `fks migrate`, and the schema.
 *
 *  Suite migrate_files needs nothing running (meson suite 'unit'): file naming, checksums,
 *  limits, the scan for transaction control, and the `fks` binary's help and its refusal to
 *  run without a usable FKS_PG_URL. Suite
 *  migrate (meson suite 'integration') needs FKS_TEST_PG_URL, a superuser URL: every test
 *  creates its own database fks_t_<pid>_<n> and drops it at the end, so tests can run in
 *  parallel with anything else. The `fks` binary's path comes from FKS_BIN (set by meson).
 */
#include "tools/migrate.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FKS_TEST_MIGRATIONS_DIR
#   error "FKS_TEST_MIGRATIONS_DIR must point at schemas/migrations (tests/db/meson.build)"
#endif

extern char **environ;

//  --------------------------------------------------------------------------
//  Scratch folders and files

static char s_tmp[4][64];
static int s_n_tmp;

static const char *
s_tmpdir (void)
{
    cr_assert (s_n_tmp < 4);
    char *dir = s_tmp[s_n_tmp++];
    snprintf (dir, sizeof s_tmp[0], "/tmp/fks_test_migrate_XXXXXX");
    cr_assert (mkdtemp (dir), "mkdtemp failed");
    return dir;
}

static void
s_write (const char *dir, const char *file, const char *content, size_t len)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen (path, "wb");
    cr_assert (f, "cannot write %s", path);
    cr_assert_eq (fwrite (content, 1, len, f), len);
    fclose (f);
}

static void
s_write_str (const char *dir, const char *file, const char *content)
{
    s_write (dir, file, content, strlen (content));
}

static char *
s_read (const char *path, size_t *len)
{
    FILE *f = fopen (path, "rb");
    cr_assert (f, "cannot read %s", path);
    char *buf = malloc (2 * 1024 * 1024);
    size_t n = fread (buf, 1, 2 * 1024 * 1024 - 1, f);
    fclose (f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

//  Copies the shipped *.sql files into dir.
static void
s_copy_shipped (const char *dir)
{
    DIR *d = opendir (FKS_TEST_MIGRATIONS_DIR);
    cr_assert (d);
    struct dirent *e;
    int copied = 0;
    while ((e = readdir (d))) {
        size_t len = strlen (e->d_name);
        if (len < 5 || strcmp (e->d_name + len - 4, ".sql") != 0)
            continue;
        char path[512];
        snprintf (path, sizeof path, "%s/%s", FKS_TEST_MIGRATIONS_DIR, e->d_name);
        size_t n;
        char *sql = s_read (path, &n);
        s_write (dir, e->d_name, sql, n);
        free (sql);
        copied++;
    }
    closedir (d);
    cr_assert (copied > 0);
}

static void
s_rmdir (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir (d))) {
        if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
        unlink (path);
    }
    closedir (d);
    rmdir (dir);
}


//  --------------------------------------------------------------------------
//  Fresh databases

static char s_db_name[64];
static char s_db_url[1024];

static const char *
s_admin_url (void)
{
    const char *url = getenv ("FKS_TEST_PG_URL");
    cr_assert (url && *url, "FKS_TEST_PG_URL is not set: run tools/test.sh, which starts "
               "PostgreSQL and Redis and sets it (a superuser URL such as "
               "postgresql://postgres@127.0.0.1:PORT/postgres)");
    return url;
}

//  Appends key='value' (libpq quoting) to out.
static void
s_kv (char *out, size_t cap, const char *key, const char *val)
{
    size_t n = strlen (out);
    n += snprintf (out + n, cap - n, "%s%s='", n ? " " : "", key);
    for (const char *p = val; *p && n + 3 < cap; p++) {
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    snprintf (out + n, cap - n, "'");
}

//  A key=value connection string for dbname on the test server, with extra options.
static void
s_url_for (char *out, size_t cap, const char *dbname, const char *password)
{
    PQconninfoOption *opts = PQconninfoParse (s_admin_url (), NULL);
    cr_assert (opts, "FKS_TEST_PG_URL does not parse");
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp (o->keyword, "dbname") != 0
        &&  !(password && strcmp (o->keyword, "password") == 0))
            s_kv (out, cap, o->keyword, o->val);
    PQconninfoFree (opts);
    s_kv (out, cap, "dbname", dbname);
    if (password)
        s_kv (out, cap, "password", password);
}

static void
s_admin_command (const char *sql)
{
    PGconn *conn = PQconnectdb (s_admin_url ());
    cr_assert (PQstatus (conn) == CONNECTION_OK, "cannot connect to FKS_TEST_PG_URL: %s",
               PQerrorMessage (conn));
    PGresult *res = PQexec (conn, sql);
    cr_assert (PQresultStatus (res) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage (conn));
    PQclear (res);
    PQfinish (conn);
}

//  Creates this test's database (once) and returns its connection string.
static const char *
s_fresh_db (void)
{
    if (!s_db_name[0]) {
        static int n;
        char name[64];
        snprintf (name, sizeof name, "fks_t_%d_%d", (int) getpid (), ++n);
        //  The only SQL built by formatting: a name made of our own pid and counter
        //  (identifiers cannot be parameters).
        char sql[128];
        snprintf (sql, sizeof sql, "CREATE DATABASE %s", name);
        s_admin_command (sql);
        snprintf (s_db_name, sizeof s_db_name, "%s", name);    /* created: drop it at the end */
        s_url_for (s_db_url, sizeof s_db_url, s_db_name, NULL);
    }
    return s_db_url;
}

static void
s_teardown (void)
{
    for (int i = 0; i < s_n_tmp; i++)
        s_rmdir (s_tmp[i]);
    s_n_tmp = 0;
    if (s_db_name[0]) {
        char sql[128];
        snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s_db_name);
        s_db_name[0] = '\0';
        s_admin_command (sql);
    }
}

static fks_pg_t *
s_pg (void)
{
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (s_fresh_db (), NULL, 0, &err);
    cr_assert (pg, "%s", err.msg);
    return pg;
}

static char *
s_scalar (fks_pg_t *pg, const char *sql)
{
    fks_pg_err_t err;
    PGresult *res = fks_pg_query (pg, sql, 0, NULL, NULL, NULL, &err);
    cr_assert (res, "%s: %s %s", sql, err.sqlstate, err.msg);
    cr_assert_eq (PQntuples (res), 1, "%s", sql);
    char *v = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return v;
}

static void
s_expect_scalar (fks_pg_t *pg, const char *sql, const char *expected)
{
    char *v = s_scalar (pg, sql);
    cr_assert_str_eq (v, expected, "%s", sql);
    free (v);
}

//  Loads dir and applies it; returns the call's result, the count and the printed text.
static int
s_migrate (fks_pg_t *pg, const char *dir, int *applied, char **printed, fks_migrate_err_t *err)
{
    size_t size = 0;
    char *buf = NULL;
    FILE *out = open_memstream (&buf, &size);
    fks_migrate_t *m = fks_migrate_load (dir, out, err);
    int rc = -1;
    if (m)
        rc = fks_migrate_apply (m, pg, out, applied, err);
    fks_migrate_destroy (&m);
    fclose (out);
    if (printed)
        *printed = buf;
    else
        free (buf);
    return rc;
}

static char *
s_sha256_file (const char *path)
{
    size_t len;
    char *data = s_read (path, &len);
    unsigned char md[32];
    unsigned int md_len = 0;
    cr_assert_eq (EVP_Digest (data, len, md, &md_len, EVP_sha256 (), NULL), 1);
    free (data);
    char *hex = malloc (65);
    for (int i = 0; i < 32; i++)
        snprintf (hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}


//  --------------------------------------------------------------------------
//  Running the real `fks` binary

typedef struct {
    int status;         /* exit code, or -1 if it did not exit normally */
    char *out;
    char *err;
} s_run_t;

//  Runs FKS_BIN with args, an environment of the current one minus FKS_PG_URL*,
//  FKS_MIGRATIONS_DIR and FKS_LOG_LEVEL, plus `extra` (NULL-terminated "K=V" strings).
static s_run_t
s_run_fks (const char *const *args, const char *const *extra)
{
    const char *bin = getenv ("FKS_BIN");
    cr_assert (bin && *bin, "FKS_BIN (the fks binary) is not set: run the tests with meson test");
    char out_path[] = "/tmp/fks_test_out_XXXXXX", err_path[] = "/tmp/fks_test_err_XXXXXX";
    int out_fd = mkstemp (out_path), err_fd = mkstemp (err_path);
    cr_assert (out_fd >= 0 && err_fd >= 0);

    const char *envp[256];
    int n = 0;
    for (char **e = environ; *e && n < 200; e++)
        if (strncmp (*e, "FKS_PG_URL", 10) != 0 && strncmp (*e, "FKS_MIGRATIONS_DIR", 18) != 0
        &&  strncmp (*e, "FKS_LOG_LEVEL", 13) != 0)
            envp[n++] = *e;
    for (const char *const *x = extra; x && *x && n < 250; x++)
        envp[n++] = *x;
    envp[n] = NULL;

    const char *argv[16] = { bin };
    int argc = 1;
    for (const char *const *a = args; *a && argc < 15; a++)
        argv[argc++] = *a;
    argv[argc] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init (&fa);
    posix_spawn_file_actions_adddup2 (&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2 (&fa, err_fd, 2);
    pid_t pid;
    int rc = posix_spawn (&pid, bin, &fa, NULL, (char *const *) argv, (char *const *) envp);
    posix_spawn_file_actions_destroy (&fa);
    cr_assert_eq (rc, 0, "cannot run %s", bin);
    int wstatus;
    cr_assert_eq (waitpid (pid, &wstatus, 0), pid);
    close (out_fd);
    close (err_fd);
    s_run_t run = { WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1,
                    s_read (out_path, NULL), s_read (err_path, NULL) };
    unlink (out_path);
    unlink (err_path);
    return run;
}

static void
s_run_free (s_run_t *run)
{
    free (run->out);
    free (run->err);
}


//  --------------------------------------------------------------------------
//  migrate_files: no server needed

TestSuite (migrate_files, .fini = s_teardown);

Test (migrate_files, shipped_migrations_load_with_their_sha256)
{
    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (FKS_TEST_MIGRATIONS_DIR, NULL, &err);
    cr_assert (m, "%s", err.msg);
    cr_assert_geq (fks_migrate_size (m), 1);
    cr_assert_eq (fks_migrate_version (m, 0), 1);
    cr_assert_str_eq (fks_migrate_name (m, 0), "init");
    char *sum = s_sha256_file (FKS_TEST_MIGRATIONS_DIR "/0001_init.sql");
    cr_assert_str_eq (fks_migrate_checksum (m, 0), sum);
    free (sum);
    cr_assert_eq (fks_migrate_version (m, 999), -1);
    fks_migrate_destroy (&m);
    cr_assert_null (m);
}

Test (migrate_files, badly_named_files_are_ignored_with_a_warning)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_good.sql", "SELECT 1;\n");
    s_write_str (dir, "1_short.sql", "SELECT 1;\n");
    s_write_str (dir, "0002-dash.sql", "SELECT 1;\n");
    s_write_str (dir, "0003_Upper.sql", "SELECT 1;\n");
    s_write_str (dir, "0004_backup.sql~", "SELECT 1;\n");
    s_write_str (dir, "0000_zero.sql", "SELECT 1;\n");
    s_write_str (dir, "README.md", "# notes\n");
    s_write_str (dir, ".hidden.sql", "SELECT 1;\n");
    char *printed = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&printed, &size);
    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (dir, out, &err);
    fclose (out);
    cr_assert (m, "%s", err.msg);
    cr_assert_eq (fks_migrate_size (m), 1);
    cr_assert_str_eq (fks_migrate_name (m, 0), "good");
    const char *ignored[] = { "1_short.sql", "0002-dash.sql", "0003_Upper.sql",
                              "0004_backup.sql~", "0000_zero.sql" };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        cr_assert (strstr (printed, ignored[i]), "no warning for %s in:\n%s", ignored[i], printed);
    cr_assert (strstr (printed, "warning: ignoring"), "%s", printed);
    cr_assert_null (strstr (printed, "README"), "README must be skipped silently: %s", printed);
    cr_assert_null (strstr (printed, ".hidden"), "hidden files are skipped silently: %s", printed);
    free (printed);
    fks_migrate_destroy (&m);
}

Test (migrate_files, duplicate_numbers_are_an_error)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "SELECT 1;\n");
    s_write_str (dir, "0001_b.sql", "SELECT 2;\n");
    fks_migrate_err_t err;
    cr_assert_null (fks_migrate_load (dir, NULL, &err));
    cr_assert (strstr (err.msg, "0001_a.sql") && strstr (err.msg, "0001_b.sql"),
               "message: %s", err.msg);
}

Test (migrate_files, file_over_1_mib_is_refused)
{
    const char *dir = s_tmpdir ();
    size_t len = FKS_MIGRATE_FILE_MAX + 1;
    char *big = malloc (len);
    memset (big, ' ', len);
    s_write (dir, "0001_big.sql", big, len);
    free (big);
    fks_migrate_err_t err;
    cr_assert_null (fks_migrate_load (dir, NULL, &err));
    cr_assert (strstr (err.msg, "0001_big.sql") && strstr (err.msg, "at most"),
               "message: %s", err.msg);
}

Test (migrate_files, file_with_a_nul_byte_is_refused)
{
    const char *dir = s_tmpdir ();
    s_write (dir, "0001_nul.sql", "SELECT 1;\0DROP TABLE x;", 23);
    fks_migrate_err_t err;
    cr_assert_null (fks_migrate_load (dir, NULL, &err));
    cr_assert (strstr (err.msg, "NUL"), "message: %s", err.msg);
}

Test (migrate_files, migrations_are_sorted_by_version)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0010_c.sql", "SELECT 10;\n");
    s_write_str (dir, "0002_b.sql", "SELECT 2;\n");
    s_write_str (dir, "0001_a.sql", "SELECT 1;\n");
    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (dir, NULL, &err);
    cr_assert (m, "%s", err.msg);
    cr_assert_eq (fks_migrate_size (m), 3);
    cr_assert_eq (fks_migrate_version (m, 0), 1);
    cr_assert_eq (fks_migrate_version (m, 1), 2);
    cr_assert_eq (fks_migrate_version (m, 2), 10);
    fks_migrate_destroy (&m);
}

Test (migrate_files, missing_directory_is_an_error)
{
    fks_migrate_err_t err;
    cr_assert_null (fks_migrate_load ("/nonexistent/fks/migrations", NULL, &err));
    cr_assert (strstr (err.msg, "/nonexistent/fks/migrations"), "message: %s", err.msg);
}

Test (migrate_files, fks_migrate_without_fks_pg_url_names_the_variable)
{
    const char *args[] = { "migrate", NULL };
    s_run_t run = s_run_fks (args, NULL);
    cr_assert_eq (run.status, 1, "exit status %d, stderr: %s", run.status, run.err);
    cr_assert (strstr (run.err, "FKS_PG_URL"), "stderr: %s", run.err);
    cr_assert (strstr (run.err, "not set"), "stderr: %s", run.err);
    s_run_free (&run);
}

Test (migrate_files, fks_migrate_with_an_unparseable_url_fails_without_echoing_it)
{
    const char *args[] = { "migrate", NULL };
    const char *env[] = { "FKS_PG_URL=postgresql://u:hunter2@[::1/db", NULL };
    s_run_t run = s_run_fks (args, env);
    cr_assert_eq (run.status, 1, "exit status %d, stderr: %s", run.status, run.err);
    cr_assert (strstr (run.err, "invalid PostgreSQL URL"), "stderr: %s", run.err);
    cr_assert_null (strstr (run.err, "hunter2"), "leaked on stderr: %s", run.err);
    cr_assert_null (strstr (run.out, "hunter2"), "leaked on stdout: %s", run.out);
    s_run_free (&run);
}

Test (migrate_files, fks_help_lists_the_commands)
{
    const char *args[] = { "help", NULL };
    s_run_t run = s_run_fks (args, NULL);
    cr_assert_eq (run.status, 0, "stderr: %s", run.err);
    cr_assert (strstr (run.out, "migrate"), "stdout: %s", run.out);
    s_run_free (&run);

    const char *args2[] = { "help", "migrate", NULL };
    run = s_run_fks (args2, NULL);
    cr_assert_eq (run.status, 0, "stderr: %s", run.err);
    cr_assert (strstr (run.out, "FKS_MIGRATIONS_DIR"), "stdout: %s", run.out);
    s_run_free (&run);
}

Test (migrate_files, fks_unknown_command_fails)
{
    const char *args[] = { "frobnicate", NULL };
    s_run_t run = s_run_fks (args, NULL);
    cr_assert_eq (run.status, 1);
    cr_assert (strstr (run.err, "frobnicate"), "stderr: %s", run.err);
    s_run_free (&run);

    const char *none[] = { NULL };
    run = s_run_fks (none, NULL);
    cr_assert_eq (run.status, 1, "no command is an error");
    cr_assert (strstr (run.err, "usage"), "stderr: %s", run.err);
    s_run_free (&run);
}


//  Files that mention transaction control only where it does not begin a statement: they
//  must pass the scan (migrate_files) and apply (migrate).
static const struct {
    const char *file;
    const char *sql;
} s_legit[] = {
    { "0001_function_bodies.sql",
      "CREATE TABLE t (x integer, label text);\n"
      "CREATE FUNCTION t_touch () RETURNS trigger LANGUAGE plpgsql AS $$\n"
      "BEGIN\n"
      "    NEW.x := coalesce (NEW.x, 0) + 1;\n"
      "    RETURN NEW;\n"
      "END;\n"
      "$$;\n"
      "CREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_touch ();\n"
      "CREATE FUNCTION t_nested () RETURNS text LANGUAGE plpgsql AS $fn$\n"
      "BEGIN\n"
      "    RETURN $q$COMMIT; BEGIN;$q$ || $$;$$;\n"
      "END\n"
      "$fn$;\n"
      "CREATE FUNCTION t_quoted () RETURNS text LANGUAGE plpgsql AS '\n"
      "BEGIN\n"
      "    RETURN ''END;'';\n"
      "END;';\n"
      "PREPARE t_q (integer) AS SELECT $1 + 1;\n"
      "DEALLOCATE t_q;\n" },
    { "0002_strings_and_names.sql",
      "COMMENT ON TABLE t IS 'run BEGIN; then COMMIT; never ROLLBACK; END';\n"
      "SELECT E'it\\'s; BEGIN', U&'d\\0061t; COMMIT', 'a;''; ABORT';\n"
      "CREATE TABLE \"begin; commit\" (\"end\" integer, \"x\"\"; rollback\" text);\n" },
    { "0003_comments.sql",
      "-- BEGIN;\n"
      "/* COMMIT; /* nested; ROLLBACK; */ END; */\n"
      "SELECT 1; -- ; COMMIT\n"
      "/* ; */ SELECT 2;\n" },
    { "0004_case_end.sql",
      "SELECT CASE WHEN 1 = 1 THEN 'a' ELSE 'b' END;\n"
      "CREATE VIEW t_labels AS SELECT CASE x WHEN 1 THEN 'one'\n"
      "END AS label FROM t;\n"
      "CREATE FUNCTION t_sign (i integer) RETURNS text LANGUAGE sql\n"
      "BEGIN ATOMIC\n"
      "    SELECT CASE WHEN i > 0 THEN 'positive' ELSE 'not' END;\n"
      "END;\n"
      "SAVEPOINT s;\n"
      "CREATE TABLE t_undone (x integer);\n"
      "ROLLBACK TO SAVEPOINT s;\n"
      "RELEASE SAVEPOINT s;\n" },
};

static void
s_write_legit (const char *dir)
{
    for (size_t i = 0; i < sizeof s_legit / sizeof s_legit[0]; i++)
        s_write_str (dir, s_legit[i].file, s_legit[i].sql);
}

Test (migrate_files, transaction_control_statements_are_found_with_their_line)
{
    static const struct {
        const char *sql;
        const char *found;
        int line;
    } c[] = {
        { "CREATE TABLE part_a(x int); COMMIT; BEGIN; CREATE TABLE part_b(x int); SELECT 1/0;",
          "COMMIT", 1 },
        { "BEGIN;\nCREATE TABLE a (x int);\n", "BEGIN", 1 },
        { "create table a (x int);\n\n  begin transaction isolation level serializable;",
          "BEGIN", 3 },
        { "START TRANSACTION;\nSELECT 1;", "START TRANSACTION", 1 },
        { "SELECT 1;\nEND;", "END", 2 },
        { "SELECT 1;\nabort;", "ABORT", 2 },
        { "SELECT 1;ROLLBACK", "ROLLBACK", 1 },
        { "SELECT 1; COMMIT AND CHAIN;", "COMMIT", 1 },
        { "PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION", 1 },
        { "COMMIT PREPARED 'x';", "COMMIT PREPARED", 1 },
        { "ROLLBACK PREPARED 'x';", "ROLLBACK PREPARED", 1 },
        { "SELECT ';' /* ; */ -- ;\n; COMMIT", "COMMIT", 2 },
        { "SELECT $$ BEGIN $$; /* a /* nested; */ comment */ COMMIT;", "COMMIT", 1 },
        { "SELECT E'it\\'s; BEGIN'; COMMIT;", "COMMIT", 1 },
        { "SELECT $tag$ $$ ; BEGIN $tag$; \"a\"\"b;\";\n-- x\n/* y */ Commit;", "COMMIT", 3 },
        { "CREATE FUNCTION f () RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nCOMMIT;",
          "COMMIT", 2 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const char *dir = s_tmpdir ();
        s_write_str (dir, "0001_tx.sql", c[i].sql);
        fks_migrate_err_t err;
        fks_migrate_t *m = fks_migrate_load (dir, NULL, &err);
        cr_assert (m, "%s", err.msg);
        int line = 0;
        const char *found = fks_migrate_tx_control (m, 0, &line);
        cr_assert (found, "not found in: %s", c[i].sql);
        cr_assert_str_eq (found, c[i].found, "in: %s", c[i].sql);
        cr_assert_eq (line, c[i].line, "line %d, expected %d in: %s", line, c[i].line, c[i].sql);
        fks_migrate_destroy (&m);
        s_teardown ();
    }
}

Test (migrate_files, begin_in_a_function_body_a_string_or_a_comment_is_accepted)
{
    const char *dir = s_tmpdir ();
    s_write_legit (dir);
    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (dir, NULL, &err);
    cr_assert (m, "%s", err.msg);
    cr_assert_eq (fks_migrate_size (m), sizeof s_legit / sizeof s_legit[0]);
    for (size_t i = 0; i < fks_migrate_size (m); i++) {
        int line = 0;
        const char *found = fks_migrate_tx_control (m, i, &line);
        cr_assert_null (found, "%s: %s found at line %d", s_legit[i].file, found, line);
    }
    fks_migrate_destroy (&m);
}

Test (migrate_files, every_shipped_migration_passes_the_transaction_control_scan)
{
    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (FKS_TEST_MIGRATIONS_DIR, NULL, &err);
    cr_assert (m, "%s", err.msg);
    cr_assert_geq (fks_migrate_size (m), 7);
    for (size_t i = 0; i < fks_migrate_size (m); i++) {
        int line = 0;
        const char *found = fks_migrate_tx_control (m, i, &line);
        cr_assert_null (found, "%04d_%s.sql: %s found at line %d", fks_migrate_version (m, i),
                        fks_migrate_name (m, i), found, line);
    }
    fks_migrate_destroy (&m);
}

//  Every byte of text is printable ASCII or a newline: no uninitialised buffer was printed.
static bool
s_printable (const char *text)
{
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p < 0x20 || *p > 0x7e) && *p != '\n')
            return false;
    return true;
}

Test (migrate_files, fks_names_the_real_cause_when_fks_pg_url_cannot_be_used)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "url", "postgresql://postgres@127.0.0.1:1/postgres\n");
    char file_env[128];
    snprintf (file_env, sizeof file_env, "FKS_PG_URL_FILE=%s/url", dir);
    const struct {
        const char *env[3];
        const char *cause;
    } c[] = {
        { { "FKS_PG_URL=", NULL }, "FKS_PG_URL is empty" },
        { { "FKS_PG_URL_FILE=/nonexistent/fks/url", NULL },
          "FKS_PG_URL_FILE: cannot open '/nonexistent/fks/url': No such file or directory" },
        { { "FKS_PG_URL=postgresql://postgres@127.0.0.1:1/postgres", file_env, NULL },
          "FKS_PG_URL and FKS_PG_URL_FILE are both set" },
    };
    const char *keys[] = { "keys", "list", NULL };
    const char *migrate[] = { "migrate", NULL };
    const char *const *commands[] = { keys, migrate };
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
            s_run_t run = s_run_fks (commands[k], c[i].env);
            cr_assert_eq (run.status, 1, "fks %s with %s: exit status %d, stderr: %s",
                          commands[k][0], c[i].env[0], run.status, run.err);
            char expected[256];
            snprintf (expected, sizeof expected, "fks %s: %s", commands[k][0], c[i].cause);
            cr_assert (strncmp (run.err, expected, strlen (expected)) == 0,
                       "fks %s with %s: expected '%s...', stderr: %s", commands[k][0],
                       c[i].env[0], expected, run.err);
            cr_assert (s_printable (run.err), "garbled stderr: %s", run.err);
            cr_assert_null (strstr (run.err, "is not set"), "stderr: %s", run.err);
            s_run_free (&run);
        }
}


//  --------------------------------------------------------------------------
//  migrate: against a fresh database

TestSuite (migrate, .fini = s_teardown);

static const char *s_tables[] = {
    "schema_migrations", "inbox", "events", "consumed", "signals", "orders", "fills",
    "positions", "bars", "security_events", "dead_letters", "api_keys",
};

Test (migrate, applies_every_migration_to_a_fresh_database)
{
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    int applied = -1;
    char *printed = NULL;
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, &applied, &printed, &err), 0,
                  "%s", err.msg);
    fks_migrate_t *m = fks_migrate_load (FKS_TEST_MIGRATIONS_DIR, NULL, &err);
    cr_assert_eq ((size_t) applied, fks_migrate_size (m));
    cr_assert (strstr (printed, "applied 0001_init.sql"), "printed: %s", printed);
    free (printed);

    for (size_t i = 0; i < sizeof s_tables / sizeof s_tables[0]; i++) {
        const char *params[1] = { s_tables[i] };
        fks_pg_err_t perr;
        PGresult *res = fks_pg_query (pg, "SELECT to_regclass($1) IS NOT NULL", 1, params,
                                      NULL, NULL, &perr);
        cr_assert (res, "%s", perr.msg);
        cr_assert_str_eq (PQgetvalue (res, 0, 0), "t", "table %s is missing", s_tables[i]);
        PQclear (res);
    }
    //  One row per file, with the file's checksum.
    char *rows = s_scalar (pg, "SELECT count(*) FROM schema_migrations");
    cr_assert_eq ((size_t) atoi (rows), fks_migrate_size (m));
    free (rows);
    char *sum = s_scalar (pg, "SELECT checksum FROM schema_migrations WHERE version = 1");
    cr_assert_str_eq (sum, fks_migrate_checksum (m, 0));
    free (sum);
    s_expect_scalar (pg, "SELECT name FROM schema_migrations WHERE version = 1", "init");
    fks_migrate_destroy (&m);
    fks_pg_destroy (&pg);
}

Test (migrate, second_run_is_a_no_op_that_says_up_to_date)
{
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, NULL, NULL, &err), 0, "%s", err.msg);
    char *before = s_scalar (pg, "SELECT string_agg(version || ':' || applied_at, ',') "
                                 "FROM schema_migrations");
    int applied = -1;
    char *printed = NULL;
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, &applied, &printed, &err), 0,
                  "%s", err.msg);
    cr_assert_eq (applied, 0);
    cr_assert (strstr (printed, "up to date"), "printed: %s", printed);
    cr_assert_null (strstr (printed, "applied 0"), "printed: %s", printed);
    free (printed);
    char *after = s_scalar (pg, "SELECT string_agg(version || ':' || applied_at, ',') "
                                "FROM schema_migrations");
    cr_assert_str_eq (before, after, "nothing may be re-applied");
    free (before);
    free (after);
    fks_pg_destroy (&pg);
}

Test (migrate, edited_applied_migration_is_refused)
{
    const char *dir = s_tmpdir ();
    s_copy_shipped (dir);
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, dir, NULL, NULL, &err), 0, "%s", err.msg);

    //  Someone edits history (even a comment changes the bytes).
    char path[512];
    snprintf (path, sizeof path, "%s/0001_init.sql", dir);
    FILE *f = fopen (path, "ab");
    cr_assert (f);
    fputs ("-- edited after it was applied\n", f);
    fclose (f);
    s_write_str (dir, "9999_later.sql", "CREATE TABLE should_not_exist (x integer);\n");

    int applied = -1;
    cr_assert_eq (s_migrate (pg, dir, &applied, NULL, &err), -1);
    cr_assert_eq (applied, 0);
    cr_assert (strstr (err.msg, "0001_init.sql") && strstr (err.msg, "never change"),
               "message: %s", err.msg);
    s_expect_scalar (pg, "SELECT to_regclass('should_not_exist') IS NULL", "t");
    fks_pg_destroy (&pg);
}

Test (migrate, tampered_recorded_checksum_is_refused)
{
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, NULL, NULL, &err), 0, "%s", err.msg);
    fks_pg_err_t perr;
    cr_assert_eq (fks_pg_command (pg, "UPDATE schema_migrations SET checksum = repeat('0', 64) "
                                  "WHERE version = 1", &perr), 0, "%s", perr.msg);
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, NULL, NULL, &err), -1);
    cr_assert (strstr (err.msg, "SHA-256 000000000000"), "message: %s", err.msg);
    fks_pg_destroy (&pg);
}

Test (migrate, new_migration_is_applied_alone_in_order)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "CREATE TABLE a (x integer);\n");
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    int applied = -1;
    cr_assert_eq (s_migrate (pg, dir, &applied, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq (applied, 1);
    s_write_str (dir, "0002_b.sql", "ALTER TABLE a ADD COLUMN y text;\nINSERT INTO a VALUES (1, 'one');\n");
    s_write_str (dir, "0003_c.sql", "CREATE INDEX a_y_idx ON a (y);\n");
    char *printed = NULL;
    cr_assert_eq (s_migrate (pg, dir, &applied, &printed, &err), 0, "%s", err.msg);
    cr_assert_eq (applied, 2);
    char *b = strstr (printed, "applied 0002_b.sql"), *c = strstr (printed, "applied 0003_c.sql");
    cr_assert (b && c && b < c, "printed: %s", printed);
    cr_assert (strstr (printed, "version 0003"), "printed: %s", printed);
    free (printed);
    s_expect_scalar (pg, "SELECT y FROM a", "one");
    fks_pg_destroy (&pg);
}

Test (migrate, pending_migration_older_than_applied_history_is_refused)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "CREATE TABLE a (x integer);\n");
    s_write_str (dir, "0003_c.sql", "CREATE TABLE c (x integer);\n");
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, dir, NULL, NULL, &err), 0, "%s", err.msg);
    s_write_str (dir, "0002_b.sql", "CREATE TABLE b (x integer);\n");
    cr_assert_eq (s_migrate (pg, dir, NULL, NULL, &err), -1);
    cr_assert (strstr (err.msg, "0002_b.sql") && strstr (err.msg, "renumber"),
               "message: %s", err.msg);
    s_expect_scalar (pg, "SELECT to_regclass('b') IS NULL", "t");
    fks_pg_destroy (&pg);
}

Test (migrate, failing_migration_rolls_back_and_names_file_line_and_sqlstate)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "CREATE TABLE a (x integer);\n");
    s_write_str (dir, "0002_broken.sql",
                 "-- a comment\nCREATE TABLE b (x integer);\nCREATE TABLE c (y nosuchtype);\n");
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    int applied = -1;
    cr_assert_eq (s_migrate (pg, dir, &applied, NULL, &err), -1);
    cr_assert_eq (applied, 1, "0001 is applied, 0002 is not");
    cr_assert (strstr (err.msg, "0002_broken.sql"), "message: %s", err.msg);
    cr_assert (strstr (err.msg, "line 3"), "message: %s", err.msg);
    cr_assert (strstr (err.msg, "42704"), "message: %s", err.msg);
    cr_assert_null (strchr (err.msg, '\n'), "one line: %s", err.msg);
    s_expect_scalar (pg, "SELECT to_regclass('b') IS NULL", "t");
    s_expect_scalar (pg, "SELECT string_agg(version::text, ',') FROM schema_migrations", "1");
    fks_pg_destroy (&pg);
}

Test (migrate, migration_that_commits_by_itself_is_reported)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "CREATE TABLE a (x integer);\nCOMMIT;\n");
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, dir, NULL, NULL, &err), -1);
    cr_assert (strstr (err.msg, "COMMIT"), "message: %s", err.msg);
    s_expect_scalar (pg, "SELECT count(*) FROM schema_migrations", "0");
    fks_pg_destroy (&pg);
}

Test (migrate, migration_that_commits_midway_is_refused_and_applies_nothing)
{
    const char *dir = s_tmpdir ();
    s_write_str (dir, "0001_a.sql", "CREATE TABLE a (x integer);\n");
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, dir, NULL, NULL, &err), 0, "%s", err.msg);
    //  A good pending migration before the bad one is not applied either.
    s_write_str (dir, "0002_b.sql", "CREATE TABLE b (x integer);\n");
    s_write_str (dir, "0003_split.sql",
                 "CREATE TABLE part_a(x int); COMMIT; BEGIN; CREATE TABLE part_b(x int);"
                 " SELECT 1/0;\n");
    //  Run twice: the second run must say the same, not "relation part_a already exists".
    for (int run = 0; run < 2; run++) {
        int applied = -1;
        cr_assert_eq (s_migrate (pg, dir, &applied, NULL, &err), -1, "run %d accepted", run);
        cr_assert_eq (applied, 0, "run %d", run);
        cr_assert (strstr (err.msg, "0003_split.sql") && strstr (err.msg, "COMMIT"),
                   "run %d: %s", run, err.msg);
        s_expect_scalar (pg, "SELECT to_regclass('part_a') IS NULL", "t");
        s_expect_scalar (pg, "SELECT to_regclass('part_b') IS NULL", "t");
        s_expect_scalar (pg, "SELECT to_regclass('b') IS NULL", "t");
        s_expect_scalar (pg, "SELECT string_agg(version::text, ',') FROM schema_migrations",
                         "1");
    }
    fks_pg_destroy (&pg);
}

Test (migrate, begin_and_end_in_bodies_strings_comments_and_case_are_applied)
{
    const char *dir = s_tmpdir ();
    s_write_legit (dir);
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    int applied = -1;
    cr_assert_eq (s_migrate (pg, dir, &applied, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq ((size_t) applied, sizeof s_legit / sizeof s_legit[0]);
    fks_pg_err_t perr;
    cr_assert_eq (fks_pg_command (pg, "INSERT INTO t (x) VALUES (0)", &perr), 0, "%s",
                  perr.msg);
    s_expect_scalar (pg, "SELECT label FROM t_labels", "one");
    s_expect_scalar (pg, "SELECT t_nested ()", "COMMIT; BEGIN;;");
    s_expect_scalar (pg, "SELECT t_quoted ()", "END;");
    s_expect_scalar (pg, "SELECT t_sign (3)", "positive");
    s_expect_scalar (pg, "SELECT to_regclass('\"begin; commit\"') IS NOT NULL", "t");
    s_expect_scalar (pg, "SELECT to_regclass('t_undone') IS NULL", "t");
    s_expect_scalar (pg, "SELECT count(*) FROM schema_migrations", "4");
    fks_pg_destroy (&pg);
}

typedef struct {
    const char *url;
    const char *dir;
    pthread_barrier_t *barrier;
    int rc;
    int applied;
    char msg[512];
} s_runner_t;

static void *
s_runner (void *arg)
{
    s_runner_t *r = arg;
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (r->url, NULL, 0, &perr);
    fks_migrate_err_t err = { "" };
    fks_migrate_t *m = fks_migrate_load (r->dir, NULL, &err);
    pthread_barrier_wait (r->barrier);
    r->rc = pg && m ? fks_migrate_apply (m, pg, NULL, &r->applied, &err) : -1;
    snprintf (r->msg, sizeof r->msg, "%s", pg ? err.msg : perr.msg);
    fks_migrate_destroy (&m);
    fks_pg_destroy (&pg);
    return NULL;
}

Test (migrate, two_concurrent_runs_apply_each_migration_once)
{
    const char *dir = s_tmpdir ();
    s_copy_shipped (dir);
    //  A slow migration holds the lock long enough that the runs surely overlap.
    s_write_str (dir, "9000_slow.sql", "CREATE TABLE slow (x integer);\nSELECT pg_sleep(0.5);\n");
    const char *url = s_fresh_db ();
    pthread_barrier_t barrier;
    pthread_barrier_init (&barrier, NULL, 2);
    s_runner_t runs[2] = {
        { .url = url, .dir = dir, .barrier = &barrier },
        { .url = url, .dir = dir, .barrier = &barrier },
    };
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq (pthread_create (&threads[i], NULL, s_runner, &runs[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join (threads[i], NULL);
    pthread_barrier_destroy (&barrier);

    fks_migrate_err_t err;
    fks_migrate_t *m = fks_migrate_load (dir, NULL, &err);
    size_t total = fks_migrate_size (m);
    fks_migrate_destroy (&m);
    cr_assert_eq (runs[0].rc, 0, "run 1: %s", runs[0].msg);
    cr_assert_eq (runs[1].rc, 0, "run 2: %s", runs[1].msg);
    cr_assert_eq ((size_t) (runs[0].applied + runs[1].applied), total,
                  "applied %d + %d, expected %zu in all", runs[0].applied, runs[1].applied, total);
    fks_pg_t *pg = s_pg ();
    char *rows = s_scalar (pg, "SELECT count(*) FROM schema_migrations");
    cr_assert_eq ((size_t) atoi (rows), total);
    free (rows);
    fks_pg_destroy (&pg);
}

Test (migrate, fks_binary_applies_then_reports_up_to_date_and_hides_the_password)
{
    s_fresh_db ();
    //  The test server trusts loopback, so a password in the URL is never checked; it is
    //  there to prove that it is not printed.
    char url[1100];
    s_url_for (url, sizeof url - 16, s_db_name, "hunter2");
    char env_url[1200];
    snprintf (env_url, sizeof env_url, "FKS_PG_URL=%s", url);
    const char *env[] = { env_url, NULL };
    const char *args[] = { "migrate", NULL };

    s_run_t run = s_run_fks (args, env);
    cr_assert_eq (run.status, 0, "stdout: %s\nstderr: %s", run.out, run.err);
    cr_assert (strstr (run.out, "applied 0001_init.sql"), "stdout: %s", run.out);
    cr_assert (strstr (run.out, "password=***"), "stdout: %s", run.out);
    cr_assert_null (strstr (run.out, "hunter2"), "leaked on stdout: %s", run.out);
    cr_assert_null (strstr (run.err, "hunter2"), "leaked on stderr: %s", run.err);
    s_run_free (&run);

    run = s_run_fks (args, env);
    cr_assert_eq (run.status, 0, "stderr: %s", run.err);
    cr_assert (strstr (run.out, "up to date"), "stdout: %s", run.out);
    s_run_free (&run);

    //  The same through FKS_PG_URL_FILE and an explicit FKS_MIGRATIONS_DIR.
    const char *dir = s_tmpdir ();
    s_write_str (dir, "url", url);
    char env_file[256], env_dir[256];
    snprintf (env_file, sizeof env_file, "FKS_PG_URL_FILE=%s/url", dir);
    snprintf (env_dir, sizeof env_dir, "FKS_MIGRATIONS_DIR=%s", FKS_TEST_MIGRATIONS_DIR);
    const char *env2[] = { env_file, env_dir, NULL };
    run = s_run_fks (args, env2);
    cr_assert_eq (run.status, 0, "stderr: %s", run.err);
    cr_assert (strstr (run.out, "up to date"), "stdout: %s", run.out);
    s_run_free (&run);
}

Test (migrate, fks_binary_fails_with_exit_1_when_the_database_is_down)
{
    s_admin_url ();
    const char *env[] = { "FKS_PG_URL=postgresql://postgres@127.0.0.1:1/postgres", NULL };
    const char *args[] = { "migrate", NULL };
    s_run_t run = s_run_fks (args, env);
    cr_assert_eq (run.status, 1, "stdout: %s\nstderr: %s", run.out, run.err);
    cr_assert (strstr (run.err, "cannot connect"), "stderr: %s", run.err);
    s_run_free (&run);
}


//  --------------------------------------------------------------------------
//  The schema's constraints (after the shipped migrations)

#define S_ALERT     "018f0000-0000-7000-8000-000000000001"
#define S_SIGNAL    "018f0000-0000-7000-8000-000000000002"
#define S_ORDER     "018f0000-0000-7000-8000-000000000003"
#define S_FILL      "018f0000-0000-7000-8000-000000000004"
#define S_MSG       "018f0000-0000-7000-8000-000000000005"

static fks_pg_t *
s_seeded (void)
{
    fks_pg_t *pg = s_pg ();
    fks_migrate_err_t err;
    cr_assert_eq (s_migrate (pg, FKS_TEST_MIGRATIONS_DIR, NULL, NULL, &err), 0, "%s", err.msg);
    fks_pg_err_t perr;
    int rc = fks_pg_command (pg,
        "INSERT INTO inbox (id, idem_key, source, content_type, body, alert) VALUES"
        " ('" S_ALERT "', 'alert-1', 'tradingview', 'text/plain', 'buy BTCUSDT 1',"
        "  '{\"ticker\": \"BTCUSDT\"}');"
        "INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty) VALUES"
        " ('" S_SIGNAL "', '" S_ALERT "', '" S_ALERT "', 'tradingview', 'BTCUSDT', 'buy', 'buy', 1);"
        "INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side, type, qty, broker)"
        " VALUES ('" S_ORDER "', 'fks-1', '" S_SIGNAL "', '" S_ALERT "', 'BTCUSDT', 'buy',"
        " 'market', 1, 'paper');"
        "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
        " VALUES ('" S_FILL "', '" S_ORDER "', 'paper', 'f-1', 'BTCUSDT', 'buy', 1, 50000, now());"
        "INSERT INTO consumed (grp, msg_id) VALUES ('signal', '" S_MSG "');", &perr);
    cr_assert_eq (rc, 0, "seeding: %s %s", perr.sqlstate, perr.msg);
    return pg;
}

//  Runs sql and expects it to fail with sqlstate, naming the constraint.
static void
s_expect_violation (fks_pg_t *pg, const char *sql, const char *sqlstate, const char *constraint)
{
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, sql, &err), -1, "accepted: %s", sql);
    cr_assert_str_eq (err.sqlstate, sqlstate, "%s: %s", sql, err.msg);
    cr_assert (strstr (err.msg, constraint), "%s: expected %s in: %s", sql, constraint, err.msg);
}

Test (migrate, duplicate_alert_idempotency_key_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO inbox (id, idem_key, source, body, alert) VALUES"
        " ('018f0000-0000-7000-8000-0000000000a1', 'alert-1', 'tradingview', 'x', '{}')",
        "23505", "inbox_idem_key_key");
    fks_pg_destroy (&pg);
}

Test (migrate, second_signal_for_one_alert_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty) VALUES"
        " ('018f0000-0000-7000-8000-0000000000a2', '" S_ALERT "', '" S_ALERT "', 'tradingview',"
        " 'BTCUSDT', 'buy', 'buy', 1)",
        "23505", "signals_inbox_id_key");
    fks_pg_destroy (&pg);
}

Test (migrate, second_order_for_one_signal_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO orders (id, client_order_id, signal_id, symbol, side, type, qty, broker)"
        " VALUES ('018f0000-0000-7000-8000-0000000000a3', 'fks-2', '" S_SIGNAL "', 'BTCUSDT',"
        " 'buy', 'market', 1, 'paper')",
        "23505", "orders_signal_id_key");
    fks_pg_destroy (&pg);
}

Test (migrate, duplicate_client_order_id_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO orders (id, client_order_id, symbol, side, type, qty, broker)"
        " VALUES ('018f0000-0000-7000-8000-0000000000a4', 'fks-1', 'BTCUSDT', 'sell', 'market',"
        " 1, 'paper')",
        "23505", "orders_client_order_id_key");
    fks_pg_destroy (&pg);
}

Test (migrate, duplicate_exchange_fill_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
        " VALUES ('018f0000-0000-7000-8000-0000000000a5', '" S_ORDER "', 'paper', 'f-1',"
        " 'BTCUSDT', 'buy', 1, 50000, now())",
        "23505", "fills_broker_exchange_fill_id_key");
    //  The same exchange fill id from another broker is a different fill.
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg,
        "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
        " VALUES ('018f0000-0000-7000-8000-0000000000a6', '" S_ORDER "', 'binance', 'f-1',"
        " 'BTCUSDT', 'buy', 1, 50000, now())", &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (migrate, duplicate_consumed_message_is_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg, "INSERT INTO consumed (grp, msg_id) VALUES ('signal', '" S_MSG "')",
                        "23505", "consumed_pkey");
    //  Another group consuming the same message is fine.
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "INSERT INTO consumed (grp, msg_id) VALUES"
                                  " ('execution', '" S_MSG "')", &err), 0, "%s", err.msg);
    fks_pg_destroy (&pg);
}

Test (migrate, negative_or_zero_quantities_are_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO orders (id, client_order_id, symbol, side, type, qty, broker)"
        " VALUES ('018f0000-0000-7000-8000-0000000000b1', 'fks-3', 'BTCUSDT', 'buy', 'market',"
        " -1, 'paper')", "23514", "check constraint");
    s_expect_violation (pg,
        "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
        " VALUES ('018f0000-0000-7000-8000-0000000000b2', '" S_ORDER "', 'paper', 'f-9',"
        " 'BTCUSDT', 'buy', 0, 50000, now())", "23514", "fills_qty_check");
    s_expect_violation (pg,
        "UPDATE signals SET qty = -0.5 WHERE id = '" S_SIGNAL "'", "23514", "signals_qty_check");
    fks_pg_destroy (&pg);
}

Test (migrate, unknown_enumeration_values_are_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO orders (id, client_order_id, symbol, side, type, qty, broker)"
        " VALUES ('018f0000-0000-7000-8000-0000000000c1', 'fks-4', 'BTCUSDT', 'long', 'market',"
        " 1, 'paper')", "23514", "orders_side_check");
    s_expect_violation (pg, "UPDATE orders SET type = 'stop' WHERE id = '" S_ORDER "'",
                        "23514", "orders_type_check");
    s_expect_violation (pg, "UPDATE orders SET status = 'done' WHERE id = '" S_ORDER "'",
                        "23514", "orders_status_check");
    s_expect_violation (pg, "UPDATE inbox SET status = 'lost' WHERE id = '" S_ALERT "'",
                        "23514", "inbox_status_check");
    s_expect_violation (pg,
        "INSERT INTO api_keys (id, name, prefix, key_sha256, scopes) VALUES"
        " ('018f0000-0000-7000-8000-0000000000c2', 'ops', 'fks_abcd', sha256('k'),"
        " ARRAY['read', 'root'])", "23514", "api_keys_scopes_check");
    s_expect_violation (pg,
        "INSERT INTO events (id, type, src, ts, envelope) VALUES"
        " ('018f0000-0000-7000-8000-0000000000c3', 'Not A Type', 'test', now(), '\\x00')",
        "23514", "events_type_check");
    fks_pg_destroy (&pg);
}

Test (migrate, inconsistent_orders_and_bars_are_rejected)
{
    fks_pg_t *pg = s_seeded ();
    s_expect_violation (pg,
        "INSERT INTO orders (id, client_order_id, symbol, side, type, qty, broker)"
        " VALUES ('018f0000-0000-7000-8000-0000000000d1', 'fks-5', 'BTCUSDT', 'buy', 'limit',"
        " 1, 'paper')", "23514", "orders_limit_needed_check");
    s_expect_violation (pg, "UPDATE orders SET status = 'filled', filled_qty = 0.5,"
                        " avg_fill_price = 50000 WHERE id = '" S_ORDER "'",
                        "23514", "orders_filled_check");
    s_expect_violation (pg, "UPDATE orders SET filled_qty = 2, avg_fill_price = 50000"
                        " WHERE id = '" S_ORDER "'", "23514", "orders_filled_qty_check");
    s_expect_violation (pg,
        "INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume, source)"
        " VALUES ('BTCUSDT', '1m', now(), 100, 90, 95, 92, 1, 'csv')",
        "23514", "bars_prices_check");
    s_expect_violation (pg,
        "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
        " VALUES ('018f0000-0000-7000-8000-0000000000d2', '018f0000-0000-7000-8000-0000000000ff',"
        " 'paper', 'f-2', 'BTCUSDT', 'buy', 1, 50000, now())", "23503", "fills_order_id_fkey");
    fks_pg_destroy (&pg);
}

Test (migrate, events_get_increasing_seq_and_bars_upsert_on_their_key)
{
    fks_pg_t *pg = s_seeded ();
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg,
        "INSERT INTO events (id, type, corr, src, ts, envelope) VALUES"
        " ('018f0000-0000-7000-8000-0000000000e1', 'webhook.received', '" S_ALERT "', 'gateway',"
        "  now(), '\\x81'),"
        " ('018f0000-0000-7000-8000-0000000000e2', 'signal.created', '" S_ALERT "', 'signal',"
        "  now(), '\\x82')", &err), 0, "%s", err.msg);
    s_expect_scalar (pg, "SELECT string_agg(type, ',' ORDER BY seq) FROM events"
                         " WHERE corr = '" S_ALERT "'", "webhook.received,signal.created");
    s_expect_scalar (pg, "SELECT bool_and(xid IS NOT NULL) FROM events", "t");
    const char *bar =
        "INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume, source)"
        " VALUES ('BTCUSDT', '1m', '2024-01-01T00:00:00Z', 100, 110, 90, %s, 5, 'csv')"
        " ON CONFLICT (symbol, interval, open_time) DO UPDATE SET close = EXCLUDED.close";
    char sql[512];
    snprintf (sql, sizeof sql, bar, "105");
    cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s", err.msg);
    snprintf (sql, sizeof sql, bar, "107");
    cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s", err.msg);
    s_expect_scalar (pg, "SELECT count(*) || ':' || max(close) FROM bars", "1:107");
    fks_pg_destroy (&pg);
}

//  One symbol rule in every table (0004_symbols.sql): TradingView's continuous futures (ES1!)
//  are stored; '!' may not come first.
Test (migrate, continuous_futures_symbols_are_stored_in_every_table)
{
    fks_pg_t *pg = s_seeded ();
    fks_pg_err_t err;
    const char *ok_sql[] = {            //  one statement per table, the symbol as %s
        ("INSERT INTO signals (id, corr, source, symbol, action, side, qty) VALUES"
         " ('018f0000-0000-7000-8000-0000000000f1', '018f0000-0000-7000-8000-0000000000f1',"
         " 'tradingview', '%s', 'buy', 'buy', 1)"),
        ("INSERT INTO orders (id, client_order_id, symbol, side, type, qty, broker) VALUES"
         " ('018f0000-0000-7000-8000-0000000000f2', 'fks-f2', '%s', 'buy', 'market', 1,"
         " 'paper')"),
        ("INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, ts)"
         " VALUES ('018f0000-0000-7000-8000-0000000000f3', '" S_ORDER "', 'paper', 'f-f3',"
         " '%s', 'buy', 1, 5000, now())"),
        "INSERT INTO positions (symbol, qty, avg_price) VALUES ('%s', 2, 5000.25)",
        ("INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume, source)"
         " VALUES ('%s', '1m', '2024-01-01T00:00:00Z', 100, 110, 90, 105, 5, 'csv')"),
    };
    const char *constraint[] = { "signals_symbol_check", "orders_symbol_check",
                                 "fills_symbol_check", "positions_symbol_check",
                                 "bars_symbol_check" };
    const char *good[] = { "ES1!", "1ES!", "CME_MINI:NQ1!" };
    const char *bad[] = { "!ES", "!" };
    char sql[768];
    for (size_t t = 0; t < sizeof ok_sql / sizeof ok_sql[0]; t++) {
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            cr_assert_eq (fks_pg_command (pg, "BEGIN", &err), 0, "%s", err.msg);
            snprintf (sql, sizeof sql, ok_sql[t], good[i]);
            cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s refused: %s", good[i], err.msg);
            cr_assert_eq (fks_pg_command (pg, "ROLLBACK", &err), 0, "%s", err.msg);
        }
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            snprintf (sql, sizeof sql, ok_sql[t], bad[i]);
            s_expect_violation (pg, sql, "23514", constraint[t]);
        }
    }
    //  Stored, it reads back unchanged and the constraints kept their names.
    snprintf (sql, sizeof sql, ok_sql[3], "ES1!");
    cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s", err.msg);
    s_expect_scalar (pg, "SELECT symbol || ' ' || qty FROM positions", "ES1! 2");
    s_expect_scalar (pg, "SELECT count(*) FROM pg_constraint WHERE conname IN"
                         " ('signals_symbol_check', 'orders_symbol_check', 'fills_symbol_check',"
                         "  'positions_symbol_check', 'bars_symbol_check') AND convalidated", "5");
    fks_pg_destroy (&pg);
}

//  0007_cheaper_writes.sql wrote the counted repetitions ({0,31}) as a class and a length test:
//  every rewritten rule still takes its longest value and refuses one character more and a
//  bad first character, naming the same constraint.
Test (migrate, rewritten_text_checks_keep_their_bounds_and_names)
{
    fks_pg_t *pg = s_seeded ();
    fks_pg_err_t err;
    cr_assert_eq (fks_pg_command (pg, "INSERT INTO positions (symbol, qty) VALUES ('BTCUSDT', 1)",
                                  &err), 0, "%s", err.msg);
    static const struct {
        const char *sql;            /* an UPDATE of a seeded row, the value as %s */
        const char *constraint;
        char first;                 /* a valid first character, repeated */
        int max;                    /* the longest value allowed */
        const char *bad;            /* refused whatever the length */
    } c[] = {
        { "UPDATE inbox SET source = '%s'", "inbox_source_check", 'a', 32, "_a" },
        { "UPDATE consumed SET grp = '%s'", "consumed_grp_check", 'a', 32, "1a" },
        { "UPDATE signals SET source = '%s'", "signals_source_check", 'a', 64, "A" },
        { "UPDATE signals SET symbol = '%s'", "signals_symbol_check", 'A', 32, "-A" },
        { "UPDATE orders SET client_order_id = '%s'", "orders_client_order_id_check", '1', 36,
          "a b" },
        { "UPDATE orders SET symbol = '%s'", "orders_symbol_check", '9', 32, "!ES" },
        { "UPDATE orders SET broker = '%s'", "orders_broker_check", 'p', 32, "Paper" },
        { "UPDATE fills SET broker = '%s'", "fills_broker_check", 'p', 32, "pa-per" },
        { "UPDATE fills SET symbol = '%s'", "fills_symbol_check", 'E', 32, "" },
        { "UPDATE positions SET symbol = '%s'", "positions_symbol_check", 'E', 32, "B TC" },
    };
    char value[80], sql[256];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        memset (value, c[i].first, (size_t) c[i].max);
        value[c[i].max] = '\0';
        snprintf (sql, sizeof sql, c[i].sql, value);
        cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s refused: %s", sql, err.msg);
        value[c[i].max] = c[i].first;
        value[c[i].max + 1] = '\0';
        snprintf (sql, sizeof sql, c[i].sql, value);
        s_expect_violation (pg, sql, "23514", c[i].constraint);
        snprintf (sql, sizeof sql, c[i].sql, c[i].bad);
        s_expect_violation (pg, sql, "23514", c[i].constraint);
    }
    //  The bars' interval: 1-4 digits, not starting with 0, then a unit.
    const char *bar = "INSERT INTO bars (symbol, interval, open_time, open, high, low, close,"
                      " volume, source) VALUES ('BTCUSDT', '%s', now(), 1, 1, 1, 1, 1, 'csv')";
    snprintf (sql, sizeof sql, bar, "9999M");
    cr_assert_eq (fks_pg_command (pg, sql, &err), 0, "%s refused: %s", sql, err.msg);
    const char *bad_intervals[] = { "10000s", "0m", "1y", "m", "15mm" };
    for (size_t i = 0; i < sizeof bad_intervals / sizeof bad_intervals[0]; i++) {
        snprintf (sql, sizeof sql, bar, bad_intervals[i]);
        s_expect_violation (pg, sql, "23514", "bars_interval_check");
    }
    //  No check of a table the pipeline writes keeps a counted repetition (the runner's own
    //  schema_migrations, written once per migration, may).
    s_expect_scalar (pg, "SELECT count(*) FROM pg_constraint WHERE contype = 'c'"
                         " AND conrelid <> 'schema_migrations'::regclass"
                         " AND pg_get_constraintdef (oid) ~ '[~].*[{][0-9]'", "0");
    fks_pg_destroy (&pg);
}

Test (migrate, events_comments_describe_the_xid_seq_stream_order)
{
    fks_pg_t *pg = s_seeded ();
    char *seq = s_scalar (pg, "SELECT col_description ('events'::regclass,"
                              " (SELECT attnum FROM pg_attribute WHERE attrelid = 'events'::regclass"
                              "  AND attname = 'seq'))");
    cr_assert (strstr (seq, "(xid, seq) order"), "events.seq: %s", seq);
    cr_assert (strstr (seq, "resume after the (xid, seq)"), "events.seq: %s", seq);
    free (seq);
    char *table = s_scalar (pg, "SELECT obj_description ('events'::regclass, 'pg_class')");
    cr_assert (strstr (table, "(xid, seq) order"), "events: %s", table);
    cr_assert_null (strstr (table, "is a seq)"), "events: %s", table);
    free (table);
    fks_pg_destroy (&pg);
}
