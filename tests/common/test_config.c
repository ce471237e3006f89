/*  test_config.c - FKS_* settings: values, _FILE variants, and the errors a user reads. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

static char s_path[64];

static void
s_clean (void)
{
    unsetenv ("FKS_T");
    unsetenv ("FKS_T_FILE");
    if (s_path[0])
        unlink (s_path);
    s_path[0] = '\0';
}

/*  Writes content (len bytes) to a temp file and points FKS_T_FILE at it. */
static void
s_file (const char *content, size_t len)
{
    strcpy (s_path, "/tmp/fks-config-XXXXXX");
    int fd = mkstemp (s_path);
    cr_assert (fd >= 0);
    cr_assert_eq (write (fd, content, len), (ssize_t) len);
    close (fd);
    setenv ("FKS_T_FILE", s_path, 1);
}

TestSuite (config, .init = s_clean, .fini = s_clean);

Test (config, unset_string_gives_the_default)
{
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", "dflt", &v, &err), 1);
    cr_assert_str_eq (v, "dflt");
    free (v);
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), 1);
    cr_assert_null (v);
}

Test (config, string_from_the_environment)
{
    setenv ("FKS_T", "hello world", 1);
    char *v = NULL;
    cr_assert_eq (fks_config_str ("FKS_T", "x", &v, NULL), 0);
    cr_assert_str_eq (v, "hello world");
    free (v);
}

Test (config, empty_value_counts_as_set)
{
    setenv ("FKS_T", "", 1);
    char *v = NULL;
    cr_assert_eq (fks_config_str ("FKS_T", "x", &v, NULL), 0);
    cr_assert_str_eq (v, "");
    free (v);
}

Test (config, file_variant_drops_one_trailing_newline)
{
    s_file ("s3cret\n", 7);
    char *v = NULL;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, NULL), 0);
    cr_assert_str_eq (v, "s3cret");
    free (v);
}

Test (config, file_variant_drops_crlf_but_only_once)
{
    s_file ("abc\r\n\n", 6);
    char *v = NULL;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, NULL), 0);
    cr_assert_str_eq (v, "abc\r\n");
    free (v);
}

Test (config, both_variable_and_file_is_an_error_naming_both)
{
    setenv ("FKS_T", "a", 1);
    s_file ("b", 1);
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T and FKS_T_FILE are both set: set only one");
}

Test (config, missing_file_is_an_error_naming_the_variable_and_path)
{
    setenv ("FKS_T_FILE", "/nonexistent/fks", 1);
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), -1);
    cr_assert_str_eq (err.msg,
                      "FKS_T_FILE: cannot open '/nonexistent/fks': No such file or directory");
}

Test (config, oversized_file_is_refused)
{
    size_t n = FKS_CONFIG_VALUE_MAX + 10;
    char *big = malloc (n);
    memset (big, 'a', n);
    s_file (big, n);
    free (big);
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), -1);
    cr_assert (strstr (err.msg, "is longer than 4096 bytes"), "%s", err.msg);
}

Test (config, file_with_nul_is_refused)
{
    s_file ("ab\0cd", 5);
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), -1);
    cr_assert (strstr (err.msg, "contains a NUL byte"), "%s", err.msg);
}

