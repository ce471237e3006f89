/*  test_metrics.c - the Prometheus registry as a scraper sees it: the exact text of each type,
 *  escaping and repair of label values, the bound on series, exact totals when many threads
 *  update at once, and `promtool check metrics` accepting a registry with everything in it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/metrics.h"

static char *
s_render (fks_metrics_t *r)
{
    size_t len = 0;
    char *text = fks_metrics_render (r, &len);
    cr_assert_not_null (text);
    cr_assert_eq (len, strlen (text));
    return text;
}

#define S_ASSERT_RENDERS(registry, expected)                                                   \
    do {                                                                                       \
        char *text_ = s_render (registry);                                                     \
        cr_assert_str_eq (text_, expected);                                                    \
        free (text_);                                                                          \
    } while (0)

static size_t
s_count_substr (const char *hay, const char *needle)
{
    size_t n = 0, len = strlen (needle);
    for (const char *p = strstr (hay, needle); p; p = strstr (p + len, needle))
        n++;
    return n;
}

// ---------------------------------------------------------------------------------------------
//  Each type, exactly

Test (metrics, counter_without_labels_renders_help_type_and_value)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *f = fks_metrics_family (r, "fks_jobs_total", "Jobs done.", FKS_COUNTER,
                                                 NULL, 0, NULL, 0);
    cr_assert_not_null (f);
    S_ASSERT_RENDERS (r, "# HELP fks_jobs_total Jobs done.\n"
                         "# TYPE fks_jobs_total counter\n"
                         "fks_jobs_total 0\n");
    fks_metric_t *m = fks_metric_get (f, NULL);
    fks_metric_inc (m);
    fks_metric_inc (m);
    fks_metric_add (m, 2.5);
    cr_assert_eq (fks_metric_value (m), 4.5);
    S_ASSERT_RENDERS (r, "# HELP fks_jobs_total Jobs done.\n"
                         "# TYPE fks_jobs_total counter\n"
                         "fks_jobs_total 4.5\n");
    fks_metrics_destroy (&r);
}

Test (metrics, counter_ignores_negative_nan_and_infinite_amounts)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_t *m = fks_metric_get (
        fks_metrics_family (r, "fks_c_total", "C.", FKS_COUNTER, NULL, 0, NULL, 0), NULL);
    fks_metric_add (m, 3);
    fks_metric_add (m, -1);
    fks_metric_add (m, NAN);
    fks_metric_add (m, INFINITY);
    cr_assert_eq (fks_metric_value (m), 3);
    S_ASSERT_RENDERS (r, "# HELP fks_c_total C.\n# TYPE fks_c_total counter\nfks_c_total 3\n");
    fks_metrics_destroy (&r);
}

Test (metrics, gauge_goes_up_and_down_and_renders_numbers_exactly)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_t *m = fks_metric_get (
        fks_metrics_family (r, "fks_level", "Level.", FKS_GAUGE, NULL, 0, NULL, 0), NULL);
    fks_metric_set (m, 5);
    fks_metric_add (m, -7.25);
    fks_metric_inc (m);
    cr_assert_eq (fks_metric_value (m), -1.25);
    S_ASSERT_RENDERS (r, "# HELP fks_level Level.\n# TYPE fks_level gauge\nfks_level -1.25\n");

    static const struct { double v; const char *text; } cases[] = {
        { 0.1, "0.1" }, { 1e-7, "1e-07" }, { 123456789012.0, "123456789012" },
        { 1.0 / 3.0, "0.3333333333333333" }, { 0.30000000000000004, "0.30000000000000004" },
        { INFINITY, "+Inf" }, { -INFINITY, "-Inf" }, { NAN, "NaN" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fks_metric_set (m, cases[i].v);
        char expected[128];
        snprintf (expected, sizeof expected,
                  "# HELP fks_level Level.\n# TYPE fks_level gauge\nfks_level %s\n",
                  cases[i].text);
        S_ASSERT_RENDERS (r, expected);
    }
    fks_metrics_destroy (&r);
}

Test (metrics, labelled_series_render_in_creation_order)
{
    fks_metrics_t *r = fks_metrics_new ();
    static const char *const labels[] = { "method", "code" };
    fks_metric_family_t *f = fks_metrics_family (r, "fks_http_total", "Requests.", FKS_COUNTER,
                                                 labels, 2, NULL, 0);
    cr_assert_not_null (f);
    S_ASSERT_RENDERS (r, "");           /* no series yet: nothing to say */
    const char *get200[] = { "GET", "200" }, *post500[] = { "POST", "500" };
    fks_metric_t *a = fks_metric_get (f, get200);
    fks_metric_inc (fks_metric_get (f, post500));
    fks_metric_add (fks_metric_get (f, post500), 2);
    fks_metric_inc (a);
    cr_assert_eq (fks_metric_get (f, get200), a, "the same values give the same series");
    S_ASSERT_RENDERS (r, "# HELP fks_http_total Requests.\n"
                         "# TYPE fks_http_total counter\n"
                         "fks_http_total{method=\"GET\",code=\"200\"} 1\n"
                         "fks_http_total{method=\"POST\",code=\"500\"} 3\n");
    fks_metrics_destroy (&r);
}

