/*  metrics.c - the Prometheus registry: counters, gauges and histograms with labels.
 *
 *  A registry holds families in registration order; a family holds its series ("children") in
 *  creation order, indexed by an open-addressing hash of their label values. Creating a family
 *  or a child, and rendering, take the registry's mutex; updating a child never does: a value
 *  is a double kept as its 64 bits in a C11 atomic and changed with compare-and-swap, and a
 *  histogram keeps one atomic count per bucket. So the hot path is a few atomic operations,
 *  with no lock and no allocation, on a pointer the caller looked up once.
 *
 *  Everything that reaches the exposition text is made safe where it enters: names are checked
 *  against the Prometheus grammar at registration, label values are cut to
 *  FKS_METRICS_MAX_VALUE_LEN bytes and repaired to valid UTF-8 (invalid bytes become U+FFFD,
 *  which Prometheus requires), then escaped on output. A family never holds more than
 *  FKS_METRICS_MAX_CHILDREN series plus one shared "_overflow" series, so label values that come
 *  from outside input cannot grow memory without bound.
 *
 *  A histogram's _count is rendered as the sum of its buckets, read once, so _count always
 *  equals the +Inf bucket even while other threads observe; _sum may run a few observations
 *  ahead or behind, as in every Prometheus client.
 */
#include "common/metrics.h"
#include "common/log.h"
#include "common/sbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NAME_MAX    200               /* bytes of a metric or label name */
#define S_NUM_MAX     40                /* a rendered double, with room to spare */
#define S_OVERFLOW    "_overflow"

const double fks_metrics_latency_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
const size_t fks_metrics_latency_buckets_n =
    sizeof fks_metrics_latency_buckets / sizeof fks_metrics_latency_buckets[0];

struct fks_metric_t {
    fks_metric_family_t *family;
    char **values;                      /* n_labels repaired values */
    char *labels;                       /* rendered: a="x",b="y" (escaped); "" without labels */
    uint64_t hash;
    _Atomic uint64_t bits;              /* counter/gauge value, histogram sum: a double's bits */
    _Atomic uint64_t counts[];          /* histogram: per-bucket counts, the last one for +Inf */
};

struct fks_metric_family_t {
    fks_metrics_t *registry;
    char *name;
    char *help;                         /* escaped for the HELP line */
    fks_metric_type_t type;
    size_t n_labels;
    char *label_names[FKS_METRICS_MAX_LABELS];
    size_t n_buckets;
    double buckets[FKS_METRICS_MAX_BUCKETS];
    char le[FKS_METRICS_MAX_BUCKETS][S_NUM_MAX];
    fks_metric_t **children;            /* creation order, overflow series included */
    size_t n_children, cap_children;
    size_t n_regular;                   /* children other than the overflow series */
    fks_metric_t *overflow;
    fks_metric_t **table;               /* hash index, table_cap a power of two */
    size_t table_cap;
};

struct fks_metrics_t {
    pthread_mutex_t lock;
    fks_metric_family_t **families;
    size_t n_families, cap_families;
};

//  --------------------------------------------------------------------------
//  Text helpers

//  Length of the valid UTF-8 sequence at s (n bytes available), or 0 when it is invalid:
//  overlong forms, surrogates and code points past U+10FFFF are invalid, as in Go.
static size_t
s_utf8_len (const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)
        || (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

//  Copies src into dst (cap bytes, NUL-terminated), replacing invalid UTF-8 bytes with U+FFFD
//  and stopping on a character boundary when dst is full. Returns the length written.
static size_t
s_utf8_copy (char *dst, size_t cap, const char *src)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    size_t out = 0, n = strnlen (src, cap + 4);   /* input consumed <= output written */
    const unsigned char *s = (const unsigned char *) src;
    for (size_t i = 0; i < n;) {
        size_t k = s_utf8_len (s + i, n - i);
        const char *piece = k ? src + i : replacement;
        size_t plen = k ? k : 3;
        if (out + plen + 1 > cap)
            break;
        memcpy (dst + out, piece, plen);
        out += plen;
        i += k ? k : 1;
    }
    dst[out] = '\0';
    return out;
}

