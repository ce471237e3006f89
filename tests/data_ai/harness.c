/*  harness.c - what the data and ai worker tests share (see harness.h).
 *
 *  Programs are started with fork + execve and an environment built before the fork; their
 *  output goes to log files under /tmp that failure messages name. Each test process keeps a
 *  list of what it started and of the databases it made, and dai_cleanup undoes all of it.
 */
#include "harness.h"
#include "tests/lib/ports.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FKS_BUILD_ROOT
#   error "FKS_BUILD_ROOT must be defined by tests/data_ai/meson.build"
#endif
#ifndef FKS_SOURCE_ROOT
#   error "FKS_SOURCE_ROOT must be defined by tests/data_ai/meson.build"
#endif

extern char **environ;

#define S_MAX_PIDS 16
#define S_MAX_DBS  8

static pid_t s_pids[S_MAX_PIDS];
static int s_npids;
static char s_dbs[S_MAX_DBS][64];
static int s_ndbs;
static char s_db_url[1024];
static PGconn *s_conn;
static pid_t s_fake_pid;
static char s_fake_url[64];
static char s_bus_url[64];
static char s_bus_stream_url[64];

const char *
dai_source (const char *rel)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf (buf[k], sizeof buf[k], "%s/%s", FKS_SOURCE_ROOT, rel);
    return buf[k];
}

const char *
dai_build (const char *rel)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf (buf[k], sizeof buf[k], "%s/%s", FKS_BUILD_ROOT, rel);
    return buf[k];
}

int
dai_free_port (void)
{
    int port = fks_test_free_port ();
    cr_assert_gt (port, 0, "no free loopback port for a program");
    return port;
}

//  --------------------------------------------------------------------------
//  HTTP

typedef struct {
    char *data;
    size_t len;
} s_body_t;

static size_t
s_collect (char *ptr, size_t size, size_t n, void *arg)
{
    s_body_t *b = arg;
    size_t add = size * n;
    char *p = realloc (b->data, b->len + add + 1);
    if (!p)
        return 0;
    memcpy (p + b->len, ptr, add);
    b->data = p;
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

long
dai_http (const char *method, const char *url, const char *body, char **out)
{
    CURL *c = curl_easy_init ();
    if (!c)
        return -1;
    s_body_t b = { NULL, 0 };
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (c, CURLOPT_WRITEDATA, &b);
    struct curl_slist *h = NULL;
    if (body) {
        h = curl_slist_append (h, "Content-Type: application/json");
        curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt (c, CURLOPT_POSTFIELDS, body);
    }
    long status = -1;
    if (curl_easy_perform (c) == CURLE_OK)
        curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (h);
    curl_easy_cleanup (c);
    if (out)
        *out = b.data ? b.data : strdup ("");
    else
        free (b.data);
    return status;
}

//  --------------------------------------------------------------------------
//  Processes

typedef struct {
    char *v[256];
    int n;
} s_env_t;

static void
s_env_set (s_env_t *e, const char *kv)
{
    size_t klen = strcspn (kv, "=");
    for (int i = 0; i < e->n; i++)
        if (strncmp (e->v[i], kv, klen) == 0 && e->v[i][klen] == '=') {
            free (e->v[i]);
            e->v[i] = strdup (kv);
            return;
        }
    if (e->n < 255)
        e->v[e->n++] = strdup (kv);
    e->v[e->n] = NULL;
}

static void
s_env_init (s_env_t *e)
{
    e->n = 0;
    e->v[0] = NULL;
    for (char **p = environ; *p; p++)
        if (strncmp (*p, "FKS_", 4) != 0 || strncmp (*p, "FKS_TEST_", 9) == 0)
            s_env_set (e, *p);
}

static void
s_env_free (s_env_t *e)
{
    for (int i = 0; i < e->n; i++)
        free (e->v[i]);
    e->n = 0;
}

static pid_t
s_spawn (const char *path, char *const argv[], char *const envp[], const char *log_path,
         int out_pipe)
{
    int fd = log_path ? open (log_path, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
    pid_t pid = fork ();
    if (pid == 0) {
        if (out_pipe >= 0)
            dup2 (out_pipe, 1);
        else if (fd >= 0)
            dup2 (fd, 1);
        if (fd >= 0)
            dup2 (fd, 2);
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, 0);
        execve (path, argv, envp);
        _exit (127);
    }
    if (fd >= 0)
        close (fd);
    return pid;
}

static void
s_track (pid_t pid)
{
    if (pid > 0 && s_npids < S_MAX_PIDS)
        s_pids[s_npids++] = pid;
}

int
dai_stop (pid_t pid)
{
    if (pid <= 0)
        return -1;
    for (int i = 0; i < s_npids; i++)
        if (s_pids[i] == pid)
            s_pids[i] = 0;
    kill (pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid (pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
        if (r < 0)
            return -1;
        usleep (10000);
    }
    kill (pid, SIGKILL);
    waitpid (pid, &status, 0);
    return -1;
}

int
dai_wait_exit (pid_t pid, int timeout_ms)
{
    int status = 0;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid (pid, &status, WNOHANG) == pid) {
            for (int i = 0; i < s_npids; i++)
                if (s_pids[i] == pid)
                    s_pids[i] = 0;
            return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
        }
        usleep (20000);
    }
    dai_stop (pid);
    return -1;
}

