-- 0002_bus.sql - what the bus broker and its reconciler keep in PostgreSQL (docs/BUS.md).
--
-- The broker holds its queues in memory. What it must not forget across a restart is which
-- consumer groups exist and which types each one takes: with that, the reconciler (a thread
-- of fks-bus) can find every outbox row in `events` that a group has neither consumed nor
-- dead-lettered after a deadline and publish it to that group again, even while no replica of
-- the group is connected, and a restarted broker queues messages for a group before its
-- replicas come back. The broker writes a row when a group first joins or its prefixes change
-- (the last JOIN of a group defines its prefixes), and reads them all at start.

CREATE TABLE bus_groups (
    grp             text PRIMARY KEY,
    prefixes        text[] NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bus_groups_grp_check CHECK (grp ~ '^[a-z][a-z0-9_-]{0,30}$'),
    CONSTRAINT bus_groups_prefixes_check CHECK (cardinality(prefixes) BETWEEN 1 AND 16
                                                AND array_position(prefixes, NULL) IS NULL)
);
COMMENT ON TABLE bus_groups IS
    'Consumer groups the bus has seen, with the type prefixes each subscribes to (an empty '
    'prefix is every type). Written by fks-bus on JOIN, read by it at start and by its '
    'reconciler on every pass; one row per group (PRIMARY KEY grp).';

-- The reconciler's scan: events inside [now - max age, now - deadline], in seq order. The
-- (type, created_at) index of 0001 serves one type; a scan over many prefixes is served by
-- created_at alone.
CREATE INDEX events_created_idx ON events (created_at);
