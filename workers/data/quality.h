/*  quality.h - the data-quality checks of one bar series (a symbol at an interval).
 *
 *  The data worker runs every bar of a feed through fks_quality_check before storing it, and
 *  fks_quality_stale on every pass of its loop. Each failed check is a finding that becomes a
 *  `data.quality` event (schemas/envelope.md) with its kind, the measured value, the
 *  threshold and a sentence with the numbers:
 *
 *    bad_value  NaN or infinite, a price <= 0, negative volume, high below low, open or close
 *               outside [low, high], or an open time more than one interval in the future.
 *               The bar is refused: bad values never reach the bars table.
 *    gap        bars missing between the previous bar and this one; value = bars missing,
 *               threshold = cfg.gap_min. The bar is stored.
 *    outlier    |close / previous close - 1| above cfg.outlier (a fraction: 0.2 = 20 %);
 *               value = the jump. The bar is stored: a real crash is an outlier too, and
 *               the event tells people to look. Reported once per bar: the forming bar,
 *               asked for again on every poll until it closes, is not reported again on
 *               each update while it stays beyond the limit.
 *    stale      no newer bar for more than cfg.stale_factor intervals after the last one
 *               closed; value = seconds since it closed, threshold = the limit in seconds.
 *               Reported once per episode, again only after a newer bar arrived.
 *
 *  Calendars: `24x7` (crypto) counts every interval; `weekdays` (stocks, the daily samples)
 *  does not count Saturdays and Sundays (UTC) as missing or stale time; `none` turns the gap
 *  and stale checks off (e.g. intraday stock bars, which pause every night). Holidays count as
 *  gaps: a one-bar gap on a weekday is worth reporting at a threshold of 1.
 *
 *  A bar with the open time of the newest bar seen updates it (the forming bar): its outlier
 *  check compares with the bar before. An older bar (a backfill) is checked for bad values
 *  only. A fks_quality_t is plain data belonging to one thread; the functions are pure.
 */
#ifndef FKS_DATA_QUALITY_H
#define FKS_DATA_QUALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "workers/data/bar.h"

typedef enum {
    FKS_QUALITY_GAP = 0,
    FKS_QUALITY_STALE,
    FKS_QUALITY_OUTLIER,
    FKS_QUALITY_BAD_VALUE
} fks_quality_kind_t;

typedef enum {
    FKS_CALENDAR_24X7 = 0,
    FKS_CALENDAR_WEEKDAYS,
    FKS_CALENDAR_NONE
} fks_calendar_t;

typedef struct {
    double outlier;             /* jump fraction; 0 turns the check off */
    double stale_factor;        /* intervals; 0 turns the check off */
    int64_t gap_min;            /* bars missing before a gap is reported (>= 1) */
    fks_calendar_t calendar;
} fks_quality_cfg_t;

typedef struct {
    fks_quality_kind_t kind;
    char symbol[FKS_SYMBOL_MAX];
    char interval[FKS_INTERVAL_MAX];
    double value, threshold;
    bool has_value, has_threshold;
    int64_t open_time;          /* the bar concerned (stale: the last bar), Unix ms */
    char detail[256];
} fks_quality_finding_t;

typedef struct {
    fks_quality_cfg_t cfg;
    char interval[FKS_INTERVAL_MAX];
    int64_t interval_ms;
    char unit;
    bool has_last;
    int64_t last_open;          /* newest bar stored */
    double last_close;
    bool has_before;
    double before_close;        /* the close of the bar before the newest */
    int64_t started_ms;         /* when checking began (stale with no bar at all) */
    bool stale_reported;
    bool outlier_reported;      /* the newest bar was reported as an outlier */
} fks_quality_t;

/*  Default thresholds: outlier 0.2, stale factor 3, gap_min 1, calendar 24x7. */
void fks_quality_cfg_defaults (fks_quality_cfg_t *cfg);

/*  Parses "24x7", "weekdays" or "none". 0 or -1. */
int fks_calendar_parse (const char *text, fks_calendar_t *out);
const char *fks_calendar_name (fks_calendar_t calendar);

/*  Starts a series of bars of interval (valid, see bar.h) at time now_ms. 0, or -1 when the
 *  interval is not valid. */
int fks_quality_init (fks_quality_t *self, const fks_quality_cfg_t *cfg, const char *interval,
                      int64_t now_ms);

/*  Continues the series from bars already stored (oldest first; the newest, and the one
 *  before it if any), e.g. after a restart: the next bar is checked for a gap and a jump
 *  against them. Nothing changes when the series already has a bar as new as the newest. */
void fks_quality_seed (fks_quality_t *self, const fks_bars_t *stored);

/*  Checks bar (now_ms is the wall clock, for "in the future") and appends its findings to
 *  out[*n .. cap-1] (a finding that does not fit is dropped; 3 slots always suffice). Returns
 *  true when the bar may be stored (no bad value); the series then remembers it. */
bool fks_quality_check (fks_quality_t *self, const fks_bar_t *bar, int64_t now_ms,
                        fks_quality_finding_t *out, size_t cap, size_t *n);

/*  Checks the series for staleness at now_ms. Returns true and fills *out once per stale
 *  episode; symbol names the series in the finding. */
bool fks_quality_stale (fks_quality_t *self, const char *symbol, int64_t now_ms,
                        fks_quality_finding_t *out);

/*  "gap", "stale", "outlier", "bad_value": the `kind` values of data.quality. */
const char *fks_quality_kind_name (fks_quality_kind_t kind);

/*  Milliseconds in [a, b) that fall on Monday to Friday (UTC); 0 when b <= a. */
int64_t fks_weekday_ms (int64_t a, int64_t b);

#endif
