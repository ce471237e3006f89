/*  test_envelope.c - the envelope codec: golden files, round trips, hostile frames.
 *
 *  The golden files in schemas/golden/ are the contract other languages check against, so the
 *  codec is held to them from both sides: every .msgpack decodes to exactly its .json, and every
 *  .json, packed field by field, encodes to exactly its .msgpack. Hostile frames are built from
 *  the golden JSON with one thing broken at a time; a JSON string "raw:<hex>" is written as
 *  those raw msgpack bytes, and a key "name#anything" is written as "name" (to make duplicates).
 *
 *  Paths come from meson: FKS_GOLDEN_DIR, FKS_GEN_GOLDEN (the generator), FKS_FUZZ_CORPUS.
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "bus/envelope.h"
#include "bus/schema.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

//  --------------------------------------------------------------------------------------------
//  Helpers

static const char *
s_env (const char *name)
{
    const char *value = getenv (name);
    cr_assert (value && *value, "%s is not set: run this test through meson (meson test -C BUILD)",
               name);
    return value;
}

//  Reads a whole file (at most 4 MiB); NULL when it cannot be read.
static uint8_t *
s_read_file (const char *path, size_t *len)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4 << 20;
    uint8_t *buf = malloc (cap);
    cr_assert_not_null (buf);
    *len = fread (buf, 1, cap, f);
    bool ok = !ferror (f) && feof (f);
    fclose (f);
    if (!ok) {
        free (buf);
        return NULL;
    }
    return buf;
}

static uint8_t *
s_golden_msgpack (const char *type, size_t *len)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s.msgpack", s_env ("FKS_GOLDEN_DIR"), type);
    uint8_t *data = s_read_file (path, len);
    cr_assert_not_null (data, "cannot read %s", path);
    return data;
}

static json_t *
s_golden_json (const char *type)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s.json", s_env ("FKS_GOLDEN_DIR"), type);
    json_error_t jerr;
    json_t *j = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null (j, "cannot parse %s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

//  Writes "raw:<hex>" as raw bytes. Returns false when s is not such a string.
static bool
s_pack_raw (msgpack_packer *pk, const char *s, size_t len)
{
    if (len < 4 || memcmp (s, "raw:", 4) != 0)
        return false;
    uint8_t buf[1024];
    size_t n = 0;
    for (size_t i = 4; i + 1 < len; i += 2) {
        if (s[i] == ' ') {
            i--;
            continue;
        }
        cr_assert (n < sizeof buf && s_hex (s[i]) >= 0 && s_hex (s[i + 1]) >= 0,
                   "bad raw hex in test data: %s", s);
        buf[n++] = (uint8_t) (s_hex (s[i]) << 4 | s_hex (s[i + 1]));
    }
    pk->callback (pk->data, (const char *) buf, n);
    return true;
}

//  Packs a JSON value. as_id: a string holding a UUID becomes bin 16.
static void s_pack_json (msgpack_packer *pk, json_t *j, bool as_id, const fks_schema_t *schema);

static void
s_pack_key (msgpack_packer *pk, const char *key)
{
    if (s_pack_raw (pk, key, strlen (key)))
        return;
    const char *mark = strchr (key, '#');
    size_t n = mark ? (size_t) (mark - key) : strlen (key);
    msgpack_pack_str (pk, n);
    msgpack_pack_str_body (pk, key, n);
}

static void
s_pack_json (msgpack_packer *pk, json_t *j, bool as_id, const fks_schema_t *schema)
{
    switch (json_typeof (j)) {
        case JSON_NULL:  msgpack_pack_nil (pk); break;
        case JSON_TRUE:  msgpack_pack_true (pk); break;
        case JSON_FALSE: msgpack_pack_false (pk); break;
        case JSON_INTEGER: msgpack_pack_int64 (pk, json_integer_value (j)); break;
        case JSON_REAL:  msgpack_pack_double (pk, json_real_value (j)); break;
        case JSON_STRING: {
            const char *s = json_string_value (j);
            size_t n = json_string_length (j);
            fks_id_t id;
            if (s_pack_raw (pk, s, n))
                break;
            if (as_id && fks_id_parse (s, n, &id) == 0) {
                msgpack_pack_bin (pk, FKS_ID_SIZE);
                msgpack_pack_bin_body (pk, id.b, FKS_ID_SIZE);
                break;
            }
            msgpack_pack_str (pk, n);
            msgpack_pack_str_body (pk, s, n);
            break;
        }
        case JSON_ARRAY: {
            msgpack_pack_array (pk, json_array_size (j));
            size_t i;
            json_t *v;
            json_array_foreach (j, i, v)
                s_pack_json (pk, v, false, NULL);
            break;
        }
        case JSON_OBJECT: {
            msgpack_pack_map (pk, json_object_size (j));
            const char *key;
            json_t *v;
            json_object_foreach (j, key, v) {
                s_pack_key (pk, key);
                const fks_schema_field_t *f = schema ? fks_schema_field (schema, key) : NULL;
                s_pack_json (pk, v, f && f->kind == FKS_FIELD_ID, NULL);
            }
            break;
        }
    }
}

//  Packs a whole envelope from JSON: header ids as bin 16, body ids per the type's schema.
static void
s_pack_envelope (msgpack_sbuffer *sb, json_t *env)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    const fks_schema_t *schema = fks_schema_find (json_string_value (json_object_get (env, "type")));
    msgpack_pack_map (&pk, json_object_size (env));
    const char *key;
    json_t *v;
    json_object_foreach (env, key, v) {
        s_pack_key (&pk, key);
        bool is_id = !strcmp (key, "id") || !strcmp (key, "corr") || !strcmp (key, "cause");
        if (!strcmp (key, "body") && json_is_object (v))
            s_pack_json (&pk, v, false, schema);
        else
            s_pack_json (&pk, v, is_id, NULL);
    }
}

//  Packs only the body of an envelope JSON.
static void
s_pack_body (msgpack_sbuffer *sb, json_t *env)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    const fks_schema_t *schema = fks_schema_find (json_string_value (json_object_get (env, "type")));
    s_pack_json (&pk, json_object_get (env, "body"), false, schema);
}

static fks_id_t
s_json_id (json_t *j, const char *what)
{
    fks_id_t id;
    memset (&id, 0, sizeof id);
    if (json_is_null (j))
        return id;
    cr_assert (json_is_string (j), "%s: expected a UUID string in the golden JSON", what);
    cr_assert_eq (fks_id_parse (json_string_value (j), json_string_length (j), &id), 0,
                  "%s: bad UUID text %s", what, json_string_value (j));
    return id;
}

//  The header a golden JSON describes.
static fks_envelope_hdr_t
s_json_hdr (json_t *env)
{
    fks_envelope_hdr_t hdr;
    memset (&hdr, 0, sizeof hdr);
    hdr.v = (uint32_t) json_integer_value (json_object_get (env, "v"));
    snprintf (hdr.type, sizeof hdr.type, "%s", json_string_value (json_object_get (env, "type")));
    snprintf (hdr.src, sizeof hdr.src, "%s", json_string_value (json_object_get (env, "src")));
    hdr.id = s_json_id (json_object_get (env, "id"), "id");
    hdr.corr = s_json_id (json_object_get (env, "corr"), "corr");
    hdr.cause = s_json_id (json_object_get (env, "cause"), "cause");
    hdr.ts = json_integer_value (json_object_get (env, "ts"));
    hdr.seq = json_integer_value (json_object_get (env, "seq"));
    return hdr;
}

static void
s_assert_same_id (const fks_id_t *id, json_t *j, const char *what)
{
    fks_id_t want = s_json_id (j, what);
    cr_assert (memcmp (id->b, want.b, FKS_ID_SIZE) == 0, "%s differs from the JSON", what);
}

static void
s_assert_same_hdr (const fks_envelope_hdr_t *a, const fks_envelope_hdr_t *b, const char *what)
{
    cr_assert (a->v == b->v && strcmp (a->type, b->type) == 0 && strcmp (a->src, b->src) == 0
               && memcmp (&a->id, &b->id, sizeof a->id) == 0
               && memcmp (&a->corr, &b->corr, sizeof a->corr) == 0
               && memcmp (&a->cause, &b->cause, sizeof a->cause) == 0
               && a->ts == b->ts && a->seq == b->seq, "%s: headers differ", what);
}

//  A msgpack object equals a JSON value: same types (float vs int), same values, same key order.
static void
s_assert_same (const msgpack_object *o, json_t *j, const char *where)
{
    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            cr_assert (json_is_null (j), "%s: nil in msgpack, not null in JSON", where);
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            cr_assert (json_is_boolean (j) && json_boolean_value (j) == o->via.boolean,
                       "%s: bool differs", where);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            cr_assert (json_is_integer (j) && o->via.u64 <= INT64_MAX
                       && (uint64_t) json_integer_value (j) == o->via.u64, "%s: int differs", where);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            cr_assert (json_is_integer (j) && json_integer_value (j) == o->via.i64,
                       "%s: int differs", where);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            cr_assert (json_is_real (j) && json_real_value (j) == o->via.f64,
                       "%s: float differs (or JSON shows it as an int)", where);
            break;
        case MSGPACK_OBJECT_STR:
            cr_assert (json_is_string (j) && json_string_length (j) == o->via.str.size
                       && memcmp (json_string_value (j), o->via.str.ptr, o->via.str.size) == 0,
                       "%s: str differs", where);
            break;
        case MSGPACK_OBJECT_BIN: {
            cr_assert_eq (o->via.bin.size, FKS_ID_SIZE, "%s: only ids are bins", where);
            fks_id_t id;
            memcpy (id.b, o->via.bin.ptr, FKS_ID_SIZE);
            s_assert_same_id (&id, j, where);
            break;
        }
        case MSGPACK_OBJECT_ARRAY:
            cr_assert (json_is_array (j) && json_array_size (j) == o->via.array.size,
                       "%s: array differs", where);
            for (uint32_t i = 0; i < o->via.array.size; i++)
                s_assert_same (&o->via.array.ptr[i], json_array_get (j, i), where);
            break;
        case MSGPACK_OBJECT_MAP: {
            cr_assert (json_is_object (j) && json_object_size (j) == o->via.map.size,
                       "%s: map differs in size", where);
            void *it = json_object_iter (j);
            for (uint32_t i = 0; i < o->via.map.size; i++, it = json_object_iter_next (j, it)) {
                const msgpack_object *k = &o->via.map.ptr[i].key;
                const char *jkey = json_object_iter_key (it);
                cr_assert (k->type == MSGPACK_OBJECT_STR && strlen (jkey) == k->via.str.size
                           && memcmp (jkey, k->via.str.ptr, k->via.str.size) == 0,
                           "%s: key %u differs from the JSON's %s", where, i, jkey);
                char inner[256];
                snprintf (inner, sizeof inner, "%s.%s", where, jkey);
                s_assert_same (&o->via.map.ptr[i].val, json_object_iter_value (it), inner);
            }
            break;
        }
        default:
            cr_assert_fail ("%s: unexpected msgpack type %d", where, o->type);
    }
}

//  A decoded envelope shows exactly the JSON's header and body, also through the accessors.
static void
s_assert_matches_json (const fks_envelope_t *env, json_t *j)
{
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    const char *type = json_string_value (json_object_get (j, "type"));
    cr_assert_eq (hdr->v, json_integer_value (json_object_get (j, "v")));
    cr_assert_str_eq (hdr->type, type);
    s_assert_same_id (&hdr->id, json_object_get (j, "id"), "id");
    s_assert_same_id (&hdr->corr, json_object_get (j, "corr"), "corr");
    s_assert_same_id (&hdr->cause, json_object_get (j, "cause"), "cause");
    cr_assert_eq (hdr->ts, json_integer_value (json_object_get (j, "ts")), "%s: ts", type);
    cr_assert_str_eq (hdr->src, json_string_value (json_object_get (j, "src")));
    cr_assert_eq (hdr->seq, json_integer_value (json_object_get (j, "seq")), "%s: seq", type);
    json_t *body = json_object_get (j, "body");
    s_assert_same (fks_envelope_body (env), body, type);

    //  Each schema field through its typed accessor.
    const fks_schema_t *schema = fks_schema_find (type);
    for (size_t i = 0; i < schema->nfields; i++) {
        const fks_schema_field_t *f = &schema->fields[i];
        json_t *want = json_object_get (body, f->name);
        bool absent = !want || json_is_null (want);
        char buf[2048];
        double d;
        int64_t n;
        bool b;
        fks_id_t id;
        const msgpack_object *obj;
        int rc = -2;
        switch (f->kind) {
            case FKS_FIELD_STR:
                rc = fks_envelope_get_str (env, f->name, buf, sizeof buf);
                if (rc == 0)
                    cr_assert_str_eq (buf, json_string_value (want), "%s.%s", type, f->name);
                break;
            case FKS_FIELD_F64:
                rc = fks_envelope_get_f64 (env, f->name, &d);
                if (rc == 0)
                    cr_assert (d == json_number_value (want), "%s.%s", type, f->name);
                break;
            case FKS_FIELD_INT:
                rc = fks_envelope_get_i64 (env, f->name, &n);
                if (rc == 0)
                    cr_assert_eq (n, json_integer_value (want), "%s.%s", type, f->name);
                break;
            case FKS_FIELD_BOOL:
                rc = fks_envelope_get_bool (env, f->name, &b);
                if (rc == 0)
                    cr_assert_eq (b, json_boolean_value (want), "%s.%s", type, f->name);
                break;
            case FKS_FIELD_ID:
                rc = fks_envelope_get_id (env, f->name, &id);
                if (rc == 0)
                    s_assert_same_id (&id, want, f->name);
                break;
            case FKS_FIELD_MAP:
            case FKS_FIELD_ARRAY:
                rc = fks_envelope_get_obj (env, f->name, &obj);
                if (rc == 0)
                    s_assert_same (obj, want, f->name);
                break;
        }
        cr_assert_eq (rc, absent ? 1 : 0, "%s.%s: accessor returned %d", type, f->name, rc);
    }
}

//  Both peek and decode refuse the frame, with an error that mentions expect.
static void
s_refused (const void *data, size_t len, const char *expect, const char *what)
{
    fks_envelope_err_t err;
    memset (&err, 0, sizeof err);
    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_peek (data, len, &hdr, NULL, NULL, &err), -1,
                  "%s: peek accepted it", what);
    cr_assert (strstr (err.msg, expect), "%s: peek said \"%s\", expected \"%s\"",
               what, err.msg, expect);
    memset (&err, 0, sizeof err);
    fks_envelope_t *env = fks_envelope_decode (data, len, &err);
    cr_assert_null (env, "%s: decode accepted it", what);
    cr_assert (strstr (err.msg, expect), "%s: decode said \"%s\", expected \"%s\"",
               what, err.msg, expect);
}

//  Decode (only: peek does not look at bodies) refuses the frame, mentioning expect.
static void
s_body_refused (const void *data, size_t len, const char *expect, const char *what)
{
    fks_envelope_err_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (fks_envelope_peek (data, len, NULL, NULL, NULL, &err), 0,
                  "%s: peek refused it: %s", what, err.msg);
    fks_envelope_t *env = fks_envelope_decode (data, len, &err);
    cr_assert_null (env, "%s: decode accepted it", what);
    cr_assert (strstr (err.msg, expect), "%s: decode said \"%s\", expected \"%s\"",
               what, err.msg, expect);
}

static fks_envelope_t *
s_accepted (const void *data, size_t len, const char *what)
{
    fks_envelope_err_t err;
    memset (&err, 0, sizeof err);
    fks_envelope_t *env = fks_envelope_decode (data, len, &err);
    cr_assert_not_null (env, "%s: refused: %s", what, err.msg);
    return env;
}

//  Packs env (JSON) and checks that it is refused as described.
static void
s_json_refused (json_t *env, const char *expect, bool body_only, const char *what)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, env);
    if (body_only)
        s_body_refused (sb.data, sb.size, expect, what);
    else
        s_refused (sb.data, sb.size, expect, what);
    msgpack_sbuffer_destroy (&sb);
}

static fks_envelope_t *
s_json_accepted (json_t *env, const char *what)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, env);
    fks_envelope_t *decoded = s_accepted (sb.data, sb.size, what);
    msgpack_sbuffer_destroy (&sb);
    return decoded;
}

//  --------------------------------------------------------------------------------------------
//  Golden files

Test (envelope, golden_folder_holds_one_pair_per_type_and_nothing_else)
{
    const char *dir = s_env ("FKS_GOLDEN_DIR");
    for (size_t i = 0; i < fks_schema_count (); i++) {
        const char *type = fks_schema_at (i)->type;
        size_t len;
        free (s_golden_msgpack (type, &len));
        json_decref (s_golden_json (type));
    }
    DIR *d = opendir (dir);
    cr_assert_not_null (d, "cannot open %s", dir);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir (d))) {
        if (e->d_name[0] == '.' || strcmp (e->d_name, "README.md") == 0)
            continue;
        char type[sizeof e->d_name];
        snprintf (type, sizeof type, "%s", e->d_name);
        char *dot = strrchr (type, '.');
        cr_assert (dot && (!strcmp (dot, ".msgpack") || !strcmp (dot, ".json")),
                   "stray file %s in %s", e->d_name, dir);
        *dot = '\0';
        cr_assert_not_null (fks_schema_find (type), "%s is not the golden file of a known type",
                            e->d_name);
        files++;
    }
    closedir (d);
    cr_assert_eq (files, 2 * fks_schema_count ());
}

Test (envelope, every_golden_file_decodes_to_its_json)
{
    for (size_t i = 0; i < fks_schema_count (); i++) {
        const char *type = fks_schema_at (i)->type;
        size_t len;
        uint8_t *data = s_golden_msgpack (type, &len);
        json_t *j = s_golden_json (type);
        fks_envelope_t *env = s_accepted (data, len, type);
        s_assert_matches_json (env, j);

        //  peek agrees with decode, and points at the body's bytes (the last key).
        fks_envelope_hdr_t hdr;
        const uint8_t *body;
        size_t body_len;
        fks_envelope_err_t err;
        cr_assert_eq (fks_envelope_peek (data, len, &hdr, &body, &body_len, &err), 0);
        s_assert_same_hdr (&hdr, fks_envelope_hdr (env), type);
        cr_assert (body > data && body + body_len == data + len, "%s: body span", type);
        cr_assert ((*body >= 0x80 && *body <= 0x8f) || *body == 0xde,
                   "%s: body span starts with a map", type);
        fks_envelope_destroy (&env);
        cr_assert_null (env);
        json_decref (j);
        free (data);
    }
}

Test (envelope, golden_frames_use_the_documented_key_order)
{
    static const char *const order[] = {
        "v", "type", "id", "corr", "cause", "ts", "src", "seq", "body" };
    for (size_t i = 0; i < fks_schema_count (); i++) {
        const char *type = fks_schema_at (i)->type;
        size_t len;
        uint8_t *data = s_golden_msgpack (type, &len);
        msgpack_zone zone;
        msgpack_zone_init (&zone, 2048);
        msgpack_object obj;
        size_t off = 0;
        cr_assert_eq (msgpack_unpack ((const char *) data, len, &off, &zone, &obj),
                      MSGPACK_UNPACK_SUCCESS);
        cr_assert_eq (obj.type, MSGPACK_OBJECT_MAP);
        cr_assert_eq (obj.via.map.size, 9, "%s: all nine keys are written", type);
        for (uint32_t k = 0; k < 9; k++) {
            const msgpack_object *key = &obj.via.map.ptr[k].key;
            cr_assert (key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (order[k])
                       && !memcmp (key->via.str.ptr, order[k], key->via.str.size),
                       "%s: key %u is not %s", type, k, order[k]);
        }
        msgpack_zone_destroy (&zone);
        free (data);
    }
}

Test (envelope, golden_frames_reencode_byte_identical)
{
    for (size_t i = 0; i < fks_schema_count (); i++) {
        const char *type = fks_schema_at (i)->type;
        size_t len;
        uint8_t *data = s_golden_msgpack (type, &len);
        fks_envelope_hdr_t hdr;
        const uint8_t *body;
        size_t body_len;
        fks_envelope_err_t err;
        cr_assert_eq (fks_envelope_peek (data, len, &hdr, &body, &body_len, &err), 0);
        msgpack_sbuffer out;
        msgpack_sbuffer_init (&out);
        cr_assert_eq (fks_envelope_encode (&hdr, body, body_len, &out, &err), 0, "%s: %s",
                      type, err.msg);
        cr_assert_eq (out.size, len, "%s: re-encoded size", type);
        cr_assert (memcmp (out.data, data, len) == 0, "%s: re-encoded bytes differ", type);
        msgpack_sbuffer_destroy (&out);
        free (data);
    }
}

//  The round trip every producer takes: values packed field by field with the fks_pack_*
//  helpers' msgpack types, encoded, decoded, re-encoded.
Test (envelope, every_type_round_trips_from_its_json_to_the_golden_bytes)
{
    for (size_t i = 0; i < fks_schema_count (); i++) {
        const char *type = fks_schema_at (i)->type;
        json_t *j = s_golden_json (type);
        size_t len;
        uint8_t *golden = s_golden_msgpack (type, &len);

        msgpack_sbuffer body, frame, again;
        msgpack_sbuffer_init (&body);
        msgpack_sbuffer_init (&frame);
        msgpack_sbuffer_init (&again);
        s_pack_body (&body, j);
        fks_envelope_hdr_t hdr = s_json_hdr (j);
        fks_envelope_err_t err;
        cr_assert_eq (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err), 0,
                      "%s: %s", type, err.msg);
        cr_assert (frame.size == len && memcmp (frame.data, golden, len) == 0,
                   "%s: encoding the JSON's values does not give the golden bytes", type);

        fks_envelope_t *env = s_accepted (frame.data, frame.size, type);
        s_assert_matches_json (env, j);
        const fks_envelope_hdr_t *dh = fks_envelope_hdr (env);
        const uint8_t *raw;
        size_t raw_len;
        cr_assert_eq (fks_envelope_peek (frame.data, frame.size, NULL, &raw, &raw_len, &err), 0);
        cr_assert_eq (fks_envelope_encode (dh, raw, raw_len, &again, &err), 0);
        cr_assert (again.size == len && memcmp (again.data, golden, len) == 0,
                   "%s: re-encoding the decoded envelope changed its bytes", type);

        fks_envelope_destroy (&env);
        msgpack_sbuffer_destroy (&body);
        msgpack_sbuffer_destroy (&frame);
        msgpack_sbuffer_destroy (&again);
        free (golden);
        json_decref (j);
    }
}

static void
s_rmdir_all (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir (d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
        unlink (path);
    }
    closedir (d);
    rmdir (dir);
}

Test (envelope, gen_golden_reproduces_the_committed_files_byte_for_byte)
{
    const char *gen = s_env ("FKS_GEN_GOLDEN");
    char dir[] = "/tmp/fks-golden-XXXXXX";
    cr_assert_not_null (mkdtemp (dir));
    pid_t pid = fork ();
    cr_assert (pid >= 0);
    if (pid == 0) {
        execl (gen, gen, dir, (char *) NULL);
        _exit (127);
    }
    int status;
    cr_assert_eq (waitpid (pid, &status, 0), pid);
    bool ran = WIFEXITED (status) && WEXITSTATUS (status) == 0;

    size_t produced = 0;
    DIR *d = opendir (dir);
    struct dirent *e;
    while (d && (e = readdir (d)))
        produced += e->d_name[0] != '.';
    if (d)
        closedir (d);

    char diff[2200] = "";
    for (size_t i = 0; ran && !diff[0] && i < fks_schema_count (); i++) {
        for (int k = 0; k < 2 && !diff[0]; k++) {
            const char *ext = k ? "json" : "msgpack";
            char a[1024], b[1024];
            snprintf (a, sizeof a, "%s/%s.%s", dir, fks_schema_at (i)->type, ext);
            snprintf (b, sizeof b, "%s/%s.%s", s_env ("FKS_GOLDEN_DIR"), fks_schema_at (i)->type,
                      ext);
            size_t alen = 0, blen = 0;
            uint8_t *x = s_read_file (a, &alen), *y = s_read_file (b, &blen);
            if (!x || !y || alen != blen || memcmp (x, y, alen) != 0)
                snprintf (diff, sizeof diff, "%s differs from %s (regenerate with gen_golden)",
                          a, b);
            free (x);
            free (y);
        }
    }
    s_rmdir_all (dir);
    cr_assert (ran, "gen_golden failed (status %d)", status);
    cr_assert_eq (produced, 2 * fks_schema_count ());
    cr_assert (!diff[0], "%s", diff);
}

Test (envelope, seed_corpus_frames_are_refused_or_accepted_as_named)
{
    const char *dir = s_env ("FKS_FUZZ_CORPUS");
    DIR *d = opendir (dir);
    cr_assert_not_null (d, "cannot open %s", dir);
    struct dirent *e;
    size_t bad = 0, good = 0;
    while ((e = readdir (d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *data = s_read_file (path, &len);
        cr_assert_not_null (data, "cannot read %s", path);
        fks_envelope_err_t err;
        fks_envelope_t *env = fks_envelope_decode (data, len, &err);
        if (strncmp (e->d_name, "bad-", 4) == 0) {
            cr_assert_null (env, "%s was accepted", e->d_name);
            bad++;
        }
        else {
            cr_assert (!strncmp (e->d_name, "golden-", 7) || !strncmp (e->d_name, "ok-", 3),
                       "%s: corpus names start with bad-, golden- or ok-", e->d_name);
            cr_assert_not_null (env, "%s was refused: %s", e->d_name, err.msg);
            good++;
        }
        fks_envelope_destroy (&env);
        free (data);
    }
    closedir (d);
    cr_assert (bad >= 10 && good >= fks_schema_count (), "corpus has %zu bad, %zu good", bad, good);
}

//  --------------------------------------------------------------------------------------------
//  Encoding and the header

Test (envelope, hdr_init_gives_a_fresh_id_and_the_current_time)
{
    fks_envelope_hdr_t a, b;
    fks_id_t corr, cause;
    memset (&corr, 0x11, sizeof corr);
    memset (&cause, 0x22, sizeof cause);
    int64_t before = fks_now_ns ();
    cr_assert_eq (fks_envelope_hdr_init (&a, "signal.created", "signal", &corr, &cause), 0);
    cr_assert_eq (fks_envelope_hdr_init (&b, "market.bar", "data", NULL, NULL), 0);
    int64_t after = fks_now_ns ();
    cr_assert_eq (a.v, FKS_ENVELOPE_VERSION);
    cr_assert_str_eq (a.type, "signal.created");
    cr_assert_str_eq (a.src, "signal");
    cr_assert (!fks_id_is_nil (&a.id) && memcmp (&a.id, &b.id, sizeof a.id) != 0);
    cr_assert (a.ts >= before && b.ts <= after);
    cr_assert (memcmp (&a.corr, &corr, sizeof corr) == 0 && memcmp (&a.cause, &cause, sizeof cause) == 0);
    cr_assert (fks_id_is_nil (&b.corr) && fks_id_is_nil (&b.cause));
    cr_assert_eq (a.seq, 0);

    char long_type[FKS_TYPE_MAX + 1];
    memset (long_type, 'x', FKS_TYPE_MAX);
    long_type[FKS_TYPE_MAX] = '\0';
    cr_assert_eq (fks_envelope_hdr_init (&a, long_type, "signal", NULL, NULL), -1,
                  "a type that would be truncated is an error");
    cr_assert_eq (fks_envelope_hdr_init (&a, "signal.created", "", NULL, NULL), -1);
    cr_assert_eq (fks_envelope_hdr_init (&a, NULL, "signal", NULL, NULL), -1);
}

Test (envelope, encode_appends_a_frame_that_decodes_to_what_was_packed)
{
    fks_envelope_hdr_t hdr;
    fks_id_t alert, order;
    cr_assert_eq (fks_id_new (&alert), 0);
    cr_assert_eq (fks_id_new (&order), 0);
    cr_assert_eq (fks_envelope_hdr_init (&hdr, "order.requested", "gateway", &alert, NULL), 0);
    hdr.v = 0;                                  //  0 means the current version

    msgpack_sbuffer body, out;
    msgpack_sbuffer_init (&body);
    msgpack_sbuffer_init (&out);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 6);
    fks_pack_kv_id (&pk, "order_id", &order);
    fks_pack_kv_str (&pk, "symbol", "ETHUSDT");
    fks_pack_kv_str (&pk, "side", "buy");
    fks_pack_kv_str (&pk, "type", "limit");
    fks_pack_kv_i64 (&pk, "qty", 2);            //  an int is a valid f64
    fks_pack_kv_f64 (&pk, "limit_price", 3050.25);

    msgpack_sbuffer_write (&out, "abc", 3);     //  whatever the caller had before stays
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&hdr, body.data, body.size, &out, &err), 0, "%s", err.msg);
    cr_assert (memcmp (out.data, "abc", 3) == 0);

    fks_envelope_t *env = s_accepted (out.data + 3, out.size - 3, "manual order");
    const fks_envelope_hdr_t *got = fks_envelope_hdr (env);
    cr_assert_eq (got->v, 1);
    cr_assert_str_eq (got->type, "order.requested");
    cr_assert_str_eq (got->src, "gateway");
    cr_assert (memcmp (&got->id, &hdr.id, sizeof hdr.id) == 0);
    cr_assert (memcmp (&got->corr, &alert, sizeof alert) == 0);
    cr_assert (fks_id_is_nil (&got->cause));
    cr_assert_eq (got->ts, hdr.ts);
    fks_id_t id;
    double qty, price;
    char symbol[16];
    cr_assert_eq (fks_envelope_get_id (env, "order_id", &id), 0);
    cr_assert (memcmp (&id, &order, sizeof id) == 0);
    cr_assert_eq (fks_envelope_get_str (env, "symbol", symbol, sizeof symbol), 0);
    cr_assert_str_eq (symbol, "ETHUSDT");
    cr_assert_eq (fks_envelope_get_f64 (env, "qty", &qty), 0);
    cr_assert (qty == 2.0);
    cr_assert_eq (fks_envelope_get_f64 (env, "limit_price", &price), 0);
    cr_assert (price == 3050.25);
    cr_assert_eq (fks_envelope_get_str (env, "requested_by", symbol, sizeof symbol), 1);
    fks_envelope_destroy (&env);
    fks_envelope_destroy (&env);                //  destroying NULL is a no-op
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&out);
}

//  Encodes body (packed from JSON) under hdr and expects a refusal that leaves out untouched.
static void
s_encode_refused (const fks_envelope_hdr_t *hdr, const void *body, size_t body_len,
                  const char *expect, const char *what)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    msgpack_sbuffer_write (&out, "x", 1);
    fks_envelope_err_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (fks_envelope_encode (hdr, body, body_len, &out, &err), -1,
                  "%s: encode accepted it", what);
    cr_assert (strstr (err.msg, expect), "%s: said \"%s\", expected \"%s\"", what, err.msg, expect);
    cr_assert_eq (out.size, 1, "%s: a refused encode appended bytes", what);
    msgpack_sbuffer_destroy (&out);
}

Test (envelope, encode_refuses_a_bad_header_and_appends_nothing)
{
    json_t *j = s_golden_json ("signal.created");
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    s_pack_body (&body, j);
    fks_envelope_hdr_t good = s_json_hdr (j), h;

    h = good; h.v = 2;
    s_encode_refused (&h, body.data, body.size, "unsupported version 2", "v 2");
    h = good; snprintf (h.type, sizeof h.type, "signal.invented");
    s_encode_refused (&h, body.data, body.size, "unknown type", "unknown type");
    h = good; memset (h.type, 'a', sizeof h.type);
    s_encode_refused (&h, body.data, body.size, "type", "type without NUL");
    h = good; h.src[0] = '\0';
    s_encode_refused (&h, body.data, body.size, "src", "empty src");
    h = good; snprintf (h.src, sizeof h.src, "sig\nnal");
    s_encode_refused (&h, body.data, body.size, "not printable", "src with a newline");
    h = good; memset (&h.id, 0, sizeof h.id);
    s_encode_refused (&h, body.data, body.size, "nil UUID", "nil id");
    h = good; h.ts = 0;
    s_encode_refused (&h, body.data, body.size, "ts", "ts 0");
    h = good; h.seq = -1;
    s_encode_refused (&h, body.data, body.size, "seq", "seq -1");

    //  The same header with a good body encodes.
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&good, body.data, body.size, &out, &err), 0, "%s", err.msg);
    msgpack_sbuffer_destroy (&out);
    msgpack_sbuffer_destroy (&body);
    json_decref (j);
}

Test (envelope, encode_refuses_a_body_that_breaks_its_schema)
{
    json_t *j = s_golden_json ("signal.created");
    fks_envelope_hdr_t hdr = s_json_hdr (j);
    json_t *body = json_object_get (j, "body");
    msgpack_sbuffer sb;

    json_object_del (body, "qty");
    msgpack_sbuffer_init (&sb);
    s_pack_body (&sb, j);
    s_encode_refused (&hdr, sb.data, sb.size, "qty: required field missing", "missing qty");
    msgpack_sbuffer_destroy (&sb);

    json_object_set_new (body, "qty", json_string ("0.25"));
    msgpack_sbuffer_init (&sb);
    s_pack_body (&sb, j);
    s_encode_refused (&hdr, sb.data, sb.size, "qty: expected f64", "qty as str");
    msgpack_sbuffer_destroy (&sb);

    static const uint8_t array[] = { 0x91, 0x01 };
    s_encode_refused (&hdr, array, sizeof array, "not a msgpack map", "array body");
    s_encode_refused (&hdr, array, 0, "empty", "empty body");
    static const uint8_t trailing[] = { 0x80, 0xc0 };
    s_encode_refused (&hdr, trailing, sizeof trailing, "trailing", "body with a trailing byte");
    static const uint8_t lying[] = { 0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
    s_encode_refused (&hdr, lying, sizeof lying, "claims", "body with a lying str32");
    json_decref (j);
}

Test (envelope, encode_refuses_a_frame_over_the_size_limit)
{
    json_t *j = s_golden_json ("security.event");
    fks_envelope_hdr_t hdr = s_json_hdr (j);
    size_t pad = FKS_ENVELOPE_MAX_SIZE;
    char *text = malloc (pad);
    memset (text, 'p', pad);
    json_object_set_new (json_object_get (j, "body"), "pad", json_stringn (text, pad));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_body (&sb, j);
    s_encode_refused (&hdr, sb.data, sb.size, "over the limit", "oversized body");
    msgpack_sbuffer_destroy (&sb);

    //  A body 10 bytes under the limit: it fits alone, but not with the header.
    json_object_set_new (json_object_get (j, "body"), "pad", json_stringn (text, pad / 2));
    msgpack_sbuffer_init (&sb);
    s_pack_body (&sb, j);
    size_t fixed = sb.size - pad / 2;
    msgpack_sbuffer_destroy (&sb);
    json_object_set_new (json_object_get (j, "body"), "pad",
                         json_stringn (text, FKS_ENVELOPE_MAX_SIZE - 10 - fixed));
    msgpack_sbuffer_init (&sb);
    s_pack_body (&sb, j);
    cr_assert_eq (sb.size, FKS_ENVELOPE_MAX_SIZE - 10);
    s_encode_refused (&hdr, sb.data, sb.size, "over the limit", "frame over the limit");
    msgpack_sbuffer_destroy (&sb);
    free (text);
    json_decref (j);
}

Test (envelope, pack_helpers_write_the_documented_msgpack_types)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    fks_id_t id;
    memset (&id, 0xab, sizeof id);
    msgpack_pack_map (&pk, 7);
    fks_pack_kv_str (&pk, "s", "text");
    fks_pack_kv_str (&pk, "none", NULL);
    fks_pack_kv_f64 (&pk, "f", 1.0);
    fks_pack_kv_i64 (&pk, "i", -300);
    fks_pack_kv_bool (&pk, "b", true);
    fks_pack_kv_id (&pk, "id", &id);
    fks_pack_kv_nil (&pk, "n");
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object o;
    size_t off = 0;
    cr_assert_eq (msgpack_unpack (sb.data, sb.size, &off, &zone, &o), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (fks_msgpack_map_get (&o, "s")->type, MSGPACK_OBJECT_STR);
    cr_assert_eq (fks_msgpack_map_get (&o, "none")->type, MSGPACK_OBJECT_NIL);
    cr_assert_eq (fks_msgpack_map_get (&o, "f")->type, MSGPACK_OBJECT_FLOAT64,
                  "f64 fields are float 64 even when integral");
    cr_assert_eq (fks_msgpack_map_get (&o, "i")->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq (fks_msgpack_map_get (&o, "i")->via.i64, -300);
    cr_assert_eq (fks_msgpack_map_get (&o, "b")->type, MSGPACK_OBJECT_BOOLEAN);
    const msgpack_object *bin = fks_msgpack_map_get (&o, "id");
    cr_assert (bin->type == MSGPACK_OBJECT_BIN && bin->via.bin.size == 16
               && memcmp (bin->via.bin.ptr, id.b, 16) == 0);
    cr_assert_eq (fks_msgpack_map_get (&o, "n")->type, MSGPACK_OBJECT_NIL);
    cr_assert_null (fks_msgpack_map_get (&o, "absent"));
    cr_assert_null (fks_msgpack_map_get (fks_msgpack_map_get (&o, "s"), "x"), "not a map");
    cr_assert_null (fks_msgpack_map_get (NULL, "x"));
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&sb);
}

Test (envelope, accessors_report_absent_nil_and_wrong_types)
{
    json_t *j = s_golden_json ("order.requested");
    json_t *body = json_object_get (j, "body");
    json_object_set_new (body, "x_str", json_string ("abc"));
    json_object_set_new (body, "x_nul", json_stringn ("a\0b", 3));
    json_object_set_new (body, "x_neg", json_integer (-5));
    json_object_set_new (body, "x_big", json_string ("raw:cf ffffffffffffffff"));
    json_object_set_new (body, "x_half", json_real (2.5));
    json_object_set_new (body, "x_whole", json_real (3.0));
    json_object_set_new (body, "x_huge", json_real (1e19));
    json_object_set_new (body, "x_nan", json_string ("raw:cb 7ff8000000000000"));
    json_object_set_new (body, "x_f32", json_string ("raw:ca 3fc00000"));
    json_object_set_new (body, "x_true", json_true ());
    json_object_set_new (body, "x_bin15", json_string ("raw:c40f 000102030405060708090a0b0c0d0e"));
    json_object_set_new (body, "x_map", json_pack ("{s:i}", "k", 1));
    json_object_set_new (body, "x_nil", json_null ());
    fks_envelope_t *env = s_json_accepted (j, "order.requested with extra keys");

    char buf[8];
    cr_assert_eq (fks_envelope_get_str (env, "x_str", buf, sizeof buf), 0);
    cr_assert_str_eq (buf, "abc");
    cr_assert_eq (fks_envelope_get_str (env, "x_str", buf, 3), -1, "no room for the NUL");
    cr_assert_eq (fks_envelope_get_str (env, "x_str", buf, 4), 0);
    cr_assert_eq (fks_envelope_get_str (env, "x_nul", buf, sizeof buf), -1);
    cr_assert_eq (fks_envelope_get_str (env, "x_neg", buf, sizeof buf), -1);
    cr_assert_eq (fks_envelope_get_str (env, "absent", buf, sizeof buf), 1);
    cr_assert_str_eq (buf, "");
    cr_assert_eq (fks_envelope_get_str (env, "x_nil", buf, sizeof buf), 1);
    cr_assert_eq (fks_envelope_get_str (env, "limit_price", buf, sizeof buf), 1, "nil in golden");

    double d;
    cr_assert_eq (fks_envelope_get_f64 (env, "x_neg", &d), 0);
    cr_assert (d == -5.0);
    cr_assert_eq (fks_envelope_get_f64 (env, "x_half", &d), 0);
    cr_assert (d == 2.5);
    cr_assert_eq (fks_envelope_get_f64 (env, "x_f32", &d), 0);
    cr_assert (d == 1.5);
    cr_assert_eq (fks_envelope_get_f64 (env, "x_nan", &d), -1);
    cr_assert_eq (fks_envelope_get_f64 (env, "x_str", &d), -1);
    cr_assert_eq (fks_envelope_get_f64 (env, "absent", &d), 1);

    int64_t n;
    cr_assert_eq (fks_envelope_get_i64 (env, "x_neg", &n), 0);
    cr_assert_eq (n, -5);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_whole", &n), 0);
    cr_assert_eq (n, 3);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_half", &n), -1);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_huge", &n), -1);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_big", &n), -1);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_nan", &n), -1);
    cr_assert_eq (fks_envelope_get_i64 (env, "x_nil", &n), 1);

    bool b = false;
    cr_assert_eq (fks_envelope_get_bool (env, "x_true", &b), 0);
    cr_assert (b);
    cr_assert_eq (fks_envelope_get_bool (env, "x_neg", &b), -1);
    cr_assert_eq (fks_envelope_get_bool (env, "absent", &b), 1);

    fks_id_t id;
    cr_assert_eq (fks_envelope_get_id (env, "order_id", &id), 0);
    s_assert_same_id (&id, json_object_get (body, "order_id"), "order_id");
    cr_assert_eq (fks_envelope_get_id (env, "x_bin15", &id), -1);
    cr_assert_eq (fks_envelope_get_id (env, "x_str", &id), -1);
    cr_assert_eq (fks_envelope_get_id (env, "absent", &id), 1);

    const msgpack_object *obj = NULL;
    cr_assert_eq (fks_envelope_get_obj (env, "x_map", &obj), 0);
    cr_assert_eq (obj->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (fks_msgpack_map_get (obj, "k")->via.u64, 1);
    cr_assert_eq (fks_envelope_get_obj (env, "x_nil", &obj), 1);
    fks_envelope_destroy (&env);
    json_decref (j);
}

//  --------------------------------------------------------------------------------------------
//  Hostile frames: the frame rules

Test (envelope, empty_frame_is_refused)
{
    s_refused ("", 0, "empty", "empty frame");
    s_refused (NULL, 0, "empty", "NULL frame");
}

Test (envelope, every_truncation_of_every_golden_frame_is_refused)
{
    for (size_t i = 0; i < fks_schema_count (); i++) {
        size_t len;
        uint8_t *data = s_golden_msgpack (fks_schema_at (i)->type, &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *copy = malloc (cut ? cut : 1);     //  exact size: ASan sees any overread
            memcpy (copy, data, cut);
            fks_envelope_err_t err;
            err.msg[0] = '\0';
            cr_assert_eq (fks_envelope_peek (copy, cut, NULL, NULL, NULL, &err), -1,
                          "%s cut at %zu accepted", fks_schema_at (i)->type, cut);
            cr_assert (err.msg[0], "a refusal always says why");
            cr_assert_null (fks_envelope_decode (copy, cut, &err));
            free (copy);
        }
        free (data);
    }
}

Test (envelope, map32_claiming_184_million_entries_is_refused_without_allocating)
{
    static const uint8_t frame[] = { 0xdf, 0x0a, 0xff, 0x2e, 0x0a };
    s_refused (frame, sizeof frame, "claims", "df 0a ff 2e 0a");
}

//  Every length-carrying format, claiming one more than remains, as the frame's last value.
Test (envelope, lengths_and_counts_beyond_the_remaining_bytes_are_refused)
{
    static const struct { const char *raw_bad, *raw_good, *name; } cases[] = {
        { "raw:a5 61626364",            "raw:a4 61626364",            "fixstr" },
        { "raw:d9 05 61626364",         "raw:d9 04 61626364",         "str 8" },
        { "raw:da 0005 61626364",       "raw:da 0004 61626364",       "str 16" },
        { "raw:db 00000005 61626364",   "raw:db 00000004 61626364",   "str 32" },
        { "raw:c4 05 61626364",         "raw:c4 04 61626364",         "bin 8" },
        { "raw:c5 0005 61626364",       "raw:c5 0004 61626364",       "bin 16" },
        { "raw:c6 00000005 61626364",   "raw:c6 00000004 61626364",   "bin 32" },
        { "raw:93 0102",                "raw:92 0102",                "fixarray" },
        { "raw:dc 0003 0102",           "raw:dc 0002 0102",           "array 16" },
        { "raw:dd 00000003 0102",       "raw:dd 00000002 0102",       "array 32" },
        { "raw:82 a16101",              "raw:81 a16101",              "fixmap" },
        { "raw:de 0002 a16101",         "raw:de 0001 a16101",         "map 16" },
        { "raw:df 00000002 a16101",     "raw:df 00000001 a16101",     "map 32" },
        { "raw:df ffffffff a16101",     NULL,                         "map 32 max" },
        { "raw:dd ffffffff 01",         NULL,                         "array 32 max" },
        { "raw:db ffffffff 01",         NULL,                         "str 32 max" },
        { "raw:c6 ffffffff 01",         NULL,                         "bin 32 max" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = s_golden_json ("market.bar");
        json_t *body = json_object_get (j, "body");
        json_object_set_new (body, "z_last", json_string (cases[i].raw_bad));
        s_json_refused (j, "claims", false, cases[i].name);
        if (cases[i].raw_good) {
            json_object_set_new (body, "z_last", json_string (cases[i].raw_good));
            fks_envelope_t *env = s_json_accepted (j, cases[i].name);
            fks_envelope_destroy (&env);
        }
        json_decref (j);
    }
    //  A width field itself cut short.
    static const uint8_t short_width[] = { 0x81, 0xa1, 'x', 0xdb, 0x00, 0x00 };
    s_refused (short_width, sizeof short_width, "truncated", "str 32 length cut short");
    static const uint8_t short_number[] = { 0x81, 0xa1, 'x', 0xcb, 0x00, 0x00 };
    s_refused (short_number, sizeof short_number, "claims", "float 64 cut short");
}

Test (envelope, nesting_deeper_than_the_limit_is_refused)
{
    //  100 levels of arrays, and of maps, as a whole frame.
    uint8_t frame[400];
    size_t n = 0;
    frame[n++] = 0x81; frame[n++] = 0xa1; frame[n++] = 'x';
    for (int i = 0; i < 100; i++)
        frame[n++] = 0x91;
    frame[n++] = 0xc0;
    s_refused (frame, n, "nests deeper", "100 nested arrays");
    n = 0;
    for (int i = 0; i < 100; i++) {
        frame[n++] = 0x81; frame[n++] = 0xa1; frame[n++] = 'x';
    }
    frame[n++] = 0xc0;
    s_refused (frame, n, "nests deeper", "100 nested maps");

    //  The limit exactly: envelope 1, body 2, then arrays at levels 3..8 are fine; 9 is not.
    json_t *j = s_golden_json ("market.bar");
    json_object_set_new (json_object_get (j, "body"), "deep",
                         json_string ("raw:91 91 91 91 91 91 c0"));
    fks_envelope_t *env = s_json_accepted (j, "nesting at the limit");
    fks_envelope_destroy (&env);
    json_object_set_new (json_object_get (j, "body"), "deep",
                         json_string ("raw:91 91 91 91 91 91 91 c0"));
    s_json_refused (j, "nests deeper", false, "nesting one past the limit");
    json_decref (j);
}

static json_t *
s_padded (size_t total)
{
    //  signal.created with an unknown body key "pad" sized so the frame is total bytes.
    json_t *j = s_golden_json ("signal.created");
    size_t guess = 100000;
    char *text = malloc (total);
    memset (text, 'p', total);
    json_object_set_new (json_object_get (j, "body"), "pad", json_stringn (text, guess));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, j);
    size_t fixed = sb.size - guess;             //  a str 32 header either way
    msgpack_sbuffer_destroy (&sb);
    json_object_set_new (json_object_get (j, "body"), "pad", json_stringn (text, total - fixed));
    free (text);
    return j;
}

Test (envelope, frame_over_the_size_limit_is_refused_and_one_at_it_is_accepted)
{
    json_t *j = s_padded (FKS_ENVELOPE_MAX_SIZE + 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, j);
    cr_assert_eq (sb.size, FKS_ENVELOPE_MAX_SIZE + 1);
    s_refused (sb.data, sb.size, "over the limit", "frame one byte over");
    msgpack_sbuffer_destroy (&sb);
    json_decref (j);

    j = s_padded (FKS_ENVELOPE_MAX_SIZE);
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, j);
    cr_assert_eq (sb.size, FKS_ENVELOPE_MAX_SIZE);
    fks_envelope_t *env = s_accepted (sb.data, sb.size, "frame at the limit");
    fks_envelope_destroy (&env);
    msgpack_sbuffer_destroy (&sb);
    json_decref (j);
}

Test (envelope, trailing_bytes_are_refused)
{
    size_t len;
    uint8_t *data = s_golden_msgpack ("signal.created", &len);
    uint8_t *longer = malloc (len + 1);
    memcpy (longer, data, len);
    longer[len] = 0xc0;
    s_refused (longer, len + 1, "1 trailing byte", "golden + nil");
    free (longer);
    free (data);
}

Test (envelope, a_frame_that_is_not_a_map_is_refused)
{
    static const uint8_t array[] = { 0x91, 0x80 };
    s_refused (array, sizeof array, "not a msgpack map", "array frame");
    static const uint8_t str[] = { 0xa1, 'x' };
    s_refused (str, sizeof str, "not a msgpack map", "str frame");
}

Test (envelope, ext_values_and_the_unused_byte_are_refused)
{
    static const char *const exts[] = {
        "raw:d4 01 00", "raw:d5 01 0000", "raw:d6 ff 66850000", "raw:d7 01 0000000000000000",
        "raw:d8 01 00000000000000000000000000000000", "raw:c7 01 01 00", "raw:c8 0001 01 00",
        "raw:c9 00000001 01 00",
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        json_t *j = s_golden_json ("market.bar");
        json_object_set_new (json_object_get (j, "body"), "when", json_string (exts[i]));
        s_json_refused (j, "ext", false, exts[i]);
        json_decref (j);
    }
    json_t *j = s_golden_json ("market.bar");
    json_object_set_new (json_object_get (j, "body"), "odd", json_string ("raw:c1"));
    s_json_refused (j, "invalid msgpack byte 0xc1", false, "0xc1");
    json_decref (j);
}

Test (envelope, duplicate_keys_are_refused_at_every_level)
{
    json_t *j = s_golden_json ("signal.created");
    json_object_set_new (j, "type#again", json_string ("signal.created"));
    s_json_refused (j, "duplicate key \"type\"", false, "duplicate header key");
    json_decref (j);

    j = s_golden_json ("signal.created");
    json_object_set_new (json_object_get (j, "body"), "qty#again", json_real (9.0));
    s_json_refused (j, "duplicate key \"qty\"", false, "duplicate body key");
    json_decref (j);

    j = s_golden_json ("webhook.received");
    json_object_set_new (json_object_get (json_object_get (j, "body"), "stop_loss"),
                         "type#again", json_string ("stop"));
    s_json_refused (j, "duplicate key \"type\"", false, "duplicate key in a nested map");
    json_decref (j);

    //  Many keys, one duplicate at the end: found through the hash table, not by luck.
    j = s_golden_json ("market.bar");
    json_t *wide = json_object ();
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf (key, sizeof key, "k%d", i);
        json_object_set_new (wide, key, json_integer (i));
    }
    json_object_set_new (wide, "k57#again", json_integer (0));
    json_object_set_new (json_object_get (j, "body"), "wide", wide);
    s_json_refused (j, "duplicate key \"k57\"", false, "duplicate among 101 keys");
    json_decref (j);
}

Test (envelope, maps_over_the_key_limit_are_refused)
{
    for (int n = FKS_ENVELOPE_MAX_KEYS; n <= FKS_ENVELOPE_MAX_KEYS + 1; n++) {
        json_t *j = s_golden_json ("market.bar");
        json_t *wide = json_object ();
        char key[16];
        for (int i = 0; i < n; i++) {
            snprintf (key, sizeof key, "k%d", i);
            json_object_set_new (wide, key, json_integer (i));
        }
        json_object_set_new (json_object_get (j, "body"), "wide", wide);
        if (n <= FKS_ENVELOPE_MAX_KEYS) {
            fks_envelope_t *env = s_json_accepted (j, "map at the key limit");
            fks_envelope_destroy (&env);
        }
        else
            s_json_refused (j, "over the limit of 128", false, "map over the key limit");
        json_decref (j);
    }
}

Test (envelope, map_keys_that_are_not_strings_are_refused)
{
    json_t *j = s_golden_json ("market.bar");
    json_object_set_new (json_object_get (j, "body"), "raw:01", json_integer (1));
    s_json_refused (j, "is not a str", false, "int key");
    json_decref (j);
    j = s_golden_json ("market.bar");
    json_object_set_new (json_object_get (j, "body"), "raw:c4 01 61", json_integer (1));
    s_json_refused (j, "is not a str", false, "bin key");
    json_decref (j);
}

Test (envelope, unknown_keys_are_accepted_and_ignored)
{
    json_t *j = s_golden_json ("signal.scored");
    json_t *golden = s_golden_json ("signal.scored");
    json_object_set_new (j, "trace", json_pack ("{s:s, s:[i, i, {s:n}]}", "span", "abc",
                                                "path", 1, 2, "x"));
    json_object_set_new (json_object_get (j, "body"), "future_field", json_string ("later"));
    json_object_set_new (json_object_get (j, "body"), "future_map", json_pack ("{s:f}", "a", 1.5));
    fks_envelope_t *env = s_json_accepted (j, "unknown keys");
    //  The known content reads exactly as without the extra keys.
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    fks_envelope_hdr_t want = s_json_hdr (golden);
    s_assert_same_hdr (hdr, &want, "unknown keys");
    json_t *body = json_object_get (golden, "body");
    const char *key;
    json_t *v;
    json_object_foreach (body, key, v)
        s_assert_same (fks_msgpack_map_get (fks_envelope_body (env), key), v, key);
    char buf[16];
    cr_assert_eq (fks_envelope_get_str (env, "future_field", buf, sizeof buf), 0);
    cr_assert_str_eq (buf, "later");
    fks_envelope_destroy (&env);
    json_decref (j);
    json_decref (golden);
}

//  --------------------------------------------------------------------------------------------
//  Hostile frames: the header

typedef struct {
    const char *key;
    const char *value;          //  JSON text, or a "raw:" string in JSON quotes
    const char *expect;
} s_hdr_case_t;

Test (envelope, wrong_values_for_each_header_field_are_refused)
{
    static const s_hdr_case_t cases[] = {
        { "v", "\"1\"", "v: expected uint, got str" },
        { "v", "-1", "v: expected uint, got negative int" },
        { "v", "1.0", "v: expected uint, got float" },
        { "v", "null", "v: expected uint, got nil" },
        { "v", "2", "unsupported version 2" },
        { "v", "0", "unsupported version 0" },
        { "v", "4294967297", "unsupported version 4294967297" },
        { "type", "5", "type: expected str, got uint" },
        { "type", "\"\"", "type: empty" },
        { "type", "\"signal.invented\"", "unknown type \"signal.invented\"" },
        { "type", "\"signal.created\\u0000\"", "(NUL)" },
        { "type", "\"signal.created\\n\"", "not printable" },
        { "type", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
          "type: 64 bytes, over the limit of 63" },
        { "type", "\"raw:c4 0e 7369676e616c2e63726561746564\"", "type: expected str, got bin" },
        { "id", "\"raw:c4 0f 0102030405060708090a0b0c0d0e0f\"", "id: expected bin 16, got bin 15" },
        { "id", "\"raw:c4 11 0102030405060708090a0b0c0d0e0f1011\"", "id: expected bin 16, got bin 17" },
        { "id", "\"raw:c4 10 00000000000000000000000000000000\"", "id: the nil UUID" },
        { "id", "\"01907a3c-5e10-7000-8000-000000000002-as-text\"", "id: expected bin 16, got str" },
        { "id", "null", "id: expected bin 16, got nil" },
        { "id", "7", "id: expected bin 16, got uint" },
        { "corr", "7", "corr: expected bin 16 or nil, got uint" },
        { "corr", "\"raw:c4 10 00000000000000000000000000000000\"", "send msgpack nil" },
        { "corr", "\"raw:c4 03 010203\"", "corr: expected bin 16, got bin 3" },
        { "cause", "\"text\"", "cause: expected bin 16 or nil, got str" },
        { "cause", "[]", "cause: expected bin 16 or nil, got array" },
        { "ts", "0", "ts: 0 is below 1" },
        { "ts", "-5", "ts: -5 is below 1" },
        { "ts", "\"1720000000\"", "ts: expected int, got str" },
        { "ts", "1.5", "ts: expected int, got float" },
        { "ts", "\"raw:cf ffffffffffffffff\"", "ts: 18446744073709551615 is out of the int64 range" },
        { "ts", "null", "ts: expected int, got nil" },
        { "src", "\"\"", "src: empty" },
        { "src", "\"ga\\u0000teway\"", "(NUL)" },
        { "src", "\"gate\\u007fway\"", "not printable" },
        { "src", "\"gat\u00e9way\"", "not printable" },
        { "src", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
          "src: 64 bytes, over the limit of 63" },
        { "src", "5", "src: expected str, got uint" },
        { "seq", "-1", "seq: -1 is below 0" },
        { "seq", "\"3\"", "seq: expected int, got str" },
        { "seq", "null", "seq: expected int, got nil" },
        { "seq", "2.0", "seq: expected int, got float" },
        { "body", "[]", "body: expected map, got array" },
        { "body", "null", "body: expected map, got nil" },
        { "body", "\"{}\"", "body: expected map, got str" },
        { "body", "5", "body: expected map, got uint" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = s_golden_json ("signal.created");
        json_error_t jerr;
        json_t *value = json_loads (cases[i].value, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        cr_assert_not_null (value, "test data %s: %s", cases[i].value, jerr.text);
        json_object_set_new (j, cases[i].key, value);
        char what[160];
        snprintf (what, sizeof what, "%s = %s", cases[i].key, cases[i].value);
        s_json_refused (j, cases[i].expect, false, what);
        json_decref (j);
    }
}

Test (envelope, a_missing_required_header_key_is_refused_by_name)
{
    static const char *const required[] = { "v", "type", "id", "ts", "src", "body" };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        json_t *j = s_golden_json ("signal.created");
        json_object_del (j, required[i]);
        char expect[64];
        snprintf (expect, sizeof expect, "header: %s missing", required[i]);
        s_json_refused (j, expect, false, required[i]);
        json_decref (j);
    }
}

Test (envelope, corr_cause_and_seq_may_be_absent)
{
    json_t *j = s_golden_json ("signal.created");
    json_object_del (j, "corr");
    json_object_del (j, "cause");
    json_object_del (j, "seq");
    fks_envelope_t *env = s_json_accepted (j, "without corr, cause, seq");
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    cr_assert (fks_id_is_nil (&hdr->corr) && fks_id_is_nil (&hdr->cause));
    cr_assert_eq (hdr->seq, 0);
    fks_envelope_destroy (&env);
    json_decref (j);
}

Test (envelope, header_keys_in_any_order_are_read)
{
    json_t *golden = s_golden_json ("order.filled");
    json_t *j = json_object ();
    static const char *const reversed[] = {
        "body", "seq", "src", "ts", "cause", "corr", "id", "type", "v" };
    for (size_t i = 0; i < 9; i++)
        json_object_set (j, reversed[i], json_object_get (golden, reversed[i]));
    fks_envelope_t *env = s_json_accepted (j, "reversed keys");
    s_assert_matches_json (env, golden);
    fks_envelope_destroy (&env);
    json_decref (j);
    json_decref (golden);
}

//  --------------------------------------------------------------------------------------------
//  Hostile frames: bodies

Test (envelope, peek_routes_a_frame_whose_body_breaks_its_schema_and_decode_refuses_it)
{
    json_t *j = s_golden_json ("order.submitted");
    json_object_del (json_object_get (j, "body"), "client_order_id");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_pack_envelope (&sb, j);
    fks_envelope_hdr_t hdr;
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_peek (sb.data, sb.size, &hdr, NULL, NULL, &err), 0);
    cr_assert_str_eq (hdr.type, "order.submitted");
    cr_assert_null (fks_envelope_decode (sb.data, sb.size, &err));
    cr_assert_str_eq (err.msg, "order.submitted body: client_order_id: required field missing");
    msgpack_sbuffer_destroy (&sb);
    json_decref (j);
}

Test (envelope, every_required_body_field_missing_or_nil_is_refused_by_name)
{
    size_t checked = 0;
    for (size_t t = 0; t < fks_schema_count (); t++) {
        const fks_schema_t *schema = fks_schema_at (t);
        for (size_t f = 0; f < schema->nfields; f++) {
            if (!schema->fields[f].required)
                continue;
            char expect[128];
            snprintf (expect, sizeof expect, "%s body: %s: required field missing",
                      schema->type, schema->fields[f].name);
            for (int nil = 0; nil < 2; nil++) {
                json_t *j = s_golden_json (schema->type);
                json_t *body = json_object_get (j, "body");
                if (nil)
                    json_object_set_new (body, schema->fields[f].name, json_null ());
                else
                    json_object_del (body, schema->fields[f].name);
                s_json_refused (j, expect, true, expect);
                json_decref (j);
            }
            checked++;
        }
    }
    cr_assert_gt (checked, 60);
}

//  A JSON value of the wrong kind for a field of kind k.
static json_t *
s_wrong_kind (fks_field_kind_t k)
{
    switch (k) {
        case FKS_FIELD_STR:   return json_integer (1);
        case FKS_FIELD_INT:   return json_string ("1");
        case FKS_FIELD_F64:   return json_string ("1.5");
        case FKS_FIELD_BOOL:  return json_integer (1);
        case FKS_FIELD_ID:    return json_string ("not-an-id");
        case FKS_FIELD_MAP:   return json_array ();
        case FKS_FIELD_ARRAY: return json_object ();
    }
    return json_null ();
}

Test (envelope, every_body_field_of_the_wrong_type_is_refused_by_name)
{
    for (size_t t = 0; t < fks_schema_count (); t++) {
        const fks_schema_t *schema = fks_schema_at (t);
        for (size_t f = 0; f < schema->nfields; f++) {
            const fks_schema_field_t *field = &schema->fields[f];
            json_t *j = s_golden_json (schema->type);
            json_object_set_new (json_object_get (j, "body"), field->name,
                                 s_wrong_kind (field->kind));
            char expect[128];
            snprintf (expect, sizeof expect, "%s body: %s: expected %s", schema->type,
                      field->name, fks_field_kind_name (field->kind));
            s_json_refused (j, expect, true, expect);
            json_decref (j);
        }
    }
}

//  Strings at and over their limits, every allowed value, and values outside the lists.
Test (envelope, body_strings_are_held_to_their_limits_and_value_lists)
{
    for (size_t t = 0; t < fks_schema_count (); t++) {
        const fks_schema_t *schema = fks_schema_at (t);
        for (size_t f = 0; f < schema->nfields; f++) {
            const fks_schema_field_t *field = &schema->fields[f];
            if (field->kind != FKS_FIELD_STR)
                continue;
            char what[160];
            snprintf (what, sizeof what, "%s.%s", schema->type, field->name);
            json_t *j = s_golden_json (schema->type);
            json_t *body = json_object_get (j, "body");
            if (field->values) {
                for (const char *const *v = field->values; *v; v++) {
                    json_object_set_new (body, field->name, json_string (*v));
                    fks_envelope_t *env = s_json_accepted (j, what);
                    fks_envelope_destroy (&env);
                }
                json_object_set_new (body, field->name, json_string ("bogus"));
                s_json_refused (j, "\"bogus\" is not one of", true, what);
            }
            else {
                char *text = malloc (field->max_len + 1);
                memset (text, 'a', field->max_len + 1);
                json_object_set_new (body, field->name, json_stringn (text, field->max_len));
                fks_envelope_t *env = s_json_accepted (j, what);
                fks_envelope_destroy (&env);
                json_object_set_new (body, field->name, json_stringn (text, field->max_len + 1));
                s_json_refused (j, "longer than the limit", true, what);
                json_object_set_new (body, field->name, json_stringn ("a\0b", 3));
                s_json_refused (j, "NUL byte", true, what);
                json_object_set_new (body, field->name, json_string ("raw:a2 c0af"));
                s_json_refused (j, "not valid UTF-8", true, what);
                free (text);
            }
            json_decref (j);
        }
    }
}

Test (envelope, body_numbers_ids_and_ints_are_held_to_their_kinds)
{
    static const struct { const char *type, *field, *value; const char *expect; } cases[] = {
        { "signal.created", "qty", "raw:cb 7ff8000000000000", "qty: not a finite number" },
        { "signal.created", "qty", "raw:cb 7ff0000000000000", "qty: not a finite number" },
        { "signal.created", "qty", "raw:ca ff800000", "qty: not a finite number" },
        { "signal.created", "qty", "true", "qty: expected f64 (int or float), got bool" },
        { "signal.created", "signal_id", "raw:c4 10 00000000000000000000000000000000",
          "signal_id: the nil UUID is not an id" },
        { "signal.created", "signal_id", "raw:c4 0f 0102030405060708090a0b0c0d0e0f",
          "signal_id: expected id (bin 16), got bin 15" },
        { "dead.letter", "attempts", "raw:cf ffffffffffffffff", "attempts: integer out of the int64 range" },
        { "dead.letter", "attempts", "5.0", "attempts: expected int, got float" },
        { "signal.created", "reduce_only", "\"yes\"", "reduce_only: expected bool, got str" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = s_golden_json (cases[i].type);
        json_error_t jerr;
        const char *v = cases[i].value;
        json_t *value = strncmp (v, "raw:", 4) == 0 ? json_string (v)
                                                   : json_loads (v, JSON_DECODE_ANY, &jerr);
        json_object_set_new (json_object_get (j, "body"), cases[i].field, value);
        s_json_refused (j, cases[i].expect, true, cases[i].expect);
        json_decref (j);
    }
    //  And the accepted forms: an int or a float 32 for f64, a negative int for int.
    static const struct { const char *type, *field, *value; } ok[] = {
        { "signal.created", "qty", "3" },
        { "signal.created", "qty", "raw:ca 3e800000" },
        { "position.updated", "qty", "-2" },
        { "dead.letter", "attempts", "raw:d3 0000000000000005" },
        { "breaker.opened", "failures", "-1" },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *j = s_golden_json (ok[i].type);
        json_error_t jerr;
        const char *v = ok[i].value;
        json_t *value = strncmp (v, "raw:", 4) == 0 ? json_string (v)
                                                   : json_loads (v, JSON_DECODE_ANY, &jerr);
        json_object_set_new (json_object_get (j, "body"), ok[i].field, value);
        fks_envelope_t *env = s_json_accepted (j, v);
        fks_envelope_destroy (&env);
        json_decref (j);
    }
}
