/*  orders.h - the order state machine and the ids that make an order happen once.
 *
 *  An order moves new -> submitted -> partially_filled -> filled, or ends rejected or
 *  cancelled from any open state:
 *
 *      new ──► submitted ──► partially_filled ──► filled
 *       │          │   └──────────────┼──────────► filled
 *       │          │                  │
 *       └──────────┴──────────────────┴──► rejected | cancelled
 *
 *  A filled, rejected or cancelled order is final. fks_order_apply_fill keeps filled_qty and
 *  the average fill price in step with each fill and moves the status; it refuses a fill that
 *  would overfill the order, so a bug or a confused broker can never make a position larger
 *  than what was ordered.
 *
 *  The client order id is derived from the signal (or, for a manual order, from the order's
 *  own id): "fks-" and the first 20 hex digits of SHA-256 over the id's 16 bytes. The same
 *  signal always gives the same client order id, and the orders table holds it UNIQUE, so a
 *  redelivered signal can never become a second order, here or at an exchange that
 *  deduplicates on it.
 *
 *  Pure functions: thread-safe.
 */
#ifndef FKS_ORDERS_H
#define FKS_ORDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/id.h"

#define FKS_CLIENT_ORDER_ID_MAX 25      /* "fks-" + 20 hex + NUL */
#define FKS_ORDER_SYMBOL_MAX    33

typedef enum {
    FKS_ORDER_NEW = 0,
    FKS_ORDER_SUBMITTED,
    FKS_ORDER_PARTIALLY_FILLED,
    FKS_ORDER_FILLED,
    FKS_ORDER_REJECTED,
    FKS_ORDER_CANCELLED
} fks_order_status_t;

typedef struct {
    fks_id_t id;
    char client_order_id[FKS_CLIENT_ORDER_ID_MAX + 12];     /* ours, or one the gateway set */
    bool has_signal;
    fks_id_t signal_id;
    bool has_corr;
    fks_id_t corr;
    char symbol[FKS_ORDER_SYMBOL_MAX];
    bool buy;
    bool limit;
    double qty;                     /* > 0 */
    double limit_price;             /* > 0 for limit orders */
    fks_order_status_t status;
    double filled_qty;
    double avg_fill_price;          /* 0 until the first fill */
    int fills;                      /* fills applied so far */
    int64_t created_ms;             /* when it was placed (Unix ms); 0 when not known */
} fks_order_t;

/*  "new", "submitted", "partially_filled", "filled", "rejected", "cancelled". */
const char *fks_order_status_name (fks_order_status_t status);

/*  Parses a status name. 0 or -1. */
int fks_order_status_parse (const char *text, fks_order_status_t *out);

/*  True for new, submitted and partially_filled. */
bool fks_order_is_open (fks_order_status_t status);

/*  True when the machine allows from -> to. */
bool fks_order_can_move (fks_order_status_t from, fks_order_status_t to);

/*  Moves o to `to` when allowed: 0, or -1 (o unchanged). */
int fks_order_move (fks_order_t *o, fks_order_status_t to);

/*  The client order id for an order made from source (a signal id, or a manual order's id):
 *  "fks-" + the first 20 lowercase hex digits of SHA-256 (source's 16 bytes). */
void fks_order_client_id (const fks_id_t *source, char out[FKS_CLIENT_ORDER_ID_MAX]);

/*  Applies a fill of *qty at price to o: filled_qty and avg_fill_price are updated and the
 *  status moves to partially_filled or filled. A fill within 1e-9 of the rest completes the
 *  order exactly, and *qty becomes that rest: the caller records and applies *qty, so the
 *  fills of a filled order add up to its quantity. Returns 0, or -1 with the reason in why
 *  (cap bytes) when the order is not open, qty or price is not positive, or the fill would
 *  overfill the order. */
int fks_order_apply_fill (fks_order_t *o, double *qty, double price, char *why, size_t cap);

#endif
