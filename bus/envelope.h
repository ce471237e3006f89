/*  envelope.h - the msgpack envelope that every message on the bus travels in.
 *
 *  On the wire a message is two ZeroMQ frames: the topic (the type, e.g. "signal.scored") and
 *  a msgpack map {v, type, id, corr, cause, ts, src, seq, body} documented in
 *  schemas/envelope.md. This module encodes and decodes that map and checks each body against
 *  its type's schema (bus/schema.c): required fields present with the right msgpack types,
 *  unknown keys ignored (changes within a version are additive).
 *
 *  Decoding is strict and bounded, because frames come from the network: a frame larger than
 *  FKS_ENVELOPE_MAX_SIZE, a claimed length or count larger than the bytes that remain, nesting
 *  deeper than FKS_ENVELOPE_MAX_DEPTH, a map with more than FKS_ENVELOPE_MAX_KEYS entries, a
 *  map key that is not a str, a duplicate key, an ext value, trailing bytes, a wrong version or
 *  wrong types all give an error, never a crash, an overread or a large allocation. The whole
 *  frame is scanned before msgpack-c is allowed to allocate anything.
 *
 *  Thread safety: all functions may be called from any thread; an fks_envelope_t is immutable
 *  after decode and may be read from several threads at once.
 */
#ifndef FKS_ENVELOPE_H
#define FKS_ENVELOPE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/id.h"

#define FKS_ENVELOPE_VERSION   1
#define FKS_ENVELOPE_MAX_SIZE  (256 * 1024)
#define FKS_ENVELOPE_MAX_DEPTH 8        /* nested maps/arrays, the envelope map being 1 */
#define FKS_ENVELOPE_MAX_KEYS  128      /* entries in any one map */
#define FKS_TYPE_MAX           64       /* incl. NUL */
#define FKS_SRC_MAX            64       /* incl. NUL */

typedef struct {
    char msg[160];
} fks_envelope_err_t;

/*  The envelope's header fields. */
typedef struct {
    uint32_t v;                 /* schema version, FKS_ENVELOPE_VERSION */
    char type[FKS_TYPE_MAX];    /* a known type: fks_schema_find (type) != NULL */
    fks_id_t id;                /* this message */
    fks_id_t corr;              /* the alert it descends from (nil when none, e.g. market.bar) */
    fks_id_t cause;             /* the message that caused it (nil when none) */
    int64_t ts;                 /* ns since the Unix epoch */
    char src[FKS_SRC_MAX];      /* producer, e.g. "gateway", "signal" */
    int64_t seq;                /* event sequence once persisted, 0 before */
} fks_envelope_hdr_t;

/*  Checks a frame and reads its header without allocating: the frame rules of
 *  schemas/envelope.md over the whole frame (bounds, depth, map sizes, str keys, no duplicate
 *  keys, no ext, no trailing bytes), then the version and the header fields, and that `body` is
 *  a map. *body_out / *body_len_out (may be NULL) point into data at the raw msgpack body.
 *  Does NOT check the body against its schema (fks_envelope_decode does). For the broker, which
 *  routes frames without looking inside bodies. hdr and err may be NULL. 0 or -1 with err. */
int fks_envelope_peek (const void *data, size_t len, fks_envelope_hdr_t *hdr,
                       const uint8_t **body_out, size_t *body_len_out, fks_envelope_err_t *err);

/*  A decoded envelope: the header plus the body unpacked (and schema-checked). */
typedef struct fks_envelope_t fks_envelope_t;

/*  Decodes and validates a whole frame (peek + body unpack + schema check). Returns a new
 *  envelope (caller destroys) or NULL with err (may be NULL). The data is copied, so the
 *  caller may free it at once. Destroying NULL (or *self_p NULL) is a no-op. */
fks_envelope_t *fks_envelope_decode (const void *data, size_t len, fks_envelope_err_t *err);
void fks_envelope_destroy (fks_envelope_t **self_p);

const fks_envelope_hdr_t *fks_envelope_hdr (const fks_envelope_t *self);

/*  The body as msgpack-c's object tree (a map), owned by the envelope. */
const msgpack_object *fks_envelope_body (const fks_envelope_t *self);

/*  Body field accessors. Each returns 0 when the key is present with a usable value, 1 when it
 *  is absent or nil, -1 when present with the wrong type or (str) too long for buf.
 *  get_str copies into buf (cap bytes, NUL-terminated, "" when absent; rejects strings holding
 *  NUL); get_f64 accepts msgpack ints and finite floats; get_i64 accepts ints within int64,
 *  and floats with no fraction within int64; get_id accepts bin 16.
 *  get_obj returns the raw object (for nested maps such as stop_loss). */
int fks_envelope_get_str (const fks_envelope_t *self, const char *key, char *buf, size_t cap);
int fks_envelope_get_f64 (const fks_envelope_t *self, const char *key, double *out);
int fks_envelope_get_i64 (const fks_envelope_t *self, const char *key, int64_t *out);
int fks_envelope_get_bool (const fks_envelope_t *self, const char *key, bool *out);
int fks_envelope_get_id (const fks_envelope_t *self, const char *key, fks_id_t *out);
int fks_envelope_get_obj (const fks_envelope_t *self, const char *key,
                          const msgpack_object **out);

/*  Looks a str key up in any msgpack map object (for nested maps). NULL when absent, or when
 *  map is NULL or not a map. */
const msgpack_object *fks_msgpack_map_get (const msgpack_object *map, const char *key);

/*  Encodes an envelope: the header and a body given as an already packed msgpack map (build it
 *  with msgpack_packer and the fks_pack_* helpers below). The header and the body are held to
 *  the same rules as a received frame (the body to its type's schema), so nothing invalid is
 *  ever sent. Appends the frame to out (msgpack_sbuffer, caller-initialised; reuse it with
 *  out->size = 0 to avoid allocating per message); on failure out is left as it was.
 *  hdr->v 0 means FKS_ENVELOPE_VERSION. Keys are written in the documented order, numbers in
 *  their smallest msgpack form: re-encoding a decoded frame gives the same bytes.
 *  0 or -1 with err. */
int fks_envelope_encode (const fks_envelope_hdr_t *hdr, const void *body, size_t body_len,
                         msgpack_sbuffer *out, fks_envelope_err_t *err);

/*  Fills a header for a new message: fresh id, ts now, v, type and src copied (truncation is
 *  an error), corr and cause copied when not NULL (nil otherwise), seq 0. 0 or -1. */
int fks_envelope_hdr_init (fks_envelope_hdr_t *hdr, const char *type, const char *src,
                           const fks_id_t *corr, const fks_id_t *cause);

/*  Helpers for packing body fields with msgpack_packer: a str key followed by a value. f64
 *  values are written as float 64, ids as bin 16; a NULL str or id is written as nil.
 *  Write errors (out of memory) surface as a refused body in fks_envelope_encode. */
void fks_pack_str (msgpack_packer *pk, const char *s);
void fks_pack_kv_str (msgpack_packer *pk, const char *key, const char *value);
void fks_pack_kv_f64 (msgpack_packer *pk, const char *key, double value);
void fks_pack_kv_i64 (msgpack_packer *pk, const char *key, int64_t value);
void fks_pack_kv_bool (msgpack_packer *pk, const char *key, bool value);
void fks_pack_kv_id (msgpack_packer *pk, const char *key, const fks_id_t *value);
void fks_pack_kv_nil (msgpack_packer *pk, const char *key);

#endif
