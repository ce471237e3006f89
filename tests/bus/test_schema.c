/*  test_schema.c - the body schemas: the type list, the document, and fks_schema_check.
 *
 *  schemas/envelope.md is the contract people read; bus/schema.c is what the code enforces.
 *  s_doc_compare parses every field table of the document (a strict format: a "### `type`"
 *  heading, then a table with the columns field | kind | required | max | values | meaning)
 *  and compares it row by row with the C tables, so the two cannot drift apart.
 *
 *  FKS_ENVELOPE_MD (set by meson) is the document's path.
 */
#include <criterion/criterion.h>

#include "bus/envelope.h"
#include "bus/schema.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------------------------
//  The document's field tables

#define S_HEADER "| field | kind | required | max | values | meaning |"
#define S_RULE   "| --- | --- | --- | --- | --- | --- |"

static char *
s_load_doc (void)
{
    const char *path = getenv ("FKS_ENVELOPE_MD");
    cr_assert (path && *path, "FKS_ENVELOPE_MD is not set: run this test through meson");
    FILE *f = fopen (path, "rb");
    cr_assert_not_null (f, "cannot open %s", path);
    size_t cap = 1 << 20;
    char *text = malloc (cap + 1);
    size_t len = fread (text, 1, cap, f);
    cr_assert (feof (f), "%s is larger than expected", path);
    fclose (f);
    text[len] = '\0';
    return text;
}

//  Trims spaces at both ends of [*s, *e).
static void
s_trim (const char **s, const char **e)
{
    while (*s < *e && **s == ' ')
        (*s)++;
    while (*e > *s && (*e)[-1] == ' ')
        (*e)--;
}

static bool
s_cell_is (const char *s, const char *e, const char *want)
{
    return (size_t) (e - s) == strlen (want) && memcmp (s, want, e - s) == 0;
}

//  Compares one table row with a schema field; writes the first difference to why.
static int
s_compare_row (const char *type, const char *line, size_t line_len,
               const fks_schema_field_t *field, char *why, size_t cap)
{
    const char *cells[7][2];
    size_t n = 0;
    const char *p = line, *end = line + line_len;
    if (line_len < 2 || *p != '|' || end[-1] != '|') {
        snprintf (why, cap, "%s: row is not a table row: %.*s", type, (int) line_len, line);
        return -1;
    }
    p++;
    while (p < end && n < 7) {
        const char *bar = memchr (p, '|', end - p);
        if (!bar)
            break;
        cells[n][0] = p;
        cells[n][1] = bar;
        s_trim (&cells[n][0], &cells[n][1]);
        n++;
        p = bar + 1;
    }
    if (n != 6 || p != end) {
        snprintf (why, cap, "%s: row needs exactly 6 cells: %.*s", type, (int) line_len, line);
        return -1;
    }
    //  field: `name`
    const char *s = cells[0][0], *e = cells[0][1];
    if (e - s < 3 || *s != '`' || e[-1] != '`' || !s_cell_is (s + 1, e - 1, field->name)) {
        snprintf (why, cap, "%s: document has field %.*s where the code has %s",
                  type, (int) (e - s), s, field->name);
        return -1;
    }
    if (!s_cell_is (cells[1][0], cells[1][1], fks_field_kind_name (field->kind))) {
        snprintf (why, cap, "%s.%s: document says kind %.*s, code says %s", type, field->name,
                  (int) (cells[1][1] - cells[1][0]), cells[1][0], fks_field_kind_name (field->kind));
        return -1;
    }
    if (!s_cell_is (cells[2][0], cells[2][1], field->required ? "yes" : "no")) {
        snprintf (why, cap, "%s.%s: document says required %.*s, code says %s", type,
                  field->name, (int) (cells[2][1] - cells[2][0]), cells[2][0],
                  field->required ? "yes" : "no");
        return -1;
    }
    char max[16] = "";
    if (field->max_len)
        snprintf (max, sizeof max, "%u", field->max_len);
    if (!s_cell_is (cells[3][0], cells[3][1], max)) {
        snprintf (why, cap, "%s.%s: document says max \"%.*s\", code says \"%s\"", type,
                  field->name, (int) (cells[3][1] - cells[3][0]), cells[3][0], max);
        return -1;
    }
    //  values: `a` `b` ... in the code's order, or empty.
    char values[200] = "";
    size_t w = 0;
    for (const char *const *v = field->values; v && *v && w < sizeof values; v++)
        w += snprintf (values + w, sizeof values - w, "%s`%s`", w ? " " : "", *v);
    if (!s_cell_is (cells[4][0], cells[4][1], values)) {
        snprintf (why, cap, "%s.%s: document says values \"%.*s\", code says \"%s\"", type,
                  field->name, (int) (cells[4][1] - cells[4][0]), cells[4][0], values);
        return -1;
    }
    if (cells[5][1] == cells[5][0]) {
        snprintf (why, cap, "%s.%s: the meaning is empty", type, field->name);
        return -1;
    }
    return 0;
}

