-- client_credentials tokens have no subject (RFC 6749 §4.4: the client acts for itself), yet
-- each one took an entry (NULL) in this index: one index insertion in four per issued token,
-- for rows that no query looks up by subject. `subject = $1` implies `IS NOT NULL`, so the
-- partial index still serves the revocations of a user's tokens. SQLite's index has been
-- partial since its migration 0004. Building it reads the whole table once, during which
-- token writes wait.
DROP INDEX tokens_subject;
CREATE INDEX tokens_subject ON tokens (subject) WHERE subject IS NOT NULL;
