/*  harness.c - what the gateway's integration tests share (see harness.h).
 *
 *  Programs are started with fork + execve and an environment built before the fork (the
 *  runner may have threads, so nothing but async-signal-safe calls happen in the child).
 *  Their output goes to log files under /tmp, named in every failure message that needs them.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FKS_BUILD_ROOT
#   error "FKS_BUILD_ROOT must be defined by tests/gateway_it/meson.build"
#endif
#ifndef FKS_SOURCE_ROOT
#   error "FKS_SOURCE_ROOT must be defined by tests/gateway_it/meson.build"
#endif

extern char **environ;

//  Runner-side state (PRE_ALL to POST_ALL run in the same process).
static struct {
    char admin_url[512];
    char db_name[80];
    pid_t gateway, bus;
    char name[32];
} s_run;

static void
s_fail_setup (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static void
s_fail_setup (const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    fprintf (stderr, "gateway_it setup: %s\n", msg);
    if (!getenv ("FKS_IT_ERROR"))
        setenv ("FKS_IT_ERROR", msg, 1);
}

//  An environment: the current one minus FKS_* (except FKS_TEST_*), plus extra (later wins).
typedef struct {
    char *v[512];
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
    if (e->n < 511)
        e->v[e->n++] = strdup (kv);
    e->v[e->n] = NULL;
}

static void
s_env_init (s_env_t *e)
{
    e->n = 0;
    for (char **p = environ; *p; p++)
        if (strncmp (*p, "FKS_", 4) != 0 || strncmp (*p, "FKS_TEST_", 9) == 0)
            s_env_set (e, *p);
    e->v[e->n] = NULL;
}

static void
s_env_setf (s_env_t *e, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_env_setf (s_env_t *e, const char *fmt, ...)
{
    char kv[2048];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (kv, sizeof kv, fmt, ap);
    va_end (ap);
    s_env_set (e, kv);
}

static void
s_env_free (s_env_t *e)
{
    for (int i = 0; i < e->n; i++)
        free (e->v[i]);
    e->n = 0;
}

static pid_t
s_spawn (const char *path, char *const argv[], s_env_t *env, const char *log_path)
{
    int fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return -1;
    pid_t pid = fork ();
    if (pid == 0) {
        dup2 (fd, 1);
        dup2 (fd, 2);
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, 0);
        execve (path, argv, env->v);
        _exit (127);
    }
    close (fd);
    return pid;
}

int
it_stop_pid (pid_t pid)
{
    if (pid <= 0)
        return -1;
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

//  Waits until url answers 200, or the process dies, or timeout. 0 or -1.
static int
s_wait_http (const char *url, pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        it_resp_t r;
        if (it_http ("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200) {
            it_resp_free (&r);
            return 0;
        }
        it_resp_free (&r);
        if (pid > 0 && waitpid (pid, NULL, WNOHANG) == pid)
            return -1;
        usleep (50000);
    }
    return -1;
}

//  A key=value conninfo for the admin URL's server and database db.
static int
s_db_conninfo (const char *admin_url, const char *db, char *out, size_t cap)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse (admin_url, &errmsg);
    if (!opts) {
        PQfreemem (errmsg);
        return -1;
    }
    size_t n = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *val = strcmp (o->keyword, "dbname") == 0 ? db : o->val;
        if (!val || !*val)
            continue;
        n += (size_t) snprintf (out + n, n < cap ? cap - n : 0, "%s%s='", n ? " " : "",
                                o->keyword);
        for (const char *p = val; *p && n + 3 < cap; p++) {
            if (*p == '\'' || *p == '\\')
                out[n++] = '\\';
            out[n++] = *p;
        }
        if (n + 2 < cap) {
            out[n++] = '\'';
            out[n] = '\0';
        }
    }
    PQconninfoFree (opts);
    if (!strstr (out, "dbname="))
        n += (size_t) snprintf (out + n, n < cap ? cap - n : 0, " dbname='%s'", db);
    return n < cap ? 0 : -1;
}

static int
s_admin_exec (const char *sql)
{
    PGconn *c = PQconnectdb (s_run.admin_url);
    if (PQstatus (c) != CONNECTION_OK) {
        s_fail_setup ("cannot connect to FKS_TEST_PG_URL: %s", PQerrorMessage (c));
        PQfinish (c);
        return -1;
    }
    PGresult *r = PQexec (c, sql);
    int ok = PQresultStatus (r) == PGRES_COMMAND_OK;
    if (!ok)
        s_fail_setup ("%s: %s", sql, PQerrorMessage (c));
    PQclear (r);
    PQfinish (c);
    return ok ? 0 : -1;
}

pid_t
it_start_gateway (const it_ctx_t *ctx, const char *const *extra_env, int *port,
                  const char *log_path)
{
    *port = fks_test_free_port ();
    if (*port < 0)
        return -1;
    s_env_t env;
    s_env_init (&env);
    s_env_setf (&env, "FKS_ENV=it");
    s_env_setf (&env, "FKS_LOG_LEVEL=debug");
    s_env_setf (&env, "FKS_PG_URL=%s", ctx->db_url);
    s_env_setf (&env, "FKS_REDIS_URL=%s", ctx->redis_url);
    s_env_setf (&env, "FKS_BUS_URL=tcp://127.0.0.1:%d", ctx->bus_port);
    s_env_setf (&env, "FKS_BUS_STREAM_URL=tcp://127.0.0.1:%d", ctx->bus_stream_port);
    s_env_setf (&env, "FKS_WEBHOOK_SECRET=%s", IT_SECRET);
    s_env_setf (&env, "FKS_ADMIN_KEY=%s", IT_ADMIN_KEY);
    s_env_setf (&env, "FKS_HTTP_BIND=127.0.0.1");
    s_env_setf (&env, "FKS_GATEWAY_PORT=%d", *port);
    s_env_setf (&env, "FKS_GATEWAY_TRUSTED_PROXIES=127.0.0.1");
    s_env_setf (&env, "FKS_GATEWAY_ALLOWLIST=127.0.0.1, 10.0.0.0/8");
    s_env_setf (&env, "FKS_GATEWAY_THREADS=32");
    //  Sanitizer builds and parallel suites make commits slow: tests wait longer than users.
    s_env_setf (&env, "FKS_GATEWAY_COMMIT_TIMEOUT=5s");
    for (const char *const *p = extra_env; p && *p; p++)
        s_env_set (&env, *p);
    char path[512];
    snprintf (path, sizeof path, "%s/gateway/fks-gateway", FKS_BUILD_ROOT);
    char *argv[] = { path, NULL };
    pid_t pid = s_spawn (path, argv, &env, log_path);
    s_env_free (&env);
    if (pid < 0)
        return -1;
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/health", *port);
    if (s_wait_http (url, pid, 15000) != 0) {
        it_stop_pid (pid);
        return -1;
    }
    //  Noted for it_teardown: a test whose assertion fails never reaches its it_stop_pid.
    const char *pids = getenv ("FKS_IT_PIDS");
    FILE *f = pids ? fopen (pids, "a") : NULL;
    if (f) {
        fprintf (f, "%d\n", (int) pid);
        fclose (f);
    }
    return pid;
}

//  Stops the extra gateways tests left running (their test failed before stopping them). They
//  are not the runner's children: signals only, and only to a process that is a fks-gateway.
static void
s_stop_extras (void)
{
    const char *pids = getenv ("FKS_IT_PIDS");
    FILE *f = pids ? fopen (pids, "r") : NULL;
    if (!f)
        return;
    int pid;
    for (int n = 0; n < 1000 && fscanf (f, "%d", &pid) == 1; n++) {
        char path[64], cmd[512] = "";
        snprintf (path, sizeof path, "/proc/%d/cmdline", pid);
        FILE *c = fopen (path, "r");
        if (!c)
            continue;                   /* stopped by its test, as it should be */
        size_t got = fread (cmd, 1, sizeof cmd - 1, c);
        fclose (c);
        cmd[got] = '\0';
        if (strstr (cmd, "fks-gateway")) {
            fprintf (stderr, "gateway_it: stopping fks-gateway %d, left running by a test\n", pid);
            kill (pid, SIGKILL);
        }
    }
    fclose (f);
    unlink (pids);
}