//  Compares every field table of the document with the C schemas. 0, or -1 with why.
static int
s_doc_compare (const char *text, char *why, size_t cap)
{
    const char *line = text;
    size_t types = 0;
    bool in_types = false;
    while (*line) {
        const char *nl = strchr (line, '\n');
        size_t len = nl ? (size_t) (nl - line) : strlen (line);
        const char *next = nl ? nl + 1 : line + len;

        if (len >= 3 && !strncmp (line, "## ", 3))
            in_types = len == strlen ("## Message types") && !strncmp (line, "## Message types", len);
        else
        if (in_types && len > 6 && !strncmp (line, "### `", 5) && line[len - 1] == '`') {
            char type[FKS_TYPE_MAX];
            snprintf (type, sizeof type, "%.*s", (int) (len - 6), line + 5);
            const fks_schema_t *schema = fks_schema_at (types);
            if (!schema || strcmp (schema->type, type) != 0) {
                snprintf (why, cap, "document section %zu is %s, the code's type %zu is %s",
                          types, type, types, schema ? schema->type : "(none)");
                return -1;
            }
            //  Skip the prose to the table header, which must come before the next heading.
            const char *l = next;
            while (*l && strncmp (l, "| ", 2) != 0 && strncmp (l, "#", 1) != 0)
                l = strchr (l, '\n') ? strchr (l, '\n') + 1 : l + strlen (l);
            if (strncmp (l, S_HEADER "\n", strlen (S_HEADER) + 1) != 0) {
                snprintf (why, cap, "%s: the table header must read: %s", type, S_HEADER);
                return -1;
            }
            l += strlen (S_HEADER) + 1;
            if (strncmp (l, S_RULE "\n", strlen (S_RULE) + 1) != 0) {
                snprintf (why, cap, "%s: the table rule must read: %s", type, S_RULE);
                return -1;
            }
            l += strlen (S_RULE) + 1;
            size_t row = 0;
            while (*l == '|') {
                const char *rnl = strchr (l, '\n');
                size_t rlen = rnl ? (size_t) (rnl - l) : strlen (l);
                if (row >= schema->nfields) {
                    snprintf (why, cap, "%s: the document has more fields than the code (%zu)",
                              type, schema->nfields);
                    return -1;
                }
                if (s_compare_row (type, l, rlen, &schema->fields[row], why, cap) != 0)
                    return -1;
                row++;
                l = rnl ? rnl + 1 : l + rlen;
            }
            if (row != schema->nfields) {
                snprintf (why, cap, "%s: the document lists %zu fields, the code %zu",
                          type, row, schema->nfields);
                return -1;
            }
            types++;
            next = l;
        }
        line = next;
    }
    if (types != fks_schema_count ()) {
        snprintf (why, cap, "the document describes %zu types, the code %zu",
                  types, fks_schema_count ());
        return -1;
    }
    return 0;
}

Test (schema, document_tables_match_the_code_row_by_row)
{
    char *text = s_load_doc ();
    char why[512] = "";
    cr_assert_eq (s_doc_compare (text, why, sizeof why), 0, "%s", why);
    free (text);
}

//  The comparison must notice drift: each edit below breaks one thing.
static void
s_expect_drift (const char *text, const char *from, const char *to, const char *expect)
{
    const char *at = strstr (text, from);
    cr_assert_not_null (at, "test edit %s not found in the document", from);
    size_t len = strlen (text), flen = strlen (from), tlen = strlen (to);
    char *edited = malloc (len - flen + tlen + 1);
    memcpy (edited, text, at - text);
    memcpy (edited + (at - text), to, tlen);
    strcpy (edited + (at - text) + tlen, at + flen);
    char why[512] = "";
    cr_assert_eq (s_doc_compare (edited, why, sizeof why), -1, "edit %s -> %s went unnoticed",
                  from, to);
    cr_assert (strstr (why, expect), "edit %s -> %s: said \"%s\", expected \"%s\"",
               from, to, why, expect);
    free (edited);
}

