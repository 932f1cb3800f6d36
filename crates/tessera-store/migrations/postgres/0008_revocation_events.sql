-- Revocations of live access tokens, for the resource servers that cache them: each
-- revoked token's key (never the token) and audience, in the order of their commits.
CREATE TABLE revocation_events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_key  BYTEA NOT NULL,
    audience   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The last event purged: a reader that has seen less than it may have missed events.
CREATE TABLE revocation_event_horizon (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    purged_through BIGINT NOT NULL
);
INSERT INTO revocation_event_horizon (id, purged_through) VALUES (1, 0);

-- Appends an event per key (its audience at the same index) and notifies every node at commit.
-- A sequence numbers transactions in the order they ask, not the order they commit, so a reader
-- that has seen 7 could miss a 6 committed later. The lock, released only by the commit, makes
-- appends take turns, each numbered after every earlier one is visible; callers append last.
CREATE FUNCTION append_revocation_events(keys BYTEA[], audiences TEXT[], at BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    latest BIGINT;
BEGIN
    IF coalesce(cardinality(keys), 0) = 0 THEN
        RETURN NULL;
    END IF;
    -- The key is arbitrary, fixed: "tessera revocation events".
    PERFORM pg_advisory_xact_lock(7305316256917602304);
    WITH appended AS (
        INSERT INTO revocation_events (token_key, audience, created_at)
        SELECT k, a, at FROM unnest(keys, audiences) AS e (k, a)
        RETURNING seq
    )
    SELECT max(seq) INTO latest FROM appended;
    PERFORM pg_notify('tessera_revocations', latest::text);
    RETURN latest;
END
$$;
