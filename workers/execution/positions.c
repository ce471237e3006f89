/*  positions.c - a symbol's net position, average price and PnL, moved by fills.
 *
 *  See positions.h. Floating point is enough here because it only decides and prices: the
 *  quantity PostgreSQL stores is the stored one plus the exact numeric sum of the fills
 *  (execute.c, ex_positions_save), so a position always equals the sum of its fills; the
 *  average price and PnL are written rounded to 15 digits after every fill.
 */
#include "workers/execution/positions.h"

#include <math.h>

#define S_EPS 1e-12

static double
s_clean (double v)
{
    return fabs (v) < S_EPS ? 0.0 : v;
}

double
fks_position_apply (fks_position_t *p, bool buy, double qty, double price, double fee)
{
    double signed_qty = buy ? qty : -qty;
    double realized = 0;
    if (p->qty == 0 || (p->qty > 0) == buy) {
        //  Opening or adding: a weighted average of the old and the new.
        double open = fabs (p->qty);
        p->avg_price = (open * p->avg_price + qty * price) / (open + qty);
        p->qty += signed_qty;
    }
    else {
        //  Reducing, closing or flipping.
        double open = fabs (p->qty);
        double closed = qty < open ? qty : open;
        double per_unit = p->qty > 0 ? price - p->avg_price : p->avg_price - price;
        realized = closed * per_unit;
        p->qty = s_clean (p->qty + signed_qty);
        if (p->qty == 0)
            p->avg_price = 0;
        else if ((p->qty > 0) == buy)
            p->avg_price = price;           /* flipped: the rest opens at the fill's price */
    }
    p->realized_pnl = s_clean (p->realized_pnl + realized - fee);
    p->fees += fee;
    return realized;
}

double
fks_position_unrealized (const fks_position_t *p, double last)
{
    if (p->qty == 0 || !(last > 0))
        return 0;
    return s_clean (p->qty * (last - p->avg_price));
}