Test (schema, document_comparison_notices_every_kind_of_drift)
{
    char *text = s_load_doc ();
    s_expect_drift (text, "| `qty` | f64 | yes | | | quantity in the base asset, greater than 0, after sizing |",
                    "| `qty` | int | yes | | | quantity |", "kind int");
    s_expect_drift (text, "| `client_id` | str | no | 128 |", "| `client_id` | str | yes | 128 |",
                    "required yes");
    s_expect_drift (text, "| `client_id` | str | no | 128 |", "| `client_id` | str | no | 129 |",
                    "max \"129\"");
    s_expect_drift (text, "`market` `limit` | requested order type", "`market` | requested order type",
                    "values");
    s_expect_drift (text, "| `broker` | str | no | 32 | | the broker |\n", "",
                    "order.filled: the document lists 11 fields, the code 12");
    s_expect_drift (text, "| `grp` |", "| `group` |", "document has field `group`");
    s_expect_drift (text, "### `dead.letter`", "### `dead.letters`", "dead.letters");
    s_expect_drift (text, "| `reason` | str | yes | 512 | | the last failure |",
                    "| `reason` | str | yes | 512 | | |", "meaning is empty");
    s_expect_drift (text, "| `reason` | str | yes | 512 | | the last failure |",
                    "| `reason` | str | yes | 512 | | the last failure |\n| `extra` | int | no | | | x |",
                    "more fields than the code");
    free (text);
}

//  --------------------------------------------------------------------------------------------
//  The type list

Test (schema, every_type_of_the_design_has_a_schema)
{
    static const char *const types[] = {
        "webhook.received", "signal.created", "signal.scored", "signal.filtered", "risk.rejected",
        "order.requested", "order.cancel_requested", "order.submitted", "order.filled",
        "order.partially_filled", "order.rejected", "order.cancelled", "position.updated",
        "market.bar", "data.quality", "breaker.opened", "breaker.closed", "security.event",
        "dead.letter",
    };
    size_t n = sizeof types / sizeof types[0];
    cr_assert_eq (fks_schema_count (), n);
    for (size_t i = 0; i < n; i++) {
        const fks_schema_t *s = fks_schema_find (types[i]);
        cr_assert_not_null (s, "%s has no schema", types[i]);
        cr_assert_str_eq (s->type, types[i]);
        cr_assert_eq (fks_schema_at (i), s, "iteration follows the document's order");
    }
    cr_assert_null (fks_schema_at (n));
    cr_assert_null (fks_schema_find ("signal"));
    cr_assert_null (fks_schema_find ("signal.created "));
    cr_assert_null (fks_schema_find (""));
    cr_assert_null (fks_schema_find (NULL));
}

Test (schema, every_table_is_well_formed)
{
    for (size_t t = 0; t < fks_schema_count (); t++) {
        const fks_schema_t *s = fks_schema_at (t);
        cr_assert_lt (strlen (s->type), FKS_TYPE_MAX);
        cr_assert_gt (s->nfields, 0, "%s has no fields", s->type);
        size_t required = 0;
        for (size_t i = 0; i < s->nfields; i++) {
            const fks_schema_field_t *f = &s->fields[i];
            cr_assert_neq (strcmp (fks_field_kind_name (f->kind), "?"), 0);
            cr_assert_eq (fks_schema_field (s, f->name), f, "%s.%s is listed twice",
                          s->type, f->name);
            required += f->required;
            if (f->kind == FKS_FIELD_STR) {
                //  Every string is bounded; allowed values fit within the bound.
                cr_assert (f->max_len > 0 && f->max_len <= 4096, "%s.%s", s->type, f->name);
                for (const char *const *v = f->values; v && *v; v++)
                    cr_assert_leq (strlen (*v), f->max_len, "%s.%s %s", s->type, f->name, *v);
                if (f->values)
                    cr_assert_not_null (f->values[0], "%s.%s: empty value list",
                                        s->type, f->name);
            }
            else
                cr_assert (f->max_len == 0 && !f->values, "%s.%s: bounds on a non-str",
                           s->type, f->name);
        }
        cr_assert_gt (required, 0, "%s: a body with no required field says nothing", s->type);
    }
    cr_assert_null (fks_schema_field (fks_schema_find ("market.bar"), "nope"));
    cr_assert_null (fks_schema_field (NULL, "symbol"));
    cr_assert_str_eq (fks_field_kind_name ((fks_field_kind_t) 99), "?");
}

