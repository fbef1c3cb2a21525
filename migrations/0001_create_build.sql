-- One row per build. Status, reason and JSON columns are checked by the schema, not only by the code.
CREATE TABLE build (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timedOut')),
    request TEXT NOT NULL CHECK (json_valid(request)),
    contextDigest TEXT NOT NULL CHECK (contextDigest GLOB 'sha256:*' AND length(contextDigest) = 71),
    contextSize INTEGER NOT NULL CHECK (contextSize >= 0),
    contextCompression TEXT NOT NULL CHECK (contextCompression IN ('none', 'gzip')),
    idempotencyKey TEXT UNIQUE,
    createdAt REAL NOT NULL,
    startedAt REAL,
    finishedAt REAL,
    builder TEXT,
    leaseOwner TEXT,
    leaseExpiresAt REAL,
    cancelRequested INTEGER NOT NULL DEFAULT 0 CHECK (cancelRequested IN (0, 1)),
    reason TEXT CHECK (reason IS NULL OR reason IN
        ('builderUnavailable', 'buildFailed', 'pushFailed', 'timedOut', 'cancelled', 'interrupted')),
    message TEXT,
    pushedImages TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pushedImages)),
    -- A lease exists exactly while a dispatcher holds the build.
    CHECK ((status IN ('starting', 'running')) = (leaseOwner IS NOT NULL AND leaseExpiresAt IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'timedOut')) = (finishedAt IS NOT NULL))
);

-- The claim statement reads the oldest queued build.
CREATE INDEX build_on_status_id ON build (status, id);
-- The lease reaper reads expired leases.
CREATE INDEX build_on_leaseExpiresAt ON build (leaseExpiresAt) WHERE leaseOwner IS NOT NULL;
