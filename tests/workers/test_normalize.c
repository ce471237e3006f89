/*  test_normalize.c - alerts into signals: symbols, actions, targets, staleness, and reading
 *  a webhook.received body (workers/signal/normalize.c, common/symbol.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "workers/signal/normalize.h"

#define NOW 1800000000000LL

static fks_signal_cfg_t s_cfg = {
    .sizing = { FKS_SIZING_NONE, 0, 10000, 8 },
    .max_age_ms = 120000,
    .max_future_ms = 5000,
};

static fks_signal_alert_t
s_alert (const char *action, double qty)
{
    fks_signal_alert_t a;
    memset (&a, 0, sizeof a);
    snprintf (a.source, sizeof a.source, "tradingview");
    snprintf (a.symbol, sizeof a.symbol, "BTCUSDT");
    snprintf (a.action, sizeof a.action, "%s", action);
    if (qty > 0) {
        a.has_quantity = true;
        a.quantity = qty;
    }
    a.has_price = true;
    a.price = 100;
    return a;
}

static fks_signal_decision_t
s_decide (const fks_signal_alert_t *a, double position)
{
    fks_signal_ctx_t ctx = { .now_ms = NOW, .received_ms = NOW - 10, .position = position };
    fks_signal_decision_t d;
    fks_signal_decide (&s_cfg, a, "BTCUSDT", &ctx, &d);
    return d;
}

Test (symbol, every_spelling_becomes_one_form)
{
    const char *forms[] = { "BINANCE:BTCUSDT", "BTCUSDT", "BTC/USDT", "btc-usdt", "BTC_USDT",
                            "binance:btc/usdt" };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char out[FKS_SYMBOL_MAX];
        cr_assert_eq (fks_symbol_normalize (forms[i], out, NULL, 0), 0, "%s", forms[i]);
        cr_assert_str_eq (out, "BTCUSDT", "%s", forms[i]);
    }
    char out[FKS_SYMBOL_MAX];
    cr_assert_eq (fks_symbol_normalize ("BYBIT:BTCUSDT.P", out, NULL, 0), 0);
    cr_assert_str_eq (out, "BTCUSDT.P");
}

Test (symbol, bad_symbols_are_refused_with_a_reason)
{
    char out[FKS_SYMBOL_MAX], why[160];
    cr_assert_eq (fks_symbol_normalize ("BTC USDT", out, why, sizeof why), -1);
    cr_assert (strstr (why, "not a letter"), "%s", why);
    cr_assert_eq (fks_symbol_normalize ("ES1?", out, why, sizeof why), -1);
    cr_assert (strstr (why, "'.' or '!'"), "%s", why);
    cr_assert_eq (fks_symbol_normalize ("BINANCE:", out, why, sizeof why), -1);
    cr_assert_eq (fks_symbol_normalize ("", out, why, sizeof why), -1);
    cr_assert_eq (fks_symbol_normalize ("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", out, why,
                                        sizeof why), -1);
    cr_assert (strstr (why, "longer"), "%s", why);
    cr_assert_str_eq (out, "");
}

Test (symbol, tradingview_continuous_futures_keep_their_bang)
{
    const char *forms[][2] = { { "ES1!", "ES1!" }, { "CME_MINI:ES1!", "ES1!" },
                               { "cme_mini:nq1!", "NQ1!" }, { "NYMEX:CL2!", "CL2!" },
                               { "1ES!", "1ES!" } };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char out[FKS_SYMBOL_MAX], why[160] = "";
        cr_assert_eq (fks_symbol_normalize (forms[i][0], out, why, sizeof why), 0, "%s: %s",
                      forms[i][0], why);
        cr_assert_str_eq (out, forms[i][1], "%s", forms[i][0]);
    }
}

Test (symbol, a_bang_never_starts_the_instrument)
{
    const char *bad[] = { "!ES", "CME_MINI:!ES", "!", "/!ES1", "-!" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[FKS_SYMBOL_MAX] = "x", why[160] = "";
        cr_assert_eq (fks_symbol_normalize (bad[i], out, why, sizeof why), -1, "%s became %s",
                      bad[i], out);
        cr_assert (strstr (why, "no instrument name"), "%s: %s", bad[i], why);
        cr_assert_str_eq (out, "");
    }
}

Test (decide, buy_with_quantity_is_a_market_buy)
{
    fks_signal_alert_t a = s_alert ("buy", 0.5);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_str_eq (d.action, "buy");
    cr_assert_str_eq (d.order_type, "market");
    cr_assert_float_eq (d.qty, 0.5, 1e-12);
    cr_assert (!d.reduce_only);
    cr_assert (d.has_price);
    cr_assert_float_eq (d.price, 100, 1e-12);
}

Test (decide, long_and_short_mean_buy_and_sell)
{
    fks_signal_alert_t a = s_alert ("short", 1);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "sell");
    a = s_alert ("long", 1);
    d = s_decide (&a, 0);
    cr_assert_str_eq (d.side, "buy");
}

Test (decide, buy_against_a_short_closes_it_and_opens_the_quantity)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    fks_signal_decision_t d = s_decide (&a, -2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_float_eq (d.qty, 3, 1e-12);
    cr_assert (strstr (d.reason, "close short"), "%s", d.reason);
    //  The execution worker orders 1 plus the short it finds then.
    cr_assert (d.has_open_qty);
    cr_assert_float_eq (d.open_qty, 1, 1e-12);
    cr_assert_not (d.close_position);
}

//  TradersPost's partial exit: a share of the position on the other side reduces it.
Test (decide, a_percent_of_the_position_against_it_is_a_partial_exit)
{
    fks_signal_alert_t a = s_alert ("sell", 50);
    snprintf (a.quantity_type, sizeof a.quantity_type, "percent_of_position");
    fks_signal_decision_t d = s_decide (&a, 9);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 4.5, 1e-12);
    cr_assert (d.reduce_only);
    cr_assert_not (d.has_open_qty, "never a reversal");
    cr_assert_not (d.close_position);
    snprintf (a.quantity_type, sizeof a.quantity_type, "percent_of_position");
    a.quantity = 100;
    d = s_decide (&a, 9);
    cr_assert_float_eq (d.qty, 9, 1e-12);
    cr_assert (d.close_position, "all of it");
}

static fks_signal_alert_t
s_pct (const char *action, double percent)
{
    fks_signal_alert_t a = s_alert (action, percent);
    snprintf (a.quantity_type, sizeof a.quantity_type, "percent_of_position");
    return a;
}

//  Every decision that takes a share of the position carries that share, for the execution
//  worker to take of the position it locks (qty is the estimate from this one).
Test (decide, a_share_of_the_position_travels_as_a_share)
{
    //  A partial exit: sell half of a long of 9.
    fks_signal_alert_t a = s_pct ("sell", 50);
    fks_signal_decision_t d = s_decide (&a, 9);
    cr_assert (d.has_position_share, "%s", d.reason);
    cr_assert_float_eq (d.position_share, 0.5, 1e-15);
    cr_assert_eq (d.qty_decimals, 8);
    cr_assert (d.reduce_only);
    //  Exit / close 25 %.
    a = s_pct ("exit", 25);
    d = s_decide (&a, -4);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_float_eq (d.qty, 1, 1e-12);
    cr_assert (d.has_position_share);
    cr_assert_float_eq (d.position_share, 0.25, 1e-15);
    //  A reduce while the strategy stays long.
    a = s_pct ("sell", 40);
    snprintf (a.market_position, sizeof a.market_position, "long");
    d = s_decide (&a, 5);
    cr_assert_float_eq (d.qty, 2, 1e-12);
    cr_assert (d.reduce_only && d.has_position_share);
    cr_assert_float_eq (d.position_share, 0.4, 1e-15);
    //  An add of half the long, with action add and as a buy of half the long.
    a = s_pct ("add", 50);
    d = s_decide (&a, 2);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_float_eq (d.qty, 1, 1e-12);
    cr_assert_not (d.reduce_only);
    cr_assert (d.has_position_share);
    cr_assert_float_eq (d.position_share, 0.5, 1e-15);
    a = s_pct ("buy", 50);
    d = s_decide (&a, 2);
    cr_assert_float_eq (d.qty, 1, 1e-12);
    cr_assert_not (d.reduce_only);
    cr_assert (d.has_position_share);
    //  More than all of it, when it reduces, is all of it.
    a = s_pct ("sell", 150);
    d = s_decide (&a, 2);
    cr_assert_float_eq (d.qty, 2, 1e-12);
    cr_assert (d.close_position && d.has_position_share);
    cr_assert_float_eq (d.position_share, 1, 1e-15);
}

Test (decide, only_a_share_of_the_position_travels_as_a_share)
{
    fks_signal_alert_t a = s_alert ("sell", 1);
    cr_assert_not (s_decide (&a, 2).has_position_share, "a fixed quantity");
    a = s_alert ("exit", 1);
    cr_assert_not (s_decide (&a, 2).has_position_share);
    a = s_alert ("exit", 0);
    a.has_quantity = false;
    snprintf (a.quantity_type, sizeof a.quantity_type, "percent_of_position");
    fks_signal_decision_t d = s_decide (&a, 2);
    cr_assert (d.close_position);
    cr_assert_not (d.has_position_share, "no quantity: all of it");
    //  An add of more than all of it stays the estimate (a share is at most 1).
    a = s_pct ("add", 150);
    d = s_decide (&a, 2);
    cr_assert_float_eq (d.qty, 3, 1e-12);
    cr_assert_not (d.has_position_share);
    //  An add against the position (its sentiment says the other way) is no share of it.
    a = s_pct ("add", 50);
    snprintf (a.sentiment, sizeof a.sentiment, "bearish");
    d = s_decide (&a, 2);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_not (d.has_position_share);
}

Test (decide, the_position_after_a_share_is_that_share_of_the_position_it_meets)
{
    fks_signal_alert_t a = s_pct ("sell", 50);
    fks_signal_decision_t d = s_decide (&a, 12);
    cr_assert_float_eq (d.qty, 6, 1e-12);
    //  As the execution worker will take it: of the position the signals before leave.
    cr_assert_float_eq (fks_signal_position_after (12, &d), 6, 1e-12);
    cr_assert_float_eq (fks_signal_position_after (2, &d), 1, 1e-12);
    cr_assert_float_eq (fks_signal_position_after (0, &d), 0, 1e-12, "nothing to reduce");
    cr_assert_float_eq (fks_signal_position_after (-3, &d), -3, 1e-12, "refused: a short");
    a = s_pct ("add", 50);
    d = s_decide (&a, 12);
    cr_assert_float_eq (fks_signal_position_after (2, &d), 3, 1e-12);
    cr_assert_float_eq (fks_signal_position_after (-2, &d), -2, 1e-12, "nothing to add to");
}

Test (decide, sell_with_market_position_flat_only_closes_the_long)
{
    fks_signal_alert_t a = s_alert ("sell", 5);
    snprintf (a.market_position, sizeof a.market_position, "flat");
    fks_signal_decision_t d = s_decide (&a, 2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 2, 1e-12);
    cr_assert (d.reduce_only);
    cr_assert (d.close_position, "the whole long as found when ordered");
    cr_assert_not (d.has_open_qty);
}

Test (decide, close_and_flat_exit_the_open_position)
{
    const char *actions[] = { "close", "flat", "exit" };
    for (int i = 0; i < 3; i++) {
        fks_signal_alert_t a = s_alert (actions[i], 0);
        fks_signal_decision_t d = s_decide (&a, -1.5);
        cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s: %s", actions[i], d.reason);
        cr_assert_str_eq (d.action, "exit");
        cr_assert_str_eq (d.side, "buy");
        cr_assert_float_eq (d.qty, 1.5, 1e-12);
        cr_assert (d.reduce_only);
        cr_assert (d.close_position);
    }
}

Test (decide, close_without_a_position_is_filtered_with_the_reason)
{
    fks_signal_alert_t a = s_alert ("close", 0);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "nothing to close"), "%s", d.reason);
    cr_assert_str_eq (d.action, "exit");
}

Test (decide, decisions_that_rest_on_the_position_say_so)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    cr_assert_not (s_decide (&a, 0).position_matters, "a plain buy is resized at execution");
    const char *rest[] = { "close", "exit", "add" };
    for (int i = 0; i < 3; i++) {
        a = s_alert (rest[i], 1);
        cr_assert (s_decide (&a, 0).position_matters, "%s", rest[i]);
    }
    a = s_alert ("sell", 1);
    snprintf (a.market_position, sizeof a.market_position, "flat");
    cr_assert (s_decide (&a, 0).position_matters);
    a = s_alert ("buy", 0);
    a.has_position_size = true;
    a.position_size = 2;
    cr_assert (s_decide (&a, 0).position_matters);
}

Test (decide, the_position_after_a_signal_is_its_target_a_close_or_its_quantity)
{
    fks_signal_alert_t a = s_alert ("buy", 1.5);
    fks_signal_decision_t d = s_decide (&a, -1);
    cr_assert_float_eq (fks_signal_position_after (-1, &d), 1.5, 1e-12,
                        "close the short of 1, open a long of 1.5");
    a = s_alert ("sell", 2);
    d = s_decide (&a, 0);
    cr_assert_float_eq (fks_signal_position_after (0, &d), -2, 1e-12);
    a = s_alert ("exit", 0);
    d = s_decide (&a, 3);
    cr_assert_float_eq (fks_signal_position_after (3, &d), 0, 1e-12);
    a = s_alert ("buy", 0);
    a.has_position_size = true;
    a.position_size = 5;
    d = s_decide (&a, 2);
    cr_assert_float_eq (fks_signal_position_after (2, &d), 5, 1e-12);
    a = s_alert ("close", 0);
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert_float_eq (fks_signal_position_after (0, &d), 0, 1e-12, "a filter moves nothing");
}

Test (decide, exit_with_a_quantity_closes_part_of_the_position)
{
    fks_signal_alert_t a = s_alert ("exit", 0.5);
    fks_signal_decision_t d = s_decide (&a, 2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 0.5, 1e-12);
    cr_assert_not (d.close_position, "a part: cut to the position, never grown");
}

Test (decide, position_size_trades_the_difference)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.has_position_size = true;
    a.position_size = 3;
    fks_signal_decision_t d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_float_eq (d.qty, 2, 1e-12);
    cr_assert (d.has_target);
    a.position_size = -1;
    d = s_decide (&a, 1);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 2, 1e-12);
    cr_assert (!d.reduce_only);
    a.position_size = 1;
    d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "already at the target"), "%s", d.reason);
}

Test (decide, stale_alert_is_filtered_with_its_age)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.has_alert_time = true;
    a.alert_time_ms = NOW - 300000;
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "stale"), "%s", d.reason);
    cr_assert (strstr (d.reason, "300.0 s"), "%s", d.reason);
    cr_assert_str_eq (d.side, "buy", "a refused buy still records its side");
}

//  "time": "{{time}}" on a 1-hour chart: the bar opened 59 minutes before the alert fired.
//  The reason used to say only "the alert fired 3540.0 s ago", which it had not.
Test (decide, a_stale_alert_time_says_which_placeholder_to_send)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.has_alert_time = true;
    a.alert_time_ms = NOW - 3540000;
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "stale: the alert fired 3540.0 s ago (limit 120.0 s); the "
                       "alert's time must be when it fired, TradingView's {{timenow}}, not "
                       "{{time}}, its bar's open time"), "%s", d.reason);
    //  Without a time the age is the gateway's: no such hint.
    a.has_alert_time = false;
    fks_signal_ctx_t ctx = { .now_ms = NOW, .received_ms = NOW - 600000 };
    fks_signal_decide (&s_cfg, &a, "BTCUSDT", &ctx, &d);
    cr_assert (strstr (d.reason, "was received") && !strstr (d.reason, "{{"), "%s", d.reason);
}

Test (decide, alert_from_the_future_is_filtered)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.has_alert_time = true;
    a.alert_time_ms = NOW + 60000;
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "in the future"), "%s", d.reason);
}

Test (decide, alert_without_time_is_stale_when_received_long_ago)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    fks_signal_ctx_t ctx = { .now_ms = NOW, .received_ms = NOW - 200000 };
    fks_signal_decision_t d;
    fks_signal_decide (&s_cfg, &a, "BTCUSDT", &ctx, &d);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "was received"), "%s", d.reason);
}

Test (decide, no_quantity_and_no_rule_is_filtered)
{
    fks_signal_alert_t a = s_alert ("buy", 0);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "FKS_SIGNAL_SIZING"), "%s", d.reason);
}

Test (decide, limit_orders_carry_their_limit_price)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    snprintf (a.order_type, sizeof a.order_type, "limit");
    a.has_limit_price = true;
    a.limit_price = 95;
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.order_type, "limit");
    cr_assert (d.has_limit_price);
    cr_assert_float_eq (d.limit_price, 95, 1e-12);
}

Test (decide, stops_and_targets_in_percent_become_prices)
{
    fks_signal_alert_t a = s_alert ("sell", 1);
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_PERCENT, 5 };
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_AMOUNT, 10 };
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert (d.has_stop_loss && d.has_take_profit);
    cr_assert_float_eq (d.stop_loss, 105, 1e-9);
    cr_assert_float_eq (d.take_profit, 90, 1e-9);
}

//  A sell at 0.1 with its stop 0.2 away used to be recorded at 0.30000000000000004, and a 7 %
//  target of a buy at 0.1 at 0.10700000000000001.
Test (decide, levels_from_the_entry_carry_no_float_noise)
{
    fks_signal_alert_t a = s_alert ("sell", 1);
    a.price = 0.1;
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_AMOUNT, 0.2 };
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert (d.stop_loss == 0.3, "stop %.17g", d.stop_loss);
    a = s_alert ("buy", 1);
    a.price = 0.1;
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_PERCENT, 7 };
    d = s_decide (&a, 0);
    cr_assert (d.take_profit == 0.107, "target %.17g", d.take_profit);
    a.price = 42123.456789;
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_AMOUNT, 0.000001 };
    d = s_decide (&a, 0);
    cr_assert (d.take_profit == 42123.45679, "target %.17g", d.take_profit);
}

Test (decide, sentiment_alone_gives_the_direction)
{
    fks_signal_alert_t a = s_alert ("", 1);
    snprintf (a.sentiment, sizeof a.sentiment, "bearish");
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "sell");
}

Test (decide, cancel_asks_for_the_open_orders_to_be_cancelled)
{
    fks_signal_alert_t a = s_alert ("cancel", 0);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CANCEL);
    cr_assert_str_eq (d.action, "cancel");
}

Test (decide, add_needs_a_position_or_a_sentiment)
{
    fks_signal_alert_t a = s_alert ("add", 1);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    d = s_decide (&a, -2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 1, 1e-12);
}

Test (decide, buy_while_the_strategy_stays_short_reduces_the_short)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    snprintf (a.market_position, sizeof a.market_position, "short");
    fks_signal_decision_t d = s_decide (&a, -3);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE);
    cr_assert_float_eq (d.qty, 1, 1e-12);
    cr_assert (d.reduce_only);
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
}

//  TradersPost's sentiment is the position after the signal, as market_position is: a sell
//  with sentiment bullish (a template sending "sentiment": "{{strategy.market_position}}"
//  on a partial take-profit) reduces the long. It used to close the long and open a short.
Test (decide, sell_with_sentiment_bullish_reduces_the_long)
{
    fks_signal_alert_t a = s_alert ("sell", 1);
    snprintf (a.sentiment, sizeof a.sentiment, "bullish");
    fks_signal_decision_t d = s_decide (&a, 3);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_str_eq (d.side, "sell");
    cr_assert_float_eq (d.qty, 1, 1e-12, "%s", d.reason);
    cr_assert (d.reduce_only, "%s", d.reason);
    cr_assert_not (d.has_open_qty, "%s", d.reason);
    cr_assert (d.position_matters);
    //  More than the long: cut to it, never a reversal.
    a.quantity = 5;
    d = s_decide (&a, 3);
    cr_assert_float_eq (d.qty, 3, 1e-12, "%s", d.reason);
    cr_assert (d.reduce_only);
    //  Nothing long: nothing to reduce, with the field that said so.
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "nothing to reduce: sell with sentiment bullish"), "%s",
               d.reason);
    //  A buy with sentiment short reduces the short likewise.
    a = s_alert ("buy", 1);
    snprintf (a.sentiment, sizeof a.sentiment, "short");
    d = s_decide (&a, -2);
    cr_assert_str_eq (d.side, "buy");
    cr_assert_float_eq (d.qty, 1, 1e-12);
    cr_assert (d.reduce_only);
    //  A sell with sentiment bearish still reverses (TradersPost: exit long, enter short).
    a = s_alert ("sell", 1);
    snprintf (a.sentiment, sizeof a.sentiment, "bearish");
    d = s_decide (&a, 2);
    cr_assert_float_eq (d.qty, 3, 1e-12);
    cr_assert_not (d.reduce_only);
}

//  The gateway refuses these; one that reaches the worker anyway is refused alike.
Test (decide, conflicting_position_fields_are_filtered_naming_them)
{
    fks_signal_alert_t a = s_alert ("sell", 1);
    snprintf (a.market_position, sizeof a.market_position, "short");
    a.has_position_size = true;
    a.position_size = 1;
    fks_signal_decision_t d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "%s", d.reason);
    cr_assert (strstr (d.reason, "position_size 1 but market_position short"), "%s", d.reason);
    a = s_alert ("sell", 1);
    snprintf (a.market_position, sizeof a.market_position, "long");
    snprintf (a.sentiment, sizeof a.sentiment, "bearish");
    d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "market_position long but sentiment bearish"), "%s", d.reason);
    a = s_alert ("exit", 0);
    a.has_position_size = true;
    a.position_size = 2;
    d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "action exit closes the position but position_size is 2"),
               "%s", d.reason);
    a = s_alert ("add", 1);
    snprintf (a.sentiment, sizeof a.sentiment, "flat");
    d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "%s", d.reason);
    cr_assert (strstr (d.reason, "action add but sentiment flat"), "%s", d.reason);
    //  Agreeing fields trade.
    a = s_alert ("sell", 1);
    snprintf (a.market_position, sizeof a.market_position, "short");
    snprintf (a.sentiment, sizeof a.sentiment, "bearish");
    a.has_position_size = true;
    a.position_size = -1;
    d = s_decide (&a, 1);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_float_eq (d.qty, 2, 1e-12);
}

//  A quantity whose rounding overflows (1e301 * 10^8) used to be signalled as infinity.
Test (decide, a_quantity_too_large_to_round_is_filtered)
{
    fks_signal_alert_t a = s_alert ("buy", 1e301);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "qty %g: %s", d.qty, d.reason);
    cr_assert (strstr (d.reason, "too large"), "%s", d.reason);
    a.has_position_size = true;
    a.position_size = -1e305;
    a.quantity = 1;
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "qty %g: %s", d.qty, d.reason);
}

//  A stop or target price on the wrong side of the entry (a long's stop sent with a short) used
//  to be recorded as it was: a buy at 100 with its stop at 105.
Test (decide, a_stop_or_target_on_the_wrong_side_of_the_entry_is_filtered)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_PRICE, 105 };
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "%s", d.reason);
    cr_assert_str_eq (d.reason, "stop_loss 105 is above the alert price 100: a buy's stop loss "
                      "must be below it");
    a = s_alert ("sell", 1);
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_PRICE, 110 };
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "%s", d.reason);
    cr_assert (strstr (d.reason, "take_profit 110 is above the alert price 100: a sell's take "
                       "profit must be below it"), "%s", d.reason);
    a = s_alert ("buy", 1);
    snprintf (a.order_type, sizeof a.order_type, "limit");
    a.has_limit_price = true;
    a.limit_price = 95;
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_PRICE, 95 };
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER, "%s", d.reason);
    cr_assert (strstr (d.reason, "take_profit 95 is at the limit price 95"), "%s", d.reason);
    //  The right sides trade; a sell that reverses a long takes the short's sides.
    a = s_alert ("sell", 1);
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_PRICE, 105 };
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_PRICE, 90 };
    d = s_decide (&a, 2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_float_eq (d.stop_loss, 105, 1e-12);
    cr_assert_float_eq (d.take_profit, 90, 1e-12);
    //  An exit is not checked: it opens nothing to protect.
    a = s_alert ("exit", 0);
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_PRICE, 90 };
    d = s_decide (&a, 2);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
}

//  A percent or amount that could not become a price used to vanish without a word.
Test (decide, a_level_that_cannot_be_placed_is_named_in_the_reason)
{
    fks_signal_alert_t a = s_alert ("buy", 1);
    a.has_price = false;
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_PERCENT, 2 };
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_not (d.has_stop_loss);
    cr_assert (strstr (d.reason, "; stop_loss 2% not set: no entry price is known"), "%s",
               d.reason);
    a = s_alert ("buy", 1);
    a.stop_loss = (fks_level_t) { FKS_LEVEL_AT_AMOUNT, 100 };
    a.take_profit = (fks_level_t) { FKS_LEVEL_AT_PERCENT, 5 };
    d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_not (d.has_stop_loss);
    cr_assert (d.has_take_profit);
    cr_assert (strstr (d.reason, "; stop_loss 100 not set: it falls at or below 0 from the "
                       "alert price 100"), "%s", d.reason);
}

Test (decide, quantity_that_rounds_to_zero_is_filtered)
{
    fks_signal_alert_t a = s_alert ("buy", 0.000000001);
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
    cr_assert (strstr (d.reason, "rounds to zero"), "%s", d.reason);
}

Test (decide, sizing_falls_back_to_the_latest_price)
{
    fks_signal_alert_t a = s_alert ("buy", 1000);
    a.has_price = false;
    snprintf (a.quantity_type, sizeof a.quantity_type, "dollar_amount");
    fks_signal_ctx_t ctx = { .now_ms = NOW, .received_ms = NOW, .has_last_price = true,
                             .last_price = 250 };
    fks_signal_decision_t d;
    fks_signal_decide (&s_cfg, &a, "BTCUSDT", &ctx, &d);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_float_eq (d.qty, 4, 1e-12);
    ctx.has_last_price = false;
    fks_signal_decide (&s_cfg, &a, "BTCUSDT", &ctx, &d);
    cr_assert_eq (d.kind, FKS_SIGNAL_FILTER);
}

//  Reading a webhook.received body, as the gateway packs it.
static fks_envelope_t *
s_envelope (double confidence, const char *stop_type)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    fks_id_t inbox;
    fks_id_new (&inbox);
    msgpack_pack_map (&pk, 8);
    fks_pack_kv_id (&pk, "inbox_id", &inbox);
    fks_pack_kv_str (&pk, "source", "tradingview");
    fks_pack_kv_str (&pk, "symbol", "BINANCE:ETHUSDT");
    fks_pack_kv_str (&pk, "action", "sell");
    fks_pack_kv_f64 (&pk, "quantity", 2);
    fks_pack_kv_f64 (&pk, "confidence", confidence);
    fks_pack_str (&pk, "stop_loss");
    msgpack_pack_map (&pk, 2);
    fks_pack_kv_str (&pk, "type", stop_type);
    fks_pack_kv_f64 (&pk, !strcmp (stop_type, "trailing_stop") ? "percent" : "stop_price",
                     !strcmp (stop_type, "trailing_stop") ? 2 : 2100);
    fks_pack_str (&pk, "take_profit");
    msgpack_pack_map (&pk, 1);
    fks_pack_kv_f64 (&pk, "percent", 3);
    fks_envelope_hdr_t hdr;
    fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &inbox, NULL);
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err), 0, "%s",
                  err.msg);
    fks_envelope_t *env = fks_envelope_decode (frame.data, frame.size, &err);
    cr_assert (env, "%s", err.msg);
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
    return env;
}

Test (alert, webhook_body_is_read_with_its_nested_levels)
{
    fks_envelope_t *env = s_envelope (0.8, "stop");
    fks_signal_alert_t a;
    char why[200];
    cr_assert_eq (fks_signal_alert_read (env, &a, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq (a.symbol, "BINANCE:ETHUSDT");
    cr_assert_str_eq (a.action, "sell");
    cr_assert (a.has_quantity);
    cr_assert_float_eq (a.quantity, 2, 1e-12);
    cr_assert_eq (a.stop_loss.kind, FKS_LEVEL_AT_PRICE);
    cr_assert_float_eq (a.stop_loss.value, 2100, 1e-12);
    cr_assert_not (a.stop_trailing);
    cr_assert_eq (a.take_profit.kind, FKS_LEVEL_AT_PERCENT);
    cr_assert_float_eq (a.confidence, 0.8, 1e-12);
    fks_envelope_destroy (&env);
}

Test (alert, confidence_outside_zero_to_one_is_malformed)
{
    fks_envelope_t *env = s_envelope (1.5, "stop");
    fks_signal_alert_t a;
    char why[200];
    cr_assert_eq (fks_signal_alert_read (env, &a, why, sizeof why), -1);
    cr_assert (strstr (why, "confidence"), "%s", why);
    cr_assert (!fks_id_is_nil (&a.inbox_id), "the alert id is known even when malformed");
    fks_envelope_destroy (&env);
}

//  A trailing stop's percent used to become a fixed stop with nothing to say so.
Test (alert, a_trailing_stop_is_read_and_said_to_start_at_its_level)
{
    fks_envelope_t *env = s_envelope (0.8, "trailing_stop");
    fks_signal_alert_t a;
    char why[200];
    cr_assert_eq (fks_signal_alert_read (env, &a, why, sizeof why), 0, "%s", why);
    cr_assert (a.stop_trailing);
    cr_assert_eq (a.stop_loss.kind, FKS_LEVEL_AT_PERCENT);
    a.has_price = true;
    a.price = 100;
    fks_signal_decision_t d = s_decide (&a, 0);
    cr_assert_eq (d.kind, FKS_SIGNAL_CREATE, "%s", d.reason);
    cr_assert_float_eq (d.stop_loss, 102, 1e-9);
    cr_assert (strstr (d.reason, "stop_loss is a trailing_stop: 102 is where it starts"), "%s",
               d.reason);
    fks_envelope_destroy (&env);
}
