/*  test_positions.c - positions, average prices and PnL (workers/execution/positions.c).
 */
#include <criterion/criterion.h>
#include "workers/execution/positions.h"

Test (positions, buys_average_the_entry_price)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, true, 1, 100, 0);
    fks_position_apply (&p, true, 3, 200, 0);
    cr_assert_float_eq (p.qty, 4, 1e-12);
    cr_assert_float_eq (p.avg_price, 175, 1e-9);
    cr_assert_float_eq (p.realized_pnl, 0, 1e-12);
}

Test (positions, selling_part_of_a_long_realises_pnl_and_keeps_the_average)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, true, 2, 100, 0);
    double r = fks_position_apply (&p, false, 1, 130, 0);
    cr_assert_float_eq (r, 30, 1e-9);
    cr_assert_float_eq (p.qty, 1, 1e-12);
    cr_assert_float_eq (p.avg_price, 100, 1e-12);
    cr_assert_float_eq (p.realized_pnl, 30, 1e-9);
}

Test (positions, closing_goes_flat_with_a_zero_average)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, true, 0.1, 100, 0);
    fks_position_apply (&p, true, 0.2, 100, 0);
    fks_position_apply (&p, false, 0.3, 90, 0);
    cr_assert_eq (p.qty, 0, "0.1 + 0.2 - 0.3 must end exactly flat, got %.17g", p.qty);
    cr_assert_eq (p.avg_price, 0);
    cr_assert_float_eq (p.realized_pnl, -3, 1e-9);
}

Test (positions, a_short_gains_when_the_price_falls)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, false, 2, 100, 0);
    cr_assert_float_eq (p.qty, -2, 1e-12);
    cr_assert_float_eq (fks_position_unrealized (&p, 90), 20, 1e-9);
    fks_position_apply (&p, true, 2, 90, 0);
    cr_assert_float_eq (p.realized_pnl, 20, 1e-9);
}

Test (positions, a_fill_through_zero_flips_at_the_fill_price)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, true, 1, 100, 0);
    fks_position_apply (&p, false, 3, 120, 0);
    cr_assert_float_eq (p.qty, -2, 1e-12);
    cr_assert_float_eq (p.avg_price, 120, 1e-12);
    cr_assert_float_eq (p.realized_pnl, 20, 1e-9);
}

Test (positions, fees_come_off_realised_pnl)
{
    fks_position_t p = { 0 };
    fks_position_apply (&p, true, 1, 100, 0.1);
    fks_position_apply (&p, false, 1, 110, 0.11);
    cr_assert_float_eq (p.realized_pnl, 10 - 0.21, 1e-9);
    cr_assert_float_eq (p.fees, 0.21, 1e-12);
}

Test (positions, unrealised_pnl_is_zero_when_flat_or_unpriced)
{
    fks_position_t p = { 0 };
    cr_assert_eq (fks_position_unrealized (&p, 100), 0);
    fks_position_apply (&p, true, 1, 100, 0);
    cr_assert_eq (fks_position_unrealized (&p, 0), 0);
    cr_assert_float_eq (fks_position_unrealized (&p, 105), 5, 1e-9);
}
