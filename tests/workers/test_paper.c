/*  test_paper.c - the paper broker's fills (workers/execution/paper.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "workers/execution/paper.h"

static fks_order_t
s_order (bool buy, bool limit, double qty, double limit_price)
{
    fks_order_t o;
    memset (&o, 0, sizeof o);
    snprintf (o.client_order_id, sizeof o.client_order_id, "fks-0123456789abcdef0123");
    snprintf (o.symbol, sizeof o.symbol, "BTCUSDT");
    o.buy = buy;
    o.limit = limit;
    o.qty = qty;
    o.limit_price = limit_price;
    o.status = FKS_ORDER_SUBMITTED;
    return o;
}

static fks_broker_t *
s_paper (double slip, double fee, double share)
{
    fks_paper_cfg_t cfg;
    fks_paper_cfg_defaults (&cfg);
    cfg.slippage_bps = slip;
    cfg.fee_bps = fee;
    cfg.max_volume_share = share;
    return fks_paper_new (&cfg);
}

Test (paper, market_order_fills_at_the_latest_price_with_slippage_and_fee)
{
    fks_broker_t *b = s_paper (10, 10, 0);
    cr_assert_str_eq (fks_broker_name (b), "paper");
    fks_order_t o = s_order (true, false, 2, 0);
    fks_quote_t q = { .has_last = true, .last = 1000, .has_ref = true, .ref = 900 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_eq (r.outcome, FKS_BROKER_ACCEPTED);
    cr_assert_eq (r.n_fills, 1);
    cr_assert_float_eq (r.fills[0].qty, 2, 1e-12);
    cr_assert_float_eq (r.fills[0].price, 1001, 1e-9);   /* the latest bar, plus 10 bps */
    cr_assert_float_eq (r.fills[0].fee, 2.002, 1e-9);    /* 10 bps of 2002 */
    cr_assert_str_eq (r.fills[0].fill_id, "fks-0123456789abcdef0123-1");
    o.buy = false;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_float_eq (r.fills[0].price, 999, 1e-9);    /* a sell slips down */
    fks_broker_destroy (&b);
    cr_assert_null (b);
}

Test (paper, market_order_falls_back_to_the_signal_price)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, false, 1, 0);
    fks_quote_t q = { .has_ref = true, .ref = 42000 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_float_eq (r.fills[0].price, 42000, 1e-9);
    fks_broker_destroy (&b);
}

Test (paper, market_order_without_any_price_is_rejected)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, false, 1, 0);
    fks_quote_t q = { 0 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_eq (r.outcome, FKS_BROKER_REJECTED);
    cr_assert_eq (r.n_fills, 0);
    cr_assert (strstr (r.reason, "no price known"), "%s", r.reason);
    fks_broker_destroy (&b);
}

Test (paper, limit_order_rests_until_a_bar_crosses_it)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, true, 1, 95);
    fks_quote_t q = { .has_last = true, .last = 100 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_eq (r.outcome, FKS_BROKER_ACCEPTED);
    cr_assert_eq (r.n_fills, 0, "a buy limit below the market rests");
    fks_bar_t above = { 0, 100, 101, 96, 99, 10 };
    cr_assert_eq (fks_broker_on_bar (b, &o, &above, &r), 0);
    cr_assert_eq (r.n_fills, 0);
    fks_bar_t through = { 0, 97, 98, 94, 96, 10 };
    cr_assert_eq (fks_broker_on_bar (b, &o, &through, &r), 0);
    cr_assert_eq (r.n_fills, 1);
    cr_assert_float_eq (r.fills[0].price, 95, 1e-12);
    fks_bar_t gap = { 0, 90, 92, 89, 91, 10 };
    cr_assert_eq (fks_broker_on_bar (b, &o, &gap, &r), 0);
    cr_assert_float_eq (r.fills[0].price, 90, 1e-12, "a gap through the limit fills at open");
    fks_broker_destroy (&b);
}

