/*  auth.h - who may send webhooks: the shared secret, HMAC signatures, source addresses.
 *
 *  A webhook is authentic when it carries any one of: the secret as `passphrase` in the body
 *  (TradingView cannot do more), the secret as `?token=` in the URL, or an HMAC signature for
 *  scripts:
 *
 *      X-FKS-Timestamp: <unix seconds>
 *      X-FKS-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *
 *  refused when the timestamp is outside the replay window (300 s by default, in both
 *  directions). Secrets compare in constant time: both sides are hashed with SHA-256 and the
 *  digests compared with CRYPTO_memcmp, so neither the content nor the length of the secret
 *  leaks through timing. Nothing here logs, and no result or message holds a secret.
 *
 *  Optionally the source address must be in an allowlist of CIDR ranges (IPv4 and IPv6, and the
 *  preset "tradingview": TradingView's four alert servers). Behind a TLS proxy the peer is the
 *  proxy, so X-Forwarded-For is honoured only when the peer is a configured trusted proxy: the
 *  client is then the right-most address in the header that is not itself a trusted proxy.
 *
 *  Every check returns an fks_auth_result_t; the gateway maps it to an HTTP status
 *  (fks_auth_result_status: 401 or 403) and a security-event kind (fks_auth_result_kind).
 *  An fks_auth_t is configured once and then only read: checks are thread-safe.
 */
#ifndef FKS_AUTH_H
#define FKS_AUTH_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FKS_AUTH_REPLAY_WINDOW_S   300      /* default replay window */
#define FKS_AUTH_CIDR_MAX          256      /* entries in one list */
#define FKS_AUTH_LIST_TEXT_MAX     8192     /* bytes of a list as configured */
#define FKS_AUTH_XFF_MAX           8192     /* bytes of X-Forwarded-For looked at */
#define FKS_AUTH_XFF_HOPS_MAX      32       /* addresses of X-Forwarded-For looked at */
#define FKS_AUTH_ADDR_TEXT_MAX     64       /* one address as text, incl. NUL */
#define FKS_AUTH_HEADER_MAX        256      /* X-FKS-Timestamp / X-FKS-Signature */

typedef enum {
    FKS_AUTH_OK = 0,
    FKS_AUTH_NO_CREDENTIALS,        /* 401: no passphrase, token or signature at all */
    FKS_AUTH_BAD_SECRET,            /* 401: passphrase or token wrong */
    FKS_AUTH_HMAC_INCOMPLETE,       /* 401: one of the two HMAC headers without the other */
    FKS_AUTH_HMAC_BAD_TIMESTAMP,    /* 401: X-FKS-Timestamp is not decimal unix seconds */
    FKS_AUTH_HMAC_BAD_FORMAT,       /* 401: X-FKS-Signature is not sha256=<64 hex> */
    FKS_AUTH_HMAC_EXPIRED,          /* 401: timestamp older than the replay window */
    FKS_AUTH_HMAC_FUTURE,           /* 401: timestamp further ahead than the replay window */
    FKS_AUTH_HMAC_MISMATCH,         /* 401: signature does not match */
    FKS_AUTH_BAD_ADDRESS,           /* 403: peer or X-Forwarded-For address unreadable */
    FKS_AUTH_SOURCE_DENIED          /* 403: client address not in the allowlist */
} fks_auth_result_t;

/*  0 for FKS_AUTH_OK, 401 for a credential problem, 403 for a source problem. */
int fks_auth_result_status (fks_auth_result_t result);

/*  The security-event kind, e.g. "auth.bad_secret", "auth.hmac_expired", "source.denied"
 *  (matches security_events.kind's pattern); "" for FKS_AUTH_OK. */
const char *fks_auth_result_kind (fks_auth_result_t result);

/*  An English sentence for the 401/403 body, naming no secret. */
const char *fks_auth_result_message (fks_auth_result_t result);

// ---------------------------------------------------------------------------------------------
//  Addresses and CIDR lists

/*  An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are stored as IPv4,
 *  so one allowlist entry covers both spellings. */
typedef struct {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t bytes[16];          /* network order; the first 4 for AF_INET */
} fks_ipaddr_t;

/*  Parses an address of len bytes (inet_pton forms, no port, no brackets). 0 or -1. */
int fks_ipaddr_parse (const char *text, size_t len, fks_ipaddr_t *out);

/*  Text form into out (FKS_AUTH_ADDR_TEXT_MAX bytes). */
void fks_ipaddr_format (const fks_ipaddr_t *addr, char out[FKS_AUTH_ADDR_TEXT_MAX]);

bool fks_ipaddr_equal (const fks_ipaddr_t *a, const fks_ipaddr_t *b);

/*  A list of CIDR ranges, at most FKS_AUTH_CIDR_MAX. */
typedef struct fks_cidr_list_t fks_cidr_list_t;

fks_cidr_list_t *fks_cidr_list_new (void);
void fks_cidr_list_destroy (fks_cidr_list_t **self_p);

/*  Adds entries from text: items separated by commas and/or white space, each an address
 *  ("52.89.214.238", "2001:db8::1"), a range ("10.0.0.0/8", "2001:db8::/32"; host bits must
 *  be zero) or the preset "tradingview". On error returns -1 with a message naming the bad item
 *  in err (cap bytes) and leaves the list as it was. Empty text adds nothing and returns 0. */
int fks_cidr_list_add (fks_cidr_list_t *self, const char *text, char *err, size_t cap);

