-- Which profile (name@version) a create used.
ALTER TABLE audit_log ADD COLUMN profile TEXT;
