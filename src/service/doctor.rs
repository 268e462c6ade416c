//! The doctor (`pg-user-api doctor`, `GET /api/v1/registry/check`): per registry entry,
//! whether the target answers and why not, and what the admin role may do there, per
//! profile and for lock and drop; and the refusal the operations give when it may not.

use futures_util::future::join_all;
use serde::Serialize;

use super::App;
use crate::error::{Error, Result};
use crate::plan::admin::{self, AdminFacts, Missing};
use crate::store::{RegistryEntry, SslMode};
use crate::target::admin::{Memberships, Unreachable, UnreachableKind, admin_facts, tls_in_use};

/// The doctor's findings for the entries checked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// One check per registry entry.
    pub entries: Vec<EntryCheck>,
    /// Counts over them.
    pub summary: Summary,
}

/// Counts of a [`CheckReport`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Entries in the report.
    pub entries: usize,
    /// Active entries without a problem.
    pub ok: usize,
    /// Active entries with at least one problem.
    pub problems: usize,
    /// Inactive entries, not checked (nothing runs against them).
    pub inactive: usize,
}

/// What was found for one registry entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryCheck {
    /// The entry.
    pub entry: RegistryEntry,
    /// Active and without a problem (inactive entries are not checked and count as ok).
    pub ok: bool,
    /// Whether the admin role could connect; none for an inactive entry.
    pub reachable: Option<bool>,
    /// Why it could not.
    pub unreachable: Option<Unreachable>,
    /// The server's version.
    pub server_version: Option<String>,
    /// Encryption of the admin session.
    pub tls: Option<TlsCheck>,
    /// The admin role's attributes and memberships.
    pub admin: Option<AdminFacts>,
    /// Per profile (`create <profile>`), then `lock` and `drop`: possible here or not.
    pub operations: Vec<OperationCheck>,
    /// Users holding per-user grants that a managed group now covers (`adopt` moves them);
    /// none when the entry was not reached. Informational: it does not make `ok` false.
    pub adoption: Option<super::adopt::AdoptionCheck>,
    /// Why the adoption survey could not be made (e.g. the admin role cannot read an owner's
    /// objects).
    pub adoption_error: Option<String>,
}

/// TLS of the admin session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TlsCheck {
    /// The session is encrypted.
    pub in_use: bool,
    /// The server's certificate and host name were verified (`sslmode = verify-full`).
    pub certificate_checked: bool,
}

/// Whether one operation can be done on the entry by the admin role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperationCheck {
    /// `create <profile>`, `lock` or `drop`.
    pub operation: String,
    /// Nothing is missing.
    pub ok: bool,
    /// What is missing, each with the statement that fixes it.
    pub missing: Vec<Missing>,
}

impl CheckReport {
    /// Whether any active entry has a problem.
    pub fn has_problems(&self) -> bool {
        self.summary.problems > 0
    }
}

/// The registry entries a check covers: all, or those of `env` and/or `database`; a 404
/// when a filter matches none.
pub async fn select(
    app: &App,
    env: Option<&str>,
    database: Option<&str>,
) -> Result<Vec<RegistryEntry>> {
    let mut entries = app
        .store
        .registry_list()
        .await
        .map_err(Error::StoreUnavailable)?;
    entries.retain(|e| env.is_none_or(|v| e.env == v) && database.is_none_or(|d| e.db_name == d));
    if entries.is_empty() && (env.is_some() || database.is_some()) {
        return Err(Error::NoRegistryEntry {
            env: env.unwrap_or("*").to_owned(),
            database: database.unwrap_or("*").to_owned(),
        });
    }
    Ok(entries)
}

/// Checks every entry at once; each is bounded by the connect timeout to connect and by
/// the statement timeout for its catalog reads.
pub async fn check(app: &App, entries: Vec<RegistryEntry>) -> CheckReport {
    let entries = join_all(entries.into_iter().map(|e| check_entry(app, e))).await;
    let active = entries.iter().filter(|e| e.entry.active);
    let problems = active.clone().filter(|e| !e.ok).count();
    let summary = Summary {
        entries: entries.len(),
        ok: active.count() - problems,
        problems,
        inactive: entries.iter().filter(|e| !e.entry.active).count(),
    };
    CheckReport { entries, summary }
}

async fn check_entry(app: &App, entry: RegistryEntry) -> EntryCheck {
    let mut out = EntryCheck {
        ok: true,
        reachable: None,
        unreachable: None,
        server_version: None,
        tls: None,
        admin: None,
        operations: Vec::new(),
        adoption: None,
        adoption_error: None,
        entry,
    };
    if !out.entry.active {
        return out;
    }
    out.ok = false;
    out.reachable = Some(false);
    let client = match app.targets.probe(&out.entry).await {
        Ok(c) => c,
        Err(why) => {
            out.unreachable = Some(why);
            return out;
        }
    };
    let groups: Vec<&str> = app
        .profiles
        .iter()
        .flat_map(|p| p.member_of.iter().map(|r| r.as_str()))
        .collect();
    let read = async {
        let tls = tls_in_use(&client).await?;
        let facts = admin_facts(&client, Memberships::GroupsAnd(&groups)).await?;
        Ok::<_, tokio_postgres::Error>((tls, facts))
    };
    let (tls, facts) = match read.await {
        Ok(found) => found,
        Err(e) => {
            out.unreachable = Some(Unreachable {
                kind: UnreachableKind::Other,
                message: Error::from(e).to_string(),
            });
            return out;
        }
    };
    out.reachable = Some(true);
    let mut operations: Vec<(String, Vec<Missing>)> = app
        .profiles
        .iter()
        .filter(|p| app.policy.check_profile_env(p, &out.entry.env).is_ok())
        .map(|p| (format!("create {}", p.name), admin::for_create(p, &facts)))
        .collect();
    operations.push(("lock".into(), admin::for_lock(&facts)));
    operations.push(("drop".into(), admin::for_drop(&facts)));
    out.operations = operations
        .into_iter()
        .map(|(operation, missing)| OperationCheck {
            operation,
            ok: missing.is_empty(),
            missing,
        })
        .collect();
    out.ok = out.operations.iter().all(|o| o.ok);
    out.server_version = Some(facts.server_version.clone());
    out.tls = Some(TlsCheck {
        in_use: tls,
        certificate_checked: tls && out.entry.sslmode == SslMode::VerifyFull,
    });
    out.admin = Some(facts);
    match super::adopt::check(app, &out.entry).await {
        Ok(a) => out.adoption = Some(a),
        Err(e) => out.adoption_error = Some(e.to_string()),
    }
    out
}
