-- A forge API token per trigger, for commit statuses (sealed like the other trigger secrets).
ALTER TABLE trigger ADD COLUMN sealedStatusToken BLOB;
