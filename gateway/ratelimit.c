/*  ratelimit.c - request rate limits per source address and per API key, shared by replicas.
 *
 *  The request path only touches memory: a chained hash table of (scope:key) entries under one
 *  mutex, each entry holding this replica's count for the current window, the other replicas'
 *  count as of the last sync, and the previous window's total. The sliding-window estimate is
 *
 *      prev_total * (time left in the current window / window) + others + ours
 *
 *  The sync thread wakes every sync_ms, takes the increments not yet pushed, and sends them to
 *  Redis in one EVAL per chunk of entries: INCRBY the current window's key (with an expiry of
 *  two windows), GET the previous window's key. The replies give each entry the global counts.
 *  Increments of a window that ended before they were pushed are carried and pushed into that
 *  window's key, so other replicas still weigh them as "previous window". A failed sync puts the
 *  increments back to be pushed next time and switches to local counts until Redis answers.
 *
 *  Entries idle for two windows are freed by the sync thread, pushed or not: once a window and
 *  the next one are over, no replica reads that window's key again and a new hit would start
 *  the entry afresh, so increments still unpushed then (Redis was down) no longer count and are
 *  dropped with it. At most max_entries live at once.
 */
#include "gateway/ratelimit.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/redis.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_CHUNK              256         /* entries per EVAL */
#define S_REDIS_CONNECT_MS   300
#define S_REDIS_COMMAND_MS   1000

//  Adds each delta to its window's key and reads the previous window. KEYS come in pairs
//  (current, previous); ARGV[i] is the i-th delta and the last ARGV the expiry in ms.
static const char s_script[] =
    "local n = #ARGV - 1\n"
    "local out = {}\n"
    "for i = 1, n do\n"
    "  local c\n"
    "  local d = tonumber(ARGV[i])\n"
    "  if d > 0 then\n"
    "    c = redis.call('INCRBY', KEYS[2*i-1], d)\n"
    "    redis.call('PEXPIRE', KEYS[2*i-1], ARGV[n+1])\n"
    "  else\n"
    "    c = tonumber(redis.call('GET', KEYS[2*i-1]) or '0')\n"
    "  end\n"
    "  out[2*i-1] = c\n"
    "  out[2*i] = tonumber(redis.call('GET', KEYS[2*i]) or '0')\n"
    "end\n"
    "return out\n";

typedef struct s_entry {
    char key[FKS_RATELIMIT_KEY_MAX];
    uint64_t hash;
    int64_t win;                /* index of the current window */
    int64_t cur_local;          /* accepted here in win */
    int64_t cur_pushed;         /* of cur_local, pushed to Redis (or being pushed) */
    int64_t cur_others;         /* the other replicas' count in win, as of the last sync */
    int64_t prev_total;         /* total of window win - 1 (global when known) */
    int64_t carry_win;          /* an ended window with increments not pushed yet */
    int64_t carry_pending;
    struct s_entry *next;       /* hash chain */
    struct s_entry *live_prev, *live_next;
} s_entry_t;

//  One increment (or read) to exchange with Redis.
typedef struct {
    char key[FKS_RATELIMIT_KEY_MAX];
    int64_t win;
    int64_t delta;
    bool carry;                 /* pushes an ended window: the reply is that window's total */
} s_job_t;

struct fks_ratelimit_t {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    s_entry_t **buckets;
    size_t n_buckets;           /* power of two */
    s_entry_t *live;            /* every entry, for the sync thread's walk */
    size_t n_entries;
    size_t max_entries;
    int64_t window_ms;
    int sync_ms;
    char *prefix;
    char *redis_url;
    fks_redis_t *redis;         /* the sync thread's */
    bool shared;                /* last sync succeeded */
    bool warned_down;           /* the fallback was logged */
    bool stop;
    bool have_thread;
    pthread_t thread;
    pthread_mutex_t sync_mutex; /* one sync at a time (thread or sync_now) */
    fks_metric_family_t *rejections;
    fks_metric_t *shared_gauge;
    fks_metric_t *sync_failures;
    fks_metric_t *entries_gauge;
};

