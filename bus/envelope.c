/*  envelope.c - the msgpack envelope that every message on the bus travels in.
 *
 *  Every process that speaks to the bus calls this module: producers build a body with
 *  msgpack_packer and the fks_pack_* helpers and wrap it with fks_envelope_encode; the broker
 *  routes frames after fks_envelope_peek; consumers read them with fks_envelope_decode and the
 *  typed accessors. The wire format is documented in schemas/envelope.md.
 *
 *  Frames come from the network, and msgpack-c's unpacker trusts the counts it reads (a
 *  five-byte map32 header can make it allocate gigabytes). So before msgpack-c sees a byte,
 *  s_scan walks the whole frame with a small scanner of the msgpack format: every claimed
 *  length or count is checked against the bytes left (each element needs at least one byte,
 *  each map entry two), nesting and map sizes are bounded, map keys must be unique strs, ext
 *  values are refused and no byte may trail. The scan is linear in the frame and allocates
 *  nothing; only a frame that passed it is unpacked. The header is then read straight from the
 *  scanned bytes, which is all the broker needs (peek), and the body is unpacked and held
 *  against its type's schema (bus/schema.c) for consumers (decode) and before sending (encode).
 *
 *  Encoding writes the keys in the documented order with msgpack-c's smallest encodings, so a
 *  frame is byte-identical however often it is decoded and re-encoded. The body check on encode
 *  unpacks into a per-thread zone that is reused, so encoding does not allocate per message
 *  once the thread's zone and the caller's sbuffer have grown to size.
 */
#include "bus/envelope.h"
#include "bus/schema.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SLOTS      (2 * FKS_ENVELOPE_MAX_KEYS)    //  hash slots per map: a power of two
#define S_LINEAR_KEYS 8                             //  maps up to this size: no hash table
#define S_ZONE_CHUNK 2048                           //  msgpack zone chunk for one body

//  The header keys, in the order they are encoded.
typedef enum { S_V, S_TYPE, S_ID, S_CORR, S_CAUSE, S_TS, S_SRC, S_SEQ, S_BODY, S_NKEYS } s_hkey_t;
static const char *const s_hkey_names[S_NKEYS] = {
    "v", "type", "id", "corr", "cause", "ts", "src", "seq", "body" };

struct fks_envelope_t {
    fks_envelope_hdr_t hdr;
    msgpack_zone zone;          //  holds the body's object tree
    msgpack_object body;        //  its strs and bins point into data
    size_t len;
    uint8_t data[];             //  a copy of the frame
};

static int
s_fail (fks_envelope_err_t *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_fail (fks_envelope_err_t *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (err->msg, sizeof err->msg, fmt, ap);
        va_end (ap);
    }
    return -1;
}

//  Copies up to 32 bytes of untrusted text for an error message: anything outside printable
//  ASCII becomes '?', so a hostile frame cannot put control bytes into logs.
static const char *
s_printable (char *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && i < 32 && n + 1 < cap; i++)
        dst[n++] = (src[i] >= 0x20 && src[i] < 0x7f && src[i] != '"') ? (char) src[i] : '?';
    if (len > 32 && n + 4 < cap) {
        memcpy (dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
    return dst;
}

//  --------------------------------------------------------------------------------------------
//  The bounded scanner

typedef struct {
    uint32_t off, len;          //  a key's bytes within the frame
} s_key_t;

typedef struct {
    uint16_t slot[S_SLOTS];     //  open addressing: 0 empty, else index into key + 1
    s_key_t key[FKS_ENVELOPE_MAX_KEYS];
} s_keyset_t;

typedef struct {
    bool present;
    uint32_t off, end;          //  the value's bytes within the frame
} s_span_t;

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
    fks_envelope_err_t *err;
    s_span_t *hdr;              //  when set, the outermost map's header keys are recorded here
    s_keyset_t sets[FKS_ENVELOPE_MAX_DEPTH];    //  one per nesting level; 12 KiB of stack
} s_scan_t;

static int s_scan_value (s_scan_t *s, int depth);

//  Reads a big-endian unsigned integer of width bytes (1, 2, 4 or 8) at pos.
static int
s_read_be (s_scan_t *s, size_t width, uint64_t *out)
{
    if (s->len - s->pos < width)
        return s_fail (s->err, "frame: truncated at offset %zu (%zu-byte field needs %zu more)",
                       s->pos, width, width - (s->len - s->pos));
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | s->p[s->pos + i];
    s->pos += width;
    *out = v;
    return 0;
}

static int
s_skip (s_scan_t *s, uint64_t n, size_t at, const char *what)
{
    size_t left = s->len - s->pos;
    if (n > left)
        return s_fail (s->err, "frame: %s at offset %zu claims %llu bytes, only %zu left",
                       what, at, (unsigned long long) n, left);
    s->pos += (size_t) n;
    return 0;
}

