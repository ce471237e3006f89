/*  bench_bus.c - bench-bus: how fast the bus is, next to raw ZeroMQ on the same machine.
 *
 *  One run measures, in --rounds rounds (default 5) of --seconds each (default 2):
 *    1. raw ZeroMQ PUSH -> PULL over tcp on loopback, 300-byte messages (the ceiling);
 *    2. the broker path publish -> group -> deliver -> ack, through a real fks-bus process
 *       (started here, standalone, on free ports) with 1 replica, then 3 replicas, 300-byte
 *       envelopes, the publisher kept at most --outstanding messages ahead of the acks so the
 *       queue never fills;
 *  interleaved (raw, 1, 3, raw, 1, 3, ...) so that a change in the machine's background load
 *  affects all three alike, and reports the median of each and of the per-round ratios. Then
 *    3. latency of the broker path (publish to the handler's receive, from the envelope's ts
 *       on the wall clock) with 1 replica at a paced rate, by default 10% of the median raw
 *       rate: p50, p99, p99.9, max, over --seconds x --rounds.
 *  docs/PERFORMANCE.md records a run. It is not a test: nothing is asserted, the figures
 *  depend on the machine.
 *
 *  Usage: bench-bus [--rounds N] [--seconds S] [--outstanding N] [--latency-rate R]
 *                   [--bus PATH]
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus/client.h"
#include "bus/envelope.h"
#include "bus/protocol.h"
#include "common/id.h"
#include "common/log.h"

#define MSG_SIZE 300
#define MAX_SAMPLES (4 * 1000 * 1000)

extern char **environ;

static double s_seconds = 2;
static int s_rounds = 5;
static long s_outstanding = 5000;
static int s_window = 1000;            /* each replica's credit window */
static double s_latency_rate = 0;       /* 0: 10% of raw */
static const char *s_bus_path = FKS_BUS_EXE;

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (fd < 0 || bind (fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        perror ("bench-bus: bind");
        exit (1);
    }
    socklen_t len = sizeof sa;
    getsockname (fd, (struct sockaddr *) &sa, &len);
    close (fd);
    return ntohs (sa.sin_port);
}

//  --------------------------------------------------------------------------
//  1. Raw PUSH/PULL

typedef struct {
    char endpoint[64];
    atomic_bool stop;
    atomic_long received;
} raw_t;

