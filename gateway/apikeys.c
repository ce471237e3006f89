/*  apikeys.c - REST API keys: made once, stored hashed, checked in constant time.
 *
 *  Keys are drawn from OpenSSL's RAND_bytes and mapped to base62 by rejection sampling (bytes
 *  of 248 and above are thrown away) so every character is uniform. Only SHA-256 digests are
 *  compared, with CRYPTO_memcmp. A presented key is looked up by its prefix among the active
 *  keys (an index), then every candidate's digest is compared; a key whose shape is not ours
 *  is still hashed and compared with the bootstrap key, so refusals cost the same.
 */
#include "gateway/apikeys.h"
#include "common/id.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DIGEST 32

const fks_pg_stmt_t fks_apikey_stmts[] = {
    { "fks_apikey_find",
      "SELECT name, prefix, key_sha256, array_to_string (scopes, ','), id::text FROM api_keys"
      " WHERE prefix = $1 AND revoked_at IS NULL LIMIT 16", 1 },
    { "fks_apikey_insert",
      "INSERT INTO api_keys (id, name, prefix, key_sha256, scopes)"
      " VALUES ($1::uuid, $2, $3, $4, string_to_array ($5, ','))", 5 },
    //  One key only: a name may look like another key's prefix (names are free text), so the
    //  key called $1 wins, and the key whose prefix is $1 goes only when none is called that.
    //  Active names are unique; two active prefixes alike (8 random base62 characters) would
    //  give the newest. The outer revoked_at test keeps a concurrent revoke from counting twice.
    { "fks_apikey_revoke",
      "UPDATE api_keys SET revoked_at = now ()"
      " WHERE id = (SELECT id FROM api_keys WHERE (name = $1 OR prefix = $1)"
      " AND revoked_at IS NULL ORDER BY name = $1 DESC, created_at DESC, id DESC LIMIT 1)"
      " AND revoked_at IS NULL RETURNING name, prefix, id::text", 1 },
    { "fks_apikey_recheck",
      "SELECT array_to_string (scopes, ',') FROM api_keys"
      " WHERE id = $1::uuid AND revoked_at IS NULL", 1 },
    { "fks_apikey_list",
      "SELECT name, prefix, array_to_string (scopes, ','),"
      " to_char (created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
      " coalesce (to_char (revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"
      " FROM api_keys ORDER BY created_at DESC, id DESC LIMIT 10000", 0 },
};
const size_t fks_apikey_stmts_n = sizeof fks_apikey_stmts / sizeof fks_apikey_stmts[0];

struct fks_apikeys_t {
    uint8_t admin_digest[S_DIGEST];
};

static int
s_sha256 (const void *data, size_t len, uint8_t out[S_DIGEST])
{
    unsigned int n = 0;
    return EVP_Digest (data, len, out, &n, EVP_sha256 (), NULL) == 1 && n == S_DIGEST ? 0 : -1;
}

bool
fks_apikey_allows (unsigned scopes, unsigned needed)
{
    if (scopes & FKS_SCOPE_ADMIN)
        return true;
    if (needed == FKS_SCOPE_READ)
        return (scopes & (FKS_SCOPE_READ | FKS_SCOPE_TRADE)) != 0;
    return (scopes & needed) == needed;
}

int
fks_apikey_scopes_parse (const char *text, unsigned *out)
{
    unsigned bits = 0;
    const char *p = text;
    if (!p || !*p)
        return -1;
    for (int guard = 0; guard < 8; guard++) {
        size_t n = strcspn (p, ",");
        unsigned bit = 0;
        if (n == 4 && strncmp (p, "read", 4) == 0)
            bit = FKS_SCOPE_READ;
        else if (n == 5 && strncmp (p, "trade", 5) == 0)
            bit = FKS_SCOPE_TRADE;
        else if (n == 5 && strncmp (p, "admin", 5) == 0)
            bit = FKS_SCOPE_ADMIN;
        if (!bit || (bits & bit))
            return -1;
        bits |= bit;
        if (!p[n]) {
            *out = bits;
            return 0;
        }
        p += n + 1;
    }
    return -1;
}

void
fks_apikey_scopes_format (unsigned scopes, char *out, size_t cap)
{
    snprintf (out, cap, "%s%s%s%s%s",
              scopes & FKS_SCOPE_READ ? "read" : "",
              (scopes & FKS_SCOPE_READ) && (scopes & (FKS_SCOPE_TRADE | FKS_SCOPE_ADMIN)) ? ","
                                                                                       : "",
              scopes & FKS_SCOPE_TRADE ? "trade" : "",
              (scopes & FKS_SCOPE_TRADE) && (scopes & FKS_SCOPE_ADMIN) ? "," : "",
              scopes & FKS_SCOPE_ADMIN ? "admin" : "");
}

