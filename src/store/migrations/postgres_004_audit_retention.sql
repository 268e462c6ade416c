-- Retention: old records may be pruned, but only together with a checkpoint that keeps the
-- rest of the chain verifiable; a prune sets pgua.audit_pruning for its transaction.
CREATE OR REPLACE FUNCTION pgua_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('pgua.audit_pruning', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TABLE audit_checkpoints (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL,
    through_id bigint      NOT NULL,
    last_hash  text        NOT NULL,
    pruned     bigint      NOT NULL,
    signature  text        NOT NULL
);
