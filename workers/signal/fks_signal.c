/*  fks_signal.c - fks-signal, the signal worker: accepted alerts become signals.
 *
 *  Consumes webhook.received (consumer group "signal"). For each alert, inside the runtime's
 *  transaction (workers/runtime.h): read the body, normalise the symbol, look up the open
 *  position (positions) and, when the alert carries no price, the latest price (Redis), and
 *  let normalize.c decide. Then:
 *
 *    - a signal: INSERT into signals (one per alert: UNIQUE inbox_id), the alert's status
 *      becomes `signalled`, and signal.created is emitted;
 *    - a cancel: the open orders of the symbol each get an order.cancel_requested, which the
 *      execution worker carries out;
 *    - nothing to trade: the signal is stored as `filtered` with the reason when the alert had
 *      a usable symbol and action, the alert's status becomes `filtered`, and signal.filtered
 *      carries the reason. A permanent failure (on_fail) is recorded the same way, with the
 *      alert `failed`.
 *
 *  The signal worker always emits signal.created; whether execution takes it directly or the
 *  ai worker scores it first (signal.scored) is the execution worker's FKS_EXECUTION_INPUT.
 *
 *  Configuration, besides the runtime's: FKS_SIGNAL_PORT (8002), FKS_SIGNAL_SIZING (none,
 *  fixed_quantity, fixed_notional, percent_of_equity) with FKS_SIGNAL_SIZE, FKS_SIGNAL_EQUITY
 *  (for percent sizes), FKS_SIGNAL_QTY_DECIMALS (8), FKS_SIGNAL_MAX_AGE (120s),
 *  FKS_SIGNAL_MAX_FUTURE (5s).
 */
#include "workers/runtime.h"
#include "common/prices.h"
#include "workers/signal/normalize.h"
#include "workers/qty.h"
#include "common/config.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CANCEL_MAX 100            /* open orders cancelled by one alert */
#define S_PENDING_MAX 256           /* newest signals of a symbol looked at as pending */
#define S_EARLIER_WINDOW_MS 5000    /* how far back alerts accepted before one are looked for */
#define S_EARLIER_MAX 256           /* ... at most this many of them, newest first */
#define S_EARLIER_WAIT_MS 5000      /* how long a decision is handed back for them, at most */
#define S_STR_(x) #x
#define S_STR(x) S_STR_ (x)

//  The inbox status only moves forward: accepted < signalled < scored < ordered < final.
#define S_RANK(x) "(CASE " x " WHEN 'accepted' THEN 1 WHEN 'signalled' THEN 2 " \
                  "WHEN 'scored' THEN 3 WHEN 'ordered' THEN 4 WHEN 'filled' THEN 6 ELSE 5 END)"

