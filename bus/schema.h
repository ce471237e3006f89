/*  schema.h - the body schema of every message type on the bus.
 *
 *  Each type (webhook.received, signal.created, ...) has a table of body fields: the field's
 *  name, its kind (which msgpack types it may hold), whether it is required, and for strings a
 *  maximum length and an optional list of allowed values. fks_schema_check holds a decoded body
 *  against its table; bus/envelope.c calls it on every frame it encodes or decodes, so a body
 *  that reaches a consumer has its required fields, with the right types, within bounds.
 *
 *  The tables are the machine-readable twin of schemas/envelope.md; tests/bus/test_schema.c
 *  parses the document's field tables and fails when the two disagree. Unknown body keys are
 *  ignored (changes within a version are additive); an optional field may be absent or nil.
 *  Everything here is constant data: thread-safe.
 */
#ifndef FKS_SCHEMA_H
#define FKS_SCHEMA_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    FKS_FIELD_STR = 1,      /* msgpack str: valid UTF-8, no NUL, at most max_len bytes */
    FKS_FIELD_INT,          /* msgpack int (positive or negative), within int64 */
    FKS_FIELD_F64,          /* msgpack float32/float64 or int; finite */
    FKS_FIELD_BOOL,         /* msgpack bool */
    FKS_FIELD_ID,           /* msgpack bin of 16 bytes: a UUID, never the nil UUID */
    FKS_FIELD_MAP,          /* msgpack map (contents not checked beyond the frame rules) */
    FKS_FIELD_ARRAY         /* msgpack array (ditto) */
} fks_field_kind_t;

typedef struct {
    const char *name;
    fks_field_kind_t kind;
    bool required;
    uint32_t max_len;               /* str: maximum length in bytes; 0 for other kinds */
    const char *const *values;      /* str: NULL-terminated allowed values, or NULL (any) */
} fks_schema_field_t;

typedef struct {
    const char *type;               /* e.g. "signal.created" */
    const fks_schema_field_t *fields;
    size_t nfields;
} fks_schema_t;

/*  The schema of a type, or NULL when the type is unknown. type is NUL-terminated. */
const fks_schema_t *fks_schema_find (const char *type);

/*  Iteration over every known type, in the order of schemas/envelope.md: index 0 to
 *  fks_schema_count () - 1. fks_schema_at returns NULL past the end. */
size_t fks_schema_count (void);
const fks_schema_t *fks_schema_at (size_t index);

/*  The field called name in schema, or NULL. */
const fks_schema_field_t *fks_schema_field (const fks_schema_t *schema, const char *name);

/*  The kind's name as schemas/envelope.md spells it ("str", "int", "f64", "bool", "id", "map",
 *  "array"), or "?" for a value outside the enum. */
const char *fks_field_kind_name (fks_field_kind_t kind);

/*  Checks a decoded body (a msgpack map) against schema: each required field present and not
 *  nil, each present field of its kind and within its bounds. Unknown keys are ignored. The
 *  body's keys must be strings and unique (fks_envelope_peek guarantees both for frames off the
 *  wire); a duplicate of a schema field is refused here too. Returns 0, or -1 with a message
 *  naming the field written to err (cap bytes, may be 0). */
int fks_schema_check (const fks_schema_t *schema, const msgpack_object *body,
                      char *err, size_t cap);

/*  True when the len bytes at s are well-formed UTF-8 (no overlong forms, no surrogates, at most
 *  U+10FFFF). Shared with the envelope's header checks. */
bool fks_utf8_valid (const char *s, size_t len);

#endif
