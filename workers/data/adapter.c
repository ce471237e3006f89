/*  adapter.c - the one interface of the market-data adapters.
 *
 *  See adapter.h. A thin dispatch over each implementation's table of operations; the
 *  checks every adapter would otherwise repeat (a request without a symbol, a limit of 0, an
 *  out list left half-filled after an error) are done once here.
 */
#include "workers/data/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fks_adapter_t {
    const fks_adapter_ops_t *ops;
    void *impl;
};

fks_adapter_t *
fks_adapter_new (const fks_adapter_ops_t *ops, void *impl)
{
    fks_adapter_t *self = calloc (1, sizeof *self);
    if (!self) {
        if (ops && ops->destroy)
            ops->destroy (impl);
        return NULL;
    }
    self->ops = ops;
    self->impl = impl;
    return self;
}

void *
fks_adapter_impl (const fks_adapter_t *self, const fks_adapter_ops_t *ops)
{
    return self && self->ops == ops ? self->impl : NULL;
}

int
fks_adapter_fetch (fks_adapter_t *self, const fks_fetch_req_t *req, fks_bars_t *out,
                   fks_fetch_err_t *err)
{
    memset (err, 0, sizeof *err);
    err->retry_after_ms = -1;
    if (!req->raw_symbol || !*req->raw_symbol || !req->symbol || !*req->symbol
        || !req->interval || req->limit == 0 || req->end_ms < req->start_ms) {
        snprintf (err->msg, sizeof err->msg, "invalid request");
        return FKS_FETCH_ERROR;
    }
    size_t before = out->n;
    int rc = self->ops->fetch (self->impl, req, out, err);
    if (rc != 0)
        out->n = before;
    return rc;
}

const char *
fks_adapter_name (const fks_adapter_t *self)
{
    return self->ops->name;
}

bool
fks_adapter_is_history (const fks_adapter_t *self)
{
    return self->ops->history;
}

size_t
fks_adapter_page_max (const fks_adapter_t *self)
{
    return self->ops->page_max;
}

bool
fks_adapter_supports (const fks_adapter_t *self, const char *interval)
{
    return self->ops->supports (self->impl, interval);
}

void
fks_adapter_destroy (fks_adapter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fks_adapter_t *self = *self_p;
    if (self->ops->destroy)
        self->ops->destroy (self->impl);
    free (self);
    *self_p = NULL;
}
