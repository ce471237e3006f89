/*  test_stream.c - GET /api/v1/stream (SSE and WebSocket) against the real fks-gateway.
 *
 *  An SSE client here is libcurl with a write callback that splits the stream into events and
 *  records (id, type, corr) of each; it stops when the test's condition holds or its time is
 *  up. Alerts are posted as webhooks, so the events are the real webhook.received envelopes
 *  committed by the inbox. The resume test posts from several threads while the client reads,
 *  drops the connection in the middle, and resumes with Last-Event-ID: every alert's event
 *  must arrive exactly once. Streams opened with stored keys (made as `fks keys create` makes
 *  them) end when their key is revoked, and only then.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "common/pg.h"
#include "gateway/apikeys.h"

ReportHook (PRE_ALL) (struct criterion_test_set *set)
{
    (void) set;
    static const char *const env[] = { "FKS_GATEWAY_STREAM_POLL=50ms",
                                       "FKS_GATEWAY_STREAM_HEARTBEAT=1s", NULL };
    it_setup ("stream", true, env);
}

ReportHook (POST_ALL) (struct criterion_global_stats *stats)
{
    it_teardown (stats->tests_failed + stats->tests_crashed > 0);
}

// ---------------------------------------------------------------------------------------------
//  An SSE client

#define S_MAX_EVENTS 4096

typedef struct {
    long id;
    char type[40];
    char corr[40];
} s_event_t;

typedef struct {
    char *pending;              /* bytes of an event not complete yet */
    size_t len;
    s_event_t *events;
    int n;
    int stop_after;             /* stop once n reaches it (0: never) */
    const char *const *want;    /* stop once every corr in want[0..n_want) was seen */
    int n_want;
    bool comments;              /* saw a ": keepalive" */
} s_sse_t;

static bool
s_sse_done (const s_sse_t *s)
{
    if (s->stop_after && s->n >= s->stop_after)
        return true;
    if (!s->n_want)
        return false;
    for (int w = 0; w < s->n_want; w++) {
        bool seen = false;
        for (int i = 0; i < s->n && !seen; i++)
            seen = strcmp (s->events[i].corr, s->want[w]) == 0;
        if (!seen)
            return false;
    }
    return true;
}

static void
s_sse_event (s_sse_t *s, char *block)
{
    s_event_t ev = { .id = -1 };
    bool any = false;
    for (char *line = strtok (block, "\n"); line; line = strtok (NULL, "\n")) {
        if (strncmp (line, "id: ", 4) == 0) {
            ev.id = strtol (line + 4, NULL, 10);
            any = true;
        }
        else if (strncmp (line, "event: ", 7) == 0)
            snprintf (ev.type, sizeof ev.type, "%s", line + 7);
        else if (strncmp (line, "data: ", 6) == 0) {
            if (!it_json_str (line + 6, "corr", ev.corr, sizeof ev.corr))
                ev.corr[0] = '\0';
        }
        else if (line[0] == ':')
            s->comments = true;
    }
    if (any && s->n < S_MAX_EVENTS)
        s->events[s->n++] = ev;
}

static size_t
s_sse_write (char *data, size_t size, size_t nmemb, void *arg)
{
    s_sse_t *s = arg;
    size_t add = size * nmemb;
    char *p = realloc (s->pending, s->len + add + 1);
    if (!p)
        return 0;
    s->pending = p;
    memcpy (s->pending + s->len, data, add);
    s->len += add;
    s->pending[s->len] = '\0';
    char *end;
    while ((end = strstr (s->pending, "\n\n")) != NULL) {
        *end = '\0';
        s_sse_event (s, s->pending);
        size_t used = (size_t) (end + 2 - s->pending);
        memmove (s->pending, end + 2, s->len - used + 1);
        s->len -= used;
        if (s_sse_done (s))
            return 0;                   /* ends the transfer: the client hangs up */
    }
    return add;
}

//  Reads the stream at query (after "/api/v1/stream") until done or timeout_ms. Returns the
//  HTTP status.
static long
s_sse_read (const it_ctx_t *ctx, const char *query, const char *last_event_id, s_sse_t *s,
            long timeout_ms)
{
    char url[512], auth[128], lei[64];
    snprintf (url, sizeof url, "%s/api/v1/stream%s", ctx->base, query ? query : "");
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
    struct curl_slist *h = curl_slist_append (NULL, auth);
    if (last_event_id) {
        snprintf (lei, sizeof lei, "Last-Event-ID: %s", last_event_id);
        h = curl_slist_append (h, lei);
    }
    CURL *c = curl_easy_init ();
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, s_sse_write);
    curl_easy_setopt (c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt (c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform (c);
    long status = 0;
    curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (c);
    curl_slist_free_all (h);
    return status;
}

static void
s_sse_init (s_sse_t *s)
{
    memset (s, 0, sizeof *s);
    s->events = calloc (S_MAX_EVENTS, sizeof *s->events);
}

static void
s_sse_free (s_sse_t *s)
{
    free (s->pending);
    free (s->events);
}

//  Posts one webhook; its alert id into id.
static void
s_post (const it_ctx_t *ctx, const char *symbol, char id[64])
{
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"%s\",\"action\":\"buy\",\"id\":\"st-%lu\","
              "\"passphrase\":\"" IT_SECRET "\"}", symbol, it_unique ());
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json", body, NULL, &r);
    cr_assert_eq (r.status, 202, "%ld %s", r.status, r.body);
    cr_assert (it_json_str (r.body, "id", id, 64));
    it_resp_free (&r);
}

//  The seq of the newest stored event (after posting one, so there is one).
static long
s_newest_seq (const it_ctx_t *ctx)
{
    char id[64];
    s_post (ctx, "SEEDUSDT", id);
    return it_sql_long (ctx, "SELECT seq FROM events WHERE corr = $1::uuid", id);
}

// ---------------------------------------------------------------------------------------------

typedef struct {
    const it_ctx_t *ctx;
    int n;
    char (*ids)[64];
    int delay_us;
} s_poster_t;

static void *
s_poster (void *arg)
{
    s_poster_t *p = arg;
    for (int i = 0; i < p->n; i++) {
        s_post (p->ctx, "STRMUSDT", p->ids[i]);
        if (p->delay_us)
            usleep ((useconds_t) p->delay_us);
    }
    return NULL;
}

