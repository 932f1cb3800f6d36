CREATE TABLE clients (
    client_id     TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    -- Argon2id PHC string; NULL for a public client.
    secret_hash   TEXT,
    auth_method   TEXT NOT NULL,
    -- Space-separated lists: grant types and scopes have no spaces by grammar, and redirect
    -- URIs are refused at registration if they contain whitespace.
    grant_types   TEXT NOT NULL,
    scope         TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    skip_consent  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);

-- Access and refresh tokens, keyed by SHA-256 of the token: the clear token is never stored.
CREATE TABLE tokens (
    hash        BYTEA PRIMARY KEY NOT NULL,
    kind        SMALLINT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject     TEXT,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    family_id   TEXT NOT NULL
);

CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_client ON tokens (client_id);
