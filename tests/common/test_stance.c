/*  test_stance.c - common/stance: where an alert's position fields say the position stands
 *  after it, and the contradictions the gateway (400) and the signal worker (filtered) both
 *  refuse. Their wording is tested with them (gateway_alert, workers_normalize).
 */
#include "common/stance.h"

#include <criterion/criterion.h>

#define L FKS_STANCE_LONG
#define S FKS_STANCE_SHORT
#define F FKS_STANCE_FLAT
#define U FKS_STANCE_UNSAID

Test (stance, words_name_directions)
{
    cr_assert_eq (fks_stance_of_word ("long"), L);
    cr_assert_eq (fks_stance_of_word ("bullish"), L);
    cr_assert_eq (fks_stance_of_word ("short"), S);
    cr_assert_eq (fks_stance_of_word ("bearish"), S);
    cr_assert_eq (fks_stance_of_word ("flat"), F);
    cr_assert_eq (fks_stance_of_word (""), U);
    cr_assert_eq (fks_stance_of_word ("Long"), U, "the callers lowercase");
    cr_assert_eq (fks_stance_of_word ("sideways"), U);
    cr_assert_eq (fks_stance_of_word (NULL), U);
    cr_assert_str_eq (fks_stance_name (L), "long");
    cr_assert_str_eq (fks_stance_name (S), "short");
    cr_assert_str_eq (fks_stance_name (F), "flat");
}

Test (stance, agreeing_fields_say_where_the_position_ends)
{
    fks_stance_read_t r;
    fks_stance_t s = { .market_position = L, .sentiment = U, .has_size = true, .size = 2 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_AGREE);
    cr_assert_eq (r.after, L);
    cr_assert (r.after_by_market_position);
    cr_assert_eq (r.size_dir, L);
    s = (fks_stance_t) { .market_position = U, .sentiment = S, .has_size = true, .size = -1 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_AGREE);
    cr_assert_eq (r.after, S);
    cr_assert_not (r.after_by_market_position);
    s = (fks_stance_t) { .market_position = F, .sentiment = F, .exit = true, .has_size = true,
                         .size = 1e-13 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_AGREE, "within 1e-12 of 0 is flat");
    cr_assert_eq (r.size_dir, F);
    s = (fks_stance_t) { .market_position = U, .sentiment = U, .has_size = true, .size = -3 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_AGREE, "a size alone is a target");
    cr_assert_eq (r.after, U);
    s = (fks_stance_t) { .market_position = U, .sentiment = U, .add = true };
    cr_assert_eq (fks_stance_check (&s, NULL), FKS_STANCE_AGREE);
}

Test (stance, contradictions_are_found_first_to_last)
{
    fks_stance_read_t r;
    //  market_position against sentiment, before anything else.
    fks_stance_t s = { .market_position = L, .sentiment = S, .add = true, .has_size = true,
                       .size = 5 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_MP_VS_SENTIMENT);
    //  An add that leaves the position flat, whichever field says flat.
    s = (fks_stance_t) { .market_position = F, .sentiment = U, .add = true };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_ADD_TO_FLAT);
    cr_assert (r.after_by_market_position);
    s = (fks_stance_t) { .market_position = U, .sentiment = F, .add = true, .has_size = true,
                         .size = 2 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_ADD_TO_FLAT);
    cr_assert_not (r.after_by_market_position);
    //  {{strategy.market_position_size}} (unsigned) beside short; a size beside flat.
    s = (fks_stance_t) { .market_position = S, .sentiment = U, .has_size = true, .size = 2 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_SIZE_VS_SIDE);
    cr_assert_eq (r.size_dir, L);
    cr_assert_eq (r.after, S);
    s = (fks_stance_t) { .market_position = U, .sentiment = F, .has_size = true, .size = -1 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_SIZE_VS_SIDE);
    s = (fks_stance_t) { .market_position = L, .sentiment = U, .has_size = true, .size = 0 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_SIZE_VS_SIDE);
    cr_assert_eq (r.size_dir, F);
    //  An exit asking for a position of some size.
    s = (fks_stance_t) { .market_position = U, .sentiment = U, .exit = true, .has_size = true,
                         .size = 1 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_EXIT_WITH_SIZE);
    s = (fks_stance_t) { .market_position = U, .sentiment = U, .exit = true, .has_size = true,
                         .size = 0 };
    cr_assert_eq (fks_stance_check (&s, &r), FKS_STANCE_AGREE);
}
