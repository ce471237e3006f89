/*  fks_data.c - fks-data, the data worker: market data in, bars and prices out.
 *
 *  The other workers consume messages; this one produces them. Its loop polls the feeds of
 *  FKS_DATA_FEEDS (schedule.h) when they are due, runs every bar through the quality checks
 *  (quality.h), and stores each poll's result with fks_ingest (ingest.h): the bars table, the
 *  market.bar and data.quality events in the outbox, published after COMMIT, and the latest
 *  price per symbol in Redis. A poll whose result cannot be stored is undone and tried again,
 *  so a PostgreSQL outage delays bars but loses none. A rate limit (HTTP 429 or 418) met by
 *  one feed holds every feed of that source as long, the limit being the address's. Live
 *  feeds are also checked for staleness on every pass; a stale finding that cannot be stored
 *  is kept and stored later.
 *
 *  Replicas: each feed is polled under a lease in Redis (fks:data:lease:<feed>,
 *  FKS_DATA_LEASE_TTL), renewed on the loop's passes every third of the TTL whether or not
 *  the feed is due (a feed may poll far less often than the TTL: yahoo every 5 minutes), so
 *  two replicas never poll the same feed at once; a replica that dies hands its feeds to the
 *  others when its leases expire. Storing is idempotent anyway: an unchanged bar is neither
 *  stored again nor re-announced.
 *
 *  Configuration: FKS_ENV, FKS_PG_URL and FKS_REDIS_URL (required), FKS_BUS_URL,
 *  FKS_HTTP_BIND (127.0.0.1), FKS_DATA_PORT (8003), FKS_DATA_FEEDS (none: the worker only
 *  serves its endpoints), FKS_BINANCE_URL (https://api.binance.com), FKS_YAHOO_URL
 *  (https://query1.finance.yahoo.com), FKS_DATA_HTTP_TIMEOUT (10s), FKS_DATA_BATCH (500 bars
 *  per transaction), FKS_DATA_OUTLIER (0.2), FKS_DATA_STALE_FACTOR (3), FKS_DATA_GAP_MIN (1),
 *  FKS_DATA_CATCHUP (10000 intervals at most fetched back to the newest stored bar when a live
 *  feed starts or is taken over; older holes are reported as gaps, see feed.h),
 *  FKS_DATA_LEASE_TTL (30s), FKS_PG_STATEMENT_TIMEOUT_MS (30000; 0 none: a store waiting longer,
 *  on a lock held elsewhere, is cancelled, rolled back and tried again like any failed store).
 *  docs/DATA_AI.md explains each.
 *
 *  /health, /ready (PostgreSQL and Redis) and /metrics on FKS_HTTP_BIND:FKS_DATA_PORT.
 *  SIGTERM or SIGINT: finishes the poll under way, releases its leases, exits 0.
 */
#include "workers/data/feed.h"
#include "workers/data/ingest.h"
#include "workers/data/schedule.h"
#include "bus/client.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/ops.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_REDIS_TIMEOUT_MS 2000
#define S_STORE_RETRY_MIN  1000
#define S_STORE_RETRY_MAX  30000
#define S_WAIT_MAX_MS      1000
#define S_LEASE_RETRY_MS   1000

typedef struct {
    char *env, *pg_url, *redis_url, *bus_url, *http_bind, *feeds, *binance_url, *yahoo_url;
    int port;
    int64_t http_timeout_ms, lease_ttl_ms, batch, gap_min, statement_timeout_ms, catchup;
    double outlier, stale_factor;
} s_cfg_t;

typedef struct {
    fks_feed_t *feed;
    fks_adapter_t *own_adapter;         /* a replay's adapter belongs to its feed entry */
    char lease_key[FKS_FEED_NAME_MAX + 32];
    bool leased;
    bool lease_error;                   /* the last lease check failed (logged once) */
    int64_t lease_renew_ms;             /* leased: renew it at this time */
    bool seeded;                        /* since the lease was taken: fks_feed_seed done */
    bool seed_error;                    /* the last look at the stored bars failed (logged) */
    int64_t hold_until_ms;              /* no lease: look again at this time */
    int64_t store_retry_ms;
    bool failing;                       /* last poll failed: log the recovery */
    bool done_logged;
    fks_quality_finding_t stale;        /* a stale finding not stored yet */
    bool stale_pending;                 /* ... to be stored at stale_retry_ms */
    int64_t stale_retry_ms;
    fks_ingest_stats_t totals;
    size_t rejected;
    fks_metric_t *m_served;
} s_entry_t;

