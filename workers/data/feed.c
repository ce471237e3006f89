/*  feed.c - one symbol at one interval from one adapter: when to ask, what to ask, and what
 *  the answer means.
 *
 *  See feed.h. Everything that moves between polls (cursor, quality state, back-off, replay
 *  clock) lives in one plain struct, copied before each poll, so undoing a poll whose bars
 *  could not be stored is a struct assignment.
 */
#include "workers/data/feed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FINDINGS_MAX 100000   /* per poll; a batch of bars yields at most 3 each */

typedef struct {
    bool has_cursor;
    int64_t cursor;             /* live: newest open time seen; history: next start */
    size_t window;              /* live, no cursor: intervals asked for back from now */
    bool behind;                /* live: the last page was full and behind the clock */
    int64_t next_ms;
    int64_t backoff_ms;
    bool done;
    bool started;               /* history: the replay clock runs */
    int64_t first_open;         /* history: the first bar's open time */
    int64_t wall_t0;            /* history: when the replay started */
    size_t served;
    fks_quality_t quality;
} s_state_t;

struct fks_feed_t {
    fks_adapter_t *adapter;
    char raw_symbol[FKS_RAW_SYMBOL_MAX];
    char symbol[FKS_SYMBOL_MAX];
    char interval[FKS_INTERVAL_MAX];
    char name[FKS_FEED_NAME_MAX];
    int64_t interval_ms;
    int64_t every_ms;
    size_t lookback, catchup, batch;
    double speed;
    bool history;
    s_state_t st, saved;
    fks_bars_t scratch;
};

void
fks_feed_out_clear (fks_feed_out_t *out)
{
    fks_bars_clear (&out->bars);
    out->n_findings = 0;
    out->rejected = 0;
}

void
fks_feed_out_free (fks_feed_out_t *out)
{
    fks_bars_free (&out->bars);
    free (out->findings);
    memset (out, 0, sizeof *out);
}

int
fks_feed_out_finding (fks_feed_out_t *out, const fks_quality_finding_t *f)
{
    if (out->n_findings == out->cap_findings) {
        if (out->cap_findings >= S_FINDINGS_MAX)
            return -1;
        size_t cap = out->cap_findings ? out->cap_findings * 2 : 16;
        fks_quality_finding_t *p = realloc (out->findings, cap * sizeof *p);
        if (!p)
            return -1;
        out->findings = p;
        out->cap_findings = cap;
    }
    out->findings[out->n_findings++] = *f;
    return 0;
}

fks_feed_t *
fks_feed_new (fks_adapter_t *adapter, const fks_feed_cfg_t *cfg, int64_t now_ms, char *err,
              size_t cap)
{
    if (!adapter || !cfg->raw_symbol || !cfg->symbol || !cfg->interval) {
        snprintf (err, cap, "feed: adapter, symbol and interval are required");
        return NULL;
    }
    if (strlen (cfg->raw_symbol) >= FKS_RAW_SYMBOL_MAX || !*cfg->raw_symbol
        || strlen (cfg->symbol) >= FKS_SYMBOL_MAX || !*cfg->symbol) {
        snprintf (err, cap, "feed: symbol '%.80s' is empty or too long", cfg->raw_symbol);
        return NULL;
    }
    int64_t iv;
    if (fks_interval_parse (cfg->interval, &iv, NULL) != 0) {
        snprintf (err, cap, "feed %s: '%.16s' is not an interval (e.g. 1m, 1h, 1d)",
                  cfg->raw_symbol, cfg->interval);
        return NULL;
    }
    if (!fks_adapter_supports (adapter, cfg->interval)) {
        snprintf (err, cap, "feed %s: %s does not serve the interval %s", cfg->raw_symbol,
                  fks_adapter_name (adapter), cfg->interval);
        return NULL;
    }
    if (cfg->batch < 1 || cfg->every_ms < 1 || cfg->lookback < 1 || !(cfg->speed >= 0)
        || !isfinite (cfg->speed)) {
        snprintf (err, cap, "feed %s: batch, every, lookback must be >= 1 and speed >= 0",
                  cfg->raw_symbol);
        return NULL;
    }
    fks_feed_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, cap, "out of memory");
        return NULL;
    }
    self->adapter = adapter;
    snprintf (self->raw_symbol, sizeof self->raw_symbol, "%s", cfg->raw_symbol);
    snprintf (self->symbol, sizeof self->symbol, "%s", cfg->symbol);
    snprintf (self->interval, sizeof self->interval, "%s", cfg->interval);
    snprintf (self->name, sizeof self->name, "%s %s %s", fks_adapter_name (adapter),
              self->raw_symbol, self->interval);
    self->interval_ms = iv;
    self->every_ms = cfg->every_ms;
    self->lookback = cfg->lookback;
    self->catchup = cfg->catchup > cfg->lookback ? cfg->catchup : cfg->lookback;
    //  A page is what one fetch may return: a source that caps it below the batch (Binance:
    //  1000) must still see a full page as "behind", or a catch-up moves a page per poll.
    self->batch = cfg->batch;
    size_t page_max = fks_adapter_page_max (adapter);
    if (page_max > 0 && page_max < self->batch)
        self->batch = page_max;
    self->speed = cfg->speed;
    self->history = fks_adapter_is_history (adapter);
    fks_quality_init (&self->st.quality, &cfg->quality, cfg->interval, now_ms);
    self->st.next_ms = now_ms;
    self->st.window = self->lookback;
    self->saved = self->st;
    return self;
}

