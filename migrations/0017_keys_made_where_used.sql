-- Each process makes a subject's data key itself, with no lookup, and stores it in the same
-- transaction as the first events it seals: a subject may have a live key per process that
-- sealed for it. Erasure destroys them all, found by this index.
DROP INDEX subject_keys_live_idx;
CREATE INDEX subject_keys_subject_idx ON subject_keys (tenant_id, subject_kind, subject_hash);

-- The group commit's one-statement append, with the rows of the data keys its events were
-- sealed under and that are not stored yet (ids as their 16 bytes).
CREATE FUNCTION herald_append_sealed_events(
    stream_ids uuid[], versions bigint[], topics text[], states bytea[], metas bytea[],
    key_ids bytea[], key_tenants text[], key_kinds text[], key_hashes bytea[],
    key_wrapped bytea[], key_masters text[]
) RETURNS TABLE (originator_id uuid, originator_version bigint, notification_id bigint)
LANGUAGE plpgsql AS $BODY$
BEGIN
    INSERT INTO subject_keys (key_id, tenant_id, subject_kind, subject_hash, wrapped, master_key_id)
    SELECT encode(k.id, 'hex')::uuid, k.tenant, k.kind, k.hash, k.wrapped, k.master
    FROM unnest(key_ids, key_tenants, key_kinds, key_hashes, key_wrapped, key_masters)
        AS k(id, tenant, kind, hash, wrapped, master);
    RETURN QUERY SELECT * FROM herald_append_events(stream_ids, versions, topics, states, metas);
END;
$BODY$;
