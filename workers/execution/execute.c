/*  execute.c - the execution worker's handlers: signals and manual orders to broker orders.
 *
 *  See execute.h for what each message does. The order of work inside a placement matters
 *  and is always the same: lock the position, check (risk, rate, breaker), ask the broker,
 *  apply its answer to the order and the position in memory (orders.c, positions.c), then
 *  write the order, its fills and the position, and emit the events in the order a user
 *  expects to see them: order.submitted, each fill, position.updated. A unique-key conflict on
 *  the order (the same signal, or the same client order id, seen again) means the work was
 *  done before: nothing is written and nothing is emitted.
 *
 *  Redis holds what replicas share and is not transactional: the orders-per-minute counter,
 *  the breaker, the latest prices. The first two are kept per client order id, so that a
 *  transaction that rolls back after touching them and is done again (the runtime redoes a
 *  failed batch message by message) counts nothing twice: the counter holds the minute's ids
 *  (s_opm_reserve), and the breaker notes each outcome's id in the same script that records it
 *  (common/breaker.h), which also tells the redo of a recording that opened or closed it to
 *  publish that event (the first transaction's copy rolled back with it). What a crash between
 *  Redis and COMMIT can still leave errs on the safe side: an order's place in the minute kept
 *  though it was never placed; and a breaker event unpublished when the message is not redone
 *  before the breaker changes again, or for ten minutes (the state itself is right). That is
 *  the price of not stopping every replica on one lock.
 */
#include "workers/execution/execute.h"
#include "workers/execution/orders.h"
#include "workers/execution/positions.h"
#include "workers/qty.h"
#include "common/prices.h"
#include "common/symbol.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/sbuf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_RANK(x) "(CASE " x " WHEN 'accepted' THEN 1 WHEN 'signalled' THEN 2 " \
                  "WHEN 'scored' THEN 3 WHEN 'ordered' THEN 4 WHEN 'filled' THEN 6 ELSE 5 END)"
#define S_ORDER_COLS "o.id, o.client_order_id, o.signal_id, o.corr, o.symbol, o.side, o.type, " \
                     "o.qty, o.limit_price, o.status, o.filled_qty, o.avg_fill_price, " \
                     "(SELECT count(*) FROM fills f WHERE f.order_id = o.id)"

static const fks_pg_stmt_t s_stmts[] = {
    //  Two statements, not one: under READ COMMITTED a statement reads the snapshot taken
    //  when it started, so a read in the statement that waited for the lock would see the
    //  position as it was before the holder committed.
    { "ex_position_lock",
      "SELECT pg_advisory_xact_lock (hashtextextended ('fks.position:' || $1, 0))", 1 },
    //  The position (NULLs when there is none) and what the symbol's open orders at the
    //  broker have left to fill, per side (max_position counts them: risk.h). One row.
    { "ex_position",
      "SELECT p.qty, p.avg_price, p.realized_pnl, p.fees, o.b, o.s"
      "  FROM (SELECT coalesce (sum (qty - filled_qty) FILTER (WHERE side = 'buy'), 0) AS b,"
      "               coalesce (sum (qty - filled_qty) FILTER (WHERE side = 'sell'), 0) AS s"
      "          FROM orders WHERE symbol = $1"
      "           AND status IN ('submitted', 'partially_filled')) o"
      "  LEFT JOIN positions p ON p.symbol = $1", 1 },
    //  A batch's symbols (sorted by the caller; the subquery keeps that order), then their
    //  rows as ex_position has them, one per symbol.
    { "ex_positions_lock",
      "SELECT count (pg_advisory_xact_lock (hashtextextended ('fks.position:' || s, 0)))"
      "  FROM (SELECT s FROM unnest ($1::text[]) AS u (s) ORDER BY s COLLATE \"C\") x", 1 },
    { "ex_positions",
      "SELECT u.s, p.qty, p.avg_price, p.realized_pnl, p.fees, coalesce (o.b, 0),"
      "       coalesce (o.s, 0)"
      "  FROM unnest ($1::text[]) AS u (s)"
      "  LEFT JOIN positions p ON p.symbol = u.s"
      "  LEFT JOIN (SELECT symbol, sum (qty - filled_qty) FILTER (WHERE side = 'buy') AS b,"
      "                    sum (qty - filled_qty) FILTER (WHERE side = 'sell') AS s"
      "               FROM orders WHERE symbol = ANY ($1::text[])"
      "                AND status IN ('submitted', 'partially_filled')"
      "              GROUP BY symbol) o ON o.symbol = u.s", 1 },
    //  The batch's signals that may no longer be ordered: the ai stage filtered them, risk or
    //  the broker refused them, or they failed. A signal.created published again (a replay,
    //  or the reconciler after the execution input changed) must not undo that.
    { "ex_signals_closed",
      "SELECT id FROM signals WHERE id = ANY ($1::uuid[])"
      "   AND status IN ('filtered', 'rejected', 'failed')", 1 },
    //  The batch's new orders with their fill and statuses at once (ex_place for many). No ON
    //  CONFLICT: it usually travels in the commit's round trip (fks_worker_defer), where an
    //  order that exists already must fail the statement (23505) so that the batch is handled
    //  message by message.
    { "ex_place_many",
      "WITH v AS ("
      "  SELECT * FROM unnest ($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[],"
      "                        $6::text[], $7::text[], $8::numeric[], $9::numeric[],"
      "                        $10::text[], $11::numeric[], $12::numeric[], $13::text[],"
      "                        $14::text[], $15::text[], $16::uuid[], $17::text[],"
      "                        $18::numeric[], $19::numeric[], $20::numeric[], $21::text[],"
      "                        $22::text[], $23::text[])"
      "    AS t (id, coid, sid, corr, symbol, side, type, qty, lim, status, fq, avg, broker,"
      "          exid, reason, fid, fexid, fqty, fprice, ffee, fasset, sstatus, istatus)),"
      " o AS ("
      "  INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side, type, qty,"
      "                      limit_price, status, filled_qty, avg_fill_price, broker,"
      "                      exchange_order_id, reason)"
      "  SELECT id, coid, sid, corr, symbol, side, type, qty, lim, status, fq, avg, broker,"
      "         exid, reason FROM v"
      "  RETURNING id),"
      " f AS ("
      "  INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price,"
      "                     fee, fee_asset, ts)"
      "  SELECT v.fid, v.id, v.broker, v.fexid, v.symbol, v.side, v.fqty, v.fprice, v.ffee,"
      "         v.fasset, now() FROM v JOIN o ON o.id = v.id WHERE v.fexid IS NOT NULL),"
      " s AS ("
      "  UPDATE signals SET status = v.sstatus, updated_at = now()"
      "    FROM v JOIN o ON o.id = v.id WHERE signals.id = v.sid),"
      " i AS ("
      "  UPDATE inbox SET status = v.istatus, updated_at = now()"
      "    FROM v JOIN o ON o.id = v.id"
      "   WHERE inbox.id = v.corr"
      "     AND " S_RANK ("inbox.status") " < " S_RANK ("v.istatus") ")"
      "SELECT count(*) FROM o", 23, FKS_PG_CUSTOM_PLAN },
    //  Every position the transaction moved, written once before COMMIT. The quantity is the
    //  stored one plus the exact sum of the transaction's signed fill quantities ($6/$7, the
    //  same text as the fills rows), so a position always equals the sum of its fills in
    //  numeric; the in-memory double only decides (and gives the price and PnL columns).
    { "ex_positions_save",
      "WITH t AS ("
      "  SELECT * FROM unnest ($1::text[], $2::numeric[], $3::numeric[], $4::numeric[],"
      "                        $5::numeric[]) AS t (s, q, a, r, f)),"
      " d AS (SELECT s, sum (q) AS q FROM unnest ($6::text[], $7::numeric[]) AS m (s, q)"
      "        GROUP BY s),"
      " n AS ("
      "  SELECT t.s, CASE WHEN d.s IS NULL THEN t.q ELSE coalesce (p.qty, 0) + d.q END AS q,"
      "         t.a, t.r, t.f"
      "    FROM t LEFT JOIN d ON d.s = t.s LEFT JOIN positions p ON p.symbol = t.s)"
      "INSERT INTO positions (symbol, qty, avg_price, realized_pnl, fees, updated_at)"
      " SELECT s, q, CASE WHEN q = 0 THEN 0 ELSE a END, r, f, now() FROM n"
      " ON CONFLICT (symbol) DO UPDATE SET qty = EXCLUDED.qty, avg_price = EXCLUDED.avg_price,"
      "   realized_pnl = EXCLUDED.realized_pnl, fees = EXCLUDED.fees, updated_at = now()", 7 },
    //  A new order with at most one fill, and the status of its signal and alert, in one
    //  round trip: the common case (a market order filled at once, a limit order resting, a
    //  broker refusal). Nothing else happens when the order exists already.
    { "ex_place",
      "WITH o AS ("
      "  INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side, type, qty,"
      "                      limit_price, status, filled_qty, avg_fill_price, broker,"
      "                      exchange_order_id, reason)"
      "  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
      "  ON CONFLICT DO NOTHING RETURNING id),"
      " f AS ("
      "  INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price,"
      "                     fee, fee_asset, ts)"
      "  SELECT $16, o.id, $13, $17, $5, $6, $18, $19, $20, $21, now() FROM o"
      "   WHERE $17::text IS NOT NULL),"
      " s AS ("
      "  UPDATE signals SET status = $22, updated_at = now()"
      "   WHERE id = $3 AND EXISTS (SELECT 1 FROM o)),"
      " i AS ("
      "  UPDATE inbox SET status = $23, updated_at = now()"
      "   WHERE id = $4 AND EXISTS (SELECT 1 FROM o)"
      "     AND " S_RANK ("status") " < " S_RANK ("$23::text") ")"
      "SELECT id FROM o", 23 },
    { "ex_order_insert",
      "INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side, type, qty,"
      "                    limit_price, status, filled_qty, avg_fill_price, broker,"
      "                    exchange_order_id, reason)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
      " ON CONFLICT DO NOTHING RETURNING id", 15 },
    { "ex_order_update",
      "UPDATE orders SET status = $2, filled_qty = $3, avg_fill_price = $4,"
      "       exchange_order_id = COALESCE ($5, exchange_order_id),"
      "       reason = COALESCE ($6, reason), broker = $7, qty = COALESCE ($8, qty),"
      "       updated_at = now()"
      " WHERE id = $1", 8 },
    { "ex_order_get",
      "SELECT " S_ORDER_COLS " FROM orders o WHERE o.id = $1 FOR UPDATE", 1 },
    //  The resting orders a bar may fill, oldest first, with (after S_ORDER_COLS) whether
    //  each is reduce-only (its signal says so) and when it was placed (Unix ms).
    { "ex_open_limits",
      "SELECT " S_ORDER_COLS ","
      "       coalesce ((SELECT s.params -> 'reduce_only' = 'true'::jsonb FROM signals s"
      "                   WHERE s.id = o.signal_id), false),"
      "       floor (extract (epoch FROM o.created_at) * 1000)::int8"
      "  FROM orders o"
      " WHERE o.symbol = $1 AND o.type = 'limit' AND o.status IN ('submitted', 'partially_filled')"
      " ORDER BY o.created_at, o.id LIMIT 1000 FOR UPDATE", 1 },
    //  The last announcement of a bar offered to resting orders (NULLs when none), replaced by
    //  this one unless this one is older (less volume), and the shortest interval (ms) the
    //  symbol's bars came in over the day before it; marks older than $8 ms before this bar
    //  go. Under the symbol's position lock.
    { "ex_bar_mark",
      "WITH prev AS (SELECT high, low, close, volume FROM bar_marks"
      "               WHERE symbol = $1 AND interval = $2 AND open_time = $3),"
      " up AS (INSERT INTO bar_marks AS m (symbol, interval, open_time, high, low, close,"
      "                                    volume, len_ms)"
      "        VALUES ($1, $2, $3, $4, $5, $6, $7, $9)"
      "        ON CONFLICT (symbol, interval, open_time) DO UPDATE"
      "           SET high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,"
      "               volume = EXCLUDED.volume"
      "         WHERE EXCLUDED.volume >= m.volume),"
      " old AS (DELETE FROM bar_marks"
      "          WHERE symbol = $1 AND interval = $2 AND open_time < $3::int8 - $8::int8)"
      "SELECT p.high, p.low, p.close, p.volume,"
      "       (SELECT min (len_ms) FROM bar_marks WHERE symbol = $1 AND len_ms > 0"
      "           AND open_time > $3::int8 - 86400000)"
      "  FROM (SELECT 1) AS one LEFT JOIN prev p ON true", 9 },
    //  The symbol's signals not ordered yet that were created before one and after $3 (signal
    //  ids are UUIDv7: time first), newest first (s_earlier_pending).
    { "ex_earlier_pending",
      "SELECT id FROM signals"
      " WHERE symbol = $1 AND id < $2::uuid AND id > $3::uuid"
      "   AND status IN ('created', 'scored') AND action <> 'cancel'"
      " ORDER BY id DESC LIMIT 64", 3 },
    { "ex_fill_insert",
      "INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, fee,"
      "                   fee_asset, ts)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())"
      " ON CONFLICT (broker, exchange_fill_id) DO NOTHING RETURNING id", 10 },
    { "ex_signal_status",
      "WITH s AS (UPDATE signals SET status = $2, reason = COALESCE ($3, reason),"
      "                              updated_at = now()"
      "            WHERE id = $1 RETURNING inbox_id)"
      "UPDATE inbox SET status = $4, updated_at = now()"
      " WHERE id = (SELECT inbox_id FROM s)"
      "   AND " S_RANK ("status") " < " S_RANK ("$4::text"), 4 },
    { "ex_inbox_status",
      "UPDATE inbox SET status = $2, updated_at = now()"
      " WHERE id = $1 AND " S_RANK ("status") " < " S_RANK ("$2::text"), 2 },
};

struct fks_exec_t {
    fks_exec_cfg_t cfg;
    fks_broker_t *broker;
    const char *prefixes[4];
    fks_metric_family_t *f_orders;
    fks_metric_family_t *f_risk;
    fks_metric_t *m_breaker;
    fks_metric_t *m_fills;
};

#define S_CACHE_MAX 64              /* symbols one transaction keeps in memory */
_Static_assert (S_CACHE_MAX <= FKS_PRICE_MANY_MAX, "a batch's prices are read in one call");
_Static_assert (FKS_PRICE_SYMBOL_MAX == FKS_SYMBOL_MAX, "prices take every symbol");