size_t fks_cidr_list_size (const fks_cidr_list_t *self);

/*  True when addr is inside one of the ranges. */
bool fks_cidr_list_contains (const fks_cidr_list_t *self, const fks_ipaddr_t *addr);

/*  TradingView's alert servers, the "tradingview" preset, as a NULL-terminated array. */
extern const char *const fks_auth_tradingview_addrs[];

/*  The client address of a request: the peer, unless the peer is in trusted_proxies (may be
 *  NULL: none) and forwarded_for (X-Forwarded-For, all its values joined by commas in order;
 *  may be NULL) names addresses; then the right-most address that is not a trusted proxy, or
 *  the left-most one when all are. Entries may carry a port ("1.2.3.4:5678", "[::1]:80").
 *  Only the right-most FKS_AUTH_XFF_HOPS_MAX entries and FKS_AUTH_XFF_MAX bytes are looked at;
 *  an unreadable entry on the way, an unreadable peer, or a header that runs past the limits
 *  before a client is found gives FKS_AUTH_BAD_ADDRESS. */
fks_auth_result_t fks_auth_client_addr (const char *peer, const char *forwarded_for,
                                        const fks_cidr_list_t *trusted_proxies,
                                        fks_ipaddr_t *client);

// ---------------------------------------------------------------------------------------------
//  HMAC signatures

#define FKS_AUTH_SIGNATURE_MAX 72           /* "sha256=" + 64 hex + NUL */

/*  The X-FKS-Signature value for a request: "sha256=<hex>" into out. For scripts and tests.
 *  timestamp is the decimal X-FKS-Timestamp text. 0 or -1. */
int fks_auth_hmac_sign (const void *secret, size_t secret_len, const char *timestamp,
                        const void *body, size_t body_len, char out[FKS_AUTH_SIGNATURE_MAX]);

// ---------------------------------------------------------------------------------------------
//  The webhook authenticator

typedef struct fks_auth_t fks_auth_t;

/*  A new authenticator for secret (secret_len bytes, at least 1; copied, and wiped on destroy)
 *  with the replay window in seconds (> 0; FKS_AUTH_REPLAY_WINDOW_S is the default). Without
 *  an allowlist every source is allowed and no proxy is trusted. NULL on bad arguments. */
fks_auth_t *fks_auth_new (const void *secret, size_t secret_len, int64_t replay_window_s);
void fks_auth_destroy (fks_auth_t **self_p);

/*  Sets the source allowlist (fks_cidr_list_add syntax; "" or NULL removes it) and the
 *  trusted proxies. 0, or -1 with err and no change. Call before sharing self between threads. */
int fks_auth_set_allowlist (fks_auth_t *self, const char *text, char *err, size_t cap);
int fks_auth_set_trusted_proxies (fks_auth_t *self, const char *text, char *err, size_t cap);

/*  Checks a passphrase or token (given_len bytes) against the secret in constant time.
 *  FKS_AUTH_OK or FKS_AUTH_BAD_SECRET; NULL given gives FKS_AUTH_NO_CREDENTIALS. */
fks_auth_result_t fks_auth_check_secret (const fks_auth_t *self, const char *given,
                                         size_t given_len);

/*  Overwrites with '*' every verbatim occurrence of the secret in s (len bytes), wherever a
 *  sender put it (a comment, a strategy name, a body authenticated by ?token=), so that it
 *  is not stored, published or answered. Returns how many it overwrote. */
size_t fks_auth_redact (const fks_auth_t *self, char *s, size_t len);

/*  Checks the HMAC headers (NULL when absent) against body at time now_s (unix seconds).
 *  Both absent gives FKS_AUTH_NO_CREDENTIALS; otherwise OK or the HMAC error, checked in this
 *  order: incomplete, bad timestamp, bad format, expired, future, mismatch. */
fks_auth_result_t fks_auth_check_hmac (const fks_auth_t *self, const char *timestamp,
                                       const char *signature, const void *body,
                                       size_t body_len, int64_t now_s);

/*  Resolves the client address (fks_auth_client_addr with the trusted proxies) and checks it
 *  against the allowlist. client (may be NULL) receives the address whenever it could be read,
 *  also when it is refused, for the security event. */
fks_auth_result_t fks_auth_check_source (const fks_auth_t *self, const char *peer,
                                         const char *forwarded_for, fks_ipaddr_t *client);

/*  Everything a webhook request offers for authentication. Absent items are NULL. */
typedef struct {
    const char *peer;               /* remote address of the connection */
    const char *forwarded_for;      /* X-Forwarded-For */
    const char *passphrase;         /* from the body (fks_alert_secret_t) */
    size_t passphrase_len;
    const char *token;              /* ?token=, already URL-decoded */
    size_t token_len;
    const char *timestamp;          /* X-FKS-Timestamp */
    const char *signature;          /* X-FKS-Signature */
    const void *body;               /* raw body, for the HMAC */
    size_t body_len;
} fks_auth_request_t;

/*  The whole webhook check: the source first (403 before anything else), then the
 *  credentials: accepted when any one presented is valid. When none is, the result names the
 *  HMAC failure if an HMAC was presented, else FKS_AUTH_BAD_SECRET, else
 *  FKS_AUTH_NO_CREDENTIALS. client as in fks_auth_check_source. */
fks_auth_result_t fks_auth_webhook (const fks_auth_t *self, const fks_auth_request_t *req,
                                    int64_t now_s, fks_ipaddr_t *client);

#endif