Test (paper, marketable_limit_fills_at_once_at_the_better_price)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (false, true, 1, 95);
    fks_quote_t q = { .has_last = true, .last = 100 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_submit (b, &o, &q, &r), 0);
    cr_assert_eq (r.n_fills, 1);
    cr_assert_float_eq (r.fills[0].price, 100, 1e-12);
    fks_broker_destroy (&b);
}

Test (paper, volume_share_fills_large_orders_in_parts)
{
    fks_broker_t *b = s_paper (0, 0, 0.5);
    fks_order_t o = s_order (true, true, 10, 100);
    fks_bar_t bar = { 0, 99, 101, 98, 100, 8 };
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_on_bar (b, &o, &bar, &r), 0);
    cr_assert_eq (r.n_fills, 1);
    cr_assert_float_eq (r.fills[0].qty, 4, 1e-12);
    char why[200];
    cr_assert_eq (fks_order_apply_fill (&o, &r.fills[0].qty, r.fills[0].price, why, sizeof why), 0);
    cr_assert_eq (o.status, FKS_ORDER_PARTIALLY_FILLED);
    cr_assert_eq (fks_broker_on_bar (b, &o, &bar, &r), 0);
    cr_assert_str_eq (r.fills[0].fill_id, "fks-0123456789abcdef0123-2",
                      "the second fill has the next number");
    fks_broker_destroy (&b);
}

Test (paper, a_bar_shares_its_volume_among_the_orders_it_fills)
{
    fks_broker_t *b = s_paper (0, 0, 0.1);
    fks_bar_t bar = { 0, 99, 101, 98, 100, 10 };         /* 1 to fill, in all */
    fks_broker_result_t r;
    double filled = 0;
    for (int i = 0; i < 3; i++) {
        fks_order_t o = s_order (true, true, 1, 100);
        cr_assert_eq (fks_broker_on_bar (b, &o, &bar, &r), 0);
        for (size_t k = 0; k < r.n_fills; k++)
            bar.taken += r.fills[k].qty;
        filled += r.n_fills ? r.fills[0].qty : 0;
        cr_assert_eq (r.n_fills, i == 0 ? 1 : 0, "order %d", i);
    }
    cr_assert_float_eq (filled, 1, 1e-12);
    fks_broker_destroy (&b);
}

Test (paper, a_bar_over_before_the_order_was_placed_fills_nothing)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, true, 1, 0.5);
    o.created_ms = 1700000030000;                         /* placed at 0:30 of a minute */
    fks_bar_t old = { 1700000000000 - 86400000, 0.45, 0.5, 0.4, 0.42, 10 };
    old.close_time_ms = old.open_time_ms + 60000;
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_on_bar (b, &o, &old, &r), 0);
    cr_assert_eq (r.n_fills, 0, "yesterday's bar");
    fks_bar_t before = { 1699999940000, 0.45, 0.5, 0.4, 0.42, 10 };
    before.close_time_ms = 1700000000000;
    cr_assert_eq (fks_broker_on_bar (b, &o, &before, &r), 0);
    cr_assert_eq (r.n_fills, 0, "the minute before, closed when the order came");
    fks_bar_t open = { 1700000000000, 0.45, 0.5, 0.4, 0.42, 10 };
    open.close_time_ms = 1700000060000;
    cr_assert_eq (fks_broker_on_bar (b, &o, &open, &r), 0);
    cr_assert_eq (r.n_fills, 1, "the minute it was placed in");
    fks_bar_t no_close = { 1700000000000, 0.45, 0.5, 0.4, 0.42, 10 };
    cr_assert_eq (fks_broker_on_bar (b, &o, &no_close, &r), 0);
    cr_assert_eq (r.n_fills, 0, "without a close time, only bars opened after it");
    no_close.open_time_ms = 1700000060000;
    cr_assert_eq (fks_broker_on_bar (b, &o, &no_close, &r), 0);
    cr_assert_eq (r.n_fills, 1);
    fks_broker_destroy (&b);
}