Test (schema, signal_scored_carries_every_field_of_signal_created)
{
    const fks_schema_t *created = fks_schema_find ("signal.created");
    const fks_schema_t *scored = fks_schema_find ("signal.scored");
    for (size_t i = 0; i < created->nfields; i++) {
        const fks_schema_field_t *a = &created->fields[i];
        const fks_schema_field_t *b = fks_schema_field (scored, a->name);
        cr_assert_not_null (b, "signal.scored lacks %s", a->name);
        cr_assert (a->kind == b->kind && a->required == b->required && a->max_len == b->max_len
                   && a->values == b->values, "signal.scored.%s differs", a->name);
    }
    cr_assert (fks_schema_field (scored, "score")->required);
    cr_assert (fks_schema_field (scored, "threshold")->required);
}

//  --------------------------------------------------------------------------------------------
//  fks_schema_check

static const char *const s_colours[] = { "red", "green", NULL };
static const fks_schema_field_t s_test_fields[] = {
    { "name", FKS_FIELD_STR, true, 8, NULL },
    { "colour", FKS_FIELD_STR, false, 8, s_colours },
    { "count", FKS_FIELD_INT, false, 0, NULL },
    { "price", FKS_FIELD_F64, false, 0, NULL },
    { "flag", FKS_FIELD_BOOL, false, 0, NULL },
    { "ref", FKS_FIELD_ID, false, 0, NULL },
    { "extra", FKS_FIELD_MAP, false, 0, NULL },
    { "list", FKS_FIELD_ARRAY, false, 0, NULL },
};
static const fks_schema_t s_test_schema = { "test.thing", s_test_fields, 8 };

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object obj;
} s_body_t;

static void
s_body_begin (s_body_t *b, size_t entries)
{
    msgpack_sbuffer_init (&b->sb);
    msgpack_packer_init (&b->pk, &b->sb, msgpack_sbuffer_write);
    msgpack_zone_init (&b->zone, 1024);
    msgpack_pack_map (&b->pk, entries);
}

static const msgpack_object *
s_body_end (s_body_t *b)
{
    size_t off = 0;
    cr_assert_eq (msgpack_unpack (b->sb.data, b->sb.size, &off, &b->zone, &b->obj),
                  MSGPACK_UNPACK_SUCCESS, "test body does not unpack");
    return &b->obj;
}

static void
s_body_free (s_body_t *b)
{
    msgpack_zone_destroy (&b->zone);
    msgpack_sbuffer_destroy (&b->sb);
}

static void
s_key (s_body_t *b, const char *key)
{
    fks_pack_str (&b->pk, key);
}

//  Checks a body of one extra field (besides name) and returns the result and message.
static int
s_check_one (void (*pack) (s_body_t *), char *err, size_t cap)
{
    s_body_t b;
    s_body_begin (&b, 2);
    fks_pack_kv_str (&b.pk, "name", "widget");
    pack (&b);
    int rc = fks_schema_check (&s_test_schema, s_body_end (&b), err, cap);
    s_body_free (&b);
    return rc;
}

