/*  fks_ai.c - fks-ai, the ai worker: every signal gets a score, and only confident ones go on.
 *
 *  Consumes signal.created (consumer group "ai"). For each signal, inside the runtime's
 *  transaction (workers/runtime.h): read the newest bars of its symbol at the model's interval
 *  (the 50 up to the signal's time), compute the features (featureset.h), score them with the
 *  model in use (modelstore.h) and decide (scorer.h). Then:
 *
 *    - passed: the signal's status becomes `scored`, the alert's `scored`, and signal.scored
 *      carries the signal with its score, the threshold and the model's version; the
 *      execution worker consumes it (FKS_EXECUTION_INPUT=signal.scored);
 *    - filtered: the signal's and the alert's status become `filtered`, and signal.filtered
 *      (stage ai) carries the reason, the score and the threshold.
 *
 *  Either way the decision (score, threshold, model version, fallback) is kept in the signal's
 *  params under "ai", so GET /api/v1/alerts/{id} shows why. A signal that is no longer
 *  `created` (handled already) is left alone. A message that cannot be handled at all is
 *  recorded by on_fail: the signal and the alert become `failed` and signal.filtered says why.
 *
 *  The model is loaded at start (a file that does not load stops the program with the
 *  reason; FKS_AI_MODEL=none runs without one, on the fallback) and reloaded when its file
 *  changes; a changed file that does not load is refused and the previous model stays.
 *
 *  Configuration, besides the runtime's: FKS_AI_PORT (8007), FKS_AI_MODEL (the shipped
 *  tools/data/model.txt), FKS_AI_THRESHOLD (0.5), FKS_AI_ALERT_WEIGHT (0.5), FKS_AI_FALLBACK
 *  (alert, pass or filter), FKS_AI_FILTER_EXITS (false), FKS_AI_INTERVAL (the model's),
 *  FKS_AI_MODEL_CHECK (1s).
 *
 *  Metrics: fks_ai_inference_seconds, fks_ai_score, fks_ai_signals_total{result},
 *  fks_ai_filtered_total{reason}, fks_ai_fallback_total{reason}, fks_ai_model_info{version}
 *  (1 for the model in use), fks_ai_model_loads_total{result}.
 */
#include "workers/ai/modelstore.h"
#include "workers/ai/scorer.h"
#include "workers/runtime.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FKS_SOURCE_DIR
#   define FKS_SOURCE_DIR "."
#endif
#define S_DEFAULT_MODEL FKS_SOURCE_DIR "/tools/data/model.txt"

//  The alert's status only moves forward (the signal worker's rule): accepted < signalled <
//  scored < ordered < final states.
#define S_RANK(x) "(CASE " x " WHEN 'accepted' THEN 1 WHEN 'signalled' THEN 2 " \
                  "WHEN 'scored' THEN 3 WHEN 'ordered' THEN 4 WHEN 'filled' THEN 6 ELSE 5 END)"

static const fks_pg_stmt_t s_stmts[] = {
    { "ai_bars",
      "SELECT close::float8, volume::float8 FROM bars"
      " WHERE symbol = $1 AND interval = $2"
      "   AND open_time <= timestamptz 'epoch' + $3::bigint * interval '1 millisecond'"
      " ORDER BY open_time DESC LIMIT " "50", 3 },
    { "ai_signal",
      "UPDATE signals SET status = $2, updated_at = now(),"
      "       params = params || jsonb_build_object ('ai', $3::jsonb)"
      " WHERE id = $1 AND status = 'created' RETURNING id", 3 },
    //  The symbol's signals created before one (and after $3: signal ids are UUIDv7, time
    //  first) that no ai replica has scored yet (s_earlier).
    { "ai_earlier",
      "SELECT id FROM signals"
      " WHERE symbol = $1 AND id < $2::uuid AND id > $3::uuid AND status = 'created'"
      "   AND action <> 'cancel'"
      " ORDER BY id DESC LIMIT 64", 3 },
    { "ai_signal_failed",
      "UPDATE signals SET status = 'failed', reason = $2, updated_at = now()"
      " WHERE id = $1 AND status = 'created'", 2 },
    { "ai_inbox_status",
      "UPDATE inbox SET status = $2, updated_at = now()"
      " WHERE id = $1 AND " S_RANK ("status") " < " S_RANK ("$2::text"), 2 },
};

