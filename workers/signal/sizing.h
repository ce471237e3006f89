/*  sizing.h - how many units a signal trades, and where its stop and target sit.
 *
 *  An alert says how much to trade in one of TradersPost's quantity types (a fixed quantity,
 *  a dollar amount, a risk amount or percent, a percent of equity or of the open position), or
 *  says nothing, and then the worker's sizing rule decides (a fixed quantity, a fixed notional,
 *  or a percent of equity). Everything that needs a price uses the entry price the caller
 *  found (the alert's price, limit price or signal price, else the latest known price). Stops
 *  and targets given as a percent or an amount become prices on the right side of the entry.
 *
 *  Pure functions over their arguments: thread-safe, no I/O.
 */
#ifndef FKS_SIZING_H
#define FKS_SIZING_H

#include <stdbool.h>
#include <stddef.h>

/*  The worker's own rule, for alerts that carry no quantity (FKS_SIGNAL_SIZING). */
typedef enum {
    FKS_SIZING_NONE = 0,            /* an alert without quantity is filtered */
    FKS_SIZING_FIXED_QTY,           /* value units */
    FKS_SIZING_FIXED_NOTIONAL,      /* value in the quote asset / entry price */
    FKS_SIZING_PERCENT_EQUITY       /* value % of equity / entry price */
} fks_sizing_rule_t;

typedef struct {
    fks_sizing_rule_t rule;
    double value;                   /* > 0 unless rule is NONE */
    double equity;                  /* account equity in the quote asset, for percents */
    int qty_decimals;               /* quantities are rounded down to this many decimals */
} fks_sizing_cfg_t;

/*  How a level (stop loss, take profit) is expressed. */
typedef enum {
    FKS_LEVEL_NONE = 0, FKS_LEVEL_AT_PRICE, FKS_LEVEL_AT_PERCENT, FKS_LEVEL_AT_AMOUNT
} fks_level_kind_t;

typedef struct {
    fks_level_kind_t kind;
    double value;                   /* > 0 */
} fks_level_t;

/*  What the caller knows when sizing. */
typedef struct {
    const char *quantity_type;      /* the alert's, "" or NULL: fixed_quantity */
    bool has_quantity;
    double quantity;                /* > 0 when present */
    bool has_entry;
    double entry;                   /* entry price > 0 when present */
    double position_abs;            /* |open position| in units */
    fks_level_t stop;               /* the alert's stop loss, for risk-based types */
} fks_sizing_in_t;

/*  Parses FKS_SIGNAL_SIZING's value: "none", "fixed_quantity", "fixed_notional",
 *  "percent_of_equity". 0 or -1. */
int fks_sizing_rule_parse (const char *text, fks_sizing_rule_t *out);
const char *fks_sizing_rule_name (fks_sizing_rule_t rule);

/*  The quantity to trade, before rounding. Returns 0 with *qty > 0 and a short description
 *  of how it was found in how (cap bytes, e.g. "dollar_amount 500 at 25000"), or -1 with the
 *  reason in how (no quantity and no rule, a type that needs a price without one, a risk type
 *  without a stop, an unknown type...). */
int fks_sizing_qty (const fks_sizing_cfg_t *cfg, const fks_sizing_in_t *in, double *qty,
                    char *how, size_t cap);

/*  qty rounded down to `decimals` decimals (0-12); tiny representation errors (1e-9 of a
 *  step) round up instead, so 0.3 stays 0.3. */
double fks_sizing_round_down (double qty, int decimals);

/*  The price of a stop loss (stop true) or take profit for an order on side `buy` (true) or
 *  sell, given the entry. A price level is returned as it is; percents and amounts are
 *  measured from the entry, below it for a buy's stop and above for its target (the reverse for
 *  a sell). Returns 0 with *price > 0, or -1 (no level, no entry for a relative level, or a
 *  level that would fall at or below zero). */
int fks_sizing_level_price (const fks_level_t *level, bool stop, bool buy, bool has_entry,
                            double entry, double *price);

#endif
