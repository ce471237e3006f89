/*  breaker.c - the circuit breaker that every execution replica shares through Redis.
 *
 *  See breaker.h for the behaviour. Everything happens in one Lua script (fks_redis_eval: by
 *  its SHA-1 once the connection has sent its text), so a
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
};

//  Ids are noted in ten-minute buckets, each kept twenty minutes; an id counts as noted when
//  it is in its bucket's set or the one before, so for at least ten minutes.
#define S_NOTED_BUCKET_MS 600000
#define S_NOTED_TTL_S     "1200"

//  KEYS[1] the state hash, KEYS[2] the window hash, and with ids KEYS[3] / KEYS[4] the noted
//  sets of this bucket and the one before, KEYS[5] / KEYS[6] the hashes of the same buckets
//  that keep, for an id whose recording opened or closed the breaker, which it did and when
//  ("1:<ms>" opened, "3:<ms>" closed). ARGV: op, now_ms, failures, failure_rate,
//  min_requests, window_ms, cooldown_ms, half_open_successes, reason, outcomes ('o' ok, 'f'
//  failure, one per order, in order), then the orders' ids (none, or one per outcome; allow:
//  one). Ops: allow (ask once), record (record the outcomes), try (ask before each outcome and
//  record it; all or nothing: when the breaker would refuse one, nothing is written), status
//  (read), reset. An id found in the noted sets was let through and recorded before: it is
//  neither asked about nor recorded again (counted as let through, and in `already`); the ids
//  recorded now are added to the bucket's set. A noted id whose recording opened or closed the
//  breaker reports that transition again, as long as the breaker has not changed since: the
//  transaction that was to publish it may have rolled back, and its redo must publish it (the
//  one that commits is the one whose event stands). The state machine runs on local copies and is
//  written back once at the end. Returns {state, consecutive, window_failures, window_total,
//  half_open_ok, changed_at, opened_at, reason, transition, let, opened, closed, already}:
//  transition is the last change (0 none, 1 opened, 2 half-opened, 3 closed), let the
//  outcomes let through (recorded now or before), opened / closed 1 when that happened during
//  the call, already the ids noted before.
static const char s_script[] =
    "local st, wk = KEYS[1], KEYS[2]\n"
    "local op, now = ARGV[1], tonumber(ARGV[2])\n"
    "local nfail, rate, minreq = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local win, cool, hsucc = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local reason, outs = ARGV[9], ARGV[10] or ''\n"
    "local ids, sk1, sk2, noted, fresh = {}, KEYS[3], KEYS[4], {}, {}\n"
    "local tk1, tk2, caused, by = KEYS[5], KEYS[6], {}, nil\n"
    "for i = 11, #ARGV do ids[#ids + 1] = ARGV[i] end\n"
    "local function seen(i)\n"
    "  local id = ids[i]\n"
    "  if id == nil or sk1 == nil then return false end\n"
    "  return noted[id] or redis.call('SISMEMBER', sk1, id) == 1\n"
    "         or redis.call('SISMEMBER', sk2, id) == 1\n"
    "end\n"
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
    "local trans, ev_open, ev_close, let, already = 0, 0, 0, 0, 0\n"
    "local wipe, add_t, add_f = false, 0, 0\n"
    "local function set(s, r)\n"
    "  state = s; changed = now; why = r\n"
    "  if s == 2 then opened = now; trans = 1; ev_open = 1 end\n"
    "  if s == 1 then trans = 2 end\n"
    "  if s == 0 then trans = 3; ev_close = 1 end\n"
    "  if by and s ~= 1 then caused[by] = trans end\n"
    "end\n"
    "local function again(i)\n"
    "  local v = redis.call('HGET', tk1, ids[i]) or redis.call('HGET', tk2, ids[i])\n"
    "  if not v then return end\n"
    "  local code, at = string.match(v, '^([13]):(%d+)$')\n"
    "  if code == nil or tonumber(at) ~= changed then return end\n"
    "  trans = tonumber(code)\n"
    "  if trans == 1 then ev_open = 1 else ev_close = 1 end\n"
    "end\n"
    "local function ask()\n"
    "  if state == 2 and now - opened >= cool then\n"
    "    set(1, 'cool-down of ' .. math.floor(cool / 1000) .. ' s over: probing'); hok = 0\n"
    "  end\n"
    "  return state ~= 2\n"
    "end\n"
    "local function record(ok, i)\n"
    "  let = let + 1\n"
    "  by = ids[i]\n"
    "  if ids[i] then noted[ids[i]] = true; fresh[#fresh + 1] = ids[i] end\n"
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
    "  by = nil\n"
    "end\n"
    "if op == 'allow' then\n"
    "  if seen(1) then already = 1 else ask() end\n"
    "elseif op == 'record' then\n"
    "  for i = 1, #outs do\n"
    "    if seen(i) then already = already + 1; let = let + 1; again(i)\n"
    "    else record(string.sub(outs, i, i) == 'o', i) end\n"
    "  end\n"
    "elseif op == 'try' then\n"
    "  for i = 1, #outs do\n"
    "    if seen(i) then already = already + 1; let = let + 1; again(i)\n"
    "    else\n"
    "      if not ask() then\n"
    "        return {h0[1], h0[2], h0[3], h0[4], h0[5], h0[6], h0[7], h0[8], 0, 0, 0, 0, 0}\n"
    "      end\n"
    "      record(string.sub(outs, i, i) == 'o', i)\n"
    "    end\n"
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
    "  if #fresh > 0 then\n"
    "    redis.call('SADD', sk1, unpack(fresh))\n"
    "    redis.call('EXPIRE', sk1, " S_NOTED_TTL_S ")\n"
    "  end\n"
    "  local moved = false\n"
    "  for id, code in pairs(caused) do\n"
    "    redis.call('HSET', tk1, id, code .. ':' .. now); moved = true\n"
    "  end\n"
    "  if moved then redis.call('EXPIRE', tk1, " S_NOTED_TTL_S ") end\n"
    "end\n"
    "return {state, consec, wf, wt, hok, changed, opened, why, trans, let, ev_open, ev_close,\n"
    "        already}\n";


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
    int64_t let;                    /* outcomes let through, now or before */
    int64_t already;                /* ids noted before */
    bool opened, closed;
} s_result_t;

