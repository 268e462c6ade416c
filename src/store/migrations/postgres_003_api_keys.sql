-- API keys: only a SHA-256 of the secret is kept; the secret is shown once at creation.
CREATE TABLE api_keys (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    owner      text        NOT NULL,
    prefix     text        NOT NULL,
    hash       text        NOT NULL UNIQUE,
    scopes     text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
