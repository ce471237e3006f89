/*  model.c - the AI worker's model: a logistic regression over the features, read from a file.
 *
 *  See model.h for the file format. The parser works on a private copy of the text, one line
 *  at a time, fills a scratch model and copies it out only when every check has passed, so a
 *  caller's model is never left half-replaced by a bad file.
 */
#include "workers/ai/model.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_WEIGHT_MAX 1e6        /* larger coefficients mean a broken fit, not a model */

bool
fks_model_version_valid (const char *text)
{
    size_t n = text ? strlen (text) : 0;
    if (n < 1 || n >= FKS_MODEL_VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!isalnum ((unsigned char) c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

static bool
s_interval_valid (const char *text)
{
    size_t n = strlen (text);
    if (n < 2 || n > 5 || text[0] < '1' || text[0] > '9' || !strchr ("smhdwM", text[n - 1]))
        return false;
    for (size_t i = 0; i < n - 1; i++)
        if (!isdigit ((unsigned char) text[i]))
            return false;
    return true;
}

//  Splits s (modified) on spaces and tabs into at most max words. Returns the count, or -1
//  when there are more.
static int
s_words (char *s, char **words, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r (s, " \t", &save); w; w = strtok_r (NULL, " \t", &save)) {
        if (n == max)
            return -1;
        words[n++] = w;
    }
    return n;
}

static int
s_number (const char *word, double *out)
{
    char *end;
    errno = 0;
    double v = strtod (word, &end);
    if (end == word || *end != '\0' || errno == ERANGE || !isfinite (v))
        return -1;
    *out = v;
    return 0;
}

enum { K_KIND, K_VERSION, K_INTERVAL, K_HORIZON, K_TRAINED, K_FEATURES, K_MEAN, K_SCALE,
       K_WEIGHTS, K_BIAS, K_END, K_COUNT };
static const char *const s_keys[K_COUNT] = {
    "kind", "version", "interval", "horizon", "trained", "features", "mean", "scale",
    "weights", "bias", "end" };

//  Reads the numbers of a vector line into v; they must be exactly m->n of them.
static int
s_vector (fks_model_t *m, char **words, int nw, double *v, const char *key, long line,
          char *err, size_t cap)
{
    if (m->n == 0) {
        snprintf (err, cap, "line %ld: %s comes before the features line", line, key);
        return -1;
    }
    if ((size_t) nw != m->n) {
        snprintf (err, cap, "line %ld: %s: expected %zu numbers (one per feature), got %d",
                  line, key, m->n, nw);
        return -1;
    }
    for (int i = 0; i < nw; i++)
        if (s_number (words[i], &v[i]) != 0) {
            snprintf (err, cap, "line %ld: %s: '%.32s' is not a finite number", line, key,
                      words[i]);
            return -1;
        }
    return 0;
}

int
fks_model_parse (const char *text, size_t len, fks_model_t *out, char *err, size_t cap)
{
    if (!text || len == 0) {
        snprintf (err, cap, "empty model file");
        return -1;
    }
    if (len > FKS_MODEL_FILE_MAX) {
        snprintf (err, cap, "model file of %zu bytes, larger than the limit of %d", len,
                  FKS_MODEL_FILE_MAX);
        return -1;
    }
    if (memchr (text, '\0', len)) {
        snprintf (err, cap, "model file holds a NUL byte: not a text file");
        return -1;
    }
    char *copy = malloc (len + 1);
    if (!copy) {
        snprintf (err, cap, "out of memory");
        return -1;
    }
    memcpy (copy, text, len);
    copy[len] = '\0';

    fks_model_t m;
    memset (&m, 0, sizeof m);
    bool seen[K_COUNT] = { false };
    bool header = false;
    long line = 0;
    int rc = -1;
    char *p = copy;
    while (p) {
        char *nl = strchr (p, '\n');
        if (nl)
            *nl = '\0';
        char *s = p;
        p = nl ? nl + 1 : NULL;
        line++;
        size_t sl = strlen (s);
        if (sl > 0 && s[sl - 1] == '\r')
            s[--sl] = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        if (seen[K_END]) {
            snprintf (err, cap, "line %ld: text after 'end'", line);
            goto done;
        }
        if (!header) {
            if (strcmp (s, "fks-model 1") != 0) {
                if (strncmp (s, "fks-model ", 10) == 0)
                    snprintf (err, cap, "line %ld: model format '%.16s' not supported "
                              "(this build reads format %d)", line, s + 10, FKS_MODEL_FORMAT);
                else
                    snprintf (err, cap, "line %ld: not an FKS model file (expected "
                              "'fks-model %d')", line, FKS_MODEL_FORMAT);
                goto done;
            }
            header = true;
            continue;
        }
        //  The key, then the rest of the line.
        char *rest = s + strcspn (s, " \t");
        if (*rest)
            *rest++ = '\0';
        while (*rest == ' ' || *rest == '\t')
            rest++;
        int key = -1;
        for (int k = 0; k < K_COUNT; k++)
            if (strcmp (s, s_keys[k]) == 0)
                key = k;
        if (key < 0) {
            snprintf (err, cap, "line %ld: unknown key '%.32s'", line, s);
            goto done;
        }
        if (seen[key]) {
            snprintf (err, cap, "line %ld: '%s' given twice", line, s_keys[key]);
            goto done;
        }
        seen[key] = true;
        char *words[FKS_FEATURES_N + 1];
        int nw;
        switch (key) {
            case K_KIND:
                if (strcmp (rest, "logistic") != 0) {
                    snprintf (err, cap, "line %ld: kind '%.32s' not supported (this build "
                              "reads: logistic)", line, rest);
                    goto done;
                }
                break;
            case K_VERSION:
                if (!fks_model_version_valid (rest)) {
                    snprintf (err, cap, "line %ld: version must be 1-63 characters of "
                              "[A-Za-z0-9._-]", line);
                    goto done;
                }
                snprintf (m.version, sizeof m.version, "%s", rest);
                break;
            case K_INTERVAL:
                if (!s_interval_valid (rest)) {
                    snprintf (err, cap, "line %ld: interval '%.16s' is not an interval such "
                              "as 1h or 1d", line, rest);
                    goto done;
                }
                snprintf (m.interval, sizeof m.interval, "%s", rest);
                break;
            case K_HORIZON: {
                char *end;
                long h = strtol (rest, &end, 10);
                if (end == rest || *end || h < 1 || h > 10000) {
                    snprintf (err, cap, "line %ld: horizon must be a whole number of bars, "
                              "1 to 10000", line);
                    goto done;
                }
                m.horizon = (int) h;
                break;
            }
            case K_TRAINED:
                snprintf (m.trained, sizeof m.trained, "%s", rest);
                break;
            case K_FEATURES:
                nw = s_words (rest, words, FKS_FEATURES_N);
                if (nw <= 0) {
                    snprintf (err, cap, "line %ld: features: 1 to %d feature names expected",
                              line, FKS_FEATURES_N);
                    goto done;
                }
                for (int i = 0; i < nw; i++) {
                    int idx = fks_feature_index (words[i]);
                    if (idx < 0) {
                        snprintf (err, cap, "line %ld: unknown feature '%.32s'", line,
                                  words[i]);
                        goto done;
                    }
                    for (int j = 0; j < i; j++)
                        if (m.index[j] == idx) {
                            snprintf (err, cap, "line %ld: feature '%s' listed twice", line,
                                      words[i]);
                            goto done;
                        }
                    m.index[i] = idx;
                }
                m.n = (size_t) nw;
                break;
            case K_MEAN:
            case K_SCALE:
            case K_WEIGHTS:
                nw = s_words (rest, words, FKS_FEATURES_N + 1);
                if (nw < 0)
                    nw = FKS_FEATURES_N + 1;
                if (s_vector (&m, words, nw, key == K_MEAN ? m.mean : key == K_SCALE ? m.scale
                              : m.weight, s_keys[key], line, err, cap) != 0)
                    goto done;
                for (size_t i = 0; key == K_SCALE && i < m.n; i++) {
                    if (!(m.scale[i] > 0)) {
                        snprintf (err, cap, "line %ld: scale of %s must be greater than 0",
                                  line, fks_feature_names[m.index[i]]);
                        goto done;
                    }
                    //  A tiny scale divides an ordinary feature value into infinity and the
                    //  score into NaN; the trainer never writes one below its floor.
                    if (m.scale[i] < FKS_MODEL_SCALE_MIN) {
                        snprintf (err, cap, "line %ld: scale of %s is %.3g, below %g (the "
                                  "smallest the trainer writes): the score would overflow",
                                  line, fks_feature_names[m.index[i]], m.scale[i],
                                  FKS_MODEL_SCALE_MIN);
                        goto done;
                    }
                }
                for (size_t i = 0; key == K_WEIGHTS && i < m.n; i++)
                    if (fabs (m.weight[i]) > S_WEIGHT_MAX) {
                        snprintf (err, cap, "line %ld: weight of %s is out of range", line,
                                  fks_feature_names[m.index[i]]);
                        goto done;
                    }
                break;
            case K_BIAS:
                if (s_number (rest, &m.bias) != 0 || fabs (m.bias) > S_WEIGHT_MAX) {
                    snprintf (err, cap, "line %ld: bias must be one finite number", line);
                    goto done;
                }
                break;
            case K_END:
                if (*rest) {
                    snprintf (err, cap, "line %ld: 'end' takes nothing after it", line);
                    goto done;
                }
                break;
        }
    }
    if (!header) {
        snprintf (err, cap, "not an FKS model file (no 'fks-model %d' line)", FKS_MODEL_FORMAT);
        goto done;
    }
    if (!seen[K_END]) {
        snprintf (err, cap, "truncated: no 'end' line (the file is incomplete)");
        goto done;
    }
    for (int k = 0; k < K_COUNT; k++)
        if (!seen[k] && k != K_TRAINED) {
            snprintf (err, cap, "'%s' is missing", s_keys[k]);
            goto done;
        }
    *out = m;
    rc = 0;
done:
    free (copy);
    return rc;
}

int
fks_model_load (const char *path, fks_model_t *out, char *err, size_t cap)
{
    char why[256];
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf (err, cap, "%s: %s", path, strerror (errno));
        return -1;
    }
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
        snprintf (err, cap, "%s: not a regular file", path);
        close (fd);
        return -1;
    }
    if (st.st_size > FKS_MODEL_FILE_MAX) {
        snprintf (err, cap, "%s: %lld bytes, larger than the limit of %d", path,
                  (long long) st.st_size, FKS_MODEL_FILE_MAX);
        close (fd);
        return -1;
    }
    char *buf = malloc (FKS_MODEL_FILE_MAX + 1);
    if (!buf) {
        close (fd);
        snprintf (err, cap, "%s: out of memory", path);
        return -1;
    }
    //  Read up to one byte past the limit: the file may have grown since fstat.
    size_t len = 0;
    while (len <= FKS_MODEL_FILE_MAX) {
        ssize_t r = read (fd, buf + len, FKS_MODEL_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf (err, cap, "%s: %s", path, strerror (errno));
            free (buf);
            close (fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t) r;
    }
    close (fd);
    int rc = fks_model_parse (buf, len, out, why, sizeof why);
    if (rc != 0)
        snprintf (err, cap, "%s: %s", path, why);
    free (buf);
    return rc;
}

static bool
s_valid (const fks_model_t *m)
{
    if (!fks_model_version_valid (m->version) || !s_interval_valid (m->interval)
        || m->horizon < 1 || m->n < 1 || m->n > FKS_FEATURES_N || !isfinite (m->bias)
        || fabs (m->bias) > S_WEIGHT_MAX || strchr (m->trained, '\n'))
        return false;
    //  The parser's bounds too: a model written here always reads back.
    for (size_t i = 0; i < m->n; i++)
        if (m->index[i] < 0 || m->index[i] >= FKS_FEATURES_N || !isfinite (m->mean[i])
            || !(m->scale[i] >= FKS_MODEL_SCALE_MIN) || !isfinite (m->scale[i])
            || !isfinite (m->weight[i]) || fabs (m->weight[i]) > S_WEIGHT_MAX)
            return false;
    return true;
}

int
fks_model_format (const fks_model_t *m, char *buf, size_t cap)
{
    if (!s_valid (m) || cap == 0)
        return -1;
    size_t w = 0;
#define S_PUT(...) do { \
        int k_ = snprintf (buf + w, cap - w, __VA_ARGS__); \
        if (k_ < 0 || (size_t) k_ >= cap - w) return -1; \
        w += (size_t) k_; \
    } while (0)
    S_PUT ("fks-model %d\nkind logistic\nversion %s\ninterval %s\nhorizon %d\n",
           FKS_MODEL_FORMAT, m->version, m->interval, m->horizon);
    if (m->trained[0])
        S_PUT ("trained %s\n", m->trained);
    S_PUT ("features");
    for (size_t i = 0; i < m->n; i++)
        S_PUT (" %s", fks_feature_names[m->index[i]]);
    const double *vecs[3] = { m->mean, m->scale, m->weight };
    const char *names[3] = { "mean", "scale", "weights" };
    for (int k = 0; k < 3; k++) {
        S_PUT ("\n%s", names[k]);
        for (size_t i = 0; i < m->n; i++)
            S_PUT (" %.17g", vecs[k][i]);
    }
    S_PUT ("\nbias %.17g\nend\n", m->bias);
#undef S_PUT
    return (int) w;
}

double
fks_model_predict (const fks_model_t *m, const double features[FKS_FEATURES_N])
{
    double z = m->bias;
    for (size_t i = 0; i < m->n; i++)
        z += m->weight[i] * (features[m->index[i]] - m->mean[i]) / m->scale[i];
    //  The two forms keep exp() from overflowing for large |z|.
    if (z >= 0)
        return 1.0 / (1.0 + exp (-z));
    double e = exp (z);
    return e / (1.0 + e);
}
