/*  log.c - structured logging: one JSON object per line.
 *
 *  Each line is built on the stack (FKS_LOG_LINE_MAX bytes at most; a longer message is cut
 *  and marked with "truncated":true) and written with a single write(2), so lines from many
 *  threads never interleave and logging never allocates. The level and fd are atomics, the
 *  program name is set once at start. fks_json_escape is the one JSON string escaper of the
 *  project: it also serves the gateway's hand-written JSON answers.
 */
#include "common/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define FKS_LOG_LINE_MAX 8192
#define FKS_LOG_MSG_MAX  4096

static _Atomic int s_level = FKS_LOG_INFO;
static _Atomic int s_fd = 2;
static char s_program[64] = "fks";

static const char *const s_level_names[] = { "debug", "info", "warn", "error" };

int
fks_log_level_parse (const char *text, fks_log_level_t *out)
{
    if (!text)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp (text, s_level_names[i]) == 0) {
            *out = (fks_log_level_t) i;
            return 0;
        }
    }
    if (strcasecmp (text, "warning") == 0) {
        *out = FKS_LOG_WARN;
        return 0;
    }
    return -1;
}

int
fks_log_init (const char *program)
{
    if (program) {
        size_t n = strlen (program);
        if (n >= sizeof s_program)
            n = sizeof s_program - 1;
        memcpy (s_program, program, n);
        s_program[n] = '\0';
    }
    const char *env = getenv ("FKS_LOG_LEVEL");
    if (env && *env) {
        fks_log_level_t level;
        if (fks_log_level_parse (env, &level) < 0) {
            fks_log (FKS_LOG_ERROR, NULL, NULL,
                     "FKS_LOG_LEVEL: expected debug, info, warn or error, got '%.40s'", env);
            return -1;
        }
        fks_log_set_level (level);
    }
    return 0;
}

void
fks_log_set_fd (int fd)
{
    atomic_store (&s_fd, fd);
}

void
fks_log_set_level (fks_log_level_t level)
{
    atomic_store (&s_level, (int) level);
}

fks_log_level_t
fks_log_level (void)
{
    return (fks_log_level_t) atomic_load (&s_level);
}

/*  Length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there are not one. */
static size_t
s_utf8_len (const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;                       /* overlong, out of range, or a surrogate */
    return n;
}

size_t
fks_json_escape (char *dst, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (cap == 0)
        return 0;
    const unsigned char *s = (const unsigned char *) src;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        char esc[8];
        size_t elen = 0, consumed = 1;
        const char *piece = esc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\'; esc[1] = (char) c; elen = 2;
        } else if (c == '\n') {
            esc[0] = '\\'; esc[1] = 'n'; elen = 2;
        } else if (c == '\r') {
            esc[0] = '\\'; esc[1] = 'r'; elen = 2;
        } else if (c == '\t') {
            esc[0] = '\\'; esc[1] = 't'; elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy (esc, "\\u00", 4);
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 0xf]; elen = 6;
        } else if (c < 0x80) {
            esc[0] = (char) c; elen = 1;
        } else {
            size_t n = s_utf8_len (s + i, len - i);
            if (n == 0) {
                piece = "\xef\xbf\xbd";     /* U+FFFD for a byte that is not UTF-8 */
                elen = 3;
            } else {
                piece = (const char *) s + i;
                elen = n;
                consumed = n;
            }
        }
        if (o + elen + 1 > cap)
            break;                          /* never cut a character or an escape in two */
        memcpy (dst + o, piece, elen);
        o += elen;
        i += consumed;
    }
    dst[o] = '\0';
    return o;
}

/*  Appends one ,"key":<raw> member. The value is already JSON. */
static int
s_field_raw (char *buf, size_t cap, const char *key, const char *raw, bool quote,
             size_t raw_len)
{
    size_t used = strlen (buf);
    char ekey[128];
    fks_json_escape (ekey, sizeof ekey, key, strlen (key));
    size_t need = (used ? 1 : 0) + strlen (ekey) + 3 + raw_len + (quote ? 2 : 0);
    if (used + need + 1 > cap)
        return -1;
    int n = snprintf (buf + used, cap - used, "%s\"%s\":%s%.*s%s", used ? "," : "", ekey,
                      quote ? "\"" : "", (int) raw_len, raw, quote ? "\"" : "");
    return n < 0 ? -1 : 0;
}

int
fks_log_field_str (char *buf, size_t cap, const char *key, const char *value)
{
    char esc[1024];
    size_t n = fks_json_escape (esc, sizeof esc, value ? value : "", value ? strlen (value) : 0);
    return s_field_raw (buf, cap, key, esc, true, n);
}

int
fks_log_field_int (char *buf, size_t cap, const char *key, long long value)
{
    char num[32];
    int n = snprintf (num, sizeof num, "%lld", value);
    return s_field_raw (buf, cap, key, num, false, (size_t) n);
}

void
fks_log_v (fks_log_level_t level, const char *corr, const char *fields, const char *fmt,
           va_list ap)
{
    if ((int) level < atomic_load (&s_level) || level > FKS_LOG_ERROR)
        return;
    char msg[FKS_LOG_MSG_MAX];
    int mlen = vsnprintf (msg, sizeof msg, fmt, ap);
    bool truncated = mlen >= (int) sizeof msg;
    if (mlen < 0)
        mlen = 0;
    if (truncated)
        mlen = (int) sizeof msg - 1;

    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);

    char line[FKS_LOG_LINE_MAX];
    size_t o = 0;
    int n = snprintf (line, sizeof line,
                      "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                      "\"program\":\"",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000, s_level_names[level]);
    o = (size_t) n;
    o += fks_json_escape (line + o, sizeof line - o, s_program, strlen (s_program));
    const char *sep = "\",\"msg\":\"";
    memcpy (line + o, sep, strlen (sep));
    o += strlen (sep);
    /* Room kept for the closing members below: corr (50), fields, flags and "}\n". */
    size_t fields_len = fields ? strlen (fields) : 0;
    size_t reserve = 128 + (fields_len < 2048 ? fields_len : 0);
    size_t before = o;
    o += fks_json_escape (line + o, sizeof line - o - reserve, msg, (size_t) mlen);
    if (o - before < (size_t) mlen && !truncated) {
        /* the escaped form did not fit (escaping can grow a string up to 6x) */
        truncated = true;
    }
    line[o++] = '"';
    if (corr && *corr) {
        o += (size_t) snprintf (line + o, sizeof line - o, ",\"corr\":\"");
        o += fks_json_escape (line + o, 48, corr, strlen (corr));
        line[o++] = '"';
    }
    if (truncated)
        o += (size_t) snprintf (line + o, sizeof line - o, ",\"truncated\":true");
    if (fields_len && fields_len < 2048 && o + fields_len + 4 < sizeof line) {
        line[o++] = ',';
        memcpy (line + o, fields, fields_len);
        o += fields_len;
    }
    line[o++] = '}';
    line[o++] = '\n';

    int fd = atomic_load (&s_fd);
    size_t off = 0;
    while (off < o) {
        ssize_t w = write (fd, line + off, o - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;                      /* nowhere to report a failed log write */
        off += (size_t) w;
    }
}

void
fks_log (fks_log_level_t level, const char *corr, const char *fields, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    fks_log_v (level, corr, fields, fmt, ap);
    va_end (ap);
}