typedef struct {
    s_cfg_t cfg;
    s_entry_t *entries;
    size_t n_entries;
    fks_adapter_t *binance, *yahoo;
    fks_pg_t *pg;
    fks_redis_t *redis;
    fks_bus_client_t *bus;
    fks_ops_t *ops;
    char instance[96];
    pthread_mutex_t ready_lock;
    fks_pg_t *ready_pg;
    fks_redis_t *ready_redis;
    fks_feed_out_t out;
    fks_metric_family_t *f_bars, *f_quality, *f_fetch, *f_fetch_s;
    fks_metric_t *m_published, *m_pub_failed, *m_store_failed, *m_price_failed;
} s_data_t;

static int s_stop_fd = -1;

static void
s_on_signal (int sig)
{
    (void) sig;
    uint64_t one = 1;
    ssize_t rc = write (s_stop_fd, &one, sizeof one);
    (void) rc;
}

static void
s_wipe_free (char *s)
{
    if (s) {
        volatile char *p = s;
        while (*p)
            *p++ = '\0';
        free (s);
    }
}

static void
s_cfg_free (s_cfg_t *c)
{
    free (c->env);
    s_wipe_free (c->pg_url);
    s_wipe_free (c->redis_url);
    free (c->bus_url);
    free (c->http_bind);
    free (c->feeds);
    free (c->binance_url);
    free (c->yahoo_url);
    memset (c, 0, sizeof *c);
}

static int
s_cfg_load (s_cfg_t *c)
{
    memset (c, 0, sizeof *c);
    fks_config_err_t e;
    int64_t port;
#define S_TRY(call) do { if ((call) < 0) goto fail; } while (0)
    S_TRY (fks_config_str ("FKS_ENV", "local", &c->env, &e));
    S_TRY (fks_config_str ("FKS_PG_URL", NULL, &c->pg_url, &e));
    if (!c->pg_url) {
        snprintf (e.msg, sizeof e.msg, "FKS_PG_URL is required (set FKS_PG_URL or FKS_PG_URL_FILE)");
        goto fail;
    }
    S_TRY (fks_config_str ("FKS_REDIS_URL", NULL, &c->redis_url, &e));
    if (!c->redis_url) {
        snprintf (e.msg, sizeof e.msg,
                  "FKS_REDIS_URL is required (set FKS_REDIS_URL or FKS_REDIS_URL_FILE)");
        goto fail;
    }
    S_TRY (fks_config_str ("FKS_BUS_URL", NULL, &c->bus_url, &e));
    S_TRY (fks_config_str ("FKS_HTTP_BIND", "127.0.0.1", &c->http_bind, &e));
    S_TRY (fks_config_int ("FKS_DATA_PORT", 8003, 0, 65535, &port, &e));
    c->port = (int) port;
    S_TRY (fks_config_str ("FKS_DATA_FEEDS", "", &c->feeds, &e));
    S_TRY (fks_config_str ("FKS_BINANCE_URL", "https://api.binance.com", &c->binance_url, &e));
    S_TRY (fks_config_str ("FKS_YAHOO_URL", "https://query1.finance.yahoo.com", &c->yahoo_url,
                           &e));
    S_TRY (fks_config_duration_ms ("FKS_DATA_HTTP_TIMEOUT", 10000, 100, 120000,
                                   &c->http_timeout_ms, &e));
    S_TRY (fks_config_duration_ms ("FKS_DATA_LEASE_TTL", 30000, 1000, 3600000, &c->lease_ttl_ms,
                                   &e));
    S_TRY (fks_config_int ("FKS_DATA_BATCH", 500, 1, 5000, &c->batch, &e));
    S_TRY (fks_config_double ("FKS_DATA_OUTLIER", 0.2, 0, 100, &c->outlier, &e));
    S_TRY (fks_config_double ("FKS_DATA_STALE_FACTOR", 3, 0, 10000, &c->stale_factor, &e));
    S_TRY (fks_config_int ("FKS_DATA_GAP_MIN", 1, 1, 1000000, &c->gap_min, &e));
    S_TRY (fks_config_int ("FKS_DATA_CATCHUP", 10000, 0, 1000000, &c->catchup, &e));
    S_TRY (fks_config_int ("FKS_PG_STATEMENT_TIMEOUT_MS", 30000, 0, 3600000,
                           &c->statement_timeout_ms, &e));
#undef S_TRY
    return 0;
fail:
    fprintf (stderr, "fks-data: %s\n", e.msg);
    s_cfg_free (c);
    return -1;
}

//  --------------------------------------------------------------------------
//  Leases: one replica polls a feed at a time

