/*  test_ops.c - /health, /ready and /metrics as a Kubernetes probe or a Prometheus scrape sees
 *  them: a real civetweb server on loopback, spoken to over HTTP with libcurl. Covers each
 *  endpoint's status, content type and exact body, the 503 path, 405 for other methods, the
 *  request counter, mounting on an existing server, and the failures of fks_ops_listen.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <civetweb.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ops.h"

#define S_BODY_MAX (1 << 20)

typedef struct {
    atomic_int ready;                   /* what the check answers */
    atomic_int calls;                   /* how often it was asked */
    char reason[128];
} s_check_t;

static int
s_check (void *arg, char *why, size_t cap)
{
    s_check_t *c = arg;
    atomic_fetch_add (&c->calls, 1);
    if (atomic_load (&c->ready))
        return 0;
    snprintf (why, cap, "%s", c->reason);
    return -1;
}

typedef struct {
    long status;
    char content_type[128];
    char allow[64];
    char *body;
    size_t len;
} s_response_t;

static size_t
s_on_body (char *data, size_t size, size_t n, void *arg)
{
    s_response_t *r = arg;
    size_t bytes = size * n;
    if (r->len + bytes > S_BODY_MAX)
        return 0;                       /* curl fails the transfer: the test sees it */
    char *p = realloc (r->body, r->len + bytes + 1);
    if (!p)
        return 0;
    r->body = p;
    memcpy (r->body + r->len, data, bytes);
    r->len += bytes;
    r->body[r->len] = '\0';
    return bytes;
}

static size_t
s_on_header (char *data, size_t size, size_t n, void *arg)
{
    s_response_t *r = arg;
    size_t bytes = size * n;
    if (bytes > 7 && strncasecmp (data, "Allow: ", 7) == 0) {
        size_t v = bytes - 7;
        while (v > 0 && (data[7 + v - 1] == '\r' || data[7 + v - 1] == '\n'))
            v--;
        snprintf (r->allow, sizeof r->allow, "%.*s", (int) v, data + 7);
    }
    return bytes;
}

//  One request; fills *out (body always NUL-terminated, "" when there is none).
static void
s_http (int port, const char *method, const char *path, s_response_t *out)
{
    memset (out, 0, sizeof *out);
    out->body = calloc (1, 1);
    char url[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *curl = curl_easy_init ();
    cr_assert_not_null (curl);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, out);
    if (strcmp (method, "HEAD") == 0)
        curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
    else if (strcmp (method, "POST") == 0)
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, "{\"x\":1}");
    else if (strcmp (method, "GET") != 0)
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform (curl);
    cr_assert_eq (rc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror (rc));
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &out->status);
    char *ct = NULL;
    curl_easy_getinfo (curl, CURLINFO_CONTENT_TYPE, &ct);
    snprintf (out->content_type, sizeof out->content_type, "%s", ct ? ct : "");
    curl_easy_cleanup (curl);
}

static void
s_response_free (s_response_t *r)
{
    free (r->body);
    r->body = NULL;
}

// ---------------------------------------------------------------------------------------------
//  Each test gets a registry, a readiness check and a server on a free loopback port.

static fks_metrics_t *s_registry;
static fks_ops_t *s_ops;
static s_check_t s_state;
static int s_port;

static void
s_setup (void)
{
    cr_assert_eq (curl_global_init (CURL_GLOBAL_DEFAULT), 0);
    s_registry = fks_metrics_new ();
    cr_assert_not_null (s_registry);
    atomic_store (&s_state.ready, 1);
    atomic_store (&s_state.calls, 0);
    s_ops = fks_ops_new ("lab \"1\"", s_check, &s_state, s_registry);
    cr_assert_not_null (s_ops);
    cr_assert_eq (fks_ops_port (s_ops), -1, "no port before listening");
    cr_assert_eq (fks_ops_listen (s_ops, "127.0.0.1", 0), 0);
    s_port = fks_ops_port (s_ops);
    cr_assert (s_port > 0 && s_port <= 65535, "port 0 reports the port bound: %d", s_port);
}

static void
s_teardown (void)
{
    fks_ops_destroy (&s_ops);
    cr_assert_null (s_ops);
    fks_metrics_destroy (&s_registry);
    curl_global_cleanup ();
}

TestSuite (ops, .init = s_setup, .fini = s_teardown, .timeout = 60);

