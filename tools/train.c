/*  train.c - fks-train: fits the ai worker's model on bars and reports how well it does on
 *  bars it has not seen.
 *
 *      fks-train --csv FILE [--column NAME] [--symbol NAME] [--interval 1d] --out MODEL
 *      fks-train --db --symbol NAME --interval 1d --out MODEL          (reads FKS_PG_URL)
 *          [--horizon 5] [--test-fraction 0.3] [--l2 1] [--version TEXT] [--max-bars N]
 *
 *  The bars come from an OHLCV file (workers/data/csv.h: the shipped tools/data/ttrc_ohlcv.csv,
 *  or a closes-only file with --column) or from the bars table, the newest --max-bars of them
 *  (2000000). A model must be fitted on what the ai worker will see, which is what the data
 *  worker stored: a bar the data worker refuses as a bad value (its own check,
 *  workers/data/quality.h: a price or volume not a number, a price <= 0, high below low, open
 *  or close outside [low, high], a time ahead of now) is dropped, and of rows with the same
 *  time only the last is kept (the worker's upsert keeps the last). Each kind of dropped row
 *  is counted on stderr, with the first one's time. The data set (workers/ai/fit.h)
 *  has one row per bar with the features the ai worker computes and the label "the close
 *  `horizon` bars later is higher". Rows are split in time order: the oldest part trains, the
 *  newest --test-fraction tests, and the `horizon` rows in between are dropped so that no
 *  training label looks into the test period. The report gives the test accuracy next to the
 *  baseline of always predicting the training majority: a model is only worth its file when
 *  it beats that baseline, and on real prices it rarely does by much.
 *
 *  The model file is written to a temporary file beside MODEL, read back and checked, then
 *  renamed over MODEL, so a running ai worker reloads it whole or not at all. Its version is
 *  <symbol>-<interval>-h<horizon>-<8 hex digits of a hash of its coefficients> unless
 *  --version is given: the same data give the same file. Exit status 0, 1 on failure, 2 on a
 *  usage error.
 */
#include "workers/ai/fit.h"
#include "workers/data/csv.h"
#include "workers/data/quality.h"
#include "common/config.h"
#include "common/log.h"
#include "common/pg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_DB_MAX_BARS 2000000

typedef struct {
    const char *csv, *column, *symbol, *interval, *out, *version;
    bool db;
    int horizon;
    long max_bars;
    double test_fraction, l2;
} s_args_t;

static void
s_usage (FILE *f)
{
    fprintf (f,
        "usage: fks-train --csv FILE [--column NAME] [--symbol NAME] [--interval 1d] --out MODEL\n"
        "       fks-train --db --symbol NAME --interval 1d --out MODEL   (reads FKS_PG_URL)\n"
        "options: --horizon N (bars ahead, default 5)  --test-fraction F (default 0.3)\n"
        "         --l2 X (penalty, default 1)  --version TEXT (default: derived from the fit)\n"
        "         --max-bars N (train on the newest N bars, default and most %d)\n",
        S_DB_MAX_BARS);
}

static int
s_usage_error (const char *fmt, const char *what)
{
    fprintf (stderr, "fks-train: ");
    fprintf (stderr, fmt, what);
    fprintf (stderr, "\n");
    s_usage (stderr);
    return 2;
}