typedef struct {
    fks_scorer_cfg_t scorer;
    char *model_path;           /* NULL: no model (FKS_AI_MODEL=none) */
    char *interval;             /* NULL: the model's */
    int64_t check_ms;
    fks_model_store_t *store;
    fks_metric_t *m_inference, *m_score, *m_scored, *m_filtered_total;
    fks_metric_family_t *f_filtered, *f_fallback, *f_model, *f_loads;
} s_ai_t;

//  A signal as signal.created carries it.
typedef struct {
    fks_id_t signal_id, inbox_id;
    bool has_inbox;
    char symbol[65], side[9], order_type[17], strategy[129], reason[513];
    double qty, limit_price, price, stop_loss, take_profit, confidence;
    bool has_limit_price, has_price, has_stop_loss, has_take_profit, has_confidence;
    bool has_strategy, has_reason, reduce_only;
    bool close_position;            /* what execution sizes from the position (passed on) */
    bool has_open_qty, has_target, has_position_share, has_qty_decimals;
    double open_qty, target, position_share;
    int64_t qty_decimals;
} s_signal_t;


//  --------------------------------------------------------------------------
//  The model

static void
s_model_gauge (s_ai_t *self, const char *old_version)
{
    fks_model_t m;
    if (old_version && *old_version)
        fks_metric_set (fks_metric_get1 (self->f_model, old_version), 0);
    if (fks_model_store_get (self->store, &m))
        fks_metric_set (fks_metric_get1 (self->f_model, m.version), 1);
}

//  Reloads the model when its file changed (at most once per check interval).
static void
s_refresh (s_ai_t *self)
{
    if (!self->store)
        return;
    char old[FKS_MODEL_VERSION_MAX] = "", err[512];
    int rc = fks_model_store_refresh (self->store, fks_mono_ns () / 1000000, old, err,
                                      sizeof err);
    if (rc == 1) {
        fks_model_t m;
        fks_model_store_get (self->store, &m);
        fks_metric_inc (fks_metric_get1 (self->f_loads, "ok"));
        s_model_gauge (self, old);
        fks_log (FKS_LOG_INFO, NULL, NULL, "model %s loaded from %s (was %s): %s", m.version,
                 fks_model_store_path (self->store), old[0] ? old : "none", m.trained);
    }
    else if (rc < 0) {
        fks_metric_inc (fks_metric_get1 (self->f_loads, "refused"));
        fks_log (FKS_LOG_ERROR, NULL, NULL, "model file refused: %s", err);
    }
}

static void
s_idle (void *state, void *arg)
{
    (void) state;
    s_refresh (arg);
}


//  --------------------------------------------------------------------------
//  Reading the signal

