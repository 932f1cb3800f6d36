-- People who log in. The id is the stable `sub` of their tokens.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    -- Argon2id PHC string.
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- A rotated refresh token stays (dead) until it expires, so that its reuse is recognised.
ALTER TABLE tokens ADD COLUMN rotated_at BIGINT;
CREATE INDEX tokens_subject ON tokens (subject);

-- Authorization codes by SHA-256; single use is `redeemed_at`, set atomically once.
CREATE TABLE authorization_codes (
    hash               BYTEA PRIMARY KEY NOT NULL,
    client_id          TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri       TEXT NOT NULL,
    redirect_uri_given BOOLEAN NOT NULL,
    scope              TEXT NOT NULL,
    code_challenge     TEXT,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    redeemed_at        BIGINT,
    family_id          TEXT NOT NULL
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- Browser sessions at the authorization server, by SHA-256 of the cookie value.
CREATE TABLE sessions (
    hash       BYTEA PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);

-- The scopes a user has approved for a client, so the consent page is shown once.
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
