-- Erasure requests, each run by a scheduler step by step. The row is the checkpoint: a
-- scheduler that dies midway leaves it to the next, which goes on from the step it names.
-- Its events (SubjectErasureRequested, SubjectErased with the receipt) are the record.
CREATE TABLE erasures (
    erasure_id        uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    subject_kind      text        NOT NULL CHECK (subject_kind IN ('recipient', 'user')),
    subject_ref       text        NOT NULL,   -- the recipient's keyed hash (hex), or user id
    requested_by      text        NOT NULL,
    requested_at      timestamptz NOT NULL,
    meta              bytea,                  -- the request's event metadata, sealed
    status            text        NOT NULL CHECK (status IN ('pending', 'running', 'done')),
    step              text        NOT NULL,   -- the next step to run
    progress          jsonb       NOT NULL DEFAULT '{}',   -- each finished step's report
    attempts          integer     NOT NULL DEFAULT 0,
    keys_destroyed_at timestamptz,
    receipt           jsonb,
    completed_at      timestamptz
);

-- One open erasure per subject: asking again while one runs answers with that one.
CREATE UNIQUE INDEX erasures_open_key ON erasures (tenant_id, subject_kind, subject_ref)
    WHERE status <> 'done';
CREATE INDEX erasures_waiting_idx ON erasures (requested_at) WHERE status <> 'done';
CREATE INDEX erasures_tenant_idx ON erasures (tenant_id, requested_at);

-- Events stored before personal fields were sealed hold them in the clear, where destroying
-- a key cannot reach. `herald gdpr encrypt-existing` seals them; until it has gone past
-- `unsealed_through`, erasure refuses. A database that never held such events starts at 0.
CREATE TABLE privacy_backfill (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    unsealed_through bigint  NOT NULL,
    sealed_through   bigint  NOT NULL DEFAULT 0
);
INSERT INTO privacy_backfill (unsealed_through)
SELECT coalesce(max(notification_id), 0) FROM stored_events
WHERE split_part(topic, '@', 1) IN ('NotificationRequested', 'ChannelFallenBack',
        'NotificationRestored', 'UserRegistered', 'LoginSucceeded', 'LoginFailed')
  AND substring(state FROM 1 FOR 4) <> '\x1b687832'::bytea;
