/*  broker.c - the broker's core: consumer groups, their queues, credit, in-flight messages,
 *  ack deadlines, redelivery and dead letters.
 *
 *  Every message a group holds is an entry in one pool, allocated in fixed chunks so entries
 *  never move, and linked (by index) into exactly one list: its group's queue while waiting,
 *  its group's in-flight list once delivered, or the pool's free list. The in-flight list is
 *  kept in deadline order (a delivery or a touch appends at the tail with now + ack deadline),
 *  so expiring deadlines only ever looks at the head. A delivery tag is the entry's index and
 *  a generation that changes on every delivery, so a late ack for an earlier delivery of the
 *  same message can never ack the current one. Each group indexes its entries by envelope id
 *  (duplicate detection); replicas are indexed by ZeroMQ routing id.
 *
 *  The payloads are zmq_msg_t references (zmq_msg_copy shares the buffer), so one published
 *  envelope held by three groups and sent to the stream is one allocation.
 *
 *  Credit: a replica with window W has at most W deliveries un-acked. Replicas with credit sit
 *  in their group's ready ring; dispatch serves the ring round robin, giving each at most its
 *  fair share of what is queued (queued / ready replicas, rounded up) and at most a batch per
 *  turn, so no replica is flooded because it joined first.
 */
#include "bus/broker.h"
#include "bus/hmap.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NIL         UINT32_MAX
#define CHUNK_BITS  12
#define CHUNK_SIZE  (1u << CHUNK_BITS)

enum { S_FREE = 0, S_QUEUED, S_INFLIGHT };

typedef struct {
    fks_id_t id;
    zmq_msg_t topic;
    zmq_msg_t env;
    int64_t deadline;           /* in flight: when it is taken back */
    size_t bytes;               /* topic + envelope */
    uint32_t prev, next;        /* links in the list the entry is on */
    uint32_t attempts;          /* deliveries made */
    uint32_t gen;               /* delivery generation, part of the tag */
    uint32_t owner;             /* in flight: replica index */
    uint32_t hash;              /* hash of id, for the group's index */
    uint32_t group;
    uint8_t state;
} s_entry_t;

typedef struct {
    uint32_t head, tail;
    size_t len;
} s_list_t;

//  A set of ids, open addressing with the ids in the slots (the nil id marks a free slot).
typedef struct {
    fks_id_t *slots;
    uint32_t mask;
    uint32_t count;
} s_idset_t;

typedef struct {
    char name[FKS_BUS_GROUP_MAX];
    char prefixes[FKS_BUS_PREFIXES_MAX][FKS_BUS_PREFIX_MAX];
    size_t prefix_len[FKS_BUS_PREFIXES_MAX];
    size_t n_prefixes;
    bool unpersisted;           /* its last change was not taken by group_changed yet */
    s_list_t queue;
    size_t queued_bytes;
    s_list_t inflight;
    fks_hmap_t ids;             /* id -> entry index, for what the group holds */
    s_idset_t recent[2];        /* ids finished lately: current and previous generation */
    int recent_cur;
    uint32_t ready_head, ready_tail;
    size_t n_ready;
    size_t consumers;
    fks_broker_group_stats_t stats;
} s_group_t;

typedef struct {
    uint8_t rid[FKS_BUS_ROUTING_ID_MAX];
    size_t rid_len;
    uint32_t hash;
    char name[FKS_BUS_NAME_MAX];
    uint32_t group;
    uint32_t window;
    uint32_t flags;             /* the transport's, from the JOIN */
    uint32_t inflight;
    int64_t last_heard;
    int64_t last_sent;
    uint32_t ready_prev, ready_next;
    bool in_ready;
    bool draining;              /* DRAIN: never back in the ready ring */
    bool used;
    uint32_t next_free;
} s_replica_t;

struct fks_broker_t {
    fks_broker_cfg_t cfg;
    fks_broker_io_t io;
    uint64_t seed;
    bool draining;

    s_entry_t **chunks;
    uint32_t n_chunks, chunks_cap;
    uint32_t n_entries;         /* entries ever allocated (all chunks up to here) */
    uint32_t free_entry;        /* free list head */

    s_group_t *groups;
    uint32_t n_groups;

    s_replica_t *replicas;
    uint32_t free_replica;
    fks_hmap_t peers;

    fks_broker_stats_t stats;
    size_t in_flight;
    //  Replica lines (joined, draining, left, dropped): at most S_REPLICA_LOG_MAX per window,
    //  so that a peer joining in a loop cannot flood the log; the rest are counted and said.
    int64_t log_window_start;
    uint32_t log_in_window;
    uint64_t log_suppressed;
};

#define S_REPLICA_LOG_MAX       20
#define S_REPLICA_LOG_WINDOW_MS 10000

//  Whether a replica line may be logged now (a budget per window); says how many were not
//  when a new window opens.
static bool
s_replica_log_ok (fks_broker_t *self, int64_t now)
{
    if (self->log_window_start == 0 || now - self->log_window_start >= S_REPLICA_LOG_WINDOW_MS) {
        if (self->log_suppressed > 0) {
            char fields[64] = "";
            fks_log_field_int (fields, sizeof fields, "suppressed",
                               (long long) self->log_suppressed);
            fks_log (FKS_LOG_WARN, NULL, fields, "replica joins and drops not logged (more than "
                     "%d in %d s)", S_REPLICA_LOG_MAX, S_REPLICA_LOG_WINDOW_MS / 1000);
        }
        self->log_window_start = now;
        self->log_in_window = 0;
        self->log_suppressed = 0;
    }
    if (self->log_in_window >= S_REPLICA_LOG_MAX) {
        self->log_suppressed++;
        return false;
    }
    self->log_in_window++;
    return true;
}

