/*  schedule.h - which symbols and intervals the data worker polls: FKS_DATA_FEEDS.
 *
 *  The value is a list of entries separated by ';' or new lines; each entry is words
 *  separated by spaces:
 *
 *      binance SYMBOLS INTERVAL [every=30s] [lookback=500] [calendar=24x7]
 *      yahoo   SYMBOLS INTERVAL [every=5m]  [lookback=500] [calendar=weekdays]
 *      replay  FILE SYMBOL INTERVAL [speed=0] [column=NAME] [calendar=24x7]
 *
 *  SYMBOLS is a comma-separated list; each is the source's spelling, optionally followed by
 *  =NAME to store it under another name (yahoo ^GSPC=SPX). The stored name is normalised
 *  (common/symbol.h), so BTC-USDT and btcusdt are one instrument. `every` is a duration
 *  (250ms, 30s, 5m, 1h; default half the interval, between 5 s and 5 min); `lookback` the
 *  bars asked for on the first poll (1-10000, default 500); `speed` the replay speed (0 = as
 *  fast as possible, else times real time); `column` the close column of a closes-only file;
 *  `calendar` 24x7, weekdays or none (quality.h; default weekdays for yahoo, else 24x7).
 *  A FILE name may not contain spaces or ';'.
 *
 *  Example: "binance BTCUSDT,ETHUSDT 1m; yahoo AAPL,^GSPC=SPX 1d every=15m;
 *            replay tools/data/ttrc_ohlcv.csv TTRC 1d speed=0 calendar=weekdays"
 *
 *  Bounded: at most FKS_SCHEDULE_FEEDS_MAX feeds; the same source, symbol and interval twice
 *  is an error. Errors name the entry and the word. Pure code: thread-safe.
 */
#ifndef FKS_DATA_SCHEDULE_H
#define FKS_DATA_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>
#include "workers/data/adapter.h"
#include "workers/data/quality.h"

#define FKS_SCHEDULE_FEEDS_MAX 256
#define FKS_SCHEDULE_PATH_MAX  1024

typedef enum { FKS_SOURCE_REPLAY = 0, FKS_SOURCE_BINANCE, FKS_SOURCE_YAHOO } fks_source_t;

typedef struct {
    fks_source_t source;
    char path[FKS_SCHEDULE_PATH_MAX];       /* replay */
    char column[64];                        /* replay, "" for none */
    char raw_symbol[FKS_RAW_SYMBOL_MAX];
    char symbol[FKS_SYMBOL_MAX];
    char interval[FKS_INTERVAL_MAX];
    int64_t every_ms;
    size_t lookback;
    double speed;
    fks_calendar_t calendar;
} fks_feed_spec_t;

typedef struct {
    fks_feed_spec_t *v;
    size_t n;
} fks_schedule_t;

/*  Parses text into out (emptied first). 0, or -1 with err (cap bytes) naming the entry. An
 *  empty text is a valid, empty schedule. */
int fks_schedule_parse (const char *text, fks_schedule_t *out, char *err, size_t cap);
void fks_schedule_free (fks_schedule_t *schedule);

const char *fks_source_name (fks_source_t source);

/*  Parses a duration such as 250ms, 30s, 5m, 1h into ms. 0 or -1. */
int fks_duration_parse (const char *text, int64_t *ms);

#endif
