/*  config.c - typed configuration from FKS_* environment variables and their _FILE variants.
 *
 *  Every getter starts with s_lookup, which finds the raw text of a setting: the variable
 *  itself, or the contents of the file its NAME_FILE variable names (a mounted Kubernetes
 *  Secret), never both. The text is bounded (FKS_CONFIG_VALUE_MAX) wherever it comes from,
 *  then parsed strictly by the getter: the whole string must be the value, so "80x" is not a
 *  port and " 5" is not a number. Errors name the variable and quote the offending text, except
 *  for secrets, whose values never leave this file.
 */
#include "common/config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void
s_err (fks_config_err_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->msg, sizeof err->msg, fmt, ap);
    va_end (ap);
}

/*  Quotes at most 40 bytes of a bad value for an error message, with non-printable bytes
 *  shown as '?', so an error line stays one readable line. */
static const char *
s_quote (const char *value, char *buf, size_t cap)
{
    size_t n = 0, i = 0;
    for (; value[i] && n + 4 < cap && i < 40; i++)
        buf[n++] = (value[i] >= 0x20 && value[i] < 0x7f) ? value[i] : '?';
    if (value[i] && n + 4 < cap) {
        memcpy (buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/*  Finds the raw text of a setting. Returns 0 and a malloc'd *out when set, 1 when unset,
 *  -1 with err. Error messages name variables and paths, never file contents. */
static int
s_lookup (const char *name, char **out, fks_config_err_t *err)
{
    char file_var[128];
    if (!name || snprintf (file_var, sizeof file_var, "%s_FILE", name) >= (int) sizeof file_var) {
        s_err (err, "%s: variable name too long", name ? name : "(null)");
        return -1;
    }
    const char *direct = getenv (name);
    const char *path = getenv (file_var);
    if (direct && path) {
        s_err (err, "%s and %s are both set: set only one", name, file_var);
        return -1;
    }
    if (direct) {
        size_t len = strlen (direct);
        if (len > FKS_CONFIG_VALUE_MAX) {
            s_err (err, "%s: value longer than %d bytes", name, FKS_CONFIG_VALUE_MAX);
            return -1;
        }
        *out = strdup (direct);
        if (!*out) {
            s_err (err, "%s: out of memory", name);
            return -1;
        }
        return 0;
    }
    if (!path)
        return 1;
    if (!*path) {
        s_err (err, "%s is set but empty: it must name a file", file_var);
        return -1;
    }
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_err (err, "%s: cannot open '%s': %s", file_var, path, strerror (errno));
        return -1;
    }
    char *buf = malloc (FKS_CONFIG_VALUE_MAX + 2);
    if (!buf) {
        close (fd);
        s_err (err, "%s: out of memory", file_var);
        return -1;
    }
    size_t len = 0;
    while (len < FKS_CONFIG_VALUE_MAX + 1) {       /* one more than allowed, to detect excess */
        ssize_t n = read (fd, buf + len, FKS_CONFIG_VALUE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s_err (err, "%s: cannot read '%s': %s", file_var, path, strerror (errno));
            close (fd);
            free (buf);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    close (fd);
    /* One trailing newline (LF or CRLF) is how editors and `echo` end files; drop it. */
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    if (len > FKS_CONFIG_VALUE_MAX) {
        s_err (err, "%s: file '%s' is longer than %d bytes", file_var, path,
               FKS_CONFIG_VALUE_MAX);
        free (buf);
        return -1;
    }
    if (memchr (buf, '\0', len)) {
        s_err (err, "%s: file '%s' contains a NUL byte", file_var, path);
        free (buf);
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

int
fks_config_str (const char *name, const char *def, char **out, fks_config_err_t *err)
{
    char *value = NULL;
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        char *copy = NULL;
        if (def && !(copy = strdup (def))) {
            s_err (err, "%s: out of memory", name);
            return -1;
        }
        *out = copy;
        return 1;
    }
    *out = value;
    return 0;
}

int
fks_config_secret (const char *name, size_t min_len, char **out, fks_config_err_t *err)
{
    char *value = NULL;
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        s_err (err, "%s is required (set %s or %s_FILE)", name, name, name);
        return -1;
    }
    size_t len = strlen (value);
    if (len == 0 || len < min_len) {
        s_err (err, "%s must be at least %zu characters long (it is %zu)", name,
               min_len ? min_len : 1, len);
        free (value);
        return -1;
    }
    *out = value;
    return 0;
}

/*  Strict decimal integer: optional '-', digits, nothing else; no overflow. */
static int
s_parse_i64 (const char *text, int64_t *out)
{
    if (!*text)
        return -1;
    const char *p = text;
    if (*p == '-' || *p == '+')
        p++;
    if (*p < '0' || *p > '9')
        return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end = NULL;
    long long v = strtoll (text, &end, 10);
    if (errno == ERANGE || !end || *end)
        return -1;
    *out = v;
    return 0;
}

int
fks_config_int (const char *name, int64_t def, int64_t min, int64_t max, int64_t *out,
                fks_config_err_t *err)
{
    char *value = NULL, q[64];
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *out = def;
        return 1;
    }
    int64_t v;
    if (s_parse_i64 (value, &v) < 0 || v < min || v > max) {
        s_err (err, "%s: expected an integer %lld-%lld, got '%s'", name, (long long) min,
               (long long) max, s_quote (value, q, sizeof q));
        free (value);
        return -1;
    }
    free (value);
    *out = v;
    return 0;
}

int
fks_config_port (const char *name, int def, int *out, fks_config_err_t *err)
{
    char *value = NULL, q[64];
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *out = def;
        return 1;
    }
    int64_t v;
    if (s_parse_i64 (value, &v) < 0 || v < 1 || v > 65535 || value[0] == '+'
        || value[0] == '-') {
        s_err (err, "%s: expected a port 1-65535, got '%s'", name, s_quote (value, q, sizeof q));
        free (value);
        return -1;
    }
    free (value);
    *out = (int) v;
    return 0;
}

int
fks_config_double (const char *name, double def, double min, double max, double *out,
                   fks_config_err_t *err)
{
    char *value = NULL, q[64];
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *out = def;
        return 1;
    }
    errno = 0;
    char *end = NULL;
    double v = value[0] && value[0] != ' ' && value[0] != '\t' ? strtod (value, &end) : NAN;
    if (!end || *end || errno == ERANGE || !isfinite (v) || v < min || v > max) {
        s_err (err, "%s: expected a number %g-%g, got '%s'", name, min, max,
               s_quote (value, q, sizeof q));
        free (value);
        return -1;
    }
    free (value);
    *out = v;
    return 0;
}

int
fks_config_bool (const char *name, bool def, bool *out, fks_config_err_t *err)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };
    char *value = NULL, q[64];
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *out = def;
        return 1;
    }
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp (value, yes[i]) == 0 || strcasecmp (value, no[i]) == 0) {
            *out = strcasecmp (value, yes[i]) == 0;
            free (value);
            return 0;
        }
    }
    s_err (err, "%s: expected true or false (1/0, yes/no, on/off), got '%s'", name,
           s_quote (value, q, sizeof q));
    free (value);
    return -1;
}

