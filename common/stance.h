/*  stance.h - where an alert says the position stands after it, and whether its fields agree.
 *
 *  Three fields of an alert say where the strategy's position is once the alert is acted on:
 *  TradingView's `market_position` ({{strategy.market_position}}: long, short, flat), the signed
 *  `position_size` ({{strategy.position_size}}, negative when short) and TradersPost's
 *  `sentiment` (bullish/long, bearish/short, flat). The signal worker trades on them (a reduce
 *  instead of a reversal, a close instead of an entry, a target to trade towards), so when two
 *  of them disagree no reading is safe: a positive position_size beside market_position short
 *  is most often {{strategy.market_position_size}}, the unsigned size, which would buy where the
 *  strategy sold. An add after which the position is flat, and an exit with a position_size
 *  other than 0, are contradictions too.
 *
 *  The gateway refuses such an alert with a 400 naming the field as the sender spelt it; the
 *  signal worker filters an envelope that did not come through the gateway the same way. Both
 *  ask fks_stance_check and word the answer themselves.
 *
 *  Pure functions: thread-safe.
 */
#ifndef FKS_STANCE_H
#define FKS_STANCE_H

#include <stdbool.h>

/*  A direction: long, short, flat, or not said. */
#define FKS_STANCE_LONG   1
#define FKS_STANCE_SHORT  (-1)
#define FKS_STANCE_FLAT   0
#define FKS_STANCE_UNSAID 2

/*  A position_size within this of 0 is flat. */
#define FKS_STANCE_EPS 1e-12

typedef enum {
    FKS_STANCE_AGREE = 0,
    FKS_STANCE_MP_VS_SENTIMENT,     /* market_position and sentiment say different things */
    FKS_STANCE_ADD_TO_FLAT,         /* action add, but the position is flat after it */
    FKS_STANCE_SIZE_VS_SIDE,        /* position_size's sign against the side said */
    FKS_STANCE_EXIT_WITH_SIZE       /* an exit (close, exit, flat) with a position_size not 0 */
} fks_stance_conflict_t;

/*  What an alert says (each direction one of the FKS_STANCE_* above). */
typedef struct {
    int market_position;
    int sentiment;
    bool add;                       /* action add */
    bool exit;                      /* action close, exit or flat */
    bool has_size;
    double size;                    /* position_size, signed */
} fks_stance_t;

/*  What the agreeing fields say, for the caller's decision and messages. */
typedef struct {
    int after;                      /* the side after the alert: market_position's, else
                                       sentiment's, else FKS_STANCE_UNSAID */
    bool after_by_market_position;  /* which of the two said it */
    int size_dir;                   /* the direction of position_size (FLAT when none) */
} fks_stance_read_t;

/*  The direction a word names: long/bullish, short/bearish, flat; FKS_STANCE_UNSAID for ""
 *  and anything else. Case-sensitive (both sides have lowercased it). */
int fks_stance_of_word (const char *word);

/*  "long", "short" or "flat" (and "unsaid"). */
const char *fks_stance_name (int dir);

/*  The first contradiction among s's fields, checked in the order of the enum, or
 *  FKS_STANCE_AGREE; out (may be NULL) is filled either way. */
fks_stance_conflict_t fks_stance_check (const fks_stance_t *s, fks_stance_read_t *out);

#endif