static int
s_args (int argc, char **argv, s_args_t *a)
{
    memset (a, 0, sizeof *a);
    a->interval = "1d";
    a->horizon = 5;
    a->test_fraction = 0.3;
    a->l2 = 1;
    a->max_bars = S_DB_MAX_BARS;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp (o, "-h") || !strcmp (o, "--help")) {
            s_usage (stdout);
            exit (0);
        }
        if (!strcmp (o, "--db")) {
            a->db = true;
            continue;
        }
        if (i + 1 >= argc)
            return s_usage_error ("%s needs a value", o);
        const char *v = argv[++i];
        char *end;
        if (!strcmp (o, "--csv"))
            a->csv = v;
        else if (!strcmp (o, "--column"))
            a->column = v;
        else if (!strcmp (o, "--symbol"))
            a->symbol = v;
        else if (!strcmp (o, "--interval"))
            a->interval = v;
        else if (!strcmp (o, "--out"))
            a->out = v;
        else if (!strcmp (o, "--version"))
            a->version = v;
        else if (!strcmp (o, "--horizon")) {
            long h = strtol (v, &end, 10);
            if (end == v || *end || h < 1 || h > 1000)
                return s_usage_error ("--horizon: expected 1 to 1000 bars, got '%s'", v);
            a->horizon = (int) h;
        }
        else if (!strcmp (o, "--test-fraction")) {
            a->test_fraction = strtod (v, &end);
            if (end == v || *end || !(a->test_fraction >= 0.05 && a->test_fraction <= 0.9))
                return s_usage_error ("--test-fraction: expected 0.05 to 0.9, got '%s'", v);
        }
        else if (!strcmp (o, "--max-bars")) {
            a->max_bars = strtol (v, &end, 10);
            if (end == v || *end || a->max_bars < 1 || a->max_bars > S_DB_MAX_BARS)
                return s_usage_error ("--max-bars: expected 1 to 2000000, got '%s'", v);
        }
        else if (!strcmp (o, "--l2")) {
            a->l2 = strtod (v, &end);
            if (end == v || *end || !(a->l2 >= 0 && a->l2 <= 1e6))
                return s_usage_error ("--l2: expected 0 to 1e6, got '%s'", v);
        }
        else
            return s_usage_error ("unknown option '%s'", o);
    }
    if (!a->out)
        return s_usage_error ("%s", "--out MODEL is required");
    if (!a->csv == !a->db)
        return s_usage_error ("%s", "give exactly one of --csv FILE and --db");
    if (a->db && !a->symbol)
        return s_usage_error ("%s", "--db needs --symbol");
    if (a->version && !fks_model_version_valid (a->version))
        return s_usage_error ("--version: 1-63 characters of [A-Za-z0-9._-], got '%s'",
                              a->version);
    int64_t ms;
    if (fks_interval_parse (a->interval, &ms, NULL) != 0)
        return s_usage_error ("--interval: expected e.g. 1h or 1d, got '%s'", a->interval);
    if (!a->symbol)
        a->symbol = a->column ? a->column : "CSV";
    return 0;
}

//  The kinds of row dropped, counted and reported each with the first one's time.
enum { S_DROP_TIME, S_DROP_NAN, S_DROP_PRICE, S_DROP_VOLUME, S_DROP_HIGH_LOW, S_DROP_RANGE,
       S_DROP_FUTURE, S_DROP_OTHER, S_DROP_DUPLICATE, S_DROP_KINDS };
static const char *const s_drop_names[S_DROP_KINDS] = {
    "unparsable time", "a price or volume missing or not a number", "a price <= 0",
    "negative volume", "high below low", "open or close outside [low, high]",
    "open time ahead of now", "bad value", "duplicate time (the last row of that time kept)" };

typedef struct {
    size_t n[S_DROP_KINDS];
    int64_t first[S_DROP_KINDS];        /* the open time of the first one, */
    char first_text[S_DROP_KINDS][160]; /* ... or the loader's words for it */
} s_drops_t;

//  Which rule a refused bar broke, in the order quality.c checks them. The verdict is the data
//  worker's own (fks_quality_check); this only names it for the count.
static int
s_drop_kind (const fks_bar_t *b, int64_t now_ms, int64_t interval_ms)
{
    const double v[5] = { b->open, b->high, b->low, b->close, b->volume };
    for (int i = 0; i < 5; i++)
        if (!isfinite (v[i]))
            return S_DROP_NAN;
    for (int i = 0; i < 4; i++)
        if (v[i] <= 0)
            return S_DROP_PRICE;
    if (b->volume < 0)
        return S_DROP_VOLUME;
    if (b->high < b->low)
        return S_DROP_HIGH_LOW;
    if (b->open < b->low || b->open > b->high || b->close < b->low || b->close > b->high)
        return S_DROP_RANGE;
    return b->open_time > now_ms + interval_ms ? S_DROP_FUTURE : S_DROP_OTHER;
}

static void
s_drop (s_drops_t *d, int kind, int64_t open_time)
{
    if (d->n[kind]++ == 0)
        d->first[kind] = open_time;
}

