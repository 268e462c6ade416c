-- The key of the fingerprints the audit log shows instead of what might be a secret (an
-- unknown user name, a malformed token): random, made once per store, never shown.
CREATE TABLE fingerprint_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key bytea   NOT NULL
);
