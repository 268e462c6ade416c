//! Pure planning: operations in, the exact SQL statements out. No I/O here.
//!
//! Every identifier is quoted with [`sql::ident`], every value with [`sql::literal`]; the
//! only keywords are fixed strings from closed enums such as [`Profile`].

pub mod lifecycle;
pub mod naming;
pub mod password;
pub mod profile;
pub mod sql;

pub use naming::{NameError, NamePolicy, RoleName, SchemaName};
pub use password::{Password, Verifier};
pub use profile::Profile;

use serde::Serialize;
use sql::{ident, literal};

/// Advisory lock key (hashed in the server) that serialises catalog-changing grants per
/// database; concurrent GRANTs on one object otherwise fail with "tuple concurrently updated".
pub const GRANT_LOCK_KEY: &str = "pg-user-api:grants";

/// One statement of a plan. Its `sql` may hold a verifier; `shown` never does.
#[derive(Clone, Serialize)]
pub struct Statement {
    #[serde(skip)]
    sql: String,
    /// The statement with any secret replaced by `********`.
    #[serde(rename = "sql")]
    shown: String,
    /// Why the statement is there.
    pub comment: &'static str,
}

impl Statement {
    pub(crate) fn new(sql: String, comment: &'static str) -> Self {
        Self {
            shown: sql.clone(),
            sql,
            comment,
        }
    }

    fn secret(sql: String, shown: String, comment: &'static str) -> Self {
        Self {
            sql,
            shown,
            comment,
        }
    }

    /// The text to execute; never log it.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The text safe to show and log.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Debug for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// What a non-system schema of the target database looks like, for read-only grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaFacts {
    /// Schema name as stored.
    pub name: String,
    /// Roles whose future tables must be readable: the schema owner (the database owner
    /// where the schema belongs to `pg_database_owner`) and owners of existing tables.
    pub owners: Vec<String>,
}

/// Joins statements into one simple-protocol batch, so a plan costs one round trip.
pub fn batch(statements: &[Statement]) -> String {
    let mut out = String::new();
    for s in statements {
        out.push_str(s.sql());
        out.push_str(";\n");
    }
    out
}

fn grant_lock() -> Statement {
    Statement::new(
        format!(
            "SELECT pg_advisory_xact_lock(hashtext({}))",
            literal(GRANT_LOCK_KEY)
        ),
        "serialise catalog changes on this database",
    )
}

fn password_clause(verifier: &Verifier) -> (String, String) {
    (
        format!("PASSWORD {}", literal(verifier.expose())),
        "PASSWORD '********'".to_owned(),
    )
}

/// Creates a role of `profile` in database `db`.
pub fn create_user(
    profile: Profile,
    role: &RoleName,
    db: &str,
    verifier: &Verifier,
    schemas: &[SchemaFacts],
) -> Vec<Statement> {
    let r = ident(role.as_str());
    let d = ident(db);
    let head = format!(
        "CREATE ROLE {r} WITH {} CONNECTION LIMIT {}",
        profile.attributes(),
        profile.connection_limit()
    );
    let (pw, pw_shown) = password_clause(verifier);
    let mut plan = vec![
        Statement::secret(
            format!("{head} {pw}"),
            format!("{head} {pw_shown}"),
            "create the role with a locally computed SCRAM verifier",
        ),
        grant_lock(),
        Statement::new(
            format!("GRANT CONNECT ON DATABASE {d} TO {r}"),
            "allow connecting to the target database",
        ),
    ];
    if profile.sets_search_path() {
        plan.push(Statement::new(
            format!("ALTER ROLE {r} IN DATABASE {d} SET search_path TO public"),
            "search_path public in the target database",
        ));
    }
    if profile.read_only() {
        plan.extend(read_only_grants(&r, &d, schemas));
    }
    plan
}

