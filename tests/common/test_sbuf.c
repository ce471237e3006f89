/*  test_sbuf.c - the growable string (common/sbuf.h): growth, the size limit, JSON strings. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sbuf.h"

Test (sbuf, appends_grow_the_string_and_keep_it_terminated)
{
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    for (int i = 0; i < 1000; i++)
        fks_sbuf_puts (&b, "0123456789");
    fks_sbuf_put (&b, "ab", 1);
    cr_assert_not (b.failed);
    cr_assert_eq (b.len, 10001);
    cr_assert_eq (strlen (b.data), 10001);
    cr_assert_eq (b.data[10000], 'a');
    fks_sbuf_free (&b);
    cr_assert_null (b.data);
}

Test (sbuf, growth_past_the_limit_fails_and_later_appends_do_nothing)
{
    fks_sbuf_t b;
    fks_sbuf_init (&b, 16);
    fks_sbuf_puts (&b, "0123456789");
    cr_assert_not (b.failed);
    fks_sbuf_puts (&b, "0123456789");
    cr_assert (b.failed, "16 bytes may not hold 20 and a NUL");
    fks_sbuf_puts (&b, "x");
    cr_assert_eq (b.len, 10, "nothing is appended once failed");
    fks_sbuf_free (&b);
}

Test (sbuf, printf_appends_formatted_text_longer_than_its_stack_buffer)
{
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    char big[400];
    memset (big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fks_sbuf_printf (&b, "%d:%s", 42, big);
    cr_assert_not (b.failed);
    cr_assert_eq (b.len, 3 + sizeof big - 1);
    cr_assert (strncmp (b.data, "42:zzz", 6) == 0);
    fks_sbuf_free (&b);
}

Test (sbuf, json_str_quotes_and_escapes)
{
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_json_str (&b, "a\"b\\c\n", 6);
    cr_assert_str_eq (b.data, "\"a\\\"b\\\\c\\n\"");
    fks_sbuf_free (&b);
}

Test (sbuf, reset_empties_the_string_keeps_its_memory_and_clears_a_failure)
{
    fks_sbuf_t b;
    fks_sbuf_init (&b, 16);
    fks_sbuf_puts (&b, "0123456789");
    char *data = b.data;
    fks_sbuf_puts (&b, "0123456789");
    cr_assert (b.failed);
    fks_sbuf_reset (&b);
    cr_assert_not (b.failed);
    cr_assert_eq (b.len, 0);
    cr_assert_str_eq (b.data, "");
    cr_assert_eq (b.data, data, "the memory is kept");
    fks_sbuf_puts (&b, "abc");
    cr_assert_str_eq (b.data, "abc");
    fks_sbuf_free (&b);
    fks_sbuf_t empty;
    fks_sbuf_init (&empty, 0);
    fks_sbuf_reset (&empty);                /* nothing allocated yet: still fine */
    cr_assert_eq (empty.len, 0);
    fks_sbuf_free (&empty);
}

Test (sbuf, a_double_is_its_shortest_exact_text_without_needless_exponents)
{
    static const struct { double v; const char *text; } cases[] = {
        { 42000, "42000" },                 /* "4.2e+04" from a shortest-%g search */
        { 0.1, "0.1" },
        { 0.1 + 0.2, "0.30000000000000004" },
        { -12345.12345678, "-12345.12345678" },
        { 1e21, "1e+21" },
        { 1.5e-7, "1.5e-07" },
        { 0, "0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char t[32];
        fks_double_text (t, sizeof t, cases[i].v);
        cr_expect_str_eq (t, cases[i].text, "%.17g", cases[i].v);
        cr_expect_eq (strtod (t, NULL), cases[i].v, "%s reads back", t);
    }
    fks_sbuf_t b;
    fks_sbuf_init (&b, 0);
    fks_sbuf_json_double (&b, 42000);
    fks_sbuf_puts (&b, ",");
    fks_sbuf_json_double (&b, NAN);
    fks_sbuf_puts (&b, ",");
    fks_sbuf_json_double (&b, -INFINITY);
    cr_assert_str_eq (b.data, "42000,null,null");
    fks_sbuf_free (&b);
}