//  The count of fks_http_requests_total{path,code} in the served registry.
static double
s_requests (const char *path, const char *code)
{
    fks_metric_family_t *f = fks_metrics_family (s_registry, "fks_http_requests_total", "",
                                                 FKS_COUNTER,
                                                 (const char *[]) { "path", "code" }, 2, NULL, 0);
    cr_assert_not_null (f);
    return fks_metric_value (fks_metric_get (f, (const char *[]) { path, code }));
}

Test (ops, health_answers_200_with_the_env_as_json)
{
    s_response_t r;
    s_http (s_port, "GET", "/health", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.content_type, "application/json");
    cr_assert_str_eq (r.body, "{\"status\":\"healthy\",\"env\":\"lab \\\"1\\\"\"}");
    s_response_free (&r);
    cr_assert_eq (atomic_load (&s_state.calls), 0, "/health does not run the readiness check");
}

Test (ops, health_ignores_the_query_string)
{
    s_response_t r;
    s_http (s_port, "GET", "/health?verbose=1", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "{\"status\":\"healthy\",\"env\":\"lab \\\"1\\\"\"}");
    s_response_free (&r);
}

Test (ops, ready_answers_200_when_the_check_passes)
{
    s_response_t r;
    s_http (s_port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.content_type, "application/json");
    cr_assert_str_eq (r.body, "{\"status\":\"ready\"}");
    s_response_free (&r);
    cr_assert_eq (atomic_load (&s_state.calls), 1);
}

Test (ops, ready_answers_503_with_the_reason_until_the_check_passes)
{
    snprintf (s_state.reason, sizeof s_state.reason, "postgres: \"fks\" refused\n(retrying)");
    atomic_store (&s_state.ready, 0);
    s_response_t r;
    s_http (s_port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 503);
    cr_assert_str_eq (r.content_type, "application/json");
    cr_assert_str_eq (r.body, "{\"status\":\"not_ready\",\"reason\":\"postgres: \\\"fks\\\" "
                              "refused\\n(retrying)\"}");
    s_response_free (&r);

    atomic_store (&s_state.ready, 1);
    s_http (s_port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "{\"status\":\"ready\"}");
    s_response_free (&r);
    cr_assert_eq (s_requests ("/ready", "503"), 1);
    cr_assert_eq (s_requests ("/ready", "200"), 1);
}

//  A liveness check set: /health answers 503 with its reason while it fails (a process stuck
//  for good, for Kubernetes' liveness probe to restart), 200 again once it passes; /ready is
//  not affected by it.
Test (ops, health_answers_503_while_the_liveness_check_fails)
{
    static s_check_t live;
    snprintf (live.reason, sizeof live.reason, "handler thread 1 hung: no progress for 61 s");
    atomic_store (&live.ready, 0);
    fks_ops_set_live (s_ops, s_check, &live);
    s_response_t r;
    s_http (s_port, "GET", "/health", &r);
    cr_assert_eq (r.status, 503);
    cr_assert_str_eq (r.body, "{\"status\":\"unhealthy\",\"reason\":\"handler thread 1 hung: "
                              "no progress for 61 s\"}");
    s_response_free (&r);
    s_http (s_port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 200);
    s_response_free (&r);
    atomic_store (&live.ready, 1);
    s_http (s_port, "GET", "/health", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "{\"status\":\"healthy\",\"env\":\"lab \\\"1\\\"\"}");
    s_response_free (&r);
    cr_assert_eq (s_requests ("/health", "503"), 1);
    fks_ops_set_live (s_ops, NULL, NULL);
}

Test (ops, ready_with_a_failing_check_that_gives_no_reason_still_says_why)
{
    s_state.reason[0] = '\0';
    atomic_store (&s_state.ready, 0);
    s_response_t r;
    s_http (s_port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 503);
    cr_assert_str_eq (r.body, "{\"status\":\"not_ready\",\"reason\":\"readiness check failed\"}");
    s_response_free (&r);
}

Test (ops, ready_without_a_check_is_always_ready)
{
    fks_ops_t *ops = fks_ops_new ("dev", NULL, NULL, s_registry);
    cr_assert_not_null (ops);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", 0), 0);
    s_response_t r;
    s_http (fks_ops_port (ops), "GET", "/ready", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "{\"status\":\"ready\"}");
    s_response_free (&r);
    s_http (fks_ops_port (ops), "GET", "/health", &r);
    cr_assert_str_eq (r.body, "{\"status\":\"healthy\",\"env\":\"dev\"}");
    s_response_free (&r);
    fks_ops_destroy (&ops);
}

