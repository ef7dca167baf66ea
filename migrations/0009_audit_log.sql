-- The audit log: who did what, from where. A projection of the event log (every action of
-- an admin or operator, every login), written with its position in one transaction; no API
-- writes it. One entry per command: a batch of notifications is one entry with its count.

CREATE TABLE audit_log (
    entry_id       text        PRIMARY KEY,   -- the command id, or "position:N"
    tenant_id      text        NOT NULL,
    at             timestamptz NOT NULL,
    action         text        NOT NULL,      -- e.g. user.role_granted, login.failed
    actor          text,                      -- user or API key id; NULL for an unknown login
    actor_kind     text,                      -- user, api_key
    actor_roles    text[]      NOT NULL,
    ip             text,
    user_agent     text,
    request_id     text,
    subject        text,                      -- what it acted on: a user, a key, a notification
    count          integer     NOT NULL,      -- events it recorded
    details        jsonb       NOT NULL,
    first_position bigint      NOT NULL UNIQUE,
    last_position  bigint      NOT NULL
);

-- Queries page newest first by position, within a tenant, by action or by actor.
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, first_position);
CREATE INDEX audit_log_action_idx ON audit_log (tenant_id, action, first_position);
CREATE INDEX audit_log_actor_idx ON audit_log (tenant_id, actor, first_position);
CREATE INDEX audit_log_at_idx ON audit_log (tenant_id, at);