static const char s_lease_take[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "return 0\n";
static const char s_lease_drop[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

//  1 when this replica holds (or just took) the lease, 0 when another does, -1 on error.
static int
s_lease (s_data_t *self, s_entry_t *en, int64_t now_ms)
{
    char ttl[24];
    snprintf (ttl, sizeof ttl, "%" PRId64, self->cfg.lease_ttl_ms);
    fks_redis_err_t err;
    const char *argv[3] = { en->lease_key, self->instance, ttl };
    redisReply *r = fks_redis_eval (self->redis, s_lease_take, 1, 3, argv, NULL, &err);
    if (!r) {
        if (!en->lease_error)
            fks_log (FKS_LOG_WARN, NULL, NULL, "%s: lease not checked (Redis: %s); not "
                     "polling until Redis answers", fks_feed_name (en->feed), err.msg);
        en->lease_error = true;
        en->leased = false;
        en->seeded = false;
        return -1;
    }
    en->lease_error = false;
    int held = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject (r);
    //  A third of the TTL: two renewals may be late (a slow poll, a slow store) before the
    //  lease lapses.
    en->lease_renew_ms = now_ms + self->cfg.lease_ttl_ms / 3;
    if (held != en->leased)
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: %s", fks_feed_name (en->feed),
                 held ? "this replica polls it" : "another replica polls it");
    en->leased = held;
    //  Whoever held it meanwhile may have stored bars: look again when it is taken.
    if (!held)
        en->seeded = false;
    return held;
}

//  Renews a held lease when due, on every pass of the loop: a lease renewed only by polls
//  lapses between the polls of a feed polled less often than the TTL, and another replica
//  then polls it too. A finished replay polls no more and lets its lease lapse, as before.
static bool
s_lease_due (const s_entry_t *en, int64_t now_ms)
{
    return en->leased && !fks_feed_done (en->feed) && now_ms >= en->lease_renew_ms;
}

static void
s_lease_keep (s_data_t *self, s_entry_t *en, int64_t now_ms)
{
    if (s_lease_due (en, now_ms))
        s_lease (self, en, now_ms);
}

static void
s_leases_drop (s_data_t *self)
{
    for (size_t i = 0; i < self->n_entries; i++) {
        s_entry_t *en = &self->entries[i];
        if (!en->leased)
            continue;
        fks_redis_err_t err;
        const char *argv[2] = { en->lease_key, self->instance };
        redisReply *r = fks_redis_eval (self->redis, s_lease_drop, 1, 2, argv, NULL, &err);
        if (r)
            freeReplyObject (r);
        en->leased = false;
    }
}

//  --------------------------------------------------------------------------
//  Storing a poll

static void
s_count (s_data_t *self, s_entry_t *en, const fks_ingest_stats_t *st, const fks_feed_out_t *out)
{
    const char *src = fks_feed_source (en->feed);
    fks_metric_add (fks_metric_get (self->f_bars, (const char *[]) { src, "stored" }),
                    (double) st->stored);
    fks_metric_add (fks_metric_get (self->f_bars, (const char *[]) { src, "unchanged" }),
                    (double) st->unchanged);
    fks_metric_add (fks_metric_get (self->f_bars, (const char *[]) { src, "rejected" }),
                    (double) out->rejected);
    for (size_t i = 0; i < out->n_findings; i++)
        fks_metric_inc (fks_metric_get1 (self->f_quality,
                                         fks_quality_kind_name (out->findings[i].kind)));
    fks_metric_add (self->m_published, (double) st->published);
    fks_metric_add (self->m_pub_failed, (double) st->publish_failed);
    fks_metric_add (self->m_price_failed, (double) st->price_failed);
    en->totals.stored += st->stored;
    en->totals.unchanged += st->unchanged;
    en->totals.events += st->events;
    en->rejected += out->rejected;
}

//  PostgreSQL failed: the next try in 1 s, doubling up to 30 s.
static void
s_store_backoff (s_entry_t *en)
{
    en->store_retry_ms = en->store_retry_ms ? en->store_retry_ms * 2 : S_STORE_RETRY_MIN;
    if (en->store_retry_ms > S_STORE_RETRY_MAX)
        en->store_retry_ms = S_STORE_RETRY_MAX;
}

//  Stores out; on failure undoes the poll. 0 or -1.
static int
s_store (s_data_t *self, s_entry_t *en, const fks_feed_out_t *out, int64_t now_ms,
         bool undo_on_failure)
{
    fks_ingest_stats_t st;
    memset (&st, 0, sizeof st);
    fks_pg_err_t err;
    if (fks_ingest (self->pg, self->redis, self->bus, fks_feed_source (en->feed), &out->bars,
                    out->findings, out->n_findings, now_ms, &st, &err) != 0) {
        fks_metric_inc (self->m_store_failed);
        s_store_backoff (en);
        char what[64];
        if (out->bars.n)
            snprintf (what, sizeof what, "%zu bars", out->bars.n);
        else
            snprintf (what, sizeof what, "%zu data-quality findings", out->n_findings);
        fks_log (FKS_LOG_WARN, NULL, NULL, "%s: %s not stored, trying again in %" PRId64
                 " ms: %s%s%s", fks_feed_name (en->feed), what, en->store_retry_ms,
                 err.msg, err.sqlstate[0] ? " SQLSTATE " : "", err.sqlstate);
        if (undo_on_failure)
            fks_feed_undo (en->feed, now_ms + en->store_retry_ms);
        return -1;
    }
    en->store_retry_ms = 0;
    s_count (self, en, &st, out);
    //  Findings repeated from an earlier read are not events again; say so rather than
    //  logging them as news.
    for (size_t i = 0; i < out->n_findings; i++)
        fks_log (st.repeated ? FKS_LOG_DEBUG : FKS_LOG_INFO, NULL, NULL, "data quality: %s: %s",
                 fks_quality_kind_name (out->findings[i].kind), out->findings[i].detail);
    if (st.repeated)
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: %zu data-quality findings, %zu of them already "
                 "reported when the bars were first stored", fks_feed_name (en->feed),
                 out->n_findings, st.repeated);
    if (st.stored)
        fks_log (FKS_LOG_DEBUG, NULL, NULL, "%s: %zu bars stored, %zu unchanged",
                 fks_feed_name (en->feed), st.stored, st.unchanged);
    return 0;
}

