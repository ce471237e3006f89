/*  paper.h - the built-in paper broker: simulated fills at the latest known price.
 *
 *  Market orders fill at once, completely, at the latest known price (the latest bar when
 *  there is one, else the alert's price), moved against the order by the configured slippage,
 *  and pay the configured fee on the notional. With no price at all the order is rejected
 *  ("no price known"), which counts as a broker failure for the circuit breaker.
 *
 *  A limit order that is marketable when it arrives fills at once at the better of its limit
 *  and the market; otherwise it rests until a bar crosses it: a buy fills when the bar's low
 *  reaches the limit (at the limit, or at the open if the bar opened below it), a sell when the
 *  high reaches it. Only a bar that was still open when the order was placed, or a later
 *  one, fills it: a bar that closed before (its open time plus its interval) is history the
 *  order was not there for, such as a replayed or backfilled bar. A bar announced again (the
 *  forming bar) reaches the broker as what it adds to its last announcement (broker.h,
 *  fks_bar_since: the execution worker keeps the announcements), and of a symbol that comes
 *  in two intervals only the shorter's bars reach it. With
 *  FKS_PAPER_MAX_VOLUME_SHARE set, a bar fills at most that share of its volume, in total
 *  over all the orders it fills (the first placed are served first: fks_bar_t.taken), so
 *  large orders fill in parts (order.partially_filled). Cancels always succeed.
 *
 *  Fill ids are the client order id and the fill's number ("fks-...-1", "-2", ...), so the
 *  same order state always gives the same ids. Thread-safe: the broker holds only its
 *  configuration.
 */
#ifndef FKS_PAPER_H
#define FKS_PAPER_H

#include "workers/execution/broker.h"

typedef struct {
    double slippage_bps;            /* FKS_PAPER_SLIPPAGE_BPS, default 0 */
    double fee_bps;                 /* FKS_PAPER_FEE_BPS, default 10 (0.1 %) */
    double max_volume_share;        /* FKS_PAPER_MAX_VOLUME_SHARE in (0, 1], 0: no limit */
    char fee_asset[17];             /* FKS_PAPER_FEE_ASSET, default "" (the quote asset) */
} fks_paper_cfg_t;

void fks_paper_cfg_defaults (fks_paper_cfg_t *cfg);

/*  Reads the FKS_PAPER_* variables. 0, or -1 with err naming the variable. */
int fks_paper_cfg_load (fks_paper_cfg_t *cfg, char *err, size_t cap);

/*  A paper broker (name "paper") with cfg (NULL: defaults). NULL on allocation failure. */
fks_broker_t *fks_paper_new (const fks_paper_cfg_t *cfg);

#endif