Test (ops, metrics_serves_the_registry_as_prometheus_text)
{
    fks_metric_add (fks_metric_get (fks_metrics_family (s_registry, "fks_test_jobs_total",
                                                        "Jobs.", FKS_COUNTER, NULL, 0, NULL, 0),
                                    NULL), 3);
    s_response_t r;
    s_http (s_port, "GET", "/health", &r);
    s_response_free (&r);
    s_http (s_port, "GET", "/health", &r);
    s_response_free (&r);

    s_http (s_port, "GET", "/metrics", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_str_eq (r.body,
                      "# HELP fks_http_requests_total HTTP requests answered, by path and "
                      "status code.\n"
                      "# TYPE fks_http_requests_total counter\n"
                      "fks_http_requests_total{path=\"/health\",code=\"200\"} 2\n"
                      "# HELP fks_test_jobs_total Jobs.\n"
                      "# TYPE fks_test_jobs_total counter\n"
                      "fks_test_jobs_total 3\n");
    s_response_free (&r);

    s_http (s_port, "GET", "/metrics", &r);
    cr_assert (strstr (r.body, "fks_http_requests_total{path=\"/metrics\",code=\"200\"} 1\n"),
               "a scrape is counted once answered:\n%s", r.body);
    s_response_free (&r);
}

Test (ops, metrics_defaults_to_the_process_registry)
{
    fks_metric_inc (fks_metric_get (fks_counter_family ("fks_test_default_total", "D.", NULL, 0),
                                    NULL));
    fks_ops_t *ops = fks_ops_new ("dev", NULL, NULL, NULL);
    cr_assert_not_null (ops);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", 0), 0);
    s_response_t r;
    s_http (fks_ops_port (ops), "GET", "/metrics", &r);
    cr_assert_eq (r.status, 200);
    cr_assert (strstr (r.body, "\nfks_test_default_total 1\n"), "%s", r.body);
    s_response_free (&r);
    fks_ops_destroy (&ops);
}

Test (ops, other_methods_get_405_with_allow)
{
    static const char *const paths[] = { "/health", "/ready", "/metrics" };
    static const char *const methods[] = { "POST", "PUT", "DELETE" };
    for (size_t p = 0; p < 3; p++)
        for (size_t m = 0; m < 3; m++) {
            s_response_t r;
            s_http (s_port, methods[m], paths[p], &r);
            cr_assert_eq (r.status, 405, "%s %s", methods[m], paths[p]);
            cr_assert_str_eq (r.allow, "GET, HEAD");
            cr_assert_str_eq (r.content_type, "application/json");
            cr_assert_str_eq (r.body, "{\"error\":{\"code\":\"method_not_allowed\","
                                      "\"message\":\"use GET or HEAD\"}}");
            s_response_free (&r);
        }
    cr_assert_eq (atomic_load (&s_state.calls), 0, "a refused request runs no check");
    cr_assert_eq (s_requests ("/ready", "405"), 3);
    cr_assert_eq (s_requests ("/metrics", "405"), 3);
}

Test (ops, head_answers_the_headers_without_a_body)
{
    s_response_t r;
    s_http (s_port, "HEAD", "/health", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.content_type, "application/json");
    cr_assert_eq (r.len, 0);
    s_response_free (&r);
    s_http (s_port, "HEAD", "/metrics", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_eq (r.len, 0);
    s_response_free (&r);
}

Test (ops, other_paths_are_not_found)
{
    static const char *const paths[] = { "/", "/healthz", "/health/extra", "/ready/x",
                                         "/metrics.txt", "/api/v1/orders" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        s_response_t r;
        s_http (s_port, "GET", paths[i], &r);
        cr_assert_eq (r.status, 404, "%s", paths[i]);
        s_response_free (&r);
    }
    cr_assert_eq (atomic_load (&s_state.calls), 0);
}

typedef struct {
    int port;
    int ok;
} s_prober_t;

static void *
s_prober (void *arg)
{
    s_prober_t *p = arg;
    for (int i = 0; i < 25; i++) {
        s_response_t r;
        s_http (p->port, "GET", i % 2 ? "/ready" : "/health", &r);
        p->ok += r.status == 200;
        s_response_free (&r);
    }
    return NULL;
}

Test (ops, concurrent_probes_are_all_answered_and_counted)
{
    enum { N = 6 };
    pthread_t t[N];
    s_prober_t probers[N];
    for (int i = 0; i < N; i++) {
        probers[i] = (s_prober_t) { s_port, 0 };
        cr_assert_eq (pthread_create (&t[i], NULL, s_prober, &probers[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join (t[i], NULL);
        ok += probers[i].ok;
    }
    cr_assert_eq (ok, N * 25);
    cr_assert_eq (s_requests ("/health", "200"), N * 13);
    cr_assert_eq (s_requests ("/ready", "200"), N * 12);
    cr_assert_eq (atomic_load (&s_state.calls), N * 12);
}

// ---------------------------------------------------------------------------------------------
//  Mounting on a server the process already runs (the gateway's way)

static int
s_other (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    mg_send_http_ok (conn, "text/plain", 5);
    mg_write (conn, "other", 5);
    return 200;
}

Test (ops, register_mounts_the_endpoints_on_an_existing_server)
{
    const char *options[] = { "listening_ports", "127.0.0.1:0", "num_threads", "2", NULL };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    cr_assert_not_null (ctx);
    struct mg_server_port sp[2];
    cr_assert_eq (mg_get_server_ports (ctx, 2, sp), 1);
    mg_set_request_handler (ctx, "/other", s_other, NULL);
    fks_ops_t *ops = fks_ops_new ("gw", NULL, NULL, s_registry);
    fks_ops_register (ops, ctx);
    cr_assert_eq (fks_ops_port (ops), -1, "the port belongs to the server, not to ops");

    s_response_t r;
    s_http (sp[0].port, "GET", "/health", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "{\"status\":\"healthy\",\"env\":\"gw\"}");
    s_response_free (&r);
    s_http (sp[0].port, "GET", "/ready", &r);
    cr_assert_eq (r.status, 200);
    s_response_free (&r);
    s_http (sp[0].port, "POST", "/metrics", &r);
    cr_assert_eq (r.status, 405);
    s_response_free (&r);
    s_http (sp[0].port, "GET", "/other", &r);
    cr_assert_eq (r.status, 200);
    cr_assert_str_eq (r.body, "other", "the server's own routes still work");
    s_response_free (&r);
    s_http (sp[0].port, "GET", "/health/deeper", &r);
    cr_assert_eq (r.status, 404);
    s_response_free (&r);

    mg_stop (ctx);
    fks_ops_destroy (&ops);
}

// ---------------------------------------------------------------------------------------------
//  Listening failures

Test (ops, listen_on_a_port_in_use_fails)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (bind (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    cr_assert_eq (listen (fd, 1), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq (getsockname (fd, (struct sockaddr *) &sa, &len), 0);
    int taken = ntohs (sa.sin_port);

    fks_ops_t *ops = fks_ops_new ("dev", NULL, NULL, s_registry);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", taken), -1);
    cr_assert_eq (fks_ops_port (ops), -1);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", s_port), -1, "nor the port of another ops");
    cr_assert_eq (fks_ops_port (ops), -1);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", 0), 0, "a failure leaves it usable");
    cr_assert_gt (fks_ops_port (ops), 0);
    fks_ops_destroy (&ops);
    close (fd);
}

Test (ops, listen_refuses_bad_addresses_ports_and_a_second_call)
{
    fks_ops_t *ops = fks_ops_new ("dev", NULL, NULL, s_registry);
    static const char *const bad[] = { NULL, "", "localhost", "::1", "127.0.0.1:80",
                                       "127.0.0.1,127.0.0.2", "256.0.0.1", "127.0.0.1 " };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (fks_ops_listen (ops, bad[i], 0), -1, "address %zu", i);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", -1), -1);
    cr_assert_eq (fks_ops_listen (ops, "127.0.0.1", 65536), -1);
    cr_assert_eq (fks_ops_port (ops), -1);
    cr_assert_eq (fks_ops_listen (NULL, "127.0.0.1", 0), -1);
    cr_assert_eq (fks_ops_port (NULL), -1);
    cr_assert_eq (fks_ops_listen (s_ops, "127.0.0.1", 0), -1, "already listening");
    cr_assert_eq (fks_ops_port (s_ops), s_port);
    fks_ops_destroy (&ops);
    fks_ops_destroy (&ops);             /* NULL: no-op */
    fks_ops_destroy (NULL);
}
