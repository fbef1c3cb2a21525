-- The PostgreSQL schema: the same tables and columns as the SQLite migrations 0001–0009 leave (a test compares
-- them), for several gateways sharing one database. Times are Unix seconds (double precision), as in SQLite.
-- Identifiers are unquoted, so PostgreSQL folds them to lower case; queries name them the same way.

CREATE TABLE tenant (
    id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 63 AND id ~ '^[a-z0-9-]+$'),
    createdAt double precision NOT NULL,
    -- Limits; NULL means the gateway's configured default.
    maxRunningBuilds bigint CHECK (maxRunningBuilds IS NULL OR maxRunningBuilds >= 0),
    maxQueuedBuilds bigint CHECK (maxQueuedBuilds IS NULL OR maxQueuedBuilds >= 0),
    requestsPerMinute bigint CHECK (requestsPerMinute IS NULL OR requestsPerMinute >= 0)
);

CREATE TABLE accessToken (
    id text PRIMARY KEY,
    tenantId text NOT NULL REFERENCES tenant(id),
    name text NOT NULL,
    secretHash bytea NOT NULL CHECK (length(secretHash) = 32),
    scopes text NOT NULL CHECK (scopes::jsonb IS NOT NULL),
    -- Set for log-read tokens: the one build they may read.
    buildId text,
    createdAt double precision NOT NULL,
    expiresAt double precision,
    revokedAt double precision,
    parentId text REFERENCES accessToken(id)
);
CREATE INDEX accessToken_on_tenantId ON accessToken (tenantId);

CREATE TABLE trigger (
    id text PRIMARY KEY,
    tenantId text NOT NULL REFERENCES tenant(id),
    forge text NOT NULL CHECK (forge IN ('github', 'gitlab', 'gitea', 'bitbucket')),
    repository text NOT NULL,
    -- Everything else (filters, events, templates, build parameters) as JSON.
    settings text NOT NULL CHECK (settings::jsonb IS NOT NULL),
    sealedSecret bytea NOT NULL,
    sealedCloneCredentials bytea,
    createdAt double precision NOT NULL,
    sealedStatusToken bytea
);
CREATE INDEX trigger_on_forge ON trigger (forge);
CREATE INDEX trigger_on_tenantId ON trigger (tenantId);

-- The key that makes a delivery build once, whichever gateway receives it (and however often).
CREATE TABLE webhookDelivery (
    triggerId text NOT NULL,
    deliveryId text NOT NULL,
    receivedAt double precision NOT NULL,
    statusCode bigint NOT NULL,
    response text NOT NULL CHECK (response::jsonb IS NOT NULL),
    PRIMARY KEY (triggerId, deliveryId)
);
CREATE INDEX webhookDelivery_on_receivedAt ON webhookDelivery (receivedAt);

CREATE TABLE registryCredential (
    tenantId text NOT NULL REFERENCES tenant(id),
    host text NOT NULL,
    sealedCredential bytea NOT NULL,
    updatedAt double precision NOT NULL,
    PRIMARY KEY (tenantId, host)
);

CREATE TABLE buildSecret (
    tenantId text NOT NULL REFERENCES tenant(id),
    name text NOT NULL,
    sealedValue bytea NOT NULL,
    updatedAt double precision NOT NULL,
    PRIMARY KEY (tenantId, name)
);

