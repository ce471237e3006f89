/*  breaker.c - the circuit breaker that every execution replica shares through Redis.
 *
 *  See breaker.h for the behaviour. Everything happens in one Lua script, run with EVALSHA
 *  (loaded on first use, and again after Redis answers NOSCRIPT because it restarted), so a
 *  decision and the state change it implies are atomic across replicas. The script keeps the
 *  window as ten buckets of counters in a hash and deletes buckets that fell out of the window
 *  whenever it runs, so the hash never holds more than about twenty fields. All values the
 *  script stores are integers, and the reason is bounded by the caller, so a state read back
 *  from Redis is always small; it is validated anyway before it is believed.
 */
#include "common/breaker.h"
#include "common/config.h"
#include "common/log.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fks_breaker_t {
    fks_redis_t *redis;
    fks_breaker_cfg_t cfg;
    char scope[FKS_BREAKER_SCOPE_MAX];
    char key[FKS_BREAKER_SCOPE_MAX + 16];
    char wkey[FKS_BREAKER_SCOPE_MAX + 24];
    char sha[41];                   /* the script's SHA-1 once loaded, "" before */
};

//  KEYS[1] the state hash, KEYS[2] the window hash. ARGV: op, now_ms, failures, failure_rate,
//  min_requests, window_ms, cooldown_ms, half_open_successes, reason, outcomes ('o' ok, 'f'
//  failure, one per order, in order). Ops: allow (ask once), record (record the outcomes),
//  try (ask before each outcome and record it; all or nothing: when the breaker would refuse
//  one, nothing is written), status (read), reset. The state machine runs on local copies and
//  is written back once at the end. Returns {state, consecutive, window_failures,
//  window_total, half_open_ok, changed_at, opened_at, reason, transition, recorded, opened,
//  closed}: transition is the last change (0 none, 1 opened, 2 half-opened, 3 closed),
//  recorded the outcomes written, opened / closed 1 when that happened during the call.
static const char s_script[] =
    "local st, wk = KEYS[1], KEYS[2]\n"
    "local op, now = ARGV[1], tonumber(ARGV[2])\n"
    "local nfail, rate, minreq = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local win, cool, hsucc = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local reason, outs = ARGV[9], ARGV[10] or ''\n"
    "local h = redis.call('HMGET', st, 'state', 'consec', 'hok', 'changed_at', 'opened_at', 'reason')\n"
    "local state = tonumber(h[1]) or 0\n"
    "local consec = tonumber(h[2]) or 0\n"
    "local hok = tonumber(h[3]) or 0\n"
    "local changed = tonumber(h[4]) or 0\n"
    "local opened = tonumber(h[5]) or 0\n"
    "local why = h[6] or ''\n"
    "if state ~= 0 and state ~= 1 and state ~= 2 then state = 2 end\n"
    "local width = math.floor(win / 10)\n"
    "if width < 1 then width = 1 end\n"
    "local cur = math.floor(now / width)\n"
    "local wf, wt, stale = 0, 0, {}\n"
    "local all = redis.call('HGETALL', wk)\n"
    "for i = 1, #all, 2 do\n"
    "  local k = all[i]\n"
    "  local b = tonumber(string.sub(k, 3))\n"
    "  if b == nil or b <= cur - 10 or b > cur + 1 then\n"
    "    stale[#stale + 1] = k\n"
    "  else\n"
    "    local v = tonumber(all[i + 1]) or 0\n"
    "    if string.sub(k, 1, 2) == 'f:' then wf = wf + v else wt = wt + v end\n"
    "  end\n"
    "end\n"
    "local h0 = {state, consec, wf, wt, hok, changed, opened, why}\n"
    "local trans, ev_open, ev_close, recorded = 0, 0, 0, 0\n"
    "local wipe, add_t, add_f = false, 0, 0\n"
    "local function set(s, r)\n"
    "  state = s; changed = now; why = r\n"
    "  if s == 2 then opened = now; trans = 1; ev_open = 1 end\n"
    "  if s == 1 then trans = 2 end\n"
    "  if s == 0 then trans = 3; ev_close = 1 end\n"
    "end\n"
    "local function ask()\n"
    "  if state == 2 and now - opened >= cool then\n"
    "    set(1, 'cool-down of ' .. math.floor(cool / 1000) .. ' s over: probing'); hok = 0\n"
    "  end\n"
    "  return state ~= 2\n"
    "end\n"
    "local function record(ok)\n"
    "  recorded = recorded + 1\n"
    "  wt = wt + 1; add_t = add_t + 1\n"
    "  if not ok then wf = wf + 1; add_f = add_f + 1 end\n"
    "  if ok then\n"
    "    consec = 0\n"
    "    if state == 1 then\n"
    "      hok = hok + 1\n"
    "      if hok >= hsucc then\n"
    "        set(0, 'closed after ' .. hok .. ' successful probes'); hok = 0\n"
    "        wipe = true; wf = 0; wt = 0; add_t = 0; add_f = 0\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    consec = consec + 1\n"
    "    if state == 1 then\n"
    "      set(2, 'probe failed: ' .. reason); hok = 0\n"
    "    elseif state == 0 then\n"
    "      if consec >= nfail then\n"
    "        set(2, consec .. ' consecutive failures; last: ' .. reason)\n"
    "      elseif wt >= minreq and wf / wt >= rate then\n"
    "        set(2, wf .. ' of ' .. wt .. ' orders failed in ' .. math.floor(win / 1000) ..\n"
    "            ' s; last: ' .. reason)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if op == 'allow' then\n"
    "  ask()\n"
    "elseif op == 'record' then\n"
    "  for i = 1, #outs do record(string.sub(outs, i, i) == 'o') end\n"
    "elseif op == 'try' then\n"
    "  for i = 1, #outs do\n"
    "    if not ask() then\n"
    "      return {h0[1], h0[2], h0[3], h0[4], h0[5], h0[6], h0[7], h0[8], 0, 0, 0, 0}\n"
    "    end\n"
    "    record(string.sub(outs, i, i) == 'o')\n"
    "  end\n"
    "elseif op == 'reset' then\n"
    "  if state ~= 0 then set(0, reason) else changed = now; why = reason end\n"
    "  consec = 0; hok = 0; wipe = true; wf = 0; wt = 0; add_t = 0; add_f = 0\n"
    "end\n"
    "if op ~= 'status' then\n"
    "  for _, k in ipairs(stale) do redis.call('HDEL', wk, k) end\n"
    "  if wipe then redis.call('DEL', wk) end\n"
    "  if add_t > 0 then\n"
    "    redis.call('HINCRBY', wk, 't:' .. cur, add_t)\n"
    "    if add_f > 0 then redis.call('HINCRBY', wk, 'f:' .. cur, add_f) end\n"
    "    redis.call('PEXPIRE', wk, win * 2)\n"
    "  end\n"
    "  redis.call('HSET', st, 'state', state, 'consec', consec, 'hok', hok,\n"
    "             'changed_at', changed, 'opened_at', opened, 'reason', why)\n"
    "end\n"
    "return {state, consec, wf, wt, hok, changed, opened, why, trans, recorded, ev_open, ev_close}\n";


