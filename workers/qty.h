/*  qty.h - quantities as the signal and the execution worker both compute them.
 *
 *  A quantity is rounded down to the tradable step, FKS_SIGNAL_QTY_DECIMALS decimals (never up:
 *  an order is never bigger than what was asked). A share of the position (an alert's
 *  `quantity_type` `percent_of_position`) is sized by the signal worker from the position it
 *  expects and again, when the order is placed, by the execution worker from the position it
 *  locks (`position_share` in signal.created, schemas/envelope.md): one rule for both, here.
 *
 *  Pure functions: thread-safe, no I/O.
 */
#ifndef FKS_WORKER_QTY_H
#define FKS_WORKER_QTY_H

#include <stdbool.h>

#define FKS_QTY_DECIMALS_MAX 12

/*  qty rounded down to `decimals` decimals (clamped to 0-12); tiny representation errors
 *  (1e-12 of the value, at most 1e-6 of a step) round up instead, so 0.3 stays 0.3. */
double fks_qty_round_down (double qty, int decimals);

/*  v as the numeric columns keep it: 15 significant digits (what fks_worker_num writes), -0
 *  as 0, a value that is not finite as 0. So positions kept in memory for a transaction move
 *  exactly as they would if read back after every fill (float error never accumulates across
 *  a batch), and a quantity computed from others is ordered as 0.3, not 0.30000000000000004,
 *  while one of 13 or more digits (12345.12345678) keeps them all. */
double fks_qty_stored (double v);

/*  True when share is a usable share of a position: finite, more than 0 and at most 1. */
bool fks_qty_share_ok (double share);

/*  The quantity of an order (side buy, else sell) that trades `share` (fks_qty_share_ok) of the
 *  signed position pos: a share of the position on the other side when the order reduces it
 *  (reduce: a sell of half a long), else of the position on its own side (an add: a buy of half
 *  a long). That position's size times share, rounded down to decimals (-1: not rounded to a
 *  step, only kept to what the numeric columns hold, 15 significant digits), never more than
 *  it. 0 when there is no position on that side, or the share rounds to nothing. *base (may be
 *  NULL) gets the size of the position the share was taken of (0: none). */
double fks_qty_position_share (double pos, bool buy, bool reduce, double share, int decimals,
                               double *base);

#endif
