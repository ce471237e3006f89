/*  ingest.c - bars into the bars table and Redis, market.bar and data.quality onto the bus.
 *
 *  See ingest.h. Both inserts are single statements over arrays (unnest on the server), so
 *  storing a replay batch of 500 bars and their events costs two round trips, not a thousand.
 *  Numbers travel as decimal text with 15 significant digits, what a double holds exactly, so
 *  a price read from "3.18" is stored as 3.18 and compares equal when it comes again.
 */
#include "workers/data/ingest.h"
#include "bus/envelope.h"
#include "common/log.h"
#include "common/sbuf.h"
#include "common/prices.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const fks_pg_stmt_t fks_ingest_stmts[] = {
    { "fks_ingest_bars",
      "INSERT INTO bars AS b (symbol, interval, open_time, open, high, low, close, volume,"
      "                       source)"
      " SELECT u.symbol, u.interval, timestamptz 'epoch' + u.t * interval '1 millisecond',"
      "        u.o, u.h, u.l, u.c, u.v, $1"
      "   FROM unnest ($2::text[], $3::text[], $4::bigint[], $5::numeric[], $6::numeric[],"
      "                $7::numeric[], $8::numeric[], $9::numeric[])"
      "     AS u (symbol, interval, t, o, h, l, c, v)"
      " ON CONFLICT (symbol, interval, open_time) DO UPDATE"
      "    SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,"
      "        close = EXCLUDED.close, volume = EXCLUDED.volume, source = EXCLUDED.source,"
      "        updated_at = now()"
      "  WHERE (b.open, b.high, b.low, b.close, b.volume)"
      "        IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,"
      "                          EXCLUDED.volume)"
      " RETURNING b.symbol, b.interval,"
      "           (extract (epoch FROM b.open_time) * 1000)::bigint", 9 },
    { "fks_ingest_events",
      "INSERT INTO events (id, type, corr, cause, src, ts, envelope)"
      " SELECT u.id, u.type, NULL, NULL, '" FKS_INGEST_SRC "',"
      "        timestamptz 'epoch' + (u.ns / 1000) * interval '1 microsecond',"
      "        decode (u.env, 'hex')"
      "   FROM unnest ($1::uuid[], $2::text[], $3::bigint[], $4::text[])"
      "     AS u (id, type, ns, env)", 4 },
    { "fks_ingest_newest",
      "SELECT (extract (epoch FROM open_time) * 1000)::bigint, open::float8, high::float8,"
      "       low::float8, close::float8, volume::float8"
      "  FROM bars WHERE symbol = $1 AND interval = $2"
      " ORDER BY open_time DESC LIMIT 2", 2 },
};
const size_t fks_ingest_n_stmts = sizeof fks_ingest_stmts / sizeof fks_ingest_stmts[0];

//  --------------------------------------------------------------------------
//  Array parameters

static void
s_num (fks_sbuf_t *b, double v)
{
    char t[48];
    snprintf (t, sizeof t, "%.15g", v);
    fks_sbuf_puts (b, strcmp (t, "-0") ? t : "0");
}

//  --------------------------------------------------------------------------
//  Keys

typedef struct {
    const char *symbol, *interval;
    int64_t t;
    size_t index;
} s_key_t;

static int
s_key_cmp (const void *a, const void *b)
{
    const s_key_t *x = a, *y = b;
    int c = strcmp (x->symbol, y->symbol);
    if (!c)
        c = strcmp (x->interval, y->interval);
    if (!c)
        c = x->t < y->t ? -1 : x->t > y->t;
    if (!c)
        c = x->index < y->index ? -1 : x->index > y->index;
    return c;
}

static int
s_key_eq (const s_key_t *x, const s_key_t *y)
{
    return !strcmp (x->symbol, y->symbol) && !strcmp (x->interval, y->interval) && x->t == y->t;
}

//  --------------------------------------------------------------------------
//  Events

typedef struct {
    fks_id_t id;
    const char *type;
    int64_t ns;
    msgpack_sbuffer env;
} s_event_t;

