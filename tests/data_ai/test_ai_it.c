/*  test_ai_it.c - the fks-ai program between signal and execution: signals published on the
 *  real bus, bars in the real database, a model file it loads and reloads (suite
 *  integration).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "bus/client.h"
#include "bus/envelope.h"

TestSuite (ai_it, .fini = dai_cleanup);

//  p(up) = sigmoid(weight * ret_1 / 0.001): on closes rising by one a day from 100 to 149,
//  ret_1 = 149/148 - 1 and p = sigmoid(6.7568) = 0.99884 for weight 1.
static const char *
s_model_text (char *buf, size_t cap, const char *version, int weight)
{
    snprintf (buf, cap, "fks-model 1\nkind logistic\nversion %s\ninterval 1d\nhorizon 5\n"
              "features ret_1\nmean 0\nscale 0.001\nweights %d\nbias 0\nend\n", version, weight);
    return buf;
}

static char s_dir[64];

//  Writes the model file through a rename, as the trainer does.
static const char *
s_put_model (const char *text)
{
    static char path[128];
    char tmp[128];
    snprintf (path, sizeof path, "%s/model.txt", s_dir);
    snprintf (tmp, sizeof tmp, "%s/.model.tmp", s_dir);
    FILE *f = fopen (tmp, "w");
    cr_assert (f);
    fputs (text, f);
    fclose (f);
    cr_assert_eq (rename (tmp, path), 0);
    return path;
}

typedef struct {
    int port;
    char log[128];
    fks_bus_client_t *bus;
    pid_t pid;
} s_ai_t;

//  Bars of symbol at 1d: n closes 100, 101, ... from 2024-01-01.
static void
s_bars (const char *symbol, int n)
{
    char sql[512];
    snprintf (sql, sizeof sql,
              "INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume,"
              " source) SELECT '%s', '1d', timestamptz '2024-01-01' + g * interval '1 day',"
              " 100 + g, 100 + g, 100 + g, 100 + g, 1000, 'replay'"
              " FROM generate_series (0, %d) g", symbol, n - 1);
    dai_sql_exec (sql);
}

static s_ai_t
s_start (const char *model_path, const char *threshold, const char *extra)
{
    s_ai_t ai;
    memset (&ai, 0, sizeof ai);
    const char *db = dai_db ();
    const char *bus = dai_start_bus ();
    ai.port = dai_free_port ();
    snprintf (ai.log, sizeof ai.log, "/tmp/fks-dai-ai-%d.log", (int) getpid ());
    char e[8][1200];
    snprintf (e[0], sizeof e[0], "FKS_PG_URL=%s", db);
    snprintf (e[1], sizeof e[1], "FKS_REDIS_URL=%s", dai_redis_url ());
    snprintf (e[2], sizeof e[2], "FKS_BUS_URL=%s", bus);
    snprintf (e[3], sizeof e[3], "FKS_AI_PORT=%d", ai.port);
    snprintf (e[4], sizeof e[4], "FKS_AI_MODEL=%s", model_path);
    snprintf (e[5], sizeof e[5], "FKS_AI_THRESHOLD=%s", threshold);
    snprintf (e[6], sizeof e[6], "FKS_AI_MODEL_CHECK=100ms");
    snprintf (e[7], sizeof e[7], "%s", extra ? extra : "FKS_AI_ALERT_WEIGHT=0.5");
    const char *env[] = { e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], NULL };
    ai.pid = dai_start ("workers/fks-ai", env, ai.port, ai.log);
    char url[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/ready", ai.port);
    long st = 0;
    for (int i = 0; i < 100 && (st = dai_http ("GET", url, NULL, NULL)) != 200; i++)
        usleep (100000);
    cr_assert_eq (st, 200, "fks-ai joined the bus (log: %s)", ai.log);
    fks_bus_client_opts_t opts = { .url = bus, .name = "test" };
    ai.bus = fks_bus_client_new (&opts);
    cr_assert (ai.bus);
    return ai;
}

static void
s_setup (void)
{
    strcpy (s_dir, "/tmp/fks-ai-it-XXXXXX");
    cr_assert (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    dai_cleanup ();
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", s_dir);
}

//  An alert and its signal as the signal worker leaves them, then signal.created in the outbox
//  and on the bus. confidence < 0: none; share > 0: a share of the position (position_share,
//  with qty_decimals 6). Returns the signal id (text, static per call slot).
static const char *
s_signal_share (s_ai_t *ai, const char *symbol, const char *side, double confidence,
                bool reduce_only, double share)
{
    static char ids[8][FKS_ID_STR_SIZE];
    static int k;
    k = (k + 1) % 8;
    fks_id_t inbox, sig;
    cr_assert_eq (fks_id_new (&inbox), 0);
    cr_assert_eq (fks_id_new (&sig), 0);
    char in_text[FKS_ID_STR_SIZE];
    fks_id_format (&inbox, in_text);
    fks_id_format (&sig, ids[k]);
    const char *p[5] = { in_text, ids[k], symbol, side, confidence >= 0 ? "0.5" : NULL };
    PGresult *r = PQexecParams (dai_pg (),
        "WITH i AS (INSERT INTO inbox (id, idem_key, source, body, alert, status)"
        "           VALUES ($1::uuid, $1::text, 'tradingview', '\\x7b7d', '{}', 'signalled'))"
        "INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty, status,"
        "                     confidence)"
        " VALUES ($2, $1::uuid, $1::uuid, 'tradingview', $3, $4, $4, 1, 'created', $5)",
        5, NULL, p, NULL, NULL, 0);
    cr_assert_eq (PQresultStatus (r), PGRES_COMMAND_OK, "%s", PQerrorMessage (dai_pg ()));
    PQclear (r);

    msgpack_sbuffer body, frame;
    msgpack_sbuffer_init (&body);
    msgpack_sbuffer_init (&frame);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8 + (confidence >= 0) + (share > 0 ? 1 : 0));
    fks_pack_kv_id (&pk, "signal_id", &sig);
    fks_pack_kv_id (&pk, "inbox_id", &inbox);
    fks_pack_kv_str (&pk, "symbol", symbol);
    fks_pack_kv_str (&pk, "side", side);
    fks_pack_kv_f64 (&pk, "qty", 1);
    fks_pack_kv_str (&pk, "order_type", "market");
    fks_pack_kv_bool (&pk, "reduce_only", reduce_only);
    //  As the signal worker sends them: an exit closes the position as execution finds it, a
    //  buy or sell opens its quantity after closing the opposite side; a share of the position
    //  is that share of it as execution finds it.
    if (share > 0) {
        fks_pack_kv_f64 (&pk, "position_share", share);
        fks_pack_kv_i64 (&pk, "qty_decimals", 6);
    }
    else if (reduce_only)
        fks_pack_kv_bool (&pk, "close_position", true);
    else
        fks_pack_kv_f64 (&pk, "open_qty", 1);
    if (confidence >= 0)
        fks_pack_kv_f64 (&pk, "confidence", confidence);
    fks_envelope_hdr_t hdr;
    cr_assert_eq (fks_envelope_hdr_init (&hdr, "signal.created", "signal", &inbox, NULL), 0);
    fks_envelope_err_t err;
    cr_assert_eq (fks_envelope_encode (&hdr, body.data, body.size, &frame, &err), 0, "%s",
                  err.msg);
    char id_text[FKS_ID_STR_SIZE];
    fks_id_format (&hdr.id, id_text);
    int lens[2] = { 0, (int) frame.size }, fmts[2] = { 0, 1 };
    const char *vals[2] = { id_text, frame.data };
    r = PQexecParams (dai_pg (),
        "INSERT INTO events (id, type, corr, src, ts, envelope)"
        " VALUES ($1, 'signal.created', NULL, 'signal', now(), $2)", 2, NULL, vals, lens, fmts,
        0);
    cr_assert_eq (PQresultStatus (r), PGRES_COMMAND_OK, "%s", PQerrorMessage (dai_pg ()));
    PQclear (r);
    cr_assert_eq (fks_bus_publish (ai->bus, "signal.created", frame.data, frame.size), 0);
    msgpack_sbuffer_destroy (&body);
    msgpack_sbuffer_destroy (&frame);
    return ids[k];
}

static const char *
s_signal (s_ai_t *ai, const char *symbol, const char *side, double confidence, bool reduce_only)
{
    return s_signal_share (ai, symbol, side, confidence, reduce_only, 0);
}

//  Waits until the signal left `created`; returns its status (static).
static const char *
s_decided (const char *signal_id)
{
    static char status[32];
    const char *p[1] = { signal_id };
    for (int waited = 0; waited < 20000; waited += 100) {
        PGresult *r = PQexecParams (dai_pg (), "SELECT status FROM signals WHERE id = $1", 1,
                                    NULL, p, NULL, NULL, 0);
        snprintf (status, sizeof status, "%s", PQntuples (r) ? PQgetvalue (r, 0, 0) : "?");
        PQclear (r);
        if (strcmp (status, "created") != 0)
            return status;
        usleep (100000);
    }
    return status;
}

//  The ai's envelope for signal_id (signal.scored or signal.filtered), decoded.
static fks_envelope_t *
s_outcome (const char *signal_id)
{
    PGresult *r = PQexec (dai_pg (), "SELECT envelope FROM events WHERE src = 'ai'");
    fks_envelope_t *found = NULL;
    for (int i = 0; i < PQntuples (r) && !found; i++) {
        size_t len;
        unsigned char *raw = PQunescapeBytea ((unsigned char *) PQgetvalue (r, i, 0), &len);
        fks_envelope_t *env = fks_envelope_decode (raw, len, NULL);
        PQfreemem (raw);
        cr_assert (env);
        fks_id_t id;
        char text[FKS_ID_STR_SIZE];
        if (fks_envelope_get_id (env, "signal_id", &id) == 0) {
            fks_id_format (&id, text);
            if (!strcmp (text, signal_id)) {
                found = env;
                continue;
            }
        }
        fks_envelope_destroy (&env);
    }
    PQclear (r);
    cr_assert (found, "no ai event for signal %s", signal_id);
    return found;
}

static const char *
s_inbox_status (const char *signal_id)
{
    static char status[32];
    const char *p[1] = { signal_id };
    PGresult *r = PQexecParams (dai_pg (), "SELECT i.status FROM inbox i JOIN signals s ON "
                                "s.inbox_id = i.id WHERE s.id = $1", 1, NULL, p, NULL, NULL, 0);
    snprintf (status, sizeof status, "%s", PQntuples (r) ? PQgetvalue (r, 0, 0) : "?");
    PQclear (r);
    return status;
}

static double
s_ai_param (const char *signal_id, const char *key)
{
    char sql[128];
    snprintf (sql, sizeof sql, "SELECT (params->'ai'->>'%s')::float8 FROM signals WHERE id = $1",
              key);
    const char *p[1] = { signal_id };
    return dai_sql_double (sql, 1, p);
}

Test (ai_it, confident_buy_is_scored_and_doubtful_sell_is_filtered, .init = s_setup,
      .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("RISE", 50);
    const char *buy = s_signal (&ai, "RISE", "buy", -1, false);
    const char *sell = s_signal (&ai, "RISE", "sell", -1, false);
    cr_assert_str_eq (s_decided (buy), "scored", "log: %s", ai.log);
    cr_assert_str_eq (s_decided (sell), "filtered");
    cr_assert_str_eq (s_inbox_status (buy), "scored");
    cr_assert_str_eq (s_inbox_status (sell), "filtered");
    double p = 1 / (1 + exp (-(149.0 / 148.0 - 1) / 0.001));
    cr_assert_float_eq (s_ai_param (buy, "score"), p, 1e-5);
    cr_assert_float_eq (s_ai_param (sell, "score"), 1 - p, 1e-5);

    fks_envelope_t *env = s_outcome (buy);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.scored");
    double score, threshold, qty;
    char version[64], side[16], sym[40];
    cr_assert_eq (fks_envelope_get_f64 (env, "score", &score), 0);
    cr_assert_float_eq (score, p, 1e-12);
    double open_qty = 0;
    cr_assert_eq (fks_envelope_get_f64 (env, "open_qty", &open_qty), 0, "open_qty passed on");
    cr_assert_float_eq (open_qty, 1, 1e-12);
    cr_assert_eq (fks_envelope_get_f64 (env, "threshold", &threshold), 0);
    cr_assert_float_eq (threshold, 0.6, 1e-12);
    cr_assert_eq (fks_envelope_get_str (env, "model_version", version, sizeof version), 0);
    cr_assert_str_eq (version, "hand-v1");
    fks_envelope_get_str (env, "side", side, sizeof side);
    fks_envelope_get_str (env, "symbol", sym, sizeof sym);
    fks_envelope_get_f64 (env, "qty", &qty);
    cr_assert_str_eq (side, "buy", "the signal travels on unchanged");
    cr_assert_str_eq (sym, "RISE");
    cr_assert_float_eq (qty, 1, 1e-12);
    cr_assert_str_eq (fks_envelope_hdr (env)->src, "ai");
    cr_assert_not (fks_id_is_nil (&fks_envelope_hdr (env)->corr), "corr is the alert's");
    fks_envelope_destroy (&env);

    env = s_outcome (sell);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.filtered");
    char stage[16], reason[600];
    fks_envelope_get_str (env, "stage", stage, sizeof stage);
    fks_envelope_get_str (env, "reason", reason, sizeof reason);
    cr_assert_str_eq (stage, "ai");
    cr_assert (strstr (reason, "P(down within 5 bars) 0.001") && strstr (reason, "< threshold "
               "0.6"), "%s", reason);
    cr_assert_eq (fks_envelope_get_f64 (env, "score", &score), 0);
    cr_assert_float_eq (score, 1 - p, 1e-12);
    fks_envelope_destroy (&env);

    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_signals_total{result=\"scored\"}"), 1, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_signals_total{result=\"filtered\"}"), 1, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_filtered_total{reason=\"below_threshold\"}"),
                        1, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_inference_seconds_count"), 2, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_score_count"), 2, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_model_info{version=\"hand-v1\"}"), 1, 0);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

Test (ai_it, too_few_bars_fall_back_to_the_alerts_confidence, .init = s_setup,
      .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("YOUNG", 10);
    const char *sure = s_signal (&ai, "YOUNG", "buy", 0.7, false);
    const char *unsure = s_signal (&ai, "YOUNG", "buy", 0.3, false);
    const char *silent = s_signal (&ai, "YOUNG", "sell", -1, false);
    cr_assert_str_eq (s_decided (sure), "scored", "log: %s", ai.log);
    cr_assert_str_eq (s_decided (unsure), "filtered");
    cr_assert_str_eq (s_decided (silent), "scored", "no confidence: passes at the threshold");
    cr_assert_float_eq (s_ai_param (sure, "score"), 0.7, 1e-9);
    cr_assert_float_eq (s_ai_param (silent, "score"), 0.6, 1e-9);
    fks_envelope_t *env = s_outcome (unsure);
    char reason[600];
    fks_envelope_get_str (env, "reason", reason, sizeof reason);
    cr_assert (strstr (reason, "not enough bars for the features: 10 of 50; fallback 'alert'"),
               "%s", reason);
    fks_envelope_destroy (&env);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_fallback_total{reason=\"not_enough_bars\"}"),
                        3, 0);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

Test (ai_it, exit_below_the_threshold_still_goes_on, .init = s_setup, .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("RISE", 50);
    const char *exit_sell = s_signal (&ai, "RISE", "sell", -1, true);
    cr_assert_str_eq (s_decided (exit_sell), "scored", "log: %s", ai.log);
    fks_envelope_t *env = s_outcome (exit_sell);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.scored");
    char reason[600];
    fks_envelope_get_str (env, "reason", reason, sizeof reason);
    cr_assert (strstr (reason, "reduce-only signal passes"), "%s", reason);
    bool close = false;
    cr_assert_eq (fks_envelope_get_bool (env, "close_position", &close), 0,
                  "what execution sizes from the position is passed on");
    cr_assert (close);
    fks_envelope_destroy (&env);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

//  An entry of symbol (a buy of qty) created just before, in another replica's hands: only
//  its row exists. Its id goes to eid.
static void
s_entry_created (const char *symbol, double qty, char eid[FKS_ID_STR_SIZE])
{
    fks_id_t entry;
    cr_assert_eq (fks_id_new (&entry), 0);
    fks_id_format (&entry, eid);
    char sql[600];
    snprintf (sql, sizeof sql,
              "INSERT INTO signals (id, source, corr, symbol, action, side, qty, status)"
              " VALUES ('%s', 'tradingview', '%s', '%s', 'buy', 'buy', %.10g, 'created')",
              eid, eid, symbol, qty);
    dai_sql_exec (sql);
}

//  Asserts that the signal held back behind the entry eid is still created 0.6 s on (what
//  says what it is in the message), then lets the entry be scored.
static void
s_held_behind (const s_ai_t *ai, const char *held, const char *what, const char *eid)
{
    usleep (600 * 1000);
    const char *p[1] = { held };
    PGresult *r = PQexecParams (dai_pg (), "SELECT status FROM signals WHERE id = $1", 1, NULL,
                                p, NULL, NULL, 0);
    cr_assert_str_eq (PQgetvalue (r, 0, 0), "created",
                      "the %s was scored before the entry created before it (log: %s)", what,
                      ai->log);
    PQclear (r);
    char sql[200];
    snprintf (sql, sizeof sql, "UPDATE signals SET status = 'scored' WHERE id = '%s'", eid);
    dai_sql_exec (sql);
}

//  With several ai replicas, an entry and its exit can be scored side by side, and the exit
//  published first would reach execution before the entry and find nothing to close. An exit
//  is scored after the signals of its symbol created before it: here the entry (created just
//  before, in another replica's hands: only its row exists) holds the exit back until it is
//  scored, as that replica would do.
Test (ai_it, an_exit_is_scored_after_the_entry_created_before_it, .init = s_setup,
      .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("RISE", 50);
    char eid[FKS_ID_STR_SIZE];
    s_entry_created ("RISE", 1, eid);
    const char *exit_sell = s_signal (&ai, "RISE", "sell", -1, true);
    s_held_behind (&ai, exit_sell, "exit", eid);
    cr_assert_str_eq (s_decided (exit_sell), "scored", "log: %s", ai.log);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

//  A share of the position (percent_of_position: an add of half the long here) is sized by
//  execution from the position it finds, so it too is scored after the signals of its symbol
//  created before it, and signal.scored carries the share and its decimals on.
Test (ai_it, a_share_of_the_position_waits_for_the_entry_and_travels_on, .init = s_setup,
      .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("RISE", 50);
    char eid[FKS_ID_STR_SIZE];
    s_entry_created ("RISE", 2, eid);
    const char *add = s_signal_share (&ai, "RISE", "buy", -1, false, 0.5);
    s_held_behind (&ai, add, "share", eid);
    cr_assert_str_eq (s_decided (add), "scored", "log: %s", ai.log);
    fks_envelope_t *env = s_outcome (add);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.scored");
    double share = 0;
    int64_t decimals = -1;
    cr_assert_eq (fks_envelope_get_f64 (env, "position_share", &share), 0,
                  "position_share passed on");
    cr_assert_float_eq (share, 0.5, 1e-15);
    cr_assert_eq (fks_envelope_get_i64 (env, "qty_decimals", &decimals), 0,
                  "qty_decimals passed on");
    cr_assert_eq (decimals, 6);
    fks_envelope_destroy (&env);
    //  A partial exit (a reduce-only sell of a quarter) too, below the threshold.
    const char *part = s_signal_share (&ai, "RISE", "sell", -1, true, 0.25);
    cr_assert_str_eq (s_decided (part), "scored", "log: %s", ai.log);
    env = s_outcome (part);
    cr_assert_eq (fks_envelope_get_f64 (env, "position_share", &share), 0);
    cr_assert_float_eq (share, 0.25, 1e-15);
    fks_envelope_destroy (&env);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

//  A model that parses yet scores NaN on these bars (means 1e308 and -1e308 overflow into
//  -inf + inf): the fallback decides, the signal's params stay valid JSON, and the exit goes on
//  (it once ended 'failed': `nan` in the JSON made the update fail).
Test (ai_it, model_scoring_nan_falls_back_and_the_exit_still_goes_on, .init = s_setup,
      .fini = s_teardown)
{
    const char *text = "fks-model 1\nkind logistic\nversion nan-v1\ninterval 1d\nhorizon 5\n"
                       "features ret_1 ret_5\nmean 1e308 -1e308\nscale 0.001 0.001\n"
                       "weights 1 1\nbias 0\nend\n";
    s_ai_t ai = s_start (s_put_model (text), "0.6", "FKS_AI_FALLBACK=filter");
    s_bars ("RISE", 50);
    char buy[FKS_ID_STR_SIZE], ex[FKS_ID_STR_SIZE];
    snprintf (buy, sizeof buy, "%s", s_signal (&ai, "RISE", "buy", -1, false));
    snprintf (ex, sizeof ex, "%s", s_signal (&ai, "RISE", "sell", -1, true));
    cr_assert_str_eq (s_decided (buy), "filtered", "log: %s", ai.log);
    cr_assert_str_eq (s_decided (ex), "scored", "an exit is never held back (log: %s)", ai.log);
    cr_assert_str_eq (s_inbox_status (ex), "scored");
    const char *p[1] = { buy };
    cr_assert_eq (dai_sql_long ("SELECT count(*) FROM signals WHERE id = $1"
                                " AND params->'ai'->>'fallback' = 'score_not_finite'"
                                " AND params->'ai'->>'reason' LIKE '%score not finite%'", 1, p),
                  1);
    cr_assert_float_eq (s_ai_param (ex, "score"), 0.6, 1e-9, "scored at the threshold");

    fks_envelope_t *env = s_outcome (ex);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.scored");
    double score;
    cr_assert_eq (fks_envelope_get_f64 (env, "score", &score), 0);
    cr_assert (isfinite (score), "%g", score);
    fks_envelope_destroy (&env);
    env = s_outcome (buy);
    cr_assert_str_eq (fks_envelope_hdr (env)->type, "signal.filtered");
    char reason[600];
    fks_envelope_get_str (env, "reason", reason, sizeof reason);
    cr_assert (strstr (reason, "model nan-v1: score not finite"), "%s", reason);
    fks_envelope_destroy (&env);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_fallback_total{reason=\"score_not_finite\"}"),
                        2, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_filtered_total{reason=\"score_not_finite\"}"),
                        1, 0);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

Test (ai_it, corrupt_model_file_is_refused_and_the_previous_model_stays, .init = s_setup,
      .fini = s_teardown)
{
    char text[512];
    s_ai_t ai = s_start (s_put_model (s_model_text (text, sizeof text, "hand-v1", 1)), "0.6",
                         NULL);
    s_bars ("RISE", 50);
    //  A truncated copy of a new version replaces the file.
    s_model_text (text, sizeof text, "hand-v2", -1);
    text[strlen (text) - 4] = '\0';
    s_put_model (text);
    double refused = -1;
    for (int i = 0; i < 100 && refused < 1; i++) {
        refused = dai_metric (ai.port, "fks_ai_model_loads_total{result=\"refused\"}");
        usleep (100000);
    }
    cr_assert_float_eq (refused, 1, 0, "the damaged file is refused (log: %s)", ai.log);
    const char *buy = s_signal (&ai, "RISE", "buy", -1, false);
    cr_assert_str_eq (s_decided (buy), "scored", "still hand-v1: a buy on rising bars passes");
    fks_envelope_t *env = s_outcome (buy);
    char version[64];
    fks_envelope_get_str (env, "model_version", version, sizeof version);
    cr_assert_str_eq (version, "hand-v1");
    fks_envelope_destroy (&env);
    char *log = dai_slurp (ai.log);
    cr_assert (strstr (log, "model file refused") && strstr (log, "truncated: no 'end' line")
               && strstr (log, "keeping model hand-v1"), "the log says why");
    free (log);

    //  A complete hand-v2 (weight -1: it expects falls) is taken.
    s_put_model (s_model_text (text, sizeof text, "hand-v2", -1));
    double info = -1;
    for (int i = 0; i < 100 && info < 1; i++) {
        info = dai_metric (ai.port, "fks_ai_model_info{version=\"hand-v2\"}");
        usleep (100000);
    }
    cr_assert_float_eq (info, 1, 0);
    cr_assert_float_eq (dai_metric (ai.port, "fks_ai_model_info{version=\"hand-v1\"}"), 0, 0);
    const char *buy2 = s_signal (&ai, "RISE", "buy", -1, false);
    cr_assert_str_eq (s_decided (buy2), "filtered");
    env = s_outcome (buy2);
    char reason[600];
    fks_envelope_get_str (env, "reason", reason, sizeof reason);
    cr_assert (strstr (reason, "model hand-v2"), "%s", reason);
    fks_envelope_destroy (&env);
    fks_bus_client_destroy (&ai.bus);
    cr_assert_eq (dai_stop (ai.pid), 0, "a clean stop (log: %s)", ai.log);
}

Test (ai_it, model_that_does_not_load_at_start_stops_the_program, .init = s_setup,
      .fini = s_teardown)
{
    const char *path = s_put_model ("fks-model 1\nkind logistic\nversion x\n");
    char e[3][1200], log[128];
    snprintf (e[0], sizeof e[0], "FKS_PG_URL=%s", dai_db ());
    snprintf (e[1], sizeof e[1], "FKS_REDIS_URL=%s", dai_redis_url ());
    snprintf (e[2], sizeof e[2], "FKS_AI_MODEL=%s", path);
    snprintf (log, sizeof log, "/tmp/fks-dai-ai-bad-%d.log", (int) getpid ());
    const char *env[] = { e[0], e[1], e[2], NULL };
    pid_t pid = dai_start ("workers/fks-ai", env, 0, log);
    cr_assert_eq (dai_wait_exit (pid, 10000), 2);
    char *text = dai_slurp (log);
    cr_assert (strstr (text, "FKS_AI_MODEL: the model does not load: ")
               && strstr (text, "model.txt: truncated: no 'end' line"), "%s", text);
    free (text);
    const char *bad[] = { e[0], e[1], "FKS_AI_FALLBACK=maybe", NULL };
    pid = dai_start ("workers/fks-ai", bad, 0, log);
    cr_assert_eq (dai_wait_exit (pid, 10000), 2);
    text = dai_slurp (log);
    cr_assert (strstr (text, "FKS_AI_FALLBACK: expected alert, pass or filter, got 'maybe'"),
               "%s", text);
    free (text);
}

//  fks-train --db on a history longer than --max-bars trains on its newest bars (it once took
//  the oldest: ORDER BY open_time LIMIT), handed to the fit oldest first.
Test (ai_it, trainer_takes_the_newest_bars_of_a_long_history, .init = s_setup,
      .fini = s_teardown)
{
    const char *db = dai_db ();
    dai_sql_exec ("INSERT INTO bars (symbol, interval, open_time, open, high, low, close, volume,"
                  " source) SELECT 'LONG', '1d', timestamptz '2024-01-01' + g * interval '1 day',"
                  " c, c, c, c, 1000 + g, 'replay' FROM (SELECT g, round ((100 + 10 * sin (g / 3.0)"
                  " + g * 0.01)::numeric, 4) AS c FROM generate_series (0, 299) g) s");
    char out[128], log[128];
    snprintf (out, sizeof out, "%s/long.txt", s_dir);
    snprintf (log, sizeof log, "%s/train.log", s_dir);
    const char *max[2] = { "150", "2000000" };
    const char *want[2] = { "data: 150 bars of LONG 1d from the bars table, 2024-05-30 to "
                            "2024-10-26\n",
                            "data: 300 bars of LONG 1d from the bars table, 2024-01-01 to "
                            "2024-10-26\n" };
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork ();
        if (pid == 0) {
            int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2 (fd, 1);
            dup2 (fd, 2);
            setenv ("FKS_PG_URL", db, 1);
            execl (dai_build ("tools/fks-train"), "fks-train", "--db", "--symbol", "LONG",
                   "--out", out, "--max-bars", max[i], (char *) NULL);
            _exit (127);
        }
        int status = 0;
        waitpid (pid, &status, 0);
        char *text = dai_slurp (log);
        cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "%s", text);
        cr_assert (strstr (text, want[i]), "'%s' in:\n%s", want[i], text);
        cr_assert_null (strstr (text, "dropped"), "the bars table holds only good bars: %s",
                        text);
        free (text);
    }
}
