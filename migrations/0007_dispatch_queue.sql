-- The dispatchers' work: which notifications need a dispatcher, from when, how urgently.
--
-- A read model of the notification events (the dispatcher's consumer writes it from Kafka,
-- version-guarded, and workers update the rows they hold), so scheduled sends and retries
-- survive any restart: nothing is only in memory. A row is a hint, never the truth; the
-- worker that takes one decides from the notification's event stream.
CREATE TABLE dispatch_queue (
    notification_id uuid        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    priority_rank   smallint    NOT NULL,   -- 0 critical, 1 high, 2 normal, 3 low
    due_at          timestamptz NOT NULL,
    version         bigint      NOT NULL,   -- the stream version this row reflects
    leased_until    timestamptz,            -- a worker holds the row until then
    leased_by       text
);

-- Workers take the most urgent due rows first.
CREATE INDEX dispatch_queue_due_idx ON dispatch_queue (priority_rank, due_at);

-- The sweep that re-queues notifications a lost broker message never announced reads the
-- statuses a dispatcher still has work for.
CREATE INDEX notification_view_pending_idx ON notification_view (updated_at)
    WHERE status IN ('requested', 'scheduled', 'retry_scheduled', 'dispatching', 'failed', 'bounced');
