/*  test_array.c - fks_worker_array_t (workers/runtime.c): the PostgreSQL array literals the
 *  workers' multi-row statements take (unnest ($1::text[], ...)).
 */
#include <criterion/criterion.h>
#include <string.h>
#include "workers/runtime.h"

Test (array, quotes_each_value_and_escapes_quotes_and_backslashes)
{
    fks_worker_array_t a;
    fks_worker_array_init (&a);
    fks_worker_array_add (&a, "BTCUSDT");
    fks_worker_array_add (&a, "say \"hi\"");
    fks_worker_array_add (&a, "C:\\path");
    fks_worker_array_add (&a, "");
    fks_worker_array_add (&a, "a,b {c}");
    cr_assert_str_eq (fks_worker_array_end (&a),
                      "{\"BTCUSDT\",\"say \\\"hi\\\"\",\"C:\\\\path\",\"\",\"a,b {c}\"}");
    cr_assert_eq (a.n, 5);
    fks_worker_array_free (&a);
    cr_assert_null (a.data);
}

Test (array, null_is_sql_null_and_an_empty_array_is_braces)
{
    fks_worker_array_t a;
    fks_worker_array_init (&a);
    cr_assert_str_eq (fks_worker_array_end (&a), "{}");
    fks_worker_array_free (&a);
    fks_worker_array_init (&a);
    fks_worker_array_add (&a, NULL);
    fks_worker_array_add (&a, "NULL");          /* the text, quoted: not SQL NULL */
    cr_assert_str_eq (fks_worker_array_end (&a), "{NULL,\"NULL\"}");
    fks_worker_array_free (&a);
}

Test (array, reset_starts_a_new_literal_in_the_same_buffer)
{
    fks_worker_array_t a;
    fks_worker_array_init (&a);
    for (int i = 0; i < 100; i++)
        fks_worker_array_add (&a, "0123456789");     /* grows past the first allocation */
    cr_assert_not_null (fks_worker_array_end (&a));
    char *buf = a.data;
    size_t cap = a.cap;
    fks_worker_array_reset (&a);
    cr_assert_eq (a.n, 0);
    cr_assert_str_eq (fks_worker_array_end (&a), "{}");
    fks_worker_array_reset (&a);
    fks_worker_array_add (&a, "x");
    cr_assert_str_eq (fks_worker_array_end (&a), "{\"x\"}");
    cr_assert_eq (a.data, buf, "the buffer is kept");
    cr_assert_eq (a.cap, cap);
    fks_worker_array_free (&a);
}
