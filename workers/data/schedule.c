/*  schedule.c - which symbols and intervals the data worker polls: FKS_DATA_FEEDS.
 *
 *  See schedule.h for the syntax. The text is copied and cut in place: entries on ';' and
 *  new lines, words on blanks, symbols on commas; each entry is checked completely before its
 *  feeds are added, so an error never leaves half an entry behind.
 */
#include "workers/data/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_WORDS_MAX 16

const char *
fks_source_name (fks_source_t source)
{
    switch (source) {
        case FKS_SOURCE_REPLAY:  return "replay";
        case FKS_SOURCE_BINANCE: return "binance";
        case FKS_SOURCE_YAHOO:   return "yahoo";
    }
    return "?";
}

int
fks_duration_parse (const char *text, int64_t *ms)
{
    if (!text || !isdigit ((unsigned char) *text))
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll (text, &end, 10);
    if (errno || n < 0 || n > 1000000000LL)
        return -1;
    int64_t per;
    if (!strcmp (end, "ms"))
        per = 1;
    else if (!strcmp (end, "s"))
        per = 1000;
    else if (!strcmp (end, "m"))
        per = 60000;
    else if (!strcmp (end, "h"))
        per = 3600000;
    else
        return -1;
    *ms = n * per;
    return 0;
}

void
fks_schedule_free (fks_schedule_t *schedule)
{
    free (schedule->v);
    schedule->v = NULL;
    schedule->n = 0;
}

static int
s_add (fks_schedule_t *out, const fks_feed_spec_t *spec, char *err, size_t cap, int entry)
{
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i].source == spec->source && !strcmp (out->v[i].symbol, spec->symbol)
            && !strcmp (out->v[i].interval, spec->interval)) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: %s %s %s is listed twice", entry,
                      fks_source_name (spec->source), spec->symbol, spec->interval);
            return -1;
        }
    if (out->n == FKS_SCHEDULE_FEEDS_MAX) {
        snprintf (err, cap, "FKS_DATA_FEEDS: more than %d feeds", FKS_SCHEDULE_FEEDS_MAX);
        return -1;
    }
    fks_feed_spec_t *v = realloc (out->v, (out->n + 1) * sizeof *v);
    if (!v) {
        snprintf (err, cap, "out of memory");
        return -1;
    }
    out->v = v;
    out->v[out->n++] = *spec;
    return 0;
}

