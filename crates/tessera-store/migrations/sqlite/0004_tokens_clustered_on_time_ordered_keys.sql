-- Tokens move back to a table clustered on their key (WITHOUT ROWID), now that a new token's
-- key begins with its millisecond of issue (see tessera-core's token.rs).
--
-- Migration 0003 left the clustered table because its key was a random hash: every insert
-- took a random page of the table and of every index (whose entries end with the key). Keys
-- that grow with time append instead, to the table and to each index, so the table itself
-- can be the key's B-tree: a lookup walks one B-tree, not an index and then the table.
-- Tokens issued before the time prefix keep their plain SHA-256 keys and are found as before.
-- Rows of the index of families and of subjects are only for tokens that have one.
CREATE TABLE tokens_by_key (
    hash        BLOB NOT NULL PRIMARY KEY,
    kind        SMALLINT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject     TEXT,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    family_id   TEXT,
    rotated_at  BIGINT
) WITHOUT ROWID;

INSERT INTO tokens_by_key
    (hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, family_id, rotated_at)
SELECT hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, family_id, rotated_at
FROM tokens ORDER BY hash;

DROP TABLE tokens;
ALTER TABLE tokens_by_key RENAME TO tokens;

-- Only the tokens of a person's grant have a family (client_credentials tokens have none:
-- nothing descends from them); `family_id = ?` implies `IS NOT NULL`, so the index serves.
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_client ON tokens (client_id);
-- client_credentials tokens have no subject: no entry for them (a query for `subject = ?`
-- implies `subject IS NOT NULL`, so SQLite still uses this index for it).
CREATE INDEX tokens_subject ON tokens (subject) WHERE subject IS NOT NULL;