typedef struct {
    char symbol[FKS_SYMBOL_MAX];
    fks_position_t pos;
    bool dirty;
    double open_buy, open_sell;     /* left to fill in the symbol's open orders, per side */
} s_pos_entry_t;

typedef struct {
    char symbol[FKS_SYMBOL_MAX];
    bool has;
    double price;
} s_price_entry_t;

//  A new order waiting for the batch's single insert (s_flush).
typedef struct {
    fks_order_t order;
    fks_broker_result_t res;        /* its outcome: at most one fill */
    const char *inbox_status;       /* static strings */
    char note[200];                 /* the row's reason when the broker gives none */
} s_placed_t;

//  A paper order's outcome in a batch, settled with the breaker by s_flush.
typedef struct {
    bool ok;
    char coid[FKS_CLIENT_ORDER_ID_MAX + 12];
} s_outcome_t;

//  The statement that writes every position this transaction moved (ex_positions_save), built
//  by s_save_prepare: the call and the buffers its values point into.
typedef struct {
    char arr[5][S_CACHE_MAX * 50 + 8];
    fks_sbuf_t msym, mqty;
    const char *values[7];
    fks_pg_call_t call;
    bool any;                       /* false: nothing moved, nothing to run */
} s_save_t;

//  The statement that writes the batch's new orders (ex_place_many), built by
//  s_placed_prepare: the call and the column arrays its values point into.
typedef struct {
    fks_worker_array_t col[23];
    const char *values[23];
    fks_pg_call_t call;
    bool any;                       /* false: no order placed, nothing to run */
} s_placed_batch_t;

//  A handler thread's state. The caches live for one transaction (reset by s_begin): the
//  positions it locked and moved, the latest prices it read, and the orders it placed in a
//  batch (all written by s_flush).
typedef struct {
    fks_exec_t *x;
    fks_breaker_t *breaker;
    fks_redis_t *redis;
    s_pos_entry_t pos[S_CACHE_MAX];
    size_t n_pos;
    s_price_entry_t prices[S_CACHE_MAX];
    size_t n_prices;
    s_placed_t *placed;
    size_t n_placed, cap_placed;
    s_outcome_t *outcomes;          /* a batch's paper outcomes, for the breaker (s_flush) */
    size_t n_outcomes, cap_outcomes;
    char failure[FKS_BROKER_REASON_MAX];    /* the batch's last broker refusal */
    fks_sbuf_t moved_sym, moved_qty;        /* the fills moving positions: symbol, signed qty */
    s_save_t save;                  /* s_flush's two statements, built here: no 16 KiB on */
    s_placed_batch_t placed_batch;  /* the stack, no allocation per batch for the arrays */
    char lock[S_CACHE_MAX][FKS_SYMBOL_MAX];     /* the batch's symbols, sorted (s_prefetch) */
    size_t n_lock;
    const char *lock_names[S_CACHE_MAX];    /* ... as strings (for the prices' read), */
    fks_worker_array_t lock_arr;    /* ... as an array literal, */
    const char *lock_list;          /* ... which is this */
    bool prices_asked;              /* s_prefetch sent their prices' read; begin reads it */
    fks_worker_array_t sig_arr;     /* the batch's signal ids (s_prefetch), */
    const char *sig_list;           /* ... as an array literal, */
    fks_id_t sig_ids[S_CACHE_MAX];  /* ... and as ids */
    size_t n_sig;
    bool sig_checked;               /* begin read which of them are closed: */
    fks_id_t closed[S_CACHE_MAX];   /* these */
    size_t n_closed;
} s_thread_t;

static const fks_id_t s_nil;        /* corr of events that concern no alert */

#define S_EARLIER_WINDOW_MS 10000   /* how long an exit waits for the signals created before */

static void s_gathered_release (s_thread_t *st);


//  --------------------------------------------------------------------------
//  Configuration and setup

int
fks_exec_cfg_load (fks_exec_cfg_t *cfg, char *err, size_t cap)
{
    memset (cfg, 0, sizeof *cfg);
    if (fks_risk_limits_load (&cfg->limits, err, cap) != 0
        || fks_breaker_cfg_load (&cfg->breaker, err, cap) != 0)
        return -1;
    fks_config_err_t e;
    char *input = NULL, *scope = NULL;
    //  "global" is the scope GET /api/v1/breaker shows and resets when none is named.
    if (fks_config_str ("FKS_EXECUTION_INPUT", "signal.created", &input, &e) < 0
        || fks_config_str ("FKS_BREAKER_SCOPE", "global", &scope, &e) < 0) {
        snprintf (err, cap, "%s", e.msg);
        free (input);
        free (scope);
        return -1;
    }
    int rc = 0;
    if (strcmp (input, "signal.created") != 0 && strcmp (input, "signal.scored") != 0) {
        snprintf (err, cap, "FKS_EXECUTION_INPUT: expected signal.created or signal.scored, "
                  "got '%.40s'", input);
        rc = -1;
    }
    else if (!fks_breaker_scope_valid (scope)) {
        snprintf (err, cap, "FKS_BREAKER_SCOPE: expected 1-63 chars of [a-z0-9:._-], got "
                  "'%.64s'", scope);
        rc = -1;
    }
    else {
        snprintf (cfg->input, sizeof cfg->input, "%s", input);
        snprintf (cfg->breaker_scope, sizeof cfg->breaker_scope, "%s", scope);
    }
    free (input);
    free (scope);
    return rc;
}

fks_exec_t *
fks_exec_new (const fks_exec_cfg_t *cfg, fks_broker_t *broker)
{
    fks_exec_t *self = calloc (1, sizeof *self);
    if (!self || !broker) {
        free (self);
        fks_broker_destroy (&broker);
        return NULL;
    }
    self->cfg = *cfg;
    self->broker = broker;
    self->prefixes[0] = self->cfg.input;
    self->prefixes[1] = "order.requested";
    self->prefixes[2] = "order.cancel_requested";
    self->prefixes[3] = "market.bar";
    self->f_orders = fks_counter_family ("fks_execution_orders_total",
        "Orders by outcome: filled, partially_filled, resting, rejected (by the broker), "
        "risk_rejected, cancelled, closed_signal (a signal filtered, refused or failed before: "
        "not ordered)", (const char *[]) { "outcome" }, 1);
    self->f_risk = fks_counter_family ("fks_execution_risk_rejections_total",
        "Orders refused before the broker, by rule", (const char *[]) { "rule" }, 1);
    self->m_fills = fks_metric_get (fks_counter_family ("fks_execution_fills_total",
        "Fills applied to orders and positions", NULL, 0), NULL);
    self->m_breaker = fks_metric_get1 (fks_gauge_family ("fks_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open",
        (const char *[]) { "scope" }, 1), self->cfg.breaker_scope);
    if (!self->f_orders || !self->f_risk || !self->m_fills || !self->m_breaker) {
        fks_exec_destroy (&self);
        return NULL;
    }
    return self;
}

void
fks_exec_destroy (fks_exec_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_broker_destroy (&(*self_p)->broker);
    free (*self_p);
    *self_p = NULL;
}

const fks_pg_stmt_t *
fks_exec_stmts (size_t *n)
{
    *n = sizeof s_stmts / sizeof s_stmts[0];
    return s_stmts;
}

static void *
s_thread_init (fks_pg_t *pg, fks_redis_t *redis, void *arg)
{
    (void) pg;
    fks_exec_t *x = arg;
    s_thread_t *st = calloc (1, sizeof *st);
    if (!st)
        return NULL;
    st->x = x;
    st->redis = redis;
    st->breaker = fks_breaker_new (redis, x->cfg.breaker_scope, &x->cfg.breaker);
    fks_sbuf_init (&st->moved_sym, 0);
    fks_sbuf_init (&st->moved_qty, 0);
    return st;
}

static void
s_thread_fini (void *state, void *arg)
{
    (void) arg;
    s_thread_t *st = state;
    if (st) {
        fks_breaker_destroy (&st->breaker);
        free (st->placed);
        free (st->outcomes);
        fks_sbuf_free (&st->moved_sym);
        fks_sbuf_free (&st->moved_qty);
        fks_worker_array_free (&st->lock_arr);
        fks_worker_array_free (&st->sig_arr);
        s_gathered_release (st);
        free (st);
    }
}

static void
s_idle (void *state, void *arg)
{
    (void) arg;
    s_thread_t *st = state;
    if (!st || !st->breaker)
        return;
    fks_breaker_status_t s;
    fks_redis_err_t err;
    if (fks_breaker_status (st->breaker, fks_now_ms (), &s, &err) == 0)
        fks_metric_set (st->x->m_breaker, (double) s.state);
}


//  --------------------------------------------------------------------------
//  Reading

//  Starts the transaction's list of position moves (array literals for ex_positions_save).
static void
s_moves_reset (s_thread_t *st)
{
    fks_sbuf_reset (&st->moved_sym);
    fks_sbuf_reset (&st->moved_qty);
}

//  Records fills that moved a symbol's position, with their quantity as the fills rows hold it.
static void
s_moves_add (s_thread_t *st, const char *symbol, bool buy, const fks_broker_fill_t *fills,
             size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char q[48];
        fks_sbuf_puts (&st->moved_sym, st->moved_sym.len ? ",\"" : "\"");
        fks_sbuf_puts (&st->moved_sym, symbol);
        fks_sbuf_puts (&st->moved_sym, "\"");
        fks_sbuf_puts (&st->moved_qty, st->moved_qty.len ? "," : "");
        fks_sbuf_puts (&st->moved_qty, buy ? "" : "-");
        fks_sbuf_puts (&st->moved_qty, fks_worker_num (q, fills[i].qty));
    }
}

static void
s_save_free (s_save_t *b)
{
    fks_sbuf_free (&b->msym);
    fks_sbuf_free (&b->mqty);
}

static int
s_save_prepare (fks_worker_tx_t *tx, s_thread_t *st, s_save_t *b)
{
    size_t len[5] = { 0 };
    int dirty = 0;
    fks_sbuf_init (&b->msym, 0);
    fks_sbuf_init (&b->mqty, 0);
    b->any = false;
    for (int k = 0; k < 5; k++)
        len[k] = (size_t) snprintf (b->arr[k], sizeof b->arr[k], "{");
    for (size_t i = 0; i < st->n_pos; i++) {
        s_pos_entry_t *e = &st->pos[i];
        if (!e->dirty)
            continue;
        char v[4][48];
        fks_worker_num (v[0], e->pos.qty);
        fks_worker_num (v[1], e->pos.qty == 0 ? 0 : e->pos.avg_price);
        fks_worker_num (v[2], e->pos.realized_pnl);
        fks_worker_num (v[3], e->pos.fees);
        const char *sep = dirty ? "," : "";
        len[0] += (size_t) snprintf (b->arr[0] + len[0], sizeof b->arr[0] - len[0], "%s\"%s\"",
                                     sep, e->symbol);
        for (int k = 0; k < 4; k++)
            len[k + 1] += (size_t) snprintf (b->arr[k + 1] + len[k + 1],
                                             sizeof b->arr[k + 1] - len[k + 1], "%s%s", sep, v[k]);
        dirty++;
    }
    if (dirty == 0)
        return FKS_WORKER_OK;
    for (int k = 0; k < 5; k++)
        snprintf (b->arr[k] + len[k], sizeof b->arr[k] - len[k], "}");
    fks_sbuf_printf (&b->msym, "{%s}", st->moved_sym.len ? st->moved_sym.data : "");
    fks_sbuf_printf (&b->mqty, "{%s}", st->moved_qty.len ? st->moved_qty.data : "");
    if (st->moved_sym.failed || st->moved_qty.failed || b->msym.failed || b->mqty.failed) {
        s_save_free (b);
        return fks_worker_retry (tx, "out of memory");
    }
    for (int k = 0; k < 5; k++)
        b->values[k] = b->arr[k];
    b->values[5] = b->msym.data;
    b->values[6] = b->mqty.data;
    b->call = (fks_pg_call_t) { "ex_positions_save", 7, b->values, NULL, NULL };
    b->any = true;
    return FKS_WORKER_OK;
}

//  After the statement ran (or was queued for the commit): the positions are clean again,
//  and the moves it applied are forgotten, so that a later save (the cache overflowing in a
//  big batch, then s_flush) adds only the moves made since.
static void
s_save_done (s_thread_t *st)
{
    for (size_t i = 0; i < st->n_pos; i++)
        st->pos[i].dirty = false;
    s_moves_reset (st);
}

static int s_write_gathered (fks_worker_tx_t *tx, s_thread_t *st, bool orders, bool positions,
                             bool defer);

//  Takes a lock (lock_stmt) and then reads (read_stmt), both with the one parameter value, in
//  one round trip: two statements, so the read's snapshot is taken after the lock is granted
//  and sees what its previous holder committed. The read's result, or NULL with err.
static PGresult *
s_lock_read (fks_worker_tx_t *tx, const char *lock_stmt, const char *read_stmt,
             const char *value, fks_pg_err_t *err)
{
    const char *values[1] = { value };
    fks_pg_call_t calls[2] = { { lock_stmt, 1, values, NULL, NULL },
                               { read_stmt, 1, values, NULL, NULL } };
    PGresult *out[2];
    if (fks_pg_exec_pipeline (fks_worker_pg (tx), calls, 2, out, err) != 0)
        return NULL;
    PQclear (out[0]);
    return out[1];
}

//  The symbol's position if this transaction has it in memory already, else NULL.
static s_pos_entry_t *
s_cached_position (s_thread_t *st, const char *symbol)
{
    for (size_t i = 0; i < st->n_pos; i++)
        if (strcmp (st->pos[i].symbol, symbol) == 0)
            return &st->pos[i];
    return NULL;
}