typedef struct {
    s_event_t *v;
    size_t n, cap;
} s_events_t;

static void
s_events_free (s_events_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        msgpack_sbuffer_destroy (&e->v[i].env);
    free (e->v);
    memset (e, 0, sizeof *e);
}

//  Encodes the body in body (a packed map) as an envelope of type and appends it. 0 or -1.
static int
s_event (s_events_t *e, const char *type, const msgpack_sbuffer *body, fks_pg_err_t *err)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        s_event_t *v = realloc (e->v, cap * sizeof *v);
        if (!v)
            goto oom;
        e->v = v;
        e->cap = cap;
    }
    fks_envelope_hdr_t hdr;
    if (fks_envelope_hdr_init (&hdr, type, FKS_INGEST_SRC, NULL, NULL) != 0)
        goto oom;
    s_event_t *ev = &e->v[e->n];
    msgpack_sbuffer_init (&ev->env);
    fks_envelope_err_t eerr;
    if (fks_envelope_encode (&hdr, body->data, body->size, &ev->env, &eerr) != 0) {
        msgpack_sbuffer_destroy (&ev->env);
        memset (err, 0, sizeof *err);
        snprintf (err->msg, sizeof err->msg, "internal error: invalid %s: %s", type, eerr.msg);
        return -1;
    }
    ev->id = hdr.id;
    ev->type = type;
    ev->ns = hdr.ts;
    e->n++;
    return 0;
oom:
    memset (err, 0, sizeof *err);
    snprintf (err->msg, sizeof err->msg, "out of memory (or no random bytes) for an envelope");
    return -1;
}

static int
s_bar_event (s_events_t *e, const fks_bar_t *b, const char *source, msgpack_sbuffer *body,
             fks_pg_err_t *err)
{
    msgpack_sbuffer_clear (body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 10);
    fks_pack_kv_str (&pk, "symbol", b->symbol);
    fks_pack_kv_str (&pk, "interval", b->interval);
    fks_pack_kv_i64 (&pk, "open_time", b->open_time);
    fks_pack_kv_f64 (&pk, "open", b->open);
    fks_pack_kv_f64 (&pk, "high", b->high);
    fks_pack_kv_f64 (&pk, "low", b->low);
    fks_pack_kv_f64 (&pk, "close", b->close);
    fks_pack_kv_f64 (&pk, "volume", b->volume);
    fks_pack_kv_str (&pk, "source", source);
    fks_pack_kv_bool (&pk, "closed", b->closed);
    return s_event (e, "market.bar", body, err);
}

static int
s_quality_event (s_events_t *e, const fks_quality_finding_t *f, msgpack_sbuffer *body,
                 fks_pg_err_t *err)
{
    msgpack_sbuffer_clear (body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, body, msgpack_sbuffer_write);
    size_t n = 4 + f->has_value + f->has_threshold;
    msgpack_pack_map (&pk, n);
    fks_pack_kv_str (&pk, "symbol", f->symbol);
    fks_pack_kv_str (&pk, "interval", f->interval);
    fks_pack_kv_str (&pk, "kind", fks_quality_kind_name (f->kind));
    if (f->has_value)
        fks_pack_kv_f64 (&pk, "value", isfinite (f->value) ? f->value : 0);
    if (f->has_threshold)
        fks_pack_kv_f64 (&pk, "threshold", isfinite (f->threshold) ? f->threshold : 0);
    fks_pack_kv_str (&pk, "detail", f->detail);
    return s_event (e, "data.quality", body, err);
}

//  --------------------------------------------------------------------------
//  The transaction

