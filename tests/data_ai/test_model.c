/*  test_model.c - the model file (workers/ai/model.c) and its reloading store
 *  (workers/ai/modelstore.c): valid files load, damaged ones are refused with a clear reason,
 *  and a refused reload keeps the previous model in use.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workers/ai/modelstore.h"

static const char s_good[] =
    "# a comment\n"
    "fks-model 1\n"
    "kind logistic\n"
    "version test-v1\n"
    "interval 1d\n"
    "horizon 5\n"
    "trained by hand\n"
    "features ret_1 rsi_14\n"
    "mean 0.01 0.5\n"
    "scale 0.02 0.25\n"
    "weights 2 -1\n"
    "bias 0.5\n"
    "end\n";

static int
s_parse (const char *text, fks_model_t *m, char *err, size_t cap)
{
    return fks_model_parse (text, strlen (text), m, err, cap);
}

//  s_good with `from` replaced by `to`; the result must be refused with `needle` in the error.
static void
s_refused (const char *from, const char *to, const char *needle)
{
    char text[2048];
    const char *at = strstr (s_good, from);
    cr_assert (at, "'%s' is in the good file", from);
    snprintf (text, sizeof text, "%.*s%s%s", (int) (at - s_good), s_good, to,
              at + strlen (from));
    fks_model_t m;
    memset (&m, 0xab, sizeof m);
    fks_model_t before = m;
    char err[256] = "";
    cr_assert_eq (s_parse (text, &m, err, sizeof err), -1, "refused: %s", needle);
    cr_assert (strstr (err, needle), "'%s' in '%s'", needle, err);
    cr_assert_eq (memcmp (&m, &before, sizeof m), 0, "the model is untouched");
}

Test (model, valid_file_loads)
{
    fks_model_t m;
    char err[256];
    cr_assert_eq (s_parse (s_good, &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq (m.version, "test-v1");
    cr_assert_str_eq (m.interval, "1d");
    cr_assert_eq (m.horizon, 5);
    cr_assert_str_eq (m.trained, "by hand");
    cr_assert_eq (m.n, 2);
    cr_assert_eq (m.index[0], fks_feature_index ("ret_1"));
    cr_assert_eq (m.index[1], fks_feature_index ("rsi_14"));
    cr_assert_float_eq (m.scale[1], 0.25, 1e-15);
    cr_assert_float_eq (m.bias, 0.5, 1e-15);
}

//  z = 0.5 + 2 (0.03 - 0.01)/0.02 - 1 (0.75 - 0.5)/0.25 = 0.5 + 2 - 1 = 1.5
Test (model, prediction_by_hand)
{
    fks_model_t m;
    char err[256];
    cr_assert_eq (s_parse (s_good, &m, err, sizeof err), 0, "%s", err);
    double f[FKS_FEATURES_N] = { 0 };
    f[fks_feature_index ("ret_1")] = 0.03;
    f[fks_feature_index ("rsi_14")] = 0.75;
    f[fks_feature_index ("sma_50")] = 1e9;           //  not a model feature: ignored
    cr_assert_float_eq (fks_model_predict (&m, f), 1 / (1 + exp (-1.5)), 1e-15);
    //  Far out in either direction the probability saturates without overflow.
    f[fks_feature_index ("ret_1")] = 1e6;
    cr_assert_float_eq (fks_model_predict (&m, f), 1.0, 1e-12);
    f[fks_feature_index ("ret_1")] = -1e6;
    cr_assert_float_eq (fks_model_predict (&m, f), 0.0, 1e-12);
}

Test (model, written_model_reads_back_exactly)
{
    fks_model_t m, back;
    char err[256], text[4096];
    cr_assert_eq (s_parse (s_good, &m, err, sizeof err), 0, "%s", err);
    m.weight[0] = 0.1 + 0.2;                          //  a value with no short decimal form
    m.mean[1] = -1.0 / 3.0;
    int len = fks_model_format (&m, text, sizeof text);
    cr_assert_gt (len, 0);
    cr_assert_eq (fks_model_parse (text, (size_t) len, &back, err, sizeof err), 0, "%s", err);
    cr_assert_eq (back.weight[0], m.weight[0]);
    cr_assert_eq (back.mean[1], m.mean[1]);
    cr_assert_str_eq (back.version, m.version);
    cr_assert_str_eq (back.trained, m.trained);
    cr_assert_eq (fks_model_format (&m, text, 40), -1, "too small a buffer");
    m.scale[0] = 0;
    cr_assert_eq (fks_model_format (&m, text, sizeof text), -1, "an invalid model is not "
                  "written");
}

Test (model, truncated_file_is_refused)
{
    s_refused ("end\n", "", "truncated: no 'end' line");
    s_refused ("bias 0.5\nend\n", "bias 0.", "truncated");
}

Test (model, damaged_numbers_are_refused_with_the_line)
{
    s_refused ("scale 0.02 0.25", "scale 0.02 x0.25", "line 10: scale: 'x0.25' is not a "
               "finite number");
    s_refused ("mean 0.01 0.5", "mean 0.01 nan", "line 9: mean: 'nan' is not a finite number");
    s_refused ("weights 2 -1", "weights 2", "line 11: weights: expected 2 numbers (one per "
               "feature), got 1");
    s_refused ("weights 2 -1", "weights 2 -1 3", "expected 2 numbers");
    s_refused ("scale 0.02 0.25", "scale 0.02 0", "scale of rsi_14 must be greater than 0");
    s_refused ("bias 0.5", "bias 1e400", "bias must be one finite number");
    s_refused ("weights 2 -1", "weights 2 -1e9", "weight of rsi_14 is out of range");
}

//  A scale below the trainer's floor makes an ordinary feature value overflow the score into
//  NaN (the audit's model: scales 1e-307, weights 1e6 and -1e6); such a file is refused, and
//  so are weights and biases that are not finite numbers.
Test (model, tiny_scales_and_non_finite_numbers_are_refused)
{
    s_refused ("scale 0.02 0.25", "scale 1e-307 1e-307", "line 10: scale of ret_1 is 1e-307, "
               "below 1e-12 (the smallest the trainer writes)");
    s_refused ("scale 0.02 0.25", "scale 0.02 9e-13", "scale of rsi_14 is 9e-13, below 1e-12");
    s_refused ("scale 0.02 0.25", "scale 0.02 inf", "scale: 'inf' is not a finite number");
    s_refused ("scale 0.02 0.25", "scale 0.02 1e999", "scale: '1e999' is not a finite number");
    s_refused ("weights 2 -1", "weights nan -1", "weights: 'nan' is not a finite number");
    s_refused ("weights 2 -1", "weights 2 -inf", "weights: '-inf' is not a finite number");
    s_refused ("bias 0.5", "bias nan", "bias must be one finite number");
    s_refused ("bias 0.5", "bias -infinity", "bias must be one finite number");
    const char *audit = "fks-model 1\nkind logistic\nversion nan-v1\ninterval 1d\nhorizon 5\n"
                        "features ret_1 ret_5\nmean 0 0\nscale 1e-307 1e-307\n"
                        "weights 1000000 -1000000\nbias 0\nend\n";
    fks_model_t m;
    char err[256] = "";
    cr_assert_eq (s_parse (audit, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "below 1e-12"), "%s", err);

    //  The floor itself is a scale the trainer can write: it loads, and is written back.
    char text[2048];
    const char *at = strstr (s_good, "scale 0.02 0.25");
    snprintf (text, sizeof text, "%.*sscale 0.02 1e-12%s", (int) (at - s_good), s_good,
              at + strlen ("scale 0.02 0.25"));
    cr_assert_eq (s_parse (text, &m, err, sizeof err), 0, "%s", err);
    char back[2048];
    cr_assert_gt (fks_model_format (&m, back, sizeof back), 0);
    m.scale[1] = 9e-13;
    cr_assert_eq (fks_model_format (&m, back, sizeof back), -1, "never written: it would not "
                  "read back");
    m.scale[1] = 1;
    m.weight[0] = 2e6;
    cr_assert_eq (fks_model_format (&m, back, sizeof back), -1, "a weight out of range neither");
}

Test (model, wrong_header_kind_or_format_is_refused)
{
    s_refused ("fks-model 1", "fks-model 2", "model format '2' not supported");
    s_refused ("fks-model 1", "{\"weights\": [1]}", "not an FKS model file");
    s_refused ("kind logistic", "kind gbt", "kind 'gbt' not supported");
}

Test (model, unknown_or_repeated_keys_and_features_are_refused)
{
    s_refused ("bias 0.5\n", "bias 0.5\nlearning_rate 3\n", "unknown key 'learning_rate'");
    s_refused ("bias 0.5\n", "bias 0.5\nbias 0.6\n", "'bias' given twice");
    s_refused ("features ret_1 rsi_14", "features ret_1 moon_phase", "unknown feature "
               "'moon_phase'");
    s_refused ("features ret_1 rsi_14", "features ret_1 ret_1", "feature 'ret_1' listed twice");
    s_refused ("end\n", "end\nbias 3\n", "text after 'end'");
    s_refused ("bias 0.5\n", "", "'bias' is missing");
    s_refused ("version test-v1", "version has space", "version must be");
    s_refused ("interval 1d", "interval daily", "interval 'daily' is not an interval");
    s_refused ("horizon 5", "horizon 0", "horizon must be a whole number");
}

Test (model, vector_before_features_is_refused)
{
    const char text[] = "fks-model 1\nkind logistic\nmean 1\nfeatures ret_1\nend\n";
    fks_model_t m;
    char err[256];
    cr_assert_eq (s_parse (text, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "line 3: mean comes before the features line"), "%s", err);
}

Test (model, binary_or_oversized_input_is_refused)
{
    fks_model_t m;
    char err[256];
    cr_assert_eq (fks_model_parse ("fks-model 1\0end", 15, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "NUL byte"), "%s", err);
    cr_assert_eq (fks_model_parse (s_good, FKS_MODEL_FILE_MAX + 1, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "larger than the limit"), "%s", err);
    cr_assert_eq (fks_model_parse ("", 0, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "empty"), "%s", err);
}

//  --------------------------------------------------------------------------
//  Files and the store

static char s_dir[64];

static void
s_setup (void)
{
    strcpy (s_dir, "/tmp/fks-model-XXXXXX");
    cr_assert (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_assert_eq (system (cmd), 0);
}

//  Writes text to dir/name through a temporary file and a rename, as the trainer does.
static void
s_put (const char *name, const char *text)
{
    char tmp[128], path[128];
    snprintf (tmp, sizeof tmp, "%s/.tmp", s_dir);
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen (tmp, "w");
    cr_assert (f);
    fputs (text, f);
    fclose (f);
    cr_assert_eq (rename (tmp, path), 0);
}

static void
s_version (char *text, size_t cap, const char *version)
{
    const char *at = strstr (s_good, "test-v1");
    snprintf (text, cap, "%.*s%s%s", (int) (at - s_good), s_good, version, at + 7);
}

Test (model_file, missing_file_names_the_path, .init = s_setup, .fini = s_teardown)
{
    fks_model_t m;
    char err[256], path[128];
    snprintf (path, sizeof path, "%s/none.txt", s_dir);
    cr_assert_eq (fks_model_load (path, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "none.txt: No such file or directory"), "%s", err);
    cr_assert_eq (fks_model_load (s_dir, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "not a regular file"), "%s", err);
}

Test (model_file, corrupt_file_is_refused_with_path_and_line, .init = s_setup,
      .fini = s_teardown)
{
    s_put ("m.txt", "fks-model 1\nkind logistic\nversion v\ninterval 1d\nhorizon 5\n"
                    "features ret_1\nmean 0\nscale 1\nweights \x01\x02\nbias 0\nend\n");
    fks_model_t m;
    char err[256], path[128];
    snprintf (path, sizeof path, "%s/m.txt", s_dir);
    cr_assert_eq (fks_model_load (path, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "m.txt: line 9: weights"), "%s", err);
}

Test (model_file, oversized_file_is_refused, .init = s_setup, .fini = s_teardown)
{
    char *big = malloc (FKS_MODEL_FILE_MAX + 100);
    cr_assert (big);
    memset (big, '#', FKS_MODEL_FILE_MAX + 99);
    big[FKS_MODEL_FILE_MAX + 99] = '\0';
    s_put ("big.txt", big);
    free (big);
    fks_model_t m;
    char err[256], path[128];
    snprintf (path, sizeof path, "%s/big.txt", s_dir);
    cr_assert_eq (fks_model_load (path, &m, err, sizeof err), -1);
    cr_assert (strstr (err, "larger than the limit"), "%s", err);
}

Test (model_store, corrupt_replacement_keeps_the_previous_model, .init = s_setup,
      .fini = s_teardown)
{
    char path[128], err[512], old[FKS_MODEL_VERSION_MAX], text[2048];
    snprintf (path, sizeof path, "%s/model.txt", s_dir);
    s_put ("model.txt", s_good);
    fks_model_store_t *store = fks_model_store_new (path, 0);
    cr_assert (store);
    fks_model_t m;
    cr_assert_not (fks_model_store_get (store, &m), "nothing before the first load");
    cr_assert_eq (fks_model_store_load (store, err, sizeof err), 0, "%s", err);
    cr_assert (fks_model_store_get (store, &m));
    cr_assert_str_eq (m.version, "test-v1");
    cr_assert_eq (fks_model_store_refresh (store, 1, old, err, sizeof err), 0, "unchanged");

    //  A half-written file replaces it: refused, and v1 stays in use.
    s_version (text, sizeof text, "test-v2");
    text[strlen (text) - 6] = '\0';                 //  cut "\nend\n" and a digit
    s_put ("model.txt", text);
    cr_assert_eq (fks_model_store_refresh (store, 2, old, err, sizeof err), -1);
    cr_assert (strstr (err, "truncated"), "%s", err);
    cr_assert (strstr (err, "keeping model test-v1"), "%s", err);
    cr_assert (fks_model_store_get (store, &m));
    cr_assert_str_eq (m.version, "test-v1");
    cr_assert_eq (fks_model_store_refresh (store, 3, old, err, sizeof err), 0,
                  "a refusal is reported once per file");

    //  A good v2 replaces v1.
    s_version (text, sizeof text, "test-v2");
    s_put ("model.txt", text);
    cr_assert_eq (fks_model_store_refresh (store, 4, old, err, sizeof err), 1);
    cr_assert_str_eq (old, "test-v1");
    cr_assert (fks_model_store_get (store, &m));
    cr_assert_str_eq (m.version, "test-v2");

    //  The file disappears: reported once, v2 stays.
    char p2[128];
    snprintf (p2, sizeof p2, "%s/model.txt", s_dir);
    cr_assert_eq (unlink (p2), 0);
    cr_assert_eq (fks_model_store_refresh (store, 5, old, err, sizeof err), -1);
    cr_assert (strstr (err, "No such file"), "%s", err);
    cr_assert_eq (fks_model_store_refresh (store, 6, old, err, sizeof err), 0);
    cr_assert (fks_model_store_get (store, &m));
    cr_assert_str_eq (m.version, "test-v2");
    fks_model_store_destroy (&store);
    cr_assert_null (store);
    fks_model_store_destroy (&store);
}

Test (model_store, looks_at_the_file_at_most_once_per_interval, .init = s_setup,
      .fini = s_teardown)
{
    char path[128], err[512], old[FKS_MODEL_VERSION_MAX], text[2048];
    snprintf (path, sizeof path, "%s/model.txt", s_dir);
    s_put ("model.txt", s_good);
    fks_model_store_t *store = fks_model_store_new (path, 1000);
    cr_assert_eq (fks_model_store_load (store, err, sizeof err), 0, "%s", err);
    cr_assert_eq (fks_model_store_refresh (store, 10000, old, err, sizeof err), 0);
    s_version (text, sizeof text, "test-v3");
    s_put ("model.txt", text);
    cr_assert_eq (fks_model_store_refresh (store, 10500, old, err, sizeof err), 0,
                  "too soon to look");
    cr_assert_eq (fks_model_store_refresh (store, 11000, old, err, sizeof err), 1);
    fks_model_t m;
    cr_assert (fks_model_store_get (store, &m));
    cr_assert_str_eq (m.version, "test-v3");
    fks_model_store_destroy (&store);
}

Test (model_store, first_load_of_a_corrupt_file_leaves_no_model, .init = s_setup,
      .fini = s_teardown)
{
    char path[128], err[512];
    snprintf (path, sizeof path, "%s/model.txt", s_dir);
    s_put ("model.txt", "garbage\n");
    fks_model_store_t *store = fks_model_store_new (path, 0);
    cr_assert_eq (fks_model_store_load (store, err, sizeof err), -1);
    cr_assert (strstr (err, "model.txt: line 1: not an FKS model file"), "%s", err);
    fks_model_t m;
    cr_assert_not (fks_model_store_get (store, &m));
    fks_model_store_destroy (&store);
}

Test (model_file, shipped_model_loads, .init = s_setup, .fini = s_teardown)
{
    const char *dir = getenv ("FKS_TOOLS_DATA");
    cr_assert (dir);
    char path[512], err[512];
    snprintf (path, sizeof path, "%s/model.txt", dir);
    fks_model_t m;
    cr_assert_eq (fks_model_load (path, &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq (m.interval, "1d");
    cr_assert_eq (m.n, FKS_FEATURES_N);
    cr_assert (strstr (m.trained, "test_accuracy="), "%s", m.trained);
}