//  A live feed just taken (at start, or from another replica) continues from the bars stored
//  last for its symbol and interval, so a restart leaves no unfetched, unreported hole
//  (feed.h). 0, or -1 when PostgreSQL did not answer: the feed then waits, as polling from
//  the lookback alone could leave that hole.
static int
s_seed (s_data_t *self, s_entry_t *en, int64_t now_ms)
{
    if (fks_feed_is_history (en->feed)) {
        en->seeded = true;
        return 0;
    }
    fks_bars_t stored = { 0 };
    fks_pg_err_t err;
    if (fks_ingest_newest (self->pg, fks_feed_symbol (en->feed), fks_feed_interval (en->feed),
                           &stored, &err) != 0) {
        s_store_backoff (en);
        fks_log (en->seed_error ? FKS_LOG_DEBUG : FKS_LOG_WARN, NULL, NULL, "%s: the newest "
                 "stored bar not read, not polling yet; trying again in %" PRId64 " ms: %s%s%s",
                 fks_feed_name (en->feed), en->store_retry_ms, err.msg,
                 err.sqlstate[0] ? " SQLSTATE " : "", err.sqlstate);
        en->seed_error = true;
        fks_bars_free (&stored);
        return -1;
    }
    en->seed_error = false;
    int rc = fks_feed_seed (en->feed, &stored, now_ms);
    char when[24];
    if (rc != FKS_FEED_SEED_NONE)
        fks_time_text (when, stored.v[stored.n - 1].open_time);
    if (rc == FKS_FEED_SEED_RESUMED)
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: continuing from the newest stored bar (%s)",
                 fks_feed_name (en->feed), when);
    else if (rc == FKS_FEED_SEED_GAP)
        fks_log (FKS_LOG_WARN, NULL, NULL, "%s: the newest stored bar (%s) is too old to "
                 "fetch back to (FKS_DATA_CATCHUP %" PRId64 " intervals, or the lookback): "
                 "the bars missing before the first fetched are reported as a gap",
                 fks_feed_name (en->feed), when, self->cfg.catchup);
    fks_bars_free (&stored);
    en->seeded = true;
    return 0;
}

//  A rate limit (HTTP 429, or 418: banned for ignoring 429s) counts a source's requests by
//  address, not by symbol: every feed of that source waits until the limited one may ask
//  again, instead of each sending its own request into the limit and being limited in turn
//  (repeated 429s are what turns into a ban). Returns how many feeds were held.
static size_t
s_hold_source (s_data_t *self, const s_entry_t *limited, int64_t until_ms)
{
    size_t held = 0;
    const char *src = fks_feed_source (limited->feed);
    for (size_t i = 0; i < self->n_entries; i++) {
        s_entry_t *en = &self->entries[i];
        if (en == limited || fks_feed_is_history (en->feed) || fks_feed_done (en->feed)
            || strcmp (fks_feed_source (en->feed), src) != 0)
            continue;
        if (en->hold_until_ms < until_ms)
            en->hold_until_ms = until_ms;
        held++;
    }
    return held;
}

