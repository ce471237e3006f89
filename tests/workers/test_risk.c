/*  test_risk.c - the limits every order passes (workers/execution/risk.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include "workers/execution/risk.h"

static fks_risk_order_t
s_order (bool buy, double qty, double price, double position)
{
    return (fks_risk_order_t) { .symbol = "BTCUSDT", .buy = buy, .qty = qty,
                                .has_price = price > 0, .price = price, .position = position };
}

Test (risk, no_limits_pass_everything)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    fks_risk_order_t o = s_order (true, 1e6, 0, 0);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
    cr_assert_eq (fks_risk_check_rate (&l, 1000000, &v), 0);
}

Test (risk, symbol_not_on_the_allowlist_is_refused)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    char err[200];
    cr_assert_eq (fks_risk_parse_symbols (&l, " BINANCE:ETHUSDT , SOL/USDT", err, sizeof err), 0);
    cr_assert_eq (l.n_symbols, 2);
    cr_assert_str_eq (l.symbols[0], "ETHUSDT");
    cr_assert_str_eq (l.symbols[1], "SOLUSDT");
    fks_risk_order_t o = s_order (true, 1, 100, 0);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "symbol_allowlist");
    cr_assert (strstr (v.message, "BTCUSDT"), "%s", v.message);
    o.symbol = "SOLUSDT";
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
}

Test (risk, allowlist_with_a_bad_symbol_is_a_configuration_error)
{
    fks_risk_limits_t l;
    char err[200];
    cr_assert_eq (fks_risk_parse_symbols (&l, "BTCUSDT,BAD SYMBOL", err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_RISK_SYMBOLS"), "%s", err);
}

Test (risk, max_qty_names_the_limit_and_the_value)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_qty = 2;
    fks_risk_order_t o = s_order (true, 2.5, 100, 0);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_qty");
    cr_assert (v.has_limit && v.has_value);
    cr_assert_float_eq (v.limit, 2, 1e-12);
    cr_assert_float_eq (v.value, 2.5, 1e-12);
    o.qty = 2;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0, "the limit itself is allowed");
}

Test (risk, max_notional_uses_the_reference_price)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_notional = 1000;
    fks_risk_order_t o = s_order (true, 0.5, 2500, 0);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_notional");
    cr_assert_float_eq (v.value, 1250, 1e-9);
    o.price = 2000;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
}

Test (risk, max_notional_without_a_price_refuses_rather_than_guesses)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_notional = 1000;
    fks_risk_order_t o = s_order (true, 0.001, 0, 0);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_notional");
    cr_assert (!v.has_value);
    cr_assert (strstr (v.message, "no price"), "%s", v.message);
}

Test (risk, max_position_counts_what_is_already_open)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_position = 5;
    fks_risk_order_t o = s_order (true, 2, 100, 4);
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_position");
    cr_assert_float_eq (v.value, 6, 1e-12);
    o.qty = 1;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
}

Test (risk, max_position_counts_open_orders_on_the_same_side)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_position = 1;
    fks_risk_order_t o = s_order (true, 1, 100, 0);
    o.resting = 1;                                        /* a buy of 1 rests already */
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1, "both may fill on one bar: 2");
    cr_assert_str_eq (v.rule, "max_position");
    cr_assert_float_eq (v.value, 2, 1e-12);
    cr_assert (strstr (v.message, "open orders"), "%s", v.message);
    o.buy = false;                                        /* resting sells: none */
    o.resting = 0;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0, "a sell of 1 from flat is within 1");
}

Test (risk, a_close_is_only_a_close_when_the_other_resting_closes_leave_room)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_qty = 0.5;
    fks_risk_order_t o = s_order (false, 1, 100, 1);     /* sell 1 against a long 1 */
    fks_risk_verdict_t v;
    cr_assert (fks_risk_reduces (&o));
    o.resting = 1;                                        /* a sell of 1 rests already */
    cr_assert (!fks_risk_reduces (&o), "together they would open a short");
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_qty");
    o.reduce_only = true;                                 /* cut at every fill */
    cr_assert (fks_risk_reduces (&o));
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
    o.buy = true;                                         /* reduce-only the wrong way */
    cr_assert (!fks_risk_reduces (&o));
}

