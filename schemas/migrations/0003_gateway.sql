-- 0003_gateway.sql - what the gateway's event stream needs (docs/ARCHITECTURE.md, "Stream").
--
-- The stream serves events in (xid, seq) order, never in bare seq order. A seq is handed out
-- at INSERT but becomes visible at COMMIT, so a transaction can commit seq 6 while seq 5 is
-- still in flight in another one; and "serve rows whose xid is below the snapshot's xmin, in
-- seq order" is not enough either, because a transaction with a lower xid can insert a higher
-- seq than one with a higher xid. Ordered by (xid, seq) instead, every row whose xid is below
-- pg_snapshot_xmin(pg_current_snapshot()) is final (all those transactions have ended, and
-- every later transaction gets a higher xid), so a reader that only moves past rows below the
-- xmin of its snapshot never skips a row and never sees one twice. The SSE event id stays the
-- seq: a client resuming with Last-Event-ID gets its position back from the row's (xid, seq).

CREATE INDEX events_xid_seq_idx ON events (xid, seq);
