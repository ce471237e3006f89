/*  harness.c - what the workers' integration tests share (see harness.h).
 */
#include "tests/workers/harness.h"
#include "common/redis.h"
#include "tests/lib/ports.h"
#include "tools/migrate.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef FKS_TEST_MIGRATIONS_DIR
#   error "FKS_TEST_MIGRATIONS_DIR must point at schemas/migrations"
#endif

extern char **environ;

static char s_db_name[64];
static char s_db_url[1024];
static char s_redis_url[300];
static h_proc_t s_procs[H_MAX_PROCS];
static int s_n_procs;

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

static int64_t
s_now_ms (void)
{
    return fks_mono_ns () / 1000000;
}

void
h_require_services (void)
{
    const char *pg = getenv ("FKS_TEST_PG_URL");
    const char *redis = getenv ("FKS_TEST_REDIS_URL");
    if (!pg || !*pg || !redis || !*redis)
        cr_assert_fail ("FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are not set: this integration test "
                 "needs PostgreSQL and Redis; run tools/test.sh, which starts both");
    cr_assert (getenv ("FKS_TEST_PG_URL") && getenv ("FKS_TEST_REDIS_URL"));
}


//  --------------------------------------------------------------------------
//  Databases

static void
s_kv (char *out, size_t cap, const char *key, const char *value)
{
    size_t n = strlen (out);
    snprintf (out + n, cap - n, "%s%s='", n ? " " : "", key);
    for (const char *p = value; *p; p++) {
        n = strlen (out);
        if (n + 3 >= cap)
            break;
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
        out[n] = '\0';
    }
    n = strlen (out);
    snprintf (out + n, cap - n, "'");
}

static void
s_admin (const char *sql)
{
    PGconn *conn = PQconnectdb (getenv ("FKS_TEST_PG_URL"));
    cr_assert (PQstatus (conn) == CONNECTION_OK, "cannot connect to FKS_TEST_PG_URL: %s",
               PQerrorMessage (conn));
    PGresult *r = PQexec (conn, sql);
    cr_assert (PQresultStatus (r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage (conn));
    PQclear (r);
    PQfinish (conn);
}

const char *
h_db_create (void)
{
    static int n;
    snprintf (s_db_name, sizeof s_db_name, "fks_w_%d_%d", (int) getpid (), ++n);
    //  The only SQL built by formatting: a name made of our own pid and a counter.
    char sql[128];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s_db_name);
    s_admin (sql);
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", s_db_name);
    s_admin (sql);
    PQconninfoOption *opts = PQconninfoParse (getenv ("FKS_TEST_PG_URL"), NULL);
    cr_assert (opts, "FKS_TEST_PG_URL does not parse");
    s_db_url[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp (o->keyword, "dbname") != 0)
            s_kv (s_db_url, sizeof s_db_url, o->keyword, o->val);
    PQconninfoFree (opts);
    s_kv (s_db_url, sizeof s_db_url, "dbname", s_db_name);

    fks_migrate_err_t merr;
    fks_migrate_t *m = fks_migrate_load (FKS_TEST_MIGRATIONS_DIR, NULL, &merr);
    cr_assert (m, "%s", merr.msg);
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (s_db_url, NULL, 0, &perr);
    cr_assert (pg, "%s", perr.msg);
    cr_assert_eq (fks_migrate_apply (m, pg, NULL, NULL, &merr), 0, "%s", merr.msg);
    fks_pg_destroy (&pg);
    fks_migrate_destroy (&m);
    return s_db_url;
}

void
h_db_drop (void)
{
    if (!s_db_name[0])
        return;
    char sql[128];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s_db_name);
    s_db_name[0] = '\0';
    s_admin (sql);
}

const char *
h_db_url (void)
{
    return s_db_url;
}

