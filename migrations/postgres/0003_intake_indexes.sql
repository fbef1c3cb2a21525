-- Intake cost must not grow with the queue (SQLite migration 0010): a delivery's "does this trigger already build
-- this commit" and a tenant's queued count read these indexes.
CREATE INDEX build_on_triggerId_commit ON build (triggerId, (gitSource::jsonb ->> 'commit'))
    WHERE triggerId IS NOT NULL;
CREATE INDEX build_on_tenantId_queued ON build (tenantId) WHERE status = 'queued';