static uint64_t
s_hash (const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 1099511628211ULL;
    }
    return h;
}

//  Builds "scope:key" into out; a key too long for the buffer is replaced by its hash and
//  length, which keeps distinct keys distinct in practice and bounds memory.
static void
s_make_key (char out[FKS_RATELIMIT_KEY_MAX], const char *scope, const char *key)
{
    int n = snprintf (out, FKS_RATELIMIT_KEY_MAX, "%s:%s", scope, key);
    if (n < 0 || n >= FKS_RATELIMIT_KEY_MAX)
        snprintf (out, FKS_RATELIMIT_KEY_MAX, "%s:#%016" PRIx64 ".%zu", scope, s_hash (key),
                  strlen (key));
}

static void *s_thread (void *arg);
static void s_sync (fks_ratelimit_t *self);

fks_ratelimit_t *
fks_ratelimit_new (const fks_ratelimit_opts_t *opts)
{
    fks_ratelimit_opts_t o = opts ? *opts : (fks_ratelimit_opts_t) { 0 };
    if (o.window_ms == 0)
        o.window_ms = 60000;
    if (o.sync_ms == 0)
        o.sync_ms = 100;
    if (o.max_entries == 0)
        o.max_entries = 65536;
    if (!o.key_prefix)
        o.key_prefix = "fks:rl:";
    if (o.window_ms < 100 || o.window_ms > 24LL * 3600 * 1000 || o.sync_ms < 1
        || o.sync_ms > 60000 || o.max_entries > (1u << 24) || strlen (o.key_prefix) > 64) {
        fks_error ("rate limiter: invalid options (window %" PRId64 " ms, sync %d ms)",
                   o.window_ms, o.sync_ms);
        return NULL;
    }
    fks_ratelimit_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->window_ms = o.window_ms;
    self->sync_ms = o.sync_ms;
    self->max_entries = o.max_entries;
    self->n_buckets = 64;
    while (self->n_buckets < o.max_entries)
        self->n_buckets <<= 1;
    self->buckets = calloc (self->n_buckets, sizeof *self->buckets);
    self->prefix = strdup (o.key_prefix);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_mutex_init (&self->sync_mutex, NULL);
    pthread_cond_init (&self->wake, NULL);
    if (!self->buckets || !self->prefix) {
        fks_ratelimit_destroy (&self);
        return NULL;
    }
    static const char *const scope_label[] = { "scope" };
    self->rejections = fks_counter_family ("fks_gateway_ratelimit_rejections_total",
                                           "Requests refused with 429, by limit scope",
                                           scope_label, 1);
    self->shared_gauge = fks_metric_get (fks_gauge_family ("fks_gateway_ratelimit_shared",
        "1 while rate limits are shared through Redis, 0 while this replica counts alone",
        NULL, 0), NULL);
    self->sync_failures = fks_metric_get (fks_counter_family (
        "fks_gateway_ratelimit_sync_failures_total",
        "Rate-limit syncs with Redis that failed (limits fell back to local counts)",
        NULL, 0), NULL);
    self->entries_gauge = fks_metric_get (fks_gauge_family ("fks_gateway_ratelimit_entries",
        "Source addresses and API keys currently tracked by the rate limiter", NULL, 0), NULL);
    fks_metric_set (self->shared_gauge, 0);

    if (o.redis_url) {
        fks_redis_err_t rerr;
        self->redis = fks_redis_new (o.redis_url, S_REDIS_CONNECT_MS, S_REDIS_COMMAND_MS, &rerr);
        if (!self->redis) {
            fks_error ("rate limiter: %s", rerr.msg);
            fks_ratelimit_destroy (&self);
            return NULL;
        }
        self->redis_url = strdup (o.redis_url);
        if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
            fks_error ("rate limiter: cannot start its sync thread");
            fks_ratelimit_destroy (&self);
            return NULL;
        }
        self->have_thread = true;
    }
    return self;
}

