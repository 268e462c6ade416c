//! Statements for a role's life after creation: lock, unlock, expiry, attributes, drop.

use chrono::{DateTime, SecondsFormat, Utc};

use super::sql::{ident, literal};
use super::{RoleName, Statement};

/// Attributes `alter` may switch; anything else (SUPERUSER, REPLICATION, BYPASSRLS,
/// CREATEROLE, …) is refused before any SQL is built.
pub const ALTERABLE_ATTRIBUTES: &[&str] = &["CREATEDB", "NOCREATEDB", "INHERIT", "NOINHERIT"];

/// When a role's password stops working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidUntil {
    /// At this instant.
    At(DateTime<Utc>),
    /// Never.
    Infinity,
}

impl ValidUntil {
    /// The value as PostgreSQL reads it.
    pub fn sql_value(self) -> String {
        match self {
            ValidUntil::At(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
            ValidUntil::Infinity => "infinity".into(),
        }
    }
}

/// `NOLOGIN`: new sessions are refused; open ones are ended by [`terminate_sessions`].
pub fn lock(role: &RoleName) -> Vec<Statement> {
    vec![Statement::new(
        format!("ALTER ROLE {} WITH NOLOGIN", ident(role.as_str())),
        "refuse new sessions",
    )]
}

/// `LOGIN` again.
pub fn unlock(role: &RoleName) -> Vec<Statement> {
    vec![Statement::new(
        format!("ALTER ROLE {} WITH LOGIN", ident(role.as_str())),
        "allow sessions again",
    )]
}

/// Sets when the password stops working.
pub fn valid_until(role: &RoleName, until: ValidUntil) -> Vec<Statement> {
    vec![Statement::new(
        format!(
            "ALTER ROLE {} VALID UNTIL {}",
            ident(role.as_str()),
            literal(&until.sql_value())
        ),
        "password validity",
    )]
}

/// Changes the connection limit and attributes from [`ALTERABLE_ATTRIBUTES`].
pub fn alter(
    role: &RoleName,
    connection_limit: Option<i32>,
    attributes: &[&'static str],
) -> Vec<Statement> {
    let mut clause = attributes.join(" ");
    if let Some(limit) = connection_limit {
        if !clause.is_empty() {
            clause.push(' ');
        }
        clause.push_str(&format!("CONNECTION LIMIT {limit}"));
    }
    vec![Statement::new(
        format!("ALTER ROLE {} WITH {clause}", ident(role.as_str())),
        "change attributes",
    )]
}

/// Ends every session of the role on the server; returns one row per session.
pub fn terminate_sessions(role: &RoleName) -> Statement {
    Statement::new(
        format!(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
             WHERE usename = {} AND pid <> pg_catalog.pg_backend_pid()",
            literal(role.as_str())
        ),
        "end the role's open sessions",
    )
}

/// In one database: hand the role's objects to `successor`, then drop its privileges.
pub fn reassign_and_drop_owned(role: &RoleName, successor: &str) -> Vec<Statement> {
    let r = ident(role.as_str());
    vec![
        Statement::new(
            format!("REASSIGN OWNED BY {r} TO {}", ident(successor)),
            "hand the role's objects in this database to the successor",
        ),
        Statement::new(
            format!("DROP OWNED BY {r}"),
            "remove the role's privileges and default privileges in this database",
        ),
    ]
}

/// The first steps of a drop: no new sessions, and membership in the role for the admin
/// role (`admin_is_member`: it has it already), which REASSIGN OWNED and DROP OWNED need.
pub fn take_apart(role: &RoleName, admin_is_member: bool) -> Vec<Statement> {
    let r = ident(role.as_str());
    let mut plan = vec![Statement::new(
        format!("ALTER ROLE {r} WITH NOLOGIN"),
        "refuse new sessions while the role is taken apart",
    )];
    if !admin_is_member {
        plan.push(Statement::new(
            format!("GRANT {r} TO CURRENT_USER"),
            "REASSIGN OWNED and DROP OWNED need membership in the role",
        ));
    }
    plan
}

/// psql's `\connect`, as a dry run shows that the next statements run in `database`.
pub fn connect(database: &str) -> Statement {
    Statement::new(
        format!("\\connect {}", ident(database)),
        "the next statements run in this database",
    )
}

/// Drops the role itself, once nothing depends on it.
pub fn drop_role(role: &RoleName) -> Vec<Statement> {
    vec![Statement::new(
        format!("DROP ROLE {}", ident(role.as_str())),
        "drop the role",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NamePolicy;

    fn role(name: &str) -> RoleName {
        NamePolicy::default().role(name).unwrap()
    }

    #[test]
    fn expiry_is_a_quoted_utc_literal() {
        let t = DateTime::parse_from_rfc3339("2027-01-02T03:04:05+02:00")
            .unwrap()
            .to_utc();
        let plan = valid_until(&role("bob"), ValidUntil::At(t));
        assert_eq!(
            plan[0].shown(),
            "ALTER ROLE \"bob\" VALID UNTIL '2027-01-02T01:04:05Z'"
        );
        let plan = valid_until(&role("bob"), ValidUntil::Infinity);
        assert!(plan[0].shown().ends_with("VALID UNTIL 'infinity'"));
    }

    #[test]
    fn alter_combines_attributes_and_limit() {
        let plan = alter(&role("bob"), Some(5), &["NOCREATEDB", "INHERIT"]);
        assert_eq!(
            plan[0].shown(),
            "ALTER ROLE \"bob\" WITH NOCREATEDB INHERIT CONNECTION LIMIT 5"
        );
    }

    #[test]
    fn terminate_quotes_the_role_as_a_literal() {
        let s = terminate_sessions(&role("o.k-name"));
        assert!(s.shown().contains("usename = 'o.k-name'"));
    }

    #[test]
    fn drop_reassigns_then_drops_owned_then_the_role() {
        let mut plan = reassign_and_drop_owned(&role("bob"), "app_owner");
        plan.extend(drop_role(&role("bob")));
        let shown: Vec<&str> = plan.iter().map(Statement::shown).collect();
        assert_eq!(
            shown,
            [
                "REASSIGN OWNED BY \"bob\" TO \"app_owner\"",
                "DROP OWNED BY \"bob\"",
                "DROP ROLE \"bob\""
            ]
        );
    }
}
