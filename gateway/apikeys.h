/*  apikeys.h - REST API keys: made once, stored hashed, checked in constant time.
 *
 *  A key looks like fks_AbCd1234_<40 base62 characters>: "fks_" and 8 random characters form
 *  its prefix (public: shown in listings, used to find the row), the rest is the secret part.
 *  About 286 random bits in all, from OpenSSL's CSPRNG. The api_keys table stores the name,
 *  the prefix, the SHA-256 of the whole key and the scopes; the key itself is printed once at
 *  creation and never stored. Verification hashes the presented key and compares digests with
 *  CRYPTO_memcmp, so timing tells nothing about the stored keys.
 *
 *  FKS_ADMIN_KEY is the bootstrap key: any text (>= 24 bytes), every scope, not a row; it is
 *  compared the same way. Scopes: read (GET endpoints and the stream), trade (manual orders
 *  and cancels), admin (circuit breaker, everything). admin implies the other two and trade
 *  implies read.
 *
 *  The functions taking an fks_pg_t run on the caller's connection (one per thread).
 */
#ifndef FKS_APIKEYS_H
#define FKS_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/pg.h"

#define FKS_SCOPE_READ   1u
#define FKS_SCOPE_TRADE  2u
#define FKS_SCOPE_ADMIN  4u

#define FKS_APIKEY_PREFIX_LEN 12            /* "fks_" + 8 */
#define FKS_APIKEY_LEN        53            /* prefix + "_" + 40 */
#define FKS_APIKEY_NAME_MAX   65            /* incl. NUL: ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$ */
#define FKS_APIKEY_PRESENTED_MAX 512        /* longer Authorization values are refused */

#define FKS_APIKEY_OWNER_MAX  48            /* incl. NUL: "bootstrap" or "key:" + UUID */

typedef struct {
    char name[FKS_APIKEY_NAME_MAX];         /* "admin" for the bootstrap key */
    char prefix[FKS_APIKEY_PREFIX_LEN + 1]; /* "" for the bootstrap key */
    //  What to scope per-key state by (Idempotency-Keys): unique among keys and stable for a
    //  key's life, unlike name, which a new key may take again ("admin", or a revoked key's
    //  name). "key:<the row's id>" for a stored key, "bootstrap" for FKS_ADMIN_KEY (whatever
    //  its value, so rotating it keeps its scope).
    char owner[FKS_APIKEY_OWNER_MAX];
    unsigned scopes;                        /* FKS_SCOPE_* bits, as stored */
    bool bootstrap;
} fks_apikey_info_t;

/*  True when scopes grant `needed` (one FKS_SCOPE_* bit), with admin > trade > read. */
bool fks_apikey_allows (unsigned scopes, unsigned needed);

/*  Parses "read,trade" (commas, any order, no duplicates) into bits. 0 or -1. */
int fks_apikey_scopes_parse (const char *text, unsigned *out);

/*  "read,trade,admin" order, into out (cap >= 20). */
void fks_apikey_scopes_format (unsigned scopes, char *out, size_t cap);

/*  True when name fits api_keys.name's rule. */
bool fks_apikey_name_valid (const char *name);

/*  Creates a key named name with scopes and stores it. The key is written to key_out
 *  (FKS_APIKEY_LEN + 1 bytes) and exists nowhere else: show it once. Returns 0, 1 when an
 *  active key of that name exists, -1 on error (err filled). */
int fks_apikey_create (fks_pg_t *pg, const char *name, unsigned scopes,
                       char key_out[FKS_APIKEY_LEN + 1], char *err, size_t cap);

/*  Revokes one active key: the one called name, or when no active key is called that, the one
 *  whose prefix is name (a name may look like another key's prefix: only the named key goes).
 *  The revoked key's name, prefix and owner go to *revoked (may be NULL; scopes left 0) so
 *  the caller can say which key it was. 0 when revoked, 1 when no active key matches, -1 on
 *  error. */
int fks_apikey_revoke (fks_pg_t *pg, const char *name, fks_apikey_info_t *revoked, char *err,
                       size_t cap);

/*  Asks again about a key verified earlier (info as fks_apikeys_verify filled it), for whoever
 *  holds on to a verification, such as an open stream: 0 while the key is active and grants
 *  `needed`, 1 once it was revoked or no longer grants it, -1 (err filled) when the database
 *  could not be asked. The bootstrap key is not a row and needs no database: always 0. One
 *  query by the row's id; the key itself is not needed. */
int fks_apikey_recheck (fks_pg_t *pg, const fks_apikey_info_t *info, unsigned needed, char *err,
                        size_t cap);

/*  Calls fn for every key (active and revoked), newest first, at most 10000. 0 or -1. */
typedef void (fks_apikey_list_fn) (void *arg, const char *name, const char *prefix,
                                   const char *scopes, const char *created_at,
                                   const char *revoked_at);
int fks_apikey_list (fks_pg_t *pg, fks_apikey_list_fn *fn, void *arg, char *err, size_t cap);

/*  The verifier the gateway keeps: holds the SHA-256 of the bootstrap key. */
typedef struct fks_apikeys_t fks_apikeys_t;

fks_apikeys_t *fks_apikeys_new (const char *admin_key);
void fks_apikeys_destroy (fks_apikeys_t **self_p);

/*  Checks a presented key (len bytes). Returns 0 with *info filled when it is the bootstrap
 *  key or an active stored key, 1 when it is not a valid key, -1 when the database could not
 *  be asked (pg may be NULL: then only the bootstrap key can pass, and -1 for the others).
 *  Thread-safe as long as each thread passes its own pg. */
int fks_apikeys_verify (fks_apikeys_t *self, fks_pg_t *pg, const char *key, size_t len,
                        fks_apikey_info_t *info);

/*  The statements fks_apikeys_verify, create, revoke, recheck and list run by name: include
 *  them in the fks_pg_t's table (fks_pg_new). */
extern const fks_pg_stmt_t fks_apikey_stmts[];
extern const size_t fks_apikey_stmts_n;

#endif
