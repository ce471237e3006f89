/*  orders.c - the order state machine and the ids that make an order happen once.
 *
 *  See orders.h. The transition table is the whole state machine; everything that changes an
 *  order's status in the execution worker goes through fks_order_move or
 *  fks_order_apply_fill, so an order can never go back from a final state.
 */
#include "workers/execution/orders.h"

#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

static const char *s_names[] = {
    "new", "submitted", "partially_filled", "filled", "rejected", "cancelled"
};

const char *
fks_order_status_name (fks_order_status_t status)
{
    if ((unsigned) status < sizeof s_names / sizeof s_names[0])
        return s_names[status];
    return "unknown";
}

int
fks_order_status_parse (const char *text, fks_order_status_t *out)
{
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof s_names / sizeof s_names[0]; i++)
        if (strcmp (text, s_names[i]) == 0) {
            *out = (fks_order_status_t) i;
            return 0;
        }
    return -1;
}

bool
fks_order_is_open (fks_order_status_t status)
{
    return status == FKS_ORDER_NEW || status == FKS_ORDER_SUBMITTED
        || status == FKS_ORDER_PARTIALLY_FILLED;
}

bool
fks_order_can_move (fks_order_status_t from, fks_order_status_t to)
{
    switch (from) {
        case FKS_ORDER_NEW:
            return to == FKS_ORDER_SUBMITTED || to == FKS_ORDER_REJECTED
                || to == FKS_ORDER_CANCELLED;
        case FKS_ORDER_SUBMITTED:
            return to == FKS_ORDER_PARTIALLY_FILLED || to == FKS_ORDER_FILLED
                || to == FKS_ORDER_REJECTED || to == FKS_ORDER_CANCELLED;
        case FKS_ORDER_PARTIALLY_FILLED:
            return to == FKS_ORDER_PARTIALLY_FILLED || to == FKS_ORDER_FILLED
                || to == FKS_ORDER_REJECTED || to == FKS_ORDER_CANCELLED;
        default:
            return false;
    }
}

int
fks_order_move (fks_order_t *o, fks_order_status_t to)
{
    if (!fks_order_can_move (o->status, to))
        return -1;
    o->status = to;
    return 0;
}

void
fks_order_client_id (const fks_id_t *source, char out[FKS_CLIENT_ORDER_ID_MAX])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256 (source->b, FKS_ID_SIZE, digest);
    static const char hex[] = "0123456789abcdef";
    memcpy (out, "fks-", 4);
    for (int i = 0; i < 10; i++) {
        out[4 + 2 * i] = hex[digest[i] >> 4];
        out[5 + 2 * i] = hex[digest[i] & 15];
    }
    out[24] = '\0';
}

int
fks_order_apply_fill (fks_order_t *o, double *qty_io, double price, char *why, size_t cap)
{
    double qty = *qty_io;
    if (!fks_order_is_open (o->status) || o->status == FKS_ORDER_NEW) {
        snprintf (why, cap, "order %s is %s: it takes no fills", o->client_order_id,
                  fks_order_status_name (o->status));
        return -1;
    }
    if (!isfinite (qty) || qty <= 0 || !isfinite (price) || price <= 0) {
        snprintf (why, cap, "fill of %.10g at %.10g is not positive", qty, price);
        return -1;
    }
    double rest = o->qty - o->filled_qty;
    double tol = 1e-9 * (o->qty > 1 ? o->qty : 1);
    if (qty > rest + tol) {
        snprintf (why, cap, "fill of %.10g overfills order %s (%.10g of %.10g filled)", qty,
                  o->client_order_id, o->filled_qty, o->qty);
        return -1;
    }
    bool complete = qty >= rest - tol;
    if (complete)
        *qty_io = qty = rest;
    double total = o->filled_qty + qty;
    o->avg_fill_price = (o->avg_fill_price * o->filled_qty + price * qty) / total;
    o->filled_qty = complete ? o->qty : total;
    o->fills++;
    o->status = complete ? FKS_ORDER_FILLED : FKS_ORDER_PARTIALLY_FILLED;
    return 0;
}
