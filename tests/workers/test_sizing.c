/*  test_sizing.c - quantities from TradersPost's quantity types and the sizing rule; stops and
 *  targets as prices (workers/signal/sizing.c); a share of a position (workers/qty.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "workers/signal/sizing.h"
#include "workers/qty.h"

static fks_sizing_cfg_t s_cfg = { FKS_SIZING_NONE, 0, 10000, 8 };

static double
s_qty (const fks_sizing_cfg_t *cfg, const char *type, double q, double entry, fks_level_t stop,
       char *how)
{
    fks_sizing_in_t in = { .quantity_type = type, .has_quantity = q > 0, .quantity = q,
                           .has_entry = entry > 0, .entry = entry, .position_abs = 2,
                           .stop = stop };
    double out = -1;
    if (fks_sizing_qty (cfg, &in, &out, how, 256) != 0)
        return -1;
    return out;
}

static const fks_level_t s_none = { FKS_LEVEL_NONE, 0 };

Test (sizing, fixed_quantity_is_the_alert_quantity)
{
    char how[256];
    cr_assert_float_eq (s_qty (&s_cfg, "", 0.5, 0, s_none, how), 0.5, 1e-12);
    cr_assert_float_eq (s_qty (&s_cfg, "fixed_quantity", 3, 0, s_none, how), 3, 1e-12);
}

Test (sizing, dollar_amount_divides_by_the_entry_price)
{
    char how[256];
    cr_assert_float_eq (s_qty (&s_cfg, "dollar_amount", 1000, 25000, s_none, how), 0.04, 1e-12);
}

Test (sizing, dollar_amount_without_a_price_says_so)
{
    char how[256];
    cr_assert_eq (s_qty (&s_cfg, "dollar_amount", 1000, 0, s_none, how), -1);
    cr_assert (strstr (how, "needs a price"), "%s", how);
}

Test (sizing, percent_of_equity_uses_the_configured_equity)
{
    char how[256];
    //  10% of 10000 at 50 = 20 units
    cr_assert_float_eq (s_qty (&s_cfg, "percent_of_equity", 10, 50, s_none, how), 20, 1e-9);
}

Test (sizing, percent_of_position_takes_a_share_of_the_open_position)
{
    char how[256];
    cr_assert_float_eq (s_qty (&s_cfg, "percent_of_position", 50, 0, s_none, how), 1, 1e-12);
}

Test (sizing, risk_dollar_amount_divides_by_the_stop_distance)
{
    char how[256];
    fks_level_t stop = { FKS_LEVEL_AT_PRICE, 95 };
    //  risk 100 over a distance of 5 = 20 units
    cr_assert_float_eq (s_qty (&s_cfg, "risk_dollar_amount", 100, 100, stop, how), 20, 1e-9);
    fks_level_t pct = { FKS_LEVEL_AT_PERCENT, 2 };
    //  risk 1% of 10000 = 100 over 2% of 100 = 2 -> 50
    cr_assert_float_eq (s_qty (&s_cfg, "risk_percent", 1, 100, pct, how), 50, 1e-9);
}

Test (sizing, risk_types_need_a_stop)
{
    char how[256];
    cr_assert_eq (s_qty (&s_cfg, "risk_dollar_amount", 100, 100, s_none, how), -1);
    cr_assert (strstr (how, "stop loss"), "%s", how);
}

Test (sizing, no_quantity_without_a_rule_is_refused_naming_the_setting)
{
    char how[256];
    cr_assert_eq (s_qty (&s_cfg, "", 0, 100, s_none, how), -1);
    cr_assert (strstr (how, "FKS_SIGNAL_SIZING"), "%s", how);
}

Test (sizing, rules_apply_when_the_alert_has_no_quantity)
{
    char how[256];
    fks_sizing_cfg_t fixed = { FKS_SIZING_FIXED_QTY, 2, 0, 8 };
    cr_assert_float_eq (s_qty (&fixed, "", 0, 0, s_none, how), 2, 1e-12);
    fks_sizing_cfg_t notional = { FKS_SIZING_FIXED_NOTIONAL, 500, 0, 8 };
    cr_assert_float_eq (s_qty (&notional, "", 0, 250, s_none, how), 2, 1e-12);
    fks_sizing_cfg_t pct = { FKS_SIZING_PERCENT_EQUITY, 5, 20000, 8 };
    cr_assert_float_eq (s_qty (&pct, "", 0, 100, s_none, how), 10, 1e-9);
}

Test (sizing, unknown_quantity_type_is_refused)
{
    char how[256];
    cr_assert_eq (s_qty (&s_cfg, "lots", 1, 100, s_none, how), -1);
    cr_assert (strstr (how, "lots"), "%s", how);
}

Test (sizing, rounding_goes_down_but_keeps_exact_decimals)
{
    cr_assert_float_eq (fks_sizing_round_down (0.123456789, 4), 0.1234, 1e-15);
    cr_assert_float_eq (fks_sizing_round_down (0.3, 8), 0.3, 1e-15);
    cr_assert_float_eq (fks_sizing_round_down (0.00000000999, 8), 0, 1e-15);
    cr_assert_float_eq (fks_sizing_round_down (7.9, 0), 7, 1e-15);
    cr_assert_eq (fks_sizing_round_down (10, 8), 10, "whole numbers stay whole");
    cr_assert_eq (fks_sizing_round_down (123456.5, 8), 123456.5);
    cr_assert_float_eq (fks_sizing_round_down (0.999999999, 8), 0.99999999, 1e-15);
}

Test (sizing, levels_sit_on_the_right_side_of_the_entry)
{
    double p;
    fks_level_t pct = { FKS_LEVEL_AT_PERCENT, 2 };
    cr_assert_eq (fks_sizing_level_price (&pct, true, true, true, 100, &p), 0);
    cr_assert_float_eq (p, 98, 1e-9);                     /* a buy's stop is below */
    cr_assert_eq (fks_sizing_level_price (&pct, false, true, true, 100, &p), 0);
    cr_assert_float_eq (p, 102, 1e-9);                    /* a buy's target is above */
    cr_assert_eq (fks_sizing_level_price (&pct, true, false, true, 100, &p), 0);
    cr_assert_float_eq (p, 102, 1e-9);                    /* a sell's stop is above */
    fks_level_t amt = { FKS_LEVEL_AT_AMOUNT, 150 };
    cr_assert_eq (fks_sizing_level_price (&amt, true, true, true, 100, &p), -1);  /* below 0 */
    fks_level_t at = { FKS_LEVEL_AT_PRICE, 90 };
    cr_assert_eq (fks_sizing_level_price (&at, true, true, false, 0, &p), 0);
    cr_assert_float_eq (p, 90, 1e-12);
    cr_assert_eq (fks_sizing_level_price (&pct, true, true, false, 0, &p), -1);   /* no entry */
}

