/*  prices.c - the latest known price of each symbol, shared through Redis.
 *
 *  See prices.h. The "only if newer" rule is a short Lua script so that two writers (two
 *  data-worker replicas, a replay and a live feed) cannot interleave a read and a write.
 */
#include "workers/prices.h"
#include "workers/symbol.h"

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
    if (!symbol || !*symbol || strlen (symbol) >= FKS_SYMBOL_MAX) {
        if (err)
            snprintf (err->msg, sizeof err->msg, "invalid symbol for a price");
        return -1;
    }
    snprintf (key, cap, "fks:price:%s", symbol);
    return 0;
}

int
fks_price_get (fks_redis_t *redis, const char *symbol, double *price, int64_t *ts_ms,
               fks_redis_err_t *err)
{
    char key[FKS_SYMBOL_MAX + 16];
    if (s_key (symbol, key, sizeof key, err) != 0)
        return -1;
    redisReply *r = fks_redis_command (redis, err, "HMGET %s price ts", key);
    if (!r)
        return -1;
    int rc = 1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2
        && r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len < 64) {
        char buf[64];
        memcpy (buf, r->element[0]->str, r->element[0]->len);
        buf[r->element[0]->len] = '\0';
        char *end;
        double p = strtod (buf, &end);
        if (end != buf && *end == '\0' && isfinite (p) && p > 0) {
            *price = p;
            if (ts_ms) {
                *ts_ms = 0;
                if (r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < 32)
                    *ts_ms = strtoll (r->element[1]->str, NULL, 10);
            }
            rc = 0;
        }
    }
    freeReplyObject (r);
    return rc;
}

int
fks_price_set (fks_redis_t *redis, const char *symbol, double price, int64_t ts_ms,
               fks_redis_err_t *err)
{
    char key[FKS_SYMBOL_MAX + 16];
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
    redisReply *r = fks_redis_command (redis, err, "EVAL %s 1 %s %s %s", s_set_script, key, p, t);
    if (!r)
        return -1;
    freeReplyObject (r);
    return 0;
}
