/*  inbox.h - the gateway's commit point: webhook alerts made durable in batches.
 *
 *  A request thread that has parsed and authenticated an alert fills an fks_inbox_item_t and
 *  calls fks_inbox_submit, which blocks until the alert is committed (or refused). Behind it,
 *  a few committer threads, each with its own PostgreSQL connection, take whatever items are
 *  waiting (up to batch_max) and insert them all with ONE statement: the inbox rows (ON
 *  CONFLICT (idem_key) DO NOTHING) and, for the rows that were new, their webhook.received
 *  envelopes in the events outbox. The statement runs in autocommit, so it is one round trip
 *  and one transaction per batch, and every item of the batch learns its outcome when it
 *  returns:
 *
 *    FKS_INBOX_ACCEPTED   the row is committed; item->result_id is item->id, item->seq the
 *                         envelope's events.seq
 *    FKS_INBOX_DUPLICATE  a row with the same idempotency key exists (committed earlier, by
 *                         another replica, or earlier in the same batch), or a row with its
 *                         prev_key received less than idem_window_ms ago; item->result_id is
 *                         that row's id
 *    FKS_INBOX_FAILED     nothing was committed, or (connection lost during the commit) the
 *                         outcome is unknown; the caller answers 503 and a retry of the same
 *                         alert is then either accepted or a duplicate, never a second row
 *
 *  Waiting is bounded: an item still queued after timeout_ms is withdrawn (never committed
 *  later) and fails; a statement that has not returned after timeout_ms is abandoned by closing
 *  its connection (the server then rolls it back unless it had already committed: the unknown
 *  outcome above). While PostgreSQL is unreachable, items fail at once instead of queueing, and
 *  a committer retries the connection every retry_ms. The queue is bounded by queue_max.
 *
 *  After a batch commits, and after its requests are woken, on_commit (if set) is called from
 *  the committer thread with copies of the accepted envelopes, for publishing on the bus; it
 *  must not block for long (use a publish that fails at once when the bus is down: the
 *  reconciler re-publishes outbox rows that nobody consumed).
 *
 *  fks_inbox_submit is thread-safe; items live on the caller's stack.
 */
#ifndef FKS_INBOX_H
#define FKS_INBOX_H

#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/id.h"

typedef struct fks_inbox_t fks_inbox_t;

typedef enum {
    FKS_INBOX_ACCEPTED = 0,
    FKS_INBOX_DUPLICATE,
    FKS_INBOX_FAILED
} fks_inbox_result_t;

typedef struct fks_inbox_item_t fks_inbox_item_t;

struct fks_inbox_item_t {
    /*  Inputs, owned by the caller, valid until fks_inbox_submit returns. */
    fks_id_t id;                    /* the new alert id (UUIDv7): inbox.id, the envelope's corr */
    fks_id_t event_id;              /* the envelope's id */
    int64_t ts_ns;                  /* the envelope's ts */
    const char *idem_key;           /* 1..256 bytes */
    const char *prev_key;           /* the same alert's key in the window before, or NULL:
                                       the item is also a duplicate of the row holding that
                                       key when it was received less than idem_window_ms ago
                                       (a sliding window over fixed-window keys) */
    const char *source;             /* e.g. "tradingview" */
    const char *content_type;       /* as received, at most 256 bytes */
    const void *body;               /* the raw request body */
    size_t body_len;
    const char *alert_json;         /* the parsed alert, a JSON object */
    size_t alert_json_len;
    const char *remote_addr;        /* client address, at most 64 bytes; may be NULL */
    const void *envelope;           /* the encoded webhook.received envelope */
    size_t envelope_len;

    /*  Outputs. */
    fks_id_t result_id;             /* accepted: id; duplicate: the existing row's id */
    int64_t seq;                    /* accepted: the envelope's events.seq */
    char why[160];                  /* failed: a short reason for the log (no secrets) */

    /*  Private to inbox.c. */
    fks_inbox_item_t *prev, *next;
    fks_inbox_item_t *chain;        /* in its batch: the leader whose key is its prev_key */
    int state;
    fks_inbox_result_t result;
    sem_t done;
};

/*  Called after a batch commits and before its requests are answered, with its accepted items'
 *  envelopes in commit order (valid during the call): types, envelopes and lengths of n items.
 *  It must not block: the answers wait for it. */
typedef void (fks_inbox_commit_fn) (void *arg, size_t n, const char *const *types,
                                    const void *const *envelopes, const size_t *lengths);

typedef struct {
    const char *pg_url;             /* required */
    int committers;                 /* committer threads (connections); 0: 2 */
    int batch_max;                  /* items per statement; 0: 256 */
    int queue_max;                  /* items waiting at most; 0: 4096 */
    int timeout_ms;                 /* queue wait, and statement wait, each; 0: 1000 */
    int retry_ms;                   /* reconnect interval while PostgreSQL is down; 0: 250 */
    int64_t idem_window_ms;         /* how recent a prev_key's row must be; 0: prev_key unused */
    fks_inbox_commit_fn *on_commit; /* may be NULL */
    void *on_commit_arg;
} fks_inbox_opts_t;

/*  Starts the committers (they connect in the background: PostgreSQL may be down at start).
 *  Returns NULL (logged) on a bad option or URL. */
fks_inbox_t *fks_inbox_new (const fks_inbox_opts_t *opts);

/*  Fails whatever is still queued, stops the committers after their current batch, closes
 *  the connections. NULL or *self_p NULL is a no-op. */
void fks_inbox_destroy (fks_inbox_t **self_p);

/*  Commits one alert (see above) and returns its outcome, filling item's outputs. Blocks for
 *  at most about 2 x timeout_ms. Thread-safe. */
fks_inbox_result_t fks_inbox_submit (fks_inbox_t *self, fks_inbox_item_t *item);

/*  True when at least one committer holds a working connection (for /ready). */
bool fks_inbox_ready (fks_inbox_t *self);

#endif