static void
s_poll_one (s_data_t *self, s_entry_t *en, int64_t now_ms)
{
    fks_feed_t *feed = en->feed;
    if (fks_feed_done (feed) || now_ms < fks_feed_next_ms (feed) || now_ms < en->hold_until_ms)
        return;
    //  A lease renewed within the last third of its TTL is still held: no round trip.
    if ((!en->leased || now_ms >= en->lease_renew_ms) && s_lease (self, en, now_ms) != 1) {
        //  Another replica polls it, or Redis does not answer: look again a little later.
        en->hold_until_ms = now_ms + S_LEASE_RETRY_MS;
        return;
    }
    if (!en->seeded && s_seed (self, en, now_ms) != 0) {
        en->hold_until_ms = now_ms + en->store_retry_ms;
        return;
    }
    fks_feed_out_clear (&self->out);
    fks_fetch_err_t err;
    int64_t t0 = fks_mono_ns ();
    int rc = fks_feed_poll (feed, now_ms, &self->out, &err);
    const char *src = fks_feed_source (feed);
    if (rc == FKS_FEED_IDLE)
        return;
    if (!fks_feed_is_history (feed))
        fks_metric_observe (fks_metric_get1 (self->f_fetch_s, src),
                            (double) (fks_mono_ns () - t0) / 1e9);
    if (rc == FKS_FEED_FAILED) {
        bool limited = err.http_status == 429 || err.http_status == 418;
        const char *result = limited ? "rate_limited" : "error";
        fks_metric_inc (fks_metric_get (self->f_fetch, (const char *[]) { src, result }));
        size_t held = limited ? s_hold_source (self, en, fks_feed_next_ms (feed)) : 0;
        char also[96] = "";
        if (held)
            snprintf (also, sizeof also, " (and %zu other %s feed%s: the limit is the "
                      "address's)", held, src, held == 1 ? "" : "s");
        fks_log (en->failing && !limited ? FKS_LOG_DEBUG : FKS_LOG_WARN, NULL, NULL,
                 "%s: %s; next try in %" PRId64 " ms%s", fks_feed_name (feed), err.msg,
                 fks_feed_next_ms (feed) - now_ms, also);
        en->failing = true;
        return;
    }
    if (rc == FKS_FEED_POLLED) {
        fks_metric_inc (fks_metric_get (self->f_fetch, (const char *[]) { src, "ok" }));
        if (en->failing)
            fks_log (FKS_LOG_INFO, NULL, NULL, "%s: polling again", fks_feed_name (feed));
        en->failing = false;
        if (self->out.bars.n || self->out.n_findings)
            s_store (self, en, &self->out, now_ms, true);
        fks_metric_set (en->m_served, (double) fks_feed_served (feed));
    }
    if (fks_feed_done (feed) && !en->done_logged) {
        en->done_logged = true;
        fks_log (FKS_LOG_INFO, NULL, NULL, "%s: replay finished: %zu bars read, %zu stored, "
                 "%zu unchanged, %zu refused (bad values)", fks_feed_name (feed),
                 fks_feed_served (feed), en->totals.stored, en->totals.unchanged, en->rejected);
    }
}

//  A stale episode yields its finding once (quality.h), so a finding whose store failed is
//  kept here and stored again later, until it is stored: there is no poll to undo that
//  would bring it back.
static void
s_stale_one (s_data_t *self, s_entry_t *en, int64_t now_ms)
{
    if (!en->leased)
        return;
    if (!en->stale_pending) {
        if (!fks_feed_stale (en->feed, now_ms, &en->stale))
            return;
        en->stale_pending = true;
        en->stale_retry_ms = now_ms;
    }
    if (now_ms < en->stale_retry_ms)
        return;
    fks_feed_out_clear (&self->out);
    if (fks_feed_out_finding (&self->out, &en->stale) != 0)
        return;
    if (s_store (self, en, &self->out, now_ms, false) == 0)
        en->stale_pending = false;
    else
        en->stale_retry_ms = now_ms + en->store_retry_ms;
}

//  --------------------------------------------------------------------------
//  Set-up

static int
s_ready (void *arg, char *why, size_t cap)
{
    s_data_t *self = arg;
    int rc = 0;
    pthread_mutex_lock (&self->ready_lock);
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    if (fks_pg_ping (self->ready_pg, &perr) != 0) {
        snprintf (why, cap, "PostgreSQL: %s", perr.msg);
        rc = -1;
    }
    else if (fks_redis_ping (self->ready_redis, &rerr) != 0) {
        snprintf (why, cap, "Redis: %s", rerr.msg);
        rc = -1;
    }
    pthread_mutex_unlock (&self->ready_lock);
    return rc;
}