void
it_setup (const char *name, bool with_bus, const char *const *extra_env)
{
    curl_global_init (CURL_GLOBAL_ALL);
    snprintf (s_run.name, sizeof s_run.name, "%s", name);
    const char *pg = getenv ("FKS_TEST_PG_URL");
    const char *redis = getenv ("FKS_TEST_REDIS_URL");
    if (!pg || !*pg || !redis || !*redis) {
        s_fail_setup ("FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are not set: run the "
                      "integration tests with tools/test.sh, which starts PostgreSQL and Redis");
        return;
    }
    snprintf (s_run.admin_url, sizeof s_run.admin_url, "%s", pg);
    snprintf (s_run.db_name, sizeof s_run.db_name, "fks_it_%s_%d", name, (int) getpid ());
    char sql[256];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s", s_run.db_name);
    if (s_admin_exec (sql) != 0)
        return;
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", s_run.db_name);
    if (s_admin_exec (sql) != 0)
        return;
    it_ctx_t ctx;
    memset (&ctx, 0, sizeof ctx);
    if (s_db_conninfo (pg, s_run.db_name, ctx.db_url, sizeof ctx.db_url) != 0) {
        s_fail_setup ("FKS_TEST_PG_URL does not parse");
        return;
    }
    snprintf (ctx.redis_url, sizeof ctx.redis_url, "%s", redis);
    snprintf (ctx.log_path, sizeof ctx.log_path, "/tmp/fks-it-%s-%d-gateway.log", name,
              (int) getpid ());
    char migrate_log[256], bus_log[256];
    snprintf (migrate_log, sizeof migrate_log, "/tmp/fks-it-%s-%d-migrate.log", name,
              (int) getpid ());
    snprintf (bus_log, sizeof bus_log, "/tmp/fks-it-%s-%d-bus.log", name, (int) getpid ());
    unlink (ctx.log_path);

    //  The schema, with the real migration command.
    s_env_t env;
    s_env_init (&env);
    s_env_setf (&env, "FKS_PG_URL=%s", ctx.db_url);
    s_env_setf (&env, "FKS_MIGRATIONS_DIR=%s/schemas/migrations", FKS_SOURCE_ROOT);
    char fks[512];
    snprintf (fks, sizeof fks, "%s/tools/fks", FKS_BUILD_ROOT);
    char *margv[] = { fks, "migrate", NULL };
    pid_t mpid = s_spawn (fks, margv, &env, migrate_log);
    int status = -1;
    if (mpid > 0)
        waitpid (mpid, &status, 0);
    s_env_free (&env);
    if (mpid < 0 || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        s_fail_setup ("`fks migrate` failed (log: %s)", migrate_log);
        return;
    }

    ctx.bus_port = fks_test_free_port ();
    ctx.bus_stream_port = fks_test_free_port ();
    int http = fks_test_free_port ();
    if (ctx.bus_port < 0 || ctx.bus_stream_port < 0 || http < 0) {
        s_fail_setup ("no free loopback ports for fks-bus");
        return;
    }
    if (with_bus) {
        s_env_init (&env);
        s_env_setf (&env, "FKS_PG_URL=%s", ctx.db_url);
        s_env_setf (&env, "FKS_BUS_BIND=tcp://127.0.0.1:%d", ctx.bus_port);
        s_env_setf (&env, "FKS_BUS_STREAM_BIND=tcp://127.0.0.1:%d", ctx.bus_stream_port);
        s_env_setf (&env, "FKS_BUS_PORT=%d", http);
        s_env_setf (&env, "FKS_HTTP_BIND=127.0.0.1");
        char bus[512];
        snprintf (bus, sizeof bus, "%s/bus/fks-bus", FKS_BUILD_ROOT);
        char *bargv[] = { bus, NULL };
        s_run.bus = s_spawn (bus, bargv, &env, bus_log);
        s_env_free (&env);
        char url[128];
        snprintf (url, sizeof url, "http://127.0.0.1:%d/health", http);
        if (s_run.bus < 0 || s_wait_http (url, s_run.bus, 15000) != 0) {
            s_fail_setup ("fks-bus did not start (log: %s)", bus_log);
            return;
        }
    }
    s_run.gateway = it_start_gateway (&ctx, extra_env, &ctx.port, ctx.log_path);
    if (s_run.gateway < 0) {
        s_fail_setup ("fks-gateway did not answer /health (log: %s)", ctx.log_path);
        return;
    }
    snprintf (ctx.base, sizeof ctx.base, "http://127.0.0.1:%d", ctx.port);
    char num[16];
    setenv ("FKS_IT_DB_URL", ctx.db_url, 1);
    setenv ("FKS_IT_REDIS_URL", ctx.redis_url, 1);
    setenv ("FKS_IT_LOG", ctx.log_path, 1);
    char pids[256];
    snprintf (pids, sizeof pids, "/tmp/fks-it-%s-%d-extra.pids", name, (int) getpid ());
    unlink (pids);
    setenv ("FKS_IT_PIDS", pids, 1);
    snprintf (num, sizeof num, "%d", ctx.port);
    setenv ("FKS_IT_PORT", num, 1);
    snprintf (num, sizeof num, "%d", ctx.bus_port);
    setenv ("FKS_IT_BUS_PORT", num, 1);
    snprintf (num, sizeof num, "%d", ctx.bus_stream_port);
    setenv ("FKS_IT_BUS_STREAM_PORT", num, 1);
}

