/*  quality.c - the data-quality checks of one bar series (a symbol at an interval).
 *
 *  See quality.h for the rules. Gaps are counted with integer arithmetic on open times, so a
 *  ten-year gap in minute bars costs no loop; the weekday calendar counts whole weeks at once
 *  and walks at most the few days at either end.
 */
#include "workers/data/quality.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define S_DAY_MS  86400000LL
#define S_WEEK_MS (7 * S_DAY_MS)

void
fks_quality_cfg_defaults (fks_quality_cfg_t *cfg)
{
    cfg->outlier = 0.2;
    cfg->stale_factor = 3;
    cfg->gap_min = 1;
    cfg->calendar = FKS_CALENDAR_24X7;
}

int
fks_calendar_parse (const char *text, fks_calendar_t *out)
{
    if (!text)
        return -1;
    if (strcmp (text, "24x7") == 0)
        *out = FKS_CALENDAR_24X7;
    else if (strcmp (text, "weekdays") == 0)
        *out = FKS_CALENDAR_WEEKDAYS;
    else if (strcmp (text, "none") == 0)
        *out = FKS_CALENDAR_NONE;
    else
        return -1;
    return 0;
}

const char *
fks_calendar_name (fks_calendar_t calendar)
{
    switch (calendar) {
        case FKS_CALENDAR_24X7:     return "24x7";
        case FKS_CALENDAR_WEEKDAYS: return "weekdays";
        case FKS_CALENDAR_NONE:     return "none";
    }
    return "?";
}

const char *
fks_quality_kind_name (fks_quality_kind_t kind)
{
    switch (kind) {
        case FKS_QUALITY_GAP:       return "gap";
        case FKS_QUALITY_STALE:     return "stale";
        case FKS_QUALITY_OUTLIER:   return "outlier";
        case FKS_QUALITY_BAD_VALUE: return "bad_value";
    }
    return "?";
}

