/*  id.h - 16-byte message and row ids (UUID version 7) and their text forms.
 *
 *  Ids are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits from the kernel's
 *  CSPRNG, so they sort by creation time (good for B-tree inserts) and cannot be guessed.
 *  Thread-safe.
 */
#ifndef FKS_ID_H
#define FKS_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define FKS_ID_SIZE     16
#define FKS_ID_STR_SIZE 37      /* 36 chars + NUL: 8-4-4-4-12 lowercase hex */

typedef struct { uint8_t b[FKS_ID_SIZE]; } fks_id_t;

/*  A new UUIDv7. Returns 0, or -1 if the kernel's random source failed. */
int fks_id_new (fks_id_t *out);

/*  Canonical lowercase text form into out (FKS_ID_STR_SIZE bytes). */
void fks_id_format (const fks_id_t *id, char out[FKS_ID_STR_SIZE]);

/*  Parses the canonical 36-char form (either case); len is the text's length. 0 or -1. */
int fks_id_parse (const char *text, size_t len, fks_id_t *out);

bool fks_id_is_nil (const fks_id_t *id);

/*  The Unix milliseconds a UUIDv7 was made at, or -1 when id is not a version 7 UUID. */
int64_t fks_id_ms (const fks_id_t *id);

/*  The smallest id of millisecond ms (its time, then zeros), every UUIDv7 made at ms or later
 *  sorts at or after it (as bytes, as PostgreSQL's uuid compares): for "ids since" ranges. */
void fks_id_floor (int64_t ms, fks_id_t *out);

/*  Unix time in nanoseconds / milliseconds (CLOCK_REALTIME), and monotonic nanoseconds. */
int64_t fks_now_ns (void);
int64_t fks_now_ms (void);
int64_t fks_mono_ns (void);

/*  The time on clock (CLOCK_REALTIME for a default pthread_cond_timedwait, CLOCK_MONOTONIC for
 *  sem_clockwait and monotonic condition variables) ns nanoseconds from now (negative: now),
 *  as the absolute deadline those waits take. */
struct timespec fks_clock_after (clockid_t clock, int64_t ns);

#endif
