-- Console sessions after single sign-on, shared by every replica of the store, so a
-- sign-out on one ends the session on all. The id is known only by its SHA-256 (hex), the
-- CSRF token likewise; `scopes` is the JSON of the scopes the person's group gave at
-- sign-in. Times are Unix seconds: the session ends at `expires_epoch` (absolute) or when
-- `last_seen_epoch` is older than the idle timeout.
CREATE TABLE sessions (
    id_hash         TEXT    PRIMARY KEY,
    principal       TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    csrf_hash       TEXT    NOT NULL,
    created_epoch   INTEGER NOT NULL,
    last_seen_epoch INTEGER NOT NULL,
    expires_epoch   INTEGER NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_epoch);
CREATE INDEX sessions_last_seen ON sessions (last_seen_epoch);