Test (stream, sse_delivers_each_event_with_its_seq_as_id)
{
    const it_ctx_t *ctx = it_ctx ();
    char after[24];
    snprintf (after, sizeof after, "%ld", s_newest_seq (ctx));
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        s_post (ctx, "LIVEUSDT", ids[i]);
    const char *want[3] = { ids[0], ids[1], ids[2] };
    s_sse_t s;
    s_sse_init (&s);
    s.want = want;
    s.n_want = 3;
    long st = s_sse_read (ctx, "?types=webhook.", after, &s, 10000);
    cr_assert_eq (st, 200);
    cr_assert (s_sse_done (&s), "got %d events", s.n);
    for (int i = 0; i < s.n; i++) {
        cr_assert_str_eq (s.events[i].type, "webhook.received");
        long seq = it_sql_long (ctx, "SELECT seq FROM events WHERE corr = $1::uuid",
                                s.events[i].corr);
        cr_assert_eq (s.events[i].id, seq, "the SSE id is the event's seq");
    }
    s_sse_free (&s);
}

Test (stream, a_client_that_drops_and_resumes_sees_every_event_once)
{
    const it_ctx_t *ctx = it_ctx ();
    char after[24];
    snprintf (after, sizeof after, "%ld", s_newest_seq (ctx));
    //  Three posters, 40 alerts each, while the client reads, drops, and resumes.
    enum { POSTERS = 3, EACH = 40, TOTAL = POSTERS * EACH };
    static char ids[TOTAL][64];
    s_poster_t posters[POSTERS];
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        posters[i] = (s_poster_t) { ctx, EACH, ids + i * EACH, 2000 };
        pthread_create (&th[i], NULL, s_poster, &posters[i]);
    }
    //  First connection: stop after 25 events, in the middle of the posting.
    s_sse_t s;
    s_sse_init (&s);
    s.stop_after = 25;
    cr_assert_eq (s_sse_read (ctx, "?types=webhook.", after, &s, 15000), 200);
    cr_assert_eq (s.n, 25, "the first connection got %d events", s.n);
    char last[24];
    snprintf (last, sizeof last, "%ld", s.events[s.n - 1].id);
    int first_n = s.n;
    for (int i = 0; i < POSTERS; i++)
        pthread_join (th[i], NULL);
    //  Second connection, resumed: read until every posted alert was seen.
    const char *want[TOTAL];
    for (int i = 0; i < TOTAL; i++)
        want[i] = ids[i];
    s.len = 0;                  /* what the first connection left unread is gone with it */
    s.stop_after = 0;
    s.want = want;
    s.n_want = TOTAL;
    cr_assert_eq (s_sse_read (ctx, "?types=webhook.", last, &s, 20000), 200);
    cr_assert (s.n > first_n);
    //  Exactly once each: no alert missed at the seam, none repeated.
    for (int w = 0; w < TOTAL; w++) {
        int count = 0;
        for (int i = 0; i < s.n; i++)
            count += strcmp (s.events[i].corr, ids[w]) == 0;
        cr_assert_eq (count, 1, "alert %s seen %d times over the two connections", ids[w], count);
    }
    for (int i = 0; i < s.n; i++)
        for (int j = i + 1; j < s.n; j++)
            cr_assert_neq (s.events[i].id, s.events[j].id, "event %ld sent twice", s.events[i].id);
    s_sse_free (&s);
}

Test (stream, a_resume_goes_on_in_numeric_xid_order_across_a_digit_boundary)
{
    const it_ctx_t *ctx = it_ctx ();
    //  Three events made to look written by transactions 5, 8 and 10: as text, "10" sorts
    //  before "8" (and before every real xid that starts with 1). Resumed after the first,
    //  the stream must go on with 8, then 10.
    char ids[3][64];
    const char *xids[3] = { "5", "8", "10" };
    for (int i = 0; i < 3; i++) {
        s_post (ctx, "XIDUSDT", ids[i]);
        const char *params[2] = { xids[i], ids[i] };
        PGresult *r = it_sql (ctx, "UPDATE events SET xid = $1::xid8 WHERE corr = $2::uuid", 2,
                              params);
        cr_assert (r && PQresultStatus (r) == PGRES_COMMAND_OK);
        PQclear (r);
    }
    char after[24];
    snprintf (after, sizeof after, "%ld",
              it_sql_long (ctx, "SELECT seq FROM events WHERE corr = $1::uuid", ids[0]));
    s_sse_t s;
    s_sse_init (&s);
    s.stop_after = 2;
    cr_assert_eq (s_sse_read (ctx, "?types=webhook.", after, &s, 10000), 200);
    cr_assert_eq (s.n, 2);
    cr_assert_str_eq (s.events[0].corr, ids[1], "after xid 5 came another event, not xid 8");
    cr_assert_str_eq (s.events[1].corr, ids[2], "after xid 8 came another event, not xid 10");
    s_sse_free (&s);
}

//  Two new events, after the newest one so far (its seq into after): a security.event (a
//  refused webhook) and a webhook.received (an alert of symbol accepted).
static void
s_security_and_webhook (const it_ctx_t *ctx, const char *symbol, char after[24])
{
    snprintf (after, 24, "%ld", s_newest_seq (ctx));
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json",
                "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"not-the-secret\"}", NULL, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
    char id[64];
    s_post (ctx, symbol, id);
}

Test (stream, the_types_filter_keeps_only_matching_events)
{
    const it_ctx_t *ctx = it_ctx ();
    char after[24];
    s_security_and_webhook (ctx, "FILTUSDT", after);
    s_sse_t s;
    s_sse_init (&s);
    s.stop_after = 1;
    cr_assert_eq (s_sse_read (ctx, "?types=security.", after, &s, 10000), 200);
    cr_assert_eq (s.n, 1);
    cr_assert_str_eq (s.events[0].type, "security.event");
    s_sse_free (&s);
}

Test (stream, a_quiet_stream_sends_keepalives)
{
    const it_ctx_t *ctx = it_ctx ();
    s_sse_t s;
    s_sse_init (&s);
    cr_assert_eq (s_sse_read (ctx, "?types=nothing.", NULL, &s, 2500), 200);
    cr_assert (s.comments, "no keepalive comment within 2.5 s (heartbeat 1 s)");
    s_sse_free (&s);
}

//  Traffic: copies of a stored webhook.received event, one every 50 ms, until stop is set.
typedef struct {
    const it_ctx_t *ctx;
    char seq[24];
    atomic_bool stop;
    int inserted;
} s_traffic_t;