static int
s_read (const fks_envelope_t *env, s_signal_t *s)
{
    memset (s, 0, sizeof *s);
    if (fks_envelope_get_id (env, "signal_id", &s->signal_id) != 0
        || fks_envelope_get_str (env, "symbol", s->symbol, sizeof s->symbol) != 0
        || fks_envelope_get_str (env, "side", s->side, sizeof s->side) != 0
        || fks_envelope_get_f64 (env, "qty", &s->qty) != 0
        || fks_envelope_get_str (env, "order_type", s->order_type, sizeof s->order_type) != 0)
        return -1;
    s->has_inbox = fks_envelope_get_id (env, "inbox_id", &s->inbox_id) == 0;
    s->has_limit_price = fks_envelope_get_f64 (env, "limit_price", &s->limit_price) == 0;
    s->has_price = fks_envelope_get_f64 (env, "price", &s->price) == 0;
    s->has_stop_loss = fks_envelope_get_f64 (env, "stop_loss", &s->stop_loss) == 0;
    s->has_take_profit = fks_envelope_get_f64 (env, "take_profit", &s->take_profit) == 0;
    s->has_confidence = fks_envelope_get_f64 (env, "confidence", &s->confidence) == 0
                        && s->confidence >= 0 && s->confidence <= 1;
    s->has_strategy = fks_envelope_get_str (env, "strategy", s->strategy,
                                            sizeof s->strategy) == 0 && s->strategy[0];
    s->has_reason = fks_envelope_get_str (env, "reason", s->reason, sizeof s->reason) == 0
                    && s->reason[0];
    bool ro = false;
    s->reduce_only = fks_envelope_get_bool (env, "reduce_only", &ro) == 0 && ro;
    bool cp = false;
    s->close_position = fks_envelope_get_bool (env, "close_position", &cp) == 0 && cp;
    s->has_open_qty = fks_envelope_get_f64 (env, "open_qty", &s->open_qty) == 0;
    s->has_target = fks_envelope_get_f64 (env, "target", &s->target) == 0;
    s->has_position_share = fks_envelope_get_f64 (env, "position_share",
                                                  &s->position_share) == 0;
    s->has_qty_decimals = fks_envelope_get_i64 (env, "qty_decimals", &s->qty_decimals) == 0;
    return 0;
}

//  The newest bars up to ms, oldest first: closes and volumes, *n of them (<= 50).
static int
s_bars (fks_worker_tx_t *tx, const char *symbol, const char *interval, int64_t ms,
        double close[FKS_FEATURES_MIN_BARS], double volume[FKS_FEATURES_MIN_BARS], size_t *n)
{
    char t[24];
    snprintf (t, sizeof t, "%" PRId64, ms);
    const char *values[3] = { symbol, interval, t };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ai_bars", 3, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "reading bars");
    int rows = PQntuples (r);
    if (rows > FKS_FEATURES_MIN_BARS)
        rows = FKS_FEATURES_MIN_BARS;
    for (int i = 0; i < rows; i++) {
        //  Newest first from the query: fill from the end.
        close[rows - 1 - i] = fks_worker_parse_num (PQgetvalue (r, i, 0), 0);
        volume[rows - 1 - i] = fks_worker_parse_num (PQgetvalue (r, i, 1), 0);
    }
    *n = (size_t) rows;
    PQclear (r);
    return FKS_WORKER_OK;
}


//  --------------------------------------------------------------------------
//  Writing

static int
s_inbox_status (fks_worker_tx_t *tx, const s_signal_t *s, const char *status)
{
    if (!s->has_inbox)
        return FKS_WORKER_OK;
    char id[FKS_ID_STR_SIZE];
    const char *values[2] = { fks_worker_uuid (id, &s->inbox_id), status };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ai_inbox_status", 2, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "updating the alert's status");
    PQclear (r);
    return FKS_WORKER_OK;
}

static int
s_emit_filtered (fks_worker_tx_t *tx, const s_signal_t *s, const char *reason, bool has_score,
                 double score, bool has_threshold, double threshold)
{
    msgpack_packer *pk = fks_worker_body (tx);
    msgpack_pack_map (pk, 4 + s->has_inbox + has_score + has_threshold);
    fks_pack_kv_id (pk, "signal_id", &s->signal_id);
    if (s->has_inbox)
        fks_pack_kv_id (pk, "inbox_id", &s->inbox_id);
    fks_pack_kv_str (pk, "symbol", s->symbol);
    fks_pack_kv_str (pk, "stage", "ai");
    fks_pack_kv_str (pk, "reason", reason);
    if (has_score)
        fks_pack_kv_f64 (pk, "score", score);
    if (has_threshold)
        fks_pack_kv_f64 (pk, "threshold", threshold);
    return fks_worker_emit (tx, "signal.filtered", NULL, NULL);
}