Test (sizing, rule_names_parse_both_ways)
{
    fks_sizing_rule_t r;
    cr_assert_eq (fks_sizing_rule_parse ("fixed_notional", &r), 0);
    cr_assert_eq (r, FKS_SIZING_FIXED_NOTIONAL);
    cr_assert_str_eq (fks_sizing_rule_name (r), "fixed_notional");
    cr_assert_eq (fks_sizing_rule_parse ("kelly", &r), -1);
}

//  workers/qty.c: the share of a position both workers take (the signal worker of the position
//  it expects, the execution worker of the one it locks).
Test (qty, a_share_is_of_the_position_on_the_side_it_is_of)
{
    double base;
    //  A sell reducing a long, a buy reducing a short.
    cr_assert_float_eq (fks_qty_position_share (2, false, true, 0.5, 8, &base), 1, 1e-15);
    cr_assert_float_eq (base, 2, 1e-15);
    cr_assert_float_eq (fks_qty_position_share (-3, true, true, 0.5, 8, &base), 1.5, 1e-15);
    cr_assert_float_eq (base, 3, 1e-15);
    //  An add: of the position on its own side.
    cr_assert_float_eq (fks_qty_position_share (2, true, false, 0.5, 8, &base), 1, 1e-15);
    cr_assert_float_eq (fks_qty_position_share (-4, false, false, 0.25, 8, &base), 1, 1e-15);
    //  Nothing on that side: flat, or the other side.
    cr_assert_eq (fks_qty_position_share (0, false, true, 0.5, 8, &base), 0);
    cr_assert_eq (base, 0);
    cr_assert_eq (fks_qty_position_share (-2, false, true, 0.5, 8, &base), 0,
                  "a sell reducing a long finds a short");
    cr_assert_eq (fks_qty_position_share (-2, true, false, 0.5, 8, &base), 0,
                  "a buy adding to a long finds a short");
    cr_assert_eq (base, 0);
    cr_assert_eq (fks_qty_position_share (2, true, true, 0.5, 8, NULL), 0);
}

Test (qty, a_share_rounds_down_and_never_exceeds_the_position)
{
    //  Down to the step: 1/3 of 1 at 4 decimals, half of 3e-8 at 8.
    cr_assert_float_eq (fks_qty_position_share (1, false, true, 1.0 / 3, 4, NULL), 0.3333,
                        1e-15);
    cr_assert_float_eq (fks_qty_position_share (0.00000003, false, true, 0.5, 8, NULL),
                        0.00000001, 1e-18);
    cr_assert_eq (fks_qty_position_share (0.00000001, false, true, 0.5, 8, NULL), 0,
                  "half a step rounds to nothing");
    //  All of it is all of it, however the position is written.
    cr_assert_eq (fks_qty_position_share (12345.12345678, false, true, 1, 8, NULL),
                  12345.12345678);
    cr_assert_eq (fks_qty_position_share (0.3, false, true, 1, 8, NULL), 0.3);
    cr_assert_eq (fks_qty_position_share (0.7, true, false, 1, 2, NULL), 0.7);
    //  Without a step: 15 significant digits, as the numeric columns hold it.
    cr_assert_eq (fks_qty_position_share (0.1, false, true, 0.3, -1, NULL), 0.03);
    cr_assert_float_eq (fks_qty_position_share (1, false, true, 1.0 / 3, -1, NULL),
                        0.333333333333333, 1e-16);
}

Test (qty, only_a_share_between_nothing_and_all_is_usable)
{
    cr_assert (fks_qty_share_ok (0.5));
    cr_assert (fks_qty_share_ok (1));
    cr_assert (fks_qty_share_ok (1e-9));
    cr_assert_not (fks_qty_share_ok (0));
    cr_assert_not (fks_qty_share_ok (-0.5));
    cr_assert_not (fks_qty_share_ok (1.0000001));
    cr_assert_not (fks_qty_share_ok (NAN));
    cr_assert_not (fks_qty_share_ok (INFINITY));
    cr_assert_eq (fks_qty_position_share (2, false, true, 1.5, 8, NULL), 0, "refused");
    cr_assert_eq (fks_qty_position_share (2, false, true, NAN, 8, NULL), 0, "refused");
}
