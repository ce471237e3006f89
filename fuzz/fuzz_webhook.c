/*  fuzz_webhook.c - libFuzzer harness for everything the gateway parses before it trusts a
 *  request: webhook bodies, Content-Type headers, HMAC headers, X-Forwarded-For, address lists.
 *
 *  Every input goes through every entry point: fks_alert_parse under each content type the
 *  gateway accepts (and the input itself as the Content-Type), the HMAC check with the input
 *  split into timestamp, signature and body lines, the secret check, address and CIDR parsing,
 *  and client resolution with the input as X-Forwarded-For. An accepted alert must then hold
 *  up everywhere it goes next: its JSON form must parse as an object without a passphrase, it
 *  must hash to a key, and its webhook.received body must pass the bus schema. JSON bodies are
 *  also parsed a second time with an escaped, ignored key added, and must give the same
 *  result: escapes change nothing but the bytes. Any breach aborts, so libFuzzer reports it like a crash.
 *
 *  Run: fuzz_webhook -max_total_time=60 fuzz/corpus/webhook
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/envelope.h"
#include "gateway/alert.h"
#include "gateway/auth.h"

#define S_SECRET "fuzz-secret"

static fks_auth_t *s_auth;
static fks_cidr_list_t *s_proxies;

static void
s_require (bool ok, const char *what)
{
    if (!ok) {
        fprintf (stderr, "fuzz_webhook: invariant broken: %s\n", what);
        abort ();
    }
}

static void
s_setup (void)
{
    if (s_auth)
        return;
    s_auth = fks_auth_new (S_SECRET, strlen (S_SECRET), FKS_AUTH_REPLAY_WINDOW_S);
    s_proxies = fks_cidr_list_new ();
    char err[128];
    s_require (s_auth && s_proxies, "setup");
    s_require (fks_cidr_list_add (s_proxies, "10.0.0.0/8 fd00::/8", err, sizeof err) == 0,
               "proxies");
    s_require (fks_auth_set_trusted_proxies (s_auth, "10.0.0.0/8", err, sizeof err) == 0,
               "auth proxies");
}

//  What an accepted alert must survive.
static void
s_check_alert (const fks_alert_t *alert)
{
    s_require (alert->symbol[0] != '\0', "accepted alert without symbol");
    s_require (alert->action != FKS_ACTION_NONE, "accepted alert without action");
    s_require (!alert->has_quantity || alert->quantity > 0, "quantity <= 0");
    s_require (alert->order_type != FKS_ORDER_LIMIT || alert->has_limit_price,
               "limit order without limit price");

    char json[FKS_ALERT_JSON_MAX];
    size_t len = 0;
    s_require (fks_alert_to_json (alert, json, sizeof json, &len) == 0, "to_json fits");
    json_error_t jerr;
    json_t *root = json_loadb (json, len, JSON_REJECT_DUPLICATES, &jerr);
    s_require (json_is_object (root), "to_json gives a JSON object");
    s_require (json_object_get (root, "passphrase") == NULL, "passphrase in JSON");
    json_decref (root);

    char key[FKS_ALERT_IDEM_KEY_MAX], prev[FKS_ALERT_IDEM_KEY_MAX];
    s_require (fks_alert_idem_key (alert, 1705329000000, 60000, -1, key, prev) == 0, "idem key");
    s_require (strcmp (key, prev) != 0, "a key is not its own previous window's");
    s_require (fks_alert_idem_key (alert, 1705329000000, 60000, 1705329000, key, prev) == 0,
               "signed idem key");
    s_require (prev[0] == '\0', "a signed key has no previous window");

    fks_id_t inbox;
    s_require (fks_id_new (&inbox) == 0, "id");
    msgpack_sbuffer body, frame;
    msgpack_sbuffer_init (&body);
    msgpack_sbuffer_init (&frame);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    s_require (fks_alert_pack (alert, &inbox, &pk) == 0, "pack");
    fks_envelope_hdr_t hdr;
    fks_envelope_err_t err;
    s_require (fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &inbox, NULL) == 0,
               "hdr");
    if (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err) != 0) {
        fprintf (stderr, "fuzz_webhook: schema refused a parsed alert: %s\n", err.msg);
        abort ();
    }
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
}

static void
s_parse_body (const char *content_type, const uint8_t *data, size_t size)
{
    fks_alert_t alert;
    fks_alert_secret_t secret;
    fks_alert_err_t err;
    int rc = fks_alert_parse (content_type, data, size, "tradingview", &alert, &secret, &err);
    if (rc == 0) {
        s_check_alert (&alert);
        fks_alert_secret_wipe (&secret);
    }
    else {
        s_require (err.status == 400 || err.status == 413 || err.status == 415, "status");
        s_require (err.field[0] != '\0' && err.message[0] != '\0', "error names a field");
        s_require (!secret.present, "refused body leaves a passphrase");
    }
}

//  A body and the same body with an extra escaped key (ignored as unknown) must give the same
//  alert, or the same error.
static void
s_check_json_paths (const uint8_t *data, size_t size)
{
    const char *s = (const char *) data;
    size_t i = 0;
    while (i < size && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i == size || s[i] != '{' || memchr (s, '\\', size) || size > 60000)
        return;
    size_t j = i + 1;
    while (j < size && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
        j++;
    const char *pad = (j < size && s[j] == '}') ? "\"\\u0001pad\":0" : "\"\\u0001pad\":0,";
    size_t plen = strlen (pad);
    char *other = malloc (size + plen);
    s_require (other != NULL, "malloc");
    memcpy (other, s, i + 1);
    memcpy (other + i + 1, pad, plen);
    memcpy (other + i + 1 + plen, s + i + 1, size - i - 1);

    fks_alert_t a1, a2;
    fks_alert_secret_t p1, p2;
    fks_alert_err_t e1, e2;
    int r1 = fks_alert_parse ("application/json", s, size, "api", &a1, &p1, &e1);
    int r2 = fks_alert_parse ("application/json", other, size + plen, "api", &a2, &p2, &e2);
    free (other);
    s_require (r1 == r2, "escaped twin disagrees on accepting");
    if (r1 == 0) {
        char j1[FKS_ALERT_JSON_MAX], j2[FKS_ALERT_JSON_MAX];
        s_require (fks_alert_to_json (&a1, j1, sizeof j1, NULL) == 0
                   && fks_alert_to_json (&a2, j2, sizeof j2, NULL) == 0
                   && strcmp (j1, j2) == 0, "escaped twin gives different alerts");
        s_require (p1.present == p2.present && p1.len == p2.len
                   && memcmp (p1.value, p2.value, p1.len) == 0, "escaped twin differs on passphrase");
    }
    else {
        s_require (e1.status == e2.status && strcmp (e1.code, e2.code) == 0
                   && strcmp (e1.field, e2.field) == 0, "escaped twin gives different errors");
        //  Syntax errors quote columns, which the extra key shifts.
        s_require (strcmp (e1.field, "body") == 0 || strcmp (e1.message, e2.message) == 0,
                   "escaped twin gives different messages");
    }
    fks_alert_secret_wipe (&p1);
    fks_alert_secret_wipe (&p2);
}

//  The first line, as a NUL-terminated copy (at most cap - 1 bytes); advances *p / *n.
static void
s_line (const uint8_t **p, size_t *n, char *out, size_t cap)
{
    size_t i = 0;
    while (i < *n && (*p)[i] != '\n')
        i++;
    size_t k = i < cap - 1 ? i : cap - 1;
    memcpy (out, *p, k);
    out[k] = '\0';
    if (i < *n)
        i++;
    *p += i;
    *n -= i;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_setup ();
    static const char *const types[] = {
        "application/json", "text/plain", "text/plain; charset=utf-8",
        "application/json; charset=UTF-8" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        s_parse_body (types[i], data, size);
    s_check_json_paths (data, size);

    //  The input as text: Content-Type, X-Forwarded-For, address lists.
    char *text = malloc (size + 1);
    s_require (text != NULL, "malloc");
    memcpy (text, data, size);
    text[size] = '\0';
    s_parse_body (text, (const uint8_t *) "buy AAPL", 8);

    fks_ipaddr_t addr;
    if (fks_ipaddr_parse ((const char *) data, size, &addr) == 0) {
        char out[FKS_AUTH_ADDR_TEXT_MAX];
        fks_ipaddr_format (&addr, out);
        fks_ipaddr_t again;
        s_require (fks_ipaddr_parse (out, strlen (out), &again) == 0
                   && fks_ipaddr_equal (&addr, &again), "address round trip");
    }
    fks_cidr_list_t *list = fks_cidr_list_new ();
    char err[128];
    if (fks_cidr_list_add (list, text, err, sizeof err) == 0)
        (void) fks_cidr_list_contains (list, &addr);
    else
        s_require (err[0] != '\0', "list error names the problem");
    fks_cidr_list_destroy (&list);

    fks_ipaddr_t client;
    (void) fks_auth_client_addr ("10.0.0.1", text, s_proxies, &client);
    (void) fks_auth_client_addr ("fd00::1", text, s_proxies, &client);
    (void) fks_auth_check_source (s_auth, "10.0.0.7", text, &client);

    //  HMAC: first line timestamp, second line signature, the rest the body.
    const uint8_t *p = data;
    size_t n = size;
    char ts[FKS_AUTH_HEADER_MAX + 8], sig[FKS_AUTH_HEADER_MAX + 8];
    s_line (&p, &n, ts, sizeof ts);
    s_line (&p, &n, sig, sizeof sig);
    fks_auth_result_t r = fks_auth_check_hmac (s_auth, ts, sig, p, n, 1705329000);
    s_require (fks_auth_result_status (r) == 0 || fks_auth_result_status (r) == 401, "status");
    (void) fks_auth_check_secret (s_auth, text, size);

    free (text);
    return 0;
}
