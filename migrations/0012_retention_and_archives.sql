-- Retention and archival.

-- Each tenant's retention, written with the RetentionChanged event that sets it; a tenant
-- without a row has the defaults (HERALD_RETENTION_NOTIFICATIONS_DAYS, _EVENTS_DAYS).
CREATE TABLE retention_policies (
    tenant_id          text        PRIMARY KEY,
    notifications_days integer     NOT NULL,
    events_days        integer     NOT NULL,
    version            bigint      NOT NULL,
    updated_at         timestamptz NOT NULL,
    updated_by         text        NOT NULL
);

-- Archival looks for a tenant's final notifications requested before a cutoff.
CREATE INDEX notification_view_retention_idx ON notification_view (tenant_id, requested_at)
    WHERE status IN ('sent', 'delivered', 'opened', 'dead_lettered', 'cancelled');

-- Archived notifications, by the notifications projection as it removes them from the read
-- models (NotificationArchived): which archive holds each, and the stream version it was
-- archived at, which also tells the projection's frontier that the missing row is no gap
-- and keeps a repeated old event from bringing the row back. Kept after the events leave
-- the event store; a restore (NotificationRestored) sets restored_position.
CREATE TABLE archived_notifications (
    notification_id   uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    version           bigint      NOT NULL,   -- of its NotificationArchived event
    position          bigint      NOT NULL,   -- of its NotificationArchived event
    archive           text        NOT NULL,   -- the file's path under HERALD_ARCHIVE_DIR
    requested_at      timestamptz NOT NULL,
    events_removed    boolean     NOT NULL DEFAULT false,
    restored_position bigint                  -- of its NotificationRestored event
);

CREATE INDEX archived_notifications_tenant_idx ON archived_notifications (tenant_id, position);
CREATE INDEX archived_notifications_retained_idx ON archived_notifications (tenant_id, requested_at)
    WHERE NOT events_removed AND restored_position IS NULL;
CREATE INDEX archived_notifications_archive_idx ON archived_notifications (archive);

-- The archive files, written by the archival job in the transaction that records their
-- notifications' NotificationArchived events.
CREATE TABLE archives (
    path        text        PRIMARY KEY,    -- tenant_id=T/day=D/part-RUN-N.parquet
    tenant_id   text        NOT NULL,
    day         date        NOT NULL,       -- the day its notifications were requested, UTC
    run_id      uuid        NOT NULL,
    rows        integer     NOT NULL,
    bytes       bigint      NOT NULL,
    sha256      text        NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX archives_tenant_idx ON archives (tenant_id, day);

-- One row per tenant and archive run, written with the run's ArchiveRunCompleted event.
CREATE TABLE archive_runs (
    run_id          uuid        NOT NULL,
    tenant_id       text        NOT NULL,
    at              timestamptz NOT NULL,   -- the time the run archived as of
    finished_at     timestamptz NOT NULL,
    archived        integer     NOT NULL,
    files           integer     NOT NULL,
    bytes           bigint      NOT NULL,
    events_removed  bigint      NOT NULL,   -- events that left the event store
    requested_by    text,                   -- who asked, for a run by hand
    PRIMARY KEY (tenant_id, run_id)
);

CREATE INDEX archive_runs_latest_idx ON archive_runs (tenant_id, finished_at);

-- A run asked for by a tenant's admin (POST /data-pipeline/archive) covers that tenant only.
ALTER TABLE job_runs ADD COLUMN tenant_id text;
