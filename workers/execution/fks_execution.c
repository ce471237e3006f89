/*  fks_execution.c - fks-execution, the execution worker: signals become paper orders.
 *
 *  The runtime (workers/runtime.h) around the handlers of execute.c, with the paper broker
 *  (paper.c) behind the broker interface. Consumer group "execution"; it takes
 *  FKS_EXECUTION_INPUT (signal.created by default, signal.scored once the ai worker scores
 *  signals), order.requested and order.cancel_requested (the REST API) and market.bar.
 *
 *  Configuration, besides the runtime's: FKS_EXECUTION_PORT (8006), FKS_EXECUTION_INPUT,
 *  FKS_RISK_* (risk.h), FKS_BREAKER_* and FKS_BREAKER_SCOPE (common/breaker.h; the scope is
 *  "global" unless set, the one the REST API shows by default), FKS_PAPER_* (paper.h). Every
 *  limit is logged at start.
 */
#include "workers/execution/execute.h"
#include "workers/execution/paper.h"
#include "common/log.h"

#include <stdio.h>

int
main (void)
{
    if (fks_log_init ("fks-execution") != 0)
        fks_log (FKS_LOG_WARN, NULL, NULL, "FKS_LOG_LEVEL not understood; logging at info");
    char err[256];
    fks_paper_cfg_t paper;
    fks_exec_cfg_t cfg;
    if (fks_paper_cfg_load (&paper, err, sizeof err) != 0
        || fks_exec_cfg_load (&cfg, err, sizeof err) != 0) {
        fprintf (stderr, "fks-execution: %s\n", err);
        return 2;
    }
    fks_exec_t *exec = fks_exec_new (&cfg, fks_paper_new (&paper));
    if (!exec) {
        fprintf (stderr, "fks-execution: out of memory\n");
        return 1;
    }
    const fks_risk_limits_t *l = &cfg.limits;
    fks_log (FKS_LOG_INFO, NULL, NULL, "input %s; broker paper (slippage %.4g bps, fee %.4g bps, "
             "max volume share %.4g); risk: %zu allowed symbols (0: all), max qty %.10g, max "
             "notional %.10g, max position %.10g, max %lld orders/minute (0: off); breaker %s: "
             "%lld failures or %.2f of %lld in %lld ms, cool-down %lld ms", cfg.input,
             paper.slippage_bps, paper.fee_bps, paper.max_volume_share, l->n_symbols,
             l->max_qty, l->max_notional, l->max_position,
             (long long) l->max_orders_per_minute, cfg.breaker_scope,
             (long long) cfg.breaker.failures, cfg.breaker.failure_rate,
             (long long) cfg.breaker.min_requests, (long long) cfg.breaker.window_ms,
             (long long) cfg.breaker.cooldown_ms);
    fks_worker_def_t def = {
        .program = "fks-execution",
        .group = "execution",
        .src = "execution",
        .port_var = "FKS_EXECUTION_PORT",
        .default_port = 8006,
    };
    fks_exec_define (exec, &def);
    int rc = fks_worker_main (&def);
    fks_exec_destroy (&exec);
    return rc;
}
