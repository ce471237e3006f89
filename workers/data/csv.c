/*  csv.c - reads a file of OHLCV rows into bars, for the replay adapter and the trainer.
 *
 *  See csv.h. The file is read line by line into a fixed buffer, so a hostile file costs at
 *  most FKS_CSV_LINE_MAX bytes per line and max_rows bars; the header decides which cell is
 *  which once, and every row is then split in place.
 */
#include "workers/data/csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { S_TIME, S_OPEN, S_HIGH, S_LOW, S_CLOSE, S_VOLUME, S_NCOLS };

//  Splits line (modified in place) into at most max fields; quotes are removed and "" becomes
//  ". Returns the number of fields, or -1 when there are more than max.
static int
s_split (char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        char *out = p;
        fields[n++] = out;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    break;
                if (*p == '"') {
                    if (p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            //  Anything between the closing quote and the comma is kept, as spreadsheets do.
            while (*p && *p != ',')
                *out++ = *p++;
        }
        else
            while (*p && *p != ',')
                *out++ = *p++;
        bool more = *p == ',';
        *out = '\0';
        if (!more)
            return n;
        p++;
    }
}

static char *
s_trim (char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen (s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

//  Reads exactly `digits` decimal digits at *p. 0 or -1.
static int
s_digits (const char **p, int digits, int *out)
{
    int v = 0;
    for (int i = 0; i < digits; i++) {
        if (!isdigit ((unsigned char) (*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += digits;
    *out = v;
    return 0;
}

int
fks_csv_parse_time (const char *text, int64_t *ms)
{
    if (!text || !*text)
        return -1;
    const char *p = text;
    bool all_digits = true;
    for (const char *q = text; *q; q++)
        all_digits = all_digits && isdigit ((unsigned char) *q);
    //  Eight digits are a compact date (20240301), never epoch seconds of 1970-1973.
    bool compact = all_digits && strlen (text) == 8;
    if (all_digits && !compact) {
        if (strlen (text) > 15)
            return -1;
        int64_t v = strtoll (text, NULL, 10);
        *ms = v >= 100000000000LL ? v : v * 1000;
        return 0;
    }
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (compact) {
        if (s_digits (&p, 4, &y) || s_digits (&p, 2, &mo) || s_digits (&p, 2, &d))
            return -1;
    }
    else if (s_digits (&p, 4, &y) || *p++ != '-' || s_digits (&p, 2, &mo) || *p++ != '-'
             || s_digits (&p, 2, &d))
        return -1;
    int64_t frac_ms = 0;
    if (!compact && (*p == ' ' || *p == 'T')) {
        p++;
        if (s_digits (&p, 2, &h) || *p++ != ':' || s_digits (&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (s_digits (&p, 2, &s))
                return -1;
            if (*p == '.') {
                p++;
                int scale = 100, k = 0;
                while (isdigit ((unsigned char) *p)) {
                    if (k++ < 3) {
                        frac_ms += (*p - '0') * scale;
                        scale /= 10;
                    }
                    p++;
                }
                if (k == 0)
                    return -1;
            }
        }
        if (*p == 'Z')
            p++;
        else if (strcmp (p, "+00:00") == 0 || strcmp (p, "+0000") == 0)
            p += strlen (p);
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return -1;
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return -1;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                     .tm_min = mi, .tm_sec = s };
    time_t t = timegm (&tm);
    *ms = (int64_t) t * 1000 + frac_ms;
    return 0;
}

static double
s_number (const char *cell)
{
    if (!*cell || !strcasecmp (cell, "na") || !strcasecmp (cell, "null")
        || !strcasecmp (cell, "nan"))
        return NAN;
    char *end;
    errno = 0;
    double v = strtod (cell, &end);
    if (end == cell || *end != '\0' || errno == ERANGE)
        return NAN;
    return v;
}

static bool
s_is_time_name (const char *name)
{
    static const char *const names[] = { "date", "time", "timestamp", "datetime", "open_time",
                                         "open time", NULL };
    for (const char *const *n = names; *n; n++)
        if (!strcasecmp (name, *n))
            return true;
    return false;
}

//  Maps the header's cells to our columns. Returns 0, or -1 with err.
static int
s_header (char **fields, int n, const fks_csv_opts_t *opts, int col[S_NCOLS], const char *path,
          char *err, size_t cap)
{
    for (int k = 0; k < S_NCOLS; k++)
        col[k] = -1;
    const char *close_name = opts->column ? opts->column : "close";
    for (int i = 0; i < n; i++) {
        const char *name = s_trim (fields[i]);
        if (col[S_TIME] < 0 && s_is_time_name (name))
            col[S_TIME] = i;
        else if (!strcasecmp (name, close_name))
            col[S_CLOSE] = i;
        else if (opts->column)
            continue;               //  a closes-only file: the other columns are other series
        else if (!strcasecmp (name, "open"))
            col[S_OPEN] = i;
        else if (!strcasecmp (name, "high"))
            col[S_HIGH] = i;
        else if (!strcasecmp (name, "low"))
            col[S_LOW] = i;
        else if (!strcasecmp (name, "volume") || !strcasecmp (name, "vol"))
            col[S_VOLUME] = i;
    }
    if (col[S_TIME] >= 0 && col[S_CLOSE] >= 0)
        return 0;
    char found[256] = "";
    size_t w = 0;
    for (int i = 0; i < n && w < sizeof found - 1; i++)
        w += (size_t) snprintf (found + w, sizeof found - w, "%s%.40s", i ? ", " : "",
                                fields[i]);
    if (col[S_TIME] < 0)
        snprintf (err, cap, "%s: line 1: no time column (date, time, timestamp, datetime or "
                  "open_time) in the header; columns: %s", path, found);
    else
        snprintf (err, cap, "%s: line 1: no column named '%s' in the header%s; columns: %s",
                  path, close_name, opts->column ? "" : " (for a closes-only file, name the "
                  "column to use)", found);
    return -1;
}

int
fks_csv_load (const char *path, const fks_csv_opts_t *opts, fks_bars_t *out,
              fks_csv_stats_t *stats, char *err, size_t cap)
{
    fks_csv_stats_t local;
    if (!stats)
        stats = &local;
    memset (stats, 0, sizeof *stats);
    if (!path || !opts || !opts->symbol || !opts->interval) {
        snprintf (err, cap, "csv: a path, a symbol and an interval are needed");
        return -1;
    }
    if (strlen (opts->symbol) >= FKS_SYMBOL_MAX || strlen (opts->interval) >= FKS_INTERVAL_MAX) {
        snprintf (err, cap, "csv: symbol or interval too long");
        return -1;
    }
    size_t max_rows = opts->max_rows ? opts->max_rows : FKS_BARS_MAX;
    FILE *f = fopen (path, "r");
    if (!f) {
        snprintf (err, cap, "%s: %s", path, strerror (errno));
        return -1;
    }
    size_t start_n = out->n;
    char line[FKS_CSV_LINE_MAX + 2];
    char *fields[FKS_CSV_FIELDS_MAX];
    int col[S_NCOLS];
    bool have_header = false;
    long lineno = 0;
    int rc = -1;
    while (fgets (line, sizeof line, f)) {
        lineno++;
        size_t len = strlen (line);
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        else if (!feof (f)) {
            snprintf (err, cap, "%s: line %ld: longer than %d bytes", path, lineno,
                      FKS_CSV_LINE_MAX);
            goto done;
        }
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        char *text = line;
        if (lineno == 1 && (unsigned char) text[0] == 0xef && (unsigned char) text[1] == 0xbb
            && (unsigned char) text[2] == 0xbf)
            text += 3;                  //  a UTF-8 byte order mark
        if (*s_trim (text) == '\0') {
            stats->blank++;
            continue;
        }
        int n = s_split (text, fields, FKS_CSV_FIELDS_MAX);
        if (n < 0) {
            snprintf (err, cap, "%s: line %ld: more than %d columns", path, lineno,
                      FKS_CSV_FIELDS_MAX);
            goto done;
        }
        if (!have_header) {
            if (s_header (fields, n, opts, col, path, err, cap) != 0)
                goto done;
            have_header = true;
            continue;
        }
        int64_t t;
        const char *tcell = col[S_TIME] < n ? s_trim (fields[col[S_TIME]]) : "";
        if (fks_csv_parse_time (tcell, &t) != 0) {
            if (stats->skipped++ == 0)
                snprintf (stats->first_skip, sizeof stats->first_skip,
                          "line %ld: time '%.40s' does not parse", lineno, tcell);
            continue;
        }
        if (stats->rows == max_rows) {
            snprintf (err, cap, "%s: line %ld: more than %zu rows", path, lineno, max_rows);
            goto done;
        }
        double v[S_NCOLS];
        for (int k = S_OPEN; k < S_NCOLS; k++)
            v[k] = col[k] < 0 ? NAN : col[k] < n ? s_number (s_trim (fields[col[k]])) : NAN;
        fks_bar_t bar;
        memset (&bar, 0, sizeof bar);
        snprintf (bar.symbol, sizeof bar.symbol, "%s", opts->symbol);
        snprintf (bar.interval, sizeof bar.interval, "%s", opts->interval);
        bar.open_time = t;
        bar.close = v[S_CLOSE];
        bar.open = col[S_OPEN] < 0 ? bar.close : v[S_OPEN];
        bar.high = col[S_HIGH] < 0 ? bar.close : v[S_HIGH];
        bar.low = col[S_LOW] < 0 ? bar.close : v[S_LOW];
        bar.volume = col[S_VOLUME] < 0 ? 0 : v[S_VOLUME];
        bar.closed = true;
        if (fks_bars_push (out, &bar) != 0) {
            snprintf (err, cap, "%s: line %ld: out of memory", path, lineno);
            goto done;
        }
        stats->rows++;
    }
    if (ferror (f)) {
        snprintf (err, cap, "%s: read error", path);
        goto done;
    }
    if (!have_header) {
        snprintf (err, cap, "%s: empty file: expected a header line naming the columns", path);
        goto done;
    }
    if (stats->rows == 0) {
        snprintf (err, cap, "%s: no data rows%s%s", path, stats->skipped ? "; " : "",
                  stats->first_skip);
        goto done;
    }
    //  Sort only what this call added.
    fks_bars_t mine = { out->v + start_n, out->n - start_n, out->n - start_n };
    fks_bars_sort (&mine);
    //  One bar per time, the file's last row for it (the sort is stable): a replay hands its
    //  bars out in batches from the time after the last one served, so a second row for a time
    //  would otherwise be dropped or kept depending on where a batch ended.
    size_t kept = 0;
    for (size_t i = 0; i < mine.n; i++) {
        if (kept > 0 && mine.v[kept - 1].open_time == mine.v[i].open_time) {
            if (stats->duplicates++ == 0)
                fks_time_text (stats->first_duplicate, mine.v[i].open_time);
            mine.v[kept - 1] = mine.v[i];
        }
        else
            mine.v[kept++] = mine.v[i];
    }
    out->n = start_n + kept;
    stats->rows = kept;
    rc = 0;
done:
    fclose (f);
    if (rc != 0) {
        out->n = start_n;
        stats->rows = 0;
    }
    return rc;
}
