/*  test_scorer.c - the AI worker's decision (workers/ai/scorer.c): score, threshold, the
 *  alert's confidence, exits, and each fallback.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "workers/ai/scorer.h"

//  A one-feature model: p(up) = sigmoid(ret_1 / 0.01). With ret_1 = 0.01 * ln(3), p = 0.75.
static fks_model_t
s_model (void)
{
    fks_model_t m;
    memset (&m, 0, sizeof m);
    strcpy (m.version, "m1");
    strcpy (m.interval, "1d");
    m.horizon = 5;
    m.n = 1;
    m.index[0] = fks_feature_index ("ret_1");
    m.mean[0] = 0;
    m.scale[0] = 0.01;
    m.weight[0] = 1;
    m.bias = 0;
    return m;
}

static double s_f[FKS_FEATURES_N];

static void
s_init (void)
{
    memset (s_f, 0, sizeof s_f);
    s_f[fks_feature_index ("ret_1")] = 0.01 * log (3.0);
}

static fks_scorer_cfg_t
s_cfg (double threshold)
{
    return (fks_scorer_cfg_t) { .threshold = threshold, .alert_weight = 0.5,
                                .fallback = FKS_FALLBACK_ALERT, .filter_exits = false };
}

TestSuite (scorer, .init = s_init);

Test (scorer, buy_above_the_threshold_passes_with_the_model_score)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    fks_scorer_signal_t sig = { .buy = true };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert (r.has_score);
    cr_assert_float_eq (r.score, 0.75, 1e-12);
    cr_assert_float_eq (r.model_p, 0.75, 1e-12);
    cr_assert_null (r.filtered_by);
    cr_assert_null (r.fallback);
    cr_assert (strstr (r.reason, "model m1: P(up within 5 bars) 0.75: score 0.75 >= threshold "
                       "0.6"), "%s", r.reason);
}

Test (scorer, sell_is_scored_on_the_chance_of_a_fall)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    fks_scorer_signal_t sig = { .buy = false };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert_not (r.pass);
    cr_assert_float_eq (r.score, 0.25, 1e-12);
    cr_assert_str_eq (r.filtered_by, "below_threshold");
    cr_assert (strstr (r.reason, "P(down within 5 bars) 0.25: score 0.25 < threshold 0.6"),
               "%s", r.reason);
}

Test (scorer, alert_confidence_is_blended_with_its_weight)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.5);
    cfg.alert_weight = 0.25;
    fks_scorer_signal_t sig = { .buy = false, .has_confidence = true, .confidence = 0.95 };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    //  0.75 * 0.25 + 0.25 * 0.95 = 0.425
    cr_assert_float_eq (r.score, 0.425, 1e-12);
    cr_assert_not (r.pass);
    cr_assert (strstr (r.reason, "alert confidence 0.95 (weight 0.25)"), "%s", r.reason);
    cfg.alert_weight = 1;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert_float_eq (r.score, 0.95, 1e-12, "weight 1: the alert alone");
    cr_assert (r.pass);
}

Test (scorer, score_equal_to_the_threshold_passes)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.75);
    fks_scorer_signal_t sig = { .buy = true };
    fks_scorer_result_t r;
    s_f[fks_feature_index ("ret_1")] = 0.01 * log (3.0);
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cfg.threshold = r.score;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
}

Test (scorer, exit_below_the_threshold_still_passes)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.9);
    fks_scorer_signal_t sig = { .buy = true, .reduce_only = true };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.75, 1e-12, "the score is still reported");
    cr_assert (strstr (r.reason, "reduce-only signal passes"), "%s", r.reason);
    cfg.filter_exits = true;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert_not (r.pass);
    cr_assert_str_eq (r.filtered_by, "below_threshold");
}

Test (scorer, not_enough_bars_falls_back_to_the_alert_confidence)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    fks_scorer_signal_t sig = { .buy = true, .has_confidence = true, .confidence = 0.7 };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, NULL, 12, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.7, 1e-12);
    cr_assert_str_eq (r.fallback, "not_enough_bars");
    cr_assert_not (r.has_model_p);
    cr_assert (strstr (r.reason, "not enough bars for the features: 12 of 50; fallback "
                       "'alert': the alert's confidence 0.7 >= threshold 0.6"), "%s", r.reason);
    sig.confidence = 0.3;
    fks_scorer_decide (&cfg, &m, NULL, 12, 50, &sig, &r);
    cr_assert_not (r.pass);
    cr_assert_str_eq (r.filtered_by, "below_threshold");
    cr_assert_str_eq (r.fallback, "not_enough_bars");
}

Test (scorer, alert_fallback_without_confidence_passes_at_the_threshold)
{
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    fks_scorer_signal_t sig = { .buy = true };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, NULL, NULL, 0, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.6, 1e-12);
    cr_assert_str_eq (r.fallback, "no_model");
    cr_assert (strstr (r.reason, "no model loaded"), "%s", r.reason);
}

Test (scorer, pass_fallback_scores_at_the_threshold)
{
    fks_scorer_cfg_t cfg = s_cfg (0.55);
    cfg.fallback = FKS_FALLBACK_PASS;
    fks_scorer_signal_t sig = { .buy = false, .has_confidence = true, .confidence = 0.1 };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, NULL, NULL, 0, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.55, 1e-12);
    cr_assert (strstr (r.reason, "fallback 'pass'"), "%s", r.reason);
}

Test (scorer, filter_fallback_filters_with_the_reason)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.5);
    cfg.fallback = FKS_FALLBACK_FILTER;
    fks_scorer_signal_t sig = { .buy = true, .has_confidence = true, .confidence = 0.99 };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, NULL, 3, 50, &sig, &r);
    cr_assert_not (r.pass);
    cr_assert_not (r.has_score);
    cr_assert_str_eq (r.filtered_by, "not_enough_bars");
    cr_assert (strstr (r.reason, "3 of 50; fallback 'filter'"), "%s", r.reason);
    sig.reduce_only = true;
    fks_scorer_decide (&cfg, &m, NULL, 3, 50, &sig, &r);
    cr_assert (r.pass, "an exit is never held back, not even by the filter fallback");
}

Test (scorer, fallback_names)
{
    fks_fallback_t f;
    cr_assert_eq (fks_fallback_parse ("filter", &f), 0);
    cr_assert_eq (f, FKS_FALLBACK_FILTER);
    cr_assert_eq (fks_fallback_parse ("FILTER", &f), -1);
    cr_assert_eq (fks_fallback_parse (NULL, &f), -1);
    cr_assert_str_eq (fks_fallback_name (FKS_FALLBACK_ALERT), "alert");
    cr_assert_str_eq (fks_fallback_name (FKS_FALLBACK_PASS), "pass");
}

//  A model that parses, yet overflows on ordinary features: mean 1e308 and -1e308 make the two
//  terms -inf and +inf, their sum NaN.
static fks_model_t
s_nan_model (void)
{
    fks_model_t m = s_model ();
    strcpy (m.version, "nan1");
    m.n = 2;
    m.index[1] = fks_feature_index ("ret_5");
    m.mean[0] = 1e308;
    m.mean[1] = -1e308;
    m.scale[0] = m.scale[1] = 0.001;
    m.weight[1] = 1;
    return m;
}

//  No score is ever NaN: the fallback decides, with its own reason, and an exit still passes.
Test (scorer, score_that_is_not_finite_takes_the_fallback)
{
    fks_model_t m = s_nan_model ();
    cr_assert (isnan (fks_model_predict (&m, s_f)), "the model does give NaN");
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    cfg.fallback = FKS_FALLBACK_FILTER;
    fks_scorer_signal_t sig = { .buy = true };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert_not (r.pass);
    cr_assert_not (r.has_score);
    cr_assert_not (r.has_model_p);
    cr_assert_str_eq (r.filtered_by, "score_not_finite");
    cr_assert_str_eq (r.fallback, "score_not_finite");
    cr_assert (strstr (r.reason, "model nan1: score not finite") && strstr (r.reason,
               "fallback 'filter'"), "%s", r.reason);

    sig = (fks_scorer_signal_t) { .buy = false, .reduce_only = true };
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass, "an exit is never held back: %s", r.reason);
    cr_assert (r.has_score && isfinite (r.score));
    cr_assert_float_eq (r.score, 0.6, 1e-12);
    cr_assert (strstr (r.reason, "score not finite") && strstr (r.reason, "reduce-only"),
               "%s", r.reason);

    cfg.fallback = FKS_FALLBACK_ALERT;
    sig = (fks_scorer_signal_t) { .buy = true, .has_confidence = true, .confidence = 0.7 };
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.7, 1e-12, "the alert's confidence stands in");
    cr_assert_str_eq (r.fallback, "score_not_finite");
    sig.reduce_only = true;
    sig.confidence = 0.2;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.2, 1e-12);
}

//  A feature that is not finite (a return over a bar of 1e-300) is no input, even where the
//  model's sigmoid would have made a number of it.
Test (scorer, feature_that_is_not_finite_takes_the_fallback)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    cfg.fallback = FKS_FALLBACK_PASS;
    fks_scorer_signal_t sig = { .buy = true };
    fks_scorer_result_t r;
    double vals[2] = { INFINITY, NAN };
    for (int i = 0; i < 2; i++) {
        s_f[fks_feature_index ("ret_1")] = vals[i];
        fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
        cr_assert (r.pass);
        cr_assert_float_eq (r.score, 0.6, 1e-12, "scored at the threshold, not at %g", r.score);
        cr_assert_str_eq (r.fallback, "score_not_finite");
        cr_assert (strstr (r.reason, "score not finite (feature ret_1 is"), "%s", r.reason);
        cr_assert (strstr (r.reason, "fallback 'pass'"), "%s", r.reason);
    }
    //  A feature the model does not use changes nothing.
    s_init ();
    s_f[fks_feature_index ("sma_50")] = NAN;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert_null (r.fallback);
    cr_assert_float_eq (r.score, 0.75, 1e-12);
}

Test (scorer, confidence_that_is_not_a_number_counts_as_absent)
{
    fks_model_t m = s_model ();
    fks_scorer_cfg_t cfg = s_cfg (0.6);
    fks_scorer_signal_t sig = { .buy = true, .has_confidence = true, .confidence = NAN };
    fks_scorer_result_t r;
    fks_scorer_decide (&cfg, &m, s_f, 50, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.75, 1e-12, "the model's alone");
    fks_scorer_decide (&cfg, NULL, NULL, 0, 50, &sig, &r);
    cr_assert (r.pass);
    cr_assert_float_eq (r.score, 0.6, 1e-12, "no confidence: scored at the threshold");
}
