/*  webhook.h - POST /webhook/tradingview and POST /webhook: alerts in, durably, in milliseconds.
 *
 *  The handler runs the contract of docs/ARCHITECTURE.gateway.md in this order, cheapest
 *  refusal first: method (405), source address against the allowlist (403), rate limit per
 *  source address (429 with Retry-After), body size (413), body parse - media type (415),
 *  fields (400 naming the field) -, credentials (401: HMAC headers, ?token= or the body's
 *  passphrase, any one valid), then the inbox commit (202 accepted, 200 duplicate, 503 when it
 *  cannot be stored). Every refusal happens before the inbox is touched, so it leaves no row;
 *  401 and 403 are security events. The answer's id is the alert's id, the corr of every
 *  envelope the alert causes; a duplicate answers the first alert's id.
 *
 *  The source of an alert is "script" when it was authenticated by HMAC on /webhook, else
 *  "tradingview". Publishing webhook.received happens after commit, through the inbox's
 *  on_commit callback (fks_gateway.c), off the request's path.
 */
#ifndef FKS_WEBHOOK_H
#define FKS_WEBHOOK_H

#include "gateway/auth.h"
#include "gateway/inbox.h"
#include "gateway/ratelimit.h"
#include "gateway/server.h"

struct mg_context;

typedef struct fks_webhook_t fks_webhook_t;

/*  Everything the handler uses; none of it is owned by the webhook handler, all of it must
 *  outlive it. */
typedef struct {
    const fks_gateway_config_t *cfg;
    fks_inbox_t *inbox;
    fks_auth_t *auth;
    fks_ratelimit_t *rl;
    fks_security_t *security;
} fks_webhook_opts_t;

/*  Creates the handler and registers its metrics. NULL on a missing option. */
fks_webhook_t *fks_webhook_new (const fks_webhook_opts_t *opts);
void fks_webhook_destroy (fks_webhook_t **self_p);

/*  Installs the two routes on ctx. */
void fks_webhook_register (fks_webhook_t *self, struct mg_context *ctx);

#endif
