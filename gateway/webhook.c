/*  webhook.c - POST /webhook/tradingview and POST /webhook: alerts in, durably, in milliseconds.
 *
 *  One request is handled entirely on its civetweb thread until the commit: the body is read
 *  into a stack buffer (bounded by FKS_GATEWAY_BODY_MAX), parsed by alert.c, authenticated by
 *  auth.c, turned into the inbox row (raw body, parsed alert as JSON, idempotency key) and the
 *  webhook.received envelope (ids made here: the alert id is the inbox id and the envelope's
 *  corr), and handed to the inbox, whose committers batch it with concurrent requests. The
 *  thread sleeps until its batch has committed, then answers.
 *
 *  Secrets: the passphrase is copied out of the body by the parser into a separate struct,
 *  used for the constant-time check and wiped; the token comes from the query string into a
 *  stack buffer that is wiped too. Neither reaches a log line, a response or the database
 *  (the raw body is stored as received, so a passphrase in it is stored: it is the alert as
 *  TradingView sent it, readable only by database users; REST never returns raw bodies).
 */
#include "gateway/webhook.h"
#include "bus/envelope.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "gateway/alert.h"

#include <civetweb.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TOKEN_MAX 512

//  What one request needs beyond a few bytes: on the heap, because civetweb's threads have
//  small stacks (100 KiB in Debian's build).
typedef struct {
    char body[FKS_ALERT_BODY_MAX];
    char json[FKS_ALERT_JSON_MAX];
    char idem[FKS_ALERT_IDEM_KEY_MAX];
    char idem_prev[FKS_ALERT_IDEM_KEY_MAX];
    char token[S_TOKEN_MAX];
    fks_alert_t alert;
    fks_alert_secret_t pass;
    fks_inbox_item_t item;
} s_scratch_t;

struct fks_webhook_t {
    fks_webhook_opts_t o;
    fks_metric_family_t *m_results;
    fks_metric_t *m_accept_s;
    fks_metric_family_t *m_auth_fail;
    //  Children looked up once: the hot path only does atomic adds.
    fks_metric_t *m_accepted;
    fks_metric_t *m_duplicate;
};

static const double s_latency_buckets[] = {
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5 };

fks_webhook_t *
fks_webhook_new (const fks_webhook_opts_t *opts)
{
    if (!opts || !opts->cfg || !opts->inbox || !opts->auth || !opts->rl)
        return NULL;
    fks_webhook_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->o = *opts;
    static const char *const result_label[] = { "result" };
    static const char *const kind_label[] = { "kind" };
    self->m_results = fks_counter_family ("fks_gateway_webhooks_total",
        "Webhook requests by outcome (accepted, duplicate, invalid, unauthorized, forbidden, "
        "too_large, unsupported_media_type, rate_limited, unavailable, ...)", result_label, 1);
    self->m_accept_s = fks_metric_get (fks_histogram_family ("fks_gateway_webhook_accept_seconds",
        "Time from request to answer for accepted and duplicate webhooks (commit included)",
        NULL, 0, s_latency_buckets, sizeof s_latency_buckets / sizeof s_latency_buckets[0]),
        NULL);
    self->m_auth_fail = fks_counter_family ("fks_gateway_auth_failures_total",
        "Refused webhook authentications and sources, by kind", kind_label, 1);
    self->m_accepted = fks_metric_get1 (self->m_results, "accepted");
    self->m_duplicate = fks_metric_get1 (self->m_results, "duplicate");
    return self;
}