//  The symbol's position, locked for the rest of the transaction: read once per transaction,
//  then kept in memory (and written by s_flush). NULL with the reason set on failure.
static s_pos_entry_t *
s_position (fks_worker_tx_t *tx, s_thread_t *st, const char *symbol, int *rc)
{
    s_pos_entry_t *cached = s_cached_position (st, symbol);
    if (cached)
        return cached;
    if (st->n_pos == S_CACHE_MAX) {
        //  Full: write what moved, and the orders placed so far (a symbol read again must see
        //  them among its open orders), and start over (the locks stay held until COMMIT, so
        //  the rows read again are the ones written here).
        if ((*rc = s_write_gathered (tx, st, true, true, false)) != FKS_WORKER_OK)
            return NULL;
        st->n_pos = 0;
    }
    fks_pg_err_t err;
    PGresult *r = s_lock_read (tx, "ex_position_lock", "ex_position", symbol, &err);
    if (!r) {
        *rc = fks_worker_pg_error (tx, &err, "locking and reading the position");
        return NULL;
    }
    s_pos_entry_t *e = &st->pos[st->n_pos++];
    memset (e, 0, sizeof *e);
    snprintf (e->symbol, sizeof e->symbol, "%s", symbol);
    if (PQntuples (r) == 1) {
        e->pos.qty = fks_worker_parse_num (PQgetvalue (r, 0, 0), 0);
        e->pos.avg_price = fks_worker_parse_num (PQgetvalue (r, 0, 1), 0);
        e->pos.realized_pnl = fks_worker_parse_num (PQgetvalue (r, 0, 2), 0);
        e->pos.fees = fks_worker_parse_num (PQgetvalue (r, 0, 3), 0);
        e->open_buy = fks_worker_parse_num (PQgetvalue (r, 0, 4), 0);
        e->open_sell = fks_worker_parse_num (PQgetvalue (r, 0, 5), 0);
    }
    PQclear (r);
    return e;
}

static int
s_cmp_symbol (const void *a, const void *b)
{
    return strcmp ((const char *) a, (const char *) b);
}

//  The batch's symbols, sorted and unique, into st->lock (and as an array literal for the
//  statements). The messages the handler will lock positions for: signals, manual orders, bars.
static int
s_batch_symbols (fks_worker_tx_t *tx, s_thread_t *st)
{
    fks_exec_t *x = st->x;
    size_t n = fks_worker_batch_size (tx);
    size_t k = 0;
    st->n_lock = 0;
    st->sig_list = NULL;
    fks_worker_array_reset (&st->sig_arr);
    size_t n_sig = 0;
    st->n_sig = 0;
    for (size_t i = 0; i < n && k < S_CACHE_MAX; i++) {
        const fks_envelope_t *env = fks_worker_batch_env (tx, i);
        const char *type = fks_envelope_hdr (env)->type;
        if (strcmp (type, x->cfg.input) != 0 && strcmp (type, "order.requested") != 0
            && strcmp (type, "market.bar") != 0)
            continue;
        fks_id_t sid;
        char text[FKS_ID_STR_SIZE];
        if (strcmp (type, x->cfg.input) == 0 && n_sig < S_CACHE_MAX
            && fks_envelope_get_id (env, "signal_id", &sid) == 0) {
            fks_worker_array_add (&st->sig_arr, fks_worker_uuid (text, &sid));
            st->sig_ids[n_sig++] = sid;
        }
        char raw[65];
        if (fks_envelope_get_str (env, "symbol", raw, sizeof raw) != 0
            || fks_symbol_normalize (raw, st->lock[k], NULL, 0) != 0)
            continue;
        k++;
    }
    if (k == 0)
        return 0;
    qsort (st->lock, k, sizeof st->lock[0], s_cmp_symbol);
    fks_worker_array_reset (&st->lock_arr);
    for (size_t i = 0; i < k; i++)
        if (i == 0 || strcmp (st->lock[i], st->lock[st->n_lock - 1]) != 0) {
            fks_worker_array_add (&st->lock_arr, st->lock[i]);
            if (st->n_lock != i)
                memcpy (st->lock[st->n_lock], st->lock[i], FKS_SYMBOL_MAX);
            st->lock_names[st->n_lock] = st->lock[st->n_lock];
            st->n_lock++;
        }
    if (!(st->lock_list = fks_worker_array_end (&st->lock_arr))) {
        st->n_lock = 0;
        return -1;
    }
    if (n_sig && !(st->sig_list = fks_worker_array_end (&st->sig_arr)))
        return -1;
    st->n_sig = n_sig;
    return 0;
}

//  Prefetch hook: the batch's positions, locked in one fixed order (sorted symbols) and read,
//  in the round trip that opens the transaction, before any message is handled: two
//  replicas whose batches share symbols then wait for each other instead of deadlocking.
//  Two statements, so that the read's snapshot is taken once the locks are held.
static size_t
s_prefetch (fks_worker_tx_t *tx, fks_pg_call_t *calls, size_t max, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st || max < 3)
        return 0;
    st->n_lock = 0;
    st->prices_asked = false;
    if (fks_worker_batch_size (tx) <= 1 || s_batch_symbols (tx, st) != 0 || st->n_lock == 0)
        return 0;
    //  The symbols' latest prices are asked of Redis now and read in begin: that round trip
    //  runs while PostgreSQL takes the locks. If asking fails, begin reads them the usual way.
    fks_redis_err_t rerr;
    st->prices_asked = fks_price_get_many_send (fks_worker_redis (tx), st->lock_names,
                                                st->n_lock, &rerr) == 0;
    calls[0] = (fks_pg_call_t) { "ex_positions_lock", 1, &st->lock_list, NULL, NULL };
    calls[1] = (fks_pg_call_t) { "ex_positions", 1, &st->lock_list, NULL, NULL };
    if (!st->sig_list)
        return 2;
    calls[2] = (fks_pg_call_t) { "ex_signals_closed", 1, &st->sig_list, NULL, NULL };
    return 3;
}

//  In begin: the prefetched positions (r) of the locked symbols, then their latest prices (the
//  answer to s_prefetch's question, or one Redis round trip).
static int
s_take_positions (fks_worker_tx_t *tx, s_thread_t *st, const PGresult *r)
{
    for (size_t i = 0; i < st->n_lock; i++) {
        s_pos_entry_t *e = &st->pos[st->n_pos++];
        memset (e, 0, sizeof *e);
        memcpy (e->symbol, st->lock[i], FKS_SYMBOL_MAX);
    }
    int rows = PQntuples (r);
    for (int j = 0; j < rows; j++) {
        const char *sym = PQgetvalue (r, j, 0);
        for (size_t i = 0; i < st->n_pos; i++)
            if (strcmp (st->pos[i].symbol, sym) == 0) {
                st->pos[i].pos.qty = fks_worker_parse_num (PQgetvalue (r, j, 1), 0);
                st->pos[i].pos.avg_price = fks_worker_parse_num (PQgetvalue (r, j, 2), 0);
                st->pos[i].pos.realized_pnl = fks_worker_parse_num (PQgetvalue (r, j, 3), 0);
                st->pos[i].pos.fees = fks_worker_parse_num (PQgetvalue (r, j, 4), 0);
                st->pos[i].open_buy = fks_worker_parse_num (PQgetvalue (r, j, 5), 0);
                st->pos[i].open_sell = fks_worker_parse_num (PQgetvalue (r, j, 6), 0);
            }
    }
    double prices[S_CACHE_MAX];
    bool found[S_CACHE_MAX];
    fks_redis_err_t rerr;
    bool asked = st->prices_asked;
    st->prices_asked = false;
    int rc = asked ? fks_price_get_many_recv (fks_worker_redis (tx), st->n_lock, prices, NULL,
                                              found, &rerr)
                   : fks_price_get_many (fks_worker_redis (tx), st->lock_names, st->n_lock,
                                         prices, NULL, found, &rerr);
    //  Redis had lost the script (flushed): asked again, with its text.
    if (rc != 0 && asked && fks_redis_noscript (&rerr))
        rc = fks_price_get_many (fks_worker_redis (tx), st->lock_names, st->n_lock, prices, NULL,
                                 found, &rerr);
    if (rc != 0)
        return fks_worker_redis_error (tx, &rerr, "reading the latest prices");
    for (size_t i = 0; i < st->n_lock; i++) {
        s_price_entry_t *e = &st->prices[st->n_prices++];
        snprintf (e->symbol, sizeof e->symbol, "%s", st->lock[i]);
        e->has = found[i];
        e->price = found[i] ? prices[i] : 0;
    }
    return FKS_WORKER_OK;
}

static int
s_begin (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st)
        return FKS_WORKER_OK;
    st->n_pos = 0;
    st->n_prices = 0;
    st->n_placed = 0;
    st->n_outcomes = 0;
    st->failure[0] = '\0';
    s_moves_reset (st);
    //  The positions s_prefetch locked and read with BEGIN (none for a single message: the
    //  handler locks its one symbol itself).
    const PGresult *r = fks_worker_prefetched (tx, 1);
    if (!r)
        st->prices_asked = false;   /* an unread answer is dropped by the next command */
    //  The batch's closed signals, read with them (a single message asks in its handler).
    const PGresult *c = r && st->sig_list ? fks_worker_prefetched (tx, 2) : NULL;
    st->sig_checked = c != NULL;
    st->n_closed = 0;
    for (int j = 0; c && j < PQntuples (c) && st->n_closed < S_CACHE_MAX; j++) {
        const char *text = PQgetvalue (c, j, 0);
        if (fks_id_parse (text, strlen (text), &st->closed[st->n_closed]) == 0)
            st->n_closed++;
    }
    return r ? s_take_positions (tx, st, r) : FKS_WORKER_OK;
}

static bool
s_id_in (const fks_id_t *id, const fks_id_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp (v[i].b, id->b, FKS_ID_SIZE) == 0)
            return true;
    return false;
}

//  May this signal still be ordered? *closed true when its row says it was filtered (by the
//  ai stage, or by a cancel alert before it was ordered), refused or failed. Read with the
//  batch (begin) for the signals s_prefetch listed, else asked now. The caller holds the
//  symbol's position lock, which a cancel alert takes too (workers/signal/fks_signal.c).
//  FKS_WORKER_OK or the failure.
static int
s_signal_closed (fks_worker_tx_t *tx, s_thread_t *st, const fks_id_t *sid, bool *closed)
{
    *closed = false;
    if (st->sig_checked && s_id_in (sid, st->sig_ids, st->n_sig)) {
        *closed = s_id_in (sid, st->closed, st->n_closed);
        return FKS_WORKER_OK;
    }
    char list[FKS_ID_STR_SIZE + 2];
    char id[FKS_ID_STR_SIZE];
    snprintf (list, sizeof list, "{%s}", fks_worker_uuid (id, sid));
    const char *values[1] = { list };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_signals_closed", 1, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "reading the signal's status");
    *closed = PQntuples (r) > 0;
    PQclear (r);
    return FKS_WORKER_OK;
}

static int s_write_placed_many (fks_worker_tx_t *tx, s_thread_t *st);
static int s_placed_prepare (fks_worker_tx_t *tx, s_thread_t *st, s_placed_batch_t *b);
static int s_placed_check (fks_worker_tx_t *tx, s_thread_t *st, PGresult *r);
static void s_placed_free (s_placed_batch_t *b);
static int s_settle_breaker (fks_worker_tx_t *tx, s_thread_t *st);

//  Writes what the transaction gathered: the placed orders (with their fills and statuses)
//  and/or the positions moved, in one round trip. FKS_WORKER_OK or the failure.
static int
s_write_gathered (fks_worker_tx_t *tx, s_thread_t *st, bool orders, bool positions, bool defer)
{
    s_placed_batch_t *pb = &st->placed_batch;
    s_save_t *sb = &st->save;
    s_gathered_release (st);        /* what an earlier transaction deferred */
    int rc = orders ? s_placed_prepare (tx, st, pb) : FKS_WORKER_OK;
    if (rc == FKS_WORKER_OK && positions)
        rc = s_save_prepare (tx, st, sb);
    fks_pg_call_t calls[2];
    size_t n = 0;
    if (pb->any)
        calls[n++] = pb->call;
    if (sb->any)
        calls[n++] = sb->call;
    if (rc == FKS_WORKER_OK && n > 0 && defer) {
        //  To the commit's round trip; the buffers stay until the next transaction's writes.
        for (size_t i = 0; i < n && rc == FKS_WORKER_OK; i++)
            rc = fks_worker_defer (tx, &calls[i]);
        if (rc == FKS_WORKER_OK) {
            if (sb->any)
                s_save_done (st);
            if (orders)
                st->n_placed = 0;
            return FKS_WORKER_OK;
        }
    }
    else if (rc == FKS_WORKER_OK && n > 0) {
        PGresult *out[2];
        fks_pg_err_t err;
        if (fks_pg_exec_pipeline (fks_worker_pg (tx), calls, n, out, &err) != 0)
            rc = fks_worker_pg_error (tx, &err, pb->any && sb->any ? "writing the orders and "
                                      "positions" : pb->any ? "writing the orders"
                                                            : "saving positions");
        else {
            if (pb->any)
                rc = s_placed_check (tx, st, out[0]);
            if (sb->any)
                s_save_done (st);
            for (size_t i = 0; i < n; i++)
                PQclear (out[i]);
        }
    }
    s_gathered_release (st);
    if (orders)
        st->n_placed = 0;
    return rc;
}

//  Before COMMIT: the batch's outcomes with the breaker, then its orders and the positions
//  they moved, which travel in the commit's round trip (fks_worker_defer). The breaker goes
//  first so that a refusal there leaves nothing to undo; an order that exists already fails
//  the commit (a unique violation), and the batch is handled again message by message.
static int
s_flush (fks_worker_tx_t *tx, void *arg)
{
    (void) arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st)
        return FKS_WORKER_OK;
    int rc = s_settle_breaker (tx, st);
    if (rc == FKS_WORKER_OK)
        rc = s_write_gathered (tx, st, true, true, true);
    return rc;
}

//  An order row (S_ORDER_COLS) into o.
static int
s_order_from_row (PGresult *r, int row, fks_order_t *o)
{
    memset (o, 0, sizeof *o);
    const char *v = PQgetvalue (r, row, 0);
    if (fks_id_parse (v, strlen (v), &o->id) != 0)
        return -1;
    snprintf (o->client_order_id, sizeof o->client_order_id, "%s", PQgetvalue (r, row, 1));
    if (!PQgetisnull (r, row, 2)) {
        v = PQgetvalue (r, row, 2);
        o->has_signal = fks_id_parse (v, strlen (v), &o->signal_id) == 0;
    }
    if (!PQgetisnull (r, row, 3)) {
        v = PQgetvalue (r, row, 3);
        o->has_corr = fks_id_parse (v, strlen (v), &o->corr) == 0;
    }
    snprintf (o->symbol, sizeof o->symbol, "%s", PQgetvalue (r, row, 4));
    o->buy = strcmp (PQgetvalue (r, row, 5), "buy") == 0;
    o->limit = strcmp (PQgetvalue (r, row, 6), "limit") == 0;
    o->qty = fks_worker_parse_num (PQgetvalue (r, row, 7), 0);
    o->limit_price = fks_worker_parse_num (PQgetvalue (r, row, 8), 0);
    if (fks_order_status_parse (PQgetvalue (r, row, 9), &o->status) != 0)
        return -1;
    o->filled_qty = fks_worker_parse_num (PQgetvalue (r, row, 10), 0);
    o->avg_fill_price = fks_worker_parse_num (PQgetvalue (r, row, 11), 0);
    o->fills = atoi (PQgetvalue (r, row, 12));
    return 0;
}