static int
s_emit_scored (fks_worker_tx_t *tx, const s_signal_t *s, const fks_scorer_result_t *d,
               double threshold, const char *version)
{
    msgpack_packer *pk = fks_worker_body (tx);
    //  signal_id, symbol, side, qty, order_type, reduce_only, reason, score, threshold, and
    //  what is present of the rest.
    size_t n = 9 + s->has_inbox + s->has_limit_price + s->has_price + s->has_stop_loss
             + s->has_take_profit + s->has_strategy + s->has_confidence + (version[0] != 0)
             + s->close_position + s->has_open_qty + s->has_target + s->has_position_share
             + s->has_qty_decimals;
    msgpack_pack_map (pk, n);
    fks_pack_kv_id (pk, "signal_id", &s->signal_id);
    if (s->has_inbox)
        fks_pack_kv_id (pk, "inbox_id", &s->inbox_id);
    fks_pack_kv_str (pk, "symbol", s->symbol);
    fks_pack_kv_str (pk, "side", s->side);
    fks_pack_kv_f64 (pk, "qty", s->qty);
    fks_pack_kv_str (pk, "order_type", s->order_type);
    if (s->has_limit_price)
        fks_pack_kv_f64 (pk, "limit_price", s->limit_price);
    if (s->has_price)
        fks_pack_kv_f64 (pk, "price", s->price);
    if (s->has_stop_loss)
        fks_pack_kv_f64 (pk, "stop_loss", s->stop_loss);
    if (s->has_take_profit)
        fks_pack_kv_f64 (pk, "take_profit", s->take_profit);
    if (s->has_strategy)
        fks_pack_kv_str (pk, "strategy", s->strategy);
    if (s->has_confidence)
        fks_pack_kv_f64 (pk, "confidence", s->confidence);
    fks_pack_kv_bool (pk, "reduce_only", s->reduce_only);
    if (s->close_position)
        fks_pack_kv_bool (pk, "close_position", true);
    if (s->has_open_qty)
        fks_pack_kv_f64 (pk, "open_qty", s->open_qty);
    if (s->has_target)
        fks_pack_kv_f64 (pk, "target", s->target);
    if (s->has_position_share)
        fks_pack_kv_f64 (pk, "position_share", s->position_share);
    if (s->has_qty_decimals)
        fks_pack_kv_i64 (pk, "qty_decimals", s->qty_decimals);
    //  The signal's own reason, then the ai's, within the schema's 512 bytes.
    char reason[512];
    snprintf (reason, sizeof reason, "%.200s%s%.300s", s->has_reason ? s->reason : "",
              s->has_reason ? "; ai: " : "ai: ", d->reason);
    fks_pack_kv_str (pk, "reason", reason);
    fks_pack_kv_f64 (pk, "score", d->score);
    fks_pack_kv_f64 (pk, "threshold", threshold);
    if (version[0])
        fks_pack_kv_str (pk, "model_version", version);
    return fks_worker_emit (tx, "signal.scored", NULL, NULL);
}

//  A JSON number: `nan` or `inf` is not JSON, and PostgreSQL refuses the whole update for it
//  (so an exit that passed would end 'failed'); such a value is written as null. The scorer
//  never returns one: this is the last guard.
static const char *
s_json_num (char buf[32], double v)
{
    if (isfinite (v))
        snprintf (buf, 32, "%.6g", v);
    else
        snprintf (buf, 32, "null");
    return buf;
}

