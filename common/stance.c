/*  stance.c - where an alert says the position stands after it. See stance.h. */
#include "common/stance.h"

#include <assert.h>
#include <string.h>

int
fks_stance_of_word (const char *word)
{
    if (!word)
        return FKS_STANCE_UNSAID;
    if (!strcmp (word, "long") || !strcmp (word, "bullish"))
        return FKS_STANCE_LONG;
    if (!strcmp (word, "short") || !strcmp (word, "bearish"))
        return FKS_STANCE_SHORT;
    if (!strcmp (word, "flat"))
        return FKS_STANCE_FLAT;
    return FKS_STANCE_UNSAID;
}

const char *
fks_stance_name (int dir)
{
    return dir == FKS_STANCE_LONG ? "long" : dir == FKS_STANCE_SHORT ? "short"
         : dir == FKS_STANCE_FLAT ? "flat" : "unsaid";
}

fks_stance_conflict_t
fks_stance_check (const fks_stance_t *s, fks_stance_read_t *out)
{
    assert (s);
    fks_stance_read_t r;
    int mp = s->market_position, se = s->sentiment;
    r.after_by_market_position = mp != FKS_STANCE_UNSAID;
    r.after = r.after_by_market_position ? mp : se;
    r.size_dir = !s->has_size ? FKS_STANCE_FLAT
               : s->size > FKS_STANCE_EPS ? FKS_STANCE_LONG
               : s->size < -FKS_STANCE_EPS ? FKS_STANCE_SHORT : FKS_STANCE_FLAT;
    if (out)
        *out = r;
    if (mp != FKS_STANCE_UNSAID && se != FKS_STANCE_UNSAID && mp != se)
        return FKS_STANCE_MP_VS_SENTIMENT;
    if (s->add && r.after == FKS_STANCE_FLAT)
        return FKS_STANCE_ADD_TO_FLAT;
    if (s->has_size && r.after != FKS_STANCE_UNSAID && r.size_dir != r.after)
        return FKS_STANCE_SIZE_VS_SIDE;
    if (s->has_size && s->exit && r.size_dir != FKS_STANCE_FLAT)
        return FKS_STANCE_EXIT_WITH_SIZE;
    return FKS_STANCE_AGREE;
}