//  The latest price of symbol (Redis), read once per transaction: 0 with *has set, or
//  FKS_WORKER_RETRY.
static int
s_last_price (fks_worker_tx_t *tx, s_thread_t *st, const char *symbol, bool *has,
              double *price)
{
    for (size_t i = 0; i < st->n_prices; i++)
        if (strcmp (st->prices[i].symbol, symbol) == 0) {
            *has = st->prices[i].has;
            *price = st->prices[i].price;
            return FKS_WORKER_OK;
        }
    fks_redis_err_t err;
    int rc = fks_price_get (fks_worker_redis (tx), symbol, price, NULL, &err);
    if (rc < 0)
        return fks_worker_redis_error (tx, &err, "reading the latest price");
    *has = rc == 0;
    if (st->n_prices < S_CACHE_MAX) {
        s_price_entry_t *e = &st->prices[st->n_prices++];
        snprintf (e->symbol, sizeof e->symbol, "%s", symbol);
        e->has = *has;
        e->price = *has ? *price : 0;
    }
    return FKS_WORKER_OK;
}


//  --------------------------------------------------------------------------
//  Emitting

static void
s_pack_order_ids (msgpack_packer *pk, const fks_order_t *o)
{
    fks_pack_kv_id (pk, "order_id", &o->id);
    fks_pack_kv_str (pk, "client_order_id", o->client_order_id);
}

static const fks_id_t *
s_corr (const fks_order_t *o)
{
    return o->has_corr ? &o->corr : &s_nil;
}

static int
s_emit_submitted (fks_worker_tx_t *tx, const char *broker, const fks_order_t *o,
                  const char *exchange_id)
{
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 7 + (o->has_signal ? 1 : 0) + (o->limit ? 1 : 0)
                          + (exchange_id && *exchange_id ? 1 : 0));
    s_pack_order_ids (pk, o);
    if (o->has_signal)
        fks_pack_kv_id (pk, "signal_id", &o->signal_id);
    fks_pack_kv_str (pk, "symbol", o->symbol);
    fks_pack_kv_str (pk, "side", o->buy ? "buy" : "sell");
    fks_pack_kv_str (pk, "type", o->limit ? "limit" : "market");
    fks_pack_kv_f64 (pk, "qty", o->qty);
    if (o->limit)
        fks_pack_kv_f64 (pk, "limit_price", o->limit_price);
    fks_pack_kv_str (pk, "broker", broker);
    if (exchange_id && *exchange_id)
        fks_pack_kv_str (pk, "exchange_order_id", exchange_id);
    return fks_worker_emit (tx, "order.submitted", s_corr (o), NULL);
}

typedef struct {
    double filled_qty, avg;
    bool complete;
} s_snap_t;

static int
s_emit_fill (fks_worker_tx_t *tx, const char *broker, const fks_order_t *o,
             const fks_broker_fill_t *f, const s_snap_t *snap)
{
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 11 + (f->fee_asset[0] ? 1 : 0));
    s_pack_order_ids (pk, o);
    fks_pack_kv_str (pk, "fill_id", f->fill_id);
    fks_pack_kv_str (pk, "symbol", o->symbol);
    fks_pack_kv_str (pk, "side", o->buy ? "buy" : "sell");
    fks_pack_kv_f64 (pk, "qty", f->qty);
    fks_pack_kv_f64 (pk, "price", f->price);
    fks_pack_kv_f64 (pk, "fee", f->fee);
    if (f->fee_asset[0])
        fks_pack_kv_str (pk, "fee_asset", f->fee_asset);
    fks_pack_kv_f64 (pk, "filled_qty", snap->filled_qty);
    fks_pack_kv_f64 (pk, "avg_fill_price", snap->avg);
    fks_pack_kv_str (pk, "broker", broker);
    return fks_worker_emit (tx, snap->complete ? "order.filled" : "order.partially_filled",
                            s_corr (o), NULL);
}

//  order.rejected or order.cancelled.
static int
s_emit_ended (fks_worker_tx_t *tx, const char *type, const fks_order_t *o, const char *reason)
{
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 4 + (o->filled_qty > 0 ? 1 : 0));
    s_pack_order_ids (pk, o);
    fks_pack_kv_str (pk, "symbol", o->symbol);
    fks_pack_kv_str (pk, "reason", reason && *reason ? reason : "no reason given");
    if (o->filled_qty > 0)
        fks_pack_kv_f64 (pk, "filled_qty", o->filled_qty);
    return fks_worker_emit (tx, type, s_corr (o), NULL);
}

static int
s_emit_position (fks_worker_tx_t *tx, const char *symbol, const fks_position_t *p, double last,
                 const fks_order_t *o)
{
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 7);
    fks_pack_kv_str (pk, "symbol", symbol);
    fks_pack_kv_f64 (pk, "qty", p->qty);
    fks_pack_kv_f64 (pk, "avg_price", p->qty == 0 ? 0 : p->avg_price);
    fks_pack_kv_f64 (pk, "realized_pnl", p->realized_pnl);
    fks_pack_kv_f64 (pk, "unrealized_pnl", fks_position_unrealized (p, last));
    fks_pack_kv_f64 (pk, "last_price", last);
    fks_pack_kv_id (pk, "order_id", &o->id);
    return fks_worker_emit (tx, "position.updated", s_corr (o), NULL);
}

//  Publishes a breaker transition (and keeps the gauge true).
static int
s_breaker_event (fks_worker_tx_t *tx, s_thread_t *st, fks_breaker_transition_t tr,
                 const fks_breaker_status_t *s)
{
    fks_metric_set (st->x->m_breaker, (double) s->state);
    if (tr != FKS_BREAKER_OPENED && tr != FKS_BREAKER_CLOSED_NOW) {
        if (tr == FKS_BREAKER_HALF_OPENED)
            fks_log (FKS_LOG_INFO, NULL, NULL, "breaker %s half-open: %s",
                     st->x->cfg.breaker_scope, s->reason);
        return FKS_WORKER_OK;
    }
    bool opened = tr == FKS_BREAKER_OPENED;
    fks_log (opened ? FKS_LOG_WARN : FKS_LOG_INFO, NULL, NULL, "breaker %s %s: %s",
             st->x->cfg.breaker_scope, opened ? "opened" : "closed", s->reason);
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 4);
    fks_pack_kv_str (pk, "scope", st->x->cfg.breaker_scope);
    fks_pack_kv_str (pk, "reason", s->reason[0] ? s->reason : (opened ? "opened" : "closed"));
    fks_pack_kv_i64 (pk, "failures", opened ? s->consecutive > s->window_failures
                                              ? s->consecutive : s->window_failures : 0);
    fks_pack_kv_i64 (pk, "window_s", st->x->cfg.breaker.window_ms / 1000);
    return fks_worker_emit (tx, opened ? "breaker.opened" : "breaker.closed", &s_nil, NULL);
}


//  --------------------------------------------------------------------------
//  Statuses

static int
s_signal_status (fks_worker_tx_t *tx, const fks_order_t *o, const char *sig_status,
                 const char *reason, const char *inbox_status)
{
    fks_pg_err_t err;
    char sid[FKS_ID_STR_SIZE], cid[FKS_ID_STR_SIZE];
    PGresult *r;
    if (o->has_signal) {
        const char *values[4] = { fks_worker_uuid (sid, &o->signal_id), sig_status, reason,
                                  inbox_status };
        r = fks_pg_exec (fks_worker_pg (tx), "ex_signal_status", 4, values, NULL, NULL, &err);
    }
    else if (o->has_corr) {
        const char *values[2] = { fks_worker_uuid (cid, &o->corr), inbox_status };
        r = fks_pg_exec (fks_worker_pg (tx), "ex_inbox_status", 2, values, NULL, NULL, &err);
    }
    else
        return FKS_WORKER_OK;
    if (!r)
        return fks_worker_pg_error (tx, &err, "updating the signal's status");
    PQclear (r);
    return FKS_WORKER_OK;
}


//  --------------------------------------------------------------------------
//  Writing orders and fills

//  Writes o as it stands: INSERT for a new row (false in *stored on a unique conflict: done
//  before), UPDATE for a row that exists (its quantity too when cut: a reduce-only order cut
//  to the position it met).
static int
s_write_order (fks_worker_tx_t *tx, const char *broker, const fks_order_t *o, bool exists,
               bool cut, const char *exchange_id, const char *reason, bool *stored)
{
    char id[FKS_ID_STR_SIZE], sid[FKS_ID_STR_SIZE], cid[FKS_ID_STR_SIZE];
    char qty[48], lim[48], filled[48], avg[48];
    fks_pg_err_t err;
    PGresult *r;
    const char *ex = exchange_id && *exchange_id ? exchange_id : NULL;
    const char *why = reason && *reason ? reason : NULL;
    const char *avg_v = o->filled_qty > 0 ? fks_worker_num (avg, o->avg_fill_price) : NULL;
    *stored = true;
    if (exists) {
        const char *values[8] = {
            fks_worker_uuid (id, &o->id), fks_order_status_name (o->status),
            fks_worker_num (filled, o->filled_qty), avg_v, ex, why, broker,
            cut ? fks_worker_num (qty, o->qty) : NULL
        };
        r = fks_pg_exec (fks_worker_pg (tx), "ex_order_update", 8, values, NULL, NULL, &err);
    }
    else {
        const char *values[15] = {
            fks_worker_uuid (id, &o->id), o->client_order_id,
            o->has_signal ? fks_worker_uuid (sid, &o->signal_id) : NULL,
            o->has_corr ? fks_worker_uuid (cid, &o->corr) : NULL,
            o->symbol, o->buy ? "buy" : "sell", o->limit ? "limit" : "market",
            fks_worker_num (qty, o->qty), o->limit ? fks_worker_num (lim, o->limit_price) : NULL,
            fks_order_status_name (o->status), fks_worker_num (filled, o->filled_qty), avg_v,
            broker, ex, why
        };
        r = fks_pg_exec (fks_worker_pg (tx), "ex_order_insert", 15, values, NULL, NULL, &err);
        if (r)
            *stored = PQntuples (r) == 1;
    }
    if (!r)
        return fks_worker_pg_error (tx, &err, "writing the order");
    PQclear (r);
    return FKS_WORKER_OK;
}

static int
s_write_fill (fks_worker_tx_t *tx, const char *broker, const fks_order_t *o,
              const fks_broker_fill_t *f)
{
    fks_id_t fid;
    if (fks_id_new (&fid) != 0)
        return fks_worker_retry (tx, "no random bytes for an id");
    char id[FKS_ID_STR_SIZE], oid[FKS_ID_STR_SIZE], q[48], p[48], fee[48];
    const char *values[10] = {
        fks_worker_uuid (id, &fid), fks_worker_uuid (oid, &o->id), broker, f->fill_id,
        o->symbol, o->buy ? "buy" : "sell", fks_worker_num (q, f->qty),
        fks_worker_num (p, f->price), fks_worker_num (fee, f->fee),
        f->fee_asset[0] ? f->fee_asset : NULL
    };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_fill_insert", 10, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "writing the fill");
    bool fresh = PQntuples (r) == 1;
    PQclear (r);
    if (!fresh)
        return fks_worker_fail (tx, "fill %s of order %s already recorded", f->fill_id,
                                o->client_order_id);
    return FKS_WORKER_OK;
}

//  An open order of the symbol on one side has qty less left to fill (filled or cut).
static void
s_open_less (s_pos_entry_t *e, bool buy, double qty)
{
    double *open = buy ? &e->open_buy : &e->open_sell;
    *open = fks_qty_stored (fmax (0, *open - qty));
}

static void
s_position_stored (fks_position_t *p)
{
    p->qty = fks_qty_stored (p->qty);
    p->avg_price = p->qty == 0 ? 0 : fks_qty_stored (p->avg_price);
    p->realized_pnl = fks_qty_stored (p->realized_pnl);
    p->fees = fks_qty_stored (p->fees);
}

//  Applies the broker's fills to the order and the position in memory; snaps[i] is the
//  order's state after fill i.
static int
s_apply_fills (fks_worker_tx_t *tx, fks_order_t *o, fks_position_t *p,
               fks_broker_result_t *res, s_snap_t *snaps)
{
    char why[256];
    for (size_t i = 0; i < res->n_fills; i++) {
        //  f->qty becomes the quantity applied (the rest, when within 1e-9 of it), and is
        //  what the fill row, the position and the bar's share then use.
        fks_broker_fill_t *f = &res->fills[i];
        if (fks_order_apply_fill (o, &f->qty, f->price, why, sizeof why) != 0)
            return fks_worker_fail (tx, "broker fill refused: %s", why);
        fks_position_apply (p, o->buy, f->qty, f->price, f->fee);
        s_position_stored (p);
        snaps[i].filled_qty = o->filled_qty;
        snaps[i].avg = o->avg_fill_price;
        snaps[i].complete = o->status == FKS_ORDER_FILLED;
    }
    return FKS_WORKER_OK;
}

static int
s_write_fills (fks_worker_tx_t *tx, s_thread_t *st, const fks_order_t *o,
               const fks_broker_result_t *res, const s_snap_t *snaps)
{
    const char *broker = fks_broker_name (st->x->broker);
    for (size_t i = 0; i < res->n_fills; i++) {
        int rc = s_write_fill (tx, broker, o, &res->fills[i]);
        if (rc == FKS_WORKER_OK)
            rc = s_emit_fill (tx, broker, o, &res->fills[i], &snaps[i]);
        if (rc != FKS_WORKER_OK)
            return rc;
        fks_metric_inc (st->x->m_fills);
    }
    return FKS_WORKER_OK;
}


//  --------------------------------------------------------------------------
//  Placing an order

typedef struct {
    fks_order_t order;
    bool exists;                    /* the row exists (a manual order the gateway reserved) */
    bool reduce_only;
    bool has_ref;
    double ref;                     /* the signal's reference price */
    //  Sized from the position found here (the signal's qty was its worker's estimate):
    bool close_position;            /* all of the position this order reduces */
    bool has_open_qty;              /* this much after closing the opposite position */
    double open_qty;
    bool has_target;                /* the difference to this position */
    double target;
    bool has_share;                 /* this share of the position (0 < share <= 1), */
    double share;
    int decimals;                   /* rounded down to this many decimals (-1: 15 digits) */
    char sized[200];                /* how it was sized here, for the order's row ("": as
                                       the signal said) */
} s_req_t;

