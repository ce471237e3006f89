/*  hmap.h - an open-addressing hash index from caller-hashed keys to 32-bit handles.
 *
 *  The broker keeps its messages and replicas in arrays and needs to find them by envelope id
 *  (duplicate detection) and by ZeroMQ routing id (every command from a replica). This index
 *  stores only (hash, handle) pairs: the keys live in the caller's objects, and the caller
 *  supplies an equality callback when looking up. Linear probing with backward-shift deletion
 *  (no tombstones), grown at 50% load, so lookups stay short whatever the insert/delete mix
 *  (a miss, the common case when a new message is published, probes 2.5 slots on average).
 *  Hashes come from fks_hmap_hash, seeded per process so that a peer choosing ids cannot
 *  aim them at one bucket. Not thread-safe.
 */
#ifndef FKS_HMAP_H
#define FKS_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FKS_HMAP_NONE UINT32_MAX

typedef struct {
    uint32_t hash;
    uint32_t handle;            /* FKS_HMAP_NONE when the slot is empty */
} fks_hmap_slot_t;

typedef struct {
    fks_hmap_slot_t *slots;
    uint32_t mask;              /* capacity - 1 (capacity is a power of two) */
    uint32_t count;
} fks_hmap_t;

/*  Does the object behind handle have this key? */
typedef bool (fks_hmap_eq_fn) (void *ctx, uint32_t handle, const void *key);

/*  Initialises an empty index. 0, or -1 when out of memory. */
int fks_hmap_init (fks_hmap_t *self, uint32_t initial_capacity);
void fks_hmap_free (fks_hmap_t *self);

/*  The handle whose key equals key (by eq), or FKS_HMAP_NONE. */
uint32_t fks_hmap_find (const fks_hmap_t *self, uint32_t hash, fks_hmap_eq_fn *eq, void *ctx,
                        const void *key);

/*  Adds handle under hash; the caller has checked the key is absent. 0, or -1 when out of
 *  memory (the index is unchanged). */
int fks_hmap_insert (fks_hmap_t *self, uint32_t hash, uint32_t handle);

/*  Removes handle (stored under hash). Returns 0, or -1 when it was not there. */
int fks_hmap_remove (fks_hmap_t *self, uint32_t hash, uint32_t handle);

/*  Replaces handle old_handle (stored under hash) by new_handle for the same key, in place.
 *  Returns 0, or -1 when old_handle was not there. */
int fks_hmap_replace (fks_hmap_t *self, uint32_t hash, uint32_t old_handle,
                      uint32_t new_handle);

/*  A seeded 32-bit hash of len bytes. */
uint32_t fks_hmap_hash (const void *data, size_t len, uint64_t seed);

#endif
