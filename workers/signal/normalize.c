/*  normalize.c - an accepted alert turned into a signal, or into a reason why not.
 *
 *  See normalize.h for the rules. The decision runs in a fixed order, and the first rule that
 *  says no gives the reason: the alert's time (stale or in the future), the action (from
 *  `action`, else `sentiment`), the target (position_size, or flat), then the quantity, whose
 *  rounding may still make it zero. Every reason is written for the person who set up the
 *  alert, with the numbers that made the decision.
 */
#include "workers/signal/normalize.h"
#include "workers/qty.h"
#include "common/stance.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EPS 1e-12

static int
s_why (char *why, size_t cap, const char *fmt, const char *field)
{
    if (why && cap)
        snprintf (why, cap, fmt, field);
    return -1;
}

//  A positive finite number from a nested map (stop_loss / take_profit), under either of two
//  spellings. 1 when absent, -1 when present but unusable.
static int
s_map_num (const msgpack_object *map, const char *k1, const char *k2, double *out)
{
    const msgpack_object *v = fks_msgpack_map_get (map, k1);
    if (!v && k2)
        v = fks_msgpack_map_get (map, k2);
    if (!v || v->type == MSGPACK_OBJECT_NIL)
        return 1;
    double d;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        d = v->via.f64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        d = (double) v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        d = (double) v->via.i64;
    else
        return -1;
    if (!isfinite (d) || d <= 0)
        return -1;
    *out = d;
    return 0;
}

//  A stop loss or take profit map: one of a price, a percent or an amount.
static int
s_read_level (const fks_envelope_t *env, const char *key, bool stop, fks_level_t *out,
              bool *trailing, char *why, size_t cap)
{
    memset (out, 0, sizeof *out);
    const msgpack_object *m = NULL;
    int rc = fks_envelope_get_obj (env, key, &m);
    if (rc == 1)
        return 0;
    if (rc < 0 || !m || m->type != MSGPACK_OBJECT_MAP)
        return s_why (why, cap, "%s is not a map", key);
    double v;
    if (trailing) {
        const msgpack_object *t = fks_msgpack_map_get (m, "type");
        *trailing = t && t->type == MSGPACK_OBJECT_STR && t->via.str.size == 13
                    && memcmp (t->via.str.ptr, "trailing_stop", 13) == 0;
    }
    int r = stop ? s_map_num (m, "stop_price", "stopPrice", &v)
                 : s_map_num (m, "limit_price", "limitPrice", &v);
    if (r == 0) {
        out->kind = FKS_LEVEL_AT_PRICE;
        out->value = v;
        return 0;
    }
    if (r < 0)
        return s_why (why, cap, "%s has an invalid price", key);
    if ((r = s_map_num (m, "percent", NULL, &v)) == 0) {
        out->kind = FKS_LEVEL_AT_PERCENT;
        out->value = v;
        return 0;
    }
    if (r < 0)
        return s_why (why, cap, "%s has an invalid percent", key);
    if ((r = s_map_num (m, "amount", NULL, &v)) == 0) {
        out->kind = FKS_LEVEL_AT_AMOUNT;
        out->value = v;
        return 0;
    }
    if (r < 0)
        return s_why (why, cap, "%s has an invalid amount", key);
    //  A map without a level: nothing FKS can place with the order.
    return 0;
}

static int
s_str (const fks_envelope_t *env, const char *key, char *buf, size_t cap, char *why,
       size_t wcap)
{
    if (fks_envelope_get_str (env, key, buf, cap) < 0)
        return s_why (why, wcap, "%s is not a usable string", key);
    return 0;
}

static int
s_num (const fks_envelope_t *env, const char *key, bool *has, double *out, bool positive,
       char *why, size_t cap)
{
    int rc = fks_envelope_get_f64 (env, key, out);
    if (rc < 0)
        return s_why (why, cap, "%s is not a number", key);
    *has = rc == 0;
    if (*has && (!isfinite (*out) || (positive && *out <= 0)))
        return s_why (why, cap, "%s must be greater than 0", key);
    return 0;
}