//  Keeps in bars (sorted by time, equal times in file order) what the data worker would have
//  stored: bars its quality check accepts, and of those with one time the last. Counts the
//  rest in d.
static void
s_clean (fks_bars_t *bars, const char *interval, s_drops_t *d)
{
    //  Only the bad-value check decides; gaps and outliers are stored by the worker too.
    fks_quality_cfg_t cfg;
    fks_quality_cfg_defaults (&cfg);
    cfg.outlier = 0;
    cfg.stale_factor = 0;
    cfg.calendar = FKS_CALENDAR_NONE;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
    fks_quality_t q;
    fks_quality_init (&q, &cfg, interval, now_ms);     //  valid: s_args checked it
    size_t kept = 0;
    for (size_t i = 0; i < bars->n; i++) {
        const fks_bar_t *b = &bars->v[i];
        fks_quality_finding_t findings[3];
        size_t nf = 0;
        if (!fks_quality_check (&q, b, now_ms, findings, 3, &nf)) {
            s_drop (d, s_drop_kind (b, now_ms, q.interval_ms), b->open_time);
            continue;
        }
        //  A later row of the same time replaces the one kept, as the worker's upsert does.
        if (kept > 0 && bars->v[kept - 1].open_time == b->open_time) {
            s_drop (d, S_DROP_DUPLICATE, b->open_time);
            kept--;
        }
        bars->v[kept++] = *b;
    }
    bars->n = kept;
}

//  The bars of the CSV file or the bars table, oldest first (the newest a->max_bars). 0 or -1
//  (printed).
static int
s_read_bars (const s_args_t *a, const char *symbol, fks_bars_t *bars, s_drops_t *d)
{
    if (a->csv) {
        fks_csv_stats_t st;
        char err[512];
        fks_csv_opts_t o = { .symbol = symbol, .interval = a->interval, .column = a->column };
        if (fks_csv_load (a->csv, &o, bars, &st, err, sizeof err) != 0) {
            fprintf (stderr, "fks-train: %s\n", err);
            return -1;
        }
        //  The loader keeps one row per time, the last (as the replay feed does).
        d->n[S_DROP_TIME] = st.skipped;
        snprintf (d->first_text[S_DROP_TIME], sizeof d->first_text[0], "%s", st.first_skip);
        d->n[S_DROP_DUPLICATE] = st.duplicates;
        snprintf (d->first_text[S_DROP_DUPLICATE], sizeof d->first_text[0], "%s",
                  st.first_duplicate);
        return 0;
    }
    char *url = NULL;
    fks_config_err_t cerr;
    if (fks_config_str ("FKS_PG_URL", NULL, &url, &cerr) < 0 || !url) {
        fprintf (stderr, "fks-train: %s\n", url ? cerr.msg
                 : "FKS_PG_URL is required with --db (set FKS_PG_URL or FKS_PG_URL_FILE)");
        free (url);
        return -1;
    }
    fks_pg_err_t err;
    fks_pg_t *pg = fks_pg_new (url, NULL, 0, &err);
    free (url);
    if (!pg) {
        fprintf (stderr, "fks-train: PostgreSQL: %s\n", err.msg);
        return -1;
    }
    char limit[24];
    snprintf (limit, sizeof limit, "%ld", a->max_bars);
    const char *values[3] = { symbol, a->interval, limit };
    //  The newest bars (the primary key is scanned backwards), handed back oldest first: a
    //  long history must train on its recent end, not on its first two million bars.
    PGresult *r = fks_pg_query (pg, "SELECT (extract (epoch FROM open_time) * 1000)::int8,"
                                " open::float8, high::float8, low::float8, close::float8,"
                                " volume::float8 FROM"
                                " (SELECT * FROM bars WHERE symbol = $1 AND interval = $2"
                                "  ORDER BY open_time DESC LIMIT $3::int) newest"
                                " ORDER BY open_time", 3, values, NULL, NULL, &err);
    if (!r) {
        fprintf (stderr, "fks-train: reading bars: %s\n", err.msg);
        fks_pg_destroy (&pg);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < PQntuples (r) && rc == 0; i++) {
        fks_bar_t b;
        memset (&b, 0, sizeof b);
        snprintf (b.symbol, sizeof b.symbol, "%s", symbol);
        snprintf (b.interval, sizeof b.interval, "%s", a->interval);
        b.open_time = strtoll (PQgetvalue (r, i, 0), NULL, 10);
        double *v[5] = { &b.open, &b.high, &b.low, &b.close, &b.volume };
        for (int k = 0; k < 5; k++)
            *v[k] = strtod (PQgetvalue (r, i, k + 1), NULL);
        b.closed = true;
        if (fks_bars_push (bars, &b) != 0) {
            fprintf (stderr, "fks-train: out of memory\n");
            rc = -1;
        }
    }
    PQclear (r);
    fks_pg_destroy (&pg);
    return rc;
}

