-- Idempotency keys for commands. A row is inserted in the same transaction as the events the
-- command appended, so the primary key (not a cache) decides which of two concurrent requests
-- with one key wins, across processes and restarts. The stored response is replayed to the
-- loser and to every later retry with the same body; another body under the key is refused.

CREATE TABLE idempotency_keys (
    tenant_id    text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,   -- SHA-256 of the canonical request
    status_code  integer     NOT NULL,
    response     bytea       NOT NULL,   -- the JSON body first returned
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
