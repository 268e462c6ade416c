//! Pure planning: operations in, the exact SQL statements out. No I/O here.
//!
//! Every identifier is quoted with [`sql::ident`], every value with [`sql::literal`]; the
//! only keywords are fixed strings from closed enums (attributes, privileges).

pub mod admin;
pub mod adopt;
pub mod grants;
pub mod groups;
pub mod lifecycle;
pub mod naming;
pub mod password;
pub mod profile;
pub mod sql;

pub use naming::{NameError, NamePolicy, RoleName, SchemaName};
pub use password::{Password, Verifier};
pub use profile::{Profile, Profiles};

use serde::Serialize;
use sql::{ident, literal};

/// Advisory lock key (hashed in the server) that serialises catalog-changing grants per
/// database; concurrent GRANTs on one object otherwise fail with "tuple concurrently updated".
pub const GRANT_LOCK_KEY: &str = "pg-user-api:grants";

/// How the comment pg-user-api puts on the roles it creates begins; the profile follows.
pub const PROFILE_COMMENT: &str = "created by pg-user-api, profile ";

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

/// Takes the per-database lock of catalog-changing grants ([`GRANT_LOCK_KEY`]).
pub fn grant_lock() -> Statement {
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

/// Everything about the target database that planning a create needs.
#[derive(Clone, Debug, Default)]
pub struct CreateFacts {
    /// Non-system schemas and their owners (read only when the profile has schema grants).
    pub schemas: Vec<SchemaFacts>,
    /// `VALID UNTIL`, from the profile's password lifetime.
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The target's `server_version_num`: how a group membership is spelled, and whether a
    /// NOINHERIT profile can get its privileges through a group at all.
    pub server_version_num: i32,
}

/// `ALTER ROLE … SET name TO value`: search_path as a list of identifiers (a quoted string
/// would become one odd schema name), anything else as a literal.
fn setting_value(name: &str, value: &str) -> String {
    if name == "search_path" {
        value
            .split(',')
            .map(|s| ident(&s.trim().to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        literal(value)
    }
}

/// Creates a role of `profile` in database `db`: the role with its attributes and a locally
/// computed verifier, memberships and role-wide settings, then [`database_part`].
pub fn create_user(
    profile: &Profile,
    role: &RoleName,
    db: &str,
    verifier: &Verifier,
    facts: &CreateFacts,
) -> Result<Vec<Statement>, String> {
    let r = ident(role.as_str());
    let mut head = format!("CREATE ROLE {r}");
    let words: Vec<&str> = profile.attributes.iter().map(|a| a.keyword()).collect();
    if !words.is_empty() {
        head.push_str(&format!(" WITH {}", words.join(" ")));
    }
    if let Some(limit) = profile.connection_limit {
        head.push_str(&format!(" CONNECTION LIMIT {limit}"));
    }
    if let Some(until) = facts.valid_until {
        let ts = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        head.push_str(&format!(" VALID UNTIL {}", literal(&ts)));
    }
    let (pw, pw_shown) = password_clause(verifier);
    let label = format!("{PROFILE_COMMENT}{}", profile.label());
    let mut plan = vec![
        Statement::secret(
            format!("{head} {pw}"),
            format!("{head} {pw_shown}"),
            "create the role with a locally computed SCRAM verifier",
        ),
        Statement::new(
            format!("COMMENT ON ROLE {r} IS {}", literal(&label)),
            "record which profile version created the role",
        ),
    ];
    for group in &profile.member_of {
        plan.push(Statement::new(
            format!("GRANT {} TO {r}", ident(group.as_str())),
            "membership from the profile",
        ));
    }
    for (name, value) in &profile.role_settings {
        plan.push(Statement::new(
            format!(
                "ALTER ROLE {r} SET {name} TO {}",
                setting_value(name, value)
            ),
            "setting in every database",
        ));
    }
    plan.extend(database_part(profile, role, db, facts)?);
    Ok(plan)
}

/// What a profile gives a role in one database: membership in the database's group for
/// the profile's privilege set ([`groups::Group`]: CONNECT and the profile's grants) and
/// the profile's per-database settings. Run alone where the role already exists on the same
/// server (roles are cluster-wide; a second registry entry still needs its privileges). The
/// group itself is created or synced beforehand, in its own transaction.
///
/// A NOINHERIT profile on PostgreSQL 15 would gain nothing from a membership (`WITH INHERIT
/// TRUE` needs 16), so there the role keeps per-user grants, under [`grant_lock`].
pub fn database_part(
    profile: &Profile,
    role: &RoleName,
    db: &str,
    facts: &CreateFacts,
) -> Result<Vec<Statement>, String> {
    let (r, d) = (ident(role.as_str()), ident(db));
    let mut plan = match groups::Group::of(profile, db, facts.server_version_num) {
        Some(group) => vec![group.membership(role, facts.server_version_num)],
        None => per_user_grants(profile, role, db, facts)?,
    };
    for (name, value) in &profile.database_settings {
        plan.push(Statement::new(
            format!(
                "ALTER ROLE {r} IN DATABASE {d} SET {name} TO {}",
                setting_value(name, value)
            ),
            "setting in the target database",
        ));
    }
    Ok(plan)
}

/// CONNECT and the profile's grants straight to the role: only for NOINHERIT profiles on
/// PostgreSQL 15, where a group's privileges would not reach them.
fn per_user_grants(
    profile: &Profile,
    role: &RoleName,
    db: &str,
    facts: &CreateFacts,
) -> Result<Vec<Statement>, String> {
    let mut plan = vec![
        grant_lock(),
        Statement::new(
            format!(
                "GRANT CONNECT ON DATABASE {} TO {}",
                ident(db),
                ident(role.as_str())
            ),
            "allow connecting (per user: a NOINHERIT role gains nothing from a group before PostgreSQL 16)",
        ),
    ];
    for grant in &profile.grants {
        plan.extend(grant.statements(role, db, &facts.schemas, false)?);
    }
    Ok(plan)
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

    fn builtin(name: &str) -> std::sync::Arc<Profile> {
        Profiles::load(&Default::default(), &NamePolicy::default(), &[])
            .unwrap()
            .get(name)
            .unwrap()
    }

    fn plan(
        profile: &str,
        name: &str,
        db: &str,
        facts: &CreateFacts,
    ) -> (Vec<Statement>, Verifier) {
        let v = Password::generate().scram_verifier();
        (
            create_user(&builtin(profile), &role(name), db, &v, facts).unwrap(),
            v,
        )
    }

    #[test]
    fn create_app_user_plan_quotes_everything_and_redacts_the_verifier() {
        let (plan, v) = plan("app", "web01_8080", "my\"db", &CreateFacts::default());
        let shown: Vec<&str> = plan.iter().map(Statement::shown).collect();
        assert_eq!(
            shown[0],
            "CREATE ROLE \"web01_8080\" WITH LOGIN CONNECTION LIMIT 200 PASSWORD '********'"
        );
        assert!(plan[0].sql().contains(v.expose()));
        // CONNECT comes through the database's group: no entry per user in datacl.
        let group = groups::Group::for_profile(&builtin("app"), "my\"db");
        let joins = format!("GRANT {} TO \"web01_8080\"", ident(group.name().as_str()));
        assert!(shown.contains(&joins.as_str()), "{shown:?}");
        assert!(!shown.iter().any(|s| s.starts_with("GRANT CONNECT")));
        assert!(shown.contains(
            &"ALTER ROLE \"web01_8080\" IN DATABASE \"my\"\"db\" SET search_path TO \"public\""
        ));
        assert!(shown[1].starts_with(
            "COMMENT ON ROLE \"web01_8080\" IS 'created by pg-user-api, profile app@"
        ));
        assert!(!format!("{plan:?}").contains("SCRAM"));
    }

    #[test]
    fn dba_gets_createdb_createrole_and_no_search_path() {
        let (plan, _) = plan("dba", "boss", "d", &CreateFacts::default());
        assert!(
            plan[0]
                .shown()
                .contains("LOGIN CREATEDB CREATEROLE CONNECTION LIMIT 20")
        );
        assert!(!plan.iter().any(|s| s.shown().contains("search_path")));
    }

    fn sales_facts(server_version_num: i32) -> CreateFacts {
        CreateFacts {
            schemas: vec![SchemaFacts {
                name: "sales".into(),
                owners: vec!["app_owner".into()],
            }],
            valid_until: None,
            server_version_num,
        }
    }

    #[test]
    fn readonly_users_join_the_group_and_keep_their_own_settings() {
        let (plan, _) = plan("readonly", "ro", "d", &sales_facts(160_000));
        let group = groups::Group::for_profile(&builtin("readonly"), "d");
        let text = batch(&plan);
        assert!(text.contains(&format!(
            "GRANT {} TO \"ro\" WITH INHERIT TRUE",
            ident(group.name().as_str())
        )));
        assert!(text.contains(
            "ALTER ROLE \"ro\" IN DATABASE \"d\" SET default_transaction_read_only TO 'on'"
        ));
        assert!(!text.contains("GRANT SELECT") && !text.contains("DEFAULT PRIVILEGES"));
        assert!(
            !text.contains(grant_lock().sql()),
            "memberships need no grant lock"
        );
    }

    /// A NOINHERIT profile on PostgreSQL 15 falls back to the per-user grants.
    #[test]
    fn readonly_plan_grants_select_and_default_privileges_per_owner() {
        let mut profile = (*builtin("readonly")).clone();
        profile.attributes.push(profile::Attribute::Noinherit);
        let v = Password::generate().scram_verifier();
        let plan = create_user(&profile, &role("ro"), "d", &v, &sales_facts(150_000)).unwrap();
        let text = batch(&plan);
        assert!(text.contains("GRANT CONNECT ON DATABASE \"d\" TO \"ro\""));
        assert!(text.contains("GRANT USAGE ON SCHEMA \"sales\" TO \"ro\""));
        assert!(text.contains("GRANT SELECT ON ALL TABLES IN SCHEMA \"sales\" TO \"ro\""));
        assert!(text.contains(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"app_owner\" IN SCHEMA \"sales\" GRANT SELECT ON TABLES TO \"ro\""
        ));
        assert!(text.contains("SET default_transaction_read_only TO 'on'"));
        assert!(!text.contains("INSERT") && !text.contains("UPDATE"));
    }

    #[test]
    fn password_lifetime_becomes_valid_until() {
        let until = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let facts = CreateFacts {
            schemas: vec![],
            valid_until: Some(until),
            server_version_num: 170_000,
        };
        let (plan, _) = plan("devqa", "bob", "d", &facts);
        assert!(
            plan[0]
                .shown()
                .contains("VALID UNTIL '2030-01-01T00:00:00Z' PASSWORD")
        );
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
