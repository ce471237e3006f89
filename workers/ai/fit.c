/*  fit.c - fitting and judging the AI model, for the trainer (tools/train.c).
 *
 *  See fit.h. Newton's method needs the gradient and the Hessian of the penalised negative
 *  log-likelihood over d + 1 parameters (bias and one weight per feature); the Hessian is
 *  solved by Gaussian elimination with partial pivoting, and each step is halved while it
 *  would make the objective worse, so the fit cannot oscillate.
 */
#include "workers/ai/fit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_D  FKS_FEATURES_N
#define S_P  (FKS_FEATURES_N + 1)

int
fks_dataset_build (const double *close, const double *volume, size_t n, int horizon,
                   fks_dataset_t *out)
{
    memset (out, 0, sizeof *out);
    if (horizon < 1 || !close)
        return -1;
    size_t h = (size_t) horizon;
    if (n < FKS_FEATURES_MIN_BARS + h)
        return 0;
    size_t first = FKS_FEATURES_MIN_BARS - 1, last = n - 1 - h;      //  t in [first, last]
    size_t cap = last - first + 1;
    out->x = malloc (cap * S_D * sizeof *out->x);
    out->y = malloc (cap * sizeof *out->y);
    if (!out->x || !out->y) {
        fks_dataset_free (out);
        return -1;
    }
    out->first_bar = first;
    for (size_t t = first; t <= last; t++) {
        double *row = out->x + out->rows * S_D;
        if (fks_features_compute (close, volume, t + 1, row) != 0)
            continue;
        if (!isfinite (close[t + h]) || close[t + h] <= 0)
            continue;
        bool usable = true;
        for (int k = 0; k < S_D; k++)
            usable = usable && isfinite (row[k]);
        if (!usable)
            continue;
        if (out->rows == 0)
            out->first_bar = t;
        out->y[out->rows++] = close[t + h] > close[t] ? 1 : 0;
    }
    return 0;
}

void
fks_dataset_free (fks_dataset_t *ds)
{
    free (ds->x);
    free (ds->y);
    memset (ds, 0, sizeof *ds);
}

void
fks_fit_opts_defaults (fks_fit_opts_t *opts)
{
    opts->l2 = 1.0;
    opts->max_iter = 50;
    opts->tol = 1e-9;
}

static double
s_sigmoid (double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp (-z));
    double e = exp (z);
    return e / (1.0 + e);
}

//  Penalised negative log-likelihood of theta on the standardised rows.
static double
s_objective (const double *z, const int *y, size_t n, const double theta[S_P], double l2)
{
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        double s = theta[0];
        for (int k = 0; k < S_D; k++)
            s += theta[k + 1] * z[i * S_D + k];
        //  log(1 + e^s) - y s, computed without overflow.
        double lse = s > 0 ? s + log1p (exp (-s)) : log1p (exp (s));
        loss += lse - y[i] * s;
    }
    for (int k = 1; k < S_P; k++)
        loss += 0.5 * l2 * theta[k] * theta[k];
    return loss;
}

