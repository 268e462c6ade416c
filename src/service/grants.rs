//! Grant and revoke privileges or memberships for an existing role, and report what a role
//! can do in a database.

use serde::Serialize;

use super::audit::AuditScope;
use super::ops::UserOp;
use super::params::{self, Lookup, On};
use super::refuse_missing;
use super::users::{
    RoleInfo, UserResult, existing_role, lock_existing, role_info, schema_facts, status, status_of,
};
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::plan::admin::PG16;
use crate::plan::grants::{Grant, GrantConfig, GrantOn, MembershipOptions, Privilege};
use crate::plan::{self, PROFILE_COMMENT, RoleName, Statement};
use crate::store::RegistryEntry;
use crate::target::admin::{Memberships, admin_facts};
use crate::target::catalog::{self, Privileges, Protection, RoleState};

/// Predefined roles callers may join; the others (`pg_execute_server_program`,
/// `pg_write_server_files`, `pg_signal_backend`, …) reach beyond the database and are refused.
pub const GRANTABLE_PREDEFINED_ROLES: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
];

/// What a grant or revoke call asks for.
enum Request {
    /// Privileges on objects.
    Objects(Grant),
    /// Membership in a role.
    Membership {
        group: RoleName,
        admin: bool,
        inherit: Option<bool>,
        set: Option<bool>,
    },
}

