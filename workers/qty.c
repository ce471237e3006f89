/*  qty.c - quantities as the signal and the execution worker both compute them. See qty.h. */
#include "workers/qty.h"
#include "workers/runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

double
fks_qty_round_down (double qty, int decimals)
{
    if (decimals < 0)
        decimals = 0;
    if (decimals > FKS_QTY_DECIMALS_MAX)
        decimals = FKS_QTY_DECIMALS_MAX;
    double scale = pow (10.0, decimals);
    double scaled = qty * scale;
    //  0.3 * 1e8 is 29999999.999999996: a value within float noise of a whole step is that
    //  step, not a request for one step less. The noise is relative (about 1e-16 of the value);
    //  the tolerance stays far below one step however large the quantity.
    double nearest = round (scaled);
    double tol = fmin (1e-6, 1e-12 * fmax (1.0, fabs (scaled)));
    double r = fabs (scaled - nearest) <= tol ? nearest : floor (scaled);
    if (r < 0)
        r = 0;
    return r / scale;
}

double
fks_qty_stored (double v)
{
    char buf[48];
    return fks_worker_parse_num (fks_worker_num (buf, v), 0);
}

bool
fks_qty_share_ok (double share)
{
    return isfinite (share) && share > 0 && share <= 1;
}

double
fks_qty_position_share (double pos, bool buy, bool reduce, double share, int decimals,
                        double *base)
{
    //  A buy reduces a short and adds to a long; a sell the reverse.
    bool of_long = buy != reduce;
    double b = of_long ? (pos > 0 ? pos : 0) : (pos < 0 ? -pos : 0);
    if (!isfinite (b))
        b = 0;
    if (base)
        *base = b;
    if (!(b > 0) || !fks_qty_share_ok (share))
        return 0;
    double q = b * share;
    if (decimals >= 0)
        q = fks_qty_round_down (q, decimals);
    else
        q = fks_qty_stored (q);
    return q > b ? b : q;
}
