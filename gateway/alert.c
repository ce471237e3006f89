/*  alert.c - a webhook body turned into a normalised trading alert.
 *
 *  Every body, whatever its form, becomes a jansson object first: JSON bodies through jansson
 *  (duplicate keys refused, nesting bounded by a scan before jansson sees the bytes, size
 *  bounded by FKS_ALERT_BODY_MAX); plain-text bodies through a small tokenizer that builds an object of strings. One
 *  routine then reads the object's fields through a table of field specifications (aliases,
 *  kind, bounds), so JSON, key=value and "buy BTCUSDT 0.5 @42000" follow the very same rules
 *  and give the very same errors.
 *
 *  The output, fks_alert_t, holds fixed-size buffers only; the passphrase is handed out on the
 *  side and wiped from jansson's copy before the tree is freed. The alert then serialises to
 *  JSON (inbox.alert, REST) and msgpack (the webhook.received body) from one list of entries,
 *  so the two always carry the same keys, and hashes into an idempotency key.
 *
 *  Error messages may quote a short, sanitised piece of the offending value to help a user fix
 *  a template, but never body text that may belong to a secret: the passphrase is never quoted,
 *  nor is anything that follows an unquoted secret in a key=value body (`passphrase=my secret`
 *  splits the secret into two tokens), nor any part of a JSON syntax error (jansson's texts
 *  quote the bytes near the error). Those messages name the field or the position instead.
 */
#include "gateway/alert.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/envelope.h"
#include "bus/schema.h"
#include "common/log.h"
#include "common/sbuf.h"
#include "common/stance.h"
#include "common/symbol.h"

#define S_KV_MAX_PAIRS   64     /* key=value pairs in a plain-text body */
#define S_KV_KEY_MAX     64     /* bytes in one plain-text key */
#define S_NUMBER_MAX     64     /* bytes in a number written as a string */
#define S_ENUM_MAX       32     /* bytes in an enum value worth comparing */
#define S_QUOTE_MAX      32     /* bytes of a value quoted in an error message */

// ---------------------------------------------------------------------------------------------
//  Errors

typedef struct {
    fks_alert_err_t *err;
    const char *prefix;         /* "" at the top level, "stopLoss." inside a nested object */
    bool no_quote;              /* body text may belong to a secret: messages quote none of it */
} s_ctx_t;

static int
s_fail_status (fks_alert_err_t *err, int status, const char *code, const char *field,
               const char *fmt, ...) __attribute__ ((format (printf, 5, 6)));

static int
s_fail_status (fks_alert_err_t *err, int status, const char *code, const char *field,
               const char *fmt, ...)
{
    err->status = status;
    snprintf (err->code, sizeof err->code, "%s", code);
    snprintf (err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, ap);
    va_end (ap);
    return -1;
}

//  A 400 about the field key (prefixed when nested).
static int
s_fail (s_ctx_t *c, const char *key, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static int
s_fail (s_ctx_t *c, const char *key, const char *fmt, ...)
{
    fks_alert_err_t *err = c->err;
    err->status = 400;
    snprintf (err->code, sizeof err->code, "invalid_field");
    snprintf (err->field, sizeof err->field, "%s%s", c->prefix, key);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, ap);
    va_end (ap);
    return -1;
}

//  A short, printable rendering of a value for messages: 'abc' with anything outside printable
//  ASCII (and the quote itself) shown as '?', cut at S_QUOTE_MAX bytes with "...".
static const char *
s_quote (const char *s, size_t len, char out[S_QUOTE_MAX + 8])
{
    size_t n = 0;
    out[n++] = '\'';
    size_t i;
    for (i = 0; i < len && i < S_QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char) s[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f && ch != '\'') ? (char) ch : '?';
    }
    if (i < len) {
        memcpy (out + n, "...", 3);
        n += 3;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return out;
}

#define S_GOT_MAX (S_QUOTE_MAX + 16)

//  ", got 'abc'" to end a message with the offending value, or "" when body text may belong to
//  a secret.
static const char *
s_got (const s_ctx_t *c, const char *s, size_t len, char out[S_GOT_MAX])
{
    if (c->no_quote) {
        out[0] = '\0';
        return out;
    }
    char q[S_QUOTE_MAX + 8];
    snprintf (out, S_GOT_MAX, ", got %s", s_quote (s, len, q));
    return out;
}

//  Keys whose value is, or may be, a secret: the passphrase the parser hands out, and whatever
//  else a user may have named a secret (token, secret, password, apiKey...), which the parser
//  ignores as unknown but must not echo either. Case-insensitive substrings.
static bool
s_secret_key (const char *key, size_t len)
{
    static const char *const words[] = { "pass", "secret", "token", "key", NULL };
    for (size_t w = 0; words[w]; w++) {
        size_t wlen = strlen (words[w]);
        for (size_t i = 0; i + wlen <= len; i++) {
            size_t j = 0;
            while (j < wlen && (key[i + j] | 0x20) == words[w][j])
                j++;
            if (j == wlen)
                return true;
        }
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
//  Small text helpers (ASCII only: never locale-dependent)

static bool s_is_digit (char ch) { return ch >= '0' && ch <= '9'; }
static bool s_is_alpha (char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
static bool s_is_alnum (char ch) { return s_is_digit (ch) || s_is_alpha (ch); }
static bool s_is_space (char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }
static char s_lower (char ch) { return (ch >= 'A' && ch <= 'Z') ? (char) (ch + 32) : ch; }
static char s_upper (char ch) { return (ch >= 'a' && ch <= 'z') ? (char) (ch - 32) : ch; }

//  Case-insensitive equality of s (len bytes) with the lowercase NUL-terminated word.
static bool
s_ieq (const char *s, size_t len, const char *word)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (word[i] == '\0' || s_lower (s[i]) != word[i])
            return false;
    return word[i] == '\0';
}

//  An unfilled TradingView placeholder: "{{" anywhere in the value.
static const char *
s_placeholder (const char *s, size_t len)
{
    return len >= 2 ? memmem (s, len, "{{", 2) : NULL;
}

//  The placeholder at `at` (s holds len bytes) was not filled in: a 400 about field, whose
//  message names it as name. The placeholder itself, e.g. '{{close}}', is quoted so the user
//  knows which one, unless body text may belong to a secret.
static int
s_fail_placeholder_as (s_ctx_t *c, const char *field, const char *name, const char *s,
                       size_t len, const char *at)
{
    if (c->no_quote)
        return s_fail (c, field, "%s holds a TradingView placeholder that was not filled in; "
                       "check the alert message", name);
    size_t rest = len - (size_t) (at - s);
    const char *end = memmem (at, rest, "}}", 2);
    size_t n = end ? (size_t) (end - at) + 2 : rest;
    char q[S_QUOTE_MAX + 8];
    return s_fail (c, field, "%s holds the TradingView placeholder %s, which was not filled in; "
                   "check the alert message", name, s_quote (at, n, q));
}

static int
s_fail_placeholder (s_ctx_t *c, const char *key, const char *s, size_t len, const char *at)
{
    return s_fail_placeholder_as (c, key, key, s, len, at);
}

// ---------------------------------------------------------------------------------------------
//  Enums: accepted spellings and canonical names

typedef struct {
    const char *name;           /* accepted spelling, lowercase */
    int value;
} s_enum_t;

static const s_enum_t s_actions[] = {
    { "buy", FKS_ACTION_BUY }, { "sell", FKS_ACTION_SELL }, { "long", FKS_ACTION_LONG },
    { "short", FKS_ACTION_SHORT }, { "close", FKS_ACTION_CLOSE }, { "flat", FKS_ACTION_FLAT },
    { "exit", FKS_ACTION_EXIT }, { "cancel", FKS_ACTION_CANCEL }, { "add", FKS_ACTION_ADD },
    { NULL, 0 } };
static const s_enum_t s_sentiments[] = {
    { "bullish", FKS_SENTIMENT_BULLISH }, { "long", FKS_SENTIMENT_BULLISH },
    { "bearish", FKS_SENTIMENT_BEARISH }, { "short", FKS_SENTIMENT_BEARISH },
    { "flat", FKS_SENTIMENT_FLAT }, { NULL, 0 } };
static const s_enum_t s_positions[] = {
    { "long", FKS_POSITION_LONG }, { "short", FKS_POSITION_SHORT },
    { "flat", FKS_POSITION_FLAT }, { NULL, 0 } };
static const s_enum_t s_order_types[] = {
    { "market", FKS_ORDER_MARKET }, { "limit", FKS_ORDER_LIMIT }, { NULL, 0 } };
static const s_enum_t s_qty_types[] = {
    { "fixed_quantity", FKS_QTY_FIXED_QUANTITY }, { "dollar_amount", FKS_QTY_DOLLAR_AMOUNT },
    { "risk_dollar_amount", FKS_QTY_RISK_DOLLAR_AMOUNT }, { "risk_percent", FKS_QTY_RISK_PERCENT },
    { "percent_of_equity", FKS_QTY_PERCENT_OF_EQUITY },
    { "percent_of_position", FKS_QTY_PERCENT_OF_POSITION }, { NULL, 0 } };
static const s_enum_t s_stop_types[] = {
    { "stop", FKS_EXIT_STOP }, { "stop_limit", FKS_EXIT_STOP_LIMIT },
    { "trailing_stop", FKS_EXIT_TRAILING_STOP }, { NULL, 0 } };

static const char *const s_action_names[] = {
    "", "buy", "sell", "long", "short", "close", "flat", "exit", "cancel", "add" };
static const char *const s_sentiment_names[] = { "", "bullish", "bearish", "flat" };
static const char *const s_position_names[] = { "", "long", "short", "flat" };
static const char *const s_order_type_names[] = { "market", "limit" };
static const char *const s_qty_type_names[] = {
    "", "fixed_quantity", "dollar_amount", "risk_dollar_amount", "risk_percent",
    "percent_of_equity", "percent_of_position" };
static const char *const s_exit_type_names[] = { "", "stop", "stop_limit", "trailing_stop",
                                                 "limit" };

#define S_NAME(table, v) \
    (((size_t) (v) < sizeof (table) / sizeof ((table)[0])) ? (table)[(size_t) (v)] : "")

const char *fks_alert_action_name (fks_alert_action_t v) { return S_NAME (s_action_names, v); }
const char *fks_alert_sentiment_name (fks_alert_sentiment_t v)
    { return S_NAME (s_sentiment_names, v); }
const char *fks_alert_position_name (fks_alert_position_t v)
    { return S_NAME (s_position_names, v); }
const char *fks_alert_order_type_name (fks_alert_order_type_t v)
    { return S_NAME (s_order_type_names, v); }
const char *fks_alert_qty_type_name (fks_alert_qty_type_t v)
    { return S_NAME (s_qty_type_names, v); }
const char *fks_alert_exit_type_name (fks_alert_exit_type_t v)
    { return S_NAME (s_exit_type_names, v); }

//  "buy, sell, long" for messages.
static void
s_enum_list (const s_enum_t *values, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; values[i].name && n < cap; i++) {
        int w = snprintf (out + n, cap - n, "%s%s", i ? ", " : "", values[i].name);
        if (w < 0)
            break;
        n += (size_t) w;
    }
}

// ---------------------------------------------------------------------------------------------
//  Field specifications

typedef enum { S_NUMBER = 1, S_TEXT, S_ENUM, S_TIME, S_STOP_LOSS, S_TAKE_PROFIT } s_kind_t;
typedef enum { S_CS_TEXT = 0, S_CS_SYMBOL, S_CS_INTERVAL, S_CS_EXCHANGE, S_CS_PRINTABLE }
    s_charset_t;

typedef struct {
    const char *keys[5];        /* aliases, NULL-terminated; for S_TIME in order of preference */
    s_kind_t kind;
    double min, max;            /* S_NUMBER: accepted range */
    bool min_open;              /* S_NUMBER: min itself is refused */
    size_t cap;                 /* S_TEXT: buffer size incl. NUL */
    s_charset_t charset;        /* S_TEXT */
    bool upper;                 /* S_TEXT: stored uppercased */
    bool empty_absent;          /* S_TEXT: "" counts as absent */
    bool int_ok;                /* S_TEXT: a JSON integer is taken as its decimal text */
    const s_enum_t *values;     /* S_ENUM */
} s_spec_t;

typedef struct {
    double num;
    int64_t ms;
    int en;
    fks_alert_exit_t exit;
    char text[FKS_ALERT_COMMENT_MAX];
} s_val_t;

//  The largest quantity, price or amount taken: far above any real one, and small enough that
//  sizing and rounding it (times 10^12 at most) stay finite.
#define S_AMOUNT_MAX 1e15

#define S_POSITIVE(...) { .keys = { __VA_ARGS__, NULL }, .kind = S_NUMBER, \
                       .min = 0, .max = S_AMOUNT_MAX, .min_open = true }