//  Loads closes and volumes of the bars the data worker would have stored, the newest
//  a->max_bars, oldest first. 0 or -1 (printed).
static int
s_load (const s_args_t *a, const char *symbol, double **close, double **volume, size_t *n,
        char range[64])
{
    *close = *volume = NULL;
    *n = 0;
    range[0] = '\0';
    fks_bars_t bars = { 0 };
    s_drops_t d;
    memset (&d, 0, sizeof d);
    if (s_read_bars (a, symbol, &bars, &d) != 0) {
        fks_bars_free (&bars);
        return -1;
    }
    s_clean (&bars, a->interval, &d);
    for (int k = 0; k < S_DROP_KINDS; k++) {
        if (!d.n[k])
            continue;
        char when[24];
        fprintf (stderr, "fks-train: dropped %zu row%s: %s (first: %s)\n", d.n[k],
                 d.n[k] == 1 ? "" : "s", s_drop_names[k],
                 d.first_text[k][0] ? d.first_text[k] : fks_time_text (when, d.first[k]));
    }
    //  Only the newest max_bars: the bars table's query already took them, a file may hold
    //  more.
    size_t from = bars.n > (size_t) a->max_bars ? bars.n - (size_t) a->max_bars : 0;
    size_t m = bars.n - from;
    *close = malloc ((m ? m : 1) * sizeof **close);
    *volume = malloc ((m ? m : 1) * sizeof **volume);
    if (!*close || !*volume) {
        fks_bars_free (&bars);
        free (*close);
        free (*volume);
        *close = *volume = NULL;
        fprintf (stderr, "fks-train: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < m; i++) {
        (*close)[i] = bars.v[from + i].close;
        (*volume)[i] = bars.v[from + i].volume;
    }
    if (m) {
        char t0[24], t1[24];
        snprintf (range, 64, ", %s to %s", fks_time_text (t0, bars.v[from].open_time),
                  fks_time_text (t1, bars.v[bars.n - 1].open_time));
    }
    *n = m;
    fks_bars_free (&bars);
    return 0;
}

static uint32_t
s_fnv1a (const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t) s[i];
        h *= 16777619u;
    }
    return h;
}

static const char *
s_basename (const char *path)
{
    const char *s = strrchr (path, '/');
    return s ? s + 1 : path;
}

//  Writes text to path through a temporary file and a rename. 0 or -1 (printed).
static int
s_write (const char *path, const char *text, size_t len)
{
    char tmp[4096];
    if (snprintf (tmp, sizeof tmp, "%s.tmp.%d", path, (int) getpid ()) >= (int) sizeof tmp) {
        fprintf (stderr, "fks-train: output path too long\n");
        return -1;
    }
    FILE *f = fopen (tmp, "w");
    if (!f) {
        fprintf (stderr, "fks-train: %s: %s\n", tmp, strerror (errno));
        return -1;
    }
    bool ok = fwrite (text, 1, len, f) == len;
    ok = (fflush (f) == 0) && ok;
    ok = (fsync (fileno (f)) == 0) && ok;
    ok = (fclose (f) == 0) && ok;
    if (!ok) {
        fprintf (stderr, "fks-train: writing %s: %s\n", tmp, strerror (errno));
        unlink (tmp);
        return -1;
    }
    fks_model_t check;
    char err[512];
    if (fks_model_load (tmp, &check, err, sizeof err) != 0) {
        fprintf (stderr, "fks-train: the written model does not read back: %s\n", err);
        unlink (tmp);
        return -1;
    }
    if (rename (tmp, path) != 0) {
        fprintf (stderr, "fks-train: rename to %s: %s\n", path, strerror (errno));
        unlink (tmp);
        return -1;
    }
    return 0;
}

