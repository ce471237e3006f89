/*  bench_civetweb.c - bench-civetweb: a bare civetweb POST handler, the yardstick for the
 *  gateway's webhook benchmark (tools/bench_gateway.sh, docs/PERFORMANCE.gateway.md).
 *
 *  It does what the gateway's webhook handler does minus the work: reads the whole body and
 *  answers 202 with a small JSON body in one write, on a civetweb context configured like the
 *  gateway's (threads, keep-alive, TCP_NODELAY). The gateway's accept rate divided by this
 *  one's, measured in the same run, is the overhead of parsing, authenticating, committing to
 *  PostgreSQL and publishing.
 *
 *      bench-civetweb PORT [THREADS]       runs until SIGINT or SIGTERM
 */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    char body[8192];                    /* civetweb's thread stacks are 100 KiB */
    while (mg_read (conn, body, sizeof body) > 0)
        ;
    const char *c = mg_get_header (conn, "Connection");
    int close = c && strcasecmp (c, "close") == 0;
    if (close)
        mg_disable_connection_keep_alive (conn);
    static const char json[] = "{\"id\":\"01900000-0000-7000-8000-000000000000\","
                               "\"status\":\"accepted\"}";
    char out[512];
    int n = snprintf (out, sizeof out,
                      "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                      sizeof json - 1, close ? "close" : "keep-alive", json);
    mg_write (conn, out, (size_t) n);
    return 202;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: bench-civetweb PORT [THREADS]\n");
        return 1;
    }
    char ports[64];
    snprintf (ports, sizeof ports, "127.0.0.1:%d", atoi (argv[1]));
    const char *threads = argc > 2 ? argv[2] : "64";
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &set, NULL);
    const char *options[] = {
        "listening_ports", ports, "num_threads", threads, "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "5000", "request_timeout_ms", "5000", "tcp_nodelay", "1",
        "connection_queue", "256", "listen_backlog", "1024", NULL };
    struct mg_callbacks cb;
    memset (&cb, 0, sizeof cb);
    mg_init_library (0);
    struct mg_context *ctx = mg_start (&cb, NULL, options);
    if (!ctx) {
        fprintf (stderr, "bench-civetweb: cannot listen on %s\n", ports);
        return 1;
    }
    mg_set_request_handler (ctx, "/", s_handle, NULL);
    int sig;
    sigwait (&set, &sig);
    mg_stop (ctx);
    mg_exit_library ();
    return 0;
}
