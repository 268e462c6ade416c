-- The original Flask service's tables, kept by name and column so its documented
-- sqlite3 one-liners still work. IF NOT EXISTS adopts an existing pg_registry.db.
CREATE TABLE IF NOT EXISTS db_registry (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    env        TEXT    NOT NULL,
    db_name    TEXT    NOT NULL,
    hostname   TEXT    NOT NULL,
    port       INTEGER NOT NULL DEFAULT 5432,
    active     INTEGER NOT NULL DEFAULT 1,
    notes      TEXT,
    created_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (env, db_name)
);

CREATE TABLE IF NOT EXISTS audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    env          TEXT,
    db_name      TEXT,
    pg_username  TEXT,
    operation    TEXT,
    status       TEXT,
    performed_at TEXT DEFAULT CURRENT_TIMESTAMP
);
