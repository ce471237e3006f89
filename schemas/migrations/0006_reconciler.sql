-- 0006_reconciler.sql - where the reconciler's walk through `events` has got to, per group.
--
-- The reconciler (bus/reconciler.c, docs/BUS.md) used to select, every pass and for every
-- group, the whole window [now - max age, now - deadline] of `events` and anti-join it with
-- `consumed`: at 1,000 alerts/s that is millions of rows per group every 5 s. It now walks
-- `events` once, in (xid, seq) order (the stream's order, index events_xid_seq_idx), and only
-- below a transaction horizon it read at least the deadline ago, so the rows behind its
-- position never change; rows it found unconsumed it remembers and checks again by seq. The
-- position it restarts from (the first row it still waits for, else where its walk is) is kept
-- here, so a restarted fks-bus resumes where it was instead of walking the whole window before
-- it finds what the restart lost. NULL: not walked yet (the walk starts at the window's
-- oldest row). fks-bus sets both back to NULL when a group's prefixes change (the new prefixes
-- may match rows the old ones skipped).

ALTER TABLE bus_groups
    ADD COLUMN reconciled_xid xid8,
    ADD COLUMN reconciled_seq bigint,
    ADD CONSTRAINT bus_groups_reconciled_check
        CHECK ((reconciled_xid IS NULL) = (reconciled_seq IS NULL));

COMMENT ON COLUMN bus_groups.reconciled_xid IS
    'With reconciled_seq: the reconciler''s resume position in (xid, seq) order; every events '
    'row at or before it was consumed, dead-lettered, older than the max age, or of a type '
    'the group does not take. NULL until the first pass; reset on a change of prefixes.';
COMMENT ON COLUMN bus_groups.reconciled_seq IS
    'See reconciled_xid.';

-- The B-tree on events.created_at (0002) served the old reconciler's window scan on every
-- pass. The walk above does not read created_at through an index; the start of a group's
-- first walk reads its whole window once, which the BRIN index of 0005 serves as well. So
-- every outbox row (five per alert) writes one index fewer.
DROP INDEX events_created_idx;
