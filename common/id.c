/*  id.c - UUIDv7 ids for messages and rows, their canonical text form, and the clocks.
 *
 *  Every envelope, alert and order carries a 16-byte id made here. The layout follows RFC 9562
 *  section 5.7: 48 bits of Unix milliseconds, the version nibble 0111, 12 bits of sub-millisecond
 *  time (section 6.2, method 3), the variant bits 10, and 62 random bits from getrandom(2).
 *  Within one process ids are strictly increasing: when two ids fall into the same 1/4096 ms, or
 *  the wall clock steps back a little, the 60-bit time field continues from the last id plus one
 *  (one atomic compare-and-swap, no lock). A step back of more than FKS_ID_CLOCK_RESET_MS is
 *  taken as a real clock change and followed, as RFC 9562 section 6.2 allows. The random part
 *  makes ids unguessable and unique across processes and machines.
 *
 *  fks_id_parse accepts exactly the canonical 8-4-4-4-12 hex form (either case) and nothing else,
 *  because ids arrive from URLs and message bodies.
 */
#include "common/id.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

//  A clock step back larger than this (ms) resets the monotonic sequence instead of running
//  ahead of the real time for as long as the step lasted.
#define FKS_ID_CLOCK_RESET_MS 10000

static _Atomic uint64_t s_last_time60;     //  ms << 12 | sub-ms fraction of the last id

static int
s_random (uint8_t *buf, size_t len)
{
    size_t got = 0;
    int tries = 0;
    while (got < len) {
        ssize_t rc = getrandom (buf + got, len - got, 0);
        if (rc < 0) {
            if (errno == EINTR && ++tries < 100)
                continue;
            return -1;
        }
        got += (size_t) rc;
    }
    return 0;
}

//  The 60-bit time field for a new id: wall-clock ms and 12 bits of the sub-millisecond
//  fraction, never equal to or below the previous id's in this process (unless the clock went
//  back a long way).
static uint64_t
s_next_time60 (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
    uint64_t frac = ((uint64_t) (ts.tv_nsec % 1000000) * 4096u) / 1000000u;
    uint64_t now = ((ms & 0xFFFFFFFFFFFFull) << 12) | frac;

    uint64_t last = atomic_load_explicit (&s_last_time60, memory_order_relaxed);
    for (;;) {
        uint64_t next = now;
        if (now <= last && last - now <= ((uint64_t) FKS_ID_CLOCK_RESET_MS << 12))
            next = last + 1;
        if (atomic_compare_exchange_weak_explicit (&s_last_time60, &last, next,
                                                   memory_order_relaxed, memory_order_relaxed))
            return next;
    }
}

int
fks_id_new (fks_id_t *out)
{
    uint8_t rnd[8];
    if (s_random (rnd, sizeof rnd) != 0)
        return -1;
    uint64_t t = s_next_time60 ();
    uint64_t ms = t >> 12;
    uint64_t frac = t & 0xFFF;

    out->b[0] = (uint8_t) (ms >> 40);
    out->b[1] = (uint8_t) (ms >> 32);
    out->b[2] = (uint8_t) (ms >> 24);
    out->b[3] = (uint8_t) (ms >> 16);
    out->b[4] = (uint8_t) (ms >> 8);
    out->b[5] = (uint8_t) ms;
    out->b[6] = (uint8_t) (0x70 | (frac >> 8));        //  version 7
    out->b[7] = (uint8_t) frac;
    out->b[8] = (uint8_t) (0x80 | (rnd[0] & 0x3F));     //  variant 10
    memcpy (out->b + 9, rnd + 1, 7);
    return 0;
}

int64_t
fks_id_ms (const fks_id_t *id)
{
    if ((id->b[6] >> 4) != 7)
        return -1;
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->b[i];
    return ms;
}

void
fks_id_floor (int64_t ms, fks_id_t *out)
{
    memset (out, 0, sizeof *out);
    uint64_t t = ms > 0 ? (uint64_t) ms & 0xFFFFFFFFFFFFull : 0;
    for (int i = 5; i >= 0; i--, t >>= 8)
        out->b[i] = (uint8_t) t;
}

void
fks_id_format (const fks_id_t *id, char out[FKS_ID_STR_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < FKS_ID_SIZE; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id->b[i] >> 4];
        out[o++] = hex[id->b[i] & 0x0F];
    }
    out[o] = '\0';
}

static int
s_hex_value (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
fks_id_parse (const char *text, size_t len, fks_id_t *out)
{
    if (!text || len != FKS_ID_STR_SIZE - 1)
        return -1;
    fks_id_t id;
    size_t byte = 0;
    for (size_t i = 0; i < len; ) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = s_hex_value (text[i]);
        int lo = s_hex_value (text[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        id.b[byte++] = (uint8_t) (hi << 4 | lo);
        i += 2;
    }
    *out = id;
    return 0;
}

bool
fks_id_is_nil (const fks_id_t *id)
{
    for (size_t i = 0; i < FKS_ID_SIZE; i++)
        if (id->b[i])
            return false;
    return true;
}

int64_t
fks_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
fks_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
fks_mono_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec
fks_clock_after (clockid_t clock, int64_t ns)
{
    struct timespec ts;
    clock_gettime (clock, &ts);
    if (ns < 0)
        ns = 0;
    ts.tv_sec += (time_t) (ns / 1000000000);
    ts.tv_nsec += (long) (ns % 1000000000);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}
