/*  adapter.h - the one interface of the market-data adapters.
 *
 *  An adapter answers one question: "the bars of this symbol at this interval that open
 *  between start and end, at most limit of them, oldest first". Three adapters implement it:
 *
 *    replay   an OHLCV file (csv.h) loaded at creation; history, so the feed paces it
 *    binance  Binance's public klines REST endpoint, GET <base>/api/v3/klines
 *    yahoo    Yahoo Finance's chart endpoint, GET <base>/v8/finance/chart/<symbol>
 *
 *  The feed (feed.h) decides when to ask and what to do with the answer; the ingest stores
 *  it. An adapter never judges the bars beyond their format: a malformed answer is an error,
 *  a NaN or a high below the low is passed on for the quality checks to report.
 *
 *  Failures say what happened: FKS_FETCH_RATE_LIMITED (HTTP 429, or Binance's 418 ban) with
 *  the Retry-After the server asked for, FKS_FETCH_ERROR for anything else (refused
 *  connection, timeout, an HTTP error with the server's own message, a body that does not
 *  parse). The parsers are public so that recorded answers can be checked without a server.
 *
 *  An adapter is used by one thread at a time (the data worker's loop).
 */
#ifndef FKS_DATA_ADAPTER_H
#define FKS_DATA_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "workers/data/bar.h"
#include "workers/data/csv.h"
#include "workers/data/http.h"

#define FKS_FETCH_RATE_LIMITED  1
#define FKS_FETCH_ERROR        -1

#define FKS_RAW_SYMBOL_MAX      64
#define FKS_BINANCE_LIMIT_MAX   1000
#define FKS_YAHOO_POINTS_MAX    100000

typedef struct {
    const char *raw_symbol;     /* as the source spells it, e.g. BTCUSDT, ^GSPC */
    const char *symbol;         /* normalised, stamped on the bars */
    const char *interval;       /* e.g. 1m, 1d */
    int64_t start_ms;           /* bars opening at or after this */
    int64_t end_ms;             /* and at or before this */
    size_t limit;               /* at most this many (>= 1) */
    int64_t now_ms;             /* the wall clock: a bar is closed when it ends before now */
} fks_fetch_req_t;

typedef struct {
    long http_status;           /* 0 when no HTTP answer */
    int64_t retry_after_ms;     /* -1 when the server did not say */
    char msg[256];
} fks_fetch_err_t;

typedef struct fks_adapter_t fks_adapter_t;

/*  Appends the bars asked for to out, oldest first. Returns 0, FKS_FETCH_RATE_LIMITED or
 *  FKS_FETCH_ERROR (err filled; out keeps what it held before). */
int fks_adapter_fetch (fks_adapter_t *self, const fks_fetch_req_t *req, fks_bars_t *out,
                       fks_fetch_err_t *err);

/*  "replay", "binance", "yahoo": the `source` of the bars it gives. */
const char *fks_adapter_name (const fks_adapter_t *self);

/*  True for history (replay): the feed paces it instead of polling it. */
bool fks_adapter_is_history (const fks_adapter_t *self);

/*  True when the adapter can serve this interval (each source has its own list). */
bool fks_adapter_supports (const fks_adapter_t *self, const char *interval);

/*  The most bars one fetch returns whatever the request's limit (Binance: 1000), 0 when the
 *  source has no such cap. */
size_t fks_adapter_page_max (const fks_adapter_t *self);

void fks_adapter_destroy (fks_adapter_t **self_p);

/*  For the implementations (replay.c, binance.c, yahoo.c): an adapter is a table of operations
 *  and the implementation's own state, which the adapter owns (destroy frees it). */
typedef struct {
    const char *name;
    bool history;
    size_t page_max;            /* fks_adapter_page_max */
    int (*fetch) (void *impl, const fks_fetch_req_t *req, fks_bars_t *out,
                  fks_fetch_err_t *err);
    bool (*supports) (void *impl, const char *interval);
    void (*destroy) (void *impl);
} fks_adapter_ops_t;

/*  A new adapter around impl (ops must outlive it). NULL when memory runs out; impl is then
 *  destroyed. */
fks_adapter_t *fks_adapter_new (const fks_adapter_ops_t *ops, void *impl);

/*  The implementation state, when self was made with ops (else NULL). */
void *fks_adapter_impl (const fks_adapter_t *self, const fks_adapter_ops_t *ops);

/*  The replay adapter: loads the file now (opts as in csv.h). NULL with err on a file that
 *  does not load. */
fks_adapter_t *fks_adapter_replay_new (const char *path, const fks_csv_opts_t *opts,
                                       char *err, size_t cap);

/*  The number of bars a replay adapter holds (0 for the others). */
size_t fks_adapter_replay_size (const fks_adapter_t *self);

/*  What loading a replay adapter's file skipped or merged (csv.h: rows whose time did not
 *  parse, rows for a time a later row also had), or NULL for the other adapters. */
const fks_csv_stats_t *fks_adapter_replay_stats (const fks_adapter_t *self);

/*  The HTTP adapters, for a base URL without a trailing slash, e.g. https://api.binance.com
 *  (FKS_BINANCE_URL) or https://query1.finance.yahoo.com (FKS_YAHOO_URL). http may be NULL.
 *  NULL when the URL is not http(s) or memory runs out. */
fks_adapter_t *fks_adapter_binance_new (const char *base_url, const fks_http_opts_t *http);
fks_adapter_t *fks_adapter_yahoo_new (const char *base_url, const fks_http_opts_t *http);

/*  The parsers of the two HTTP answers (a 200 body), appending the bars of req to out. They
 *  accept what the public formats document and refuse the rest: 0, or FKS_FETCH_ERROR with
 *  the first problem found (e.g. "kline 3: open is not a number"). */
int fks_binance_parse (const char *body, size_t len, const fks_fetch_req_t *req,
                       fks_bars_t *out, fks_fetch_err_t *err);
int fks_yahoo_parse (const char *body, size_t len, const fks_fetch_req_t *req,
                     fks_bars_t *out, fks_fetch_err_t *err);

/*  Binance's and Yahoo's spelling of an interval ("1w" is "1w" at Binance, "1wk" at Yahoo),
 *  or NULL when the source has no such interval. */
const char *fks_binance_interval (const char *interval);
const char *fks_yahoo_interval (const char *interval);

#endif
