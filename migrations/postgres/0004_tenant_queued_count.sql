-- A tenant's queued builds, kept by a trigger as builds enter and leave 'queued' (SQLite migration 0011): intake
-- reads one row instead of counting the queue.
ALTER TABLE tenant ADD COLUMN queuedBuilds bigint NOT NULL DEFAULT 0 CHECK (queuedBuilds >= 0);
UPDATE tenant SET queuedBuilds = (SELECT count(*) FROM build WHERE build.tenantId = tenant.id AND status = 'queued');

CREATE FUNCTION build_queued_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'queued'
        AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'queued') THEN
        UPDATE tenant SET queuedBuilds = queuedBuilds + 1 WHERE id = NEW.tenantId;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'queued'
        AND (TG_OP = 'DELETE' OR NEW.status IS DISTINCT FROM 'queued') THEN
        UPDATE tenant SET queuedBuilds = queuedBuilds - 1 WHERE id = OLD.tenantId;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER build_queued_count AFTER INSERT OR UPDATE OF status OR DELETE ON build
    FOR EACH ROW EXECUTE FUNCTION build_queued_count();

-- The count replaces the partial index 0003 added for counting.
DROP INDEX build_on_tenantId_queued;
