-- Tokens move from a WITHOUT ROWID table (clustered on the hash) to an ordinary rowid table
-- with a unique index on the hash.
--
-- In a WITHOUT ROWID table every secondary index ends with the primary key, here a random
-- hash: an index on (client_id, hash) or (subject, hash) puts each new token at a random
-- place, so one insert dirtied four random B-tree pages (table, client, subject, family),
-- each to be read first and written to the WAL after. With rowids, the table and the
-- client, subject and expiry indexes grow at their end; only the hash index (and the family
-- index, whose ids are random) take a random page. Lookups by hash pay one more, small,
-- B-tree descent.
CREATE TABLE tokens_by_row (
    hash        BLOB NOT NULL UNIQUE,
    kind        SMALLINT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject     TEXT,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    family_id   TEXT NOT NULL,
    rotated_at  BIGINT
);

INSERT INTO tokens_by_row
    (hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, family_id, rotated_at)
SELECT hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, family_id, rotated_at
FROM tokens ORDER BY issued_at;

DROP TABLE tokens;
ALTER TABLE tokens_by_row RENAME TO tokens;

CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_client ON tokens (client_id);
CREATE INDEX tokens_subject ON tokens (subject);
