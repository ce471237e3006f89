/*  risk.h - the limits every order passes before it reaches a broker.
 *
 *  The execution worker checks each order, from a signal or from the REST API, against:
 *
 *      symbol_allowlist    the symbol is on FKS_RISK_SYMBOLS (empty: every symbol)
 *      max_qty             the order's quantity <= FKS_RISK_MAX_QTY
 *      max_notional        quantity * the price it may fill at <= FKS_RISK_MAX_NOTIONAL: the
 *                          latest price (else the signal's) for a market order; the limit
 *                          for a buy limit (it never fills above it); the higher of the
 *                          limit and the latest price for a sell limit (it fills at the
 *                          better of the two, never below the limit)
 *      max_position        |position after the order| <= FKS_RISK_MAX_POSITION, where "after"
 *                          counts every open order of the symbol on the order's side as
 *                          filled too (the position plus those orders' remaining quantity
 *                          plus this order): resting limit orders can all fill on one bar,
 *                          so the limit holds whatever fills, in whatever order
 *      orders_per_minute   orders sent to a broker in this minute by every replica, this one
 *                          included, <= FKS_RISK_MAX_ORDERS_PER_MINUTE. Each order counts once
 *                          (execute.c keeps the minute's client order ids in Redis, so an
 *                          order handled again after a rollback is not counted again), and
 *                          only when it goes to the broker: an order refused by a rule or by
 *                          the circuit breaker, or found placed already, does not count. A
 *                          broker's refusal does count: the order reached it.
 *
 *  A limit of 0 is off. An order that only reduces the open position (a close) is never held
 *  back by the size limits (max_qty, max_notional, max_position) or by the allowlist, because
 *  refusing it would keep the risk it removes; the rate limit and the circuit breaker still
 *  apply. "Only reduces" means: on the side opposite the position, and either reduce-only
 *  (the execution worker cuts it to the position it finds at every fill, so it can never
 *  open one) or small enough that it and the other open orders on its side together do not
 *  exceed the position. A refusal names the rule, the limit and the value that broke it,
 *  which become the risk.rejected event.
 *
 *  Pure functions except fks_risk_limits_load (environment): thread-safe.
 */
#ifndef FKS_RISK_H
#define FKS_RISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FKS_RISK_MAX_SYMBOLS 256
#define FKS_RISK_SYMBOL_MAX  33

typedef struct {
    char symbols[FKS_RISK_MAX_SYMBOLS][FKS_RISK_SYMBOL_MAX];
    size_t n_symbols;               /* 0: every symbol is allowed */
    double max_qty;                 /* 0: off */
    double max_notional;            /* 0: off */
    double max_position;            /* 0: off */
    int64_t max_orders_per_minute;  /* 0: off */
} fks_risk_limits_t;

typedef struct {
    const char *symbol;             /* normalised */
    bool buy;
    double qty;                     /* > 0 */
    bool has_price;
    double price;                   /* the market price: latest, else the signal's */
    bool limit;                     /* a limit order, at limit_price (> 0) */
    double limit_price;
    bool reduce_only;               /* cut to the position at every fill (see above) */
    double position;                /* the symbol's position before the order, signed */
    double resting;                 /* remaining quantity of the symbol's other open orders
                                       on this order's side (>= 0) */
} fks_risk_order_t;

typedef struct {
    char rule[32];
    bool has_limit;
    double limit;
    bool has_value;
    double value;
    char message[256];
} fks_risk_verdict_t;

/*  Parses a comma-separated list of symbols (spaces allowed around them) into limits; each is
 *  normalised as the signal worker does (BINANCE:BTCUSDT and BTC/USDT are BTCUSDT). Returns 0,
 *  or -1 with the reason in err. NULL or "" clears the list. */
int fks_risk_parse_symbols (fks_risk_limits_t *limits, const char *list, char *err, size_t cap);

/*  Reads FKS_RISK_SYMBOLS, FKS_RISK_MAX_QTY, FKS_RISK_MAX_NOTIONAL, FKS_RISK_MAX_POSITION and
 *  FKS_RISK_MAX_ORDERS_PER_MINUTE (all off by default). 0 or -1 with err naming the variable. */
int fks_risk_limits_load (fks_risk_limits_t *limits, char *err, size_t cap);

/*  True when the order only reduces the open position: opposite side, and reduce-only or
 *  qty + resting <= |position|. */
bool fks_risk_reduces (const fks_risk_order_t *order);

/*  The price the notional limit values the order at (see max_notional above): true with
 *  *price set, false when none is known. */
bool fks_risk_notional_price (const fks_risk_order_t *order, double *price);

/*  Checks the size and symbol rules (not the rate: see fks_risk_check_rate). Returns 0 when
 *  the order passes, 1 when refused (*verdict filled). */
int fks_risk_check (const fks_risk_limits_t *limits, const fks_risk_order_t *order,
                    fks_risk_verdict_t *verdict);

/*  Checks the rate: placed is the number of orders in the current minute including this one.
 *  0 passes, 1 refused (*verdict filled). */
int fks_risk_check_rate (const fks_risk_limits_t *limits, int64_t placed,
                         fks_risk_verdict_t *verdict);

#endif