//  fks_double_text (common/sbuf.h); NaN and infinities as Prometheus spells
//  them.
static void
s_format_double (char *buf, size_t cap, double v)
{
    if (isnan (v)) {
        snprintf (buf, cap, "NaN");
        return;
    }
    if (isinf (v)) {
        snprintf (buf, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    fks_double_text (buf, cap, v);
}

static bool
s_valid_name (const char *name, bool colons)
{
    if (!name || !*name || strlen (name) > S_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
                  || (colons && c == ':') || (p != name && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static inline double
s_bits_to_double (uint64_t bits)
{
    double d;
    memcpy (&d, &bits, sizeof d);
    return d;
}

static inline uint64_t
s_double_to_bits (double d)
{
    uint64_t bits;
    memcpy (&bits, &d, sizeof bits);
    return bits;
}

static inline void
s_atomic_add_double (_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit (bits, memory_order_relaxed);
    uint64_t new;
    do
        new = s_double_to_bits (s_bits_to_double (old) + v);
    while (!atomic_compare_exchange_weak_explicit (bits, &old, new, memory_order_relaxed,
                                                   memory_order_relaxed));
}

//  A growable output buffer; after a failed allocation it stays failed.
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} s_buf_t;

static void
s_buf_put (s_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc (b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy (b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void
s_buf_str (s_buf_t *b, const char *s)
{
    s_buf_put (b, s, strlen (s));
}

//  --------------------------------------------------------------------------
//  Registry

fks_metrics_t *
fks_metrics_new (void)
{
    fks_metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (pthread_mutex_init (&self->lock, NULL) != 0) {
        free (self);
        return NULL;
    }
    return self;
}

static void
s_child_free (fks_metric_t *m, size_t n_labels)
{
    if (!m)
        return;
    if (m->values)
        for (size_t i = 0; i < n_labels; i++)
            free (m->values[i]);
    free (m->values);
    free (m->labels);
    free (m);
}

static void
s_family_free (fks_metric_family_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_children; i++)
        s_child_free (f->children[i], f->n_labels);
    free (f->children);
    free (f->table);
    for (size_t i = 0; i < f->n_labels; i++)
        free (f->label_names[i]);
    free (f->name);
    free (f->help);
    free (f);
}

void
fks_metrics_destroy (fks_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_metrics_t *self = *self_p;
    for (size_t i = 0; i < self->n_families; i++)
        s_family_free (self->families[i]);
    free (self->families);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

static fks_metrics_t *s_default;
static pthread_once_t s_default_once = PTHREAD_ONCE_INIT;

static void
s_default_create (void)
{
    s_default = fks_metrics_new ();
}

fks_metrics_t *
fks_metrics_default (void)
{
    pthread_once (&s_default_once, s_default_create);
    return s_default;
}

//  --------------------------------------------------------------------------
//  Children

static uint64_t
s_hash (const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ULL;                 /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *) values[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xFF) * 1099511628211ULL;                /* never inside valid UTF-8 */
    }
    return h;
}

static bool
s_same_values (const fks_metric_t *m, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp (m->values[i], values[i]) != 0)
            return false;
    return true;
}

static fks_metric_t *
s_find (fks_metric_family_t *f, uint64_t hash, const char *const *values)
{
    if (!f->table_cap)
        return NULL;
    size_t mask = f->table_cap - 1;
    for (size_t i = hash & mask, probes = 0; probes < f->table_cap; i = (i + 1) & mask, probes++) {
        fks_metric_t *m = f->table[i];
        if (!m)
            return NULL;
        if (m->hash == hash && s_same_values (m, values, f->n_labels))
            return m;
    }
    return NULL;
}

static void
s_table_put (fks_metric_t **table, size_t cap, fks_metric_t *m)
{
    size_t mask = cap - 1;
    size_t i = m->hash & mask;
    while (table[i])
        i = (i + 1) & mask;
    table[i] = m;
}

//  Makes room for one more child in the list and the index (kept at most half full).
static int
s_reserve (fks_metric_family_t *f)
{
    if (f->n_children == f->cap_children) {
        size_t cap = f->cap_children ? f->cap_children * 2 : 4;
        fks_metric_t **p = realloc (f->children, cap * sizeof *p);
        if (!p)
            return -1;
        f->children = p;
        f->cap_children = cap;
    }
    if ((f->n_children + 1) * 2 > f->table_cap) {
        size_t cap = f->table_cap ? f->table_cap * 2 : 8;
        fks_metric_t **table = calloc (cap, sizeof *table);
        if (!table)
            return -1;
        for (size_t i = 0; i < f->n_children; i++)
            s_table_put (table, cap, f->children[i]);
        free (f->table);
        f->table = table;
        f->table_cap = cap;
    }
    return 0;
}

//  Appends label="escaped value" to a rendered label list.
static void
s_put_label (s_buf_t *b, const char *name, const char *value)
{
    if (b->len)
        s_buf_put (b, ",", 1);
    s_buf_str (b, name);
    s_buf_put (b, "=\"", 2);
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            s_buf_put (b, "\\\\", 2);
        else if (*p == '"')
            s_buf_put (b, "\\\"", 2);
        else if (*p == '\n')
            s_buf_put (b, "\\n", 2);
        else
            s_buf_put (b, p, 1);
    }
    s_buf_put (b, "\"", 1);
}

static fks_metric_t *
s_child_new (fks_metric_family_t *f, uint64_t hash, const char *const *values)
{
    size_t n_counts = f->type == FKS_HISTOGRAM ? f->n_buckets + 1 : 0;
    fks_metric_t *m = calloc (1, sizeof *m + n_counts * sizeof m->counts[0]);
    if (!m)
        return NULL;
    m->family = f;
    m->hash = hash;
    atomic_init (&m->bits, s_double_to_bits (0.0));
    for (size_t i = 0; i < n_counts; i++)
        atomic_init (&m->counts[i], 0);
    s_buf_t labels = { 0 };
    if (f->n_labels) {
        m->values = calloc (f->n_labels, sizeof *m->values);
        if (!m->values)
            goto fail;
        for (size_t i = 0; i < f->n_labels; i++) {
            if (!(m->values[i] = strdup (values[i])))
                goto fail;
            s_put_label (&labels, f->label_names[i], values[i]);
        }
    }
    else
        s_buf_put (&labels, "", 0);
    if (labels.failed)
        goto fail;
    m->labels = labels.data;
    return m;
fail:
    free (labels.data);
    s_child_free (m, f->n_labels);
    return NULL;
}

//  Finds or creates the child for these (already repaired) values. Registry lock held.
static fks_metric_t *
s_child_get (fks_metric_family_t *f, const char *const *values)
{
    uint64_t hash = s_hash (values, f->n_labels);
    fks_metric_t *m = s_find (f, hash, values);
    if (m)
        return m;

    bool overflow_tuple = f->n_labels > 0;
    for (size_t i = 0; i < f->n_labels && overflow_tuple; i++)
        overflow_tuple = strcmp (values[i], S_OVERFLOW) == 0;
    if (overflow_tuple || f->n_regular >= FKS_METRICS_MAX_CHILDREN) {
        if (!f->overflow) {
            const char *ov[FKS_METRICS_MAX_LABELS];
            for (size_t i = 0; i < f->n_labels; i++)
                ov[i] = S_OVERFLOW;
            if (s_reserve (f) != 0)
                return NULL;
            if (!(f->overflow = s_child_new (f, s_hash (ov, f->n_labels), ov)))
                return NULL;
            f->children[f->n_children++] = f->overflow;
            s_table_put (f->table, f->table_cap, f->overflow);
            if (!overflow_tuple)
                fks_warn ("metric %s has %d series: further label values share the \""
                          S_OVERFLOW "\" series", f->name, FKS_METRICS_MAX_CHILDREN);
        }
        return f->overflow;
    }
    if (s_reserve (f) != 0 || !(m = s_child_new (f, hash, values)))
        return NULL;
    f->children[f->n_children++] = m;
    f->n_regular++;
    s_table_put (f->table, f->table_cap, m);
    return m;
}

fks_metric_t *
fks_metric_get (fks_metric_family_t *family, const char *const *label_values)
{
    if (!family)
        return NULL;
    char repaired[FKS_METRICS_MAX_LABELS][FKS_METRICS_MAX_VALUE_LEN + 1];
    const char *values[FKS_METRICS_MAX_LABELS];
    for (size_t i = 0; i < family->n_labels; i++) {
        const char *v = label_values && label_values[i] ? label_values[i] : "";
        s_utf8_copy (repaired[i], sizeof repaired[i], v);
        values[i] = repaired[i];
    }
    fks_metrics_t *r = family->registry;
    pthread_mutex_lock (&r->lock);
    fks_metric_t *m = s_child_get (family, values);
    pthread_mutex_unlock (&r->lock);
    return m;
}

fks_metric_t *
fks_metric_get1 (fks_metric_family_t *family, const char *value)
{
    if (!family)
        return NULL;
    if (family->n_labels > 1) {
        fks_error ("metric %s has %zu labels: fks_metric_get1 needs a family with at most one",
                   family->name, family->n_labels);
        return NULL;
    }
    const char *values[1] = { value };
    return fks_metric_get (family, values);
}

//  --------------------------------------------------------------------------
//  Families

//  The names a family writes: its own (HELP/TYPE) and, for a histogram, its three series.
static size_t
s_written_names (const char *name, fks_metric_type_t type, char out[4][S_NAME_MAX + 16])
{
    snprintf (out[0], sizeof out[0], "%s", name);
    if (type != FKS_HISTOGRAM)
        return 1;
    snprintf (out[1], sizeof out[1], "%s_bucket", name);
    snprintf (out[2], sizeof out[2], "%s_sum", name);
    snprintf (out[3], sizeof out[3], "%s_count", name);
    return 4;
}

static bool
s_names_collide (const char *a, fks_metric_type_t ta, const char *b, fks_metric_type_t tb)
{
    char na[4][S_NAME_MAX + 16], nb[4][S_NAME_MAX + 16];
    size_t ca = s_written_names (a, ta, na), cb = s_written_names (b, tb, nb);
    for (size_t i = 0; i < ca; i++)
        for (size_t j = 0; j < cb; j++)
            if (strcmp (na[i], nb[j]) == 0)
                return true;
    return false;
}

static bool
s_same_shape (const fks_metric_family_t *f, fks_metric_type_t type,
              const char *const *label_names, size_t n_labels, const double *buckets,
              size_t n_buckets)
{
    if (f->type != type || f->n_labels != n_labels)
        return false;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp (f->label_names[i], label_names[i]) != 0)
            return false;
    if (type != FKS_HISTOGRAM)
        return true;
    if (f->n_buckets != n_buckets)
        return false;
    for (size_t i = 0; i < n_buckets; i++)
        if (f->buckets[i] != buckets[i])
            return false;
    return true;
}

//  Checks a family's arguments; on success *n_buckets_io drops an explicit trailing +Inf.
static int
s_check_family (const char *name, fks_metric_type_t type, const char *const *label_names,
                size_t n_labels, const double *buckets, size_t *n_buckets_io)
{
    if (!s_valid_name (name, true)) {
        fks_error ("metric name '%.*s' is not a valid Prometheus name", S_NAME_MAX,
                   name ? name : "(null)");
        return -1;
    }
    if (type != FKS_COUNTER && type != FKS_GAUGE && type != FKS_HISTOGRAM) {
        fks_error ("metric %s: unknown type %d", name, (int) type);
        return -1;
    }
    if (n_labels > FKS_METRICS_MAX_LABELS || (n_labels && !label_names)) {
        fks_error ("metric %s: %zu labels given (at most %d, with their names)", name, n_labels,
                   FKS_METRICS_MAX_LABELS);
        return -1;
    }
    for (size_t i = 0; i < n_labels; i++) {
        const char *l = label_names[i];
        if (!s_valid_name (l, false) || strncmp (l, "__", 2) == 0
            || (type == FKS_HISTOGRAM && strcmp (l, "le") == 0)) {
            fks_error ("metric %s: label name '%.*s' is not allowed", name, S_NAME_MAX,
                       l ? l : "(null)");
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp (l, label_names[j]) == 0) {
                fks_error ("metric %s: label %s given twice", name, l);
                return -1;
            }
    }
    if (type != FKS_HISTOGRAM)
        return 0;
    size_t n = *n_buckets_io;
    if (n > 0 && isinf (buckets[n - 1]) && buckets[n - 1] > 0)
        n--;                                            /* +Inf is implicit */
    if (n > FKS_METRICS_MAX_BUCKETS) {
        fks_error ("metric %s: %zu buckets (at most %d)", name, n, FKS_METRICS_MAX_BUCKETS);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite (buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
            fks_error ("metric %s: bucket bounds must be finite and strictly increasing", name);
            return -1;
        }
    *n_buckets_io = n;
    return 0;
}

static fks_metric_family_t *
s_family_new (fks_metrics_t *self, const char *name, const char *help, fks_metric_type_t type,
              const char *const *label_names, size_t n_labels, const double *buckets,
              size_t n_buckets)
{
    fks_metric_family_t *f = calloc (1, sizeof *f);
    if (!f)
        return NULL;
    f->registry = self;
    f->type = type;
    f->n_labels = n_labels;
    f->n_buckets = type == FKS_HISTOGRAM ? n_buckets : 0;
    for (size_t i = 0; i < f->n_buckets; i++) {
        f->buckets[i] = buckets[i];
        s_format_double (f->le[i], sizeof f->le[i], buckets[i]);
    }
    if (!(f->name = strdup (name)))
        goto fail;
    for (size_t i = 0; i < n_labels; i++)
        if (!(f->label_names[i] = strdup (label_names[i])))
            goto fail;
    //  HELP text: valid UTF-8, with backslash and newline escaped.
    const char *h = help ? help : "";
    size_t hlen = strlen (h);
    char *clean = malloc (hlen * 3 + 1);
    if (!clean)
        goto fail;
    s_utf8_copy (clean, hlen * 3 + 1, h);
    s_buf_t b = { 0 };
    s_buf_put (&b, "", 0);
    for (const char *p = clean; *p; p++) {
        if (*p == '\\')
            s_buf_put (&b, "\\\\", 2);
        else if (*p == '\n')
            s_buf_put (&b, "\\n", 2);
        else
            s_buf_put (&b, p, 1);
    }
    free (clean);
    if (b.failed) {
        free (b.data);
        goto fail;
    }
    f->help = b.data;
    //  A family without labels has exactly one series: create it now so it renders as 0.
    if (n_labels == 0 && !s_child_get (f, NULL))
        goto fail;
    return f;
fail:
    s_family_free (f);
    return NULL;
}

fks_metric_family_t *
fks_metrics_family (fks_metrics_t *self, const char *name, const char *help,
                    fks_metric_type_t type, const char *const *label_names, size_t n_labels,
                    const double *buckets, size_t n_buckets)
{
    if (!self)
        return NULL;
    if (type == FKS_HISTOGRAM && !buckets) {
        buckets = fks_metrics_latency_buckets;
        n_buckets = fks_metrics_latency_buckets_n;
    }
    if (s_check_family (name, type, label_names, n_labels, buckets, &n_buckets) != 0)
        return NULL;

    fks_metric_family_t *f = NULL;
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < self->n_families; i++) {
        fks_metric_family_t *e = self->families[i];
        if (strcmp (e->name, name) == 0) {
            if (s_same_shape (e, type, label_names, n_labels, buckets, n_buckets))
                f = e;
            else
                fks_error ("metric %s is already registered with another type, labels or "
                           "buckets", name);
            goto done;
        }
        if (s_names_collide (e->name, e->type, name, type)) {
            fks_error ("metric %s would write the same series names as metric %s", name,
                       e->name);
            goto done;
        }
    }
    if (self->n_families == self->cap_families) {
        size_t cap = self->cap_families ? self->cap_families * 2 : 16;
        fks_metric_family_t **p = realloc (self->families, cap * sizeof *p);
        if (!p)
            goto done;
        self->families = p;
        self->cap_families = cap;
    }
    f = s_family_new (self, name, help, type, label_names, n_labels, buckets, n_buckets);
    if (f)
        self->families[self->n_families++] = f;
done:
    pthread_mutex_unlock (&self->lock);
    return f;
}

fks_metric_family_t *
fks_counter_family (const char *name, const char *help, const char *const *labels,
                    size_t n_labels)
{
    return fks_metrics_family (fks_metrics_default (), name, help, FKS_COUNTER, labels, n_labels,
                               NULL, 0);
}

fks_metric_family_t *
fks_gauge_family (const char *name, const char *help, const char *const *labels,
                  size_t n_labels)
{
    return fks_metrics_family (fks_metrics_default (), name, help, FKS_GAUGE, labels, n_labels,
                               NULL, 0);
}

fks_metric_family_t *
fks_histogram_family (const char *name, const char *help, const char *const *labels,
                      size_t n_labels, const double *buckets, size_t n_buckets)
{
    return fks_metrics_family (fks_metrics_default (), name, help, FKS_HISTOGRAM, labels,
                               n_labels, buckets, n_buckets);
}

//  --------------------------------------------------------------------------
//  Updates: lock-free, no allocation

void
fks_metric_inc (fks_metric_t *m)
{
    fks_metric_add (m, 1.0);
}

void
fks_metric_add (fks_metric_t *m, double v)
{
    if (!m)
        return;
    fks_metric_type_t type = m->family->type;
    if (type == FKS_COUNTER) {
        if (!(v >= 0) || isinf (v))     /* negative, NaN or infinite would break the counter */
            return;
    }
    else if (type != FKS_GAUGE)
        return;
    s_atomic_add_double (&m->bits, v);
}

void
fks_metric_set (fks_metric_t *m, double v)
{
    if (!m || m->family->type != FKS_GAUGE)
        return;
    atomic_store_explicit (&m->bits, s_double_to_bits (v), memory_order_relaxed);
}

void
fks_metric_observe (fks_metric_t *m, double v)
{
    if (!m || m->family->type != FKS_HISTOGRAM || isnan (v))
        return;
    const fks_metric_family_t *f = m->family;
    size_t i = 0;
    while (i < f->n_buckets && v > f->buckets[i])
        i++;
    atomic_fetch_add_explicit (&m->counts[i], 1, memory_order_relaxed);
    s_atomic_add_double (&m->bits, v);
}

static uint64_t
s_histogram_count (fks_metric_t *m)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= m->family->n_buckets; i++)
        total += atomic_load_explicit (&m->counts[i], memory_order_relaxed);
    return total;
}

