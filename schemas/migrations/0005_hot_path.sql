-- 0005_hot_path.sql - fewer index writes per alert (docs/PERFORMANCE.md, "Where the time goes").
--
-- Every alert writes an inbox row and several events rows, and updates the status of its inbox
-- row twice and of its signal once. Measured, two thirds of the pipeline's CPU was PostgreSQL
-- maintaining indexes, much of it for indexes no query uses or for updates that could not be
-- HOT. This migration changes no column, no constraint and no unique key (the keys that
-- carry "once" stay as they are); it only drops or replaces indexes and leaves room on each
-- page for updates.
--
-- Status updates become HOT. An UPDATE that changes no indexed column, and finds room on the
-- row's page, writes no index entry at all (a heap-only tuple); one that changes an indexed
-- column writes a new entry in every index of the table, unique ones included. The status
-- indexes made each inbox update cost four index insertions and each signal update six.
-- The lists that filter by status (GET /api/v1/alerts?status=, /signals?status=) walk the
-- time index newest first and filter, which is what they did for every other filter already;
-- the status of recent rows is what users ask for. fillfactor 80 keeps a fifth of each new page
-- free for the updated versions of its rows (existing pages keep their layout).
DROP INDEX inbox_status_received_idx;
DROP INDEX signals_status_created_idx;
ALTER TABLE inbox SET (fillfactor = 80);
ALTER TABLE signals SET (fillfactor = 80);

-- events: no query reads by (type, created_at) or (type, seq). The stream and GET
-- /api/v1/events read in (xid, seq) order (events_xid_seq_idx, with type as a filter), an
-- alert's story reads by corr (events_corr_seq_idx). The reconciler reads the rows of a time
-- window (created_at between now() minus the maximum age and now() minus the overdue limit)
-- with a type prefix, which neither B-tree served: a type-leading index needs an equal type.
-- Rows arrive in time order, so a BRIN index on created_at finds the window's pages for
-- almost nothing per insert.
DROP INDEX events_type_created_idx;
DROP INDEX events_type_seq_idx;
CREATE INDEX events_created_brin ON events USING brin (created_at);

-- consumed: consumed_at is only for pruning old rows by age, and rows arrive in time order,
-- which is what a BRIN index is for: a few pages for the whole table, nearly free to maintain,
-- where the B-tree took one entry per message.
DROP INDEX consumed_at_idx;
CREATE INDEX consumed_at_brin ON consumed USING brin (consumed_at);
