-- client_credentials tokens no longer get a family: nothing descends from them (no refresh
-- token, RFC 6749 §4.4.3), so a family of one token bought nothing but an index entry per
-- token. Families stay for the tokens of a person's grant (codes, refresh rotation).
-- Existing tokens keep theirs. `family_id = $1` implies `IS NOT NULL`, so the partial index
-- serves family revocations. Building it reads the whole table once (seconds per million
-- tokens), during which token writes wait.
ALTER TABLE tokens ALTER COLUMN family_id DROP NOT NULL;
DROP INDEX tokens_family;
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id IS NOT NULL;
