/*  sbuf.c - a growable string with a size limit; see sbuf.h.
 */
#include "common/sbuf.h"
#include "common/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
fks_sbuf_init (fks_sbuf_t *b, size_t max)
{
    memset (b, 0, sizeof *b);
    b->max = max ? max : 16u * 1024 * 1024;
}

void
fks_sbuf_free (fks_sbuf_t *b)
{
    free (b->data);
    memset (b, 0, sizeof *b);
}

void
fks_sbuf_reset (fks_sbuf_t *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data)
        b->data[0] = '\0';
}

static bool
s_sbuf_room (fks_sbuf_t *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    if (b->len + more + 1 > b->max) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *d = realloc (b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void
fks_sbuf_put (fks_sbuf_t *b, const char *s, size_t n)
{
    if (!s_sbuf_room (b, n))
        return;
    memcpy (b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
fks_sbuf_puts (fks_sbuf_t *b, const char *s)
{
    fks_sbuf_put (b, s, strlen (s));
}

void
fks_sbuf_printf (fks_sbuf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (small, sizeof small, fmt, ap);
    va_end (ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t) n < sizeof small) {
        fks_sbuf_put (b, small, (size_t) n);
        return;
    }
    if (!s_sbuf_room (b, (size_t) n))
        return;
    va_start (ap, fmt);
    vsnprintf (b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end (ap);
    b->len += (size_t) n;
}

void
fks_sbuf_json_str (fks_sbuf_t *b, const char *s, size_t n)
{
    //  Escaping grows a byte to at most 6 ("\u00XX"), and an invalid byte to 3 (U+FFFD).
    size_t need = n * 6 + 3;
    if (!s_sbuf_room (b, need))
        return;
    b->data[b->len++] = '"';
    b->len += fks_json_escape (b->data + b->len, need, s, n);
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

void
fks_double_text (char *buf, size_t cap, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf (buf, cap, "%.*g", prec, v);
        if (strtod (buf, NULL) == v)
            return;
    }
}

void
fks_sbuf_json_double (fks_sbuf_t *b, double v)
{
    if (!isfinite (v)) {
        fks_sbuf_puts (b, "null");
        return;
    }
    char t[32];
    fks_double_text (t, sizeof t, v);
    fks_sbuf_puts (b, t);
}
