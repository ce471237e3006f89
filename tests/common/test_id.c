/*  test_id.c - UUIDv7 ids: layout, order, uniqueness, text forms. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/id.h"

Test (id, version_and_variant_bits)
{
    fks_id_t id;
    cr_assert_eq (fks_id_new (&id), 0);
    cr_assert_eq (id.b[6] >> 4, 7, "version 7");
    cr_assert_eq (id.b[8] >> 6, 2, "variant 10");
}

Test (id, carries_the_unix_milliseconds)
{
    int64_t before = fks_now_ms ();
    fks_id_t id;
    fks_id_new (&id);
    int64_t after = fks_now_ms ();
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | id.b[i];
    cr_assert (ms >= before && ms <= after);
}

static int
s_cmp (const void *a, const void *b)
{
    return memcmp (a, b, FKS_ID_SIZE);
}

Test (id, unique_over_100k_and_ordered_across_milliseconds)
{
    enum { N = 100000 };
    fks_id_t *ids = malloc (N * sizeof *ids);
    for (int i = 0; i < N; i++)
        cr_assert_eq (fks_id_new (&ids[i]), 0);
    /* ids from a later millisecond sort after earlier ones */
    for (int i = 1; i < N; i++)
        cr_assert (memcmp (ids[i - 1].b, ids[i].b, 6) <= 0, "timestamps never go back");
    qsort (ids, N, sizeof *ids, s_cmp);
    for (int i = 1; i < N; i++)
        cr_assert_neq (memcmp (&ids[i - 1], &ids[i], FKS_ID_SIZE), 0, "duplicate id");
    free (ids);
}

Test (id, its_milliseconds_and_the_floor_of_a_millisecond)
{
    fks_id_t a;
    int64_t before = fks_now_ms ();
    cr_assert_eq (fks_id_new (&a), 0);
    int64_t ms = fks_id_ms (&a);
    cr_assert (ms >= before && ms <= fks_now_ms () + 1, "%lld", (long long) ms);
    fks_id_t lo, hi;
    fks_id_floor (ms, &lo);
    fks_id_floor (ms + 1, &hi);
    cr_assert (memcmp (lo.b, a.b, FKS_ID_SIZE) <= 0, "the floor of its ms sorts before it");
    cr_assert (memcmp (a.b, hi.b, FKS_ID_SIZE) < 0, "the floor of the next ms sorts after it");
    char text[FKS_ID_STR_SIZE];
    fks_id_floor (0x0123456789ab, &lo);
    fks_id_format (&lo, text);
    cr_assert_str_eq (text, "01234567-89ab-0000-0000-000000000000");
    fks_id_t v4 = a;
    v4.b[6] = (uint8_t) (0x40 | (v4.b[6] & 0x0f));
    cr_assert_eq (fks_id_ms (&v4), -1, "not a UUIDv7");
}

Test (id, format_and_parse_round_trip)
{
    fks_id_t id, back;
    fks_id_new (&id);
    char text[FKS_ID_STR_SIZE];
    fks_id_format (&id, text);
    cr_assert_eq (strlen (text), 36);
    cr_assert_eq (text[8], '-');
    cr_assert_eq (text[14], '7');
    cr_assert_eq (fks_id_parse (text, 36, &back), 0);
    cr_assert_eq (memcmp (&id, &back, sizeof id), 0);
}

Test (id, parse_accepts_upper_case)
{
    fks_id_t id;
    cr_assert_eq (fks_id_parse ("0190F3A4-1B2C-7D3E-8F40-0123456789AB", 36, &id), 0);
    char text[FKS_ID_STR_SIZE];
    fks_id_format (&id, text);
    cr_assert_str_eq (text, "0190f3a4-1b2c-7d3e-8f40-0123456789ab");
}

Test (id, parse_rejects_bad_forms)
{
    const char *bad[] = {
        "", "0190f3a4-1b2c-7d3e-8f40-0123456789a", "0190f3a4-1b2c-7d3e-8f40-0123456789abc",
        "0190f3a41b2c-7d3e-8f40-0123456789abcd", "0190f3a4-1b2c-7d3e-8f40_0123456789ab",
        "0190f3a4-1b2c-7d3e-8f40-0123456789ag", "{190f3a4-1b2c-7d3e-8f40-0123456789ab",
    };
    fks_id_t id;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (fks_id_parse (bad[i], strlen (bad[i]), &id), -1, "%s", bad[i]);
    cr_assert_eq (fks_id_parse (NULL, 36, &id), -1);
}

Test (id, nil)
{
    fks_id_t id = { { 0 } };
    cr_assert (fks_id_is_nil (&id));
    fks_id_new (&id);
    cr_assert_not (fks_id_is_nil (&id));
}

Test (id, clocks_move_forward)
{
    int64_t a = fks_mono_ns (), b = fks_mono_ns ();
    cr_assert (b >= a);
    cr_assert (fks_now_ns () / 1000000 - fks_now_ms () <= 1);
}

Test (id, clock_after_is_a_normalised_deadline_ns_from_now)
{
    struct timespec before, after;
    clock_gettime (CLOCK_MONOTONIC, &before);
    struct timespec d = fks_clock_after (CLOCK_MONOTONIC, 1999999999);
    clock_gettime (CLOCK_MONOTONIC, &after);
    cr_assert (d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    int64_t dn = (int64_t) d.tv_sec * 1000000000 + d.tv_nsec;
    int64_t bn = (int64_t) before.tv_sec * 1000000000 + before.tv_nsec;
    int64_t an = (int64_t) after.tv_sec * 1000000000 + after.tv_nsec;
    cr_assert (dn >= bn + 1999999999 && dn <= an + 1999999999);
    struct timespec n = fks_clock_after (CLOCK_REALTIME, -5);
    clock_gettime (CLOCK_REALTIME, &after);
    cr_assert (n.tv_sec <= after.tv_sec, "a negative span is now, not the past or the future");
    cr_assert (n.tv_sec >= after.tv_sec - 1);
}
