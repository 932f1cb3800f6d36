-- The audit trail: sign-ins, consents, revocations, registrations, operators' changes. No
-- foreign keys: an event outlives the user or client it names. AUTOINCREMENT never hands out
-- an id again after the oldest events are purged, so an id is a cursor for reading on.
CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
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