static void *
s_traffic (void *arg)
{
    s_traffic_t *t = arg;
    const char *p[1] = { t->seq };
    while (!atomic_load (&t->stop)) {
        PGresult *r = it_sql (t->ctx, "INSERT INTO events (id, type, corr, src, ts, envelope)"
                                      " SELECT gen_random_uuid (), type, corr, src, ts, envelope"
                                      " FROM events WHERE seq = $1::bigint", 1, p);
        if (r)
            t->inserted++;
        PQclear (r);
        usleep (50000);
    }
    return NULL;
}

static void
s_traffic_start (const it_ctx_t *ctx, s_traffic_t *t, pthread_t *th)
{
    memset (t, 0, sizeof *t);
    t->ctx = ctx;
    snprintf (t->seq, sizeof t->seq, "%ld", s_newest_seq (ctx));
    atomic_init (&t->stop, false);
    cr_assert_eq (pthread_create (th, NULL, s_traffic, t), 0);
}

static void
s_traffic_stop (s_traffic_t *t, pthread_t th)
{
    atomic_store (&t->stop, true);
    pthread_join (th, NULL);
}

//  Events the client's filter drops still wake its thread: the heartbeat must go out when
//  nothing was written for the heartbeat interval, not only when the wait timed out.
Test (stream, a_filtered_client_gets_keepalives_while_other_events_flow)
{
    const it_ctx_t *ctx = it_ctx ();
    s_traffic_t t;
    pthread_t th;
    s_traffic_start (ctx, &t, &th);
    s_sse_t s;
    s_sse_init (&s);
    long st = s_sse_read (ctx, "?types=nothing.", NULL, &s, 3500);
    s_traffic_stop (&t, th);
    cr_assert_eq (st, 200);
    cr_assert (t.inserted > 20, "only %d events were inserted meanwhile", t.inserted);
    cr_assert_eq (s.n, 0);
    cr_assert (s.comments, "no keepalive within 3.5 s (heartbeat 1 s) while other events flowed");
    s_sse_free (&s);
}

//  A raw SSE request with key on a new socket; returns it once the 200 head arrived.
static int
s_raw_stream_key (int port, const char *query, const char *key)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    cr_assert_eq (connect (fd, (struct sockaddr *) &a, sizeof a), 0);
    char req[256];
    int n = snprintf (req, sizeof req, "GET /api/v1/stream%s HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer %s\r\n\r\n", query, key);
    cr_assert_eq (write (fd, req, (size_t) n), n);
    char head[64] = "";
    cr_assert (read (fd, head, sizeof head - 1) > 0);
    cr_assert (strstr (head, " 200 "), "%s", head);
    return fd;
}

static int
s_raw_stream (int port, const char *query)
{
    return s_raw_stream_key (port, query, IT_ADMIN_KEY);
}

//  A gateway of its own with env added, logging to /tmp/fks-it-stream-<pid>-<tag>.log (into
//  log_path, 128 bytes); its port in *port.
static pid_t
s_own_gateway (const it_ctx_t *ctx, const char *tag, const char *const *env, char *log_path,
               int *port)
{
    snprintf (log_path, 128, "/tmp/fks-it-stream-%d-%s.log", (int) getpid (), tag);
    unlink (log_path);      //  a failed run's, kept, whose pid this process has again
    *port = 0;
    pid_t pid = it_start_gateway (ctx, env, port, log_path);
    cr_assert (pid > 0, "log %s", log_path);
    return pid;
}

//  The audit's case: FKS_GATEWAY_STREAM_MAX=2, two filtered clients that went away while
//  other events flowed. Their places must come back (a heartbeat write fails), so that a new
//  client is served instead of 503 too_many_streams.
Test (stream, filtered_clients_that_left_give_their_places_back_while_events_flow)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_MAX=2", "FKS_GATEWAY_STREAM_HEARTBEAT=1s",
                          "FKS_GATEWAY_STREAM_POLL=20ms", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "gone", env, log_path, &port);
    s_traffic_t t;
    pthread_t th;
    s_traffic_start (ctx, &t, &th);
    int a = s_raw_stream (port, "?types=nothing.");
    int b = s_raw_stream (port, "?types=nothing.");
    close (a);
    close (b);
    char url[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/stream?types=nothing.&access_token=%s",
              port, IT_ADMIN_KEY);
    long status = 0;
    for (int i = 0; i < 16 && status != 200; i++) {
        it_resp_t r;
        it_http_timeout ("GET", url, NULL, NULL, 0, 500, &r);
        status = r.status;
        it_resp_free (&r);
        if (status != 200)
            usleep (500000);
    }
    s_traffic_stop (&t, th);
    cr_assert_eq (status, 200, "the clients that left still hold their places (log %s)",
                  log_path);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

//  The events feed filters with ?type=; the stream takes it too (as well as ?types=), rather
//  than ignoring it and sending everything.
Test (stream, the_stream_takes_type_as_the_events_feed_does)
{
    const it_ctx_t *ctx = it_ctx ();
    char after[24];
    snprintf (after, sizeof after, "%ld", s_newest_seq (ctx));
    char id[64];
    s_post (ctx, "TYPEUSDT", id);
    it_resp_t r;
    it_webhook (ctx, "/webhook/tradingview", "application/json",
                "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"not-the-secret\"}", NULL, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
    s_sse_t s;
    s_sse_init (&s);
    s.stop_after = 1;
    cr_assert_eq (s_sse_read (ctx, "?type=security.", after, &s, 10000), 200);
    cr_assert_eq (s.n, 1);
    cr_assert_str_eq (s.events[0].type, "security.event");
    s_sse_free (&s);
    //  And it is checked like types=.
    s_sse_init (&s);
    cr_assert_eq (s_sse_read (ctx, "?type=BAD%20TYPE", NULL, &s, 2000), 400);
    s_sse_free (&s);
}

//  ?types= given twice filters by both lists: only the first was read, and a client asking
//  for security. and webhook. events silently got the first kind alone.
Test (stream, types_given_twice_take_both)
{
    const it_ctx_t *ctx = it_ctx ();
    char after[24];
    s_security_and_webhook (ctx, "TWICEUSDT", after);
    s_sse_t s;
    s_sse_init (&s);
    s.stop_after = 2;
    cr_assert_eq (s_sse_read (ctx, "?types=security.&types=webhook.", after, &s, 5000), 200);
    cr_assert_eq (s.n, 2, "%d events: only the first ?types= was taken", s.n);
    bool security = false, webhook = false;
    for (int i = 0; i < s.n; i++) {
        security = security || strcmp (s.events[i].type, "security.event") == 0;
        webhook = webhook || strcmp (s.events[i].type, "webhook.received") == 0;
    }
    cr_assert (security && webhook);
    s_sse_free (&s);
}

//  civetweb hands a handler every path below its own: /api/v1/stream/anything was the stream.
Test (stream, a_path_below_the_stream_is_404)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256], auth[128];
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
    const char *headers[] = { auth, NULL };
    static const char *const paths[] = { "/api/v1/stream/x", "/api/v1/stream/orders/1" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf (url, sizeof url, "%s%s", ctx->base, paths[i]);
        it_resp_t r;
        it_http_timeout ("GET", url, headers, NULL, 0, 1000, &r);
        cr_assert_eq (r.status, 404, "%s -> %ld", paths[i], r.status);
        it_resp_free (&r);
    }
    //  The stream itself, with a trailing slash as the REST routes take it.
    snprintf (url, sizeof url, "%s/api/v1/stream/", ctx->base);
    it_resp_t r;
    it_http_timeout ("GET", url, headers, NULL, 0, 500, &r);
    cr_assert_eq (r.status, 200, "%ld", r.status);
    it_resp_free (&r);
}