bool
fks_apikey_name_valid (const char *name)
{
    if (!name)
        return false;
    size_t n = strlen (name);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !strchr ("_.@-", c)))
            return false;
    }
    return true;
}

//  n uniform base62 characters into out.
static int
s_base62 (char *out, size_t n)
{
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t got = 0;
    for (int round = 0; round < 64 && got < n; round++) {
        unsigned char bytes[64];
        if (RAND_bytes (bytes, sizeof bytes) != 1)
            return -1;
        for (size_t i = 0; i < sizeof bytes && got < n; i++)
            if (bytes[i] < 248)
                out[got++] = alphabet[bytes[i] % 62];
    }
    return got == n ? 0 : -1;
}

int
fks_apikey_create (fks_pg_t *pg, const char *name, unsigned scopes,
                   char key_out[FKS_APIKEY_LEN + 1], char *err, size_t cap)
{
    if (!fks_apikey_name_valid (name)) {
        snprintf (err, cap, "a key name is 1-64 characters [A-Za-z0-9_.@-], starting with a "
                            "letter or digit");
        return -1;
    }
    if (scopes == 0 || (scopes & ~(FKS_SCOPE_READ | FKS_SCOPE_TRADE | FKS_SCOPE_ADMIN))) {
        snprintf (err, cap, "scopes must be some of read, trade, admin");
        return -1;
    }
    memcpy (key_out, "fks_", 4);
    if (s_base62 (key_out + 4, 8) != 0) {
        snprintf (err, cap, "the random generator failed");
        return -1;
    }
    key_out[FKS_APIKEY_PREFIX_LEN] = '_';
    if (s_base62 (key_out + FKS_APIKEY_PREFIX_LEN + 1, 40) != 0) {
        snprintf (err, cap, "the random generator failed");
        return -1;
    }
    key_out[FKS_APIKEY_LEN] = '\0';
    char prefix[FKS_APIKEY_PREFIX_LEN + 1];
    memcpy (prefix, key_out, FKS_APIKEY_PREFIX_LEN);
    prefix[FKS_APIKEY_PREFIX_LEN] = '\0';
    uint8_t digest[S_DIGEST];
    fks_id_t id;
    char id_s[FKS_ID_STR_SIZE], scopes_s[32];
    if (s_sha256 (key_out, FKS_APIKEY_LEN, digest) != 0 || fks_id_new (&id) != 0) {
        OPENSSL_cleanse (key_out, FKS_APIKEY_LEN + 1);
        snprintf (err, cap, "hashing failed");
        return -1;
    }
    fks_id_format (&id, id_s);
    fks_apikey_scopes_format (scopes, scopes_s, sizeof scopes_s);
    const char *values[5] = { id_s, name, prefix, (const char *) digest, scopes_s };
    int lengths[5] = { 0, 0, 0, S_DIGEST, 0 };
    int formats[5] = { 0, 0, 0, 1, 0 };
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (pg, "fks_apikey_insert", 5, values, lengths, formats, &perr);
    if (!r) {
        OPENSSL_cleanse (key_out, FKS_APIKEY_LEN + 1);
        if (strcmp (perr.sqlstate, FKS_PG_UNIQUE_VIOLATION) == 0) {
            snprintf (err, cap, "an active key named '%s' exists: revoke it first", name);
            return 1;
        }
        snprintf (err, cap, "%s", perr.msg);
        return -1;
    }
    PQclear (r);
    return 0;
}

int
fks_apikey_revoke (fks_pg_t *pg, const char *name, fks_apikey_info_t *revoked, char *err,
                   size_t cap)
{
    if (revoked)
        memset (revoked, 0, sizeof *revoked);
    if (!name || !*name || strlen (name) > 64) {
        snprintf (err, cap, "give the key's name or prefix");
        return -1;
    }
    const char *values[1] = { name };
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (pg, "fks_apikey_revoke", 1, values, NULL, NULL, &perr);
    if (!r) {
        snprintf (err, cap, "%s", perr.msg);
        return -1;
    }
    int n = PQntuples (r);
    if (n == 1 && revoked) {
        snprintf (revoked->name, sizeof revoked->name, "%s", PQgetvalue (r, 0, 0));
        snprintf (revoked->prefix, sizeof revoked->prefix, "%s", PQgetvalue (r, 0, 1));
        snprintf (revoked->owner, sizeof revoked->owner, "key:%s", PQgetvalue (r, 0, 2));
    }
    PQclear (r);
    if (n == 0) {
        snprintf (err, cap, "no active key has the name or prefix '%s'", name);
        return 1;
    }
    return 0;
}

