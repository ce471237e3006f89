/*  train.c - fks-train: fits the ai worker's model on bars and reports how well it does on
 *  bars it has not seen.
 *
 *      fks-train --csv FILE [--column NAME] [--symbol NAME] [--interval 1d] --out MODEL
 *      fks-train --db --symbol NAME --interval 1d --out MODEL          (reads FKS_PG_URL)
 *          [--horizon 5] [--test-fraction 0.3] [--l2 1] [--version TEXT]
 *
 *  The bars come from an OHLCV file (workers/data/csv.h: the shipped tools/data/ttrc_ohlcv.csv,
 *  or a closes-only file with --column) or from the bars table. The data set (workers/ai/fit.h)
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
#include <unistd.h>

#define S_DB_MAX_BARS 2000000

typedef struct {
    const char *csv, *column, *symbol, *interval, *out, *version;
    bool db;
    int horizon;
    double test_fraction, l2;
} s_args_t;

static void
s_usage (FILE *f)
{
    fprintf (f,
        "usage: fks-train --csv FILE [--column NAME] [--symbol NAME] [--interval 1d] --out MODEL\n"
        "       fks-train --db --symbol NAME --interval 1d --out MODEL   (reads FKS_PG_URL)\n"
        "options: --horizon N (bars ahead, default 5)  --test-fraction F (default 0.3)\n"
        "         --l2 X (penalty, default 1)  --version TEXT (default: derived from the fit)\n");
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

//  Loads closes and volumes. 0 or -1 (printed).
static int
s_load (const s_args_t *a, const char *symbol, double **close, double **volume, size_t *n)
{
    *close = *volume = NULL;
    *n = 0;
    if (a->csv) {
        fks_bars_t bars = { 0 };
        fks_csv_stats_t st;
        char err[512];
        fks_csv_opts_t o = { .symbol = symbol, .interval = a->interval, .column = a->column };
        if (fks_csv_load (a->csv, &o, &bars, &st, err, sizeof err) != 0) {
            fprintf (stderr, "fks-train: %s\n", err);
            return -1;
        }
        if (st.skipped)
            fprintf (stderr, "fks-train: %zu rows skipped (%s)\n", st.skipped, st.first_skip);
        *close = malloc (bars.n * sizeof **close);
        *volume = malloc (bars.n * sizeof **volume);
        if (!*close || !*volume) {
            fks_bars_free (&bars);
            fprintf (stderr, "fks-train: out of memory\n");
            return -1;
        }
        for (size_t i = 0; i < bars.n; i++) {
            (*close)[i] = bars.v[i].close;
            (*volume)[i] = bars.v[i].volume;
        }
        *n = bars.n;
        fks_bars_free (&bars);
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
    char limit[16];
    snprintf (limit, sizeof limit, "%d", S_DB_MAX_BARS);
    const char *values[3] = { symbol, a->interval, limit };
    PGresult *r = fks_pg_query (pg, "SELECT close::float8, volume::float8 FROM bars"
                                " WHERE symbol = $1 AND interval = $2"
                                " ORDER BY open_time LIMIT $3::int", 3, values, NULL, NULL,
                                &err);
    if (!r) {
        fprintf (stderr, "fks-train: reading bars: %s\n", err.msg);
        fks_pg_destroy (&pg);
        return -1;
    }
    size_t rows = (size_t) PQntuples (r);
    *close = malloc ((rows ? rows : 1) * sizeof **close);
    *volume = malloc ((rows ? rows : 1) * sizeof **volume);
    if (!*close || !*volume) {
        PQclear (r);
        fks_pg_destroy (&pg);
        fprintf (stderr, "fks-train: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < rows; i++) {
        (*close)[i] = strtod (PQgetvalue (r, (int) i, 0), NULL);
        (*volume)[i] = strtod (PQgetvalue (r, (int) i, 1), NULL);
    }
    *n = rows;
    PQclear (r);
    fks_pg_destroy (&pg);
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
    if (s_load (&a, symbol, &close, &volume, &n) != 0)
        return 1;
    printf ("data: %zu bars of %s %s from %s\n", n, symbol, a.interval,
            a.csv ? a.csv : "the bars table");

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