static uint32_t
s_hash (const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;           //  FNV-1a
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

//  Reads a map key, which must be a str; returns where its bytes are.
static int
s_scan_key (s_scan_t *s, uint32_t *off, uint32_t *len)
{
    size_t at = s->pos;
    if (at >= s->len)
        return s_fail (s->err, "frame: truncated at offset %zu (a map key is missing)", at);
    uint8_t b = s->p[s->pos++];
    uint64_t n = 0;
    if ((b & 0xe0) == 0xa0)
        n = b & 0x1f;
    else if (b == 0xd9 || b == 0xda || b == 0xdb) {
        if (s_read_be (s, b == 0xd9 ? 1 : b == 0xda ? 2 : 4, &n) != 0)
            return -1;
    }
    else
        return s_fail (s->err, "frame: map key at offset %zu is not a str (byte 0x%02x)", at, b);
    size_t start = s->pos;
    if (s_skip (s, n, at, "str") != 0)
        return -1;
    *off = (uint32_t) start;
    *len = (uint32_t) n;
    return 0;
}

//  Which header key a top-level key is, or -1. Called for every key of every frame the broker
//  routes, so it dispatches on the length instead of comparing with all nine names.
static int
s_hkey_find (const uint8_t *key, size_t len)
{
    int k = -1;
    switch (len) {
        case 1: k = S_V; break;
        case 2: k = key[0] == 'i' ? S_ID : S_TS; break;
        case 3: k = key[1] == 'r' ? S_SRC : S_SEQ; break;
        case 4: k = key[0] == 't' ? S_TYPE : key[0] == 'c' ? S_CORR : S_BODY; break;
        case 5: k = S_CAUSE; break;
        default: return -1;
    }
    return memcmp (s_hkey_names[k], key, len) == 0 ? k : -1;
}

static int
s_scan_map (s_scan_t *s, uint64_t n, int depth, size_t at)
{
    if (depth > FKS_ENVELOPE_MAX_DEPTH)
        return s_fail (s->err, "frame: map at offset %zu nests deeper than %d levels",
                       at, FKS_ENVELOPE_MAX_DEPTH);
    size_t left = s->len - s->pos;
    if (n > left / 2)
        return s_fail (s->err, "frame: map at offset %zu claims %llu entries, "
                       "more than the %zu bytes left can hold", at, (unsigned long long) n, left);
    if (n > FKS_ENVELOPE_MAX_KEYS)
        return s_fail (s->err, "frame: map at offset %zu has %llu entries, over the limit of %d",
                       at, (unsigned long long) n, FKS_ENVELOPE_MAX_KEYS);

    //  Duplicate keys: a small map (every envelope header and most bodies) compares each key
    //  with the ones before it, which is cheaper than hashing; a larger one uses a hash table
    //  of its keys, sized for n, in this level's keyset.
    s_keyset_t *ks = &s->sets[depth - 1];
    bool hashed = n > S_LINEAR_KEYS;
    size_t tsize = 8;
    if (hashed) {
        while (tsize < 2 * n)
            tsize *= 2;
        memset (ks->slot, 0, tsize * sizeof ks->slot[0]);
    }

    for (uint32_t i = 0; i < (uint32_t) n; i++) {
        uint32_t koff = 0, klen = 0;
        if (s_scan_key (s, &koff, &klen) != 0)
            return -1;
        const uint8_t *key = s->p + koff;
        bool duplicate = false;
        size_t h = 0;
        if (hashed) {
            h = s_hash (key, klen) & (tsize - 1);
            while (ks->slot[h] && !duplicate) {
                const s_key_t *other = &ks->key[ks->slot[h] - 1];
                duplicate = other->len == klen && memcmp (s->p + other->off, key, klen) == 0;
                h = (h + 1) & (tsize - 1);
            }
            ks->slot[h] = (uint16_t) (i + 1);
        }
        else
            for (uint32_t j = 0; j < i && !duplicate; j++)
                duplicate = ks->key[j].len == klen
                         && memcmp (s->p + ks->key[j].off, key, klen) == 0;
        if (duplicate) {
            char shown[40];
            return s_fail (s->err, "frame: duplicate key \"%s\" in the map at offset %zu",
                           s_printable (shown, sizeof shown, key, klen), at);
        }
        ks->key[i].off = koff;
        ks->key[i].len = klen;

        int hk = (s->hdr && depth == 1) ? s_hkey_find (key, klen) : -1;
        size_t val_at = s->pos;
        if (s_scan_value (s, depth + 1) != 0)
            return -1;
        if (hk >= 0) {
            s->hdr[hk].present = true;
            s->hdr[hk].off = (uint32_t) val_at;
            s->hdr[hk].end = (uint32_t) s->pos;
        }
    }
    return 0;
}

static int
s_scan_array (s_scan_t *s, uint64_t n, int depth, size_t at)
{
    if (depth > FKS_ENVELOPE_MAX_DEPTH)
        return s_fail (s->err, "frame: array at offset %zu nests deeper than %d levels",
                       at, FKS_ENVELOPE_MAX_DEPTH);
    size_t left = s->len - s->pos;
    if (n > left)
        return s_fail (s->err, "frame: array at offset %zu claims %llu elements, "
                       "more than the %zu bytes left can hold", at, (unsigned long long) n, left);
    for (uint64_t i = 0; i < n; i++)
        if (s_scan_value (s, depth + 1) != 0)
            return -1;
    return 0;
}

//  Scans one value starting at pos. depth is the nesting level the value has if it is a map or
//  an array (the outermost value is 1). Recursion is bounded by FKS_ENVELOPE_MAX_DEPTH.
static int
s_scan_value (s_scan_t *s, int depth)
{
    size_t at = s->pos;
    if (at >= s->len)
        return s_fail (s->err, "frame: truncated at offset %zu (a value is missing)", at);
    uint8_t b = s->p[s->pos++];
    uint64_t n = 0;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;                               //  fixint, negative fixint, nil, bool
    if ((b & 0xf0) == 0x80)
        return s_scan_map (s, b & 0x0f, depth, at);
    if ((b & 0xf0) == 0x90)
        return s_scan_array (s, b & 0x0f, depth, at);
    if ((b & 0xe0) == 0xa0)
        return s_skip (s, b & 0x1f, at, "str");

    switch (b) {
        case 0xc4: case 0xc5: case 0xc6:        //  bin 8/16/32
            if (s_read_be (s, b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4, &n) != 0)
                return -1;
            return s_skip (s, n, at, "bin");
        case 0xd9: case 0xda: case 0xdb:        //  str 8/16/32
            if (s_read_be (s, b == 0xd9 ? 1 : b == 0xda ? 2 : 4, &n) != 0)
                return -1;
            return s_skip (s, n, at, "str");
        case 0xdc: case 0xdd:                   //  array 16/32
            if (s_read_be (s, b == 0xdc ? 2 : 4, &n) != 0)
                return -1;
            return s_scan_array (s, n, depth, at);
        case 0xde: case 0xdf:                   //  map 16/32
            if (s_read_be (s, b == 0xde ? 2 : 4, &n) != 0)
                return -1;
            return s_scan_map (s, n, depth, at);
        case 0xca: case 0xcc: case 0xd0:        //  float32, uint8, int8
            return s_skip (s, b == 0xca ? 4 : 1, at, "number");
        case 0xcd: case 0xd1:                   //  uint16, int16
            return s_skip (s, 2, at, "number");
        case 0xce: case 0xd2:                   //  uint32, int32
            return s_skip (s, 4, at, "number");
        case 0xcb: case 0xcf: case 0xd3:        //  float64, uint64, int64
            return s_skip (s, 8, at, "number");
        case 0xc7: case 0xc8: case 0xc9:
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            return s_fail (s->err, "frame: ext value at offset %zu (ext types are not allowed)",
                           at);
        default:                                //  0xc1, never used
            return s_fail (s->err, "frame: invalid msgpack byte 0x%02x at offset %zu", b, at);
    }
}

static bool
s_is_map_byte (uint8_t b)
{
    return (b & 0xf0) == 0x80 || b == 0xde || b == 0xdf;
}

//  Scans len bytes that must hold exactly one map at nesting level depth.
static int
s_scan (s_scan_t *s, const uint8_t *p, size_t len, int depth, const char *what)
{
    s->p = p;
    s->len = len;
    s->pos = 0;
    if (len == 0)
        return s_fail (s->err, "%s: empty", what);
    if (len > FKS_ENVELOPE_MAX_SIZE)
        return s_fail (s->err, "%s: %zu bytes, over the limit of %d",
                       what, len, FKS_ENVELOPE_MAX_SIZE);
    if (!s_is_map_byte (p[0]))
        return s_fail (s->err, "%s: not a msgpack map (first byte 0x%02x)", what, p[0]);
    if (s_scan_value (s, depth) != 0)
        return -1;
    if (s->pos != len)
        return s_fail (s->err, "%s: %zu trailing bytes after the map", what, len - s->pos);
    return 0;
}

//  --------------------------------------------------------------------------------------------
//  Reading scanned header values

typedef enum {
    S_NIL, S_BOOL, S_UINT, S_NINT, S_FLOAT, S_STR, S_BIN, S_ARRAY, S_MAP, S_EXT
} s_kind_t;

static const char *const s_kind_names[] = {
    "nil", "bool", "uint", "negative int", "float", "str", "bin", "array", "map", "ext" };

typedef struct {
    s_kind_t kind;
    uint64_t u;                 //  S_UINT value, S_NINT value as two's complement
    const uint8_t *ptr;         //  S_STR / S_BIN bytes
    size_t len;
} s_value_t;

static uint64_t
s_be (const uint8_t *p, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | p[i];
    return v;
}

//  Reads the value at p, already checked by s_scan (so every length read here is in bounds).
static void
s_value (const uint8_t *p, s_value_t *v)
{
    uint8_t b = p[0];
    memset (v, 0, sizeof *v);
    if (b <= 0x7f)                  { v->kind = S_UINT; v->u = b; }
    else if (b >= 0xe0)             { v->kind = S_NINT; v->u = (uint64_t) (int64_t) (int8_t) b; }
    else if ((b & 0xf0) == 0x80)    v->kind = S_MAP;
    else if ((b & 0xf0) == 0x90)    v->kind = S_ARRAY;
    else if ((b & 0xe0) == 0xa0)    { v->kind = S_STR; v->len = b & 0x1f; v->ptr = p + 1; }
    else switch (b) {
        case 0xc0: v->kind = S_NIL; break;
        case 0xc2: case 0xc3: v->kind = S_BOOL; v->u = b == 0xc3; break;
        case 0xc4: v->kind = S_BIN; v->len = p[1]; v->ptr = p + 2; break;
        case 0xc5: v->kind = S_BIN; v->len = s_be (p + 1, 2); v->ptr = p + 3; break;
        case 0xc6: v->kind = S_BIN; v->len = s_be (p + 1, 4); v->ptr = p + 5; break;
        case 0xd9: v->kind = S_STR; v->len = p[1]; v->ptr = p + 2; break;
        case 0xda: v->kind = S_STR; v->len = s_be (p + 1, 2); v->ptr = p + 3; break;
        case 0xdb: v->kind = S_STR; v->len = s_be (p + 1, 4); v->ptr = p + 5; break;
        case 0xca: case 0xcb: v->kind = S_FLOAT; break;
        case 0xcc: v->kind = S_UINT; v->u = p[1]; break;
        case 0xcd: v->kind = S_UINT; v->u = s_be (p + 1, 2); break;
        case 0xce: v->kind = S_UINT; v->u = s_be (p + 1, 4); break;
        case 0xcf: v->kind = S_UINT; v->u = s_be (p + 1, 8); break;
        case 0xd0: v->u = (uint64_t) (int64_t) (int8_t) p[1]; goto signed_int;
        case 0xd1: v->u = (uint64_t) (int64_t) (int16_t) s_be (p + 1, 2); goto signed_int;
        case 0xd2: v->u = (uint64_t) (int64_t) (int32_t) s_be (p + 1, 4); goto signed_int;
        case 0xd3: v->u = s_be (p + 1, 8); goto signed_int;
        case 0xdc: case 0xdd: v->kind = S_ARRAY; break;
        case 0xde: case 0xdf: v->kind = S_MAP; break;
        default: v->kind = S_EXT; break;
    }
    return;
signed_int:
    //  msgpack allows a non-negative value in a signed format; it is still a uint for us.
    v->kind = (int64_t) v->u < 0 ? S_NINT : S_UINT;
}

//  An id-valued header field: bin 16 (not the nil UUID), or, when nil_ok, msgpack nil / absent.
static int
s_hdr_id (const uint8_t *frame, const s_span_t *span, const char *name, bool nil_ok,
          fks_id_t *out, fks_envelope_err_t *err)
{
    memset (out, 0, sizeof *out);
    if (!span->present)
        return nil_ok ? 0 : s_fail (err, "header: %s missing", name);
    s_value_t v;
    s_value (frame + span->off, &v);
    if (v.kind == S_NIL && nil_ok)
        return 0;
    if (v.kind != S_BIN)
        return s_fail (err, "header: %s: expected bin 16%s, got %s",
                       name, nil_ok ? " or nil" : "", s_kind_names[v.kind]);
    if (v.len != FKS_ID_SIZE)
        return s_fail (err, "header: %s: expected bin 16, got bin %zu", name, v.len);
    memcpy (out->b, v.ptr, FKS_ID_SIZE);
    if (fks_id_is_nil (out))
        return s_fail (err, "header: %s: the nil UUID is not an id%s",
                       name, nil_ok ? " (send msgpack nil for none)" : "");
    return 0;
}

//  Copies a str header field (type or src) into buf after checking its bounds.
static int
s_hdr_str (const uint8_t *frame, const s_span_t *span, const char *name, char *buf, size_t cap,
           fks_envelope_err_t *err)
{
    if (!span->present)
        return s_fail (err, "header: %s missing", name);
    s_value_t v;
    s_value (frame + span->off, &v);
    if (v.kind != S_STR)
        return s_fail (err, "header: %s: expected str, got %s", name, s_kind_names[v.kind]);
    if (v.len == 0)
        return s_fail (err, "header: %s: empty", name);
    if (v.len >= cap)
        return s_fail (err, "header: %s: %zu bytes, over the limit of %zu", name, v.len, cap - 1);
    for (size_t i = 0; i < v.len; i++)
        if (v.ptr[i] < 0x20 || v.ptr[i] > 0x7e)
            return s_fail (err, "header: %s: byte 0x%02x at %zu is not printable ASCII%s",
                           name, v.ptr[i], i, v.ptr[i] == 0 ? " (NUL)" : "");
    memcpy (buf, v.ptr, v.len);
    buf[v.len] = '\0';
    return 0;
}

//  Reads an int header field that must lie in [min, INT64_MAX].
static int
s_hdr_int (const uint8_t *frame, const s_span_t *span, const char *name, int64_t min,
           int64_t *out, fks_envelope_err_t *err)
{
    s_value_t v;
    s_value (frame + span->off, &v);
    if (v.kind == S_NINT)
        return s_fail (err, "header: %s: %lld is below %lld",
                       name, (long long) (int64_t) v.u, (long long) min);
    if (v.kind != S_UINT)
        return s_fail (err, "header: %s: expected int, got %s", name, s_kind_names[v.kind]);
    if (v.u > (uint64_t) INT64_MAX)
        return s_fail (err, "header: %s: %llu is out of the int64 range",
                       name, (unsigned long long) v.u);
    if ((int64_t) v.u < min)
        return s_fail (err, "header: %s: %lld is below %lld",
                       name, (long long) v.u, (long long) min);
    *out = (int64_t) v.u;
    return 0;
}

static int
s_parse_hdr (const uint8_t *frame, const s_span_t *spans, fks_envelope_hdr_t *hdr,
             fks_envelope_err_t *err)
{
    memset (hdr, 0, sizeof *hdr);

    //  The version first: a frame of another version may differ in anything else.
    if (!spans[S_V].present)
        return s_fail (err, "header: v missing");
    s_value_t v;
    s_value (frame + spans[S_V].off, &v);
    if (v.kind != S_UINT)
        return s_fail (err, "header: v: expected uint, got %s", s_kind_names[v.kind]);
    if (v.u != FKS_ENVELOPE_VERSION)
        return s_fail (err, "unsupported version %llu (this build reads version %d)",
                       (unsigned long long) v.u, FKS_ENVELOPE_VERSION);
    hdr->v = FKS_ENVELOPE_VERSION;

    if (s_hdr_str (frame, &spans[S_TYPE], "type", hdr->type, sizeof hdr->type, err) != 0)
        return -1;
    if (!fks_schema_find (hdr->type)) {
        char shown[40];
        return s_fail (err, "header: type: unknown type \"%s\"",
                       s_printable (shown, sizeof shown, (const uint8_t *) hdr->type,
                                    strlen (hdr->type)));
    }
    if (s_hdr_id (frame, &spans[S_ID], "id", false, &hdr->id, err) != 0
    ||  s_hdr_id (frame, &spans[S_CORR], "corr", true, &hdr->corr, err) != 0
    ||  s_hdr_id (frame, &spans[S_CAUSE], "cause", true, &hdr->cause, err) != 0)
        return -1;
    if (!spans[S_TS].present)
        return s_fail (err, "header: ts missing");
    if (s_hdr_int (frame, &spans[S_TS], "ts", 1, &hdr->ts, err) != 0)
        return -1;
    if (s_hdr_str (frame, &spans[S_SRC], "src", hdr->src, sizeof hdr->src, err) != 0)
        return -1;
    if (spans[S_SEQ].present
    &&  s_hdr_int (frame, &spans[S_SEQ], "seq", 0, &hdr->seq, err) != 0)
        return -1;
    if (!spans[S_BODY].present)
        return s_fail (err, "header: body missing");
    s_value (frame + spans[S_BODY].off, &v);
    if (v.kind != S_MAP)
        return s_fail (err, "header: body: expected map, got %s", s_kind_names[v.kind]);
    return 0;
}

int
fks_envelope_peek (const void *data, size_t len, fks_envelope_hdr_t *hdr,
                   const uint8_t **body_out, size_t *body_len_out, fks_envelope_err_t *err)
{
    fks_envelope_hdr_t scratch;
    if (!hdr)
        hdr = &scratch;
    if (!data && len > 0)
        return s_fail (err, "frame: no data");

    s_span_t spans[S_NKEYS];
    memset (spans, 0, sizeof spans);
    s_scan_t s;
    s.err = err;
    s.hdr = spans;
    if (s_scan (&s, data, len, 1, "frame") != 0)
        return -1;
    if (s_parse_hdr (data, spans, hdr, err) != 0)
        return -1;
    if (body_out)
        *body_out = (const uint8_t *) data + spans[S_BODY].off;
    if (body_len_out)
        *body_len_out = spans[S_BODY].end - spans[S_BODY].off;
    return 0;
}

//  --------------------------------------------------------------------------------------------
//  Decoding

fks_envelope_t *
fks_envelope_decode (const void *data, size_t len, fks_envelope_err_t *err)
{
    fks_envelope_hdr_t hdr;
    const uint8_t *body;
    size_t body_len;
    if (fks_envelope_peek (data, len, &hdr, &body, &body_len, err) != 0)
        return NULL;

    fks_envelope_t *self = malloc (sizeof *self + len);
    if (!self) {
        s_fail (err, "out of memory decoding a %zu-byte frame", len);
        return NULL;
    }
    self->hdr = hdr;
    self->len = len;
    memcpy (self->data, data, len);
    if (!msgpack_zone_init (&self->zone, S_ZONE_CHUNK)) {
        free (self);
        s_fail (err, "out of memory decoding a %zu-byte frame", len);
        return NULL;
    }
    size_t off = 0;
    const char *copy = (const char *) self->data + (body - (const uint8_t *) data);
    msgpack_unpack_return rc = msgpack_unpack (copy, body_len, &off, &self->zone, &self->body);
    if (rc != MSGPACK_UNPACK_SUCCESS || off != body_len) {
        //  The scan accepted this body, so only memory can run out here.
        s_fail (err, rc == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory unpacking the body"
                                                      : "body: msgpack-c refused it (%d)", rc);
        fks_envelope_destroy (&self);
        return NULL;
    }
    char why[sizeof err->msg];
    if (fks_schema_check (fks_schema_find (hdr.type), &self->body, why, sizeof why) != 0) {
        s_fail (err, "%s body: %s", hdr.type, why);
        fks_envelope_destroy (&self);
        return NULL;
    }
    return self;
}

void
fks_envelope_destroy (fks_envelope_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_envelope_t *self = *self_p;
    msgpack_zone_destroy (&self->zone);
    free (self);
    *self_p = NULL;
}

const fks_envelope_hdr_t *
fks_envelope_hdr (const fks_envelope_t *self)
{
    return &self->hdr;
}

const msgpack_object *
fks_envelope_body (const fks_envelope_t *self)
{
    return &self->body;
}

const msgpack_object *
fks_msgpack_map_get (const msgpack_object *map, const char *key)
{
    if (!map || !key || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t key_len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len
        &&  memcmp (k->via.str.ptr, key, key_len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

//  The body value at key: NULL when absent or nil.
static const msgpack_object *
s_get (const fks_envelope_t *self, const char *key)
{
    const msgpack_object *o = fks_msgpack_map_get (&self->body, key);
    return (o && o->type != MSGPACK_OBJECT_NIL) ? o : NULL;
}

int
fks_envelope_get_str (const fks_envelope_t *self, const char *key, char *buf, size_t cap)
{
    if (buf && cap > 0)
        buf[0] = '\0';
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    if (o->type != MSGPACK_OBJECT_STR || !buf || o->via.str.size >= cap)
        return -1;
    if (o->via.str.size > 0 && memchr (o->via.str.ptr, '\0', o->via.str.size))
        return -1;
    memcpy (buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
    return 0;
}

int
fks_envelope_get_f64 (const fks_envelope_t *self, const char *key, double *out)
{
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    double d;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        d = (double) o->via.u64;
    else
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        d = (double) o->via.i64;
    else
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        d = o->via.f64;
    else
        return -1;
    if (!isfinite (d))
        return -1;
    *out = d;
    return 0;
}

int
fks_envelope_get_i64 (const fks_envelope_t *self, const char *key, int64_t *out)
{
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t) INT64_MAX)
            return -1;
        *out = (int64_t) o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) {
        double d = o->via.f64;
        //  -2^63 is exact in a double; 2^63 is the first value out of range.
        if (!isfinite (d) || d != trunc (d) || d < -9223372036854775808.0
        ||  d >= 9223372036854775808.0)
            return -1;
        *out = (int64_t) d;
        return 0;
    }
    return -1;
}

int
fks_envelope_get_bool (const fks_envelope_t *self, const char *key, bool *out)
{
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return -1;
    *out = o->via.boolean;
    return 0;
}

int
fks_envelope_get_id (const fks_envelope_t *self, const char *key, fks_id_t *out)
{
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != FKS_ID_SIZE)
        return -1;
    memcpy (out->b, o->via.bin.ptr, FKS_ID_SIZE);
    return 0;
}

int
fks_envelope_get_obj (const fks_envelope_t *self, const char *key, const msgpack_object **out)
{
    const msgpack_object *o = s_get (self, key);
    if (!o)
        return 1;
    *out = o;
    return 0;
}

//  --------------------------------------------------------------------------------------------
//  Encoding

//  A zone per thread for the body check on encode, kept between calls (msgpack_zone_clear
//  keeps its first chunk) and freed when the thread exits.
static pthread_once_t s_zone_once = PTHREAD_ONCE_INIT;
static pthread_key_t s_zone_key;
static bool s_zone_key_ok;

static void
s_zone_free (void *zone)
{
    msgpack_zone_free ((msgpack_zone *) zone);
}

static void
s_zone_key_create (void)
{
    s_zone_key_ok = pthread_key_create (&s_zone_key, s_zone_free) == 0;
}

//  The calling thread's zone; *owned says the caller must free it (no thread key available).
static msgpack_zone *
s_zone_get (bool *owned)
{
    pthread_once (&s_zone_once, s_zone_key_create);
    *owned = false;
    msgpack_zone *zone = s_zone_key_ok ? pthread_getspecific (s_zone_key) : NULL;
    if (zone)
        return zone;
    zone = msgpack_zone_new (S_ZONE_CHUNK);
    if (zone && (!s_zone_key_ok || pthread_setspecific (s_zone_key, zone) != 0))
        *owned = true;
    return zone;
}

//  Validates a header for encoding (the same rules peek applies to a received one).
static int
s_check_hdr (const fks_envelope_hdr_t *hdr, uint32_t *v, const fks_schema_t **schema,
             fks_envelope_err_t *err)
{
    *v = hdr->v ? hdr->v : FKS_ENVELOPE_VERSION;
    if (*v != FKS_ENVELOPE_VERSION)
        return s_fail (err, "unsupported version %u (this build writes version %d)",
                       *v, FKS_ENVELOPE_VERSION);
    size_t tl = strnlen (hdr->type, sizeof hdr->type);
    if (tl == 0 || tl == sizeof hdr->type)
        return s_fail (err, "header: type: empty or not NUL-terminated");
    *schema = fks_schema_find (hdr->type);
    if (!*schema) {
        char shown[40];
        return s_fail (err, "header: type: unknown type \"%s\"",
                       s_printable (shown, sizeof shown, (const uint8_t *) hdr->type, tl));
    }
    size_t sl = strnlen (hdr->src, sizeof hdr->src);
    if (sl == 0 || sl == sizeof hdr->src)
        return s_fail (err, "header: src: empty or not NUL-terminated");
    for (size_t i = 0; i < sl; i++)
        if ((uint8_t) hdr->src[i] < 0x20 || (uint8_t) hdr->src[i] > 0x7e)
            return s_fail (err, "header: src: byte 0x%02x at %zu is not printable ASCII",
                           (uint8_t) hdr->src[i], i);
    if (fks_id_is_nil (&hdr->id))
        return s_fail (err, "header: id: the nil UUID is not an id");
    if (hdr->ts <= 0)
        return s_fail (err, "header: ts: %lld is below 1", (long long) hdr->ts);
    if (hdr->seq < 0)
        return s_fail (err, "header: seq: %lld is below 0", (long long) hdr->seq);
    return 0;
}

//  Checks a packed body: one bounded map, unpacked into the thread's zone, against the schema.
static int
s_check_body (const fks_schema_t *schema, const uint8_t *body, size_t body_len,
              fks_envelope_err_t *err)
{
    s_scan_t s;
    s.err = err;
    s.hdr = NULL;
    if (s_scan (&s, body, body_len, 2, "body") != 0)
        return -1;

    bool owned;
    msgpack_zone *zone = s_zone_get (&owned);
    if (!zone)
        return s_fail (err, "out of memory checking the body");
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack ((const char *) body, body_len, &off, zone, &obj);
    int result = 0;
    char why[sizeof err->msg];
    if (rc != MSGPACK_UNPACK_SUCCESS || off != body_len)
        result = s_fail (err, rc == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory checking the body"
                                                               : "body: msgpack-c refused it (%d)",
                         rc);
    else
    if (fks_schema_check (schema, &obj, why, sizeof why) != 0)
        result = s_fail (err, "%s body: %s", schema->type, why);
    if (owned)
        msgpack_zone_free (zone);
    else
        msgpack_zone_clear (zone);
    return result;
}

static int
s_pack_key (msgpack_packer *pk, s_hkey_t key)
{
    size_t n = strlen (s_hkey_names[key]);
    return msgpack_pack_str (pk, n) | msgpack_pack_str_body (pk, s_hkey_names[key], n);
}

static int
s_pack_id_or_nil (msgpack_packer *pk, const fks_id_t *id)
{
    if (fks_id_is_nil (id))
        return msgpack_pack_nil (pk);
    return msgpack_pack_bin (pk, FKS_ID_SIZE) | msgpack_pack_bin_body (pk, id->b, FKS_ID_SIZE);
}

int
fks_envelope_encode (const fks_envelope_hdr_t *hdr, const void *body, size_t body_len,
                     msgpack_sbuffer *out, fks_envelope_err_t *err)
{
    if (!hdr || !out || (!body && body_len > 0))
        return s_fail (err, "encode: no header, body or output buffer");
    uint32_t v;
    const fks_schema_t *schema = NULL;
    if (s_check_hdr (hdr, &v, &schema, err) != 0)
        return -1;
    if (s_check_body (schema, body, body_len, err) != 0)
        return -1;

    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    size_t tl = strlen (hdr->type), sl = strlen (hdr->src);
    int rc = msgpack_pack_map (&pk, S_NKEYS);
    rc |= s_pack_key (&pk, S_V)     | msgpack_pack_uint32 (&pk, v);
    rc |= s_pack_key (&pk, S_TYPE)  | msgpack_pack_str (&pk, tl)
                                    | msgpack_pack_str_body (&pk, hdr->type, tl);
    rc |= s_pack_key (&pk, S_ID)    | msgpack_pack_bin (&pk, FKS_ID_SIZE)
                                    | msgpack_pack_bin_body (&pk, hdr->id.b, FKS_ID_SIZE);
    rc |= s_pack_key (&pk, S_CORR)  | s_pack_id_or_nil (&pk, &hdr->corr);
    rc |= s_pack_key (&pk, S_CAUSE) | s_pack_id_or_nil (&pk, &hdr->cause);
    rc |= s_pack_key (&pk, S_TS)    | msgpack_pack_int64 (&pk, hdr->ts);
    rc |= s_pack_key (&pk, S_SRC)   | msgpack_pack_str (&pk, sl)
                                    | msgpack_pack_str_body (&pk, hdr->src, sl);
    rc |= s_pack_key (&pk, S_SEQ)   | msgpack_pack_int64 (&pk, hdr->seq);
    rc |= s_pack_key (&pk, S_BODY)  | msgpack_sbuffer_write (out, body, body_len);
    if (rc != 0) {
        out->size = start;
        return s_fail (err, "out of memory encoding a %s envelope", hdr->type);
    }
    size_t frame_len = out->size - start;
    if (frame_len > FKS_ENVELOPE_MAX_SIZE) {
        out->size = start;
        return s_fail (err, "encode: the %s frame would be %zu bytes, over the limit of %d",
                       hdr->type, frame_len, FKS_ENVELOPE_MAX_SIZE);
    }
    return 0;
}

int
fks_envelope_hdr_init (fks_envelope_hdr_t *hdr, const char *type, const char *src,
                       const fks_id_t *corr, const fks_id_t *cause)
{
    if (!hdr)
        return -1;
    memset (hdr, 0, sizeof *hdr);
    if (!type || !src)
        return -1;
    size_t tl = strlen (type), sl = strlen (src);
    if (tl == 0 || tl >= sizeof hdr->type || sl == 0 || sl >= sizeof hdr->src)
        return -1;
    memcpy (hdr->type, type, tl + 1);
    memcpy (hdr->src, src, sl + 1);
    hdr->v = FKS_ENVELOPE_VERSION;
    if (fks_id_new (&hdr->id) != 0)
        return -1;
    hdr->ts = fks_now_ns ();
    if (corr)
        hdr->corr = *corr;
    if (cause)
        hdr->cause = *cause;
    hdr->seq = 0;
    return 0;
}

//  --------------------------------------------------------------------------------------------
//  Body packing helpers. A failed write (out of memory in the sbuffer) leaves a body that
//  fks_envelope_encode then refuses, so they need not report errors themselves.

void
fks_pack_str (msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil (pk);
        return;
    }
    size_t n = strlen (s);
    msgpack_pack_str (pk, n);
    msgpack_pack_str_body (pk, s, n);
}

void
fks_pack_kv_str (msgpack_packer *pk, const char *key, const char *value)
{
    fks_pack_str (pk, key);
    fks_pack_str (pk, value);
}

void
fks_pack_kv_f64 (msgpack_packer *pk, const char *key, double value)
{
    fks_pack_str (pk, key);
    msgpack_pack_double (pk, value);
}

void
fks_pack_kv_i64 (msgpack_packer *pk, const char *key, int64_t value)
{
    fks_pack_str (pk, key);
    msgpack_pack_int64 (pk, value);
}

void
fks_pack_kv_bool (msgpack_packer *pk, const char *key, bool value)
{
    fks_pack_str (pk, key);
    if (value)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

void
fks_pack_kv_id (msgpack_packer *pk, const char *key, const fks_id_t *value)
{
    fks_pack_str (pk, key);
    if (!value) {
        msgpack_pack_nil (pk);
        return;
    }
    msgpack_pack_bin (pk, FKS_ID_SIZE);
    msgpack_pack_bin_body (pk, value->b, FKS_ID_SIZE);
}

void
fks_pack_kv_nil (msgpack_packer *pk, const char *key)
{
    fks_pack_str (pk, key);
    msgpack_pack_nil (pk);
}
