/*  sbuf.h - a growable string with a size limit, for JSON bodies and SQL array literals.
 *
 *  Appends never fail loudly: out of memory, or growth past `max`, sets `failed` and every
 *  later append does nothing, so a caller checks once at the end. The data stays
 *  NUL-terminated while not failed.
 */
#ifndef FKS_SBUF_H
#define FKS_SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;                     /* NUL-terminated while not failed */
    size_t len, cap;
    size_t max;                     /* growth limit; 0: 16 MiB */
    bool failed;                    /* out of memory or over max: the content is incomplete */
} fks_sbuf_t;

/*  An empty string that may grow to max bytes (0: 16 MiB); free it with fks_sbuf_free. */
void fks_sbuf_init (fks_sbuf_t *b, size_t max);
void fks_sbuf_free (fks_sbuf_t *b);
/*  Empties the string (and clears `failed`) but keeps its memory, for a buffer reused per
 *  transaction or request. */
void fks_sbuf_reset (fks_sbuf_t *b);
void fks_sbuf_put (fks_sbuf_t *b, const char *s, size_t n);
void fks_sbuf_puts (fks_sbuf_t *b, const char *s);
void fks_sbuf_printf (fks_sbuf_t *b, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/*  Appends s (n bytes) as a JSON string, quotes included (common/log.h's escaping). */
void fks_sbuf_json_str (fks_sbuf_t *b, const char *s, size_t n);

/*  The shortest text of at least 15 significant digits that reads back as exactly v (so
 *  42000 is "42000", never "4.2e+04", and 0.1 + 0.2 is "0.30000000000000004"); v finite.
 *  Assumes the "C" numeric locale (FKS programs never call setlocale). */
void fks_double_text (char *buf, size_t cap, double v);
/*  Appends v as a JSON number in that text, or null when v is not finite. */
void fks_sbuf_json_double (fks_sbuf_t *b, double v);

#endif