//  The decision as JSON for the signal's params: {"passed":..,"score":..,...}. The reason is
//  escaped, every number is finite or null and the rest are checked identifiers, so the text
//  is valid JSON; cap (S_DECISION_MAX) holds the longest one. Returns 0, or -1 if it did not
//  fit.
#define S_DECISION_MAX (4 * FKS_SCORER_REASON_MAX + 512)
static int
s_decision_json (char *buf, size_t cap, const fks_scorer_result_t *d, double threshold,
                 const char *version)
{
    char esc[3 * FKS_SCORER_REASON_MAX];
    fks_json_escape (esc, sizeof esc, d->reason, strlen (d->reason));
    char score[48] = "", model_p[48] = "", ver[FKS_MODEL_VERSION_MAX + 24] = "",
         fallback[48] = "", num[32];
    if (d->has_score)
        snprintf (score, sizeof score, ",\"score\":%s", s_json_num (num, d->score));
    if (d->has_model_p)
        snprintf (model_p, sizeof model_p, ",\"model_p\":%s", s_json_num (num, d->model_p));
    if (version[0])
        snprintf (ver, sizeof ver, ",\"model_version\":\"%s\"", version);
    if (d->fallback)
        snprintf (fallback, sizeof fallback, ",\"fallback\":\"%s\"", d->fallback);
    int w = snprintf (buf, cap, "{\"passed\":%s,\"threshold\":%s%s%s%s%s,\"reason\":\"%s\"}",
                      d->pass ? "true" : "false", s_json_num (num, threshold), score, model_p,
                      ver, fallback, esc);
    return w > 0 && (size_t) w < cap ? 0 : -1;
}


//  --------------------------------------------------------------------------
//  The handler

#define S_EARLIER_WINDOW_MS 10000   /* how long an exit waits for the signals created before */

//  An exit (a signal that reduces or closes the position), or a share of the position (an add
//  of X % too), is scored after the signals of its symbol created before it: with several ai
//  replicas, the entry's can be in another replica's hands, and scored after the exit, the exit
//  would reach execution first and find nothing to close (or a smaller position to take its
//  share of). While such a signal (created up to S_EARLIER_WINDOW_MS before it, still
//  `created`, not handled earlier in this transaction) exists, the exit is handed back for
//  later (FKS_WORKER_LATER: behind what is queued, the entry among it when it came to this
//  replica after the exit), for up to S_EARLIER_WINDOW_MS of handing it back, and longer while
//  the entry's message may have been lost and is about to be published again
//  (fks_worker_keep_waiting); then it goes on. FKS_WORKER_OK or FKS_WORKER_LATER.
static int
s_earlier (fks_worker_tx_t *tx, const s_signal_t *s)
{
    int n;
    int64_t newest;
    int rc = fks_worker_count_before (tx, "ai_earlier", s->symbol, &s->signal_id,
                                      fks_id_ms (&s->signal_id) - S_EARLIER_WINDOW_MS,
                                      "signal_id", &n, &newest);
    if (rc != FKS_WORKER_OK || n == 0 || !fks_worker_keep_waiting (tx, S_EARLIER_WINDOW_MS,
                                                                   newest))
        return rc;
    return fks_worker_later (tx, "exit for %s waits for %d signal%s of it created before and "
                             "not scored yet", s->symbol, n, n == 1 ? "" : "s");
}