static const fks_pg_stmt_t s_stmts[] = {
    { "sig_position", "SELECT qty FROM positions WHERE symbol = $1", 1 },
    //  The positions of a batch's symbols at once (s_prefetch).
    { "sig_positions",
      "SELECT symbol, qty FROM positions WHERE symbol = ANY ($1::text[])", 1 },
    //  The position with the signals still on their way to execution (created or scored: the
    //  execution worker updates a signal's status in the transaction that fills it), oldest
    //  first, in one statement so that both are read from one snapshot. Bounded: the newest
    //  S_PENDING_MAX signals of the symbol within the reconciler's horizon (an hour).
    { "sig_expected",
      "SELECT (SELECT qty FROM positions WHERE symbol = $1), s.side, s.qty,"
      "       s.params->>'target_position', s.params->>'close_position',"
      "       s.params->>'position_share', s.params->>'reduce_only', s.params->>'qty_decimals'"
      "  FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
      "    SELECT * FROM (SELECT created_at, id, side, qty, params, status FROM signals"
      "                    WHERE symbol = $1 AND created_at > now () - interval '1 hour'"
      "                    ORDER BY created_at DESC, id DESC LIMIT " S_STR (S_PENDING_MAX) ") r"
      "     WHERE status IN ('created', 'scored')) s ON true"
      " ORDER BY s.created_at, s.id", 1 },
    //  The alerts the gateway accepted shortly before one (inbox ids are UUIDv7: time first)
    //  that no signal worker has handled yet, with their symbols as sent (s_earlier).
    { "sig_earlier",
      "SELECT id, alert->>'symbol' FROM inbox"
      " WHERE id > $1::uuid AND id < $2::uuid AND status = 'accepted'"
      " ORDER BY id DESC LIMIT " S_STR (S_EARLIER_MAX), 2 },
    { "sig_insert",
      "WITH ins AS ("
      "  INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty,"
      "                       quantity_type, order_type, price, limit_price, stop_loss,"
      "                       take_profit, strategy, interval, confidence, params, status,"
      "                       reason)"
      "  VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
      "          $17::jsonb, $18, $19)"
      "  ON CONFLICT (inbox_id) DO NOTHING RETURNING id),"
      " upd AS ("
      "  UPDATE inbox SET status = $20, updated_at = now()"
      "   WHERE id = $2 AND EXISTS (SELECT 1 FROM ins)"
      "     AND " S_RANK ("status") " < " S_RANK ("$20::text") ")"
      "SELECT id FROM ins", 20 },
    //  The same for every signal of a batch at once (workers/runtime.h, batch size), sent in
    //  the commit's round trip (fks_worker_defer): no ON CONFLICT, an alert that has a signal
    //  already fails the statement (23505) and the batch is handled message by message.
    { "sig_insert_many",
      "WITH v AS ("
      "  SELECT * FROM unnest ($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
      "                        $6::text[], $7::numeric[], $8::text[], $9::text[],"
      "                        $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[],"
      "                        $14::text[], $15::text[], $16::numeric[], $17::jsonb[],"
      "                        $18::text[], $19::text[], $20::text[])"
      "    AS t (id, inbox, source, symbol, action, side, qty, qtype, otype, price, lim, sl,"
      "          tp, strategy, intv, conf, params, status, reason, istatus)),"
      " ins AS ("
      "  INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty,"
      "                       quantity_type, order_type, price, limit_price, stop_loss,"
      "                       take_profit, strategy, interval, confidence, params, status,"
      "                       reason)"
      "  SELECT id, inbox, inbox, source, symbol, action, side, qty, qtype, otype, price, lim,"
      "         sl, tp, strategy, intv, conf, params, status, reason FROM v"
      "  RETURNING id),"
      " upd AS ("
      "  UPDATE inbox SET status = v.istatus, updated_at = now()"
      "    FROM v JOIN ins ON ins.id = v.id"
      "   WHERE inbox.id = v.inbox"
      "     AND " S_RANK ("inbox.status") " < " S_RANK ("v.istatus") ")"
      "SELECT count(*) FROM ins", 20, FKS_PG_CUSTOM_PLAN },
    { "sig_inbox_status",
      "UPDATE inbox SET status = $2, updated_at = now()"
      " WHERE id = $1 AND " S_RANK ("status") " < " S_RANK ("$2::text"), 2 },
    //  A cancel takes the symbol's position lock, the one the execution worker holds while it
    //  orders the symbol's signals (workers/execution/execute.c, ex_position_lock): a limit
    //  signal is then either ordered before the cancel looks (its order is found) or finds
    //  itself closed when execution comes to it (ex_signals_closed). Two statements, so that
    //  the reads after the lock see what its holder committed.
    { "sig_position_lock",
      "SELECT pg_advisory_xact_lock (hashtextextended ('fks.position:' || $1, 0))", 1 },
    { "sig_open_orders",
      "SELECT id FROM orders WHERE symbol = $1"
      "   AND status IN ('new', 'submitted', 'partially_filled')"
      " ORDER BY created_at LIMIT " S_STR (S_CANCEL_MAX), 1 },
    //  The limit signals of the symbol still on their way to execution (the orders they will
    //  become), within the reconciler's horizon, locked against the ai worker's update.
    { "sig_pending_limits",
      "SELECT id FROM signals"
      " WHERE symbol = $1 AND status IN ('created', 'scored') AND order_type = 'limit'"
      "   AND action <> 'cancel' AND created_at > now () - interval '1 hour'"
      " ORDER BY created_at, id LIMIT " S_STR (S_CANCEL_MAX) " FOR UPDATE", 1 },
    //  One of them closed by the cancel (filtered, so execution never orders it), with its
    //  alert; returns its corr and alert.
    { "sig_close_pending",
      "WITH s AS (UPDATE signals SET status = 'filtered', reason = $2, updated_at = now ()"
      "            WHERE id = $1 AND status IN ('created', 'scored')"
      "            RETURNING corr, inbox_id),"
      " upd AS (UPDATE inbox SET status = 'filtered', updated_at = now ()"
      "          WHERE id = (SELECT inbox_id FROM s)"
      "            AND " S_RANK ("status") " < " S_RANK ("'filtered'") ")"
      "SELECT corr, inbox_id FROM s", 2 },
};

typedef struct {
    fks_signal_cfg_t cfg;
} s_signal_t;

#define S_CACHE_MAX 64

//  A handler thread's cache for one transaction (reset by s_begin): positions and latest
//  prices already read, so a batch of alerts on one symbol reads them once.
//  The position is the one decisions are made with: as read, then moved by each signal this
//  transaction creates (local), and, once a decision rests on it, recomputed from the position
//  and the signals not yet filled, read together (s_expected).
typedef struct {
    char symbol[FKS_SIGNAL_SYMBOL_MAX];
    double position;
    bool expected;                  /* the pending signals are counted in position */
    bool local_abs;                 /* a signal of this transaction set the position to ... */
    double local_base;              /* ... this (a target or a close), */
    double local_delta;             /* and the rest since then moved it by this much */
    bool has_price;
    bool price_read;
    double price;
} s_seen_t;

//  A signal row waiting for the batch's single insert (s_flush).
typedef struct {
    fks_id_t id;
    fks_signal_alert_t a;
    fks_signal_decision_t d;
    const char *status;             /* static strings */
    const char *inbox_status;
} s_pending_t;

typedef struct {
    s_seen_t seen[S_CACHE_MAX];
    size_t n;
    fks_worker_array_t arr;         /* the prefetched symbols as an array literal, */
    const char *list;               /* ... which is this */
    s_pending_t *pending;
    size_t n_pending, cap_pending;
    fks_worker_array_t col[20];     /* sig_insert_many's columns, deferred to the commit: */
    const char *values[20];         /* they live until the next flush */
    fks_pg_call_t call;
} s_thread_t;

static void *
s_thread_init (fks_pg_t *pg, fks_redis_t *redis, void *arg)
{
    (void) pg;
    (void) redis;
    (void) arg;
    return calloc (1, sizeof (s_thread_t));
}