fn read_only_grants(r: &str, d: &str, schemas: &[SchemaFacts]) -> Vec<Statement> {
    let mut plan = Vec::new();
    for schema in schemas {
        let s = ident(&schema.name);
        plan.push(Statement::new(
            format!("GRANT USAGE ON SCHEMA {s} TO {r}"),
            "read-only: see the schema",
        ));
        plan.push(Statement::new(
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}"),
            "read-only: read existing tables and views",
        ));
        plan.push(Statement::new(
            format!("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}"),
            "read-only: read existing sequences",
        ));
        for owner in &schema.owners {
            let o = ident(owner);
            plan.push(Statement::new(
                format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}"
                ),
                "read-only: read tables this owner creates later",
            ));
            plan.push(Statement::new(
                format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT ON SEQUENCES TO {r}"
                ),
                "read-only: read sequences this owner creates later",
            ));
        }
    }
    plan.push(Statement::new(
        format!("ALTER ROLE {r} IN DATABASE {d} SET default_transaction_read_only = on"),
        "read-only: every transaction in this database starts read-only",
    ));
    plan
}

/// Replaces a role's password; the old one stops working at once.
pub fn reset_password(role: &RoleName, verifier: &Verifier) -> Vec<Statement> {
    let head = format!("ALTER ROLE {} WITH", ident(role.as_str()));
    let (pw, pw_shown) = password_clause(verifier);
    vec![Statement::secret(
        format!("{head} {pw}"),
        format!("{head} {pw_shown}"),
        "replace the password with a locally computed SCRAM verifier",
    )]
}

/// Sets the role's search_path in one database.
pub fn set_search_path(role: &RoleName, db: &str, path: &[SchemaName]) -> Vec<Statement> {
    let list: Vec<String> = path.iter().map(|s| ident(s.as_str())).collect();
    vec![Statement::new(
        format!(
            "ALTER ROLE {} IN DATABASE {} SET search_path TO {}",
            ident(role.as_str()),
            ident(db),
            list.join(", ")
        ),
        "set search_path in the target database",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> RoleName {
        NamePolicy::default().role(name).unwrap()
    }

    #[test]
    fn create_app_user_plan_quotes_everything_and_redacts_the_verifier() {
        let v = Password::generate().scram_verifier();
        let plan = create_user(Profile::App, &role("web01_8080"), "my\"db", &v, &[]);
        let shown: Vec<&str> = plan.iter().map(Statement::shown).collect();
        assert_eq!(
            shown[0],
            "CREATE ROLE \"web01_8080\" WITH LOGIN CONNECTION LIMIT 200 PASSWORD '********'"
        );
        assert!(plan[0].sql().contains(v.expose()));
        assert!(shown.contains(&"GRANT CONNECT ON DATABASE \"my\"\"db\" TO \"web01_8080\""));
        assert!(shown.contains(
            &"ALTER ROLE \"web01_8080\" IN DATABASE \"my\"\"db\" SET search_path TO public"
        ));
        assert!(!format!("{plan:?}").contains("SCRAM"));
    }

    #[test]
    fn dba_gets_createdb_createrole_and_no_search_path() {
        let v = Password::generate().scram_verifier();
        let plan = create_user(Profile::Dba, &role("boss"), "d", &v, &[]);
        assert!(
            plan[0]
                .shown()
                .contains("LOGIN CREATEDB CREATEROLE CONNECTION LIMIT 20")
        );
        assert!(!plan.iter().any(|s| s.shown().contains("search_path")));
    }

    #[test]
    fn readonly_plan_grants_select_and_default_privileges_per_owner() {
        let v = Password::generate().scram_verifier();
        let schemas = [SchemaFacts {
            name: "sales".into(),
            owners: vec!["app_owner".into()],
        }];
        let plan = create_user(Profile::Readonly, &role("ro"), "d", &v, &schemas);
        let text = batch(&plan);
        assert!(text.contains("GRANT SELECT ON ALL TABLES IN SCHEMA \"sales\" TO \"ro\""));
        assert!(text.contains(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"app_owner\" IN SCHEMA \"sales\" GRANT SELECT ON TABLES TO \"ro\""
        ));
        assert!(text.contains("SET default_transaction_read_only = on"));
        assert!(!text.contains("INSERT") && !text.contains("UPDATE"));
    }

    #[test]
    fn search_path_plan_quotes_each_schema() {
        let policy = NamePolicy::default();
        let path = policy.search_path("$user,app").unwrap();
        let plan = set_search_path(&role("bob"), "d", &path);
        assert_eq!(
            plan[0].shown(),
            "ALTER ROLE \"bob\" IN DATABASE \"d\" SET search_path TO \"$user\", \"app\""
        );
    }
}