static const s_spec_t s_symbol_spec = { .keys = { "ticker", "symbol", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_SYMBOL_MAX, .charset = S_CS_SYMBOL, .upper = true };
static const s_spec_t s_action_spec = { .keys = { "action", "side", NULL }, .kind = S_ENUM,
    .values = s_actions };
static const s_spec_t s_sentiment_spec = { .keys = { "sentiment", NULL }, .kind = S_ENUM,
    .values = s_sentiments };
static const s_spec_t s_position_spec = { .keys = { "market_position", "marketPosition", NULL },
    .kind = S_ENUM, .values = s_positions };
static const s_spec_t s_quantity_spec = S_POSITIVE ("contracts", "quantity", "qty");
static const s_spec_t s_qty_type_spec = { .keys = { "quantityType", "quantity_type", NULL },
    .kind = S_ENUM, .values = s_qty_types };
static const s_spec_t s_price_spec = S_POSITIVE ("price");
static const s_spec_t s_order_type_spec = { .keys = { "order_type", "orderType", NULL },
    .kind = S_ENUM, .values = s_order_types };
static const s_spec_t s_limit_price_spec = S_POSITIVE ("limitPrice", "limit_price");
static const s_spec_t s_signal_price_spec = S_POSITIVE ("signalPrice", "signal_price");
static const s_spec_t s_stop_spec = { .keys = { "stop_loss", "stopLoss", NULL },
    .kind = S_STOP_LOSS };
static const s_spec_t s_take_spec = { .keys = { "take_profit", "takeProfit", NULL },
    .kind = S_TAKE_PROFIT };
static const s_spec_t s_strategy_spec = { .keys = { "strategy", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_STRATEGY_MAX, .charset = S_CS_TEXT, .empty_absent = true };
static const s_spec_t s_interval_spec = { .keys = { "interval", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_INTERVAL_MAX, .charset = S_CS_INTERVAL, .empty_absent = true,
    .int_ok = true };
static const s_spec_t s_exchange_spec = { .keys = { "exchange", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_EXCHANGE_MAX, .charset = S_CS_EXCHANGE, .empty_absent = true };
static const s_spec_t s_time_spec = { .keys = { "timenow", "timestamp", "time", NULL },
    .kind = S_TIME };
static const s_spec_t s_position_size_spec = {
    .keys = { "position_size", "positionSize", NULL }, .kind = S_NUMBER,
    .min = -S_AMOUNT_MAX, .max = S_AMOUNT_MAX };
static const s_spec_t s_confidence_spec = { .keys = { "confidence", NULL }, .kind = S_NUMBER,
    .min = 0, .max = 1 };
static const s_spec_t s_client_id_spec = { .keys = { "id", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_CLIENT_ID_MAX, .charset = S_CS_PRINTABLE, .int_ok = true };
static const s_spec_t s_comment_spec = { .keys = { "comment", NULL }, .kind = S_TEXT,
    .cap = FKS_ALERT_COMMENT_MAX, .charset = S_CS_TEXT, .empty_absent = true };

//  Inside stopLoss / takeProfit objects.
static const s_spec_t s_exit_type_spec = { .keys = { "type", NULL }, .kind = S_ENUM,
    .values = s_stop_types };
static const s_spec_t s_exit_stop_price_spec = S_POSITIVE ("stopPrice", "stop_price");
static const s_spec_t s_exit_limit_price_spec = S_POSITIVE ("limitPrice", "limit_price");
static const s_spec_t s_exit_stop_percent_spec = { .keys = { "percent", "trailPercent", NULL },
    .kind = S_NUMBER, .min = 0, .max = 100, .min_open = true };
static const s_spec_t s_exit_take_percent_spec = S_POSITIVE ("percent");
static const s_spec_t s_exit_amount_spec = S_POSITIVE ("amount", "trailAmount");

// ---------------------------------------------------------------------------------------------
//  Value conversions

//  A number written as text, strictly: digits, sign, point and exponent only, the whole string
//  consumed, finite.
static int
s_strict_number (const char *s, size_t len, double *out)
{
    if (len == 0 || len > S_NUMBER_MAX)
        return -1;
    char buf[S_NUMBER_MAX + 1];
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!(s_is_digit (ch) || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || ch == '-'))
            return -1;
        buf[i] = ch;
    }
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod (buf, &end);
    if (end != buf + len || !isfinite (v) || (errno == ERANGE && v != 0))
        return -1;
    *out = v;
    return 0;
}

static int
s_to_number (s_ctx_t *c, const char *key, json_t *v, double *out)
{
    if (json_is_integer (v))
        *out = (double) json_integer_value (v);
    else
    if (json_is_real (v))
        *out = json_real_value (v);
    else
    if (json_is_string (v)) {
        const char *s = json_string_value (v);
        size_t len = json_string_length (v);
        const char *at = s_placeholder (s, len);
        if (at)
            return s_fail_placeholder (c, key, s, len, at);
        if (s_strict_number (s, len, out) != 0) {
            char got[S_GOT_MAX];
            return s_fail (c, key, "%s must be a number%s", key, s_got (c, s, len, got));
        }
    }
    else
        return s_fail (c, key, "%s must be a number", key);
    if (!isfinite (*out))
        return s_fail (c, key, "%s must be a finite number", key);
    return 0;
}

static int
s_check_range (s_ctx_t *c, const s_spec_t *spec, const char *key, double v)
{
    if (spec->min_open && v <= spec->min)
        return s_fail (c, key, "%s must be greater than %g", key, spec->min);
    if (v < spec->min)
        return s_fail (c, key, "%s must be at least %g", key, spec->min);
    if (v > spec->max)
        return s_fail (c, key, "%s must be at most %g", key, spec->max);
    return 0;
}

static bool
s_charset_ok (s_charset_t cs, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) s[i];
        bool ok;
        switch (cs) {
            case S_CS_SYMBOL:
                //  '!' ends TradingView's continuous futures (ES1!, CME_MINI:NQ1!); it never
                //  starts the symbol nor the instrument after an exchange prefix.
                ok = s_is_alnum ((char) ch) || ch == ':' || ch == '.' || ch == '_' || ch == '/'
                     || ch == '-' || (ch == '!' && i > 0 && s[i - 1] != ':');
                break;
            case S_CS_INTERVAL:
                ok = s_is_alnum ((char) ch);
                break;
            case S_CS_EXCHANGE:
                ok = s_is_alnum ((char) ch) || ch == '_' || ch == '.' || ch == '-';
                break;
            case S_CS_PRINTABLE:
                ok = ch >= 0x20 && ch < 0x7f;
                break;
            default:
                ok = ch >= 0x20 && ch != 0x7f;
                break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static const char *
s_charset_text (s_charset_t cs)
{
    switch (cs) {
        case S_CS_SYMBOL:    return "letters, digits and : . _ / - ! (! not first nor after :)";
        case S_CS_INTERVAL:  return "letters and digits";
        case S_CS_EXCHANGE:  return "letters, digits and _ . -";
        case S_CS_PRINTABLE: return "printable ASCII characters";
        default:             return "text without control characters";
    }
}

//  1 when stored, 0 when an empty string counts as absent, -1 on error.
static int
s_to_text (s_ctx_t *c, const s_spec_t *spec, const char *key, json_t *v, char *out)
{
    char num[32];
    const char *s;
    size_t len;
    if (json_is_integer (v) && spec->int_ok) {
        int w = snprintf (num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value (v));
        s = num;
        len = (size_t) w;
    }
    else
    if (json_is_string (v)) {
        s = json_string_value (v);
        len = json_string_length (v);
    }
    else
        return s_fail (c, key, "%s must be a string", key);

    const char *at = s_placeholder (s, len);
    if (at)
        return s_fail_placeholder (c, key, s, len, at);
    if (len == 0) {
        if (spec->empty_absent)
            return 0;
        return s_fail (c, key, "%s must not be empty", key);
    }
    if (len >= spec->cap)
        return s_fail (c, key, "%s is longer than %zu bytes", key, spec->cap - 1);
    if (memchr (s, '\0', len) || !s_charset_ok (spec->charset, s, len)) {
        char got[S_GOT_MAX];
        return s_fail (c, key, "%s may only hold %s%s", key,
                       s_charset_text (spec->charset), s_got (c, s, len, got));
    }
    for (size_t i = 0; i < len; i++)
        out[i] = spec->upper ? s_upper (s[i]) : s[i];
    out[len] = '\0';
    return 1;
}

static int
s_to_enum (s_ctx_t *c, const s_spec_t *spec, const char *key, json_t *v, int *out)
{
    char list[160];
    if (!json_is_string (v)) {
        s_enum_list (spec->values, list, sizeof list);
        return s_fail (c, key, "%s must be a string, one of: %s", key, list);
    }
    const char *s = json_string_value (v);
    size_t len = json_string_length (v);
    const char *at = s_placeholder (s, len);
    if (at)
        return s_fail_placeholder (c, key, s, len, at);
    if (len <= S_ENUM_MAX)
        for (size_t i = 0; spec->values[i].name; i++)
            if (s_ieq (s, len, spec->values[i].name)) {
                *out = spec->values[i].value;
                return 0;
            }
    s_enum_list (spec->values, list, sizeof list);
    if (c->no_quote)
        return s_fail (c, key, "the value of %s is not allowed; allowed values: %s", key, list);
    char q[S_QUOTE_MAX + 8];
    return s_fail (c, key, "%s %s is not allowed; allowed values: %s", key,
                   s_quote (s, len, q), list);
}

// ---------------------------------------------------------------------------------------------
//  Times

static int64_t
s_days_from_civil (int y, int m, int d)
{
    //  Days since 1970-01-01 in the proleptic Gregorian calendar (years from March, so the leap
    //  day is last).
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t) era * 146097 + doe - 719468;
}

static int
s_days_in_month (int y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

//  Reads exactly n digits at s[*pos].
static int
s_digits (const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*pos >= len || !s_is_digit (s[*pos]))
            return -1;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return 0;
}

static bool
s_expect (const char *s, size_t len, size_t *pos, char ch)
{
    if (*pos < len && s[*pos] == ch) {
        (*pos)++;
        return true;
    }
    return false;
}

//  ISO 8601 / RFC 3339: YYYY-MM-DD(T|t| )hh:mm[:ss[(.|,)fraction]](Z|z|+hh[:mm]|-hh[:mm]|+hhmm).
//  A zone is required: a time without one is ambiguous. Fractions beyond ms are dropped.
static int
s_parse_iso8601 (const char *s, size_t len, int64_t *ms_out)
{
    size_t p = 0;
    int y, mo, d, h, mi, sec = 0, ms = 0;
    if (s_digits (s, len, &p, 4, &y) || !s_expect (s, len, &p, '-')
        || s_digits (s, len, &p, 2, &mo) || !s_expect (s, len, &p, '-')
        || s_digits (s, len, &p, 2, &d))
        return -1;
    if (!(s_expect (s, len, &p, 'T') || s_expect (s, len, &p, 't') || s_expect (s, len, &p, ' ')))
        return -1;
    if (s_digits (s, len, &p, 2, &h) || !s_expect (s, len, &p, ':')
        || s_digits (s, len, &p, 2, &mi))
        return -1;
    if (s_expect (s, len, &p, ':')) {
        if (s_digits (s, len, &p, 2, &sec))
            return -1;
        if (s_expect (s, len, &p, '.') || s_expect (s, len, &p, ',')) {
            int n = 0;
            while (p < len && s_is_digit (s[p])) {
                if (++n > 9)
                    return -1;
                if (n <= 3)
                    ms = ms * 10 + (s[p] - '0');
                p++;
            }
            if (n == 0)
                return -1;
            for (; n < 3; n++)
                ms *= 10;
        }
    }
    int offset_min = 0;
    if (s_expect (s, len, &p, 'Z') || s_expect (s, len, &p, 'z'))
        ;
    else
    if (p < len && (s[p] == '+' || s[p] == '-')) {
        int sign = s[p++] == '-' ? -1 : 1;
        int oh, om = 0;
        if (s_digits (s, len, &p, 2, &oh))
            return -1;
        if (s_expect (s, len, &p, ':')) {
            if (s_digits (s, len, &p, 2, &om))
                return -1;
        }
        else
        if (p < len && s_digits (s, len, &p, 2, &om))
            return -1;
        if (oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    }
    else
        return -1;
    if (p != len)
        return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > s_days_in_month (y, mo)
        || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t secs = s_days_from_civil (y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
                   - (int64_t) offset_min * 60;
    *ms_out = secs * 1000 + ms;
    return 0;
}

//  Epoch rule: below 10^11 the number is seconds, otherwise milliseconds.
static int
s_epoch (s_ctx_t *c, const char *key, int64_t n, int64_t *ms)
{
    if (n < 0)
        return s_fail (c, key, "%s must not be negative", key);
    if (n < INT64_C(100000000000))
        n *= 1000;
    if (n < FKS_ALERT_TIME_MIN_MS || n >= FKS_ALERT_TIME_MAX_MS)
        return s_fail (c, key, "%s must be a time between 2000 and 2099 (Unix seconds or "
                       "milliseconds)", key);
    *ms = n;
    return 0;
}

static int
s_to_time (s_ctx_t *c, const char *key, json_t *v, int64_t *ms)
{
    if (json_is_integer (v))
        return s_epoch (c, key, json_integer_value (v), ms);
    if (json_is_real (v)) {
        double d = json_real_value (v);
        if (!(d >= 0 && d < 1e15) || d != floor (d))
            return s_fail (c, key, "%s must be a whole number of seconds or milliseconds, or "
                           "an ISO 8601 time", key);
        return s_epoch (c, key, (int64_t) d, ms);
    }
    if (!json_is_string (v))
        return s_fail (c, key, "%s must be an ISO 8601 time or a Unix time", key);
    const char *s = json_string_value (v);
    size_t len = json_string_length (v);
    const char *at = s_placeholder (s, len);
    if (at)
        return s_fail_placeholder (c, key, s, len, at);
    size_t i = 0;
    while (i < len && s_is_digit (s[i]))
        i++;
    if (len > 0 && i == len && len <= 15) {
        int64_t n = 0;
        for (i = 0; i < len; i++)
            n = n * 10 + (s[i] - '0');
        return s_epoch (c, key, n, ms);
    }
    char got[S_GOT_MAX];
    if (s_parse_iso8601 (s, len, ms) != 0)
        return s_fail (c, key, "%s must be an ISO 8601 time with Z or an offset "
                       "(2024-01-15T14:30:00Z) or Unix seconds or milliseconds%s",
                       key, s_got (c, s, len, got));
    if (*ms < FKS_ALERT_TIME_MIN_MS || *ms >= FKS_ALERT_TIME_MAX_MS)
        return s_fail (c, key, "%s must be a time between 2000 and 2099%s", key,
                       s_got (c, s, len, got));
    return 0;
}

// ---------------------------------------------------------------------------------------------
//  Field lookup with aliases

static int s_to_exit (s_ctx_t *c, const s_spec_t *spec, const char *key, json_t *v,
                      fks_alert_exit_t *out);

//  Converts one present value. 1 when stored, 0 when it counts as absent, -1 on error.
static int
s_convert (s_ctx_t *c, const s_spec_t *spec, const char *key, json_t *v, s_val_t *out)
{
    switch (spec->kind) {
        case S_NUMBER:
            if (s_to_number (c, key, v, &out->num) || s_check_range (c, spec, key, out->num))
                return -1;
            return 1;
        case S_TEXT:
            return s_to_text (c, spec, key, v, out->text);
        case S_ENUM:
            return s_to_enum (c, spec, key, v, &out->en) ? -1 : 1;
        case S_TIME:
            return s_to_time (c, key, v, &out->ms) ? -1 : 1;
        case S_STOP_LOSS:
        case S_TAKE_PROFIT:
            return s_to_exit (c, spec, key, v, &out->exit) ? -1 : 1;
    }
    return -1;
}

static bool
s_exit_equal (const fks_alert_exit_t *a, const fks_alert_exit_t *b)
{
    return a->type == b->type && a->by == b->by && a->value == b->value
        && a->has_limit_price == b->has_limit_price
        && (!a->has_limit_price || a->limit_price == b->limit_price);
}

static bool
s_equal (const s_spec_t *spec, const s_val_t *a, const s_val_t *b)
{
    //  "ticker": "{{ticker}}" beside "symbol": "{{syminfo.tickerid}}" (BTCUSDT, BINANCE:BTCUSDT)
    //  name one instrument: the one the workers trade (common/symbol.h).
    if (spec == &s_symbol_spec) {
        char na[FKS_SYMBOL_MAX], nb[FKS_SYMBOL_MAX];
        if (fks_symbol_normalize (a->text, na, NULL, 0) == 0
            && fks_symbol_normalize (b->text, nb, NULL, 0) == 0)
            return strcmp (na, nb) == 0;
    }
    switch (spec->kind) {
        case S_NUMBER:      return a->num == b->num;
        case S_TEXT:        return strcmp (a->text, b->text) == 0;
        case S_ENUM:        return a->en == b->en;
        case S_TIME:        return a->ms == b->ms;
        case S_STOP_LOSS:
        case S_TAKE_PROFIT: return s_exit_equal (&a->exit, &b->exit);
    }
    return false;
}

//  Looks the field up under each of its aliases in obj. Returns 1 with *out (and *key_out, may
//  be NULL) when found, 0 when absent, -1 on a bad value or on two aliases that disagree. JSON
//  null counts as absent. Time aliases are taken by preference instead of compared.
static int
s_lookup (s_ctx_t *c, json_t *obj, const s_spec_t *spec, s_val_t *out, const char **key_out)
{
    const char *found = NULL;
    s_val_t other;
    for (size_t i = 0; spec->keys[i]; i++) {
        const char *key = spec->keys[i];
        json_t *v = json_object_get (obj, key);
        if (!v || json_is_null (v))
            continue;
        int rc = s_convert (c, spec, key, v, found ? &other : out);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (!found)
            found = key;
        else
        if (spec->kind != S_TIME && !s_equal (spec, out, &other))
            return s_fail (c, found, "'%s' and '%s' name the same field and were given "
                           "different values; send only one", found, key);
    }
    if (key_out)
        *key_out = found;
    return found ? 1 : 0;
}

//  stopLoss / takeProfit: a number (a price) or an object.
static int
s_to_exit (s_ctx_t *c, const s_spec_t *spec, const char *key, json_t *v, fks_alert_exit_t *out)
{
    bool stop = spec->kind == S_STOP_LOSS;
    memset (out, 0, sizeof *out);
    if (!json_is_object (v)) {
        double price;
        if (s_to_number (c, key, v, &price))
            return -1;
        if (price <= 0)
            return s_fail (c, key, "%s must be greater than 0", key);
        if (price > S_AMOUNT_MAX)
            return s_fail (c, key, "%s must be at most %g", key, S_AMOUNT_MAX);
        out->type = stop ? FKS_EXIT_STOP : FKS_EXIT_LIMIT;
        out->by = FKS_LEVEL_PRICE;
        out->value = price;
        return 0;
    }
    char prefix[48];
    snprintf (prefix, sizeof prefix, "%s%s.", c->prefix, key);
    s_ctx_t inner = { c->err, prefix, c->no_quote };
    s_val_t val;
    const char *k_price, *k_pct, *k_amt;
    double price = 0, pct = 0, amt = 0;
    int has_price, has_pct, has_amt;

    out->type = stop ? FKS_EXIT_STOP : FKS_EXIT_LIMIT;
    if (stop) {
        int rc = s_lookup (&inner, v, &s_exit_type_spec, &val, NULL);
        if (rc < 0)
            return -1;
        if (rc > 0)
            out->type = (fks_alert_exit_type_t) val.en;
    }
    has_price = s_lookup (&inner, v, stop ? &s_exit_stop_price_spec : &s_exit_limit_price_spec,
                          &val, &k_price);
    if (has_price < 0)
        return -1;
    if (has_price)
        price = val.num;
    has_pct = s_lookup (&inner, v,
                        stop ? &s_exit_stop_percent_spec : &s_exit_take_percent_spec,
                        &val, &k_pct);
    if (has_pct < 0)
        return -1;
    if (has_pct)
        pct = val.num;
    has_amt = s_lookup (&inner, v, &s_exit_amount_spec, &val, &k_amt);
    if (has_amt < 0)
        return -1;
    if (has_amt)
        amt = val.num;

    const char *levels = stop ? "stopPrice, percent or amount" : "limitPrice, percent or amount";
    if (out->type == FKS_EXIT_TRAILING_STOP) {
        if (has_price)
            return s_fail (&inner, k_price, "a trailing_stop takes percent or amount, not %s",
                           k_price);
        levels = "percent or amount";
    }
    int n = has_price + has_pct + has_amt;
    if (n == 0)
        return s_fail (c, key, "%s needs one of %s", key, levels);
    if (n > 1)
        return s_fail (c, key, "%s takes only one of %s", key, levels);
    out->by = has_price ? FKS_LEVEL_PRICE : has_pct ? FKS_LEVEL_PERCENT : FKS_LEVEL_AMOUNT;
    out->value = has_price ? price : has_pct ? pct : amt;

    if (stop) {
        const char *k_limit;
        int has_limit = s_lookup (&inner, v, &s_exit_limit_price_spec, &val, &k_limit);
        if (has_limit < 0)
            return -1;
        if (out->type == FKS_EXIT_STOP_LIMIT) {
            if (!has_limit)
                return s_fail (&inner, "limitPrice", "a stop_limit stop loss needs limitPrice");
            out->has_limit_price = true;
            out->limit_price = val.num;
        }
        else
        if (has_limit)
            return s_fail (&inner, k_limit, "%s is only for a stop loss of type stop_limit",
                           k_limit);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
//  The object to the alert

//  The passphrase: taken aside, never quoted.
static int
s_passphrase (s_ctx_t *c, json_t *obj, fks_alert_secret_t *secret)
{
    json_t *v = json_object_get (obj, "passphrase");
    if (!v || json_is_null (v))
        return 0;
    char num[32];
    const char *s;
    size_t len;
    if (json_is_string (v)) {
        s = json_string_value (v);
        len = json_string_length (v);
    }
    else
    if (json_is_integer (v)) {
        len = (size_t) snprintf (num, sizeof num, "%" JSON_INTEGER_FORMAT,
                                 json_integer_value (v));
        s = num;
    }
    else
        return s_fail (c, "passphrase", "passphrase must be a string");
    if (s_placeholder (s, len))
        return s_fail (c, "passphrase", "passphrase holds a TradingView placeholder that was "
                       "not filled in");
    if (len >= FKS_ALERT_PASSPHRASE_MAX || memchr (s, '\0', len))
        return s_fail (c, "passphrase", "passphrase must be text of at most %d bytes",
                       FKS_ALERT_PASSPHRASE_MAX - 1);
    if (secret) {
        memcpy (secret->value, s, len);
        secret->value[len] = '\0';
        secret->len = len;
        secret->present = true;
    }
    OPENSSL_cleanse (num, sizeof num);
    return 0;
}

//  Copies a value the spec already bounded to fit.
static void
s_copy (char *dst, size_t cap, const char *src)
{
    size_t n = strnlen (src, cap - 1);
    memcpy (dst, src, n);
    dst[n] = '\0';
}

//  Reads one field into dst; 1 found, 0 absent, -1 error. For the simple kinds.
#define S_READ(spec, v, key) s_lookup (c, obj, (spec), (v), (key))

//  The direction a position field says (common/stance.h).
static int
s_position_dir (fks_alert_position_t p)
{
    return p == FKS_POSITION_LONG ? FKS_STANCE_LONG : p == FKS_POSITION_SHORT ? FKS_STANCE_SHORT
         : p == FKS_POSITION_FLAT ? FKS_STANCE_FLAT : FKS_STANCE_UNSAID;
}

static int
s_sentiment_dir (fks_alert_sentiment_t s)
{
    return s == FKS_SENTIMENT_BULLISH ? FKS_STANCE_LONG
         : s == FKS_SENTIMENT_BEARISH ? FKS_STANCE_SHORT
         : s == FKS_SENTIMENT_FLAT ? FKS_STANCE_FLAT : FKS_STANCE_UNSAID;
}

//  market_position, sentiment and position_size must agree on where the position stands
//  after the alert (common/stance.h says why); an alert where they do not is refused naming
//  the field. The keys the position fields came under, for messages ("marketPosition",
//  "positionSize").
typedef struct {
    const char *sentiment, *market_position, *position_size;
} s_pos_keys_t;

static int
s_position_rules (s_ctx_t *c, const fks_alert_t *a, const s_pos_keys_t *k)
{
    //  A key is named only when its field is present (the lookup leaves the others NULL).
    bool exit = a->action == FKS_ACTION_CLOSE || a->action == FKS_ACTION_EXIT
                || a->action == FKS_ACTION_FLAT;
    fks_stance_t st = { .market_position = s_position_dir (a->market_position),
                        .sentiment = s_sentiment_dir (a->sentiment),
                        .add = a->action == FKS_ACTION_ADD, .exit = exit,
                        .has_size = a->has_position_size, .size = a->position_size };
    fks_stance_read_t r;
    fks_stance_conflict_t why = fks_stance_check (&st, &r);
    const char *by = r.after_by_market_position ? k->market_position : k->sentiment;
    double size = a->position_size;
    switch (why) {
    case FKS_STANCE_AGREE:
        return 0;
    case FKS_STANCE_MP_VS_SENTIMENT:
        return s_fail (c, k->sentiment, "%s %s says the position after this alert is %s but %s "
                       "says %s; send one of them, or make them agree", k->sentiment,
                       fks_alert_sentiment_name (a->sentiment), fks_stance_name (st.sentiment),
                       k->market_position, fks_stance_name (st.market_position));
    case FKS_STANCE_ADD_TO_FLAT:
        return s_fail (c, by, "action add adds to the position, but %s says it is flat after "
                       "this alert", by);
    case FKS_STANCE_SIZE_VS_SIDE:
        return s_fail (c, k->position_size, "%s %.10g is %s%s but %s says %s; %s is the signed "
                       "position after the order (TradingView's {{strategy.position_size}}, "
                       "negative when short), not its unsigned size "
                       "({{strategy.market_position_size}})", k->position_size, size,
                       r.size_dir == FKS_STANCE_FLAT ? "" : "a ",
                       r.size_dir == FKS_STANCE_FLAT ? "flat"
                       : r.size_dir == FKS_STANCE_LONG ? "long position" : "short position",
                       by, fks_stance_name (r.after), k->position_size);
    case FKS_STANCE_EXIT_WITH_SIZE:
        return s_fail (c, k->position_size, "action %s closes the position, but %s %.10g asks "
                       "for a position of that size; send %s 0 or leave it out",
                       fks_alert_action_name (a->action), k->position_size, size,
                       k->position_size);
    }
    return 0;
}

static int
s_from_object (s_ctx_t *c, json_t *obj, fks_alert_t *a, fks_alert_secret_t *secret)
{
    s_val_t v;
    int rc;

    if (s_passphrase (c, obj, secret))
        return -1;
    const char *symbol_key = NULL;
    if ((rc = S_READ (&s_symbol_spec, &v, &symbol_key)) < 0)
        return -1;
    if (rc) {
        //  The signal worker trades the instrument after the last ':' (common/symbol.h); one
        //  it could not use ("BINANCE:", ".P", 40 letters) is refused here, not accepted and
        //  filtered later.
        char norm[FKS_SYMBOL_MAX], why[160];
        if (fks_symbol_normalize (v.text, norm, why, sizeof why) != 0) {
            if (c->no_quote)
                return s_fail (c, symbol_key, "%s is not a symbol the workers can trade: it "
                               "needs an instrument name of at most %d letters and digits "
                               "after any exchange prefix", symbol_key, FKS_SYMBOL_MAX - 1);
            return s_fail (c, symbol_key, "%s: %s", symbol_key, why);
        }
        s_copy (a->symbol, sizeof a->symbol, v.text);
    }
    if ((rc = S_READ (&s_action_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        a->action = (fks_alert_action_t) v.en;
    s_pos_keys_t pk = { "sentiment", "market_position", "position_size" };
    if ((rc = S_READ (&s_sentiment_spec, &v, &pk.sentiment)) < 0)
        return -1;
    if (rc)
        a->sentiment = (fks_alert_sentiment_t) v.en;
    if ((rc = S_READ (&s_position_spec, &v, &pk.market_position)) < 0)
        return -1;
    if (rc)
        a->market_position = (fks_alert_position_t) v.en;
    const char *qty_key = NULL;
    if ((rc = S_READ (&s_quantity_spec, &v, &qty_key)) < 0)
        return -1;
    if ((a->has_quantity = rc))
        a->quantity = v.num;
    const char *qty_type_key = NULL;
    if ((rc = S_READ (&s_qty_type_spec, &v, &qty_type_key)) < 0)
        return -1;
    if (rc)
        a->quantity_type = (fks_alert_qty_type_t) v.en;
    if ((rc = S_READ (&s_price_spec, &v, NULL)) < 0)
        return -1;
    if ((a->has_price = rc))
        a->price = v.num;
    if ((rc = S_READ (&s_order_type_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        a->order_type = (fks_alert_order_type_t) v.en;
    if ((rc = S_READ (&s_limit_price_spec, &v, NULL)) < 0)
        return -1;
    if ((a->has_limit_price = rc))
        a->limit_price = v.num;
    if ((rc = S_READ (&s_signal_price_spec, &v, NULL)) < 0)
        return -1;
    if ((a->has_signal_price = rc))
        a->signal_price = v.num;
    if ((rc = S_READ (&s_stop_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        a->stop_loss = v.exit;
    if ((rc = S_READ (&s_take_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        a->take_profit = v.exit;
    if ((rc = S_READ (&s_strategy_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        s_copy (a->strategy, sizeof a->strategy, v.text);
    if ((rc = S_READ (&s_interval_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        s_copy (a->interval, sizeof a->interval, v.text);
    if ((rc = S_READ (&s_exchange_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        s_copy (a->exchange, sizeof a->exchange, v.text);
    if ((rc = S_READ (&s_time_spec, &v, NULL)) < 0)
        return -1;
    if ((a->has_alert_time = rc))
        a->alert_time_ms = v.ms;
    if ((rc = S_READ (&s_position_size_spec, &v, &pk.position_size)) < 0)
        return -1;
    if ((a->has_position_size = rc))
        a->position_size = v.num;
    if ((rc = S_READ (&s_confidence_spec, &v, NULL)) < 0)
        return -1;
    if ((a->has_confidence = rc))
        a->confidence = v.num;
    if ((rc = S_READ (&s_client_id_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        s_copy (a->client_id, sizeof a->client_id, v.text);
    if ((rc = S_READ (&s_comment_spec, &v, NULL)) < 0)
        return -1;
    if (rc)
        s_copy (a->comment, sizeof a->comment, v.text);

    //  Rules across fields.
    if (a->symbol[0] == '\0')
        return s_fail (c, "symbol", "symbol is required: send it as 'ticker' or 'symbol'");
    if (a->action == FKS_ACTION_NONE) {
        //  A sentiment alone names the target position.
        if (a->sentiment == FKS_SENTIMENT_BULLISH)
            a->action = FKS_ACTION_LONG;
        else
        if (a->sentiment == FKS_SENTIMENT_BEARISH)
            a->action = FKS_ACTION_SHORT;
        else
        if (a->sentiment == FKS_SENTIMENT_FLAT)
            a->action = FKS_ACTION_FLAT;
        else {
            char list[160];
            s_enum_list (s_actions, list, sizeof list);
            return s_fail (c, "action", "action is required (or sentiment): one of %s", list);
        }
    }
    if (s_position_rules (c, a, &pk))
        return -1;
    bool percent = a->quantity_type == FKS_QTY_RISK_PERCENT
                   || a->quantity_type == FKS_QTY_PERCENT_OF_EQUITY
                   || a->quantity_type == FKS_QTY_PERCENT_OF_POSITION;
    if (percent && a->has_quantity && a->quantity > 100)
        return s_fail (c, qty_key, "%s is a percent with %s %s and must be at most 100",
                       qty_key, qty_type_key, fks_alert_qty_type_name (a->quantity_type));
    if (a->order_type == FKS_ORDER_LIMIT && !a->has_limit_price) {
        if (!a->has_price)
            return s_fail (c, "limitPrice", "a limit order needs limitPrice (or price)");
        a->has_limit_price = true;
        a->limit_price = a->price;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
//  Bodies

//  Nesting depth of JSON text, counted outside strings. Cheap, and it keeps jansson's recursive
//  parser away from deep input.
static bool
s_json_depth_ok (const char *s, size_t len, int max_depth)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else
            if (ch == '"')
                in_string = false;
        }
        else
        if (ch == '"')
            in_string = true;
        else
        if (ch == '{' || ch == '[') {
            if (++depth > max_depth)
                return false;
        }
        else
        if (ch == '}' || ch == ']')
            depth--;
    }
    return true;
}

//  jansson's syntax error texts that quote nothing from the body, kept as they are; the others
//  quote bytes of the body ("invalid Unicode escape '\\u12zz'", "unable to decode byte 0xe9"),
//  which may belong to the passphrase, and are replaced. Matched as prefixes, since jansson
//  appends " near ..." (which is dropped too).
static const char *
s_json_error_text (const char *text)
{
    static const char *const kept[] = {
        "premature end of input", "unexpected newline", "invalid escape",
        "too big negative integer", "too big integer", "real number overflow",
        "maximum parsing depth reached", "string or '}' expected", "':' expected",
        "'}' expected", "invalid token", "unexpected token", "']' expected", "'[' or '{' expected",
        "end of file expected", "NUL byte in object key not supported", NULL };
    static const struct { const char *prefix, *text; } replaced[] = {
        { "unable to decode byte", "invalid UTF-8" },
        { "control character", "a control character inside a string" },
        { "invalid Unicode", "an invalid Unicode escape" },
        { "\\u0000", "\\u0000 is not allowed" },
        { NULL, NULL } };
    for (size_t i = 0; kept[i]; i++)
        if (strncmp (text, kept[i], strlen (kept[i])) == 0)
            return kept[i];
    for (size_t i = 0; replaced[i].prefix; i++)
        if (strncmp (text, replaced[i].prefix, strlen (replaced[i].prefix)) == 0)
            return replaced[i].text;
    return "syntax error";
}

#define S_PATH_MAX 64           /* bytes of a dotted key path, as fks_alert_err_t.field */

//  An unfilled TradingView placeholder outside quotes ("price":{{close}}) is no JSON at all, so
//  jansson refuses the body without saying why. This finds the first `{{` outside strings in
//  JSON text that is a member's value (or an array element) and returns it, with the keys that
//  lead to it in path ("price", "stopLoss.percent"; an array in the way ends the path at the
//  key that holds it) and the innermost in *name. Without one it returns the first `{{` outside
//  strings anywhere (the body starts with one, or it stands where a key should), with path "",
//  or NULL when there is none. path is "" too when a key cannot be named (escaped, not
//  printable, too long). *secret tells whether a key on the way may hold a secret (or cannot
//  be read), so the placeholder is not quoted. A `{{` that is no value counts as the '{' it
//  starts with, so a body and its twin with a member added after the first '{' give the same
//  answer. One pass over len bytes; nesting beyond FKS_ALERT_MAX_DEPTH (which the body was
//  checked against) or an unterminated string ends the search.
static const char *
s_json_bare_placeholder (const char *s, size_t len, char path[S_PATH_MAX], const char **name,
                         bool *secret)
{
    struct { bool object; const char *key; size_t key_len; } lv[FKS_ALERT_MAX_DEPTH];
    size_t depth = 0;
    const char *str = NULL;                 // the last string
    size_t str_len = 0;
    char last = 0;                          // the last character that counts, outside strings
    const char *first = NULL;               // the first `{{` that is no value
    path[0] = '\0';
    *name = "";
    *secret = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (s_is_space (ch))
            continue;
        if (ch == '"') {
            size_t j = i + 1;
            while (j < len && s[j] != '"')
                j += s[j] == '\\' ? 2 : 1;
            if (j >= len)
                return first;               // unterminated: any `{{` left is inside it
            str = s + i + 1;
            str_len = j - i - 1;
            i = j;
            last = '"';
            continue;
        }
        if (ch == '{' && i + 1 < len && s[i + 1] == '{') {
            bool member = depth > 0 && lv[depth - 1].object && last == ':';
            bool element = depth > 0 && !lv[depth - 1].object && (last == '[' || last == ',');
            if (!member && !element) {
                if (!first)
                    first = s + i;
                goto structure;             // as the '{' it starts with
            }
            size_t n = 0;
            for (size_t d = 0; d < depth && lv[d].object; d++) {
                const char *k = lv[d].key;
                size_t klen = lv[d].key_len;
                if (!k || klen == 0 || n + klen + 2 > S_PATH_MAX || memchr (k, '\\', klen)
                    || !s_charset_ok (S_CS_PRINTABLE, k, klen)) {
                    path[0] = '\0';
                    *name = "";
                    *secret = true;         // an unreadable key may be "passphrase" escaped
                    return s + i;
                }
                if (s_secret_key (k, klen))
                    *secret = true;
                if (n)
                    path[n++] = '.';
                *name = path + n;
                memcpy (path + n, k, klen);
                n += klen;
            }
            path[n] = '\0';
            return s + i;
        }
    structure:
        switch (ch) {
            case '{':
            case '[':
                if (depth == FKS_ALERT_MAX_DEPTH)
                    return first;
                lv[depth].object = ch == '{';
                lv[depth].key = NULL;
                lv[depth].key_len = 0;
                depth++;
                break;
            case '}':
            case ']':
                if (depth > 0)
                    depth--;
                break;
            case ':':
                if (last == '"' && depth > 0 && lv[depth - 1].object) {
                    lv[depth - 1].key = str;
                    lv[depth - 1].key_len = str_len;
                }
                break;
            case ',':
                if (depth > 0)
                    lv[depth - 1].key = NULL;
                break;
            default:
                break;
        }
        last = ch;
    }
    return first;
}

static json_t *
s_load_json (s_ctx_t *c, const char *s, size_t len)
{
    if (!s_json_depth_ok (s, len, FKS_ALERT_MAX_DEPTH)) {
        s_fail (c, "body", "the JSON body is nested deeper than %d levels", FKS_ALERT_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb (s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        //  jansson's text ends in " near '<token>'"; the token may be a piece of the passphrase,
        //  so it is dropped, except for a duplicate key, where it is the key.
        char text[JSON_ERROR_TEXT_LENGTH];
        snprintf (text, sizeof text, "%s", jerr.text);
        char *near = strstr (text, " near ");
        if (json_error_code (&jerr) == json_error_duplicate_key && near) {
            char *k = near + 6;
            size_t klen = strlen (k);
            //  '"ticker"' -> ticker
            if (klen >= 4 && k[0] == '\'' && k[1] == '"' && k[klen - 1] == '\''
                && k[klen - 2] == '"') {
                k[klen - 2] = '\0';
                k += 2;
                if (k[0] != '\0' && s_charset_ok (S_CS_PRINTABLE, k, strlen (k))) {
                    s_fail (c, k, "the key '%s' appears more than once", k);
                    return NULL;
                }
            }
            s_fail (c, "body", "the JSON body has a key that appears more than once");
            return NULL;
        }
        //  Most often a placeholder TradingView did not fill in, outside quotes.
        char path[S_PATH_MAX];
        const char *name;
        bool secret;
        const char *at = memmem (s, len, "{{", 2)
                         ? s_json_bare_placeholder (s, len, path, &name, &secret) : NULL;
        if (at) {
            s_ctx_t pc = { c->err, "", c->no_quote || secret };
            if (path[0])
                s_fail_placeholder_as (&pc, path, name, s, len, at);
            else
            if (pc.no_quote)
                s_fail (&pc, "body", "the body holds a TradingView placeholder outside quotes "
                        "that was not filled in; check the alert message");
            else {
                const char *end = memmem (at, len - (size_t) (at - s), "}}", 2);
                size_t n = end ? (size_t) (end - at) + 2 : len - (size_t) (at - s);
                char q[S_QUOTE_MAX + 8];
                s_fail (&pc, "body", "the body holds the TradingView placeholder %s outside "
                        "quotes, which was not filled in; check the alert message",
                        s_quote (at, n, q));
            }
            return NULL;
        }
        s_fail (c, "body", "the body is not valid JSON: %s (line %d, column %d)",
                s_json_error_text (text), jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object (root)) {
        json_decref (root);
        s_fail (c, "body", "the JSON body must be an object");
        return NULL;
    }
    return root;
}

static bool s_is_kv_sep (char ch) { return ch == ' ' || ch == '\t' || ch == ','; }
static bool s_is_key_char (char ch)
{
    return s_is_alnum (ch) || ch == '_' || ch == '.' || ch == '-';
}

//  One line of key=value pairs, separated by spaces or commas; a value may be quoted with " or '
//  (no escapes: the quote ends the value).
//
//  An unquoted secret may hold a space (`passphrase=my secret`), so whatever follows an unquoted
//  value of a secret key may be part of the secret: from there on c->no_quote is set, and the
//  errors here name positions instead of keys. The text of a token that is not key=value is
//  never quoted: its position, and the key before it when that can be named, say enough.
static json_t *
s_parse_kv (s_ctx_t *c, const char *s, size_t len)
{
    json_t *obj = json_object ();
    if (!obj) {
        s_fail (c, "body", "out of memory");
        return NULL;
    }
    size_t i = 0, pairs = 0;
    bool secret_open = false;               // an unquoted secret value came before
    char prev[S_KV_KEY_MAX + 1] = "";       // the previous key, when it may be named
    for (;;) {
        while (i < len && s_is_kv_sep (s[i]))
            i++;
        if (i == len)
            break;
        if (secret_open)
            c->no_quote = true;
        if (++pairs > S_KV_MAX_PAIRS) {
            s_fail (c, "body", "a plain-text body holds at most %d key=value pairs",
                    S_KV_MAX_PAIRS);
            goto fail;
        }
        size_t k0 = i;
        while (i < len && s_is_key_char (s[i]))
            i++;
        if (i == k0 || i == len || s[i] != '=') {
            if (prev[0])
                s_fail (c, "body", "expected key=value at character %zu, after the value of "
                        "%s (quote a value that holds spaces or commas)", k0 + 1, prev);
            else
                s_fail (c, "body", "expected key=value at character %zu", k0 + 1);
            goto fail;
        }
        size_t klen = i - k0;
        char key[S_KV_KEY_MAX + 1];
        if (klen > S_KV_KEY_MAX) {
            s_fail (c, "body", "the key at character %zu is longer than %d bytes", k0 + 1,
                    S_KV_KEY_MAX);
            goto fail;
        }
        memcpy (key, s + k0, klen);
        key[klen] = '\0';
        bool named = !c->no_quote;          // the key itself may be named in messages
        i++;                                    // '='
        size_t v0, vlen;
        bool quoted = i < len && (s[i] == '"' || s[i] == '\'');
        if (quoted) {
            char quote = s[i++];
            v0 = i;
            while (i < len && s[i] != quote)
                i++;
            if (i == len) {
                if (named)
                    s_fail (c, key, "the quoted value of %s has no closing quote", key);
                else
                    s_fail (c, "body", "the quoted value at character %zu has no closing quote",
                            v0);
                goto fail;
            }
            vlen = i - v0;
            i++;
            if (i < len && !s_is_kv_sep (s[i])) {
                if (named)
                    s_fail (c, key, "expected a space or comma after the quoted value of %s",
                            key);
                else
                    s_fail (c, "body", "expected a space or comma at character %zu, after a "
                            "quoted value", i + 1);
                goto fail;
            }
        }
        else {
            v0 = i;
            while (i < len && !s_is_kv_sep (s[i]))
                i++;
            vlen = i - v0;
        }
        if (json_object_get (obj, key)) {
            if (named)
                s_fail (c, key, "the key '%s' appears more than once", key);
            else
                s_fail (c, "body", "the key at character %zu appears more than once", k0 + 1);
            goto fail;
        }
        json_t *v = json_stringn (s + v0, vlen);
        if (!v) {
            if (named)
                s_fail (c, key, "the value of %s is not valid UTF-8", key);
            else
                s_fail (c, "body", "the value at character %zu is not valid UTF-8", v0 + 1);
            goto fail;
        }
        if (json_object_set_new_nocheck (obj, key, v)) {
            s_fail (c, "body", "out of memory");
            goto fail;
        }
        if (!quoted && s_secret_key (key, klen))
            secret_open = true;
        snprintf (prev, sizeof prev, "%s", named ? key : "");
    }
    return obj;
fail:
    json_decref (obj);
    return NULL;
}

//  `action ticker [qty] [@price]` (or "@ price"), separated by spaces.
static json_t *
s_parse_words (s_ctx_t *c, const char *s, size_t len)
{
    const char *word[6];
    size_t wlen[6];
    size_t n = 0, i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == len)
            break;
        if (n == 6) {
            n++;
            break;
        }
        word[n] = s + i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        wlen[n] = (size_t) (s + i - word[n]);
        n++;
    }
    const char *usage = "a plain-text alert is JSON, key=value pairs, or "
                        "'action ticker [qty] [@price]' such as 'buy BTCUSDT 0.5 @42000'";
    //  "buy BTCUSDT passphrase=x" is no alert of this form, but its words would be quoted as
    //  the quantity or price: a word holding '=' may be a secret.
    if (memchr (s, '=', len))
        c->no_quote = true;
    if (n < 2 || n > 5) {
        s_fail (c, "body", "%s", usage);
        return NULL;
    }
    const char *qty = NULL, *price = NULL;
    size_t qty_len = 0, price_len = 0;
    for (size_t w = 2; w < n; w++) {
        if (word[w][0] == '@' && !price && (wlen[w] > 1 || w + 1 < n)) {
            if (wlen[w] > 1) {
                price = word[w] + 1;
                price_len = wlen[w] - 1;
            }
            else {
                w++;
                price = word[w];
                price_len = wlen[w];
            }
        }
        else
        if (word[w][0] != '@' && !qty && !price) {
            qty = word[w];
            qty_len = wlen[w];
        }
        else {
            s_fail (c, "body", "%s", usage);
            return NULL;
        }
    }
    json_t *obj = json_object ();
    if (!obj
        || json_object_set_new_nocheck (obj, "action", json_stringn (word[0], wlen[0]))
        || json_object_set_new_nocheck (obj, "ticker", json_stringn (word[1], wlen[1]))
        || (qty && json_object_set_new_nocheck (obj, "quantity", json_stringn (qty, qty_len)))
        || (price && json_object_set_new_nocheck (obj, "price", json_stringn (price, price_len)))) {
        //  json_stringn fails on invalid UTF-8 (and setting NULL fails)
        json_decref (obj);
        s_fail (c, "body", "the plain-text body is not valid UTF-8");
        return NULL;
    }
    return obj;
}

//  Where word (lowercase ASCII) occurs in s (len bytes) in any case: the first occurrence, or
//  the last with last set; NULL when it does not.
static const char *
s_find_ci (const char *s, size_t len, const char *word, bool last)
{
    size_t n = strlen (word);
    const char *hit = NULL;
    for (size_t i = 0; i + n <= len; i++)
        if (s_ieq (s + i, n, word)) {
            hit = s + i;
            if (!last)
                break;
        }
    return hit;
}

//  s (len bytes) without its leading and trailing spaces.
static void
s_trim (const char **s, size_t *len)
{
    while (*len > 0 && s_is_space (**s))
        (*s)++, (*len)--;
    while (*len > 0 && s_is_space ((*s)[*len - 1]))
        (*len)--;
}

//  TradingView's default strategy alert message, which a user who wrote no message of their
//  own sends as it is: "<strategy> (<inputs>): order {{strategy.order.action}} @
//  {{strategy.order.contracts}} filled on {{ticker}}. New strategy position is
//  {{strategy.position_size}}". The number after '@' is the quantity here (a price in the word
//  form), and the new position is taken as the target (position_size), so the signal worker
//  trades the difference from the position it finds. The strategy is the name before its
//  inputs. NULL with *matched false when s is not this message.
static json_t *
s_parse_fill (s_ctx_t *c, const char *s, size_t len, bool *matched)
{
    static const char filled_on[] = " filled on ", tail[] = ". new strategy position is ";
    const char *filled = s_find_ci (s, len, filled_on, false);
    const char *at_tail = filled ? s_find_ci (filled, len - (size_t) (filled - s), tail, false)
                                 : NULL;
    *matched = at_tail != NULL;
    if (!at_tail)
        return NULL;
    if (memchr (s, '=', len))
        c->no_quote = true;                     /* as in the word form: '=' may be a secret */
    const char *usage = "TradingView's strategy message must read '<strategy>: order <buy|sell> "
                        "@ <contracts> filled on <ticker>. New strategy position is <size>'";
    //  "order <action> @ <contracts>" right before " filled on ".
    const char *order = s_find_ci (s, (size_t) (filled - s), "order ", true);
    if (!order || (order > s && !s_is_space (order[-1]) && order[-1] != ':')) {
        s_fail (c, "body", "%s", usage);
        return NULL;
    }
    const char *word[3];
    size_t wlen[3], n = 0;
    for (const char *p = order + 6; p < filled;) {
        while (p < filled && s_is_space (*p))
            p++;
        if (p == filled)
            break;
        if (n == 3) {
            n++;
            break;
        }
        word[n] = p;
        while (p < filled && !s_is_space (*p))
            p++;
        wlen[n] = (size_t) (p - word[n]);
        n++;
    }
    const char *ticker = filled + sizeof filled_on - 1;
    size_t ticker_len = (size_t) (at_tail - ticker);
    const char *size = at_tail + sizeof tail - 1;
    size_t size_len = len - (size_t) (size - s);
    s_trim (&ticker, &ticker_len);
    s_trim (&size, &size_len);
    if (n != 3 || wlen[1] != 1 || word[1][0] != '@' || ticker_len == 0 || size_len == 0
        || memchr (ticker, ' ', ticker_len) || memchr (size, ' ', size_len)) {
        s_fail (c, "body", "%s", usage);
        return NULL;
    }
    //  The strategy: what comes before "order", without its inputs "(...)" and the ':'.
    const char *name = s;
    size_t name_len = (size_t) (order - s);
    const char *paren = memchr (name, '(', name_len);
    if (paren)
        name_len = (size_t) (paren - name);
    s_trim (&name, &name_len);
    if (name_len > 0 && name[name_len - 1] == ':')
        name_len--;
    s_trim (&name, &name_len);
    json_t *obj = json_object ();
    if (!obj
        || json_object_set_new_nocheck (obj, "action", json_stringn (word[0], wlen[0]))
        || json_object_set_new_nocheck (obj, "contracts", json_stringn (word[2], wlen[2]))
        || json_object_set_new_nocheck (obj, "ticker", json_stringn (ticker, ticker_len))
        || json_object_set_new_nocheck (obj, "position_size", json_stringn (size, size_len))
        || (name_len > 0 && name_len < FKS_ALERT_STRATEGY_MAX
            && json_object_set_new_nocheck (obj, "strategy", json_stringn (name, name_len)))) {
        json_decref (obj);
        s_fail (c, "body", "the plain-text body is not valid UTF-8");
        return NULL;
    }
    return obj;
}

//  A body that starts with '{' or '[' is JSON, unless it starts with "{{": a text template
//  whose first word is a placeholder, "{{strategy.order.action}} BTCUSDT 1".
static json_t *
s_parse_text (s_ctx_t *c, const char *s, size_t len)
{
    bool placeholder = len >= 2 && s[0] == '{' && s[1] == '{';
    if (len > 0 && (s[0] == '{' || s[0] == '[') && !placeholder)
        return s_load_json (c, s, len);
    if (memchr (s, '\0', len)) {
        s_fail (c, "body", "the plain-text body holds a NUL byte");
        return NULL;
    }
    if (memchr (s, '\n', len) || memchr (s, '\r', len)) {
        s_fail (c, "body", "a plain-text alert must be one line (or a JSON object)");
        return NULL;
    }
    bool fill_message;
    json_t *fill = s_parse_fill (c, s, len, &fill_message);
    if (fill_message)
        return fill;
    size_t first = 0;
    while (first < len && !s_is_kv_sep (s[first]) && s[first] != '=')
        first++;
    if (first < len && s[first] == '=')
        return s_parse_kv (c, s, len);
    return s_parse_words (c, s, len);
}

// ---------------------------------------------------------------------------------------------
//  Content types

typedef enum { S_MEDIA_JSON = 1, S_MEDIA_TEXT } s_media_t;

static bool s_is_token_char (char ch)
{
    return s_is_alnum (ch) || (ch && strchr ("!#$%&'*+-.^_`|~", ch));
}
static bool s_is_ows (char ch) { return ch == ' ' || ch == '\t'; }

//  "type/subtype *( OWS ; OWS name=value )"; the charset, when given, must be UTF-8 or ASCII.
static int
s_media_type (const char *ct, s_media_t *out)
{
    if (!ct)
        return -1;
    size_t len = strnlen (ct, FKS_ALERT_CONTENT_TYPE_MAX + 1);
    if (len > FKS_ALERT_CONTENT_TYPE_MAX)
        return -1;
    size_t i = 0;
    while (i < len && s_is_ows (ct[i]))
        i++;
    size_t t0 = i;
    while (i < len && (s_is_token_char (ct[i]) || ct[i] == '/'))
        i++;
    if (s_ieq (ct + t0, i - t0, "application/json"))
        *out = S_MEDIA_JSON;
    else
    if (s_ieq (ct + t0, i - t0, "text/plain"))
        *out = S_MEDIA_TEXT;
    else
        return -1;
    for (;;) {
        while (i < len && s_is_ows (ct[i]))
            i++;
        if (i == len)
            return 0;
        if (ct[i++] != ';')
            return -1;
        while (i < len && s_is_ows (ct[i]))
            i++;
        if (i == len)
            return 0;                           // a trailing ';' is harmless
        size_t n0 = i;
        while (i < len && s_is_token_char (ct[i]))
            i++;
        size_t nlen = i - n0;
        if (nlen == 0 || i == len || ct[i++] != '=')
            return -1;
        size_t v0, vlen;
        if (i < len && ct[i] == '"') {
            v0 = ++i;
            while (i < len && ct[i] != '"')
                i++;
            if (i == len)
                return -1;
            vlen = i++ - v0;
        }
        else {
            v0 = i;
            while (i < len && s_is_token_char (ct[i]))
                i++;
            vlen = i - v0;
        }
        if (s_ieq (ct + n0, nlen, "charset")
            && !(s_ieq (ct + v0, vlen, "utf-8") || s_ieq (ct + v0, vlen, "utf8")
                 || s_ieq (ct + v0, vlen, "us-ascii")))
            return -1;
    }
}

// ---------------------------------------------------------------------------------------------
//  Parse

//  Frees a body tree after wiping the passphrase jansson holds.
static void
s_tree_destroy (json_t **root_p)
{
    if (!*root_p)
        return;
    json_t *v = json_object_get (*root_p, "passphrase");
    if (json_is_string (v))
        OPENSSL_cleanse ((char *) json_string_value (v), json_string_length (v));
    json_decref (*root_p);
    *root_p = NULL;
}

int
fks_alert_parse (const char *content_type, const void *body, size_t len, const char *source,
                 fks_alert_t *alert, fks_alert_secret_t *passphrase, fks_alert_err_t *err)
{
    assert (alert);
    assert (body || len == 0);
    fks_alert_err_t dummy;
    if (!err)
        err = &dummy;
    memset (err, 0, sizeof *err);
    memset (alert, 0, sizeof *alert);
    if (passphrase)
        fks_alert_secret_wipe (passphrase);
    s_ctx_t c = { err, "", false };

    if (len > FKS_ALERT_BODY_MAX)
        return s_fail_status (err, 413, "body_too_large", "body",
                              "the body is larger than %d bytes", FKS_ALERT_BODY_MAX);
    s_media_t media;
    if (s_media_type (content_type, &media) != 0) {
        char q[S_QUOTE_MAX + 8];
        return s_fail_status (err, 415, "unsupported_media_type", "Content-Type",
                              "Content-Type %s is not supported: send application/json or "
                              "text/plain (charset utf-8)",
                              content_type ? s_quote (content_type,
                                                      strnlen (content_type, S_QUOTE_MAX + 1), q)
                                           : "(none)");
    }
    const char *s = body;
    if (len >= 3 && memcmp (s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        len -= 3;
    }
    while (len > 0 && s_is_space (s[0])) {
        s++;
        len--;
    }
    while (len > 0 && s_is_space (s[len - 1]))
        len--;
    if (len == 0)
        return s_fail (&c, "body", "the body is empty");

    json_t *root = media == S_MEDIA_JSON ? s_load_json (&c, s, len) : s_parse_text (&c, s, len);
    if (!root)
        return -1;
    int rc = s_from_object (&c, root, alert, passphrase);
    s_tree_destroy (&root);
    if (rc != 0) {
        memset (alert, 0, sizeof *alert);
        if (passphrase)
            fks_alert_secret_wipe (passphrase);
        return -1;
    }
    snprintf (alert->source, sizeof alert->source, "%s", source ? source : "");
    return 0;
}

void
fks_alert_secret_wipe (fks_alert_secret_t *secret)
{
    if (!secret)
        return;
    OPENSSL_cleanse (secret, sizeof *secret);
    secret->present = false;
    secret->len = 0;
}

// ---------------------------------------------------------------------------------------------
//  Idempotency key

typedef struct {
    uint8_t buf[1024];
    size_t len;
} s_hashbuf_t;

//  Each field as tag, length, bytes: no two different field lists serialise the same.
static void
s_hb_bytes (s_hashbuf_t *hb, char tag, const void *data, size_t n)
{
    assert (hb->len + 5 + n <= sizeof hb->buf);
    hb->buf[hb->len++] = (uint8_t) tag;
    uint32_t n32 = (uint32_t) n;
    memcpy (hb->buf + hb->len, &n32, 4);
    hb->len += 4;
    memcpy (hb->buf + hb->len, data, n);
    hb->len += n;
}

static void
s_hb_str (s_hashbuf_t *hb, char tag, const char *s)
{
    s_hb_bytes (hb, tag, s, strlen (s));
}

static void
s_hb_int (s_hashbuf_t *hb, char tag, int64_t v)
{
    s_hb_bytes (hb, tag, &v, sizeof v);
}

static void
s_hb_num (s_hashbuf_t *hb, char tag, bool present, double v)
{
    if (!present)
        return;
    if (v == 0)
        v = 0;                                  // -0 and 0 are one value
    s_hb_bytes (hb, tag, &v, sizeof v);
}

static void
s_hb_exit (s_hashbuf_t *hb, char tag, const fks_alert_exit_t *e)
{
    if (e->type == FKS_EXIT_NONE)
        return;
    double v[4] = { (double) e->type, (double) e->by, e->value,
                    e->has_limit_price ? e->limit_price : 0 };
    s_hb_bytes (hb, tag, v, sizeof v);
}

//  The alert's fields, the part every key of one alert hashes first.
static void
s_hb_fields (s_hashbuf_t *hb, const fks_alert_t *a)
{
    hb->len = 0;
    s_hb_str (hb, 'v', "fks-alert-1");
    s_hb_str (hb, 'o', a->source);
    s_hb_str (hb, 'y', a->symbol);
    s_hb_int (hb, 'a', a->action);
    s_hb_int (hb, 'e', a->sentiment);
    s_hb_int (hb, 'm', a->market_position);
    s_hb_num (hb, 'z', a->has_position_size, a->position_size);
    s_hb_num (hb, 'q', a->has_quantity, a->quantity);
    s_hb_int (hb, 'Q', a->quantity_type);
    s_hb_num (hb, 'p', a->has_price, a->price);
    s_hb_int (hb, 't', a->order_type);
    s_hb_num (hb, 'l', a->has_limit_price, a->limit_price);
    s_hb_num (hb, 'g', a->has_signal_price, a->signal_price);
    s_hb_exit (hb, 's', &a->stop_loss);
    s_hb_exit (hb, 'k', &a->take_profit);
    s_hb_str (hb, 'S', a->strategy);
    s_hb_str (hb, 'x', a->exchange);
}

//  "h:" + hex SHA-256 of the fields (built once by s_hb_fields), then of the tag, length and
//  bytes of each value in tail (n of them).
static int
s_hash_key (const s_hashbuf_t *fields, const char *tags, const int64_t *tail, size_t n,
            char out[FKS_ALERT_IDEM_KEY_MAX])
{
    s_hashbuf_t hb = *fields;
    for (size_t i = 0; i < n; i++)
        s_hb_int (&hb, tags[i], tail[i]);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest (hb.buf, hb.len, md, &md_len, EVP_sha256 (), NULL) != 1 || md_len != 32)
        return -1;
    static const char hex[] = "0123456789abcdef";
    out[0] = 'h';
    out[1] = ':';
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[2 + 2 * md_len] = '\0';
    return 0;
}

int
fks_alert_idem_key (const fks_alert_t *a, int64_t now_ms, int64_t window_ms, int64_t signed_ts,
                    char out[FKS_ALERT_IDEM_KEY_MAX], char prev[FKS_ALERT_IDEM_KEY_MAX])
{
    assert (a);
    assert (out);
    out[0] = '\0';
    if (prev)
        prev[0] = '\0';
    if (a->client_id[0]) {
        snprintf (out, FKS_ALERT_IDEM_KEY_MAX, "id:%s", a->client_id);
        return 0;
    }
    if (window_ms <= 0)
        return -1;
    //  T (alert time) and B, W (bucket, window) are the bytes keys have always hashed: keep
    //  them, or every stored key changes its meaning. H (signed timestamp) is a tag of its own,
    //  so a signed key never equals a time or bucket key.
    s_hashbuf_t fields;
    s_hb_fields (&fields, a);
    if (a->has_alert_time)
        return s_hash_key (&fields, "T", &a->alert_time_ms, 1, out);
    if (signed_ts >= 0)
        return s_hash_key (&fields, "H", &signed_ts, 1, out);
    //  floor (now_ms / window_ms), without overflow at INT64_MIN.
    int64_t bucket = now_ms >= 0 ? now_ms / window_ms : -((-(now_ms + 1)) / window_ms) - 1;
    if (s_hash_key (&fields, "BW", (int64_t[]) { bucket, window_ms }, 2, out) != 0)
        return -1;
    if (prev && bucket > INT64_MIN
        && s_hash_key (&fields, "BW", (int64_t[]) { bucket - 1, window_ms }, 2, prev) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
//  Output: one list of entries, written as JSON or msgpack

typedef enum { S_E_STR = 1, S_E_F64, S_E_I64, S_E_EXIT } s_entry_kind_t;

typedef struct {
    const char *key;
    s_entry_kind_t kind;
    const char *s;
    double d;
    int64_t i;
    const fks_alert_exit_t *exit;
} s_entry_t;

#define S_ENTRIES_MAX 24

static size_t
s_entries (const fks_alert_t *a, s_entry_t *e)
{
    size_t n = 0;
#define S_STR_E(k, v) \
    do { if ((v)[0]) e[n++] = (s_entry_t) { k, S_E_STR, v, 0, 0, NULL }; } while (0)
#define S_F64_E(k, has, v) \
    do { if (has) e[n++] = (s_entry_t) { k, S_E_F64, NULL, v, 0, NULL }; } while (0)
    S_STR_E ("source", a->source);
    S_STR_E ("symbol", a->symbol);
    S_STR_E ("action", fks_alert_action_name (a->action));
    S_F64_E ("quantity", a->has_quantity, a->quantity);
    S_STR_E ("quantity_type", fks_alert_qty_type_name (a->quantity_type));
    S_F64_E ("price", a->has_price, a->price);
    S_STR_E ("order_type", fks_alert_order_type_name (a->order_type));
    S_F64_E ("limit_price", a->has_limit_price, a->limit_price);
    S_F64_E ("signal_price", a->has_signal_price, a->signal_price);
    if (a->stop_loss.type != FKS_EXIT_NONE)
        e[n++] = (s_entry_t) { "stop_loss", S_E_EXIT, NULL, 0, 0, &a->stop_loss };
    if (a->take_profit.type != FKS_EXIT_NONE)
        e[n++] = (s_entry_t) { "take_profit", S_E_EXIT, NULL, 0, 0, &a->take_profit };
    S_STR_E ("strategy", a->strategy);
    S_STR_E ("interval", a->interval);
    S_STR_E ("exchange", a->exchange);
    if (a->has_alert_time)
        e[n++] = (s_entry_t) { "alert_time", S_E_I64, NULL, 0, a->alert_time_ms, NULL };
    S_F64_E ("position_size", a->has_position_size, a->position_size);
    S_STR_E ("market_position", fks_alert_position_name (a->market_position));
    S_STR_E ("sentiment", fks_alert_sentiment_name (a->sentiment));
    S_F64_E ("confidence", a->has_confidence, a->confidence);
    S_STR_E ("client_id", a->client_id);
    S_STR_E ("comment", a->comment);
#undef S_STR_E
#undef S_F64_E
    assert (n <= S_ENTRIES_MAX);
    return n;
}

//  The members of a stop loss / take profit map: type (stop loss only), the level, limit_price.
static size_t
s_exit_members (const fks_alert_exit_t *x, s_entry_t *e)
{
    size_t n = 0;
    if (x->type != FKS_EXIT_LIMIT)
        e[n++] = (s_entry_t) { "type", S_E_STR, fks_alert_exit_type_name (x->type), 0, 0, NULL };
    const char *level = x->by == FKS_LEVEL_PERCENT ? "percent"
                      : x->by == FKS_LEVEL_AMOUNT ? "amount"
                      : x->type == FKS_EXIT_LIMIT ? "limit_price" : "stop_price";
    e[n++] = (s_entry_t) { level, S_E_F64, NULL, x->value, 0, NULL };
    if (x->has_limit_price)
        e[n++] = (s_entry_t) { "limit_price", S_E_F64, NULL, x->limit_price, 0, NULL };
    return n;
}

typedef struct {
    char *buf;
    size_t cap, len;
    bool overflow;
} s_out_t;

static void
s_put (s_out_t *o, const char *s, size_t n)
{
    if (o->overflow || o->cap - o->len <= n) {
        o->overflow = true;
        return;
    }
    memcpy (o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void
s_put_string (s_out_t *o, const char *s)
{
    size_t n = strlen (s);
    //  Escaping grows text at most six-fold (\u00XX); with room for that it never truncates.
    if (o->overflow || o->cap - o->len < 6 * n + 3) {
        o->overflow = true;
        return;
    }
    o->buf[o->len++] = '"';
    o->len += fks_json_escape (o->buf + o->len, o->cap - o->len, s, n);
    s_put (o, "\"", 1);
}

static void
s_put_entries (s_out_t *o, const s_entry_t *e, size_t n)
{
    char num[32];
    s_put (o, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            s_put (o, ",", 1);
        s_put_string (o, e[i].key);
        s_put (o, ":", 1);
        switch (e[i].kind) {
            case S_E_STR:
                s_put_string (o, e[i].s);
                break;
            case S_E_F64:
                fks_double_text (num, sizeof num, e[i].d);
                s_put (o, num, strlen (num));
                break;
            case S_E_I64:
                snprintf (num, sizeof num, "%lld", (long long) e[i].i);
                s_put (o, num, strlen (num));
                break;
            case S_E_EXIT: {
                s_entry_t members[3];
                size_t m = s_exit_members (e[i].exit, members);
                s_put_entries (o, members, m);
                break;
            }
        }
    }
    s_put (o, "}", 1);
}

int
fks_alert_to_json (const fks_alert_t *alert, char *buf, size_t cap, size_t *len_out)
{
    assert (alert);
    assert (buf || cap == 0);
    if (cap == 0)
        return -1;
    s_entry_t e[S_ENTRIES_MAX];
    size_t n = s_entries (alert, e);
    s_out_t o = { buf, cap, 0, false };
    buf[0] = '\0';
    s_put_entries (&o, e, n);
    if (o.overflow) {
        buf[0] = '\0';
        return -1;
    }
    if (len_out)
        *len_out = o.len;
    return 0;
}

static void
s_pack_entries (msgpack_packer *pk, const s_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (e[i].kind) {
            case S_E_STR:
                fks_pack_kv_str (pk, e[i].key, e[i].s);
                break;
            case S_E_F64:
                fks_pack_kv_f64 (pk, e[i].key, e[i].d);
                break;
            case S_E_I64:
                fks_pack_kv_i64 (pk, e[i].key, e[i].i);
                break;
            case S_E_EXIT: {
                s_entry_t members[3];
                size_t m = s_exit_members (e[i].exit, members);
                fks_pack_str (pk, e[i].key);
                msgpack_pack_map (pk, m);
                s_pack_entries (pk, members, m);
                break;
            }
        }
    }
}

int
fks_alert_pack (const fks_alert_t *alert, const fks_id_t *inbox_id, msgpack_packer *pk)
{
    assert (alert);
    assert (pk);
    if (!inbox_id || fks_id_is_nil (inbox_id))
        return -1;
    s_entry_t e[S_ENTRIES_MAX];
    size_t n = s_entries (alert, e);
    msgpack_pack_map (pk, n + 1);
    fks_pack_kv_id (pk, "inbox_id", inbox_id);
    s_pack_entries (pk, e, n);
    return 0;
}
