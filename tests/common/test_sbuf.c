/*  test_sbuf.c - the growable string (common/sbuf.h): growth, the size limit, JSON strings. */
#include <criterion/criterion.h>
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
