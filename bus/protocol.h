/*  protocol.h - the wire protocol between the bus broker (fks-bus) and its clients.
 *
 *  Clients talk to the broker's ROUTER socket (FKS_BUS_BIND) from DEALER sockets. Every
 *  ZeroMQ message, in both directions, starts with a 3-byte header frame:
 *
 *      byte 0  FKS_BUS_SIGNATURE (0xFB)     anything else is garbage, counted and dropped
 *      byte 1  FKS_BUS_PROTO_VERSION (1)    another version is counted and dropped
 *      byte 2  the command
 *
 *  followed by the command's frames (integers are unsigned, big-endian):
 *
 *    client -> broker
 *      PUBLISH   [topic]?[envelope]             the topic is the envelope's type; when
 *                                               present it must equal the type
 *      PUBLISH   (header and envelope in one frame: the 3 header bytes, then the envelope)
 *                                               what clients send: one frame per message
 *      JOIN      [group][window u32 (flags u32)?][name][prefix]...   1..FKS_BUS_PREFIXES_MAX
 *                                               prefix frames; flags: FKS_BUS_JOIN_* (unknown
 *                                               bits are ignored), 0 when absent
 *      ACK       [tags: n x u64]                1..FKS_BUS_TAGS_MAX tags
 *      REJECT    [tag u64][action u8][reason]   action: FKS_BUS_REJECT_RETRY or _DEAD
 *      RELEASE   [tags: n x u64]                handed back unprocessed: no attempt counted
 *      TOUCH     [tags: n x u64]                still working: the ack deadline restarts
 *      HEARTBEAT (no frames)
 *      LEAVE     [tags: n x u64]?               1..FKS_BUS_WINDOW_MAX tags. Leaving: the
 *                                               tags listed (never given to the
 *                                               application) go back uncounted, every other
 *                                               un-acked delivery goes back counted; one step,
 *                                               so none of them can be handed back to it
 *      DRAIN     (no frames)                    Leaving soon: deliver nothing more to me. The
 *                                               replica keeps what it holds (ACK, REJECT,
 *                                               RELEASE, TOUCH still work) and its heartbeats
 *                                               keep it alive; LEAVE ends it. Answered DRAINED.
 *                                               Sent first, it makes the RELEASEs after it
 *                                               (same connection, so in order) go to the other
 *                                               replicas instead of straight back. A broker
 *                                               older than DRAIN counts it as an unknown
 *                                               command, drops it and answers nothing: the
 *                                               client then keeps what comes back for the
 *                                               LEAVE (docs/BUS.md, "Stopping a replica")
 *
 *    broker -> client
 *      WELCOME   [heartbeat_ms u32][liveness u32][ack_deadline_ms u32]
 *      DELIVER   ([meta+topic][envelope]) x 1..FKS_BUS_DELIVER_BATCH_MAX
 *                meta = tag u64, attempt u32, envelope id (16 bytes): FKS_BUS_META_SIZE bytes,
 *                followed in the same frame by the topic (1..FKS_TYPE_MAX-1 bytes)
 *      DELIVER_PACKED [metas][envelope] x n, n = 1..FKS_BUS_DELIVER_BATCH_MAX: to replicas
 *                that joined with FKS_BUS_JOIN_PACKED. metas holds n records, in the order of
 *                the envelope frames: meta (as above), topic length u8, topic. One frame per
 *                message instead of two.
 *      DELIVER_BATCH [records][envelopes]: to replicas that joined with FKS_BUS_JOIN_BATCH.
 *                records holds n = 1..FKS_BUS_DELIVER_BATCH_MAX records: meta (as above),
 *                envelope size u32 (1..FKS_ENVELOPE_MAX_SIZE), topic length u8, topic;
 *                envelopes is the n envelopes end to end, in the records' order, their sizes
 *                adding up to its size exactly. Two frames per batch whatever its size: a
 *                frame costs each of the four threads it crosses about as much as 300 bytes.
 *      HEARTBEAT (no frames)
 *      ERROR     [code u8][text]                FKS_BUS_ERR_*
 *      DRAINED   (no frames)                    the answer to DRAIN: nothing is delivered to
 *                                               this replica after it (only a client that sent
 *                                               DRAIN gets it, so older clients never see it)
 *
 *  A delivery tag names one delivery of one message to one replica; acking a tag that is no
 *  longer in flight for that replica (it expired and went to someone else) is ignored. The
 *  event stream (FKS_BUS_STREAM_BIND, XPUB) carries plain two-frame envelopes [topic][envelope]
 *  and is described in docs/BUS.md together with the policies behind these commands.
 *
 *  The helpers below are static inline so that the broker, the client and the tests share
 *  one definition of what a valid name or frame is.
 */
