/*  alert.h - a webhook body turned into a normalised trading alert.
 *
 *  The gateway hands every webhook body to fks_alert_parse together with its Content-Type. The
 *  parser accepts what TradingView and TradersPost users actually send:
 *
 *    application/json          a JSON object
 *    text/plain                a JSON object (TradingView sends JSON with a trailing newline as
 *                              text/plain), or one line of `key=value` pairs separated by spaces
 *                              or commas (values may be "double" or 'single' quoted), or
 *                              `action ticker [qty] [@price]`, e.g. "buy BTCUSDT 0.5 @42000"
 *
 *  A charset parameter is accepted when it is utf-8 or us-ascii; any other media type is refused
 *  with status 415. Every field of the webhook contract and its aliases is read, checked and
 *  normalised; unknown keys are ignored. A refused body gives an error naming the field as the
 *  user wrote it, which the gateway returns as 400 {"error":{"code","field","message"}}.
 *
 *  An fks_alert_t owns no memory: every string sits in a fixed buffer sized by the limits below
 *  (longer input is refused, never truncated), so alerts can be copied with `=`. A string field
 *  is absent when it is empty, an enum when it is its _NONE value, a number when its has_ flag is
 *  false. The passphrase is never part of an fks_alert_t: the parser hands it out separately
 *  (fks_alert_secret_t) for authentication, so nothing persisted or logged can hold it.
 *
 *  All functions are thread-safe (no shared state).
 */
#ifndef FKS_ALERT_H
#define FKS_ALERT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/id.h"

/*  Limits. String sizes include the terminating NUL. */
#define FKS_ALERT_BODY_MAX        (64 * 1024)   /* bodies above are refused with 413 */
#define FKS_ALERT_CONTENT_TYPE_MAX 256          /* longer Content-Type headers get 415 */
#define FKS_ALERT_MAX_DEPTH        8            /* JSON nesting ({"stopLoss":{...}} is 2) */
#define FKS_ALERT_SOURCE_MAX       32
#define FKS_ALERT_SYMBOL_MAX       64
#define FKS_ALERT_STRATEGY_MAX     128
#define FKS_ALERT_INTERVAL_MAX     16
#define FKS_ALERT_EXCHANGE_MAX     32
#define FKS_ALERT_CLIENT_ID_MAX    129
#define FKS_ALERT_COMMENT_MAX      512
#define FKS_ALERT_PASSPHRASE_MAX   256
#define FKS_ALERT_IDEM_KEY_MAX     136          /* "id:" + client id, or "h:" + 64 hex */
#define FKS_ALERT_JSON_MAX         8192         /* fks_alert_to_json never needs more */

/*  Alert times must fall in [2000-01-01, 2100-01-01) UTC. */
#define FKS_ALERT_TIME_MIN_MS      INT64_C(946684800000)
#define FKS_ALERT_TIME_MAX_MS      INT64_C(4102444800000)

/*  `action` / `side`. Kept as sent (lowercased): buy and sell are orders, long/short/flat are
 *  target positions ({{strategy.market_position}}), close/exit close what is open, cancel
 *  cancels open orders for the symbol, add adds to the position. The signal worker decides. */
typedef enum {
    FKS_ACTION_NONE = 0,
    FKS_ACTION_BUY, FKS_ACTION_SELL, FKS_ACTION_LONG, FKS_ACTION_SHORT, FKS_ACTION_CLOSE,
    FKS_ACTION_FLAT, FKS_ACTION_EXIT, FKS_ACTION_CANCEL, FKS_ACTION_ADD
} fks_alert_action_t;

/*  TradersPost `sentiment`: bullish (also "long"), bearish (also "short"), flat. */
typedef enum {
    FKS_SENTIMENT_NONE = 0, FKS_SENTIMENT_BULLISH, FKS_SENTIMENT_BEARISH, FKS_SENTIMENT_FLAT
} fks_alert_sentiment_t;

/*  `market_position` ({{strategy.market_position}}): the strategy's position after the order. */
typedef enum {
    FKS_POSITION_NONE = 0, FKS_POSITION_LONG, FKS_POSITION_SHORT, FKS_POSITION_FLAT
} fks_alert_position_t;

