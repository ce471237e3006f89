-- 0004_symbols.sql - TradingView's continuous futures (ES1!, NQ1!), and the stream's comments.
--
-- Symbols. TradingView names a continuous futures contract with a trailing '!' (ES1!, NQ1!,
-- CME_MINI:ES1!, CL2!), one of the most common symbols in its alerts, and 0001 refused '!'
-- in every symbol column. One rule now holds for a symbol everywhere (the gateway's alert
-- parser and REST API, workers/symbol.c, these columns): 1 to 32 characters of
-- [A-Za-z0-9._:/!-], the first a letter or a digit, so '!' is allowed anywhere but first
-- ('ES1!' and '1ES!' pass, '!ES' does not). The workers store the normalised form
-- (workers/symbol.h: CME_MINI:ES1! becomes ES1!), which always passes. Each constraint keeps
-- its name (programs and tests match on it). The new rule is wider than the old one, so no
-- stored row can fail it; adding the check still reads each table once while holding its
-- ACCESS EXCLUSIVE lock (a few seconds per ten million bars), so run this at a deploy.
--
-- The stream. 0001's comments on events said that the stream resumes from a seq and reads
-- rows in seq order below the snapshot's xmin; 0003 moved the stream to (xid, seq) order
-- (gateway/stream.c, and GET /api/v1/events in gateway/api.c), and the comments now say so.

ALTER TABLE signals
    DROP CONSTRAINT signals_symbol_check,
    ADD CONSTRAINT signals_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]{0,31}$');
ALTER TABLE orders
    DROP CONSTRAINT orders_symbol_check,
    ADD CONSTRAINT orders_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]{0,31}$');
ALTER TABLE fills
    DROP CONSTRAINT fills_symbol_check,
    ADD CONSTRAINT fills_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]{0,31}$');
ALTER TABLE positions
    DROP CONSTRAINT positions_symbol_check,
    ADD CONSTRAINT positions_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]{0,31}$');
ALTER TABLE bars
    DROP CONSTRAINT bars_symbol_check,
    ADD CONSTRAINT bars_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]{0,31}$');

COMMENT ON TABLE events IS
    'Every envelope any stage produced, inserted in the same transaction as the effect that '
    'produced it and published on the bus after commit (the outbox); also the history that the '
    'stream (GET /api/v1/stream) and GET /api/v1/events serve, in (xid, seq) order. A client '
    'resumes with a seq (Last-Event-ID, ?after=): the reader looks that row up and continues '
    'after its (xid, seq). UNIQUE (id) means an envelope is stored once. type is in the C '
    'collation: byte order, for type-prefix filters such as LIKE ''order.%''.';
COMMENT ON COLUMN events.seq IS
    'The event''s id for clients (the SSE id, Last-Event-ID, ?after=, the events list''s next), '
    'and the second half of its stream position (xid, seq). Not an order by itself: a seq is '
    'handed out at INSERT but becomes visible at COMMIT, and a transaction with a smaller xid '
    'can insert a larger seq than one with a larger xid, so a reader in seq order may skip '
    'rows for good. Readers serve rows in (xid, seq) order, only those whose xid is below '
    'pg_snapshot_xmin(pg_current_snapshot()) (every such transaction has ended, so the rows '
    'below are final), and resume after the (xid, seq) of the row a client names by its seq '
    '(index events_xid_seq_idx). gateway/stream.c owns this rule.';
COMMENT ON COLUMN events.xid IS
    'The inserting transaction: the first half of the row''s stream position (xid, seq); see '
    'the comment on seq.';
