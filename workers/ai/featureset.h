/*  featureset.h - the numbers the AI worker's model looks at, computed from recent bars.
 *
 *  The ai worker and the trainer (tools/train.c) both compute features here, from the same
 *  bars in the same way, so a model sees in production exactly what it was fitted on. The
 *  input is the closes and volumes of one symbol at one interval, oldest first, the last one
 *  being the most recent bar; at least FKS_FEATURES_MIN_BARS of them. With c the closes,
 *  v the volumes and n their count (c[n-1] the newest):
 *
 *    ret_1, ret_5, ret_10, ret_20   c[n-1] / c[n-1-k] - 1, returns over k bars
 *    vol_20      sample standard deviation of the 20 newest log returns ln(c[i]/c[i-1])
 *    rsi_14      Cutler's RSI over the 14 newest changes, scaled to 0..1: with G and L the
 *                means of the gains and of the losses (as positive numbers), 1 - 1/(1 + G/L);
 *                1 when L is 0 and G is not, 0.5 when both are 0
 *    sma_10, sma_20, sma_50   c[n-1] / (mean of the k newest closes) - 1
 *    volume_chg  v[n-1] / (mean of the 20 volumes before it) - 1, clamped to [-1, 10];
 *                0 when that mean is 0 (a closes-only source has no volume)
 *
 *  The alert itself enters through the ai worker (workers/ai/scorer.h): the model estimates
 *  the probability that the price rises over its horizon, the signal's side turns that into
 *  the probability that it moves the signal's way, and the alert's confidence is blended in.
 *
 *  Pure functions: thread-safe.
 */
#ifndef FKS_AI_FEATURESET_H
#define FKS_AI_FEATURESET_H

#include <stddef.h>

#define FKS_FEATURES_N        10
#define FKS_FEATURES_MIN_BARS 50
#define FKS_FEATURE_NAME_MAX  32

/*  The feature names, in the order of the vector computed below. */
extern const char *const fks_feature_names[FKS_FEATURES_N];

/*  The index of a feature by name, or -1. */
int fks_feature_index (const char *name);

/*  Computes the feature vector from n closes and volumes (oldest first). volume may be NULL
 *  (no volumes: volume_chg is 0). Returns 0, or -1 when n < FKS_FEATURES_MIN_BARS or a close
 *  among the bars used is not a finite positive number (out is then untouched). */
int fks_features_compute (const double *close, const double *volume, size_t n,
                          double out[FKS_FEATURES_N]);

#endif
