/*  scorer.h - the AI worker's decision: a signal's score, and whether it goes on to execution.
 *
 *  With a model and enough bars, the model gives p, the probability that the price rises
 *  over its horizon; for a sell the chance that the signal is right is 1 - p. When the alert
 *  carried a confidence c, the score blends the two with the configured weight w:
 *
 *      score = (1 - w) * p_side + w * c          (score = p_side without a confidence)
 *
 *  The signal passes (signal.scored) when score >= threshold, else it is filtered
 *  (signal.filtered, reason "below_threshold"). Reduce-only signals (closes and exits) always
 *  pass unless cfg.filter_exits: holding back an exit would leave a position open, which is the
 *  opposite of caution. Their score is still computed and reported.
 *
 *  Fallback, when there is no model, fewer bars than the features need, or a feature the
 *  model uses or the model's probability is not a finite number (a model far outside what it
 *  was fitted on; NaN must never become a score), counted by the caller under the returned
 *  fallback reason, "no_model", "not_enough_bars" or "score_not_finite":
 *    alert   (default) the alert's confidence stands in for the score and meets the threshold
 *            like one; an alert without a confidence passes, scored at the threshold;
 *    pass    the signal passes, scored at the threshold;
 *    filter  the signal is filtered with the fallback reason.
 *  So a signal.scored always has score >= threshold, except a reduce-only one, whose reason
 *  says so. Every score and model_p returned is a finite number in [0, 1]; an alert
 *  confidence that is not one counts as absent.
 *
 *  Pure function: thread-safe.
 */
#ifndef FKS_AI_SCORER_H
#define FKS_AI_SCORER_H

#include <stdbool.h>
#include <stddef.h>
#include "workers/ai/model.h"

#define FKS_SCORER_REASON_MAX 384

typedef enum {
    FKS_FALLBACK_ALERT = 0,
    FKS_FALLBACK_PASS,
    FKS_FALLBACK_FILTER
} fks_fallback_t;

typedef struct {
    double threshold;           /* 0..1 */
    double alert_weight;        /* 0..1: the weight of the alert's confidence */
    fks_fallback_t fallback;
    bool filter_exits;          /* hold reduce-only signals to the threshold too */
} fks_scorer_cfg_t;

typedef struct {
    bool buy;                   /* side: buy (true) or sell */
    bool has_confidence;
    double confidence;          /* the alert's, 0..1 */
    bool reduce_only;
} fks_scorer_signal_t;

typedef struct {
    bool pass;
    double score;
    bool has_score;             /* false only when a fallback filtered it */
    bool has_model_p;
    double model_p;             /* the model's probability for the signal's side */
    const char *filtered_by;    /* NULL when passing; "below_threshold", "no_model",
                                   "not_enough_bars", "score_not_finite" */
    const char *fallback;       /* NULL, or "no_model" / "not_enough_bars" /
                                   "score_not_finite" */
    char reason[FKS_SCORER_REASON_MAX];     /* for people */
} fks_scorer_result_t;

/*  Parses "alert", "pass" or "filter". 0 or -1. */
int fks_fallback_parse (const char *text, fks_fallback_t *out);
const char *fks_fallback_name (fks_fallback_t fallback);

/*  Decides for sig. model is NULL when none is loaded; features is NULL when there were not
 *  enough bars (bars_have of bars_need, for the reason). out is filled completely. */
void fks_scorer_decide (const fks_scorer_cfg_t *cfg, const fks_model_t *model,
                        const double *features, size_t bars_have, size_t bars_need,
                        const fks_scorer_signal_t *sig, fks_scorer_result_t *out);

#endif
