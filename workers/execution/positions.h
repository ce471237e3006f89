/*  positions.h - a symbol's net position, average price and PnL, moved by fills.
 *
 *  A position is signed (long > 0, short < 0, flat 0) with the average price of what is open.
 *  A fill in the position's direction (or from flat) raises it and re-averages the price; a
 *  fill against it closes up to its size, realising (price - average) per unit closed (the
 *  reverse for a short), and whatever is left over opens a new position on the other side at
 *  the fill's price. Fees are subtracted from realised PnL as they are paid, so realised PnL
 *  is "after fees". Unrealised PnL is qty * (last price - average).
 *
 *  Pure functions: thread-safe. The execution worker loads the row, applies the fill and
 *  stores it back in the transaction that inserts the fill, under the row's lock.
 */
#ifndef FKS_POSITIONS_H
#define FKS_POSITIONS_H

#include <stdbool.h>

typedef struct {
    double qty;                     /* signed */
    double avg_price;               /* 0 when flat */
    double realized_pnl;            /* after fees */
    double fees;                    /* paid so far */
} fks_position_t;

/*  Applies a fill (buy or sell, qty > 0 at price > 0, paying fee, which may be negative for
 *  a rebate). Returns the PnL this fill realised (before its fee). Values that come out
 *  within 1e-12 of zero become exactly zero, so a position closed in several parts ends flat. */
double fks_position_apply (fks_position_t *p, bool buy, double qty, double price, double fee);

/*  Unrealised PnL against last (0 when flat or last is not positive). */
double fks_position_unrealized (const fks_position_t *p, double last);

#endif
