/*  execute.h - the execution worker's handlers: signals and manual orders to broker orders.
 *
 *  The execution worker (fks_execution.c) is the runtime (workers/runtime.h) around these
 *  handlers. Each runs inside the runtime's transaction and, per message type:
 *
 *    signal.created or signal.scored (FKS_EXECUTION_INPUT), order.requested
 *        lock the symbol's position (and read what its open orders have left to fill); cut a
 *        reduce-only order to the position; check the risk limits (risk.h: max_position
 *        counts the open orders on the order's side as filled, max_notional values a limit
 *        order at the price it may fill at), the orders-per-minute counter and the circuit
 *        breaker (a refusal is risk.rejected); derive the client order id; submit to the
 *        broker; write the order in the state the broker's answer leaves it (rejected,
 *        submitted, partially filled, filled), its fills and the position; record the
 *        outcome with the breaker; emit order.submitted, order.partially_filled /
 *        order.filled, order.rejected, position.updated, breaker.opened / breaker.closed as
 *        they happen
 *    order.cancel_requested
 *        cancel an open order through the broker: order.cancelled (a final order is left as
 *        it is)
 *    market.bar
 *        record the bar's close as the latest price, and offer the bar to the symbol's resting
 *        limit orders, oldest first: fills, order.partially_filled / order.filled,
 *        position.updated. A reduce-only order meets the position as the orders before it
 *        left it: it is cut to it (its quantity lowered), or cancelled when nothing is left
 *        to reduce (order.cancelled, reason "reduce_only: ..."), so it never opens or flips a
 *        position. A bar that closed before an order was placed does not fill it (its close
 *        is open_time plus its interval; a replayed or backfilled bar), and the paper
 *        broker's volume share is for the whole bar, shared by the orders it fills (paper.h).
 *
 *  Handled again. The runtime may handle a message more than once (a batch rolled back and
 *  redone message by message, a transient failure retried, a redelivery after a crash), and
 *  a signal may arrive again under a new message id. What lives in PostgreSQL rolls back;
 *  what lives in Redis does not, so it is kept per client order id: the orders-per-minute
 *  counter counts an order once, and only when it goes to a broker; the breaker records an
 *  order's outcome once (a set of the ids it has, kept 10-20 minutes), and an order whose
 *  outcome it has is not asked about again. See execute.c for what a crash can still leave.
 *
 *  The position is locked with a transaction-scoped advisory lock on the symbol, taken before
 *  anything reads it, so replicas working on one symbol take turns and a position moves
 *  exactly once per fill (the threads of one replica do not: the runtime routes each symbol
 *  to one thread, see fks_exec_define). The alert's status (inbox) and the signal's status follow along.
 */
#ifndef FKS_EXECUTE_H
#define FKS_EXECUTE_H

#include <stddef.h>
#include "common/breaker.h"
#include "workers/execution/broker.h"
#include "workers/execution/risk.h"
#include "workers/runtime.h"

typedef struct {
    fks_risk_limits_t limits;
    fks_breaker_cfg_t breaker;
    char breaker_scope[FKS_BREAKER_SCOPE_MAX];  /* FKS_BREAKER_SCOPE, default "global" */
    char input[FKS_TYPE_MAX];                   /* signal.created (default) or signal.scored */
} fks_exec_cfg_t;

typedef struct fks_exec_t fks_exec_t;

/*  Reads FKS_EXECUTION_INPUT, FKS_BREAKER_SCOPE and the FKS_RISK_* and FKS_BREAKER_*
 *  variables. 0, or -1 with a message naming the variable in err. */
int fks_exec_cfg_load (fks_exec_cfg_t *cfg, char *err, size_t cap);

/*  The handlers' shared state; takes ownership of broker. NULL on failure. */
fks_exec_t *fks_exec_new (const fks_exec_cfg_t *cfg, fks_broker_t *broker);
void fks_exec_destroy (fks_exec_t **self_p);

/*  The prepared statements the handlers use, for the worker definition. */
const fks_pg_stmt_t *fks_exec_stmts (size_t *n);

/*  Fills def's handler, hooks, statements and prefixes for self (which must outlive def). */
void fks_exec_define (fks_exec_t *self, fks_worker_def_t *def);

#endif
