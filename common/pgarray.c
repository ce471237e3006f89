/*  pgarray.c - one-dimensional PostgreSQL arrays in binary form (see pgarray.h).
 *
 *  array_send's layout, every integer big-endian: ndim (1), has-null flag, element OID, then
 *  per dimension its length and lower bound (1), then per element its byte length (-1 for
 *  NULL) and its bytes. The length and the flag are written when the array ends.
 */
#include "common/pgarray.h"

#include <arpa/inet.h>
#include <string.h>

#define S_PG_EPOCH_US   INT64_C(946684800000000)    /* 2000-01-01 in Unix microseconds */
#define S_FLAG_AT       4                           /* offset of the has-null flag */
#define S_COUNT_AT      12                          /* offset of the dimension's length */

static void
s_put_i32 (fks_sbuf_t *b, int32_t v)
{
    uint32_t be = htonl ((uint32_t) v);
    fks_sbuf_put (b, (const char *) &be, 4);
}

static void
s_patch_i32 (fks_sbuf_t *b, size_t at, int32_t v)
{
    uint32_t be = htonl ((uint32_t) v);
    memcpy (b->data + at, &be, 4);
}

void
fks_pg_array_init (fks_pg_array_t *a)
{
    memset (a, 0, sizeof *a);
    fks_sbuf_init (&a->buf, FKS_PG_ARRAY_MAX);
}

void
fks_pg_array_free (fks_pg_array_t *a)
{
    fks_sbuf_free (&a->buf);
    a->n = 0;
}

void
fks_pg_array_begin (fks_pg_array_t *a, uint32_t elem_oid)
{
    fks_sbuf_reset (&a->buf);
    a->n = 0;
    a->has_null = false;
    s_put_i32 (&a->buf, 1);                 /* one dimension */
    s_put_i32 (&a->buf, 0);                 /* has-null flag, set by end */
    s_put_i32 (&a->buf, (int32_t) elem_oid);
    s_put_i32 (&a->buf, 0);                 /* length, set by end */
    s_put_i32 (&a->buf, 1);                 /* lower bound */
}

void
fks_pg_array_add (fks_pg_array_t *a, const void *p, size_t n)
{
    a->n++;
    if (!p) {
        a->has_null = true;
        s_put_i32 (&a->buf, -1);
        return;
    }
    if (n > FKS_PG_ARRAY_MAX) {
        a->buf.failed = true;
        return;
    }
    s_put_i32 (&a->buf, (int32_t) n);
    fks_sbuf_put (&a->buf, p, n);
}

void
fks_pg_array_add_text (fks_pg_array_t *a, const char *s)
{
    fks_pg_array_add (a, s, s ? strlen (s) : 0);
}

void
fks_pg_array_add_uuid (fks_pg_array_t *a, const fks_id_t *id)
{
    fks_pg_array_add (a, id ? id->b : NULL, FKS_ID_SIZE);
}

void
fks_pg_array_add_timestamptz (fks_pg_array_t *a, int64_t unix_us)
{
    uint64_t v = (uint64_t) (unix_us - S_PG_EPOCH_US);
    a->n++;
    s_put_i32 (&a->buf, 8);
    s_put_i32 (&a->buf, (int32_t) (v >> 32));
    s_put_i32 (&a->buf, (int32_t) (v & 0xffffffffu));
}

void
fks_pg_array_add_jsonb (fks_pg_array_t *a, const char *json, size_t n)
{
    if (!json) {
        fks_pg_array_add (a, NULL, 0);
        return;
    }
    if (n >= FKS_PG_ARRAY_MAX) {
        a->n++;
        a->buf.failed = true;
        return;
    }
    //  jsonb's binary form: a version byte (1), then the JSON text.
    a->n++;
    s_put_i32 (&a->buf, (int32_t) (n + 1));
    fks_sbuf_put (&a->buf, "\1", 1);
    fks_sbuf_put (&a->buf, json, n);
}

int
fks_pg_array_end (fks_pg_array_t *a)
{
    if (a->buf.failed || a->buf.len < 20 || a->n > INT32_MAX)
        return -1;
    s_patch_i32 (&a->buf, S_FLAG_AT, a->has_null ? 1 : 0);
    s_patch_i32 (&a->buf, S_COUNT_AT, (int32_t) a->n);
    return 0;
}
