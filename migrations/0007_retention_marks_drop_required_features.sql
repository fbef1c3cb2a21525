-- Retention remembers what it already removed, so each pass looks only at what is left. Without these marks a
-- pass kept finding the same oldest logs (deleted long before) and never reached the rest, and every pass went
-- over every context ever released.
ALTER TABLE build ADD COLUMN logRemoved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE build ADD COLUMN contextRemoved INTEGER NOT NULL DEFAULT 0;
CREATE INDEX build_on_finishedAt ON build (finishedAt) WHERE finishedAt IS NOT NULL;

-- Which builder may take a build is the pool's choice (from the request itself); nothing reads this copy any more.
ALTER TABLE build DROP COLUMN requiredFeatures;
