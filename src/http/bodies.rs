//! The answers of the user endpoints as types: the handlers in `super::users` build them,
//! and `super::openapi` documents them, from these same definitions (kept apart from the
//! handlers so the document never imports them back).

use serde::Serialize;
use utoipa::ToSchema;

use crate::plan::Statement;
use crate::service::grants::PrivilegeReport;
use crate::service::users::UserResult;
use crate::store::RegistryEntry;

/// Where a call ran: the v1 target keys (`port` as text, as the original).
#[derive(Serialize, ToSchema)]
pub struct TargetKeys {
    /// Target environment.
    pub(super) env: String,
    /// Target server.
    pub(super) hostname: String,
    /// Target database.
    pub(super) database: String,
    /// Target port, as text.
    pub(super) port: String,
}

impl From<&RegistryEntry> for TargetKeys {
    fn from(entry: &RegistryEntry) -> Self {
        Self {
            env: entry.env.clone(),
            hostname: entry.hostname.clone(),
            database: entry.db_name.clone(),
            port: entry.port.to_string(),
        }
    }
}

/// The v1 body of user-changing endpoints: exactly the original's keys; a dry run adds
/// `dry_run` and `sql`.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    /// The role.
    pub(super) username: String,
    /// The generated password, on create and reset only; shown in this response only.
    pub(super) password: Option<String>,
    /// `user created`, `user already exists`, `password reset`, `user not found`, …
    pub(super) status: String,
    #[serde(flatten)]
    pub(super) target: TargetKeys,
    /// Lock and drop: sessions ended (the v1 bodies never carry it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) sessions_terminated: Option<u64>,
    #[serde(flatten)]
    pub(super) plan: Planned,
}

/// What a dry run adds to a body: the statements that would run, passwords redacted.
#[derive(Default, Serialize, ToSchema)]
pub struct Planned {
    /// Present (true) on a dry run only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) dry_run: Option<bool>,
    /// The SQL that would run, in order, each with `sql` and `comment` (dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<Vec<Object>>)]
    pub(super) sql: Option<Vec<Statement>>,
}

impl Planned {
    pub(super) fn of(r: &UserResult) -> Self {
        Self {
            dry_run: r.plan.as_ref().map(|_| true),
            sql: r.plan.clone(),
        }
    }
}

/// The original's search-path answer: exactly these keys, no password (a dry run adds
/// `dry_run` and `sql`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // documents the exact key set
pub struct SearchPathBody {
    /// The role.
    pub(super) username: String,
    /// The schemas set, as a comma-separated list (`app,public`).
    pub(super) schema: String,
    /// `search_path set to …` or `user not found`.
    pub(super) status: String,
    /// Target server.
    pub(super) hostname: String,
    /// Target database.
    pub(super) database: String,
    /// Target port, as text.
    pub(super) port: String,
    /// Target environment.
    pub(super) env: String,
    #[serde(flatten)]
    pub(super) plan: Planned,
}

/// A call with several targets: one result per (env, database), whatever the status.
#[derive(Serialize, ToSchema)]
pub struct MultiBody {
    /// Each target's body (or `error`) with `env`, `database` and `http_status`.
    pub(super) results: Vec<serde_json::Value>,
    /// Targets that succeeded.
    pub(super) succeeded: usize,
    /// Targets that failed.
    pub(super) failed: usize,
}

/// What a user can do in the target database: attributes, profile, memberships, database
/// privileges, per schema usage and table counts, default privileges, settings.
#[derive(Serialize, ToSchema)]
pub struct PrivilegesBody<'a> {
    /// Whether the role exists.
    pub(super) found: bool,
    /// The role.
    pub(super) username: String,
    #[serde(flatten)]
    pub(super) target: TargetKeys,
    /// The report's sections, when the role exists.
    #[serde(flatten)]
    #[schema(ignore)]
    pub(super) report: Option<&'a PrivilegeReport>,
}

/// `find`'s answer on one target, as the original's.
#[derive(Serialize, ToSchema)]
pub struct FindBody {
    /// Whether the role exists.
    pub(super) found: bool,
    /// The folded name looked up.
    pub(super) username: String,
    /// `standard`, or `superuser` and `create database` joined by `", "` (only those two);
    /// absent when the role does not exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) attributes: Option<&'static str>,
    #[serde(flatten)]
    pub(super) target: TargetKeys,
}

/// One user in `all`'s answer.
#[derive(Serialize, ToSchema)]
pub struct UserEntry<'a> {
    /// The role.
    pub(super) username: &'a str,
    /// `superuser` and `create database` joined by `", "`; empty for neither.
    pub(super) attributes: &'static str,
}

/// `all`'s answer on one target: the roles that can log in, by name.
#[derive(Serialize, ToSchema)]
pub struct UsersBody<'a> {
    #[serde(flatten)]
    pub(super) target: TargetKeys,
    /// Each user and its attributes.
    pub(super) users: Vec<UserEntry<'a>>,
}
