/*  auth.c - who may send webhooks: the shared secret, HMAC signatures, source addresses.
 *
 *  The secret is kept twice: as bytes for the HMAC key, and as its SHA-256 digest, against
 *  which every passphrase and token is compared (hash the candidate, CRYPTO_memcmp the two
 *  32-byte digests), so the comparison costs the same whatever the candidate's length or
 *  content. HMAC signatures are decoded from hex and compared with CRYPTO_memcmp too.
 *
 *  Header values come from the network, so every parser here is bounded: fixed maximum lengths,
 *  fixed maximum counts, no allocation. Addresses go through inet_pton; IPv4-mapped IPv6
 *  addresses are folded into IPv4 so that "::ffff:52.89.214.238" matches the TradingView preset.
 *
 *  Nothing in this file logs: the gateway records security events from the results, which hold
 *  no secret.
 */
#include "gateway/auth.h"

#include <arpa/inet.h>
#include <assert.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define S_DIGEST_SIZE 32

const char *const fks_auth_tradingview_addrs[] = {
    "52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7", NULL };

// ---------------------------------------------------------------------------------------------
//  Results

int
fks_auth_result_status (fks_auth_result_t result)
{
    switch (result) {
        case FKS_AUTH_OK:
            return 0;
        case FKS_AUTH_BAD_ADDRESS:
        case FKS_AUTH_SOURCE_DENIED:
            return 403;
        default:
            return 401;
    }
}

const char *
fks_auth_result_kind (fks_auth_result_t result)
{
    switch (result) {
        case FKS_AUTH_OK:                 return "";
        case FKS_AUTH_NO_CREDENTIALS:     return "auth.missing";
        case FKS_AUTH_BAD_SECRET:         return "auth.bad_secret";
        case FKS_AUTH_HMAC_INCOMPLETE:    return "auth.hmac_incomplete";
        case FKS_AUTH_HMAC_BAD_TIMESTAMP: return "auth.hmac_bad_timestamp";
        case FKS_AUTH_HMAC_BAD_FORMAT:    return "auth.hmac_bad_format";
        case FKS_AUTH_HMAC_EXPIRED:       return "auth.hmac_expired";
        case FKS_AUTH_HMAC_FUTURE:        return "auth.hmac_future";
        case FKS_AUTH_HMAC_MISMATCH:      return "auth.hmac_mismatch";
        case FKS_AUTH_BAD_ADDRESS:        return "source.bad_address";
        case FKS_AUTH_SOURCE_DENIED:      return "source.denied";
    }
    return "auth.unknown";
}

const char *
fks_auth_result_message (fks_auth_result_t result)
{
    switch (result) {
        case FKS_AUTH_OK:
            return "authenticated";
        case FKS_AUTH_NO_CREDENTIALS:
            return "authentication required: send the passphrase in the body, ?token= in the "
                   "URL, or X-FKS-Timestamp and X-FKS-Signature headers";
        case FKS_AUTH_BAD_SECRET:
            return "the passphrase or token is not valid";
        case FKS_AUTH_HMAC_INCOMPLETE:
            return "X-FKS-Timestamp and X-FKS-Signature must be sent together";
        case FKS_AUTH_HMAC_BAD_TIMESTAMP:
            return "X-FKS-Timestamp must be Unix time in seconds (decimal digits)";
        case FKS_AUTH_HMAC_BAD_FORMAT:
            return "X-FKS-Signature must be sha256=<64 hex digits>";
        case FKS_AUTH_HMAC_EXPIRED:
            return "X-FKS-Timestamp is older than the replay window";
        case FKS_AUTH_HMAC_FUTURE:
            return "X-FKS-Timestamp is ahead of the server clock by more than the replay "
                   "window (it must be Unix seconds)";
        case FKS_AUTH_HMAC_MISMATCH:
            return "X-FKS-Signature does not match the body";
        case FKS_AUTH_BAD_ADDRESS:
            return "the client address could not be read";
        case FKS_AUTH_SOURCE_DENIED:
            return "this source address is not allowed";
    }
    return "authentication failed";
}

// ---------------------------------------------------------------------------------------------
//  Addresses

static bool s_is_digit (char ch) { return ch >= '0' && ch <= '9'; }
static bool s_is_ows (char ch) { return ch == ' ' || ch == '\t'; }

static void
s_unmap (fks_ipaddr_t *addr)
{
    static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (addr->family == AF_INET6 && memcmp (addr->bytes, prefix, 12) == 0) {
        memmove (addr->bytes, addr->bytes + 12, 4);
        memset (addr->bytes + 4, 0, 12);
        addr->family = AF_INET;
    }
}