static void
s_thread_fini (void *state, void *arg)
{
    (void) arg;
    s_thread_t *st = state;
    if (st) {
        free (st->pending);
        fks_worker_array_free (&st->arr);
        for (int k = 0; k < 20; k++)
            fks_worker_array_free (&st->col[k]);
    }
    free (st);
}

//  Prefetch hook: the positions of the batch's symbols, read in the round trip that opens the
//  transaction, into the cache s_seen reads from, instead of one read per symbol as the
//  handler meets them. An alert that does not parse is skipped here (its handler records
//  why); a symbol left out (the cache is full) is read by s_seen as before.
static size_t
s_prefetch (fks_worker_tx_t *tx, fks_pg_call_t *calls, size_t max, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st || max < 1)
        return 0;
    st->n = 0;
    size_t n = fks_worker_batch_size (tx);
    if (n <= 1)
        return 0;
    fks_worker_array_reset (&st->arr);
    for (size_t i = 0; i < n && st->n < S_CACHE_MAX; i++) {
        const fks_envelope_t *env = fks_worker_batch_env (tx, i);
        fks_signal_alert_t a;
        char symbol[FKS_SIGNAL_SYMBOL_MAX], why[256];
        if (strcmp (fks_envelope_hdr (env)->type, "webhook.received") != 0
            || fks_signal_alert_read (env, &a, why, sizeof why) != 0
            || fks_symbol_normalize (a.symbol, symbol, why, sizeof why) != 0)
            continue;
        bool known = false;
        for (size_t j = 0; j < st->n && !known; j++)
            known = strcmp (st->seen[j].symbol, symbol) == 0;
        if (known)
            continue;
        s_seen_t *e = &st->seen[st->n++];
        memset (e, 0, sizeof *e);
        snprintf (e->symbol, sizeof e->symbol, "%s", symbol);
        fks_worker_array_add (&st->arr, symbol);
    }
    if (st->n == 0 || !(st->list = fks_worker_array_end (&st->arr))) {
        st->n = 0;
        return 0;
    }
    calls[0] = (fks_pg_call_t) { "sig_positions", 1, &st->list, NULL, NULL };
    return 1;
}

static int
s_begin (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st)
        return FKS_WORKER_OK;
    st->n_pending = 0;
    //  The positions s_prefetch read with BEGIN; without them the cache starts empty (a
    //  single message, or a transaction that was not prefetched).
    const PGresult *r = fks_worker_prefetched (tx, 0);
    if (!r) {
        st->n = 0;
        return FKS_WORKER_OK;
    }
    for (int j = 0; j < PQntuples (r); j++)
        for (size_t i = 0; i < st->n; i++)
            if (strcmp (st->seen[i].symbol, PQgetvalue (r, j, 0)) == 0)
                st->seen[i].position = fks_worker_parse_num (PQgetvalue (r, j, 1), 0);
    return FKS_WORKER_OK;
}

//  The symbol's cache entry, reading the position the first time. NULL with *rc set.
static s_seen_t *
s_seen (fks_worker_tx_t *tx, const char *symbol, int *rc)
{
    s_thread_t *st = fks_worker_state (tx);
    if (st)
        for (size_t i = 0; i < st->n; i++)
            if (strcmp (st->seen[i].symbol, symbol) == 0)
                return &st->seen[i];
    static __thread s_seen_t spare;     /* when the cache is full or missing */
    s_seen_t *e = st && st->n < S_CACHE_MAX ? &st->seen[st->n] : &spare;
    memset (e, 0, sizeof *e);
    snprintf (e->symbol, sizeof e->symbol, "%s", symbol);
    fks_pg_err_t err;
    const char *values[1] = { symbol };
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_position", 1, values, NULL, NULL, &err);
    if (!r) {
        *rc = fks_worker_pg_error (tx, &err, "reading the position");
        return NULL;
    }
    if (PQntuples (r) == 1)
        e->position = fks_worker_parse_num (PQgetvalue (r, 0, 0), 0);
    PQclear (r);
    if (st && e == &st->seen[st->n])
        st->n++;
    return e;
}

//  Counts the symbol's signals not yet filled in e->position (once per transaction), so that
//  an exit right behind an entry closes it instead of finding nothing to close.
static int
s_expected (fks_worker_tx_t *tx, s_seen_t *e, int decimals)
{
    fks_pg_err_t err;
    const char *values[1] = { e->symbol };
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_expected", 1, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "reading the signals not yet filled");
    double pos = 0;
    for (int i = 0; i < PQntuples (r); i++) {
        if (i == 0 && !PQgetisnull (r, 0, 0))
            pos = fks_worker_parse_num (PQgetvalue (r, 0, 0), 0);
        if (PQgetisnull (r, i, 1))
            continue;               /* no pending signal: the LEFT JOIN's empty row */
        fks_signal_decision_t d = { .kind = FKS_SIGNAL_CREATE };
        snprintf (d.side, sizeof d.side, "%s", PQgetvalue (r, i, 1));
        d.qty = fks_worker_parse_num (PQgetvalue (r, i, 2), 0);
        d.has_target = !PQgetisnull (r, i, 3);
        d.target = d.has_target ? fks_worker_parse_num (PQgetvalue (r, i, 3), 0) : 0;
        d.close_position = !strcmp (PQgetvalue (r, i, 4), "true");
        //  A share of the position: of the position as the signals before it leave it, as the
        //  execution worker will take it.
        d.has_position_share = !PQgetisnull (r, i, 5);
        d.position_share = d.has_position_share ? fks_worker_parse_num (PQgetvalue (r, i, 5), 0)
                                                : 0;
        d.reduce_only = !strcmp (PQgetvalue (r, i, 6), "true");
        double dec = PQgetisnull (r, i, 7) ? -1 : fks_worker_parse_num (PQgetvalue (r, i, 7), -1);
        d.qty_decimals = dec >= 0 && dec <= FKS_QTY_DECIMALS_MAX ? (int) dec : decimals;
        pos = fks_signal_position_after (pos, &d);
    }
    PQclear (r);
    e->position = (e->local_abs ? e->local_base : pos) + e->local_delta;
    e->expected = true;
    return FKS_WORKER_OK;
}

