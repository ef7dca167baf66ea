-- Personal data at rest: a data key per data subject, wrapped by the master key.

-- One live key per subject (a tenant's recipient, or a user account) seals that subject's
-- personal fields in events and event metadata. Destroying it (wrapped set to NULL, the row
-- kept for the receipt) erases them wherever the ciphertext went; whatever comes for the
-- subject afterwards gets a new key. Subjects are named by a keyed hash, not by address.
CREATE TABLE subject_keys (
    key_id        uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    subject_kind  text        NOT NULL,   -- recipient, user
    subject_hash  bytea       NOT NULL,   -- HMAC-SHA256 under the tenant's hashing key
    wrapped       bytea,                  -- the data key wrapped by a master key; NULL: destroyed
    master_key_id text,                   -- which master key wrapped it
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz
);

-- One index only: each new subject costs its row and this entry on the ingest path. Erasure,
-- which also wants the subject's destroyed keys, is rare enough to scan for them.
CREATE UNIQUE INDEX subject_keys_live_idx ON subject_keys (tenant_id, subject_kind, subject_hash)
    WHERE wrapped IS NOT NULL;

-- Each tenant's hashing key: lookups by recipient use HMAC(key, address), not the address.
CREATE TABLE tenant_hash_keys (
    tenant_id     text        PRIMARY KEY,
    wrapped       bytea       NOT NULL,
    master_key_id text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