void
it_teardown (bool keep_logs)
{
    s_stop_extras ();
    if (s_run.gateway > 0) {
        int rc = it_stop_pid (s_run.gateway);
        if (rc != 0)
            fprintf (stderr, "gateway_it: fks-gateway did not stop cleanly (status %d, log %s)\n",
                     rc, getenv ("FKS_IT_LOG") ? getenv ("FKS_IT_LOG") : "?");
    }
    if (s_run.bus > 0)
        it_stop_pid (s_run.bus);
    if (s_run.db_name[0]) {
        char sql[256];
        snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s_run.db_name);
        s_admin_exec (sql);
    }
    const char *kinds[] = { "gateway", "bus", "migrate" };
    for (size_t i = 0; i < 3 && s_run.name[0]; i++) {
        char path[256];
        snprintf (path, sizeof path, "/tmp/fks-it-%s-%d-%s.log", s_run.name, (int) getpid (),
                  kinds[i]);
        if (keep_logs)
            fprintf (stderr, "gateway_it: log kept: %s\n", path);
        else
            unlink (path);
    }
    curl_global_cleanup ();
}

const it_ctx_t *
it_ctx (void)
{
    static it_ctx_t ctx;
    const char *err = getenv ("FKS_IT_ERROR");
    if (err)
        cr_assert_fail ("%s", err);
    const char *port = getenv ("FKS_IT_PORT");
    cr_assert_not_null (port, "the gateway was not started (no FKS_IT_PORT)");
    memset (&ctx, 0, sizeof ctx);
    snprintf (ctx.db_url, sizeof ctx.db_url, "%s", getenv ("FKS_IT_DB_URL"));
    snprintf (ctx.redis_url, sizeof ctx.redis_url, "%s", getenv ("FKS_IT_REDIS_URL"));
    snprintf (ctx.log_path, sizeof ctx.log_path, "%s", getenv ("FKS_IT_LOG"));
    ctx.port = atoi (port);
    ctx.bus_port = atoi (getenv ("FKS_IT_BUS_PORT"));
    ctx.bus_stream_port = atoi (getenv ("FKS_IT_BUS_STREAM_PORT"));
    snprintf (ctx.base, sizeof ctx.base, "http://127.0.0.1:%d", ctx.port);
    static bool curl_ready;
    if (!curl_ready) {
        curl_global_init (CURL_GLOBAL_ALL);
        curl_ready = true;
    }
    return &ctx;
}