char *
dai_slurp (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return strdup ("");
    fseek (f, 0, SEEK_END);
    long n = ftell (f);
    fseek (f, 0, SEEK_SET);
    char *buf = malloc ((size_t) (n > 0 ? n : 0) + 1);
    size_t got = n > 0 ? fread (buf, 1, (size_t) n, f) : 0;
    buf[got] = '\0';
    fclose (f);
    return buf;
}

pid_t
dai_start (const char *program, const char *const *env, int port, const char *log_path)
{
    s_env_t e;
    s_env_init (&e);
    s_env_set (&e, "FKS_ENV=test");
    s_env_set (&e, "FKS_LOG_LEVEL=debug");
    //  The bus's reconciler, and the workers' bound on waiting for what it may publish again
    //  (as the ConfigMap gives both under Kubernetes).
    s_env_set (&e, "FKS_BUS_RECONCILE_INTERVAL=1s");
    s_env_set (&e, "FKS_BUS_RECONCILE_AFTER=2s");
    for (const char *const *p = env; p && *p; p++)
        s_env_set (&e, *p);
    const char *path = program[0] == '/' ? program : dai_build (program);
    char *argv[] = { (char *) path, NULL };
    unlink (log_path);
    pid_t pid = s_spawn (path, argv, e.v, log_path, -1);
    s_env_free (&e);
    cr_assert_gt (pid, 0, "fork failed");
    s_track (pid);
    if (port > 0) {
        char url[64];
        snprintf (url, sizeof url, "http://127.0.0.1:%d/health", port);
        for (int waited = 0; waited < 20000; waited += 50) {
            if (dai_http ("GET", url, NULL, NULL) == 200)
                return pid;
            int status;
            if (waitpid (pid, &status, WNOHANG) == pid)
                cr_assert_fail ("%s exited with status %d before answering /health; log: %s",
                                program, WIFEXITED (status) ? WEXITSTATUS (status) : -1,
                                log_path);
            usleep (50000);
        }
        cr_assert_fail ("%s did not answer %s within 20 s; log: %s", program, url, log_path);
    }
    return pid;
}

//  --------------------------------------------------------------------------
//  The fake market-data server

const char *
dai_fake_market (bool rebase)
{
    if (s_fake_pid > 0)
        return s_fake_url;
    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    char *argv[] = { "/usr/bin/python3", (char *) dai_source ("tests/data_ai/fake_market.py"),
                     (char *) dai_source ("tests/data_ai/fixtures"),
                     rebase ? "--rebase" : NULL, NULL };
    s_fake_pid = s_spawn ("/usr/bin/python3", argv, environ, "/tmp/fks-fake-market.log", fds[1]);
    close (fds[1]);
    cr_assert_gt (s_fake_pid, 0);
    s_track (s_fake_pid);
    FILE *f = fdopen (fds[0], "r");
    char line[64] = "";
    int port = 0;
    cr_assert (f && fgets (line, sizeof line, f) && sscanf (line, "PORT %d", &port) == 1,
               "the fake market server did not start (see /tmp/fks-fake-market.log)");
    fclose (f);
    snprintf (s_fake_url, sizeof s_fake_url, "http://127.0.0.1:%d", port);
    return s_fake_url;
}

void
dai_fake_script (const char *json)
{
    char url[128];
    snprintf (url, sizeof url, "%s/_script", s_fake_url);
    cr_assert_eq (dai_http ("POST", url, json, NULL), 200, "scripting the fake server");
}