//  --------------------------------------------------------------------------
//  Configuration

void
fks_breaker_cfg_defaults (fks_breaker_cfg_t *cfg)
{
    assert (cfg);
    cfg->failures = 5;
    cfg->failure_rate = 0.5;
    cfg->min_requests = 20;
    cfg->window_ms = 60000;
    cfg->cooldown_ms = 30000;
    cfg->half_open_successes = 3;
}

int
fks_breaker_cfg_load (fks_breaker_cfg_t *cfg, char *err, size_t cap)
{
    assert (cfg);
    fks_breaker_cfg_t c;
    fks_breaker_cfg_defaults (&c);
    fks_config_err_t e;
    if (fks_config_int ("FKS_BREAKER_FAILURES", c.failures, 1, 1000000, &c.failures, &e) < 0
        || fks_config_double ("FKS_BREAKER_FAILURE_RATE", c.failure_rate, 0.01, 1.0,
                              &c.failure_rate, &e) < 0
        || fks_config_int ("FKS_BREAKER_MIN_REQUESTS", c.min_requests, 1, 1000000,
                           &c.min_requests, &e) < 0
        || fks_config_duration_ms ("FKS_BREAKER_WINDOW", c.window_ms, 1000, 86400000,
                                   &c.window_ms, &e) < 0
        || fks_config_duration_ms ("FKS_BREAKER_COOLDOWN", c.cooldown_ms, 1, 86400000,
                                   &c.cooldown_ms, &e) < 0
        || fks_config_int ("FKS_BREAKER_HALF_OPEN_SUCCESSES", c.half_open_successes, 1, 1000,
                           &c.half_open_successes, &e) < 0) {
        if (err && cap)
            snprintf (err, cap, "%s", e.msg);
        return -1;
    }
    *cfg = c;
    return 0;
}

static bool
s_cfg_valid (const fks_breaker_cfg_t *c)
{
    return c->failures >= 1 && c->failure_rate > 0 && c->failure_rate <= 1
        && c->min_requests >= 1 && c->window_ms >= 1000 && c->cooldown_ms >= 1
        && c->half_open_successes >= 1;
}

