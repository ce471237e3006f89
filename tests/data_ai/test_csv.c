/*  test_csv.c - OHLCV files into bars (workers/data/csv.c): what a user's file gives. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "workers/data/csv.h"

static char s_path[64];

static void
s_clean (void)
{
    if (s_path[0])
        unlink (s_path);
    s_path[0] = '\0';
}

TestSuite (csv, .fini = s_clean);

//  Writes text to a temporary file and returns its path.
static const char *
s_file (const char *text)
{
    strcpy (s_path, "/tmp/fks-csv-XXXXXX");
    int fd = mkstemp (s_path);
    cr_assert (fd >= 0);
    size_t len = strlen (text);
    cr_assert_eq (write (fd, text, len), (ssize_t) len);
    close (fd);
    return s_path;
}

static const fks_csv_opts_t s_opts = { .symbol = "TEST", .interval = "1d" };

static int64_t
s_ms (const char *text)
{
    int64_t ms;
    cr_assert_eq (fks_csv_parse_time (text, &ms), 0, "time %s", text);
    return ms;
}

Test (csv, reads_the_shipped_ttrc_sample)
{
    const char *dir = getenv ("FKS_TOOLS_DATA");
    cr_assert (dir, "FKS_TOOLS_DATA is set by meson");
    char path[512];
    snprintf (path, sizeof path, "%s/ttrc_ohlcv.csv", dir);
    fks_bars_t bars = { 0 };
    fks_csv_stats_t st;
    char err[256];
    fks_csv_opts_t o = { .symbol = "TTRC", .interval = "1d" };
    cr_assert_eq (fks_csv_load (path, &o, &bars, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 5550);
    cr_assert_eq (st.rows, 5550);
    cr_assert_eq (st.skipped, 0);
    //  First row: 1985-01-02,3.18,3.18,3.08,3.08,1870906
    cr_assert_eq (bars.v[0].open_time, 473472000000LL);
    cr_assert_float_eq (bars.v[0].open, 3.18, 1e-12);
    cr_assert_float_eq (bars.v[0].high, 3.18, 1e-12);
    cr_assert_float_eq (bars.v[0].low, 3.08, 1e-12);
    cr_assert_float_eq (bars.v[0].close, 3.08, 1e-12);
    cr_assert_float_eq (bars.v[0].volume, 1870906, 1e-6);
    cr_assert_str_eq (bars.v[0].symbol, "TTRC");
    cr_assert_str_eq (bars.v[0].interval, "1d");
    cr_assert (bars.v[0].closed);
    cr_assert_eq (bars.v[5549].open_time, s_ms ("2006-12-29"));
    for (size_t i = 1; i < bars.n; i++)
        cr_assert_lt (bars.v[i - 1].open_time, bars.v[i].open_time);
    fks_bars_free (&bars);
}

Test (csv, columns_in_any_order_and_case_with_extra_columns)
{
    const char *p = s_file ("Volume, Close ,Adj Close,LOW,High,Open,Date\n"
                            "100,10.5,10.4,9.5,11,10,2024-03-01\n");
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 1);
    cr_assert_float_eq (bars.v[0].open, 10, 1e-12);
    cr_assert_float_eq (bars.v[0].high, 11, 1e-12);
    cr_assert_float_eq (bars.v[0].low, 9.5, 1e-12);
    cr_assert_float_eq (bars.v[0].close, 10.5, 1e-12);
    cr_assert_float_eq (bars.v[0].volume, 100, 1e-12);
    fks_bars_free (&bars);
}

Test (csv, closes_only_file_reads_the_named_column)
{
    const char *p = s_file ("date,DAX,SMI,CAC,FTSE\n"
                            "1991-07-01,1628.75,1678.1,1772.8,2443.6\n"
                            "1991-07-02,1613.63,1688.5,1750.5,2460.2\n");
    fks_bars_t bars = { 0 };
    char err[256];
    fks_csv_opts_t o = { .symbol = "SMI", .interval = "1d", .column = "smi" };
    cr_assert_eq (fks_csv_load (p, &o, &bars, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 2);
    cr_assert_float_eq (bars.v[1].close, 1688.5, 1e-9);
    cr_assert_float_eq (bars.v[1].open, 1688.5, 1e-9);
    cr_assert_float_eq (bars.v[1].high, 1688.5, 1e-9);
    cr_assert_float_eq (bars.v[1].low, 1688.5, 1e-9);
    cr_assert_float_eq (bars.v[1].volume, 0, 1e-9);
    fks_bars_free (&bars);
}

Test (csv, closes_only_file_without_a_column_says_how_to_name_one)
{
    const char *p = s_file ("date,DAX,SMI\n1991-07-01,1628.75,1678.1\n");
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), -1);
    cr_assert (strstr (err, "no column named 'close'"), "%s", err);
    cr_assert (strstr (err, "date, DAX, SMI"), "the columns found are listed: %s", err);
    cr_assert_eq (bars.n, 0);
}

Test (csv, missing_time_column_is_refused_with_the_columns_found)
{
    const char *p = s_file ("when,open,high,low,close,volume\nx,1,1,1,1,1\n");
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), -1);
    cr_assert (strstr (err, "line 1: no time column"), "%s", err);
    cr_assert (strstr (err, "when, open"), "%s", err);
}

Test (csv, file_written_newest_first_comes_back_oldest_first)
{
    const char *p = s_file ("date,open,high,low,close,volume\n"
                            "2024-01-03,3,3,3,3,1\n2024-01-02,2,2,2,2,1\n2024-01-01,1,1,1,1,1\n");
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 3);
    cr_assert_float_eq (bars.v[0].close, 1, 1e-12);
    cr_assert_float_eq (bars.v[2].close, 3, 1e-12);
    fks_bars_free (&bars);
}

Test (csv, rows_repeating_a_time_leave_the_last_of_them)
{
    //  Newest first, with 2024-01-02 three times: the file's last row for it wins.
    const char *p = s_file ("date,open,high,low,close,volume\n"
                            "2024-01-03,3,3,3,3,1\n2024-01-02,20,20,20,20,1\n"
                            "2024-01-02,21,21,21,21,1\n2024-01-01,1,1,1,1,1\n"
                            "2024-01-02,22,22,22,22,1\n");
    fks_bars_t bars = { 0 };
    fks_csv_stats_t st;
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 3, "one bar per time");
    cr_assert_eq (st.rows, 3);
    cr_assert_eq (st.duplicates, 2);
    cr_assert_float_eq (bars.v[0].close, 1, 1e-12);
    cr_assert_float_eq (bars.v[1].close, 22, 1e-12);
    cr_assert_float_eq (bars.v[2].close, 3, 1e-12);
    cr_assert (strstr (st.first_duplicate, "2024-01-02"), "%s", st.first_duplicate);
    fks_bars_free (&bars);
}

Test (csv, bad_numbers_become_nan_and_bad_times_are_skipped_with_the_line)
{
    const char *p = s_file ("date,open,high,low,close,volume\n"
                            "2024-01-01,1,abc,1,1,\n"
                            "yesterday,1,1,1,1,1\n"
                            "2024-01-03,NA,2,2,2,null\n"
                            "\n"
                            "2024-01-04,4,4,4,4,4\n");
    fks_bars_t bars = { 0 };
    fks_csv_stats_t st;
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 3);
    cr_assert (isnan (bars.v[0].high));
    cr_assert (isnan (bars.v[0].volume));
    cr_assert (isnan (bars.v[1].open));
    cr_assert (isnan (bars.v[1].volume));
    cr_assert_float_eq (bars.v[2].close, 4, 1e-12);
    cr_assert_eq (st.skipped, 1);
    cr_assert_eq (st.blank, 1);
    cr_assert (strstr (st.first_skip, "line 3"), "%s", st.first_skip);
    cr_assert (strstr (st.first_skip, "yesterday"), "%s", st.first_skip);
    fks_bars_free (&bars);
}

Test (csv, quoted_fields_and_crlf_line_ends)
{
    const char *p = s_file ("\"date\",\"open\",\"high\",\"low\",\"close\",\"volume\",\"note\"\r\n"
                            "\"2024-01-01\",\"1\",\"2\",\"0.5\",\"1.5\",\"10\",\"a, \"\"b\"\"\"\r\n");
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq (bars.n, 1);
    cr_assert_float_eq (bars.v[0].close, 1.5, 1e-12);
    cr_assert_float_eq (bars.v[0].volume, 10, 1e-12);
    fks_bars_free (&bars);
}

Test (csv, overlong_line_is_refused_with_its_number)
{
    char *text = malloc (FKS_CSV_LINE_MAX + 200);
    cr_assert (text);
    strcpy (text, "date,close\n2024-01-01,1\n2024-01-02,");
    size_t n = strlen (text);
    memset (text + n, '1', FKS_CSV_LINE_MAX + 10);
    strcpy (text + n + FKS_CSV_LINE_MAX + 10, "\n");
    const char *p = s_file (text);
    free (text);
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (p, &s_opts, &bars, NULL, err, sizeof err), -1);
    cr_assert (strstr (err, "line 3: longer than"), "%s", err);
    cr_assert_eq (bars.n, 0, "a failed load adds nothing");
    fks_bars_free (&bars);
}

Test (csv, more_rows_than_allowed_is_refused)
{
    const char *p = s_file ("date,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n");
    fks_bars_t bars = { 0 };
    char err[256];
    fks_csv_opts_t o = s_opts;
    o.max_rows = 2;
    cr_assert_eq (fks_csv_load (p, &o, &bars, NULL, err, sizeof err), -1);
    cr_assert (strstr (err, "more than 2 rows"), "%s", err);
    cr_assert_eq (bars.n, 0);
    fks_bars_free (&bars);
}

Test (csv, empty_file_and_header_only_are_refused)
{
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load (s_file (""), &s_opts, &bars, NULL, err, sizeof err), -1);
    cr_assert (strstr (err, "empty file"), "%s", err);
    s_clean ();
    cr_assert_eq (fks_csv_load (s_file ("date,close\n"), &s_opts, &bars, NULL, err, sizeof err),
                  -1);
    cr_assert (strstr (err, "no data rows"), "%s", err);
}

Test (csv, missing_file_names_the_path)
{
    fks_bars_t bars = { 0 };
    char err[256];
    cr_assert_eq (fks_csv_load ("/nonexistent/x.csv", &s_opts, &bars, NULL, err, sizeof err),
                  -1);
    cr_assert (strstr (err, "/nonexistent/x.csv: No such file"), "%s", err);
}

Test (csv, time_formats)
{
    int64_t ms;
    cr_assert_eq (s_ms ("1970-01-02"), 86400000);
    cr_assert_eq (s_ms ("2024-03-01 13:30:00"), 1709299800000LL);
    cr_assert_eq (s_ms ("2024-03-01T13:30:00Z"), 1709299800000LL);
    cr_assert_eq (s_ms ("2024-03-01T13:30:00.250+00:00"), 1709299800250LL);
    cr_assert_eq (s_ms ("2024-03-01 13:30"), 1709299800000LL);
    cr_assert_eq (s_ms ("1709299800"), 1709299800000LL, "epoch seconds");
    cr_assert_eq (s_ms ("1709299800123"), 1709299800123LL, "epoch milliseconds");
    //  Eight digits are a compact date (ISO 8601 basic, as many vendors write it), not epoch
    //  seconds of 1970: 20240301 was read as 1970-08-23 and every day a second apart.
    cr_assert_eq (s_ms ("20240301"), 1709251200000LL, "a compact date");
    cr_assert_eq (s_ms ("19850102"), 473472000000LL);
    cr_assert_eq (fks_csv_parse_time ("20241301", &ms), -1, "eight digits that are no date");
    cr_assert_eq (fks_csv_parse_time ("20230229", &ms), -1);
    cr_assert_eq (s_ms ("2024-02-29"), 1709164800000LL, "a leap day");
    cr_assert_eq (fks_csv_parse_time ("2023-02-29", &ms), -1, "not a leap year");
    cr_assert_eq (fks_csv_parse_time ("2024-13-01", &ms), -1);
    cr_assert_eq (fks_csv_parse_time ("2024-01-01 25:00", &ms), -1);
    cr_assert_eq (fks_csv_parse_time ("2024-01-01T10:00:00+02:00", &ms), -1,
                  "only UTC offsets are understood");
    cr_assert_eq (fks_csv_parse_time ("01/02/2024", &ms), -1);
    cr_assert_eq (fks_csv_parse_time ("", &ms), -1);
    cr_assert_eq (fks_csv_parse_time ("1234567890123456", &ms), -1);
}