static int
s_feeds (s_data_t *self, int64_t now_ms)
{
    fks_schedule_t sched;
    char err[512];
    if (fks_schedule_parse (self->cfg.feeds, &sched, err, sizeof err) != 0) {
        fprintf (stderr, "fks-data: %s\n", err);
        return -1;
    }
    self->entries = calloc (sched.n ? sched.n : 1, sizeof *self->entries);
    if (!self->entries) {
        fks_schedule_free (&sched);
        return -1;
    }
    fks_http_opts_t http = { .timeout_ms = (int) self->cfg.http_timeout_ms };
    fks_metric_family_t *f_served = fks_gauge_family ("fks_data_feed_bars",
        "Bars a feed has read from its source (a replay's progress)",
        (const char *[]) { "feed" }, 1);
    int rc = 0;
    for (size_t i = 0; i < sched.n && rc == 0; i++) {
        const fks_feed_spec_t *sp = &sched.v[i];
        s_entry_t *en = &self->entries[self->n_entries];
        fks_adapter_t *adapter = NULL;
        if (sp->source == FKS_SOURCE_BINANCE) {
            if (!self->binance)
                self->binance = fks_adapter_binance_new (self->cfg.binance_url, &http);
            adapter = self->binance;
            if (!adapter)
                snprintf (err, sizeof err, "FKS_BINANCE_URL: expected an http(s) URL");
        }
        else if (sp->source == FKS_SOURCE_YAHOO) {
            if (!self->yahoo)
                self->yahoo = fks_adapter_yahoo_new (self->cfg.yahoo_url, &http);
            adapter = self->yahoo;
            if (!adapter)
                snprintf (err, sizeof err, "FKS_YAHOO_URL: expected an http(s) URL");
        }
        else {
            fks_csv_opts_t o = { .symbol = sp->symbol, .interval = sp->interval,
                                 .column = sp->column[0] ? sp->column : NULL };
            char why[400];
            en->own_adapter = adapter = fks_adapter_replay_new (sp->path, &o, why, sizeof why);
            if (!adapter)
                snprintf (err, sizeof err, "FKS_DATA_FEEDS: replay %.400s", why);
        }
        if (!adapter) {
            rc = -1;
            break;
        }
        fks_feed_cfg_t fc = {
            .raw_symbol = sp->raw_symbol, .symbol = sp->symbol, .interval = sp->interval,
            .every_ms = sp->every_ms, .lookback = sp->lookback, .speed = sp->speed,
            .batch = (size_t) self->cfg.batch, .catchup = (size_t) self->cfg.catchup,
        };
        fks_quality_cfg_defaults (&fc.quality);
        fc.quality.outlier = self->cfg.outlier;
        fc.quality.stale_factor = self->cfg.stale_factor;
        fc.quality.gap_min = self->cfg.gap_min;
        fc.quality.calendar = sp->calendar;
        en->feed = fks_feed_new (adapter, &fc, now_ms, err, sizeof err);
        if (!en->feed) {
            fks_adapter_destroy (&en->own_adapter);
            rc = -1;
            break;
        }
        snprintf (en->lease_key, sizeof en->lease_key, "fks:data:lease:%s:%s:%s",
                  fks_source_name (sp->source), sp->symbol, sp->interval);
        en->m_served = fks_metric_get1 (f_served, fks_feed_name (en->feed));
        self->n_entries++;
        if (sp->source == FKS_SOURCE_REPLAY) {
            fks_log (FKS_LOG_INFO, NULL, NULL, "feed %s: %zu bars from %s as %s, speed %g%s",
                     fks_feed_name (en->feed), fks_adapter_replay_size (adapter), sp->path,
                     sp->symbol, sp->speed, sp->speed == 0 ? " (as fast as possible)" : "x");
            //  Said once here, at load: the replay itself never sees the rows left out.
            const fks_csv_stats_t *st = fks_adapter_replay_stats (adapter);
            if (st && st->skipped)
                fks_log (FKS_LOG_WARN, NULL, NULL, "feed %s: %zu rows of %s skipped (first: %s)",
                         fks_feed_name (en->feed), st->skipped, sp->path, st->first_skip);
            if (st && st->duplicates)
                fks_log (FKS_LOG_WARN, NULL, NULL, "feed %s: %zu rows of %s left out: a later "
                         "row has the same time (first: %s)", fks_feed_name (en->feed),
                         st->duplicates, sp->path, st->first_duplicate);
        }
        else
            fks_log (FKS_LOG_INFO, NULL, NULL, "feed %s: as %s every %" PRId64 " ms, "
                     "calendar %s", fks_feed_name (en->feed), sp->symbol, sp->every_ms,
                     fks_calendar_name (sp->calendar));
    }
    if (rc != 0)
        fprintf (stderr, "fks-data: %s\n", err);
    fks_schedule_free (&sched);
    return rc;
}

