/*  fks_bus.c - fks-bus, the FKS message broker: consumer groups with acks, redelivery and dead
 *  letters, an event stream, and the reconciler.
 *
 *  This file is the program around the modules: it reads the FKS_BUS_* configuration
 *  (docs/BUS.md lists every variable), starts the persistence thread (bus/store.c), the
 *  reconciler thread (bus/reconciler.c) and the ops endpoints (/health, /ready, /metrics on
 *  FKS_HTTP_BIND:FKS_BUS_PORT), then runs the broker loop (bus/server.c) on the main thread
 *  until SIGTERM or SIGINT, drains, and exits 0. A bad configuration exits 2 with a message
 *  naming the variable; a socket that cannot be bound exits 1.
 *
 *  FKS_PG_URL is required: without PostgreSQL there is no dead-letter table and no reconciler,
 *  so SIGKILL would lose messages. FKS_BUS_STANDALONE=1 runs without it anyway (benchmarks,
 *  experiments), and says so loudly.
 */
#include "bus/client.h"
#include "bus/reconciler.h"
#include "bus/server.h"
#include "bus/store.h"
#include "common/config.h"
#include "common/log.h"
#include "common/ops.h"
#include "common/pg.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

static int s_stop_fd = -1;

static void
s_on_signal (int sig)
{
    (void) sig;
    uint64_t one = 1;
    ssize_t rc = write (s_stop_fd, &one, sizeof one);
    (void) rc;
}

typedef struct {
    char *env, *pg_url, *bind, *stream_bind, *http_bind;
    int port;
    bool standalone;
    int io_threads;
    fks_bus_server_cfg_t server;
    fks_reconciler_cfg_t reconciler;
} s_config_t;

typedef struct {
    fks_bus_store_t *store;
    bool standalone;
} s_ready_ctx_t;

static int
s_ready (void *arg, char *why, size_t cap)
{
    s_ready_ctx_t *ctx = arg;
    if (ctx->standalone || !ctx->store)
        return 0;
    return fks_bus_store_ready (ctx->store, why, cap);
}

#define S_CHECK(call) \
    do { if ((call) < 0) { fprintf (stderr, "fks-bus: %s\n", err.msg); return -1; } } while (0)

static int
s_read_config (s_config_t *c)
{
    fks_config_err_t err;
    int64_t v;
    memset (c, 0, sizeof *c);
    fks_bus_server_cfg_defaults (&c->server);
    fks_reconciler_cfg_defaults (&c->reconciler);
    fks_broker_cfg_t *b = &c->server.broker;

    S_CHECK (fks_config_str ("FKS_ENV", "dev", &c->env, &err));
    S_CHECK (fks_config_str ("FKS_BUS_BIND", "tcp://127.0.0.1:5570", &c->bind, &err));
    S_CHECK (fks_config_str ("FKS_BUS_STREAM_BIND", "tcp://127.0.0.1:5571", &c->stream_bind,
                             &err));
    S_CHECK (fks_config_str ("FKS_HTTP_BIND", "127.0.0.1", &c->http_bind, &err));
    S_CHECK (fks_config_port ("FKS_BUS_PORT", 8004, &c->port, &err));
    S_CHECK (fks_config_bool ("FKS_BUS_STANDALONE", false, &c->standalone, &err));
    S_CHECK (fks_config_str ("FKS_PG_URL", NULL, &c->pg_url, &err));
    if (!c->pg_url && !c->standalone) {
        fprintf (stderr, "fks-bus: FKS_PG_URL is required (set FKS_PG_URL or FKS_PG_URL_FILE; "
                 "FKS_BUS_STANDALONE=1 runs without dead letters or reconciler)\n");
        return -1;
    }
    S_CHECK (fks_config_duration_ms ("FKS_BUS_ACK_DEADLINE", 30000, 100, 86400000,
                                     &b->ack_deadline_ms, &err));
    S_CHECK (fks_config_duration_ms ("FKS_BUS_HEARTBEAT", 1000, 50, 60000, &b->heartbeat_ms,
                                     &err));
    S_CHECK (fks_config_int ("FKS_BUS_LIVENESS", 3, 2, 100, &v, &err));
    b->liveness = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_MAX_DELIVERIES", 5, 1, 1000, &v, &err));
    b->max_deliveries = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_QUEUE_LIMIT", 100000, 1, 100000000, &v, &err));
    b->queue_limit = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_QUEUE_MAX_BYTES", 256LL * 1024 * 1024, 1024 * 1024,
                             1LL << 40, &v, &err));
    b->queue_max_bytes = (size_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_MAX_GROUPS", 64, 1, 1024, &v, &err));
    b->max_groups = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_MAX_REPLICAS", 4096, 1, 100000, &v, &err));
    b->max_replicas = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_RECENT_IDS", 20000, 0, 10000000, &v, &err));
    b->recent_ids = (uint32_t) v;
    S_CHECK (fks_config_int ("FKS_BUS_STREAM_HWM", 10000, 1, 10000000, &v, &err));
    c->server.stream_hwm = (int) v;
    S_CHECK (fks_config_int ("FKS_BUS_STREAM_SNDBUF", 0, 0, 64LL * 1024 * 1024, &v, &err));
    c->server.stream_sndbuf = (int) v;
    S_CHECK (fks_config_duration_ms ("FKS_BUS_DRAIN_TIMEOUT", 10000, 0, 600000,
                                     &c->server.drain_timeout_ms, &err));
    S_CHECK (fks_config_int ("FKS_BUS_IO_THREADS", 1, 1, 16, &v, &err));
    c->io_threads = (int) v;
    S_CHECK (fks_bus_reconcile_timing (&c->reconciler.interval_ms, &c->reconciler.after_ms,
                                       &err));
    S_CHECK (fks_config_duration_ms ("FKS_BUS_RECONCILE_MAX_AGE", 3600000, 1000,
                                     30LL * 86400000, &c->reconciler.max_age_ms, &err));
    S_CHECK (fks_config_int ("FKS_BUS_RECONCILE_BATCH", 5000, 1, 100000, &v, &err));
    c->reconciler.batch = (int) v;
    S_CHECK (fks_config_int ("FKS_BUS_RECONCILE_SCAN", 10000, 1, 1000000, &v, &err));
    c->reconciler.scan = (int) v;
    if (c->reconciler.max_age_ms <= c->reconciler.after_ms) {
        fprintf (stderr, "fks-bus: FKS_BUS_RECONCILE_MAX_AGE must be longer than "
                 "FKS_BUS_RECONCILE_AFTER\n");
        return -1;
    }
    c->server.bind = c->bind;
    c->server.stream_bind = c->stream_bind;
    c->reconciler.pg_url = c->pg_url;
    return 0;
}