static int
s_handle (fks_worker_tx_t *tx, const fks_envelope_t *env, void *arg)
{
    s_ai_t *self = arg;
    const fks_envelope_hdr_t *hdr = fks_envelope_hdr (env);
    if (strcmp (hdr->type, "signal.created") != 0)
        return fks_worker_fail (tx, "unexpected message type %s", hdr->type);
    s_signal_t s;
    if (s_read (env, &s) != 0)
        return fks_worker_fail (tx, "signal.created without a usable signal_id, symbol, side, "
                                "qty or order_type");
    int rc;
    if ((s.reduce_only || s.close_position || s.has_position_share)
        && (rc = s_earlier (tx, &s)) != FKS_WORKER_OK)
        return rc;
    s_refresh (self);
    fks_model_t model;
    bool has_model = self->store && fks_model_store_get (self->store, &model);
    const char *interval = self->interval ? self->interval : has_model ? model.interval : "1d";

    double close[FKS_FEATURES_MIN_BARS], volume[FKS_FEATURES_MIN_BARS];
    size_t n = 0;
    rc = s_bars (tx, s.symbol, interval, hdr->ts / 1000000, close, volume, &n);
    if (rc != FKS_WORKER_OK)
        return rc;
    int64_t t0 = fks_mono_ns ();
    double features[FKS_FEATURES_N];
    bool have = fks_features_compute (close, volume, n, features) == 0;
    fks_scorer_signal_t sig = { .buy = strcmp (s.side, "buy") == 0,
                                .has_confidence = s.has_confidence,
                                .confidence = s.confidence, .reduce_only = s.reduce_only };
    fks_scorer_result_t d;
    fks_scorer_decide (&self->scorer, has_model ? &model : NULL, have ? features : NULL, n,
                       FKS_FEATURES_MIN_BARS, &sig, &d);
    fks_metric_observe (self->m_inference, (double) (fks_mono_ns () - t0) / 1e9);
    const char *version = has_model ? model.version : "";

    char ai[S_DECISION_MAX], sid[FKS_ID_STR_SIZE];
    if (s_decision_json (ai, sizeof ai, &d, self->scorer.threshold, version) != 0)
        return fks_worker_fail (tx, "internal error: the decision does not fit its record");
    const char *values[3] = { fks_worker_uuid (sid, &s.signal_id),
                              d.pass ? "scored" : "filtered", ai };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ai_signal", 3, values, NULL, NULL, &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "updating the signal");
    bool mine = PQntuples (r) == 1;
    PQclear (r);
    if (!mine) {
        fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "signal %s is no longer "
                 "'created': left as it is", sid);
        return FKS_WORKER_OK;
    }
    rc = s_inbox_status (tx, &s, d.pass ? "scored" : "filtered");
    if (rc != FKS_WORKER_OK)
        return rc;

    if (d.fallback)
        fks_metric_inc (fks_metric_get1 (self->f_fallback, d.fallback));
    if (d.has_score)
        fks_metric_observe (self->m_score, d.score);
    if (d.pass) {
        fks_metric_inc (self->m_scored);
        fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "signal %s %s %s scored: %s",
                 sid, s.side, s.symbol, d.reason);
        return s_emit_scored (tx, &s, &d, self->scorer.threshold, version);
    }
    fks_metric_inc (self->m_filtered_total);
    fks_metric_inc (fks_metric_get1 (self->f_filtered, d.filtered_by));
    fks_log (FKS_LOG_INFO, fks_worker_corr_text (tx), NULL, "signal %s %s %s filtered: %s",
             sid, s.side, s.symbol, d.reason);
    return s_emit_filtered (tx, &s, d.reason, d.has_score, d.score, true,
                            self->scorer.threshold);
}

//  A message that could not be handled: the signal and the alert are marked failed and
//  signal.filtered says why, so the user sees it in GET /api/v1/alerts/{id}.
static int
s_on_fail (fks_worker_tx_t *tx, const fks_envelope_t *env, const char *reason, void *arg)
{
    (void) arg;
    s_signal_t s;
    memset (&s, 0, sizeof s);
    if (!env || fks_envelope_get_id (env, "signal_id", &s.signal_id) != 0)
        return FKS_WORKER_FAIL;         //  nothing to record it against: a dead letter
    s.has_inbox = fks_envelope_get_id (env, "inbox_id", &s.inbox_id) == 0;
    if (fks_envelope_get_str (env, "symbol", s.symbol, sizeof s.symbol) != 0)
        s.symbol[0] = '\0';
    char msg[FKS_WORKER_REASON_MAX], sid[FKS_ID_STR_SIZE];
    snprintf (msg, sizeof msg, "failed: %.400s", reason);
    const char *values[2] = { fks_worker_uuid (sid, &s.signal_id), msg };
    fks_pg_err_t err;
    PGresult *r = fks_pg_exec (fks_worker_pg (tx), "ai_signal_failed", 2, values, NULL, NULL,
                               &err);
    if (!r)
        return fks_worker_pg_error (tx, &err, "marking the signal failed");
    PQclear (r);
    int rc = s_inbox_status (tx, &s, "failed");
    if (rc != FKS_WORKER_OK)
        return rc;
    return s_emit_filtered (tx, &s, msg, false, 0, false, 0);
}


