-- The SQLite store's tables under the same names and columns, with PostgreSQL types.
-- Ids are identities ALWAYS, so only `store migrate` (OVERRIDING SYSTEM VALUE) sets them.
CREATE TABLE db_registry (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    env        text        NOT NULL,
    db_name    text        NOT NULL,
    hostname   text        NOT NULL,
    port       integer     NOT NULL DEFAULT 5432 CHECK (port BETWEEN 1 AND 65535),
    active     boolean     NOT NULL DEFAULT true,
    notes      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sslmode    text        NOT NULL DEFAULT 'prefer'
               CHECK (sslmode IN ('disable', 'prefer', 'require', 'verify-full')),
    UNIQUE (env, db_name)
);

-- Text columns stay nullable, as in SQLite (the original's rows may hold NULLs); readers
-- treat NULL as empty text, as the SQLite backend does.
CREATE TABLE audit_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    env          text,
    db_name      text,
    pg_username  text,
    operation    text,
    status       text,
    performed_at timestamptz NOT NULL DEFAULT now(),
    request_id   text,
    principal    text,
    client_addr  text,
    detail       text,
    error        text,
    duration_ms  bigint,
    profile      text
);

-- audit_latest reads ORDER BY performed_at DESC, id DESC.
CREATE INDEX audit_log_performed_at ON audit_log (performed_at, id);
CREATE INDEX audit_log_request_id ON audit_log (request_id);
