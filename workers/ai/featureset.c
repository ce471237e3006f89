/*  featureset.c - the numbers the AI worker's model looks at, computed from recent bars.
 *
 *  See featureset.h for the definitions; each one is a few lines below, written to be checked
 *  against a hand computation (tests/data_ai/test_features.c does exactly that). Only the
 *  newest FKS_FEATURES_MIN_BARS bars are read, so older history never changes a feature.
 */
#include "workers/ai/featureset.h"

#include <math.h>
#include <string.h>

const char *const fks_feature_names[FKS_FEATURES_N] = {
    "ret_1", "ret_5", "ret_10", "ret_20", "vol_20", "rsi_14",
    "sma_10", "sma_20", "sma_50", "volume_chg",
};

int
fks_feature_index (const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < FKS_FEATURES_N; i++)
        if (strcmp (fks_feature_names[i], name) == 0)
            return i;
    return -1;
}

static double
s_ret (const double *c, size_t n, size_t k)
{
    return c[n - 1] / c[n - 1 - k] - 1;
}

static double
s_sma_dist (const double *c, size_t n, size_t k)
{
    double sum = 0;
    for (size_t i = n - k; i < n; i++)
        sum += c[i];
    return c[n - 1] / (sum / (double) k) - 1;
}

static double
s_vol (const double *c, size_t n, size_t k)
{
    double r[64], mean = 0;
    for (size_t i = 0; i < k; i++) {
        r[i] = log (c[n - k + i] / c[n - k + i - 1]);
        mean += r[i];
    }
    mean /= (double) k;
    double ss = 0;
    for (size_t i = 0; i < k; i++)
        ss += (r[i] - mean) * (r[i] - mean);
    return sqrt (ss / (double) (k - 1));
}

static double
s_rsi (const double *c, size_t n, size_t k)
{
    double gain = 0, loss = 0;
    for (size_t i = n - k; i < n; i++) {
        double d = c[i] - c[i - 1];
        if (d > 0)
            gain += d;
        else
            loss -= d;
    }
    gain /= (double) k;
    loss /= (double) k;
    if (loss == 0)
        return gain == 0 ? 0.5 : 1.0;
    return 1.0 - 1.0 / (1.0 + gain / loss);
}

static double
s_volume_chg (const double *v, size_t n, size_t k)
{
    if (!v)
        return 0;
    double sum = 0;
    for (size_t i = n - 1 - k; i < n - 1; i++)
        sum += isfinite (v[i]) && v[i] > 0 ? v[i] : 0;
    double mean = sum / (double) k;
    double last = isfinite (v[n - 1]) && v[n - 1] > 0 ? v[n - 1] : 0;
    if (!(mean > 0))
        return 0;
    double chg = last / mean - 1;
    return chg > 10 ? 10 : chg;
}

int
fks_features_compute (const double *close, const double *volume, size_t n,
                      double out[FKS_FEATURES_N])
{
    if (!close || n < FKS_FEATURES_MIN_BARS)
        return -1;
    //  Only the newest FKS_FEATURES_MIN_BARS bars matter.
    const double *c = close + (n - FKS_FEATURES_MIN_BARS);
    const double *v = volume ? volume + (n - FKS_FEATURES_MIN_BARS) : NULL;
    size_t m = FKS_FEATURES_MIN_BARS;
    for (size_t i = 0; i < m; i++)
        if (!isfinite (c[i]) || c[i] <= 0)
            return -1;
    double f[FKS_FEATURES_N] = {
        s_ret (c, m, 1), s_ret (c, m, 5), s_ret (c, m, 10), s_ret (c, m, 20),
        s_vol (c, m, 20), s_rsi (c, m, 14),
        s_sma_dist (c, m, 10), s_sma_dist (c, m, 20), s_sma_dist (c, m, 50),
        s_volume_chg (v, m, 20),
    };
    memcpy (out, f, sizeof f);
    return 0;
}