Test (risk, a_limit_order_is_valued_at_the_price_it_may_fill_at)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_notional = 1000;
    fks_risk_order_t o = s_order (false, 10, 100, 0);    /* sell 10, last 100 */
    o.limit = true;
    o.limit_price = 150;
    double price;
    cr_assert (fks_risk_notional_price (&o, &price));
    cr_assert_float_eq (price, 150, 1e-12, "a sell limit fills at 150 or more");
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_str_eq (v.rule, "max_notional");
    cr_assert_float_eq (v.value, 1500, 1e-9);
    o.limit_price = 90;                                   /* marketable: fills at 100 now */
    cr_assert (fks_risk_notional_price (&o, &price));
    cr_assert_float_eq (price, 100, 1e-12);
    o.buy = true;                                         /* buy 10 at 90 or less */
    cr_assert (fks_risk_notional_price (&o, &price));
    cr_assert_float_eq (price, 90, 1e-12);
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
    o.has_price = false;                                  /* no market price: the limit */
    o.limit_price = 120;
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
    cr_assert_float_eq (v.value, 1200, 1e-9);
}

Test (risk, closing_orders_are_never_held_back_by_size_limits)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_qty = 1;
    l.max_position = 1;
    l.max_notional = 10;
    cr_assert_eq (fks_risk_parse_symbols (&l, "ETHUSDT", (char[64]) {0}, 64), 0);
    fks_risk_order_t o = s_order (false, 8, 100, 8);     /* sell 8 against a long 8 */
    fks_risk_verdict_t v;
    cr_assert (fks_risk_reduces (&o));
    cr_assert_eq (fks_risk_check (&l, &o, &v), 0);
    o.qty = 9;                                            /* flips: not only a close */
    cr_assert (!fks_risk_reduces (&o));
    cr_assert_eq (fks_risk_check (&l, &o, &v), 1);
}

Test (risk, orders_per_minute_counts_this_order)
{
    fks_risk_limits_t l;
    memset (&l, 0, sizeof l);
    l.max_orders_per_minute = 3;
    fks_risk_verdict_t v;
    cr_assert_eq (fks_risk_check_rate (&l, 3, &v), 0);
    cr_assert_eq (fks_risk_check_rate (&l, 4, &v), 1);
    cr_assert_str_eq (v.rule, "orders_per_minute");
    cr_assert_float_eq (v.limit, 3, 1e-12);
    cr_assert_float_eq (v.value, 4, 1e-12);
}

Test (risk, limits_load_from_the_environment)
{
    setenv ("FKS_RISK_SYMBOLS", "BTCUSDT", 1);
    setenv ("FKS_RISK_MAX_QTY", "10", 1);
    setenv ("FKS_RISK_MAX_ORDERS_PER_MINUTE", "60", 1);
    fks_risk_limits_t l;
    char err[200];
    cr_assert_eq (fks_risk_limits_load (&l, err, sizeof err), 0, "%s", err);
    cr_assert_eq (l.n_symbols, 1);
    cr_assert_float_eq (l.max_qty, 10, 1e-12);
    cr_assert_eq (l.max_orders_per_minute, 60);
    setenv ("FKS_RISK_MAX_QTY", "ten", 1);
    cr_assert_eq (fks_risk_limits_load (&l, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_RISK_MAX_QTY"), "%s", err);
    unsetenv ("FKS_RISK_SYMBOLS");
    unsetenv ("FKS_RISK_MAX_QTY");
    unsetenv ("FKS_RISK_MAX_ORDERS_PER_MINUTE");
}