static void
s_count (s_thread_t *st, const char *outcome)
{
    fks_metric_inc (fks_metric_get1 (st->x->f_orders, outcome));
}

static int
s_risk_rejected (fks_worker_tx_t *tx, s_thread_t *st, s_req_t *q, const fks_risk_verdict_t *v)
{
    fks_order_t *o = &q->order;
    fks_metric_inc (fks_metric_get1 (st->x->f_risk, v->rule));
    s_count (st, "risk_rejected");
    fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "risk rejected %s %.10g %s: %s",
             o->buy ? "buy" : "sell", o->qty, o->symbol, v->message);
    int rc;
    char reason[400];
    snprintf (reason, sizeof reason, "risk: %s", v->message);
    if (o->has_signal)
        rc = s_signal_status (tx, o, "rejected", reason, "rejected");
    else {
        //  A manual order: its row shows the refusal.
        bool stored;
        if (fks_order_move (o, FKS_ORDER_REJECTED) != 0)
            return fks_worker_fail (tx, "order %s cannot be rejected from %s",
                                    o->client_order_id, fks_order_status_name (o->status));
        rc = s_write_order (tx, fks_broker_name (st->x->broker), o, q->exists, false, NULL,
                            reason, &stored);
        if (rc == FKS_WORKER_OK && !stored)
            return FKS_WORKER_OK;
        if (rc == FKS_WORKER_OK)
            rc = s_signal_status (tx, o, "rejected", reason, "rejected");
    }
    if (rc != FKS_WORKER_OK)
        return rc;
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 6 + (v->has_limit ? 1 : 0) + (v->has_value ? 1 : 0));
    if (o->has_signal)
        fks_pack_kv_id (pk, "signal_id", &o->signal_id);
    else
        fks_pack_kv_id (pk, "order_id", &o->id);
    fks_pack_kv_str (pk, "symbol", o->symbol);
    fks_pack_kv_str (pk, "side", o->buy ? "buy" : "sell");
    fks_pack_kv_f64 (pk, "qty", o->qty);
    fks_pack_kv_str (pk, "rule", v->rule);
    if (v->has_limit)
        fks_pack_kv_f64 (pk, "limit", v->limit);
    if (v->has_value)
        fks_pack_kv_f64 (pk, "value", v->value);
    fks_pack_kv_str (pk, "message", v->message);
    return fks_worker_emit (tx, "risk.rejected", s_corr (o), NULL);
}

//  The orders-per-minute counter (risk.h), shared by every replica: a Redis hash per minute,
//  "fks:opm:<minute>", whose fields are the client order ids sent to a broker in that minute
//  and whose values are the id of the message that reserved each. Counting ids, not calls,
//  makes the count idempotent: when the runtime handles a message again (a batch rolled back
//  and redone message by message, a transient failure retried, a crash and a redelivery), the
//  order finds its own id and is not counted twice. A reservation is made before the breaker
//  and the broker are asked, in the script that checks the limit, so two replicas cannot both
//  take the last slot; it is given back (s_opm_release) when the order does not go to the
//  broker after all (the breaker refuses it) or turns out to exist already. Only the message
//  that made a reservation gives it back, so a copy of a signal (under a new message id) never
//  removes the count of the order it duplicates. What a crash or a permanently failed message
//  leaves reserved stays counted until the minute ends: the counter errs on refusing, never on
//  letting through more than the limit.
typedef struct {
    char key[48];
    char coid[FKS_CLIENT_ORDER_ID_MAX + 12];
    char owner[FKS_ID_STR_SIZE];
    bool ours;                      /* reserved by this message (now or in an earlier try):
                                       to give back if the order is not placed */
} s_opm_t;

//  KEYS[1] the minute's hash; ARGV client order id, owner, limit. Returns { the count with
//  this order, 1 when the reservation is the owner's }; a count above the limit means
//  refused (nothing reserved).
static const char s_opm_reserve_script[] =
    "local n = redis.call('HLEN', KEYS[1])\n"
    "local owner = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if owner then return { n, owner == ARGV[2] and 1 or 0 } end\n"
    "if n >= tonumber(ARGV[3]) then return { n + 1, 0 } end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "if n == 0 then redis.call('EXPIRE', KEYS[1], 120) end\n"
    "return { n + 1, 1 }\n";