int
fks_signal_alert_read (const fks_envelope_t *env, fks_signal_alert_t *a, char *why, size_t cap)
{
    memset (a, 0, sizeof *a);
    if (fks_envelope_get_id (env, "inbox_id", &a->inbox_id) != 0)
        return s_why (why, cap, "%s is missing", "inbox_id");
    if (s_str (env, "source", a->source, sizeof a->source, why, cap)
        || s_str (env, "symbol", a->symbol, sizeof a->symbol, why, cap)
        || s_str (env, "action", a->action, sizeof a->action, why, cap)
        || s_str (env, "quantity_type", a->quantity_type, sizeof a->quantity_type, why, cap)
        || s_str (env, "order_type", a->order_type, sizeof a->order_type, why, cap)
        || s_str (env, "strategy", a->strategy, sizeof a->strategy, why, cap)
        || s_str (env, "interval", a->interval, sizeof a->interval, why, cap)
        || s_str (env, "exchange", a->exchange, sizeof a->exchange, why, cap)
        || s_str (env, "market_position", a->market_position, sizeof a->market_position, why,
                  cap)
        || s_str (env, "sentiment", a->sentiment, sizeof a->sentiment, why, cap))
        return -1;
    if (s_num (env, "quantity", &a->has_quantity, &a->quantity, true, why, cap)
        || s_num (env, "price", &a->has_price, &a->price, true, why, cap)
        || s_num (env, "limit_price", &a->has_limit_price, &a->limit_price, true, why, cap)
        || s_num (env, "signal_price", &a->has_signal_price, &a->signal_price, true, why, cap)
        || s_num (env, "position_size", &a->has_position_size, &a->position_size, false, why,
                  cap)
        || s_num (env, "confidence", &a->has_confidence, &a->confidence, false, why, cap))
        return -1;
    if (a->has_confidence && (a->confidence < 0 || a->confidence > 1))
        return s_why (why, cap, "%s must be between 0 and 1", "confidence");
    int64_t t;
    int rc = fks_envelope_get_i64 (env, "alert_time", &t);
    if (rc < 0)
        return s_why (why, cap, "%s is not an integer", "alert_time");
    if (rc == 0) {
        a->has_alert_time = true;
        a->alert_time_ms = t;
    }
    if (s_read_level (env, "stop_loss", true, &a->stop_loss, &a->stop_trailing, why, cap)
        || s_read_level (env, "take_profit", false, &a->take_profit, NULL, why, cap))
        return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Deciding

static void
s_filter (fks_signal_decision_t *d, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_filter (fks_signal_decision_t *d, const char *fmt, ...)
{
    d->kind = FKS_SIGNAL_FILTER;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (d->reason, sizeof d->reason, fmt, ap);
    va_end (ap);
}

typedef enum { S_BUY, S_SELL, S_EXIT, S_CANCEL, S_ADD, S_NONE } s_act_t;

static s_act_t
s_action (const fks_signal_alert_t *a)
{
    const char *x = a->action;
    if (!strcmp (x, "buy") || !strcmp (x, "long"))
        return S_BUY;
    if (!strcmp (x, "sell") || !strcmp (x, "short"))
        return S_SELL;
    if (!strcmp (x, "close") || !strcmp (x, "exit") || !strcmp (x, "flat"))
        return S_EXIT;
    if (!strcmp (x, "cancel"))
        return S_CANCEL;
    if (!strcmp (x, "add"))
        return S_ADD;
    if (*x)
        return S_NONE;
    //  No action: TradersPost's sentiment alone says where to go.
    switch (fks_stance_of_word (a->sentiment)) {
    case FKS_STANCE_LONG:
        return S_BUY;
    case FKS_STANCE_SHORT:
        return S_SELL;
    case FKS_STANCE_FLAT:
        return S_EXIT;
    default:
        return S_NONE;
    }
}

//  The decision trades a share of the position (percent_of_position): quantity % of it, at
//  most all of it. The execution worker takes that share again of the position it locks.
static void
s_share (fks_signal_decision_t *d, const fks_signal_cfg_t *cfg, double percent)
{
    d->has_position_share = true;
    d->position_share = percent >= 100 ? 1 : percent / 100.0;
    d->qty_decimals = cfg->sizing.qty_decimals;
}

static void
s_fmt_secs (char *buf, size_t cap, int64_t ms)
{
    snprintf (buf, cap, "%.1f s", (double) ms / 1000.0);
}

void
fks_signal_decide (const fks_signal_cfg_t *cfg, const fks_signal_alert_t *a,
                   const char *symbol, const fks_signal_ctx_t *ctx, fks_signal_decision_t *d)
{
    memset (d, 0, sizeof *d);
    snprintf (d->symbol, sizeof d->symbol, "%s", symbol);
    snprintf (d->order_type, sizeof d->order_type, "%s",
              strcmp (a->order_type, "limit") == 0 ? "limit" : "market");

    //  What the alert asks for, known before any rule can refuse it, so that a refused alert
    //  is still recorded with its action and side.
    s_act_t act = s_action (a);
    static const char *names[] = { "buy", "sell", "exit", "cancel", "add" };
    if (act != S_NONE)
        snprintf (d->action, sizeof d->action, "%s", names[act]);
    if (act == S_BUY || act == S_SELL)
        snprintf (d->side, sizeof d->side, "%s", act == S_BUY ? "buy" : "sell");

    //  1. Time: an alert from the future is a clock or template error; an old one is stale.
    char t1[32], t2[32];
    if (a->has_alert_time && a->alert_time_ms - ctx->now_ms > cfg->max_future_ms) {
        s_fmt_secs (t1, sizeof t1, a->alert_time_ms - ctx->now_ms);
        s_fmt_secs (t2, sizeof t2, cfg->max_future_ms);
        s_filter (d, "alert time is %s in the future (allowed clock skew %s)", t1, t2);
        return;
    }
    int64_t born = a->has_alert_time ? a->alert_time_ms : ctx->received_ms;
    if (ctx->now_ms - born > cfg->max_age_ms) {
        s_fmt_secs (t1, sizeof t1, ctx->now_ms - born);
        s_fmt_secs (t2, sizeof t2, cfg->max_age_ms);
        //  TradingView's {{time}} is the open time of the alert's bar, not when it fired: on
        //  any chart slower than FKS_SIGNAL_MAX_AGE it makes every alert stale. Say so.
        s_filter (d, "stale: the alert %s %s ago (limit %s)%s",
                  a->has_alert_time ? "fired" : "was received", t1, t2,
                  a->has_alert_time ? "; the alert's time must be when it fired, TradingView's "
                                      "{{timenow}}, not {{time}}, its bar's open time" : "");
        return;
    }

    //  2. The action.
    if (act == S_NONE) {
        s_filter (d, "no usable action ('%s') or sentiment ('%s')", a->action, a->sentiment);
        return;
    }
    if (act == S_CANCEL) {
        d->kind = FKS_SIGNAL_CANCEL;
        snprintf (d->reason, sizeof d->reason, "cancel the open orders of %s", symbol);
        return;
    }

    //  market_position (TradingView's), sentiment (TradersPost's) and position_size must
    //  agree on where the position stands after the alert (common/stance.h). The gateway
    //  refuses alerts where they do not; an alert that reaches the worker otherwise is refused
    //  the same way, since every reading of it trades against one of them.
    fks_stance_t stance = { .market_position = fks_stance_of_word (a->market_position),
                            .sentiment = fks_stance_of_word (a->sentiment),
                            .add = act == S_ADD, .exit = act == S_EXIT,
                            .has_size = a->has_position_size, .size = a->position_size };
    fks_stance_read_t sr;
    fks_stance_conflict_t conflict = fks_stance_check (&stance, &sr);
    int after = sr.after;
    const char *after_by = sr.after_by_market_position ? "market_position" : "sentiment";
    switch (conflict) {
    case FKS_STANCE_AGREE:
        break;
    case FKS_STANCE_MP_VS_SENTIMENT:
        s_filter (d, "conflicting fields: market_position %s but sentiment %s",
                  a->market_position, a->sentiment);
        return;
    case FKS_STANCE_ADD_TO_FLAT:
        s_filter (d, "conflicting fields: action add but %s flat", after_by);
        return;
    case FKS_STANCE_SIZE_VS_SIDE:
        s_filter (d, "conflicting fields: position_size %.10g but %s %s (position_size is "
                  "signed: negative when short)", a->position_size, after_by,
                  fks_stance_name (after));
        return;
    case FKS_STANCE_EXIT_WITH_SIZE:
        s_filter (d, "conflicting fields: action %s closes the position but position_size is "
                  "%.10g", a->action[0] ? a->action : a->sentiment, a->position_size);
        return;
    }

    double pos = ctx->position;
    double pos_abs = fabs (pos);
    bool flat_target = after == 0;
    //  A buy after which the strategy is still short (a sell still long) reduces it.
    bool reduce = (act == S_BUY && after < 0) || (act == S_SELL && after == 1);
    d->position_matters = a->has_position_size || act == S_EXIT || act == S_ADD || flat_target
                          || reduce || !strcmp (a->quantity_type, "percent_of_position");

    //  The entry price: the limit for a limit order, else the alert's price, its signal
    //  price, or the latest known price.
    bool limit = !strcmp (d->order_type, "limit");
    if (limit && !a->has_limit_price && !a->has_price) {
        s_filter (d, "a limit order needs a limit price");
        return;
    }
    if (limit) {
        d->has_limit_price = true;
        d->limit_price = a->has_limit_price ? a->limit_price : a->price;
    }
    bool has_entry = true;
    double entry = 0;
    const char *entry_from = "";
    if (limit)
        entry = d->limit_price, entry_from = "limit price";
    else if (a->has_price)
        entry = a->price, entry_from = "alert price";
    else if (a->has_signal_price)
        entry = a->signal_price, entry_from = "signal price";
    else if (ctx->has_last_price && ctx->last_price > 0)
        entry = ctx->last_price, entry_from = "latest price";
    else
        has_entry = false;
    if (has_entry) {
        d->has_price = true;
        d->price = a->has_price ? a->price : entry;
    }

    //  The sized quantity, computed lazily: not every path needs one.
    fks_sizing_in_t in = {
        .quantity_type = a->quantity_type, .has_quantity = a->has_quantity,
        .quantity = a->quantity, .has_entry = has_entry, .entry = entry,
        .position_abs = pos_abs, .stop = a->stop_loss
    };
    char how[256] = "";
    double sized = 0;
    int sized_rc = fks_sizing_qty (&cfg->sizing, &in, &sized, how, sizeof how);
    bool share = a->has_quantity && !strcmp (a->quantity_type, "percent_of_position")
                 && sized_rc == 0;

    bool buy;
    double qty;
    char basis[320];
    int dir = stance.sentiment == FKS_STANCE_UNSAID ? 0 : stance.sentiment;   /* flat: 0 */

    if (a->has_position_size && act != S_CANCEL) {
        //  3a. A target position: trade the difference.
        double target = (act == S_EXIT || flat_target) ? 0 : a->position_size;
        double delta = target - pos;
        if (fabs (delta) <= S_EPS) {
            s_filter (d, "already at the target position %.10g %s", target, symbol);
            return;
        }
        buy = delta > 0;
        qty = fabs (delta);
        d->has_target = true;
        d->target = target;
        d->reduce_only = (target == 0 || (target > 0) == (pos > 0)) && fabs (target) < pos_abs;
        snprintf (basis, sizeof basis, "target position %.10g from %.10g", target, pos);
    }
    else if (act == S_EXIT) {
        //  3b. Close what is open (all of it, or the alert's share of it).
        if (pos_abs <= S_EPS) {
            s_filter (d, "nothing to close: no open position in %s", symbol);
            return;
        }
        buy = pos < 0;
        qty = pos_abs;
        if (a->has_quantity) {
            if (sized_rc != 0) {
                s_filter (d, "%s", how);
                return;
            }
            if (sized < qty)
                qty = sized;
            if (share)
                s_share (d, cfg, a->quantity);
        }
        d->reduce_only = true;
        d->close_position = qty >= pos_abs;
        snprintf (basis, sizeof basis, "close %s position of %.10g%s", pos > 0 ? "long" : "short",
                  pos_abs, qty < pos_abs ? " in part" : "");
    }
    else if ((act == S_BUY || act == S_SELL) && flat_target) {
        //  3c. A strategy's exit: buy to cover a short, sell to close a long, nothing more.
        buy = act == S_BUY;
        if (buy ? pos >= -S_EPS : pos <= S_EPS) {
            s_filter (d, "nothing to close: %s with target flat and no %s position in %s",
                      buy ? "buy" : "sell", buy ? "short" : "long", symbol);
            return;
        }
        qty = pos_abs;
        d->reduce_only = true;
        d->close_position = true;
        snprintf (basis, sizeof basis, "close %s position of %.10g (target flat)",
                  buy ? "short" : "long", pos_abs);
    }
    else if (reduce) {
        //  3d. The strategy stays short (long) after a buy (sell): it reduced its position.
        //  TradersPost reads sentiment the same way: a sell with sentiment bullish is a
        //  partial exit of the long, never a reversal.
        buy = act == S_BUY;
        if (buy ? pos >= -S_EPS : pos <= S_EPS) {
            s_filter (d, "nothing to reduce: %s with %s %s and no %s position in %s",
                      buy ? "buy" : "sell", after_by,
                      sr.after_by_market_position ? a->market_position : a->sentiment,
                      buy ? "short" : "long", symbol);
            return;
        }
        if (sized_rc != 0) {
            s_filter (d, "%s", how);
            return;
        }
        qty = sized < pos_abs ? sized : pos_abs;
        d->reduce_only = true;
        if (share)
            s_share (d, cfg, a->quantity);
        snprintf (basis, sizeof basis, "reduce %s position of %.10g by %s",
                  buy ? "short" : "long", pos_abs, how);
    }
    else if (act == S_ADD) {
        //  3e. Add in the direction of the sentiment, else of the open position.
        int side = dir != 0 ? dir : (pos > S_EPS ? 1 : pos < -S_EPS ? -1 : 0);
        if (side == 0) {
            s_filter (d, "add needs an open position or a sentiment, and %s has neither",
                      symbol);
            return;
        }
        if (sized_rc != 0) {
            s_filter (d, "%s", how);
            return;
        }
        buy = side > 0;
        qty = sized;
        //  A share of the position it adds to (not of one it would reduce: a sentiment
        //  against the position), of at most all of it (fks_qty_share_ok).
        if (share && a->quantity <= 100 && (buy ? pos > S_EPS : pos < -S_EPS))
            s_share (d, cfg, a->quantity);
        snprintf (basis, sizeof basis, "add to %s: %s", buy ? "long" : "short", how);
    }
    else if ((act == S_BUY ? pos < -S_EPS : pos > S_EPS)
             && !strcmp (a->quantity_type, "percent_of_position")) {
        //  3f'. A share of the position on the other side: an exit of that share (TradersPost's
        //  partial exit), never a reversal.
        buy = act == S_BUY;
        if (sized_rc != 0) {
            s_filter (d, "%s", how);
            return;
        }
        qty = sized < pos_abs ? sized : pos_abs;
        d->reduce_only = true;
        d->close_position = qty >= pos_abs;
        if (share)
            s_share (d, cfg, a->quantity);
        snprintf (basis, sizeof basis, "reduce %s position of %.10g by %s",
                  buy ? "short" : "long", pos_abs, how);
    }
    else {
        //  3f. Buy (sell): close an opposite position, then open the sized amount.
        buy = act == S_BUY;
        if (sized_rc != 0) {
            s_filter (d, "%s", how);
            return;
        }
        double opposite = buy ? (pos < 0 ? pos_abs : 0) : (pos > 0 ? pos_abs : 0);
        qty = sized + opposite;
        d->open_qty = fks_sizing_round_down (sized, cfg->sizing.qty_decimals);
        d->has_open_qty = d->open_qty > 0;
        //  A share of the position on its own side (the other side's is 3f'): an add.
        if (share && opposite == 0 && a->quantity <= 100)
            s_share (d, cfg, a->quantity);
        if (opposite > 0)
            snprintf (basis, sizeof basis, "close %s position of %.10g and open %s",
                      buy ? "short" : "long", opposite, how);
        else
            snprintf (basis, sizeof basis, "%s", how);
    }

    //  4. Round to the tradable step.
    double rounded = fks_sizing_round_down (qty, cfg->sizing.qty_decimals);
    if (!isfinite (rounded)) {
        s_filter (d, "quantity %.12g is too large to trade", qty);
        return;
    }
    if (!(rounded > 0)) {
        s_filter (d, "quantity %.12g rounds to zero at %d decimals", qty,
                  cfg->sizing.qty_decimals);
        return;
    }
    d->kind = FKS_SIGNAL_CREATE;
    snprintf (d->side, sizeof d->side, "%s", buy ? "buy" : "sell");
    d->qty = rounded;

    //  5. Stop and target as prices, when they can be placed. A level the alert asked for is
    //  never dropped without a word: the reason says why it was not set.
    char notes[2][160] = { "", "" };
    for (int i = 0; i < 2; i++) {
        bool stop = i == 0;
        const fks_level_t *lv = stop ? &a->stop_loss : &a->take_profit;
        const char *name = stop ? "stop_loss" : "take_profit";
        double p;
        if (lv->kind == FKS_LEVEL_NONE)
            continue;
        if (fks_sizing_level_price (lv, stop, buy, has_entry, entry, &p) != 0) {
            const char *unit = lv->kind == FKS_LEVEL_AT_PERCENT ? "%" : "";
            if (!has_entry)
                snprintf (notes[i], sizeof notes[i], "; %s %.10g%s not set: no entry price is "
                          "known to measure it from (send price)", name, lv->value, unit);
            else
                snprintf (notes[i], sizeof notes[i], "; %s %.10g%s not set: it falls at or "
                          "below 0 from the %s %.10g", name, lv->value, unit, entry_from, entry);
            continue;
        }
        //  A level measured from the entry carries the float noise of the sum (0.1 + 0.2 is
        //  0.30000000000000004): kept to 12 significant digits, far finer than any tick.
        if (lv->kind != FKS_LEVEL_AT_PRICE) {
            char txt[32];
            snprintf (txt, sizeof txt, "%.12g", p);
            p = strtod (txt, NULL);
        }
        //  A price on the wrong side of the entry is a template error (a long's stop sent
        //  with a short): refused rather than recorded. Exits carry no protection of their
        //  own, so only an order that opens is checked.
        bool below = stop == buy;
        if (lv->kind == FKS_LEVEL_AT_PRICE && has_entry && !d->reduce_only
            && (below ? p >= entry : p <= entry)) {
            s_filter (d, "%s %.10g is %s the %s %.10g: a %s's %s must be %s it", name, p,
                      p == entry ? "at" : below ? "above" : "below", entry_from, entry,
                      buy ? "buy" : "sell", stop ? "stop loss" : "take profit",
                      below ? "below" : "above");
            return;
        }
        if (stop) {
            d->has_stop_loss = true;
            d->stop_loss = p;
            if (a->stop_trailing)
                snprintf (notes[i], sizeof notes[i], "; stop_loss is a trailing_stop: %.10g is "
                          "where it starts", p);
        }
        else {
            d->has_take_profit = true;
            d->take_profit = p;
        }
    }
    snprintf (d->reason, sizeof d->reason, "%s %.10g %s%s: %s", d->side, d->qty, symbol,
              d->reduce_only ? " (reduce only)" : "", basis);
    for (int i = 0; i < 2; i++) {
        size_t n = strlen (d->reason);
        size_t m = strlen (notes[i]);
        if (m > sizeof d->reason - 1 - n)
            m = sizeof d->reason - 1 - n;
        memcpy (d->reason + n, notes[i], m);
        d->reason[n + m] = '\0';
    }
}

double
fks_signal_position_after (double pos, const fks_signal_decision_t *d)
{
    if (d->kind != FKS_SIGNAL_CREATE)
        return pos;
    bool buy = !strcmp (d->side, "buy");
    if (d->has_position_share) {
        double q = fks_qty_position_share (pos, buy, d->reduce_only, d->position_share,
                                           d->qty_decimals, NULL);
        return buy ? pos + q : pos - q;
    }
    if (d->has_target)
        return d->target;
    if (d->close_position)
        return 0;
    return buy ? pos + d->qty : pos - d->qty;
}