const char *
h_redis_url (int db)
{
    const char *base = getenv ("FKS_TEST_REDIS_URL");
    cr_assert (base);
    //  Replace (or add) the database number.
    char tmp[256];
    snprintf (tmp, sizeof tmp, "%s", base);
    char *slash = strstr (tmp, "://");
    slash = slash ? strchr (slash + 3, '/') : NULL;
    if (slash)
        *slash = '\0';
    snprintf (s_redis_url, sizeof s_redis_url, "%s/%d", tmp, db);
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (s_redis_url, 2000, 2000, &err);
    cr_assert (r, "%s", err.msg);
    redisReply *rep = fks_redis_command (r, &err, "FLUSHDB");
    cr_assert (rep, "Redis FLUSHDB: %s", err.msg);
    freeReplyObject (rep);
    fks_redis_destroy (&r);
    return s_redis_url;
}

static PGconn *
s_conn (void)
{
    static PGconn *conn;
    static char url[1024];
    if (conn && (strcmp (url, s_db_url) != 0 || PQstatus (conn) != CONNECTION_OK)) {
        PQfinish (conn);
        conn = NULL;
    }
    if (!conn) {
        conn = PQconnectdb (s_db_url);
        cr_assert (PQstatus (conn) == CONNECTION_OK, "%s", PQerrorMessage (conn));
        snprintf (url, sizeof url, "%s", s_db_url);
    }
    return conn;
}

