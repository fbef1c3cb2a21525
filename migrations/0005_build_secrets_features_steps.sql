-- Build secrets per tenant, AES-GCM sealed with the gateway's key and bound to tenant/name.
CREATE TABLE buildSecret (
    tenantId TEXT NOT NULL REFERENCES tenant(id),
    name TEXT NOT NULL,
    sealedValue BLOB NOT NULL,
    updatedAt REAL NOT NULL,
    PRIMARY KEY (tenantId, name)
);

-- The features a build needs from its builder (BuildFeatures bits: secrets, cache import, cache export); a
-- builder claims only builds whose bits it all offers.
ALTER TABLE build ADD COLUMN requiredFeatures INTEGER NOT NULL DEFAULT 0 CHECK (requiredFeatures >= 0);

-- Per-step timings as the engine reported them: [{"name","startedAt","completedAt","cached","error"}].
ALTER TABLE build ADD COLUMN steps TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(steps));
