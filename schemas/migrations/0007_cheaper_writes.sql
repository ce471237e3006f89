-- 0007_cheaper_writes.sql - the same rules for less CPU per alert (docs/PERFORMANCE.md,
-- "Cheaper checks, HOT updates, binary arrays").
--
-- 1. Text checks without counted repetition.
--
-- The text columns' CHECKs were regular expressions with a counted repetition
-- ('^[a-z][a-z0-9_]{0,31}$'). PostgreSQL's regex engine unrolls a bound into one NFA state per
-- count and builds its DFA afresh for every call, so such a check cost 1.2-6.6 us per row
-- (the 36-character client order id the most), and an alert passes about fifteen of them on
-- its way to a fill: perf put regular expressions at 7% of PostgreSQL's CPU in the pipeline
-- benchmark. The same rule written as an unbounded class plus a length test,
-- '^[a-z][a-z0-9_]*$' AND length(x) <= 32, accepts exactly the same strings (every class here
-- is ASCII, so characters are bytes; NULL passes both forms) and costs 0.3-1.5 us.
--
-- Names stay as they were (programs and tests match on them). Re-adding a constraint checks
-- the table's rows once, under the lock the migration already holds.

ALTER TABLE inbox
    DROP CONSTRAINT inbox_source_check,
    ADD CONSTRAINT inbox_source_check
        CHECK (source ~ '^[a-z][a-z0-9_.-]*$' AND length(source) <= 32);

ALTER TABLE consumed
    DROP CONSTRAINT consumed_grp_check,
    ADD CONSTRAINT consumed_grp_check
        CHECK (grp ~ '^[a-z][a-z0-9_-]*$' AND length(grp) <= 32);

ALTER TABLE signals
    DROP CONSTRAINT signals_source_check,
    ADD CONSTRAINT signals_source_check
        CHECK (source ~ '^[a-z][a-z0-9_.:-]*$' AND length(source) <= 64),
    DROP CONSTRAINT signals_symbol_check,
    ADD CONSTRAINT signals_symbol_check
        CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]*$' AND length(symbol) <= 32);

ALTER TABLE orders
    DROP CONSTRAINT orders_client_order_id_check,
    ADD CONSTRAINT orders_client_order_id_check
        CHECK (client_order_id ~ '^[A-Za-z0-9._:/-]+$' AND length(client_order_id) <= 36),
    DROP CONSTRAINT orders_symbol_check,
    ADD CONSTRAINT orders_symbol_check
        CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]*$' AND length(symbol) <= 32),
    DROP CONSTRAINT orders_broker_check,
    ADD CONSTRAINT orders_broker_check
        CHECK (broker ~ '^[a-z][a-z0-9_]*$' AND length(broker) <= 32);

ALTER TABLE fills
    DROP CONSTRAINT fills_broker_check,
    ADD CONSTRAINT fills_broker_check
        CHECK (broker ~ '^[a-z][a-z0-9_]*$' AND length(broker) <= 32),
    DROP CONSTRAINT fills_symbol_check,
    ADD CONSTRAINT fills_symbol_check
        CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]*$' AND length(symbol) <= 32);

ALTER TABLE positions
    DROP CONSTRAINT positions_symbol_check,
    ADD CONSTRAINT positions_symbol_check
        CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]*$' AND length(symbol) <= 32);

ALTER TABLE bars
    DROP CONSTRAINT bars_symbol_check,
    ADD CONSTRAINT bars_symbol_check
        CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/!-]*$' AND length(symbol) <= 32),
    DROP CONSTRAINT bars_interval_check,
    ADD CONSTRAINT bars_interval_check
        CHECK (interval ~ '^[1-9][0-9]*[smhdwM]$' AND length(interval) <= 5),
    DROP CONSTRAINT bars_source_check,
    ADD CONSTRAINT bars_source_check
        CHECK (source ~ '^[a-z][a-z0-9_.-]*$' AND length(source) <= 32);

ALTER TABLE security_events
    DROP CONSTRAINT security_events_kind_check,
    ADD CONSTRAINT security_events_kind_check
        CHECK (kind ~ '^[a-z][a-z0-9_.]*$' AND length(kind) <= 64);

ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_grp_check,
    ADD CONSTRAINT dead_letters_grp_check
        CHECK (grp ~ '^[a-z][a-z0-9_-]*$' AND length(grp) <= 32);

ALTER TABLE api_keys
    DROP CONSTRAINT api_keys_name_check,
    ADD CONSTRAINT api_keys_name_check
        CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]*$' AND length(name) <= 64),
    DROP CONSTRAINT api_keys_prefix_check,
    ADD CONSTRAINT api_keys_prefix_check
        CHECK (prefix ~ '^[A-Za-z0-9_]+$' AND length(prefix) BETWEEN 4 AND 16);

ALTER TABLE bus_groups
    DROP CONSTRAINT bus_groups_grp_check,
    ADD CONSTRAINT bus_groups_grp_check
        CHECK (grp ~ '^[a-z][a-z0-9_-]*$' AND length(grp) <= 31);

-- 2. Room for the status updates. Each alert's inbox row is updated twice (signalled, then
-- filled) and its signal once, milliseconds after the insert. 0005 made those updates HOT-able
-- (no indexed column changes) and left a fifth of each page free, which was not enough: in the
-- pipeline benchmark 43% of the inbox updates and 39% of the signal updates found no room on
-- their page and wrote a new entry in every index of the table (and set off B-tree bottom-up
-- deletion later). With half of each new page free, 97-98% of the inbox updates and all of
-- the signal updates were HOT. New pages only; a page fills up with its rows' versions, which
-- pruning removes once no snapshot needs them.
ALTER TABLE inbox SET (fillfactor = 50);
ALTER TABLE signals SET (fillfactor = 50);