Test (config, oversized_variable_is_refused)
{
    char *big = malloc (FKS_CONFIG_VALUE_MAX + 2);
    memset (big, 'a', FKS_CONFIG_VALUE_MAX + 1);
    big[FKS_CONFIG_VALUE_MAX + 1] = '\0';
    setenv ("FKS_T", big, 1);
    free (big);
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_str ("FKS_T", NULL, &v, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T: value longer than 4096 bytes");
}

Test (config, port_parses_and_defaults)
{
    int port = 0;
    cr_assert_eq (fks_config_port ("FKS_T", 8001, &port, NULL), 1);
    cr_assert_eq (port, 8001);
    setenv ("FKS_T", "65535", 1);
    cr_assert_eq (fks_config_port ("FKS_T", 8001, &port, NULL), 0);
    cr_assert_eq (port, 65535);
}

Test (config, port_errors_name_the_variable_and_quote_the_value)
{
    const char *bad[] = { "abc", "0", "65536", "80x", " 80", "-1", "+80", "", "99999999999999999999" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv ("FKS_GATEWAY_PORT", bad[i], 1);
        int port = 42;
        fks_config_err_t err;
        cr_assert_eq (fks_config_port ("FKS_GATEWAY_PORT", 8001, &port, &err), -1, "%s", bad[i]);
        char want[160];
        snprintf (want, sizeof want, "FKS_GATEWAY_PORT: expected a port 1-65535, got '%s'", bad[i]);
        cr_assert_str_eq (err.msg, want);
        cr_assert_eq (port, 42, "output untouched on error");
    }
    unsetenv ("FKS_GATEWAY_PORT");
}

Test (config, int_range_and_garbage)
{
    int64_t v = 0;
    fks_config_err_t err;
    setenv ("FKS_T", "-5", 1);
    cr_assert_eq (fks_config_int ("FKS_T", 1, -10, 10, &v, &err), 0);
    cr_assert_eq (v, -5);
    setenv ("FKS_T", "11", 1);
    cr_assert_eq (fks_config_int ("FKS_T", 1, -10, 10, &v, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T: expected an integer -10-10, got '11'");
    setenv ("FKS_T", "1e3", 1);
    cr_assert_eq (fks_config_int ("FKS_T", 1, 0, 10000, &v, &err), -1);
    setenv ("FKS_T", "9223372036854775808", 1);
    cr_assert_eq (fks_config_int ("FKS_T", 1, INT64_MIN, INT64_MAX, &v, &err), -1,
                  "overflow is an error");
}

Test (config, double_is_finite_and_in_range)
{
    double d = 0;
    fks_config_err_t err;
    setenv ("FKS_T", "0.25", 1);
    cr_assert_eq (fks_config_double ("FKS_T", 0.5, 0, 1, &d, &err), 0);
    cr_assert_float_eq (d, 0.25, 1e-12);
    const char *bad[] = { "nan", "inf", "1.5", "0.5x", "", " 0.5" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv ("FKS_T", bad[i], 1);
        cr_assert_eq (fks_config_double ("FKS_T", 0.5, 0, 1, &d, &err), -1, "%s", bad[i]);
        cr_assert (strstr (err.msg, "FKS_T: expected a number 0-1, got '"), "%s", err.msg);
    }
}

Test (config, bool_words)
{
    bool b = false;
    const char *yes[] = { "1", "true", "TRUE", "yes", "On" };
    const char *no[] = { "0", "false", "No", "off" };
    for (size_t i = 0; i < 5; i++) {
        setenv ("FKS_T", yes[i], 1);
        cr_assert_eq (fks_config_bool ("FKS_T", false, &b, NULL), 0);
        cr_assert (b, "%s", yes[i]);
    }
    for (size_t i = 0; i < 4; i++) {
        setenv ("FKS_T", no[i], 1);
        cr_assert_eq (fks_config_bool ("FKS_T", true, &b, NULL), 0);
        cr_assert_not (b, "%s", no[i]);
    }
    fks_config_err_t err;
    setenv ("FKS_T", "maybe", 1);
    cr_assert_eq (fks_config_bool ("FKS_T", true, &b, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T: expected true or false (1/0, yes/no, on/off), got 'maybe'");
}

Test (config, durations_with_units)
{
    int64_t ms = 0;
    struct { const char *text; int64_t ms; } ok[] = {
        { "250", 250 }, { "250ms", 250 }, { "5s", 5000 }, { "2m", 120000 }, { "1h", 3600000 } };
    for (size_t i = 0; i < 5; i++) {
        setenv ("FKS_T", ok[i].text, 1);
        cr_assert_eq (fks_config_duration_ms ("FKS_T", 1, 0, 86400000, &ms, NULL), 0);
        cr_assert_eq (ms, ok[i].ms, "%s", ok[i].text);
    }
    const char *bad[] = { "5x", "s", "-5s", "1.5s", "25h", "999999999999999h" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fks_config_err_t err;
        setenv ("FKS_T", bad[i], 1);
        cr_assert_eq (fks_config_duration_ms ("FKS_T", 1, 0, 86400000, &ms, &err), -1, "%s",
                      bad[i]);
        cr_assert (strstr (err.msg, "FKS_T: expected a duration"), "%s", err.msg);
    }
}

Test (config, secret_required_and_never_echoed)
{
    char *v = NULL;
    fks_config_err_t err;
    cr_assert_eq (fks_config_secret ("FKS_T", 16, &v, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T is required (set FKS_T or FKS_T_FILE)");
    setenv ("FKS_T", "shortpass", 1);
    cr_assert_eq (fks_config_secret ("FKS_T", 16, &v, &err), -1);
    cr_assert_null (strstr (err.msg, "shortpass"), "the secret is not in the error");
    cr_assert_str_eq (err.msg, "FKS_T must be at least 16 characters long (it is 9)");
    setenv ("FKS_T", "", 1);
    cr_assert_eq (fks_config_secret ("FKS_T", 0, &v, &err), -1, "empty secret refused");
    unsetenv ("FKS_T");
    s_file ("0123456789abcdef0123\n", 21);
    cr_assert_eq (fks_config_secret ("FKS_T", 16, &v, &err), 0);
    cr_assert_str_eq (v, "0123456789abcdef0123");
    free (v);
}

Test (config, long_bad_value_is_quoted_shortened_and_printable)
{
    setenv ("FKS_T", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01", 1);
    int port;
    fks_config_err_t err;
    cr_assert_eq (fks_config_port ("FKS_T", 1, &port, &err), -1);
    cr_assert_str_eq (err.msg, "FKS_T: expected a port 1-65535, got "
                               "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}
