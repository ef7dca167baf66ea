-- The notifications read model: one row per notification, its current state. Written by the
-- notifications projection together with its tracking position, in one transaction.

CREATE TABLE notification_view (
    notification_id     uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    channel             text        NOT NULL,
    recipient           text        NOT NULL,
    priority            text        NOT NULL,
    status              text        NOT NULL,
    attempts            integer     NOT NULL DEFAULT 0,
    last_error          text,
    provider_message_id text,
    send_at             timestamptz,
    requested_at        timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    version             bigint      NOT NULL,   -- the stream version this row reflects
    position            bigint      NOT NULL    -- the log position of that event
);

CREATE INDEX notification_view_tenant_idx ON notification_view (tenant_id, requested_at, notification_id);