static void *
s_raw_pull (void *arg)
{
    raw_t *r = arg;
    void *ctx = zmq_ctx_new ();
    void *pull = zmq_socket (ctx, ZMQ_PULL);
    int timeout = 100;
    zmq_setsockopt (pull, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_bind (pull, r->endpoint);
    char buf[MSG_SIZE];
    long n = 0;
    while (!atomic_load (&r->stop)) {
        if (zmq_recv (pull, buf, sizeof buf, 0) == MSG_SIZE)
            atomic_store (&r->received, ++n);
    }
    zmq_close (pull);
    zmq_ctx_term (ctx);
    return NULL;
}

static double
s_bench_raw (void)
{
    raw_t r = { .received = 0 };
    snprintf (r.endpoint, sizeof r.endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    pthread_t th;
    pthread_create (&th, NULL, s_raw_pull, &r);
    void *ctx = zmq_ctx_new ();
    void *push = zmq_socket (ctx, ZMQ_PUSH);
    int linger = 0, timeout = 100;
    zmq_setsockopt (push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    usleep (100000);
    zmq_connect (push, r.endpoint);
    char msg[MSG_SIZE];
    memset (msg, 'x', sizeof msg);
    //  Warm up, then measure what the receiver got over the window.
    int64_t warm_end = s_now_ns () + 500000000LL;
    while (s_now_ns () < warm_end)
        zmq_send (push, msg, sizeof msg, 0);
    long start_count = atomic_load (&r.received);
    int64_t t0 = s_now_ns ();
    int64_t end = t0 + (int64_t) (s_seconds * 1e9);
    for (long i = 0; ; i++) {
        zmq_send (push, msg, sizeof msg, 0);
        if ((i & 1023) == 0 && s_now_ns () >= end)
            break;
    }
    long got = atomic_load (&r.received) - start_count;
    double elapsed = (double) (s_now_ns () - t0) / 1e9;
    atomic_store (&r.stop, true);
    zmq_close (push);
    zmq_ctx_term (ctx);
    pthread_join (th, NULL);
    return (double) got / elapsed;
}

//  --------------------------------------------------------------------------
//  The broker

static pid_t s_bus_pid;
static char s_bus_url[64];

static void
s_bus_start (void)
{
    int port = s_free_port (), stream = s_free_port (), http = s_free_port ();
    snprintf (s_bus_url, sizeof s_bus_url, "tcp://127.0.0.1:%d", port);
    static char vars[8][128];
    snprintf (vars[0], sizeof vars[0], "FKS_BUS_BIND=%s", s_bus_url);
    snprintf (vars[1], sizeof vars[1], "FKS_BUS_STREAM_BIND=tcp://127.0.0.1:%d", stream);
    snprintf (vars[2], sizeof vars[2], "FKS_BUS_PORT=%d", http);
    snprintf (vars[3], sizeof vars[3], "FKS_BUS_STANDALONE=1");
    snprintf (vars[4], sizeof vars[4], "FKS_LOG_LEVEL=warn");
    snprintf (vars[5], sizeof vars[5], "FKS_ENV=bench");
    char *env[64];
    size_t n = 0;
    for (char **e = environ; *e && n < 50; e++)
        if (strncmp (*e, "FKS_", 4) != 0)
            env[n++] = *e;
    for (int i = 0; i < 6; i++)
        env[n++] = vars[i];
    env[n] = NULL;
    pid_t parent = getpid ();
    s_bus_pid = fork ();
    if (s_bus_pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        char *argv[] = { (char *) s_bus_path, NULL };
        execve (s_bus_path, argv, env);
        perror ("bench-bus: exec fks-bus");
        _exit (127);
    }
    usleep (300000);
    int status;
    if (waitpid (s_bus_pid, &status, WNOHANG) != 0) {
        fprintf (stderr, "bench-bus: fks-bus (%s) did not start\n", s_bus_path);
        exit (1);
    }
}

static void
s_bus_stop (void)
{
    kill (s_bus_pid, SIGTERM);
    waitpid (s_bus_pid, NULL, 0);
}

//  A 300-byte data.quality envelope; the id and ts are patched per message in place.
typedef struct {
    uint8_t data[MSG_SIZE + 64];
    size_t size;
    size_t id_off, ts_off;
} tmpl_t;

static void
s_template (tmpl_t *t)
{
    fks_envelope_hdr_t hdr;
    fks_envelope_hdr_init (&hdr, "data.quality", "bench", NULL, NULL);
    memset (hdr.id.b, 0xA5, FKS_ID_SIZE);
    hdr.ts = 0x0102030405060708LL;
    size_t pad = 100;
    for (int round = 0; round < 2; round++) {
        char detail[400];
        memset (detail, 'd', pad);
        detail[pad] = 0;
        msgpack_sbuffer body, out;
        msgpack_sbuffer_init (&body);
        msgpack_sbuffer_init (&out);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 3);
        fks_pack_kv_str (&pk, "symbol", "BTCUSDT");
        fks_pack_kv_str (&pk, "kind", "gap");
        fks_pack_kv_str (&pk, "detail", detail);
        fks_envelope_err_t err;
        if (fks_envelope_encode (&hdr, body.data, body.size, &out, &err) != 0) {
            fprintf (stderr, "bench-bus: %s\n", err.msg);
            exit (1);
        }
        if (round == 0)
            pad += MSG_SIZE - out.size;         /* now exactly 300 bytes */
        else {
            memcpy (t->data, out.data, out.size);
            t->size = out.size;
        }
        msgpack_sbuffer_destroy (&body);
        msgpack_sbuffer_destroy (&out);
    }
    uint8_t idpat[FKS_ID_SIZE];
    memset (idpat, 0xA5, sizeof idpat);
    uint8_t tspat[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };     /* msgpack int64 is big-endian */
    uint8_t *p = memmem (t->data, t->size, idpat, sizeof idpat);
    uint8_t *q = memmem (t->data, t->size, tspat, sizeof tspat);
    if (!p || !q) {
        fprintf (stderr, "bench-bus: cannot find the id and ts in the template\n");
        exit (1);
    }
    t->id_off = (size_t) (p - t->data);
    t->ts_off = (size_t) (q - t->data);
}

static void
s_patch (tmpl_t *t, uint64_t run, uint64_t seq, int64_t ts)
{
    uint8_t *id = t->data + t->id_off;
    for (int i = 0; i < 8; i++) {
        id[i] = (uint8_t) (run >> (56 - 8 * i));
        id[8 + i] = (uint8_t) (seq >> (56 - 8 * i));
    }
    uint8_t *p = t->data + t->ts_off;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) ((uint64_t) ts >> (56 - 8 * i));
}

//  --------------------------------------------------------------------------
//  2./3. Broker path

typedef struct {
    atomic_long acked;
    atomic_bool stop;
    bool measure_latency;
    int64_t *samples;               /* latency ns, consumer 0 only */
    atomic_long n_samples;
    int window;
    char group[32];
    atomic_int joined;
} path_t;

static int64_t
s_ts_of (const uint8_t *data, size_t size, size_t ts_off)
{
    if (ts_off + 8 > size)
        return 0;
    int64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (int64_t) (((uint64_t) v << 8) | data[ts_off + i]);
    return v;
}

typedef struct {
    path_t *path;
    size_t ts_off;
    int index;
} consumer_arg_t;

static void *
s_consumer (void *arg)
{
    consumer_arg_t *c = arg;
    path_t *p = c->path;
    char name[32];
    snprintf (name, sizeof name, "bench-%d", c->index);
    fks_bus_client_opts_t opts = { .url = s_bus_url, .name = name };
    fks_bus_client_t *bus = fks_bus_client_new (&opts);
    const char *prefixes[1] = { "data." };
    if (!bus || fks_bus_join (bus, p->group, prefixes, 1, (unsigned) p->window) != 0) {
        fprintf (stderr, "bench-bus: consumer cannot join\n");
        exit (1);
    }
    while (!fks_bus_joined (bus))
        usleep (10000);
    atomic_fetch_add (&p->joined, 1);
    while (!atomic_load (&p->stop)) {
        fks_bus_msg_t *msg = fks_bus_recv (bus, 50);
        if (!msg)
            continue;
        if (p->measure_latency) {
            size_t size;
            const uint8_t *data = fks_bus_msg_data (msg, &size);
            int64_t lat = fks_now_ns () - s_ts_of (data, size, c->ts_off);
            long i = atomic_fetch_add (&p->n_samples, 1);
            if (i < MAX_SAMPLES)
                p->samples[i] = lat;
        }
        fks_bus_ack (bus, &msg);
        atomic_fetch_add (&p->acked, 1);
    }
    fks_bus_client_destroy (&bus);
    return NULL;
}

static int
s_cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double
s_median (const double *v, int n)
{
    double sorted[64];
    memcpy (sorted, v, (size_t) n * sizeof *v);
    qsort (sorted, (size_t) n, sizeof *sorted, s_cmp_double);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

//  Runs the broker path with `replicas` consumers. rate 0: as fast as the acks allow (returns
//  acks/s); rate > 0: paced, latency percentiles printed (returns acks/s too).
static double
s_bench_path (int replicas, double rate, double *p50, double *p99, double *p999, double *pmax)
{
    //  A fresh broker for every measurement: a group outlives its replicas by design (its
    //  messages wait for them), so a broker reused across rounds would go on queueing every
    //  message for the groups of the earlier rounds, and each round would measure more
    //  groups than it says.
    s_bus_start ();
    static uint64_t run;
    run++;
    path_t p = { .acked = 0, .window = s_window, .measure_latency = rate > 0 };
    snprintf (p.group, sizeof p.group, "bench%llu", (unsigned long long) run);
    if (p.measure_latency)
        p.samples = malloc (MAX_SAMPLES * sizeof *p.samples);
    tmpl_t t;
    s_template (&t);
    pthread_t th[8];
    consumer_arg_t args[8];
    for (int i = 0; i < replicas; i++) {
        args[i] = (consumer_arg_t) { &p, t.ts_off, i };
        pthread_create (&th[i], NULL, s_consumer, &args[i]);
    }
    while (atomic_load (&p.joined) < replicas)
        usleep (10000);
    fks_bus_client_opts_t opts = { .url = s_bus_url, .name = "bench-pub",
                                   .publish_timeout_ms = 1000 };
    fks_bus_client_t *pub = fks_bus_client_new (&opts);
    uint64_t run_id = ((uint64_t) getpid () << 32) | run;
    uint64_t seq = 0;
    long failed = 0;
    //  Warm-up 0.5 s, then the measured window.
    int64_t start = s_now_ns ();
    int64_t measure_from = start + 500000000LL;
    int64_t end = measure_from + (int64_t) (s_seconds * 1e9);
    long acked_at_start = -1;
    int64_t t0 = 0;
    double interval_ns = rate > 0 ? 1e9 / rate : 0;
    int64_t next_send = start;
    for (;;) {
        int64_t now = s_now_ns ();
        if (acked_at_start < 0 && now >= measure_from) {
            acked_at_start = atomic_load (&p.acked);
            atomic_store (&p.n_samples, 0);
            t0 = now;
        }
        if (now >= end)
            break;
        if (rate > 0) {
            //  Pacing by short sleeps: a busy wait would take a core from the broker.
            if (now < next_send) {
                struct timespec ts = { 0, 50000 };
                nanosleep (&ts, NULL);
                continue;
            }
            next_send += (int64_t) interval_ns;
            //  Descheduled for more than a millisecond: do not catch up in a burst, which
            //  would measure the burst rather than the steady rate.
            if (now - next_send > 1000000)
                next_send = now;
        }
        else
        if ((long) seq - atomic_load (&p.acked) >= s_outstanding) {
            struct timespec ts = { 0, 20000 };
            nanosleep (&ts, NULL);          /* the consumers are behind: let them run */
            continue;
        }
        s_patch (&t, run_id, ++seq, fks_now_ns ());
        if (fks_bus_publish (pub, "data.quality", t.data, t.size) != 0)
            failed++;
    }
    long acked = atomic_load (&p.acked) - acked_at_start;
    double elapsed = (double) (s_now_ns () - t0) / 1e9;
    long n = atomic_load (&p.n_samples);
    atomic_store (&p.stop, true);
    for (int i = 0; i < replicas; i++)
        pthread_join (th[i], NULL);
    fks_bus_client_destroy (&pub);
    if (failed)
        fprintf (stderr, "bench-bus: %ld publishes failed\n", failed);
    if (p.measure_latency && n > 0) {
        if (n > MAX_SAMPLES)
            n = MAX_SAMPLES;
        qsort (p.samples, (size_t) n, sizeof *p.samples, s_cmp);
        *p50 = (double) p.samples[n / 2] / 1000.0;
        *p99 = (double) p.samples[(size_t) ((double) n * 0.99)] / 1000.0;
        *p999 = (double) p.samples[(size_t) ((double) n * 0.999)] / 1000.0;
        *pmax = (double) p.samples[n - 1] / 1000.0;
    }
    free (p.samples);
    s_bus_stop ();
    return (double) acked / elapsed;
}

int
main (int argc, char **argv)
{
    static struct option opts[] = {
        { "seconds", required_argument, NULL, 's' },
        { "rounds", required_argument, NULL, 'n' },
        { "outstanding", required_argument, NULL, 'o' },
        { "window", required_argument, NULL, 'w' },
        { "latency-rate", required_argument, NULL, 'r' },
        { "bus", required_argument, NULL, 'b' },
        { NULL, 0, NULL, 0 } };
    int c;
    while ((c = getopt_long (argc, argv, "s:n:o:w:r:b:", opts, NULL)) != -1) {
        switch (c) {
            case 's': s_seconds = atof (optarg); break;
            case 'n': s_rounds = atoi (optarg); break;
            case 'o': s_outstanding = atol (optarg); break;
            case 'w': s_window = atoi (optarg); break;
            case 'r': s_latency_rate = atof (optarg); break;
            case 'b': s_bus_path = optarg; break;
            default:
                fprintf (stderr, "usage: bench-bus [--rounds N] [--seconds S] "
                         "[--outstanding N] [--window N] [--latency-rate R] [--bus PATH]\n");
                return 2;
        }
    }
    if (s_seconds <= 0 || s_seconds > 600 || s_rounds < 1 || s_rounds > 64
        || s_outstanding <= 0 || s_window < 1 || s_window > FKS_BUS_WINDOW_MAX
        || s_latency_rate < 0) {
        fprintf (stderr, "bench-bus: bad arguments\n");
        return 2;
    }
    fks_log_init ("bench-bus");
    fks_log_set_level (FKS_LOG_WARN);
    signal (SIGPIPE, SIG_IGN);

    struct utsname u;
    uname (&u);
    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    char model[128] = "?";
    FILE *f = fopen ("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets (line, sizeof line, f))
            if (strncmp (line, "model name", 10) == 0) {
                char *colon = strchr (line, ':');
                if (colon) {
                    snprintf (model, sizeof model, "%s", colon + 2);
                    model[strcspn (model, "\n")] = 0;
                }
                break;
            }
        fclose (f);
    }
    int zmaj, zmin, zpat;
    zmq_version (&zmaj, &zmin, &zpat);
    double load[3] = { 0, 0, 0 };
    getloadavg (load, 3);
    printf ("machine: %ld CPUs, %s, %s %s; libzmq %d.%d.%d; load average %.2f at start; "
            "%d rounds of %.1f s; window %d per replica, at most %ld unacked\n", cpus, model,
            u.sysname, u.release, zmaj, zmin, zpat, load[0], s_rounds, s_seconds, s_window,
            s_outstanding);
    fflush (stdout);

    double raw[64], one[64], three[64], r1[64], r3[64], d = 0;
    printf ("round   raw PUSH/PULL   broker, 1 replica   broker, 3 replicas   (msg/s)\n");
    for (int r = 0; r < s_rounds; r++) {
        raw[r] = s_bench_raw ();
        one[r] = s_bench_path (1, 0, &d, &d, &d, &d);
        three[r] = s_bench_path (3, 0, &d, &d, &d, &d);
        r1[r] = one[r] / raw[r];
        r3[r] = three[r] / raw[r];
        printf ("%5d %15.0f %12.0f (%3.0f%%) %13.0f (%3.0f%%)\n", r + 1, raw[r], one[r],
                100 * r1[r], three[r], 100 * r3[r]);
        fflush (stdout);
    }
    double raw_m = s_median (raw, s_rounds);
    printf ("median %14.0f %12.0f (%3.0f%%) %13.0f (%3.0f%%)   (%% = median of the rounds' "
            "ratios)\n", raw_m, s_median (one, s_rounds), 100 * s_median (r1, s_rounds),
            s_median (three, s_rounds), 100 * s_median (r3, s_rounds));
    fflush (stdout);
    double rate = s_latency_rate > 0 ? s_latency_rate : raw_m / 10;
    double p50 = 0, p99 = 0, p999 = 0, pmax = 0;
    s_seconds *= s_rounds;
    double paced = s_bench_path (1, rate, &p50, &p99, &p999, &pmax);
    printf ("latency at %.0f msg/s for %.0f s (1 replica, got %.0f msg/s): p50 %.0f us, "
            "p99 %.0f us, p99.9 %.0f us, max %.0f us\n", rate, s_seconds, paced, p50, p99, p999,
            pmax);
    return 0;
}
