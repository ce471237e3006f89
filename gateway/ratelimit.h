/*  ratelimit.h - request rate limits per source address and per API key, shared by replicas.
 *
 *  The gateway asks fks_ratelimit_hit before it does any work for a request. Each (scope, key)
 *  pair - scope "ip" with the client address, scope "key" with an API key's public prefix,
 *  never a secret - gets a sliding window: the count of the current fixed window plus the
 *  previous window's count weighted by how much of it still overlaps the sliding one.
 *
 *  Counting happens in memory on the request path (one mutex, no I/O), and a background
 *  thread pushes this replica's increments to Redis every sync interval in one EVAL and reads
 *  back the global counts, so all gateway replicas share one budget. Within a replica the
 *  limit is exact; across replicas it can be overshot by at most what the other replicas
 *  accepted during one sync interval. When Redis is unreachable the limiter keeps working on
 *  this replica's own counts (the local fallback), says so once in the log and in the gauge
 *  fks_gateway_ratelimit_shared, and goes back to shared counts when Redis answers again.
 *
 *  Memory is bounded: at most max_entries pairs are tracked; pairs idle for two windows are
 *  forgotten, with any counts an outage kept from Redis (by then they weigh in no window).
 *  When the table is full a new pair is refused (fail closed): a flood of distinct addresses
 *  must not switch the limits off. Thread-safe.
 */
#ifndef FKS_RATELIMIT_H
#define FKS_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FKS_RATELIMIT_KEY_MAX 96        /* scope + ":" + key, incl. NUL; longer keys are hashed */

typedef struct fks_ratelimit_t fks_ratelimit_t;

typedef struct {
    const char *redis_url;      /* NULL: local counts only, never shared */
    int64_t window_ms;          /* the sliding window; 0: 60000 */
    int sync_ms;                /* how often counts are exchanged with Redis; 0: 100 */
    size_t max_entries;         /* (scope, key) pairs tracked at once; 0: 65536 */
    const char *key_prefix;     /* Redis key prefix; NULL: "fks:rl:" */
} fks_ratelimit_opts_t;

/*  Creates a limiter and, with a redis_url, its sync thread (which connects lazily: Redis may
 *  be down at start). Returns NULL (logged) on a bad option or URL. */
fks_ratelimit_t *fks_ratelimit_new (const fks_ratelimit_opts_t *opts);

/*  Stops the sync thread (after one last push of pending counts) and frees everything.
 *  NULL or *self_p NULL is a no-op. */
void fks_ratelimit_destroy (fks_ratelimit_t **self_p);

/*  Counts one request of `key` (NUL-terminated, any bytes) in `scope` (a short literal such as
 *  "ip") against `limit` requests per window. Returns 0 when the request may go ahead (and
 *  counts it), 1 when it is over the limit (not counted) with *retry_after_s set to the whole
 *  seconds after which a retry would be accepted (at least 1). A limit <= 0 means unlimited
 *  (always 0, nothing counted). Thread-safe, no I/O. */
int fks_ratelimit_hit (fks_ratelimit_t *self, const char *scope, const char *key, int64_t limit,
                       int *retry_after_s);

/*  Whether one more request of `key` in `scope` would be over `limit` now, without counting
 *  anything: 1 (with *retry_after_s as fks_ratelimit_hit sets it), or 0, also for a pair not
 *  tracked yet. For budgets of failures, counted with fks_ratelimit_hit only once a request
 *  has failed but checked before the work (the API's keys that are not valid, per source).
 *  Thread-safe, no I/O. */
int fks_ratelimit_over (fks_ratelimit_t *self, const char *scope, const char *key,
                        int64_t limit, int *retry_after_s);

/*  True while counts are shared through Redis (the last sync succeeded). */
bool fks_ratelimit_shared (fks_ratelimit_t *self);

/*  Runs one sync with Redis now and waits for it (for tests). 0 when Redis took the counts,
 *  -1 when it could not be reached (or no redis_url). */
int fks_ratelimit_sync_now (fks_ratelimit_t *self);

#endif