fn parse_request(app: &App, input: &params::Grant) -> Result<Request> {
    let on = match params::GrantOn::parse(&input.on)? {
        params::GrantOn::Objects(on) => on,
        params::GrantOn::Role(_) => {
            let role = input
                .role
                .as_deref()
                .ok_or_else(|| Error::MissingParam("role".into()))?;
            let group = app.policy.names.role(role)?;
            if !GRANTABLE_PREDEFINED_ROLES.contains(&group.as_str()) {
                app.policy.check_not_protected(&group)?;
            }
            return Ok(Request::Membership {
                group,
                admin: input.admin,
                inherit: input.inherit,
                set: input.set,
            });
        }
    };
    let list = |value: &Option<String>| -> Vec<String> {
        value
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let privileges = list(&input.privileges)
        .iter()
        .map(|p| {
            Privilege::parse(p).ok_or_else(|| Error::Invalid(format!("unknown privilege '{p}'")))
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = GrantConfig {
        on,
        schemas: list(&input.schema),
        objects: list(&input.objects),
        privileges,
        future: input.future,
        owner: input.owner.clone(),
    };
    Grant::from_config(&cfg, &app.policy.names)
        .map(Request::Objects)
        .map_err(Error::Invalid)
}

/// Grants privileges (`on` = database, schema, tables, sequences, functions) or membership
/// (`on` = role) to an existing user.
pub async fn grant(app: &App, caller: &Caller, input: &On<params::Grant>) -> Result<UserResult> {
    change(app, caller, input, false).await
}

/// Revokes what [`grant`] grants.
pub async fn revoke(app: &App, caller: &Caller, input: &On<params::Grant>) -> Result<UserResult> {
    change(app, caller, input, true).await
}

async fn change(
    app: &App,
    caller: &Caller,
    input: &On<params::Grant>,
    revoke: bool,
) -> Result<UserResult> {
    let op = if revoke {
        UserOp::Revoke
    } else {
        UserOp::Grant
    };
    let username = &input.params.username;
    let mut scope = AuditScope::for_op(app, caller, &op, &input.target, username);
    let result = change_in(app, &mut scope, input, revoke).await;
    scope.outcome(&result, status_of).await;
    result
}

async fn change_in(
    app: &App,
    scope: &mut AuditScope<'_>,
    input: &On<params::Grant>,
    revoke: bool,
) -> Result<UserResult> {
    let (target, p) = (&input.target, &input.params);
    let role = existing_role(app, scope, &p.username)?;
    let dry_run = p.dry_run;
    let request = parse_request(app, p)?;
    let entry = app.resolve(&target.env, &target.database).await?;
    if !dry_run {
        scope
            .intent(if revoke { "revoke" } else { "grant" })
            .await?;
    }
    let mut conn = app.targets.connect(&entry).await?;
    let tx = conn.transaction().await?;
    if !lock_existing(&tx, &role).await? {
        return Ok(UserResult::new(&role, entry, status::NOT_FOUND));
    }
    let mut plan = vec![plan::grant_lock()];
    let done = match &request {
        Request::Objects(grant) => {
            let facts = if grant.on == GrantOn::Database {
                check_database_owner(&tx, app, &entry).await?;
                Vec::new()
            } else {
                schema_facts(&tx, app, &entry, std::slice::from_ref(grant)).await?
            };
            plan.extend(
                grant
                    .statements(&role, &entry.db_name, &facts, revoke)
                    .map_err(Error::Invalid)?,
            );
            if revoke {
                "privileges revoked"
            } else {
                "privileges granted"
            }
        }
        Request::Membership {
            group,
            admin,
            inherit,
            set,
        } => {
            plan.push(membership(&tx, &role, group, *admin, *inherit, *set, revoke).await?);
            if revoke {
                "membership revoked"
            } else {
                "membership granted"
            }
        }
    };
    if dry_run {
        return Ok(UserResult::new(&role, entry, status::DRY_RUN).planned(plan));
    }
    tx.batch_execute(&plan::batch(&plan)).await?;
    tx.commit().await?;
    Ok(UserResult::new(&role, entry, done))
}

/// Without membership in the database owner, GRANT on the database only warns.
async fn check_database_owner(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &App,
    entry: &RegistryEntry,
) -> Result<()> {
    let owner = catalog::database_owner(tx).await?;
    if owner.admin_uses {
        return Ok(());
    }
    Err(Error::TargetRefused(format!(
        "the admin role '{}' is not a member of '{}', the owner of database '{}'",
        app.targets.admin_user(),
        owner.name,
        entry.db_name
    )))
}

/// `GRANT group TO role [WITH …]` or `REVOKE group FROM role`, after checking the group is
/// no superuser and the server supports the options asked for.
async fn membership(
    tx: &deadpool_postgres::Transaction<'_>,
    role: &RoleName,
    group: &RoleName,
    admin: bool,
    inherit: Option<bool>,
    set: Option<bool>,
    revoke: bool,
) -> Result<Statement> {
    match catalog::role_state(tx, group.as_str()).await? {
        RoleState::Missing => return Err(Error::Invalid(format!("role '{group}' does not exist"))),
        RoleState::Protected(Protection::Power) => {
            return Err(Error::Forbidden(format!(
                "membership in '{group}' (a superuser or the admin role) is never granted"
            )));
        }
        RoleState::Protected(Protection::Group) => {
            return Err(Error::Forbidden(format!(
                "membership in '{group}' (a group pg-user-api manages) comes only with a profile"
            )));
        }
        RoleState::Ordinary => {}
    }
    let facts = admin_facts(&**tx, Memberships::Of(&[group.as_str()])).await?;
    refuse_missing(&facts, plan::admin::for_membership(group.as_str(), &facts))?;
    plan::grants::membership(
        role,
        group,
        MembershipOptions {
            admin,
            inherit,
            set,
        },
        revoke,
        facts.server_version_num >= PG16,
    )
    .map_err(Error::Invalid)
}

/// What a role can do in one database.
#[derive(Debug, Serialize)]
pub struct PrivilegeReport {
    /// The role and its attributes.
    #[serde(flatten)]
    pub role: RoleInfo,
    /// The profile version that created it, if pg-user-api did.
    pub profile: Option<String>,
    /// Memberships, database and schema privileges, default privileges, settings.
    #[serde(flatten)]
    pub privileges: Privileges,
}

/// The result of a privileges report.
#[derive(Debug)]
pub struct ReportResult {
    /// The report, when the role exists.
    pub report: Option<PrivilegeReport>,
    /// The folded name.
    pub username: String,
    /// The target.
    pub entry: RegistryEntry,
}

/// Reports attributes, memberships, database and schema privileges, table privileges per
/// schema, default privileges and settings of a role in the target database.
pub async fn report(app: &App, caller: &Caller, input: &On<Lookup>) -> Result<ReportResult> {
    let (target, username) = (&input.target, &input.params.username);
    let mut scope = AuditScope::for_read(app, caller, "privileges", Some(target), username);
    let result = async {
        let role = app.policy.names.role(username)?;
        scope.set_username(role.as_str());
        let entry = app.resolve(&target.env, &target.database).await?;
        let conn = app.targets.connect(&entry).await?;
        let found = catalog::role_privileges(&conn, role.as_str()).await?;
        Ok(ReportResult {
            report: found.map(privilege_report),
            username: role.to_string(),
            entry,
        })
    }
    .await;
    let detail = |r: &ReportResult| {
        if r.report.is_some() {
            "found"
        } else {
            "not found"
        }
        .into()
    };
    scope.outcome(&result, detail).await;
    result
}

/// The report of a role's privileges, its profile read from the comment pg-user-api gave it.
fn privilege_report(found: catalog::RolePrivileges) -> PrivilegeReport {
    PrivilegeReport {
        role: role_info(found.role),
        profile: found
            .comment
            .and_then(|c| c.strip_prefix(PROFILE_COMMENT).map(str::to_owned)),
        privileges: found.privileges,
    }
}
