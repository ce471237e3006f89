/*  prices.h - the latest known price of each symbol, shared through Redis.
 *
 *  The data worker records the close of every bar it ingests (and any adapter may record a
 *  trade price); the signal worker sizes alerts with it and the paper broker fills market
 *  orders at it; the gateway values positions with it. One Redis hash per symbol, key
 *  "fks:price:<SYMBOL>" (the normalised symbol, common/symbol.h), fields `price` (decimal
 *  text) and `ts` (Unix ms of the price). A price older than the one stored never replaces
 *  it, so replays and late bars cannot move the latest price backwards. Values read back are
 *  validated (finite, > 0).
 *
 *  Thread-safety is that of the Redis handle (one per thread).
 */
#ifndef FKS_PRICES_H
#define FKS_PRICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/redis.h"

/*  Reads symbol's latest price. Returns 0 (found: *price > 0, *ts_ms when ts_ms is not
 *  NULL), 1 (no price known, or the stored one is unusable), -1 (Redis error, err filled). */
int fks_price_get (fks_redis_t *redis, const char *symbol, double *price, int64_t *ts_ms,
                   fks_redis_err_t *err);

#define FKS_PRICE_SYMBOL_MAX 33     /* a symbol, incl. NUL: FKS_SYMBOL_MAX, the tables' limit */
#define FKS_PRICE_MANY_MAX 1024     /* symbols in one fks_price_get_many */

/*  Reads the latest price of each of n symbols (0..FKS_PRICE_MANY_MAX) in one round trip (one
 *  EVAL): found[i], prices[i] (0 when not found or unusable) and, when ts_ms is not NULL,
 *  ts_ms[i] (0 when not stored). Returns 0, or -1 (Redis error or a bad symbol, err filled). */
int fks_price_get_many (fks_redis_t *redis, const char *const *symbols, size_t n,
                        double *prices, int64_t *ts_ms, bool *found, fks_redis_err_t *err);

/*  fks_price_get_many in two halves, so that its round trip can overlap another one: send
 *  asks (1..FKS_PRICE_MANY_MAX symbols), recv reads the answer for the same n. A reply left
 *  unread is dropped by the connection's next command (common/redis.h). 0 or -1. */
int fks_price_get_many_send (fks_redis_t *redis, const char *const *symbols, size_t n,
                             fks_redis_err_t *err);
int fks_price_get_many_recv (fks_redis_t *redis, size_t n, double *prices, int64_t *ts_ms,
                             bool *found, fks_redis_err_t *err);

/*  Records price (> 0, finite) at ts_ms unless a newer one is stored. Returns 0 (stored or
 *  older), -1 on a Redis error or an invalid price. */
int fks_price_set (fks_redis_t *redis, const char *symbol, double price, int64_t ts_ms,
                   fks_redis_err_t *err);

#endif