Test (metrics, label_values_and_help_are_escaped)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *f = fks_metrics_family (r, "fks_e_total", "Line one\nback\\slash \"q\"",
                                                 FKS_COUNTER, (const char *[]) { "v" }, 1,
                                                 NULL, 0);
    fks_metric_inc (fks_metric_get1 (f, "a\\b\"c\nd"));
    fks_metric_inc (fks_metric_get1 (f, NULL));
    S_ASSERT_RENDERS (r, "# HELP fks_e_total Line one\\nback\\\\slash \"q\"\n"
                         "# TYPE fks_e_total counter\n"
                         "fks_e_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                         "fks_e_total{v=\"\"} 1\n");
    fks_metrics_destroy (&r);
}

Test (metrics, histogram_renders_cumulative_buckets_sum_and_count)
{
    fks_metrics_t *r = fks_metrics_new ();
    static const double bounds[] = { 0.125, 0.5, 1 };
    fks_metric_family_t *f = fks_metrics_family (r, "fks_req_seconds", "Request time.",
                                                 FKS_HISTOGRAM, (const char *[]) { "route" }, 1,
                                                 bounds, 3);
    fks_metric_t *m = fks_metric_get1 (f, "/a");
    fks_metric_observe (m, 0.0625);
    fks_metric_observe (m, 0.125);          /* on a bound: counts in that bucket (le) */
    fks_metric_observe (m, 0.25);
    fks_metric_observe (m, 2);
    cr_assert_eq (fks_metric_value (m), 4);
    S_ASSERT_RENDERS (r, "# HELP fks_req_seconds Request time.\n"
                         "# TYPE fks_req_seconds histogram\n"
                         "fks_req_seconds_bucket{route=\"/a\",le=\"0.125\"} 2\n"
                         "fks_req_seconds_bucket{route=\"/a\",le=\"0.5\"} 3\n"
                         "fks_req_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
                         "fks_req_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
                         "fks_req_seconds_sum{route=\"/a\"} 2.4375\n"
                         "fks_req_seconds_count{route=\"/a\"} 4\n");
    fks_metrics_destroy (&r);
}

Test (metrics, histogram_without_buckets_uses_the_latency_buckets)
{
    static const char *const les[] = { "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                       "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                       "1", "2.5", "5", "10" };
    cr_assert_eq (fks_metrics_latency_buckets_n, 16);
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_t *m = fks_metric_get (
        fks_metrics_family (r, "fks_lat_seconds", "Latency.", FKS_HISTOGRAM, NULL, 0, NULL, 0),
        NULL);
    fks_metric_observe (m, 0.00390625);    /* 2^-8: sums exactly */
    fks_metric_observe (m, 60);
    fks_metric_observe (m, NAN);            /* ignored */
    char expected[4096];
    size_t n = (size_t) snprintf (expected, sizeof expected,
                                  "# HELP fks_lat_seconds Latency.\n"
                                  "# TYPE fks_lat_seconds histogram\n");
    for (size_t i = 0; i < 16; i++)
        n += (size_t) snprintf (expected + n, sizeof expected - n,
                                "fks_lat_seconds_bucket{le=\"%s\"} %d\n", les[i], i >= 5);
    snprintf (expected + n, sizeof expected - n,
              "fks_lat_seconds_bucket{le=\"+Inf\"} 2\n"
              "fks_lat_seconds_sum 60.00390625\n"
              "fks_lat_seconds_count 2\n");
    S_ASSERT_RENDERS (r, expected);
    fks_metrics_destroy (&r);
}

