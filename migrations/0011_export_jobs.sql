-- Exports asked for as jobs: written to a file by a scheduler, described by a manifest, and
-- removed once they expire. The request's event metadata is kept to record the completion
-- as part of the same audited action.
CREATE TABLE export_jobs (
    export_id     uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    spec          jsonb       NOT NULL,     -- what to export: kind, format, filters, position
    status        text        NOT NULL,     -- pending, running, done, failed, expired
    requested_by  text        NOT NULL,
    meta          bytea,
    requested_at  timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    expires_at    timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    bytes_written bigint      NOT NULL DEFAULT 0,   -- progress while it runs
    manifest      jsonb,                   -- position, filters, rows, bytes, SHA-256
    file          text,                    -- under HERALD_EXPORT_DIR
    error         text
);

CREATE INDEX export_jobs_waiting_idx ON export_jobs (requested_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX export_jobs_tenant_idx ON export_jobs (tenant_id, requested_at);
CREATE INDEX export_jobs_expiry_idx ON export_jobs (expires_at) WHERE status = 'done';