static const char s_opm_release_script[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
    "  return redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "end\n"
    "return 0\n";

//  Reserves o's place in the current minute: *placed is the count with it (above the limit:
//  refused, nothing reserved). FKS_WORKER_OK or the failure.
static int
s_opm_reserve (fks_worker_tx_t *tx, s_thread_t *st, const fks_order_t *o, s_opm_t *slot,
               int64_t *placed)
{
    memset (slot, 0, sizeof *slot);
    snprintf (slot->key, sizeof slot->key, "fks:opm:%" PRId64, fks_now_ms () / 60000);
    snprintf (slot->coid, sizeof slot->coid, "%s", o->client_order_id);
    fks_id_format (&fks_worker_msg (tx)->id, slot->owner);
    char limit[24];
    snprintf (limit, sizeof limit, "%" PRId64, st->x->cfg.limits.max_orders_per_minute);
    const char *argv[4] = { slot->key, slot->coid, slot->owner, limit };
    fks_redis_err_t err;
    redisReply *r = fks_redis_eval (fks_worker_redis (tx), s_opm_reserve_script, 1, 4, argv, NULL,
                                    &err);
    if (!r)
        return fks_worker_redis_error (tx, &err, "counting orders per minute");
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2
              && r->element[0]->type == REDIS_REPLY_INTEGER
              && r->element[1]->type == REDIS_REPLY_INTEGER;
    if (ok) {
        *placed = (int64_t) r->element[0]->integer;
        slot->ours = r->element[1]->integer == 1;
    }
    freeReplyObject (r);
    if (!ok)
        return fks_worker_retry (tx, "counting orders per minute: unexpected reply");
    return FKS_WORKER_OK;
}

//  Gives back what s_opm_reserve reserved for this message (nothing when it holds nothing).
static int
s_opm_release (fks_worker_tx_t *tx, s_opm_t *slot)
{
    if (!slot->ours)
        return FKS_WORKER_OK;
    const char *argv[3] = { slot->key, slot->coid, slot->owner };
    fks_redis_err_t err;
    redisReply *r = fks_redis_eval (fks_worker_redis (tx), s_opm_release_script, 1, 3, argv, NULL,
                                    &err);
    if (!r)
        return fks_worker_redis_error (tx, &err, "giving back an order's place in the minute");
    freeReplyObject (r);
    slot->ours = false;
    return FKS_WORKER_OK;
}

//  May the order coid go to the broker? 1 yes, 0 no (breaker open: bs says why), or a worker
//  error (negative).
static int
s_breaker_allow (fks_worker_tx_t *tx, s_thread_t *st, const char *coid,
                 fks_breaker_status_t *bs)
{
    fks_breaker_transition_t tr;
    fks_redis_err_t rerr;
    int allowed = fks_breaker_allow (st->breaker, coid, fks_now_ms (), bs, &tr, &rerr);
    if (allowed < 0)
        return fks_worker_redis_error (tx, &rerr, "asking the circuit breaker");
    int rc = s_breaker_event (tx, st, tr, bs);
    if (rc != FKS_WORKER_OK)
        return rc;
    return allowed;
}

//  The parameters of ex_place / ex_place_many for one order, formatted into b.
typedef struct {
    char id[FKS_ID_STR_SIZE], sid[FKS_ID_STR_SIZE], cid[FKS_ID_STR_SIZE], fid[FKS_ID_STR_SIZE];
    char qty[48], lim[48], filled[48], avg[48], fq[48], fp[48], fee[48];
    const char *v[23];
} s_place_values_t;

//  The order row's reason: the broker's, else note (how the order was sized), else none.
static const char *
s_order_reason (const fks_broker_result_t *res, const char *note)
{
    if (res->outcome != FKS_BROKER_ACCEPTED && res->reason[0])
        return res->reason;
    return note && note[0] ? note : NULL;
}

static int
s_place_values (s_place_values_t *b, const char *broker, const fks_order_t *o,
                const fks_broker_result_t *res, const char *note, const char *sig_status,
                const char *inbox_status)
{
    const fks_broker_fill_t *f = res->n_fills == 1 ? &res->fills[0] : NULL;
    fks_id_t fill_id;
    if (f && fks_id_new (&fill_id) != 0)
        return -1;
    const char *v[23] = {
        fks_worker_uuid (b->id, &o->id), o->client_order_id,
        o->has_signal ? fks_worker_uuid (b->sid, &o->signal_id) : NULL,
        o->has_corr ? fks_worker_uuid (b->cid, &o->corr) : NULL,
        o->symbol, o->buy ? "buy" : "sell", o->limit ? "limit" : "market",
        fks_worker_num (b->qty, o->qty), o->limit ? fks_worker_num (b->lim, o->limit_price) : NULL,
        fks_order_status_name (o->status), fks_worker_num (b->filled, o->filled_qty),
        o->filled_qty > 0 ? fks_worker_num (b->avg, o->avg_fill_price) : NULL,
        broker, res->exchange_order_id[0] ? res->exchange_order_id : NULL,
        s_order_reason (res, note),
        f ? fks_worker_uuid (b->fid, &fill_id) : NULL,
        f ? f->fill_id : NULL,
        f ? fks_worker_num (b->fq, f->qty) : NULL,
        f ? fks_worker_num (b->fp, f->price) : NULL,
        f ? fks_worker_num (b->fee, f->fee) : NULL,
        f && f->fee_asset[0] ? f->fee_asset : NULL,
        sig_status, inbox_status
    };
    memcpy (b->v, v, sizeof v);
    return 0;
}

//  The common write: a new order with at most one fill, and the statuses. Alone, in one
//  statement now (*stored false when the order existed already); in a batch, gathered for
//  s_flush, which writes them all in one statement and, should one exist already, has the
//  batch handled again message by message.
static int
s_write_placed (fks_worker_tx_t *tx, s_thread_t *st, const char *broker, const fks_order_t *o,
                const fks_broker_result_t *res, const char *note, const char *inbox_status,
                bool *stored)
{
    if (fks_worker_batch_size (tx) > 1) {
        if (st->n_placed == st->cap_placed) {
            size_t cap = st->cap_placed ? st->cap_placed * 2 : 64;
            s_placed_t *p = realloc (st->placed, cap * sizeof *p);
            if (!p)
                return fks_worker_retry (tx, "out of memory");
            st->placed = p;
            st->cap_placed = cap;
        }
        s_placed_t *p = &st->placed[st->n_placed++];
        *p = (s_placed_t) { *o, *res, inbox_status, "" };
        snprintf (p->note, sizeof p->note, "%s", note ? note : "");
        *stored = true;
        return FKS_WORKER_OK;
    }
    s_place_values_t b;
    if (s_place_values (&b, broker, o, res, note, "ordered", inbox_status) != 0)
        return fks_worker_retry (tx, "no random bytes for an id");
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_place", 23, b.v, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "writing the order");
    *stored = PQntuples (r) == 1;
    PQclear (r);
    return FKS_WORKER_OK;
}

static void
s_placed_free (s_placed_batch_t *b)
{
    for (int k = 0; k < 23; k++)
        fks_worker_array_free (&b->col[k]);
}

//  Frees the gathered writes' statements (both free functions may run twice).
static void
s_gathered_release (s_thread_t *st)
{
    s_placed_free (&st->placed_batch);
    s_save_free (&st->save);
    st->placed_batch.any = st->save.any = false;
}

static int
s_placed_prepare (fks_worker_tx_t *tx, s_thread_t *st, s_placed_batch_t *b)
{
    b->any = false;
    if (st->n_placed == 0)
        return FKS_WORKER_OK;
    const char *broker = fks_broker_name (st->x->broker);
    for (int k = 0; k < 23; k++)
        fks_worker_array_init (&b->col[k]);
    int rc = FKS_WORKER_OK;
    for (size_t i = 0; i < st->n_placed && rc == FKS_WORKER_OK; i++) {
        s_placed_t *p = &st->placed[i];
        s_place_values_t v;
        if (s_place_values (&v, broker, &p->order, &p->res, p->note, "ordered",
                            p->inbox_status) != 0)
            rc = fks_worker_retry (tx, "no random bytes for an id");
        for (int k = 0; rc == FKS_WORKER_OK && k < 23; k++)
            fks_worker_array_add (&b->col[k], v.v[k]);
    }
    for (int k = 0; rc == FKS_WORKER_OK && k < 23; k++)
        if (!(b->values[k] = fks_worker_array_end (&b->col[k])))
            rc = fks_worker_retry (tx, "out of memory");
    if (rc != FKS_WORKER_OK) {
        s_placed_free (b);
        st->n_placed = 0;
        return rc;
    }
    b->call = (fks_pg_call_t) { "ex_place_many", 23, b->values, NULL, NULL };
    b->any = true;
    return FKS_WORKER_OK;
}

//  The statement's answer: every order new, or the transaction fails (and its messages are
//  handled one by one).
static int
s_placed_check (fks_worker_tx_t *tx, s_thread_t *st, PGresult *r)
{
    long long n = atoll (PQgetvalue (r, 0, 0));
    size_t placed = st->n_placed;
    st->n_placed = 0;
    if (n != (long long) placed)
        return fks_worker_fail (tx, "%zu of %zu orders exist already: handling them one by one",
                                placed - (size_t) n, placed);
    return FKS_WORKER_OK;
}

static int
s_write_placed_many (fks_worker_tx_t *tx, s_thread_t *st)
{
    return s_write_gathered (tx, st, true, false, false);
}

//  A paper order's outcome in a batch, settled with the breaker by s_flush.
static int
s_outcome_add (fks_worker_tx_t *tx, s_thread_t *st, const fks_order_t *o, bool ok,
               const char *reason)
{
    if (st->n_outcomes == st->cap_outcomes) {
        size_t cap = st->cap_outcomes ? st->cap_outcomes * 2 : 64;
        s_outcome_t *p = realloc (st->outcomes, cap * sizeof *p);
        if (!p)
            return fks_worker_retry (tx, "out of memory");
        st->outcomes = p;
        st->cap_outcomes = cap;
    }
    s_outcome_t *e = &st->outcomes[st->n_outcomes++];
    e->ok = ok;
    snprintf (e->coid, sizeof e->coid, "%s", o->client_order_id);
    if (!ok)
        snprintf (st->failure, sizeof st->failure, "%s", reason);
    return FKS_WORKER_OK;
}

//  All the batch's paper outcomes in one round trip: either the breaker lets every order
//  through (recorded; breaker.opened / breaker.closed emitted if that changed it), or the
//  batch is handled again message by message, where each order asks for itself. Outcomes the
//  breaker has already (by client order id: this batch redone) are not recorded again.
static int
s_settle_breaker (fks_worker_tx_t *tx, s_thread_t *st)
{
    if (st->n_outcomes == 0)
        return FKS_WORKER_OK;
    if (!st->breaker)
        return fks_worker_retry (tx, "the breaker could not be set up");
    size_t count = st->n_outcomes;
    st->n_outcomes = 0;
    const char **coids = calloc (count, sizeof *coids);
    bool *ok = calloc (count, sizeof *ok);
    if (!coids || !ok) {
        free (coids);
        free (ok);
        return fks_worker_retry (tx, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        coids[i] = st->outcomes[i].coid;
        ok[i] = st->outcomes[i].ok;
    }
    fks_breaker_status_t bs;
    bool opened = false, closed = false;
    fks_redis_err_t rerr;
    int n = fks_breaker_try_many (st->breaker, coids, ok, count,
                                  st->failure[0] ? st->failure : NULL, fks_now_ms (), &bs,
                                  &opened, &closed, &rerr);
    free (coids);
    free (ok);
    if (n < 0)
        return fks_worker_redis_error (tx, &rerr, "settling orders with the circuit breaker");
    if (n == 0)
        return fks_worker_fail (tx, "the circuit breaker would refuse an order of this batch "
                                "of %zu: handling them one by one", count);
    int rc = FKS_WORKER_OK;
    if (closed)
        rc = s_breaker_event (tx, st, FKS_BREAKER_CLOSED_NOW, &bs);
    if (rc == FKS_WORKER_OK && opened)
        rc = s_breaker_event (tx, st, FKS_BREAKER_OPENED, &bs);
    if (rc == FKS_WORKER_OK && !opened && !closed)
        fks_metric_set (st->x->m_breaker, (double) bs.state);
    return rc;
}

static int s_earlier_pending (fks_worker_tx_t *tx, const fks_order_t *o);

//  A share of the position (position_share): that share of pos on the side it is of (the other
//  side for a reduce-only order, its own for an add), rounded down to the signal worker's
//  decimals. A reduce-only share with nothing there is left to s_place, which refuses any
//  reduce-only order with nothing to reduce (or waits for the entry ahead of it); an add with
//  nothing to add to, or a share that rounds to nothing, is refused here (*done).
static int
s_size_share (fks_worker_tx_t *tx, s_thread_t *st, s_req_t *q, const fks_position_t *pos,
              bool *done)
{
    fks_order_t *o = &q->order;
    double base;
    double qty = fks_qty_position_share (pos->qty, o->buy, q->reduce_only, q->share,
                                         q->decimals, &base);
    const char *of = o->buy != q->reduce_only ? "long" : "short";
    if (!(base > 0) && q->reduce_only)
        return FKS_WORKER_OK;
    if (!(base > 0)) {
        int rc;
        if (o->has_signal && (rc = s_earlier_pending (tx, o)) != FKS_WORKER_OK)
            return rc;
        fks_risk_verdict_t v = { .rule = "position_share", .has_value = true,
                                 .value = pos->qty };
        snprintf (v.message, sizeof v.message, "nothing to add to: no open %s position in %s "
                  "for a %s of %.10g %% of it", of, o->symbol, o->buy ? "buy" : "sell",
                  q->share * 100);
        *done = true;
        return s_risk_rejected (tx, st, q, &v);
    }
    if (!(qty > 0)) {
        fks_risk_verdict_t v = { .rule = "position_share", .has_value = true,
                                 .value = pos->qty };
        snprintf (v.message, sizeof v.message, "%.10g %% of the %s position of %.10g in %s "
                  "rounds to nothing at %d decimals", q->share * 100, of, base, o->symbol,
                  q->decimals);
        *done = true;
        return s_risk_rejected (tx, st, q, &v);
    }
    snprintf (q->sized, sizeof q->sized, "sized when ordered: %.10g %% of the %s position of "
              "%.10g is %.10g (the signal's estimate was %.10g)", q->share * 100, of, base, qty,
              o->qty);
    fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "%s %s: %s",
             o->buy ? "buy" : "sell", o->symbol, q->sized);
    o->qty = qty;
    return FKS_WORKER_OK;
}

//  A signal sized by the position: its quantity (and for a target its side) from pos, the
//  position locked for this transaction, instead of the signal worker's estimate. An order that
//  has nothing left to do is refused (risk.rejected) with the numbers, and *done is set: the
//  signal's outcome is recorded, there is nothing to place.
static int
s_size_from_position (fks_worker_tx_t *tx, s_thread_t *st, s_req_t *q,
                      const fks_position_t *pos, bool *done)
{
    fks_order_t *o = &q->order;
    *done = false;
    double opposite = o->buy ? (pos->qty < 0 ? -pos->qty : 0) : (pos->qty > 0 ? pos->qty : 0);
    if (q->has_share)
        return s_size_share (tx, st, q, pos, done);
    if (q->has_target) {
        double delta = fks_qty_stored (q->target - pos->qty);
        if (fabs (delta) <= 1e-12 * fmax (1, fabs (q->target))) {
            fks_risk_verdict_t v = { .rule = "target", .has_value = true, .value = pos->qty,
                                     .has_limit = true, .limit = q->target };
            snprintf (v.message, sizeof v.message, "already at the target position %.10g in %s",
                      q->target, o->symbol);
            *done = true;
            return s_risk_rejected (tx, st, q, &v);
        }
        bool buy = delta > 0;
        if (o->limit && buy != o->buy) {
            fks_risk_verdict_t v = { .rule = "target", .has_value = true, .value = pos->qty,
                                     .has_limit = true, .limit = q->target };
            snprintf (v.message, sizeof v.message, "the target position %.10g in %s now needs a "
                      "%s; the limit order was for a %s", q->target, o->symbol,
                      buy ? "buy" : "sell", o->buy ? "buy" : "sell");
            *done = true;
            return s_risk_rejected (tx, st, q, &v);
        }
        o->buy = buy;
        o->qty = fabs (delta);
        //  Only reducing: towards flat on the same side, never past it.
        q->reduce_only = q->target == 0
                         || ((q->target > 0) == (pos->qty > 0) && fabs (q->target) < fabs (pos->qty));
    }
    else if (q->close_position && opposite > 0)
        o->qty = opposite;          /* all of it; nothing open on that side: refused below */
    else if (q->has_open_qty)
        o->qty = fks_qty_stored (q->open_qty + opposite);
    return FKS_WORKER_OK;
}

//  An exit (a reduce-only signal) that finds nothing to reduce may have come before its
//  entry: with several ai or execution replicas, the entry's signal, created just before,
//  can still be on its way, in another replica's hands, or queued behind the exit. While such
//  a signal of the symbol (created up to S_EARLIER_WINDOW_MS before it, not yet ordered, not
//  handled earlier in this transaction) exists, the exit is handed back for later
//  (FKS_WORKER_LATER: the transaction is rolled back, which lets the position's lock go, and
//  the message goes back to the bus behind what is queued), so the entry is filled first;
//  after S_EARLIER_WINDOW_MS of handing it back (not by its age: in a backlog every signal is
//  old), and once the signal it waits for is old enough that, had the bus lost its message,
//  the reconciler would have published it again (fks_worker_keep_waiting), it is decided as
//  it stands. FKS_WORKER_OK or FKS_WORKER_LATER.
static int
s_earlier_pending (fks_worker_tx_t *tx, const fks_order_t *o)
{
    int n;
    int64_t newest;
    int rc = fks_worker_count_before (tx, "ex_earlier_pending", o->symbol, &o->signal_id,
                                      fks_id_ms (&o->signal_id) - S_EARLIER_WINDOW_MS,
                                      "signal_id", &n, &newest);
    if (rc != FKS_WORKER_OK || n == 0 || !fks_worker_keep_waiting (tx, S_EARLIER_WINDOW_MS,
                                                                   newest))
        return rc;
    return fks_worker_later (tx, "nothing to reduce in %s yet, and %d signal%s of it created "
                             "before this one not ordered yet: waiting for %s", o->symbol, n,
                             n == 1 ? "" : "s", n == 1 ? "it" : "them");
}

static int
s_place (fks_worker_tx_t *tx, s_thread_t *st, s_req_t *q)
{
    fks_exec_t *x = st->x;
    fks_order_t *o = &q->order;
    const char *broker = fks_broker_name (x->broker);
    if (!st->breaker)
        return fks_worker_retry (tx, "the breaker could not be set up");

    //  1. The position, locked for the rest of the transaction.
    int rc = FKS_WORKER_OK;
    s_pos_entry_t *pe = s_position (tx, st, o->symbol, &rc);
    if (!pe)
        return rc;
    fks_position_t pos = pe->pos;

    //  2. What depends on the position is sized from this one, which the lock makes current:
    //  the signal worker read it before the orders of earlier alerts were filled.
    bool done;
    rc = s_size_from_position (tx, st, q, &pos, &done);
    if (rc != FKS_WORKER_OK || done)
        return rc;
    if (q->reduce_only) {
        //  A reduce-only order is cut to what is open, or refused when nothing is.
        bool opposite = o->buy ? pos.qty < 0 : pos.qty > 0;
        if (!opposite && o->has_signal
            && (rc = s_earlier_pending (tx, o)) != FKS_WORKER_OK)
            return rc;
        if (!opposite) {
            fks_risk_verdict_t v = { .rule = "reduce_only", .has_value = true,
                                     .value = pos.qty };
            int n = snprintf (v.message, sizeof v.message, "nothing to reduce: no open %s "
                              "position in %s", o->buy ? "short" : "long", o->symbol);
            if (q->has_share && n > 0 && (size_t) n < sizeof v.message)
                snprintf (v.message + n, sizeof v.message - (size_t) n, " for a %s of %.10g %% "
                          "of it", o->buy ? "buy" : "sell", q->share * 100);
            return s_risk_rejected (tx, st, q, &v);
        }
        if (o->qty > fabs (pos.qty))
            o->qty = fabs (pos.qty);
    }

    //  3. Risk, rate and breaker. The size rules see the symbol's other open orders on this
    //  order's side (max_position), and a limit order at the price it may fill at.
    fks_quote_t quote = { .has_ref = q->has_ref, .ref = q->ref };
    rc = s_last_price (tx, st, o->symbol, &quote.has_last, &quote.last);
    if (rc != FKS_WORKER_OK)
        return rc;
    fks_risk_order_t ro = {
        .symbol = o->symbol, .buy = o->buy, .qty = o->qty,
        .has_price = quote.has_last || quote.has_ref,
        .price = quote.has_last ? quote.last : quote.ref,
        .limit = o->limit, .limit_price = o->limit_price,
        .reduce_only = q->reduce_only,
        .position = pos.qty,
        .resting = o->buy ? pe->open_buy : pe->open_sell
    };
    fks_risk_verdict_t v;
    if (fks_risk_check (&x->cfg.limits, &ro, &v) != 0)
        return s_risk_rejected (tx, st, q, &v);
    s_opm_t slot = { .ours = false };
    if (x->cfg.limits.max_orders_per_minute > 0) {
        int64_t placed = 0;
        if ((rc = s_opm_reserve (tx, st, o, &slot, &placed)) != FKS_WORKER_OK)
            return rc;
        if (fks_risk_check_rate (&x->cfg.limits, placed, &v) != 0)
            return s_risk_rejected (tx, st, q, &v);
    }
    //  4. The breaker and the broker. A simulated broker answers before the breaker is
    //  asked, which then decides and records in one round trip; a real one is asked only
    //  once the breaker allows it, and its outcome recorded afterwards. The breaker knows
    //  orders by client order id: one whose outcome it has already (this message handled
    //  again) was let through then and is neither refused nor recorded again.
    //  What the breaker says this order changed is published with the order, once it is
    //  written (step 6): an order that exists already (a copy of its signal, handled by
    //  another replica meanwhile) publishes nothing, not even the transition the breaker
    //  reports again for its client order id (common/breaker.h).
    fks_breaker_status_t bs;
    memset (&bs, 0, sizeof bs);
    fks_breaker_transition_t tr = FKS_BREAKER_NO_CHANGE;
    bool told = false;              /* bs and tr hold an answer of fks_breaker_try / _record */
    fks_redis_err_t rerr;
    fks_broker_result_t res;
    int allowed;
    const char *coid = o->client_order_id;
    if (fks_broker_simulated (x->broker)) {
        if (fks_broker_submit (x->broker, o, &quote, &res) != 0)
            return fks_worker_retry (tx, "broker %s did not answer: %s", broker, res.reason);
        bool ok = res.outcome != FKS_BROKER_REJECTED;
        if (fks_worker_batch_size (tx) > 1) {
            //  Settled for the whole batch in s_flush (all or nothing).
            if ((rc = s_outcome_add (tx, st, o, ok, res.reason)) != FKS_WORKER_OK)
                return rc;
            allowed = 1;
        }
        else {
            allowed = fks_breaker_try (st->breaker, coid, ok, res.reason, fks_now_ms (), &bs,
                                       &tr, &rerr);
            if (allowed < 0)
                return fks_worker_redis_error (tx, &rerr, "asking the circuit breaker");
            told = true;
        }
    }
    else {
        allowed = s_breaker_allow (tx, st, coid, &bs);
        if (allowed < 0)
            return allowed;
        if (allowed) {
            if (fks_broker_submit (x->broker, o, &quote, &res) != 0) {
                if (fks_breaker_record (st->breaker, coid, false, res.reason, fks_now_ms (),
                                        &bs, &tr, &rerr) == 0)
                    fks_metric_set (x->m_breaker, (double) bs.state);
                return fks_worker_retry (tx, "broker %s did not answer: %s", broker,
                                         res.reason);
            }
            if (fks_breaker_record (st->breaker, coid, res.outcome != FKS_BROKER_REJECTED,
                                    res.reason, fks_now_ms (), &bs, &tr, &rerr) != 0)
                return fks_worker_redis_error (tx, &rerr, "recording with the circuit breaker");
            told = true;
        }
    }
    if (!allowed) {
        if (told && (rc = s_breaker_event (tx, st, tr, &bs)) != FKS_WORKER_OK)
            return rc;
        //  Not sent after all: its place in the minute goes back.
        if ((rc = s_opm_release (tx, &slot)) != FKS_WORKER_OK)
            return rc;
        memset (&v, 0, sizeof v);
        snprintf (v.rule, sizeof v.rule, "breaker_open");
        snprintf (v.message, sizeof v.message, "circuit breaker %s is open: %.160s",
                  x->cfg.breaker_scope, bs.reason);
        return s_risk_rejected (tx, st, q, &v);
    }

    //  5. Its answer, applied in memory.
    s_snap_t snaps[FKS_BROKER_MAX_FILLS];
    if (res.outcome == FKS_BROKER_REJECTED) {
        if (fks_order_move (o, FKS_ORDER_REJECTED) != 0)
            return fks_worker_fail (tx, "order %s cannot be rejected from %s",
                                    o->client_order_id, fks_order_status_name (o->status));
    }
    else {
        if (fks_order_move (o, FKS_ORDER_SUBMITTED) != 0)
            return fks_worker_fail (tx, "order %s cannot be submitted from %s",
                                    o->client_order_id, fks_order_status_name (o->status));
        if ((rc = s_apply_fills (tx, o, &pos, &res, snaps)) != FKS_WORKER_OK)
            return rc;
        if (res.outcome == FKS_BROKER_CANCELLED && fks_order_is_open (o->status))
            fks_order_move (o, FKS_ORDER_CANCELLED);
    }

    //  6. Written, then told.
    bool rejected = res.outcome == FKS_BROKER_REJECTED;
    const char *inbox_status = rejected ? "failed"
                             : o->status == FKS_ORDER_FILLED ? "filled" : "ordered";
    bool stored = false;
    if (!q->exists && res.n_fills <= 1) {
        rc = s_write_placed (tx, st, broker, o, &res, q->sized, inbox_status, &stored);
        if (rc != FKS_WORKER_OK)
            return rc;
    }
    else {
        rc = s_write_order (tx, broker, o, q->exists, false, res.exchange_order_id,
                            s_order_reason (&res, q->sized), &stored);
        if (rc == FKS_WORKER_OK && stored) {
            for (size_t i = 0; rc == FKS_WORKER_OK && i < res.n_fills; i++)
                rc = s_write_fill (tx, broker, o, &res.fills[i]);
            if (rc == FKS_WORKER_OK)
                rc = s_signal_status (tx, o, "ordered", NULL, inbox_status);
        }
        if (rc != FKS_WORKER_OK)
            return rc;
    }
    if (!stored) {
        fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL,
                 "order %s exists already: nothing to do", o->client_order_id);
        return s_opm_release (tx, &slot);
    }
    if (told && (rc = s_breaker_event (tx, st, tr, &bs)) != FKS_WORKER_OK)
        return rc;
    if (rejected) {
        s_count (st, "rejected");
        fks_log (FKS_LOG_WARN, fks_worker_corr_text (tx), NULL, "broker %s rejected order %s: "
                 "%s", broker, o->client_order_id, res.reason);
        return s_emit_ended (tx, "order.rejected", o, res.reason);
    }
    if ((rc = s_emit_submitted (tx, broker, o, res.exchange_order_id)) != FKS_WORKER_OK)
        return rc;
    for (size_t i = 0; i < res.n_fills; i++) {
        if ((rc = s_emit_fill (tx, broker, o, &res.fills[i], &snaps[i])) != FKS_WORKER_OK)
            return rc;
        fks_metric_inc (x->m_fills);
    }
    if (res.n_fills > 0) {
        pe->pos = pos;
        pe->dirty = true;
        s_moves_add (st, pe->symbol, o->buy, res.fills, res.n_fills);
        double last = res.fills[res.n_fills - 1].price;
        rc = s_emit_position (tx, o->symbol, &pos, quote.has_last ? quote.last : last, o);
        if (rc != FKS_WORKER_OK)
            return rc;
    }
    if (o->status == FKS_ORDER_CANCELLED
        && (rc = s_emit_ended (tx, "order.cancelled", o, res.reason)) != FKS_WORKER_OK)
        return rc;
    //  What it left resting counts against the next orders of this transaction (max_position).
    if (fks_order_is_open (o->status)) {
        if (o->buy)
            pe->open_buy += o->qty - o->filled_qty;
        else
            pe->open_sell += o->qty - o->filled_qty;
    }
    s_count (st, o->status == FKS_ORDER_FILLED ? "filled"
               : o->status == FKS_ORDER_PARTIALLY_FILLED ? "partially_filled"
               : o->status == FKS_ORDER_CANCELLED ? "cancelled" : "resting");
    return FKS_WORKER_OK;
}


