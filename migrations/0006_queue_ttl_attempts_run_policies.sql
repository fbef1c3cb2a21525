-- Queue TTL (status 'expired'), infrastructure retries (attempt), run policies (runKey, runPolicy) and the reason
-- 'superseded'. The status and reason CHECKs change, so the table is rebuilt (the documented 12-step way; foreign
-- keys are not enforced inside a migration).
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
         'expired', 'superseded')),
    message TEXT,
    pushedImages TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pushedImages)),
    requiredFeatures INTEGER NOT NULL DEFAULT 0 CHECK (requiredFeatures >= 0),
    steps TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(steps)),
    -- 1 for the first try; an infrastructure failure (builder gone) requeues the build with attempt + 1.
    attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- A queued build still queued at this time ends 'expired'; NULL: no TTL.
    queueExpiresAt REAL,
    -- Builds with the same runKey follow runPolicy: 'serial' one at a time, 'latestOnly' newer supersedes queued.
    runKey TEXT,
    runPolicy TEXT NOT NULL DEFAULT 'parallel' CHECK (runPolicy IN ('parallel', 'serial', 'latestOnly')),
    CHECK ((status IN ('starting', 'running')) = (leaseOwner IS NOT NULL AND leaseExpiresAt IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'timedOut', 'expired')) = (finishedAt IS NOT NULL)),
    CHECK (gitSource IS NOT NULL OR contextDigest IS NOT NULL),
    CHECK ((contextDigest IS NULL) = (contextSize IS NULL) AND (contextDigest IS NULL) = (contextCompression IS NULL)),
    CHECK (runPolicy = 'parallel' OR runKey IS NOT NULL)
);
INSERT INTO build_new (id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize,
        contextCompression, idempotencyKey, createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt,
        cancelRequested, reason, message, pushedImages, requiredFeatures, steps)
    SELECT id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize, contextCompression,
        idempotencyKey,
        -- Records used to store their dates as text; from here on every date is Unix seconds (REAL).
        CASE typeof(createdAt) WHEN 'text' THEN (julianday(createdAt) - 2440587.5) * 86400.0 ELSE createdAt END,
        CASE typeof(startedAt) WHEN 'text' THEN (julianday(startedAt) - 2440587.5) * 86400.0 ELSE startedAt END,
        CASE typeof(finishedAt) WHEN 'text' THEN (julianday(finishedAt) - 2440587.5) * 86400.0 ELSE finishedAt END,
        builder, leaseOwner, leaseExpiresAt, cancelRequested, reason, message, pushedImages, requiredFeatures, steps
    FROM build;
DROP TABLE build;
ALTER TABLE build_new RENAME TO build;
CREATE INDEX build_on_status_id ON build (status, id);
CREATE INDEX build_on_leaseExpiresAt ON build (leaseExpiresAt) WHERE leaseOwner IS NOT NULL;
CREATE INDEX build_on_tenantId_id ON build (tenantId, id);
CREATE INDEX build_on_queueExpiresAt ON build (queueExpiresAt) WHERE status = 'queued';
CREATE INDEX build_on_runKey ON build (runKey, status) WHERE runKey IS NOT NULL;
