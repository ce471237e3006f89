/*  test_train.c - the trainer, fks-train (tools/train.c), as a user runs it: on the shipped
 *  sample it writes a model the ai worker loads, reports an out-of-sample accuracy that can be
 *  recomputed from the file, and gives the same file for the same data.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "workers/ai/fit.h"
#include "workers/data/csv.h"

static char s_dir[64];

static void
s_setup (void)
{
    strcpy (s_dir, "/tmp/fks-train-XXXXXX");
    cr_assert (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_assert_eq (system (cmd), 0);
}

TestSuite (train, .init = s_setup, .fini = s_teardown);

//  Runs fks-train with args (NULL-terminated); its output (stdout and stderr) goes to *out
//  (caller frees). Returns the exit status.
static int
s_train (char **out, const char *const *args)
{
    char log[128];
    snprintf (log, sizeof log, "%s/out.txt", s_dir);
    const char *argv[32] = { dai_build ("tools/fks-train") };
    int n = 1;
    for (const char *const *a = args; *a && n < 31; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    pid_t pid = fork ();
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2 (fd, 1);
        dup2 (fd, 2);
        unsetenv ("FKS_PG_URL");
        execv (argv[0], (char *const *) argv);
        _exit (127);
    }
    int status;
    waitpid (pid, &status, 0);
    FILE *f = fopen (log, "r");
    cr_assert (f);
    *out = calloc (1, 65536);
    size_t len = fread (*out, 1, 65535, f);
    (*out)[len] = '\0';
    fclose (f);
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static const char *
s_path (const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf (buf[k], sizeof buf[k], "%s/%s", s_dir, name);
    return buf[k];
}

static char *
s_slurp (const char *path)
{
    FILE *f = fopen (path, "r");
    cr_assert (f, "%s", path);
    char *buf = calloc (1, 65536);
    size_t n = fread (buf, 1, 65535, f);
    buf[n] = '\0';
    fclose (f);
    return buf;
}

static const char *
s_ttrc (void)
{
    return dai_source ("tools/data/ttrc_ohlcv.csv");
}

Test (train, writes_a_model_that_loads_and_reports_out_of_sample_accuracy)
{
    char *out;
    const char *args[] = { "--csv", s_ttrc (), "--symbol", "TTRC", "--out", s_path ("m.txt"),
                           NULL };
    cr_assert_eq (s_train (&out, args), 0, "%s", out);
    cr_assert (strstr (out, "data: 5550 bars of TTRC 1d"), "%s", out);
    cr_assert (strstr (out, "samples: 5496 (train 3843, embargo 5, test 1648)"), "%s", out);
    char *line = strstr (out, "out-of-sample accuracy: ");
    cr_assert (line, "%s", out);
    double acc = -1, base = -1, loss = -1;
    cr_assert_eq (sscanf (line, "out-of-sample accuracy: %lf (baseline %lf: always 'up'), "
                          "log loss %lf", &acc, &base, &loss), 3, "%s", line);
    cr_assert (acc > 0.3 && acc < 0.8 && base > 0.3 && base < 0.8 && loss > 0.5 && loss < 1,
               "%s", line);
    fks_model_t m;
    char err[512];
    cr_assert_eq (fks_model_load (s_path ("m.txt"), &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq (m.interval, "1d");
    cr_assert_eq (m.horizon, 5);
    cr_assert_eq (m.n, FKS_FEATURES_N);
    cr_assert_eq (strncmp (m.version, "ttrc-1d-h5-", 11), 0, "%s", m.version);
    cr_assert_eq (strlen (m.version), 19, "%s", m.version);
    char want[128];
    snprintf (want, sizeof want, "model %s written to", m.version);
    cr_assert (strstr (out, want), "%s", out);
    snprintf (want, sizeof want, "test_accuracy=%.4f baseline=%.4f", acc, base);
    cr_assert (strstr (m.trained, want), "the file records what was reported: %s", m.trained);
    free (out);
}

//  The accuracy the trainer reports is the model's on the newest 30 % of the rows: recompute
//  it from the written file and the CSV, independently of the trainer's own numbers.
Test (train, reported_accuracy_is_the_models_on_the_held_out_rows)
{
    char *out;
    const char *args[] = { "--csv", s_ttrc (), "--out", s_path ("m.txt"), "--horizon", "3",
                           "--test-fraction", "0.25", NULL };
    cr_assert_eq (s_train (&out, args), 0, "%s", out);
    double reported;
    char *line = strstr (out, "out-of-sample accuracy: ");
    cr_assert (line && sscanf (line, "out-of-sample accuracy: %lf", &reported) == 1);
    fks_model_t m;
    char err[512];
    cr_assert_eq (fks_model_load (s_path ("m.txt"), &m, err, sizeof err), 0, "%s", err);
    fks_bars_t bars = { 0 };
    fks_csv_opts_t o = { .symbol = "CSV", .interval = "1d" };
    cr_assert_eq (fks_csv_load (s_ttrc (), &o, &bars, NULL, err, sizeof err), 0);
    size_t right = 0, n = 0;
    //  Rows: bar t from 49 to 5550-1-3; the test rows are the newest floor(rows * 0.25).
    size_t rows = 5550 - 3 - 49, test = (size_t) floor ((double) rows * 0.25);
    double c[5550], v[5550];
    for (size_t i = 0; i < bars.n; i++) {
        c[i] = bars.v[i].close;
        v[i] = bars.v[i].volume;
    }
    for (size_t t = 49 + rows - test; t < 49 + rows; t++) {
        double f[FKS_FEATURES_N];
        cr_assert_eq (fks_features_compute (c, v, t + 1, f), 0);
        bool up = c[t + 3] > c[t];
        right += (fks_model_predict (&m, f) >= 0.5) == up;
        n++;
    }
    cr_assert_eq (n, test);
    cr_assert_float_eq ((double) right / (double) n, reported, 0.00005);
    fks_bars_free (&bars);
    free (out);
}

Test (train, same_data_give_the_same_file)
{
    char *out;
    const char *a1[] = { "--csv", s_ttrc (), "--symbol", "TTRC", "--out", s_path ("a.txt"),
                         NULL };
    const char *a2[] = { "--csv", s_ttrc (), "--symbol", "TTRC", "--out", s_path ("b.txt"),
                         NULL };
    cr_assert_eq (s_train (&out, a1), 0, "%s", out);
    free (out);
    cr_assert_eq (s_train (&out, a2), 0, "%s", out);
    free (out);
    char *x = s_slurp (s_path ("a.txt")), *y = s_slurp (s_path ("b.txt"));
    cr_assert_str_eq (x, y);
    //  The shipped model is exactly what the shipped data give.
    char *shipped = s_slurp (dai_source ("tools/data/model.txt"));
    cr_assert_str_eq (shipped, x, "tools/data/model.txt is reproducible with "
                      "fks-train --csv tools/data/ttrc_ohlcv.csv --symbol TTRC");
    free (x);
    free (y);
    free (shipped);
}

//  A continuous future (ES1!) names its model without the '!', which a version may not hold.
Test (train, a_continuous_future_symbol_names_a_loadable_model)
{
    char *out;
    const char *args[] = { "--csv", s_ttrc (), "--symbol", "CME_MINI:ES1!", "--out",
                           s_path ("es.txt"), NULL };
    cr_assert_eq (s_train (&out, args), 0, "%s", out);
    cr_assert (strstr (out, "bars of ES1! 1d"), "%s", out);
    fks_model_t m;
    char err[512];
    cr_assert_eq (fks_model_load (s_path ("es.txt"), &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq (strncmp (m.version, "es1-1d-h5-", 10), 0, "%s", m.version);
    free (out);
}

Test (train, closes_only_file_with_a_named_column)
{
    char *out;
    const char *args[] = { "--csv", dai_source ("tools/data/eu_stock_markets.csv"), "--column",
                           "DAX", "--out", s_path ("dax.txt"), "--version", "dax-test", NULL };
    cr_assert_eq (s_train (&out, args), 0, "%s", out);
    cr_assert (strstr (out, "data: 1860 bars of DAX 1d"), "%s", out);
    cr_assert (strstr (out, "model dax-test written to"), "%s", out);
    free (out);
}

//  Rows the data worker would refuse never train a model, and of rows with one time the last
//  is kept (as the worker's upsert keeps it): the trainer says what it dropped, by kind, and
//  the file with them gives exactly the model of the file without them.
Test (train, rows_the_data_worker_refuses_are_dropped_and_counted)
{
    FILE *dirty = fopen (s_path ("dirty.csv"), "w"), *clean = fopen (s_path ("clean.csv"), "w");
    cr_assert (dirty && clean);
    fprintf (dirty, "date,open,high,low,close,volume\n");
    fprintf (clean, "date,open,high,low,close,volume\n");
    //  Refused by the data worker: dated before the good rows, so they leave no hole in them.
    fprintf (dirty, "2023-12-01,10,9,11,10,100\n"          //  high below low
                    "2023-12-02,10,12,9,10,100\n"
                    "2023-12-02,10,9,9.5,10,100\n"         //  high below low, a time seen
                    "2023-12-03,0,11,9,10,100\n"           //  a price <= 0
                    "2023-12-04,10,11,9,,100\n"            //  an empty close
                    "2023-12-05,10,11,9,NaN,100\n"
                    "2023-12-06,10,11,9,10,-1\n"           //  negative volume
                    "2023-12-07,10,11,9,12,100\n"          //  close above high
                    "12/08/2023,10,11,9,10,100\n"          //  a time that does not parse
                    "2099-01-01,10,11,9,10,100\n");        //  in the future
    //  2023-12-02's last row is refused: like the replay feed, nothing of that time is kept.
    for (int i = 0; i < 130; i++) {
        char date[16];
        struct tm tm = { .tm_year = 124, .tm_mon = 0, .tm_mday = 1 + i, .tm_hour = 12 };
        timegm (&tm);
        strftime (date, sizeof date, "%Y-%m-%d", &tm);
        double c = 100 + 10 * sin (i / 3.0) + i * 0.05;
        //  Four times given twice: a stale row first, the one the worker keeps last.
        if (i % 40 == 7)
            fprintf (dirty, "%s,%.4f,%.4f,%.4f,%.4f,%d\n", date, c + 5, c + 6, c + 4, c + 5,
                     500 + i);
        fprintf (dirty, "%s,%.4f,%.4f,%.4f,%.4f,%d\n", date, c, c + 1, c - 1, c, 1000 + i);
        fprintf (clean, "%s,%.4f,%.4f,%.4f,%.4f,%d\n", date, c, c + 1, c - 1, c, 1000 + i);
    }
    fclose (dirty);
    fclose (clean);
    char *out;
    const char *a1[] = { "--csv", s_path ("dirty.csv"), "--out", s_path ("dirty.txt"),
                         "--version", "v", NULL };
    cr_assert_eq (s_train (&out, a1), 0, "%s", out);
    cr_assert (strstr (out, "data: 130 bars of CSV 1d from "), "%s", out);
    const char *want[] = {
        "dropped 1 row: unparsable time (first: line 10: ",
        "dropped 2 rows: a price or volume missing or not a number (first: 2023-12-04)",
        "dropped 1 row: a price <= 0 (first: 2023-12-03)",
        "dropped 1 row: negative volume (first: 2023-12-06)",
        "dropped 2 rows: high below low (first: 2023-12-01)",
        "dropped 1 row: open or close outside [low, high] (first: 2023-12-07)",
        "dropped 1 row: open time ahead of now (first: 2099-01-01)",
        "dropped 5 rows: duplicate time (the last row of that time kept) (first: 2023-12-02",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert (strstr (out, want[i]), "'%s' in:\n%s", want[i], out);
    free (out);
    const char *a2[] = { "--csv", s_path ("clean.csv"), "--out", s_path ("clean.txt"),
                         "--version", "v", NULL };
    cr_assert_eq (s_train (&out, a2), 0, "%s", out);
    cr_assert_null (strstr (out, "dropped"), "%s", out);
    free (out);
    char *x = s_slurp (s_path ("dirty.txt")), *y = s_slurp (s_path ("clean.txt"));
    //  The `trained` line names the file; the rest must be the same.
    cr_assert_str_eq (strstr (x, "features"), strstr (y, "features"));
    free (x);
    free (y);
}

//  --max-bars keeps the newest bars of a file (the bars table's query does the same).
Test (train, max_bars_keeps_the_newest)
{
    char *out;
    const char *args[] = { "--csv", s_ttrc (), "--out", s_path ("m.txt"), "--max-bars", "1000",
                           NULL };
    cr_assert_eq (s_train (&out, args), 0, "%s", out);
    cr_assert (strstr (out, "data: 1000 bars of CSV 1d from "), "%s", out);
    cr_assert (strstr (out, "to 2006-12-29\n"), "the newest bar is kept: %s", out);
    free (out);
    const char *bad[] = { "--csv", s_ttrc (), "--out", s_path ("m.txt"), "--max-bars", "0",
                          NULL };
    cr_assert_eq (s_train (&out, bad), 2);
    cr_assert (strstr (out, "--max-bars: expected 1 to 2000000, got '0'"), "%s", out);
    free (out);
}

Test (train, mistakes_are_explained)
{
    char *out;
    const char *no_out[] = { "--csv", s_ttrc (), NULL };
    cr_assert_eq (s_train (&out, no_out), 2);
    cr_assert (strstr (out, "--out MODEL is required"), "%s", out);
    cr_assert (strstr (out, "usage: fks-train"), "%s", out);
    free (out);
    const char *missing[] = { "--csv", "/nonexistent.csv", "--out", s_path ("m.txt"), NULL };
    cr_assert_eq (s_train (&out, missing), 1);
    cr_assert (strstr (out, "/nonexistent.csv: No such file"), "%s", out);
    free (out);
    const char *horizon[] = { "--csv", s_ttrc (), "--out", s_path ("m.txt"), "--horizon", "0",
                              NULL };
    cr_assert_eq (s_train (&out, horizon), 2);
    cr_assert (strstr (out, "--horizon: expected 1 to 1000 bars, got '0'"), "%s", out);
    free (out);
    const char *db[] = { "--db", "--symbol", "TTRC", "--out", s_path ("m.txt"), NULL };
    cr_assert_eq (s_train (&out, db), 1);
    cr_assert (strstr (out, "FKS_PG_URL is required with --db"), "%s", out);
    free (out);
    //  Sixty bars cannot train and test a model.
    FILE *f = fopen (s_path ("short.csv"), "w");
    fprintf (f, "date,close\n");
    for (int i = 0; i < 60; i++)
        fprintf (f, "2024-01-%02d,%d\n", 1 + i % 28, 100 + i);
    fclose (f);
    const char *few[] = { "--csv", s_path ("short.csv"), "--out", s_path ("m.txt"), NULL };
    cr_assert_eq (s_train (&out, few), 1);
    cr_assert (strstr (out, "not enough to train and test"), "%s", out);
    free (out);
    cr_assert_eq (access (s_path ("m.txt"), F_OK), -1, "no model file after a failure");
}