typedef enum { FKS_ORDER_MARKET = 0, FKS_ORDER_LIMIT } fks_alert_order_type_t;

/*  TradersPost `quantityType`: how `quantity` is meant. */
typedef enum {
    FKS_QTY_NONE = 0, FKS_QTY_FIXED_QUANTITY, FKS_QTY_DOLLAR_AMOUNT, FKS_QTY_RISK_DOLLAR_AMOUNT,
    FKS_QTY_RISK_PERCENT, FKS_QTY_PERCENT_OF_EQUITY, FKS_QTY_PERCENT_OF_POSITION
} fks_alert_qty_type_t;

/*  A stop loss or take profit. The level is given one way: a price, a percent distance from
 *  the entry, or an amount (price distance). `stop_loss: 41000` means {stop, price 41000} and
 *  `take_profit: 45000` means {price 45000}. */
typedef enum { FKS_EXIT_NONE = 0, FKS_EXIT_STOP, FKS_EXIT_STOP_LIMIT, FKS_EXIT_TRAILING_STOP,
               FKS_EXIT_LIMIT } fks_alert_exit_type_t;
typedef enum { FKS_LEVEL_PRICE = 1, FKS_LEVEL_PERCENT, FKS_LEVEL_AMOUNT } fks_alert_level_t;

typedef struct {
    fks_alert_exit_type_t type;     /* NONE: absent. stop loss: STOP, STOP_LIMIT or
                                       TRAILING_STOP; take profit: LIMIT */
    fks_alert_level_t by;           /* how value is meant (TRAILING_STOP: percent or amount) */
    double value;                   /* > 0; a percent is in (0, 100] for a stop loss */
    bool has_limit_price;           /* STOP_LIMIT only, and always there */
    double limit_price;
} fks_alert_exit_t;

typedef struct {
    char source[FKS_ALERT_SOURCE_MAX];      /* who sent it, from the route ("tradingview") */
    char symbol[FKS_ALERT_SYMBOL_MAX];      /* always set; uppercased; [A-Z0-9:._/!-],
                                               '!' never first nor after ':' */
    fks_alert_action_t action;              /* always set: a sentiment alone gives long,
                                               short or flat */
    fks_alert_sentiment_t sentiment;
    fks_alert_position_t market_position;
    bool has_quantity;      double quantity;        /* > 0 */
    fks_alert_qty_type_t quantity_type;             /* NONE: fixed quantity implied */
    bool has_price;         double price;           /* > 0 */
    fks_alert_order_type_t order_type;              /* MARKET unless said otherwise */
    bool has_limit_price;   double limit_price;     /* > 0; a LIMIT order always has one */
    bool has_signal_price;  double signal_price;    /* > 0 */
    fks_alert_exit_t stop_loss;
    fks_alert_exit_t take_profit;
    char strategy[FKS_ALERT_STRATEGY_MAX];
    char interval[FKS_ALERT_INTERVAL_MAX];          /* [A-Za-z0-9], e.g. "5", "1D" */
    char exchange[FKS_ALERT_EXCHANGE_MAX];          /* [A-Za-z0-9_.-] */
    bool has_alert_time;    int64_t alert_time_ms;  /* Unix ms, within the bounds above */
    bool has_position_size; double position_size;   /* any sign: negative is short */
    bool has_confidence;    double confidence;      /* [0, 1] */
    char client_id[FKS_ALERT_CLIENT_ID_MAX];        /* `id`: printable ASCII */
    char comment[FKS_ALERT_COMMENT_MAX];
} fks_alert_t;

/*  The passphrase found in a body, for fks_auth. Wipe it (fks_alert_secret_wipe) once used. */
typedef struct {
    bool present;
    size_t len;
    char value[FKS_ALERT_PASSPHRASE_MAX];
} fks_alert_secret_t;

