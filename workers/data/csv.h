/*  csv.h - reads a file of OHLCV rows into bars, for the replay adapter and the trainer.
 *
 *  The file is comma-separated text with a header line naming its columns (any case, any
 *  order, surrounding spaces ignored): a time column (`date`, `time`, `timestamp`,
 *  `datetime` or `open_time`), then `open`, `high`, `low`, `close`, `volume`. Other columns
 *  are ignored. A file of closes only (one column per instrument, like the EU indices sample)
 *  is read by naming its column in opts->column: open, high and low then equal the close and
 *  volume is 0; likewise when a file simply has no open/high/low or volume column.
 *
 *  Times may be a date (1985-01-02, or 19850102 as many vendors write it; midnight UTC), a
 *  date and time (1985-01-02 13:30:00 or 1985-01-02T13:30:00Z, with optional fraction and
 *  +00:00), or an epoch number (seconds, or milliseconds when it is 1e11 or more; eight
 *  digits are always a date). A row whose time does not parse is skipped and
 *  counted; a number that does not parse, an empty cell, NA, null or NaN becomes NaN, so the
 *  quality checks report it as a bad value instead of losing it. Rows are returned sorted by
 *  time (a file written newest first is fine), one bar per time: of several rows for one
 *  time the last in the file is kept, the others counted in stats->duplicates.
 *
 *  Bounded: lines of at most FKS_CSV_LINE_MAX bytes, FKS_CSV_FIELDS_MAX columns, opts->max_rows
 *  rows; past any of these the load fails with the line number. Quoted fields ("a,b", with ""
 *  for a quote) are understood. Pure code apart from reading the file; thread-safe.
 */
#ifndef FKS_DATA_CSV_H
#define FKS_DATA_CSV_H

#include <stddef.h>
#include <stdint.h>
#include "workers/data/bar.h"

#define FKS_CSV_LINE_MAX   4096
#define FKS_CSV_FIELDS_MAX 64

typedef struct {
    const char *symbol;         /* stamped on every bar (normalised by the caller) */
    const char *interval;       /* stamped on every bar, e.g. "1d" */
    const char *column;         /* the close column of a closes-only file; NULL: "close" */
    size_t max_rows;            /* 0: FKS_BARS_MAX */
} fks_csv_opts_t;

typedef struct {
    size_t rows;                /* bars returned (one per time) */
    size_t skipped;             /* rows skipped: unparsable time */
    size_t blank;               /* empty lines */
    size_t duplicates;          /* rows dropped: a later row had the same time */
    char first_skip[160];       /* why the first skipped row was skipped, with its line */
    char first_duplicate[24];   /* the first time with more than one row (fks_time_text) */
} fks_csv_stats_t;

/*  Loads path into out (appended; the caller owns and frees it). Returns 0, or -1 with a
 *  message naming the file and line in err (cap bytes): unreadable file, no header, no time
 *  or close column (the message lists the columns found), an overlong line, too many rows, or
 *  no data row at all. stats may be NULL. On failure out holds what it held before. */
int fks_csv_load (const char *path, const fks_csv_opts_t *opts, fks_bars_t *out,
                  fks_csv_stats_t *stats, char *err, size_t cap);

/*  Parses one time cell (the formats above) into Unix ms. 0 or -1. */
int fks_csv_parse_time (const char *text, int64_t *ms);

#endif
