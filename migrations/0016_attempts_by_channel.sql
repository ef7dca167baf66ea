-- Each channel counts its attempts from 1, so after a fallback a notification has an
-- attempt 1 on each channel it tried: the key of an attempt includes its channel. Rows
-- written under the old key may have merged two such attempts into one;
-- `herald projections rebuild notifications` writes them apart again.
ALTER TABLE notification_attempts DROP CONSTRAINT notification_attempts_pkey;
ALTER TABLE notification_attempts ADD PRIMARY KEY (notification_id, channel, attempt);