void
fks_webhook_destroy (fks_webhook_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

static int
s_result (fks_webhook_t *self, const char *result, int status)
{
    fks_metric_inc (fks_metric_get1 (self->m_results, result));
    return status;
}

//  401/403: count, record the security event, answer.
static int
s_refuse (fks_webhook_t *self, struct mg_connection *conn, fks_auth_result_t ar,
          const char *addr)
{
    const char *kind = fks_auth_result_kind (ar);
    int status = fks_auth_result_status (ar);
    fks_metric_inc (fks_metric_get1 (self->m_auth_fail, kind));
    fks_security_record (self->o.security, kind, addr, fks_http_path (conn),
                         fks_auth_result_message (ar));
    fks_http_error (conn, status, NULL, status == 403 ? "forbidden" : "unauthorized", NULL,
                    fks_auth_result_message (ar));
    return s_result (self, status == 403 ? "forbidden" : "unauthorized", status);
}


//  The raw body is stored in the inbox as the alert's record, but the passphrase it may carry
//  is a secret and must not sit in the database or its backups: every verbatim occurrence is
//  overwritten with '*'. When the passphrase was written with JSON escapes and cannot be found
//  verbatim, the raw body is not stored at all (length 0); the parsed alert still is. Runs
//  after every use of the raw bytes (HMAC, parse). Returns the length to store.
static size_t
s_redact (char *body, size_t len, const char *secret, size_t secret_len)
{
    if (secret_len == 0)
        return len;
    bool found = false;
    char *p = body;
    size_t left = len;
    char *hit;
    while (left >= secret_len && (hit = memmem (p, left, secret, secret_len))) {
        memset (hit, '*', secret_len);
        found = true;
        left -= (size_t) (hit - p) + secret_len;
        p = hit + secret_len;
    }
    if (!found) {
        OPENSSL_cleanse (body, len);
        return 0;
    }
    return len;
}

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    fks_webhook_t *self = cbdata;
    const fks_gateway_config_t *cfg = self->o.cfg;
    int64_t t0 = fks_mono_ns ();
    const char *path = fks_http_path (conn);
    if (strcmp (path, "/webhook/tradingview") != 0 && strcmp (path, "/webhook") != 0)
        return fks_http_error (conn, 404, NULL, "not_found", NULL, "no such webhook route");
    if (strcmp (fks_http_method (conn), "POST") != 0) {
        fks_http_error (conn, 405, "Allow: POST\r\n", "method_not_allowed", NULL,
                        "webhooks are sent with POST");
        return s_result (self, "method_not_allowed", 405);
    }

    //  The source: 403 before anything else.
    //  Every X-Forwarded-For line: a proxy that adds its own line after the client's must not
    //  leave the client's (forged) one as the only one read. One byte beyond the limit, so
    //  that a longer header is refused, not cut.
    fks_ipaddr_t client;
    memset (&client, 0, sizeof client);
    char xff[FKS_AUTH_XFF_MAX + 2];
    fks_auth_result_t ar = fks_auth_check_source (
        self->o.auth, fks_http_peer (conn),
        fks_http_header_all (conn, "X-Forwarded-For", xff, sizeof xff), &client);
    char addr[FKS_AUTH_ADDR_TEXT_MAX];
    if (client.family)
        fks_ipaddr_format (&client, addr);
    else
        snprintf (addr, sizeof addr, "%s", fks_http_peer (conn));
    if (ar != FKS_AUTH_OK)
        return s_refuse (self, conn, ar, addr);

    int retry = 1;
    if (fks_ratelimit_hit (self->o.rl, "ip", addr, cfg->rate_ip, &retry) != 0) {
        char hdr[48];
        snprintf (hdr, sizeof hdr, "Retry-After: %d\r\n", retry);
        fks_http_error (conn, 429, hdr, "rate_limited", NULL,
                        "too many requests from this address; retry after the given seconds");
        return s_result (self, "rate_limited", 429);
    }

    s_scratch_t *sc = malloc (sizeof *sc);
    if (!sc) {
        fks_http_error (conn, 503, "Retry-After: 1\r\n", "unavailable", NULL, "out of memory");
        return s_result (self, "unavailable", 503);
    }
    int status = 500;
    msgpack_sbuffer packed, frame;
    msgpack_sbuffer_init (&packed);
    msgpack_sbuffer_init (&frame);
    size_t len = 0;
    size_t cap = (size_t) cfg->body_max < sizeof sc->body ? (size_t) cfg->body_max
                                                          : sizeof sc->body;
    int rb = fks_http_read_body (conn, sc->body, cap, &len);
    if (rb == 1) {
        char msg[96];
        snprintf (msg, sizeof msg, "the body is larger than %zu bytes", cap);
        fks_http_error (conn, 413, NULL, "body_too_large", "body", msg);
        status = s_result (self, "too_large", 413);
        goto done;
    }
    if (rb < 0) {
        fks_http_error (conn, 408, NULL, "request_timeout", "body",
                        "the body did not arrive in time");
        status = s_result (self, "timeout", 408);
        goto done;
    }

    const char *ctype = fks_http_header (conn, "Content-Type");
    bool is_tv = strcmp (path, "/webhook/tradingview") == 0;
    fks_alert_t *alert = &sc->alert;
    fks_alert_secret_t *pass = &sc->pass;
    fks_alert_err_t perr;
    if (fks_alert_parse (ctype, sc->body, len, "tradingview", alert, pass, &perr) != 0) {
        fks_http_error (conn, perr.status, NULL, perr.code, perr.field, perr.message);
        status = s_result (self, perr.status == 415 ? "unsupported_media_type"
                                 : perr.status == 413 ? "too_large" : "invalid", perr.status);
        goto done;
    }

    //  Credentials: any one valid. HMAC first (it also says the sender is a script).
    const char *ts = fks_http_header (conn, "X-FKS-Timestamp");
    const char *sig = fks_http_header (conn, "X-FKS-Signature");
    int tlen = fks_http_query (conn, "token", sc->token, sizeof sc->token);
    fks_auth_result_t hmac = FKS_AUTH_NO_CREDENTIALS;
    bool ok = false;
    bool by_hmac = false;
    if (ts || sig) {
        hmac = fks_auth_check_hmac (self->o.auth, ts, sig, sc->body, len, fks_now_ms () / 1000);
        ok = by_hmac = hmac == FKS_AUTH_OK;
    }
    if (!ok && tlen >= 0)
        ok = fks_auth_check_secret (self->o.auth, sc->token, (size_t) tlen) == FKS_AUTH_OK;
    if (!ok && pass->present)
        ok = fks_auth_check_secret (self->o.auth, pass->value, pass->len) == FKS_AUTH_OK;
    bool presented_secret = tlen != -1 || pass->present;
    OPENSSL_cleanse (sc->token, sizeof sc->token);
    if (pass->present)
        len = s_redact (sc->body, len, pass->value, pass->len);
    fks_alert_secret_wipe (pass);
    if (!ok) {
        ar = (ts || sig) ? hmac : presented_secret ? FKS_AUTH_BAD_SECRET
                                                    : FKS_AUTH_NO_CREDENTIALS;
        status = s_refuse (self, conn, ar, addr);
        goto done;
    }
    if (by_hmac && !is_tv)
        snprintf (alert->source, sizeof alert->source, "script");
    //  The secret wherever else the sender put it (a comment, a strategy name, a body sent
    //  with ?token=) is not stored, published or answered either.
    fks_auth_redact (self->o.auth, sc->body, len);
    char *texts[] = { alert->strategy, alert->comment, alert->client_id };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        fks_auth_redact (self->o.auth, texts[i], strlen (texts[i]));

    //  The inbox row and its envelope.
    fks_inbox_item_t *item = &sc->item;
    memset (item, 0, sizeof *item);
    size_t json_len = 0;
    fks_envelope_hdr_t hdr;
    msgpack_packer pk;
    msgpack_packer_init (&pk, &packed, msgpack_sbuffer_write);
    fks_envelope_err_t eerr = { "" };
    //  A signed request's key holds its signed timestamp, so that a replay of it is a
    //  duplicate for as long as the row exists (auth checked the timestamp's form).
    int64_t signed_ts = by_hmac ? strtoll (ts, NULL, 10) : -1;
    if (fks_alert_idem_key (alert, fks_now_ms (), cfg->idem_window_ms, signed_ts, sc->idem,
                            sc->idem_prev) != 0
        || fks_id_new (&item->id) != 0
        || fks_envelope_hdr_init (&hdr, "webhook.received", "gateway", &item->id, NULL) != 0
        || fks_alert_pack (alert, &item->id, &pk) != 0
        || fks_envelope_encode (&hdr, packed.data, packed.size, &frame, &eerr) != 0
        || fks_alert_to_json (alert, sc->json, sizeof sc->json, &json_len) != 0) {
        fks_error ("webhook: cannot build the inbox row: %s", eerr.msg[0] ? eerr.msg : "internal");
        fks_http_error (conn, 500, NULL, "internal", NULL, "the alert could not be prepared");
        status = s_result (self, "error", 500);
        goto done;
    }
    item->event_id = hdr.id;
    item->ts_ns = hdr.ts;
    item->idem_key = sc->idem;
    item->prev_key = sc->idem_prev;
    item->source = alert->source;
    item->content_type = ctype ? ctype : "";
    item->body = sc->body;
    item->body_len = len;
    item->alert_json = sc->json;
    item->alert_json_len = json_len;
    item->remote_addr = addr;
    item->envelope = frame.data;
    item->envelope_len = frame.size;

    fks_inbox_result_t res = fks_inbox_submit (self->o.inbox, item);
    char id_s[FKS_ID_STR_SIZE];
    char out[128];
    if (res == FKS_INBOX_FAILED) {
        char fields[256] = "";
        fks_log_field_str (fields, sizeof fields, "remote_addr", addr);
        fks_log (FKS_LOG_WARN, NULL, fields, "webhook refused with 503: %s", item->why);
        fks_http_error (conn, 503, "Retry-After: 1\r\n", "unavailable", NULL,
                        "the alert could not be stored; nothing was accepted, retry");
        status = s_result (self, "unavailable", 503);
        goto done;
    }
    fks_id_format (&item->result_id, id_s);
    bool accepted = res == FKS_INBOX_ACCEPTED;
    int n = snprintf (out, sizeof out, "{\"id\":\"%s\",\"status\":\"%s\"}", id_s,
                      accepted ? "accepted" : "duplicate");
    status = fks_http_json (conn, accepted ? 202 : 200, out, (size_t) n);
    fks_metric_inc (accepted ? self->m_accepted : self->m_duplicate);
    fks_metric_observe (self->m_accept_s, (double) (fks_mono_ns () - t0) / 1e9);
    if (fks_log_level () <= FKS_LOG_INFO) {
        char fields[512] = "";
        fks_log_field_str (fields, sizeof fields, "symbol", alert->symbol);
        fks_log_field_str (fields, sizeof fields, "source", alert->source);
        fks_log_field_str (fields, sizeof fields, "remote_addr", addr);
        fks_log_field_int (fields, sizeof fields, "seq", item->seq);
        fks_log (FKS_LOG_INFO, id_s, fields, "webhook %s", accepted ? "accepted" : "duplicate");
    }
done:
    msgpack_sbuffer_destroy (&packed);
    msgpack_sbuffer_destroy (&frame);
    //  The body may hold the passphrase: nothing of it stays in freed memory.
    OPENSSL_cleanse (sc->body, len);
    OPENSSL_cleanse (&sc->pass, sizeof sc->pass);
    free (sc);
    return status;
}

void
fks_webhook_register (fks_webhook_t *self, struct mg_context *ctx)
{
    mg_set_request_handler (ctx, "/webhook", s_handle, self);
    mg_set_request_handler (ctx, "/webhook/tradingview", s_handle, self);
}
