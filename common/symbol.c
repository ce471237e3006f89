/*  symbol.c - one spelling for every instrument.
 *
 *  See symbol.h. The input is bounded by the caller's buffer; the loop stops at the first
 *  character that cannot be part of a symbol, so a hostile string costs at most its length.
 */
#include "common/symbol.h"

#include <stdio.h>
#include <string.h>

int
fks_symbol_normalize (const char *raw, char out[FKS_SYMBOL_MAX], char *why, size_t cap)
{
    out[0] = '\0';
    if (!raw || !*raw) {
        if (why && cap)
            snprintf (why, cap, "the symbol is empty");
        return -1;
    }
    const char *s = strrchr (raw, ':');
    s = s ? s + 1 : raw;
    size_t n = 0;
    for (; *s; s++) {
        char ch = *s;
        if (ch == '/' || ch == '-' || ch == '_')
            continue;
        if (ch >= 'a' && ch <= 'z')
            ch = (char) (ch - 'a' + 'A');
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '!')) {
            if (why && cap)
                snprintf (why, cap, "symbol '%.64s' holds a character that is not a letter, a "
                          "digit, '.' or '!'", raw);
            out[0] = '\0';
            return -1;
        }
        if (n + 1 >= FKS_SYMBOL_MAX) {
            if (why && cap)
                snprintf (why, cap, "symbol '%.64s' is longer than %d characters", raw,
                          FKS_SYMBOL_MAX - 1);
            out[0] = '\0';
            return -1;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '.' || out[0] == '!') {
        if (why && cap)
            snprintf (why, cap, "symbol '%.64s' has no instrument name", raw);
        out[0] = '\0';
        return -1;
    }
    return 0;
}
