/*  test_alert.c - webhook bodies as TradingView, TradersPost users and scripts send them.
 *
 *  Each test feeds a body the way the gateway will (Content-Type, raw bytes) and checks what the
 *  user sees: the normalised alert, or the error's status, field and message.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bus/envelope.h"
#include "bus/schema.h"
#include "gateway/alert.h"

static fks_alert_t A;
static fks_alert_secret_t P;
static fks_alert_err_t E;

#define JSON "application/json"
#define TEXT "text/plain"

static int
parse_as (const char *ct, const char *body)
{
    return fks_alert_parse (ct, body, strlen (body), "tradingview", &A, &P, &E);
}

static int parse_json (const char *body) { return parse_as (JSON, body); }

static void
expect_ok (const char *ct, const char *body)
{
    int rc = parse_as (ct, body);
    cr_assert_eq (rc, 0, "refused %s: %d %s/%s: %s", body, E.status, E.code, E.field, E.message);
}

static void
expect_400 (const char *ct, const char *body, const char *field, const char *fragment)
{
    int rc = parse_as (ct, body);
    cr_assert_eq (rc, -1, "accepted %s", body);
    cr_assert_eq (E.status, 400, "status %d for %s", E.status, body);
    cr_assert_str_eq (E.code, "invalid_field");
    cr_assert_str_eq (E.field, field, "field '%s' (message: %s) for %s", E.field, E.message, body);
    cr_assert (strstr (E.message, fragment), "message '%s' lacks '%s'", E.message, fragment);
    cr_assert_str_empty (A.symbol, "a refused alert is cleared");
    cr_assert_not (P.present, "a refused alert leaves no passphrase");
}

static void
expect_num (double got, double want)
{
    cr_assert (got == want, "got %.17g, want %.17g", got, want);
}

// ---------------------------------------------------------------------------------------------
//  Body forms and content types

Test (alert, json_body_with_tradingview_fields)
{
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"contracts\":\"0.5\","
                     "\"price\":\"42000.5\",\"strategy\":\"EMA Cross\",\"interval\":\"15\","
                     "\"exchange\":\"BINANCE\",\"time\":\"2024-01-15T14:30:00Z\"}");
    cr_assert_str_eq (A.symbol, "BTCUSDT");
    cr_assert_eq (A.action, FKS_ACTION_BUY);
    cr_assert (A.has_quantity);
    expect_num (A.quantity, 0.5);
    cr_assert (A.has_price);
    expect_num (A.price, 42000.5);
    cr_assert_str_eq (A.strategy, "EMA Cross");
    cr_assert_str_eq (A.interval, "15");
    cr_assert_str_eq (A.exchange, "BINANCE");
    cr_assert (A.has_alert_time);
    cr_assert_eq (A.alert_time_ms, INT64_C(1705329000000));
    cr_assert_eq (A.order_type, FKS_ORDER_MARKET);
    cr_assert_str_eq (A.source, "tradingview");
}

Test (alert, text_plain_json_with_trailing_newline)
{
    expect_ok (TEXT, "{\"ticker\":\"ETHUSDT\",\"action\":\"sell\",\"qty\":2}\n");
    cr_assert_str_eq (A.symbol, "ETHUSDT");
    cr_assert_eq (A.action, FKS_ACTION_SELL);
    expect_num (A.quantity, 2);
}

Test (alert, charset_parameters_are_accepted)
{
    const char *body = "{\"ticker\":\"AAPL\",\"action\":\"buy\"}";
    expect_ok ("application/json; charset=utf-8", body);
    expect_ok ("Application/JSON;charset=\"UTF-8\"", body);
    expect_ok ("text/plain; charset=UTF-8", body);
    expect_ok ("text/plain;charset=us-ascii; format=flowed", body);
    cr_assert_str_eq (A.symbol, "AAPL");
}

Test (alert, key_value_pairs_separated_by_spaces)
{
    expect_ok (TEXT, "ticker=BTCUSDT action=buy qty=0.25 price=42000");
    cr_assert_str_eq (A.symbol, "BTCUSDT");
    cr_assert_eq (A.action, FKS_ACTION_BUY);
    expect_num (A.quantity, 0.25);
    expect_num (A.price, 42000);
}

Test (alert, key_value_pairs_separated_by_commas)
{
    expect_ok (TEXT, "symbol=ETHUSDT,side=sell,quantity=3,order_type=limit,limitPrice=3100\n");
    cr_assert_str_eq (A.symbol, "ETHUSDT");
    cr_assert_eq (A.action, FKS_ACTION_SELL);
    expect_num (A.quantity, 3);
    cr_assert_eq (A.order_type, FKS_ORDER_LIMIT);
    expect_num (A.limit_price, 3100);
}

Test (alert, key_value_quoted_values_keep_spaces)
{
    expect_ok (TEXT, "ticker=SPY action=buy strategy=\"Mean Reversion v2\", comment='take it, now'");
    cr_assert_str_eq (A.strategy, "Mean Reversion v2");
    cr_assert_str_eq (A.comment, "take it, now");
}

Test (alert, key_value_errors_name_the_problem)
{
    expect_400 (TEXT, "ticker=SPY action=buy hello", "body", "expected key=value");
    expect_400 (TEXT, "ticker=SPY action=buy strategy=\"open", "strategy", "no closing quote");
    expect_400 (TEXT, "ticker=SPY action=buy ticker=QQQ", "ticker", "more than once");
    expect_400 (TEXT, "ticker=SPY action=buy qty={{strategy.order.contracts}}", "qty",
                "{{strategy.order.contracts}}");
}

Test (alert, action_ticker_quantity_at_price)
{
    expect_ok (TEXT, "buy BTCUSDT 0.5 @42000");
    cr_assert_eq (A.action, FKS_ACTION_BUY);
    cr_assert_str_eq (A.symbol, "BTCUSDT");
    expect_num (A.quantity, 0.5);
    expect_num (A.price, 42000);

    expect_ok (TEXT, "SELL ethusdt 2 @ 3000.5\n");
    cr_assert_eq (A.action, FKS_ACTION_SELL);
    cr_assert_str_eq (A.symbol, "ETHUSDT", "symbols are uppercased");
    expect_num (A.quantity, 2);
    expect_num (A.price, 3000.5);
}

Test (alert, action_ticker_without_quantity)
{
    expect_ok (TEXT, "close BINANCE:BTCUSDT");
    cr_assert_eq (A.action, FKS_ACTION_CLOSE);
    cr_assert_str_eq (A.symbol, "BINANCE:BTCUSDT");
    cr_assert_not (A.has_quantity);
    expect_ok (TEXT, "buy AAPL @185.5");
    cr_assert_not (A.has_quantity);
    expect_num (A.price, 185.5);
}

Test (alert, tradingviews_default_strategy_message)
{
    //  What a strategy alert sends when its message was left as TradingView wrote it.
    expect_ok (TEXT, "EMA Cross (9, 21, close): order buy @ 0.5 filled on BTCUSDT. New strategy "
                     "position is 0.5\n");
    cr_assert_eq (A.action, FKS_ACTION_BUY);
    cr_assert_str_eq (A.symbol, "BTCUSDT");
    expect_num (A.quantity, 0.5);
    cr_assert_not (A.has_price, "the number after '@' is the quantity, not a price");
    cr_assert (A.has_position_size);
    expect_num (A.position_size, 0.5);
    cr_assert_str_eq (A.strategy, "EMA Cross");

    //  A reversal: the new position is the target, whatever the order's size.
    expect_ok (TEXT, "Order Flow v2: order SELL @ 2 filled on BINANCE:ETHUSDT.P. New strategy "
                     "position is -1");
    cr_assert_eq (A.action, FKS_ACTION_SELL);
    cr_assert_str_eq (A.symbol, "BINANCE:ETHUSDT.P");
    expect_num (A.quantity, 2);
    expect_num (A.position_size, -1);
    cr_assert_str_eq (A.strategy, "Order Flow v2");

    //  An exit, and no strategy name at all.
    expect_ok (TEXT, "order sell @ 1 filled on AAPL. New strategy position is 0");
    expect_num (A.position_size, 0);
    cr_assert_str_empty (A.strategy);

    //  Broken or unfilled, it is refused naming the part at fault.
    expect_400 (TEXT, "X: order buy 1 filled on AAPL. New strategy position is 1", "body",
                "order <buy|sell> @ <contracts>");
    expect_400 (TEXT, "X: order buy @ 1 filled on AAPL. New strategy position is 1 or 2", "body",
                "New strategy position is <size>");
    expect_400 (TEXT, "X: order {{strategy.order.action}} @ 1 filled on AAPL. New strategy "
                      "position is 1", "action", "{{strategy.order.action}}");
    expect_400 (TEXT, "X: order buy @ 1 filled on AAPL. New strategy position is abc",
                "position_size", "must be a number");
}

//  The strategy template the README recommends, as TradingView fills it in for an entry, a
//  reversal, a partial exit and an exit: each is taken, with its signed target.
Test (alert, the_readmes_strategy_template_is_taken_for_every_kind_of_order)
{
    static const struct { const char *action, *contracts, *size, *mp; double target; } o[] = {
        { "buy", "1", "1", "long", 1 }, { "sell", "2", "-1", "short", -1 },
        { "buy", "0.5", "-0.5", "short", -0.5 }, { "buy", "0.5", "0", "flat", 0 },
    };
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) {
        char body[512];
        snprintf (body, sizeof body,
                  "{\"ticker\":\"BTCUSDT\",\"action\":\"%s\",\"contracts\":\"%s\","
                  "\"position_size\":\"%s\",\"market_position\":\"%s\",\"price\":\"42000\","
                  "\"time\":\"2024-01-15T14:30:00Z\",\"passphrase\":\"s\"}",
                  o[i].action, o[i].contracts, o[i].size, o[i].mp);
        expect_ok (JSON, body);
        cr_assert (A.has_position_size, "%s", body);
        expect_num (A.position_size, o[i].target);
    }
}

Test (alert, plain_text_that_fits_no_form_is_refused)
{
    expect_400 (TEXT, "buy", "body", "action ticker [qty] [@price]");
    expect_400 (TEXT, "buy BTCUSDT 1 2", "body", "action ticker [qty] [@price]");
    expect_400 (TEXT, "buy BTCUSDT 1 @2 @3", "body", "action ticker [qty] [@price]");
    expect_400 (TEXT, "Crossing up BTCUSDT", "action", "'Crossing' is not allowed");
    expect_400 (TEXT, "buy BTCUSDT abc", "quantity", "must be a number");
    expect_400 (TEXT, "buy BTCUSDT 1\nsell BTCUSDT 1", "body", "one line");
}

Test (alert, unsupported_media_types_get_415)
{
    const char *body = "{\"ticker\":\"AAPL\",\"action\":\"buy\"}";
    const char *types[] = { "application/x-www-form-urlencoded", "text/html", "", "json",
                            "application/json; charset=latin1", "text/plain; charset=utf-16",
                            "multipart/form-data; boundary=x", "application/jsonx" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        cr_assert_eq (parse_as (types[i], body), -1, "accepted %s", types[i]);
        cr_assert_eq (E.status, 415, "%s", types[i]);
        cr_assert_str_eq (E.code, "unsupported_media_type");
        cr_assert_str_eq (E.field, "Content-Type");
    }
    cr_assert_eq (fks_alert_parse (NULL, body, strlen (body), "tradingview", &A, &P, &E), -1);
    cr_assert_eq (E.status, 415);
    cr_assert (strstr (E.message, "application/json"), "%s", E.message);
}

Test (alert, body_over_the_limit_gets_413)
{
    static char big[FKS_ALERT_BODY_MAX + 2];
    memset (big, ' ', sizeof big - 1);
    memcpy (big, "{\"ticker\":\"AAPL\",\"action\":\"buy\"}", 32);
    cr_assert_eq (fks_alert_parse (JSON, big, FKS_ALERT_BODY_MAX + 1, "tradingview", &A, &P, &E),
                  -1);
    cr_assert_eq (E.status, 413);
    cr_assert_str_eq (E.code, "body_too_large");
    cr_assert_eq (fks_alert_parse (JSON, big, FKS_ALERT_BODY_MAX, "tradingview", &A, &P, &E), 0,
                  "exactly the limit is fine: %s", E.message);
}

Test (alert, empty_and_non_object_bodies_are_refused)
{
    expect_400 (JSON, "", "body", "empty");
    expect_400 (TEXT, " \n", "body", "empty");
    expect_400 (JSON, "[1,2]", "body", "must be an object");
    expect_400 (TEXT, "[\"buy\"]\n", "body", "must be an object");
    expect_400 (JSON, "\"buy\"", "body", "not valid JSON");
    expect_400 (JSON, "{\"ticker\":\"AAPL\",}", "body", "not valid JSON");
}

Test (alert, escaped_json_parses_like_plain_json)
{
    //  JSON escapes change the bytes, never the alert.
    char plain[FKS_ALERT_JSON_MAX], escaped[FKS_ALERT_JSON_MAX];
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"qty\":1E0,\"price\":4.2e4,"
                     "\"position_size\":-0,\"comment\":\"caf\xC3\xA9\",\"confidence\":null}");
    cr_assert_eq (fks_alert_to_json (&A, plain, sizeof plain, NULL), 0);
    expect_ok (JSON, "{\"ticker\":\"BTC\\u0055SDT\",\"action\":\"b\\u0075y\",\"qty\":1E0,"
                     "\"price\":4.2e4,\"position_size\":-0,\"comment\":\"caf\\u00e9\","
                     "\"confidence\":null}");
    cr_assert_eq (fks_alert_to_json (&A, escaped, sizeof escaped, NULL), 0);
    cr_assert_str_eq (plain, escaped);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"position_size\":123456789012345}");
    expect_num (A.position_size, 123456789012345.0);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":01}", "body",
                "not valid JSON");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1e999}", "body",
                "not valid JSON");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\"} x", "body", "not valid JSON");
    expect_400 (JSON, "{\"ticker\":\"A\xff\",\"action\":\"buy\"}", "body", "not valid JSON");
}

Test (alert, byte_order_mark_is_skipped)
{
    expect_ok (JSON, "\xEF\xBB\xBF{\"ticker\":\"AAPL\",\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "AAPL");
}

Test (alert, duplicate_keys_are_refused_naming_the_key)
{
    expect_400 (JSON, "{\"ticker\":\"AAPL\",\"action\":\"buy\",\"ticker\":\"MSFT\"}", "ticker",
                "more than once");
    expect_400 (JSON, "{\"ticker\":\"AAPL\",\"\":1,\"action\":\"buy\",\"\":2}", "body",
                "more than once");
}

Test (alert, deep_nesting_is_refused_before_parsing)
{
    char body[256] = "{\"ticker\":\"AAPL\",\"action\":\"buy\",\"x\":";
    size_t n = strlen (body);
    for (int i = 0; i < 20; i++)
        body[n++] = '[';
    for (int i = 0; i < 20; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    expect_400 (JSON, body, "body", "nested deeper");
}

Test (alert, syntax_error_message_never_quotes_the_passphrase)
{
    int rc = parse_json ("{\"ticker\":\"AAPL\",\"passphrase\":\"s3cr\\qet\",\"action\":\"buy\"}");
    cr_assert_eq (rc, -1);
    cr_assert_str_eq (E.field, "body");
    cr_assert_null (strstr (E.message, "s3cr"), "%s", E.message);
    cr_assert_null (strstr (E.message, "qet"), "%s", E.message);
}

//  The message must not hold needle (a piece of a secret).
static void
expect_unquoted (const char *needle)
{
    cr_assert_null (strstr (E.message, needle), "message quotes '%s': %s", needle, E.message);
}

Test (alert, key_value_error_never_quotes_a_secret_split_by_a_space)
{
    expect_400 (TEXT, "ticker=X action=buy passphrase=my secret", "body", "character 35");
    cr_assert (strstr (E.message, "after the value of passphrase"), "%s", E.message);
    expect_unquoted ("secret");
    expect_400 (TEXT, "ticker=X action=buy token=abc def", "body", "character 31");
    expect_unquoted ("def");
    expect_400 (TEXT, "secret=abc,def ticker=X action=buy", "body", "character 12");
    expect_unquoted ("def");
}

Test (alert, key_value_error_never_quotes_the_offending_text)
{
    expect_400 (TEXT, "ticker=SPY action=buy hello", "body", "expected key=value at character 23");
    expect_unquoted ("hello");
    expect_400 (TEXT, "ticker=SPY,hello world=1", "body", "expected key=value at character 12, "
                "after the value of ticker");
    expect_unquoted ("hello");
    expect_400 (TEXT, "ticker=SPY =buy", "body", "expected key=value at character 12");
    expect_unquoted ("buy");
}

Test (alert, values_after_an_unquoted_secret_are_never_quoted)
{
    //  The passphrase may have been "my qty=abc": what follows it names fields, quotes nothing.
    expect_400 (TEXT, "ticker=A action=buy passphrase=my qty=abc", "qty", "must be a number");
    expect_unquoted ("abc");
    expect_400 (TEXT, "ticker=A passphrase=my action=hunter", "action", "not allowed");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "ticker=A action=buy passphrase=my time=hunter2", "time", "ISO 8601");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "ticker=A action=buy apiKey=my symbol=h$nter", "symbol", "may only hold");
    expect_unquoted ("nter");
    expect_400 (TEXT, "ticker=A action=buy passphrase=my price={{hunter}}", "price",
                "placeholder that was not filled in");
    expect_unquoted ("hunter");
    //  Keys there may be part of the secret too: positions only.
    expect_400 (TEXT, "ticker=A action=buy passphrase=a hunter=1 hunter=2", "body",
                "the key at character 43 appears more than once");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "ticker=A action=buy passphrase=a hunter=\"x", "body",
                "no closing quote");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "ticker=A action=buy passphrase=a hunter=\"x\"y", "body",
                "expected a space or comma at character 44");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "ticker=A action=buy passphrase=a b=1 hunter", "body",
                "expected key=value at character 38");
    expect_unquoted ("b (");
    expect_unquoted ("hunter");
}

Test (alert, values_before_a_secret_or_after_a_quoted_one_are_still_quoted)
{
    expect_400 (TEXT, "qty=abc ticker=A action=buy passphrase=x", "qty", "got 'abc'");
    expect_400 (TEXT, "passphrase='my secret' qty=abc ticker=A action=buy", "qty", "got 'abc'");
    expect_unquoted ("secret");
}

Test (alert, action_ticker_form_never_quotes_a_key_value_word)
{
    expect_400 (TEXT, "buy BTCUSDT passphrase=hunter2", "quantity", "must be a number");
    expect_unquoted ("hunter");
    expect_400 (TEXT, "buy BTCUSDT abc", "quantity", "got 'abc'");
}

Test (alert, json_syntax_errors_never_quote_the_body)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"hu\\u12zz\"}", "body",
                "not valid JSON: invalid escape (line 1, column");
    expect_unquoted ("12zz");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"hu\xe9nter\"}", "body",
                "not valid JSON: invalid UTF-8");
    expect_unquoted ("0x");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"hu\x01nter\"}", "body",
                "not valid JSON: a control character inside a string");
    expect_unquoted ("0x");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"hu\\ud800\"}", "body",
                "not valid JSON: an invalid Unicode escape");
    expect_unquoted ("D800");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"a\\u0000\"}", "body",
                "not valid JSON: \\u0000 is not allowed");
    expect_unquoted ("ALLOW");
    expect_400 (JSON, "{\"ticker\":\"A\" \"action\":\"buy\"}", "body", "not valid JSON: "
                "'}' expected (line 1, column");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":hunter}", "body",
                "not valid JSON: invalid token");
    expect_unquoted ("hunter");
}

Test (alert, unquoted_placeholder_under_a_secret_key_is_not_quoted)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":{{hunter}}}",
                "passphrase", "passphrase holds a TradingView placeholder that was not filled in");
    expect_unquoted ("hunter");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"auth\":{\"token\":{{hunter}}}}",
                "auth.token", "placeholder that was not filled in");
    expect_unquoted ("hunter");
    //  A key written with escapes cannot be read: it may be "passphrase".
    expect_400 (JSON, "{\"ticker\":\"A\",\"pass\\u0070hrase\":{{hunter}}}", "body",
                "placeholder outside quotes that was not filled in");
    expect_unquoted ("hunter");
}

Test (alert, unquoted_placeholders_name_their_field)
{
    expect_400 (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"price\":\"{{close}}\"}", "price",
                "'{{close}}', which was not filled in");
    char quoted[sizeof E.message];
    snprintf (quoted, sizeof quoted, "%s", E.message);
    expect_400 (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"price\":{{close}}}", "price",
                "'{{close}}', which was not filled in");
    cr_assert_str_eq (E.message, quoted, "the same words as the quoted form");
    expect_400 (TEXT, "{\"ticker\": \"BTCUSDT\", \"action\": \"buy\", \"qty\" : {{strategy.order.contracts}}}\n",
                "qty", "'{{strategy.order.contracts}}', which was not filled in");
    expect_400 (JSON, "{\"ticker\":\"A\",\"side\":{{strategy.order.action}}}", "side",
                "{{strategy.order.action}}");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop\","
                      "\"percent\":{{plot_0}}}}", "stopLoss.percent", "percent holds the "
                      "TradingView placeholder '{{plot_0}}'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"extras\":[1,{{plot(\"RSI\")}}]}",
                "extras", "'{{plot(\"RSI\")}}'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"note\":\"{{x}}\",\"action\":\"buy\",\"price\":{{close}},"
                      "\"qty\":{{y}}}", "price", "{{close}}");
    expect_400 (JSON, "{\"ticker\":\"A\",\"a,b\":\"}\",\"action\":{{strategy.order.action}}}",
                "action", "{{strategy.order.action}}");
}

Test (alert, placeholders_that_are_not_a_member_value_are_named_against_the_body)
{
    expect_400 (JSON, "{{strategy.order.action}} BTCUSDT 1", "body",
                "the body holds the TradingView placeholder '{{strategy.order.action}}' outside quotes");
    expect_400 (JSON, "{\"ticker\":\"A\",{{key}}:1}", "body", "'{{key}}' outside quotes");
    expect_400 (JSON, "[{{close}}]", "body", "'{{close}}' outside quotes");
    //  Inside a string it is no syntax error: the JSON error itself is reported.
    expect_400 (JSON, "{\"ticker\":\"A\",\"note\":\"{{x}}\",}", "body", "not valid JSON");
    expect_400 (JSON, "{\"ticker\":\"A\",\"note\":\"{{x}}", "body", "not valid JSON");
}

Test (alert, text_template_starting_with_a_placeholder_is_the_text_form)
{
    expect_400 (TEXT, "{{strategy.order.action}} BTCUSDT 1", "action",
                "action holds the TradingView placeholder '{{strategy.order.action}}', which was "
                "not filled in");
    expect_400 (TEXT, "{{strategy.order.action}} {{ticker}} 1\n", "ticker", "{{ticker}}");
    expect_400 (TEXT, "{{strategy.order.action}}", "body", "action ticker [qty] [@price]");
}

// ---------------------------------------------------------------------------------------------
//  Aliases

Test (alert, ticker_and_symbol_are_aliases)
{
    expect_ok (JSON, "{\"symbol\":\"msft\",\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "MSFT");
    expect_ok (JSON, "{\"ticker\":\"MSFT\",\"symbol\":\"msft\",\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "MSFT", "equal after normalising: no conflict");
    //  {{ticker}} beside {{syminfo.tickerid}}: one instrument. Used to be refused as two.
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT.P\",\"symbol\":\"BYBIT:BTCUSDT.P\","
                     "\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "BTCUSDT.P");
    expect_ok (JSON, "{\"ticker\":\"BTC/USDT\",\"symbol\":\"binance:btcusdt\",\"action\":\"buy\"}");
    expect_400 (JSON, "{\"ticker\":\"BTCUSDT\",\"symbol\":\"BYBIT:BTCUSDT.P\",\"action\":\"buy\"}",
                "ticker", "'ticker' and 'symbol'");
}

Test (alert, action_and_side_are_aliases)
{
    expect_ok (JSON, "{\"ticker\":\"AAPL\",\"side\":\"Sell\"}");
    cr_assert_eq (A.action, FKS_ACTION_SELL);
}

Test (alert, contracts_quantity_and_qty_are_aliases)
{
    const char *bodies[] = { "{\"ticker\":\"A\",\"action\":\"buy\",\"contracts\":7}",
                             "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":\"7\"}",
                             "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":7.0}",
                             "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":7,\"quantity\":\"7\"}" };
    for (size_t i = 0; i < 4; i++) {
        expect_ok (JSON, bodies[i]);
        cr_assert (A.has_quantity);
        expect_num (A.quantity, 7);
    }
}

Test (alert, order_type_and_orderType_are_aliases)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"orderType\":\"LIMIT\","
                     "\"limitPrice\":10}");
    cr_assert_eq (A.order_type, FKS_ORDER_LIMIT);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"order_type\":\"market\"}");
    cr_assert_eq (A.order_type, FKS_ORDER_MARKET);
}

Test (alert, limit_and_signal_price_spellings)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"limit_price\":\"9.5\","
                     "\"signal_price\":\"9.75\"}");
    expect_num (A.limit_price, 9.5);
    expect_num (A.signal_price, 9.75);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"signalPrice\":9.75}");
    cr_assert (A.has_signal_price);
    expect_num (A.signal_price, 9.75);
}

Test (alert, quantity_type_spellings)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":500,"
                     "\"quantityType\":\"dollar_amount\"}");
    cr_assert_eq (A.quantity_type, FKS_QTY_DOLLAR_AMOUNT);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":2,"
                     "\"quantity_type\":\"risk_percent\"}");
    cr_assert_eq (A.quantity_type, FKS_QTY_RISK_PERCENT);
}

Test (alert, two_aliases_with_different_values_are_refused_naming_both)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"contracts\":1,\"qty\":2}",
                "contracts", "'contracts' and 'qty'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"symbol\":\"B\",\"action\":\"buy\"}", "ticker",
                "'ticker' and 'symbol'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"side\":\"sell\"}", "action",
                "'action' and 'side'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stop_loss\":90,"
                      "\"stopLoss\":{\"stopPrice\":91}}", "stop_loss", "'stop_loss' and 'stopLoss'");
}

Test (alert, same_value_under_two_aliases_is_fine)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stop_loss\":90,"
                     "\"stopLoss\":{\"type\":\"stop\",\"stopPrice\":\"90\"}}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_STOP);
    expect_num (A.stop_loss.value, 90);
}

Test (alert, time_keys_are_taken_by_preference)
{
    //  {{time}} is the bar's time, {{timenow}} when the alert fired: both may be present.
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"2024-01-15T14:30:00Z\","
                     "\"timenow\":\"2024-01-15T14:31:07Z\"}");
    cr_assert_eq (A.alert_time_ms, INT64_C(1705329067000));
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"2024-01-15T14:30:00Z\","
                     "\"timestamp\":1705329060}");
    cr_assert_eq (A.alert_time_ms, INT64_C(1705329060000));
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"2024-01-15T14:30:00Z\"}");
    cr_assert_eq (A.alert_time_ms, INT64_C(1705329000000));
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"yesterday\","
                      "\"timenow\":\"2024-01-15T14:31:07Z\"}", "time", "ISO 8601");
}

Test (alert, market_position_and_position_size)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"flat\","
                     "\"position_size\":\"0\"}");
    cr_assert_eq (A.market_position, FKS_POSITION_FLAT);
    cr_assert (A.has_position_size);
    expect_num (A.position_size, 0);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"short\","
                     "\"position_size\":\"-2.5\"}");
    cr_assert_eq (A.market_position, FKS_POSITION_SHORT);
    expect_num (A.position_size, -2.5);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"up\"}",
                "market_position", "long, short, flat");
}

//  A reversal sent with {{strategy.market_position_size}} (unsigned) as position_size would
//  target a long of 1 where the strategy went short 1: refused, naming position_size.
Test (alert, position_size_must_agree_with_market_position_and_sentiment)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"short\","
                      "\"position_size\":\"1\"}", "position_size", "market_position says short");
    cr_assert (strstr (E.message, "{{strategy.position_size}}"), "%s", E.message);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"market_position\":\"long\","
                      "\"position_size\":-2}", "position_size",
                "short position but market_position");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"flat\","
                      "\"position_size\":\"3\"}", "position_size", "says flat");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"marketPosition\":\"long\","
                      "\"position_size\":\"0\"}", "position_size", "0 is flat");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"sentiment\":\"bearish\","
                      "\"position_size\":\"2\"}", "position_size", "sentiment says short");
    expect_400 (TEXT, "action=buy ticker=A sentiment=bullish position_size=-1", "position_size",
                "sentiment says long");
    //  The fields are named as the alert spelt them.
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"marketPosition\":\"short\","
                      "\"positionSize\":\"1\"}", "positionSize",
                "positionSize 1 is a long position but marketPosition says short");
    //  Agreeing fields, and position_size alone, are taken as they are.
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"market_position\":\"short\","
                     "\"position_size\":\"-1\",\"sentiment\":\"short\"}");
    expect_num (A.position_size, -1);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"position_size\":\"-1\"}");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"sentiment\":\"flat\","
                     "\"position_size\":\"-0\"}");
}

Test (alert, sentiment_and_market_position_must_agree)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"long\","
                      "\"sentiment\":\"bearish\"}", "sentiment", "market_position says long");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"flat\","
                      "\"sentiment\":\"short\"}", "sentiment", "send one of them");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"long\","
                     "\"sentiment\":\"bullish\"}");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"sell\",\"market_position\":\"flat\","
                     "\"sentiment\":\"flat\"}");
}

Test (alert, an_exit_with_a_position_size_is_refused)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"exit\",\"position_size\":\"2\"}",
                "position_size", "action exit closes the position");
    expect_400 (TEXT, "action=close ticker=A position_size=-1", "position_size",
                "send position_size 0");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"flat\",\"position_size\":0}");
}

//  An add that says the position is flat after it used to add to the open position.
Test (alert, an_add_to_a_flat_position_is_refused)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"add\",\"sentiment\":\"flat\"}",
                "sentiment", "action add adds to the position, but sentiment says it is flat");
    expect_400 (TEXT, "action=add ticker=A market_position=flat", "market_position",
                "market_position says it is flat");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"add\",\"sentiment\":\"bullish\"}");
}

// ---------------------------------------------------------------------------------------------
//  Actions, sentiment, quantity types, order types

Test (alert, every_action_in_any_case)
{
    const char *names[] = { "BUY", "Sell", "long", "SHORT", "close", "Flat", "exit", "cancel",
                            "ADD" };
    fks_alert_action_t want[] = { FKS_ACTION_BUY, FKS_ACTION_SELL, FKS_ACTION_LONG,
                                  FKS_ACTION_SHORT, FKS_ACTION_CLOSE, FKS_ACTION_FLAT,
                                  FKS_ACTION_EXIT, FKS_ACTION_CANCEL, FKS_ACTION_ADD };
    for (size_t i = 0; i < 9; i++) {
        char body[128];
        snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"%s\"}", names[i]);
        expect_ok (JSON, body);
        cr_assert_eq (A.action, want[i], "%s", names[i]);
    }
}

Test (alert, unknown_action_lists_the_allowed_ones)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"purchase\"}", "action",
                "buy, sell, long, short, close, flat, exit, cancel, add");
}

Test (alert, sentiment_spellings_are_normalised)
{
    const char *names[] = { "bullish", "long", "Bearish", "short", "flat" };
    fks_alert_sentiment_t want[] = { FKS_SENTIMENT_BULLISH, FKS_SENTIMENT_BULLISH,
                                     FKS_SENTIMENT_BEARISH, FKS_SENTIMENT_BEARISH,
                                     FKS_SENTIMENT_FLAT };
    for (size_t i = 0; i < 5; i++) {
        char body[128];
        snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"sell\",\"sentiment\":\"%s\"}",
                  names[i]);
        expect_ok (JSON, body);
        cr_assert_eq (A.sentiment, want[i], "%s", names[i]);
        cr_assert_eq (A.action, FKS_ACTION_SELL);
    }
}

Test (alert, sentiment_alone_gives_the_target_position)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"sentiment\":\"bullish\"}");
    cr_assert_eq (A.action, FKS_ACTION_LONG);
    expect_ok (JSON, "{\"ticker\":\"A\",\"sentiment\":\"bearish\"}");
    cr_assert_eq (A.action, FKS_ACTION_SHORT);
    expect_ok (JSON, "{\"ticker\":\"A\",\"sentiment\":\"flat\"}");
    cr_assert_eq (A.action, FKS_ACTION_FLAT);
}

Test (alert, symbol_and_action_are_required)
{
    expect_400 (JSON, "{\"action\":\"buy\",\"qty\":1}", "symbol", "'ticker' or 'symbol'");
    expect_400 (JSON, "{\"ticker\":\"AAPL\",\"qty\":1}", "action", "required");
    expect_400 (JSON, "{\"ticker\":null,\"action\":\"buy\"}", "symbol", "required");
}

Test (alert, every_quantity_type_is_accepted)
{
    const char *names[] = { "fixed_quantity", "dollar_amount", "risk_dollar_amount",
                            "risk_percent", "percent_of_equity", "percent_of_position" };
    for (size_t i = 0; i < 6; i++) {
        char body[160];
        snprintf (body, sizeof body,
                  "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":5,\"quantityType\":\"%s\"}",
                  names[i]);
        expect_ok (JSON, body);
        cr_assert_eq ((int) A.quantity_type, (int) i + 1, "%s", names[i]);
        cr_assert_str_eq (fks_alert_qty_type_name (A.quantity_type), names[i]);
    }
}

Test (alert, unknown_quantity_type_names_the_allowed_values)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":5,"
                      "\"quantityType\":\"shares\"}", "quantityType",
                "fixed_quantity, dollar_amount, risk_dollar_amount, risk_percent, "
                "percent_of_equity, percent_of_position");
    cr_assert (strstr (E.message, "'shares'"), "%s", E.message);
}

Test (alert, percent_quantities_stop_at_100)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":150,"
                      "\"quantityType\":\"percent_of_equity\"}", "qty", "at most 100");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":150,"
                     "\"quantityType\":\"dollar_amount\"}");
}

Test (alert, limit_orders_need_a_limit_price)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"orderType\":\"limit\"}",
                "limitPrice", "limit order needs limitPrice");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"orderType\":\"limit\","
                     "\"price\":\"101.25\"}");
    cr_assert (A.has_limit_price, "price serves as the limit price");
    expect_num (A.limit_price, 101.25);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"orderType\":\"stop\"}",
                "orderType", "market, limit");
}

// ---------------------------------------------------------------------------------------------
//  TradersPost stopLoss / takeProfit

Test (alert, stop_loss_with_stop_price)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop\","
                     "\"stopPrice\":\"95.5\"}}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_STOP);
    cr_assert_eq (A.stop_loss.by, FKS_LEVEL_PRICE);
    expect_num (A.stop_loss.value, 95.5);
}

Test (alert, stop_loss_with_percent_or_amount)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"percent\":2}}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_STOP, "type defaults to stop");
    cr_assert_eq (A.stop_loss.by, FKS_LEVEL_PERCENT);
    expect_num (A.stop_loss.value, 2);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"amount\":\"1.5\"}}");
    cr_assert_eq (A.stop_loss.by, FKS_LEVEL_AMOUNT);
    expect_num (A.stop_loss.value, 1.5);
}

Test (alert, stop_limit_needs_a_limit_price)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop_limit\","
                     "\"stopPrice\":95,\"limitPrice\":94.5}}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_STOP_LIMIT);
    cr_assert (A.stop_loss.has_limit_price);
    expect_num (A.stop_loss.limit_price, 94.5);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop_limit\","
                      "\"stopPrice\":95}}", "stopLoss.limitPrice", "needs limitPrice");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop\","
                      "\"stopPrice\":95,\"limitPrice\":94}}", "stopLoss.limitPrice",
                "only for a stop loss of type stop_limit");
}

Test (alert, trailing_stop_takes_percent_or_amount)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"trailing_stop\","
                     "\"trailPercent\":3}}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_TRAILING_STOP);
    cr_assert_eq (A.stop_loss.by, FKS_LEVEL_PERCENT);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"trailing_stop\","
                      "\"stopPrice\":95}}", "stopLoss.stopPrice", "percent or amount");
}

Test (alert, stop_loss_needs_exactly_one_level)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"stop\"}}",
                "stopLoss", "needs one of stopPrice, percent or amount");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"percent\":2,"
                      "\"amount\":1}}", "stopLoss", "only one of");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"percent\":150}}",
                "stopLoss.percent", "at most 100");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"type\":\"oco\","
                      "\"percent\":1}}", "stopLoss.type", "stop, stop_limit, trailing_stop");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":[95]}", "stopLoss",
                "must be a number");
}

Test (alert, take_profit_with_limit_price_percent_or_amount)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"takeProfit\":{\"limitPrice\":110}}");
    cr_assert_eq (A.take_profit.type, FKS_EXIT_LIMIT);
    cr_assert_eq (A.take_profit.by, FKS_LEVEL_PRICE);
    expect_num (A.take_profit.value, 110);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"takeProfit\":{\"percent\":\"250\"}}");
    cr_assert_eq (A.take_profit.by, FKS_LEVEL_PERCENT);
    expect_num (A.take_profit.value, 250);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"takeProfit\":{\"amount\":4}}");
    cr_assert_eq (A.take_profit.by, FKS_LEVEL_AMOUNT);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"takeProfit\":{}}", "takeProfit",
                "needs one of limitPrice, percent or amount");
}

Test (alert, flat_stop_loss_and_take_profit_are_prices)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stop_loss\":\"41000\","
                     "\"take_profit\":45000}");
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_STOP);
    cr_assert_eq (A.stop_loss.by, FKS_LEVEL_PRICE);
    expect_num (A.stop_loss.value, 41000);
    cr_assert_eq (A.take_profit.type, FKS_EXIT_LIMIT);
    expect_num (A.take_profit.value, 45000);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stop_loss\":0}", "stop_loss",
                "greater than 0");
}

// ---------------------------------------------------------------------------------------------
//  Numbers, placeholders and bounds

Test (alert, numbers_may_arrive_as_strings)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":\"0.001\",\"price\":\"1e3\","
                     "\"confidence\":\"0.75\",\"position_size\":\"-3\"}");
    expect_num (A.quantity, 0.001);
    expect_num (A.price, 1000);
    expect_num (A.confidence, 0.75);
    expect_num (A.position_size, -3);
}

Test (alert, numbers_are_parsed_strictly)
{
    const char *bad[] = { "0.5abc", " 1", "1 ", "1e999", "nan", "inf", "0x10", "1,5", "--1",
                          "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[128];
        snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":\"%s\"}",
                  bad[i]);
        expect_400 (JSON, body, "price", "must be a number");
    }
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":true}", "price",
                "must be a number");
}

Test (alert, quantities_and_prices_must_be_positive)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":0}", "qty", "greater than 0");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"contracts\":\"-1\"}", "contracts",
                "greater than 0");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":-5}", "price",
                "greater than 0");
}

//  1e301 passed as a quantity used to reach the signal worker, which rounded it (times 10^8)
//  to infinity and signalled an infinite order.
Test (alert, quantities_prices_and_sizes_are_bounded)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":\"1e301\"}",
                "quantity", "at most 1e+15");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"contracts\":2e15}",
                "contracts", "at most 1e+15");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"position_size\":\"-1e16\"}",
                "position_size", "at least -1e+15");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":1e300}",
                "price", "at most 1e+15");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stop_loss\":1e300}",
                "stop_loss", "at most 1e+15");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"takeProfit\":{\"percent\":1e300}}",
                "takeProfit.percent", "at most 1e+15");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"quantity\":1e15,"
                     "\"position_size\":\"-1e15\",\"price\":\"0.00000001\"}");
    expect_num (A.quantity, 1e15);
}

Test (alert, confidence_is_between_0_and_1)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"confidence\":1}");
    expect_num (A.confidence, 1);
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"confidence\":0}");
    cr_assert (A.has_confidence);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"confidence\":1.01}", "confidence",
                "at most 1");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"confidence\":-0.1}", "confidence",
                "at least 0");
}

Test (alert, unfilled_placeholders_are_named)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":\"{{close}}\"}", "price",
                "'{{close}}', which was not filled in");
    expect_400 (JSON, "{\"ticker\":\"{{ticker}}\",\"action\":\"buy\"}", "ticker",
                "placeholder '{{ticker}}'");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"{{strategy.order.action}}\"}", "action",
                "{{strategy.order.action}}");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"comment\":\"at {{timenow}}\"}",
                "comment", "placeholder");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"stopLoss\":{\"percent\":\"{{plot_0}}\"}}",
                "stopLoss.percent", "{{plot_0}}");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"{{time}}\"}", "time",
                "not filled in");
}

Test (alert, unknown_keys_are_ignored)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"extras\":{\"x\":[1,2,{\"y\":null}]},"
                     "\"note\":\"{{unfilled}}\",\"Ticker\":\"IGNORED\"}");
    cr_assert_str_eq (A.symbol, "A");
}

Test (alert, null_counts_as_absent)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":null,\"qty\":null,"
                     "\"stopLoss\":null,\"comment\":null}");
    cr_assert_not (A.has_price);
    cr_assert_not (A.has_quantity);
    cr_assert_eq (A.stop_loss.type, FKS_EXIT_NONE);
}

Test (alert, symbol_charset_and_length_are_bounded)
{
    expect_ok (JSON, "{\"ticker\":\"CME_MINI:ES-2024.H/x\",\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "CME_MINI:ES-2024.H/X");
    expect_400 (JSON, "{\"ticker\":\"BTC USDT\",\"action\":\"buy\"}", "ticker",
                "letters, digits and : . _ / -");
    expect_400 (JSON, "{\"ticker\":\"BTC$\",\"action\":\"buy\"}", "ticker", "'BTC$'");
    expect_400 (JSON, "{\"ticker\":\"\",\"action\":\"buy\"}", "ticker", "must not be empty");
    expect_400 (JSON, "{\"ticker\":7203,\"action\":\"buy\"}", "ticker", "must be a string");
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"%064d\",\"action\":\"buy\"}", 1);
    expect_400 (JSON, body, "ticker", "longer than 63 bytes");
}

//  Symbols the signal worker cannot trade used to be answered 202 and filtered later as
//  "malformed alert": now a 400 naming the field, as the user can fix the template.
Test (alert, symbols_without_a_tradable_instrument_are_refused_at_the_door)
{
    expect_400 (JSON, "{\"ticker\":\"BINANCE:\",\"action\":\"buy\"}", "ticker",
                "has no instrument name");
    expect_400 (JSON, "{\"symbol\":\".P\",\"action\":\"buy\"}", "symbol",
                "has no instrument name");
    expect_400 (JSON, "{\"ticker\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\",\"action\":\"buy\"}",
                "ticker", "longer than 32 characters");
    expect_400 (TEXT, "sell -/_ 1", "ticker", "has no instrument name");
    //  After an unquoted secret the value is not quoted.
    expect_400 (TEXT, "buy X: passphrase=x", "ticker", "instrument name of at");
    cr_assert_null (strstr (E.message, "X:"), "%s", E.message);
    expect_ok (JSON, "{\"ticker\":\"BYBIT:BTCUSDT.P\",\"action\":\"buy\"}");
    cr_assert_str_eq (A.symbol, "BYBIT:BTCUSDT.P");
}

Test (alert, tradingview_continuous_futures_symbols_are_accepted)
{
    expect_ok (JSON, "{\"ticker\":\"ES1!\",\"action\":\"buy\",\"contracts\":1}");
    cr_assert_str_eq (A.symbol, "ES1!");
    expect_ok (JSON, "{\"ticker\":\"CME_MINI:nq1!\",\"action\":\"sell\"}");
    cr_assert_str_eq (A.symbol, "CME_MINI:NQ1!");
    expect_ok (TEXT, "ticker=CL2! action=buy qty=3");
    cr_assert_str_eq (A.symbol, "CL2!");
    expect_ok (TEXT, "buy ES1! 2 @5000.25");
    cr_assert_str_eq (A.symbol, "ES1!");
    expect_num (A.quantity, 2);
    expect_num (A.price, 5000.25);
    //  The msgpack body the workers receive carries it unchanged, and passes the bus schema.
    expect_ok (JSON, "{\"ticker\":\"CME_MINI:ES1!\",\"action\":\"buy\"}");
    fks_id_t inbox_id;
    cr_assert_eq (fks_id_new (&inbox_id), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq (fks_alert_pack (&A, &inbox_id, &pk), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    cr_assert_eq (msgpack_unpack_next (&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    char err[160] = "";
    cr_assert_eq (fks_schema_check (fks_schema_find ("webhook.received"), &u.data, err,
                                    sizeof err), 0, "%s", err);
    const msgpack_object_map *m = &u.data.via.map;
    bool seen = false;
    for (uint32_t i = 0; i < m->size; i++)
        if (m->ptr[i].key.via.str.size == 6 && memcmp (m->ptr[i].key.via.str.ptr, "symbol", 6) == 0) {
            cr_assert_eq (m->ptr[i].val.type, MSGPACK_OBJECT_STR);
            cr_assert_eq (m->ptr[i].val.via.str.size, 13);
            cr_assert (memcmp (m->ptr[i].val.via.str.ptr, "CME_MINI:ES1!", 13) == 0);
            seen = true;
        }
    cr_assert (seen, "the body has no symbol");
    msgpack_unpacked_destroy (&u);
    msgpack_sbuffer_destroy (&sb);
}

Test (alert, a_bang_never_starts_a_symbol_or_its_instrument)
{
    expect_400 (JSON, "{\"ticker\":\"!ES\",\"action\":\"buy\"}", "ticker", "! not first");
    expect_400 (JSON, "{\"ticker\":\"CME_MINI:!ES\",\"action\":\"buy\"}", "ticker",
                "'CME_MINI:!ES'");
    expect_400 (JSON, "{\"symbol\":\"!\",\"action\":\"buy\"}", "symbol", "! not first");
    expect_400 (TEXT, "buy !ES 1", "ticker", "! not first");
}

Test (alert, client_id_is_bounded_and_printable)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"order-17 #a\"}");
    cr_assert_str_eq (A.client_id, "order-17 #a");
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":12345}");
    cr_assert_str_eq (A.client_id, "12345");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"caf\xC3\xA9\"}", "id",
                "printable ASCII");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"a\\tb\"}", "id",
                "printable ASCII");
    char body[400];
    snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"%0129d\"}", 0);
    expect_400 (JSON, body, "id", "longer than 128 bytes");
    snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"%0128d\"}", 0);
    expect_ok (JSON, body);
}

Test (alert, text_fields_are_stored_and_bounded)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"strategy\":\"Caf\xC3\xA9 \\\"RSI\\\"\","
                     "\"interval\":5,\"exchange\":\"NASDAQ\",\"comment\":\"\"}");
    cr_assert_str_eq (A.strategy, "Caf\xC3\xA9 \"RSI\"");
    cr_assert_str_eq (A.interval, "5");
    cr_assert_str_eq (A.exchange, "NASDAQ");
    cr_assert_str_empty (A.comment, "an empty comment is no comment");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"comment\":\"line\\nbreak\"}",
                "comment", "control characters");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"interval\":\"1 D\"}", "interval",
                "letters and digits");
    static char body[2048];
    char comment[600];
    memset (comment, 'x', 512);
    comment[512] = '\0';
    snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"comment\":\"%s\"}",
              comment);
    expect_400 (JSON, body, "comment", "longer than 511 bytes");
}

// ---------------------------------------------------------------------------------------------
//  Times

static int64_t
time_of (const char *value_json)
{
    char body[256];
    snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":%s}", value_json);
    expect_ok (JSON, body);
    cr_assert (A.has_alert_time);
    return A.alert_time_ms;
}

Test (alert, iso_times_with_z_or_offset)
{
    cr_assert_eq (time_of ("\"2024-01-15T14:30:00Z\""), INT64_C(1705329000000));
    cr_assert_eq (time_of ("\"2024-01-15T16:30:00+02:00\""), INT64_C(1705329000000));
    cr_assert_eq (time_of ("\"2024-01-15T09:30:00-0500\""), INT64_C(1705329000000));
    cr_assert_eq (time_of ("\"2024-01-15T14:30:00.123Z\""), INT64_C(1705329000123));
    cr_assert_eq (time_of ("\"2024-01-15T14:30:00.123456789Z\""), INT64_C(1705329000123));
    cr_assert_eq (time_of ("\"2024-01-15 14:30Z\""), INT64_C(1705329000000));
    cr_assert_eq (time_of ("\"2024-02-29T00:00:00Z\""), INT64_C(1709164800000));
}

Test (alert, epoch_times_in_seconds_or_milliseconds)
{
    cr_assert_eq (time_of ("1705329000000"), INT64_C(1705329000000));
    cr_assert_eq (time_of ("1705329000"), INT64_C(1705329000000));
    cr_assert_eq (time_of ("\"1705329000123\""), INT64_C(1705329000123));
    cr_assert_eq (time_of ("\"1705329000\""), INT64_C(1705329000000));
    cr_assert_eq (time_of ("1705329000.0"), INT64_C(1705329000000));
}

Test (alert, bad_times_are_refused)
{
    const char *bad[] = { "\"2024-01-15T14:30:00\"", "\"2024-02-30T00:00:00Z\"",
                          "\"2024-13-01T00:00:00Z\"", "\"2024-01-15T24:00:00Z\"",
                          "\"15/01/2024 14:30\"", "\"2024-01-15T14:30:00+25:00\"",
                          "\"2024-01-15T14:30:00Zjunk\"" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[160];
        snprintf (body, sizeof body, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":%s}", bad[i]);
        expect_400 (JSON, body, "time", "ISO 8601");
    }
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":\"1999-12-31T23:59:59Z\"}",
                "time", "between 2000 and 2099");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"timestamp\":12345}", "timestamp",
                "between 2000 and 2099");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"timestamp\":-1}", "timestamp",
                "negative");
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"timenow\":1705329000.5}", "timenow",
                "whole number");
}

// ---------------------------------------------------------------------------------------------
//  Passphrase

Test (alert, passphrase_is_handed_out_not_stored)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"hunter2-secret\"}");
    cr_assert (P.present);
    cr_assert_eq (P.len, 14);
    cr_assert_str_eq (P.value, "hunter2-secret");
    cr_assert_null (memmem (&A, sizeof A, "hunter2", 7), "the alert holds no passphrase");
    fks_alert_secret_wipe (&P);
    cr_assert_not (P.present);
    cr_assert_null (memmem (&P, sizeof P, "hunter2", 7), "wiped");
}

Test (alert, passphrase_in_key_value_form)
{
    expect_ok (TEXT, "ticker=A action=buy passphrase='pa ss'");
    cr_assert (P.present);
    cr_assert_str_eq (P.value, "pa ss");
}

Test (alert, passphrase_errors_never_quote_it)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"x{{secret}}\"}",
                "passphrase", "placeholder");
    cr_assert_null (strstr (E.message, "secret"), "%s", E.message);
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":[\"topsecret\"]}",
                "passphrase", "must be a string");
    cr_assert_null (strstr (E.message, "topsecret"));
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\"}");
    cr_assert_not (P.present, "no passphrase, nothing present");
}

Test (alert, refused_body_wipes_the_passphrase)
{
    expect_400 (JSON, "{\"ticker\":\"A\",\"action\":\"nope\",\"passphrase\":\"hunter2\"}",
                "action", "not allowed");
    cr_assert_null (memmem (&P, sizeof P, "hunter2", 7));
}

// ---------------------------------------------------------------------------------------------
//  Idempotency keys

static void
key_of (const char *ct, const char *body, int64_t now_ms, char out[FKS_ALERT_IDEM_KEY_MAX])
{
    expect_ok (ct, body);
    cr_assert_eq (fks_alert_idem_key (&A, now_ms, 60000, -1, out, NULL), 0);
}

Test (alert, client_id_is_the_idempotency_key)
{
    char key[FKS_ALERT_IDEM_KEY_MAX];
    key_of (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"abc-1\"}", 0, key);
    cr_assert_str_eq (key, "id:abc-1");
}

Test (alert, equal_alerts_give_equal_keys_whatever_the_form)
{
    char k1[FKS_ALERT_IDEM_KEY_MAX], k2[FKS_ALERT_IDEM_KEY_MAX], k3[FKS_ALERT_IDEM_KEY_MAX];
    key_of (JSON, "{\"ticker\":\"btcusdt\",\"action\":\"BUY\",\"qty\":\"0.5\",\"price\":42000,"
                  "\"time\":\"2024-01-15T14:30:00Z\",\"comment\":\"one\"}", 1, k1);
    key_of (TEXT, "ticker=BTCUSDT action=buy contracts=0.50 price=42000.0 "
                  "timestamp=1705329000000 comment=two", 999999999, k2);
    key_of (TEXT, "{\"symbol\":\"BTCUSDT\",\"side\":\"buy\",\"quantity\":0.5,\"price\":\"4.2e4\","
                  "\"timenow\":1705329000}\n", 5, k3);
    cr_assert_eq (strncmp (k1, "h:", 2), 0);
    cr_assert_eq (strlen (k1), 66);
    cr_assert_str_eq (k1, k2);
    cr_assert_str_eq (k1, k3);
}

Test (alert, any_hashed_difference_gives_a_different_key)
{
    const char *base = "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,"
                       "\"strategy\":\"s\",\"time\":1705329000000}";
    const char *variants[] = {
        "{\"ticker\":\"B\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"sell\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":2,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"price\":10,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":11,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"strategy\":\"s\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"t\",\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"time\":1705329000000}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000001}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\"}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000,\"quantityType\":\"dollar_amount\"}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000,\"orderType\":\"limit\"}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000,\"stopLoss\":{\"percent\":1}}",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1,\"price\":10,\"strategy\":\"s\",\"time\":1705329000000,\"sentiment\":\"flat\"}",
    };
    size_t n = sizeof variants / sizeof variants[0];
    char keys[16][FKS_ALERT_IDEM_KEY_MAX];
    key_of (JSON, base, 0, keys[0]);
    for (size_t i = 0; i < n; i++) {
        key_of (JSON, variants[i], 0, keys[i + 1]);
        for (size_t j = 0; j <= i; j++)
            cr_assert_str_neq (keys[i + 1], keys[j], "variant %zu equals %zu", i, j);
    }
    //  The source counts too.
    char k[FKS_ALERT_IDEM_KEY_MAX];
    cr_assert_eq (fks_alert_parse (JSON, base, strlen (base), "script", &A, &P, &E), 0);
    cr_assert_eq (fks_alert_idem_key (&A, 0, 60000, -1, k, NULL), 0);
    cr_assert_str_neq (k, keys[0]);
}

Test (alert, without_a_time_the_window_bucket_counts)
{
    const char *body = "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":1}";
    char k1[FKS_ALERT_IDEM_KEY_MAX], k2[FKS_ALERT_IDEM_KEY_MAX], k3[FKS_ALERT_IDEM_KEY_MAX];
    key_of (JSON, body, 1705329000000, k1);
    key_of (JSON, body, 1705329059999, k2);
    key_of (JSON, body, 1705329060000, k3);
    cr_assert_str_eq (k1, k2, "same 60 s window");
    cr_assert_str_neq (k1, k3, "next window");
    cr_assert_eq (fks_alert_idem_key (&A, 0, 0, -1, k1, NULL), -1, "a window must be positive");
}

Test (alert, client_id_key_has_no_previous_key)
{
    char out[FKS_ALERT_IDEM_KEY_MAX], prev[FKS_ALERT_IDEM_KEY_MAX] = "x";
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"id\":\"abc-1\",\"time\":1705329000}");
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, 1705329000, out, prev), 0);
    cr_assert_str_eq (out, "id:abc-1");
    cr_assert_str_empty (prev);
}

Test (alert, alert_time_key_has_no_previous_key_and_ignores_the_signature)
{
    char out[FKS_ALERT_IDEM_KEY_MAX], prev[FKS_ALERT_IDEM_KEY_MAX] = "x";
    char other[FKS_ALERT_IDEM_KEY_MAX];
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"qty\":0.5,\"time\":1705329000}");
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, -1, out, prev), 0);
    cr_assert_str_empty (prev);
    //  The very key this alert always had.
    cr_assert_str_eq (out, "h:bbb7e2438b4932614454ca3fcec51031dde60f902c70f60e28e45812f814eced");
    cr_assert_eq (fks_alert_idem_key (&A, 1, 60000, 1705329123, other, prev), 0);
    cr_assert_str_eq (other, out);
    cr_assert_str_empty (prev);
}

Test (alert, signed_request_without_time_is_keyed_by_its_timestamp)
{
    char k1[FKS_ALERT_IDEM_KEY_MAX], k2[FKS_ALERT_IDEM_KEY_MAX], k3[FKS_ALERT_IDEM_KEY_MAX];
    char unsigned_key[FKS_ALERT_IDEM_KEY_MAX], prev[FKS_ALERT_IDEM_KEY_MAX] = "x";
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"qty\":0.5}");
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, 1705329000, k1, prev), 0);
    cr_assert_eq (strncmp (k1, "h:", 2), 0);
    cr_assert_eq (strlen (k1), 66);
    cr_assert_str_empty (prev, "no window, no previous key");
    //  A replay minutes later (inside a 300 s replay window) hashes the same.
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000 + 120000, 60000, 1705329000, k2, prev), 0);
    cr_assert_str_eq (k1, k2);
    //  Another signed request with the same body is another alert.
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, 1705329001, k3, prev), 0);
    cr_assert_str_neq (k1, k3);
    //  And no signed key is an unsigned one.
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, -1, unsigned_key, prev), 0);
    cr_assert_str_neq (k1, unsigned_key);
    cr_assert_eq (fks_alert_idem_key (&A, 0, 60000, 0, k3, prev), 0, "0 is a timestamp");
    cr_assert_str_neq (k3, unsigned_key);
}

Test (alert, unsigned_alert_without_time_also_gets_the_previous_bucket_key)
{
    char out[FKS_ALERT_IDEM_KEY_MAX], prev[FKS_ALERT_IDEM_KEY_MAX];
    char earlier[FKS_ALERT_IDEM_KEY_MAX], before_that[FKS_ALERT_IDEM_KEY_MAX];
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\",\"qty\":0.5,\"price\":42000}");
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000, 60000, -1, out, prev), 0);
    //  The very key this alert always had in this bucket.
    cr_assert_str_eq (out, "h:2441ea865c515daf7dc7e3efe0a63c8ebec4b7e2b3bd3198609941c886a8e0bd");
    cr_assert_eq (fks_alert_idem_key (&A, 1705329000000 - 60000, 60000, -1, earlier, before_that),
                  0);
    cr_assert_str_eq (prev, earlier, "prev is the key one window earlier");
    cr_assert_str_neq (prev, out);
    cr_assert_str_neq (before_that, earlier);
    //  Either side of a boundary, 2 ms apart: the later one's prev is the earlier one's key.
    char a[FKS_ALERT_IDEM_KEY_MAX], b[FKS_ALERT_IDEM_KEY_MAX], b_prev[FKS_ALERT_IDEM_KEY_MAX];
    cr_assert_eq (fks_alert_idem_key (&A, 1705329059999, 60000, -1, a, prev), 0);
    cr_assert_eq (fks_alert_idem_key (&A, 1705329060001, 60000, -1, b, b_prev), 0);
    cr_assert_str_neq (a, b);
    cr_assert_str_eq (b_prev, a);
    //  Before 1970 too, and at the very bottom, where there is no earlier bucket.
    cr_assert_eq (fks_alert_idem_key (&A, -1, 60000, -1, out, prev), 0);
    cr_assert_eq (fks_alert_idem_key (&A, -60001, 60000, -1, earlier, NULL), 0);
    cr_assert_str_eq (prev, earlier);
    cr_assert_eq (fks_alert_idem_key (&A, INT64_MIN, 1, -1, out, prev), 0);
    cr_assert_str_empty (prev);
    cr_assert_eq (fks_alert_idem_key (&A, INT64_MAX, 1, -1, out, prev), 0);
    cr_assert_str_neq (prev, "");
}

Test (alert, refused_window_leaves_both_keys_empty)
{
    char out[FKS_ALERT_IDEM_KEY_MAX] = "x", prev[FKS_ALERT_IDEM_KEY_MAX] = "x";
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\"}");
    cr_assert_eq (fks_alert_idem_key (&A, 0, -5, 1705329000, out, prev), -1);
    cr_assert_str_empty (out);
    cr_assert_str_empty (prev);
}

Test (alert, comment_confidence_and_interval_do_not_change_the_key)
{
    char k1[FKS_ALERT_IDEM_KEY_MAX], k2[FKS_ALERT_IDEM_KEY_MAX];
    key_of (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":1705329000,\"comment\":\"a\"}",
            0, k1);
    key_of (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"time\":1705329000,\"comment\":\"b\","
                  "\"confidence\":0.4,\"interval\":\"5\"}", 0, k2);
    cr_assert_str_eq (k1, k2);
}

// ---------------------------------------------------------------------------------------------
//  JSON output

static json_t *
to_json (void)
{
    char buf[FKS_ALERT_JSON_MAX];
    size_t len = 0;
    cr_assert_eq (fks_alert_to_json (&A, buf, sizeof buf, &len), 0);
    cr_assert_eq (len, strlen (buf));
    json_error_t jerr;
    json_t *j = json_loadb (buf, len, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null (j, "invalid JSON %s: %s", buf, jerr.text);
    return j;
}

Test (alert, json_output_carries_the_normalised_fields)
{
    expect_ok (JSON, "{\"ticker\":\"btcusdt\",\"action\":\"Buy\",\"qty\":\"0.1\",\"price\":42000.5,"
                     "\"orderType\":\"limit\",\"quantityType\":\"fixed_quantity\","
                     "\"stopLoss\":{\"type\":\"stop_limit\",\"stopPrice\":41000,\"limitPrice\":40900},"
                     "\"takeProfit\":{\"percent\":3},\"strategy\":\"s \\\"q\\\"\",\"interval\":\"1D\","
                     "\"exchange\":\"BINANCE\",\"time\":\"2024-01-15T14:30:00Z\","
                     "\"position_size\":-1,\"market_position\":\"short\",\"sentiment\":\"bearish\","
                     "\"confidence\":0.9,\"id\":\"k1\",\"comment\":\"c\","
                     "\"passphrase\":\"do-not-store\"}");
    json_t *j = to_json ();
    cr_assert_str_eq (json_string_value (json_object_get (j, "source")), "tradingview");
    cr_assert_str_eq (json_string_value (json_object_get (j, "symbol")), "BTCUSDT");
    cr_assert_str_eq (json_string_value (json_object_get (j, "action")), "buy");
    expect_num (json_number_value (json_object_get (j, "quantity")), 0.1);
    expect_num (json_number_value (json_object_get (j, "price")), 42000.5);
    expect_num (json_number_value (json_object_get (j, "limit_price")), 42000.5);
    cr_assert_str_eq (json_string_value (json_object_get (j, "order_type")), "limit");
    cr_assert_str_eq (json_string_value (json_object_get (j, "quantity_type")), "fixed_quantity");
    json_t *sl = json_object_get (j, "stop_loss");
    cr_assert_str_eq (json_string_value (json_object_get (sl, "type")), "stop_limit");
    expect_num (json_number_value (json_object_get (sl, "stop_price")), 41000);
    expect_num (json_number_value (json_object_get (sl, "limit_price")), 40900);
    json_t *tp = json_object_get (j, "take_profit");
    expect_num (json_number_value (json_object_get (tp, "percent")), 3);
    cr_assert_null (json_object_get (tp, "type"));
    cr_assert_str_eq (json_string_value (json_object_get (j, "strategy")), "s \"q\"");
    cr_assert_str_eq (json_string_value (json_object_get (j, "interval")), "1D");
    cr_assert_eq (json_integer_value (json_object_get (j, "alert_time")), 1705329000000);
    expect_num (json_number_value (json_object_get (j, "position_size")), -1);
    cr_assert_str_eq (json_string_value (json_object_get (j, "market_position")), "short");
    cr_assert_str_eq (json_string_value (json_object_get (j, "sentiment")), "bearish");
    expect_num (json_number_value (json_object_get (j, "confidence")), 0.9);
    cr_assert_str_eq (json_string_value (json_object_get (j, "client_id")), "k1");
    cr_assert_str_eq (json_string_value (json_object_get (j, "comment")), "c");
    cr_assert_null (json_object_get (j, "passphrase"));
    json_decref (j);
}

Test (alert, json_output_never_contains_the_passphrase)
{
    const char *bodies[] = {
        "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"zq-secret-77\"}",
        "ticker=A action=buy passphrase=zq-secret-77",
        "{\"ticker\":\"A\",\"action\":\"buy\",\"passphrase\":\"zq-secret-77\",\"comment\":\"hi\"}" };
    for (size_t i = 0; i < 3; i++) {
        expect_ok (i == 1 ? TEXT : JSON, bodies[i]);
        cr_assert (P.present);
        char buf[FKS_ALERT_JSON_MAX];
        cr_assert_eq (fks_alert_to_json (&A, buf, sizeof buf, NULL), 0);
        cr_assert_null (strstr (buf, "zq-secret"), "%s", buf);
        cr_assert_null (strstr (buf, "passphrase"), "%s", buf);
    }
}

Test (alert, json_numbers_are_short_and_exact)
{
    expect_ok (JSON, "{\"ticker\":\"A\",\"action\":\"buy\",\"qty\":0.1,\"price\":\"0.3\"}");
    char buf[FKS_ALERT_JSON_MAX];
    cr_assert_eq (fks_alert_to_json (&A, buf, sizeof buf, NULL), 0);
    cr_assert (strstr (buf, "\"quantity\":0.1,"), "%s", buf);
    cr_assert (strstr (buf, "\"price\":0.3,"), "%s", buf);
}

Test (alert, json_output_fits_the_documented_bound)
{
    //  Every string at its maximum, made of characters that need escaping.
    static char body[8192];
    char strategy[FKS_ALERT_STRATEGY_MAX * 2], comment[FKS_ALERT_COMMENT_MAX * 2];
    size_t n = 0;
    for (int i = 0; i < FKS_ALERT_STRATEGY_MAX - 1; i++, n += 2)
        memcpy (strategy + n, "\\\"", 2);
    strategy[n] = '\0';
    n = 0;
    for (int i = 0; i < FKS_ALERT_COMMENT_MAX - 1; i++, n += 2)
        memcpy (comment + n, "\\\\", 2);
    comment[n] = '\0';
    //  The longest ticker: an exchange prefix and the longest instrument the workers trade.
    snprintf (body, sizeof body, "{\"ticker\":\"%030d:%032d\",\"action\":\"buy\","
              "\"qty\":1e-300,\"strategy\":\"%s\",\"comment\":\"%s\",\"id\":\"%0128d\","
              "\"exchange\":\"%031d\",\"interval\":\"%015d\",\"price\":1.2345678901234567e-300}",
              0, 0, strategy, comment, 0, 0, 0);
    expect_ok (JSON, body);
    cr_assert_eq (strlen (A.comment), FKS_ALERT_COMMENT_MAX - 1);
    json_t *j = to_json ();
    cr_assert_eq (strlen (json_string_value (json_object_get (j, "comment"))),
                  FKS_ALERT_COMMENT_MAX - 1);
    json_decref (j);
    char small[64];
    cr_assert_eq (fks_alert_to_json (&A, small, sizeof small, NULL), -1, "too small a buffer");
}

// ---------------------------------------------------------------------------------------------
//  webhook.received bodies

static fks_envelope_t *
encode_decode (void)
{
    fks_id_t inbox;
    cr_assert_eq (fks_id_new (&inbox), 0);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    cr_assert_eq (fks_alert_pack (&A, &inbox, &pk), 0);

    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &inbox, NULL), 0);
    msgpack_sbuffer frame;
    msgpack_sbuffer_init (&frame);
    fks_envelope_err_t err = { "" };
    int rc = fks_envelope_encode (&hdr, body.data, body.size, &frame, &err);
    cr_assert_eq (rc, 0, "the schema refused the body: %s", err.msg);
    fks_envelope_t *env = fks_envelope_decode (frame.data, frame.size, &err);
    cr_assert_not_null (env, "%s", err.msg);
    fks_id_t got;
    cr_assert_eq (fks_envelope_get_id (env, "inbox_id", &got), 0);
    cr_assert_eq (memcmp (&got, &inbox, sizeof got), 0);
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
    return env;
}

Test (alert, packed_body_passes_the_webhook_received_schema)
{
    expect_ok (JSON, "{\"ticker\":\"BTCUSDT\",\"action\":\"sell\",\"qty\":\"2\",\"price\":42000,"
                     "\"orderType\":\"limit\",\"limitPrice\":42100,\"signalPrice\":41990,"
                     "\"quantityType\":\"risk_percent\",\"stopLoss\":{\"percent\":1.5},"
                     "\"takeProfit\":{\"limitPrice\":39000},\"strategy\":\"S\",\"interval\":\"60\","
                     "\"exchange\":\"BINANCE\",\"timenow\":\"2024-01-15T14:30:00Z\","
                     "\"position_size\":-2,\"market_position\":\"short\",\"sentiment\":\"bearish\","
                     "\"confidence\":0.6,\"id\":\"c-9\",\"comment\":\"hello\","
                     "\"passphrase\":\"never-packed\"}");
    fks_envelope_t *env = encode_decode ();
    char s[256];
    double d;
    int64_t i;
    cr_assert_eq (fks_envelope_get_str (env, "source", s, sizeof s), 0);
    cr_assert_str_eq (s, "tradingview");
    cr_assert_eq (fks_envelope_get_str (env, "symbol", s, sizeof s), 0);
    cr_assert_str_eq (s, "BTCUSDT");
    cr_assert_eq (fks_envelope_get_str (env, "action", s, sizeof s), 0);
    cr_assert_str_eq (s, "sell");
    cr_assert_eq (fks_envelope_get_f64 (env, "quantity", &d), 0);
    expect_num (d, 2);
    cr_assert_eq (fks_envelope_get_str (env, "quantity_type", s, sizeof s), 0);
    cr_assert_str_eq (s, "risk_percent");
    cr_assert_eq (fks_envelope_get_f64 (env, "limit_price", &d), 0);
    expect_num (d, 42100);
    cr_assert_eq (fks_envelope_get_f64 (env, "signal_price", &d), 0);
    expect_num (d, 41990);
    cr_assert_eq (fks_envelope_get_i64 (env, "alert_time", &i), 0);
    cr_assert_eq (i, INT64_C(1705329000000));
    cr_assert_eq (fks_envelope_get_str (env, "client_id", s, sizeof s), 0);
    cr_assert_str_eq (s, "c-9");
    const msgpack_object *sl;
    cr_assert_eq (fks_envelope_get_obj (env, "stop_loss", &sl), 0);
    cr_assert_eq (sl->type, MSGPACK_OBJECT_MAP);
    const msgpack_object *pct = fks_msgpack_map_get (sl, "percent");
    cr_assert_not_null (pct);
    expect_num (pct->via.f64, 1.5);
    const msgpack_object *tp;
    cr_assert_eq (fks_envelope_get_obj (env, "take_profit", &tp), 0);
    cr_assert_not_null (fks_msgpack_map_get (tp, "limit_price"));
    cr_assert_eq (fks_envelope_get_str (env, "passphrase", s, sizeof s), 1, "absent");
    fks_envelope_destroy (&env);
}

Test (alert, minimal_and_sentiment_only_alerts_pack)
{
    expect_ok (TEXT, "buy AAPL");
    fks_envelope_t *env = encode_decode ();
    double d;
    cr_assert_eq (fks_envelope_get_f64 (env, "quantity", &d), 1, "absent quantity stays absent");
    fks_envelope_destroy (&env);

    expect_ok (JSON, "{\"ticker\":\"AAPL\",\"sentiment\":\"long\"}");
    env = encode_decode ();
    char s[32];
    cr_assert_eq (fks_envelope_get_str (env, "action", s, sizeof s), 0);
    cr_assert_str_eq (s, "long");
    cr_assert_eq (fks_envelope_get_str (env, "sentiment", s, sizeof s), 0);
    cr_assert_str_eq (s, "bullish");
    fks_envelope_destroy (&env);
}

Test (alert, longest_alert_packs)
{
    static char body[4096];
    snprintf (body, sizeof body, "{\"ticker\":\"%030d:%032d\",\"action\":\"buy\","
              "\"id\":\"%0128d\",\"comment\":\"%0511d\",\"strategy\":\"%0127d\","
              "\"exchange\":\"%031d\",\"interval\":\"%015d\"}", 0, 0, 0, 0, 0, 0, 0);
    expect_ok (JSON, body);
    fks_envelope_t *env = encode_decode ();
    fks_envelope_destroy (&env);
}

Test (alert, packing_needs_an_inbox_id)
{
    expect_ok (TEXT, "buy AAPL");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    fks_id_t nil;
    memset (&nil, 0, sizeof nil);
    cr_assert_eq (fks_alert_pack (&A, &nil, &pk), -1);
    cr_assert_eq (fks_alert_pack (&A, NULL, &pk), -1);
    cr_assert_eq (sb.size, 0, "nothing packed");
    msgpack_sbuffer_destroy (&sb);
}

Test (alert, enum_names_for_logs)
{
    cr_assert_str_eq (fks_alert_action_name (FKS_ACTION_CANCEL), "cancel");
    cr_assert_str_eq (fks_alert_action_name (FKS_ACTION_NONE), "");
    cr_assert_str_eq (fks_alert_sentiment_name (FKS_SENTIMENT_BEARISH), "bearish");
    cr_assert_str_eq (fks_alert_position_name (FKS_POSITION_FLAT), "flat");
    cr_assert_str_eq (fks_alert_order_type_name (FKS_ORDER_LIMIT), "limit");
    cr_assert_str_eq (fks_alert_exit_type_name (FKS_EXIT_TRAILING_STOP), "trailing_stop");
    cr_assert_str_eq (fks_alert_action_name ((fks_alert_action_t) 99), "");
}
