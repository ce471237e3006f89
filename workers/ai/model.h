/*  model.h - the AI worker's model: a logistic regression over the features, read from a file.
 *
 *  The model file is small, line-oriented text that people can read and diff; the trainer
 *  (tools/train.c) writes it and the ai worker reads it at start and whenever it changes:
 *
 *      fks-model 1
 *      kind logistic
 *      version ttrc-1d-h5-9c1f03ab
 *      interval 1d
 *      horizon 5
 *      trained tools/data/ttrc_ohlcv.csv rows=3795 test_rows=1632 test_accuracy=0.5331
 *      features ret_1 ret_5 ret_10 ret_20 vol_20 rsi_14 sma_10 sma_20 sma_50 volume_chg
 *      mean  <one number per feature>
 *      scale <one number per feature, >= FKS_MODEL_SCALE_MIN>
 *      weights <one number per feature>
 *      bias <number>
 *      end
 *
 *  The probability that the price is higher `horizon` bars later is
 *      p = 1 / (1 + exp(-(bias + sum_i weights[i] * (x[i] - mean[i]) / scale[i])))
 *  with x the features named on the `features` line (workers/ai/featureset.h), any subset in
 *  any order. `version` (1-63 of [A-Za-z0-9._-]) is what signal.scored reports; `interval`
 *  says which bars the features must come from.
 *
 *  Parsing is strict, because a half-written or damaged file must never be scored with: the
 *  first line must be `fks-model 1`, each key appears once, every number parses whole and is
 *  finite, counts match the feature list, unknown features or keys are refused, and the file
 *  must end with `end` (a truncated copy is refused). Lines starting with # are comments. At
 *  most FKS_MODEL_FILE_MAX bytes. Errors name the line and what was wrong. A scale must be at
 *  least FKS_MODEL_SCALE_MIN, the trainer's own floor (workers/ai/fit.c): a smaller one turns
 *  an everyday feature value into an overflowing term, and the score into NaN. Weights and the
 *  bias are at most 1e6 in size.
 *
 *  Pure code apart from reading the file; a fks_model_t is plain data (copy it freely).
 */
#ifndef FKS_AI_MODEL_H
#define FKS_AI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include "workers/ai/featureset.h"

#define FKS_MODEL_FORMAT       1
#define FKS_MODEL_FILE_MAX     (64 * 1024)
#define FKS_MODEL_VERSION_MAX  64
#define FKS_MODEL_INTERVAL_MAX 8
#define FKS_MODEL_TRAINED_MAX  256
#define FKS_MODEL_SCALE_MIN    1e-12    /* the fit gives a feature with less spread scale 1 */

typedef struct {
    char version[FKS_MODEL_VERSION_MAX];
    char interval[FKS_MODEL_INTERVAL_MAX];
    int horizon;                            /* bars ahead the label looked */
    char trained[FKS_MODEL_TRAINED_MAX];    /* how it was trained, for people ("" if absent) */
    size_t n;                               /* features used, 1..FKS_FEATURES_N */
    int index[FKS_FEATURES_N];              /* feature i of the model = features[index[i]] */
    double mean[FKS_FEATURES_N];
    double scale[FKS_FEATURES_N];
    double weight[FKS_FEATURES_N];
    double bias;
} fks_model_t;

/*  Parses a model from len bytes of text. Returns 0, or -1 with "line N: ..." in err (cap
 *  bytes); out is then untouched. */
int fks_model_parse (const char *text, size_t len, fks_model_t *out, char *err, size_t cap);

/*  Reads and parses the file at path (a regular file of at most FKS_MODEL_FILE_MAX bytes).
 *  Returns 0, or -1 with "<path>: ..." in err; out is then untouched. */
int fks_model_load (const char *path, fks_model_t *out, char *err, size_t cap);

/*  Writes model as model-file text into buf (cap bytes, NUL-terminated); numbers are written
 *  so that they read back exactly. Returns the length, or -1 when it did not fit or the model
 *  is not valid (it would not parse back). */
int fks_model_format (const fks_model_t *model, char *buf, size_t cap);

/*  The model's probability (0..1) for a full feature vector (featureset.h order). NaN when
 *  the features or the model's sum are not finite (e.g. a feature far from a huge mean): the
 *  caller must check (the scorer falls back, workers/ai/scorer.h). */
double fks_model_predict (const fks_model_t *model, const double features[FKS_FEATURES_N]);

/*  True when text is a valid version string. */
bool fks_model_version_valid (const char *text);

#endif
