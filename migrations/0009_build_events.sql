-- Every change of a build's status, in one durable sequence: GET /v1/events serves a tenant's changes from it and
-- resumes from a client's Last-Event-ID (the sequence). Written by triggers, in the same transaction as the change
-- itself, so no write path of the store can forget one and a rolled-back change leaves none. A later migration that
-- rebuilds the build table (as 0006 and 0008 did) drops these triggers with it and must create them again.
CREATE TABLE buildEvent (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    tenantId TEXT NOT NULL,
    buildId TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at REAL NOT NULL
);
CREATE INDEX buildEvent_on_tenantId_sequence ON buildEvent (tenantId, sequence);
CREATE INDEX buildEvent_on_at ON buildEvent (at);

CREATE TRIGGER build_created_event AFTER INSERT ON build
BEGIN
    INSERT INTO buildEvent (tenantId, buildId, status, reason, at)
    VALUES (NEW.tenantId, NEW.id, NEW.status, NEW.reason, (julianday('now') - 2440587.5) * 86400.0);
END;

CREATE TRIGGER build_status_event AFTER UPDATE OF status ON build WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO buildEvent (tenantId, buildId, status, reason, at)
    VALUES (NEW.tenantId, NEW.id, NEW.status, NEW.reason, (julianday('now') - 2440587.5) * 86400.0);
END;