#define S_CASE(fn, ...) static void fn (s_body_t *b) { __VA_ARGS__; }
S_CASE (c_colour_ok,      fks_pack_kv_str (&b->pk, "colour", "green"))
S_CASE (c_colour_bad,     fks_pack_kv_str (&b->pk, "colour", "blue"))
S_CASE (c_colour_prefix,  fks_pack_kv_str (&b->pk, "colour", "gree"))
S_CASE (c_count_neg,      fks_pack_kv_i64 (&b->pk, "count", -7))
S_CASE (c_count_big,      s_key (b, "count"); msgpack_pack_uint64 (&b->pk, UINT64_MAX))
S_CASE (c_count_float,    fks_pack_kv_f64 (&b->pk, "count", 1.0))
S_CASE (c_price_int,      fks_pack_kv_i64 (&b->pk, "price", 12))
S_CASE (c_price_f32,      s_key (b, "price"); msgpack_pack_float (&b->pk, 1.25f))
S_CASE (c_price_nan,      fks_pack_kv_f64 (&b->pk, "price", NAN))
S_CASE (c_price_inf,      fks_pack_kv_f64 (&b->pk, "price", -INFINITY))
S_CASE (c_price_str,      fks_pack_kv_str (&b->pk, "price", "12"))
S_CASE (c_flag_ok,        fks_pack_kv_bool (&b->pk, "flag", false))
S_CASE (c_flag_int,       fks_pack_kv_i64 (&b->pk, "flag", 0))
S_CASE (c_ref_ok,         fks_id_t id; memset (&id, 7, sizeof id); fks_pack_kv_id (&b->pk, "ref", &id))
S_CASE (c_ref_nil_uuid,   fks_id_t id; memset (&id, 0, sizeof id); fks_pack_kv_id (&b->pk, "ref", &id))
S_CASE (c_ref_short,      s_key (b, "ref"); msgpack_pack_bin (&b->pk, 4); msgpack_pack_bin_body (&b->pk, "abcd", 4))
S_CASE (c_ref_text,       fks_pack_kv_str (&b->pk, "ref", "01907a3c-5e10-7a4b-8c2d-3e4f5a6b7c8d"))
S_CASE (c_extra_ok,       s_key (b, "extra"); msgpack_pack_map (&b->pk, 0))
S_CASE (c_extra_array,    s_key (b, "extra"); msgpack_pack_array (&b->pk, 0))
S_CASE (c_list_ok,        s_key (b, "list"); msgpack_pack_array (&b->pk, 1); msgpack_pack_nil (&b->pk))
S_CASE (c_list_map,       s_key (b, "list"); msgpack_pack_map (&b->pk, 0))
S_CASE (c_optional_nil,   fks_pack_kv_nil (&b->pk, "price"))
S_CASE (c_unknown,        fks_pack_kv_str (&b->pk, "whatever", "ignored"))
S_CASE (c_unknown_int_key, msgpack_pack_int (&b->pk, 5); msgpack_pack_int (&b->pk, 6))
S_CASE (c_name_again,     fks_pack_kv_str (&b->pk, "name", "again"))

Test (schema, check_accepts_each_kind_in_its_accepted_forms)
{
    void (*ok[]) (s_body_t *) = {
        c_colour_ok, c_count_neg, c_price_int, c_price_f32, c_flag_ok, c_ref_ok, c_extra_ok,
        c_list_ok, c_optional_nil, c_unknown, c_unknown_int_key,
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char err[160] = "";
        cr_assert_eq (s_check_one (ok[i], err, sizeof err), 0, "case %zu refused: %s", i, err);
    }
}

Test (schema, check_refuses_wrong_values_naming_the_field)
{
    static const struct { void (*pack) (s_body_t *); const char *msg; } bad[] = {
        { c_colour_bad,    "colour: \"blue\" is not one of red, green" },
        { c_colour_prefix, "colour: \"gree\" is not one of red, green" },
        { c_count_big,     "count: integer out of the int64 range" },
        { c_count_float,   "count: expected int, got float" },
        { c_price_nan,     "price: not a finite number" },
        { c_price_inf,     "price: not a finite number" },
        { c_price_str,     "price: expected f64 (int or float), got str" },
        { c_flag_int,      "flag: expected bool, got int" },
        { c_ref_nil_uuid,  "ref: the nil UUID is not an id" },
        { c_ref_short,     "ref: expected id (bin 16), got bin 4" },
        { c_ref_text,      "ref: expected id (bin 16), got str" },
        { c_extra_array,   "extra: expected map, got array" },
        { c_list_map,      "list: expected array, got map" },
        { c_name_again,    "name: duplicate key" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[160] = "";
        cr_assert_eq (s_check_one (bad[i].pack, err, sizeof err), -1, "%s: accepted", bad[i].msg);
        cr_assert_str_eq (err, bad[i].msg);
    }
}

Test (schema, check_refuses_a_missing_or_nil_required_field)
{
    s_body_t b;
    char err[160];
    s_body_begin (&b, 1);
    fks_pack_kv_str (&b.pk, "colour", "red");
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err), -1);
    cr_assert_str_eq (err, "name: required field missing");
    s_body_free (&b);

    s_body_begin (&b, 1);
    fks_pack_kv_nil (&b.pk, "name");
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err), -1);
    cr_assert_str_eq (err, "name: required field missing");
    s_body_free (&b);

    s_body_begin (&b, 0);
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err), -1);
    s_body_free (&b);
}

