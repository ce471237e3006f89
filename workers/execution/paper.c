/*  paper.c - the built-in paper broker: simulated fills at the latest known price.
 *
 *  See paper.h. Everything here is a function of the order, the quote or bar, and the
 *  configuration: no clock, no randomness, no memory of earlier calls. That is what makes a
 *  retried submission produce the same fills with the same ids, which the fills table then
 *  accepts once.
 */
#include "workers/execution/paper.h"
#include "common/config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    fks_broker_t base;              /* first: a fks_broker_t * is a s_paper_t * */
    fks_paper_cfg_t cfg;
} s_paper_t;

void
fks_paper_cfg_defaults (fks_paper_cfg_t *cfg)
{
    memset (cfg, 0, sizeof *cfg);
    cfg->slippage_bps = 0;
    cfg->fee_bps = 10;
    cfg->max_volume_share = 0;
}

int
fks_paper_cfg_load (fks_paper_cfg_t *cfg, char *err, size_t cap)
{
    fks_paper_cfg_t c;
    fks_paper_cfg_defaults (&c);
    fks_config_err_t e;
    char *asset = NULL;
    if (fks_config_double ("FKS_PAPER_SLIPPAGE_BPS", c.slippage_bps, 0, 10000,
                           &c.slippage_bps, &e) < 0
        || fks_config_double ("FKS_PAPER_FEE_BPS", c.fee_bps, -100, 1000, &c.fee_bps, &e) < 0
        || fks_config_double ("FKS_PAPER_MAX_VOLUME_SHARE", c.max_volume_share, 0, 1,
                              &c.max_volume_share, &e) < 0
        || fks_config_str ("FKS_PAPER_FEE_ASSET", "", &asset, &e) < 0) {
        snprintf (err, cap, "%s", e.msg);
        return -1;
    }
    size_t n = strlen (asset);
    bool ok = n < sizeof c.fee_asset;
    for (size_t i = 0; ok && i < n; i++)
        ok = (asset[i] >= 'A' && asset[i] <= 'Z') || (asset[i] >= '0' && asset[i] <= '9');
    if (!ok) {
        snprintf (err, cap, "FKS_PAPER_FEE_ASSET: expected up to 16 of [A-Z0-9], got '%.20s'",
                  asset);
        free (asset);
        return -1;
    }
    memcpy (c.fee_asset, asset, n + 1);
    free (asset);
    *cfg = c;
    return 0;
}

static void
s_result_init (fks_broker_result_t *out, const fks_order_t *o)
{
    memset (out, 0, sizeof *out);
    out->outcome = FKS_BROKER_ACCEPTED;
    snprintf (out->exchange_order_id, sizeof out->exchange_order_id, "paper-%s",
              o->client_order_id);
}

static void
s_add_fill (const s_paper_t *self, const fks_order_t *o, fks_broker_result_t *out,
            double qty, double price)
{
    fks_broker_fill_t *f = &out->fills[out->n_fills];
    snprintf (f->fill_id, sizeof f->fill_id, "%s-%d", o->client_order_id,
              o->fills + (int) out->n_fills + 1);
    f->qty = qty;
    f->price = price;
    f->fee = qty * price * self->cfg.fee_bps / 10000.0;
    snprintf (f->fee_asset, sizeof f->fee_asset, "%s", self->cfg.fee_asset);
    out->n_fills++;
}

static int
s_submit (fks_broker_t *base, const fks_order_t *o, const fks_quote_t *q,
          fks_broker_result_t *out)
{
    s_paper_t *self = (s_paper_t *) base;
    s_result_init (out, o);
    bool has_px = (q->has_last && q->last > 0) || (q->has_ref && q->ref > 0);
    double px = q->has_last && q->last > 0 ? q->last : q->ref;
    double rest = o->qty - o->filled_qty;
    if (!o->limit) {
        if (!has_px) {
            out->outcome = FKS_BROKER_REJECTED;
            snprintf (out->reason, sizeof out->reason, "no price known for %s (no latest bar "
                      "and no price in the signal)", o->symbol);
            return 0;
        }
        double slip = self->cfg.slippage_bps / 10000.0;
        double price = o->buy ? px * (1 + slip) : px * (1 - slip);
        if (!(price > 0) || !isfinite (price)) {
            out->outcome = FKS_BROKER_REJECTED;
            snprintf (out->reason, sizeof out->reason, "no usable price for %s", o->symbol);
            return 0;
        }
        s_add_fill (self, o, out, rest, price);
        return 0;
    }
    //  A limit order: fill now if marketable, else rest.
    if (has_px && (o->buy ? px <= o->limit_price : px >= o->limit_price)) {
        double price = o->buy ? fmin (o->limit_price, px) : fmax (o->limit_price, px);
        s_add_fill (self, o, out, rest, price);
    }
    return 0;
}

static int
s_cancel (fks_broker_t *base, const fks_order_t *o, fks_broker_result_t *out)
{
    (void) base;
    s_result_init (out, o);
    out->outcome = FKS_BROKER_CANCELLED;
    snprintf (out->reason, sizeof out->reason, "cancelled");
    return 0;
}

static int
s_on_bar (fks_broker_t *base, const fks_order_t *o, const fks_bar_t *bar,
          fks_broker_result_t *out)
{
    s_paper_t *self = (s_paper_t *) base;
    s_result_init (out, o);
    if (!o->limit || !fks_order_is_open (o->status))
        return 0;
    //  A bar over before the order existed (a replay, a backfill) is not a price it could
    //  have had.
    if (o->created_ms > 0 && (bar->close_time_ms > 0 ? bar->close_time_ms <= o->created_ms
                                                    : bar->open_time_ms < o->created_ms))
        return 0;
    bool crossed = o->buy ? bar->low <= o->limit_price : bar->high >= o->limit_price;
    if (!crossed)
        return 0;
    //  A bar that opened through the limit fills at its open, the better price.
    double price = o->buy ? fmin (o->limit_price, bar->open) : fmax (o->limit_price, bar->open);
    if (!(price > 0))
        price = o->limit_price;
    double rest = o->qty - o->filled_qty;
    double qty = rest;
    if (self->cfg.max_volume_share > 0) {
        //  The bar's share, less what it filled for the orders before this one.
        double cap = bar->volume * self->cfg.max_volume_share - fmax (0, bar->taken);
        if (!(cap > 1e-12))
            return 0;
        if (qty > cap)
            qty = cap;
    }
    if (qty > 0)
        s_add_fill (self, o, out, qty, price);
    return 0;
}

static void
s_destroy (fks_broker_t *base)
{
    free (base);
}

static const fks_broker_ops_t s_ops = {
    .name = "paper",
    .simulated = true,
    .submit = s_submit,
    .cancel = s_cancel,
    .on_bar = s_on_bar,
    .destroy = s_destroy,
};

fks_broker_t *
fks_paper_new (const fks_paper_cfg_t *cfg)
{
    s_paper_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->base.ops = &s_ops;
    if (cfg)
        self->cfg = *cfg;
    else
        fks_paper_cfg_defaults (&self->cfg);
    return &self->base;
}
