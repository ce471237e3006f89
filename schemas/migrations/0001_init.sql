-- 0001_init.sql - the FKS data model (docs/ARCHITECTURE.md, "Data model").
--
-- Every effect a stage writes carries the id of the message that caused it, in one
-- transaction, and a unique key turns a second attempt into a no-op: that is the "effects
-- happen once" guarantee. Each table's comment says which guarantee its unique keys carry.
--
-- Conventions:
--   * ids are UUIDv7 made by the programs (common/id.h): time-ordered, so B-tree inserts stay
--     at the right edge and "newest first" can break ties on id; no extension needed.
--   * money, prices and quantities are numeric (exact decimal, no float rounding).
--   * times are timestamptz; enumerations are text with CHECK constraints, so adding a value
--     later is a one-line constraint change in a new migration.
--   * list indexes are (filter, created_at DESC, id DESC): the REST lists page newest first
--     with the cursor (created_at, id).
--   * free text from outside is length-bounded here as a last line of defence; programs bound
--     and validate it where it enters.
--
-- schema_migrations itself is created by the runner (tools/migrate.c) before this file runs.
-- This file runs in one transaction; never edit it once applied: add 0002_... instead.

-- ---------------------------------------------------------------------------------------------
-- inbox: one row per accepted webhook; its INSERT is the gateway's commit point.

CREATE TABLE inbox (
    id              uuid PRIMARY KEY,
    idem_key        text NOT NULL,
    source          text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    content_type    text NOT NULL DEFAULT '',
    body            bytea NOT NULL,
    alert           jsonb NOT NULL,
    remote_addr     text,
    status          text NOT NULL DEFAULT 'accepted',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inbox_idem_key_key UNIQUE (idem_key),
    CONSTRAINT inbox_idem_key_check CHECK (length(idem_key) BETWEEN 1 AND 256),
    CONSTRAINT inbox_source_check CHECK (source ~ '^[a-z][a-z0-9_.-]{0,31}$'),
    CONSTRAINT inbox_content_type_check CHECK (length(content_type) <= 256),
    CONSTRAINT inbox_body_check CHECK (octet_length(body) <= 16777216),
    CONSTRAINT inbox_alert_check CHECK (jsonb_typeof(alert) = 'object'),
    CONSTRAINT inbox_remote_addr_check CHECK (length(remote_addr) <= 64),
    CONSTRAINT inbox_status_check CHECK (status IN ('accepted', 'signalled', 'scored',
        'filtered', 'rejected', 'ordered', 'filled', 'failed'))
);
COMMENT ON TABLE inbox IS
    'One row per accepted webhook (the alert). id is the alert id, the corr of every later '
    'message. UNIQUE (idem_key) makes a repeated alert a duplicate (200), never a second row '
    '(guarantee 1: the row commits before the 2xx answer). body is the raw request body '
    '(bytes, pass it as a binary parameter), alert the parsed fields, status the furthest '
    'stage reached.';
COMMENT ON COLUMN inbox.idem_key IS
    'The body''s id when given, else a hash of the normalised alert within the dedupe window.';
CREATE INDEX inbox_received_idx ON inbox (received_at DESC, id DESC);
CREATE INDEX inbox_status_received_idx ON inbox (status, received_at DESC, id DESC);

-- ---------------------------------------------------------------------------------------------
-- events: the transactional outbox and the stream's history.

CREATE TABLE events (
    seq             bigserial PRIMARY KEY,
    id              uuid NOT NULL,
    type            text COLLATE "C" NOT NULL,
    corr            uuid,
    cause           uuid,
    src             text NOT NULL,
    ts              timestamptz NOT NULL,
    envelope        bytea NOT NULL,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_id_key UNIQUE (id),
    CONSTRAINT events_type_check CHECK (type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'
                                        AND length(type) <= 64),
    CONSTRAINT events_src_check CHECK (length(src) BETWEEN 1 AND 64),
    CONSTRAINT events_envelope_check CHECK (octet_length(envelope) <= 16777216)
);
COMMENT ON TABLE events IS
    'Every envelope any stage produced, inserted in the same transaction as the effect that '
    'produced it and published on the bus after commit (the outbox); also the history that the '
    'stream resumes from (Last-Event-ID / ?after= is a seq). UNIQUE (id) means an envelope is '
    'stored once. type is in the C collation so a type-prefix filter (LIKE ''order.%'') can use '
    'the indexes.';