static inline s_entry_t *
s_entry (const fks_broker_t *self, uint32_t idx)
{
    return &self->chunks[idx >> CHUNK_BITS][idx & (CHUNK_SIZE - 1)];
}

void
fks_broker_cfg_defaults (fks_broker_cfg_t *cfg)
{
    cfg->ack_deadline_ms = 30000;
    cfg->heartbeat_ms = 1000;
    cfg->liveness = 3;
    cfg->max_deliveries = 5;
    cfg->queue_limit = 100000;
    cfg->queue_max_bytes = (size_t) 256 * 1024 * 1024;
    cfg->max_groups = 64;
    cfg->max_replicas = 4096;
    cfg->recent_ids = 20000;
}

//  --------------------------------------------------------------------------
//  Lists of entries, linked by index

static void
s_list_init (s_list_t *list)
{
    list->head = list->tail = NIL;
    list->len = 0;
}

static void
s_list_push_back (fks_broker_t *self, s_list_t *list, uint32_t idx)
{
    s_entry_t *e = s_entry (self, idx);
    e->next = NIL;
    e->prev = list->tail;
    if (list->tail != NIL)
        s_entry (self, list->tail)->next = idx;
    else
        list->head = idx;
    list->tail = idx;
    list->len++;
}

static void
s_list_push_front (fks_broker_t *self, s_list_t *list, uint32_t idx)
{
    s_entry_t *e = s_entry (self, idx);
    e->prev = NIL;
    e->next = list->head;
    if (list->head != NIL)
        s_entry (self, list->head)->prev = idx;
    else
        list->tail = idx;
    list->head = idx;
    list->len++;
}

static void
s_list_remove (fks_broker_t *self, s_list_t *list, uint32_t idx)
{
    s_entry_t *e = s_entry (self, idx);
    if (e->prev != NIL)
        s_entry (self, e->prev)->next = e->next;
    else
        list->head = e->next;
    if (e->next != NIL)
        s_entry (self, e->next)->prev = e->prev;
    else
        list->tail = e->prev;
    e->prev = e->next = NIL;
    list->len--;
}

//  --------------------------------------------------------------------------
//  The entry pool

static uint32_t
s_entry_alloc (fks_broker_t *self)
{
    if (self->free_entry != NIL) {
        uint32_t idx = self->free_entry;
        self->free_entry = s_entry (self, idx)->next;
        return idx;
    }
    if (self->n_entries == self->n_chunks * CHUNK_SIZE) {
        if (self->n_chunks >= (NIL >> CHUNK_BITS) - 1)
            return NIL;
        if (self->n_chunks == self->chunks_cap) {
            uint32_t cap = self->chunks_cap ? self->chunks_cap * 2 : 16;
            s_entry_t **chunks = realloc (self->chunks, cap * sizeof *chunks);
            if (!chunks)
                return NIL;
            self->chunks = chunks;
            self->chunks_cap = cap;
        }
        s_entry_t *chunk = calloc (CHUNK_SIZE, sizeof *chunk);
        if (!chunk)
            return NIL;
        self->chunks[self->n_chunks++] = chunk;
    }
    uint32_t idx = self->n_entries++;
    s_entry (self, idx)->gen = 0;
    return idx;
}

static bool
s_id_eq (void *ctx, uint32_t handle, const void *key)
{
    return memcmp (s_entry (ctx, handle)->id.b, key, FKS_ID_SIZE) == 0;
}

//  The recent ids: what a group acked lately, so that the reconciler, whose query may have
//  run just before an ack, cannot hand the message out again. Dead letters are not among
//  them: the store writes a dead letter after the broker made it, and may lose it
//  (PostgreSQL down past the store's memory, its queue full); the reconciler's republish then
//  is what brings it back, to end as a dead letter again, recorded this time. The price is a
//  republish that raced the store's write: one more round of deliveries, then the same dead
//  letter (one row per group and message). Two generations
//  of recent_ids / 2 each: when the current one is full, the previous is emptied and becomes
//  current. Nothing is evicted one by one, and a lookup is at most two short probes. Only the
//  reconciler's republishes look here; a client's publish checks what the group holds.

static inline bool
s_nil (const fks_id_t *id)
{
    uint64_t a, b;
    memcpy (&a, id->b, 8);
    memcpy (&b, id->b + 8, 8);
    return (a | b) == 0;
}

static bool
s_idset_has (const s_idset_t *set, const fks_id_t *id, uint32_t hash)
{
    if (!set->slots)
        return false;
    for (uint32_t i = hash & set->mask; ; i = (i + 1) & set->mask) {
        if (s_nil (&set->slots[i]))
            return false;
        if (memcmp (set->slots[i].b, id->b, FKS_ID_SIZE) == 0)
            return true;
    }
}