int
main (int argc, char **argv)
{
    fks_log_init ("fks-train");
    s_args_t a;
    int rc = s_args (argc, argv, &a);
    if (rc != 0)
        return rc;
    char symbol[FKS_SYMBOL_MAX], why[128];
    if (fks_symbol_normalize (a.symbol, symbol, why, sizeof why) != 0) {
        fprintf (stderr, "fks-train: --symbol '%s': %s\n", a.symbol, why);
        return 2;
    }
    double *close, *volume;
    size_t n;
    char range[64];
    if (s_load (&a, symbol, &close, &volume, &n, range) != 0)
        return 1;
    printf ("data: %zu bars of %s %s from %s%s\n", n, symbol, a.interval,
            a.csv ? a.csv : "the bars table", range);

    fks_dataset_t ds;
    rc = 1;
    if (fks_dataset_build (close, volume, n, a.horizon, &ds) != 0) {
        fprintf (stderr, "fks-train: out of memory building the data set\n");
        goto done;
    }
    size_t test_n = (size_t) floor ((double) ds.rows * a.test_fraction);
    size_t embargo = (size_t) a.horizon;
    if (ds.rows < test_n + embargo + 2 * (FKS_FEATURES_N + 1) || test_n < 10) {
        fprintf (stderr, "fks-train: only %zu usable rows from %zu bars (the features need %d "
                 "bars and the label %d more): not enough to train and test\n", ds.rows, n,
                 FKS_FEATURES_MIN_BARS, a.horizon);
        goto done;
    }
    size_t train_end = ds.rows - test_n - embargo, test_start = ds.rows - test_n;
    printf ("samples: %zu (train %zu, embargo %zu, test %zu)\n", ds.rows, train_end, embargo,
            test_n);

    fks_model_t m;
    memset (&m, 0, sizeof m);
    fks_fit_opts_t opts;
    fks_fit_opts_defaults (&opts);
    opts.l2 = a.l2;
    char err[256];
    if (fks_fit_logistic (&ds, 0, train_end, &opts, &m, err, sizeof err) != 0) {
        fprintf (stderr, "fks-train: %s\n", err);
        goto done;
    }
    snprintf (m.interval, sizeof m.interval, "%s", a.interval);
    m.horizon = a.horizon;
    size_t ups = 0;
    for (size_t i = 0; i < train_end; i++)
        ups += (size_t) ds.y[i];
    int majority = 2 * ups >= train_end ? 1 : 0;
    fks_eval_t in, out;
    fks_evaluate (&m, &ds, 0, train_end, majority, &in);
    fks_evaluate (&m, &ds, test_start, ds.rows, majority, &out);
    printf ("label: the close %d bars later is higher; up in %.1f%% of training rows, %.1f%% "
            "of test rows\n", a.horizon, in.up_share * 100, out.up_share * 100);
    printf ("fit: logistic regression on %d features, L2 %g\n", FKS_FEATURES_N, a.l2);
    printf ("in-sample accuracy: %.4f\n", in.accuracy);
    printf ("out-of-sample accuracy: %.4f (baseline %.4f: always '%s'), log loss %.4f\n",
            out.accuracy, out.baseline, majority ? "up" : "down", out.log_loss);

    snprintf (m.trained, sizeof m.trained, "%s rows=%zu test_rows=%zu test_accuracy=%.4f "
              "baseline=%.4f log_loss=%.4f", a.csv ? s_basename (a.csv) : "bars-table",
              train_end, test_n, out.accuracy, out.baseline, out.log_loss);
    char text[8192];
    if (a.version)
        snprintf (m.version, sizeof m.version, "%s", a.version);
    else {
        //  Hash the file as it would be without a version, then name it after the hash.
        snprintf (m.version, sizeof m.version, "x");
        int len = fks_model_format (&m, text, sizeof text);
        if (len < 0) {
            fprintf (stderr, "fks-train: the fitted model is not valid\n");
            goto done;
        }
        //  A version is [A-Za-z0-9._-]: the '!' of a continuous future (ES1!) is left out.
        char lower[FKS_SYMBOL_MAX];
        size_t k = 0;
        for (size_t i = 0; symbol[i] && k < sizeof lower - 1; i++)
            if (symbol[i] != '!')
                lower[k++] = (char) tolower ((unsigned char) symbol[i]);
        lower[k] = '\0';
        snprintf (m.version, sizeof m.version, "%.24s-%s-h%d-%08x", lower, a.interval,
                  a.horizon, s_fnv1a (text, (size_t) len));
    }
    int len = fks_model_format (&m, text, sizeof text);
    if (len < 0 || s_write (a.out, text, (size_t) len) != 0) {
        if (len < 0)
            fprintf (stderr, "fks-train: the fitted model is not valid\n");
        goto done;
    }
    printf ("model %s written to %s\n", m.version, a.out);
    rc = 0;
done:
    fks_dataset_free (&ds);
    free (close);
    free (volume);
    return rc;
}