COMMENT ON COLUMN events.seq IS
    'Stream position. A bigserial is handed out at INSERT but becomes visible at COMMIT, so '
    'commits can make seq visible out of order: a reader must not move its cursor past a seq '
    'that may still be in flight, or it skips that event for good. Read only rows whose xid is '
    'below pg_snapshot_xmin(pg_current_snapshot()) (every older transaction has ended) and stop '
    'at the first row that is not, or wait out gaps; the gateway stream owns this rule.';
COMMENT ON COLUMN events.xid IS
    'The inserting transaction, for the no-gap rule on seq above.';
COMMENT ON COLUMN events.envelope IS
    'The msgpack envelope exactly as published (schemas/envelope.md).';
-- The reconciler: rows of a type, older than the overdue limit, that a group has not consumed.
CREATE INDEX events_type_created_idx ON events (type, created_at);
-- The stream filtered by type (prefix): WHERE type LIKE 'x.%' AND seq > $after ORDER BY seq.
CREATE INDEX events_type_seq_idx ON events (type, seq);
-- GET /api/v1/alerts/{id}: an alert's stages in order.
CREATE INDEX events_corr_seq_idx ON events (corr, seq) WHERE corr IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- consumed: which consumer group has committed the effect of which message.

CREATE TABLE consumed (
    grp             text NOT NULL,
    msg_id          uuid NOT NULL,
    consumed_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumed_pkey PRIMARY KEY (grp, msg_id),
    CONSTRAINT consumed_grp_check CHECK (grp ~ '^[a-z][a-z0-9_-]{0,31}$')
);
COMMENT ON TABLE consumed IS
    'Written in the same transaction as a worker''s effect. PRIMARY KEY (grp, msg_id): a '
    'redelivered message finds its row and is acked without doing anything again (guarantee 2, '
    'at-least-once delivery made exactly-once in effect). No foreign key to events: the '
    'insert stays a single index probe and does not lock the event row.';
CREATE INDEX consumed_at_idx ON consumed (consumed_at);

-- ---------------------------------------------------------------------------------------------
-- signals: an alert (or a native strategy) normalised into a trading intention.