int
fks_ipaddr_parse (const char *text, size_t len, fks_ipaddr_t *out)
{
    assert (out);
    if (!text || len == 0 || len >= FKS_AUTH_ADDR_TEXT_MAX)
        return -1;
    char buf[FKS_AUTH_ADDR_TEXT_MAX];
    memcpy (buf, text, len);
    buf[len] = '\0';
    if (strlen (buf) != len)
        return -1;
    fks_ipaddr_t a;
    memset (&a, 0, sizeof a);
    if (memchr (buf, ':', len)) {
        a.family = AF_INET6;
        if (inet_pton (AF_INET6, buf, a.bytes) != 1)
            return -1;
        s_unmap (&a);
    }
    else {
        a.family = AF_INET;
        if (inet_pton (AF_INET, buf, a.bytes) != 1)
            return -1;
    }
    *out = a;
    return 0;
}

void
fks_ipaddr_format (const fks_ipaddr_t *addr, char out[FKS_AUTH_ADDR_TEXT_MAX])
{
    if (!inet_ntop (addr->family, addr->bytes, out, FKS_AUTH_ADDR_TEXT_MAX))
        snprintf (out, FKS_AUTH_ADDR_TEXT_MAX, "?");
}

bool
fks_ipaddr_equal (const fks_ipaddr_t *a, const fks_ipaddr_t *b)
{
    return a->family == b->family
        && memcmp (a->bytes, b->bytes, a->family == AF_INET ? 4 : 16) == 0;
}

// ---------------------------------------------------------------------------------------------
//  CIDR lists

typedef struct {
    fks_ipaddr_t net;
    unsigned prefix;
} s_cidr_t;

struct fks_cidr_list_t {
    size_t n;
    s_cidr_t e[FKS_AUTH_CIDR_MAX];
};

fks_cidr_list_t *
fks_cidr_list_new (void)
{
    return calloc (1, sizeof (fks_cidr_list_t));
}

