/*  symbol.h - one spelling for every instrument.
 *
 *  Alerts name instruments the way their chart does (BINANCE:BTCUSDT, BTCUSDT, BTC/USDT,
 *  btc-usdt); positions, orders, risk limits and latest prices must agree on one name, or a
 *  close would miss the position it should close. Every worker normalises a symbol with
 *  fks_symbol_normalize where it enters, and uses only the normalised form after that.
 *
 *  Pure function: thread-safe.
 */
#ifndef FKS_SYMBOL_H
#define FKS_SYMBOL_H

#include <stddef.h>

#define FKS_SYMBOL_MAX 33               /* normalised symbol, incl. NUL (the tables' limit) */

/*  Normalises raw: an exchange prefix (up to the last ':') is dropped, the separators '/',
 *  '-' and '_' are removed and letters uppercased, so the spellings above all become BTCUSDT;
 *  a '.' suffix such as BTCUSDT.P is kept (it is another instrument), and so is the '!' of
 *  TradingView's continuous futures (CME_MINI:ES1! becomes ES1!). The result is 1..32 chars
 *  of [A-Z0-9.!], starting with a letter or a digit: the rule of the tables' symbol columns
 *  (schemas/migrations/0004_symbols.sql). Returns 0, or -1 with the reason in why (cap bytes;
 *  why may be NULL) and out set to "". */
int fks_symbol_normalize (const char *raw, char out[FKS_SYMBOL_MAX], char *why, size_t cap);

#endif
