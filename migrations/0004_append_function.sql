-- One round trip for a group commit: take the event store's table lock (the eventsourcing
-- library's protocol, so followers never skip a position), wake followers, insert the rows,
-- and return their positions. Called in autocommit mode, the statement is the transaction.

CREATE FUNCTION herald_append_events(
    stream_ids uuid[], versions bigint[], topics text[], states bytea[]
) RETURNS TABLE (originator_id uuid, originator_version bigint, notification_id bigint)
LANGUAGE plpgsql AS $BODY$
BEGIN
    LOCK TABLE stored_events IN EXCLUSIVE MODE;
    NOTIFY stored_events;
    RETURN QUERY
    INSERT INTO stored_events AS e (originator_id, originator_version, topic, state)
    SELECT * FROM unnest(stream_ids, versions, topics, states)
    RETURNING e.originator_id, e.originator_version, e.notification_id;
END;
$BODY$;
