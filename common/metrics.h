/*  metrics.h - Prometheus counters, gauges and histograms with labels.
 *
 *  A process has one registry (fks_metrics_default) or tests make their own. A family is
 *  registered once by name, with its help text, type and label names; a child is the series
 *  for one tuple of label values, created on first use and never freed until the registry is.
 *  Children are plain pointers that stay valid for the registry's life, so hot paths look them
 *  up once and then update them lock-free (C11 atomics). Rendering takes the registry lock and
 *  writes the text exposition format (version 0.0.4) that `promtool check metrics` accepts:
 *  HELP and TYPE lines, escaped label values, histogram _bucket{le=...}/_sum/_count.
 *
 *  Every function is thread-safe. Names and label names must be valid Prometheus identifiers
 *  (checked at registration: invalid ones return NULL). Label values are cut to
 *  FKS_METRICS_MAX_VALUE_LEN bytes, invalid UTF-8 bytes in them become U+FFFD, and they are
 *  escaped on output. A family may have at most FKS_METRICS_MAX_LABELS labels and
 *  FKS_METRICS_MAX_CHILDREN series; past that, lookups return a shared overflow series whose
 *  label values are all "_overflow", so outside input can never grow memory without bound.
 *
 *  NULL is harmless where a family or series is expected (lookups give NULL, updates do
 *  nothing), so a failed registration costs its metric, never the process.
 */
#ifndef FKS_METRICS_H
#define FKS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define FKS_METRICS_MAX_LABELS   8
#define FKS_METRICS_MAX_CHILDREN 1024
#define FKS_METRICS_MAX_BUCKETS  32
#define FKS_METRICS_MAX_VALUE_LEN 256       /* bytes of a label value kept */

typedef struct fks_metrics_t fks_metrics_t;          /* a registry */
typedef struct fks_metric_family_t fks_metric_family_t;
typedef struct fks_metric_t fks_metric_t;            /* one series */

typedef enum { FKS_COUNTER, FKS_GAUGE, FKS_HISTOGRAM } fks_metric_type_t;

/*  A new, empty registry, or NULL when memory runs out. Destroying it frees every family and
 *  series of it: no other thread may still use them. Destroying NULL is a no-op. */
fks_metrics_t *fks_metrics_new (void);
void fks_metrics_destroy (fks_metrics_t **self_p);

/*  The process-wide registry, created on first call. Never destroyed. */
fks_metrics_t *fks_metrics_default (void);

/*  Registers a family, or returns the existing one when name, type and labels match (NULL if
 *  they differ). label_names is an array of n_labels strings (may be NULL when 0). For a
 *  histogram, buckets are n_buckets strictly increasing upper bounds (+Inf is implicit); NULL
 *  uses fks_metrics_latency_buckets. Strings are copied. Also NULL (logged) for an invalid
 *  name, label name ("__" prefix, or "le" on a histogram) or bucket list, and for a name whose
 *  series would clash with another family's (a histogram "x" writes x_bucket, x_sum, x_count).
 *  A family without labels renders its one series from the start (value 0); a family with
 *  labels renders nothing until its first series exists. Families render in registration
 *  order, series in creation order. */
fks_metric_family_t *fks_metrics_family (fks_metrics_t *self, const char *name, const char *help,
                                         fks_metric_type_t type, const char *const *label_names,
                                         size_t n_labels, const double *buckets, size_t n_buckets);

/*  Shorthands for fks_metrics_family on the default registry. */
fks_metric_family_t *fks_counter_family (const char *name, const char *help,
                                         const char *const *labels, size_t n_labels);
fks_metric_family_t *fks_gauge_family (const char *name, const char *help,
                                       const char *const *labels, size_t n_labels);
fks_metric_family_t *fks_histogram_family (const char *name, const char *help,
                                           const char *const *labels, size_t n_labels,
                                           const double *buckets, size_t n_buckets);

/*  The series for these label values (array of the family's n_labels strings; NULL when the
 *  family has none). Values are copied; a NULL value counts as "". Takes the registry lock:
 *  hot paths call it once and keep the pointer, valid until the registry is destroyed. NULL
 *  only when family is NULL or memory runs out. */
fks_metric_t *fks_metric_get (fks_metric_family_t *family, const char *const *label_values);

/*  Convenience: the series of a family with one label, or none (value NULL). NULL (logged)
 *  for a family with more than one label. */
fks_metric_t *fks_metric_get1 (fks_metric_family_t *family, const char *value);

/*  Updates, lock-free and allocation-free. inc/add work on counters and gauges; on a counter
 *  they ignore negative, NaN and infinite amounts. set works on gauges; observe works on
 *  histograms and ignores NaN (an observation v goes to the first bucket with v <= bound).
 *  A call of the wrong kind for the family's type, or on NULL, is a no-op. */
void fks_metric_inc (fks_metric_t *m);
void fks_metric_add (fks_metric_t *m, double v);
void fks_metric_set (fks_metric_t *m, double v);
void fks_metric_observe (fks_metric_t *m, double v);
double fks_metric_value (fks_metric_t *m);      /* counter/gauge value, histogram count */

/*  Renders the registry in Prometheus text format. Returns a malloc'd NUL-terminated string
 *  (caller frees) and its length in *len_out (may be NULL), or NULL on allocation failure.
 *  Values use the shortest text that reads back exactly, and NaN, +Inf, -Inf. */
char *fks_metrics_render (fks_metrics_t *self, size_t *len_out);

/*  Default latency buckets in seconds: 0.0001 .. 10. */
extern const double fks_metrics_latency_buckets[];
extern const size_t fks_metrics_latency_buckets_n;

#endif
