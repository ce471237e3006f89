-- 0008_bar_marks.sql - what the execution worker has offered to resting orders of each recent
-- bar (docs/ARCHITECTURE.md, "Paper broker").
--
-- Feeds announce the forming bar again at every poll (same open_time, a wider range, more
-- volume). Offered whole each time, a re-announced bar filled a resting limit at a low made
-- before the order existed, and granted FKS_PAPER_MAX_VOLUME_SHARE of its volume once per
-- announcement. The execution worker now keeps the last announcement of each bar here, in the
-- transaction that offers it, and offers only what the new one adds (workers/execution/
-- broker.h, fks_bar_since): the move from the last close, a new high or low, the volume since.
-- And when one symbol comes in two intervals (binance BTCUSDT 1m and 1h), only the shorter
-- one's bars are offered: the hour holds the same trades as its minutes, so offering both
-- granted the volume share twice and let the hour's first announcement fill on a low made
-- before the order.
--
-- Written only by the execution worker, under the symbol's position lock; it keeps the marks
-- of about the last 16 bars of each symbol and interval and deletes older ones as it goes.

CREATE TABLE bar_marks (
    symbol          text NOT NULL,
    interval        text NOT NULL,      -- '' when the bar named none
    open_time       bigint NOT NULL,    -- Unix ms
    high            float8 NOT NULL,
    low             float8 NOT NULL,
    close           float8 NOT NULL,
    volume          float8 NOT NULL,
    len_ms          bigint NOT NULL DEFAULT 0,  -- the interval's length; 0 when not known
    CONSTRAINT bar_marks_pkey PRIMARY KEY (symbol, interval, open_time),
    CONSTRAINT bar_marks_symbol_check CHECK (length(symbol) BETWEEN 1 AND 32),
    CONSTRAINT bar_marks_interval_check CHECK (length(interval) <= 16),
    CONSTRAINT bar_marks_len_ms_check CHECK (len_ms >= 0)
);
COMMENT ON TABLE bar_marks IS
    'The last announcement of a bar that the execution worker offered to resting orders. '
    'PRIMARY KEY (symbol, interval, open_time): one per bar; a later announcement of the same '
    'bar offers only what it adds to this one, so no price or volume is offered twice.';
