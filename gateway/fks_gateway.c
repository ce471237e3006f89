/*  fks_gateway.c - fks-gateway: the program users touch first.
 *
 *  Reads its configuration (server.h lists every variable), refuses to start without
 *  FKS_WEBHOOK_SECRET or FKS_ADMIN_KEY (naming the one missing), builds the parts - the bus
 *  client for publishing, the shared rate limiter, the webhook authenticator, the inbox
 *  committers, the security-event recorder, the API and its key verifier, the stream hub - and
 *  serves them on one civetweb context with /health, /ready and /metrics. Then it waits for
 *  SIGTERM or SIGINT and stops in the order that loses nothing: streams are told to end, the
 *  server stops taking requests and finishes those in flight (their alerts still commit),
 *  and only then do the committers and the rest stop.
 *
 *  /ready is 200 only when PostgreSQL answers a query, Redis answers PING, and the bus's event
 *  stream is connected.
 */
#include "bus/client.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ops.h"
#include "common/pg.h"
#include "common/redis.h"
#include "gateway/api.h"
#include "gateway/apikeys.h"
#include "gateway/auth.h"
#include "gateway/inbox.h"
#include "gateway/ratelimit.h"
#include "gateway/server.h"
#include "gateway/stream.h"
#include "gateway/webhook.h"

#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  What /ready checks, each behind its own mutex (the handles are not thread-safe).
typedef struct {
    pthread_mutex_t mutex;
    fks_pg_t *pg;
    fks_redis_t *redis;
    fks_stream_t *stream;
} s_ready_t;

static int
s_ready (void *arg, char *why, size_t cap)
{
    s_ready_t *r = arg;
    pthread_mutex_lock (&r->mutex);
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    int rc = 0;
    if (fks_pg_ping (r->pg, &perr) != 0) {
        snprintf (why, cap, "PostgreSQL: %s", perr.msg);
        rc = -1;
    }
    else if (fks_redis_ping (r->redis, &rerr) != 0) {
        snprintf (why, cap, "Redis: %s", rerr.msg);
        rc = -1;
    }
    else if (!fks_stream_bus_connected (r->stream)) {
        snprintf (why, cap, "bus: the event stream (FKS_BUS_STREAM_URL) is not connected");
        rc = -1;
    }
    pthread_mutex_unlock (&r->mutex);
    return rc;
}

//  After a batch commits: publish its envelopes. The client fails at once when the broker is
//  not connected (publish_timeout_ms -1); the reconciler publishes those later.
static void
s_publish (void *arg, size_t n, const char *const *types, const void *const *envelopes,
           const size_t *lengths)
{
    fks_bus_client_t *bus = arg;
    for (size_t i = 0; i < n; i++)
        fks_bus_publish (bus, types[i], envelopes[i], lengths[i]);
}

static void
s_die (const char *fmt, const char *what)
{
    fks_error (fmt, what);
    fprintf (stderr, "fks-gateway: ");
    fprintf (stderr, fmt, what);
    fprintf (stderr, "\n");
}

