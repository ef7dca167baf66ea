-- The rest of the notification read models, all written by the notifications projection in
-- the same transaction as its Kafka offsets: when each stage happened, delivery attempts,
-- per-tenant statistics, the per-recipient inbox and the dead-letter view.

ALTER TABLE notification_view
    ADD COLUMN created_position bigint,    -- the position of NotificationRequested
    ADD COLUMN provider         text,
    ADD COLUMN scheduled_at     timestamptz,
    ADD COLUMN dispatched_at    timestamptz,
    ADD COLUMN sent_at          timestamptz,
    ADD COLUMN delivered_at     timestamptz,
    ADD COLUMN opened_at        timestamptz,
    ADD COLUMN failed_at        timestamptz,
    ADD COLUMN cancelled_at     timestamptz,
    ADD COLUMN dead_lettered_at timestamptz;

UPDATE notification_view v SET created_position = e.notification_id
    FROM stored_events e WHERE e.originator_id = v.notification_id AND e.originator_version = 1;
ALTER TABLE notification_view ALTER COLUMN created_position SET NOT NULL;

-- Lists page by creation position: unique, and in the order requests were committed.
DROP INDEX notification_view_tenant_idx;
CREATE INDEX notification_view_tenant_idx ON notification_view (tenant_id, created_position);
CREATE INDEX notification_view_status_idx ON notification_view (tenant_id, status, created_position);
CREATE INDEX notification_view_recipient_idx
    ON notification_view (tenant_id, recipient, created_position);
CREATE INDEX notification_view_dead_idx ON notification_view (tenant_id, created_position)
    WHERE status = 'dead_lettered';

-- One row per dispatch attempt, opened by DispatchStarted and closed by Sent or DeliveryFailed.
CREATE TABLE notification_attempts (
    notification_id     uuid        NOT NULL,
    attempt             integer     NOT NULL,
    tenant_id           text        NOT NULL,
    channel             text        NOT NULL,
    provider            text        NOT NULL,
    outcome             text        NOT NULL,   -- dispatching, sent or failed
    provider_message_id text,
    error               text,
    permanent           boolean,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    PRIMARY KEY (notification_id, attempt)
);

-- How many notifications are in each status, per tenant, day requested, channel and priority.
-- Moved by the projection as each notification changes status: +1 to the new bucket, -1 to
-- the old one.
CREATE TABLE notification_stats (
    tenant_id text    NOT NULL,
    day       date    NOT NULL,
    channel   text    NOT NULL,
    status    text    NOT NULL,
    priority  text    NOT NULL,
    count     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, day, channel, status, priority)
);

-- A recipient's notifications, newest first through notification_view_recipient_idx.
CREATE VIEW recipient_inbox AS
    SELECT tenant_id, recipient, notification_id, channel, status, priority, requested_at,
           sent_at, opened_at, updated_at
    FROM notification_view
    WHERE status <> 'erased';

CREATE VIEW dead_letters AS
    SELECT tenant_id, notification_id, channel, recipient, priority, attempts, last_error,
           requested_at, dead_lettered_at, position
    FROM notification_view
    WHERE status = 'dead_lettered';

-- Where each projection has got to in each Kafka partition: the next offset to read.
-- Written in the same transaction as the read-model rows those messages produced.
CREATE TABLE projection_offsets (
    projection  text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (projection, topic, partition)
);