double
fks_metric_value (fks_metric_t *m)
{
    if (!m)
        return 0;
    if (m->family->type == FKS_HISTOGRAM)
        return (double) s_histogram_count (m);
    return s_bits_to_double (atomic_load_explicit (&m->bits, memory_order_relaxed));
}

//  --------------------------------------------------------------------------
//  Rendering

static void
s_put_sample (s_buf_t *b, const char *name, const char *suffix, const char *labels,
              const char *le, const char *value)
{
    s_buf_str (b, name);
    s_buf_str (b, suffix);
    if (*labels || le) {
        s_buf_put (b, "{", 1);
        s_buf_str (b, labels);
        if (le) {
            if (*labels)
                s_buf_put (b, ",", 1);
            s_buf_put (b, "le=\"", 4);
            s_buf_str (b, le);
            s_buf_put (b, "\"", 1);
        }
        s_buf_put (b, "}", 1);
    }
    s_buf_put (b, " ", 1);
    s_buf_str (b, value);
    s_buf_put (b, "\n", 1);
}

static void
s_render_family (s_buf_t *b, fks_metric_family_t *f)
{
    static const char *const type_names[] = { "counter", "gauge", "histogram" };
    char num[S_NUM_MAX];
    s_buf_put (b, "# HELP ", 7);
    s_buf_str (b, f->name);
    s_buf_put (b, " ", 1);
    s_buf_str (b, f->help);
    s_buf_put (b, "\n# TYPE ", 8);
    s_buf_str (b, f->name);
    s_buf_put (b, " ", 1);
    s_buf_str (b, type_names[f->type]);
    s_buf_put (b, "\n", 1);
    for (size_t c = 0; c < f->n_children; c++) {
        fks_metric_t *m = f->children[c];
        double value = s_bits_to_double (atomic_load_explicit (&m->bits, memory_order_relaxed));
        if (f->type != FKS_HISTOGRAM) {
            s_format_double (num, sizeof num, value);
            s_put_sample (b, f->name, "", m->labels, NULL, num);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= f->n_buckets; i++) {
            cumulative += atomic_load_explicit (&m->counts[i], memory_order_relaxed);
            snprintf (num, sizeof num, "%llu", (unsigned long long) cumulative);
            s_put_sample (b, f->name, "_bucket", m->labels, i < f->n_buckets ? f->le[i] : "+Inf",
                          num);
        }
        s_format_double (num, sizeof num, value);
        s_put_sample (b, f->name, "_sum", m->labels, NULL, num);
        snprintf (num, sizeof num, "%llu", (unsigned long long) cumulative);
        s_put_sample (b, f->name, "_count", m->labels, NULL, num);
    }
}

char *
fks_metrics_render (fks_metrics_t *self, size_t *len_out)
{
    if (!self)
        return NULL;
    s_buf_t b = { 0 };
    s_buf_put (&b, "", 0);
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < self->n_families && !b.failed; i++)
        if (self->families[i]->n_children > 0)
            s_render_family (&b, self->families[i]);
    pthread_mutex_unlock (&self->lock);
    if (b.failed) {
        free (b.data);
        return NULL;
    }
    if (len_out)
        *len_out = b.len;
    return b.data;
}
