-- Intake cost must not grow with the queue. A delivery asks whether its trigger already builds this commit: found
-- through this index, not by reading every active build's JSON.
CREATE INDEX build_on_triggerId_commit ON build (triggerId, json_extract(gitSource, '$.commit'))
    WHERE triggerId IS NOT NULL;
-- A tenant's queued builds, counted (up to its limit) at every intake.
CREATE INDEX build_on_tenantId_queued ON build (tenantId) WHERE status = 'queued';