static int64_t
s_floor_div (int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

//  Day number d (days since 1970-01-01, a Thursday) falls on Monday to Friday.
static bool
s_weekday (int64_t day)
{
    int64_t dow = (day + 4) % 7;        //  0 Sunday .. 6 Saturday
    if (dow < 0)
        dow += 7;
    return dow != 0 && dow != 6;
}

//  Weekdays among the days [d1, d2).
static int64_t
s_weekdays_in (int64_t d1, int64_t d2)
{
    if (d2 <= d1)
        return 0;
    int64_t full = (d2 - d1) / 7;
    int64_t count = full * 5;
    for (int64_t d = d1 + full * 7; d < d2; d++)
        count += s_weekday (d);
    return count;
}

int64_t
fks_weekday_ms (int64_t a, int64_t b)
{
    if (b <= a)
        return 0;
    int64_t da = s_floor_div (a, S_DAY_MS), db = s_floor_div (b, S_DAY_MS);
    if (da == db)
        return s_weekday (da) ? b - a : 0;
    int64_t ms = s_weekday (da) ? (da + 1) * S_DAY_MS - a : 0;
    ms += s_weekdays_in (da + 1, db) * S_DAY_MS;
    if (s_weekday (db))
        ms += b - db * S_DAY_MS;
    return ms;
}

int
fks_quality_init (fks_quality_t *self, const fks_quality_cfg_t *cfg, const char *interval,
                  int64_t now_ms)
{
    memset (self, 0, sizeof *self);
    if (fks_interval_parse (interval, &self->interval_ms, &self->unit) != 0)
        return -1;
    self->cfg = *cfg;
    if (self->cfg.gap_min < 1)
        self->cfg.gap_min = 1;
    snprintf (self->interval, sizeof self->interval, "%s", interval);
    self->started_ms = now_ms;
    return 0;
}

static void
s_init (fks_quality_finding_t *f, const fks_bar_t *bar, fks_quality_kind_t kind)
{
    memset (f, 0, sizeof *f);
    f->kind = kind;
    snprintf (f->symbol, sizeof f->symbol, "%s", bar->symbol);
    snprintf (f->interval, sizeof f->interval, "%s", bar->interval);
    f->open_time = bar->open_time;
}

//  The next free slot of out, initialised for bar, or NULL when out is full.
static fks_quality_finding_t *
s_finding (const fks_bar_t *bar, fks_quality_kind_t kind, fks_quality_finding_t *out, size_t cap,
           size_t *n)
{
    if (*n >= cap)
        return NULL;
    fks_quality_finding_t *f = &out[(*n)++];
    s_init (f, bar, kind);
    return f;
}

static void
s_set (fks_quality_finding_t *f, bool has_value, double value, bool has_threshold,
       double threshold)
{
    f->has_value = has_value;
    f->value = value;
    f->has_threshold = has_threshold;
    f->threshold = threshold;
}

//  The first bad value of bar, described in f. False when there is none.
static bool
s_bad_value (const fks_quality_t *self, const fks_bar_t *bar, int64_t now_ms,
             fks_quality_finding_t *f)
{
    char when[24];
    fks_time_text (when, bar->open_time);
    const struct { const char *name; double v; } vals[] = {
        { "open", bar->open }, { "high", bar->high }, { "low", bar->low },
        { "close", bar->close }, { "volume", bar->volume },
    };
    for (size_t i = 0; i < 5; i++)
        if (!isfinite (vals[i].v)) {
            s_set (f, false, 0, false, 0);
            snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: %s is %s", bar->symbol,
                      bar->interval, when, vals[i].name,
                      isnan (vals[i].v) ? "missing or not a number" : "infinite");
            return true;
        }
    for (size_t i = 0; i < 4; i++)
        if (vals[i].v <= 0) {
            s_set (f, true, vals[i].v, true, 0);
            snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: %s %.10g is not a "
                      "positive price", bar->symbol, bar->interval, when, vals[i].name,
                      vals[i].v);
            return true;
        }
    if (bar->volume < 0) {
        s_set (f, true, bar->volume, true, 0);
        snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: volume %.10g is negative",
                  bar->symbol, bar->interval, when, bar->volume);
        return true;
    }
    if (bar->high < bar->low) {
        s_set (f, true, bar->high, true, bar->low);
        snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: high %.10g is below low "
                  "%.10g", bar->symbol, bar->interval, when, bar->high, bar->low);
        return true;
    }
    for (size_t i = 0; i < 4; i += 3)       //  open, then close
        if (vals[i].v < bar->low || vals[i].v > bar->high) {
            s_set (f, true, vals[i].v, true, vals[i].v < bar->low ? bar->low : bar->high);
            snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: %s %.10g is outside "
                      "[low %.10g, high %.10g]", bar->symbol, bar->interval, when,
                      vals[i].name, vals[i].v, bar->low, bar->high);
            return true;
        }
    if (bar->open_time > now_ms + self->interval_ms) {
        double ahead = (double) (bar->open_time - now_ms) / 1000.0;
        s_set (f, true, ahead, true, (double) self->interval_ms / 1000.0);
        snprintf (f->detail, sizeof f->detail, "%s %s bar at %s opens %.0f s in the future",
                  bar->symbol, bar->interval, when, ahead);
        return true;
    }
    return false;
}

//  Bars missing between the newest bar and a later one opening at t.
static int64_t
s_missing (const fks_quality_t *self, int64_t t)
{
    int64_t iv = self->interval_ms;
    if (self->unit == 'M') {
        int64_t step = iv / FKS_MONTH_MS;
        int64_t months = fks_months_between (self->last_open, t);
        return months / step - 1;
    }
    if (self->cfg.calendar == FKS_CALENDAR_WEEKDAYS && iv < S_WEEK_MS)
        return fks_weekday_ms (self->last_open + iv, t) / iv;
    return (t - self->last_open) / iv - 1;
}

