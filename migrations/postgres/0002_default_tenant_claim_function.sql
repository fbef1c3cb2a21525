-- The 'default' tenant exists from the start, as in SQLite (migration 0002 there).
INSERT INTO tenant (id, createdAt) VALUES ('default', extract(epoch FROM now())) ON CONFLICT (id) DO NOTHING;

-- A claim in one round trip: the claim lock, then the guarded UPDATE. In a VOLATILE plpgsql function each statement
-- takes a new snapshot (READ COMMITTED), so the UPDATE counts every claim committed before the lock was granted:
-- builder capacity, the tenant's running limit and `serial` run keys hold across gateways. The lock is released at
-- the caller's commit (the statement's own, in autocommit).
CREATE FUNCTION claim_build(
    p_id text, p_builder text, p_capacity bigint, p_owner text, p_lease_until double precision,
    p_now double precision, p_default_max_running bigint
) RETURNS SETOF build LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7094692702253940738);
    RETURN QUERY
    UPDATE build
    SET status = 'starting', builder = p_builder, leaseOwner = p_owner, leaseExpiresAt = p_lease_until,
        startedAt = p_now
    WHERE id = (
        SELECT b.id FROM build b LEFT JOIN tenant t ON t.id = b.tenantId
        WHERE b.id = p_id AND b.status = 'queued'
          AND (coalesce(t.maxRunningBuilds, p_default_max_running) IS NULL
            OR (SELECT count(*) FROM build r WHERE r.tenantId = b.tenantId AND r.status IN ('starting', 'running'))
               < coalesce(t.maxRunningBuilds, p_default_max_running))
          AND (b.runPolicy != 'serial' OR NOT EXISTS (
              SELECT 1 FROM build r WHERE r.runKey = b.runKey AND r.status IN ('starting', 'running')))
          AND (p_capacity IS NULL OR (SELECT count(*) FROM build s
              WHERE s.builder = p_builder AND s.status IN ('starting', 'running')) < p_capacity)
        FOR UPDATE OF b SKIP LOCKED)
    RETURNING *;
END;
$$;