static int
s_parse (const redisReply *r, fks_breaker_status_t *st, s_result_t *res, fks_redis_err_t *err)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 13) {
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
    res->let = s_int (r->element[9]);
    res->opened = s_int (r->element[10]) == 1;
    res->closed = s_int (r->element[11]) == 1;
    res->already = s_int (r->element[12]);
    return 0;
}

//  True when each of the n ids (NULL: none) is 1..FKS_BREAKER_ID_MAX-1 bytes.
static bool
s_ids_valid (const char *const *ids, size_t n, fks_redis_err_t *err)
{
    for (size_t i = 0; ids && i < n; i++) {
        size_t len = ids[i] ? strnlen (ids[i], FKS_BREAKER_ID_MAX) : 0;
        if (len == 0 || len == FKS_BREAKER_ID_MAX) {
            if (err)
                snprintf (err->msg, sizeof err->msg, "breaker: an order id of 1 to %d bytes",
                          FKS_BREAKER_ID_MAX - 1);
            return false;
        }
    }
    return true;
}

//  Runs the script: op with the outcomes string (may be "") and the orders' ids (n_ids of
//  them, ids may be NULL), loading the script first if needed and again once if Redis forgot
//  it.
static int
s_run (fks_breaker_t *self, const char *op, int64_t now_ms, const char *reason,
       const char *outs, const char *const *ids, size_t n_ids, fks_breaker_status_t *status,
       s_result_t *res, fks_redis_err_t *err)
{
    fks_redis_err_t local;
    if (!err)
        err = &local;
    memset (err, 0, sizeof *err);
    memset (res, 0, sizeof *res);
    if (!ids)
        n_ids = 0;

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
    char k_now[FKS_BREAKER_SCOPE_MAX + 64], k_prev[FKS_BREAKER_SCOPE_MAX + 64];
    char m_now[FKS_BREAKER_SCOPE_MAX + 64], m_prev[FKS_BREAKER_SCOPE_MAX + 64];
    int64_t bucket = now_ms / S_NOTED_BUCKET_MS;
    snprintf (k_now, sizeof k_now, "%s:noted:%" PRId64, self->key, bucket);
    snprintf (k_prev, sizeof k_prev, "%s:noted:%" PRId64, self->key, bucket - 1);
    snprintf (m_now, sizeof m_now, "%s:moved:%" PRId64, self->key, bucket);
    snprintf (m_prev, sizeof m_prev, "%s:moved:%" PRId64, self->key, bucket - 1);

    //  keys... op now 7 settings reason outs ids...
    int nkeys = n_ids ? 6 : 2;
    int argc = nkeys + 10 + (int) n_ids;
    const char **argv = calloc ((size_t) argc, sizeof *argv);
    size_t *lens = calloc ((size_t) argc, sizeof *lens);
    int rc = -1;
    if (!argv || !lens) {
        snprintf (err->msg, sizeof err->msg, "breaker: out of memory");
        goto done;
    }
    int k = 0;
    argv[k++] = self->key;
    argv[k++] = self->wkey;
    if (n_ids) {
        argv[k++] = k_now;
        argv[k++] = k_prev;
        argv[k++] = m_now;
        argv[k++] = m_prev;
    }
    const char *rest[] = { op, a_now, a_fail, a_rate, a_min, a_win, a_cool, a_hs, why,
                           outs ? outs : "" };
    for (size_t i = 0; i < 10; i++)
        argv[k++] = rest[i];
    for (size_t i = 0; i < n_ids; i++)
        argv[k++] = ids[i];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen (argv[i]);
    redisReply *r = fks_redis_eval (self->redis, s_script, nkeys, argc, argv, lens, err);
    if (r) {
        rc = s_parse (r, status, res, err);
        freeReplyObject (r);
    }
done:
    free (argv);
    free (lens);
    return rc;
}

