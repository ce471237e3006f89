/*  fit.h - fitting and judging the AI model, for the trainer (tools/train.c).
 *
 *  A data set is one row per bar t that has FKS_FEATURES_MIN_BARS bars up to it and `horizon`
 *  bars after it: the features of bars [0..t] (featureset.h, exactly as the ai worker computes
 *  them) and the label 1 when the close `horizon` bars later is higher than the close at t,
 *  else 0. Rows are in time order.
 *
 *  The fit is a logistic regression on standardised features (each feature's mean and
 *  standard deviation over the training rows), by Newton's method with an L2 penalty on the
 *  weights (not on the bias): deterministic, and for a dozen features it converges in a few
 *  iterations. Evaluation reports accuracy (predicting "up" when p >= 0.5), the accuracy of
 *  always predicting the training set's majority class (the baseline a model has to beat),
 *  and the log loss.
 *
 *  Pure code: thread-safe.
 */
#ifndef FKS_AI_FIT_H
#define FKS_AI_FIT_H

#include <stddef.h>
#include "workers/ai/model.h"

typedef struct {
    double *x;              /* rows x FKS_FEATURES_N, row-major */
    int *y;                 /* 0 or 1 */
    size_t rows;
    size_t first_bar;       /* the bar index of row 0 */
} fks_dataset_t;

typedef struct {
    double l2;              /* penalty on the standardised weights; default 1 */
    int max_iter;           /* Newton steps; default 50 */
    double tol;             /* stop when no parameter moves more; default 1e-9 */
} fks_fit_opts_t;

typedef struct {
    size_t rows;
    double accuracy;        /* share of rows predicted right */
    double baseline;        /* share predicted right by always saying `majority` */
    int majority;           /* the training majority class used for the baseline */
    double log_loss;
    double up_share;        /* share of label 1 */
} fks_eval_t;

/*  Builds the data set from n closes and volumes (oldest first; volume may be NULL). Rows
 *  whose features cannot be computed (a bad close in the window) are left out. Returns 0
 *  (possibly with 0 rows), or -1 when horizon < 1 or memory runs out. */
int fks_dataset_build (const double *close, const double *volume, size_t n, int horizon,
                       fks_dataset_t *out);
void fks_dataset_free (fks_dataset_t *ds);

void fks_fit_opts_defaults (fks_fit_opts_t *opts);

/*  Fits rows [from, to) of ds into model: sets n (all features), index, mean, scale, weight
 *  and bias; leaves version, interval, horizon and trained to the caller. Returns 0, or -1
 *  with err when there are fewer than 2 * (FKS_FEATURES_N + 1) rows, only one class, or the
 *  fit diverges. */
int fks_fit_logistic (const fks_dataset_t *ds, size_t from, size_t to,
                      const fks_fit_opts_t *opts, fks_model_t *model, char *err, size_t cap);

/*  Evaluates model on rows [from, to) of ds; majority is the class the baseline predicts. */
void fks_evaluate (const fks_model_t *model, const fks_dataset_t *ds, size_t from, size_t to,
                   int majority, fks_eval_t *out);

#endif
