-- The event store: the eventsourcing library's PostgreSQL schema (9.5.x), created here so that
-- production never depends on tables made at runtime. The library is configured with
-- CREATE_TABLE=no and these names.

CREATE TABLE stored_events (
    originator_id      uuid   NOT NULL,
    originator_version bigint NOT NULL,
    topic              text,
    state              bytea,
    notification_id    bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

CREATE UNIQUE INDEX stored_events_notification_id_idx ON stored_events (notification_id ASC);

CREATE TYPE stored_event_uuid AS (
    originator_id      uuid,
    originator_version bigint,
    topic              text,
    state              bytea
);

CREATE OR REPLACE FUNCTION es_insert_events_uuid(events stored_event_uuid[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$
BEGIN
    SET LOCAL lock_timeout = '0s';
    NOTIFY "stored_events";
    RETURN QUERY
    INSERT INTO stored_events AS t (originator_id, originator_version, topic, state)
    SELECT originator_id, originator_version, topic, state
    FROM unnest(events)
    RETURNING notification_id;
END;
$BODY$;

-- Positions of processes that follow the log (relay, projections), one row per follower.
CREATE TABLE tracking (
    application_name text PRIMARY KEY,
    notification_id  bigint
);