Test (metrics, histogram_explicit_inf_bound_is_the_implicit_one)
{
    fks_metrics_t *r = fks_metrics_new ();
    const double bounds[] = { 1, INFINITY };
    fks_metric_t *m = fks_metric_get (
        fks_metrics_family (r, "fks_h", "H.", FKS_HISTOGRAM, NULL, 0, bounds, 2), NULL);
    fks_metric_observe (m, 5);
    S_ASSERT_RENDERS (r, "# HELP fks_h H.\n# TYPE fks_h histogram\n"
                         "fks_h_bucket{le=\"1\"} 0\n"
                         "fks_h_bucket{le=\"+Inf\"} 1\n"
                         "fks_h_sum 5\n"
                         "fks_h_count 1\n");
    fks_metrics_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  Registration

Test (metrics, registering_again_gives_the_same_family_or_null_when_it_differs)
{
    fks_metrics_t *r = fks_metrics_new ();
    const char *l1[] = { "a" }, *l2[] = { "b" }, *l12[] = { "a", "b" };
    const double b1[] = { 1, 2 }, b2[] = { 1, 3 };
    fks_metric_family_t *c = fks_metrics_family (r, "fks_x_total", "X.", FKS_COUNTER, l1, 1,
                                                 NULL, 0);
    cr_assert_not_null (c);
    cr_assert_eq (fks_metrics_family (r, "fks_x_total", "other help", FKS_COUNTER, l1, 1, NULL,
                                      0), c);
    cr_assert_null (fks_metrics_family (r, "fks_x_total", "X.", FKS_GAUGE, l1, 1, NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_x_total", "X.", FKS_COUNTER, l2, 1, NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_x_total", "X.", FKS_COUNTER, l12, 2, NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_x_total", "X.", FKS_COUNTER, NULL, 0, NULL, 0));
    fks_metric_family_t *h = fks_metrics_family (r, "fks_y_seconds", "Y.", FKS_HISTOGRAM, NULL,
                                                 0, b1, 2);
    cr_assert_not_null (h);
    cr_assert_eq (fks_metrics_family (r, "fks_y_seconds", "Y.", FKS_HISTOGRAM, NULL, 0, b1, 2),
                  h);
    cr_assert_null (fks_metrics_family (r, "fks_y_seconds", "Y.", FKS_HISTOGRAM, NULL, 0, b2,
                                        2));
    cr_assert_null (fks_metrics_family (r, "fks_y_seconds", "Y.", FKS_HISTOGRAM, NULL, 0, NULL,
                                        0));
    fks_metrics_destroy (&r);
}

Test (metrics, invalid_names_labels_and_buckets_are_refused)
{
    fks_metrics_t *r = fks_metrics_new ();
    static const char *const bad_names[] = { "", "9lives", "a-b", "a b", "caf\xc3\xa9", NULL };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        cr_assert_null (fks_metrics_family (r, bad_names[i], "h", FKS_COUNTER, NULL, 0, NULL, 0),
                        "name %zu", i);
    cr_assert_not_null (fks_metrics_family (r, "ns:sub_total", "h", FKS_COUNTER, NULL, 0, NULL,
                                            0), "colons are allowed in metric names");
    static const char *const bad_labels[] = { "__reserved", "a:b", "9x", "", "a-b" };
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
        cr_assert_null (fks_metrics_family (r, "fks_l_total", "h", FKS_COUNTER, &bad_labels[i],
                                            1, NULL, 0), "label %zu", i);
    cr_assert_null (fks_metrics_family (r, "fks_l_total", "h", FKS_COUNTER,
                                        (const char *[]) { "a", "a" }, 2, NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_l_total", "h", FKS_COUNTER, NULL, 1, NULL, 0));
    const char *nine[9] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
    cr_assert_null (fks_metrics_family (r, "fks_l_total", "h", FKS_COUNTER, nine, 9, NULL, 0));
    cr_assert_not_null (fks_metrics_family (r, "fks_l8_total", "h", FKS_COUNTER, nine, 8, NULL,
                                            0));
    cr_assert_null (fks_metrics_family (r, "fks_le_seconds", "h", FKS_HISTOGRAM,
                                        (const char *[]) { "le" }, 1, NULL, 0));
    cr_assert_not_null (fks_metrics_family (r, "fks_le_total", "h", FKS_COUNTER,
                                            (const char *[]) { "le" }, 1, NULL, 0),
                        "le is only reserved on histograms");
    const double unordered[] = { 1, 0.5 }, equal[] = { 1, 1 }, with_nan[] = { 1, NAN };
    double too_many[FKS_METRICS_MAX_BUCKETS + 1];
    for (int i = 0; i <= FKS_METRICS_MAX_BUCKETS; i++)
        too_many[i] = i + 1;
    cr_assert_null (fks_metrics_family (r, "fks_b1", "h", FKS_HISTOGRAM, NULL, 0, unordered, 2));
    cr_assert_null (fks_metrics_family (r, "fks_b2", "h", FKS_HISTOGRAM, NULL, 0, equal, 2));
    cr_assert_null (fks_metrics_family (r, "fks_b3", "h", FKS_HISTOGRAM, NULL, 0, with_nan, 2));
    cr_assert_null (fks_metrics_family (r, "fks_b4", "h", FKS_HISTOGRAM, NULL, 0, too_many,
                                        FKS_METRICS_MAX_BUCKETS + 1));
    cr_assert_not_null (fks_metrics_family (r, "fks_b5", "h", FKS_HISTOGRAM, NULL, 0, too_many,
                                            FKS_METRICS_MAX_BUCKETS));
    cr_assert_null (fks_metrics_family (r, "fks_t", "h", (fks_metric_type_t) 7, NULL, 0, NULL,
                                        0));
    fks_metrics_destroy (&r);
}

Test (metrics, names_whose_series_would_clash_are_refused)
{
    fks_metrics_t *r = fks_metrics_new ();
    cr_assert_not_null (fks_metrics_family (r, "fks_q_seconds", "h", FKS_HISTOGRAM, NULL, 0,
                                            NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_q_seconds_count", "h", FKS_COUNTER, NULL, 0,
                                        NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_q_seconds_bucket", "h", FKS_GAUGE, NULL, 0,
                                        NULL, 0));
    cr_assert_not_null (fks_metrics_family (r, "fks_w_sum", "h", FKS_GAUGE, NULL, 0, NULL, 0));
    cr_assert_null (fks_metrics_family (r, "fks_w", "h", FKS_HISTOGRAM, NULL, 0, NULL, 0));
    fks_metrics_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  Misuse is harmless

Test (metrics, updates_of_the_wrong_kind_change_nothing)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_t *c = fks_metric_get (
        fks_metrics_family (r, "fks_k_total", "h", FKS_COUNTER, NULL, 0, NULL, 0), NULL);
    fks_metric_t *g = fks_metric_get (
        fks_metrics_family (r, "fks_k_level", "h", FKS_GAUGE, NULL, 0, NULL, 0), NULL);
    fks_metric_t *h = fks_metric_get (
        fks_metrics_family (r, "fks_k_seconds", "h", FKS_HISTOGRAM, NULL, 0, NULL, 0), NULL);
    fks_metric_set (c, 10);
    fks_metric_observe (c, 10);
    fks_metric_observe (g, 10);
    fks_metric_set (h, 10);
    fks_metric_inc (h);
    fks_metric_add (h, 10);
    cr_assert_eq (fks_metric_value (c), 0);
    cr_assert_eq (fks_metric_value (g), 0);
    cr_assert_eq (fks_metric_value (h), 0);
    char *text = s_render (r);
    cr_assert (strstr (text, "fks_k_total 0\n"));
    cr_assert (strstr (text, "fks_k_level 0\n"));
    cr_assert (strstr (text, "fks_k_seconds_count 0\n"));
    cr_assert (strstr (text, "fks_k_seconds_sum 0\n"));
    free (text);
    fks_metrics_destroy (&r);
}

Test (metrics, null_registry_family_and_series_are_harmless)
{
    cr_assert_null (fks_metrics_family (NULL, "fks_n_total", "h", FKS_COUNTER, NULL, 0, NULL,
                                        0));
    cr_assert_null (fks_metric_get (NULL, NULL));
    cr_assert_null (fks_metric_get1 (NULL, "x"));
    fks_metric_inc (NULL);
    fks_metric_add (NULL, 1);
    fks_metric_set (NULL, 1);
    fks_metric_observe (NULL, 1);
    cr_assert_eq (fks_metric_value (NULL), 0);
    cr_assert_null (fks_metrics_render (NULL, NULL));
    fks_metrics_t *r = NULL;
    fks_metrics_destroy (&r);
    fks_metrics_destroy (NULL);
    r = fks_metrics_new ();
    fks_metrics_destroy (&r);
    cr_assert_null (r, "destroy nulls the caller's pointer");
}

Test (metrics, get1_serves_families_of_one_label_or_none)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *none = fks_metrics_family (r, "fks_g0_total", "h", FKS_COUNTER, NULL, 0,
                                                    NULL, 0);
    fks_metric_family_t *one = fks_metrics_family (r, "fks_g1_total", "h", FKS_COUNTER,
                                                   (const char *[]) { "a" }, 1, NULL, 0);
    fks_metric_family_t *two = fks_metrics_family (r, "fks_g2_total", "h", FKS_COUNTER,
                                                   (const char *[]) { "a", "b" }, 2, NULL, 0);
    cr_assert_eq (fks_metric_get1 (none, NULL), fks_metric_get (none, NULL));
    cr_assert_eq (fks_metric_get1 (one, "x"), fks_metric_get (one, (const char *[]) { "x" }));
    cr_assert_null (fks_metric_get1 (two, "x"));
    fks_metrics_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  Bounds on outside input

Test (metrics, series_past_the_limit_share_the_overflow_series)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *f = fks_metrics_family (r, "fks_sym_total", "h", FKS_COUNTER,
                                                 (const char *[]) { "symbol", "side" }, 2, NULL,
                                                 0);
    enum { EXTRA = 10 };
    fks_metric_t *first = NULL, *overflow = NULL;
    for (int i = 0; i < FKS_METRICS_MAX_CHILDREN + EXTRA; i++) {
        char sym[32];
        snprintf (sym, sizeof sym, "S%d", i);
        fks_metric_t *m = fks_metric_get (f, (const char *[]) { sym, "buy" });
        cr_assert_not_null (m);
        fks_metric_inc (m);
        if (i == 0)
            first = m;
        if (i == FKS_METRICS_MAX_CHILDREN)
            overflow = m;
        if (i > FKS_METRICS_MAX_CHILDREN)
            cr_assert_eq (m, overflow, "series %d shares the overflow series", i);
    }
    cr_assert_eq (fks_metric_get (f, (const char *[]) { "S0", "buy" }), first,
                  "series made before the limit are still found");
    cr_assert_eq (fks_metric_get (f, (const char *[]) { "_overflow", "_overflow" }), overflow);
    cr_assert_eq (fks_metric_value (overflow), EXTRA);
    char *text = s_render (r);
    cr_assert_eq (s_count_substr (text, "fks_sym_total{"), FKS_METRICS_MAX_CHILDREN + 1);
    cr_assert (strstr (text, "fks_sym_total{symbol=\"_overflow\",side=\"_overflow\"} 10\n"));
    cr_assert (strstr (text, "fks_sym_total{symbol=\"S1023\",side=\"buy\"} 1\n"));
    cr_assert_null (strstr (text, "S1024"));
    free (text);
    fks_metrics_destroy (&r);
}

Test (metrics, asking_for_the_overflow_values_never_duplicates_that_series)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *f = fks_metrics_family (r, "fks_o_total", "h", FKS_COUNTER,
                                                 (const char *[]) { "v" }, 1, NULL, 0);
    fks_metric_inc (fks_metric_get1 (f, "_overflow"));
    for (int i = 0; i < FKS_METRICS_MAX_CHILDREN + 1; i++) {
        char v[16];
        snprintf (v, sizeof v, "%d", i);
        fks_metric_inc (fks_metric_get1 (f, v));
    }
    char *text = s_render (r);
    cr_assert_eq (s_count_substr (text, "v=\"_overflow\""), 1);
    cr_assert (strstr (text, "fks_o_total{v=\"_overflow\"} 2\n"), "%s", strstr (text, "_over"));
    cr_assert_eq (s_count_substr (text, "fks_o_total{"), FKS_METRICS_MAX_CHILDREN + 1);
    free (text);
    fks_metrics_destroy (&r);
}

Test (metrics, long_label_values_are_cut_and_invalid_utf8_is_repaired)
{
    fks_metrics_t *r = fks_metrics_new ();
    fks_metric_family_t *f = fks_metrics_family (r, "fks_u_total", "h", FKS_COUNTER,
                                                 (const char *[]) { "v" }, 1, NULL, 0);
    char long_value[1000];
    memset (long_value, 'a', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    fks_metric_inc (fks_metric_get1 (f, long_value));
    char cut_in_char[FKS_METRICS_MAX_VALUE_LEN + 2];
    memset (cut_in_char, 'b', FKS_METRICS_MAX_VALUE_LEN - 1);
    memcpy (cut_in_char + FKS_METRICS_MAX_VALUE_LEN - 1, "\xc3\xa9", 3);  /* é on the limit */
    fks_metric_inc (fks_metric_get1 (f, cut_in_char));
    fks_metric_inc (fks_metric_get1 (f, "caf\xc3\xa9 \xff\xc3(\xed\xa0\x80"));
    fks_metric_inc (fks_metric_get1 (f, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd"
                                        "\xef\xbf\xbd\xef\xbf\xbd"));

    char expected[2048];
    snprintf (expected, sizeof expected,
              "# HELP fks_u_total h\n# TYPE fks_u_total counter\n"
              "fks_u_total{v=\"%.*s\"} 1\n"
              "fks_u_total{v=\"%.*s\"} 1\n"
              "fks_u_total{v=\"caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
              "\xef\xbf\xbd\"} 2\n",
              FKS_METRICS_MAX_VALUE_LEN, long_value, FKS_METRICS_MAX_VALUE_LEN - 1, cut_in_char);
    S_ASSERT_RENDERS (r, expected);
    fks_metrics_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  Concurrency

#define S_THREADS 8
#define S_ROUNDS  100000

typedef struct {
    fks_metric_family_t *labelled;
    fks_metric_t *counter, *gauge, *histogram;
    fks_metric_t *shared_seen[S_THREADS];
} s_shared_t;

typedef struct {
    s_shared_t *shared;
    int index;
} s_worker_t;

static void *
s_worker (void *arg)
{
    s_worker_t *w = arg;
    s_shared_t *s = w->shared;
    char own[16];
    snprintf (own, sizeof own, "t%d", w->index);
    for (int i = 0; i < S_ROUNDS; i++) {
        fks_metric_inc (s->counter);
        fks_metric_add (s->gauge, 1);
        fks_metric_add (s->gauge, -0.5);
        fks_metric_observe (s->histogram, 0.25);
        if (i % 100 == 0) {
            //  Lookups, and series creation, race with updates and with each other.
            fks_metric_t *shared = fks_metric_get1 (s->labelled, "shared");
            if (!s->shared_seen[w->index])
                s->shared_seen[w->index] = shared;
            else if (s->shared_seen[w->index] != shared)
                s->shared_seen[w->index] = NULL;
            fks_metric_inc (shared);
            fks_metric_inc (fks_metric_get1 (s->labelled, own));
        }
    }
    return NULL;
}

static atomic_bool s_done;

static void *
s_renderer (void *arg)
{
    fks_metrics_t *r = arg;
    size_t renders = 0;
    while (!atomic_load (&s_done)) {
        size_t len;
        char *text = fks_metrics_render (r, &len);
        free (text);
        renders++;
    }
    return (void *) (uintptr_t) renders;
}

Test (metrics, many_threads_updating_at_once_give_exact_totals)
{
    fks_metrics_t *r = fks_metrics_new ();
    s_shared_t s = { 0 };
    s.labelled = fks_metrics_family (r, "fks_cc_total", "h", FKS_COUNTER,
                                     (const char *[]) { "who" }, 1, NULL, 0);
    s.counter = fks_metric_get (fks_metrics_family (r, "fks_ca_total", "h", FKS_COUNTER, NULL,
                                                    0, NULL, 0), NULL);
    s.gauge = fks_metric_get (fks_metrics_family (r, "fks_cg", "h", FKS_GAUGE, NULL, 0, NULL, 0),
                              NULL);
    s.histogram = fks_metric_get (fks_metrics_family (r, "fks_ch_seconds", "h", FKS_HISTOGRAM,
                                                      NULL, 0, NULL, 0), NULL);
    pthread_t threads[S_THREADS], renderer;
    s_worker_t workers[S_THREADS];
    atomic_store (&s_done, false);
    cr_assert_eq (pthread_create (&renderer, NULL, s_renderer, r), 0);
    for (int i = 0; i < S_THREADS; i++) {
        workers[i] = (s_worker_t) { &s, i };
        cr_assert_eq (pthread_create (&threads[i], NULL, s_worker, &workers[i]), 0);
    }
    for (int i = 0; i < S_THREADS; i++)
        pthread_join (threads[i], NULL);
    atomic_store (&s_done, true);
    void *renders;
    pthread_join (renderer, &renders);
    cr_assert_gt ((uintptr_t) renders, 0, "rendering ran alongside the updates");

    const double total = (double) S_THREADS * S_ROUNDS;
    cr_assert_eq (fks_metric_value (s.counter), total);
    cr_assert_eq (fks_metric_value (s.gauge), total * 0.5);
    cr_assert_eq (fks_metric_value (s.histogram), total);
    fks_metric_t *shared = fks_metric_get1 (s.labelled, "shared");
    for (int i = 0; i < S_THREADS; i++)
        cr_assert_eq (s.shared_seen[i], shared, "thread %d saw one shared series", i);
    cr_assert_eq (fks_metric_value (shared), total / 100);

    char *text = s_render (r);
    char line[128];
    snprintf (line, sizeof line, "fks_ca_total %.0f\n", total);
    cr_assert (strstr (text, line), "%s", line);
    snprintf (line, sizeof line, "fks_ch_seconds_count %.0f\n", total);
    cr_assert (strstr (text, line), "%s", line);
    snprintf (line, sizeof line, "fks_ch_seconds_bucket{le=\"0.25\"} %.0f\n", total);
    cr_assert (strstr (text, line), "%s", line);
    snprintf (line, sizeof line, "fks_ch_seconds_bucket{le=\"0.1\"} 0\n");
    cr_assert (strstr (text, line), "%s", line);
    snprintf (line, sizeof line, "fks_ch_seconds_sum %.0f\n", total * 0.25);
    cr_assert (strstr (text, line), "%s", line);
    for (int i = 0; i < S_THREADS; i++) {
        snprintf (line, sizeof line, "fks_cc_total{who=\"t%d\"} %d\n", i, S_ROUNDS / 100);
        cr_assert (strstr (text, line), "%s", line);
    }
    cr_assert_eq (s_count_substr (text, "fks_cc_total{"), S_THREADS + 1);
    free (text);
    fks_metrics_destroy (&r);
}

// ---------------------------------------------------------------------------------------------
//  The default registry

Test (metrics, shorthands_register_in_the_default_registry)
{
    fks_metrics_t *d = fks_metrics_default ();
    cr_assert_not_null (d);
    cr_assert_eq (fks_metrics_default (), d);
    fks_metric_family_t *c = fks_counter_family ("fks_default_test_total", "h", NULL, 0);
    cr_assert_not_null (c);
    cr_assert_eq (fks_counter_family ("fks_default_test_total", "h", NULL, 0), c);
    fks_metric_family_t *g = fks_gauge_family ("fks_default_test_level", "h",
                                               (const char *[]) { "k" }, 1);
    fks_metric_family_t *h = fks_histogram_family ("fks_default_test_seconds", "h", NULL, 0,
                                                   NULL, 0);
    cr_assert_not_null (g);
    cr_assert_not_null (h);
    cr_assert_eq (fks_metrics_family (d, "fks_default_test_seconds", "h", FKS_HISTOGRAM, NULL, 0,
                                      fks_metrics_latency_buckets,
                                      fks_metrics_latency_buckets_n), h);
    fks_metric_add (fks_metric_get (c, NULL), 7);
    fks_metric_set (fks_metric_get1 (g, "v"), 2);
    char *text = s_render (d);
    cr_assert (strstr (text, "# TYPE fks_default_test_total counter\nfks_default_test_total 7\n"));
    cr_assert (strstr (text, "fks_default_test_level{k=\"v\"} 2\n"));
    cr_assert (strstr (text, "fks_default_test_seconds_count 0\n"));
    free (text);
}

// ---------------------------------------------------------------------------------------------
//  What Prometheus itself says

#define S_PROMTOOL "/usr/bin/promtool"

Test (metrics, promtool_accepts_every_type_with_awkward_label_values, .timeout = 60)
{
    cr_assert_eq (access (S_PROMTOOL, X_OK), 0,
                  S_PROMTOOL " is needed (Debian package prometheus; tools/test.sh installs it)");
    fks_metrics_t *r = fks_metrics_new ();
    const char *labels[] = { "symbol", "side" };
    fks_metric_family_t *orders = fks_metrics_family (
        r, "fks_orders_total", "Orders placed.\nBy symbol and side \\ with \"quotes\".",
        FKS_COUNTER, labels, 2, NULL, 0);
    static const char *const awkward[] = {
        "BTCUSDT", "", "back\\slash", "quote\"d", "new\nline", "tab\there", "cr\rhere",
        "{braces}", "a,b=c", "# not a comment", "caf\xc3\xa9 \xe2\x82\xac", "bad \xff\xfe utf8",
        "surrogate \xed\xa0\x80", "le=\"1\"", "trailing\\",
    };
    for (size_t i = 0; i < sizeof awkward / sizeof awkward[0]; i++) {
        fks_metric_add (fks_metric_get (orders, (const char *[]) { awkward[i], "buy" }),
                        (double) i + 0.5);
        fks_metric_inc (fks_metric_get (orders, (const char *[]) { "X", awkward[i] }));
    }
    fks_metric_inc (fks_metric_get (fks_metrics_family (r, "fks_starts_total", "Starts.",
                                                        FKS_COUNTER, NULL, 0, NULL, 0), NULL));
    fks_metric_family_t *depth = fks_metrics_family (r, "fks_queue_depth", "Queue depth.",
                                                     FKS_GAUGE, (const char *[]) { "group" }, 1,
                                                     NULL, 0);
    fks_metric_set (fks_metric_get1 (depth, "signal"), 42);
    fks_metric_set (fks_metric_get1 (depth, "ai"), -3.5);
    fks_metric_set (fks_metric_get1 (depth, "nan"), NAN);
    fks_metric_set (fks_metric_get1 (depth, "inf"), INFINITY);
    fks_metric_set (fks_metric_get1 (depth, "tiny"), 1e-300);
    fks_metric_family_t *lat = fks_metrics_family (r, "fks_stage_duration_seconds",
                                                   "Time per stage.", FKS_HISTOGRAM,
                                                   (const char *[]) { "stage" }, 1, NULL, 0);
    for (size_t i = 0; i < sizeof awkward / sizeof awkward[0]; i++)
        for (int k = 0; k < 20; k++)
            fks_metric_observe (fks_metric_get1 (lat, awkward[i]), 0.00005 * (k + 1) * (k + 1));
    const double sizes[] = { 1, 10, 100, 1000 };
    fks_metric_t *size = fks_metric_get (fks_metrics_family (r, "fks_body_bytes", "Body sizes.",
                                                             FKS_HISTOGRAM, NULL, 0, sizes, 4),
                                         NULL);
    fks_metric_observe (size, 0);
    fks_metric_observe (size, 512);
    fks_metric_observe (size, 1e6);
    fks_metric_family_t *many = fks_metrics_family (r, "fks_clients_total", "Clients.",
                                                    FKS_COUNTER, (const char *[]) { "ip" }, 1,
                                                    NULL, 0);
    for (int i = 0; i < FKS_METRICS_MAX_CHILDREN + 5; i++) {
        char ip[32];
        snprintf (ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
        fks_metric_inc (fks_metric_get1 (many, ip));
    }
    fks_metrics_family (r, "fks_unused_total", "Never used.", FKS_COUNTER,
                        (const char *[]) { "x" }, 1, NULL, 0);

    size_t len;
    char *text = fks_metrics_render (r, &len);
    cr_assert_not_null (text);
    char path[] = "/tmp/fks-test-metrics-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, text, len), (ssize_t) len);
    close (fd);
    free (text);

    char cmd[256];
    snprintf (cmd, sizeof cmd, S_PROMTOOL " check metrics < %s 2>&1", path);
    FILE *p = popen (cmd, "r");
    cr_assert_not_null (p);
    char out[8192];
    size_t n = fread (out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose (p);
    unlink (path);
    cr_assert (WIFEXITED (status), "promtool did not exit normally");
    cr_assert_eq (WEXITSTATUS (status), 0, "promtool check metrics exited %d:\n%s",
                  WEXITSTATUS (status), out);
    cr_assert_eq (n, 0, "promtool reported problems:\n%s", out);
    fks_metrics_destroy (&r);
}
