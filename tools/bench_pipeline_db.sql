-- tools/bench_pipeline_db.sql - PostgreSQL alone: the rows FKS writes for :batch alerts.
--
-- A pgbench script (run by tools/bench_pipeline.sh in a database of its own, migrated like
-- FKS's, before FKS starts): every run carries :batch alerts through the writes of the three
-- stages, as three transactions in the order FKS commits them, with FKS's statements' shapes
-- (arrays in, one statement per table and stage) and the sizes of the benchmark's own alerts
-- (a 206-byte body, envelopes of 271-353 bytes):
--
--   gateway     inbox row + webhook.received event                      (1 commit)
--   signal      consumed, position read, signal row + inbox status,
--               signal.created event                                    (1 commit)
--   execution   consumed, position lock and read, order + fill rows,
--               signal and inbox status, position update, order.submitted,
--               order.filled and position.updated events                (1 commit)
--
-- With -D gateway_only=1 a run stops after the gateway's commit (tools/bench_gateway.sh).
-- No parsing, no bus, no HTTP: what is left is what the database must do for an alert, so
-- alerts/s here (transactions/s x :batch) bounds the pipeline on the same machine. Each client
-- keeps its own symbol ('RAW' and its client id), as FKS routes a symbol to one execution
-- thread. Ids are time-ordered like FKS's UUIDv7 (fks_bench_v7, created by the benchmark).
-- The script makes its ids (about 2 us each) and the alert's JSON in the database, which FKS
-- does in its own programs: some 15-20 us per alert, a few percent against PostgreSQL alone.

-- gateway
BEGIN;
WITH d AS MATERIALIZED (
  SELECT g, fks_bench_v7 () AS id, fks_bench_v7 () AS ev FROM generate_series (1, :batch) g),
 i AS (
  INSERT INTO inbox (id, idem_key, source, content_type, body, alert, remote_addr)
  SELECT id, 'id:' || id, 'tradingview', 'application/json',
         convert_to (rpad ('{"ticker": "BTCUSDT", "action": "buy"', 206, ' '), 'UTF8'),
         jsonb_build_object ('price', 100, 'action', 'buy', 'source', 'tradingview',
                             'symbol', 'BTCUSDT', 'quantity', 0.01,
                             'strategy', 'bench', 'client_id', id::text,
                             'order_type', 'market'),
         '127.0.0.1'
    FROM d),
 e AS (
  INSERT INTO events (id, type, corr, src, ts, envelope)
  SELECT ev, 'webhook.received', id, 'gateway', now (), convert_to (repeat ('w', 292), 'UTF8')
    FROM d)
SELECT array_agg (id ORDER BY g) AS inbox, array_agg (ev ORDER BY g) AS received FROM d
\gset
COMMIT;
\if :gateway_only
\else

-- signal
BEGIN;
INSERT INTO consumed (grp, msg_id) SELECT 'signal', unnest (:received::uuid[]);
SELECT qty FROM positions WHERE symbol = ('RAW' || :client_id::text);
WITH v AS MATERIALIZED (
  SELECT i, fks_bench_v7 () AS id, fks_bench_v7 () AS ev
    FROM unnest (:inbox::uuid[]) AS i),
 s AS (
  INSERT INTO signals (id, inbox_id, corr, source, symbol, action, side, qty, quantity_type,
                       order_type, price, strategy, params, status, reason)
  SELECT id, i, i, 'tradingview', ('RAW' || :client_id::text), 'buy', 'buy', 0.01, 'fixed_quantity', 'market', 100,
         'bench', '{"reduce_only": false}', 'created', 'buy 0.01: alert quantity 0.01'
    FROM v),
 u AS (
  UPDATE inbox SET status = 'signalled', updated_at = now () FROM v WHERE inbox.id = v.i),
 e AS (
  INSERT INTO events (id, type, corr, src, ts, envelope)
  SELECT ev, 'signal.created', i, 'signal', now (), convert_to (repeat ('s', 326), 'UTF8')
    FROM v)
SELECT array_agg (id) AS signals, array_agg (ev) AS created FROM v
\gset
COMMIT;

-- execution
BEGIN;
INSERT INTO consumed (grp, msg_id) SELECT 'execution', unnest (:created::uuid[]);
SELECT pg_advisory_xact_lock (hashtextextended ('fks.position:' || ('RAW' || :client_id::text), 0));
SELECT qty, avg_price, realized_pnl, fees FROM positions WHERE symbol = ('RAW' || :client_id::text);
WITH v AS MATERIALIZED (
  SELECT s, i, fks_bench_v7 () AS id, fks_bench_v7 () AS fid, 'fks-' || md5 (s::text) AS coid
    FROM unnest (:signals::uuid[], :inbox::uuid[]) AS t (s, i)),
 o AS (
  INSERT INTO orders (id, client_order_id, signal_id, corr, symbol, side, type, qty, status,
                      filled_qty, avg_fill_price, broker, exchange_order_id)
  SELECT id, left (coid, 24), s, i, ('RAW' || :client_id::text), 'buy', 'market', 0.01, 'filled', 0.01, 100,
         'paper', 'paper-' || left (coid, 24)
    FROM v),
 f AS (
  INSERT INTO fills (id, order_id, broker, exchange_fill_id, symbol, side, qty, price, fee, ts)
  SELECT fid, id, 'paper', left (coid, 24) || '-1', ('RAW' || :client_id::text), 'buy', 0.01, 100, 0.001, now ()
    FROM v),
 s AS (
  UPDATE signals SET status = 'ordered', updated_at = now () FROM v WHERE signals.id = v.s),
 u AS (
  UPDATE inbox SET status = 'filled', updated_at = now () FROM v WHERE inbox.id = v.i)
SELECT count (*) FROM v;
UPDATE positions SET qty = qty + 0.01 * :batch, avg_price = 100, updated_at = now ()
 WHERE symbol = ('RAW' || :client_id::text);
INSERT INTO events (id, type, corr, src, ts, envelope)
SELECT fks_bench_v7 (), t.type, i, 'execution', now (), convert_to (repeat ('x', t.size), 'UTF8')
  FROM unnest (:inbox::uuid[]) AS i,
       (VALUES ('order.submitted', 338), ('order.filled', 353), ('position.updated', 271))
         AS t (type, size);
COMMIT;
\endif
