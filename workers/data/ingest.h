/*  ingest.h - bars into the bars table and Redis, market.bar and data.quality onto the bus.
 *
 *  One call stores one poll's result in ONE transaction:
 *
 *      INSERT INTO bars ... ON CONFLICT (symbol, interval, open_time) DO UPDATE ... WHERE the
 *          values differ RETURNING the bars inserted or changed
 *      INSERT INTO events (the outbox): a market.bar for each bar inserted or changed, a
 *          data.quality for each finding
 *      COMMIT
 *
 *  then publishes those envelopes on the bus and records the newest close of each symbol in
 *  Redis (common/prices.h, key fks:price:<SYMBOL>) for the signal and execution workers.
 *  Re-ingesting a bar with the same values changes nothing and emits nothing; with new values
 *  (the forming bar, a corrected bar) it updates the row and emits one market.bar. A gap or an
 *  outlier finding of a bar that was unchanged was reported when the bar was first stored and
 *  is not reported again (bad values and staleness always are: nothing of theirs is stored).
 *  So a replay run twice, or overlapping polls, never duplicates a row or an event. Bars of
 *  one key given twice in one call count once (the last wins).
 *
 *  After COMMIT nothing can undo the batch: a failed publish is counted (the events stay in
 *  the outbox, the stream's history; market.bar has no consumer group to redeliver to) and the
 *  rest of the batch is not published, so a bus that is down costs one timeout per batch, not
 *  one per bar; a Redis failure is counted and the next bar fixes the price.
 *
 *  The caller's connections: pg must have fks_ingest_stmts prepared; redis and bus may be
 *  NULL (no prices, no publishing). Not thread-safe (the connections are not).
 */
#ifndef FKS_DATA_INGEST_H
#define FKS_DATA_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include "bus/client.h"
#include "common/pg.h"
#include "common/redis.h"
#include "workers/data/bar.h"
#include "workers/data/quality.h"

#define FKS_INGEST_SRC "data"

extern const fks_pg_stmt_t fks_ingest_stmts[];
extern const size_t fks_ingest_n_stmts;

typedef struct {
    size_t stored;              /* bars inserted or changed */
    size_t unchanged;           /* bars already stored with the same values */
    size_t repeated;            /* gap/outlier findings of unchanged bars: reported before */
    size_t events;              /* envelopes committed to the outbox */
    size_t published;           /* envelopes handed to the bus */
    size_t publish_failed;      /* envelopes committed but not published */
    size_t prices;              /* latest prices recorded */
    size_t price_failed;        /* latest prices Redis refused */
} fks_ingest_stats_t;

/*  Stores bars (from one source, e.g. "binance"; already checked: no bad values) and the
 *  findings, as above; now_ms dates the latest price of a bar still forming. stats (may be
 *  NULL) is added to. Returns 0 once committed, or -1 with err when nothing was committed
 *  (the same call may then be retried). */
int fks_ingest (fks_pg_t *pg, fks_redis_t *redis, fks_bus_client_t *bus, const char *source,
                const fks_bars_t *bars, const fks_quality_finding_t *findings,
                size_t n_findings, int64_t now_ms, fks_ingest_stats_t *stats,
                fks_pg_err_t *err);

/*  The newest two bars stored for symbol at interval (fewer when there are fewer), appended
 *  to out oldest first, values as stored (`closed` is true: what is stored is not known to be
 *  forming). Where a live feed resumes after a restart or a lease taken over (feed.h
 *  fks_feed_seed). 0, or -1 with err. */
int fks_ingest_newest (fks_pg_t *pg, const char *symbol, const char *interval, fks_bars_t *out,
                       fks_pg_err_t *err);

#endif