//  *n: the alerts of symbol accepted up to S_EARLIER_WINDOW_MS before the alert inbox_id
//  and not handled yet by any signal worker (nor earlier in this transaction); *newest_ms when
//  the newest of them was accepted.
static int
s_earlier (fks_worker_tx_t *tx, const fks_id_t *inbox_id, const char *symbol, int *n,
           int64_t *newest_ms)
{
    *n = 0;
    *newest_ms = 0;
    int64_t ms = fks_id_ms (inbox_id);
    if (ms < 0)
        return FKS_WORKER_OK;       /* not a UUIDv7: no time in it */
    fks_id_t floor;
    fks_id_floor (ms - S_EARLIER_WINDOW_MS, &floor);
    char lo[FKS_ID_STR_SIZE], hi[FKS_ID_STR_SIZE];
    fks_id_format (&floor, lo);
    fks_id_format (inbox_id, hi);
    const char *values[2] = { lo, hi };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_earlier", 2, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "looking for alerts accepted before");
    for (int i = 0; i < PQntuples (r); i++) {
        char norm[FKS_SYMBOL_MAX];
        fks_id_t id;
        const char *text = PQgetvalue (r, i, 0);
        if (!PQgetisnull (r, i, 1)
            && fks_symbol_normalize (PQgetvalue (r, i, 1), norm, NULL, 0) == 0
            && strcmp (norm, symbol) == 0
            && fks_id_parse (text, strlen (text), &id) == 0
            && !fks_worker_batch_has_id (tx, "inbox_id", &id)) {
            (*n)++;
            if (fks_id_ms (&id) > *newest_ms)
                *newest_ms = fks_id_ms (&id);
        }
    }
    PQclear (r);
    return FKS_WORKER_OK;
}

//  A decision that rests on the position and found nothing to do (nothing to close, to add
//  to, a share of nothing) may have come too early: with several signal replicas, the alert
//  accepted just before this one (the entry this exit closes) can be in another replica's
//  hands, its signal not committed yet, so not among the pending ones s_expected reads; or
//  queued behind this one. While such an alert of the symbol is not handled, for up to
//  S_EARLIER_WAIT_MS of this replica handing it back (a backlog makes every alert old, so
//  not its age), and beyond that while the alert is young enough that, had the bus lost its
//  message (fks-bus restarted), the reconciler is still to publish it again
//  (fks_worker_keep_waiting), it is handed back for later (FKS_WORKER_LATER: behind what
//  is queued here; when it comes again the entry's signal is pending, or filled, and the
//  decision is made again). Rare by construction: only a decision about to be filtered pays
//  for the look. FKS_WORKER_OK (decide now) or FKS_WORKER_LATER.
static int
s_wait_earlier (fks_worker_tx_t *tx, const fks_signal_alert_t *a, const s_seen_t *seen)
{
    int n;
    int64_t newest;
    int rc = s_earlier (tx, &a->inbox_id, seen->symbol, &n, &newest);
    if (rc != FKS_WORKER_OK || n == 0 || !fks_worker_keep_waiting (tx, S_EARLIER_WAIT_MS,
                                                                   newest))
        return rc;
    return fks_worker_later (tx, "%d alert%s of %s accepted before this one not handled yet",
                             n, n == 1 ? "" : "s", seen->symbol);
}

//  A signal of this transaction moves the position the next decisions see.
static void
s_seen_created (s_seen_t *e, const fks_signal_decision_t *d)
{
    double after = fks_signal_position_after (e->position, d);
    if (d->has_target || d->close_position) {
        e->local_abs = true;
        e->local_base = after;
        e->local_delta = 0;
    }
    else
        e->local_delta += after - e->position;
    e->position = after;
}


//  --------------------------------------------------------------------------
//  Writing

typedef struct {
    fks_id_t id;                    /* the signal's id, when a row was written */
    bool stored;
} s_row_t;

//  The parameters of one signals row, formatted into b.
typedef struct {
    char id[FKS_ID_STR_SIZE], inbox[FKS_ID_STR_SIZE];
    char qty[48], price[48], limit[48], sl[48], tp[48], conf[48];
    char params[512], exch[160];
    const char *v[20];
} s_values_t;

