-- Retention: old records may be pruned, but only together with a checkpoint that keeps the
-- rest of the chain verifiable. The marker row exists only inside a prune's transaction.
CREATE TABLE pgua_audit_pruning (marker INTEGER);

DROP TRIGGER audit_log_append_only_delete;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM pgua_audit_pruning)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL,
    through_id INTEGER NOT NULL,
    last_hash  TEXT    NOT NULL,
    pruned     INTEGER NOT NULL,
    signature  TEXT    NOT NULL
);