static void
s_metrics (s_data_t *self)
{
    self->f_bars = fks_counter_family ("fks_data_bars_total",
        "Bars from market-data feeds by result: stored (new or changed), unchanged, rejected "
        "(bad values, never stored)", (const char *[]) { "source", "result" }, 2);
    self->f_quality = fks_counter_family ("fks_data_quality_total",
        "Data-quality findings raised as data.quality, by kind", (const char *[]) { "kind" }, 1);
    self->f_fetch = fks_counter_family ("fks_data_fetch_total",
        "Requests to market-data sources by result (ok, rate_limited, error)",
        (const char *[]) { "source", "result" }, 2);
    self->f_fetch_s = fks_histogram_family ("fks_data_fetch_seconds",
        "Time one request to a market-data source took", (const char *[]) { "source" }, 1,
        NULL, 0);
    self->m_published = fks_metric_get (fks_counter_family ("fks_data_events_published_total",
        "market.bar and data.quality envelopes published on the bus", NULL, 0), NULL);
    self->m_pub_failed = fks_metric_get (fks_counter_family ("fks_data_publish_failures_total",
        "Envelopes committed to the outbox but not published", NULL, 0), NULL);
    self->m_store_failed = fks_metric_get (fks_counter_family ("fks_data_store_failures_total",
        "Polls whose bars could not be stored (tried again later)", NULL, 0), NULL);
    self->m_price_failed = fks_metric_get (fks_counter_family ("fks_data_price_failures_total",
        "Latest prices Redis did not take", NULL, 0), NULL);
    for (int k = 0; k < 4; k++)
        fks_metric_get1 (self->f_quality, fks_quality_kind_name ((fks_quality_kind_t) k));
}

static void
s_destroy (s_data_t *self)
{
    for (size_t i = 0; i < self->n_entries; i++) {
        fks_feed_destroy (&self->entries[i].feed);
        fks_adapter_destroy (&self->entries[i].own_adapter);
    }
    free (self->entries);
    fks_adapter_destroy (&self->binance);
    fks_adapter_destroy (&self->yahoo);
    fks_bus_client_destroy (&self->bus);
    fks_ops_destroy (&self->ops);
    fks_pg_destroy (&self->pg);
    fks_redis_destroy (&self->redis);
    fks_pg_destroy (&self->ready_pg);
    fks_redis_destroy (&self->ready_redis);
    fks_feed_out_free (&self->out);
    pthread_mutex_destroy (&self->ready_lock);
    s_cfg_free (&self->cfg);
}

