-- A tenant's queued builds, kept by triggers as builds enter and leave 'queued': intake reads one row instead of
-- counting the queue (which grew with its length).
ALTER TABLE tenant ADD COLUMN queuedBuilds INTEGER NOT NULL DEFAULT 0 CHECK (queuedBuilds >= 0);
UPDATE tenant SET queuedBuilds = (SELECT count(*) FROM build WHERE build.tenantId = tenant.id AND status = 'queued');

CREATE TRIGGER build_queued_insert AFTER INSERT ON build WHEN NEW.status = 'queued'
BEGIN
    UPDATE tenant SET queuedBuilds = queuedBuilds + 1 WHERE id = NEW.tenantId;
END;

CREATE TRIGGER build_queued_update AFTER UPDATE OF status ON build
    WHEN (NEW.status = 'queued') != (OLD.status = 'queued')
BEGIN
    UPDATE tenant SET queuedBuilds = queuedBuilds + (CASE WHEN NEW.status = 'queued' THEN 1 ELSE -1 END)
    WHERE id = NEW.tenantId;
END;

CREATE TRIGGER build_queued_delete AFTER DELETE ON build WHEN OLD.status = 'queued'
BEGIN
    UPDATE tenant SET queuedBuilds = queuedBuilds - 1 WHERE id = OLD.tenantId;
END;

-- The count replaces the partial index 0010 added for counting.
DROP INDEX build_on_tenantId_queued;
