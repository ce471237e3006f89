/*  test_auth.c - webhook authentication: secrets, HMAC signatures, source allowlists.
 *
 *  Timing cannot be asserted in a unit test; that secrets and signatures compare in constant
 *  time is checked by review of gateway/auth.c (SHA-256 digests and CRYPTO_memcmp). These tests
 *  check what a sender sees: which requests pass and which result (status, event kind) the
 *  others get.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "gateway/auth.h"

#define SECRET "correct-horse-battery-staple"
#define NOW    INT64_C(1705329000)

static fks_auth_t *auth;

static void
setup (void)
{
    auth = fks_auth_new (SECRET, strlen (SECRET), FKS_AUTH_REPLAY_WINDOW_S);
    cr_assert_not_null (auth);
}

static void
teardown (void)
{
    fks_auth_destroy (&auth);
    cr_assert_null (auth);
}

TestSuite (auth, .init = setup, .fini = teardown);

static fks_ipaddr_t
ip (const char *text)
{
    fks_ipaddr_t a;
    cr_assert_eq (fks_ipaddr_parse (text, strlen (text), &a), 0, "cannot parse %s", text);
    return a;
}

static fks_cidr_list_t *
list_of (const char *text)
{
    fks_cidr_list_t *list = fks_cidr_list_new ();
    char err[160];
    cr_assert_eq (fks_cidr_list_add (list, text, err, sizeof err), 0, "%s: %s", text, err);
    return list;
}

static fks_auth_result_t
hmac_check (const char *ts, const char *sig, const char *body, int64_t now)
{
    return fks_auth_check_hmac (auth, ts, sig, body, strlen (body), now);
}

static void
sign (const char *ts, const char *body, char sig[FKS_AUTH_SIGNATURE_MAX])
{
    cr_assert_eq (fks_auth_hmac_sign (SECRET, strlen (SECRET), ts, body, strlen (body), sig), 0);
}

// ---------------------------------------------------------------------------------------------
//  Secrets

Test (auth, secret_check_accepts_the_exact_secret)
{
    cr_assert_eq (fks_auth_check_secret (auth, SECRET, strlen (SECRET)), FKS_AUTH_OK);
}

Test (auth, secret_check_refuses_anything_else)
{
    const char *wrong[] = { "", "correct-horse-battery-stapl", "correct-horse-battery-staple!",
                            "Correct-horse-battery-staple", "x" };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        cr_assert_eq (fks_auth_check_secret (auth, wrong[i], strlen (wrong[i])),
                      FKS_AUTH_BAD_SECRET, "accepted '%s'", wrong[i]);
    //  A NUL inside does not cut the comparison short.
    cr_assert_eq (fks_auth_check_secret (auth, SECRET "\0tail", sizeof SECRET + 4),
                  FKS_AUTH_BAD_SECRET);
    cr_assert_eq (fks_auth_check_secret (auth, NULL, 0), FKS_AUTH_NO_CREDENTIALS);
}

Test (auth, an_authenticator_needs_a_secret_and_a_window)
{
    cr_assert_null (fks_auth_new ("", 0, 300));
    cr_assert_null (fks_auth_new (NULL, 5, 300));
    cr_assert_null (fks_auth_new ("abc", 3, 0));
    fks_auth_t *none = NULL;
    fks_auth_destroy (&none);           // destroying NULL is a no-op
}

// ---------------------------------------------------------------------------------------------
//  HMAC

Test (auth, hmac_good_signature_passes)
{
    const char *body = "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\"}";
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", body, sig);
    cr_assert_eq (strncmp (sig, "sha256=", 7), 0);
    cr_assert_eq (strlen (sig), 71);
    cr_assert_eq (hmac_check ("1705329000", sig, body, NOW), FKS_AUTH_OK);
    cr_assert_eq (hmac_check (" 1705329000 ", sig, body, NOW), FKS_AUTH_OK, "header spaces");
}

Test (auth, hmac_matches_an_independent_computation)
{
    //  Expected values from Python: hmac.new(key, b"<ts>.<body>", hashlib.sha256).hexdigest()
    char sig[FKS_AUTH_SIGNATURE_MAX];
    cr_assert_eq (fks_auth_hmac_sign ("key", 3, "1", "x", 1, sig), 0);
    cr_assert_str_eq (sig, "sha256=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec");
    const char *body = "{\"ticker\":\"BTCUSDT\",\"action\":\"buy\"}";
    const char *python =
        "sha256=62a2d522fe7418714e9caa0e9b2f52db1b053a001430e5f0835dab554d797447";
    cr_assert_eq (hmac_check ("1705329000", python, body, NOW), FKS_AUTH_OK);
}

Test (auth, hmac_uppercase_hex_and_prefix_are_accepted)
{
    const char *body = "x=1";
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", body, sig);
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char) (*p - 32);
    cr_assert_eq (hmac_check ("1705329000", sig, body, NOW), FKS_AUTH_OK, "%s", sig);
}

Test (auth, hmac_wrong_signature_or_body_is_a_mismatch)
{
    const char *body = "{\"ticker\":\"A\",\"action\":\"buy\"}";
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", body, sig);
    //  Any one hex digit wrong, first to last, is a mismatch.
    for (size_t pos = 7; pos < 71; pos++) {
        char bad[FKS_AUTH_SIGNATURE_MAX];
        memcpy (bad, sig, sizeof bad);
        bad[pos] = bad[pos] == '0' ? '1' : '0';
        cr_assert_eq (hmac_check ("1705329000", bad, body, NOW), FKS_AUTH_HMAC_MISMATCH,
                      "digit %zu", pos);
    }
    cr_assert_eq (hmac_check ("1705329000", sig, "{\"ticker\":\"A\",\"action\":\"sell\"}", NOW),
                  FKS_AUTH_HMAC_MISMATCH);
    cr_assert_eq (hmac_check ("1705329001", sig, body, NOW), FKS_AUTH_HMAC_MISMATCH,
                  "the timestamp is signed too");
    fks_auth_t *other = fks_auth_new ("another-secret", 14, 300);
    cr_assert_eq (fks_auth_check_hmac (other, "1705329000", sig, body, strlen (body), NOW),
                  FKS_AUTH_HMAC_MISMATCH);
    fks_auth_destroy (&other);
}

Test (auth, hmac_outside_the_replay_window_is_refused)
{
    const char *body = "b";
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705328700", body, sig);             // NOW - 300: the edge, still fine
    cr_assert_eq (hmac_check ("1705328700", sig, body, NOW), FKS_AUTH_OK);
    sign ("1705328699", body, sig);
    cr_assert_eq (hmac_check ("1705328699", sig, body, NOW), FKS_AUTH_HMAC_EXPIRED);
    sign ("1705329300", body, sig);
    cr_assert_eq (hmac_check ("1705329300", sig, body, NOW), FKS_AUTH_OK);
    sign ("1705329301", body, sig);
    cr_assert_eq (hmac_check ("1705329301", sig, body, NOW), FKS_AUTH_HMAC_FUTURE);
    sign ("1705329000000", body, sig);          // milliseconds by mistake
    cr_assert_eq (hmac_check ("1705329000000", sig, body, NOW), FKS_AUTH_HMAC_FUTURE);
}

Test (auth, hmac_window_is_configurable)
{
    fks_auth_t *tight = fks_auth_new (SECRET, strlen (SECRET), 5);
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705328990", "b", sig);
    cr_assert_eq (fks_auth_check_hmac (tight, "1705328990", sig, "b", 1, NOW),
                  FKS_AUTH_HMAC_EXPIRED);
    cr_assert_eq (fks_auth_check_hmac (auth, "1705328990", sig, "b", 1, NOW), FKS_AUTH_OK);
    fks_auth_destroy (&tight);
}

Test (auth, hmac_malformed_timestamp_is_its_own_error)
{
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", "b", sig);
    const char *bad[] = { "", "abc", "-1705329000", "+1705329000", "1705329000.5", "17053 29000",
                          "1234567890123456", "0x65a53f28" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (hmac_check (bad[i], sig, "b", NOW), FKS_AUTH_HMAC_BAD_TIMESTAMP, "'%s'",
                      bad[i]);
    char longer[FKS_AUTH_HEADER_MAX + 10];
    memset (longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_assert_eq (hmac_check (longer, sig, "b", NOW), FKS_AUTH_HMAC_BAD_TIMESTAMP);
}

Test (auth, hmac_malformed_signature_is_its_own_error)
{
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", "b", sig);
    char no_prefix[80], sha1[80], short_hex[80], not_hex[80];
    snprintf (no_prefix, sizeof no_prefix, "%s", sig + 7);
    snprintf (sha1, sizeof sha1, "sha1=%s", sig + 7);
    snprintf (short_hex, sizeof short_hex, "%.70s", sig);
    snprintf (not_hex, sizeof not_hex, "%s", sig);
    not_hex[30] = 'g';
    const char *bad[] = { "", no_prefix, sha1, short_hex, not_hex, "sha256=", "sha256" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (hmac_check ("1705329000", bad[i], "b", NOW), FKS_AUTH_HMAC_BAD_FORMAT,
                      "'%s'", bad[i]);
}

Test (auth, hmac_needs_both_headers)
{
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", "b", sig);
    cr_assert_eq (hmac_check ("1705329000", NULL, "b", NOW), FKS_AUTH_HMAC_INCOMPLETE);
    cr_assert_eq (fks_auth_check_hmac (auth, NULL, sig, "b", 1, NOW), FKS_AUTH_HMAC_INCOMPLETE);
    cr_assert_eq (fks_auth_check_hmac (auth, NULL, NULL, "b", 1, NOW), FKS_AUTH_NO_CREDENTIALS);
}

Test (auth, hmac_over_an_empty_body)
{
    char sig[FKS_AUTH_SIGNATURE_MAX];
    cr_assert_eq (fks_auth_hmac_sign (SECRET, strlen (SECRET), "1705329000", NULL, 0, sig), 0);
    cr_assert_eq (fks_auth_check_hmac (auth, "1705329000", sig, NULL, 0, NOW), FKS_AUTH_OK);
}

// ---------------------------------------------------------------------------------------------
//  Results

Test (auth, results_map_to_statuses_and_event_kinds)
{
    regex_t re;
    cr_assert_eq (regcomp (&re, "^[a-z][a-z0-9_.]{0,63}$", REG_EXTENDED | REG_NOSUB), 0);
    for (int r = FKS_AUTH_OK; r <= FKS_AUTH_SOURCE_DENIED; r++) {
        int status = fks_auth_result_status ((fks_auth_result_t) r);
        const char *kind = fks_auth_result_kind ((fks_auth_result_t) r);
        const char *msg = fks_auth_result_message ((fks_auth_result_t) r);
        cr_assert_not_null (msg);
        cr_assert_null (strstr (msg, SECRET));
        if (r == FKS_AUTH_OK) {
            cr_assert_eq (status, 0);
            cr_assert_str_empty (kind);
            continue;
        }
        bool source = r == FKS_AUTH_BAD_ADDRESS || r == FKS_AUTH_SOURCE_DENIED;
        cr_assert_eq (status, source ? 403 : 401, "result %d", r);
        cr_assert_eq (regexec (&re, kind, 0, NULL, 0), 0, "kind '%s' fits security_events", kind);
    }
    regfree (&re);
    cr_assert_str_eq (fks_auth_result_kind (FKS_AUTH_HMAC_EXPIRED), "auth.hmac_expired");
    cr_assert_str_eq (fks_auth_result_kind (FKS_AUTH_SOURCE_DENIED), "source.denied");
}

// ---------------------------------------------------------------------------------------------
//  Addresses and CIDR lists

Test (auth, addresses_parse_strictly)
{
    fks_ipaddr_t a;
    const char *bad[] = { "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ",
                          "fe80::1%eth0", "::g", "localhost", "[::1]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq (fks_ipaddr_parse (bad[i], strlen (bad[i]), &a), -1, "'%s'", bad[i]);
    cr_assert_eq (fks_ipaddr_parse ("1.2.3.4\0" "5", 9, &a), -1, "embedded NUL");
    a = ip ("::ffff:52.89.214.238");
    cr_assert_eq (a.family, AF_INET, "v4-mapped folds to v4");
    char text[FKS_AUTH_ADDR_TEXT_MAX];
    fks_ipaddr_format (&a, text);
    cr_assert_str_eq (text, "52.89.214.238");
    a = ip ("2001:DB8::1");
    fks_ipaddr_format (&a, text);
    cr_assert_str_eq (text, "2001:db8::1");
}

Test (auth, cidr_ranges_match_their_addresses)
{
    fks_cidr_list_t *l = list_of ("10.0.0.0/8, 192.168.1.0/24 203.0.113.7,2001:db8::/32");
    cr_assert_eq (fks_cidr_list_size (l), 4);
    fks_ipaddr_t in[] = { ip ("10.255.0.1"), ip ("192.168.1.200"), ip ("203.0.113.7"),
                          ip ("2001:db8:ffff::1"), ip ("::ffff:10.1.2.3") };
    fks_ipaddr_t out[] = { ip ("11.0.0.1"), ip ("192.168.2.1"), ip ("203.0.113.8"),
                           ip ("2001:db9::1"), ip ("::a00:1") };
    for (size_t i = 0; i < 5; i++) {
        cr_assert (fks_cidr_list_contains (l, &in[i]), "%zu in", i);
        cr_assert_not (fks_cidr_list_contains (l, &out[i]), "%zu out", i);
    }
    fks_cidr_list_destroy (&l);
    cr_assert_null (l);
}

Test (auth, cidr_odd_prefixes)
{
    fks_cidr_list_t *l = list_of ("172.16.0.0/12 ::ffff:100.64.0.0/106 0.0.0.0/0");
    fks_ipaddr_t v6 = ip ("::1");
    fks_ipaddr_t cgn = ip ("100.127.255.255");
    cr_assert (fks_cidr_list_contains (l, &cgn), "mapped prefix became v4 /10");
    cr_assert_not (fks_cidr_list_contains (l, &v6), "0.0.0.0/0 is IPv4 only");
    fks_cidr_list_destroy (&l);
    l = list_of ("172.16.0.0/12");
    fks_ipaddr_t a = ip ("172.31.255.255"), b = ip ("172.32.0.0");
    cr_assert (fks_cidr_list_contains (l, &a));
    cr_assert_not (fks_cidr_list_contains (l, &b));
    fks_cidr_list_destroy (&l);
}

Test (auth, tradingview_preset_holds_its_four_servers)
{
    fks_cidr_list_t *l = list_of ("TradingView");
    cr_assert_eq (fks_cidr_list_size (l), 4);
    const char *tv[] = { "52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7",
                         "::ffff:52.32.178.7" };
    for (size_t i = 0; i < 5; i++) {
        fks_ipaddr_t a = ip (tv[i]);
        cr_assert (fks_cidr_list_contains (l, &a), "%s", tv[i]);
    }
    fks_ipaddr_t near = ip ("52.89.214.239");
    cr_assert_not (fks_cidr_list_contains (l, &near));
    fks_cidr_list_destroy (&l);
}

Test (auth, bad_list_items_are_named_and_change_nothing)
{
    fks_cidr_list_t *l = list_of ("10.0.0.0/8");
    char err[160];
    cr_assert_eq (fks_cidr_list_add (l, "192.168.0.0/16, 10.0.0.1/8", err, sizeof err), -1);
    cr_assert (strstr (err, "'10.0.0.1/8'") && strstr (err, "after the /8"), "%s", err);
    cr_assert_eq (fks_cidr_list_size (l), 1, "the list is as it was");
    const char *bad[] = { "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "::/129", "nonsense",
                          "10.0.0.0/8/8", "10.0.0.0/0008" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq (fks_cidr_list_add (l, bad[i], err, sizeof err), -1, "'%s'", bad[i]);
        cr_assert (strstr (err, bad[i]) || strlen (bad[i]) > 64, "'%s' not named: %s", bad[i],
                   err);
    }
    cr_assert_eq (fks_cidr_list_size (l), 1);
    cr_assert_eq (fks_cidr_list_add (l, "", err, sizeof err), 0);
    cr_assert_eq (fks_cidr_list_add (l, NULL, err, sizeof err), 0);
    cr_assert_eq (fks_cidr_list_size (l), 1);
    fks_cidr_list_destroy (&l);
}

Test (auth, cidr_lists_are_bounded)
{
    fks_cidr_list_t *l = fks_cidr_list_new ();
    static char text[FKS_AUTH_LIST_TEXT_MAX];
    size_t n = 0;
    for (int i = 0; i < FKS_AUTH_CIDR_MAX; i++)
        n += (size_t) snprintf (text + n, sizeof text - n, "10.0.%d.%d,", i / 256, i % 256);
    char err[160];
    cr_assert_eq (fks_cidr_list_add (l, text, err, sizeof err), 0, "%s", err);
    cr_assert_eq (fks_cidr_list_size (l), FKS_AUTH_CIDR_MAX);
    cr_assert_eq (fks_cidr_list_add (l, "10.1.0.0", err, sizeof err), -1);
    cr_assert (strstr (err, "at most"), "%s", err);
    static char huge[FKS_AUTH_LIST_TEXT_MAX + 2];
    memset (huge, ' ', sizeof huge - 1);
    cr_assert_eq (fks_cidr_list_add (l, huge, err, sizeof err), -1);
    fks_cidr_list_destroy (&l);
}

// ---------------------------------------------------------------------------------------------
//  X-Forwarded-For

static const char *
client_of (const char *peer, const char *xff, const fks_cidr_list_t *proxies)
{
    static char text[FKS_AUTH_ADDR_TEXT_MAX];
    fks_ipaddr_t c;
    if (fks_auth_client_addr (peer, xff, proxies, &c) != FKS_AUTH_OK)
        return "BAD";
    fks_ipaddr_format (&c, text);
    return text;
}

Test (auth, forwarded_for_is_ignored_from_an_untrusted_peer)
{
    fks_cidr_list_t *proxies = list_of ("10.0.0.0/8");
    cr_assert_str_eq (client_of ("198.51.100.9", "52.89.214.238", proxies), "198.51.100.9",
                      "a client cannot claim to be TradingView");
    cr_assert_str_eq (client_of ("198.51.100.9", "52.89.214.238", NULL), "198.51.100.9");
    cr_assert_str_eq (client_of ("198.51.100.9", "garbage", proxies), "198.51.100.9");
    fks_cidr_list_destroy (&proxies);
}

Test (auth, forwarded_for_gives_the_right_most_untrusted_address)
{
    fks_cidr_list_t *proxies = list_of ("10.0.0.0/8");
    cr_assert_str_eq (client_of ("10.0.0.2", "52.89.214.238", proxies), "52.89.214.238");
    //  The left part is whatever the client wrote: never trusted.
    cr_assert_str_eq (client_of ("10.0.0.2", "1.1.1.1, 52.89.214.238", proxies),
                      "52.89.214.238");
    cr_assert_str_eq (client_of ("10.0.0.2", "1.1.1.1, 52.89.214.238, 10.0.0.5", proxies),
                      "52.89.214.238", "our second proxy is skipped");
    cr_assert_str_eq (client_of ("10.0.0.2", "garbage, 52.89.214.238", proxies),
                      "52.89.214.238", "entries left of the client are not read");
    cr_assert_str_eq (client_of ("10.0.0.2", "10.0.0.9, 10.0.0.5", proxies), "10.0.0.9",
                      "all trusted: the left-most");
    cr_assert_str_eq (client_of ("10.0.0.2", "", proxies), "10.0.0.2", "empty header");
    cr_assert_str_eq (client_of ("10.0.0.2", NULL, proxies), "10.0.0.2", "no header");
    cr_assert_str_eq (client_of ("::ffff:10.0.0.2", "203.0.113.1", proxies), "203.0.113.1");
    fks_cidr_list_destroy (&proxies);
}

Test (auth, forwarded_for_entries_may_carry_ports_and_brackets)
{
    fks_cidr_list_t *proxies = list_of ("10.0.0.0/8 fd00::/8");
    cr_assert_str_eq (client_of ("10.0.0.2", "203.0.113.1:5678", proxies), "203.0.113.1");
    cr_assert_str_eq (client_of ("fd00::2", "[2001:db8::7]:443", proxies), "2001:db8::7");
    cr_assert_str_eq (client_of ("10.0.0.2", "[2001:db8::7]", proxies), "2001:db8::7");
    cr_assert_str_eq (client_of ("10.0.0.2", "2001:db8::7 ,, ", proxies), "2001:db8::7");
    cr_assert_str_eq (client_of ("10.0.0.2", "[::ffff:203.0.113.1]:80", proxies), "203.0.113.1");
    fks_cidr_list_destroy (&proxies);
}

Test (auth, unreadable_forwarded_for_is_refused)
{
    fks_cidr_list_t *proxies = list_of ("10.0.0.0/8");
    const char *bad[] = { "unknown", "1.2.3.4:99999", "[2001:db8::1", "1.2.3.4, nope",
                          "1.2.3.4:", "[1.2.3.4]:80" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_str_eq (client_of ("10.0.0.2", bad[i], proxies), "BAD", "'%s'", bad[i]);
    cr_assert_str_eq (client_of ("not-an-ip", NULL, proxies), "BAD", "peer");
    cr_assert_str_eq (client_of (NULL, NULL, proxies), "BAD");
    fks_cidr_list_destroy (&proxies);
}

Test (auth, forwarded_for_is_bounded)
{
    fks_cidr_list_t *proxies = list_of ("10.0.0.0/8");
    static char hops[FKS_AUTH_XFF_MAX + 16];
    size_t n = 0;
    n += (size_t) snprintf (hops + n, sizeof hops - n, "203.0.113.1");
    for (int i = 0; i < FKS_AUTH_XFF_HOPS_MAX; i++)
        n += (size_t) snprintf (hops + n, sizeof hops - n, ", 10.0.0.%d", i + 1);
    cr_assert_str_eq (client_of ("10.0.0.2", hops, proxies), "BAD", "too many hops");
    static char big[FKS_AUTH_XFF_MAX + 16];
    memset (big, ' ', sizeof big - 1);
    memcpy (big + sizeof big - 12, "203.0.113.1", 11);
    cr_assert_str_eq (client_of ("10.0.0.2", big, proxies), "BAD", "too long");
    fks_cidr_list_destroy (&proxies);
}

// ---------------------------------------------------------------------------------------------
//  The whole webhook check

Test (auth, source_allowlist_refuses_before_credentials)
{
    char err[160];
    cr_assert_eq (fks_auth_set_allowlist (auth, "tradingview", err, sizeof err), 0, "%s", err);
    fks_auth_request_t req = { .peer = "198.51.100.9", .passphrase = SECRET,
                               .passphrase_len = strlen (SECRET) };
    fks_ipaddr_t client;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, &client), FKS_AUTH_SOURCE_DENIED);
    char text[FKS_AUTH_ADDR_TEXT_MAX];
    fks_ipaddr_format (&client, text);
    cr_assert_str_eq (text, "198.51.100.9", "the refused address is reported");
    req.peer = "52.89.214.238";
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, &client), FKS_AUTH_OK);
    req.passphrase = "wrong";
    req.passphrase_len = 5;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_BAD_SECRET);
}

Test (auth, allowlist_through_a_trusted_proxy)
{
    char err[160];
    cr_assert_eq (fks_auth_set_allowlist (auth, "tradingview", err, sizeof err), 0);
    cr_assert_eq (fks_auth_set_trusted_proxies (auth, "127.0.0.1, ::1", err, sizeof err), 0);
    fks_auth_request_t req = { .peer = "127.0.0.1", .forwarded_for = "34.212.75.30",
                               .token = SECRET, .token_len = strlen (SECRET) };
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_OK);
    req.forwarded_for = "34.212.75.30, 6.6.6.6";
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_SOURCE_DENIED);
    req.forwarded_for = "junk";
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_BAD_ADDRESS);
    req.forwarded_for = NULL;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_SOURCE_DENIED,
                  "the proxy itself is not TradingView");
}

Test (auth, allowlist_can_be_removed_and_bad_ones_change_nothing)
{
    char err[160];
    cr_assert_eq (fks_auth_set_allowlist (auth, "10.0.0.0/8", err, sizeof err), 0);
    cr_assert_eq (fks_auth_set_allowlist (auth, "10.0.0.0/99", err, sizeof err), -1);
    fks_auth_request_t req = { .peer = "192.0.2.1", .token = SECRET,
                               .token_len = strlen (SECRET) };
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_SOURCE_DENIED,
                  "the old list still holds");
    cr_assert_eq (fks_auth_set_allowlist (auth, "", err, sizeof err), 0);
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_OK, "no list: any source");
}

Test (auth, any_one_valid_credential_is_enough)
{
    const char *body = "{\"ticker\":\"A\",\"action\":\"buy\"}";
    char sig[FKS_AUTH_SIGNATURE_MAX];
    sign ("1705329000", body, sig);
    fks_auth_request_t req = { .peer = "127.0.0.1", .body = body, .body_len = strlen (body) };

    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_NO_CREDENTIALS);
    req.timestamp = "1705329000";
    req.signature = sig;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_OK, "HMAC");
    req.timestamp = "1705320000";
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_HMAC_EXPIRED,
                  "a failed HMAC is named when nothing else is valid");
    req.token = "wrong";
    req.token_len = 5;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_HMAC_EXPIRED);
    req.passphrase = SECRET;
    req.passphrase_len = strlen (SECRET);
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_OK, "passphrase");
    req.timestamp = req.signature = NULL;
    req.passphrase = NULL;
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_BAD_SECRET);
    req.token = SECRET;
    req.token_len = strlen (SECRET);
    cr_assert_eq (fks_auth_webhook (auth, &req, NOW, NULL), FKS_AUTH_OK, "token");
}

Test (auth, redact_overwrites_every_copy_of_the_secret_and_nothing_else)
{
    char text[] = "a " SECRET " b " SECRET SECRET " correct-horse";
    size_t n = fks_auth_redact (auth, text, strlen (text));
    cr_assert_eq (n, 3);
    cr_assert_null (strstr (text, SECRET));
    cr_assert (strncmp (text, "a ***", 5) == 0, "%s", text);
    cr_assert (strstr (text, " correct-horse"), "a part of the secret is no secret: %s", text);
    char none[] = "nothing here";
    cr_assert_eq (fks_auth_redact (auth, none, strlen (none)), 0);
    cr_assert_str_eq (none, "nothing here");
    cr_assert_eq (fks_auth_redact (auth, none, 0), 0);
}
