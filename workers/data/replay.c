/*  replay.c - the replay adapter: an OHLCV file served as if it were a market-data source.
 *
 *  The file is loaded once (csv.h: sorted, one bar per time, bounded) and every fetch is a binary search for
 *  the first bar at or after start, then a copy of at most limit bars up to end. The feed
 *  (feed.h) moves start and end along the file at the replay speed, so history runs through
 *  the whole pipeline exactly as live bars would. Any interval is served: the file's rows are
 *  stamped with the interval the feed was configured with.
 */
#include "workers/data/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    fks_bars_t bars;
    fks_csv_stats_t stats;              /* what the load skipped or merged, for the log */
} s_replay_t;

static int
s_fetch (void *impl, const fks_fetch_req_t *req, fks_bars_t *out, fks_fetch_err_t *err)
{
    s_replay_t *self = impl;
    size_t lo = 0, hi = self->bars.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->bars.v[mid].open_time < req->start_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo, k = 0; i < self->bars.n && k < req->limit; i++, k++) {
        if (self->bars.v[i].open_time > req->end_ms)
            break;
        if (fks_bars_push (out, &self->bars.v[i]) != 0) {
            snprintf (err->msg, sizeof err->msg, "out of memory");
            return FKS_FETCH_ERROR;
        }
    }
    return 0;
}

static bool
s_supports (void *impl, const char *interval)
{
    (void) impl;
    return fks_interval_parse (interval, NULL, NULL) == 0;
}

static void
s_destroy (void *impl)
{
    s_replay_t *self = impl;
    if (self) {
        fks_bars_free (&self->bars);
        free (self);
    }
}

static const fks_adapter_ops_t s_ops = {
    .name = "replay",
    .history = true,
    .fetch = s_fetch,
    .supports = s_supports,
    .destroy = s_destroy,
};

fks_adapter_t *
fks_adapter_replay_new (const char *path, const fks_csv_opts_t *opts, char *err, size_t cap)
{
    s_replay_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, cap, "out of memory");
        return NULL;
    }
    if (fks_csv_load (path, opts, &self->bars, &self->stats, err, cap) != 0) {
        s_destroy (self);
        return NULL;
    }
    fks_adapter_t *a = fks_adapter_new (&s_ops, self);
    if (!a)
        snprintf (err, cap, "out of memory");
    return a;
}

size_t
fks_adapter_replay_size (const fks_adapter_t *self)
{
    s_replay_t *impl = fks_adapter_impl (self, &s_ops);
    return impl ? impl->bars.n : 0;
}

const fks_csv_stats_t *
fks_adapter_replay_stats (const fks_adapter_t *self)
{
    s_replay_t *impl = fks_adapter_impl (self, &s_ops);
    return impl ? &impl->stats : NULL;
}