bool
fks_breaker_scope_valid (const char *scope)
{
    if (!scope)
        return false;
    size_t len = strlen (scope);
    if (len == 0 || len >= FKS_BREAKER_SCOPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = scope[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
              || ch == ':' || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}


//  --------------------------------------------------------------------------
//  Object

fks_breaker_t *
fks_breaker_new (fks_redis_t *redis, const char *scope, const fks_breaker_cfg_t *cfg)
{
    assert (redis);
    if (!fks_breaker_scope_valid (scope)) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "breaker: invalid scope (1-63 chars of [a-z0-9:._-])");
        return NULL;
    }
    fks_breaker_cfg_t c;
    if (cfg)
        c = *cfg;
    else
        fks_breaker_cfg_defaults (&c);
    if (!s_cfg_valid (&c)) {
        fks_log (FKS_LOG_ERROR, NULL, NULL, "breaker: invalid configuration");
        return NULL;
    }
    fks_breaker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->redis = redis;
    self->cfg = c;
    snprintf (self->scope, sizeof self->scope, "%s", scope);
    snprintf (self->key, sizeof self->key, "fks:breaker:%s", scope);
    snprintf (self->wkey, sizeof self->wkey, "fks:breaker:%s:w", scope);
    return self;
}

void
fks_breaker_destroy (fks_breaker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

const char *
fks_breaker_scope (const fks_breaker_t *self)
{
    assert (self);
    return self->scope;
}

const char *
fks_breaker_state_name (fks_breaker_state_t state)
{
    switch (state) {
        case FKS_BREAKER_CLOSED:    return "closed";
        case FKS_BREAKER_HALF_OPEN: return "half_open";
        case FKS_BREAKER_OPEN:      return "open";
    }
    return "unknown";
}


//  --------------------------------------------------------------------------
//  Running the script

static int
s_load (fks_breaker_t *self, fks_redis_err_t *err)
{
    const char *argv[] = { "SCRIPT", "LOAD", s_script };
    size_t lens[] = { 6, 4, sizeof s_script - 1 };
    redisReply *r = fks_redis_command_argv (self->redis, 3, argv, lens, err);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy (self->sha, r->str, 40);
        self->sha[40] = '\0';
        rc = 0;
    }
    else if (err)
        snprintf (err->msg, sizeof err->msg, "SCRIPT LOAD gave an unexpected reply");
    freeReplyObject (r);
    return rc;
}

static int64_t
s_int (const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return (int64_t) r->integer;
    if (r->type == REDIS_REPLY_STRING && r->str)
        return strtoll (r->str, NULL, 10);
    return 0;
}

typedef struct {
    fks_breaker_transition_t transition;
    int64_t recorded;
    bool opened, closed;
} s_result_t;

static int
s_parse (const redisReply *r, fks_breaker_status_t *st, s_result_t *res, fks_redis_err_t *err)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 12) {
        snprintf (err->msg, sizeof err->msg, "breaker script gave an unexpected reply");
        return -1;
    }
    int64_t state = s_int (r->element[0]);
    int64_t trans = s_int (r->element[8]);
    if (state < 0 || state > 2 || trans < 0 || trans > 3) {
        snprintf (err->msg, sizeof err->msg, "breaker script gave an unexpected state");
        return -1;
    }
    fks_breaker_status_t s;
    memset (&s, 0, sizeof s);
    s.state = (fks_breaker_state_t) state;
    s.consecutive = s_int (r->element[1]);
    s.window_failures = s_int (r->element[2]);
    s.window_total = s_int (r->element[3]);
    s.half_open_ok = s_int (r->element[4]);
    s.changed_at_ms = s_int (r->element[5]);
    s.opened_at_ms = s_int (r->element[6]);
    const redisReply *why = r->element[7];
    if (why->type == REDIS_REPLY_STRING && why->str) {
        size_t n = why->len < sizeof s.reason - 1 ? why->len : sizeof s.reason - 1;
        memcpy (s.reason, why->str, n);
        s.reason[n] = '\0';
    }
    if (st)
        *st = s;
    res->transition = (fks_breaker_transition_t) trans;
    res->recorded = s_int (r->element[9]);
    res->opened = s_int (r->element[10]) == 1;
    res->closed = s_int (r->element[11]) == 1;
    return 0;
}