static void
s_values (s_values_t *b, const fks_id_t *id, const fks_signal_alert_t *a,
          const fks_signal_decision_t *d, const char *status, const char *inbox_status)
{
    fks_json_escape (b->exch, sizeof b->exch, a->exchange, strlen (a->exchange));
    int n = snprintf (b->params, sizeof b->params, "{\"reduce_only\":%s",
                      d->reduce_only ? "true" : "false");
    if (d->has_target)
        n += snprintf (b->params + n, sizeof b->params - (size_t) n,
                       ",\"target_position\":%.15g", d->target);
    if (d->close_position)
        n += snprintf (b->params + n, sizeof b->params - (size_t) n, ",\"close_position\":true");
    if (d->has_open_qty)
        n += snprintf (b->params + n, sizeof b->params - (size_t) n, ",\"open_qty\":%.15g",
                       d->open_qty);
    if (d->has_position_share)
        n += snprintf (b->params + n, sizeof b->params - (size_t) n,
                       ",\"position_share\":%.15g,\"qty_decimals\":%d", d->position_share,
                       d->qty_decimals);
    if (a->exchange[0])
        n += snprintf (b->params + n, sizeof b->params - (size_t) n, ",\"exchange\":\"%s\"",
                       b->exch);
    snprintf (b->params + n, sizeof b->params - (size_t) n, "}");
    bool created = d->kind == FKS_SIGNAL_CREATE;
    const char *v[20] = {
        fks_worker_uuid (b->id, id),
        fks_worker_uuid (b->inbox, &a->inbox_id),
        a->source,
        d->symbol,
        d->action,
        d->side[0] ? d->side : NULL,
        created ? fks_worker_num (b->qty, d->qty) : NULL,
        a->quantity_type[0] ? a->quantity_type : "fixed_quantity",
        d->order_type,
        d->has_price ? fks_worker_num (b->price, d->price) : NULL,
        d->has_limit_price ? fks_worker_num (b->limit, d->limit_price) : NULL,
        d->has_stop_loss ? fks_worker_num (b->sl, d->stop_loss) : NULL,
        d->has_take_profit ? fks_worker_num (b->tp, d->take_profit) : NULL,
        a->strategy[0] ? a->strategy : NULL,
        a->interval[0] ? a->interval : NULL,
        a->has_confidence ? fks_worker_num (b->conf, a->confidence) : NULL,
        b->params,
        status,
        d->reason,
        inbox_status,
    };
    memcpy (b->v, v, sizeof v);
}

//  Writes the signals row for decision d (status `created` or `filtered`) and moves the
//  alert's status to inbox_status. Returns FKS_WORKER_OK with row->stored false when the
//  alert already had a signal (then nothing else must happen). In a batch the row waits for
//  s_flush, which writes all of them at once.
static int
s_store (fks_worker_tx_t *tx, const fks_signal_alert_t *a, const fks_signal_decision_t *d,
         const char *status, const char *inbox_status, s_row_t *row)
{
    row->stored = false;
    if (fks_id_new (&row->id) != 0)
        return fks_worker_retry (tx, "no random bytes for an id");
    s_thread_t *st = fks_worker_state (tx);
    if (st && fks_worker_batch_size (tx) > 1) {
        if (st->n_pending == st->cap_pending) {
            size_t cap = st->cap_pending ? st->cap_pending * 2 : 64;
            s_pending_t *p = realloc (st->pending, cap * sizeof *p);
            if (!p)
                return fks_worker_retry (tx, "out of memory");
            st->pending = p;
            st->cap_pending = cap;
        }
        st->pending[st->n_pending++] = (s_pending_t) { row->id, *a, *d, status, inbox_status };
        row->stored = true;
        return FKS_WORKER_OK;
    }
    s_values_t b;
    s_values (&b, &row->id, a, d, status, inbox_status);
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_insert", 20, b.v, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "inserting the signal");
    row->stored = PQntuples (r) == 1;
    PQclear (r);
    return FKS_WORKER_OK;
}

//  The batch's signals in one statement, which travels in the commit's round trip. If one of
//  them existed already the statement fails, and the batch is handled again message by
//  message, where that one is found and skipped.
static int
s_flush (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st || st->n_pending == 0)
        return FKS_WORKER_OK;
    for (int k = 0; k < 20; k++)
        fks_worker_array_reset (&st->col[k]);       /* the previous transaction's */
    for (size_t i = 0; i < st->n_pending; i++) {
        s_pending_t *p = &st->pending[i];
        s_values_t b;
        s_values (&b, &p->id, &p->a, &p->d, p->status, p->inbox_status);
        for (int k = 0; k < 20; k++)
            fks_worker_array_add (&st->col[k], b.v[k]);
    }
    st->n_pending = 0;
    bool ok = true;
    for (int k = 0; k < 20; k++)
        ok &= (st->values[k] = fks_worker_array_end (&st->col[k])) != NULL;
    if (!ok)
        return fks_worker_retry (tx, "out of memory");
    st->call = (fks_pg_call_t) { "sig_insert_many", 20, st->values, NULL, NULL };
    return fks_worker_defer (tx, &st->call);
}

static int
s_inbox_status (fks_worker_tx_t *tx, const fks_id_t *inbox_id, const char *status)
{
    char inbox[FKS_ID_STR_SIZE];
    const char *values[2] = { fks_worker_uuid (inbox, inbox_id), status };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_inbox_status", 2, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "updating the alert's status");
    PQclear (r);
    return FKS_WORKER_OK;
}

//  signal.filtered, with the signal when one was stored; under corr (NULL: the message's).
static int
s_emit_filtered (fks_worker_tx_t *tx, const fks_id_t *corr, const fks_id_t *inbox_id,
                 const fks_id_t *signal_id, const char *symbol, const char *reason)
{
    msgpack_packer *pk = fks_worker_body (tx);
    int n = 2 + (inbox_id ? 1 : 0) + (signal_id ? 1 : 0) + (symbol && *symbol ? 1 : 0);
    msgpack_pack_map (pk, (size_t) n);
    if (signal_id)
        fks_pack_kv_id (pk, "signal_id", signal_id);
    if (inbox_id)
        fks_pack_kv_id (pk, "inbox_id", inbox_id);
    if (symbol && *symbol)
        fks_pack_kv_str (pk, "symbol", symbol);
    fks_pack_kv_str (pk, "stage", "signal");
    fks_pack_kv_str (pk, "reason", reason);
    return fks_worker_emit (tx, "signal.filtered", corr, NULL);
}

