-- Claims: one holder per (namespace, key) until a time, shared by every replica of the
-- store. Background jobs claim their run ("job", name) so exactly one replica does it;
-- single-use tokens claim their id so a replay on another replica is refused.
-- `until_epoch` is Unix seconds, so both backends compare it the same way.
CREATE TABLE claims (
    namespace   text   NOT NULL,
    key         text   NOT NULL,
    holder      text   NOT NULL,
    until_epoch bigint NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX claims_until ON claims (until_epoch);
