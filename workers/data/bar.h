/*  bar.h - one OHLCV price bar, a growable list of them, and bar intervals.
 *
 *  Every market-data adapter (CSV replay, Binance klines, Yahoo chart) turns its source into
 *  fks_bar_t values; the quality checks judge them, and the ingest stores them in `bars` and
 *  publishes them as `market.bar`. A bar's symbol is the normalised one (common/symbol.h),
 *  its open time Unix milliseconds (UTC), its prices and volume doubles exactly as the source
 *  gave them: nothing here rejects a bad value, that is the quality checks' job, so that a bad
 *  value is reported rather than silently lost.
 *
 *  Intervals are spelt like the `bars` table's check: 1 to 4 digits (no leading zero) and a
 *  unit s, m, h, d, w or M (month), e.g. 1m, 15m, 1h, 1d, 1w, 1M.
 *
 *  Pure code; a fks_bars_t belongs to one thread at a time.
 */
#ifndef FKS_DATA_BAR_H
#define FKS_DATA_BAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/symbol.h"

#define FKS_INTERVAL_MAX 8                      /* "9999M" + NUL fits */
#define FKS_MONTH_MS     (30LL * 86400000)      /* a month's nominal length */
#define FKS_BARS_MAX     (10 * 1000 * 1000)     /* a list never grows past this */

typedef struct {
    char symbol[FKS_SYMBOL_MAX];        /* normalised, e.g. BTCUSDT */
    char interval[FKS_INTERVAL_MAX];    /* e.g. 1m, 1d */
    int64_t open_time;                  /* Unix ms */
    double open, high, low, close, volume;
    bool closed;                        /* false while the bar is still forming */
} fks_bar_t;

typedef struct {
    fks_bar_t *v;
    size_t n, cap;
} fks_bars_t;

/*  Parses an interval ("15m") into its nominal length in ms (a month counts 30 days) and, when
 *  unit is not NULL, its unit character. Returns 0, or -1 when text is not a valid interval. */
int fks_interval_parse (const char *text, int64_t *ms, char *unit);

/*  The number of whole months from the month of a to the month of b (UTC), negative when b is
 *  earlier. For month intervals, whose length varies. */
int64_t fks_months_between (int64_t a_ms, int64_t b_ms);

/*  Appends a copy of bar. Returns 0, or -1 when memory runs out or the list already holds
 *  FKS_BARS_MAX bars (the list is unchanged). */
int fks_bars_push (fks_bars_t *self, const fks_bar_t *bar);

/*  Empties the list, keeping its memory. */
void fks_bars_clear (fks_bars_t *self);

/*  Frees the memory; the list is then empty and may be reused. */
void fks_bars_free (fks_bars_t *self);

/*  Sorts by open time, keeping the order of equal times (stable). */
void fks_bars_sort (fks_bars_t *self);

/*  Formats ms as "YYYY-MM-DD HH:MM:SS" UTC (or "YYYY-MM-DD" when the time is midnight), for
 *  people. buf needs 24 bytes. Returns buf. */
const char *fks_time_text (char buf[24], int64_t ms);

#endif
