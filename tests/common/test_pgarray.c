/*  test_pgarray.c - common/pgarray: the binary layout of one-dimensional arrays (array_send's),
 *  byte by byte. The round trip through PostgreSQL is in tests/db/test_pg.c.
 */
#include "common/pgarray.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

static int32_t
s_i32 (const fks_pg_array_t *a, size_t at)
{
    cr_assert_leq (at + 4, a->buf.len);
    const unsigned char *p = (const unsigned char *) a->buf.data + at;
    return (int32_t) ((uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8
                      | (uint32_t) p[3]);
}

Test (pgarray, header_counts_elements_and_flags_nulls_when_ended)
{
    fks_pg_array_t a;
    fks_pg_array_init (&a);
    fks_pg_array_begin (&a, FKS_PG_OID_TEXT);
    fks_pg_array_add_text (&a, "ab");
    fks_pg_array_add_text (&a, NULL);
    fks_pg_array_add_text (&a, "");
    cr_assert_eq (fks_pg_array_end (&a), 0);
    cr_assert_eq (s_i32 (&a, 0), 1, "one dimension");
    cr_assert_eq (s_i32 (&a, 4), 1, "has a NULL");
    cr_assert_eq (s_i32 (&a, 8), FKS_PG_OID_TEXT);
    cr_assert_eq (s_i32 (&a, 12), 3, "three elements");
    cr_assert_eq (s_i32 (&a, 16), 1, "lower bound");
    cr_assert_eq (s_i32 (&a, 20), 2);
    cr_assert_eq (memcmp (a.buf.data + 24, "ab", 2), 0);
    cr_assert_eq (s_i32 (&a, 26), -1, "NULL");
    cr_assert_eq (s_i32 (&a, 30), 0, "empty, not NULL");
    cr_assert_eq (a.buf.len, 34);

    //  Begun again: empty, no NULL flag, the memory kept.
    char *mem = a.buf.data;
    fks_pg_array_begin (&a, FKS_PG_OID_UUID);
    cr_assert_eq (fks_pg_array_end (&a), 0);
    cr_assert_eq (a.buf.data, mem);
    cr_assert_eq (s_i32 (&a, 4), 0);
    cr_assert_eq (s_i32 (&a, 8), FKS_PG_OID_UUID);
    cr_assert_eq (s_i32 (&a, 12), 0);
    cr_assert_eq (a.buf.len, 20);
    fks_pg_array_free (&a);
}

Test (pgarray, typed_elements_use_the_servers_binary_forms)
{
    fks_pg_array_t a;
    fks_pg_array_init (&a);
    fks_pg_array_begin (&a, FKS_PG_OID_UUID);
    fks_id_t id;
    for (int i = 0; i < FKS_ID_SIZE; i++)
        id.b[i] = (uint8_t) (i * 17);
    fks_pg_array_add_uuid (&a, &id);
    fks_pg_array_add_uuid (&a, NULL);
    cr_assert_eq (fks_pg_array_end (&a), 0);
    cr_assert_eq (s_i32 (&a, 20), FKS_ID_SIZE);
    cr_assert_eq (memcmp (a.buf.data + 24, id.b, FKS_ID_SIZE), 0);
    cr_assert_eq (s_i32 (&a, 24 + FKS_ID_SIZE), -1);

    //  timestamptz: microseconds since 2000-01-01 UTC, a signed 64-bit integer.
    fks_pg_array_begin (&a, FKS_PG_OID_TIMESTAMPTZ);
    fks_pg_array_add_timestamptz (&a, INT64_C(946684800000001));    /* 2000-01-01 + 1 us */
    fks_pg_array_add_timestamptz (&a, INT64_C(0));                  /* 1970: negative */
    cr_assert_eq (fks_pg_array_end (&a), 0);
    cr_assert_eq (s_i32 (&a, 12), 2);
    cr_assert_eq (s_i32 (&a, 20), 8);
    cr_assert_eq (s_i32 (&a, 24), 0);
    cr_assert_eq (s_i32 (&a, 28), 1);
    int64_t v = (int64_t) ((uint64_t) (uint32_t) s_i32 (&a, 36) << 32
                           | (uint32_t) s_i32 (&a, 40));
    cr_assert_eq (v, -INT64_C(946684800000000));

    //  jsonb: a version byte (1) before the text.
    fks_pg_array_begin (&a, FKS_PG_OID_JSONB);
    fks_pg_array_add_jsonb (&a, "{}", 2);
    cr_assert_eq (fks_pg_array_end (&a), 0);
    cr_assert_eq (s_i32 (&a, 20), 3);
    cr_assert_eq (memcmp (a.buf.data + 24, "\1{}", 3), 0);
    fks_pg_array_free (&a);
}

Test (pgarray, an_element_over_the_limit_fails_the_array_once)
{
    fks_pg_array_t a;
    fks_pg_array_init (&a);
    fks_pg_array_begin (&a, FKS_PG_OID_BYTEA);
    fks_pg_array_add (&a, "x", FKS_PG_ARRAY_MAX + 1);       /* never read: refused by size */
    fks_pg_array_add (&a, "y", 1);
    cr_assert_eq (fks_pg_array_end (&a), -1);
    //  A new array on the same buffer works again.
    fks_pg_array_begin (&a, FKS_PG_OID_BYTEA);
    fks_pg_array_add (&a, "y", 1);
    cr_assert_eq (fks_pg_array_end (&a), 0);
    fks_pg_array_free (&a);
}