//  A gap or an outlier belongs to the bar after the gap or with the jump. When that bar was
//  stored before with the same values, the finding was reported then: a re-read (a replay run
//  again, a feed restarted over its lookback) does not report it twice.
static bool
s_repeated (const fks_quality_finding_t *f, const fks_bar_t *const *u, size_t n,
            const bool *changed)
{
    if (f->kind != FKS_QUALITY_GAP && f->kind != FKS_QUALITY_OUTLIER)
        return false;
    //  u is sorted by symbol, interval and time (one bar per key): a binary search.
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp (u[mid]->symbol, f->symbol);
        if (!c)
            c = strcmp (u[mid]->interval, f->interval);
        if (!c)
            c = u[mid]->open_time < f->open_time ? -1 : u[mid]->open_time > f->open_time;
        if (!c)
            return !changed[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static void
s_oom (fks_pg_err_t *err)
{
    memset (err, 0, sizeof *err);
    snprintf (err->msg, sizeof err->msg, "out of memory");
}

//  Upserts the unique bars; changed[i] tells whether u[i] was inserted or changed.
static int
s_upsert (fks_pg_t *pg, const char *source, const fks_bar_t *const *u, size_t n, bool *changed,
          fks_pg_err_t *err)
{
    fks_sbuf_t a[8];
    for (int k = 0; k < 8; k++) {
        fks_sbuf_init (&a[k], 0);
        fks_sbuf_puts (&a[k], "{");
    }
    for (size_t i = 0; i < n; i++) {
        const fks_bar_t *b = u[i];
        const char *sep = i ? "," : "";
        for (int k = 0; k < 8; k++)
            fks_sbuf_puts (&a[k], sep);
        fks_sbuf_puts (&a[0], b->symbol);      //  [A-Z0-9.]: no quoting needed
        fks_sbuf_puts (&a[1], b->interval);    //  digits and a unit letter
        char t[24];
        snprintf (t, sizeof t, "%" PRId64, b->open_time);
        fks_sbuf_puts (&a[2], t);
        s_num (&a[3], b->open);
        s_num (&a[4], b->high);
        s_num (&a[5], b->low);
        s_num (&a[6], b->close);
        s_num (&a[7], b->volume);
    }
    bool failed = false;
    for (int k = 0; k < 8; k++) {
        fks_sbuf_puts (&a[k], "}");
        failed |= a[k].failed;
    }
    int rc = -1;
    s_key_t *keys = NULL;
    PGresult *r = NULL;
    if (failed) {
        s_oom (err);
        goto done;
    }
    const char *values[9] = { source, a[0].data, a[1].data, a[2].data, a[3].data, a[4].data,
                              a[5].data, a[6].data, a[7].data };
    r = fks_pg_exec (pg, "fks_ingest_bars", 9, values, NULL, NULL, err);
    if (!r)
        goto done;
    size_t rows = (size_t) PQntuples (r);
    keys = malloc ((rows ? rows : 1) * sizeof *keys);
    if (!keys) {
        s_oom (err);
        goto done;
    }
    for (size_t i = 0; i < rows; i++) {
        keys[i].symbol = PQgetvalue (r, (int) i, 0);
        keys[i].interval = PQgetvalue (r, (int) i, 1);
        keys[i].t = strtoll (PQgetvalue (r, (int) i, 2), NULL, 10);
        keys[i].index = 0;
    }
    qsort (keys, rows, sizeof *keys, s_key_cmp);
    for (size_t i = 0; i < n; i++) {
        s_key_t k = { u[i]->symbol, u[i]->interval, u[i]->open_time, 0 };
        changed[i] = bsearch (&k, keys, rows, sizeof *keys, s_key_cmp) != NULL;
    }
    rc = 0;
done:
    free (keys);
    PQclear (r);
    for (int k = 0; k < 8; k++)
        free (a[k].data);
    return rc;
}

static int
s_insert_events (fks_pg_t *pg, const s_events_t *e, fks_pg_err_t *err)
{
    if (e->n == 0)
        return 0;
    fks_sbuf_t a[4];
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 4; k++) {
        fks_sbuf_init (&a[k], 0);
        fks_sbuf_puts (&a[k], "{");
    }
    for (size_t i = 0; i < e->n; i++) {
        const s_event_t *ev = &e->v[i];
        const char *sep = i ? "," : "";
        for (int k = 0; k < 4; k++)
            fks_sbuf_puts (&a[k], sep);
        char id[FKS_ID_STR_SIZE], ns[24];
        fks_id_format (&ev->id, id);
        fks_sbuf_puts (&a[0], id);
        fks_sbuf_puts (&a[1], ev->type);
        snprintf (ns, sizeof ns, "%" PRId64, ev->ns);
        fks_sbuf_puts (&a[2], ns);
        char chunk[512];
        size_t c = 0;
        for (size_t j = 0; j < ev->env.size; j++) {
            unsigned char byte = (unsigned char) ev->env.data[j];
            chunk[c++] = hex[byte >> 4];
            chunk[c++] = hex[byte & 15];
            if (c == sizeof chunk) {
                fks_sbuf_put (&a[3], chunk, c);
                c = 0;
            }
        }
        fks_sbuf_put (&a[3], chunk, c);
    }
    bool failed = false;
    for (int k = 0; k < 4; k++) {
        fks_sbuf_puts (&a[k], "}");
        failed |= a[k].failed;
    }
    int rc = -1;
    if (failed)
        s_oom (err);
    else {
        const char *values[4] = { a[0].data, a[1].data, a[2].data, a[3].data };
        PGresult *r = fks_pg_exec (pg, "fks_ingest_events", 4, values, NULL, NULL, err);
        if (r) {
            PQclear (r);
            rc = 0;
        }
    }
    for (int k = 0; k < 4; k++)
        free (a[k].data);
    return rc;
}

//  Records the newest close of each symbol among u (sorted by key) in Redis.
static void
s_prices (fks_redis_t *redis, const fks_bar_t *const *u, size_t n, int64_t now_ms,
          fks_ingest_stats_t *st)
{
    for (size_t i = 0; i < n; i++) {
        //  u is sorted by symbol, interval, time: take the newest bar of each symbol.
        const fks_bar_t *b = u[i];
        bool last_of_symbol = i + 1 == n || strcmp (u[i + 1]->symbol, b->symbol) != 0;
        if (!last_of_symbol)
            continue;
        const fks_bar_t *newest = b;
        for (size_t j = i; j-- > 0 && !strcmp (u[j]->symbol, b->symbol);)
            if (u[j]->open_time > newest->open_time)
                newest = u[j];
        int64_t iv = 0;
        fks_interval_parse (newest->interval, &iv, NULL);
        int64_t ts = newest->closed ? newest->open_time + iv : now_ms;
        if (ts > now_ms)
            ts = now_ms;
        fks_redis_err_t rerr;
        if (fks_price_set (redis, newest->symbol, newest->close, ts, &rerr) == 0)
            st->prices++;
        else {
            st->price_failed++;
            fks_log (FKS_LOG_WARN, NULL, NULL, "latest price of %s not recorded: %s",
                     newest->symbol, rerr.msg);
        }
    }
}

int
fks_ingest (fks_pg_t *pg, fks_redis_t *redis, fks_bus_client_t *bus, const char *source,
            const fks_bars_t *bars, const fks_quality_finding_t *findings, size_t n_findings,
            int64_t now_ms, fks_ingest_stats_t *stats, fks_pg_err_t *err)
{
    fks_ingest_stats_t local;
    if (!stats) {
        memset (&local, 0, sizeof local);
        stats = &local;
    }
    size_t n = bars ? bars->n : 0;
    if (n == 0 && n_findings == 0)
        return 0;
    int rc = -1;
    s_key_t *keys = calloc (n ? n : 1, sizeof *keys);
    const fks_bar_t **u = calloc (n ? n : 1, sizeof *u);
    bool *changed = calloc (n ? n : 1, sizeof *changed);
    s_events_t events = { 0 };
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    bool in_tx = false;
    if (!keys || !u || !changed) {
        s_oom (err);
        goto done;
    }
    //  One bar per key, the last given winning (ON CONFLICT may touch a row once).
    for (size_t i = 0; i < n; i++)
        keys[i] = (s_key_t) { bars->v[i].symbol, bars->v[i].interval, bars->v[i].open_time, i };
    qsort (keys, n, sizeof *keys, s_key_cmp);
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if (i + 1 == n || !s_key_eq (&keys[i], &keys[i + 1]))
            u[nu++] = &bars->v[keys[i].index];

    if (fks_pg_begin (pg, err) != 0)
        goto done;
    in_tx = true;
    if (nu && s_upsert (pg, source, u, nu, changed, err) != 0)
        goto done;
    //  market.bar in time order, then the findings.
    const fks_bar_t **ordered = NULL;
    size_t n_changed = 0;
    for (size_t i = 0; i < nu; i++)
        n_changed += changed[i];
    if (n_changed) {
        ordered = malloc (n_changed * sizeof *ordered);
        if (!ordered) {
            s_oom (err);
            goto done;
        }
        size_t k = 0;
        for (size_t i = 0; i < nu; i++)
            if (changed[i])
                ordered[k++] = u[i];
        //  u is sorted by symbol first; a stable pass by time keeps each series in order.
        for (size_t i = 1; i < k; i++) {
            const fks_bar_t *b = ordered[i];
            size_t j = i;
            while (j > 0 && ordered[j - 1]->open_time > b->open_time) {
                ordered[j] = ordered[j - 1];
                j--;
            }
            ordered[j] = b;
        }
        for (size_t i = 0; i < k; i++)
            if (s_bar_event (&events, ordered[i], source, &body, err) != 0) {
                free (ordered);
                goto done;
            }
        free (ordered);
    }
    for (size_t i = 0; i < n_findings; i++) {
        if (s_repeated (&findings[i], u, nu, changed)) {
            stats->repeated++;
            continue;
        }
        if (s_quality_event (&events, &findings[i], &body, err) != 0)
            goto done;
    }
    if (s_insert_events (pg, &events, err) != 0)
        goto done;
    if (fks_pg_commit (pg, err) != 0)
        goto done;
    in_tx = false;
    stats->stored += n_changed;
    stats->unchanged += nu - n_changed;
    stats->events += events.n;
    rc = 0;

    //  After COMMIT: publish, then the prices. Neither can undo the batch.
    for (size_t i = 0; bus && i < events.n; i++) {
        if (fks_bus_publish (bus, events.v[i].type, events.v[i].env.data,
                             events.v[i].env.size) == 0)
            stats->published++;
        else {
            stats->publish_failed += events.n - i;
            break;
        }
    }
    if (redis)
        s_prices (redis, u, nu, now_ms, stats);
done:
    if (in_tx)
        fks_pg_rollback (pg);
    s_events_free (&events);
    msgpack_sbuffer_destroy (&body);
    free (keys);
    free (u);
    free (changed);
    return rc;
}

int
fks_ingest_newest (fks_pg_t *pg, const char *symbol, const char *interval, fks_bars_t *out,
                   fks_pg_err_t *err)
{
    const char *values[2] = { symbol, interval };
    PGresult *r = fks_pg_exec (pg, "fks_ingest_newest", 2, values, NULL, NULL, err);
    if (!r)
        return -1;
    int rc = 0;
    //  Newest first from the index; handed out oldest first, like every list of bars.
    for (int i = PQntuples (r) - 1; i >= 0 && rc == 0; i--) {
        fks_bar_t bar;
        memset (&bar, 0, sizeof bar);
        snprintf (bar.symbol, sizeof bar.symbol, "%s", symbol);
        snprintf (bar.interval, sizeof bar.interval, "%s", interval);
        bar.open_time = strtoll (PQgetvalue (r, i, 0), NULL, 10);
        double *v[5] = { &bar.open, &bar.high, &bar.low, &bar.close, &bar.volume };
        for (int k = 0; k < 5; k++)
            *v[k] = strtod (PQgetvalue (r, i, k + 1), NULL);
        bar.closed = true;
        if (fks_bars_push (out, &bar) != 0) {
            memset (err, 0, sizeof *err);
            snprintf (err->msg, sizeof err->msg, "out of memory");
            rc = -1;
        }
    }
    PQclear (r);
    return rc;
}