int
fks_apikey_recheck (fks_pg_t *pg, const fks_apikey_info_t *info, unsigned needed, char *err,
                    size_t cap)
{
    if (info->bootstrap)
        return fks_apikey_allows (info->scopes, needed) ? 0 : 1;
    //  By the row's id (the owner), so a holder keeps no secret around to ask again with.
    if (strncmp (info->owner, "key:", 4) != 0 || !info->owner[4]) {
        snprintf (err, cap, "not a stored key");
        return 1;
    }
    if (!pg) {
        snprintf (err, cap, "no database connection");
        return -1;
    }
    const char *values[1] = { info->owner + 4 };
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (pg, "fks_apikey_recheck", 1, values, NULL, NULL, &perr);
    if (!r) {
        snprintf (err, cap, "%s", perr.msg);
        return -1;
    }
    unsigned scopes = 0;
    int rc = PQntuples (r) == 1 && fks_apikey_scopes_parse (PQgetvalue (r, 0, 0), &scopes) == 0
             && fks_apikey_allows (scopes, needed) ? 0 : 1;
    PQclear (r);
    if (rc)
        snprintf (err, cap, "the key was revoked or lost the scope");
    return rc;
}

int
fks_apikey_list (fks_pg_t *pg, fks_apikey_list_fn *fn, void *arg, char *err, size_t cap)
{
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (pg, "fks_apikey_list", 0, NULL, NULL, NULL, &perr);
    if (!r) {
        snprintf (err, cap, "%s", perr.msg);
        return -1;
    }
    for (int i = 0; i < PQntuples (r); i++)
        fn (arg, PQgetvalue (r, i, 0), PQgetvalue (r, i, 1), PQgetvalue (r, i, 2),
            PQgetvalue (r, i, 3), PQgetvalue (r, i, 4));
    PQclear (r);
    return 0;
}

fks_apikeys_t *
fks_apikeys_new (const char *admin_key)
{
    if (!admin_key || !*admin_key)
        return NULL;
    fks_apikeys_t *self = calloc (1, sizeof *self);
    if (self && s_sha256 (admin_key, strlen (admin_key), self->admin_digest) != 0) {
        free (self);
        return NULL;
    }
    return self;
}

void
fks_apikeys_destroy (fks_apikeys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    OPENSSL_cleanse ((*self_p)->admin_digest, S_DIGEST);
    free (*self_p);
    *self_p = NULL;
}

int
fks_apikeys_verify (fks_apikeys_t *self, fks_pg_t *pg, const char *key, size_t len,
                    fks_apikey_info_t *info)
{
    memset (info, 0, sizeof *info);
    if (!key || len == 0 || len > FKS_APIKEY_PRESENTED_MAX)
        return 1;
    uint8_t digest[S_DIGEST];
    if (s_sha256 (key, len, digest) != 0)
        return -1;
    if (CRYPTO_memcmp (digest, self->admin_digest, S_DIGEST) == 0) {
        snprintf (info->name, sizeof info->name, "admin");
        snprintf (info->owner, sizeof info->owner, "bootstrap");
        info->scopes = FKS_SCOPE_READ | FKS_SCOPE_TRADE | FKS_SCOPE_ADMIN;
        info->bootstrap = true;
        return 0;
    }
    //  Our shape: fks_XXXXXXXX_ + 40 base62.
    if (len != FKS_APIKEY_LEN || memcmp (key, "fks_", 4) != 0 || key[FKS_APIKEY_PREFIX_LEN] != '_')
        return 1;
    for (size_t i = 4; i < len; i++) {
        char c = key[i];
        if (i == FKS_APIKEY_PREFIX_LEN)
            continue;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return 1;
    }
    if (!pg)
        return -1;
    char prefix[FKS_APIKEY_PREFIX_LEN + 1];
    memcpy (prefix, key, FKS_APIKEY_PREFIX_LEN);
    prefix[FKS_APIKEY_PREFIX_LEN] = '\0';
    const char *values[1] = { prefix };
    fks_pg_err_t perr;
    PGresult *r = fks_pg_exec (pg, "fks_apikey_find", 1, values, NULL, NULL, &perr);
    if (!r) {
        fks_warn ("api key lookup failed: %s", perr.msg);
        return -1;
    }
    int rc = 1;
    for (int i = 0; i < PQntuples (r); i++) {
        size_t dlen = 0;
        unsigned char *stored = PQunescapeBytea ((const unsigned char *) PQgetvalue (r, i, 2),
                                                 &dlen);
        bool match = stored && dlen == S_DIGEST && CRYPTO_memcmp (stored, digest, S_DIGEST) == 0;
        PQfreemem (stored);
        if (match && rc == 1) {
            unsigned scopes = 0;
            if (fks_apikey_scopes_parse (PQgetvalue (r, i, 3), &scopes) == 0) {
                snprintf (info->name, sizeof info->name, "%s", PQgetvalue (r, i, 0));
                snprintf (info->prefix, sizeof info->prefix, "%s", PQgetvalue (r, i, 1));
                snprintf (info->owner, sizeof info->owner, "key:%s", PQgetvalue (r, i, 4));
                info->scopes = scopes;
                rc = 0;
            }
        }
    }
    PQclear (r);
    return rc;
}
