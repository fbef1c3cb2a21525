-- Tenants own builds, tokens, triggers and registry credentials. Existing builds belong to 'default'.
CREATE TABLE tenant (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    createdAt REAL NOT NULL,
    -- Limits; NULL means the gateway's configured default.
    maxRunningBuilds INTEGER CHECK (maxRunningBuilds IS NULL OR maxRunningBuilds >= 0),
    maxQueuedBuilds INTEGER CHECK (maxQueuedBuilds IS NULL OR maxQueuedBuilds >= 0),
    requestsPerMinute INTEGER CHECK (requestsPerMinute IS NULL OR requestsPerMinute >= 0)
);
INSERT INTO tenant (id, createdAt) VALUES ('default', unixepoch());

-- API tokens: `bgt_<id>_<secret>`; only sha256(secret) is stored, compared in constant time.
CREATE TABLE accessToken (
    id TEXT PRIMARY KEY NOT NULL,
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    name TEXT NOT NULL,
    secretHash BLOB NOT NULL CHECK (length(secretHash) = 32),
    scopes TEXT NOT NULL CHECK (json_valid(scopes)),
    -- Set for log-read tokens: the one build they may read.
    buildId TEXT,
    createdAt REAL NOT NULL,
    expiresAt REAL,
    revokedAt REAL
);
CREATE INDEX accessToken_on_tenantId ON accessToken (tenantId);

ALTER TABLE build ADD COLUMN tenantId TEXT NOT NULL DEFAULT 'default';
CREATE INDEX build_on_tenantId_id ON build (tenantId, id);