void
fks_ratelimit_destroy (fks_ratelimit_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_ratelimit_t *self = *self_p;
    if (self->have_thread) {
        pthread_mutex_lock (&self->mutex);
        self->stop = true;
        pthread_cond_broadcast (&self->wake);
        pthread_mutex_unlock (&self->mutex);
        pthread_join (self->thread, NULL);
        s_sync (self);                  /* last push of what is pending */
    }
    s_entry_t *e = self->live;
    while (e) {
        s_entry_t *next = e->live_next;
        free (e);
        e = next;
    }
    fks_redis_destroy (&self->redis);
    free (self->buckets);
    free (self->prefix);
    free (self->redis_url);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->mutex);
    pthread_mutex_destroy (&self->sync_mutex);
    free (self);
    *self_p = NULL;
}

//  Finds the entry for key (mutex held).
static s_entry_t *
s_find (fks_ratelimit_t *self, const char *key, uint64_t hash)
{
    for (s_entry_t *e = self->buckets[hash & (self->n_buckets - 1)]; e; e = e->next)
        if (e->hash == hash && strcmp (e->key, key) == 0)
            return e;
    return NULL;
}

static void
s_unlink (fks_ratelimit_t *self, s_entry_t *e)
{
    s_entry_t **pp = &self->buckets[e->hash & (self->n_buckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    if (e->live_prev)
        e->live_prev->live_next = e->live_next;
    else
        self->live = e->live_next;
    if (e->live_next)
        e->live_next->live_prev = e->live_prev;
    self->n_entries--;
}

//  Moves an entry into window win (mutex held). Increments of the window just ended that were
//  not pushed yet become a carry, so the sync thread still adds them to that window's key.
static void
s_roll (s_entry_t *e, int64_t win)
{
    if (e->win == win)
        return;
    if (e->win == win - 1) {
        e->prev_total = e->cur_others + e->cur_local;
        int64_t pending = e->cur_local - e->cur_pushed;
        if (pending > 0) {
            e->carry_win = e->win;
            e->carry_pending = pending;
        }
    }
    else {
        e->prev_total = 0;
        e->carry_pending = 0;
    }
    e->win = win;
    e->cur_local = e->cur_pushed = e->cur_others = 0;
}

//  Milliseconds until one more request fits, given the counts (whole window arithmetic in
//  doubles; the result is only advice for Retry-After).
static int64_t
s_wait_ms (int64_t window, int64_t elapsed, int64_t prev, int64_t cur, int64_t limit)
{
    double W = (double) window;
    double room = (double) (limit - 1 - cur);       /* what the weighted prev may still use */
    if (room >= 0 && prev > 0) {
        //  prev * (W - elapsed - t) / W <= room  =>  t >= W - elapsed - room * W / prev
        double t = W - (double) elapsed - room * W / (double) prev;
        return t < 0 ? 0 : (int64_t) t + 1;
    }
    //  Over on the current window alone: wait for the next one, where cur becomes prev.
    double until_next = W - (double) elapsed;
    if (cur <= 0 || limit <= 1)
        return (int64_t) (until_next + W);
    double e2 = W - (double) (limit - 1) * W / (double) cur;
    if (e2 < 0)
        e2 = 0;
    return (int64_t) (until_next + e2) + 1;
}

//  A request's entry key and where now falls: its window and how far into it.
typedef struct {
    char k[FKS_RATELIMIT_KEY_MAX];
    uint64_t h;
    int64_t win, elapsed;
} s_at_t;

static void
s_at (const fks_ratelimit_t *self, const char *scope, const char *key, s_at_t *at)
{
    s_make_key (at->k, scope, key ? key : "");
    at->h = s_hash (at->k);
    int64_t now = fks_now_ms ();
    at->win = now / self->window_ms;
    at->elapsed = now - at->win * self->window_ms;
}

//  Whether one more request for e (rolled to this window, `elapsed` ms into it) would pass
//  limit; if so, *retry_after_s (may be NULL) gets when one will be allowed. Under the mutex.
static bool
s_over (const fks_ratelimit_t *self, const s_entry_t *e, int64_t elapsed, int64_t limit,
        int *retry_after_s)
{
    int64_t cur = e->cur_others + e->cur_local;
    double est = (double) e->prev_total * (double) (self->window_ms - elapsed)
                 / (double) self->window_ms + (double) cur;
    if (est + 1 <= (double) limit)
        return false;
    if (retry_after_s) {
        int64_t ms = s_wait_ms (self->window_ms, elapsed, e->prev_total, cur, limit);
        int64_t s = (ms + 999) / 1000;
        *retry_after_s = s < 1 ? 1 : (s > 86400 ? 86400 : (int) s);
    }
    return true;
}

//  A new entry for at (the caller holds the mutex), or NULL when the table is full or memory
//  runs out.
static s_entry_t *
s_add (fks_ratelimit_t *self, const s_at_t *at)
{
    if (self->n_entries >= self->max_entries)
        return NULL;
    s_entry_t *e = calloc (1, sizeof *e);
    if (!e)
        return NULL;
    memcpy (e->key, at->k, sizeof at->k);
    e->hash = at->h;
    e->win = at->win;
    e->carry_win = -1;
    size_t b = at->h & (self->n_buckets - 1);
    e->next = self->buckets[b];
    self->buckets[b] = e;
    e->live_next = self->live;
    if (self->live)
        self->live->live_prev = e;
    self->live = e;
    self->n_entries++;
    return e;
}

//  Whether key is over limit in scope now (1, *retry_after_s set) or not (0); with count, a
//  request that is not over is counted (a new key gets an entry: none free is "over").
static int
s_check (fks_ratelimit_t *self, const char *scope, const char *key, int64_t limit,
         int *retry_after_s, bool count)
{
    if (limit <= 0)
        return 0;
    s_at_t at;
    s_at (self, scope, key, &at);
    pthread_mutex_lock (&self->mutex);
    s_entry_t *e = s_find (self, at.k, at.h);
    if (!e && count && !(e = s_add (self, &at))) {
        bool full = self->n_entries >= self->max_entries;
        pthread_mutex_unlock (&self->mutex);
        if (retry_after_s)
            *retry_after_s = 1;
        if (full)
            fks_metric_inc (fks_metric_get1 (self->rejections, "full"));
        return 1;
    }
    int rc = 0;
    if (e) {
        s_roll (e, at.win);
        rc = s_over (self, e, at.elapsed, limit, retry_after_s);
        if (!rc && count)
            e->cur_local++;
    }
    pthread_mutex_unlock (&self->mutex);
    if (rc)
        fks_metric_inc (fks_metric_get1 (self->rejections, scope));
    return rc;
}

int
fks_ratelimit_hit (fks_ratelimit_t *self, const char *scope, const char *key, int64_t limit,
                   int *retry_after_s)
{
    return s_check (self, scope, key, limit, retry_after_s, true);
}

int
fks_ratelimit_over (fks_ratelimit_t *self, const char *scope, const char *key, int64_t limit,
                    int *retry_after_s)
{
    return s_check (self, scope, key, limit, retry_after_s, false);
}

bool
fks_ratelimit_shared (fks_ratelimit_t *self)
{
    pthread_mutex_lock (&self->mutex);
    bool shared = self->shared;
    pthread_mutex_unlock (&self->mutex);
    return shared;
}

//  Records the outcome of a sync for logs and metrics (mutex not held).
static void
s_set_shared (fks_ratelimit_t *self, bool ok, const char *why)
{
    pthread_mutex_lock (&self->mutex);
    bool was = self->shared;
    bool warned = self->warned_down;
    self->shared = ok;
    if (!ok)
        self->warned_down = true;
    else
        self->warned_down = false;
    pthread_mutex_unlock (&self->mutex);
    fks_metric_set (self->shared_gauge, ok ? 1 : 0);
    if (!ok)
        fks_metric_inc (self->sync_failures);
    if (ok && !was)
        fks_info ("rate limits are shared through Redis");
    else if (!ok && !warned)
        fks_warn ("rate limits fall back to this replica's own counts: Redis unreachable (%s)",
                  why);
}

//  Sends jobs[0..n) in one EVAL; fills replies (2 per job). 0 or -1 with why.
static int
s_eval (fks_ratelimit_t *self, const s_job_t *jobs, size_t n, int64_t (*replies)[2],
        char *why, size_t cap)
{
    size_t argc = 2 * n + n + 1;
    const char **argv = calloc (argc, sizeof *argv);
    size_t *lens = calloc (argc, sizeof *lens);
    char (*keys)[2][FKS_RATELIMIT_KEY_MAX + 96] = calloc (n, sizeof *keys);
    char (*nums)[24] = calloc (n + 1, sizeof *nums);
    int rc = -1;
    if (!argv || !lens || !keys || !nums) {
        snprintf (why, cap, "out of memory");
        goto done;
    }
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf (keys[i][0], sizeof keys[i][0], "%s%s:%" PRId64, self->prefix, jobs[i].key,
                  jobs[i].win);
        snprintf (keys[i][1], sizeof keys[i][1], "%s%s:%" PRId64, self->prefix, jobs[i].key,
                  jobs[i].win - 1);
        argv[a++] = keys[i][0];
        argv[a++] = keys[i][1];
    }
    for (size_t i = 0; i < n; i++) {
        snprintf (nums[i], sizeof nums[i], "%" PRId64, jobs[i].delta);
        argv[a++] = nums[i];
    }
    snprintf (nums[n], sizeof nums[n], "%" PRId64, 2 * self->window_ms + 1000);
    argv[a++] = nums[n];
    for (size_t i = 0; i < a; i++)
        lens[i] = strlen (argv[i]);

    fks_redis_err_t err;
    redisReply *r = fks_redis_eval (self->redis, s_script, (int) (2 * n), (int) a, argv, lens,
                                    &err);
    if (!r) {
        snprintf (why, cap, "%s", err.msg);
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * n) {
        snprintf (why, cap, "unexpected reply to the rate-limit script");
        freeReplyObject (r);
        goto done;
    }
    for (size_t i = 0; i < 2 * n; i++) {
        redisReply *el = r->element[i];
        replies[i / 2][i % 2] = el->type == REDIS_REPLY_INTEGER ? el->integer : 0;
    }
    freeReplyObject (r);
    rc = 0;
done:
    free (argv);
    free (lens);
    free (keys);
    free (nums);
    return rc;
}

//  One exchange with Redis: evict idle entries, collect pending increments, push them, and
//  apply the global counts. Serialised by sync_mutex.
static void
s_sync (fks_ratelimit_t *self)
{
    if (!self->redis)
        return;
    pthread_mutex_lock (&self->sync_mutex);
    int64_t now_win = fks_now_ms () / self->window_ms;

    pthread_mutex_lock (&self->mutex);
    s_entry_t *e = self->live;
    while (e) {
        s_entry_t *next = e->live_next;
        //  Idle since before the previous window: its counts (and its carry, of the window
        //  before) weigh in no sliding window any more, here or on another replica, so they go
        //  with it even if a failed sync left them unpushed. Keeping them would keep the entry
        //  for ever (they are too old to push) and fill the table.
        if (e->win < now_win - 1) {
            s_unlink (self, e);
            free (e);
        }
        e = next;
    }
    size_t cap = self->n_entries * 2;
    s_job_t *jobs = cap ? malloc (cap * sizeof *jobs) : NULL;
    size_t n = 0;
    for (e = self->live; e && jobs; e = e->live_next) {
        if (e->carry_pending > 0 && e->carry_win >= 0) {
            s_job_t *j = &jobs[n++];
            memcpy (j->key, e->key, sizeof j->key);
            j->win = e->carry_win;
            j->delta = e->carry_pending;
            j->carry = true;
            e->carry_pending = 0;
        }
        if (e->win >= now_win - 1) {
            s_job_t *j = &jobs[n++];
            memcpy (j->key, e->key, sizeof j->key);
            j->win = e->win;
            j->delta = e->cur_local - e->cur_pushed;
            j->carry = false;
            e->cur_pushed = e->cur_local;
        }
    }
    fks_metric_set (self->entries_gauge, (double) self->n_entries);
    pthread_mutex_unlock (&self->mutex);

    char why[256] = "";
    bool ok = true;
    if (n == 0) {
        //  Nothing to exchange: a PING keeps the shared/local state true.
        fks_redis_err_t err;
        if (fks_redis_ping (self->redis, &err) != 0) {
            ok = false;
            snprintf (why, sizeof why, "%s", err.msg);
        }
    }
    int64_t (*replies)[2] = n ? calloc (n, sizeof *replies) : NULL;
    size_t done = 0;
    while (ok && done < n) {
        size_t chunk = n - done < S_CHUNK ? n - done : S_CHUNK;
        if (!replies || s_eval (self, jobs + done, chunk, replies + done, why, sizeof why) != 0)
            ok = false;
        else
            done += chunk;
    }

    pthread_mutex_lock (&self->mutex);
    for (size_t i = 0; i < n; i++) {
        s_job_t *j = &jobs[i];
        e = s_find (self, j->key, s_hash (j->key));
        if (!e)
            continue;
        if (i < done) {
            if (j->carry) {
                if (e->win == j->win + 1 && replies[i][0] > e->prev_total)
                    e->prev_total = replies[i][0];
            }
            else if (e->win == j->win) {
                int64_t others = replies[i][0] - e->cur_pushed;
                e->cur_others = others > 0 ? others : 0;
                if (replies[i][1] > e->prev_total)
                    e->prev_total = replies[i][1];
            }
            else if (e->win == j->win + 1 && replies[i][0] > e->prev_total)
                e->prev_total = replies[i][0];
        }
        else {
            //  Not pushed: give the increments back so the next sync pushes them, or drops
            //  them with the entry if by then their window no longer counts.
            if (j->carry || e->win != j->win) {
                if (e->win == j->win + 1 && j->delta > 0) {
                    if (e->carry_win != j->win)
                        e->carry_pending = 0;
                    e->carry_win = j->win;
                    e->carry_pending += j->delta;
                }
            }
            else
                e->cur_pushed -= j->delta;
        }
    }
    pthread_mutex_unlock (&self->mutex);
    free (jobs);
    free (replies);
    s_set_shared (self, ok, why);
    pthread_mutex_unlock (&self->sync_mutex);
}

static void *
s_thread (void *arg)
{
    fks_ratelimit_t *self = arg;
    pthread_mutex_lock (&self->mutex);
    while (!self->stop) {
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long) (self->sync_ms % 1000) * 1000000L;
        ts.tv_sec += self->sync_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait (&self->wake, &self->mutex, &ts);
        if (self->stop)
            break;
        pthread_mutex_unlock (&self->mutex);
        s_sync (self);
        pthread_mutex_lock (&self->mutex);
    }
    pthread_mutex_unlock (&self->mutex);
    return NULL;
}

int
fks_ratelimit_sync_now (fks_ratelimit_t *self)
{
    if (!self->redis)
        return -1;
    s_sync (self);
    return fks_ratelimit_shared (self) ? 0 : -1;
}
