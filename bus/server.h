/*  server.h - the broker's sockets: the ROUTER that publishers and replicas talk to, the XPUB
 *  event stream, and the in-process socket through which the persistence and reconciler
 *  threads hand messages to the broker.
 *
 *  fks_bus_server_run is the broker's single thread: it polls the sockets, validates every
 *  frame (bus/protocol.h, fks_envelope_peek), drives the core (bus/broker.h) and writes its
 *  deliveries, and keeps the bus metrics. Nothing it receives can crash it or make it
 *  allocate without bound: bad frames are counted (fks_bus_bad_frames_total), logged at most
 *  once a second per kind, and dropped.
 */
#ifndef FKS_BUS_SERVER_H
#define FKS_BUS_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "bus/broker.h"
#include "common/metrics.h"

typedef struct fks_bus_server_t fks_bus_server_t;

typedef struct {
    const char *bind;           /* ROUTER endpoint, e.g. tcp://127.0.0.1:5570 */
    const char *stream_bind;    /* XPUB endpoint, e.g. tcp://127.0.0.1:5571 */
    fks_broker_cfg_t broker;
    int stream_hwm;             /* messages queued per observer before it loses them */
    int stream_sndbuf;          /* kernel send buffer per observer (SO_SNDBUF), 0: system's */
    int64_t drain_timeout_ms;   /* SIGTERM: how long to wait for in-flight acks */
    int max_frame;              /* transport limit per frame (ZMQ_MAXMSGSIZE), bytes */
    fks_metrics_t *metrics;     /* NULL: the default registry */
} fks_bus_server_cfg_t;

/*  Defaults: the broker defaults, tcp://127.0.0.1:5570 and :5571, 10000, system, 10 s,
 *  512 KiB (twice the envelope limit, so that oversized envelopes are seen and counted). */
void fks_bus_server_cfg_defaults (fks_bus_server_cfg_t *cfg);

/*  Creates the sockets on zctx (a ZeroMQ context the caller owns and terminates after
 *  destroying the server) and binds them. Returns NULL (logged) when an endpoint cannot be
 *  bound or the config is invalid. */
fks_bus_server_t *fks_bus_server_new (void *zctx, const fks_bus_server_cfg_t *cfg);
void fks_bus_server_destroy (fks_bus_server_t **self_p);

/*  The inproc endpoint on which the server PULLs internal messages (connect a PUSH socket on
 *  the same context). Frames, first a one-byte kind:
 *      'P' [topic][envelope]            publish like a client would (routed and streamed)
 *      'G' [group][topic][envelope]     to one group only, not streamed (the reconciler)
 *      'D' [group][prefix]...           declare a group persisted by an earlier run */
const char *fks_bus_server_internal_endpoint (const fks_bus_server_t *self);

/*  Where dead letters and group changes go: the store's inproc PULL endpoint (bus/store.h).
 *  Without one, dead letters are only logged and published. Call before run. 0 or -1. */
int fks_bus_server_set_store (fks_bus_server_t *self, const char *store_endpoint);

/*  Runs the broker until stop_fd becomes readable, then drains: refuses new publishes and
 *  joins, stops delivering, waits up to drain_timeout_ms for in-flight acks, tells the
 *  replicas it is leaving. Returns 0, or -1 on a fatal socket error. */
int fks_bus_server_run (fks_bus_server_t *self, int stop_fd);

#endif