Test (schema, check_holds_strings_to_length_nul_and_utf8)
{
    static const struct { const char *bytes; size_t len; int rc; const char *msg; } cases[] = {
        { "12345678", 8, 0, "" },
        { "123456789", 9, -1, "name: 9 bytes, longer than the limit of 8" },
        { "", 0, 0, "" },
        { "a\0b", 3, -1, "name: contains a NUL byte" },
        { "caf\xc3\xa9", 5, 0, "" },                          //  é
        { "\xe2\x82\xac", 3, 0, "" },                         //  €
        { "\xf0\x9f\x98\x80", 4, 0, "" },                     //  an emoji, 4 bytes
        { "\xc3", 1, -1, "name: not valid UTF-8" },           //  cut short
        { "\xc0\xaf", 2, -1, "name: not valid UTF-8" },       //  overlong '/'
        { "\xe0\x80\xaf", 3, -1, "name: not valid UTF-8" },   //  overlong, 3 bytes
        { "\xed\xa0\x80", 3, -1, "name: not valid UTF-8" },   //  a surrogate
        { "\xf4\x90\x80\x80", 4, -1, "name: not valid UTF-8" }, //  above U+10FFFF
        { "\x80", 1, -1, "name: not valid UTF-8" },           //  lone continuation
        { "\xff", 1, -1, "name: not valid UTF-8" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_body_t b;
        s_body_begin (&b, 1);
        s_key (&b, "name");
        msgpack_pack_str (&b.pk, cases[i].len);
        msgpack_pack_str_body (&b.pk, cases[i].bytes, cases[i].len);
        char err[160] = "";
        cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err),
                      cases[i].rc, "case %zu: %s", i, err);
        cr_assert_str_eq (err, cases[i].msg, "case %zu", i);
        s_body_free (&b);
    }
}

Test (schema, check_refuses_a_body_that_is_not_a_map)
{
    s_body_t b;
    msgpack_sbuffer_init (&b.sb);
    msgpack_packer_init (&b.pk, &b.sb, msgpack_sbuffer_write);
    msgpack_zone_init (&b.zone, 1024);
    msgpack_pack_array (&b.pk, 0);
    char err[160];
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err), -1);
    cr_assert_str_eq (err, "body: expected map, got array");
    cr_assert_eq (fks_schema_check (NULL, s_body_end (&b), err, sizeof err), -1);
    cr_assert_eq (fks_schema_check (&s_test_schema, NULL, err, sizeof err), -1);
    s_body_free (&b);
}

Test (schema, check_truncates_its_message_to_the_buffer)
{
    s_body_t b;
    s_body_begin (&b, 1);
    fks_pack_kv_str (&b.pk, "colour", "red");
    char err[8];
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), err, sizeof err), -1);
    cr_assert_str_eq (err, "name: r");
    cr_assert_eq (fks_schema_check (&s_test_schema, s_body_end (&b), NULL, 0), -1,
                  "no buffer is allowed");
    s_body_free (&b);
}

Test (schema, utf8_validator_agrees_with_the_standard)
{
    cr_assert (fks_utf8_valid ("", 0));
    cr_assert (fks_utf8_valid ("plain ascii", 11));
    cr_assert (fks_utf8_valid ("\xef\xbf\xbf", 3));             //  U+FFFF
    cr_assert (fks_utf8_valid ("\xf4\x8f\xbf\xbf", 4));         //  U+10FFFF
    cr_assert (fks_utf8_valid ("\xed\x9f\xbf", 3));             //  U+D7FF, just below surrogates
    cr_assert (!fks_utf8_valid ("\xed\xbf\xbf", 3));            //  U+DFFF, a surrogate
    cr_assert (!fks_utf8_valid ("\xf0\x8f\xbf\xbf", 4));        //  overlong U+FFFF
    cr_assert (!fks_utf8_valid ("\xe2\x82", 2));                //  cut short
    cr_assert (!fks_utf8_valid ("\xe2\x28\xa1", 3));            //  bad continuation
    cr_assert (!fks_utf8_valid ("\xf5\x80\x80\x80", 4));        //  lead byte past U+10FFFF
}
