/*  bar.c - one OHLCV price bar, a growable list of them, and bar intervals.
 *
 *  See bar.h. The list doubles its capacity as it grows and is capped, so a source that sends
 *  an endless stream costs a bounded amount of memory; the sort is a merge sort, because a
 *  CSV file with two rows for one time must keep them in file order (csv.c keeps the later
 *  row).
 */
#include "workers/data/bar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
fks_interval_parse (const char *text, int64_t *ms, char *unit)
{
    if (!text || text[0] < '1' || text[0] > '9')
        return -1;
    int64_t n = 0;
    size_t i = 0;
    while (text[i] >= '0' && text[i] <= '9') {
        if (i == 4)
            return -1;
        n = n * 10 + (text[i] - '0');
        i++;
    }
    if (text[i] == '\0' || text[i + 1] != '\0')
        return -1;
    int64_t per;
    switch (text[i]) {
        case 's': per = 1000; break;
        case 'm': per = 60000; break;
        case 'h': per = 3600000; break;
        case 'd': per = 86400000; break;
        case 'w': per = 7 * 86400000LL; break;
        case 'M': per = FKS_MONTH_MS; break;
        default:  return -1;
    }
    if (ms)
        *ms = n * per;
    if (unit)
        *unit = text[i];
    return 0;
}

static int64_t
s_floor_div (int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t
fks_months_between (int64_t a_ms, int64_t b_ms)
{
    time_t ta = (time_t) s_floor_div (a_ms, 1000), tb = (time_t) s_floor_div (b_ms, 1000);
    struct tm a, b;
    gmtime_r (&ta, &a);
    gmtime_r (&tb, &b);
    return ((int64_t) b.tm_year - a.tm_year) * 12 + (b.tm_mon - a.tm_mon);
}

int
fks_bars_push (fks_bars_t *self, const fks_bar_t *bar)
{
    if (self->n == self->cap) {
        if (self->cap >= FKS_BARS_MAX)
            return -1;
        size_t cap = self->cap ? self->cap * 2 : 64;
        if (cap > FKS_BARS_MAX)
            cap = FKS_BARS_MAX;
        fks_bar_t *v = realloc (self->v, cap * sizeof *v);
        if (!v)
            return -1;
        self->v = v;
        self->cap = cap;
    }
    self->v[self->n++] = *bar;
    return 0;
}

void
fks_bars_clear (fks_bars_t *self)
{
    self->n = 0;
}

void
fks_bars_free (fks_bars_t *self)
{
    free (self->v);
    memset (self, 0, sizeof *self);
}

static void
s_merge (fks_bar_t *v, fks_bar_t *tmp, size_t lo, size_t mid, size_t hi)
{
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi)
        tmp[k++] = v[j].open_time < v[i].open_time ? v[j++] : v[i++];
    while (i < mid)
        tmp[k++] = v[i++];
    while (j < hi)
        tmp[k++] = v[j++];
    memcpy (v + lo, tmp + lo, (hi - lo) * sizeof *v);
}

void
fks_bars_sort (fks_bars_t *self)
{
    size_t n = self->n;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = self->v[i - 1].open_time <= self->v[i].open_time;
    if (sorted)
        return;
    fks_bar_t *tmp = malloc (n * sizeof *tmp);
    if (!tmp) {
        //  No memory for the merge: an insertion sort is stable too, only slower.
        for (size_t i = 1; i < n; i++) {
            fks_bar_t b = self->v[i];
            size_t j = i;
            while (j > 0 && self->v[j - 1].open_time > b.open_time) {
                self->v[j] = self->v[j - 1];
                j--;
            }
            self->v[j] = b;
        }
        return;
    }
    for (size_t width = 1; width < n; width *= 2)
        for (size_t lo = 0; lo < n - width; lo += 2 * width) {
            size_t mid = lo + width;
            size_t hi = mid + width < n ? mid + width : n;
            s_merge (self->v, tmp, lo, mid, hi);
        }
    free (tmp);
}

const char *
fks_time_text (char buf[24], int64_t ms)
{
    time_t t = (time_t) s_floor_div (ms, 1000);
    struct tm tm;
    if (!gmtime_r (&t, &tm)) {
        snprintf (buf, 24, "%lld ms", (long long) ms);
        return buf;
    }
    if (tm.tm_hour == 0 && tm.tm_min == 0 && tm.tm_sec == 0)
        strftime (buf, 24, "%Y-%m-%d", &tm);
    else
        strftime (buf, 24, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}
