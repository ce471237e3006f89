/*  breaker.h - the circuit breaker that every execution replica shares through Redis.
 *
 *  A breaker guards a scope (e.g. "global", "broker:paper", "exchange:binance"). While it is
 *  closed, orders go to the broker and their outcomes are recorded; it opens after
 *  `failures` consecutive failures, or when at least `min_requests` outcomes in the last
 *  `window_ms` hold a failure rate of `failure_rate` or more. While open, orders are refused.
 *  Once `cooldown_ms` has passed, the next caller finds it half-open: orders go through again
 *  as probes; `half_open_successes` successes close it, one failure opens it again. An
 *  operator may reset it to closed at any time (the gateway's REST API).
 *
 *  The state lives in one Redis hash per scope (key "fks:breaker:<scope>") and the window's
 *  counters in a second hash ("fks:breaker:<scope>:w", one field per tenth of the window).
 *  Every operation is a single Lua script, so concurrent replicas see one consistent state
 *  and each transition happens exactly once: the caller whose call made it is told (the
 *  `transition` out-parameter) and publishes breaker.opened / breaker.closed.
 *
 *  Time comes from the caller (now_ms, Unix milliseconds): replicas share a clock well enough
 *  for cool-downs of seconds, and tests can drive time. A breaker object holds no state of its
 *  own beyond its configuration and a Redis handle it does not own: it is as thread-safe as
 *  that handle (one per thread).
 *
 *  Configuration (fks_breaker_cfg_load): FKS_BREAKER_FAILURES (5), FKS_BREAKER_FAILURE_RATE
 *  (0.5), FKS_BREAKER_MIN_REQUESTS (20), FKS_BREAKER_WINDOW (60s), FKS_BREAKER_COOLDOWN (30s),
 *  FKS_BREAKER_HALF_OPEN_SUCCESSES (3).
 */
#ifndef FKS_BREAKER_H
#define FKS_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/redis.h"

#define FKS_BREAKER_SCOPE_MAX  64       /* incl. NUL: 1..63 chars [a-z0-9:._-] */
#define FKS_BREAKER_REASON_MAX 256      /* incl. NUL */

/*  The states, valued as the fks_breaker_state metric shows them. */
typedef enum {
    FKS_BREAKER_CLOSED = 0,
    FKS_BREAKER_HALF_OPEN = 1,
    FKS_BREAKER_OPEN = 2
} fks_breaker_state_t;

/*  What a call changed, for the caller to publish. */
typedef enum {
    FKS_BREAKER_NO_CHANGE = 0,
    FKS_BREAKER_OPENED,             /* closed or half-open -> open: publish breaker.opened */
    FKS_BREAKER_HALF_OPENED,        /* open -> half-open (cool-down over): nothing to publish */
    FKS_BREAKER_CLOSED_NOW          /* half-open or open -> closed: publish breaker.closed */
} fks_breaker_transition_t;

typedef struct {
    int64_t failures;               /* consecutive failures that open it, >= 1 */
    double failure_rate;            /* (0, 1]: the window's failure share that opens it */
    int64_t min_requests;           /* outcomes in the window before the rate counts, >= 1 */
    int64_t window_ms;              /* >= 1000 */
    int64_t cooldown_ms;            /* open -> half-open after this, >= 1 */
    int64_t half_open_successes;    /* successes in half-open that close it, >= 1 */
} fks_breaker_cfg_t;

/*  What fks_breaker_status reads, and what the other calls report. */
typedef struct {
    fks_breaker_state_t state;
    int64_t consecutive;            /* consecutive failures now */
    int64_t window_failures;        /* failures in the window */
    int64_t window_total;           /* outcomes in the window */
    int64_t half_open_ok;           /* successes since it half-opened */
    int64_t changed_at_ms;          /* when the state last changed (0: never) */
    int64_t opened_at_ms;           /* when it last opened (0: never) */
    char reason[FKS_BREAKER_REASON_MAX];   /* why it last changed ("" when never) */
} fks_breaker_status_t;

typedef struct fks_breaker_t fks_breaker_t;

/*  The defaults listed above. */
void fks_breaker_cfg_defaults (fks_breaker_cfg_t *cfg);

/*  Reads the FKS_BREAKER_* variables into cfg (defaults for those unset). 0, or -1 with a
 *  message naming the variable in err (cap bytes). */
int fks_breaker_cfg_load (fks_breaker_cfg_t *cfg, char *err, size_t cap);

/*  True when scope is 1..63 chars of [a-z0-9:._-]. */
bool fks_breaker_scope_valid (const char *scope);

/*  A breaker for scope over redis (not owned; must outlive the breaker). cfg NULL means the
 *  defaults. NULL when the scope or the configuration is invalid (logged). */
