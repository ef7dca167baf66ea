-- Who did it, and from where: every event carries the metadata of the request that recorded
-- it (principal, roles, tenant, client IP, user agent, request id, command), stored with the
-- event as msgpack. NULL for events a process recorded on its own (a dispatcher's attempt).

ALTER TABLE stored_events ADD COLUMN meta bytea;

-- The group commit's one-statement append, now with each event's metadata.
DROP FUNCTION herald_append_events(uuid[], bigint[], text[], bytea[]);

CREATE FUNCTION herald_append_events(
    stream_ids uuid[], versions bigint[], topics text[], states bytea[], metas bytea[]
) RETURNS TABLE (originator_id uuid, originator_version bigint, notification_id bigint)
LANGUAGE plpgsql AS $BODY$
BEGIN
    LOCK TABLE stored_events IN EXCLUSIVE MODE;
    NOTIFY stored_events;
    RETURN QUERY
    INSERT INTO stored_events AS e (originator_id, originator_version, topic, state, meta)
    SELECT * FROM unnest(stream_ids, versions, topics, states, metas)
    RETURNING e.originator_id, e.originator_version, e.notification_id;
END;
$BODY$;