bool
fks_quality_check (fks_quality_t *self, const fks_bar_t *bar, int64_t now_ms,
                   fks_quality_finding_t *out, size_t cap, size_t *n)
{
    fks_quality_finding_t bad, *f;
    s_init (&bad, bar, FKS_QUALITY_BAD_VALUE);
    if (s_bad_value (self, bar, now_ms, &bad)) {
        if (*n < cap)
            out[(*n)++] = bad;
        return false;
    }
    if (!self->has_last) {
        self->has_last = true;
        self->last_open = bar->open_time;
        self->last_close = bar->close;
        self->stale_reported = false;
        return true;
    }
    if (bar->open_time < self->last_open)
        return true;                        //  a backfill: nothing to compare with
    bool newer = bar->open_time > self->last_open;
    char from[24], to[24];
    if (newer && self->cfg.calendar != FKS_CALENDAR_NONE) {
        int64_t missing = s_missing (self, bar->open_time);
        if (missing >= self->cfg.gap_min && (f = s_finding (bar, FKS_QUALITY_GAP, out, cap, n))) {
            s_set (f, true, (double) missing, true, (double) self->cfg.gap_min);
            snprintf (f->detail, sizeof f->detail, "%s: %" PRId64 " %s bar%s missing between "
                      "%s and %s", bar->symbol, missing, bar->interval, missing == 1 ? "" : "s",
                      fks_time_text (from, self->last_open),
                      fks_time_text (to, bar->open_time));
        }
    }
    bool has_prev = newer || self->has_before;
    double prev = newer ? self->last_close : self->before_close;
    //  An update of the newest bar already reported as an outlier is not news again.
    bool reported = !newer && self->outlier_reported;
    if (self->cfg.outlier > 0 && has_prev && prev > 0 && !reported) {
        double jump = fabs (bar->close / prev - 1);
        if (jump > self->cfg.outlier && (f = s_finding (bar, FKS_QUALITY_OUTLIER, out, cap, n))) {
            reported = true;
            s_set (f, true, jump, true, self->cfg.outlier);
            snprintf (f->detail, sizeof f->detail, "%s %s bar at %s: close moved %.1f%% from "
                      "%.10g to %.10g (limit %.1f%%)", bar->symbol, bar->interval,
                      fks_time_text (to, bar->open_time), jump * 100, prev, bar->close,
                      self->cfg.outlier * 100);
        }
    }
    if (newer) {
        self->has_before = true;
        self->before_close = self->last_close;
        self->last_open = bar->open_time;
        self->last_close = bar->close;
        self->stale_reported = false;
    }
    else
        self->last_close = bar->close;
    self->outlier_reported = reported;
    return true;
}

void
fks_quality_seed (fks_quality_t *self, const fks_bars_t *stored)
{
    if (!stored || stored->n == 0)
        return;
    const fks_bar_t *newest = &stored->v[stored->n - 1];
    if (self->has_last && self->last_open >= newest->open_time)
        return;
    self->has_last = true;
    self->last_open = newest->open_time;
    self->last_close = newest->close;
    self->has_before = stored->n >= 2;
    self->before_close = self->has_before ? stored->v[stored->n - 2].close : 0;
    self->stale_reported = false;
    self->outlier_reported = false;
}

bool
fks_quality_stale (fks_quality_t *self, const char *symbol, int64_t now_ms,
                   fks_quality_finding_t *out)
{
    if (self->cfg.calendar == FKS_CALENDAR_NONE || !(self->cfg.stale_factor > 0)
        || self->stale_reported)
        return false;
    int64_t iv = self->interval_ms;
    int64_t since = self->has_last ? self->last_open + iv : self->started_ms;
    int64_t age = self->cfg.calendar == FKS_CALENDAR_WEEKDAYS && iv < S_WEEK_MS
                ? fks_weekday_ms (since, now_ms) : now_ms - since;
    double limit = self->cfg.stale_factor * (double) iv;
    if ((double) age <= limit)
        return false;
    self->stale_reported = true;
    memset (out, 0, sizeof *out);
    out->kind = FKS_QUALITY_STALE;
    snprintf (out->symbol, sizeof out->symbol, "%s", symbol);
    snprintf (out->interval, sizeof out->interval, "%s", self->interval);
    out->open_time = self->has_last ? self->last_open : 0;
    s_set (out, true, (double) age / 1000.0, true, limit / 1000.0);
    char when[24];
    if (self->has_last)
        snprintf (out->detail, sizeof out->detail, "%s: no new %s bar for %.0f s after the "
                  "last one (opened %s) closed; limit %.0f s", symbol, self->interval,
                  out->value, fks_time_text (when, self->last_open), out->threshold);
    else
        snprintf (out->detail, sizeof out->detail, "%s: no %s bar at all for %.0f s since "
                  "the feed started; limit %.0f s", symbol, self->interval, out->value,
                  out->threshold);
    return true;
}