static void
s_free_config (s_config_t *c)
{
    free (c->env);
    free (c->pg_url);
    free (c->bind);
    free (c->stream_bind);
    free (c->http_bind);
}

int
main (void)
{
    if (fks_log_init ("fks-bus") != 0)
        fks_log (FKS_LOG_WARN, NULL, NULL, "FKS_LOG_LEVEL not understood; logging at info");
    s_config_t cfg;
    if (s_read_config (&cfg) != 0) {
        s_free_config (&cfg);
        return 2;
    }
    s_stop_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_stop_fd < 0) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "eventfd: %s", strerror (errno));
        s_free_config (&cfg);
        return 1;
    }
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    int exit_code = 1;
    fks_bus_server_t *server = NULL;
    fks_bus_store_t *store = NULL;
    fks_reconciler_t *reconciler = NULL;
    fks_ops_t *ops = NULL;
    s_ready_ctx_t ready = { NULL, cfg.standalone };

    void *zctx = zmq_ctx_new ();
    if (!zctx)
        goto done;
    zmq_ctx_set (zctx, ZMQ_IO_THREADS, cfg.io_threads);
    zmq_ctx_set (zctx, ZMQ_BLOCKY, 0);

    server = fks_bus_server_new (zctx, &cfg.server);
    if (!server)
        goto done;
    if (cfg.pg_url) {
        char *redacted = fks_pg_url_redacted (cfg.pg_url);
        fks_log (FKS_LOG_INFO, NULL, NULL, "PostgreSQL: %s", redacted ? redacted : "?");
        free (redacted);
        store = fks_bus_store_new (zctx, cfg.pg_url, fks_bus_server_internal_endpoint (server));
        if (!store || fks_bus_server_set_store (server, fks_bus_store_endpoint (store)) != 0)
            goto done;
        reconciler = fks_reconciler_new (zctx, &cfg.reconciler,
                                         fks_bus_server_internal_endpoint (server));
        if (!reconciler)
            goto done;
    }
    else
        fks_log (FKS_LOG_WARN, NULL, NULL, "standalone: no PostgreSQL, so dead letters are only "
                 "logged and nothing is reconciled; a broker restart loses its queues");
    ready.store = store;

    ops = fks_ops_new (cfg.env, s_ready, &ready, NULL);
    if (!ops || fks_ops_listen (ops, cfg.http_bind, cfg.port) != 0)
        goto done;

    exit_code = fks_bus_server_run (server, s_stop_fd) == 0 ? 0 : 1;

done:
    //  The sockets close first, so that replicas find the next broker without waiting for
    //  the threads below to finish what they are doing.
    fks_bus_server_destroy (&server);
    fks_ops_destroy (&ops);
    fks_reconciler_destroy (&reconciler);
    fks_bus_store_destroy (&store);
    //  A signal during the wait interrupts it (EINTR): it must be restarted, or what libzmq
    //  still holds is never freed.
    while (zctx && zmq_ctx_term (zctx) == -1 && errno == EINTR)
        ;
    close (s_stop_fd);
    s_free_config (&cfg);
    if (exit_code == 0)
        fks_log (FKS_LOG_INFO, NULL, NULL, "fks-bus exited cleanly");
    return exit_code;
}
