-- Clients that registered themselves (RFC 7591), and the key (SHA-256) of the registration
-- access token that manages each (RFC 7592); NULL for clients an operator registered.
ALTER TABLE clients ADD COLUMN self_registered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN registration_token BYTEA;

-- Initial access tokens (RFC 7591 section 3), under their key: whoever holds one may register
-- clients until it expires.
CREATE TABLE initial_access_tokens (
    hash       BYTEA PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX initial_access_tokens_expiry ON initial_access_tokens (expires_at);
