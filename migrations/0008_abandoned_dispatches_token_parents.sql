-- A build whose dispatch the gateway did not survive is not dispatched for ever: the lease reaper counts, per build,
-- the leases that expired before the engine accepted it (interruptedDispatches), and at the second such expiry the
-- build ends 'failed' with the new reason 'dispatchAbandoned' instead of going back to the queue. The reason CHECK
-- changes, so the table is rebuilt as in 0006.
CREATE TABLE build_new (
    id TEXT PRIMARY KEY NOT NULL,
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timedOut', 'expired')),
    request TEXT NOT NULL CHECK (json_valid(request)),
    gitSource TEXT CHECK (gitSource IS NULL OR json_valid(gitSource)),
    triggerId TEXT,
    contextDigest TEXT CHECK (contextDigest IS NULL OR (contextDigest GLOB 'sha256:*' AND length(contextDigest) = 71)),
    contextSize INTEGER CHECK (contextSize IS NULL OR contextSize >= 0),
    contextCompression TEXT CHECK (contextCompression IS NULL OR contextCompression IN ('none', 'gzip')),
    idempotencyKey TEXT UNIQUE,
    createdAt REAL NOT NULL,
    startedAt REAL,
    finishedAt REAL,
    builder TEXT,
    leaseOwner TEXT,
    leaseExpiresAt REAL,
    cancelRequested INTEGER NOT NULL DEFAULT 0 CHECK (cancelRequested IN (0, 1)),
    reason TEXT CHECK (reason IS NULL OR reason IN
        ('builderUnavailable', 'buildFailed', 'pushFailed', 'timedOut', 'cancelled', 'interrupted', 'sourceFailed',
         'expired', 'superseded', 'dispatchAbandoned')),
    message TEXT,
    pushedImages TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pushedImages)),
    steps TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(steps)),
    attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    queueExpiresAt REAL,
    runKey TEXT,
    runPolicy TEXT NOT NULL DEFAULT 'parallel' CHECK (runPolicy IN ('parallel', 'serial', 'latestOnly')),
    logRemoved INTEGER NOT NULL DEFAULT 0,
    contextRemoved INTEGER NOT NULL DEFAULT 0,
    -- Leases of this build that expired while it was 'starting' (claimed, the engine not yet answering): each one a
    -- gateway that died while dispatching it.
    interruptedDispatches INTEGER NOT NULL DEFAULT 0 CHECK (interruptedDispatches >= 0),
    CHECK ((status IN ('starting', 'running')) = (leaseOwner IS NOT NULL AND leaseExpiresAt IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'timedOut', 'expired')) = (finishedAt IS NOT NULL)),
    CHECK (gitSource IS NOT NULL OR contextDigest IS NOT NULL),
    CHECK ((contextDigest IS NULL) = (contextSize IS NULL) AND (contextDigest IS NULL) = (contextCompression IS NULL)),
    CHECK (runPolicy = 'parallel' OR runKey IS NOT NULL)
);
INSERT INTO build_new (id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize,
        contextCompression, idempotencyKey, createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt,
        cancelRequested, reason, message, pushedImages, steps, attempt, queueExpiresAt, runKey, runPolicy, logRemoved,
        contextRemoved)
    SELECT id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize, contextCompression,
        idempotencyKey, createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt, cancelRequested, reason,
        message, pushedImages, steps, attempt, queueExpiresAt, runKey, runPolicy, logRemoved, contextRemoved
    FROM build;
DROP TABLE build;
ALTER TABLE build_new RENAME TO build;
CREATE INDEX build_on_status_id ON build (status, id);
CREATE INDEX build_on_leaseExpiresAt ON build (leaseExpiresAt) WHERE leaseOwner IS NOT NULL;
CREATE INDEX build_on_tenantId_id ON build (tenantId, id);
CREATE INDEX build_on_queueExpiresAt ON build (queueExpiresAt) WHERE status = 'queued';
CREATE INDEX build_on_runKey ON build (runKey, status) WHERE runKey IS NOT NULL;
CREATE INDEX build_on_finishedAt ON build (finishedAt) WHERE finishedAt IS NOT NULL;

-- A log-read token minted by another token names it: it stops working when its parent is revoked or expires.
ALTER TABLE accessToken ADD COLUMN parentId TEXT REFERENCES accessToken(id);