static void
s_recent_add (fks_broker_t *self, s_group_t *g, const fks_id_t *id, uint32_t hash)
{
    uint32_t per_gen = self->cfg.recent_ids / 2 + 1;
    if (self->cfg.recent_ids == 0 || s_nil (id))
        return;
    s_idset_t *set = &g->recent[g->recent_cur];
    if (set->count >= per_gen) {
        g->recent_cur ^= 1;
        set = &g->recent[g->recent_cur];
        if (set->slots)
            memset (set->slots, 0, ((size_t) set->mask + 1) * sizeof *set->slots);
        set->count = 0;
    }
    if (!set->slots) {
        uint32_t cap = 16;
        while (cap < per_gen * 2)
            cap <<= 1;
        set->slots = calloc (cap, sizeof *set->slots);
        if (!set->slots)
            return;
        set->mask = cap - 1;
    }
    for (uint32_t i = hash & set->mask; ; i = (i + 1) & set->mask) {
        if (s_nil (&set->slots[i])) {
            set->slots[i] = *id;
            set->count++;
            return;
        }
        if (memcmp (set->slots[i].b, id->b, FKS_ID_SIZE) == 0)
            return;
    }
}

static bool
s_recent_has (const s_group_t *g, const fks_id_t *id, uint32_t hash)
{
    return s_idset_has (&g->recent[0], id, hash) || s_idset_has (&g->recent[1], id, hash);
}

//  The group is done with an entry (acked, or dead-lettered): an acked id goes to the recent
//  ids, the entry is freed.
static void
s_entry_finish (fks_broker_t *self, uint32_t idx, bool acked)
{
    s_entry_t *e = s_entry (self, idx);
    s_group_t *g = &self->groups[e->group];
    fks_hmap_remove (&g->ids, e->hash, idx);
    if (acked)
        s_recent_add (self, g, &e->id, e->hash);
    zmq_msg_close (&e->topic);
    zmq_msg_close (&e->env);
    e->state = S_FREE;
    e->gen++;
    e->next = self->free_entry;
    self->free_entry = idx;
}

//  --------------------------------------------------------------------------
//  Replicas

static bool
s_rid_eq (void *ctx, uint32_t handle, const void *key)
{
    const fks_broker_t *self = ctx;
    const s_replica_t *r = &self->replicas[handle];
    const uint8_t *k = key;             /* length byte, then the id */
    return r->rid_len == k[0] && memcmp (r->rid, k + 1, k[0]) == 0;
}

static uint32_t
s_replica_find (fks_broker_t *self, const uint8_t *rid, size_t rid_len)
{
    if (rid_len == 0 || rid_len > FKS_BUS_ROUTING_ID_MAX)
        return NIL;
    uint8_t key[1 + FKS_BUS_ROUTING_ID_MAX];
    key[0] = (uint8_t) rid_len;
    memcpy (key + 1, rid, rid_len);
    uint32_t hash = fks_hmap_hash (rid, rid_len, self->seed);
    return fks_hmap_find (&self->peers, hash, s_rid_eq, self, key);
}

static void
s_ready_add (fks_broker_t *self, uint32_t ri)
{
    s_replica_t *r = &self->replicas[ri];
    if (r->in_ready || r->draining || self->draining || r->inflight >= r->window)
        return;
    s_group_t *g = &self->groups[r->group];
    r->ready_next = NIL;
    r->ready_prev = g->ready_tail;
    if (g->ready_tail != NIL)
        self->replicas[g->ready_tail].ready_next = ri;
    else
        g->ready_head = ri;
    g->ready_tail = ri;
    g->n_ready++;
    r->in_ready = true;
}

static void
s_ready_remove (fks_broker_t *self, uint32_t ri)
{
    s_replica_t *r = &self->replicas[ri];
    if (!r->in_ready)
        return;
    s_group_t *g = &self->groups[r->group];
    if (r->ready_prev != NIL)
        self->replicas[r->ready_prev].ready_next = r->ready_next;
    else
        g->ready_head = r->ready_next;
    if (r->ready_next != NIL)
        self->replicas[r->ready_next].ready_prev = r->ready_prev;
    else
        g->ready_tail = r->ready_prev;
    g->n_ready--;
    r->in_ready = false;
}

//  --------------------------------------------------------------------------
//  Leaving a group without an ack

static void
s_dead (fks_broker_t *self, uint32_t idx, const char *reason)
{
    s_entry_t *e = s_entry (self, idx);
    s_group_t *g = &self->groups[e->group];
    g->stats.dead_letters++;
    char id_text[FKS_ID_STR_SIZE];
    fks_id_format (&e->id, id_text);
    char fields[256] = "";
    fks_log_field_str (fields, sizeof fields, "group", g->name);
    fks_log_field_str (fields, sizeof fields, "msg_id", id_text);
    fks_log_field_int (fields, sizeof fields, "attempts", e->attempts);
    fks_log (FKS_LOG_WARN, NULL, fields, "dead letter: %s", reason);
    if (self->io.dead_letter)
        self->io.dead_letter (self->io.arg, g->name, &e->id, e->attempts, reason,
                              &e->topic, &e->env);
    s_entry_finish (self, idx, false);
}

//  Takes an in-flight entry back from its replica: to the head of the queue (front) or its
//  tail, or to the dead letters when its deliveries are used up. The caller fixes the
//  replica's place in the ready ring.
static void
s_take_back (fks_broker_t *self, uint32_t idx, bool front, const char *reason)
{
    s_entry_t *e = s_entry (self, idx);
    s_group_t *g = &self->groups[e->group];
    s_list_remove (self, &g->inflight, idx);
    self->replicas[e->owner].inflight--;
    self->in_flight--;
    e->owner = NIL;
    if (e->attempts >= self->cfg.max_deliveries) {
        char why[FKS_BUS_REASON_MAX + 64];
        snprintf (why, sizeof why, "delivered %u times without an ack (last: %s)",
                  e->attempts, reason);
        s_dead (self, idx, why);
        return;
    }
    e->state = S_QUEUED;
    g->queued_bytes += e->bytes;
    if (front)
        s_list_push_front (self, &g->queue, idx);
    else
        s_list_push_back (self, &g->queue, idx);
}

