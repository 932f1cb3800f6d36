-- The audit trail: sign-ins, consents, revocations, registrations, operators' changes. No
-- foreign keys: an event outlives the user or client it names. Ids grow in the order events
-- are appended and are never reused, so an id is a cursor for reading on.
CREATE TABLE audit_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    username  TEXT,
    client_id TEXT,
    address   TEXT,
    -- A JSON object; never a secret.
    detail    TEXT NOT NULL
);

-- The janitor purges by time; readers filter by time, user or client, in id order.
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_username ON audit_events (username, id);
CREATE INDEX audit_events_client ON audit_events (client_id, id);
