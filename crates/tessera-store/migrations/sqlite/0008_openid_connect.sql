-- OpenID Connect: a person's profile claims, the authorization request's nonce and the
-- sign-in time a code carries into its ID token, and the ID-token signing keys.
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE authorization_codes ADD COLUMN nonce TEXT;
ALTER TABLE authorization_codes ADD COLUMN auth_time BIGINT;

-- The private key is only ever stored encrypted under the operator's key-encryption key.
CREATE TABLE signing_keys (
    kid                   TEXT PRIMARY KEY NOT NULL,
    alg                   TEXT NOT NULL,
    public_jwk            TEXT NOT NULL,
    encrypted_private_key BLOB NOT NULL,
    created_at            BIGINT NOT NULL,
    retired_at            BIGINT
);

-- A client's OpenID Connect settings: the ID-token algorithm it asked for, and where it may
-- send a person after signing out (space-separated, each matched exactly).
CREATE TABLE client_oidc (
    client_id                    TEXT PRIMARY KEY NOT NULL
                                 REFERENCES clients (client_id) ON DELETE CASCADE,
    id_token_signed_response_alg TEXT,
    post_logout_redirect_uris    TEXT NOT NULL
);
