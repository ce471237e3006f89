/*  normalize.h - an accepted alert turned into a signal, or into a reason why not.
 *
 *  The signal worker reads each webhook.received body into an fks_signal_alert_t
 *  (fks_signal_alert_read), normalises its symbol (common/symbol.h), looks up the open
 *  position and the latest price of that symbol, and asks fks_signal_decide what to do:
 *
 *    - CREATE: a signal with a side, a quantity, an order type and its prices;
 *    - CANCEL: cancel the open orders of the symbol (`action: cancel`);
 *    - FILTER: nothing to trade, with the reason (stale, in the future, nothing to close,
 *      no quantity, ...). Nothing is dropped without a reason.
 *
 *  The semantics are TradingView's and TradersPost's (../shared/DESIGN.md, "Webhook
 *  contract"): buy closes a short and opens a long, sell the reverse; long/short are buy/sell;
 *  close, exit and flat close the open position; market_position or sentiment `flat` turn a
 *  buy or sell into a close only; a buy while market_position says `short` reduces the short
 *  (and the reverse); position_size is a target: trade the difference; add adds to the open
 *  position. Orders that may only reduce a position are marked reduce_only, so that the
 *  execution worker can cut them to the position it finds when it runs; a close of the whole
 *  position (close_position), a buy or sell that first closes the opposite side (open_qty), a
 *  target (target) and a share of the position (position_share: an alert whose quantity_type
 *  is percent_of_position, whether it reduces or adds) are sized again by the execution worker
 *  from the position it locks.
 *
 *  Pure functions (the caller does the I/O): thread-safe.
 */
#ifndef FKS_SIGNAL_NORMALIZE_H
#define FKS_SIGNAL_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "bus/envelope.h"
#include "common/id.h"
#include "workers/signal/sizing.h"
#include "common/symbol.h"

#define FKS_SIGNAL_SYMBOL_MAX FKS_SYMBOL_MAX
#define FKS_SIGNAL_REASON_MAX 512

/*  A webhook.received body, as the signal worker reads it. Strings are "" when absent. */
typedef struct {
    fks_id_t inbox_id;
    char source[17];
    char symbol[65];                /* as the alert wrote it */
    char action[17];
    bool has_quantity;      double quantity;
    char quantity_type[33];
    bool has_price;         double price;
    char order_type[17];
    bool has_limit_price;   double limit_price;
    bool has_signal_price;  double signal_price;
    fks_level_t stop_loss;
    bool stop_trailing;             /* stop_loss is a trailing_stop: its level is where it
                                       starts */
    fks_level_t take_profit;
    char strategy[129];
    char interval[17];
    char exchange[65];
    bool has_alert_time;    int64_t alert_time_ms;
    bool has_position_size; double position_size;
    char market_position[17];
    char sentiment[17];
    bool has_confidence;    double confidence;
} fks_signal_alert_t;

/*  Reads a webhook.received envelope's body. Returns 0, or -1 with the reason in why (cap
 *  bytes) when a field cannot be used (the schema already guarantees the kinds; this checks
 *  values: positive prices and quantities, confidence within 0-1, a readable stop/target). */
int fks_signal_alert_read (const fks_envelope_t *env, fks_signal_alert_t *alert, char *why,
                           size_t cap);

typedef struct {
    fks_sizing_cfg_t sizing;
    int64_t max_age_ms;             /* older alerts are stale */
    int64_t max_future_ms;          /* alert times further ahead are refused */
} fks_signal_cfg_t;

/*  The world when deciding. */
typedef struct {
    int64_t now_ms;
    int64_t received_ms;            /* when the gateway accepted the alert (envelope ts) */
    double position;                /* the symbol's open position, signed */
    bool has_last_price;
    double last_price;              /* latest known price of the symbol */
} fks_signal_ctx_t;

typedef enum { FKS_SIGNAL_FILTER = 0, FKS_SIGNAL_CREATE, FKS_SIGNAL_CANCEL } fks_signal_kind_t;

typedef struct {
    fks_signal_kind_t kind;
    char symbol[FKS_SIGNAL_SYMBOL_MAX];
    char action[8];                 /* signals.action: buy sell exit cancel add ("" when
                                       the alert had no usable action) */
    char side[5];                   /* buy / sell (CREATE; also a refused buy or sell) */
    double qty;                     /* > 0 (CREATE) */
    char order_type[7];             /* market / limit */
    bool has_limit_price;   double limit_price;
    bool has_price;         double price;       /* the reference (entry) price */
    bool has_stop_loss;     double stop_loss;
    bool has_take_profit;   double take_profit;
    bool has_target;        double target;      /* position_size, when it drove the size */
    bool reduce_only;
    //  What depends on the position is decided again by the execution worker against the
    //  position it locks (this worker's view of it may be a moment old: an earlier alert's
    //  order may not be filled yet), and qty is then only this worker's estimate:
    bool close_position;            /* close all of the position this order reduces */
    bool has_open_qty;      double open_qty;    /* buy/sell: close an opposite position, as
                                                   found then, and open this much */
    bool has_position_share;                    /* percent_of_position: this share (0 < x <=
                                                   1) of the position as found then, */
    double position_share;
    int qty_decimals;                           /* rounded down to this many decimals */
    //  The outcome rests on the position, not only the size (a close, a reduce, a target, an
    //  add, a share of the position): the caller should decide with the position as it will
    //  be once the signals still on their way to execution are filled (fks_signal_position_after).
    bool position_matters;
    char reason[FKS_SIGNAL_REASON_MAX];         /* how it was derived, or why it was filtered */
} fks_signal_decision_t;

/*  Decides what alert means, given cfg and ctx; alert->symbol must already be normalised
 *  into `symbol`. Always fills *out (kind FILTER with a reason when nothing is to be done). */
void fks_signal_decide (const fks_signal_cfg_t *cfg, const fks_signal_alert_t *alert,
                        const char *symbol, const fks_signal_ctx_t *ctx,
                        fks_signal_decision_t *out);

/*  The position pos becomes once a CREATE decision d is filled as sized: its share of pos
 *  (position_share: as the execution worker will size it, fks_qty_position_share; nothing
 *  when pos has nothing on the side the share is of), its target, flat after a close of the
 *  whole position, else pos plus (a buy) or minus (a sell) its qty. */
double fks_signal_position_after (double pos, const fks_signal_decision_t *d);

#endif