void
fks_feed_destroy (fks_feed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_bars_free (&(*self_p)->scratch);
    free (*self_p);
    *self_p = NULL;
}

static void
s_backoff (fks_feed_t *self, int64_t now_ms, const fks_fetch_err_t *err)
{
    int64_t b = self->st.backoff_ms ? self->st.backoff_ms * 2 : FKS_FEED_BACKOFF_MIN_MS;
    if (b > FKS_FEED_BACKOFF_MAX_MS)
        b = FKS_FEED_BACKOFF_MAX_MS;
    self->st.backoff_ms = b;
    int64_t wait = err->retry_after_ms > b ? err->retry_after_ms : b;
    self->st.next_ms = now_ms + wait;
}

//  Runs fetched bars through the checks into out. -1 when out of memory.
static int
s_take (fks_feed_t *self, const fks_bars_t *got, int64_t now_ms, fks_feed_out_t *out)
{
    fks_quality_finding_t f[4];
    for (size_t i = 0; i < got->n; i++) {
        size_t n = 0;
        bool ok = fks_quality_check (&self->st.quality, &got->v[i], now_ms, f, 4, &n);
        for (size_t k = 0; k < n; k++)
            if (fks_feed_out_finding (out, &f[k]) != 0)
                return -1;
        if (!ok)
            out->rejected++;
        else if (fks_bars_push (&out->bars, &got->v[i]) != 0)
            return -1;
    }
    self->st.served += got->n;
    return 0;
}

static fks_fetch_req_t
s_req (const fks_feed_t *self, int64_t start, int64_t end, size_t limit, int64_t now_ms)
{
    return (fks_fetch_req_t) {
        .raw_symbol = self->raw_symbol, .symbol = self->symbol, .interval = self->interval,
        .start_ms = start, .end_ms = end, .limit = limit, .now_ms = now_ms };
}

static int
s_poll_live (fks_feed_t *self, int64_t now_ms, fks_feed_out_t *out, fks_fetch_err_t *err)
{
    int64_t iv = self->interval_ms;
    int64_t start = self->st.has_cursor ? self->st.cursor
                  : now_ms - (int64_t) self->st.window * iv;
    fks_fetch_req_t req = s_req (self, start, now_ms + iv, self->batch, now_ms);
    fks_bars_clear (&self->scratch);
    int rc = fks_adapter_fetch (self->adapter, &req, &self->scratch, err);
    if (rc != 0) {
        s_backoff (self, now_ms, err);
        return FKS_FEED_FAILED;
    }
    fks_bars_sort (&self->scratch);
    if (s_take (self, &self->scratch, now_ms, out) != 0) {
        snprintf (err->msg, sizeof err->msg, "out of memory");
        s_backoff (self, now_ms, err);
        return FKS_FEED_FAILED;
    }
    self->st.backoff_ms = 0;
    int64_t newest = self->scratch.n ? self->scratch.v[self->scratch.n - 1].open_time : 0;
    if (self->scratch.n && (!self->st.has_cursor || newest > self->st.cursor)) {
        self->st.cursor = newest;
        self->st.has_cursor = true;
    }
    //  A full page that is still behind the clock: the next page at once.
    bool behind = self->scratch.n >= self->batch && newest < now_ms - iv
                  && newest > start;
    self->st.behind = behind;
    self->st.next_ms = behind ? now_ms : now_ms + self->every_ms;
    return FKS_FEED_POLLED;
}

//  The replay clock: the newest open time due at now.
static int64_t
s_replay_until (const fks_feed_t *self, int64_t now_ms)
{
    if (self->speed == 0)
        return INT64_MAX;
    double span = (double) (now_ms - self->st.wall_t0) * self->speed;
    double until = (double) self->st.first_open + span;
    return until >= 9e18 ? INT64_MAX : (int64_t) until;
}