CREATE TABLE signals (
    id              uuid PRIMARY KEY,
    inbox_id        uuid REFERENCES inbox (id),
    corr            uuid NOT NULL,
    source          text NOT NULL,
    symbol          text NOT NULL,
    action          text NOT NULL,
    side            text,
    qty             numeric,
    quantity_type   text NOT NULL DEFAULT 'fixed_quantity',
    target_position numeric,
    order_type      text NOT NULL DEFAULT 'market',
    price           numeric,
    limit_price     numeric,
    stop_loss       numeric,
    take_profit     numeric,
    strategy        text,
    interval        text,
    confidence      numeric,
    params          jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'created',
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signals_inbox_id_key UNIQUE (inbox_id),
    CONSTRAINT signals_source_check CHECK (source ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
    CONSTRAINT signals_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$'),
    CONSTRAINT signals_action_check CHECK (action IN ('buy', 'sell', 'exit', 'cancel', 'add')),
    CONSTRAINT signals_side_check CHECK (side IN ('buy', 'sell')),
    CONSTRAINT signals_side_needed_check CHECK (side IS NOT NULL OR action IN ('exit', 'cancel', 'add')),
    CONSTRAINT signals_qty_check CHECK (qty > 0),
    CONSTRAINT signals_quantity_type_check CHECK (quantity_type IN ('fixed_quantity',
        'dollar_amount', 'risk_dollar_amount', 'risk_percent', 'percent_of_equity',
        'percent_of_position')),
    CONSTRAINT signals_target_position_check CHECK (target_position IS NULL OR qty IS NULL),
    CONSTRAINT signals_order_type_check CHECK (order_type IN ('market', 'limit')),
    CONSTRAINT signals_limit_check CHECK (order_type <> 'limit' OR limit_price IS NOT NULL),
    CONSTRAINT signals_price_check CHECK (price > 0),
    CONSTRAINT signals_limit_price_check CHECK (limit_price > 0),
    CONSTRAINT signals_stop_loss_check CHECK (stop_loss > 0),
    CONSTRAINT signals_take_profit_check CHECK (take_profit > 0),
    CONSTRAINT signals_strategy_check CHECK (length(strategy) <= 128),
    CONSTRAINT signals_interval_check CHECK (length(interval) <= 16),
    CONSTRAINT signals_confidence_check CHECK (confidence BETWEEN 0 AND 1),
    CONSTRAINT signals_params_check CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT signals_status_check CHECK (status IN ('created', 'scored', 'filtered',
        'rejected', 'ordered', 'failed')),
    CONSTRAINT signals_reason_check CHECK (length(reason) <= 1024)
);
COMMENT ON TABLE signals IS
    'An alert normalised into a trading intention (or one raised by a native strategy, then '
    'inbox_id is NULL and corr is the signal''s own id). UNIQUE (inbox_id): one signal per '
    'alert, however often the alert is redelivered (guarantee 2). side is NULL only for '
    'exit/cancel/add, which the execution worker resolves against the position; qty is NULL '
    'when the size comes from target_position or is decided at execution.';
CREATE INDEX signals_created_idx ON signals (created_at DESC, id DESC);
CREATE INDEX signals_symbol_created_idx ON signals (symbol, created_at DESC, id DESC);
CREATE INDEX signals_status_created_idx ON signals (status, created_at DESC, id DESC);
CREATE INDEX signals_corr_idx ON signals (corr);

-- ---------------------------------------------------------------------------------------------
-- orders: what was sent (or is to be sent) to a broker, and its state.

CREATE TABLE orders (
    id                  uuid PRIMARY KEY,
    client_order_id     text NOT NULL,
    signal_id           uuid REFERENCES signals (id),
    corr                uuid,
    symbol              text NOT NULL,
    side                text NOT NULL,
    type                text NOT NULL,
    qty                 numeric NOT NULL,
    limit_price         numeric,
    status              text NOT NULL DEFAULT 'new',
    filled_qty          numeric NOT NULL DEFAULT 0,
    avg_fill_price      numeric,
    broker              text NOT NULL,
    exchange_order_id   text,
    reason              text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_client_order_id_key UNIQUE (client_order_id),
    CONSTRAINT orders_signal_id_key UNIQUE (signal_id),
    CONSTRAINT orders_broker_exchange_order_id_key UNIQUE (broker, exchange_order_id),
    CONSTRAINT orders_client_order_id_check CHECK (client_order_id ~ '^[A-Za-z0-9._:/-]{1,36}$'),
    CONSTRAINT orders_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$'),
    CONSTRAINT orders_side_check CHECK (side IN ('buy', 'sell')),
    CONSTRAINT orders_type_check CHECK (type IN ('market', 'limit')),
    CONSTRAINT orders_qty_check CHECK (qty > 0),
    CONSTRAINT orders_limit_price_check CHECK (limit_price > 0),
    CONSTRAINT orders_limit_needed_check CHECK (type <> 'limit' OR limit_price IS NOT NULL),
    CONSTRAINT orders_status_check CHECK (status IN ('new', 'submitted', 'partially_filled',
        'filled', 'rejected', 'cancelled')),
    CONSTRAINT orders_filled_qty_check CHECK (filled_qty >= 0 AND filled_qty <= qty),
    CONSTRAINT orders_filled_check CHECK (status <> 'filled' OR filled_qty = qty),
    CONSTRAINT orders_avg_fill_price_check CHECK (avg_fill_price > 0),
    CONSTRAINT orders_avg_fill_needed_check CHECK (filled_qty = 0 OR avg_fill_price IS NOT NULL),
    CONSTRAINT orders_broker_check CHECK (broker ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT orders_exchange_order_id_check CHECK (length(exchange_order_id) BETWEEN 1 AND 128),
    CONSTRAINT orders_reason_check CHECK (length(reason) <= 1024)
);
COMMENT ON TABLE orders IS
    'An order for a broker. UNIQUE (signal_id): one order per signal, so a redelivered signal '
    'never trades twice (NULL for manual orders, which are not limited). UNIQUE '
    '(client_order_id): the id the broker deduplicates on, so a retried submission is one '
    'order at the exchange too. UNIQUE (broker, exchange_order_id) ties broker reports to one '
    'row. filled_qty and avg_fill_price are kept in step with fills in the same transaction.';
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_symbol_created_idx ON orders (symbol, created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_corr_idx ON orders (corr) WHERE corr IS NOT NULL;
-- Open orders of a symbol (cancel, exposure checks).
CREATE INDEX orders_open_symbol_idx ON orders (symbol)
    WHERE status IN ('new', 'submitted', 'partially_filled');

-- ---------------------------------------------------------------------------------------------
-- fills: executions reported by a broker.

CREATE TABLE fills (
    id                  uuid PRIMARY KEY,
    order_id            uuid NOT NULL REFERENCES orders (id),
    broker              text NOT NULL,
    exchange_fill_id    text NOT NULL,
    symbol              text NOT NULL,
    side                text NOT NULL,
    qty                 numeric NOT NULL,
    price               numeric NOT NULL,
    fee                 numeric NOT NULL DEFAULT 0,
    fee_asset           text,
    ts                  timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fills_broker_exchange_fill_id_key UNIQUE (broker, exchange_fill_id),
    CONSTRAINT fills_broker_check CHECK (broker ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT fills_exchange_fill_id_check CHECK (length(exchange_fill_id) BETWEEN 1 AND 128),
    CONSTRAINT fills_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$'),
    CONSTRAINT fills_side_check CHECK (side IN ('buy', 'sell')),
    CONSTRAINT fills_qty_check CHECK (qty > 0),
    CONSTRAINT fills_price_check CHECK (price > 0),
    CONSTRAINT fills_fee_asset_check CHECK (length(fee_asset) <= 16)
);
COMMENT ON TABLE fills IS
    'One execution of an order. UNIQUE (broker, exchange_fill_id): a fill reported twice '
    '(polling, websocket and a retry all seeing it) is applied to the order and the position '
    'once. fee may be negative (a maker rebate).';
CREATE INDEX fills_order_idx ON fills (order_id);
CREATE INDEX fills_created_idx ON fills (created_at DESC, id DESC);
CREATE INDEX fills_symbol_created_idx ON fills (symbol, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------------------------
-- positions: the current position per symbol.

CREATE TABLE positions (
    symbol          text PRIMARY KEY,
    qty             numeric NOT NULL DEFAULT 0,
    avg_price       numeric NOT NULL DEFAULT 0,
    realized_pnl    numeric NOT NULL DEFAULT 0,
    fees            numeric NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT positions_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$'),
    CONSTRAINT positions_avg_price_check CHECK (avg_price >= 0),
    CONSTRAINT positions_flat_check CHECK (qty <> 0 OR avg_price = 0)
);
COMMENT ON TABLE positions IS
    'Net position per symbol: qty > 0 long, < 0 short, 0 flat (avg_price 0). Updated in the '
    'transaction that inserts the fill, so it moves exactly once per fill. Unrealised PnL is '
    'computed against the latest price, not stored.';

-- ---------------------------------------------------------------------------------------------
-- bars: OHLCV market data.

CREATE TABLE bars (
    symbol          text NOT NULL,
    interval        text NOT NULL,
    open_time       timestamptz NOT NULL,
    open            numeric NOT NULL,
    high            numeric NOT NULL,
    low             numeric NOT NULL,
    close           numeric NOT NULL,
    volume          numeric NOT NULL DEFAULT 0,
    source          text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bars_pkey PRIMARY KEY (symbol, interval, open_time),
    CONSTRAINT bars_symbol_check CHECK (symbol ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$'),
    CONSTRAINT bars_interval_check CHECK (interval ~ '^[1-9][0-9]{0,3}(s|m|h|d|w|M)$'),
    CONSTRAINT bars_prices_check CHECK (low > 0 AND high >= low
        AND open BETWEEN low AND high AND close BETWEEN low AND high),
    CONSTRAINT bars_volume_check CHECK (volume >= 0),
    CONSTRAINT bars_source_check CHECK (source ~ '^[a-z][a-z0-9_.-]{0,31}$')
);
COMMENT ON TABLE bars IS
    'One OHLCV bar. PRIMARY KEY (symbol, interval, open_time): re-ingesting a bar (a replay, '
    'an overlapping fetch, the still-open last bar) updates it with INSERT ... ON CONFLICT '
    'instead of adding a second one. The key also serves "newest first" per symbol and '
    'interval (scanned backwards).';

-- ---------------------------------------------------------------------------------------------
-- security_events: refused requests worth an operator's look.

CREATE TABLE security_events (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    remote_addr     text,
    path            text,
    detail          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT security_events_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT security_events_remote_addr_check CHECK (length(remote_addr) <= 64),
    CONSTRAINT security_events_path_check CHECK (length(path) <= 512),
    CONSTRAINT security_events_detail_check CHECK (length(detail) <= 1024)
);
COMMENT ON TABLE security_events IS
    'Failed authentications, refused sources, replays, rate-limit cut-offs. detail never holds '
    'a secret (no passphrase, token, signature or key, not even a part of one). Append-only.';
CREATE INDEX security_events_created_idx ON security_events (created_at DESC, id DESC);
CREATE INDEX security_events_kind_created_idx ON security_events (kind, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------------------------
-- dead_letters: messages a group gave up on.

CREATE TABLE dead_letters (
    grp             text NOT NULL,
    msg_id          uuid NOT NULL,
    type            text NOT NULL,
    corr            uuid,
    attempts        integer NOT NULL,
    reason          text NOT NULL,
    envelope        bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_pkey PRIMARY KEY (grp, msg_id),
    CONSTRAINT dead_letters_grp_check CHECK (grp ~ '^[a-z][a-z0-9_-]{0,31}$'),
    CONSTRAINT dead_letters_type_check CHECK (length(type) BETWEEN 1 AND 64),
    CONSTRAINT dead_letters_attempts_check CHECK (attempts >= 1),
    CONSTRAINT dead_letters_reason_check CHECK (length(reason) BETWEEN 1 AND 1024),
    CONSTRAINT dead_letters_envelope_check CHECK (octet_length(envelope) <= 16777216)
);
COMMENT ON TABLE dead_letters IS
    'A message a consumer group failed on N times, kept for an operator. PRIMARY KEY (grp, '
    'msg_id): one dead letter per message and group, however often the bus gives up on it.';
CREATE INDEX dead_letters_created_idx ON dead_letters (created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- api_keys: REST API keys, stored hashed.

CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    prefix          text NOT NULL,
    key_sha256      bytea NOT NULL,
    scopes          text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CONSTRAINT api_keys_key_sha256_key UNIQUE (key_sha256),
    CONSTRAINT api_keys_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    CONSTRAINT api_keys_prefix_check CHECK (prefix ~ '^[A-Za-z0-9_]{4,16}$'),
    CONSTRAINT api_keys_key_sha256_check CHECK (octet_length(key_sha256) = 32),
    CONSTRAINT api_keys_scopes_check CHECK (cardinality(scopes) >= 1
        AND scopes <@ ARRAY['read', 'trade', 'admin']::text[]),
    CONSTRAINT api_keys_revoked_check CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
COMMENT ON TABLE api_keys IS
    'Bearer keys for /api/v1. Only the SHA-256 of a key is stored (UNIQUE: one row per key); '
    'prefix is the key''s first characters, shown to operators and used to find the row. A '
    'revoked key keeps its row (revoked_at) for the audit trail. The bootstrap FKS_ADMIN_KEY '
    'is configuration, not a row.';
-- One active key per name, so `fks keys revoke NAME` means one key.
CREATE UNIQUE INDEX api_keys_active_name_key ON api_keys (name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix) WHERE revoked_at IS NULL;
