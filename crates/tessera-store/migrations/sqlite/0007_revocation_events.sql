-- Revocations of live access tokens, for the resource servers that cache them: each
-- revoked token's key (never the token) and audience, in the order of their commits. The
-- one writer commits them in that order; AUTOINCREMENT never hands out a number again, even
-- after the oldest events are purged.
CREATE TABLE revocation_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    token_key  BLOB NOT NULL,
    audience   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The last event purged: a reader that has seen less than it may have missed events.
CREATE TABLE revocation_event_horizon (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    purged_through BIGINT NOT NULL
);
INSERT INTO revocation_event_horizon (id, purged_through) VALUES (1, 0);
