/*  test_pipeline.c - the whole pipeline with history replayed through it (suite integration).
 *
 *  fks-bus, fks-gateway, fks-signal, fks-ai, fks-execution and fks-data run as a user runs
 *  them, on one fresh database. fks-data replays the shipped sample (tools/data/ttrc_ohlcv.csv)
 *  as fast as it can; then alerts arrive at the gateway's webhook, as TradingView sends them.
 *  Every alert must reach a final state, and the numbers must add up from the bars to the
 *  fills: every bar stored and announced once, one signal per alert, every signal scored or
 *  filtered by the ai worker, every scored signal ordered (or refused by risk), every order
 *  filled by the paper broker at the replay's latest price.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define S_SECRET    "pipeline-webhook-secret-0123456789"
#define S_ADMIN     "pipeline-admin-key-abcdefghijklmnopqrstu"
#define S_ALERTS    24

TestSuite (pipeline, .fini = dai_cleanup);

typedef struct {
    char e[12][1200];
    const char *v[13];
    int n;
} s_env_t;

static void
s_set (s_env_t *e, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_set (s_env_t *e, const char *fmt, ...)
{
    cr_assert_lt (e->n, 12);
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (e->e[e->n], sizeof e->e[e->n], fmt, ap);
    va_end (ap);
    e->v[e->n] = e->e[e->n];
    e->n++;
    e->v[e->n] = NULL;
}

static void
s_common (s_env_t *e, const char *db, const char *bus)
{
    memset (e, 0, sizeof *e);
    s_set (e, "FKS_PG_URL=%s", db);
    s_set (e, "FKS_REDIS_URL=%s", dai_redis_url ());
    s_set (e, "FKS_BUS_URL=%s", bus);
    s_set (e, "FKS_LOG_LEVEL=info");
}

static long
s_count (const char *sql)
{
    return dai_sql_long (sql, 0, NULL);
}

static const char *
s_log (const char *name)
{
    static char buf[8][128];
    static int k;
    k = (k + 1) % 8;
    snprintf (buf[k], sizeof buf[k], "/tmp/fks-dai-pipe-%s-%d.log", name, (int) getpid ());
    return buf[k];
}

Test (pipeline, replayed_history_and_alerts_go_all_the_way_and_add_up, .timeout = 200)
{
    const char *db = dai_db ();
    const char *bus = dai_start_bus ();
    char symbol[32];
    snprintf (symbol, sizeof symbol, "PIPE%d", (int) getpid ());

    //  The workers first, as tools/run.sh starts them, execution taking the ai's output.
    s_env_t e;
    int ai_port = dai_free_port (), gw_port = dai_free_port (), sig_port = dai_free_port ();
    int exec_port = dai_free_port (), data_port = dai_free_port ();
    s_common (&e, db, bus);
    s_set (&e, "FKS_SIGNAL_PORT=%d", sig_port);
    dai_start ("workers/fks-signal", e.v, sig_port, s_log ("signal"));
    s_common (&e, db, bus);
    s_set (&e, "FKS_AI_PORT=%d", ai_port);
    s_set (&e, "FKS_AI_MODEL=%s", dai_source ("tools/data/model.txt"));
    s_set (&e, "FKS_AI_THRESHOLD=0.5");
    pid_t ai = dai_start ("workers/fks-ai", e.v, ai_port, s_log ("ai"));
    s_common (&e, db, bus);
    s_set (&e, "FKS_EXECUTION_PORT=%d", exec_port);
    s_set (&e, "FKS_EXECUTION_INPUT=signal.scored");
    dai_start ("workers/fks-execution", e.v, exec_port, s_log ("execution"));
    s_common (&e, db, bus);
    s_set (&e, "FKS_GATEWAY_PORT=%d", gw_port);
    s_set (&e, "FKS_WEBHOOK_SECRET=%s", S_SECRET);
    s_set (&e, "FKS_ADMIN_KEY=%s", S_ADMIN);
    s_set (&e, "FKS_BUS_STREAM_URL=%s", dai_bus_stream_url ());
    dai_start ("gateway/fks-gateway", e.v, gw_port, s_log ("gateway"));

    //  History through the pipeline: the sample replayed as fast as possible.
    s_common (&e, db, bus);
    s_set (&e, "FKS_DATA_PORT=%d", data_port);
    s_set (&e, "FKS_DATA_FEEDS=replay %s %s 1d speed=0 calendar=weekdays",
           dai_source ("tools/data/ttrc_ohlcv.csv"), symbol);
    pid_t data = dai_start ("workers/fks-data", e.v, data_port, s_log ("data"));
    char sql[512];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM bars WHERE symbol = '%s'", symbol);
    cr_assert_eq (dai_wait_count (sql, 5550, 60000), 5550, "log: %s", s_log ("data"));

    //  Alerts as TradingView sends them: buys and sells, some with a confidence.
    char url[96];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/webhook/tradingview", gw_port);
    for (int i = 0; i < S_ALERTS; i++) {
        char body[512], conf[48] = "";
        if (i % 3 == 0)
            snprintf (conf, sizeof conf, ",\"confidence\":\"%.2f\"", (i % 5) * 0.25);
        snprintf (body, sizeof body, "{\"ticker\":\"%s\",\"action\":\"%s\",\"contracts\":\"1\","
                  "\"strategy\":\"pipeline\",\"id\":\"pipe-%d-%d\",\"passphrase\":\"%s\"%s}",
                  symbol, i % 2 ? "sell" : "buy", (int) getpid (), i, S_SECRET, conf);
        char *answer = NULL;
        long st = dai_http ("POST", url, body, &answer);
        cr_assert_eq (st, 202, "alert %d: %ld %s (log: %s)", i, st, answer, s_log ("gateway"));
        free (answer);
    }

    //  Every alert reaches a final state.
    long final = dai_wait_count ("SELECT count(*) FROM inbox WHERE status IN ('filled', "
                                 "'filtered', 'rejected', 'failed')", S_ALERTS, 90000);
    cr_assert_eq (final, S_ALERTS, "alerts in a final state (logs: %s %s %s)",
                  s_log ("signal"), s_log ("ai"), s_log ("execution"));

    //  The bars: every one stored and announced once.
    cr_assert_eq (s_count ("SELECT count(*) FROM bars"), 5550);
    cr_assert_eq (s_count ("SELECT count(*) FROM events WHERE type = 'market.bar'"), 5550);

    //  One signal per alert, each created and then decided by the ai worker.
    cr_assert_eq (s_count ("SELECT count(*) FROM inbox"), S_ALERTS);
    cr_assert_eq (s_count ("SELECT count(*) FROM signals"), S_ALERTS);
    cr_assert_eq (s_count ("SELECT count(*) FROM events WHERE type = 'signal.created'"), S_ALERTS);
    long scored = s_count ("SELECT count(*) FROM events WHERE type = 'signal.scored'");
    long filtered = s_count ("SELECT count(*) FROM events WHERE type = 'signal.filtered' "
                             "AND src = 'ai'");
    cr_assert_eq (scored + filtered, S_ALERTS, "scored %ld + filtered %ld", scored, filtered);
    cr_assert_gt (scored, 0, "some signals are confident enough");
    cr_assert_gt (filtered, 0, "some are not");
    cr_assert_eq (s_count ("SELECT count(*) FROM signals WHERE params ? 'ai'"), S_ALERTS,
                  "each signal keeps its ai decision");
    cr_assert_eq (s_count ("SELECT count(*) FROM signals WHERE (params->'ai'->>'score')::float8 "
                           "BETWEEN 0 AND 1"), S_ALERTS);
    cr_assert_eq (s_count ("SELECT count(*) FROM inbox WHERE status = 'filtered'"), filtered);
    cr_assert_eq (s_count ("SELECT count(*) FROM signals WHERE status = 'filtered'"), filtered);
    cr_assert_eq (s_count ("SELECT count(*) FROM signals WHERE (params->'ai'->>'passed')::bool"),
                  scored);

    //  Every scored signal became exactly one order (or a risk refusal), and every order
    //  filled at the replay's latest close, 51.95.
    long orders = s_count ("SELECT count(*) FROM orders");
    long refused = s_count ("SELECT count(*) FROM events WHERE type = 'risk.rejected'");
    cr_assert_eq (orders + refused, scored, "orders %ld + refused %ld", orders, refused);
    cr_assert_eq (s_count ("SELECT count(DISTINCT signal_id) FROM orders"), orders);
    cr_assert_eq (s_count ("SELECT count(*) FROM orders o JOIN signals s ON s.id = o.signal_id "
                           "WHERE (s.params->'ai'->>'passed')::bool"), orders,
                  "only scored signals are ordered");
    long filled = s_count ("SELECT count(*) FROM orders WHERE status = 'filled'");
    cr_assert_eq (filled, orders);
    cr_assert_eq (s_count ("SELECT count(*) FROM events WHERE type = 'order.filled'"), filled);
    cr_assert_eq (s_count ("SELECT count(*) FROM inbox WHERE status = 'filled'"), filled);
    cr_assert_eq (s_count ("SELECT count(*) FROM fills WHERE price = 51.95"),
                  s_count ("SELECT count(*) FROM fills"));
    //  The position is the sum of the fills.
    double position = dai_sql_double ("SELECT coalesce (sum (qty), 0) FROM positions", 0, NULL);
    double net = dai_sql_double ("SELECT coalesce (sum (CASE side WHEN 'buy' THEN qty ELSE -qty "
                                 "END), 0) FROM fills", 0, NULL);
    cr_assert_float_eq (position, net, 1e-9);

    //  The ai worker's own count agrees.
    char series[96];
    snprintf (series, sizeof series, "fks_ai_signals_total{result=\"scored\"}");
    cr_assert_float_eq (dai_metric (ai_port, series), (double) scored, 0);
    snprintf (series, sizeof series, "fks_ai_signals_total{result=\"filtered\"}");
    cr_assert_float_eq (dai_metric (ai_port, series), (double) filtered, 0);
    cr_log_info ("pipeline: 5550 bars; %d alerts: %ld scored, %ld filtered by the ai, "
                 "%ld orders (%ld refused by risk), %ld filled", S_ALERTS, scored, filtered,
                 orders, refused, filled);
    free (dai_redis ("DEL fks:price:%s", symbol));
    cr_assert_eq (dai_stop (data), 0, "fks-data stops cleanly (log: %s)", s_log ("data"));
    cr_assert_eq (dai_stop (ai), 0, "fks-ai stops cleanly (log: %s)", s_log ("ai"));
}