#ifndef FKS_BUS_PROTOCOL_H
#define FKS_BUS_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FKS_BUS_SIGNATURE        0xFB
#define FKS_BUS_PROTO_VERSION    1
#define FKS_BUS_HDR_SIZE         3

/*  Commands, client to broker. */
#define FKS_BUS_PUBLISH          0x01
#define FKS_BUS_JOIN             0x02
#define FKS_BUS_ACK              0x03
#define FKS_BUS_REJECT           0x04
#define FKS_BUS_RELEASE          0x05
#define FKS_BUS_TOUCH            0x06
#define FKS_BUS_HEARTBEAT        0x07
#define FKS_BUS_LEAVE            0x08
#define FKS_BUS_DRAIN            0x09

/*  Commands, broker to client (HEARTBEAT is shared). */
#define FKS_BUS_WELCOME          0x81
#define FKS_BUS_DELIVER          0x82
#define FKS_BUS_DELIVER_PACKED   0x83
#define FKS_BUS_ERROR            0x84
#define FKS_BUS_DELIVER_BATCH    0x85
#define FKS_BUS_DRAINED          0x86

/*  ERROR codes. */
#define FKS_BUS_ERR_UNKNOWN      1      /* the broker does not know this peer: join again */
#define FKS_BUS_ERR_REFUSED      2      /* the JOIN was refused (bad group, prefix, window) */
#define FKS_BUS_ERR_SHUTDOWN     3      /* the broker is stopping: reconnect later */

/*  JOIN flags. */
#define FKS_BUS_JOIN_PACKED      0x1    /* send me DELIVER_PACKED */
#define FKS_BUS_JOIN_BATCH       0x2    /* send me DELIVER_BATCH (wins over PACKED) */
#define FKS_BUS_JOIN_FLAGS       0x3    /* every flag this version knows */

/*  REJECT actions. */
#define FKS_BUS_REJECT_RETRY     0      /* back of the queue, counts as an attempt */
#define FKS_BUS_REJECT_DEAD      1      /* dead letter now */

/*  Bounds on what a peer may send. */
#define FKS_BUS_GROUP_MAX        32     /* group name, incl. NUL: 1..31 chars [a-z0-9_-] */
#define FKS_BUS_PREFIX_MAX       64     /* type prefix, incl. NUL: 0..63 chars [a-z0-9._-] */
#define FKS_BUS_PREFIXES_MAX     16     /* prefixes per group */
#define FKS_BUS_NAME_MAX         64     /* a replica's name, incl. NUL, printable ASCII */
#define FKS_BUS_REASON_MAX       200    /* a reject reason, bytes (not NUL-terminated) */
#define FKS_BUS_TAGS_MAX         1024   /* tags in one ACK, RELEASE or TOUCH */
#define FKS_BUS_WINDOW_MAX       10000  /* credit window of one replica; also the most tags
                                           one LEAVE may carry */
#define FKS_BUS_DELIVER_BATCH_MAX 64    /* deliveries in one DELIVER */
#define FKS_BUS_META_SIZE        28     /* tag u64 + attempt u32 + id[16] */
#define FKS_BUS_ROUTING_ID_MAX   255    /* ZeroMQ's limit */

static inline void
fks_bus_put_u32 (uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24); p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);  p[3] = (uint8_t) v;
}

static inline uint32_t
fks_bus_get_u32 (const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
         | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static inline void
fks_bus_put_u64 (uint8_t *p, uint64_t v)
{
    fks_bus_put_u32 (p, (uint32_t) (v >> 32));
    fks_bus_put_u32 (p + 4, (uint32_t) v);
}

static inline uint64_t
fks_bus_get_u64 (const uint8_t *p)
{
    return ((uint64_t) fks_bus_get_u32 (p) << 32) | fks_bus_get_u32 (p + 4);
}

static inline void
fks_bus_put_hdr (uint8_t hdr[FKS_BUS_HDR_SIZE], uint8_t command)
{
    hdr[0] = FKS_BUS_SIGNATURE;
    hdr[1] = FKS_BUS_PROTO_VERSION;
    hdr[2] = command;
}

/*  A group name: 1..FKS_BUS_GROUP_MAX-1 bytes of [a-z0-9_-], starting with a letter (the
 *  `grp` columns of the database check the same). */
static inline bool
fks_bus_group_valid (const char *s, size_t len)
{
    if (len == 0 || len >= FKS_BUS_GROUP_MAX || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/*  A type prefix: 0..FKS_BUS_PREFIX_MAX-1 bytes of [a-z0-9._-]; empty means every type. */
static inline bool
fks_bus_prefix_valid (const char *s, size_t len)
{
    if (len >= FKS_BUS_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/*  A replica name: 0..FKS_BUS_NAME_MAX-1 bytes of printable ASCII without quotes or
 *  backslashes (it goes into logs). */
static inline bool
fks_bus_name_valid (const char *s, size_t len)
{
    if (len >= FKS_BUS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

#endif
