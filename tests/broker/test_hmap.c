/*  test_hmap.c - the broker's hash index (bus/hmap.c): what goes in comes out, what is
 *  removed is gone, whatever the order, including keys that all share one bucket.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "bus/hmap.h"

#define N 20000

static uint64_t keys[N];

static bool
s_eq (void *ctx, uint32_t handle, const void *key)
{
    (void) ctx;
    return keys[handle] == *(const uint64_t *) key;
}

static uint32_t
s_hash (uint64_t key, bool collide)
{
    return collide ? 7 : fks_hmap_hash (&key, sizeof key, 42);
}

static void
s_run (bool collide, int n)
{
    fks_hmap_t map;
    cr_assert_eq (fks_hmap_init (&map, 4), 0);
    for (int i = 0; i < n; i++) {
        keys[i] = (uint64_t) i * 2654435761u + 1;
        cr_assert_eq (fks_hmap_insert (&map, s_hash (keys[i], collide), (uint32_t) i), 0);
    }
    cr_assert_eq (map.count, (uint32_t) n);
    for (int i = 0; i < n; i++)
        cr_assert_eq (fks_hmap_find (&map, s_hash (keys[i], collide), s_eq, NULL, &keys[i]),
                      (uint32_t) i);
    //  Remove every third, then check all again.
    for (int i = 0; i < n; i += 3)
        cr_assert_eq (fks_hmap_remove (&map, s_hash (keys[i], collide), (uint32_t) i), 0);
    for (int i = 0; i < n; i++) {
        uint32_t want = i % 3 == 0 ? FKS_HMAP_NONE : (uint32_t) i;
        cr_assert_eq (fks_hmap_find (&map, s_hash (keys[i], collide), s_eq, NULL, &keys[i]),
                      want, "key %d", i);
    }
    uint64_t absent = 3;
    cr_assert_eq (fks_hmap_find (&map, s_hash (absent, collide), s_eq, NULL, &absent),
                  FKS_HMAP_NONE);
    cr_assert_eq (fks_hmap_remove (&map, s_hash (keys[0], collide), 0), -1);
    fks_hmap_free (&map);
}

Test (hmap, finds_every_key_after_inserts_and_removals)
{
    s_run (false, N);
}

Test (hmap, keys_sharing_one_bucket_still_resolve)
{
    s_run (true, 2000);
}

Test (hmap, the_seed_changes_the_hash)
{
    const char *id = "0123456789abcdef";
    cr_assert_neq (fks_hmap_hash (id, 16, 1), fks_hmap_hash (id, 16, 2));
    cr_assert_eq (fks_hmap_hash (id, 16, 1), fks_hmap_hash (id, 16, 1));
}

Test (hmap, a_handle_replaced_in_place_is_found_under_the_same_key)
{
    fks_hmap_t map;
    cr_assert_eq (fks_hmap_init (&map, 16), 0);
    for (uint32_t i = 0; i < 100; i++) {
        keys[i] = i + 1000;
        fks_hmap_insert (&map, s_hash (keys[i], false), i);
    }
    //  Handle 500 now stands for key 7's object (as the broker does when a message is acked).
    keys[500] = keys[7];
    cr_assert_eq (fks_hmap_replace (&map, s_hash (keys[7], false), 7, 500), 0);
    cr_assert_eq (fks_hmap_find (&map, s_hash (keys[7], false), s_eq, NULL, &keys[7]), 500);
    cr_assert_eq (map.count, 100);
    cr_assert_eq (fks_hmap_replace (&map, s_hash (keys[7], false), 7, 501), -1);
    cr_assert_eq (fks_hmap_remove (&map, s_hash (keys[7], false), 500), 0);
    cr_assert_eq (fks_hmap_find (&map, s_hash (keys[7], false), s_eq, NULL, &keys[7]),
                  FKS_HMAP_NONE);
    fks_hmap_free (&map);
}
