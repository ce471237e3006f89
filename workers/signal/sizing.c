/*  sizing.c - how many units a signal trades, and where its stop and target sit.
 *
 *  See sizing.h. The quantity types are TradersPost's, applied to the alert's `quantity`:
 *
 *      fixed_quantity       quantity units
 *      dollar_amount        quantity / entry
 *      percent_of_equity    equity * quantity% / entry
 *      percent_of_position  |position| * quantity%
 *      risk_dollar_amount   quantity / (distance from entry to stop)
 *      risk_percent         equity * quantity% / (distance from entry to stop)
 *
 *  Without a quantity the worker's rule applies. Results are checked to be finite and
 *  positive; a type that cannot be computed says why, and the signal worker files the alert
 *  as filtered with that reason.
 */
#include "workers/signal/sizing.h"
#include "workers/qty.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int
fks_sizing_rule_parse (const char *text, fks_sizing_rule_t *out)
{
    static const struct { const char *name; fks_sizing_rule_t rule; } map[] = {
        { "none", FKS_SIZING_NONE },
        { "fixed_quantity", FKS_SIZING_FIXED_QTY },
        { "fixed_notional", FKS_SIZING_FIXED_NOTIONAL },
        { "percent_of_equity", FKS_SIZING_PERCENT_EQUITY },
    };
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp (text, map[i].name) == 0) {
            *out = map[i].rule;
            return 0;
        }
    return -1;
}

const char *
fks_sizing_rule_name (fks_sizing_rule_t rule)
{
    switch (rule) {
        case FKS_SIZING_NONE:           return "none";
        case FKS_SIZING_FIXED_QTY:      return "fixed_quantity";
        case FKS_SIZING_FIXED_NOTIONAL: return "fixed_notional";
        case FKS_SIZING_PERCENT_EQUITY: return "percent_of_equity";
    }
    return "none";
}

double
fks_sizing_round_down (double qty, int decimals)
{
    return fks_qty_round_down (qty, decimals);
}

//  The distance from entry to stop, for the risk-based types.
static int
s_stop_distance (const fks_sizing_in_t *in, double *out)
{
    switch (in->stop.kind) {
        case FKS_LEVEL_AT_PRICE:
            *out = fabs (in->entry - in->stop.value);
            break;
        case FKS_LEVEL_AT_PERCENT:
            *out = in->entry * in->stop.value / 100.0;
            break;
        case FKS_LEVEL_AT_AMOUNT:
            *out = in->stop.value;
            break;
        default:
            return -1;
    }
    return isfinite (*out) && *out > 0 ? 0 : -1;
}

static int
s_fail (char *how, size_t cap, const char *msg)
{
    if (how && cap)
        snprintf (how, cap, "%s", msg);
    return -1;
}