static void
s_replica_drop (fks_broker_t *self, uint32_t ri, const char *reason, bool graceful,
                int64_t now)
{
    s_replica_t *r = &self->replicas[ri];
    s_group_t *g = &self->groups[r->group];
    //  From the newest delivery to the oldest, each pushed to the head: the oldest ends
    //  first in line, and the order among them is kept.
    size_t taken = 0;
    uint32_t idx = g->inflight.tail;
    while (idx != NIL && r->inflight > 0) {
        uint32_t prev = s_entry (self, idx)->prev;
        if (s_entry (self, idx)->owner == ri) {
            s_take_back (self, idx, true, reason);
            g->stats.lost++;
            taken++;
        }
        idx = prev;
    }
    s_ready_remove (self, ri);
    fks_hmap_remove (&self->peers, r->hash, ri);
    g->consumers--;
    if (!graceful)
        self->stats.replicas_dropped++;
    self->stats.replicas--;
    if (s_replica_log_ok (self, now)) {
        char fields[256] = "";
        fks_log_field_str (fields, sizeof fields, "group", g->name);
        fks_log_field_str (fields, sizeof fields, "replica", r->name);
        fks_log_field_int (fields, sizeof fields, "requeued", (long long) taken);
        fks_log (graceful ? FKS_LOG_INFO : FKS_LOG_WARN, NULL, fields, "replica %s: %s",
                 graceful ? "left" : "dropped", reason);
    }
    r->used = false;
    r->next_free = self->free_replica;
    self->free_replica = ri;
}

//  --------------------------------------------------------------------------
//  Construction

fks_broker_t *
fks_broker_new (const fks_broker_cfg_t *cfg, const fks_broker_io_t *io)
{
    if (!io || !io->deliver)
        return NULL;
    fks_broker_cfg_t c;
    if (cfg)
        c = *cfg;
    else
        fks_broker_cfg_defaults (&c);
    if (c.ack_deadline_ms <= 0 || c.heartbeat_ms <= 0 || c.liveness == 0
        || c.max_deliveries == 0 || c.queue_limit == 0 || c.queue_max_bytes == 0
        || c.max_groups == 0 || c.max_groups > 1024 || c.max_replicas == 0
        || c.max_replicas > 1000000 || c.recent_ids > 10000000)
        return NULL;

    fks_broker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = c;
    self->io = *io;
    self->free_entry = NIL;
    self->free_replica = NIL;
    if (getrandom (&self->seed, sizeof self->seed, 0) != (ssize_t) sizeof self->seed)
        self->seed = (uint64_t) fks_mono_ns () * 0x9e3779b97f4a7c15ULL;
    self->groups = calloc (c.max_groups, sizeof *self->groups);
    self->replicas = calloc (c.max_replicas, sizeof *self->replicas);
    if (!self->groups || !self->replicas || fks_hmap_init (&self->peers, 64) != 0) {
        free (self->groups);
        free (self->replicas);
        free (self);
        return NULL;
    }
    //  Free replica slots in index order, so the first replica gets slot 0.
    for (uint32_t i = c.max_replicas; i-- > 0; ) {
        self->replicas[i].next_free = self->free_replica;
        self->free_replica = i;
    }
    return self;
}