//  --------------------------------------------------------------------------
//  Handlers

static int
s_symbol (fks_worker_tx_t *tx, const fks_envelope_t *env, char out[FKS_SYMBOL_MAX])
{
    char raw[65], why[160];
    if (fks_envelope_get_str (env, "symbol", raw, sizeof raw) != 0)
        return fks_worker_fail (tx, "no usable symbol");
    if (fks_symbol_normalize (raw, out, why, sizeof why) != 0)
        return fks_worker_fail (tx, "%s", why);
    return FKS_WORKER_OK;
}

static int
s_on_signal (fks_worker_tx_t *tx, s_thread_t *st, const fks_envelope_t *env)
{
    s_req_t q;
    memset (&q, 0, sizeof q);
    fks_order_t *o = &q.order;
    char side[8], type[8];
    int rc = s_symbol (tx, env, o->symbol);
    if (rc != FKS_WORKER_OK)
        return rc;
    if (fks_envelope_get_id (env, "signal_id", &o->signal_id) != 0
        || fks_envelope_get_str (env, "side", side, sizeof side) != 0
        || fks_envelope_get_f64 (env, "qty", &o->qty) != 0
        || fks_envelope_get_str (env, "order_type", type, sizeof type) != 0)
        return fks_worker_fail (tx, "signal without signal_id, side, qty or order_type");
    if (!isfinite (o->qty) || o->qty <= 0)
        return fks_worker_fail (tx, "signal quantity %.10g is not positive", o->qty);
    //  The symbol's lock before the signal's status: see s_signal_closed.
    if (!s_position (tx, st, o->symbol, &rc))
        return rc;
    bool closed = false;
    if ((rc = s_signal_closed (tx, st, &o->signal_id, &closed)) != FKS_WORKER_OK)
        return rc;
    if (closed) {
        //  Its end is recorded already (signal.filtered, risk.rejected...): nothing to do.
        char id[FKS_ID_STR_SIZE];
        fks_log (FKS_LOG_INFO, NULL, NULL, "signal %s was filtered, refused or failed before: "
                 "not ordered", fks_worker_uuid (id, &o->signal_id));
        s_count (st, "closed_signal");
        return FKS_WORKER_OK;
    }
    o->has_signal = true;
    o->buy = strcmp (side, "buy") == 0;
    o->limit = strcmp (type, "limit") == 0;
    if (o->limit && (fks_envelope_get_f64 (env, "limit_price", &o->limit_price) != 0
                     || !(o->limit_price > 0)))
        return fks_worker_fail (tx, "limit signal without a positive limit_price");
    q.has_ref = fks_envelope_get_f64 (env, "price", &q.ref) == 0 && q.ref > 0;
    bool reduce = false;
    q.reduce_only = fks_envelope_get_bool (env, "reduce_only", &reduce) == 0 && reduce;
    bool close = false;
    q.close_position = fks_envelope_get_bool (env, "close_position", &close) == 0 && close;
    q.has_open_qty = fks_envelope_get_f64 (env, "open_qty", &q.open_qty) == 0;
    q.has_target = fks_envelope_get_f64 (env, "target", &q.target) == 0;
    if ((q.has_open_qty && !(isfinite (q.open_qty) && q.open_qty > 0))
        || (q.has_target && !isfinite (q.target)))
        return fks_worker_fail (tx, "signal with an unusable open_qty or target");
    //  A share of the position: more than 0 and at most all of it, and the decimals to round
    //  it down to (absent: 15 significant digits).
    int src = fks_envelope_get_f64 (env, "position_share", &q.share);
    int64_t dec = -1;
    int drc = fks_envelope_get_i64 (env, "qty_decimals", &dec);
    q.has_share = src == 0;
    if (src < 0 || (q.has_share && !fks_qty_share_ok (q.share)))
        return fks_worker_fail (tx, "signal with an unusable position_share (a share of the "
                                "position: more than 0, at most 1)");
    if (drc < 0 || (drc == 0 && (dec < 0 || dec > FKS_QTY_DECIMALS_MAX)))
        return fks_worker_fail (tx, "signal with unusable qty_decimals (0 to %d)",
                                FKS_QTY_DECIMALS_MAX);
    q.decimals = drc == 0 ? (int) dec : -1;
    const fks_envelope_hdr_t *hdr = fks_worker_msg (tx);
    if (!fks_id_is_nil (&hdr->corr)) {
        o->has_corr = true;
        o->corr = hdr->corr;
    }
    if (fks_id_new (&o->id) != 0)
        return fks_worker_retry (tx, "no random bytes for an id");
    fks_order_client_id (&o->signal_id, o->client_order_id);
    o->status = FKS_ORDER_NEW;
    return s_place (tx, st, &q);
}

static int
s_get_order (fks_worker_tx_t *tx, const fks_id_t *id, fks_order_t *o, bool *found)
{
    char text[FKS_ID_STR_SIZE];
    const char *values[1] = { fks_worker_uuid (text, id) };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_order_get", 1, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "reading the order");
    *found = PQntuples (r) == 1;
    int rc = FKS_WORKER_OK;
    if (*found && s_order_from_row (r, 0, o) != 0)
        rc = fks_worker_fail (tx, "order row %s is unreadable", text);
    PQclear (r);
    return rc;
}

static int
s_on_order_requested (fks_worker_tx_t *tx, s_thread_t *st, const fks_envelope_t *env)
{
    s_req_t q;
    memset (&q, 0, sizeof q);
    fks_order_t *o = &q.order;
    fks_id_t order_id;
    char side[8], type[8];
    if (fks_envelope_get_id (env, "order_id", &order_id) != 0)
        return fks_worker_fail (tx, "order.requested without order_id");
    int rc = s_symbol (tx, env, o->symbol);
    if (rc != FKS_WORKER_OK)
        return rc;
    char symbol[FKS_SYMBOL_MAX];
    snprintf (symbol, sizeof symbol, "%s", o->symbol);
    //  The gateway may have reserved the row already: then it is the order (in state new).
    bool found;
    if ((rc = s_get_order (tx, &order_id, o, &found)) != FKS_WORKER_OK)
        return rc;
    if (found && o->status != FKS_ORDER_NEW) {
        fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "order %s is %s already: "
                 "nothing to do", o->client_order_id, fks_order_status_name (o->status));
        return FKS_WORKER_OK;
    }
    q.exists = found;
    if (!found) {
        memset (o, 0, sizeof *o);
        o->id = order_id;
        snprintf (o->symbol, sizeof o->symbol, "%s", symbol);
        if (fks_envelope_get_str (env, "side", side, sizeof side) != 0
            || fks_envelope_get_str (env, "type", type, sizeof type) != 0
            || fks_envelope_get_f64 (env, "qty", &o->qty) != 0)
            return fks_worker_fail (tx, "order.requested without side, type or qty");
        if (!isfinite (o->qty) || o->qty <= 0)
            return fks_worker_fail (tx, "order quantity %.10g is not positive", o->qty);
        o->buy = strcmp (side, "buy") == 0;
        o->limit = strcmp (type, "limit") == 0;
        if (o->limit && (fks_envelope_get_f64 (env, "limit_price", &o->limit_price) != 0
                         || !(o->limit_price > 0)))
            return fks_worker_fail (tx, "limit order without a positive limit_price");
        fks_order_client_id (&o->id, o->client_order_id);
        const fks_envelope_hdr_t *hdr = fks_worker_msg (tx);
        if (!fks_id_is_nil (&hdr->corr)) {
            o->has_corr = true;
            o->corr = hdr->corr;
        }
    }
    if (!o->client_order_id[0])
        fks_order_client_id (&o->id, o->client_order_id);
    o->status = FKS_ORDER_NEW;
    return s_place (tx, st, &q);
}

static int
s_on_cancel (fks_worker_tx_t *tx, s_thread_t *st, const fks_envelope_t *env)
{
    fks_id_t order_id;
    if (fks_envelope_get_id (env, "order_id", &order_id) != 0)
        return fks_worker_fail (tx, "order.cancel_requested without order_id");
    char by[129] = "";
    if (fks_envelope_get_str (env, "requested_by", by, sizeof by) != 0)
        by[0] = '\0';
    //  Orders placed earlier in this transaction must be in the table before it is read.
    int rc = s_write_placed_many (tx, st);
    if (rc != FKS_WORKER_OK)
        return rc;
    fks_order_t o;
    bool found;
    rc = s_get_order (tx, &order_id, &o, &found);
    if (rc != FKS_WORKER_OK)
        return rc;
    char text[FKS_ID_STR_SIZE];
    fks_id_format (&order_id, text);
    if (!found) {
        fks_log (FKS_LOG_WARN, fks_worker_corr_text (tx), NULL, "cancel of unknown order %s "
                 "ignored", text);
        return FKS_WORKER_OK;
    }
    if (!fks_order_is_open (o.status)) {
        fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "cancel of order %s ignored: it "
                 "is %s", o.client_order_id, fks_order_status_name (o.status));
        return FKS_WORKER_OK;
    }
    fks_exec_t *x = st->x;
    fks_broker_result_t res;
    if (fks_broker_cancel (x->broker, &o, &res) != 0)
        return fks_worker_retry (tx, "broker %s did not answer a cancel: %s",
                                 fks_broker_name (x->broker), res.reason);
    if (res.outcome != FKS_BROKER_CANCELLED) {
        fks_log (FKS_LOG_WARN, fks_worker_corr_text (tx), NULL, "broker kept order %s: %s",
                 o.client_order_id, res.reason);
        return FKS_WORKER_OK;
    }
    char reason[200];
    snprintf (reason, sizeof reason, "cancelled by %s", by[0] ? by : "request");
    bool at_broker = o.status != FKS_ORDER_NEW;
    if (fks_order_move (&o, FKS_ORDER_CANCELLED) != 0)
        return fks_worker_fail (tx, "order %s cannot be cancelled", o.client_order_id);
    s_pos_entry_t *pe = s_cached_position (st, o.symbol);
    if (pe && at_broker)
        s_open_less (pe, o.buy, o.qty - o.filled_qty);
    bool stored;
    if ((rc = s_write_order (tx, fks_broker_name (x->broker), &o, true, false, NULL, reason,
                             &stored)) != FKS_WORKER_OK)
        return rc;
    s_count (st, "cancelled");
    return s_emit_ended (tx, "order.cancelled", &o, reason);
}

