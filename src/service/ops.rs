//! The operations on a user, as a closed set: each knows the scope a caller needs, the name
//! its audit records carry, the notification it sends and how it spreads over several targets.

use std::borrow::Cow;

use crate::auth::Operation;
use crate::notify::EventKind;

/// What an operation changes, which decides how targets on one server share the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Something in the target database (search_path, grants): run on every target.
    Database,
    /// The role itself (reset, lock, expire, …): run once per server, shared by the rest.
    Role,
    /// A create: the role once per server, then the database part on every target.
    Create,
}

/// A changing operation on a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOp {
    /// Create a user of the named profile.
    Create(String),
    /// Give it a new generated password.
    Reset,
    /// Set its search_path in one database.
    SearchPath,
    /// NOLOGIN, ending its sessions.
    Lock,
    /// LOGIN again.
    Unlock,
    /// End its password's validity.
    Expire,
    /// Extend its password's validity.
    Renew,
    /// Change its connection limit or alterable attributes.
    Alter,
    /// Drop it and what it owns.
    Drop,
    /// Grant it privileges or a membership.
    Grant,
    /// Revoke privileges or a membership.
    Revoke,
}

impl UserOp {
    /// The scope a caller needs (the README's access-control table).
    pub fn scope(&self) -> Operation {
        match self {
            UserOp::Create(_) => Operation::Create,
            UserOp::Reset => Operation::Reset,
            UserOp::Lock | UserOp::Unlock | UserOp::Expire | UserOp::Renew => Operation::Lock,
            UserOp::Drop => Operation::Drop,
            // What the role may do and meet in a database: CREATEDB and INHERIT are
            // privileges in all but name, and a search_path grants nothing but belongs to
            // the same per-database set-up as the grants.
            UserOp::Grant | UserOp::Revoke | UserOp::Alter | UserOp::SearchPath => Operation::Grant,
        }
    }

    /// The operation as audit records, exports and metrics name it: its event's name, and
    /// for a create the profile too (`create:devqa`, `reset`).
    pub fn audit_name(&self) -> Cow<'static, str> {
        match self {
            UserOp::Create(profile) => Cow::Owned(format!("{}:{profile}", self.event().as_str())),
            _ => Cow::Borrowed(self.event().as_str()),
        }
    }

    /// The notification its success sends (a failure sends [`EventKind::Failure`]).
    pub fn event(&self) -> EventKind {
        match self {
            UserOp::Create(_) => EventKind::Create,
            UserOp::Reset => EventKind::Reset,
            UserOp::SearchPath => EventKind::SearchPath,
            UserOp::Lock => EventKind::Lock,
            UserOp::Unlock => EventKind::Unlock,
            UserOp::Expire => EventKind::Expire,
            UserOp::Renew => EventKind::Renew,
            UserOp::Alter => EventKind::Alter,
            UserOp::Drop => EventKind::Drop,
            UserOp::Grant => EventKind::Grant,
            UserOp::Revoke => EventKind::Revoke,
        }
    }

    /// What it changes, which decides how targets on one server share the work.
    pub fn reach(&self) -> Reach {
        match self {
            UserOp::Create(_) => Reach::Create,
            UserOp::SearchPath | UserOp::Grant | UserOp::Revoke => Reach::Database,
            UserOp::Reset
            | UserOp::Lock
            | UserOp::Unlock
            | UserOp::Expire
            | UserOp::Renew
            | UserOp::Alter
            | UserOp::Drop => Reach::Role,
        }
    }

    /// The profile a create uses, which the caller's scopes must allow.
    pub fn profile(&self) -> Option<&str> {
        match self {
            UserOp::Create(profile) => Some(profile),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_scope_audit_name_event_and_reach() {
        use EventKind as E;
        use Operation as S;
        use Reach as R;
        let table = [
            (
                UserOp::Create("devqa".into()),
                S::Create,
                "create:devqa",
                E::Create,
                R::Create,
            ),
            (UserOp::Reset, S::Reset, "reset", E::Reset, R::Role),
            (
                UserOp::SearchPath,
                S::Grant,
                "search-path",
                E::SearchPath,
                R::Database,
            ),
            (UserOp::Lock, S::Lock, "lock", E::Lock, R::Role),
            (UserOp::Unlock, S::Lock, "unlock", E::Unlock, R::Role),
            (UserOp::Expire, S::Lock, "expire", E::Expire, R::Role),
            (UserOp::Renew, S::Lock, "renew", E::Renew, R::Role),
            (UserOp::Alter, S::Grant, "alter", E::Alter, R::Role),
            (UserOp::Drop, S::Drop, "drop", E::Drop, R::Role),
            (UserOp::Grant, S::Grant, "grant", E::Grant, R::Database),
            (UserOp::Revoke, S::Grant, "revoke", E::Revoke, R::Database),
        ];
        for (op, scope, audit, event, reach) in table {
            assert_eq!(
                (op.scope(), op.audit_name().as_ref(), op.event(), op.reach()),
                (scope, audit, event, reach),
                "{op:?}"
            );
        }
        assert_eq!(UserOp::Create("app".into()).profile(), Some("app"));
        assert_eq!(UserOp::Drop.profile(), None);
    }
}
