/*  broker.h - what the execution worker needs from a broker, whichever it is.
 *
 *  A broker takes an order (fks_order_t, already past the risk checks and with its client
 *  order id), and answers with an outcome: accepted (with the fills that happened at once, if
 *  any; the rest of the order rests), rejected (with the broker's reason), or cancelled. Later
 *  market data (a bar) may fill a resting order, and a cancel request ends it. The execution
 *  worker applies whatever comes back to the order, the fills table and the position in one
 *  transaction, so a broker never writes anything itself.
 *
 *  A call returns 0 when *out holds the broker's answer, including a refusal: a refusal is an
 *  answer. It returns -1 when the broker could not be asked or did not answer (network down,
 *  timeout): the order's fate is unknown, out->reason says why, and the worker counts it as a
 *  failure for the circuit breaker and tries again later with the same client order id.
 *
 *  Fill ids must be deterministic for the order (a retried call gives the same ids), because
 *  fills are unique per (broker, fill id): a fill seen twice is applied once.
 *
 *  Implementations: the paper broker (paper.h). Binance spot comes next behind the same
 *  table of functions.
 */
#ifndef FKS_BROKER_H
#define FKS_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "workers/execution/orders.h"

#define FKS_BROKER_MAX_FILLS  8
#define FKS_BROKER_NAME_MAX   32
#define FKS_FILL_ID_MAX       129
#define FKS_EXCHANGE_ID_MAX   129
#define FKS_BROKER_REASON_MAX 256

/*  What is known of the market when an order is submitted. */
typedef struct {
    bool has_last;
    double last;                    /* the latest known price (the latest bar, a trade) */
    bool has_ref;
    double ref;                     /* the order's reference price (the alert's price) */
} fks_quote_t;

/*  A price bar, for resting orders. One bar is offered to each resting order of its symbol
 *  in turn; the caller adds each order's fills to `taken`, so that a broker which lets a bar
 *  fill only part of its volume shares that part among the orders. A bar that ended before
 *  an order was placed (close_time_ms <= order->created_ms; without a close time, one that
 *  opened before it) holds no price the order could have traded at: it fills nothing. */
typedef struct {
    int64_t open_time_ms;
    double open, high, low, close;
    double volume;                  /* 0 when unknown */
    int64_t close_time_ms;          /* open time + the interval; 0 when unknown */
    double taken;                   /* filled from this bar already, by earlier orders */
} fks_bar_t;

/*  A bar announced again (feeds poll the forming bar: same open time, a wider range, more
 *  volume), turned into what it adds to `seen`, its announcement offered before. Since then
 *  the market went from seen->close to bar->close, and reached bar->high only if that is above
 *  seen->high (bar->low alike); any other price of the range may have been made before, when
 *  an order placed since was not there. So the part offered opens at seen->close, spans both
 *  closes and any new extreme, and holds the volume traded since. False when there is nothing
 *  new: the same announcement again, or an older one (less volume). */
static inline bool
fks_bar_since (fks_bar_t *bar, const fks_bar_t *seen)
{
    if (bar->volume < seen->volume
        || (bar->volume == seen->volume && bar->high == seen->high && bar->low == seen->low
            && bar->close == seen->close))
        return false;
    double high = bar->close > seen->close ? bar->close : seen->close;
    double low = bar->close < seen->close ? bar->close : seen->close;
    if (bar->high > seen->high)
        high = bar->high;
    if (bar->low < seen->low)
        low = bar->low;
    bar->open = seen->close;
    bar->high = high;
    bar->low = low;
    bar->volume -= seen->volume;
    return true;
}

typedef struct {
    char fill_id[FKS_FILL_ID_MAX];
    double qty;
    double price;
    double fee;
    char fee_asset[17];             /* "" when not known */
} fks_broker_fill_t;

typedef enum {
    FKS_BROKER_ACCEPTED = 0,        /* working, or done when the fills complete it */
    FKS_BROKER_REJECTED,
    FKS_BROKER_CANCELLED
} fks_broker_outcome_t;

typedef struct {
    fks_broker_outcome_t outcome;
    char exchange_order_id[FKS_EXCHANGE_ID_MAX];    /* "" when the broker gave none */
    fks_broker_fill_t fills[FKS_BROKER_MAX_FILLS];
    size_t n_fills;
    char reason[FKS_BROKER_REASON_MAX];
} fks_broker_result_t;

typedef struct fks_broker_t fks_broker_t;

typedef struct {
    const char *name;               /* "paper": the orders.broker column */
    bool simulated;                 /* submit has no effect outside FKS (paper): the worker may
                                       call it before asking the circuit breaker, and ask and
                                       record in one step (fks_breaker_try) */
    int (*submit) (fks_broker_t *self, const fks_order_t *order, const fks_quote_t *quote,
                   fks_broker_result_t *out);
    int (*cancel) (fks_broker_t *self, const fks_order_t *order, fks_broker_result_t *out);
    /*  Offers a bar to a resting order of the bar's symbol. */
    int (*on_bar) (fks_broker_t *self, const fks_order_t *order, const fks_bar_t *bar,
                   fks_broker_result_t *out);
    void (*destroy) (fks_broker_t *self);
} fks_broker_ops_t;

struct fks_broker_t {
    const fks_broker_ops_t *ops;
};

static inline const char *
fks_broker_name (const fks_broker_t *self)
{
    return self->ops->name;
}

static inline bool
fks_broker_simulated (const fks_broker_t *self)
{
    return self->ops->simulated;
}

static inline int
fks_broker_submit (fks_broker_t *self, const fks_order_t *order, const fks_quote_t *quote,
                   fks_broker_result_t *out)
{
    return self->ops->submit (self, order, quote, out);
}

static inline int
fks_broker_cancel (fks_broker_t *self, const fks_order_t *order, fks_broker_result_t *out)
{
    return self->ops->cancel (self, order, out);
}

static inline int
fks_broker_on_bar (fks_broker_t *self, const fks_order_t *order, const fks_bar_t *bar,
                   fks_broker_result_t *out)
{
    return self->ops->on_bar (self, order, bar, out);
}

/*  Destroys any broker; NULL or *self_p NULL is a no-op. */
static inline void
fks_broker_destroy (fks_broker_t **self_p)
{
    if (self_p && *self_p) {
        (*self_p)->ops->destroy (*self_p);
        *self_p = NULL;
    }
}

#endif
