/*  test_apikeys.c - gateway/apikeys.c without a database: scopes, names, the bootstrap key.
 *  (Keys stored in PostgreSQL - create, verify, revoke - are tested through the API in
 *  test_api.c.)
 */
#include <criterion/criterion.h>
#include <string.h>
#include "gateway/apikeys.h"

Test (apikeys, scopes_parse_and_format)
{
    unsigned s;
    cr_assert_eq (fks_apikey_scopes_parse ("read", &s), 0);
    cr_assert_eq (s, FKS_SCOPE_READ);
    cr_assert_eq (fks_apikey_scopes_parse ("trade,read", &s), 0);
    cr_assert_eq (s, FKS_SCOPE_READ | FKS_SCOPE_TRADE);
    char out[32];
    fks_apikey_scopes_format (FKS_SCOPE_READ | FKS_SCOPE_TRADE | FKS_SCOPE_ADMIN, out, sizeof out);
    cr_assert_str_eq (out, "read,trade,admin");
    fks_apikey_scopes_format (FKS_SCOPE_ADMIN, out, sizeof out);
    cr_assert_str_eq (out, "admin");
    const char *bad[] = { "", "read,", ",read", "read,read", "write", "READ", "read trade" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (fks_apikey_scopes_parse (bad[i], &s), -1, "'%s'", bad[i]);
}

Test (apikeys, admin_grants_everything_and_trade_grants_read)
{
    cr_assert (fks_apikey_allows (FKS_SCOPE_ADMIN, FKS_SCOPE_TRADE));
    cr_assert (fks_apikey_allows (FKS_SCOPE_ADMIN, FKS_SCOPE_READ));
    cr_assert (fks_apikey_allows (FKS_SCOPE_TRADE, FKS_SCOPE_READ));
    cr_assert_not (fks_apikey_allows (FKS_SCOPE_READ, FKS_SCOPE_TRADE));
    cr_assert_not (fks_apikey_allows (FKS_SCOPE_TRADE, FKS_SCOPE_ADMIN));
}

Test (apikeys, names_follow_the_table_rule)
{
    cr_assert (fks_apikey_name_valid ("grafana"));
    cr_assert (fks_apikey_name_valid ("ops.team@example-1"));
    cr_assert_not (fks_apikey_name_valid (""));
    cr_assert_not (fks_apikey_name_valid ("-lead"));
    cr_assert_not (fks_apikey_name_valid ("has space"));
    char long_name[80];
    memset (long_name, 'a', 65);
    long_name[65] = '\0';
    cr_assert_not (fks_apikey_name_valid (long_name));
}

Test (apikeys, the_bootstrap_key_has_every_scope_and_nothing_else_passes_without_a_database)
{
    fks_apikeys_t *k = fks_apikeys_new ("bootstrap-admin-key-0123456789");
    cr_assert_not_null (k);
    fks_apikey_info_t info;
    const char *good = "bootstrap-admin-key-0123456789";
    cr_assert_eq (fks_apikeys_verify (k, NULL, good, strlen (good), &info), 0);
    cr_assert (info.bootstrap);
    cr_assert_eq (info.scopes, FKS_SCOPE_READ | FKS_SCOPE_TRADE | FKS_SCOPE_ADMIN);
    //  Its owner (what Idempotency-Keys are scoped by) is not its name, which a stored key may
    //  also have, and does not depend on the key's value.
    cr_assert_str_eq (info.owner, "bootstrap");
    cr_assert_str_neq (info.owner, info.name);
    //  A near miss, an empty key, an oversized one: refused.
    const char *near = "bootstrap-admin-key-0123456788";
    cr_assert_eq (fks_apikeys_verify (k, NULL, near, strlen (near), &info), 1);
    cr_assert_eq (fks_apikeys_verify (k, NULL, "", 0, &info), 1);
    char big[1024];
    memset (big, 'x', sizeof big);
    cr_assert_eq (fks_apikeys_verify (k, NULL, big, sizeof big, &info), 1);
    //  A stored-key shape needs the database: without one the answer is "cannot tell".
    const char *shaped = "fks_AbCd1234_0123456789abcdefghijABCDEFGHIJ0123456789";
    cr_assert_eq (strlen (shaped), FKS_APIKEY_LEN);
    cr_assert_eq (fks_apikeys_verify (k, NULL, shaped, strlen (shaped), &info), -1);
    fks_apikeys_destroy (&k);
    cr_assert_null (k);
}
