/*  risk.c - the limits every order passes before it reaches a broker.
 *
 *  See risk.h. The rules run in a fixed order (allowlist, quantity, notional, position, then
 *  the rate) so that the same order is always refused for the same reason, and the rate
 *  counter is only touched by orders that passed everything else.
 */
#include "workers/execution/risk.h"
#include "common/config.h"
#include "common/symbol.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EPS 1e-12

int
fks_risk_parse_symbols (fks_risk_limits_t *limits, const char *list, char *err, size_t cap)
{
    limits->n_symbols = 0;
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        size_t len = (size_t) (end - p);
        while (len && p[len - 1] == ' ')
            len--;
        char raw[80];
        if (len >= sizeof raw) {
            snprintf (err, cap, "FKS_RISK_SYMBOLS: symbol '%.20s...' is too long", p);
            return -1;
        }
        memcpy (raw, p, len);
        raw[len] = '\0';
        if (limits->n_symbols == FKS_RISK_MAX_SYMBOLS) {
            snprintf (err, cap, "FKS_RISK_SYMBOLS: more than %d symbols", FKS_RISK_MAX_SYMBOLS);
            return -1;
        }
        char why[160];
        if (fks_symbol_normalize (raw, limits->symbols[limits->n_symbols], why, sizeof why) != 0) {
            snprintf (err, cap, "FKS_RISK_SYMBOLS: %s", why);
            return -1;
        }
        limits->n_symbols++;
        p = end;
    }
    return 0;
}

int
fks_risk_limits_load (fks_risk_limits_t *limits, char *err, size_t cap)
{
    memset (limits, 0, sizeof *limits);
    fks_config_err_t e;
    char *list = NULL;
    if (fks_config_str ("FKS_RISK_SYMBOLS", "", &list, &e) < 0
        || fks_config_double ("FKS_RISK_MAX_QTY", 0, 0, 1e15, &limits->max_qty, &e) < 0
        || fks_config_double ("FKS_RISK_MAX_NOTIONAL", 0, 0, 1e18, &limits->max_notional,
                              &e) < 0
        || fks_config_double ("FKS_RISK_MAX_POSITION", 0, 0, 1e15, &limits->max_position,
                              &e) < 0
        || fks_config_int ("FKS_RISK_MAX_ORDERS_PER_MINUTE", 0, 0, 100000000,
                           &limits->max_orders_per_minute, &e) < 0) {
        free (list);
        snprintf (err, cap, "%s", e.msg);
        return -1;
    }
    int rc = fks_risk_parse_symbols (limits, list, err, cap);
    free (list);
    return rc;
}

bool
fks_risk_reduces (const fks_risk_order_t *o)
{
    if (fabs (o->position) <= S_EPS)
        return false;
    bool opposite = o->buy ? o->position < 0 : o->position > 0;
    if (!opposite)
        return false;
    //  A reduce-only order is cut at every fill; any other must fit, with what else rests on
    //  its side (all of it may fill first), inside the position.
    return o->reduce_only || o->qty + fmax (0, o->resting) <= fabs (o->position) + S_EPS;
}

bool
fks_risk_notional_price (const fks_risk_order_t *o, double *price)
{
    bool market = o->has_price && o->price > 0;
    if (o->limit && o->limit_price > 0) {
        //  A buy limit fills at its limit or lower; a sell limit at its limit or higher, and at
        //  once at the market when that is higher.
        *price = !o->buy && market && o->price > o->limit_price ? o->price : o->limit_price;
        return true;
    }
    if (!market)
        return false;
    *price = o->price;
    return true;
}

static int
s_refuse (fks_risk_verdict_t *v, const char *rule, bool has_limit, double limit,
          bool has_value, double value, const char *message)
{
    memset (v, 0, sizeof *v);
    snprintf (v->rule, sizeof v->rule, "%s", rule);
    v->has_limit = has_limit;
    v->limit = limit;
    v->has_value = has_value;
    v->value = value;
    snprintf (v->message, sizeof v->message, "%s", message);
    return 1;
}

int
fks_risk_check (const fks_risk_limits_t *l, const fks_risk_order_t *o, fks_risk_verdict_t *v)
{
    char msg[256];
    if (fks_risk_reduces (o))
        return 0;
    if (l->n_symbols > 0) {
        bool found = false;
        for (size_t i = 0; i < l->n_symbols && !found; i++)
            found = strcmp (l->symbols[i], o->symbol) == 0;
        if (!found) {
            snprintf (msg, sizeof msg, "%s is not on the symbol allowlist (FKS_RISK_SYMBOLS)",
                      o->symbol);
            return s_refuse (v, "symbol_allowlist", false, 0, false, 0, msg);
        }
    }
    if (l->max_qty > 0 && o->qty > l->max_qty + S_EPS) {
        snprintf (msg, sizeof msg, "quantity %.10g %s is above the limit of %.10g", o->qty,
                  o->symbol, l->max_qty);
        return s_refuse (v, "max_qty", true, l->max_qty, true, o->qty, msg);
    }
    double price;
    if (l->max_notional > 0) {
        if (!fks_risk_notional_price (o, &price)) {
            snprintf (msg, sizeof msg, "no price is known for %s to check the notional limit "
                      "of %.10g", o->symbol, l->max_notional);
            return s_refuse (v, "max_notional", true, l->max_notional, false, 0, msg);
        }
        double notional = o->qty * price;
        if (notional > l->max_notional * (1 + 1e-12)) {
            snprintf (msg, sizeof msg, "notional %.10g (%.10g %s at %.10g%s) is above the limit "
                      "of %.10g", notional, o->qty, o->symbol, price,
                      o->limit && price == o->limit_price ? ", the limit" : "",
                      l->max_notional);
            return s_refuse (v, "max_notional", true, l->max_notional, true, notional, msg);
        }
    }
    if (l->max_position > 0) {
        //  As if every open order on this side filled, then this one.
        double side = o->buy ? 1 : -1;
        double resting = fmax (0, o->resting);
        double before = o->position + side * resting;
        double after = before + side * o->qty;
        if (fabs (after) > l->max_position + S_EPS && fabs (after) > fabs (before)) {
            if (resting > S_EPS)
                snprintf (msg, sizeof msg, "position would be %.10g %s with this order and "
                          "the %.10g resting in open orders, beyond the limit of %.10g", after,
                          o->symbol, resting, l->max_position);
            else
                snprintf (msg, sizeof msg, "position would be %.10g %s, beyond the limit of "
                          "%.10g", after, o->symbol, l->max_position);
            return s_refuse (v, "max_position", true, l->max_position, true, fabs (after), msg);
        }
    }
    return 0;
}

int
fks_risk_check_rate (const fks_risk_limits_t *l, int64_t placed, fks_risk_verdict_t *v)
{
    if (l->max_orders_per_minute <= 0 || placed <= l->max_orders_per_minute)
        return 0;
    char msg[256];
    snprintf (msg, sizeof msg, "%lld orders in this minute, above the limit of %lld",
              (long long) placed, (long long) l->max_orders_per_minute);
    return s_refuse (v, "orders_per_minute", true, (double) l->max_orders_per_minute, true,
                     (double) placed, msg);
}