static int
s_emit_created (fks_worker_tx_t *tx, const fks_signal_alert_t *a, const fks_signal_decision_t *d,
                const fks_id_t *signal_id)
{
    msgpack_packer *pk = fks_worker_body (tx);
    size_t n = 8 + d->has_limit_price + d->has_price + d->has_stop_loss + d->has_take_profit
             + (a->strategy[0] != 0) + a->has_confidence + d->close_position + d->has_open_qty
             + d->has_target + 2 * d->has_position_share;
    msgpack_pack_map (pk, n);
    fks_pack_kv_id (pk, "signal_id", signal_id);
    fks_pack_kv_id (pk, "inbox_id", &a->inbox_id);
    fks_pack_kv_str (pk, "symbol", d->symbol);
    fks_pack_kv_str (pk, "side", d->side);
    fks_pack_kv_f64 (pk, "qty", d->qty);
    fks_pack_kv_str (pk, "order_type", d->order_type);
    if (d->has_limit_price)
        fks_pack_kv_f64 (pk, "limit_price", d->limit_price);
    if (d->has_price)
        fks_pack_kv_f64 (pk, "price", d->price);
    if (d->has_stop_loss)
        fks_pack_kv_f64 (pk, "stop_loss", d->stop_loss);
    if (d->has_take_profit)
        fks_pack_kv_f64 (pk, "take_profit", d->take_profit);
    if (a->strategy[0])
        fks_pack_kv_str (pk, "strategy", a->strategy);
    if (a->has_confidence)
        fks_pack_kv_f64 (pk, "confidence", a->confidence);
    fks_pack_kv_bool (pk, "reduce_only", d->reduce_only);
    if (d->close_position)
        fks_pack_kv_bool (pk, "close_position", true);
    if (d->has_open_qty)
        fks_pack_kv_f64 (pk, "open_qty", d->open_qty);
    if (d->has_target)
        fks_pack_kv_f64 (pk, "target", d->target);
    if (d->has_position_share) {
        fks_pack_kv_f64 (pk, "position_share", d->position_share);
        fks_pack_kv_i64 (pk, "qty_decimals", d->qty_decimals);
    }
    fks_pack_kv_str (pk, "reason", d->reason);
    return fks_worker_emit (tx, "signal.created", NULL, NULL);
}

//  Filtered: the signal row when the alert had a usable symbol and action, the status, the
//  event.
static int
s_filtered (fks_worker_tx_t *tx, const fks_signal_alert_t *a, const fks_signal_decision_t *d,
            const char *inbox_status)
{
    s_row_t row = { .stored = false };
    if (d->symbol[0] && d->action[0]) {
        int rc = s_store (tx, a, d, "filtered", inbox_status, &row);
        if (rc != FKS_WORKER_OK)
            return rc;
        if (!row.stored)
            return FKS_WORKER_OK;           /* this alert already has its signal */
    }
    else {
        int rc = s_inbox_status (tx, &a->inbox_id, inbox_status);
        if (rc != FKS_WORKER_OK)
            return rc;
    }
    fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "alert filtered: %s", d->reason);
    return s_emit_filtered (tx, NULL, &a->inbox_id, row.stored ? &row.id : NULL,
                            d->symbol[0] ? d->symbol : a->symbol, d->reason);
}

//  The ids in the first column of r, at most S_CANCEL_MAX.
static int
s_ids (const PGresult *r, fks_id_t *ids)
{
    int n = 0;
    for (int i = 0; i < PQntuples (r) && n < S_CANCEL_MAX; i++) {
        const char *text = PQgetvalue (r, i, 0);
        if (fks_id_parse (text, strlen (text), &ids[n]) == 0)
            n++;
    }
    return n;
}

//  Closes a limit signal not yet ordered (filtered: execution skips it) and says so with
//  signal.filtered under its own alert's corr. FKS_WORKER_OK or the failure.
static int
s_close_pending (fks_worker_tx_t *tx, const fks_id_t *sid, const fks_signal_alert_t *a,
                 const char *symbol)
{
    char id[FKS_ID_STR_SIZE], by[FKS_ID_STR_SIZE], reason[160];
    fks_id_format (sid, id);
    fks_id_format (&a->inbox_id, by);
    snprintf (reason, sizeof reason, "cancelled by alert %s before it was ordered", by);
    const char *values[2] = { id, reason };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_close_pending", 2, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "closing a pending limit signal");
    int rc = FKS_WORKER_OK;
    fks_id_t corr, inbox;
    if (PQntuples (r) == 1) {
        const char *c = PQgetvalue (r, 0, 0);
        const char *in = PQgetvalue (r, 0, 1);
        bool has_inbox = !PQgetisnull (r, 0, 1)
                         && fks_id_parse (in, strlen (in), &inbox) == 0;
        if (fks_id_parse (c, strlen (c), &corr) == 0)
            rc = s_emit_filtered (tx, &corr, has_inbox ? &inbox : NULL, sid, symbol, reason);
    }
    PQclear (r);
    return rc;
}

