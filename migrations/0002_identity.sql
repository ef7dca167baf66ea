-- Identity read models. Both are written in the same transaction as the events they
-- reflect (see commands/identity), so a login or an authorisation never sees a state the
-- event store does not hold, and the unique index below is what makes two registrations
-- of one email in one tenant impossible, whatever the timing.

CREATE TABLE users (
    user_id       uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    email         text,                     -- NULL once erased, which frees the address
    password_hash text,
    roles         text[]      NOT NULL DEFAULT '{}',
    status        text        NOT NULL CHECK (status IN ('active', 'disabled', 'erased')),
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE UNIQUE INDEX users_tenant_email_key ON users (tenant_id, email) WHERE email IS NOT NULL;
CREATE INDEX users_tenant_page_idx ON users (tenant_id, created_at, user_id);

CREATE TABLE api_keys (
    key_id      uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    role        text        NOT NULL,
    secret_hash text        NOT NULL,       -- SHA-256 of a 256-bit random secret
    status      text        NOT NULL CHECK (status IN ('active', 'revoked')),
    created_by  text        NOT NULL,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE UNIQUE INDEX api_keys_tenant_name_key ON api_keys (tenant_id, name) WHERE status = 'active';
CREATE INDEX api_keys_tenant_page_idx ON api_keys (tenant_id, created_at, key_id);