//  --------------------------------------------------------------------------
//  Configuration and main

//  An interval as the bars table spells it: 1 to 4 digits and s, m, h, d, w or M.
static bool
s_interval_ok (const char *text)
{
    size_t n = strlen (text);
    if (n < 2 || n > 5 || text[0] < '1' || text[0] > '9' || !strchr ("smhdwM", text[n - 1]))
        return false;
    for (size_t i = 1; i < n - 1; i++)
        if (text[i] < '0' || text[i] > '9')
            return false;
    return true;
}

static int
s_config (s_ai_t *self)
{
    fks_config_err_t e;
    char *fallback = NULL, *model = NULL;
    memset (self, 0, sizeof *self);
    if (fks_config_double ("FKS_AI_THRESHOLD", 0.5, 0, 1, &self->scorer.threshold, &e) < 0
        || fks_config_double ("FKS_AI_ALERT_WEIGHT", 0.5, 0, 1, &self->scorer.alert_weight,
                              &e) < 0
        || fks_config_bool ("FKS_AI_FILTER_EXITS", false, &self->scorer.filter_exits, &e) < 0
        || fks_config_duration_ms ("FKS_AI_MODEL_CHECK", 1000, 0, 3600000, &self->check_ms,
                                   &e) < 0
        || fks_config_str ("FKS_AI_FALLBACK", "alert", &fallback, &e) < 0
        || fks_config_str ("FKS_AI_MODEL", S_DEFAULT_MODEL, &model, &e) < 0
        || fks_config_str ("FKS_AI_INTERVAL", NULL, &self->interval, &e) < 0)
        goto fail;
    if (fks_fallback_parse (fallback, &self->scorer.fallback) != 0) {
        snprintf (e.msg, sizeof e.msg, "FKS_AI_FALLBACK: expected alert, pass or filter, got "
                  "'%.40s'", fallback);
        goto fail;
    }
    if (self->interval && !s_interval_ok (self->interval)) {
        snprintf (e.msg, sizeof e.msg, "FKS_AI_INTERVAL: expected an interval such as 1h or 1d, "
                  "got '%.16s'", self->interval);
        goto fail;
    }
    if (!model[0]) {
        snprintf (e.msg, sizeof e.msg, "FKS_AI_MODEL is empty: give a model file, or 'none' to "
                  "run on the fallback alone");
        goto fail;
    }
    if (strcmp (model, "none") != 0)
        self->model_path = model;
    else
        free (model);
    model = NULL;
    free (fallback);
    return 0;
fail:
    free (fallback);
    free (model);
    fprintf (stderr, "fks-ai: %s\n", e.msg);
    return -1;
}