//  A bar announced again offers what it adds to the announcement before: the move from the
//  last close, new extremes, the volume since (broker.h, fks_bar_since).
Test (paper, a_bar_announced_again_offers_only_what_it_adds)
{
    fks_bar_t seen = { .open_time_ms = 60000, .open = 0.8, .high = 1.05, .low = 0.4,
                       .close = 1.0, .volume = 100 };
    //  Same range, more volume: the market moved between the closes only.
    fks_bar_t b = seen;
    b.close = 0.9;
    b.volume = 120;
    cr_assert (fks_bar_since (&b, &seen));
    cr_assert_float_eq (b.open, 1.0, 1e-12);
    cr_assert_float_eq (b.high, 1.0, 1e-12);
    cr_assert_float_eq (b.low, 0.9, 1e-12);
    cr_assert_float_eq (b.close, 0.9, 1e-12);
    cr_assert_float_eq (b.volume, 20, 1e-12);
    //  A new low and a new high are offered.
    b = seen;
    b.low = 0.3;
    b.high = 1.2;
    b.volume = 130;
    cr_assert (fks_bar_since (&b, &seen));
    cr_assert_float_eq (b.low, 0.3, 1e-12);
    cr_assert_float_eq (b.high, 1.2, 1e-12);
    cr_assert_float_eq (b.volume, 30, 1e-12);
    //  The same announcement again, or an older one: nothing.
    b = seen;
    cr_assert_not (fks_bar_since (&b, &seen));
    b = seen;
    b.volume = 90;
    b.low = 0.2;
    cr_assert_not (fks_bar_since (&b, &seen));
    //  Volume unknown (0): the prices still say what is new.
    fks_bar_t s0 = seen;
    s0.volume = 0;
    b = s0;
    b.close = 1.01;
    cr_assert (fks_bar_since (&b, &s0));
    cr_assert_float_eq (b.low, 1.0, 1e-12);
    cr_assert_float_eq (b.high, 1.01, 1e-12);
    cr_assert_float_eq (b.volume, 0, 1e-12);
    //  A resting buy at 0.5 placed after `seen` is not filled by the low made before it.
    fks_broker_t *p = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, true, 1, 0.5);
    fks_broker_result_t res;
    b = seen;
    b.volume = 120;
    cr_assert (fks_bar_since (&b, &seen));
    cr_assert_eq (fks_broker_on_bar (p, &o, &b, &res), 0);
    cr_assert_eq (res.n_fills, 0);
    fks_broker_destroy (&p);
}

Test (paper, cancel_always_succeeds)
{
    fks_broker_t *b = s_paper (0, 0, 0);
    fks_order_t o = s_order (true, true, 1, 95);
    fks_broker_result_t r;
    cr_assert_eq (fks_broker_cancel (b, &o, &r), 0);
    cr_assert_eq (r.outcome, FKS_BROKER_CANCELLED);
    fks_broker_destroy (&b);
}

Test (paper, configuration_is_read_and_checked)
{
    setenv ("FKS_PAPER_SLIPPAGE_BPS", "2.5", 1);
    setenv ("FKS_PAPER_FEE_ASSET", "USDT", 1);
    fks_paper_cfg_t cfg;
    char err[200];
    cr_assert_eq (fks_paper_cfg_load (&cfg, err, sizeof err), 0, "%s", err);
    cr_assert_float_eq (cfg.slippage_bps, 2.5, 1e-12);
    cr_assert_float_eq (cfg.fee_bps, 10, 1e-12);
    cr_assert_str_eq (cfg.fee_asset, "USDT");
    setenv ("FKS_PAPER_FEE_ASSET", "usdt!", 1);
    cr_assert_eq (fks_paper_cfg_load (&cfg, err, sizeof err), -1);
    cr_assert (strstr (err, "FKS_PAPER_FEE_ASSET"), "%s", err);
    unsetenv ("FKS_PAPER_SLIPPAGE_BPS");
    unsetenv ("FKS_PAPER_FEE_ASSET");
}
