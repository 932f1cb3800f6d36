-- Resource servers (RFC 8707), each under its identifier, with the scopes it defines and the
-- client it authenticates as; deleting that client deletes the resource.
CREATE TABLE resources (
    uri        TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL UNIQUE REFERENCES clients (client_id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The resources a token (and the grant a code starts) is for, separated by spaces; empty
-- for tokens issued before audiences, which only their own client may introspect.
ALTER TABLE tokens ADD COLUMN audience TEXT NOT NULL DEFAULT '';
ALTER TABLE authorization_codes ADD COLUMN audience TEXT NOT NULL DEFAULT '';
