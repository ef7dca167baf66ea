-- When each event was stored (the time its transaction began): a follower's lag in seconds
-- is the age of the oldest event it has not handled yet. Rows stored before this column
-- read as the time of this migration.
ALTER TABLE stored_events ADD COLUMN recorded_at timestamptz DEFAULT now();