// ---------------------------------------------------------------------------------------------
//  HTTP

static size_t
s_on_body (char *data, size_t size, size_t n, void *arg)
{
    it_resp_t *r = arg;
    size_t add = size * n;
    char *b = realloc (r->body, r->len + add + 1);
    if (!b)
        return 0;
    memcpy (b + r->len, data, add);
    r->body = b;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t
s_on_header (char *data, size_t size, size_t n, void *arg)
{
    it_resp_t *r = arg;
    size_t add = size * n;
    size_t have = strlen (r->headers);
    if (have + add + 1 < sizeof r->headers) {
        memcpy (r->headers + have, data, add);
        r->headers[have + add] = '\0';
    }
    return add;
}

int
it_http (const char *method, const char *url, const char *const *headers, const char *body,
         size_t len, it_resp_t *out)
{
    return it_http_timeout (method, url, headers, body, len, 15000, out);
}

int
it_http_timeout (const char *method, const char *url, const char *const *headers,
                 const char *body, size_t len, long timeout_ms, it_resp_t *out)
{
    memset (out, 0, sizeof *out);
    CURL *c = curl_easy_init ();
    if (!c)
        return -1;
    struct curl_slist *h = NULL;
    for (const char *const *p = headers; p && *p; p++)
        h = curl_slist_append (h, *p);
    h = curl_slist_append (h, "Expect:");
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt (c, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt (c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (c, CURLOPT_POSTFIELDSIZE, (long) len);
    }
    CURLcode rc = curl_easy_perform (c);
    curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all (h);
    curl_easy_cleanup (c);
    if (!out->body) {
        out->body = calloc (1, 1);
        out->len = 0;
    }
    return rc == CURLE_OK ? 0 : -1;
}

void
it_resp_free (it_resp_t *r)
{
    free (r->body);
    r->body = NULL;
}

bool
it_resp_header (const it_resp_t *r, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen (name);
    for (const char *p = r->headers; *p; ) {
        const char *eol = strstr (p, "\r\n");
        size_t llen = eol ? (size_t) (eol - p) : strlen (p);
        if (llen > nlen && strncasecmp (p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = llen - (size_t) (v - p);
            snprintf (out, cap, "%.*s", (int) vlen, v);
            return true;
        }
        if (!eol)
            break;
        p = eol + 2;
    }
    return false;
}

int
it_webhook (const it_ctx_t *ctx, const char *path, const char *ctype, const char *body,
            const char *xff, it_resp_t *out)
{
    char url[512], ct[256], fwd[96];
    snprintf (url, sizeof url, "%s%s", ctx->base, path);
    snprintf (ct, sizeof ct, "Content-Type: %s", ctype);
    snprintf (fwd, sizeof fwd, "X-Forwarded-For: %s", xff ? xff : "10.255.255.254");
    const char *headers[] = { ct, fwd, NULL };
    return it_http ("POST", url, headers, body, strlen (body), out);
}

// ---------------------------------------------------------------------------------------------
//  SQL, JSON, metrics

PGresult *
it_sql (const it_ctx_t *ctx, const char *sql, int n, const char *const *params)
{
    PGconn *c = PQconnectdb (ctx->db_url);
    if (PQstatus (c) != CONNECTION_OK) {
        PQfinish (c);
        return NULL;
    }
    PGresult *r = PQexecParams (c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf (stderr, "it_sql: %s", PQerrorMessage (c));
        PQclear (r);
        r = NULL;
    }
    PQfinish (c);
    return r;
}

long
it_sql_long (const it_ctx_t *ctx, const char *sql, const char *param)
{
    const char *params[1] = { param };
    PGresult *r = it_sql (ctx, sql, param ? 1 : 0, params);
    long v = -1;
    if (r && PQntuples (r) > 0 && !PQgetisnull (r, 0, 0))
        v = strtol (PQgetvalue (r, 0, 0), NULL, 10);
    PQclear (r);
    return v;
}

bool
it_json_str (const char *json, const char *key, char *out, size_t cap)
{
    char pat[128];
    snprintf (pat, sizeof pat, "\"%s\":\"", key);
    const char *p = json ? strstr (json, pat) : NULL;
    if (!p)
        return false;
    p += strlen (pat);
    const char *end = strchr (p, '"');
    if (!end)
        return false;
    snprintf (out, cap, "%.*s", (int) (end - p), p);
    return true;
}

double
it_metric (const it_ctx_t *ctx, const char *series)
{
    char url[256];
    snprintf (url, sizeof url, "%s/metrics", ctx->base);
    it_resp_t r;
    double v = -1;
    if (it_http ("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200) {
        size_t n = strlen (series);
        for (const char *p = r.body; p && *p; ) {
            if (strncmp (p, series, n) == 0 && p[n] == ' ') {
                v = strtod (p + n + 1, NULL);
                break;
            }
            p = strchr (p, '\n');
            if (p)
                p++;
        }
    }
    it_resp_free (&r);
    return v;
}

unsigned long
it_unique (void)
{
    static unsigned long n;
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000) * 1000u
                 + ++n % 1000u;
    //  splitmix64's finaliser, a bijection: distinct stays distinct, and the low digits some
    //  callers keep (x % 10^k) vary as much as the high ones.
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return (unsigned long) x;
}

void
it_unique_addr (char out[32])
{
    static unsigned counter;
    unsigned v = ((unsigned) getpid () * 131u + counter++ * 7u + (unsigned) time (NULL)) & 0xffffff;
    snprintf (out, 32, "10.%u.%u.%u", (v >> 16) & 255, (v >> 8) & 255, (v & 255) | 1);
}
