/*  fuzz_envelope.c - libFuzzer harness for the envelope codec (bus/envelope.c).
 *
 *  Every input is handed to fks_envelope_peek and fks_envelope_decode as a frame off the wire.
 *  Beyond "no crash, no overread, no huge allocation" (ASan and libFuzzer's -rss_limit_mb catch
 *  those), it checks the codec's promises and aborts when one breaks:
 *    - a refusal always comes with a message;
 *    - decode accepts only what peek accepts, with the same header, and peek's body span lies
 *      inside the input;
 *    - an accepted frame re-encodes (unless the re-encoded frame would pass the size limit), the
 *      result decodes to the same header and body, and encoding that again is byte-identical;
 *    - every schema field's accessor agrees with the schema check (a required field reads as
 *      present, no accessor of the field's kind reports a wrong type).
 *
 *  Build: `CC=clang meson setup build-fuzz -Dfuzzing=true -Db_lundef=false`, adding
 *  `-Db_sanitize=address,undefined -Dc_args=-fsanitize=fuzzer-no-link` so that the library
 *  itself is instrumented; run: `build-fuzz/fuzz/fuzz_envelope NEW_DIR fuzz/corpus/envelope`
 *  (new inputs go to NEW_DIR, the seed corpus stays small).
 */
#include "bus/envelope.h"
#include "bus/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CHECK(cond, what) \
    do { if (!(cond)) { fprintf (stderr, "fuzz_envelope: %s\n", what); abort (); } } while (0)

static bool
s_same_hdr (const fks_envelope_hdr_t *a, const fks_envelope_hdr_t *b)
{
    return a->v == b->v && strcmp (a->type, b->type) == 0 && strcmp (a->src, b->src) == 0
        && memcmp (&a->id, &b->id, sizeof a->id) == 0
        && memcmp (&a->corr, &b->corr, sizeof a->corr) == 0
        && memcmp (&a->cause, &b->cause, sizeof a->cause) == 0
        && a->ts == b->ts && a->seq == b->seq;
}

static void
s_check_accessors (const fks_envelope_t *env)
{
    const fks_schema_t *schema = fks_schema_find (fks_envelope_hdr (env)->type);
    S_CHECK (schema, "decoded an envelope of an unknown type");
    for (size_t i = 0; i < schema->nfields; i++) {
        const fks_schema_field_t *f = &schema->fields[i];
        char buf[4097];
        double d;
        int64_t n;
        bool b;
        fks_id_t id;
        const msgpack_object *obj;
        int rc = 0;
        switch (f->kind) {
            case FKS_FIELD_STR:   rc = fks_envelope_get_str (env, f->name, buf, sizeof buf); break;
            case FKS_FIELD_INT:   rc = fks_envelope_get_i64 (env, f->name, &n); break;
            case FKS_FIELD_F64:   rc = fks_envelope_get_f64 (env, f->name, &d); break;
            case FKS_FIELD_BOOL:  rc = fks_envelope_get_bool (env, f->name, &b); break;
            case FKS_FIELD_ID:    rc = fks_envelope_get_id (env, f->name, &id); break;
            case FKS_FIELD_MAP:
            case FKS_FIELD_ARRAY: rc = fks_envelope_get_obj (env, f->name, &obj); break;
        }
        S_CHECK (rc != -1, "an accessor disagrees with the schema check");
        S_CHECK (!(f->required && rc == 1), "a required field reads as absent");
    }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    fks_envelope_hdr_t hdr;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    fks_envelope_err_t err;

    memset (&err, 0, sizeof err);
    int peeked = fks_envelope_peek (data, size, &hdr, &body, &body_len, &err);
    if (peeked != 0)
        S_CHECK (err.msg[0] && memchr (err.msg, '\0', sizeof err.msg), "peek refused silently");
    else
        S_CHECK (body >= data && body_len > 0 && body_len <= size
                 && (size_t) (body - data) <= size - body_len, "body span outside the frame");

    memset (&err, 0, sizeof err);
    fks_envelope_t *env = fks_envelope_decode (data, size, &err);
    if (!env) {
        S_CHECK (err.msg[0] && memchr (err.msg, '\0', sizeof err.msg), "decode refused silently");
        return 0;
    }
    S_CHECK (peeked == 0, "decode accepted a frame that peek refused");
    S_CHECK (s_same_hdr (&hdr, fks_envelope_hdr (env)), "peek and decode read different headers");
    s_check_accessors (env);

    //  Re-encode, decode again, re-encode again: the second encoding is a fixed point.
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init (&a);
    msgpack_sbuffer_init (&b);
    if (fks_envelope_encode (fks_envelope_hdr (env), body, body_len, &a, &err) != 0) {
        //  Legitimate only when the input sat near the limit and the encoder's added keys
        //  (corr, cause, seq written even when absent) push it over.
        S_CHECK (strstr (err.msg, "over the limit") && size > FKS_ENVELOPE_MAX_SIZE - 64,
                 "a decoded envelope does not re-encode");
    }
    else {
        fks_envelope_t *again = fks_envelope_decode (a.data, a.size, &err);
        S_CHECK (again, "a re-encoded envelope does not decode");
        S_CHECK (s_same_hdr (fks_envelope_hdr (env), fks_envelope_hdr (again)),
                 "re-encoding changed the header");
        const uint8_t *body2;
        size_t body2_len;
        S_CHECK (fks_envelope_peek (a.data, a.size, NULL, &body2, &body2_len, &err) == 0,
                 "peek refuses a re-encoded envelope");
        S_CHECK (body2_len == body_len && memcmp (body2, body, body_len) == 0,
                 "re-encoding changed the body bytes");
        S_CHECK (fks_envelope_encode (fks_envelope_hdr (again), body2, body2_len, &b, &err) == 0,
                 "a re-encoded envelope does not encode again");
        S_CHECK (a.size == b.size && memcmp (a.data, b.data, a.size) == 0,
                 "encoding is not a fixed point");
        fks_envelope_destroy (&again);
    }
    msgpack_sbuffer_destroy (&a);
    msgpack_sbuffer_destroy (&b);
    fks_envelope_destroy (&env);
    return 0;
}