char *
h_sql_text (const char *sql)
{
    PGconn *conn = s_conn ();
    PGresult *r = PQexec (conn, sql);
    cr_assert (PQresultStatus (r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage (conn));
    cr_assert (PQntuples (r) >= 1, "%s: no row", sql);
    char *v = strdup (PQgetisnull (r, 0, 0) ? "" : PQgetvalue (r, 0, 0));
    PQclear (r);
    return v;
}

long long
h_sql_int (const char *sql)
{
    char *v = h_sql_text (sql);
    long long n = strtoll (v, NULL, 10);
    free (v);
    return n;
}

void
h_sql_exec (const char *sql)
{
    PGconn *conn = s_conn ();
    PGresult *r = PQexec (conn, sql);
    cr_assert (PQresultStatus (r) == PGRES_COMMAND_OK || PQresultStatus (r) == PGRES_TUPLES_OK,
               "%s: %s", sql, PQerrorMessage (conn));
    PQclear (r);
}

long long
h_wait_int (const char *sql, long long want, int timeout_ms)
{
    int64_t end = s_now_ms () + timeout_ms;
    long long v;
    while ((v = h_sql_int (sql)) != want && s_now_ms () < end)
        s_sleep_ms (50);
    return v;
}


//  --------------------------------------------------------------------------
//  Processes

int
h_free_port (void)
{
    int port = fks_test_free_port ();
    cr_assert_gt (port, 0, "no free loopback port for a program");
    return port;
}

h_proc_t *
h_spawn (const char *name, const char *bin, const char *const *env, int http_port)
{
    cr_assert (bin && *bin, "the path of %s is not set (run the tests through meson)", name);
    cr_assert (s_n_procs < H_MAX_PROCS);
    h_proc_t *p = &s_procs[s_n_procs++];
    memset (p, 0, sizeof *p);
    snprintf (p->name, sizeof p->name, "%s", name);
    snprintf (p->log, sizeof p->log, "/tmp/fks_w_%d_%s_%d.log", (int) getpid (), name,
              s_n_procs);
    p->http_port = http_port;

    //  The environment: ours, overridden by env.
    size_t n_env = 0, n_ours = 0;
    while (env && env[n_env])
        n_env++;
    while (environ[n_ours])
        n_ours++;
    char **envp = calloc (n_env + n_ours + 1, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n_ours; i++) {
        bool overridden = false;
        const char *eq = strchr (environ[i], '=');
        size_t klen = eq ? (size_t) (eq - environ[i]) : strlen (environ[i]);
        for (size_t j = 0; j < n_env && !overridden; j++)
            overridden = strncmp (env[j], environ[i], klen) == 0 && env[j][klen] == '=';
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_env; j++)
        envp[k++] = (char *) env[j];
    envp[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init (&fa);
    posix_spawn_file_actions_addopen (&fa, 1, p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2 (&fa, 1, 2);
    posix_spawn_file_actions_addopen (&fa, 0, "/dev/null", O_RDONLY, 0);
    char *argv[] = { (char *) bin, NULL };
    int rc = posix_spawn (&p->pid, bin, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy (&fa);
    free (envp);
    cr_assert_eq (rc, 0, "cannot start %s (%s): %s", name, bin, strerror (rc));
    return p;
}

int
h_stop (h_proc_t *p, int sig, int timeout_ms)
{
    if (!p || p->pid <= 0)
        return 0;
    kill (p->pid, sig);
    int64_t end = s_now_ms () + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid (p->pid, &status, WNOHANG);
        if (r == p->pid)
            break;
        if (s_now_ms () >= end) {
            kill (p->pid, SIGKILL);
            waitpid (p->pid, &status, 0);
            p->pid = 0;
            return -1;
        }
        s_sleep_ms (20);
    }
    p->pid = 0;
    if (WIFEXITED (status))
        return WEXITSTATUS (status);
    return 128 + WTERMSIG (status);
}

void
h_dump_logs (void)
{
    for (int i = 0; i < s_n_procs; i++) {
        FILE *f = fopen (s_procs[i].log, "r");
        if (!f)
            continue;
        fprintf (stderr, "---- %s (%s), last lines:\n", s_procs[i].name, s_procs[i].log);
        char *lines[30] = { 0 };
        char buf[2048];
        int n = 0;
        while (fgets (buf, sizeof buf, f)) {
            free (lines[n % 30]);
            lines[n % 30] = strdup (buf);
            n++;
        }
        for (int j = n > 30 ? n - 30 : 0; j < n; j++)
            fputs (lines[j % 30], stderr);
        for (int j = 0; j < 30; j++)
            free (lines[j]);
        fclose (f);
    }
}


//  --------------------------------------------------------------------------
//  HTTP

typedef struct {
    char *data;
    size_t len;
} s_body_t;

static size_t
s_write_cb (char *ptr, size_t size, size_t n, void *userdata)
{
    s_body_t *b = userdata;
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

int
h_http (const char *method, int port, const char *path, const char *auth,
        const char *content_type, const char *data, char **body)
{
    CURL *c = curl_easy_init ();
    cr_assert (c);
    char url[512];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    s_body_t b = { NULL, 0 };
    struct curl_slist *hdrs = NULL;
    char line[512];
    if (auth) {
        snprintf (line, sizeof line, "Authorization: Bearer %s", auth);
        hdrs = curl_slist_append (hdrs, line);
    }
    if (content_type) {
        snprintf (line, sizeof line, "Content-Type: %s", content_type);
        hdrs = curl_slist_append (hdrs, line);
    }
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, s_write_cb);
    curl_easy_setopt (c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    if (data) {
        curl_easy_setopt (c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt (c, CURLOPT_POSTFIELDSIZE, (long) strlen (data));
    }
    long status = 0;
    if (curl_easy_perform (c) == CURLE_OK)
        curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (hdrs);
    curl_easy_cleanup (c);
    if (body)
        *body = b.data ? b.data : strdup ("");
    else
        free (b.data);
    return (int) status;
}

bool
h_wait_http (int port, const char *path, int timeout_ms)
{
    int64_t end = s_now_ms () + timeout_ms;
    while (s_now_ms () < end) {
        if (h_http ("GET", port, path, NULL, NULL, NULL, NULL) == 200)
            return true;
        s_sleep_ms (50);
    }
    return false;
}

double
h_metric (int port, const char *series)
{
    char *body = NULL;
    if (h_http ("GET", port, "/metrics", NULL, NULL, NULL, &body) != 200) {
        free (body);
        return -1;
    }
    double v = -1;
    size_t n = strlen (series);
    for (char *line = body; line && *line; ) {
        char *next = strchr (line, '\n');
        if (strncmp (line, series, n) == 0 && line[n] == ' ')
            v = strtod (line + n + 1, NULL);
        line = next ? next + 1 : NULL;
    }
    free (body);
    return v;
}


//  --------------------------------------------------------------------------
//  The stack

#define S_ENV_MAX 48

typedef struct {
    const char *v[S_ENV_MAX];
    char store[S_ENV_MAX][1300];
    int n;
} s_env_t;

static void
s_env_add (s_env_t *e, const char *fmt, ...)
{
    cr_assert (e->n < S_ENV_MAX - 1);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (e->store[e->n], sizeof e->store[0], fmt, ap);
    va_end (ap);
    e->v[e->n] = e->store[e->n];
    e->n++;
    e->v[e->n] = NULL;
}

static void
s_env_common (h_stack_t *s, s_env_t *e)
{
    e->n = 0;
    s_env_add (e, "FKS_ENV=test");
    s_env_add (e, "FKS_LOG_LEVEL=info");
    s_env_add (e, "FKS_HTTP_BIND=127.0.0.1");
    s_env_add (e, "%s", s->pg_env);
    s_env_add (e, "%s", s->redis_env);
    s_env_add (e, "FKS_BUS_URL=%s", s->bus_url);
    s_env_add (e, "FKS_BUS_STREAM_URL=%s", s->stream_url);
    s_env_add (e, "FKS_BUS_BIND=%s", s->bus_url);
    s_env_add (e, "FKS_BUS_STREAM_BIND=%s", s->stream_url);
    s_env_add (e, "FKS_WORKER_THREADS=2");
    //  The bus's reconciler, and the workers' bound on waiting for what it may publish again
    //  (as the ConfigMap gives both under Kubernetes).
    s_env_add (e, "FKS_BUS_RECONCILE_INTERVAL=1s");
    s_env_add (e, "FKS_BUS_RECONCILE_AFTER=10s");
    for (const char *const *x = s->opts.extra_env; x && *x; x++)
        s_env_add (e, "%s", *x);
}

static h_proc_t *
s_start_worker (h_stack_t *s, const char *kind, int i, int *port_out)
{
    s_env_t e;
    s_env_common (s, &e);
    int port = h_free_port ();
    bool exec = strcmp (kind, "execution") == 0;
    s_env_add (&e, "%s=%d", exec ? "FKS_EXECUTION_PORT" : "FKS_SIGNAL_PORT", port);
    if (exec)
        for (const char *const *x = s->opts.exec_env; x && *x; x++)
            s_env_add (&e, "%s", *x);
    char name[32];
    snprintf (name, sizeof name, "%s%d", kind, i);
    h_proc_t *p = h_spawn (name, getenv (exec ? "FKS_EXECUTION_BIN" : "FKS_SIGNAL_BIN"), e.v,
                           port);
    *port_out = port;
    return p;
}

void
h_stack_start_execution (h_stack_t *s, int i)
{
    s->execution[i] = s_start_worker (s, "execution", i, &s->execution_ports[i]);
    if (!h_wait_http (s->execution_ports[i], "/ready", 15000)) {
        h_dump_logs ();
        cr_assert_fail ("execution%d did not become ready", i);
    }
}

void
h_stack_start (h_stack_t *s, const h_stack_opts_t *opts)
{
    h_require_services ();
    memset (s, 0, sizeof *s);
    s->opts = *opts;
    s_n_procs = 0;
    h_db_create ();
    const char *redis = h_redis_url (opts->redis_db);
    snprintf (s->pg_env, sizeof s->pg_env, "FKS_PG_URL=%s", s_db_url);
    snprintf (s->redis_env, sizeof s->redis_env, "FKS_REDIS_URL=%s", redis);
    snprintf (s->bus_url, sizeof s->bus_url, "tcp://127.0.0.1:%d", h_free_port ());
    snprintf (s->stream_url, sizeof s->stream_url, "tcp://127.0.0.1:%d", h_free_port ());

    s_env_t e;
    s_env_common (s, &e);
    s->bus_port = h_free_port ();
    s_env_add (&e, "FKS_BUS_PORT=%d", s->bus_port);
    s->bus = h_spawn ("bus", getenv ("FKS_BUS_BIN"), e.v, s->bus_port);
    if (!h_wait_http (s->bus_port, "/ready", 15000)) {
        h_dump_logs ();
        cr_assert_fail ("fks-bus did not become ready");
    }
    if (opts->gateway) {
        s_env_common (s, &e);
        s->gateway_port = h_free_port ();
        s_env_add (&e, "FKS_GATEWAY_PORT=%d", s->gateway_port);
        s_env_add (&e, "FKS_WEBHOOK_SECRET=%s", H_WEBHOOK_SECRET);
        s_env_add (&e, "FKS_ADMIN_KEY=%s", H_ADMIN_KEY);
        s_env_add (&e, "FKS_GATEWAY_RATE_LIMIT_IP=1000000");
        s_env_add (&e, "FKS_GATEWAY_RATE_LIMIT_KEY=1000000");
        s_env_add (&e, "FKS_GATEWAY_COMMIT_TIMEOUT=5s");
        s->gateway = h_spawn ("gateway", getenv ("FKS_GATEWAY_BIN"), e.v, s->gateway_port);
    }
    for (int i = 0; i < opts->signal_replicas; i++)
        s->signal[i] = s_start_worker (s, "signal", i, &s->signal_ports[i]);
    for (int i = 0; i < opts->execution_replicas; i++)
        s->execution[i] = s_start_worker (s, "execution", i, &s->execution_ports[i]);
    bool ok = true;
    if (opts->gateway)
        ok &= h_wait_http (s->gateway_port, "/ready", 15000);
    for (int i = 0; i < opts->signal_replicas; i++)
        ok &= h_wait_http (s->signal_ports[i], "/ready", 15000);
    for (int i = 0; i < opts->execution_replicas; i++)
        ok &= h_wait_http (s->execution_ports[i], "/ready", 15000);
    if (!ok) {
        h_dump_logs ();
        cr_assert_fail ("a program did not become ready");
    }

    fks_bus_client_opts_t copts = { .url = s->bus_url, .name = "test", .publish_timeout_ms = 2000 };
    s->client = fks_bus_client_new (&copts);
    cr_assert (s->client);
    s->zctx = zmq_ctx_new ();
    s->sub = zmq_socket (s->zctx, ZMQ_SUB);
    int hwm = 1000000;
    zmq_setsockopt (s->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (s->sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq (zmq_connect (s->sub, s->stream_url), 0);
}

void
h_stack_stop (h_stack_t *s)
{
    if (s->sub)
        zmq_close (s->sub);
    if (s->zctx)
        zmq_ctx_term (s->zctx);
    fks_bus_client_destroy (&s->client);
    int bad = 0;
    char which[256] = "";
    h_proc_t *order[12];
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (s->signal[i])
            order[n++] = s->signal[i];
    for (int i = 0; i < 4; i++)
        if (s->execution[i])
            order[n++] = s->execution[i];
    if (s->gateway)
        order[n++] = s->gateway;
    //  Every program at once: each drains on its own (stopping takes civetweb a second or
    //  two, which would add up one after the other).
    for (int i = 0; i < n; i++)
        if (order[i]->pid > 0)
            kill (order[i]->pid, SIGTERM);
    if (s->bus && s->bus->pid > 0)
        kill (s->bus->pid, SIGTERM);
    for (int i = 0; i < n; i++)
        if (order[i]->pid > 0 && h_stop (order[i], SIGTERM, 15000) != 0) {
            bad++;
            strncat (which, order[i]->name, sizeof which - strlen (which) - 2);
            strncat (which, " ", sizeof which - strlen (which) - 1);
        }
    if (s->bus && s->bus->pid > 0 && h_stop (s->bus, SIGTERM, 15000) != 0) {
        bad++;
        strncat (which, "bus", sizeof which - strlen (which) - 1);
    }
    if (bad)
        h_dump_logs ();
    h_db_drop ();
    cr_assert_eq (bad, 0, "did not exit 0 after SIGTERM: %s", which);
}


//  --------------------------------------------------------------------------
//  Alerts and envelopes

void
h_store_event (const fks_envelope_hdr_t *hdr, const void *data, size_t len)
{
    PGconn *conn = s_conn ();
    char id[FKS_ID_STR_SIZE], corr[FKS_ID_STR_SIZE], ts[32];
    fks_id_format (&hdr->id, id);
    fks_id_format (&hdr->corr, corr);
    snprintf (ts, sizeof ts, "%.6f", (double) hdr->ts / 1e9);
    const char *values[6] = { id, hdr->type, fks_id_is_nil (&hdr->corr) ? NULL : corr, hdr->src,
                              ts, data };
    int lengths[6] = { 0, 0, 0, 0, 0, (int) len };
    int formats[6] = { 0, 0, 0, 0, 0, 1 };
    PGresult *r = PQexecParams (conn,
        "INSERT INTO events (id, type, corr, src, ts, envelope)"
        " VALUES ($1, $2, $3, $4, to_timestamp ($5::double precision), $6)",
        6, NULL, values, lengths, formats, 0);
    cr_assert (PQresultStatus (r) == PGRES_COMMAND_OK, "%s", PQerrorMessage (conn));
    PQclear (r);
}

fks_id_t
h_inject_alert (h_stack_t *s, const h_alert_t *a, uint8_t **env_out, size_t *len_out)
{
    fks_id_t inbox;
    cr_assert_eq (fks_id_new (&inbox), 0);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    size_t n = 4 + (a->quantity > 0) + (a->price > 0) + (a->order_type != NULL)
             + (a->limit_price > 0) + (a->alert_time_ms != 0) + (a->market_position != NULL)
             + (a->quantity_type != NULL) + a->has_confidence + a->has_position_size;
    msgpack_pack_map (&pk, n);
    fks_pack_kv_id (&pk, "inbox_id", &inbox);
    fks_pack_kv_str (&pk, "source", "tradingview");
    fks_pack_kv_str (&pk, "symbol", a->symbol);
    fks_pack_kv_str (&pk, "action", a->action);
    if (a->quantity > 0)
        fks_pack_kv_f64 (&pk, "quantity", a->quantity);
    if (a->price > 0)
        fks_pack_kv_f64 (&pk, "price", a->price);
    if (a->order_type)
        fks_pack_kv_str (&pk, "order_type", a->order_type);
    if (a->limit_price > 0)
        fks_pack_kv_f64 (&pk, "limit_price", a->limit_price);
    if (a->alert_time_ms)
        fks_pack_kv_i64 (&pk, "alert_time", a->alert_time_ms);
    if (a->market_position)
        fks_pack_kv_str (&pk, "market_position", a->market_position);
    if (a->quantity_type)
        fks_pack_kv_str (&pk, "quantity_type", a->quantity_type);
    if (a->has_position_size)
        fks_pack_kv_f64 (&pk, "position_size", a->position_size);
    if (a->has_confidence)
        fks_pack_kv_f64 (&pk, "confidence", a->confidence);

    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &inbox, NULL), 0);
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err), 0, "%s",
                  err.msg);
    msgpack_sbuffer_destroy (&body);

    //  The inbox row and the outbox row, in one transaction, as the gateway does.
    PGconn *conn = s_conn ();
    char id[FKS_ID_STR_SIZE], idem[160];
    fks_id_format (&inbox, id);
    snprintf (idem, sizeof idem, "%s", a->idem ? a->idem : id);
    //  The parsed alert as the gateway stores it (the fields the workers look at in it).
    char alert[200];
    snprintf (alert, sizeof alert, "{\"source\":\"tradingview\",\"symbol\":\"%s\","
              "\"action\":\"%s\"}", a->symbol, a->action);
    h_sql_exec ("BEGIN");
    const char *values[3] = { id, idem, alert };
    PGresult *r = PQexecParams (conn,
        "INSERT INTO inbox (id, idem_key, source, body, alert)"
        " VALUES ($1, $2, 'tradingview', ''::bytea, $3::jsonb)", 3, NULL, values, NULL, NULL, 0);
    cr_assert (PQresultStatus (r) == PGRES_COMMAND_OK, "%s", PQerrorMessage (conn));
    PQclear (r);
    h_store_event (&hdr, frame.data, frame.size);
    h_sql_exec ("COMMIT");
    if (!a->lost)
        h_publish (s, "webhook.received", (const uint8_t *) frame.data, frame.size);
    if (env_out) {
        *env_out = malloc (frame.size);
        memcpy (*env_out, frame.data, frame.size);
        *len_out = frame.size;
    }
    msgpack_sbuffer_destroy (&frame);
    return inbox;
}

void
h_publish (h_stack_t *s, const char *type, const uint8_t *data, size_t len)
{
    cr_assert_eq (fks_bus_publish (s->client, type, data, len), 0, "publish %s failed", type);
}

void
h_store_body (const char *type, const char *src, const fks_id_t *corr, const fks_id_t *cause,
              const void *body, size_t body_len, msgpack_sbuffer *frame)
{
    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_hdr_init (&hdr, type, src, corr, cause), 0);
    msgpack_sbuffer_init (frame);
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&hdr, body, body_len, frame, &err), 0, "%s", err.msg);
    h_store_event (&hdr, frame->data, frame->size);
}