//  A resume position given twice is ambiguous (which one would count?): 400 naming it.
Test (stream, after_given_twice_is_400_naming_it)
{
    const it_ctx_t *ctx = it_ctx ();
    char query[64];
    long seq = s_newest_seq (ctx);
    snprintf (query, sizeof query, "?after=%ld&after=0", seq);
    char url[256], auth[128];
    snprintf (url, sizeof url, "%s/api/v1/stream%s", ctx->base, query);
    snprintf (auth, sizeof auth, "Authorization: Bearer %s", IT_ADMIN_KEY);
    const char *headers[] = { auth, NULL };
    it_resp_t r;
    it_http_timeout ("GET", url, headers, NULL, 0, 1000, &r);
    cr_assert_eq (r.status, 400, "%ld %s", r.status, r.body ? r.body : "");
    char field[32];
    cr_assert (it_json_str (r.body, "field", field, sizeof field), "%s", r.body);
    cr_assert_str_eq (field, "after");
    it_resp_free (&r);
}

Test (stream, the_stream_needs_a_read_key_and_takes_access_token)
{
    const it_ctx_t *ctx = it_ctx ();
    char url[256];
    snprintf (url, sizeof url, "%s/api/v1/stream", ctx->base);
    it_resp_t r;
    it_http_timeout ("GET", url, NULL, NULL, 0, 2000, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
    snprintf (url, sizeof url, "%s/api/v1/stream?access_token=%s", ctx->base, IT_ADMIN_KEY);
    it_http_timeout ("GET", url, NULL, NULL, 0, 500, &r);
    cr_assert_eq (r.status, 200);
    char ct[64];
    cr_assert (it_resp_header (&r, "Content-Type", ct, sizeof ct));
    cr_assert_str_eq (ct, "text/event-stream");
    it_resp_free (&r);
}

Test (stream, an_unknown_last_event_id_is_400)
{
    const it_ctx_t *ctx = it_ctx ();
    s_sse_t s;
    s_sse_init (&s);
    cr_assert_eq (s_sse_read (ctx, NULL, "987654321", &s, 2000), 400);
    cr_assert_eq (s_sse_read (ctx, NULL, "12x", &s, 2000), 400);
    s_sse_free (&s);
}

// ---------------------------------------------------------------------------------------------
//  WebSocket

typedef struct {
    pthread_mutex_t mutex;
    int n;
    char corr[8][40];
} s_ws_t;

static int
s_ws_data (struct mg_connection *conn, int flags, char *data, size_t len, void *arg)
{
    (void) conn;
    s_ws_t *w = arg;
    if ((flags & 0x0f) != MG_WEBSOCKET_OPCODE_TEXT)
        return 1;
    char *copy = strndup (data, len);
    pthread_mutex_lock (&w->mutex);
    if (w->n < 8 && copy && it_json_str (copy, "corr", w->corr[w->n], sizeof w->corr[0]))
        w->n++;
    pthread_mutex_unlock (&w->mutex);
    free (copy);
    return 1;
}

Test (stream, websocket_delivers_the_same_events)
{
    const it_ctx_t *ctx = it_ctx ();
    mg_init_library (0);
    long after = s_newest_seq (ctx);
    char id[64];
    s_post (ctx, "WSUSDT", id);
    s_ws_t w = { .mutex = PTHREAD_MUTEX_INITIALIZER };
    char path[256], err[256] = "";
    snprintf (path, sizeof path, "/api/v1/stream?types=webhook.&after=%ld&access_token=%s",
              after, IT_ADMIN_KEY);
    struct mg_connection *c = mg_connect_websocket_client ("127.0.0.1", ctx->port, 0, err,
                                                           sizeof err, path, NULL, s_ws_data,
                                                           NULL, &w);
    cr_assert_not_null (c, "websocket connect: %s", err);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        pthread_mutex_lock (&w.mutex);
        for (int k = 0; k < w.n; k++)
            seen = seen || strcmp (w.corr[k], id) == 0;
        pthread_mutex_unlock (&w.mutex);
        if (!seen)
            usleep (50000);
    }
    mg_close_connection (c);
    cr_assert (seen, "the alert's event did not arrive over the WebSocket");
}

//  A raw WebSocket client, to see the frames themselves (close codes, pongs, the end of the
//  connection). Frames to the server are masked as RFC 6455 requires.

static int
s_raw_connect (int port, int rcvbuf)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
        setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    cr_assert_eq (connect (fd, (struct sockaddr *) &a, sizeof a), 0);
    return fd;
}

