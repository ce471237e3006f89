/*  feed.h - one symbol at one interval from one adapter: when to ask, what to ask, and what
 *  the answer means.
 *
 *  A live feed (binance, yahoo) is polled every `every_ms`. The first poll asks for the
 *  `lookback` most recent bars; later polls ask from the newest bar already seen (inclusive,
 *  so the forming bar keeps being updated until it closes). A full page that is still behind
 *  the clock is followed at once by the next one, so a feed that was down catches up; a feed
 *  catching up is not stale. A failed poll backs off: 1 s, doubling up to 5 minutes, and never
 *  sooner than the server's Retry-After; a successful poll resets the back-off.
 *
 *  A live feed that starts where bars were stored before (a restart, a lease taken over from
 *  another replica) is seeded with the newest stored bars (fks_feed_seed): it asks from the
 *  newest stored bar on, page by page, when that bar is at most max(lookback, catchup)
 *  intervals old, so a restart leaves no hole; an older one is not fetched back further than
 *  that, and the quality checks, which continue from the stored bar, report the hole as a
 *  gap when the first bar comes. A source that cannot serve as far back (it starts later) is
 *  reported the same way.
 *
 *  A history feed (replay) serves its file at `speed` times real time: a bar whose open time
 *  is d after the first bar's is due d / speed after the replay started; speed 0 replays as
 *  fast as possible. Either way at most `batch` bars come out of one poll, so the caller
 *  stores history in bounded transactions. When every bar has been served the feed is done.
 *
 *  Every bar passes through the series' quality checks (quality.h) before it is handed out;
 *  refused bars (bad values) are counted and their findings handed out with the others.
 *  fks_feed_undo puts the feed back to where it was before its last poll, for when storing
 *  the poll's bars failed: nothing is skipped, the same bars come again.
 *
 *  A feed belongs to one thread (the data worker's loop); it does not own its adapter.
 */
#ifndef FKS_DATA_FEED_H
#define FKS_DATA_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "workers/data/adapter.h"
#include "workers/data/quality.h"

#define FKS_FEED_IDLE    0      /* not due yet */
#define FKS_FEED_POLLED  1      /* asked; out holds the result (possibly nothing new) */
#define FKS_FEED_DONE    2      /* a history feed with nothing left */
#define FKS_FEED_FAILED -1      /* the adapter failed; err says why; backed off */

#define FKS_FEED_BACKOFF_MIN_MS 1000
#define FKS_FEED_BACKOFF_MAX_MS 300000
#define FKS_FEED_NAME_MAX       128

typedef struct {
    const char *raw_symbol;     /* as the source spells it */
    const char *symbol;         /* normalised */
    const char *interval;
    int64_t every_ms;           /* live: between polls (>= 1) */
    size_t lookback;            /* live: bars asked for on the first poll (>= 1) */
    size_t catchup;             /* live: at most this many intervals fetched back to the newest
                                   stored bar after a restart (fks_feed_seed); 0: lookback */
    double speed;               /* history: 0 = as fast as possible, else x real time */
    size_t batch;               /* bars handed out per poll at most (>= 1) */
    fks_quality_cfg_t quality;
} fks_feed_cfg_t;

/*  What a poll produced: the bars to store (they passed the checks, oldest first), every
 *  finding, and the number of bars refused. Owned by the caller; poll appends. */
typedef struct {
    fks_bars_t bars;
    fks_quality_finding_t *findings;
    size_t n_findings, cap_findings;
    size_t rejected;
} fks_feed_out_t;

void fks_feed_out_clear (fks_feed_out_t *out);
void fks_feed_out_free (fks_feed_out_t *out);

/*  Appends a finding to out. 0, or -1 when memory runs out. */
int fks_feed_out_finding (fks_feed_out_t *out, const fks_quality_finding_t *f);

typedef struct fks_feed_t fks_feed_t;

/*  A feed of adapter (which must outlive it) for cfg (strings copied), first due at now_ms.
 *  NULL with err when the interval is invalid or not served by the adapter, or a value is out
 *  of range. */
fks_feed_t *fks_feed_new (fks_adapter_t *adapter, const fks_feed_cfg_t *cfg, int64_t now_ms,
                          char *err, size_t cap);
void fks_feed_destroy (fks_feed_t **self_p);

/*  Polls when due (now_ms >= fks_feed_next_ms). Returns FKS_FEED_IDLE, _POLLED, _DONE or
 *  _FAILED (err filled, the next poll backed off). */
int fks_feed_poll (fks_feed_t *self, int64_t now_ms, fks_feed_out_t *out, fks_fetch_err_t *err);

#define FKS_FEED_SEED_NONE    0  /* nothing stored, not newer than the feed's own, or history */
#define FKS_FEED_SEED_RESUMED 1  /* the next poll asks from the newest stored bar */
#define FKS_FEED_SEED_GAP     2  /* too old to fetch back to: the hole will be a gap finding */

/*  Seeds a live feed, before its polls, with the bars stored last for its symbol and interval
 *  (fks_ingest_newest: oldest first, the newest last) at now_ms: its cursor and its quality
 *  checks continue from them, see above. Returns FKS_FEED_SEED_*. */
int fks_feed_seed (fks_feed_t *self, const fks_bars_t *stored, int64_t now_ms);

/*  Puts the feed back to its state before the last poll, due again at retry_at_ms. */
void fks_feed_undo (fks_feed_t *self, int64_t retry_at_ms);

/*  A live feed's stale check (quality.h); false for history feeds. */
bool fks_feed_stale (fks_feed_t *self, int64_t now_ms, fks_quality_finding_t *out);

/*  When the next poll is due (Unix ms). */
int64_t fks_feed_next_ms (const fks_feed_t *self);

bool fks_feed_done (const fks_feed_t *self);
bool fks_feed_is_history (const fks_feed_t *self);

/*  "binance BTCUSDT 1m": the source, the symbol as the source spells it, the interval. */
const char *fks_feed_name (const fks_feed_t *self);
const char *fks_feed_symbol (const fks_feed_t *self);
const char *fks_feed_interval (const fks_feed_t *self);
const char *fks_feed_source (const fks_feed_t *self);

/*  Bars handed out so far (a replay's progress). */
size_t fks_feed_served (const fks_feed_t *self);

#endif
