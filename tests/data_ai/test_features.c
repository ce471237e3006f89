/*  test_features.c - the model's inputs (workers/ai/featureset.c) against hand computations.
 *
 *  The series are chosen so that every value can be worked out on paper; the expected values
 *  below are those computations, not the code's output.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "workers/ai/featureset.h"

enum { RET_1, RET_5, RET_10, RET_20, VOL_20, RSI_14, SMA_10, SMA_20, SMA_50, VOLUME_CHG };

Test (features, names_are_in_vector_order)
{
    cr_assert_str_eq (fks_feature_names[RET_1], "ret_1");
    cr_assert_str_eq (fks_feature_names[VOL_20], "vol_20");
    cr_assert_str_eq (fks_feature_names[RSI_14], "rsi_14");
    cr_assert_str_eq (fks_feature_names[SMA_50], "sma_50");
    cr_assert_str_eq (fks_feature_names[VOLUME_CHG], "volume_chg");
    cr_assert_eq (fks_feature_index ("sma_20"), SMA_20);
    cr_assert_eq (fks_feature_index ("SMA_20"), -1);
    cr_assert_eq (fks_feature_index (NULL), -1);
}

//  Closes alternating 100, 110, 100, ... (50 bars, the newest 110); volumes 1000, the newest
//  2500. By hand:
//    ret_1  = 110/100 - 1 = 0.1      ret_5 = 110/c[44]=100 -> 0.1
//    ret_10 = 110/c[39]=110 - 1 = 0  ret_20 = 110/c[29]=110 - 1 = 0
//    vol_20: ten returns +ln 1.1 and ten -ln 1.1, mean 0, so sqrt(20 ln^2 1.1 / 19)
//    rsi_14: seven rises of 10 and seven falls of 10: G = L = 5, RSI = 1 - 1/2 = 0.5
//    every moving average is 105, so sma_k = 110/105 - 1
//    volume_chg = 2500/1000 - 1 = 1.5
Test (features, alternating_series)
{
    double c[50], v[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++) {
        c[i] = i % 2 ? 110 : 100;
        v[i] = 1000;
    }
    v[49] = 2500;
    cr_assert_eq (fks_features_compute (c, v, 50, f), 0);
    cr_assert_float_eq (f[RET_1], 0.1, 1e-12);
    cr_assert_float_eq (f[RET_5], 0.1, 1e-12);
    cr_assert_float_eq (f[RET_10], 0.0, 1e-12);
    cr_assert_float_eq (f[RET_20], 0.0, 1e-12);
    cr_assert_float_eq (f[VOL_20], log (1.1) * sqrt (20.0 / 19.0), 1e-12);
    cr_assert_float_eq (f[RSI_14], 0.5, 1e-12);
    cr_assert_float_eq (f[SMA_10], 110.0 / 105.0 - 1, 1e-12);
    cr_assert_float_eq (f[SMA_20], 110.0 / 105.0 - 1, 1e-12);
    cr_assert_float_eq (f[SMA_50], 110.0 / 105.0 - 1, 1e-12);
    cr_assert_float_eq (f[VOLUME_CHG], 1.5, 1e-12);
}

//  Closes 100, 101, ..., 149. By hand:
//    ret_k = 149/(149-k) - 1; rsi_14 = 1 (no losses)
//    sma_10 = 149/144.5 - 1 (mean of 140..149), sma_20 = 149/139.5 - 1, sma_50 = 149/124.5 - 1
//    vol_20: the sample deviation of ln((100+i)/(99+i)) for i = 30..49
Test (features, rising_series)
{
    double c[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++)
        c[i] = 100 + i;
    cr_assert_eq (fks_features_compute (c, NULL, 50, f), 0);
    cr_assert_float_eq (f[RET_1], 149.0 / 148.0 - 1, 1e-12);
    cr_assert_float_eq (f[RET_5], 149.0 / 144.0 - 1, 1e-12);
    cr_assert_float_eq (f[RET_10], 149.0 / 139.0 - 1, 1e-12);
    cr_assert_float_eq (f[RET_20], 149.0 / 129.0 - 1, 1e-12);
    cr_assert_float_eq (f[RSI_14], 1.0, 1e-12);
    cr_assert_float_eq (f[SMA_10], 149.0 / 144.5 - 1, 1e-12);
    cr_assert_float_eq (f[SMA_20], 149.0 / 139.5 - 1, 1e-12);
    cr_assert_float_eq (f[SMA_50], 149.0 / 124.5 - 1, 1e-12);
    cr_assert_float_eq (f[VOLUME_CHG], 0.0, 1e-12, "no volumes: 0");
    double r[20], mean = 0, ss = 0;
    for (int i = 0; i < 20; i++) {
        r[i] = log ((130.0 + i) / (129.0 + i));
        mean += r[i] / 20;
    }
    for (int i = 0; i < 20; i++)
        ss += (r[i] - mean) * (r[i] - mean);
    cr_assert_float_eq (f[VOL_20], sqrt (ss / 19), 1e-15);
}

Test (features, falling_series_has_rsi_zero)
{
    double c[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++)
        c[i] = 200 - i;
    cr_assert_eq (fks_features_compute (c, NULL, 50, f), 0);
    cr_assert_float_eq (f[RSI_14], 0.0, 1e-12);
}

Test (features, flat_series)
{
    double c[50], v[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++) {
        c[i] = 42;
        v[i] = 0;
    }
    cr_assert_eq (fks_features_compute (c, v, 50, f), 0);
    for (int k = 0; k < FKS_FEATURES_N; k++)
        if (k != RSI_14)
            cr_assert_float_eq (f[k], 0.0, 1e-15, "%s", fks_feature_names[k]);
    cr_assert_float_eq (f[RSI_14], 0.5, 1e-12, "no change at all: neutral");
}

Test (features, only_the_newest_fifty_bars_count)
{
    double c[80], v[80], a[FKS_FEATURES_N], b[FKS_FEATURES_N];
    for (int i = 0; i < 80; i++) {
        c[i] = 50 + (i * 7) % 13;
        v[i] = 100 + i;
    }
    cr_assert_eq (fks_features_compute (c + 30, v + 30, 50, a), 0);
    c[0] = 0;               //  a bad close long before the window changes nothing
    v[5] = -1;
    cr_assert_eq (fks_features_compute (c, v, 80, b), 0);
    cr_assert_eq (memcmp (a, b, sizeof a), 0);
}

Test (features, volume_change_is_clamped)
{
    double c[50], v[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++) {
        c[i] = 100;
        v[i] = 10;
    }
    v[49] = 1e9;
    cr_assert_eq (fks_features_compute (c, v, 50, f), 0);
    cr_assert_float_eq (f[VOLUME_CHG], 10.0, 1e-12);
    v[49] = 0;
    cr_assert_eq (fks_features_compute (c, v, 50, f), 0);
    cr_assert_float_eq (f[VOLUME_CHG], -1.0, 1e-12);
}

Test (features, too_few_bars_or_a_bad_close_gives_no_features)
{
    double c[50], f[FKS_FEATURES_N];
    for (int i = 0; i < 50; i++)
        c[i] = 100 + i;
    memset (f, 0x7f, sizeof f);
    double before = f[0];
    cr_assert_eq (fks_features_compute (c, NULL, 49, f), -1);
    cr_assert_eq (f[0], before, "out untouched");
    c[30] = 0;
    cr_assert_eq (fks_features_compute (c, NULL, 50, f), -1);
    c[30] = NAN;
    cr_assert_eq (fks_features_compute (c, NULL, 50, f), -1);
    cr_assert_eq (fks_features_compute (NULL, NULL, 50, f), -1);
}
