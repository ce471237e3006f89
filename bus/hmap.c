/*  hmap.c - an open-addressing hash index from caller-hashed keys to 32-bit handles.
 *
 *  See hmap.h. Slots hold the key's hash next to the handle, so probing compares hashes
 *  first and calls the equality callback only on a hash match, and deletion can shift later
 *  entries back to their ideal slot without asking the caller to hash anything again.
 */
#include "bus/hmap.h"

#include <stdlib.h>
#include <string.h>

static fks_hmap_slot_t *
s_alloc_slots (uint32_t capacity)
{
    fks_hmap_slot_t *slots = malloc ((size_t) capacity * sizeof *slots);
    if (!slots)
        return NULL;
    for (uint32_t i = 0; i < capacity; i++)
        slots[i].handle = FKS_HMAP_NONE;
    return slots;
}

int
fks_hmap_init (fks_hmap_t *self, uint32_t initial_capacity)
{
    uint32_t capacity = 16;
    while (capacity < initial_capacity && capacity < (1u << 30))
        capacity <<= 1;
    self->slots = s_alloc_slots (capacity);
    if (!self->slots)
        return -1;
    self->mask = capacity - 1;
    self->count = 0;
    return 0;
}

void
fks_hmap_free (fks_hmap_t *self)
{
    free (self->slots);
    self->slots = NULL;
    self->mask = 0;
    self->count = 0;
}

uint32_t
fks_hmap_find (const fks_hmap_t *self, uint32_t hash, fks_hmap_eq_fn *eq, void *ctx,
               const void *key)
{
    //  The table is never full (load <= 50%), so the probe always meets an empty slot.
    for (uint32_t i = hash & self->mask; ; i = (i + 1) & self->mask) {
        const fks_hmap_slot_t *slot = &self->slots[i];
        if (slot->handle == FKS_HMAP_NONE)
            return FKS_HMAP_NONE;
        if (slot->hash == hash && eq (ctx, slot->handle, key))
            return slot->handle;
    }
}

static void
s_place (fks_hmap_slot_t *slots, uint32_t mask, uint32_t hash, uint32_t handle)
{
    uint32_t i = hash & mask;
    while (slots[i].handle != FKS_HMAP_NONE)
        i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].handle = handle;
}

static int
s_grow (fks_hmap_t *self)
{
    uint32_t old_capacity = self->mask + 1;
    if (old_capacity >= (1u << 30))
        return -1;
    uint32_t capacity = old_capacity * 2;
    fks_hmap_slot_t *slots = s_alloc_slots (capacity);
    if (!slots)
        return -1;
    for (uint32_t i = 0; i < old_capacity; i++)
        if (self->slots[i].handle != FKS_HMAP_NONE)
            s_place (slots, capacity - 1, self->slots[i].hash, self->slots[i].handle);
    free (self->slots);
    self->slots = slots;
    self->mask = capacity - 1;
    return 0;
}

int
fks_hmap_insert (fks_hmap_t *self, uint32_t hash, uint32_t handle)
{
    if ((uint64_t) (self->count + 1) * 2 > (uint64_t) (self->mask + 1) && s_grow (self) != 0)
        return -1;
    s_place (self->slots, self->mask, hash, handle);
    self->count++;
    return 0;
}

int
fks_hmap_remove (fks_hmap_t *self, uint32_t hash, uint32_t handle)
{
    uint32_t mask = self->mask;
    uint32_t i = hash & mask;
    while (self->slots[i].handle != handle) {
        if (self->slots[i].handle == FKS_HMAP_NONE)
            return -1;
        i = (i + 1) & mask;
    }
    //  Backward-shift: move each following entry into the hole when the hole lies between
    //  its ideal slot and where it sits now (cyclically).
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; self->slots[j].handle != FKS_HMAP_NONE;
         j = (j + 1) & mask) {
        uint32_t ideal = self->slots[j].hash & mask;
        if (((j - ideal) & mask) >= ((j - hole) & mask)) {
            self->slots[hole] = self->slots[j];
            hole = j;
        }
    }
    self->slots[hole].handle = FKS_HMAP_NONE;
    self->count--;
    return 0;
}

int
fks_hmap_replace (fks_hmap_t *self, uint32_t hash, uint32_t old_handle, uint32_t new_handle)
{
    for (uint32_t i = hash & self->mask; ; i = (i + 1) & self->mask) {
        if (self->slots[i].handle == FKS_HMAP_NONE)
            return -1;
        if (self->slots[i].handle == old_handle) {
            self->slots[i].handle = new_handle;
            return 0;
        }
    }
}

static inline uint64_t
s_mix (uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint32_t
fks_hmap_hash (const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = s_mix (seed ^ (0x9e3779b97f4a7c15ULL * (len + 1)));
    while (len >= 8) {
        uint64_t w;
        memcpy (&w, p, 8);
        h = s_mix (h ^ w) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t w = 0;
        memcpy (&w, p, len);
        h = s_mix (h ^ w ^ ((uint64_t) len << 56));
    }
    return (uint32_t) (h ^ (h >> 32));
}
