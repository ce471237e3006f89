/*  test_log.c - log lines are one valid JSON object each, escaped, levelled and bounded. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

static int s_pipe[2];

static void
s_setup (void)
{
    cr_assert_eq (pipe (s_pipe), 0);
    /* room for every line a test writes, so writers never block on an unread pipe */
    cr_assert_geq (fcntl (s_pipe[1], F_SETPIPE_SZ, 1 << 20), 1 << 17);
    fks_log_set_fd (s_pipe[1]);
    fks_log_set_level (FKS_LOG_DEBUG);
    unsetenv ("FKS_LOG_LEVEL");
}

static void
s_teardown (void)
{
    fks_log_set_fd (2);
    close (s_pipe[0]);
    close (s_pipe[1]);
}

/*  Reads what was logged so far. */
static char *
s_drain (void)
{
    close (s_pipe[1]);
    fks_log_set_fd (2);
    static char buf[1 << 17];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read (s_pipe[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t) r;
    buf[n] = '\0';
    s_pipe[1] = dup (s_pipe[0]);    /* keep teardown's close harmless */
    return buf;
}

static json_t *
s_parse_line (const char *line)
{
    json_error_t e;
    json_t *j = json_loads (line, JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null (j, "not JSON: %s (%s)", line, e.text);
    cr_assert (json_is_object (j));
    return j;
}

TestSuite (log, .init = s_setup, .fini = s_teardown);

Test (log, line_has_ts_level_program_msg_and_corr)
{
    fks_log_init ("gateway");
    fks_log (FKS_LOG_INFO, "0190f3a4-0000-7000-8000-000000000001", NULL, "accepted %d", 3);
    char *out = s_drain ();
    cr_assert_eq (strchr (out, '\n') - out + 1, (long) strlen (out), "exactly one line");
    json_t *j = s_parse_line (out);
    cr_assert_str_eq (json_string_value (json_object_get (j, "level")), "info");
    cr_assert_str_eq (json_string_value (json_object_get (j, "program")), "gateway");
    cr_assert_str_eq (json_string_value (json_object_get (j, "msg")), "accepted 3");
    cr_assert_str_eq (json_string_value (json_object_get (j, "corr")),
                      "0190f3a4-0000-7000-8000-000000000001");
    const char *ts = json_string_value (json_object_get (j, "ts"));
    cr_assert_eq (strlen (ts), 24, "RFC 3339 with milliseconds: %s", ts);
    cr_assert_eq (ts[10], 'T');
    cr_assert_eq (ts[23], 'Z');
    json_decref (j);
}

Test (log, no_corr_field_without_corr)
{
    fks_info ("hello");
    char *out = s_drain ();
    json_t *j = s_parse_line (out);
    cr_assert_null (json_object_get (j, "corr"));
    json_decref (j);
}

Test (log, extra_fields_are_members)
{
    char fields[256] = "";
    cr_assert_eq (fks_log_field_str (fields, sizeof fields, "group", "sig\"nal"), 0);
    cr_assert_eq (fks_log_field_int (fields, sizeof fields, "n", -42), 0);
    cr_assert_str_eq (fields, "\"group\":\"sig\\\"nal\",\"n\":-42");
    fks_log (FKS_LOG_WARN, NULL, fields, "x");
    json_t *j = s_parse_line (s_drain ());
    cr_assert_str_eq (json_string_value (json_object_get (j, "group")), "sig\"nal");
    cr_assert_eq (json_integer_value (json_object_get (j, "n")), -42);
    json_decref (j);
}

Test (log, field_that_does_not_fit_leaves_buffer_unchanged)
{
    char fields[16] = "";
    cr_assert_eq (fks_log_field_str (fields, sizeof fields, "key", "a long value here"), -1);
    cr_assert_str_eq (fields, "");
}

Test (log, control_quotes_backslashes_and_bad_utf8_are_escaped)
{
    fks_info ("a\"b\\c\nd\te\x01 caf\xc3\xa9 bad\xff end");
    json_t *j = s_parse_line (s_drain ());
    cr_assert_str_eq (json_string_value (json_object_get (j, "msg")),
                      "a\"b\\c\nd\te\x01 caf\xc3\xa9 bad\xef\xbf\xbd end");
    json_decref (j);
}

Test (log, level_filtering)
{
    fks_log_set_level (FKS_LOG_WARN);
    fks_debug ("no");
    fks_info ("no");
    fks_warn ("yes1");
    fks_error ("yes2");
    char *out = s_drain ();
    cr_assert_null (strstr (out, "\"no\""));
    cr_assert_not_null (strstr (out, "yes1"));
    cr_assert_not_null (strstr (out, "yes2"));
}

Test (log, level_from_environment)
{
    setenv ("FKS_LOG_LEVEL", "error", 1);
    cr_assert_eq (fks_log_init ("t"), 0);
    cr_assert_eq (fks_log_level (), FKS_LOG_ERROR);
    setenv ("FKS_LOG_LEVEL", "WARNING", 1);
    cr_assert_eq (fks_log_init ("t"), 0);
    cr_assert_eq (fks_log_level (), FKS_LOG_WARN);
    setenv ("FKS_LOG_LEVEL", "loud", 1);
    cr_assert_eq (fks_log_init ("t"), -1, "unknown level refused");
    char *out = s_drain ();
    cr_assert_not_null (strstr (out, "FKS_LOG_LEVEL: expected debug, info, warn or error, got 'loud'"));
}

Test (log, long_message_is_truncated_and_marked)
{
    char *big = malloc (20000);
    memset (big, '"', 19999);           /* escaping doubles every byte */
    big[19999] = '\0';
    fks_info ("%s", big);
    free (big);
    char *out = s_drain ();
    cr_assert_lt (strlen (out), 8193);
    json_t *j = s_parse_line (out);
    cr_assert (json_is_true (json_object_get (j, "truncated")));
    json_decref (j);
}

static void *
s_writer (void *arg)
{
    for (int i = 0; i < 200; i++)
        fks_log (FKS_LOG_INFO, NULL, NULL, "thread %ld line %d", (long) (intptr_t) arg, i);
    return NULL;
}

Test (log, lines_from_many_threads_never_interleave)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create (&t[i], NULL, s_writer, (void *) (intptr_t) i);
    for (int i = 0; i < 4; i++)
        pthread_join (t[i], NULL);
    char *out = s_drain ();
    int lines = 0;
    for (char *save = NULL, *line = strtok_r (out, "\n", &save); line;
         line = strtok_r (NULL, "\n", &save)) {
        json_decref (s_parse_line (line));
        lines++;
    }
    cr_assert_eq (lines, 800);
}

Test (log, json_escape_never_splits_a_character)
{
    char dst[6];
    /* "é" is 2 bytes; 'ab' + 'é' + 'é' needs 7 with the NUL: the second é is dropped whole */
    size_t n = fks_json_escape (dst, sizeof dst, "ab\xc3\xa9\xc3\xa9", 6);
    cr_assert_eq (n, 4);
    cr_assert_str_eq (dst, "ab\xc3\xa9");
    n = fks_json_escape (dst, sizeof dst, "\x01\x02", 2);
    cr_assert_eq (n, 0, "a \\u0001 escape does not fit in 5 bytes");
}