//  One entry (words[0..n-1]). 0 or -1 with err.
static int
s_entry (char **words, int n, int entry, fks_schedule_t *out, char *err, size_t cap)
{
    fks_feed_spec_t spec;
    memset (&spec, 0, sizeof spec);
    int pos = 1;
    if (!strcmp (words[0], "binance"))
        spec.source = FKS_SOURCE_BINANCE;
    else if (!strcmp (words[0], "yahoo"))
        spec.source = FKS_SOURCE_YAHOO;
    else if (!strcmp (words[0], "replay"))
        spec.source = FKS_SOURCE_REPLAY;
    else {
        snprintf (err, cap, "FKS_DATA_FEEDS entry %d: unknown source '%.32s' (binance, yahoo "
                  "or replay)", entry, words[0]);
        return -1;
    }
    bool replay = spec.source == FKS_SOURCE_REPLAY;
    int need = replay ? 4 : 3;
    if (n < need) {
        snprintf (err, cap, "FKS_DATA_FEEDS entry %d: expected '%s', got %d word%s", entry,
                  replay ? "replay FILE SYMBOL INTERVAL" : "SOURCE SYMBOLS INTERVAL", n,
                  n == 1 ? "" : "s");
        return -1;
    }
    if (replay) {
        if (strlen (words[pos]) >= sizeof spec.path) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: file name too long", entry);
            return -1;
        }
        snprintf (spec.path, sizeof spec.path, "%s", words[pos++]);
    }
    char *symbols = words[pos++];
    const char *interval = words[pos++];
    if (fks_interval_parse (interval, NULL, NULL) != 0) {
        snprintf (err, cap, "FKS_DATA_FEEDS entry %d: '%.16s' is not an interval (e.g. 1m, "
                  "15m, 1h, 1d)", entry, interval);
        return -1;
    }
    snprintf (spec.interval, sizeof spec.interval, "%s", interval);
    int64_t iv;
    fks_interval_parse (interval, &iv, NULL);
    spec.every_ms = iv / 2 < 5000 ? 5000 : iv / 2 > 300000 ? 300000 : iv / 2;
    spec.lookback = 500;
    spec.calendar = spec.source == FKS_SOURCE_YAHOO ? FKS_CALENDAR_WEEKDAYS : FKS_CALENDAR_24X7;
    for (; pos < n; pos++) {
        char *w = words[pos];
        char *eq = strchr (w, '=');
        if (!eq) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: '%.32s' is not an option "
                      "(name=value)", entry, w);
            return -1;
        }
        *eq = '\0';
        const char *v = eq + 1;
        char *end;
        if (!strcmp (w, "every") && !replay) {
            if (fks_duration_parse (v, &spec.every_ms) != 0 || spec.every_ms < 1000
                || spec.every_ms > 86400000) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: every=%.16s: expected a duration "
                          "from 1s to 24h, e.g. 30s or 5m", entry, v);
                return -1;
            }
        }
        else if (!strcmp (w, "lookback") && !replay) {
            long l = strtol (v, &end, 10);
            if (end == v || *end || l < 1 || l > 10000) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: lookback=%.16s: expected 1 to "
                          "10000 bars", entry, v);
                return -1;
            }
            spec.lookback = (size_t) l;
        }
        else if (!strcmp (w, "speed") && replay) {
            spec.speed = strtod (v, &end);
            if (end == v || *end || !(spec.speed >= 0 && spec.speed <= 1e12)) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: speed=%.16s: expected 0 (as fast "
                          "as possible) or a positive factor", entry, v);
                return -1;
            }
        }
        else if (!strcmp (w, "column") && replay) {
            if (!*v || strlen (v) >= sizeof spec.column) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: column= needs a name of at most "
                          "63 bytes", entry);
                return -1;
            }
            snprintf (spec.column, sizeof spec.column, "%s", v);
        }
        else if (!strcmp (w, "calendar")) {
            if (fks_calendar_parse (v, &spec.calendar) != 0) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: calendar=%.16s: expected 24x7, "
                          "weekdays or none", entry, v);
                return -1;
            }
        }
        else {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: unknown option '%.32s' for %s", entry,
                      w, fks_source_name (spec.source));
            return -1;
        }
    }
    //  The symbols: check them all, then add them all.
    fks_schedule_t mine = { 0 };
    char *save = NULL;
    int rc = 0;
    for (char *s = strtok_r (symbols, ",", &save); s && rc == 0;
         s = strtok_r (NULL, ",", &save)) {
        fks_feed_spec_t one = spec;
        char *name = strchr (s, '=');
        if (name)
            *name++ = '\0';
        if (replay && mine.n == 1) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: a replay takes one symbol", entry);
            rc = -1;
            break;
        }
        if (!*s || strlen (s) >= sizeof one.raw_symbol) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: empty or overlong symbol", entry);
            rc = -1;
            break;
        }
        for (const char *c = s; *c; c++)
            if (!isgraph ((unsigned char) *c)) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: symbol '%.32s' holds a control "
                          "character", entry, s);
                rc = -1;
                break;
            }
        if (rc)
            break;
        snprintf (one.raw_symbol, sizeof one.raw_symbol, "%s", s);
        char why[96];
        if (fks_symbol_normalize (name ? name : s, one.symbol, why, sizeof why) != 0) {
            snprintf (err, cap, "FKS_DATA_FEEDS entry %d: symbol '%.32s': %s%s", entry,
                      name ? name : s, why, name ? "" : " (store it under another name with "
                      "SYMBOL=NAME)");
            rc = -1;
            break;
        }
        rc = s_add (&mine, &one, err, cap, entry);
    }
    if (rc == 0 && mine.n == 0) {
        snprintf (err, cap, "FKS_DATA_FEEDS entry %d: no symbol", entry);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < mine.n; i++)
        rc = s_add (out, &mine.v[i], err, cap, entry);
    fks_schedule_free (&mine);
    return rc;
}

int
fks_schedule_parse (const char *text, fks_schedule_t *out, char *err, size_t cap)
{
    out->v = NULL;
    out->n = 0;
    if (!text)
        return 0;
    char *copy = strdup (text);
    if (!copy) {
        snprintf (err, cap, "out of memory");
        return -1;
    }
    int rc = 0, entry = 0;
    char *save = NULL;
    for (char *e = strtok_r (copy, ";\n", &save); e && rc == 0; e = strtok_r (NULL, ";\n", &save)) {
        char *words[S_WORDS_MAX];
        int n = 0;
        char *wsave = NULL;
        for (char *w = strtok_r (e, " \t\r", &wsave); w; w = strtok_r (NULL, " \t\r", &wsave)) {
            if (n == S_WORDS_MAX) {
                snprintf (err, cap, "FKS_DATA_FEEDS entry %d: more than %d words", entry + 1,
                          S_WORDS_MAX);
                rc = -1;
                break;
            }
            words[n++] = w;
        }
        if (rc || n == 0)
            continue;
        entry++;
        rc = s_entry (words, n, entry, out, err, cap);
    }
    free (copy);
    if (rc != 0)
        fks_schedule_free (out);
    return rc;
}