CREATE TABLE build (
    id text PRIMARY KEY,
    tenantId text NOT NULL REFERENCES tenant(id),
    status text NOT NULL
        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timedOut', 'expired')),
    request text NOT NULL CHECK (request::jsonb IS NOT NULL),
    gitSource text CHECK (gitSource IS NULL OR gitSource::jsonb IS NOT NULL),
    triggerId text,
    contextDigest text CHECK (contextDigest IS NULL OR contextDigest ~ '^sha256:[0-9a-f]{64}$'),
    contextSize bigint CHECK (contextSize IS NULL OR contextSize >= 0),
    contextCompression text CHECK (contextCompression IS NULL OR contextCompression IN ('none', 'gzip')),
    idempotencyKey text UNIQUE,
    createdAt double precision NOT NULL,
    startedAt double precision,
    finishedAt double precision,
    builder text,
    leaseOwner text,
    leaseExpiresAt double precision,
    cancelRequested boolean NOT NULL DEFAULT false,
    reason text CHECK (reason IS NULL OR reason IN
        ('builderUnavailable', 'buildFailed', 'pushFailed', 'timedOut', 'cancelled', 'interrupted', 'sourceFailed',
         'expired', 'superseded', 'dispatchAbandoned')),
    message text,
    pushedImages text NOT NULL DEFAULT '[]' CHECK (pushedImages::jsonb IS NOT NULL),
    steps text NOT NULL DEFAULT '[]' CHECK (steps::jsonb IS NOT NULL),
    attempt bigint NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    queueExpiresAt double precision,
    runKey text,
    runPolicy text NOT NULL DEFAULT 'parallel' CHECK (runPolicy IN ('parallel', 'serial', 'latestOnly')),
    logRemoved boolean NOT NULL DEFAULT false,
    contextRemoved boolean NOT NULL DEFAULT false,
    -- Leases of this build that expired while it was 'starting' (claimed, the engine not yet answering): each one a
    -- gateway that died while dispatching it.
    interruptedDispatches bigint NOT NULL DEFAULT 0 CHECK (interruptedDispatches >= 0),
    CHECK ((status IN ('starting', 'running')) = (leaseOwner IS NOT NULL AND leaseExpiresAt IS NOT NULL)),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'timedOut', 'expired')) = (finishedAt IS NOT NULL)),
    CHECK (gitSource IS NOT NULL OR contextDigest IS NOT NULL),
    CHECK ((contextDigest IS NULL) = (contextSize IS NULL) AND (contextDigest IS NULL) = (contextCompression IS NULL)),
    CHECK (runPolicy = 'parallel' OR runKey IS NOT NULL)
);
CREATE INDEX build_on_status_id ON build (status, id);
CREATE INDEX build_on_leaseExpiresAt ON build (leaseExpiresAt) WHERE leaseOwner IS NOT NULL;
CREATE INDEX build_on_tenantId_id ON build (tenantId, id);
CREATE INDEX build_on_queueExpiresAt ON build (queueExpiresAt) WHERE status = 'queued';
CREATE INDEX build_on_runKey ON build (runKey, status) WHERE runKey IS NOT NULL;
CREATE INDEX build_on_finishedAt ON build (finishedAt) WHERE finishedAt IS NOT NULL;
-- Builds holding a slot of each builder: the claim counts them.
CREATE INDEX build_on_builder_active ON build (builder) WHERE status IN ('starting', 'running');
CREATE INDEX build_on_contextDigest ON build (contextDigest) WHERE contextDigest IS NOT NULL;

CREATE TABLE buildEvent (
    sequence bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenantId text NOT NULL,
    buildId text NOT NULL,
    status text NOT NULL,
    reason text,
    at double precision NOT NULL
);
CREATE INDEX buildEvent_on_tenantId_sequence ON buildEvent (tenantId, sequence);
CREATE INDEX buildEvent_on_at ON buildEvent (at);

-- Every new build and every status change is an event, and a NOTIFY on `buildgate_events` with "<sequence> <status>"
-- (delivered at commit, to every gateway LISTENing): followers of /v1/events wake, and a build queued anywhere is
-- claimed promptly. Events are numbered under a transaction lock, so they commit in sequence order: a reader that
-- has seen sequence n never finds an n-1 committed later.
CREATE FUNCTION build_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    assigned bigint;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_advisory_xact_lock(7094692702253940739);
        INSERT INTO buildEvent (tenantId, buildId, status, reason, at)
        VALUES (NEW.tenantId, NEW.id, NEW.status, NEW.reason, extract(epoch FROM clock_timestamp()))
        RETURNING sequence INTO assigned;
        PERFORM pg_notify('buildgate_events', assigned || ' ' || NEW.status);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER build_created_event AFTER INSERT ON build FOR EACH ROW EXECUTE FUNCTION build_event();
CREATE TRIGGER build_status_event AFTER UPDATE OF status ON build FOR EACH ROW EXECUTE FUNCTION build_event();