//  A bar interval ("1m", "15m", "4h", "1d", "1w", "1M") as its length in ms, or 0 when it is
//  not one. A month counts 28 days, its shortest: a bar's close computed from it is never
//  later than the real one, so a bar that ended before an order was placed is never taken
//  for one that had not.
static int64_t
s_interval_ms (const char *text)
{
    int64_t n = 0;
    size_t i = 0;
    for (; text[i] >= '0' && text[i] <= '9' && i < 4; i++)
        n = n * 10 + (text[i] - '0');
    if (i == 0 || n == 0 || text[i] == '\0' || text[i + 1] != '\0')
        return 0;
    switch (text[i]) {
        case 's': return n * 1000;
        case 'm': return n * 60000;
        case 'h': return n * 3600000;
        case 'd': return n * 86400000;
        case 'w': return n * 7 * 86400000LL;
        case 'M': return n * 28 * 86400000LL;
        default:  return 0;
    }
}

//  A resting reduce-only order meets the position as it is now: cut to it (*cut set, the
//  quantity reduced in o), or ended (*ended set) when it has nothing left to reduce, with
//  order.cancelled naming the rule. FKS_WORKER_OK or the failure.
static int
s_reduce_only_at_fill (fks_worker_tx_t *tx, s_thread_t *st, s_pos_entry_t *pe,
                       const fks_position_t *pos, fks_order_t *o, bool *cut, bool *ended)
{
    *cut = *ended = false;
    bool opposite = o->buy ? pos->qty < 0 : pos->qty > 0;
    double room = opposite ? fabs (pos->qty) : 0;
    double rest = o->qty - o->filled_qty;
    if (rest <= room + 1e-12)
        return FKS_WORKER_OK;
    if (room > 1e-12) {
        o->qty = fks_qty_stored (o->filled_qty + room);
        s_open_less (pe, o->buy, rest - room);
        *cut = true;
        return FKS_WORKER_OK;
    }
    char reason[200];
    snprintf (reason, sizeof reason, "reduce_only: no open %s position in %s left to reduce",
              o->buy ? "short" : "long", o->symbol);
    if (fks_order_move (o, FKS_ORDER_CANCELLED) != 0)
        return fks_worker_fail (tx, "order %s cannot be cancelled", o->client_order_id);
    s_open_less (pe, o->buy, rest);
    bool stored;
    int rc = s_write_order (tx, fks_broker_name (st->x->broker), o, true, false, NULL, reason,
                            &stored);
    if (rc != FKS_WORKER_OK)
        return rc;
    fks_log (FKS_LOG_INFO, NULL, NULL, "order %s cancelled: %s", o->client_order_id, reason);
    s_count (st, "cancelled");
    *ended = true;
    return s_emit_ended (tx, "order.cancelled", o, reason);
}

//  Records this announcement of the bar (bar_marks) and turns *bar into what it adds to the
//  last one offered (fks_bar_since); *fresh false when it adds nothing, or when the symbol's
//  bars come in a shorter interval too (those fill its orders). The caller holds the symbol's
//  position lock. FKS_WORKER_OK or the failure.
static int
s_bar_mark (fks_worker_tx_t *tx, const char *symbol, const char *interval, int64_t len,
            fks_bar_t *bar, bool *fresh)
{
    char t[24], h[32], l[32], c[32], v[32], keep[24], lens[24];
    snprintf (t, sizeof t, "%" PRId64, bar->open_time_ms);
    snprintf (h, sizeof h, "%.17g", bar->high);
    snprintf (l, sizeof l, "%.17g", bar->low);
    snprintf (c, sizeof c, "%.17g", bar->close);
    snprintf (v, sizeof v, "%.17g", bar->volume);
    //  The marks of about the last 16 bars (a day's when the interval is unknown).
    snprintf (keep, sizeof keep, "%" PRId64, len > 0 ? 16 * len : 86400000);
    snprintf (lens, sizeof lens, "%" PRId64, len);
    const char *values[9] = { symbol, interval, t, h, l, c, v, keep, lens };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_bar_mark", 9, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "recording the bar");
    //  A shorter interval's bars of the symbol fill its orders: the longer ones hold the same
    //  trades again.
    int64_t finest = PQntuples (r) == 1 && !PQgetisnull (r, 0, 4)
                     ? strtoll (PQgetvalue (r, 0, 4), NULL, 10) : 0;
    *fresh = !(len > 0 && finest > 0 && finest < len);
    if (*fresh && PQntuples (r) == 1 && !PQgetisnull (r, 0, 0)) {
        fks_bar_t seen = *bar;
        seen.high = fks_worker_parse_num (PQgetvalue (r, 0, 0), 0);
        seen.low = fks_worker_parse_num (PQgetvalue (r, 0, 1), 0);
        seen.close = fks_worker_parse_num (PQgetvalue (r, 0, 2), 0);
        seen.volume = fks_worker_parse_num (PQgetvalue (r, 0, 3), 0);
        *fresh = fks_bar_since (bar, &seen);
    }
    PQclear (r);
    return FKS_WORKER_OK;
}

static int
s_on_bar (fks_worker_tx_t *tx, s_thread_t *st, const fks_envelope_t *env)
{
    char symbol[FKS_SYMBOL_MAX];
    int rc = s_symbol (tx, env, symbol);
    if (rc != FKS_WORKER_OK)
        return rc;
    fks_bar_t bar;
    memset (&bar, 0, sizeof bar);
    if (fks_envelope_get_f64 (env, "open", &bar.open) != 0
        || fks_envelope_get_f64 (env, "high", &bar.high) != 0
        || fks_envelope_get_f64 (env, "low", &bar.low) != 0
        || fks_envelope_get_f64 (env, "close", &bar.close) != 0
        || fks_envelope_get_i64 (env, "open_time", &bar.open_time_ms) != 0)
        return fks_worker_fail (tx, "market.bar without open, high, low, close or open_time");
    if (fks_envelope_get_f64 (env, "volume", &bar.volume) != 0)
        bar.volume = 0;
    if (!(bar.low > 0) || bar.high < bar.low || bar.close < bar.low || bar.close > bar.high
        || bar.open < bar.low || bar.open > bar.high)
        return fks_worker_fail (tx, "market.bar for %s with impossible prices", symbol);
    //  Its close, when its interval says: orders placed after it cannot fill on it.
    char interval[17];
    if (fks_envelope_get_str (env, "interval", interval, sizeof interval) != 0)
        interval[0] = '\0';
    int64_t len = s_interval_ms (interval);
    if (len > 0 && bar.open_time_ms <= INT64_MAX - len)
        bar.close_time_ms = bar.open_time_ms + len;

    fks_redis_err_t rerr;
    if (fks_price_set (fks_worker_redis (tx), symbol, bar.close, bar.open_time_ms, &rerr) != 0)
        return fks_worker_redis_error (tx, &rerr, "recording the latest price");
    //  Later messages of this transaction see the new price too (unless the stored one was
    //  newer: then it is read again).
    for (size_t i = 0; i < st->n_prices; i++)
        if (strcmp (st->prices[i].symbol, symbol) == 0) {
            st->prices[i] = st->prices[--st->n_prices];
            break;
        }

    s_pos_entry_t *pe = s_position (tx, st, symbol, &rc);
    if (!pe)
        return rc;
    bool fresh = false;
    if ((rc = s_bar_mark (tx, symbol, interval, len, &bar, &fresh)) != FKS_WORKER_OK || !fresh)
        return rc;
    fks_position_t pos = pe->pos;
    //  Orders placed earlier in this transaction must be in the table before it is read.
    if ((rc = s_write_placed_many (tx, st)) != FKS_WORKER_OK)
        return rc;
    const char *values[1] = { symbol };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ex_open_limits", 1, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "reading resting orders");
    fks_exec_t *x = st->x;
    const char *broker = fks_broker_name (x->broker);
    int rows = PQntuples (r);
    bool moved = false;
    fks_order_t last_order;
    memset (&last_order, 0, sizeof last_order);
    //  Oldest first; each order sees the position the ones before it left, and the bar's
    //  volume they left (bar.taken).
    for (int i = 0; i < rows && rc == FKS_WORKER_OK; i++) {
        fks_order_t o;
        if (s_order_from_row (r, i, &o) != 0)
            continue;
        bool reduce_only = strcmp (PQgetvalue (r, i, 13), "t") == 0;
        o.created_ms = strtoll (PQgetvalue (r, i, 14), NULL, 10);
        bool cut = false, ended = false;
        if (reduce_only
            && (rc = s_reduce_only_at_fill (tx, st, pe, &pos, &o, &cut, &ended))
               != FKS_WORKER_OK)
            break;
        if (ended)
            continue;
        fks_broker_result_t res;
        if (fks_broker_on_bar (x->broker, &o, &bar, &res) != 0) {
            rc = fks_worker_retry (tx, "broker %s did not answer: %s", broker, res.reason);
            break;
        }
        bool stored;
        if (res.n_fills == 0) {
            //  Cut and waiting for a bar that reaches it.
            if (cut)
                rc = s_write_order (tx, broker, &o, true, true, NULL, NULL, &stored);
            continue;
        }
        s_snap_t snaps[FKS_BROKER_MAX_FILLS];
        if ((rc = s_apply_fills (tx, &o, &pos, &res, snaps)) != FKS_WORKER_OK
            || (rc = s_write_order (tx, broker, &o, true, cut, NULL, NULL, &stored))
               != FKS_WORKER_OK
            || (rc = s_write_fills (tx, st, &o, &res, snaps)) != FKS_WORKER_OK)
            break;
        s_moves_add (st, pe->symbol, o.buy, res.fills, res.n_fills);
        for (size_t k = 0; k < res.n_fills; k++) {
            bar.taken += res.fills[k].qty;
            s_open_less (pe, o.buy, res.fills[k].qty);
        }
        if (o.status == FKS_ORDER_FILLED) {
            s_count (st, "filled");
            rc = s_signal_status (tx, &o, "ordered", NULL, "filled");
        }
        moved = true;
        last_order = o;
        //  Each order's position.updated carries the order's corr: emit it per order.
        if (rc == FKS_WORKER_OK)
            rc = s_emit_position (tx, symbol, &pos, bar.close, &last_order);
    }
    PQclear (r);
    if (rc == FKS_WORKER_OK && moved) {
        pe->pos = pos;
        pe->dirty = true;
    }
    return rc;
}

static int
s_handle (fks_worker_tx_t *tx, const fks_envelope_t *env, void *arg)
{
    fks_exec_t *x = arg;
    s_thread_t *st = fks_worker_state (tx);
    if (!st)
        return fks_worker_retry (tx, "the handler thread has no state (out of memory)");
    const char *type = fks_envelope_hdr (env)->type;
    if (strcmp (type, x->cfg.input) == 0)
        return s_on_signal (tx, st, env);
    if (strcmp (type, "order.requested") == 0)
        return s_on_order_requested (tx, st, env);
    if (strcmp (type, "order.cancel_requested") == 0)
        return s_on_cancel (tx, st, env);
    if (strcmp (type, "market.bar") == 0)
        return s_on_bar (tx, st, env);
    //  Another signal type than the one configured (the AI stage switched on or off while
    //  messages were queued): consumed, and said.
    fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "%s ignored: this worker executes "
             "%s (FKS_EXECUTION_INPUT)", type, x->cfg.input);
    return FKS_WORKER_OK;
}

//  A signal or manual order that could not be executed ends as risk.rejected with the rule
//  execution_error, and the alert as failed; anything else becomes a dead letter.
static int
s_on_fail (fks_worker_tx_t *tx, const fks_envelope_t *env, const char *reason, void *arg)
{
    fks_exec_t *x = arg;
    if (!env)
        return FKS_WORKER_FAIL;
    const char *type = fks_envelope_hdr (env)->type;
    bool signal = strcmp (type, x->cfg.input) == 0;
    if (!signal && strcmp (type, "order.requested") != 0)
        return FKS_WORKER_FAIL;
    fks_order_t o;
    memset (&o, 0, sizeof o);
    char raw[65] = "";
    if (fks_envelope_get_str (env, "symbol", raw, sizeof raw) != 0 || !raw[0])
        snprintf (raw, sizeof raw, "?");
    snprintf (o.symbol, sizeof o.symbol, "%.32s", raw);
    o.has_signal = signal && fks_envelope_get_id (env, "signal_id", &o.signal_id) == 0;
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    o.has_corr = !fks_id_is_nil (&hdr->corr);
    o.corr = hdr->corr;
    char msg[400];
    snprintf (msg, sizeof msg, "could not be executed: %s", reason);
    int rc = s_signal_status (tx, &o, "failed", msg, "failed");
    if (rc != FKS_WORKER_OK)
        return rc;
    msgpack_packer *pk = fks_worker_body (tx);
    fks_id_t order_id;
    bool has_order = !signal && fks_envelope_get_id (env, "order_id", &order_id) == 0;
    msgpack_pack_map (pk, 3 + (o.has_signal ? 1 : 0) + (has_order ? 1 : 0));
    if (o.has_signal)
        fks_pack_kv_id (pk, "signal_id", &o.signal_id);
    if (has_order)
        fks_pack_kv_id (pk, "order_id", &order_id);
    fks_pack_kv_str (pk, "symbol", raw);
    fks_pack_kv_str (pk, "rule", "execution_error");
    fks_pack_kv_str (pk, "message", msg);
    return fks_worker_emit (tx, "risk.rejected", NULL, NULL);
}

void
fks_exec_define (fks_exec_t *self, fks_worker_def_t *def)
{
    def->prefixes = self->prefixes;
    def->n_prefixes = 4;
    def->stmts = fks_exec_stmts (&def->n_stmts);
    def->handler = s_handle;
    def->on_fail = s_on_fail;
    def->thread_init = s_thread_init;
    def->thread_fini = s_thread_fini;
    def->idle = s_idle;
    def->prefetch = s_prefetch;
    def->begin = s_begin;
    def->flush = s_flush;
    //  One handler thread per symbol: the threads of a replica never wait on each other's
    //  position locks (s_lock_batch still orders them against other replicas), and a symbol's
    //  messages are handled in bus order. order.cancel_requested names no symbol: key 0.
    def->route = fks_worker_route_symbol;
    def->arg = self;
}