fks_breaker_t *fks_breaker_new (fks_redis_t *redis, const char *scope,
                                const fks_breaker_cfg_t *cfg);
void fks_breaker_destroy (fks_breaker_t **self_p);

const char *fks_breaker_scope (const fks_breaker_t *self);

/*  Orders are named by an id (the client order id; 1..FKS_BREAKER_ID_MAX-1 bytes; NULL when
 *  there is none): an id whose outcome the breaker has recorded is noted with it (for at least
 *  ten minutes, in sets "fks:breaker:<scope>:noted:<bucket>" next to the state), atomically with
 *  the recording. An order asked about or recorded again under a noted id (its message handled
 *  again after a rollback or a crash, a copy of its signal) was let through before: it is let
 *  through again and nothing is recorded twice. If its first recording opened or closed the
 *  breaker, recording it again reports that transition again (as *transition, *opened,
 *  *closed), as long as the breaker has not changed since: the transaction that was to
 *  publish the event may have rolled back, and the redo that commits publishes it. */
#define FKS_BREAKER_ID_MAX 128

/*  May an order go through now? Moves open to half-open when the cool-down is over. Returns 1
 *  (allowed: closed or half-open, or id noted already), 0 (refused: open; status->reason says
 *  why it opened), or -1 when Redis could not be asked (err says why; the caller decides, and
 *  FKS's execution worker treats it as a transient failure and tries again later). status and
 *  transition may be NULL. */
int fks_breaker_allow (fks_breaker_t *self, const char *id, int64_t now_ms,
                       fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                       fks_redis_err_t *err);

/*  Records an order's outcome (ok true: the broker took it; false: the broker failed or
 *  refused it; reason, may be NULL, says why and becomes the breaker's reason when this opens
 *  it), unless id is noted already. Returns 0 or -1 (Redis error). */
int fks_breaker_record (fks_breaker_t *self, const char *id, bool ok, const char *reason,
                        int64_t now_ms, fks_breaker_status_t *status,
                        fks_breaker_transition_t *transition, fks_redis_err_t *err);

/*  Asks and records in one call, for brokers whose submission has no effect outside FKS (the
 *  paper broker): the order's outcome (ok, reason) is known before the breaker is asked. When
 *  the breaker lets the order through (closed, half-open, or open with its cool-down over,
 *  which half-opens it; or id noted already, recording nothing), the outcome is recorded and 1
 *  is returned; when it is open, nothing is recorded and 0 is returned (the caller drops the
 *  simulated outcome); -1 on a Redis error. *transition is what to publish: OPENED or
 *  CLOSED_NOW when recording changed the state, else HALF_OPENED or NO_CHANGE. */
int fks_breaker_try (fks_breaker_t *self, const char *id, bool ok, const char *reason,
                     int64_t now_ms, fks_breaker_status_t *status,
                     fks_breaker_transition_t *transition, fks_redis_err_t *err);

/*  fks_breaker_try for a sequence of n outcomes (1..FKS_BREAKER_TRY_MAX) of orders ids (NULL:
 *  unnamed), in order, all or nothing: when the breaker lets every one through, all are
 *  recorded (those whose id is noted already are let through without) and n is returned; when
 *  it would refuse one, nothing at all is recorded and 0 is returned (the caller then asks
 *  order by order). -1 on a Redis error or a bad n or id. *opened / *closed (may be NULL) tell
 *  whether recording opened or closed the breaker (both may be true), for the caller to
 *  publish. The execution worker uses it to settle a whole batch of paper orders in one
 *  round trip. */
#define FKS_BREAKER_TRY_MAX 1024
int fks_breaker_try_many (fks_breaker_t *self, const char *const *ids, const bool *ok,
                          size_t n, const char *reason, int64_t now_ms,
                          fks_breaker_status_t *status, bool *opened, bool *closed,
                          fks_redis_err_t *err);

/*  Reads the state without changing it (an open breaker whose cool-down is over still reads
 *  open until someone asks fks_breaker_allow); now_ms places the window. 0 or -1. */
int fks_breaker_status (fks_breaker_t *self, int64_t now_ms, fks_breaker_status_t *status,
                        fks_redis_err_t *err);

/*  Forces the breaker closed and clears its counters (an operator's reset). *transition is
 *  FKS_BREAKER_CLOSED_NOW when it was open or half-open (publish breaker.closed), else
 *  FKS_BREAKER_NO_CHANGE. reason (may be NULL: "reset") is recorded. 0 or -1. */
int fks_breaker_reset (fks_breaker_t *self, const char *reason, int64_t now_ms,
                       fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                       fks_redis_err_t *err);

/*  "closed", "half_open", "open". */
const char *fks_breaker_state_name (fks_breaker_state_t state);

#endif