int
fks_config_duration_ms (const char *name, int64_t def, int64_t min_ms, int64_t max_ms,
                        int64_t *out, fks_config_err_t *err)
{
    char *value = NULL, q[64];
    int rc = s_lookup (name, &value, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *out = def;
        return 1;
    }
    /* digits, then an optional unit */
    size_t digits = strspn (value, "0123456789");
    const char *unit = value + digits;
    int64_t scale = 0;
    if (!*unit || strcmp (unit, "ms") == 0)
        scale = 1;
    else if (strcmp (unit, "s") == 0)
        scale = 1000;
    else if (strcmp (unit, "m") == 0)
        scale = 60 * 1000;
    else if (strcmp (unit, "h") == 0)
        scale = 3600 * 1000;
    int64_t n = 0;
    bool ok = digits > 0 && digits <= 12 && scale > 0;
    if (ok) {
        for (size_t i = 0; i < digits; i++)
            n = n * 10 + (value[i] - '0');
        ok = n <= max_ms / scale && n * scale >= min_ms && n * scale <= max_ms;
    }
    if (!ok) {
        s_err (err, "%s: expected a duration %lldms-%lldms (like 250ms, 5s, 2m, 1h), got '%s'",
               name, (long long) min_ms, (long long) max_ms, s_quote (value, q, sizeof q));
        free (value);
        return -1;
    }
    free (value);
    *out = n * scale;
    return 0;
}