void
h_publish_body_as (h_stack_t *s, const char *type, const char *src, const fks_id_t *corr,
                   const fks_id_t *cause, const void *body, size_t body_len)
{
    msgpack_sbuffer frame;
    h_store_body (type, src, corr, cause, body, body_len, &frame);
    h_publish (s, type, (const uint8_t *) frame.data, frame.size);
    msgpack_sbuffer_destroy (&frame);
}

void
h_publish_body (h_stack_t *s, const char *type, const char *src, const void *body,
                size_t body_len)
{
    h_publish_body_as (s, type, src, NULL, NULL, body, body_len);
}

//  One stream message, or 0 on timeout.
static int
s_stream_recv (h_stack_t *s, char *topic, size_t tcap, fks_envelope_hdr_t *hdr, int timeout_ms)
{
    zmq_pollitem_t item = { s->sub, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return 0;
    zmq_msg_t t, e;
    zmq_msg_init (&t);
    zmq_msg_init (&e);
    int ok = 0;
    if (zmq_msg_recv (&t, s->sub, 0) >= 0) {
        size_t tl = zmq_msg_size (&t) < tcap - 1 ? zmq_msg_size (&t) : tcap - 1;
        memcpy (topic, zmq_msg_data (&t), tl);
        topic[tl] = '\0';
        if (zmq_msg_more (&t) && zmq_msg_recv (&e, s->sub, 0) >= 0) {
            fks_envelope_err_t err;
            ok = fks_envelope_peek (zmq_msg_data (&e), zmq_msg_size (&e), hdr, NULL, NULL,
                                    &err) == 0;
        }
        //  Drain any further frames of a malformed message.
        while (zmq_msg_more (&e) || (!ok && zmq_msg_more (&t))) {
            zmq_msg_t x;
            zmq_msg_init (&x);
            if (zmq_msg_recv (&x, s->sub, 0) < 0) {
                zmq_msg_close (&x);
                break;
            }
            int more = zmq_msg_more (&x);
            zmq_msg_close (&x);
            if (!more)
                break;
        }
    }
    zmq_msg_close (&t);
    zmq_msg_close (&e);
    return ok ? 1 : -1;
}

void
h_stream_ready (h_stack_t *s)
{
    //  A SUB socket misses what is published before its subscription reaches the publisher;
    //  probes (market.bar for a symbol nobody trades) tell when it has.
    int64_t end = s_now_ms () + 10000;
    while (s_now_ms () < end) {
        msgpack_sbuffer body;
        msgpack_sbuffer_init (&body);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 9);
        fks_pack_kv_str (&pk, "symbol", "PROBE");
        fks_pack_kv_str (&pk, "interval", "1m");
        fks_pack_kv_i64 (&pk, "open_time", 0);
        fks_pack_kv_f64 (&pk, "open", 1);
        fks_pack_kv_f64 (&pk, "high", 1);
        fks_pack_kv_f64 (&pk, "low", 1);
        fks_pack_kv_f64 (&pk, "close", 1);
        fks_pack_kv_f64 (&pk, "volume", 0);
        fks_pack_kv_str (&pk, "source", "csv");
        h_publish_body (s, "market.bar", "test", body.data, body.size);
        msgpack_sbuffer_destroy (&body);
        char topic[64];
        fks_envelope_hdr_t hdr;
        int64_t until = s_now_ms () + 200;
        while (s_now_ms () < until) {
            int rc = s_stream_recv (s, topic, sizeof topic, &hdr, 50);
            if (rc == 1 && strcmp (topic, "market.bar") == 0)
                return;
        }
    }
    cr_assert_fail ("the stream subscription never became live");
}

