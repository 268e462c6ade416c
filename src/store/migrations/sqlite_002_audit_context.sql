-- What pg-user-api adds: TLS per registry entry, and who/where/why for every audit record.
ALTER TABLE db_registry ADD COLUMN sslmode TEXT NOT NULL DEFAULT 'prefer';

ALTER TABLE audit_log ADD COLUMN request_id  TEXT;
ALTER TABLE audit_log ADD COLUMN principal   TEXT;
ALTER TABLE audit_log ADD COLUMN client_addr TEXT;
ALTER TABLE audit_log ADD COLUMN detail      TEXT;
ALTER TABLE audit_log ADD COLUMN error       TEXT;
ALTER TABLE audit_log ADD COLUMN duration_ms INTEGER;

CREATE INDEX IF NOT EXISTS audit_log_performed_at ON audit_log (performed_at);
CREATE INDEX IF NOT EXISTS audit_log_request_id ON audit_log (request_id);