void
fks_broker_destroy (fks_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_broker_t *self = *self_p;
    for (uint32_t i = 0; i < self->n_entries; i++) {
        s_entry_t *e = s_entry (self, i);
        if (e->state != S_FREE) {
            zmq_msg_close (&e->topic);
            zmq_msg_close (&e->env);
        }
    }
    for (uint32_t i = 0; i < self->n_chunks; i++)
        free (self->chunks[i]);
    free (self->chunks);
    for (uint32_t i = 0; i < self->n_groups; i++) {
        fks_hmap_free (&self->groups[i].ids);
        free (self->groups[i].recent[0].slots);
        free (self->groups[i].recent[1].slots);
    }
    fks_hmap_free (&self->peers);
    free (self->groups);
    free (self->replicas);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Groups

static int
s_check_prefixes (const char *const *prefixes, size_t n, char *why, size_t cap)
{
    if (n == 0 || n > FKS_BUS_PREFIXES_MAX) {
        snprintf (why, cap, "a group needs 1 to %d type prefixes", FKS_BUS_PREFIXES_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!prefixes[i] || !fks_bus_prefix_valid (prefixes[i], strlen (prefixes[i]))) {
            snprintf (why, cap, "invalid type prefix (up to %d chars of a-z 0-9 . _ -)",
                      FKS_BUS_PREFIX_MAX - 1);
            return -1;
        }
    return 0;
}

static uint32_t
s_group_find (const fks_broker_t *self, const char *name)
{
    for (uint32_t i = 0; i < self->n_groups; i++)
        if (strcmp (self->groups[i].name, name) == 0)
            return i;
    return NIL;
}

static bool
s_prefixes_same (const s_group_t *g, const char *const *prefixes, size_t n)
{
    if (g->n_prefixes != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp (g->prefixes[i], prefixes[i]) != 0)
            return false;
    return true;
}

static void
s_group_set_prefixes (s_group_t *g, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g->prefix_len[i] = strlen (prefixes[i]);
        memcpy (g->prefixes[i], prefixes[i], g->prefix_len[i] + 1);
    }
    g->n_prefixes = n;
}

//  Finds or creates group `name` with these prefixes. *changed says whether the group is new
//  or its prefixes changed. NIL with why when refused.
static uint32_t
s_group_ensure (fks_broker_t *self, const char *name, const char *const *prefixes, size_t n,
                bool *changed, char *why, size_t cap)
{
    *changed = false;
    if (!name || !fks_bus_group_valid (name, strlen (name))) {
        snprintf (why, cap, "invalid group name (1 to %d chars of a-z 0-9 _ -)",
                  FKS_BUS_GROUP_MAX - 1);
        return NIL;
    }
    if (s_check_prefixes (prefixes, n, why, cap) != 0)
        return NIL;
    uint32_t gi = s_group_find (self, name);
    if (gi != NIL) {
        s_group_t *g = &self->groups[gi];
        if (!s_prefixes_same (g, prefixes, n)) {
            s_group_set_prefixes (g, prefixes, n);
            *changed = true;
        }
        return gi;
    }
    if (self->n_groups >= self->cfg.max_groups) {
        snprintf (why, cap, "too many groups (limit %u)", self->cfg.max_groups);
        return NIL;
    }
    gi = self->n_groups;
    s_group_t *g = &self->groups[gi];
    memset (g, 0, sizeof *g);
    if (fks_hmap_init (&g->ids, 1024) != 0) {
        snprintf (why, cap, "out of memory");
        return NIL;
    }

    self->n_groups++;
    snprintf (g->name, sizeof g->name, "%s", name);
    memcpy (g->stats.name, g->name, sizeof g->name);
    s_group_set_prefixes (g, prefixes, n);
    s_list_init (&g->queue);
    s_list_init (&g->inflight);
    g->ready_head = g->ready_tail = NIL;
    *changed = true;
    return gi;
}

int
fks_broker_declare (fks_broker_t *self, const char *group, const char *const *prefixes,
                    size_t n_prefixes)
{
    if (group && s_group_find (self, group) != NIL)
        return 0;           /* a live JOIN already defined it: that wins */
    char why[128];
    bool changed;
    if (s_group_ensure (self, group, prefixes, n_prefixes, &changed, why, sizeof why) == NIL) {
        fks_log (FKS_LOG_WARN, NULL, NULL, "group %s not declared: %s",
                 group && fks_bus_group_valid (group, strlen (group)) ? group : "?", why);
        return -1;
    }
    return 0;
}

static bool
s_group_wants (const s_group_t *g, const char *topic, size_t topic_len)
{
    for (size_t i = 0; i < g->n_prefixes; i++)
        if (g->prefix_len[i] <= topic_len
            && memcmp (g->prefixes[i], topic, g->prefix_len[i]) == 0)
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Publishing

static void
s_offer (fks_broker_t *self, uint32_t gi, zmq_msg_t *topic, zmq_msg_t *env,
         const fks_id_t *id, uint32_t hash, bool targeted, fks_broker_publish_result_t *res)
{
    s_group_t *g = &self->groups[gi];
    if (fks_hmap_find (&g->ids, hash, s_id_eq, self, id->b) != FKS_HMAP_NONE
        || (targeted && s_recent_has (g, id, hash))) {
        g->stats.duplicates++;
        res->duplicate++;
        return;
    }
    size_t bytes = zmq_msg_size (topic) + zmq_msg_size (env);
    if (self->draining || g->queue.len >= self->cfg.queue_limit
        || g->queued_bytes + bytes > self->cfg.queue_max_bytes) {
        g->stats.refused++;
        res->refused++;
        return;
    }
    uint32_t idx = s_entry_alloc (self);
    if (idx == NIL) {
        g->stats.refused++;
        res->refused++;
        return;
    }
    s_entry_t *e = s_entry (self, idx);
    if (fks_hmap_insert (&g->ids, hash, idx) != 0) {
        e->next = self->free_entry;
        self->free_entry = idx;
        g->stats.refused++;
        res->refused++;
        return;
    }
    zmq_msg_init (&e->topic);
    zmq_msg_init (&e->env);
    zmq_msg_copy (&e->topic, topic);
    zmq_msg_copy (&e->env, env);
    e->id = *id;
    e->hash = hash;
    e->bytes = bytes;
    e->attempts = 0;
    e->owner = NIL;
    e->group = gi;
    e->state = S_QUEUED;
    s_list_push_back (self, &g->queue, idx);
    g->queued_bytes += bytes;
    g->stats.routed++;
    res->queued++;
}

int
fks_broker_publish (fks_broker_t *self, zmq_msg_t *topic, zmq_msg_t *env,
                    const fks_id_t *id, const char *group,
                    fks_broker_publish_result_t *result)
{
    fks_broker_publish_result_t res = { 0, 0, 0 };
    uint32_t hash = fks_hmap_hash (id->b, FKS_ID_SIZE, self->seed);
    if (group) {
        uint32_t gi = s_group_find (self, group);
        if (gi != NIL)
            s_offer (self, gi, topic, env, id, hash, true, &res);
    }
    else {
        const char *t = zmq_msg_data (topic);
        size_t tlen = zmq_msg_size (topic);
        for (uint32_t gi = 0; gi < self->n_groups; gi++)
            if (s_group_wants (&self->groups[gi], t, tlen))
                s_offer (self, gi, topic, env, id, hash, false, &res);
    }
    if (result)
        *result = res;
    return 0;
}

//  --------------------------------------------------------------------------
//  Replicas joining and leaving

int
fks_broker_join (fks_broker_t *self, const uint8_t *rid, size_t rid_len, const char *group,
                 const char *const *prefixes, size_t n_prefixes, uint32_t window,
                 uint32_t flags, const char *name, int64_t now, char *why, size_t cap)
{
    if (rid_len == 0 || rid_len > FKS_BUS_ROUTING_ID_MAX) {
        snprintf (why, cap, "invalid routing id");
        return -1;
    }
    if (window == 0 || window > FKS_BUS_WINDOW_MAX) {
        snprintf (why, cap, "window must be 1 to %d", FKS_BUS_WINDOW_MAX);
        return -1;
    }
    if (!name || !fks_bus_name_valid (name, strlen (name))) {
        snprintf (why, cap, "invalid replica name");
        return -1;
    }
    if (self->draining) {
        snprintf (why, cap, "the broker is shutting down");
        return -1;
    }
    if (!group || !fks_bus_group_valid (group, strlen (group))) {
        snprintf (why, cap, "invalid group name (1 to %d chars of a-z 0-9 _ -)",
                  FKS_BUS_GROUP_MAX - 1);
        return -1;
    }
    if (s_check_prefixes (prefixes, n_prefixes, why, cap) != 0)
        return -1;
    uint32_t old = s_replica_find (self, rid, rid_len);
    if (old != NIL)
        s_replica_drop (self, old, "joined again", false, now);
    if (self->free_replica == NIL) {
        snprintf (why, cap, "too many replicas (limit %u)", self->cfg.max_replicas);
        return -1;
    }
    bool changed;
    uint32_t gi = s_group_ensure (self, group, prefixes, n_prefixes, &changed, why, cap);
    if (gi == NIL)
        return -1;
    uint32_t hash = fks_hmap_hash (rid, rid_len, self->seed);
    uint32_t ri = self->free_replica;
    if (fks_hmap_insert (&self->peers, hash, ri) != 0) {
        snprintf (why, cap, "out of memory");
        return -1;
    }
    self->free_replica = self->replicas[ri].next_free;
    s_replica_t *r = &self->replicas[ri];
    memset (r, 0, sizeof *r);
    memcpy (r->rid, rid, rid_len);
    r->rid_len = rid_len;
    r->hash = hash;
    snprintf (r->name, sizeof r->name, "%s", name);
    r->group = gi;
    r->window = window;
    r->flags = flags;
    r->last_heard = now;
    r->last_sent = now;
    r->used = true;
    s_group_t *g = &self->groups[gi];
    g->consumers++;
    self->stats.replicas++;
    s_ready_add (self, ri);
    if (changed && self->io.group_changed)
        g->unpersisted = !self->io.group_changed (self->io.arg, g->name, prefixes, n_prefixes);
    if (s_replica_log_ok (self, now)) {
        char fields[256] = "";
        fks_log_field_str (fields, sizeof fields, "group", g->name);
        fks_log_field_str (fields, sizeof fields, "replica", r->name);
        fks_log_field_int (fields, sizeof fields, "window", window);
        fks_log (FKS_LOG_INFO, NULL, fields, "replica joined");
    }
    return 0;
}

bool
fks_broker_heard (fks_broker_t *self, const uint8_t *rid, size_t rid_len, int64_t now)
{
    uint32_t ri = s_replica_find (self, rid, rid_len);
    if (ri == NIL)
        return false;
    self->replicas[ri].last_heard = now;
    return true;
}

int
fks_broker_drain_replica (fks_broker_t *self, const uint8_t *rid, size_t rid_len, int64_t now)
{
    uint32_t ri = s_replica_find (self, rid, rid_len);
    if (ri == NIL)
        return -1;
    s_replica_t *r = &self->replicas[ri];
    r->last_heard = now;
    if (r->draining)
        return 0;
    //  Out of the ready ring, the one place every dispatch takes a replica from, and kept
    //  out of it (s_ready_add): nothing is delivered to it any more.
    r->draining = true;
    s_ready_remove (self, ri);
    s_group_t *g = &self->groups[r->group];
    g->stats.drains++;
    if (s_replica_log_ok (self, now)) {
        char fields[256] = "";
        fks_log_field_str (fields, sizeof fields, "group", g->name);
        fks_log_field_str (fields, sizeof fields, "replica", r->name);
        fks_log_field_int (fields, sizeof fields, "in_flight", r->inflight);
        fks_log (FKS_LOG_INFO, NULL, fields, "replica draining: nothing more is delivered "
                 "to it");
    }
    return 0;
}

int
fks_broker_leave (fks_broker_t *self, const uint8_t *rid, size_t rid_len, int64_t now)
{
    uint32_t ri = s_replica_find (self, rid, rid_len);
    if (ri == NIL)
        return -1;
    (void) now;
    s_replica_drop (self, ri, "left the group", true, now);
    return 0;
}

//  The entry delivered under tag to replica ri, or NIL (stale).
static uint32_t
s_tag_entry (fks_broker_t *self, uint32_t ri, uint64_t tag)
{
    uint32_t idx = (uint32_t) (tag >> 32);
    if (idx >= self->n_entries)
        return NIL;
    s_entry_t *e = s_entry (self, idx);
    if (e->state != S_INFLIGHT || e->gen != (uint32_t) tag || e->owner != ri)
        return NIL;
    return idx;
}

typedef enum { S_ACK, S_RELEASE, S_TOUCH } s_tag_op_t;

//  Applies op to each of a replica's tags that is still in flight there (others are stale and
//  counted). Returns the number of tags accepted, or -1 when the replica is unknown.
static int
s_tags_apply (fks_broker_t *self, const uint8_t *rid, size_t rid_len, const uint64_t *tags,
              size_t n, int64_t now, s_tag_op_t op)
{
    uint32_t ri = s_replica_find (self, rid, rid_len);
    if (ri == NIL)
        return -1;
    s_replica_t *r = &self->replicas[ri];
    s_group_t *g = &self->groups[r->group];
    r->last_heard = now;
    int accepted = 0;
    for (size_t k = 0; k < n; k++) {
        //  Tags come in delivery order; released ones are pushed to the head of the queue one
        //  by one, so they are taken from the last to keep that order.
        uint64_t tag = op == S_RELEASE ? tags[n - 1 - k] : tags[k];
        uint32_t idx = s_tag_entry (self, ri, tag);
        if (idx == NIL) {
            self->stats.stale++;
            continue;
        }
        switch (op) {
            case S_ACK:
                s_list_remove (self, &g->inflight, idx);
                r->inflight--;
                self->in_flight--;
                g->stats.acks++;
                s_entry_finish (self, idx, true);
                break;
            case S_RELEASE:
                s_entry (self, idx)->attempts--;
                s_take_back (self, idx, true, "released");
                g->stats.released++;
                break;
            case S_TOUCH:
                s_list_remove (self, &g->inflight, idx);
                s_entry (self, idx)->deadline = now + self->cfg.ack_deadline_ms;
                s_list_push_back (self, &g->inflight, idx);
                break;
        }
        accepted++;
    }
    //  An ack or a release frees credit; a touch does not.
    if (op != S_TOUCH)
        s_ready_add (self, ri);
    return accepted;
}

int
fks_broker_ack (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                const uint64_t *tags, size_t n, int64_t now)
{
    return s_tags_apply (self, rid, rid_len, tags, n, now, S_ACK);
}

int
fks_broker_release (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                    const uint64_t *tags, size_t n, int64_t now)
{
    return s_tags_apply (self, rid, rid_len, tags, n, now, S_RELEASE);
}

int
fks_broker_touch (fks_broker_t *self, const uint8_t *rid, size_t rid_len,
                  const uint64_t *tags, size_t n, int64_t now)
{
    return s_tags_apply (self, rid, rid_len, tags, n, now, S_TOUCH);
}

int
fks_broker_reject (fks_broker_t *self, const uint8_t *rid, size_t rid_len, uint64_t tag,
                   int action, const char *reason, int64_t now)
{
    uint32_t ri = s_replica_find (self, rid, rid_len);
    if (ri == NIL)
        return -1;
    s_replica_t *r = &self->replicas[ri];
    s_group_t *g = &self->groups[r->group];
    r->last_heard = now;
    uint32_t idx = s_tag_entry (self, ri, tag);
    if (idx == NIL) {
        self->stats.stale++;
        return 0;
    }
    g->stats.rejects++;
    char why[FKS_BUS_REASON_MAX + 32];
    snprintf (why, sizeof why, "rejected: %s", reason && *reason ? reason : "no reason given");
    if (action == FKS_BUS_REJECT_DEAD) {
        s_list_remove (self, &g->inflight, idx);
        r->inflight--;
        self->in_flight--;
        s_dead (self, idx, why);
    }
    else
        s_take_back (self, idx, false, why);
    s_ready_add (self, ri);
    return 1;
}

//  --------------------------------------------------------------------------
//  Dispatch

static size_t
s_dispatch_group (fks_broker_t *self, uint32_t gi, int64_t now)
{
    s_group_t *g = &self->groups[gi];
    size_t made = 0;
    fks_broker_delivery_t batch[FKS_BUS_DELIVER_BATCH_MAX];
    uint32_t batch_idx[FKS_BUS_DELIVER_BATCH_MAX];

    //  A round gives each ready replica one turn; the share is fixed for the round, so the
    //  replicas served first do not take more than the ones served last.
    size_t turns_left = 0, share = 0;
    while (g->queue.len > 0 && g->ready_head != NIL) {
        if (turns_left == 0) {
            share = (g->queue.len + g->n_ready - 1) / g->n_ready;
            turns_left = g->n_ready;
        }
        turns_left--;
        uint32_t ri = g->ready_head;
        s_replica_t *r = &self->replicas[ri];
        size_t credit = r->window - r->inflight;
        size_t k = credit < share ? credit : share;
        if (k > g->queue.len)
            k = g->queue.len;
        if (k > FKS_BUS_DELIVER_BATCH_MAX)
            k = FKS_BUS_DELIVER_BATCH_MAX;

        for (size_t i = 0; i < k; i++) {
            uint32_t idx = g->queue.head;
            s_list_remove (self, &g->queue, idx);
            s_entry_t *e = s_entry (self, idx);
            g->queued_bytes -= e->bytes;
            e->state = S_INFLIGHT;
            e->owner = ri;
            e->attempts++;
            e->gen++;
            e->deadline = now + self->cfg.ack_deadline_ms;
            s_list_push_back (self, &g->inflight, idx);
            batch[i].tag = ((uint64_t) idx << 32) | e->gen;
            batch[i].attempt = e->attempts;
            batch[i].id = &e->id;
            batch[i].topic = &e->topic;
            batch[i].env = &e->env;
            batch_idx[i] = idx;
        }
        r->inflight += (uint32_t) k;
        self->in_flight += k;

        if (self->io.deliver (self->io.arg, r->rid, r->rid_len, r->flags, batch, k) != 0) {
            //  Not sent: the attempts do not count, and the replica is gone. The batch goes
            //  back first, as never delivered (not "lost": nothing of it reached the replica,
            //  and its next delivery is a first one); then what the replica did hold, ahead
            //  of it, in order.
            for (size_t i = k; i-- > 0;) {
                s_entry (self, batch_idx[i])->attempts--;
                s_take_back (self, batch_idx[i], true, "unreachable");
            }
            s_replica_drop (self, ri, "unreachable", false, now);
            continue;
        }
        for (size_t i = 0; i < k; i++) {
            g->stats.deliveries++;
            if (batch[i].attempt > 1)
                g->stats.redeliveries++;
        }
        made += k;
        r->last_sent = now;
        s_ready_remove (self, ri);
        s_ready_add (self, ri);         /* to the tail, if it still has credit */
    }
    return made;
}

size_t
fks_broker_dispatch (fks_broker_t *self, int64_t now)
{
    if (self->draining)
        return 0;
    size_t made = 0;
    for (uint32_t gi = 0; gi < self->n_groups; gi++)
        made += s_dispatch_group (self, gi, now);
    return made;
}

//  --------------------------------------------------------------------------
//  Time

static void
s_expire (fks_broker_t *self, uint32_t gi, int64_t now)
{
    s_group_t *g = &self->groups[gi];
    //  The expired deliveries are a run at the head; take them back from the last one so
    //  they keep their order at the head of the queue.
    uint32_t last = NIL;
    size_t n = 0;
    for (uint32_t idx = g->inflight.head; idx != NIL && s_entry (self, idx)->deadline <= now;
         idx = s_entry (self, idx)->next) {
        last = idx;
        n++;
    }
    uint32_t idx = last;
    while (n-- > 0) {
        uint32_t prev = s_entry (self, idx)->prev;
        uint32_t ri = s_entry (self, idx)->owner;
        g->stats.expired++;
        s_take_back (self, idx, true, "ack deadline passed");
        s_ready_add (self, ri);
        idx = prev;
    }
}

int64_t
fks_broker_tick (fks_broker_t *self, int64_t now)
{
    int64_t next = now + self->cfg.heartbeat_ms;
    for (uint32_t gi = 0; gi < self->n_groups; gi++) {
        s_group_t *g = &self->groups[gi];
        if (g->unpersisted && self->io.group_changed) {
            const char *prefixes[FKS_BUS_PREFIXES_MAX];
            for (size_t i = 0; i < g->n_prefixes; i++)
                prefixes[i] = g->prefixes[i];
            g->unpersisted = !self->io.group_changed (self->io.arg, g->name, prefixes,
                                                      g->n_prefixes);
        }
        s_expire (self, gi, now);
        uint32_t head = self->groups[gi].inflight.head;
        if (head != NIL && s_entry (self, head)->deadline < next)
            next = s_entry (self, head)->deadline;
    }
    int64_t silent = self->cfg.heartbeat_ms * (int64_t) self->cfg.liveness;
    for (uint32_t ri = 0; ri < self->cfg.max_replicas; ri++) {
        s_replica_t *r = &self->replicas[ri];
        if (!r->used)
            continue;
        if (now - r->last_heard > silent) {
            s_replica_drop (self, ri, "silent (no heartbeat)", false, now);
            continue;
        }
        if (now - r->last_sent >= self->cfg.heartbeat_ms) {
            if (self->io.heartbeat)
                self->io.heartbeat (self->io.arg, r->rid, r->rid_len);
            r->last_sent = now;
        }
        if (r->last_sent + self->cfg.heartbeat_ms < next)
            next = r->last_sent + self->cfg.heartbeat_ms;
        if (r->last_heard + silent + 1 < next)
            next = r->last_heard + silent + 1;
    }
    return next;
}

void
fks_broker_drain (fks_broker_t *self)
{
    self->draining = true;
    for (uint32_t ri = 0; ri < self->cfg.max_replicas; ri++)
        if (self->replicas[ri].used)
            s_ready_remove (self, ri);
}

size_t
fks_broker_in_flight (const fks_broker_t *self)
{
    return self->in_flight;
}

size_t
fks_broker_group_count (const fks_broker_t *self)
{
    return self->n_groups;
}

int
fks_broker_group_stats (const fks_broker_t *self, size_t i, fks_broker_group_stats_t *out)
{
    if (i >= self->n_groups)
        return -1;
    const s_group_t *g = &self->groups[i];
    *out = g->stats;
    out->queued = g->queue.len;
    out->queued_bytes = g->queued_bytes;
    out->in_flight = g->inflight.len;
    out->consumers = g->consumers;
    return 0;
}

void
fks_broker_stats (const fks_broker_t *self, fks_broker_stats_t *out)
{
    *out = self->stats;
}