//  Milliseconds since t0 (CLOCK_MONOTONIC).
static long
s_ms_since (const struct timespec *t0)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (long) ((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

//  Reads exactly n bytes within timeout_ms. n, 0 at EOF, -1 on timeout or error.
static int
s_read_n (int fd, unsigned char *buf, size_t n, long timeout_ms)
{
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    size_t got = 0;
    while (got < n) {
        long left = timeout_ms - s_ms_since (&t0);
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll (&p, 1, (int) left) <= 0)
            continue;
        ssize_t r = read (fd, buf + got, n - got);
        if (r == 0)
            return 0;
        if (r < 0)
            return -1;
        got += (size_t) r;
    }
    return (int) n;
}

//  Opens a WebSocket on the stream with query and key; returns the socket after a 101.
static int
s_ws_open_key (int port, const char *query, int rcvbuf, const char *key)
{
    int fd = s_raw_connect (port, rcvbuf);
    char req[512];
    int n = snprintf (req, sizeof req,
                      "GET /api/v1/stream%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                      query, key);
    cr_assert_eq (write (fd, req, (size_t) n), n);
    //  Empty first: the loop's test reads it before the first byte (a second WebSocket in a
    //  test found the first one's head left on the stack and read the 101 as frames).
    char head[1024] = "";
    size_t len = 0;
    while (len < sizeof head - 1 && !strstr (head, "\r\n\r\n")) {
        head[len] = '\0';
        cr_assert_eq (s_read_n (fd, (unsigned char *) head + len, 1, 3000), 1,
                      "no handshake answer");
        len++;
        head[len] = '\0';
    }
    cr_assert (strstr (head, " 101 "), "%s", head);
    return fd;
}

static int
s_ws_open (int port, const char *query, int rcvbuf)
{
    return s_ws_open_key (port, query, rcvbuf, IT_ADMIN_KEY);
}

static void
s_ws_send (int fd, int opcode, const void *payload, size_t len)
{
    unsigned char f[2 + 4 + 125];
    cr_assert (len <= 125);
    static const unsigned char mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    f[0] = (unsigned char) (0x80 | opcode);
    f[1] = (unsigned char) (0x80 | len);
    memcpy (f + 2, mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = ((const unsigned char *) payload)[i] ^ mask[i & 3];
    cr_assert_eq (write (fd, f, 6 + len), (ssize_t) (6 + len));
}

//  Reads frames until one with opcode `want` (its payload into out, up to 125 bytes).
//  Returns its payload length, -1 on timeout, -2 at EOF.
static int
s_ws_await (int fd, int want, unsigned char out[125], long timeout_ms)
{
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    for (;;) {
        long left = timeout_ms - s_ms_since (&t0);
        if (left <= 0)
            return -1;
        unsigned char h[10];
        int r = s_read_n (fd, h, 2, left);
        if (r <= 0)
            return r == 0 ? -2 : -1;
        uint64_t len = h[1] & 127;
        if (len == 126 || len == 127) {
            size_t ext = len == 126 ? 2 : 8;
            if (s_read_n (fd, h + 2, ext, left) != (int) ext)
                return -1;
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = len << 8 | h[2 + i];
        }
        unsigned char *payload = malloc (len ? len : 1);
        r = len ? s_read_n (fd, payload, len, left) : 0;
        if (len && r != (int) len) {
            free (payload);
            return r == 0 ? -2 : -1;
        }
        if ((h[0] & 0x0f) == want) {
            int n = len > 125 ? 125 : (int) len;
            memcpy (out, payload, (size_t) n);
            free (payload);
            return n;
        }
        free (payload);
    }
}

//  Reads (and drops) whatever comes until the server closes. True at EOF within timeout_ms.
static bool
s_await_eof (int fd, long timeout_ms)
{
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    unsigned char buf[65536];
    for (;;) {
        long left = timeout_ms - s_ms_since (&t0);
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll (&p, 1, (int) left) <= 0)
            continue;
        ssize_t r = read (fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false;
    }
}

//  Waits until the gateway at port reports no stream client. True when it does within 5 s.
static bool
s_no_stream_clients (int port)
{
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    for (int i = 0; i < 50; i++) {
        it_resp_t r;
        it_http ("GET", url, NULL, NULL, 0, &r);
        bool none = r.body && strstr (r.body, "fks_gateway_stream_clients 0") != NULL;
        it_resp_free (&r);
        if (none)
            return true;
        usleep (100000);
    }
    return false;
}

//  A gateway of its own for a slow-client test: a ring of 64 events, writes that stall for a
//  second count as slow. Its log at log_path (128 bytes), its port in *port.
static pid_t
s_start_slow_gateway (const it_ctx_t *ctx, const char *tag, char *log_path, int *port)
{
    const char *env[] = { "FKS_GATEWAY_STREAM_BUFFER=64", "FKS_GATEWAY_REQUEST_TIMEOUT=1s",
                          "FKS_GATEWAY_STREAM_POLL=20ms", NULL };
    return s_own_gateway (ctx, tag, env, log_path, port);
}

//  Inserts 30,000 copies of the event at seq `after` (far more than the kernel's buffers and a
//  small ring hold) and waits until the gateway at port has cut one client off as slow.
static bool
s_flood_until_cut (const it_ctx_t *ctx, long after, int port)
{
    char s_after[24];
    snprintf (s_after, sizeof s_after, "%ld", after);
    const char *p[1] = { s_after };
    PGresult *res = it_sql (ctx, "INSERT INTO events (id, type, corr, src, ts, envelope)"
                                 " SELECT gen_random_uuid (), e.type, e.corr, e.src, e.ts,"
                                 " e.envelope FROM events e, generate_series (1, 30000)"
                                 " WHERE e.seq = $1::bigint", 1, p);
    cr_assert_not_null (res);
    PQclear (res);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    for (int i = 0; i < 100; i++) {
        it_resp_t r;
        it_http ("GET", url, NULL, NULL, 0, &r);
        bool cut = r.body
                   && strstr (r.body, "fks_gateway_stream_disconnects_total{reason=\"slow\"} 1");
        it_resp_free (&r);
        if (cut)
            return true;
        usleep (100000);
    }
    return false;
}

Test (stream, a_websocket_close_is_answered_and_the_connection_ends)
{
    const it_ctx_t *ctx = it_ctx ();
    int fd = s_ws_open (ctx->port, "?types=none.such", 0);
    unsigned char got[125];
    //  A heartbeat first: the stream is running when the client says goodbye.
    cr_assert_eq (s_ws_await (fd, MG_WEBSOCKET_OPCODE_PING, got, 3000), 0);
    s_ws_send (fd, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xe9" "bye", 5);
    int n = s_ws_await (fd, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 3000);
    cr_assert_eq (n, 2, "the close frame was not answered (%d)", n);
    cr_assert (got[0] == 0x03 && got[1] == 0xe9, "answered with code %d",
               got[0] << 8 | got[1]);
    cr_assert (s_await_eof (fd, 3000), "the connection stayed open after the close");
    close (fd);
    cr_assert (s_no_stream_clients (ctx->port), "the client kept its stream place");
}

Test (stream, a_websocket_ping_is_answered_with_its_payload)
{
    const it_ctx_t *ctx = it_ctx ();
    int fd = s_ws_open (ctx->port, "?types=none.such", 0);
    s_ws_send (fd, MG_WEBSOCKET_OPCODE_PING, "fks-ping-7", 10);
    unsigned char got[125];
    int n = s_ws_await (fd, MG_WEBSOCKET_OPCODE_PONG, got, 3000);
    cr_assert_eq (n, 10, "no pong (%d)", n);
    cr_assert (memcmp (got, "fks-ping-7", 10) == 0);
    s_ws_send (fd, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xe8", 2);
    cr_assert_eq (s_ws_await (fd, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 3000), 2);
    close (fd);
}

Test (stream, stopping_the_gateway_closes_websockets_with_going_away)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_HEARTBEAT=1s", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "wsstop", env, log_path, &port);
    int fd = s_ws_open (port, "", 0);
    unsigned char got[125];
    cr_assert_eq (s_ws_await (fd, MG_WEBSOCKET_OPCODE_PING, got, 3000), 0);
    //  The client never answers; the gateway stops anyway, and says why first.
    cr_assert_eq (it_stop_pid (pid), 0);
    int n = s_ws_await (fd, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 3000);
    cr_assert_eq (n, 2, "no close frame (%d)", n);
    cr_assert_eq (got[0] << 8 | got[1], 1001, "close code %d", got[0] << 8 | got[1]);
    close (fd);
    unlink (log_path);
}

Test (stream, a_websocket_client_that_does_not_read_is_cut_off_and_closed)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    int port = 0;
    pid_t pid = s_start_slow_gateway (ctx, "wsslow", log_path, &port);
    long after = s_newest_seq (ctx);
    char query[64];
    snprintf (query, sizeof query, "?after=%ld", after);
    int fd = s_ws_open (port, query, 4096);
    //  Far more events than the kernel's buffers and the ring hold, never read, never closed.
    cr_assert (s_flood_until_cut (ctx, after, port), "the slow client was not cut off (log %s)",
               log_path);
    //  Its stream ended, and so does its connection (and the civetweb thread under it), though
    //  the client neither reads nor answers the close.
    sleep (3);
    cr_assert (s_await_eof (fd, 10000), "the connection of a cut-off client stayed open");
    close (fd);
    cr_assert (s_no_stream_clients (port));
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

// ---------------------------------------------------------------------------------------------
//  Limits

Test (stream, streams_beyond_the_cap_get_503)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_MAX=1", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "cap", env, log_path, &port);
    //  A first stream held open by a raw socket.
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    cr_assert_eq (connect (fd, (struct sockaddr *) &a, sizeof a), 0);
    char req[256];
    int n = snprintf (req, sizeof req, "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer %s\r\n\r\n", IT_ADMIN_KEY);
    cr_assert_eq (write (fd, req, (size_t) n), n);
    char head[64] = "";
    cr_assert (read (fd, head, sizeof head - 1) > 0);
    cr_assert (strstr (head, " 200 "), "%s", head);
    char url[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/stream?access_token=%s", port,
              IT_ADMIN_KEY);
    it_resp_t r;
    it_http_timeout ("GET", url, NULL, NULL, 0, 2000, &r);
    cr_assert_eq (r.status, 503, "%ld %s", r.status, r.body);
    cr_assert (strstr (r.body, "too_many_streams"), "%s", r.body);
    it_resp_free (&r);
    //  Webhooks are still served: streams cannot take their threads.
    snprintf (url, sizeof url, "http://127.0.0.1:%d/health", port);
    it_http ("GET", url, NULL, NULL, 0, &r);
    cr_assert_eq (r.status, 200);
    it_resp_free (&r);
    close (fd);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

Test (stream, a_client_that_does_not_read_is_disconnected)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    int port = 0;
    pid_t pid = s_start_slow_gateway (ctx, "slow", log_path, &port);
    long after = s_newest_seq (ctx);
    //  A client with a tiny receive buffer that never reads after the headers.
    int fd = s_raw_connect (port, 4096);
    char req[256];
    int n = snprintf (req, sizeof req, "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n"
                      "Last-Event-ID: %ld\r\nAuthorization: Bearer %s\r\n\r\n", after,
                      IT_ADMIN_KEY);
    cr_assert_eq (write (fd, req, (size_t) n), n);
    //  Far more events than the kernel's buffers and the ring hold (copies of a real one); the
    //  gateway gives up on the client (its write stalls, the ring moves on).
    bool cut = s_flood_until_cut (ctx, after, port);
    close (fd);
    cr_assert (cut, "the slow client was not cut off (log %s)", log_path);
    cr_assert (s_no_stream_clients (port));
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

//  fks_gateway_stream_events_sent_total counts what reached a client's connection: an SSE event
//  whose write failed (the client had reset the connection) was not sent. It was counted when
//  queued, before the write. A gateway of its own, whose heartbeat (60 s) cannot find the
//  reset first: the event's write is what finds it, and what is not counted.
Test (stream, an_event_that_could_not_be_written_is_not_counted_as_sent)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_HEARTBEAT=60s", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "unsent", env, log_path, &port);
    char url[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    //  From the newest event on (a stream without a cursor starts wherever the gateway's tail
    //  is when it has set the client up, which may be after the post below).
    char query[64];
    snprintf (query, sizeof query, "?types=webhook.&after=%ld", s_newest_seq (ctx));
    int fd = s_raw_stream (port, query);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    cr_assert_eq (setsockopt (fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close (fd);             //  a reset: the gateway's next write to it fails
    char id[64];
    s_post (ctx, "UNSENTUSDT", id);
    cr_assert (s_no_stream_clients (port), "the gateway did not find the reset (log %s)",
               log_path);
    it_resp_t r;
    it_http ("GET", url, NULL, NULL, 0, &r);
    const char *m = r.body ? strstr (r.body, "\nfks_gateway_stream_events_sent_total ") : NULL;
    cr_assert (m, "no events_sent metric");
    double sent = strtod (m + strlen ("\nfks_gateway_stream_events_sent_total "), NULL);
    it_resp_free (&r);
    cr_assert_eq (sent, 0, "an event written to nobody was counted as sent");
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

// ---------------------------------------------------------------------------------------------
//  Revoked keys

//  A stored key with the read scope called name (as `fks keys create NAME` makes it).
static void
s_make_key (const it_ctx_t *ctx, const char *name, char key[FKS_APIKEY_LEN + 1])
{
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    char err[256];
    cr_assert_eq (fks_apikey_create (pg, name, FKS_SCOPE_READ, key, err, sizeof err), 0, "%s",
                  err);
    fks_pg_destroy (&pg);
}

//  `fks keys revoke NAME`.
static void
s_revoke_key (const it_ctx_t *ctx, const char *name)
{
    fks_pg_err_t perr;
    fks_pg_t *pg = fks_pg_new (ctx->db_url, fks_apikey_stmts, fks_apikey_stmts_n, &perr);
    cr_assert_not_null (pg, "%s", perr.msg);
    char err[256];
    cr_assert_eq (fks_apikey_revoke (pg, name, NULL, err, sizeof err), 0, "%s", err);
    fks_pg_destroy (&pg);
}

//  Reads a raw stream until the server ends it, until (when not NULL) is in the last bytes
//  read, or timeout_ms; the last bytes read (up to cap - 1) into tail. True at EOF.
static bool
s_read_until (int fd, const char *until, char *tail, size_t cap, long timeout_ms)
{
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    size_t len = 0;
    tail[0] = '\0';
    for (;;) {
        long left = timeout_ms - s_ms_since (&t0);
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll (&p, 1, (int) left) <= 0)
            continue;
        char buf[4096];
        ssize_t r = read (fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false;
        size_t n = (size_t) r;
        if (n > cap - 1)
            n = cap - 1;
        if (len + n > cap - 1) {
            size_t drop = len + n - (cap - 1);
            memmove (tail, tail + drop, len - drop);
            len -= drop;
        }
        memcpy (tail + len, buf + (size_t) r - n, n);
        len += n;
        tail[len] = '\0';
        if (until && strstr (tail, until))
            return false;
    }
}

static bool
s_read_to_eof (int fd, char *tail, size_t cap, long timeout_ms)
{
    return s_read_until (fd, NULL, tail, cap, timeout_ms);
}

//  The audit's case: `fks keys revoke` while the key's stream was open. REST refused the key
//  at once, but the stream, checked only when it opened, kept sending keepalives and events
//  until the client gave up. Now the key is asked again every heartbeat interval (1 s here),
//  whatever the traffic (a client sent events all the time gets no heartbeat): the stream
//  ends within a few intervals, saying why. Streams of valid keys, stored or FKS_ADMIN_KEY
//  (not a row), go on over the same time.
Test (stream, a_revoked_keys_sse_stream_ends_and_valid_keys_streams_go_on)
{
    const it_ctx_t *ctx = it_ctx ();
    char gone_name[48], kept_name[48];
    char gone_key[FKS_APIKEY_LEN + 1], kept_key[FKS_APIKEY_LEN + 1];
    unsigned long u = it_unique ();
    snprintf (gone_name, sizeof gone_name, "sse-gone-%lu", u);
    snprintf (kept_name, sizeof kept_name, "sse-kept-%lu", u);
    s_make_key (ctx, gone_name, gone_key);
    s_make_key (ctx, kept_name, kept_key);
    s_traffic_t t;
    pthread_t th;
    s_traffic_start (ctx, &t, &th);
    int gone = s_raw_stream_key (ctx->port, "?types=webhook.", gone_key);
    int kept = s_raw_stream_key (ctx->port, "?types=webhook.", kept_key);
    int boot = s_raw_stream (ctx->port, "?types=nothing.");
    char tail[4096];
    //  The streams run (events arrive) before the key goes (traffic every 50 ms; the first
    //  one can take seconds under the sanitizers on a busy machine).
    cr_assert_not (s_read_until (gone, "event: webhook.received", tail, sizeof tail, 10000));
    cr_assert (strstr (tail, "event: webhook.received"), "no event before the revoke: %s", tail);
    s_revoke_key (ctx, gone_name);
    bool ended = s_read_to_eof (gone, tail, sizeof tail, 5000);
    close (gone);
    cr_assert (ended, "the revoked key's stream was still open 5 s later (heartbeat 1 s)");
    cr_assert (strstr (tail, ": key revoked"), "the stream did not say why it ended: %s", tail);
    cr_assert_null (strstr (tail, gone_key), "the key was echoed");
    //  The others stay open over the same interval, and are served.
    bool kept_ended = s_read_to_eof (kept, tail, sizeof tail, 3000);
    s_traffic_stop (&t, th);
    close (kept);
    cr_assert_not (kept_ended, "a valid key's stream ended");
    cr_assert (strstr (tail, "event: webhook.received"), "a valid key's stream got nothing");
    bool boot_ended = s_read_to_eof (boot, tail, sizeof tail, 500);
    close (boot);
    cr_assert_not (boot_ended, "FKS_ADMIN_KEY's stream ended");
    cr_assert (strstr (tail, ": keepalive"), "FKS_ADMIN_KEY's stream got no keepalive: %s",
               tail);
    cr_assert (it_metric (ctx, "fks_gateway_stream_disconnects_total{reason=\"revoked\"}") >= 1);
    //  And the key is refused when it comes back.
    char url[256];
    snprintf (url, sizeof url, "%s/api/v1/stream?access_token=%s", ctx->base, gone_key);
    it_resp_t r;
    it_http_timeout ("GET", url, NULL, NULL, 0, 2000, &r);
    cr_assert_eq (r.status, 401);
    it_resp_free (&r);
    s_revoke_key (ctx, kept_name);
}

Test (stream, a_revoked_keys_websocket_is_closed_with_1008)
{
    const it_ctx_t *ctx = it_ctx ();
    char gone_name[48], kept_name[48];
    char gone_key[FKS_APIKEY_LEN + 1], kept_key[FKS_APIKEY_LEN + 1];
    unsigned long u = it_unique ();
    snprintf (gone_name, sizeof gone_name, "ws-gone-%lu", u);
    snprintf (kept_name, sizeof kept_name, "ws-kept-%lu", u);
    s_make_key (ctx, gone_name, gone_key);
    s_make_key (ctx, kept_name, kept_key);
    int gone = s_ws_open_key (ctx->port, "?types=none.such", 0, gone_key);
    int kept = s_ws_open_key (ctx->port, "?types=none.such", 0, kept_key);
    unsigned char got[125];
    //  A heartbeat first: the streams are running.
    cr_assert_eq (s_ws_await (gone, MG_WEBSOCKET_OPCODE_PING, got, 3000), 0);
    cr_assert_eq (s_ws_await (kept, MG_WEBSOCKET_OPCODE_PING, got, 3000), 0);
    s_revoke_key (ctx, gone_name);
    int n = s_ws_await (gone, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 5000);
    cr_assert_eq (n, 2 + 11, "no close frame with a reason within 5 s (heartbeat 1 s): %d", n);
    cr_assert_eq (got[0] << 8 | got[1], 1008, "close code %d", got[0] << 8 | got[1]);
    cr_assert (memcmp (got + 2, "key revoked", 11) == 0, "reason %.*s", n - 2, got + 2);
    //  Answered, the connection ends like the gateway's other closes.
    s_ws_send (gone, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 2);
    cr_assert (s_await_eof (gone, 3000), "the connection stayed open after the close");
    close (gone);
    //  The valid key's stream goes on over the same interval: pinged, not closed.
    cr_assert_eq (s_ws_await (kept, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 3000), -1,
                  "a valid key's WebSocket was closed");
    cr_assert_eq (s_ws_await (kept, MG_WEBSOCKET_OPCODE_PING, got, 2000), 0);
    s_ws_send (kept, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, "\x03\xe8", 2);
    cr_assert_eq (s_ws_await (kept, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, got, 3000), 2);
    close (kept);
    s_revoke_key (ctx, kept_name);
}

//  How many times needle occurs in the file at path.
static int
s_count_in_file (const char *path, const char *needle)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    int n = 0;
    char line[8192];
    while (fgets (line, sizeof line, f))
        for (const char *p = line; (p = strstr (p, needle)) != NULL; p += strlen (needle))
            n++;
    fclose (f);
    return n;
}

//  A re-check that cannot ask the database (api_keys locked, so it runs into the statement
//  timeout) ends no stream: an outage must not cut every healthy client off. It is logged
//  once, not per client and interval; once checks work again a revoke ends the stream. (The
//  lock holds every key lookup of the file's database for 3.5 s: the tests of a file run one
//  at a time, --jobs=1.)
Test (stream, a_key_that_cannot_be_rechecked_keeps_its_stream)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_HEARTBEAT=1s", "FKS_GATEWAY_STREAM_POLL=50ms",
                          "FKS_PG_STATEMENT_TIMEOUT_MS=300", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "recheck", env, log_path, &port);
    char name[48], key[FKS_APIKEY_LEN + 1];
    snprintf (name, sizeof name, "sse-outage-%lu", it_unique ());
    s_make_key (ctx, name, key);
    int a = s_raw_stream_key (port, "?types=nothing.", key);
    int b = s_raw_stream_key (port, "?types=nothing.", key);
    //  Every re-check of the next few intervals fails.
    PGconn *lock = PQconnectdb (ctx->db_url);
    cr_assert_eq (PQstatus (lock), CONNECTION_OK, "%s", PQerrorMessage (lock));
    PGresult *r = PQexec (lock, "BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE");
    cr_assert_eq (PQresultStatus (r), PGRES_COMMAND_OK, "%s", PQerrorMessage (lock));
    PQclear (r);
    char tail[4096];
    bool ended = s_read_to_eof (a, tail, sizeof tail, 3500);
    r = PQexec (lock, "ROLLBACK");
    PQclear (r);
    PQfinish (lock);
    cr_assert_not (ended, "a stream ended because its key could not be checked (log %s)",
                   log_path);
    cr_assert (strstr (tail, ": keepalive"), "no keepalive meanwhile: %s", tail);
    cr_assert_eq (s_count_in_file (log_path, "cannot re-check"), 1,
                  "the failed re-checks were not logged once (log %s)", log_path);
    //  Checks work again: a revoke ends both streams.
    s_revoke_key (ctx, name);
    cr_assert (s_read_to_eof (a, tail, sizeof tail, 5000), "the revoked key's stream went on");
    cr_assert (s_read_to_eof (b, tail, sizeof tail, 5000), "the revoked key's stream went on");
    close (a);
    close (b);
    cr_assert_eq (it_stop_pid (pid), 0);
    unlink (log_path);
}

//  Any read key could take every stream place (FKS_GATEWAY_STREAM_MAX) and hold it, and every
//  other client got 503. A stored key now holds at most FKS_GATEWAY_STREAM_MAX_PER_KEY places
//  (429 beyond); other keys and FKS_ADMIN_KEY still get theirs, and a place given back can be
//  taken again.
Test (stream, one_key_cannot_take_every_stream_place)
{
    const it_ctx_t *ctx = it_ctx ();
    char log_path[128];
    const char *env[] = { "FKS_GATEWAY_STREAM_MAX=5", "FKS_GATEWAY_STREAM_MAX_PER_KEY=2",
                          "FKS_GATEWAY_STREAM_HEARTBEAT=1s", NULL };
    int port = 0;
    pid_t pid = s_own_gateway (ctx, "perkey", env, log_path, &port);
    char name1[48], name2[48], key1[FKS_APIKEY_LEN + 1], key2[FKS_APIKEY_LEN + 1];
    unsigned long u = it_unique ();
    snprintf (name1, sizeof name1, "perkey-a-%lu", u);
    snprintf (name2, sizeof name2, "perkey-b-%lu", u);
    s_make_key (ctx, name1, key1);
    s_make_key (ctx, name2, key2);
    int a1 = s_raw_stream_key (port, "", key1);
    int a2 = s_raw_stream_key (port, "", key1);
    //  Another key, and the bootstrap key, get places while key1 holds its two.
    int b1 = s_raw_stream_key (port, "", key2);
    int boot = s_raw_stream_key (port, "", IT_ADMIN_KEY);
    //  One place is still free, but not for key1.
    char url[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/api/v1/stream?access_token=%s", port, key1);
    it_resp_t r;
    it_http_timeout ("GET", url, NULL, NULL, 0, 2000, &r);
    long third = r.status;
    bool said = r.body && strstr (r.body, "too_many_streams");
    it_resp_free (&r);
    //  A place given back (the gateway finds the client gone at its next heartbeat) is the
    //  key's again.
    close (a1);
    long again = 0;
    for (int i = 0; i < 50 && again != 200; i++) {
        usleep (200000);
        it_http_timeout ("GET", url, NULL, NULL, 0, 300, &r);
        again = r.status;
        it_resp_free (&r);
    }
    close (a2);
    close (b1);
    close (boot);
    it_stop_pid (pid);
    unlink (log_path);
    cr_assert_eq (third, 429, "a third stream of one key: %ld", third);
    cr_assert (said);
    cr_assert_eq (again, 200, "the key's place was not given back: %ld", again);
}
