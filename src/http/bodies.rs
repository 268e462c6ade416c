//! The v1 answers of find, all and search-path as types: the handlers in `super::users`
//! build them, and `super::openapi` documents them, from these same definitions.

use serde::Serialize;
use utoipa::ToSchema;

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

/// The original's search-path answer: exactly these keys, no password.
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
    pub(super) attributes: Option<String>,
    #[serde(flatten)]
    pub(super) target: TargetKeys,
}

/// One user in `all`'s answer.
#[derive(Serialize, ToSchema)]
pub struct UserEntry {
    /// The role.
    pub(super) username: String,
    /// `superuser` and `create database` joined by `", "`; empty for neither.
    pub(super) attributes: String,
}

/// `all`'s answer on one target: the roles that can log in, by name.
#[derive(Serialize, ToSchema)]
pub struct UsersBody {
    #[serde(flatten)]
    pub(super) target: TargetKeys,
    /// Each user and its attributes.
    pub(super) users: Vec<UserEntry>,
}
