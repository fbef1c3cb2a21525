-- Builds from git: the context is fetched by the dispatcher, so it may be missing while queued. SQLite cannot relax
-- NOT NULL in place, so the table is rebuilt (the documented 12-step way; foreign keys are not enforced inside).
CREATE TABLE build_new (
    id TEXT PRIMARY KEY NOT NULL,
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timedOut')),
    request TEXT NOT NULL CHECK (json_valid(request)),
    -- {"url","ref","commit"} for git builds; NULL for uploads.
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
        ('builderUnavailable', 'buildFailed', 'pushFailed', 'timedOut', 'cancelled', 'interrupted', 'sourceFailed')),
    message TEXT,
    pushedImages TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(pushedImages)),
    CHECK ((status IN ('starting', 'running')) = (leaseOwner IS NOT NULL AND leaseExpiresAt IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'timedOut')) = (finishedAt IS NOT NULL)),
    -- Every build has a context or a git source; the three context columns are set together.
    CHECK (gitSource IS NOT NULL OR contextDigest IS NOT NULL),
    CHECK ((contextDigest IS NULL) = (contextSize IS NULL) AND (contextDigest IS NULL) = (contextCompression IS NULL))
);
INSERT INTO build_new (id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize,
        contextCompression, idempotencyKey, createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt,
        cancelRequested, reason, message, pushedImages)
    SELECT id, tenantId, status, request, NULL, NULL, contextDigest, contextSize, contextCompression, idempotencyKey,
        createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt, cancelRequested, reason, message,
        pushedImages
    FROM build;
DROP TABLE build;
ALTER TABLE build_new RENAME TO build;
CREATE INDEX build_on_status_id ON build (status, id);
CREATE INDEX build_on_leaseExpiresAt ON build (leaseExpiresAt) WHERE leaseOwner IS NOT NULL;
CREATE INDEX build_on_tenantId_id ON build (tenantId, id);

-- Forge triggers. Secrets and credentials are AES-GCM sealed with the gateway's key (never stored in clear).
CREATE TABLE trigger (
    id TEXT PRIMARY KEY NOT NULL,
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    forge TEXT NOT NULL CHECK (forge IN ('github', 'gitlab', 'gitea', 'bitbucket')),
    repository TEXT NOT NULL,
    -- Everything else (filters, events, templates, build parameters) as JSON.
    settings TEXT NOT NULL CHECK (json_valid(settings)),
    sealedSecret BLOB NOT NULL,
    sealedCloneCredentials BLOB,
    createdAt REAL NOT NULL
);
CREATE INDEX trigger_on_forge ON trigger (forge);
CREATE INDEX trigger_on_tenantId ON trigger (tenantId);

-- One row per accepted delivery: a redelivery gets the stored answer and no second build.
CREATE TABLE webhookDelivery (
    triggerId TEXT NOT NULL,
    deliveryId TEXT NOT NULL,
    receivedAt REAL NOT NULL,
    statusCode INTEGER NOT NULL,
    response TEXT NOT NULL CHECK (json_valid(response)),
    PRIMARY KEY (triggerId, deliveryId)
);
CREATE INDEX webhookDelivery_on_receivedAt ON webhookDelivery (receivedAt);

-- Registry credentials per tenant, sealed.
CREATE TABLE registryCredential (
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    host TEXT NOT NULL,
    sealedCredential BLOB NOT NULL,
    updatedAt REAL NOT NULL,
    PRIMARY KEY (tenantId, host)
);
