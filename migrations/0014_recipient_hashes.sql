-- Lookups by recipient go through a keyed hash (HMAC-SHA256 under the tenant's hashing key,
-- see 0013), not the address. The projector writes it with the row; rows projected before
-- this migration get theirs from `herald gdpr encrypt-existing` (or a rebuild).
ALTER TABLE notification_view ADD COLUMN recipient_hash bytea;

DROP INDEX notification_view_recipient_idx;
CREATE INDEX notification_view_recipient_idx
    ON notification_view (tenant_id, recipient_hash, created_position);

-- A new column goes last in a view that is replaced.
CREATE OR REPLACE VIEW recipient_inbox AS
    SELECT tenant_id, recipient, notification_id, channel, status, priority, requested_at,
           sent_at, opened_at, updated_at, recipient_hash
    FROM notification_view
    WHERE status <> 'erased';