int
h_stream_types (h_stack_t *s, const fks_id_t *corr, char types[][64], int n, int timeout_ms)
{
    int seen = 0;
    int64_t end = s_now_ms () + timeout_ms;
    while (seen < n && s_now_ms () < end) {
        char topic[64];
        fks_envelope_hdr_t hdr;
        int rc = s_stream_recv (s, topic, sizeof topic, &hdr, 100);
        if (rc == 1 && memcmp (hdr.corr.b, corr->b, FKS_ID_SIZE) == 0)
            snprintf (types[seen++], 64, "%s", topic);
    }
    return seen;
}

void
h_set_price (h_stack_t *s, const char *symbol, double price)
{
    (void) s;
    fks_redis_err_t err;
    fks_redis_t *r = fks_redis_new (s_redis_url, 2000, 2000, &err);
    cr_assert (r, "%s", err.msg);
    char key[64], p[40], ts[32];
    snprintf (key, sizeof key, "fks:price:%s", symbol);
    snprintf (p, sizeof p, "%.15g", price);
    snprintf (ts, sizeof ts, "%lld", (long long) fks_now_ms ());
    redisReply *rep = fks_redis_command (r, &err, "HSET %s price %s ts %s", key, p, ts);
    cr_assert (rep, "%s", err.msg);
    freeReplyObject (rep);
    fks_redis_destroy (&r);
}

char *
h_sqlf (char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (buf, cap, fmt, ap);
    va_end (ap);
    return buf;
}

void
h_wait_alert_status (const fks_id_t *alert, const char *status)
{
    char id[FKS_ID_STR_SIZE], q[256];
    fks_id_format (alert, id);
    h_sqlf (q, sizeof q, "SELECT count(*) FROM inbox WHERE id = '%s' AND status = '%s'", id,
            status);
    if (h_wait_int (q, 1, 30000) == 1)
        return;
    h_dump_logs ();
    h_sqlf (q, sizeof q, "SELECT status FROM inbox WHERE id = '%s'", id);
    char *got = h_sql_text (q);
    char *orders = h_sql_text ("SELECT coalesce (string_agg (side || ' ' || type || ' '"
                               " || qty || ' ' || status || ' ' || filled_qty, '; '"
                               " ORDER BY created_at), '') FROM orders");
    cr_assert_fail ("alert %s: status %s, expected %s (orders: %s)", id, got, status, orders);
}