/*  Why a body was refused. status is the HTTP status the gateway answers: 400 (code
 *  "invalid_field"; field names the key as written in the body, "stopLoss.percent" for nested
 *  keys, or "body" when the body as a whole is wrong), 413 ("body_too_large", field "body") or
 *  415 ("unsupported_media_type", field "Content-Type"). message is one English sentence that
 *  never quotes body text that may belong to a secret: not the passphrase, not what follows
 *  an unquoted secret in a key=value body (from there on it names positions and known fields
 *  only), not any part of a JSON syntax error. */
typedef struct {
    int status;
    char code[32];
    char field[64];
    char message[256];
} fks_alert_err_t;

/*  Parses a webhook body. content_type is the Content-Type header (NULL or "" gives 415), body
 *  holds len bytes (not NUL-terminated; len above FKS_ALERT_BODY_MAX gives 413), source is the
 *  route's source name (e.g. "tradingview"; copied, truncated to FKS_ALERT_SOURCE_MAX - 1).
 *  On success fills *alert and, when passphrase is not NULL, *passphrase (present false when
 *  the body has none) and returns 0. On failure returns -1 with *err filled (err may be NULL)
 *  and *alert and *passphrase cleared.
 *
 *  Keys and their aliases (first spelling is the one the output uses, see fks_alert_pack):
 *    symbol: ticker, symbol            action: action, side      sentiment
 *    quantity: contracts, quantity, qty                          price
 *    quantity_type: quantityType, quantity_type                  market_position (marketPosition)
 *    order_type: order_type, orderType limit_price: limitPrice, limit_price
 *    signal_price: signalPrice, signal_price                     position_size (positionSize)
 *    stop_loss: stop_loss, stopLoss    take_profit: take_profit, takeProfit
 *    alert time: timenow, timestamp, time                        strategy, interval, exchange
 *    client id: id                     comment                   passphrase
 *  stopLoss is a price, or {type: stop | stop_limit | trailing_stop, and one of stopPrice,
 *  percent (alias trailPercent) or amount (alias trailAmount), plus limitPrice for stop_limit};
 *  takeProfit is a price, or {one of limitPrice, percent, amount}. Keys are case-sensitive.
 *
 *  Rules worth knowing:
 *  - Required: symbol (`ticker`/`symbol`) and `action`/`side` or `sentiment` (alone, bullish
 *    gives the action long, bearish short, flat flat: the target position).
 *  - Numbers may be JSON numbers or strings ("0.5"), parsed strictly: finite, no spaces, no
 *    trailing characters. A string still holding "{{" is an unfilled TradingView placeholder;
 *    so is "{{" outside quotes in a body that is not valid JSON ("price":{{close}}), reported
 *    against the key (path) that holds it. A text/plain body starting with "{{" is not JSON
 *    but the text form ("{{strategy.order.action}} BTCUSDT 1" names `action`).
 *  - Two aliases of one field with different values are refused, naming both keys. The time
 *    keys are the exception: `timenow`, `timestamp` and `time` are taken in that order of
 *    preference (templates often carry both {{time}}, the bar's time, and {{timenow}}); each one
 *    present must still be valid.
 *  - Times are ISO 8601 with Z or an offset, or an epoch integer: below 10^11 it is seconds,
 *    otherwise milliseconds (the two cannot be confused within 2000-2099, the accepted range).
 *  - quantity, price, limitPrice, signalPrice and stop/take levels must be > 0; confidence is
 *    in [0, 1]; with a percent quantityType (risk_percent, percent_of_equity,
 *    percent_of_position) quantity is at most 100; a stop loss percent is at most 100.
 *  - A limit order without limitPrice uses price as its limit price.
 *  - The symbol is uppercased and may hold [A-Za-z0-9:._/-]; id printable ASCII; strategy and
 *    comment any UTF-8 text without control characters; a JSON integer is accepted for id,
 *    interval and passphrase.
 *  - JSON null counts as absent; an empty string counts as absent for strategy, interval,
 *    exchange and comment, and is refused for every other field. */
int fks_alert_parse (const char *content_type, const void *body, size_t len,
                     const char *source, fks_alert_t *alert, fks_alert_secret_t *passphrase,
                     fks_alert_err_t *err);