static int
s_run (s_data_t *self)
{
    int64_t now = fks_now_ms ();
    if (s_feeds (self, now) != 0)
        return 2;
    fks_pg_err_t perr;
    fks_redis_err_t rerr;
    self->pg = fks_pg_new (self->cfg.pg_url, fks_ingest_stmts, fks_ingest_n_stmts, &perr);
    self->ready_pg = self->pg ? fks_pg_new (self->cfg.pg_url, NULL, 0, &perr) : NULL;
    if (!self->pg || !self->ready_pg) {
        fprintf (stderr, "fks-data: FKS_PG_URL: %s\n", perr.msg);
        return 2;
    }
    if (fks_pg_set_statement_timeout (self->pg, self->cfg.statement_timeout_ms, &perr) != 0) {
        fprintf (stderr, "fks-data: FKS_PG_STATEMENT_TIMEOUT_MS: %s\n", perr.msg);
        return 2;
    }
    self->redis = fks_redis_new (self->cfg.redis_url, S_REDIS_TIMEOUT_MS, S_REDIS_TIMEOUT_MS,
                                 &rerr);
    self->ready_redis = self->redis ? fks_redis_new (self->cfg.redis_url, S_REDIS_TIMEOUT_MS,
                                                     S_REDIS_TIMEOUT_MS, &rerr) : NULL;
    if (!self->redis || !self->ready_redis) {
        fprintf (stderr, "fks-data: FKS_REDIS_URL: %s\n", rerr.msg);
        return 2;
    }
    //  A typo in the statements should stop the program now, not on the first bar.
    //  A transient failure (PostgreSQL down, or a prepare cancelled by the statement timeout
    //  while a lock is held on a table) is tried again with the first store.
    if (fks_pg_connect (self->pg, &perr) != 0) {
        if (!fks_pg_err_transient (&perr)) {
            fks_log (FKS_LOG_ERROR, NULL, NULL, "fks-data: PostgreSQL refused the statements: "
                     "%s (SQLSTATE %s); is the schema migrated (fks migrate)?", perr.msg,
                     perr.sqlstate);
            return 1;
        }
        fks_log (FKS_LOG_WARN, NULL, NULL, "fks-data: PostgreSQL not usable yet (%s); will "
                 "retry", perr.msg);
    }
    char host[64] = "host";
    gethostname (host, sizeof host - 1);
    uint8_t rnd[4];
    fks_id_t id;
    fks_id_new (&id);
    memcpy (rnd, id.b + 12, 4);
    snprintf (self->instance, sizeof self->instance, "%.40s-%d-%02x%02x%02x%02x", host,
              (int) getpid (), rnd[0], rnd[1], rnd[2], rnd[3]);
    fks_bus_client_opts_t opts = { .url = self->cfg.bus_url, .name = "data" };
    self->bus = fks_bus_client_new (&opts);
    if (!self->bus)
        return 2;
    self->ops = fks_ops_new (self->cfg.env, s_ready, self, NULL);
    if (!self->ops || fks_ops_listen (self->ops, self->cfg.http_bind, self->cfg.port) != 0)
        return 1;
    fks_log (FKS_LOG_INFO, NULL, NULL, "fks-data: running: %zu feed(s), batch %" PRId64
             ", ops on %s:%d", self->n_entries, self->cfg.batch, self->cfg.http_bind,
             fks_ops_port (self->ops));
    if (self->n_entries == 0)
        fks_log (FKS_LOG_INFO, NULL, NULL, "fks-data: no feeds configured (FKS_DATA_FEEDS); "
                 "serving the endpoints only");

    struct pollfd pfd = { .fd = s_stop_fd, .events = POLLIN };
    for (;;) {
        now = fks_now_ms ();
        int64_t next = now + S_WAIT_MAX_MS;
        for (size_t i = 0; i < self->n_entries; i++) {
            s_entry_t *en = &self->entries[i];
            s_lease_keep (self, en, now);
            s_poll_one (self, en, now);
            s_stale_one (self, en, now);
            int64_t due = fks_feed_next_ms (en->feed);
            if (en->hold_until_ms > due)
                due = en->hold_until_ms;
            if (!fks_feed_done (en->feed) && due < next)
                next = due;
            if (en->stale_pending && en->stale_retry_ms < next)
                next = en->stale_retry_ms;
            if (s_lease_due (en, next))
                next = en->lease_renew_ms;
            //  Between feeds, a stop request is honoured at once.
            if (poll (&pfd, 1, 0) > 0)
                goto stop;
        }
        int64_t wait = next - fks_now_ms ();
        if (wait < 0)
            wait = 0;
        if (wait > S_WAIT_MAX_MS)
            wait = S_WAIT_MAX_MS;
        int r = poll (&pfd, 1, (int) wait);
        if (r > 0)
            break;
        if (r < 0 && errno != EINTR)
            break;
    }
stop:
    fks_log (FKS_LOG_INFO, NULL, NULL, "fks-data: stopping");
    for (size_t i = 0; i < self->n_entries; i++)
        if (self->entries[i].stale_pending)
            fks_log (FKS_LOG_WARN, NULL, NULL, "data quality: stale: %s (never stored: "
                     "PostgreSQL did not take it before the stop)",
                     self->entries[i].stale.detail);
    s_leases_drop (self);
    return 0;
}

int
main (void)
{
    if (fks_log_init ("fks-data") != 0)
        fks_log (FKS_LOG_WARN, NULL, NULL, "FKS_LOG_LEVEL not understood; logging at info");
    static s_data_t self;
    pthread_mutex_init (&self.ready_lock, NULL);
    if (s_cfg_load (&self.cfg) != 0)
        return 2;
    if (fks_http_global_init () != 0) {
        fprintf (stderr, "fks-data: libcurl did not initialise\n");
        return 1;
    }
    s_stop_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s_stop_fd < 0) {
        fprintf (stderr, "fks-data: eventfd: %s\n", strerror (errno));
        return 1;
    }
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);
    s_metrics (&self);
    int rc = s_run (&self);
    s_destroy (&self);
    close (s_stop_fd);
    if (rc == 0)
        fks_log (FKS_LOG_INFO, NULL, NULL, "fks-data: stopped");
    return rc;
}