static void
s_metrics (s_ai_t *self)
{
    static const double score_buckets[] = { 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                            0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
                                            0.95, 1 };
    self->m_inference = fks_metric_get (fks_histogram_family ("fks_ai_inference_seconds",
        "Time to compute a signal's features and score them", NULL, 0, NULL, 0), NULL);
    self->m_score = fks_metric_get (fks_histogram_family ("fks_ai_score",
        "Scores given to signals (0 to 1)", NULL, 0, score_buckets,
        sizeof score_buckets / sizeof score_buckets[0]), NULL);
    fks_metric_family_t *f_signals = fks_counter_family ("fks_ai_signals_total",
        "Signals decided by the ai worker, by result (scored: passed on; filtered)",
        (const char *[]) { "result" }, 1);
    self->m_scored = fks_metric_get1 (f_signals, "scored");
    self->m_filtered_total = fks_metric_get1 (f_signals, "filtered");
    self->f_filtered = fks_counter_family ("fks_ai_filtered_total",
        "Signals filtered, by reason (below_threshold, no_model, not_enough_bars, "
        "score_not_finite)", (const char *[]) { "reason" }, 1);
    self->f_fallback = fks_counter_family ("fks_ai_fallback_total",
        "Signals decided by the fallback, by why (no_model, not_enough_bars, score_not_finite)",
        (const char *[]) { "reason" }, 1);
    self->f_model = fks_gauge_family ("fks_ai_model_info",
        "The model in use: 1 for its version", (const char *[]) { "version" }, 1);
    self->f_loads = fks_counter_family ("fks_ai_model_loads_total",
        "Model files loaded (ok) or refused (refused: the previous model stayed)",
        (const char *[]) { "result" }, 1);
    const char *reasons[] = { "below_threshold", "no_model", "not_enough_bars",
                              "score_not_finite" };
    for (int i = 0; i < 4; i++)
        fks_metric_get1 (self->f_filtered, reasons[i]);
    for (int i = 1; i < 4; i++)
        fks_metric_get1 (self->f_fallback, reasons[i]);
    fks_metric_get1 (self->f_loads, "ok");
    fks_metric_get1 (self->f_loads, "refused");
}

int
main (void)
{
    if (fks_log_init ("fks-ai") != 0)
        fks_log (FKS_LOG_WARN, NULL, NULL, "FKS_LOG_LEVEL not understood; logging at info");
    static s_ai_t self;
    if (s_config (&self) != 0)
        return 2;
    s_metrics (&self);
    if (self.model_path) {
        self.store = fks_model_store_new (self.model_path, self.check_ms);
        char err[512];
        if (!self.store || fks_model_store_load (self.store, err, sizeof err) != 0) {
            fprintf (stderr, "fks-ai: FKS_AI_MODEL: the model does not load: %s\n",
                     self.store ? err : "out of memory");
            return 2;
        }
        fks_model_t m;
        fks_model_store_get (self.store, &m);
        fks_metric_inc (fks_metric_get1 (self.f_loads, "ok"));
        s_model_gauge (&self, NULL);
        fks_log (FKS_LOG_INFO, NULL, NULL, "model %s from %s: %zu features, %s bars, horizon "
                 "%d; %s", m.version, self.model_path, m.n, self.interval ? self.interval
                 : m.interval, m.horizon, m.trained);
    }
    else
        fks_log (FKS_LOG_WARN, NULL, NULL, "no model (FKS_AI_MODEL=none): every signal is "
                 "decided by the '%s' fallback", fks_fallback_name (self.scorer.fallback));
    fks_log (FKS_LOG_INFO, NULL, NULL, "threshold %.4g, alert weight %.4g, fallback %s, exits "
             "%s", self.scorer.threshold, self.scorer.alert_weight,
             fks_fallback_name (self.scorer.fallback),
             self.scorer.filter_exits ? "held to the threshold" : "always pass");
    static const char *prefixes[] = { "signal.created" };
    fks_worker_def_t def = {
        .program = "fks-ai",
        .group = "ai",
        .src = "ai",
        .port_var = "FKS_AI_PORT",
        .default_port = 8007,
        .prefixes = prefixes,
        .n_prefixes = 1,
        .stmts = s_stmts,
        .n_stmts = sizeof s_stmts / sizeof s_stmts[0],
        .handler = s_handle,
        .on_fail = s_on_fail,
        .idle = s_idle,
        .route = fks_worker_route_symbol,   /* one symbol's signals in the order they came */
        .arg = &self,
    };
    int rc = fks_worker_main (&def);
    fks_model_store_destroy (&self.store);
    free (self.model_path);
    free (self.interval);
    return rc;
}