/*  Overwrites the passphrase so it does not linger in memory. NULL is a no-op. */
void fks_alert_secret_wipe (fks_alert_secret_t *secret);

/*  The alert's idempotency key into out, and the key it had one window earlier into prev
 *  (both FKS_ALERT_IDEM_KEY_MAX bytes; prev may be NULL when unwanted). A hash key is "h:" + hex
 *  SHA-256 of the normalised alert: source, symbol, action, sentiment, market_position,
 *  position_size, quantity, quantity_type, price, order_type, limit_price, signal_price,
 *  stop_loss, take_profit, strategy, exchange, plus what ties it to a moment, by the first of:
 *
 *    1. the body had an `id`: out is "id:<client id>", prev "".
 *    2. the alert has a time: the hash with the alert time; prev "".
 *    3. signed_ts >= 0, the request's signed timestamp (X-FKS-Timestamp, Unix seconds; pass -1
 *       for an unsigned request): the hash with that timestamp, with no window; prev "". A
 *       replayed request carries the same timestamp and body, so it hashes to the same key for
 *       as long as the inbox keeps the row, whatever the replay window.
 *    4. otherwise: the hash with the bucket floor(now_ms / window_ms) (the very bytes hashed
 *       before prev existed, so stored keys keep their meaning), and prev the same hash with
 *       the bucket before. The caller treats the alert as a duplicate when a row with out
 *       exists, or a row with prev exists that was received less than window_ms ago: equal
 *       alerts less than window_ms apart are duplicates even across a bucket boundary (a
 *       sliding window), and equal alerts at least window_ms apart are not.
 *
 *  Equal alerts give equal keys; a difference in any hashed field gives a different key, and
 *  the four cases never give the same key. interval, confidence and comment do not count.
 *  Returns 0, or -1 (out and prev "") when window_ms <= 0 without an `id`, or hashing failed. */
int fks_alert_idem_key (const fks_alert_t *alert, int64_t now_ms, int64_t window_ms,
                        int64_t signed_ts, char out[FKS_ALERT_IDEM_KEY_MAX],
                        char prev[FKS_ALERT_IDEM_KEY_MAX]);

/*  The alert as a compact JSON object (the inbox's jsonb column, the REST API), with the key
 *  names of fks_alert_pack: only present fields, numbers in their shortest exact form,
 *  alert_time in Unix ms. Writes a NUL-terminated string into buf (cap bytes;
 *  FKS_ALERT_JSON_MAX always suffices) and its length into *len_out (may be NULL).
 *  Returns 0, or -1 when cap is too small. Never contains the passphrase (the alert has none). */
int fks_alert_to_json (const fks_alert_t *alert, char *buf, size_t cap, size_t *len_out);

/*  Packs the alert as the body map of a `webhook.received` envelope (bus/schema.c), with
 *  inbox_id the id of the inbox row. Only present fields are packed; action and order_type are
 *  always present. stop_loss is a map {type: "stop"|"stop_limit"|"trailing_stop", one of
 *  stop_price | percent | amount, limit_price (stop_limit only)}; take_profit is a map {one of
 *  limit_price | percent | amount}. Returns 0, or -1 (nothing packed) when inbox_id is NULL or
 *  nil. Build the envelope with fks_envelope_encode, which checks the body against the schema;
 *  the schema accepts the sources "tradingview", "script" and "api". */
int fks_alert_pack (const fks_alert_t *alert, const fks_id_t *inbox_id, msgpack_packer *pk);

/*  Canonical lowercase names of the enum values ("buy", "bullish", "percent_of_equity",
 *  "stop_limit"...), "" for the _NONE values. For logs and metrics labels. */
const char *fks_alert_action_name (fks_alert_action_t action);
const char *fks_alert_sentiment_name (fks_alert_sentiment_t sentiment);
const char *fks_alert_position_name (fks_alert_position_t position);
const char *fks_alert_order_type_name (fks_alert_order_type_t type);
const char *fks_alert_qty_type_name (fks_alert_qty_type_t type);
const char *fks_alert_exit_type_name (fks_alert_exit_type_t type);

#endif
