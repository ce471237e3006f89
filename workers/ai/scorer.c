/*  scorer.c - the AI worker's decision: a signal's score, and whether it goes on to execution.
 *
 *  See scorer.h for the rules. Everything a person needs to understand a decision goes into
 *  the reason text: the model's probability, the alert's confidence, the blend and the
 *  threshold, or which fallback applied and why.
 */
#include "workers/ai/scorer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int
fks_fallback_parse (const char *text, fks_fallback_t *out)
{
    if (!text)
        return -1;
    if (strcmp (text, "alert") == 0)
        *out = FKS_FALLBACK_ALERT;
    else if (strcmp (text, "pass") == 0)
        *out = FKS_FALLBACK_PASS;
    else if (strcmp (text, "filter") == 0)
        *out = FKS_FALLBACK_FILTER;
    else
        return -1;
    return 0;
}

const char *
fks_fallback_name (fks_fallback_t fallback)
{
    switch (fallback) {
        case FKS_FALLBACK_ALERT:  return "alert";
        case FKS_FALLBACK_PASS:   return "pass";
        case FKS_FALLBACK_FILTER: return "filter";
    }
    return "?";
}

static void
s_fallback (const fks_scorer_cfg_t *cfg, const char *why, const char *what,
            const fks_scorer_signal_t *sig, fks_scorer_result_t *out)
{
    out->fallback = why;
    switch (cfg->fallback) {
        case FKS_FALLBACK_FILTER:
            if (sig->reduce_only && !cfg->filter_exits) {
                out->pass = true;
                out->has_score = true;
                out->score = sig->has_confidence ? sig->confidence : cfg->threshold;
                snprintf (out->reason, sizeof out->reason, "%s; reduce-only signal passes "
                          "(an exit is never held back)", what);
                return;
            }
            out->pass = false;
            out->filtered_by = why;
            snprintf (out->reason, sizeof out->reason, "%s; fallback 'filter'", what);
            return;
        case FKS_FALLBACK_PASS:
            out->pass = true;
            out->has_score = true;
            out->score = cfg->threshold;
            snprintf (out->reason, sizeof out->reason, "%s; fallback 'pass': scored at the "
                      "threshold %.4g", what, cfg->threshold);
            return;
        case FKS_FALLBACK_ALERT:
            out->has_score = true;
            if (!sig->has_confidence) {
                out->pass = true;
                out->score = cfg->threshold;
                snprintf (out->reason, sizeof out->reason, "%s; fallback 'alert': the alert "
                          "carried no confidence, scored at the threshold %.4g", what,
                          cfg->threshold);
                return;
            }
            out->score = sig->confidence;
            out->pass = out->score >= cfg->threshold;
            if (!out->pass && sig->reduce_only && !cfg->filter_exits) {
                out->pass = true;
                snprintf (out->reason, sizeof out->reason, "%s; fallback 'alert': confidence "
                          "%.4g < threshold %.4g, but a reduce-only signal passes", what,
                          out->score, cfg->threshold);
                return;
            }
            if (!out->pass)
                out->filtered_by = "below_threshold";
            snprintf (out->reason, sizeof out->reason, "%s; fallback 'alert': the alert's "
                      "confidence %.4g %s threshold %.4g", what, out->score,
                      out->pass ? ">=" : "<", cfg->threshold);
            return;
    }
}

void
fks_scorer_decide (const fks_scorer_cfg_t *cfg, const fks_model_t *model,
                   const double *features, size_t bars_have, size_t bars_need,
                   const fks_scorer_signal_t *given, fks_scorer_result_t *out)
{
    memset (out, 0, sizeof *out);
    //  A confidence that is not a number in [0, 1] would carry NaN into the score and from
    //  there into the signal's JSON: it counts as no confidence.
    fks_scorer_signal_t copy = *given;
    if (copy.has_confidence && !(copy.confidence >= 0 && copy.confidence <= 1))
        copy.has_confidence = false;
    const fks_scorer_signal_t *sig = &copy;
    char what[256];
    if (!model) {
        snprintf (what, sizeof what, "no model loaded");
        s_fallback (cfg, "no_model", what, sig, out);
        return;
    }
    if (!features) {
        snprintf (what, sizeof what, "not enough bars for the features: %zu of %zu",
                  bars_have, bars_need);
        s_fallback (cfg, "not_enough_bars", what, sig, out);
        return;
    }
    //  Bars the data worker let through can still give an infinite return, and a model that
    //  parses can still overflow its sum (a huge mean): NaN is no score, so the fallback
    //  decides, and an exit still passes.
    for (size_t i = 0; i < model->n; i++) {
        double x = features[model->index[i]];
        if (!isfinite (x)) {
            snprintf (what, sizeof what, "model %s: score not finite (feature %s is %g)",
                      model->version, fks_feature_names[model->index[i]], x);
            s_fallback (cfg, "score_not_finite", what, sig, out);
            return;
        }
    }
    double p_up = fks_model_predict (model, features);
    if (!isfinite (p_up)) {
        snprintf (what, sizeof what, "model %s: score not finite (its sum overflows on these "
                  "features)", model->version);
        s_fallback (cfg, "score_not_finite", what, sig, out);
        return;
    }
    double p = sig->buy ? p_up : 1 - p_up;
    out->has_model_p = true;
    out->model_p = p;
    out->has_score = true;
    double w = cfg->alert_weight;
    out->score = sig->has_confidence ? (1 - w) * p + w * sig->confidence : p;
    //  Rounding must never put a score outside [0, 1].
    out->score = out->score < 0 ? 0 : out->score > 1 ? 1 : out->score;
    bool meets = out->score >= cfg->threshold;
    char blend[64] = "";
    if (sig->has_confidence)
        snprintf (blend, sizeof blend, ", alert confidence %.4g (weight %.4g)", sig->confidence,
                  w);
    snprintf (what, sizeof what, "model %s: P(%s within %d bars) %.4g%s", model->version,
              sig->buy ? "up" : "down", model->horizon, p, blend);
    if (!meets && sig->reduce_only && !cfg->filter_exits) {
        out->pass = true;
        snprintf (out->reason, sizeof out->reason, "%s: score %.4g < threshold %.4g, but a "
                  "reduce-only signal passes (an exit is never held back)", what, out->score,
                  cfg->threshold);
        return;
    }
    out->pass = meets;
    if (!meets)
        out->filtered_by = "below_threshold";
    snprintf (out->reason, sizeof out->reason, "%s: score %.4g %s threshold %.4g", what,
              out->score, meets ? ">=" : "<", cfg->threshold);
}