int
fks_breaker_allow (fks_breaker_t *self, const char *id, int64_t now_ms,
                   fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                   fks_redis_err_t *err)
{
    assert (self);
    fks_breaker_status_t s;
    s_result_t res;
    if (!s_ids_valid (id ? &id : NULL, 1, err)
        || s_run (self, "allow", now_ms, NULL, "", id ? &id : NULL, 1, &s, &res, err) != 0)
        return -1;
    if (status)
        *status = s;
    if (transition)
        *transition = res.transition;
    return res.already == 1 || s.state != FKS_BREAKER_OPEN ? 1 : 0;
}

int
fks_breaker_record (fks_breaker_t *self, const char *id, bool ok, const char *reason,
                    int64_t now_ms, fks_breaker_status_t *status,
                    fks_breaker_transition_t *transition, fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (!s_ids_valid (id ? &id : NULL, 1, err)
        || s_run (self, "record", now_ms, reason ? reason : "order failed", ok ? "o" : "f",
                  id ? &id : NULL, 1, status, &res, err) != 0)
        return -1;
    if (transition)
        *transition = res.transition;
    return 0;
}

int
fks_breaker_try (fks_breaker_t *self, const char *id, bool ok, const char *reason,
                 int64_t now_ms, fks_breaker_status_t *status,
                 fks_breaker_transition_t *transition, fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (!s_ids_valid (id ? &id : NULL, 1, err)
        || s_run (self, "try", now_ms, reason ? reason : "order failed", ok ? "o" : "f",
                  id ? &id : NULL, 1, status, &res, err) != 0)
        return -1;
    if (transition)
        *transition = res.transition;
    return res.let == 1 ? 1 : 0;
}

int
fks_breaker_try_many (fks_breaker_t *self, const char *const *ids, const bool *ok, size_t n,
                      const char *reason, int64_t now_ms, fks_breaker_status_t *status,
                      bool *opened, bool *closed, fks_redis_err_t *err)
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
    if (!s_ids_valid (ids, n, err))
        return -1;
    char outs[FKS_BREAKER_TRY_MAX + 1];
    for (size_t i = 0; i < n; i++)
        outs[i] = ok[i] ? 'o' : 'f';
    outs[n] = '\0';
    s_result_t res;
    if (s_run (self, "try", now_ms, reason ? reason : "order failed", outs, ids, n, status,
               &res, err) != 0)
        return -1;
    if (opened)
        *opened = res.opened;
    if (closed)
        *closed = res.closed;
    return res.let == (int64_t) n ? (int) n : 0;
}

int
fks_breaker_status (fks_breaker_t *self, int64_t now_ms, fks_breaker_status_t *status,
                    fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    return s_run (self, "status", now_ms, NULL, "", NULL, 0, status, &res, err);
}

int
fks_breaker_reset (fks_breaker_t *self, const char *reason, int64_t now_ms,
                   fks_breaker_status_t *status, fks_breaker_transition_t *transition,
                   fks_redis_err_t *err)
{
    assert (self);
    s_result_t res;
    if (s_run (self, "reset", now_ms, reason && *reason ? reason : "reset", "", NULL, 0, status,
               &res, err) != 0)
        return -1;
    if (transition)
        *transition = res.transition == FKS_BREAKER_CLOSED_NOW ? FKS_BREAKER_CLOSED_NOW
                                                                : FKS_BREAKER_NO_CHANGE;
    return 0;
}