//  Runs the script: op with the outcomes string (may be ""), loading the script first if
//  needed and again once if Redis forgot it.
static int
s_run (fks_breaker_t *self, const char *op, int64_t now_ms, const char *reason,
       const char *outs, fks_breaker_status_t *status, s_result_t *res, fks_redis_err_t *err)
{
    fks_redis_err_t local;
    if (!err)
        err = &local;
    memset (err, 0, sizeof *err);
    memset (res, 0, sizeof *res);

    char why[FKS_BREAKER_REASON_MAX - 64];
    snprintf (why, sizeof why, "%s", reason ? reason : "");
    char a_now[24], a_fail[24], a_rate[32], a_min[24], a_win[24], a_cool[24], a_hs[24];
    snprintf (a_now, sizeof a_now, "%" PRId64, now_ms);
    snprintf (a_fail, sizeof a_fail, "%" PRId64, self->cfg.failures);
    snprintf (a_rate, sizeof a_rate, "%.6f", self->cfg.failure_rate);
    snprintf (a_min, sizeof a_min, "%" PRId64, self->cfg.min_requests);
    snprintf (a_win, sizeof a_win, "%" PRId64, self->cfg.window_ms);
    snprintf (a_cool, sizeof a_cool, "%" PRId64, self->cfg.cooldown_ms);
    snprintf (a_hs, sizeof a_hs, "%" PRId64, self->cfg.half_open_successes);

    for (int attempt = 0; attempt < 2; attempt++) {
        if (!self->sha[0] && s_load (self, err) != 0)
            return -1;
        const char *argv[] = { "EVALSHA", self->sha, "2", self->key, self->wkey, op, a_now,
                               a_fail, a_rate, a_min, a_win, a_cool, a_hs, why,
                               outs ? outs : "" };
        size_t lens[15];
        for (int i = 0; i < 15; i++)
            lens[i] = strlen (argv[i]);
        redisReply *r = fks_redis_command_argv (self->redis, 15, argv, lens, err);
        if (!r) {
            //  Redis restarted (or flushed its scripts): load the script again, once.
            if (!err->conn_lost && strncmp (err->msg, "NOSCRIPT", 8) == 0) {
                self->sha[0] = '\0';
                continue;
            }
            //  A new connection may be a new server without the script.
            if (err->conn_lost)
                self->sha[0] = '\0';
            return -1;
        }
        int rc = s_parse (r, status, res, err);
        freeReplyObject (r);
        return rc;
    }
    return -1;
}

int
fks_breaker_allow (fks_breaker_t *self, int64_t now_ms, fks_breaker_status_t *status,
                   fks_breaker_transition_t *transition, fks_redis_err_t *err)
{
    assert (self);
    fks_breaker_status_t s;
    s_result_t res;
    if (s_run (self, "allow", now_ms, NULL, "", &s, &res, err) != 0)
        return -1;
    if (status)
        *status = s;
    if (transition)
        *transition = res.transition;
    return s.state == FKS_BREAKER_OPEN ? 0 : 1;
}

int
fks_breaker_record (fks_breaker_t *self, bool ok, const char *reason, int64_t now_ms,
                    fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                    fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (s_run (self, "record", now_ms, reason ? reason : "order failed", ok ? "o" : "f", status,
               &res, err) != 0)
        return -1;
    if (transition)
        *transition = res.transition;
    return 0;
}

int
fks_breaker_try (fks_breaker_t *self, bool ok, const char *reason, int64_t now_ms,
                 fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                 fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (s_run (self, "try", now_ms, reason ? reason : "order failed", ok ? "o" : "f", status,
               &res, err) != 0)
        return -1;
    if (transition)
        *transition = res.transition;
    return res.recorded == 1 ? 1 : 0;
}

int
fks_breaker_try_many (fks_breaker_t *self, const bool *ok, size_t n, const char *reason,
                      int64_t now_ms, fks_breaker_status_t *status, bool *opened, bool *closed,
                      fks_redis_err_t *err)
{
    assert (self);
    if (opened)
        *opened = false;
    if (closed)
        *closed = false;
    if (n == 0 || n > FKS_BREAKER_TRY_MAX) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "breaker: 1 to %d outcomes at once",
                      FKS_BREAKER_TRY_MAX);
        return -1;
    }
    char outs[FKS_BREAKER_TRY_MAX + 1];
    for (size_t i = 0; i < n; i++)
        outs[i] = ok[i] ? 'o' : 'f';
    outs[n] = '\0';
    s_result_t res;
    if (s_run (self, "try", now_ms, reason ? reason : "order failed", outs, status, &res,
               err) != 0)
        return -1;
    if (opened)
        *opened = res.opened;
    if (closed)
        *closed = res.closed;
    return res.recorded == (int64_t) n ? (int) n : 0;
}

int
fks_breaker_status (fks_breaker_t *self, int64_t now_ms, fks_breaker_status_t *status,
                    fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    return s_run (self, "status", now_ms, NULL, "", status, &res, err);
}

int
fks_breaker_reset (fks_breaker_t *self, const char *reason, int64_t now_ms,
                   fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                   fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (s_run (self, "reset", now_ms, reason && *reason ? reason : "reset", "", status, &res,
               err) != 0)
        return -1;
    if (transition)
        *transition = res.transition == FKS_BREAKER_CLOSED_NOW ? FKS_BREAKER_CLOSED_NOW
                                                                : FKS_BREAKER_NO_CHANGE;
    return 0;
}