static int
s_poll_history (fks_feed_t *self, int64_t now_ms, fks_feed_out_t *out, fks_fetch_err_t *err)
{
    fks_bars_clear (&self->scratch);
    if (!self->st.started) {
        fks_fetch_req_t first = s_req (self, INT64_MIN, INT64_MAX, 1, now_ms);
        if (fks_adapter_fetch (self->adapter, &first, &self->scratch, err) != 0) {
            s_backoff (self, now_ms, err);
            return FKS_FEED_FAILED;
        }
        if (self->scratch.n == 0) {
            self->st.done = true;
            return FKS_FEED_DONE;
        }
        self->st.started = true;
        self->st.first_open = self->scratch.v[0].open_time;
        self->st.wall_t0 = now_ms;
        self->st.cursor = INT64_MIN;
        fks_bars_clear (&self->scratch);
    }
    int64_t until = s_replay_until (self, now_ms);
    fks_fetch_req_t req = s_req (self, self->st.cursor, until, self->batch, now_ms);
    if (fks_adapter_fetch (self->adapter, &req, &self->scratch, err) != 0) {
        s_backoff (self, now_ms, err);
        return FKS_FEED_FAILED;
    }
    if (s_take (self, &self->scratch, now_ms, out) != 0) {
        snprintf (err->msg, sizeof err->msg, "out of memory");
        s_backoff (self, now_ms, err);
        return FKS_FEED_FAILED;
    }
    self->st.backoff_ms = 0;
    if (self->scratch.n)
        self->st.cursor = self->scratch.v[self->scratch.n - 1].open_time + 1;
    if (self->scratch.n >= self->batch) {
        self->st.next_ms = now_ms;
        return FKS_FEED_POLLED;
    }
    //  Peek at the next bar: none means the replay is complete, else it says when to wake.
    fks_bars_clear (&self->scratch);
    fks_fetch_req_t peek = s_req (self, self->st.cursor, INT64_MAX, 1, now_ms);
    if (fks_adapter_fetch (self->adapter, &peek, &self->scratch, err) != 0) {
        self->st.next_ms = now_ms + FKS_FEED_BACKOFF_MIN_MS;
        return FKS_FEED_POLLED;
    }
    if (self->scratch.n == 0) {
        self->st.done = true;
        return FKS_FEED_POLLED;
    }
    double wait = (double) (self->scratch.v[0].open_time - self->st.first_open) / self->speed;
    int64_t due = self->st.wall_t0 + (int64_t) ceil (wait);
    self->st.next_ms = due > now_ms ? due : now_ms;
    return FKS_FEED_POLLED;
}

int
fks_feed_poll (fks_feed_t *self, int64_t now_ms, fks_feed_out_t *out, fks_fetch_err_t *err)
{
    memset (err, 0, sizeof *err);
    err->retry_after_ms = -1;
    if (self->st.done)
        return FKS_FEED_DONE;
    if (now_ms < self->st.next_ms)
        return FKS_FEED_IDLE;
    self->saved = self->st;
    return self->history ? s_poll_history (self, now_ms, out, err)
                         : s_poll_live (self, now_ms, out, err);
}

int
fks_feed_seed (fks_feed_t *self, const fks_bars_t *stored, int64_t now_ms)
{
    if (self->history || !stored || stored->n == 0)
        return FKS_FEED_SEED_NONE;
    int64_t newest = stored->v[stored->n - 1].open_time;
    if (self->st.has_cursor && self->st.cursor >= newest)
        return FKS_FEED_SEED_NONE;          //  this feed has seen as much already
    fks_quality_seed (&self->st.quality, stored);
    //  Stored bars the lookback would not reach: without a cursor there, a restart after more
    //  than `lookback` intervals left a hole nothing fetched and nothing reported.
    int64_t span = (int64_t) self->catchup * self->interval_ms;
    if (newest >= now_ms - span) {
        self->st.cursor = newest;
        self->st.has_cursor = true;
        return FKS_FEED_SEED_RESUMED;
    }
    //  Too far back to fetch (a source may not serve that far, and the catch-up must end):
    //  the last `catchup` intervals are asked for, and the bars between the stored one and the
    //  first that comes are a gap finding.
    self->st.has_cursor = false;
    self->st.window = self->catchup;
    return FKS_FEED_SEED_GAP;
}

void
fks_feed_undo (fks_feed_t *self, int64_t retry_at_ms)
{
    self->st = self->saved;
    self->st.next_ms = retry_at_ms;
}

bool
fks_feed_stale (fks_feed_t *self, int64_t now_ms, fks_quality_finding_t *out)
{
    //  A feed fetching pages behind the clock has bars coming: its newest is old only
    //  because it has not got to them yet.
    if (self->history || self->st.behind)
        return false;
    return fks_quality_stale (&self->st.quality, self->symbol, now_ms, out);
}

int64_t
fks_feed_next_ms (const fks_feed_t *self)
{
    return self->st.next_ms;
}

bool
fks_feed_done (const fks_feed_t *self)
{
    return self->st.done;
}

bool
fks_feed_is_history (const fks_feed_t *self)
{
    return self->history;
}

const char *
fks_feed_name (const fks_feed_t *self)
{
    return self->name;
}

const char *
fks_feed_symbol (const fks_feed_t *self)
{
    return self->symbol;
}

const char *
fks_feed_interval (const fks_feed_t *self)
{
    return self->interval;
}

const char *
fks_feed_source (const fks_feed_t *self)
{
    return fks_adapter_name (self->adapter);
}

size_t
fks_feed_served (const fks_feed_t *self)
{
    return self->st.served;
}
