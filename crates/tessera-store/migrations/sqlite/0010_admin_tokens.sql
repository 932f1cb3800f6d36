-- The admin API's bearer tokens: a public id, the token's key (never the token), and its life.
CREATE TABLE admin_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    token_key  BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
