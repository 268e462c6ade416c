-- Tamper evidence: each record's hash covers its predecessor's hash and its own fields.
ALTER TABLE audit_log ADD COLUMN prev_hash text, ADD COLUMN hash text;

-- Append-only: the service never changes or removes a record.
CREATE FUNCTION pgua_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION pgua_audit_log_append_only();