char *
dai_fake_requests (void)
{
    char url[128], *body = NULL;
    snprintf (url, sizeof url, "%s/_requests", s_fake_url);
    cr_assert_eq (dai_http ("GET", url, NULL, &body), 200);
    return body;
}

//  --------------------------------------------------------------------------
//  PostgreSQL and Redis

void
dai_need_services (void)
{
    const char *pg = getenv ("FKS_TEST_PG_URL"), *redis = getenv ("FKS_TEST_REDIS_URL");
    cr_assert (pg && *pg && redis && *redis,
               "FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are not set: this integration test "
               "needs PostgreSQL and Redis; run it through tools/test.sh, which starts them");
}

const char *
dai_redis_url (void)
{
    return getenv ("FKS_TEST_REDIS_URL");
}

static void
s_admin (const char *sql)
{
    PGconn *c = PQconnectdb (getenv ("FKS_TEST_PG_URL"));
    cr_assert_eq (PQstatus (c), CONNECTION_OK, "FKS_TEST_PG_URL: %s", PQerrorMessage (c));
    PGresult *r = PQexec (c, sql);
    cr_assert_eq (PQresultStatus (r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage (c));
    PQclear (r);
    PQfinish (c);
}

//  The conninfo of db on the FKS_TEST_PG_URL server.
static void
s_conninfo (const char *db, char *out, size_t cap)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse (getenv ("FKS_TEST_PG_URL"), &errmsg);
    cr_assert (opts, "FKS_TEST_PG_URL does not parse: %s", errmsg ? errmsg : "");
    size_t n = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *val = strcmp (o->keyword, "dbname") == 0 ? db : o->val;
        if (!val || !*val)
            continue;
        n += (size_t) snprintf (out + n, cap - n, "%s%s='", n ? " " : "", o->keyword);
        for (const char *p = val; *p && n + 3 < cap; p++) {
            if (*p == '\'' || *p == '\\')
                out[n++] = '\\';
            out[n++] = *p;
        }
        n += (size_t) snprintf (out + n, cap - n, "'");
    }
    PQconninfoFree (opts);
    if (!strstr (out, "dbname="))
        snprintf (out + n, cap - n, " dbname='%s'", db);
}

const char *
dai_db (void)
{
    dai_need_services ();
    cr_assert_lt (s_ndbs, S_MAX_DBS);
    char *name = s_dbs[s_ndbs];
    snprintf (name, 64, "fks_dai_%d_%ld_%d", (int) getpid (), (long) time (NULL), s_ndbs);
    char sql[160];
    snprintf (sql, sizeof sql, "CREATE DATABASE %.63s", name);
    s_admin (sql);
    s_ndbs++;
    s_conninfo (name, s_db_url, sizeof s_db_url);
    //  fks migrate, as an operator would run it.
    char env_url[1100];
    snprintf (env_url, sizeof env_url, "FKS_PG_URL=%s", s_db_url);
    s_env_t e;
    s_env_init (&e);
    s_env_set (&e, env_url);
    char *argv[] = { (char *) dai_build ("tools/fks"), "migrate", NULL };
    char log[96];       //  one per database: suites and builds run at once
    snprintf (log, sizeof log, "/tmp/%s-migrate.log", name);
    pid_t pid = s_spawn (argv[0], argv, e.v, log, -1);
    s_env_free (&e);
    int status = 0;
    waitpid (pid, &status, 0);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "fks migrate failed (see %s)",
               log);
    unlink (log);
    if (s_conn)
        PQfinish (s_conn);
    s_conn = PQconnectdb (s_db_url);
    cr_assert_eq (PQstatus (s_conn), CONNECTION_OK, "%s", PQerrorMessage (s_conn));
    return s_db_url;
}

PGconn *
dai_pg (void)
{
    cr_assert (s_conn, "dai_db first");
    return s_conn;
}

static PGresult *
s_query (const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams (dai_pg (), sql, n, NULL, params, NULL, NULL, 0);
    cr_assert (PQresultStatus (r) == PGRES_TUPLES_OK || PQresultStatus (r) == PGRES_COMMAND_OK,
               "%s: %s", sql, PQerrorMessage (dai_pg ()));
    return r;
}

long
dai_sql_long (const char *sql, int n, const char *const *params)
{
    PGresult *r = s_query (sql, n, params);
    long v = PQntuples (r) > 0 && !PQgetisnull (r, 0, 0) ? strtol (PQgetvalue (r, 0, 0), NULL, 10)
                                                       : -1;
    PQclear (r);
    return v;
}

