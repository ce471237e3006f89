/*  prices.c - the latest known price of each symbol, shared through Redis.
 *
 *  See prices.h. The "only if newer" rule is a short Lua script so that two writers (two
 *  data-worker replicas, a replay and a live feed) cannot interleave a read and a write.
 */
#include "common/prices.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_set_script[] =
    "local ts = tonumber(redis.call('HGET', KEYS[1], 'ts'))\n"
    "if ts and ts > tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'price', ARGV[1], 'ts', ARGV[2])\n"
    "return 1\n";

static int
s_key (const char *symbol, char *key, size_t cap, fks_redis_err_t *err)
{
    if (!symbol || !*symbol || strlen (symbol) >= FKS_PRICE_SYMBOL_MAX) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "invalid symbol for a price");
        return -1;
    }
    snprintf (key, cap, "fks:price:%s", symbol);
    return 0;
}

//  A field's text, NUL-terminated in buf (cap bytes), or NULL when absent, empty or too long.
static const char *
s_field (const redisReply *v, char *buf, size_t cap)
{
    if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len >= cap)
        return NULL;
    memcpy (buf, v->str, v->len);
    buf[v->len] = '\0';
    return buf;
}

//  A stored price field: 0 with *price (finite, > 0), or 1 when absent or unusable.
static int
s_parse_price (const redisReply *v, double *price)
{
    char buf[64], *end;
    const char *text = s_field (v, buf, sizeof buf);
    double p = text ? strtod (text, &end) : 0;
    if (!text || end == text || *end != '\0' || !isfinite (p) || p <= 0)
        return 1;
    *price = p;
    return 0;
}

//  A stored ts field: Unix ms > 0, or 0 when absent or unusable.
static int64_t
s_parse_ts (const redisReply *v)
{
    char buf[20], *end;
    const char *text = s_field (v, buf, sizeof buf);
    long long ts = text ? strtoll (text, &end, 10) : 0;
    return text && *end == '\0' && ts > 0 ? (int64_t) ts : 0;
}

int
fks_price_get (fks_redis_t *redis, const char *symbol, double *price, int64_t *ts_ms,
               fks_redis_err_t *err)
{
    bool found;
    double p;
    int64_t ts;
    if (fks_price_get_many (redis, &symbol, 1, &p, &ts, &found, err) != 0)
        return -1;
    if (!found)
        return 1;
    *price = p;
    if (ts_ms)
        *ts_ms = ts;
    return 0;
}

//  Every key's price and ts fields in one round trip (HMGET keeps a missing field's place).
static const char s_get_many_script[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do out[i] = redis.call('HMGET', k, 'price', 'ts') end\n"
    "return out\n";

int
fks_price_get_many_send (fks_redis_t *redis, const char *const *symbols, size_t n,
                         fks_redis_err_t *err)
{
    if (!symbols || n == 0 || n > FKS_PRICE_MANY_MAX) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "prices: 1 to %d symbols at once",
                      FKS_PRICE_MANY_MAX);
        return -1;
    }
    const char **argv = calloc (n, sizeof *argv);
    char (*keys)[FKS_PRICE_SYMBOL_MAX + 16] = calloc (n, sizeof *keys);
    int rc = -1;
    if (!argv || !keys) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "prices: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (s_key (symbols[i], keys[i], sizeof keys[i], err) != 0)
            goto done;
        argv[i] = keys[i];
    }
    rc = fks_redis_send_eval (redis, s_get_many_script, (int) n, (int) n, argv, NULL, err);
done:
    free (argv);
    free (keys);
    return rc;
}

int
fks_price_get_many_recv (fks_redis_t *redis, size_t n, double *prices, int64_t *ts_ms,
                         bool *found, fks_redis_err_t *err)
{
    if (!prices || !found || n == 0 || n > FKS_PRICE_MANY_MAX) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "prices: 1 to %d symbols at once",
                      FKS_PRICE_MANY_MAX);
        return -1;
    }
    redisReply *r = fks_redis_recv (redis, err);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "prices: unexpected reply from Redis");
    }
    else {
        for (size_t i = 0; i < n; i++) {
            const redisReply *pair = r->element[i];
            bool ok = pair->type == REDIS_REPLY_ARRAY && pair->elements == 2;
            found[i] = ok && s_parse_price (pair->element[0], &prices[i]) == 0;
            if (!found[i])
                prices[i] = 0;
            if (ts_ms)
                ts_ms[i] = found[i] ? s_parse_ts (pair->element[1]) : 0;
        }
        rc = 0;
    }
    freeReplyObject (r);
    return rc;
}

int
fks_price_get_many (fks_redis_t *redis, const char *const *symbols, size_t n, double *prices,
                    int64_t *ts_ms, bool *found, fks_redis_err_t *err)
{
    if (n == 0)
        return 0;
    if (!prices || !found) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "prices: nowhere to put them");
        return -1;
    }
    fks_redis_err_t local;
    if (!err)
        err = &local;
    int rc = -1;
    //  Again, once, when Redis had lost the script (its text travels then).
    for (int attempt = 0; attempt < 2; attempt++) {
        if (fks_price_get_many_send (redis, symbols, n, err) != 0)
            return -1;
        rc = fks_price_get_many_recv (redis, n, prices, ts_ms, found, err);
        if (rc == 0 || !fks_redis_noscript (err))
            break;
    }
    return rc;
}

int
fks_price_set (fks_redis_t *redis, const char *symbol, double price, int64_t ts_ms,
               fks_redis_err_t *err)
{
    char key[FKS_PRICE_SYMBOL_MAX + 16];
    if (s_key (symbol, key, sizeof key, err) != 0)
        return -1;
    if (!isfinite (price) || price <= 0) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "invalid price for %s", symbol);
        return -1;
    }
    char p[40], t[24];
    snprintf (p, sizeof p, "%.17g", price);
    snprintf (t, sizeof t, "%" PRId64, ts_ms);
    const char *argv[3] = { key, p, t };
    redisReply *r = fks_redis_eval (redis, s_set_script, 1, 3, argv, NULL, err);
    if (!r)
        return -1;
    freeReplyObject (r);
    return 0;
}