//  A cancel: the symbol's open orders each get an order.cancel_requested, and its limit
//  signals not yet ordered are closed, under the symbol's position lock (sig_position_lock).
static int
s_cancel (fks_worker_tx_t *tx, const fks_signal_alert_t *a, fks_signal_decision_t *d)
{
    fks_pg_err_t err;
    const char *values[1] = { d->symbol };
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "sig_position_lock", 1, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "locking the symbol");
    PQclear (r);
    fks_id_t orders[S_CANCEL_MAX], pending[S_CANCEL_MAX];
    if (!(r = fks_pg_exec (fks_worker_pg (tx), "sig_open_orders", 1, values, NULL, NULL, &err)))
        return fks_worker_pg_error (tx, &err, "finding open orders");
    int n_orders = s_ids (r, orders);
    PQclear (r);
    if (!(r = fks_pg_exec (fks_worker_pg (tx), "sig_pending_limits", 1, values, NULL, NULL,
                           &err)))
        return fks_worker_pg_error (tx, &err, "finding limit signals not yet ordered");
    int n_pending = s_ids (r, pending);
    PQclear (r);
    if (n_orders == 0 && n_pending == 0) {
        d->kind = FKS_SIGNAL_FILTER;
        snprintf (d->reason, sizeof d->reason, "nothing to cancel: no open orders in %s",
                  d->symbol);
        return s_filtered (tx, a, d, "filtered");
    }
    if (n_pending == 0)
        snprintf (d->reason, sizeof d->reason, "cancel %d open order%s of %s", n_orders,
                  n_orders == 1 ? "" : "s", d->symbol);
    else
        snprintf (d->reason, sizeof d->reason, "cancel %d open order%s and %d limit signal%s "
                  "not yet ordered of %s", n_orders, n_orders == 1 ? "" : "s", n_pending,
                  n_pending == 1 ? "" : "s", d->symbol);
    s_row_t row;
    int rc = s_store (tx, a, d, "created", "signalled", &row);
    if (rc != FKS_WORKER_OK || !row.stored)
        return rc;                          /* !stored: this alert was handled already */
    for (int i = 0; rc == FKS_WORKER_OK && i < n_pending; i++)
        rc = s_close_pending (tx, &pending[i], a, d->symbol);
    for (int i = 0; rc == FKS_WORKER_OK && i < n_orders; i++) {
        msgpack_packer *pk = fks_worker_body (tx);
        msgpack_pack_map (pk, 2);
        fks_pack_kv_id (pk, "order_id", &orders[i]);
        fks_pack_kv_str (pk, "requested_by", "alert");
        rc = fks_worker_emit (tx, "order.cancel_requested", NULL, NULL);
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  The handler

static int
s_handle (fks_worker_tx_t *tx, const fks_envelope_t *env, void *arg)
{
    s_signal_t *self = arg;
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    if (strcmp (hdr->type, "webhook.received") != 0)
        return fks_worker_fail (tx, "unexpected message type %s", hdr->type);

    fks_signal_alert_t a;
    fks_signal_decision_t d;
    memset (&d, 0, sizeof d);
    char why[256];
    if (fks_signal_alert_read (env, &a, why, sizeof why) != 0) {
        if (fks_id_is_nil (&a.inbox_id))
            return fks_worker_fail (tx, "webhook.received without inbox_id");
        snprintf (d.reason, sizeof d.reason, "malformed alert: %s", why);
        return s_filtered (tx, &a, &d, "filtered");
    }
    if (fks_symbol_normalize (a.symbol, d.symbol, why, sizeof why) != 0) {
        snprintf (d.reason, sizeof d.reason, "malformed alert: %s", why);
        return s_filtered (tx, &a, &d, "filtered");
    }

    fks_signal_ctx_t ctx = {
        .now_ms = fks_now_ms (),
        .received_ms = hdr->ts / 1000000,
    };
    int rc = FKS_WORKER_OK;
    s_seen_t *seen = s_seen (tx, d.symbol, &rc);
    if (!seen)
        return rc;
    ctx.position = seen->position;
    if (!a.has_price && !a.has_limit_price && !a.has_signal_price) {
        if (!seen->price_read) {
            fks_redis_err_t rerr;
            int got = fks_price_get (fks_worker_redis (tx), d.symbol, &seen->price, NULL, &rerr);
            if (got < 0)
                return fks_worker_redis_error (tx, &rerr, "reading the latest price");
            seen->has_price = got == 0;
            seen->price_read = true;
        }
        ctx.has_last_price = seen->has_price;
        ctx.last_price = seen->price;
    }

    char symbol[FKS_SIGNAL_SYMBOL_MAX];
    snprintf (symbol, sizeof symbol, "%s", d.symbol);
    fks_signal_decide (&self->cfg, &a, symbol, &ctx, &d);
    if (d.position_matters && !seen->expected) {
        if ((rc = s_expected (tx, seen, self->cfg.sizing.qty_decimals)) != FKS_WORKER_OK)
            return rc;
        if (seen->position != ctx.position) {
            ctx.position = seen->position;
            fks_signal_decide (&self->cfg, &a, symbol, &ctx, &d);
        }
    }
    if (d.position_matters && d.kind == FKS_SIGNAL_FILTER
        && (rc = s_wait_earlier (tx, &a, seen)) != FKS_WORKER_OK)
        return rc;
    switch (d.kind) {
        case FKS_SIGNAL_FILTER:
            return s_filtered (tx, &a, &d, "filtered");
        case FKS_SIGNAL_CANCEL:
            return s_cancel (tx, &a, &d);
        case FKS_SIGNAL_CREATE:
            break;
    }
    s_row_t row;
    rc = s_store (tx, &a, &d, "created", "signalled", &row);
    if (rc != FKS_WORKER_OK || !row.stored)
        return rc;
    s_seen_created (seen, &d);
    fks_log (FKS_LOG_DEBUG, fks_worker_corr_text (tx), NULL, "signal: %s", d.reason);
    return s_emit_created (tx, &a, &d, &row.id);
}

//  A message that could not be handled: the alert is marked failed and signal.filtered says
//  why, so the user sees it in GET /api/v1/alerts/{id}.
static int
s_on_fail (fks_worker_tx_t *tx, const fks_envelope_t *env, const char *reason, void *arg)
{
    (void) arg;
    fks_id_t inbox_id;
    bool has_inbox = env && fks_envelope_get_id (env, "inbox_id", &inbox_id) == 0;
    char msg[FKS_SIGNAL_REASON_MAX];
    snprintf (msg, sizeof msg, "failed: %s", reason);
    if (has_inbox) {
        int rc = s_inbox_status (tx, &inbox_id, "failed");
        if (rc != FKS_WORKER_OK)
            return rc;
    }
    char symbol[65] = "";
    if (env && fks_envelope_get_str (env, "symbol", symbol, sizeof symbol) != 0)
        symbol[0] = '\0';
    return s_emit_filtered (tx, NULL, has_inbox ? &inbox_id : NULL, NULL, symbol, msg);
}


//  --------------------------------------------------------------------------
//  Configuration and main

static int
s_config (fks_signal_cfg_t *c)
{
    fks_config_err_t e;
    char *rule = NULL;
    int64_t dec;
    memset (c, 0, sizeof *c);
    if (fks_config_str ("FKS_SIGNAL_SIZING", "none", &rule, &e) < 0)
        goto fail;
    if (fks_sizing_rule_parse (rule, &c->sizing.rule) != 0) {
        snprintf (e.msg, sizeof e.msg, "FKS_SIGNAL_SIZING: expected none, fixed_quantity, "
                  "fixed_notional or percent_of_equity, got '%.40s'", rule);
        goto fail;
    }
    if (fks_config_double ("FKS_SIGNAL_SIZE", 0, 0, 1e15, &c->sizing.value, &e) < 0
        || fks_config_double ("FKS_SIGNAL_EQUITY", 0, 0, 1e15, &c->sizing.equity, &e) < 0
        || fks_config_int ("FKS_SIGNAL_QTY_DECIMALS", 8, 0, 12, &dec, &e) < 0
        || fks_config_duration_ms ("FKS_SIGNAL_MAX_AGE", 120000, 1000, 7LL * 86400000,
                                   &c->max_age_ms, &e) < 0
        || fks_config_duration_ms ("FKS_SIGNAL_MAX_FUTURE", 5000, 0, 3600000,
                                   &c->max_future_ms, &e) < 0)
        goto fail;
    c->sizing.qty_decimals = (int) dec;
    if (c->sizing.rule != FKS_SIZING_NONE && !(c->sizing.value > 0)) {
        snprintf (e.msg, sizeof e.msg, "FKS_SIGNAL_SIZE must be greater than 0 with "
                  "FKS_SIGNAL_SIZING=%s", rule);
        goto fail;
    }
    if (c->sizing.rule == FKS_SIZING_PERCENT_EQUITY && !(c->sizing.equity > 0)) {
        snprintf (e.msg, sizeof e.msg, "FKS_SIGNAL_EQUITY must be greater than 0 with "
                  "FKS_SIGNAL_SIZING=percent_of_equity");
        goto fail;
    }
    free (rule);
    return 0;
fail:
    free (rule);
    fprintf (stderr, "fks-signal: %s\n", e.msg);
    return -1;
}

int
main (void)
{
    if (fks_log_init ("fks-signal") != 0)
        fks_log (FKS_LOG_WARN, NULL, NULL, "FKS_LOG_LEVEL not understood; logging at info");
    static s_signal_t self;
    if (s_config (&self.cfg) != 0)
        return 2;
    fks_log (FKS_LOG_INFO, NULL, NULL, "sizing rule %s %.10g, equity %.10g, %d decimals; "
             "alerts older than %lld ms are stale", fks_sizing_rule_name (self.cfg.sizing.rule),
             self.cfg.sizing.value, self.cfg.sizing.equity, self.cfg.sizing.qty_decimals,
             (long long) self.cfg.max_age_ms);
    static const char *prefixes[] = { "webhook.received" };
    fks_worker_def_t def = {
        .program = "fks-signal",
        .group = "signal",
        .src = "signal",
        .port_var = "FKS_SIGNAL_PORT",
        .default_port = 8002,
        .prefixes = prefixes,
        .n_prefixes = 1,
        .stmts = s_stmts,
        .n_stmts = sizeof s_stmts / sizeof s_stmts[0],
        .handler = s_handle,
        .on_fail = s_on_fail,
        .thread_init = s_thread_init,
        .thread_fini = s_thread_fini,
        .prefetch = s_prefetch,
        .begin = s_begin,
        .flush = s_flush,
        .route = fks_worker_route_symbol,   /* one symbol's alerts in the order they came */
        .arg = &self,
    };
    return fks_worker_main (&def);
}
