/*  test_orders.c - the order state machine and client order ids (workers/execution/orders.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "workers/execution/orders.h"

static fks_order_t
s_order (double qty)
{
    fks_order_t o;
    memset (&o, 0, sizeof o);
    snprintf (o.client_order_id, sizeof o.client_order_id, "fks-test");
    o.qty = qty;
    o.status = FKS_ORDER_SUBMITTED;
    return o;
}

Test (orders, client_order_id_is_derived_from_the_signal_and_stable)
{
    fks_id_t a, b;
    fks_id_new (&a);
    fks_id_new (&b);
    char x[FKS_CLIENT_ORDER_ID_MAX], y[FKS_CLIENT_ORDER_ID_MAX], z[FKS_CLIENT_ORDER_ID_MAX];
    fks_order_client_id (&a, x);
    fks_order_client_id (&a, y);
    fks_order_client_id (&b, z);
    cr_assert_str_eq (x, y);
    cr_assert_str_neq (x, z);
    cr_assert_eq (strlen (x), 24);
    cr_assert_eq (strncmp (x, "fks-", 4), 0);
    for (int i = 4; i < 24; i++)
        cr_assert ((x[i] >= '0' && x[i] <= '9') || (x[i] >= 'a' && x[i] <= 'f'));
}

Test (orders, client_order_id_matches_sha256_of_the_id_bytes)
{
    //  The nil UUID's 16 zero bytes: SHA-256 = 374708fff7719dd5979ec875d56cd2286f6d3cf7...
    fks_id_t nil;
    memset (&nil, 0, sizeof nil);
    char x[FKS_CLIENT_ORDER_ID_MAX];
    fks_order_client_id (&nil, x);
    cr_assert_str_eq (x, "fks-374708fff7719dd5979e");
}

Test (orders, the_machine_only_moves_forward)
{
    cr_assert (fks_order_can_move (FKS_ORDER_NEW, FKS_ORDER_SUBMITTED));
    cr_assert (fks_order_can_move (FKS_ORDER_NEW, FKS_ORDER_REJECTED));
    cr_assert (fks_order_can_move (FKS_ORDER_SUBMITTED, FKS_ORDER_FILLED));
    cr_assert (fks_order_can_move (FKS_ORDER_PARTIALLY_FILLED, FKS_ORDER_CANCELLED));
    cr_assert (!fks_order_can_move (FKS_ORDER_NEW, FKS_ORDER_FILLED));
    cr_assert (!fks_order_can_move (FKS_ORDER_FILLED, FKS_ORDER_CANCELLED));
    cr_assert (!fks_order_can_move (FKS_ORDER_CANCELLED, FKS_ORDER_SUBMITTED));
    cr_assert (!fks_order_can_move (FKS_ORDER_REJECTED, FKS_ORDER_SUBMITTED));
    fks_order_t o = s_order (1);
    o.status = FKS_ORDER_FILLED;
    cr_assert_eq (fks_order_move (&o, FKS_ORDER_CANCELLED), -1);
    cr_assert_eq (o.status, FKS_ORDER_FILLED);
}

Test (orders, fills_move_to_partially_filled_then_filled_with_the_average_price)
{
    fks_order_t o = s_order (3);
    char why[200];
    double q1 = 1, q2 = 2;
    cr_assert_eq (fks_order_apply_fill (&o, &q1, 100, why, sizeof why), 0, "%s", why);
    cr_assert_eq (o.status, FKS_ORDER_PARTIALLY_FILLED);
    cr_assert_float_eq (o.filled_qty, 1, 1e-12);
    cr_assert_eq (fks_order_apply_fill (&o, &q2, 103, why, sizeof why), 0, "%s", why);
    cr_assert_eq (q2, 2, "a fill that is the rest exactly is applied as it is");
    cr_assert_eq (o.status, FKS_ORDER_FILLED);
    cr_assert_float_eq (o.filled_qty, 3, 1e-12);
    cr_assert_float_eq (o.avg_fill_price, 102, 1e-9);
    cr_assert_eq (o.fills, 2);
}

//  A fill within 1e-9 of the rest completes the order, and is applied as the rest: the fills
//  of a filled order add up to its quantity (the orders table requires filled_qty = qty).
Test (orders, a_fill_within_the_tolerance_completes_the_order_as_the_rest)
{
    fks_order_t o = s_order (1);
    char why[200];
    double q = 0.9999999995;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), 0, "%s", why);
    cr_assert_eq (o.status, FKS_ORDER_FILLED);
    cr_assert_eq (q, 1, "applied %.17g", q);
    cr_assert_eq (o.filled_qty, 1);
    o = s_order (1);
    q = 1.0000000005;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), 0, "%s", why);
    cr_assert_eq (q, 1, "applied %.17g", q);
    o = s_order (1);
    q = 0.999;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), 0, "%s", why);
    cr_assert_eq (o.status, FKS_ORDER_PARTIALLY_FILLED);
    cr_assert_eq (q, 0.999);
}

Test (orders, an_overfill_is_refused)
{
    fks_order_t o = s_order (1);
    char why[200];
    double q = 1.5;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), -1);
    cr_assert (strstr (why, "overfills"), "%s", why);
    cr_assert_eq (o.status, FKS_ORDER_SUBMITTED);
    cr_assert_float_eq (o.filled_qty, 0, 1e-12);
}

Test (orders, final_orders_take_no_fills)
{
    fks_order_t o = s_order (1);
    o.status = FKS_ORDER_CANCELLED;
    char why[200];
    double q = 1;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), -1);
    o.status = FKS_ORDER_NEW;
    cr_assert_eq (fks_order_apply_fill (&o, &q, 100, why, sizeof why), -1,
                  "an order must be submitted before it fills");
}

Test (orders, status_names_round_trip)
{
    for (int s = FKS_ORDER_NEW; s <= FKS_ORDER_CANCELLED; s++) {
        fks_order_status_t back;
        cr_assert_eq (fks_order_status_parse (fks_order_status_name (s), &back), 0);
        cr_assert_eq ((int) back, s);
    }
    fks_order_status_t x;
    cr_assert_eq (fks_order_status_parse ("done", &x), -1);
}