//  Solves a x = b in place (a is S_P x S_P, destroyed). 0, or -1 when singular.
static int
s_solve (double a[S_P][S_P], double b[S_P])
{
    for (int c = 0; c < S_P; c++) {
        int piv = c;
        for (int r = c + 1; r < S_P; r++)
            if (fabs (a[r][c]) > fabs (a[piv][c]))
                piv = r;
        if (fabs (a[piv][c]) < 1e-12)
            return -1;
        if (piv != c) {
            for (int k = 0; k < S_P; k++) {
                double t = a[c][k];
                a[c][k] = a[piv][k];
                a[piv][k] = t;
            }
            double t = b[c];
            b[c] = b[piv];
            b[piv] = t;
        }
        for (int r = c + 1; r < S_P; r++) {
            double f = a[r][c] / a[c][c];
            for (int k = c; k < S_P; k++)
                a[r][k] -= f * a[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int r = S_P - 1; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < S_P; k++)
            s -= a[r][k] * b[k];
        b[r] = s / a[r][r];
    }
    return 0;
}

int
fks_fit_logistic (const fks_dataset_t *ds, size_t from, size_t to, const fks_fit_opts_t *opts,
                  fks_model_t *model, char *err, size_t cap)
{
    fks_fit_opts_t def;
    if (!opts) {
        fks_fit_opts_defaults (&def);
        opts = &def;
    }
    if (to > ds->rows || from >= to || to - from < 2 * S_P) {
        snprintf (err, cap, "too few training rows (%zu; at least %d needed)",
                  to > from ? to - from : 0, 2 * S_P);
        return -1;
    }
    size_t n = to - from;
    const double *x = ds->x + from * S_D;
    const int *y = ds->y + from;
    size_t ones = 0;
    for (size_t i = 0; i < n; i++)
        ones += (size_t) y[i];
    if (ones == 0 || ones == n) {
        snprintf (err, cap, "every training label is %d: nothing to learn", ones ? 1 : 0);
        return -1;
    }
    //  Standardise: mean and standard deviation per feature (1 for a constant feature).
    double mean[S_D] = { 0 }, scale[S_D];
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < S_D; k++)
            mean[k] += x[i * S_D + k];
    for (int k = 0; k < S_D; k++)
        mean[k] /= (double) n;
    for (int k = 0; k < S_D; k++) {
        double ss = 0;
        for (size_t i = 0; i < n; i++)
            ss += (x[i * S_D + k] - mean[k]) * (x[i * S_D + k] - mean[k]);
        scale[k] = sqrt (ss / (double) n);
        if (!(scale[k] > FKS_MODEL_SCALE_MIN) || !isfinite (scale[k]))
            scale[k] = 1;
    }
    double *z = malloc (n * S_D * sizeof *z);
    if (!z) {
        snprintf (err, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < S_D; k++)
            z[i * S_D + k] = (x[i * S_D + k] - mean[k]) / scale[k];

    double theta[S_P] = { 0 };
    theta[0] = log ((double) ones / (double) (n - ones));       //  start at the base rate
    double obj = s_objective (z, y, n, theta, opts->l2);
    int rc = -1;
    for (int it = 0; it < opts->max_iter; it++) {
        double g[S_P] = { 0 }, h[S_P][S_P];
        memset (h, 0, sizeof h);
        for (size_t i = 0; i < n; i++) {
            double row[S_P] = { 1 };
            for (int k = 0; k < S_D; k++)
                row[k + 1] = z[i * S_D + k];
            double s = 0;
            for (int k = 0; k < S_P; k++)
                s += theta[k] * row[k];
            double p = s_sigmoid (s);
            double wgt = p * (1 - p);
            for (int a = 0; a < S_P; a++) {
                g[a] += (p - y[i]) * row[a];
                for (int b = a; b < S_P; b++)
                    h[a][b] += wgt * row[a] * row[b];
            }
        }
        for (int a = 0; a < S_P; a++)
            for (int b = 0; b < a; b++)
                h[a][b] = h[b][a];
        for (int k = 1; k < S_P; k++) {
            g[k] += opts->l2 * theta[k];
            h[k][k] += opts->l2;
        }
        if (s_solve (h, g) != 0) {
            snprintf (err, cap, "the fit is singular (features too collinear); raise the L2 "
                      "penalty");
            goto done;
        }
        //  g now holds the Newton step; halve it while it does not improve the objective.
        double step = 1, next[S_P], next_obj = obj;
        for (int tries = 0; tries < 30; tries++, step /= 2) {
            for (int k = 0; k < S_P; k++)
                next[k] = theta[k] - step * g[k];
            next_obj = s_objective (z, y, n, next, opts->l2);
            if (isfinite (next_obj) && next_obj <= obj)
                break;
        }
        if (!isfinite (next_obj)) {
            snprintf (err, cap, "the fit diverged");
            goto done;
        }
        double moved = 0;
        for (int k = 0; k < S_P; k++) {
            moved = fmax (moved, fabs (next[k] - theta[k]));
            theta[k] = next[k];
        }
        obj = next_obj;
        if (moved < opts->tol)
            break;
    }
    model->n = S_D;
    for (int k = 0; k < S_D; k++) {
        model->index[k] = k;
        model->mean[k] = mean[k];
        model->scale[k] = scale[k];
        model->weight[k] = theta[k + 1];
    }
    model->bias = theta[0];
    rc = 0;
done:
    free (z);
    return rc;
}

void
fks_evaluate (const fks_model_t *model, const fks_dataset_t *ds, size_t from, size_t to,
              int majority, fks_eval_t *out)
{
    memset (out, 0, sizeof *out);
    out->majority = majority;
    if (to > ds->rows)
        to = ds->rows;
    if (from >= to)
        return;
    size_t right = 0, base = 0, ups = 0;
    double loss = 0;
    for (size_t i = from; i < to; i++) {
        double p = fks_model_predict (model, ds->x + i * S_D);
        int y = ds->y[i];
        right += (size_t) ((p >= 0.5) == (y == 1));
        base += (size_t) (y == majority);
        ups += (size_t) y;
        double q = y ? p : 1 - p;
        loss -= log (q < 1e-15 ? 1e-15 : q);
    }
    size_t n = to - from;
    out->rows = n;
    out->accuracy = (double) right / (double) n;
    out->baseline = (double) base / (double) n;
    out->up_share = (double) ups / (double) n;
    out->log_loss = loss / (double) n;
}
