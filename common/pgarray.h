/*  pgarray.h - one-dimensional PostgreSQL arrays in binary form, for multi-row statements.
 *
 *  A batch travels as array parameters unnested on the server (INSERT ... SELECT * FROM
 *  unnest ($1::uuid[], $2::text[], ...)). Sent in binary (format 1, array_send's layout) an
 *  element is its length and its bytes: nothing is quoted or escaped here, and the server
 *  does not parse text (array_in, the element types' text input, a bytea's hex digits). The
 *  element type's OID in the header must be the type the statement casts to.
 *
 *      fks_pg_array_t a;
 *      fks_pg_array_init (&a);
 *      fks_pg_array_begin (&a, FKS_PG_OID_UUID);
 *      fks_pg_array_add_uuid (&a, &id);                (NULL: SQL NULL)
 *      if (fks_pg_array_end (&a) == 0)                 value a.buf.data, length a.buf.len
 *      ...
 *      fks_pg_array_free (&a);
 *
 *  Appends never fail loudly (the buffer is a common/sbuf): fks_pg_array_end reports out of
 *  memory, or growth past FKS_PG_ARRAY_MAX, once.
 */
#ifndef FKS_PGARRAY_H
#define FKS_PGARRAY_H

#include "common/id.h"
#include "common/sbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Element types (pg_type.oid; stable across PostgreSQL versions). */
#define FKS_PG_OID_BYTEA        17
#define FKS_PG_OID_TEXT         25
#define FKS_PG_OID_TIMESTAMPTZ  1184
#define FKS_PG_OID_UUID         2950
#define FKS_PG_OID_JSONB        3802

/*  A parameter's limit: PostgreSQL refuses a value over 1 GiB. */
#define FKS_PG_ARRAY_MAX        ((size_t) 1 << 30)

typedef struct {
    fks_sbuf_t buf;                 /* the value to send: buf.data, buf.len bytes */
    size_t n;                       /* elements added */
    bool has_null;
} fks_pg_array_t;

void fks_pg_array_init (fks_pg_array_t *a);
void fks_pg_array_free (fks_pg_array_t *a);

/*  Starts an empty array of elem_oid elements, reusing the buffer's memory. */
void fks_pg_array_begin (fks_pg_array_t *a, uint32_t elem_oid);

/*  Appends an element of n bytes in the element type's binary form; p NULL: SQL NULL. */
void fks_pg_array_add (fks_pg_array_t *a, const void *p, size_t n);
/*  text (or any type whose binary form is its text); s NULL: SQL NULL. */
void fks_pg_array_add_text (fks_pg_array_t *a, const char *s);
/*  uuid; id NULL: SQL NULL. */
void fks_pg_array_add_uuid (fks_pg_array_t *a, const fks_id_t *id);
/*  timestamptz from Unix microseconds. */
void fks_pg_array_add_timestamptz (fks_pg_array_t *a, int64_t unix_us);
/*  jsonb from JSON text (n bytes; the server checks it); json NULL: SQL NULL. */
void fks_pg_array_add_jsonb (fks_pg_array_t *a, const char *json, size_t n);

/*  Finishes the header (element count, null flag). 0, or -1 when an append ran out of memory
 *  or past FKS_PG_ARRAY_MAX (the value is then unusable). */
int fks_pg_array_end (fks_pg_array_t *a);

#endif