int
main (void)
{
    if (fks_log_init ("gateway") != 0)
        return 1;
    //  Signals are taken by sigwait in this thread only; every thread started later
    //  inherits the mask. SIGPIPE is ignored: a client gone mid-write is an error return.
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &set, NULL);
    signal (SIGPIPE, SIG_IGN);

    fks_gateway_config_t cfg;
    char err[512];
    if (fks_gateway_config_load (&cfg, err, sizeof err) != 0) {
        s_die ("%s", err);
        return 1;
    }
    int rc = 1;
    fks_auth_t *auth = NULL;
    fks_bus_client_t *bus = NULL;
    fks_ratelimit_t *rl = NULL;
    fks_inbox_t *inbox = NULL;
    fks_security_t *security = NULL;
    fks_apikeys_t *keys = NULL;
    fks_api_t *api = NULL;
    fks_stream_t *stream = NULL;
    fks_webhook_t *webhook = NULL;
    fks_ops_t *ops = NULL;
    fks_server_t *server = NULL;
    s_ready_t ready = { .mutex = PTHREAD_MUTEX_INITIALIZER };

    mg_init_library (0);
    auth = fks_auth_new (cfg.webhook_secret, strlen (cfg.webhook_secret), cfg.replay_window_s);
    if (!auth) {
        s_die ("%s", "FKS_WEBHOOK_SECRET: cannot set up the webhook authenticator");
        goto done;
    }
    if (fks_auth_set_allowlist (auth, cfg.allowlist, err, sizeof err) != 0) {
        fks_error ("FKS_GATEWAY_ALLOWLIST: %s", err);
        fprintf (stderr, "fks-gateway: FKS_GATEWAY_ALLOWLIST: %s\n", err);
        goto done;
    }
    if (fks_auth_set_trusted_proxies (auth, cfg.trusted_proxies, err, sizeof err) != 0) {
        fks_error ("FKS_GATEWAY_TRUSTED_PROXIES: %s", err);
        fprintf (stderr, "fks-gateway: FKS_GATEWAY_TRUSTED_PROXIES: %s\n", err);
        goto done;
    }
    fks_bus_client_opts_t bopts = { .url = cfg.bus_url, .name = "gateway",
                                    .publish_timeout_ms = -1 };
    bus = fks_bus_client_new (&bopts);
    if (!bus) {
        s_die ("%s", "FKS_BUS_URL: cannot create the bus client");
        goto done;
    }
    fks_ratelimit_opts_t ropts = { .redis_url = cfg.redis_url, .window_ms = cfg.rate_window_ms };
    rl = fks_ratelimit_new (&ropts);
    if (!rl) {
        s_die ("%s", "FKS_REDIS_URL: cannot set up the rate limiter");
        goto done;
    }
    fks_inbox_opts_t iopts = {
        .pg_url = cfg.pg_url, .committers = cfg.committers, .batch_max = cfg.batch_max,
        .queue_max = cfg.queue_max, .timeout_ms = (int) cfg.commit_timeout_ms,
        .idem_window_ms = cfg.idem_window_ms, .on_commit = s_publish, .on_commit_arg = bus };
    inbox = fks_inbox_new (&iopts);
    security = fks_security_new (cfg.pg_url, bus, rl, 60);
    keys = fks_apikeys_new (cfg.admin_key);
    if (!inbox || !security || !keys) {
        s_die ("%s", "cannot start the inbox (FKS_PG_URL)");
        goto done;
    }
    fks_api_opts_t aopts = { .cfg = &cfg, .keys = keys, .rl = rl, .security = security,
                             .bus = bus };
    api = fks_api_new (&aopts);
    stream = api ? fks_stream_new (&cfg, api) : NULL;
    fks_webhook_opts_t wopts = { .cfg = &cfg, .inbox = inbox, .auth = auth, .rl = rl,
                                 .security = security };
    webhook = fks_webhook_new (&wopts);
    if (!api || !stream || !webhook) {
        s_die ("%s", "cannot start the REST API and stream (FKS_PG_URL, FKS_BUS_STREAM_URL)");
        goto done;
    }
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    ready.pg = fks_pg_new (cfg.pg_url, NULL, 0, &perr);
    ready.redis = fks_redis_new (cfg.redis_url, 1000, 1000, &rerr);
    ready.stream = stream;
    if (!ready.pg || !ready.redis) {
        s_die ("%s", ready.pg ? "FKS_REDIS_URL is not valid" : "FKS_PG_URL is not valid");
        goto done;
    }
    ops = fks_ops_new (cfg.env, s_ready, &ready, NULL);
    server = ops ? fks_server_new (&cfg) : NULL;
    if (!server) {
        s_die ("%s", "cannot start the HTTP server (FKS_HTTP_BIND, FKS_GATEWAY_PORT)");
        goto done;
    }
    struct mg_context *ctx = fks_server_ctx (server);
    fks_ops_register (ops, ctx);
    fks_webhook_register (webhook, ctx);
    fks_stream_register (stream, ctx);
    fks_api_register (api, ctx);

    char fields[256] = "";
    fks_log_field_int (fields, sizeof fields, "port", fks_server_port (server));
    fks_log_field_str (fields, sizeof fields, "bind", cfg.bind);
    fks_log_field_int (fields, sizeof fields, "threads", cfg.threads);
    fks_log_field_str (fields, sizeof fields, "env", cfg.env);
    fks_log (FKS_LOG_INFO, NULL, fields, "gateway listening on %s:%d", cfg.bind,
             fks_server_port (server));

    int sig = 0;
    while (sigwait (&set, &sig) != 0)
        ;
    fks_info ("gateway stopping (signal %d)", sig);
    rc = 0;

done:
    fks_stream_stop (stream);
    fks_server_destroy (&server);       /* requests in flight finish; their alerts commit */
    fks_webhook_destroy (&webhook);
    fks_stream_destroy (&stream);
    fks_api_destroy (&api);
    fks_inbox_destroy (&inbox);
    fks_security_destroy (&security);
    fks_apikeys_destroy (&keys);
    fks_ops_destroy (&ops);
    fks_ratelimit_destroy (&rl);
    fks_bus_client_destroy (&bus);
    fks_auth_destroy (&auth);
    fks_pg_destroy (&ready.pg);
    fks_redis_destroy (&ready.redis);
    fks_gateway_config_free (&cfg);
    mg_exit_library ();
    if (rc == 0)
        fks_info ("gateway stopped");
    return rc;
}
