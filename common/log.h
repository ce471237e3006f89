/*  log.h - structured logging: one JSON object per line on stderr.
 *
 *  Every line carries ts (RFC 3339 UTC with milliseconds), level, program, msg, and corr when
 *  the caller knows the alert it concerns, plus any extra fields the caller adds. Strings are
 *  JSON-escaped; each line is written with a single write(2), so lines from many threads never
 *  interleave. The level comes from FKS_LOG_LEVEL (debug, info, warn, error; default info).
 *
 *  Never pass a secret to these functions: they print what they are given.
 */
#ifndef FKS_LOG_H
#define FKS_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { FKS_LOG_DEBUG = 0, FKS_LOG_INFO, FKS_LOG_WARN, FKS_LOG_ERROR } fks_log_level_t;

/*  Sets the program name and reads FKS_LOG_LEVEL. Returns -1 (and logs why, at info level) when
 *  FKS_LOG_LEVEL holds an unknown value. Call once at start, before threads. */
int fks_log_init (const char *program);

/*  Redirects output to fd (default 2). For tests. */
void fks_log_set_fd (int fd);

void fks_log_set_level (fks_log_level_t level);
fks_log_level_t fks_log_level (void);

/*  Parses "debug", "info", "warn"/"warning", "error". Returns -1 if unknown. */
int fks_log_level_parse (const char *text, fks_log_level_t *out);

/*  Logs a line. corr may be NULL (no corr field). `fields` may be NULL, or a string of extra
 *  JSON members already encoded, without braces, e.g. "\"group\":\"signal\",\"n\":3" (build it
 *  with fks_log_field_*). msg is printf-style. Thread-safe. */
void fks_log (fks_log_level_t level, const char *corr, const char *fields, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

void fks_log_v (fks_log_level_t level, const char *corr, const char *fields, const char *fmt,
                va_list ap);

/*  Helpers to append one JSON member to buf (of size cap, NUL-terminated): ,"key":"value" or
 *  ,"key":123 — the leading comma is omitted when buf is empty. The value is escaped. Returns 0,
 *  or -1 when it did not fit (buf unchanged). */
int fks_log_field_str (char *buf, size_t cap, const char *key, const char *value);
int fks_log_field_int (char *buf, size_t cap, const char *key, long long value);

/*  JSON-escapes src (len bytes) into dst (cap bytes, always NUL-terminated, truncating on a
 *  character boundary). Control characters become \u00XX; invalid UTF-8 bytes become U+FFFD.
 *  Returns the length written. Shared by everything that writes JSON by hand. */
size_t fks_json_escape (char *dst, size_t cap, const char *src, size_t len);

#define fks_debug(...) fks_log (FKS_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define fks_info(...)  fks_log (FKS_LOG_INFO,  NULL, NULL, __VA_ARGS__)
#define fks_warn(...)  fks_log (FKS_LOG_WARN,  NULL, NULL, __VA_ARGS__)
#define fks_error(...) fks_log (FKS_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