void
fks_cidr_list_destroy (fks_cidr_list_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

size_t
fks_cidr_list_size (const fks_cidr_list_t *self)
{
    return self ? self->n : 0;
}

//  True when the first prefix bits of a and b agree.
static bool
s_prefix_match (const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp (a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t) (0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

static bool
s_host_bits_zero (const fks_ipaddr_t *net, unsigned prefix)
{
    unsigned bits = net->family == AF_INET ? 32 : 128;
    for (unsigned i = prefix; i < bits; i++)
        if (net->bytes[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

static int
s_cidr_parse (const char *item, size_t len, s_cidr_t *out, char *why, size_t cap)
{
    const char *slash = memchr (item, '/', len);
    size_t alen = slash ? (size_t) (slash - item) : len;
    fks_ipaddr_t a;
    bool mapped = false;
    if (alen > 0 && alen < FKS_AUTH_ADDR_TEXT_MAX && memchr (item, ':', alen)) {
        //  Parse without unmapping first, to adjust the prefix of ::ffff:a.b.c.d/n.
        char buf[FKS_AUTH_ADDR_TEXT_MAX];
        memcpy (buf, item, alen);
        buf[alen] = '\0';
        memset (&a, 0, sizeof a);
        a.family = AF_INET6;
        if (inet_pton (AF_INET6, buf, a.bytes) != 1) {
            snprintf (why, cap, "not an IPv4 or IPv6 address");
            return -1;
        }
        fks_ipaddr_t m = a;
        s_unmap (&m);
        mapped = m.family == AF_INET;
    }
    else
    if (fks_ipaddr_parse (item, alen, &a) != 0) {
        snprintf (why, cap, "not an IPv4 or IPv6 address");
        return -1;
    }
    unsigned bits = a.family == AF_INET ? 32 : 128;
    unsigned prefix = bits;
    if (slash) {
        size_t plen = len - alen - 1;
        if (plen == 0 || plen > 3) {
            snprintf (why, cap, "the prefix length must be 0-%u", bits);
            return -1;
        }
        prefix = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!s_is_digit (slash[1 + i])) {
                snprintf (why, cap, "the prefix length must be 0-%u", bits);
                return -1;
            }
            prefix = prefix * 10 + (unsigned) (slash[1 + i] - '0');
        }
        if (prefix > bits) {
            snprintf (why, cap, "the prefix length must be 0-%u", bits);
            return -1;
        }
    }
    if (!s_host_bits_zero (&a, prefix)) {
        snprintf (why, cap, "bits are set after the /%u prefix", prefix);
        return -1;
    }
    if (mapped && prefix >= 96) {
        s_unmap (&a);
        prefix -= 96;
    }
    out->net = a;
    out->prefix = prefix;
    return 0;
}

static int
s_list_push (fks_cidr_list_t *list, const s_cidr_t *entry, char *err, size_t cap)
{
    if (list->n == FKS_AUTH_CIDR_MAX) {
        if (cap)
            snprintf (err, cap, "at most %d address ranges may be listed", FKS_AUTH_CIDR_MAX);
        return -1;
    }
    list->e[list->n++] = *entry;
    return 0;
}

int
fks_cidr_list_add (fks_cidr_list_t *self, const char *text, char *err, size_t cap)
{
    assert (self);
    if (cap)
        err[0] = '\0';
    if (!text)
        return 0;
    size_t len = strnlen (text, FKS_AUTH_LIST_TEXT_MAX + 1);
    if (len > FKS_AUTH_LIST_TEXT_MAX) {
        if (cap)
            snprintf (err, cap, "the address list is longer than %d bytes",
                      FKS_AUTH_LIST_TEXT_MAX);
        return -1;
    }
    //  Work on a copy so that an error leaves the list unchanged.
    fks_cidr_list_t *next = malloc (sizeof *next);
    if (!next) {
        if (cap)
            snprintf (err, cap, "out of memory");
        return -1;
    }
    *next = *self;
    size_t i = 0;
    while (i < len) {
        while (i < len && (s_is_ows (text[i]) || text[i] == ',' || text[i] == '\n'
                           || text[i] == '\r'))
            i++;
        size_t start = i;
        while (i < len && !(s_is_ows (text[i]) || text[i] == ',' || text[i] == '\n'
                            || text[i] == '\r'))
            i++;
        size_t n = i - start;
        if (n == 0)
            continue;
        const char *item = text + start;
        if (n == 11 && strncasecmp (item, "tradingview", 11) == 0) {
            for (size_t k = 0; fks_auth_tradingview_addrs[k]; k++) {
                s_cidr_t e;
                char why[80];
                const char *tv = fks_auth_tradingview_addrs[k];
                if (s_cidr_parse (tv, strlen (tv), &e, why, sizeof why) != 0
                    || s_list_push (next, &e, err, cap) != 0)
                    goto fail;
            }
            continue;
        }
        s_cidr_t e;
        char why[80];
        if (s_cidr_parse (item, n, &e, why, sizeof why) != 0) {
            if (cap)
                snprintf (err, cap, "'%.*s': %s", (int) (n > 64 ? 64 : n), item, why);
            goto fail;
        }
        if (s_list_push (next, &e, err, cap) != 0)
            goto fail;
    }
    *self = *next;
    free (next);
    return 0;
fail:
    free (next);
    return -1;
}

bool
fks_cidr_list_contains (const fks_cidr_list_t *self, const fks_ipaddr_t *addr)
{
    if (!self || !addr)
        return false;
    for (size_t i = 0; i < self->n; i++) {
        const s_cidr_t *e = &self->e[i];
        if (e->net.family == addr->family
            && s_prefix_match (e->net.bytes, addr->bytes, e->prefix))
            return true;
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
//  Client address

//  A port: 1-5 digits, at most 65535.
static int
s_port (const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!s_is_digit (s[i]))
            return -1;
        v = v * 10 + (unsigned) (s[i] - '0');
    }
    return v <= 65535 ? 0 : -1;
}

//  One X-Forwarded-For entry: an address, "[v6]", "[v6]:port" or "v4:port".
static int
s_xff_entry (const char *s, size_t len, fks_ipaddr_t *out)
{
    if (len > 0 && s[0] == '[') {
        const char *close = memchr (s, ']', len);
        if (!close)
            return -1;
        size_t alen = (size_t) (close - s) - 1;
        size_t rest = len - alen - 2;
        const char *port = close + 1;
        if (rest > 0 && (port[0] != ':' || s_port (port + 1, rest - 1) != 0))
            return -1;
        if (!memchr (s + 1, ':', alen))
            return -1;                      // brackets hold IPv6 only
        return fks_ipaddr_parse (s + 1, alen, out);
    }
    //  "a.b.c.d:port": one colon, after a dot. IPv6 has several colons and no brackets here.
    const char *colon = memchr (s, ':', len);
    size_t head = colon ? (size_t) (colon - s) : len;
    if (colon && memchr (s, '.', head) && !memchr (colon + 1, ':', len - head - 1)) {
        if (s_port (colon + 1, len - head - 1) != 0)
            return -1;
        return fks_ipaddr_parse (s, head, out);
    }
    return fks_ipaddr_parse (s, len, out);
}

fks_auth_result_t
fks_auth_client_addr (const char *peer, const char *forwarded_for,
                      const fks_cidr_list_t *trusted_proxies, fks_ipaddr_t *client)
{
    assert (client);
    fks_ipaddr_t peer_addr;
    if (!peer || fks_ipaddr_parse (peer, strnlen (peer, FKS_AUTH_ADDR_TEXT_MAX), &peer_addr))
        return FKS_AUTH_BAD_ADDRESS;
    if (!forwarded_for || !fks_cidr_list_contains (trusted_proxies, &peer_addr)) {
        *client = peer_addr;
        return FKS_AUTH_OK;
    }
    size_t end = strnlen (forwarded_for, FKS_AUTH_XFF_MAX + 1);
    if (end > FKS_AUTH_XFF_MAX)
        return FKS_AUTH_BAD_ADDRESS;
    const char *s = forwarded_for;
    size_t hops = 0;
    fks_ipaddr_t last;
    //  Right to left: each hop appended the address it saw, so the right-most entries are the
    //  ones our own proxies wrote; the first one that is not a trusted proxy is the client.
    while (end > 0) {
        size_t start = end;
        while (start > 0 && s[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && s_is_ows (s[a]))
            a++;
        while (b > a && s_is_ows (s[b - 1]))
            b--;
        end = start > 0 ? start - 1 : 0;
        if (a == b)
            continue;                       // empty list element
        if (++hops > FKS_AUTH_XFF_HOPS_MAX)
            return FKS_AUTH_BAD_ADDRESS;
        if (s_xff_entry (s + a, b - a, &last) != 0)
            return FKS_AUTH_BAD_ADDRESS;
        if (!fks_cidr_list_contains (trusted_proxies, &last)) {
            *client = last;
            return FKS_AUTH_OK;
        }
    }
    //  Every entry is a trusted proxy (or the header is empty).
    *client = hops ? last : peer_addr;
    return FKS_AUTH_OK;
}

// ---------------------------------------------------------------------------------------------
//  HMAC

//  HMAC-SHA256 (key, "<timestamp>.<body>") into md. mac may be NULL (fetched here).
static int
s_hmac (EVP_MAC *mac, const void *key, size_t key_len, const char *ts, size_t ts_len,
        const void *body, size_t body_len, uint8_t md[S_DIGEST_SIZE])
{
    EVP_MAC *own = NULL;
    if (!mac)
        mac = own = EVP_MAC_fetch (NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (!mac)
        return -1;
    int rc = -1;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new (mac);
    char digest[] = OSSL_DIGEST_NAME_SHA2_256;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string (OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end () };
    size_t out_len = 0;
    if (ctx
        && EVP_MAC_init (ctx, key, key_len, params) == 1
        && EVP_MAC_update (ctx, (const unsigned char *) ts, ts_len) == 1
        && EVP_MAC_update (ctx, (const unsigned char *) ".", 1) == 1
        && (body_len == 0 || EVP_MAC_update (ctx, body, body_len) == 1)
        && EVP_MAC_final (ctx, md, &out_len, S_DIGEST_SIZE) == 1
        && out_len == S_DIGEST_SIZE)
        rc = 0;
    EVP_MAC_CTX_free (ctx);
    EVP_MAC_free (own);
    return rc;
}

int
fks_auth_hmac_sign (const void *secret, size_t secret_len, const char *timestamp,
                    const void *body, size_t body_len, char out[FKS_AUTH_SIGNATURE_MAX])
{
    if (!secret || secret_len == 0 || !timestamp || (!body && body_len))
        return -1;
    uint8_t md[S_DIGEST_SIZE];
    if (s_hmac (NULL, secret, secret_len, timestamp, strlen (timestamp), body, body_len, md))
        return -1;
    static const char hex[] = "0123456789abcdef";
    memcpy (out, "sha256=", 7);
    for (size_t i = 0; i < S_DIGEST_SIZE; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[7 + 2 * S_DIGEST_SIZE] = '\0';
    OPENSSL_cleanse (md, sizeof md);
    return 0;
}

//  Header value without surrounding white space; -1 when longer than FKS_AUTH_HEADER_MAX.
static int
s_header_trim (const char *value, const char **start, size_t *len)
{
    size_t n = strnlen (value, FKS_AUTH_HEADER_MAX + 1);
    if (n > FKS_AUTH_HEADER_MAX)
        return -1;
    size_t a = 0;
    while (a < n && s_is_ows (value[a]))
        a++;
    while (n > a && s_is_ows (value[n - 1]))
        n--;
    *start = value + a;
    *len = n - a;
    return 0;
}

static int
s_hex_digit (char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

// ---------------------------------------------------------------------------------------------
//  The authenticator

struct fks_auth_t {
    uint8_t *secret;                    /* HMAC key */
    size_t secret_len;
    uint8_t secret_digest[S_DIGEST_SIZE];
    int64_t window_s;
    EVP_MAC *mac;
    fks_cidr_list_t *allow;             /* NULL: every source */
    fks_cidr_list_t *proxies;           /* NULL: none trusted */
};

static int
s_sha256 (const void *data, size_t len, uint8_t md[S_DIGEST_SIZE])
{
    unsigned int n = 0;
    if (EVP_Digest (data, len, md, &n, EVP_sha256 (), NULL) != 1 || n != S_DIGEST_SIZE)
        return -1;
    return 0;
}

fks_auth_t *
fks_auth_new (const void *secret, size_t secret_len, int64_t replay_window_s)
{
    if (!secret || secret_len == 0 || replay_window_s <= 0)
        return NULL;
    fks_auth_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->secret = malloc (secret_len);
    self->mac = EVP_MAC_fetch (NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (!self->secret || !self->mac || s_sha256 (secret, secret_len, self->secret_digest)) {
        fks_auth_destroy (&self);
        return NULL;
    }
    memcpy (self->secret, secret, secret_len);
    self->secret_len = secret_len;
    self->window_s = replay_window_s;
    return self;
}

void
fks_auth_destroy (fks_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_auth_t *self = *self_p;
    if (self->secret) {
        OPENSSL_cleanse (self->secret, self->secret_len);
        free (self->secret);
    }
    OPENSSL_cleanse (self->secret_digest, sizeof self->secret_digest);
    EVP_MAC_free (self->mac);
    fks_cidr_list_destroy (&self->allow);
    fks_cidr_list_destroy (&self->proxies);
    free (self);
    *self_p = NULL;
}

static int
s_set_list (fks_cidr_list_t **slot, const char *text, char *err, size_t cap)
{
    fks_cidr_list_t *list = fks_cidr_list_new ();
    if (!list) {
        if (cap)
            snprintf (err, cap, "out of memory");
        return -1;
    }
    if (fks_cidr_list_add (list, text, err, cap) != 0) {
        fks_cidr_list_destroy (&list);
        return -1;
    }
    if (fks_cidr_list_size (list) == 0)
        fks_cidr_list_destroy (&list);
    fks_cidr_list_destroy (slot);
    *slot = list;
    return 0;
}

int
fks_auth_set_allowlist (fks_auth_t *self, const char *text, char *err, size_t cap)
{
    assert (self);
    return s_set_list (&self->allow, text, err, cap);
}

int
fks_auth_set_trusted_proxies (fks_auth_t *self, const char *text, char *err, size_t cap)
{
    assert (self);
    return s_set_list (&self->proxies, text, err, cap);
}

fks_auth_result_t
fks_auth_check_secret (const fks_auth_t *self, const char *given, size_t given_len)
{
    assert (self);
    if (!given)
        return FKS_AUTH_NO_CREDENTIALS;
    uint8_t md[S_DIGEST_SIZE];
    if (s_sha256 (given, given_len, md) != 0)
        return FKS_AUTH_BAD_SECRET;
    int diff = CRYPTO_memcmp (md, self->secret_digest, S_DIGEST_SIZE);
    OPENSSL_cleanse (md, sizeof md);
    return diff == 0 ? FKS_AUTH_OK : FKS_AUTH_BAD_SECRET;
}

size_t
fks_auth_redact (const fks_auth_t *self, char *s, size_t len)
{
    assert (self);
    size_t n = 0;
    char *p = s;
    size_t left = len;
    char *hit;
    while (left >= self->secret_len
           && (hit = memmem (p, left, self->secret, self->secret_len))) {
        memset (hit, '*', self->secret_len);
        n++;
        left -= (size_t) (hit - p) + self->secret_len;
        p = hit + self->secret_len;
    }
    return n;
}

fks_auth_result_t
fks_auth_check_hmac (const fks_auth_t *self, const char *timestamp, const char *signature,
                     const void *body, size_t body_len, int64_t now_s)
{
    assert (self);
    assert (body || body_len == 0);
    if (!timestamp && !signature)
        return FKS_AUTH_NO_CREDENTIALS;
    if (!timestamp || !signature)
        return FKS_AUTH_HMAC_INCOMPLETE;

    //  Timestamp: 1-15 decimal digits (Unix seconds; no sign, no fraction).
    const char *ts;
    size_t ts_len;
    if (s_header_trim (timestamp, &ts, &ts_len) != 0 || ts_len == 0 || ts_len > 15)
        return FKS_AUTH_HMAC_BAD_TIMESTAMP;
    int64_t t = 0;
    for (size_t i = 0; i < ts_len; i++) {
        if (!s_is_digit (ts[i]))
            return FKS_AUTH_HMAC_BAD_TIMESTAMP;
        t = t * 10 + (ts[i] - '0');
    }

    //  Signature: sha256=<64 hex digits>.
    const char *sig;
    size_t sig_len;
    if (s_header_trim (signature, &sig, &sig_len) != 0 || sig_len != 7 + 2 * S_DIGEST_SIZE
        || strncasecmp (sig, "sha256=", 7) != 0)
        return FKS_AUTH_HMAC_BAD_FORMAT;
    uint8_t given[S_DIGEST_SIZE];
    for (size_t i = 0; i < S_DIGEST_SIZE; i++) {
        int hi = s_hex_digit (sig[7 + 2 * i]), lo = s_hex_digit (sig[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return FKS_AUTH_HMAC_BAD_FORMAT;
        given[i] = (uint8_t) (hi << 4 | lo);
    }

    if (t < now_s - self->window_s)
        return FKS_AUTH_HMAC_EXPIRED;
    if (t > now_s + self->window_s)
        return FKS_AUTH_HMAC_FUTURE;

    uint8_t expected[S_DIGEST_SIZE];
    if (s_hmac (self->mac, self->secret, self->secret_len, ts, ts_len, body, body_len,
                expected) != 0)
        return FKS_AUTH_HMAC_MISMATCH;
    int diff = CRYPTO_memcmp (expected, given, S_DIGEST_SIZE);
    OPENSSL_cleanse (expected, sizeof expected);
    return diff == 0 ? FKS_AUTH_OK : FKS_AUTH_HMAC_MISMATCH;
}

fks_auth_result_t
fks_auth_check_source (const fks_auth_t *self, const char *peer, const char *forwarded_for,
                       fks_ipaddr_t *client)
{
    assert (self);
    fks_ipaddr_t addr;
    fks_auth_result_t rc = fks_auth_client_addr (peer, forwarded_for, self->proxies, &addr);
    if (rc != FKS_AUTH_OK)
        return rc;
    if (client)
        *client = addr;
    if (self->allow && !fks_cidr_list_contains (self->allow, &addr))
        return FKS_AUTH_SOURCE_DENIED;
    return FKS_AUTH_OK;
}

fks_auth_result_t
fks_auth_webhook (const fks_auth_t *self, const fks_auth_request_t *req, int64_t now_s,
                  fks_ipaddr_t *client)
{
    assert (self);
    assert (req);
    fks_auth_result_t rc = fks_auth_check_source (self, req->peer, req->forwarded_for, client);
    if (rc != FKS_AUTH_OK)
        return rc;

    bool hmac_given = req->timestamp || req->signature;
    fks_auth_result_t hmac_rc = FKS_AUTH_NO_CREDENTIALS;
    if (hmac_given) {
        hmac_rc = fks_auth_check_hmac (self, req->timestamp, req->signature, req->body,
                                       req->body_len, now_s);
        if (hmac_rc == FKS_AUTH_OK)
            return FKS_AUTH_OK;
    }
    bool secret_given = false;
    if (req->token) {
        secret_given = true;
        if (fks_auth_check_secret (self, req->token, req->token_len) == FKS_AUTH_OK)
            return FKS_AUTH_OK;
    }
    if (req->passphrase) {
        secret_given = true;
        if (fks_auth_check_secret (self, req->passphrase, req->passphrase_len) == FKS_AUTH_OK)
            return FKS_AUTH_OK;
    }
    if (hmac_given)
        return hmac_rc;
    return secret_given ? FKS_AUTH_BAD_SECRET : FKS_AUTH_NO_CREDENTIALS;
}