int
fks_sizing_qty (const fks_sizing_cfg_t *cfg, const fks_sizing_in_t *in, double *qty,
                char *how, size_t cap)
{
    const char *type = in->quantity_type && *in->quantity_type ? in->quantity_type
                                                               : "fixed_quantity";
    double q = 0;
    bool entry_ok = in->has_entry && isfinite (in->entry) && in->entry > 0;

    if (!in->has_quantity) {
        switch (cfg->rule) {
            case FKS_SIZING_FIXED_QTY:
                q = cfg->value;
                snprintf (how, cap, "sizing rule fixed_quantity %.10g", cfg->value);
                break;
            case FKS_SIZING_FIXED_NOTIONAL:
                if (!entry_ok)
                    return s_fail (how, cap, "sizing rule fixed_notional needs a price and "
                                   "none is known (no price in the alert, no latest price)");
                q = cfg->value / in->entry;
                snprintf (how, cap, "sizing rule fixed_notional %.10g at %.10g", cfg->value,
                          in->entry);
                break;
            case FKS_SIZING_PERCENT_EQUITY:
                if (!entry_ok)
                    return s_fail (how, cap, "sizing rule percent_of_equity needs a price and "
                                   "none is known (no price in the alert, no latest price)");
                q = cfg->equity * cfg->value / 100.0 / in->entry;
                snprintf (how, cap, "sizing rule percent_of_equity %.10g%% of %.10g at %.10g",
                          cfg->value, cfg->equity, in->entry);
                break;
            default:
                return s_fail (how, cap, "the alert has no quantity and no sizing rule is "
                               "configured (FKS_SIGNAL_SIZING)");
        }
    }
    else if (!isfinite (in->quantity) || in->quantity <= 0)
        return s_fail (how, cap, "the alert's quantity must be greater than 0");
    else if (strcmp (type, "fixed_quantity") == 0) {
        q = in->quantity;
        snprintf (how, cap, "alert quantity %.10g", in->quantity);
    }
    else if (strcmp (type, "dollar_amount") == 0) {
        if (!entry_ok)
            return s_fail (how, cap, "quantity_type dollar_amount needs a price and none is "
                           "known (no price in the alert, no latest price)");
        q = in->quantity / in->entry;
        snprintf (how, cap, "dollar_amount %.10g at %.10g", in->quantity, in->entry);
    }
    else if (strcmp (type, "percent_of_equity") == 0) {
        if (!entry_ok)
            return s_fail (how, cap, "quantity_type percent_of_equity needs a price and none "
                           "is known (no price in the alert, no latest price)");
        if (cfg->equity <= 0)
            return s_fail (how, cap, "quantity_type percent_of_equity needs the account "
                           "equity (FKS_SIGNAL_EQUITY)");
        q = cfg->equity * in->quantity / 100.0 / in->entry;
        snprintf (how, cap, "percent_of_equity %.10g%% of %.10g at %.10g", in->quantity,
                  cfg->equity, in->entry);
    }
    else if (strcmp (type, "percent_of_position") == 0) {
        if (!(in->position_abs > 0))
            return s_fail (how, cap, "quantity_type percent_of_position with no open position");
        q = in->position_abs * in->quantity / 100.0;
        snprintf (how, cap, "percent_of_position %.10g%% of %.10g", in->quantity,
                  in->position_abs);
    }
    else if (strcmp (type, "risk_dollar_amount") == 0 || strcmp (type, "risk_percent") == 0) {
        bool pct = strcmp (type, "risk_percent") == 0;
        if (!entry_ok)
            return s_fail (how, cap, pct ? "quantity_type risk_percent needs a price"
                                         : "quantity_type risk_dollar_amount needs a price");
        double dist;
        if (s_stop_distance (in, &dist) != 0)
            return s_fail (how, cap, pct ? "quantity_type risk_percent needs a stop loss away "
                                           "from the entry price"
                                         : "quantity_type risk_dollar_amount needs a stop loss "
                                           "away from the entry price");
        if (pct && cfg->equity <= 0)
            return s_fail (how, cap, "quantity_type risk_percent needs the account equity "
                           "(FKS_SIGNAL_EQUITY)");
        double risk = pct ? cfg->equity * in->quantity / 100.0 : in->quantity;
        q = risk / dist;
        snprintf (how, cap, "%s %.10g over a stop distance of %.10g", type, in->quantity, dist);
    }
    else {
        char msg[128];
        snprintf (msg, sizeof msg, "unknown quantity_type '%.40s'", type);
        return s_fail (how, cap, msg);
    }
    if (!isfinite (q) || q <= 0)
        return s_fail (how, cap, "the computed quantity is not a positive number");
    *qty = q;
    return 0;
}

int
fks_sizing_level_price (const fks_level_t *level, bool stop, bool buy, bool has_entry,
                        double entry, double *price)
{
    if (!level || level->kind == FKS_LEVEL_NONE || !isfinite (level->value) || level->value <= 0)
        return -1;
    if (level->kind == FKS_LEVEL_AT_PRICE) {
        *price = level->value;
        return 0;
    }
    if (!has_entry || !isfinite (entry) || entry <= 0)
        return -1;
    //  Below the entry: a buy's stop, a sell's target. Above: a buy's target, a sell's stop.
    bool below = stop == buy;
    double dist = level->kind == FKS_LEVEL_AT_PERCENT ? entry * level->value / 100.0
                                                      : level->value;
    double p = below ? entry - dist : entry + dist;
    if (!isfinite (p) || p <= 0)
        return -1;
    *price = p;
    return 0;
}