double
dai_sql_double (const char *sql, int n, const char *const *params)
{
    PGresult *r = s_query (sql, n, params);
    double v = PQntuples (r) > 0 && !PQgetisnull (r, 0, 0) ? strtod (PQgetvalue (r, 0, 0), NULL)
                                                         : NAN;
    PQclear (r);
    return v;
}

void
dai_sql_exec (const char *sql)
{
    PQclear (s_query (sql, 0, NULL));
}

long
dai_wait_count (const char *sql, long want, int timeout_ms)
{
    long v = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        v = dai_sql_long (sql, 0, NULL);
        if (v >= want)
            return v;
        usleep (100000);
    }
    return v;
}

char *
dai_redis (const char *fmt, ...)
{
    const char *url = dai_redis_url ();
    cr_assert (url);
    char host[64] = "127.0.0.1";
    int port = 6379, db = 0;
    cr_assert (sscanf (url, "redis://%63[^:/]:%d/%d", host, &port, &db) >= 2,
               "FKS_TEST_REDIS_URL: expected redis://host:port/db");
    redisContext *c = redisConnect (host, port);
    cr_assert (c && !c->err, "Redis at %s:%d", host, port);
    redisReply *sel = redisCommand (c, "SELECT %d", db);
    freeReplyObject (sel);
    va_list ap;
    va_start (ap, fmt);
    redisReply *r = redisvCommand (c, fmt, ap);
    va_end (ap);
    cr_assert (r, "Redis command failed");
    char *out = NULL;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        out = strndup (r->str, r->len);
    else if (r->type == REDIS_REPLY_INTEGER) {
        out = malloc (32);
        snprintf (out, 32, "%lld", r->integer);
    }
    freeReplyObject (r);
    redisFree (c);
    return out;
}

//  --------------------------------------------------------------------------
//  Programs

double
dai_metric (int port, const char *series)
{
    char url[64], *body = NULL;
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    if (dai_http ("GET", url, NULL, &body) != 200) {
        free (body);
        return -1;
    }
    double v = -1;
    size_t n = strlen (series);
    for (char *line = body; line && *line;) {
        char *nl = strchr (line, '\n');
        if (strncmp (line, series, n) == 0 && line[n] == ' ') {
            v = strtod (line + n + 1, NULL);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    free (body);
    return v;
}

const char *
dai_start_bus (void)
{
    int port = dai_free_port (), http = dai_free_port (), stream = dai_free_port ();
    char e[4][1100];
    snprintf (e[0], sizeof e[0], "FKS_PG_URL=%s", s_db_url);
    snprintf (e[1], sizeof e[1], "FKS_BUS_BIND=tcp://127.0.0.1:%d", port);
    snprintf (e[2], sizeof e[2], "FKS_BUS_STREAM_BIND=tcp://127.0.0.1:%d", stream);
    snprintf (e[3], sizeof e[3], "FKS_BUS_PORT=%d", http);
    const char *env[] = { e[0], e[1], e[2], e[3], NULL };
    char log[64];
    snprintf (log, sizeof log, "/tmp/fks-dai-bus-%d.log", (int) getpid ());
    dai_start ("bus/fks-bus", env, http, log);
    snprintf (s_bus_url, sizeof s_bus_url, "tcp://127.0.0.1:%d", port);
    snprintf (s_bus_stream_url, sizeof s_bus_stream_url, "tcp://127.0.0.1:%d", stream);
    return s_bus_url;
}

const char *
dai_bus_stream_url (void)
{
    return s_bus_stream_url;
}

void
dai_cleanup (void)
{
    for (int i = s_npids - 1; i >= 0; i--)
        if (s_pids[i] > 0)
            dai_stop (s_pids[i]);
    s_npids = 0;
    s_fake_pid = 0;
    if (s_conn) {
        PQfinish (s_conn);
        s_conn = NULL;
    }
    for (int i = 0; i < s_ndbs; i++) {
        char sql[160];
        snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %.63s WITH (FORCE)", s_dbs[i]);
        PGconn *c = PQconnectdb (getenv ("FKS_TEST_PG_URL"));
        if (PQstatus (c) == CONNECTION_OK)
            PQclear (PQexec (c, sql));
        PQfinish (c);
    }
    s_ndbs = 0;
}
