//! User operations on one target database: create (by profile), reset, search_path, find, list.

use serde::Serialize;

use super::audit::AuditScope;
use super::ops::UserOp;
use super::params::{CreateUser, Lookup, Nothing, On, RoleChange, SearchPath, Target};
use super::passwords::new_password;
use super::refuse_missing;
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::plan::grants::{Grant, GrantOn, check_server_version, schema_scope};
use crate::plan::groups::{Group, uses_group};
use crate::plan::profile::ProfileInputError;
use crate::plan::{self, Password, Profile, RoleName, SchemaFacts, Statement, lifecycle};
use crate::store::RegistryEntry;
use crate::target::admin::{Memberships, admin_facts};
use crate::target::catalog::{self, GroupState, Protection, RoleState};
use crate::target::is_duplicate;
use crate::target::tx::AdminTx;
use deadpool_postgres::GenericClient;

/// Status strings of the v1 contract.
pub mod status {
    /// The role exists already; nothing changed.
    pub const EXISTS: &str = "user already exists";
    /// Reset or search_path of a role that does not exist.
    pub const NOT_FOUND: &str = "user not found";
    /// A new password is in force.
    pub const RESET: &str = "password reset";
    /// A dry run: nothing was changed.
    pub const DRY_RUN: &str = "dry run";
}

/// The result of a user-changing operation.
#[derive(Clone, Debug)]
pub struct UserResult {
    /// The role name actually used (folded, templated).
    pub username: String,
    /// The new password, when one was set.
    pub password: Option<Password>,
    /// One of the v1 status strings.
    pub status: String,
    /// The target.
    pub entry: RegistryEntry,
    /// The statements, for a dry run.
    pub plan: Option<Vec<Statement>>,
    /// Sessions ended (lock, drop).
    pub sessions_terminated: Option<u64>,
    /// The search_path a search-path call set (`app,public`); its v1 body shows it instead
    /// of a password.
    pub schema: Option<String>,
}

impl UserResult {
    pub(super) fn new(username: &RoleName, entry: RegistryEntry, status: &str) -> Self {
        Self {
            username: username.to_string(),
            password: None,
            status: status.into(),
            entry,
            plan: None,
            sessions_terminated: None,
            schema: None,
        }
    }

    pub(super) fn planned(mut self, plan: Vec<Statement>) -> Self {
        self.plan = Some(plan);
        self
    }
}

/// A role and its attributes, as `privileges` reports them.
#[derive(Debug, Serialize)]
pub struct RoleInfo {
    /// Role name.
    pub username: String,
    /// psql-style attribute words (`Superuser`, `Create DB`, `20 connections`, …).
    pub attributes: Vec<String>,
}

/// A role as the original's `find` and `all` describe it: only these two flags.
#[derive(Debug, PartialEq, Eq)]
pub struct V1Role {
    /// Role name.
    pub username: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolcreatedb`.
    pub create_db: bool,
}

impl V1Role {
    /// `all`'s attribute text: `superuser`, `create database` joined by `", "`, in that
    /// order; empty for neither.
    pub fn attributes(&self) -> &'static str {
        match (self.superuser, self.create_db) {
            (true, true) => "superuser, create database",
            (true, false) => "superuser",
            (false, true) => "create database",
            (false, false) => "",
        }
    }

    /// `find`'s attribute text: as [`V1Role::attributes`], but `standard` for neither.
    pub fn find_attributes(&self) -> &'static str {
        match self.attributes() {
            "" => "standard",
            words => words,
        }
    }
}

impl From<catalog::RoleSummary> for V1Role {
    fn from(role: catalog::RoleSummary) -> Self {
        Self {
            username: role.name,
            superuser: role.superuser,
            create_db: role.create_db,
        }
    }
}

/// The result of `find`.
#[derive(Debug)]
pub struct FindResult {
    /// The folded name looked up.
    pub username: String,
    /// The role, when it exists.
    pub role: Option<V1Role>,
    /// The target.
    pub entry: RegistryEntry,
}

/// The result of `all`.
#[derive(Debug)]
pub struct ListResult {
    /// The roles that can log in, by name.
    pub users: Vec<V1Role>,
    /// The target.
    pub entry: RegistryEntry,
}

pub(super) fn status_of(r: &UserResult) -> String {
    r.status.clone()
}

/// The role name a profile builds from its parameters.
fn profile_role(app: &App, profile: &Profile, input: &CreateUser) -> Result<RoleName> {
    profile
        .role_name(&app.policy.names, |k| input.params.get(k).cloned())
        .map_err(|e| match e {
            ProfileInputError::Missing(p) => Error::MissingParam(p),
            ProfileInputError::Invalid(m) => Error::Invalid(m),
            ProfileInputError::Name(n) => Error::Name(n),
        })
}

/// The advisory lock key that serialises operations on one role name within a database.
fn role_lock_key(role: &RoleName) -> String {
    format!("pg-user-api:role:{role}")
}

/// Takes the lock that serialises operations on one role name within a database for the
/// transaction's life, then reads the role's state (one round trip for both).
pub(super) async fn lock_role(tx: &impl GenericClient, role: &RoleName) -> Result<RoleState> {
    catalog::after_lock(
        tx,
        &role_lock_key(role),
        catalog::role_state(tx, role.as_str()),
    )
    .await
}

/// Takes the role's lock; false when it does not exist, 403 when it is a superuser or the
/// admin role (found in the target's catalog, beyond the names policy refuses).
pub(super) async fn lock_existing(tx: &impl GenericClient, role: &RoleName) -> Result<bool> {
    match lock_role(tx, role).await? {
        RoleState::Missing => Ok(false),
        RoleState::Protected(Protection::Power) => Err(Error::Forbidden(format!(
            "role '{role}' is a superuser or the admin role; pg-user-api will not touch it"
        ))),
        RoleState::Protected(Protection::Group) => Err(Error::Forbidden(format!(
            "role '{role}' is a group role pg-user-api manages; the user endpoints do not touch it"
        ))),
        RoleState::Ordinary => Ok(true),
    }
}

/// The non-system schemas some grants name (all, with `"*"`) and, per schema, the owners
/// of its objects (for future grants). The admin role must be a member of every owner the
/// grants touch, or GRANT would silently do nothing: the schema's owner for a schema grant,
/// the owners of its tables, sequences or functions for those, and every owner for future
/// grants (ALTER DEFAULT PRIVILEGES FOR ROLE each of them).
pub(super) async fn schema_facts(
    tx: &impl GenericClient,
    app: &App,
    entry: &RegistryEntry,
    grants: &[Grant],
) -> Result<Vec<SchemaFacts>> {
    let touched = |on: GrantOn| grants.iter().any(|g| g.future || g.on == on);
    if grants
        .iter()
        .flat_map(|g| &g.privileges)
        .any(|p| p.since().is_some())
    {
        let version = catalog::server_version_num(tx).await?;
        check_server_version(grants, version).map_err(Error::Invalid)?;
    }
    let scope = schema_scope(grants);
    let owners = catalog::object_owners(tx, scope.as_deref()).await?;
    let mut facts: Vec<SchemaFacts> = Vec::new();
    let mut foreign: Vec<String> = Vec::new();
    for catalog::ObjectOwner {
        schema,
        owner,
        on,
        admin_uses,
    } in owners
    {
        let shown = format!("{owner} (in schema {schema})");
        if !admin_uses && touched(on) && !foreign.contains(&shown) {
            foreign.push(shown);
        }
        match facts.last_mut() {
            Some(f) if f.name == schema => {
                if !f.owners.contains(&owner) {
                    f.owners.push(owner);
                }
            }
            _ => facts.push(SchemaFacts {
                name: schema,
                owners: vec![owner],
            }),
        }
    }
    if !foreign.is_empty() {
        return Err(Error::TargetRefused(format!(
            "the admin role '{}' cannot grant on objects in database '{}': it is not a member of \
             the owner role(s) {}; grant it membership (GRANT owner TO {}) or change ownership",
            app.targets.admin_user(),
            entry.db_name,
            foreign.join(", "),
            app.targets.admin_user(),
        )));
    }
    Ok(facts)
}

/// Creates a user of `profile` in the target that `env` and `database` name.
pub async fn create(
    app: &App,
    caller: &Caller,
    profile: &Profile,
    input: &On<CreateUser>,
) -> Result<UserResult> {
    create_as(app, caller, profile, input, false).await
}

/// Like [`create`], for a registry entry on a server where this same call has just created
/// the role (roles are cluster-wide): reports `user already exists` and still applies the
/// profile's per-database grants and settings in this entry's database.
pub async fn create_on_same_server(
    app: &App,
    caller: &Caller,
    profile: &Profile,
    input: &On<CreateUser>,
) -> Result<UserResult> {
    create_as(app, caller, profile, input, true).await
}

async fn create_as(
    app: &App,
    caller: &Caller,
    profile: &Profile,
    input: &On<CreateUser>,
    same_server: bool,
) -> Result<UserResult> {
    let op = UserOp::Create(profile.name.clone());
    let username = input
        .params
        .params
        .get("username")
        .map_or("", String::as_str);
    let mut scope = AuditScope::for_op(app, caller, &op, &input.target, username);
    scope.set_profile(&profile.label());
    let result = create_in(app, &mut scope, profile, input, same_server).await;
    scope.outcome(&result, status_of).await;
    result
}

async fn create_in(
    app: &App,
    scope: &mut AuditScope<'_>,
    profile: &Profile,
    input: &On<CreateUser>,
    same_server: bool,
) -> Result<UserResult> {
    let (env, database) = (&input.target.env, &input.target.database);
    let dry_run = input.params.dry_run;
    let role = profile_role(app, profile, &input.params)?;
    scope.set_username(role.as_str());
    app.policy.check_not_protected(&role)?;
    app.policy.check_profile_env(profile, env)?;
    let entry = app.resolve(env, database).await?;
    // The password comes from the hasher's stock (`passwords`), or, when a burst has
    // emptied it, is hashed while the intent is being stored: the two waits overlap, and
    // nothing reaches the target before the intent is stored.
    let intent = async {
        if dry_run {
            return Ok(());
        }
        let detail = format!("create {} user", profile.label());
        scope.intent(&detail).await
    };
    let (intent, password) = futures_util::join!(intent, new_password());
    intent?;
    let (password, verifier) = password?;
    let mut conn = app.targets.connect(&entry).await?;
    let group = Group::for_profile(profile, &entry.db_name);
    let mut group_ensured = false;
    loop {
        let (tx, state) = AdminTx::begin(
            &conn,
            catalog::after_lock(
                &conn,
                &role_lock_key(&role),
                catalog::create_state(&conn, role.as_str(), group.name().as_str()),
            ),
        )
        .await?;
        let per_database_only = same_server && matches!(state.role, RoleState::Ordinary);
        if !matches!(state.role, RoleState::Missing) && !per_database_only {
            return Ok(UserResult::new(&role, entry, status::EXISTS));
        }
        check_groups(&*tx, profile).await?;
        if !per_database_only && plan::admin::create_needs_more_than_createrole(profile) {
            let groups: Vec<&str> = profile.member_of.iter().map(|r| r.as_str()).collect();
            let admin = admin_facts(tx.client(), Memberships::Of(&groups)).await?;
            refuse_missing(&admin, plan::admin::for_create(profile, &admin))?;
        }
        let facts = plan::CreateFacts {
            schemas: if profile.grants.iter().any(|g| g.on != GrantOn::Database) {
                schema_facts(&*tx, app, &entry, &profile.grants).await?
            } else {
                Vec::new()
            },
            valid_until: profile
                .password_valid_days
                .map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d))),
            server_version_num: state.server_version_num,
        };
        let group_plan = if uses_group(profile, state.server_version_num) {
            group_plan(&group, &state.group, &facts.schemas)?
        } else {
            Vec::new()
        };
        // A missing or stale group is made current in its own short transaction (a failed
        // user create then leaves a harmless group), and the create starts over.
        if !group_plan.is_empty() && !dry_run && !group_ensured {
            drop(tx);
            ensure_group(&mut conn, app, scope, &entry, profile, &group).await?;
            group_ensured = true;
            continue;
        }
        let plan = if per_database_only {
            plan::database_part(profile, &role, &entry.db_name, &facts)
        } else {
            plan::create_user(profile, &role, &entry.db_name, &verifier, &facts)
        }
        .map_err(Error::Invalid)?;
        if dry_run {
            // The user's statements first, as the v1 dry run always began; the group's
            // follow, each comment saying they run before, in their own transaction.
            let mut shown = plan;
            if !group_plan.is_empty() {
                shown.extend(group.locks().into_iter().chain(group_plan).map(|mut s| {
                    s.comment = GROUP_FIRST;
                    s
                }));
            }
            return Ok(UserResult::new(&role, entry, status::DRY_RUN).planned(shown));
        }
        return match tx.commit_with(&plan::batch(&plan)).await {
            Ok(()) if per_database_only => Ok(UserResult::new(&role, entry, status::EXISTS)),
            Ok(()) => Ok(UserResult {
                password: Some(password),
                ..UserResult::new(&role, entry, &profile.created_status)
            }),
            // Another registry entry on the same server created it first (roles are
            // cluster-wide, the advisory lock is per database).
            Err(e) if is_duplicate(&e) => Ok(UserResult::new(&role, entry, status::EXISTS)),
            // On 16+ granting a role needs ADMIN OPTION on it, which the creator of the group
            // has but a second admin role (another replica's, a replacement) does not.
            Err(e)
                if uses_group(profile, state.server_version_num)
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
                    && e.as_db_error()
                        .is_some_and(|d| d.message().contains(group.name().as_str())) =>
            {
                let admin = app.targets.admin_user();
                Err(Error::Forbidden(format!(
                    "nothing was changed: the admin role {admin} may not grant membership in \
                     the group role {group}, which another role created (PostgreSQL 16+ \
                     needs ADMIN OPTION on it); fix, as a superuser or the group's creator: \
                     GRANT {} TO {} WITH ADMIN OPTION;",
                    plan::sql::ident(group.name().as_str()),
                    plan::sql::ident(admin),
                    group = group.name(),
                )))
            }
            Err(e) => Err(e.into()),
        };
    }
}

/// How a dry run marks the group's statements, listed after the user's.
const GROUP_FIRST: &str = "runs first, in its own transaction: create or sync the group that holds the profile's privileges";

/// What makes `group` current: create it, sync it to changed schema facts, or nothing.
pub(super) fn group_plan(
    group: &Group,
    state: &GroupState,
    schemas: &[SchemaFacts],
) -> Result<Vec<Statement>> {
    match state {
        GroupState::Missing => group.create(schemas),
        GroupState::Exists(comment) if group.is_current(comment.as_deref(), schemas) => {
            Ok(Vec::new())
        }
        GroupState::Exists(_) => group.sync(schemas),
    }
    .map_err(Error::Invalid)
}

/// Creates or syncs `group` in its own transaction, under the grant lock and the group's
/// own lock, deciding again once they are held (another replica may have just done it). A
/// new group is a new role: its creation has an audit trail of its own (intent before the
/// DDL, outcome after); a sync is part of the create that needed it.
pub(super) async fn ensure_group(
    conn: &mut deadpool_postgres::Object,
    app: &App,
    scope: &AuditScope<'_>,
    entry: &RegistryEntry,
    profile: &Profile,
    group: &Group,
) -> Result<()> {
    let tx = conn.transaction().await?;
    tx.batch_execute(&plan::batch(&group.locks())).await?;
    let state = catalog::group_state(&tx, group.name().as_str()).await?;
    let schemas = if group.needs_schema_facts() {
        schema_facts(&tx, app, entry, &profile.grants).await?
    } else {
        Vec::new()
    };
    let plan = group_plan(group, &state, &schemas)?;
    if state != GroupState::Missing {
        if !plan.is_empty() {
            tx.batch_execute(&plan::batch(&plan)).await?;
        }
        tx.commit().await?;
        return Ok(());
    }
    let mut trail = scope.side(
        &format!("create:group:{}", profile.name),
        group.name().as_str(),
    );
    trail.intent("create the group role of a profile").await?;
    let result = async {
        tx.batch_execute(&plan::batch(&plan)).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    trail.outcome(&result, |_| "group created".into()).await;
    result
}

/// Joining a superuser (or the admin role) would hand out its power: refuse it.
async fn check_groups(tx: &impl GenericClient, profile: &Profile) -> Result<()> {
    if profile.member_of.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = profile.member_of.iter().map(|r| r.as_str()).collect();
    if let Some(group) = catalog::protected_among(tx, &names).await?.first() {
        return Err(Error::Forbidden(format!(
            "profile '{}' would join '{group}', a superuser or the admin role",
            profile.name,
        )));
    }
    Ok(())
}

/// How a change to an existing role is described and finished.
pub(super) struct Change {
    /// Intent text for the audit log.
    pub what: &'static str,
    /// `status` on success.
    pub success: String,
    /// A new password to hand back.
    pub password: Option<Password>,
    /// End the role's open sessions after the change is committed.
    pub terminate: bool,
}

/// The existing role a change names: validated, not protected, and recorded in the audit
/// scope.
pub(super) fn existing_role(
    app: &App,
    scope: &mut AuditScope<'_>,
    username: &str,
) -> Result<RoleName> {
    let role = app.policy.names.role(username)?;
    scope.set_username(role.as_str());
    app.policy.check_not_protected(&role)?;
    Ok(role)
}

/// What a change of an existing role is given: where, which role, and whether to only plan.
#[derive(Clone, Copy)]
pub(super) struct Existing<'a> {
    /// The one target.
    pub target: &'a Target,
    /// The role, as given.
    pub username: &'a str,
    /// Plan only.
    pub dry_run: bool,
}

/// Shared path of changes to an existing role: validate, resolve, intent, lock, check the
/// role, run the plan in one transaction, then (for lock) end its sessions.
pub(super) async fn alter_existing(
    app: &App,
    scope: &mut AuditScope<'_>,
    of: Existing<'_>,
    change: Change,
    build: impl FnOnce(&RoleName, &RegistryEntry) -> Result<Vec<Statement>>,
) -> Result<UserResult> {
    let role = existing_role(app, scope, of.username)?;
    let dry_run = of.dry_run;
    let entry = app.resolve(&of.target.env, &of.target.database).await?;
    let mut plan = build(&role, &entry)?;
    if !dry_run {
        scope.intent(change.what).await?;
    }
    let conn = app.targets.connect(&entry).await?;
    let (tx, exists) = AdminTx::begin(&conn, lock_existing(&conn, &role)).await?;
    if !exists {
        return Ok(UserResult::new(&role, entry, status::NOT_FOUND));
    }
    if dry_run {
        if change.terminate {
            plan.push(lifecycle::terminate_sessions(&role));
        }
        return Ok(UserResult::new(&role, entry, status::DRY_RUN).planned(plan));
    }
    tx.commit_with(&plan::batch(&plan)).await?;
    let sessions_terminated = if change.terminate {
        Some(terminate_sessions(&conn, &role).await?)
    } else {
        None
    };
    Ok(UserResult {
        password: change.password,
        sessions_terminated,
        ..UserResult::new(&role, entry, &change.success)
    })
}

/// Ends the role's sessions on the whole server (after NOLOGIN is committed, so they
/// cannot come straight back); returns how many were ended.
pub(super) async fn terminate_sessions(
    conn: &tokio_postgres::Client,
    role: &RoleName,
) -> Result<u64> {
    let rows = conn
        .query(lifecycle::terminate_sessions(role).sql(), &[])
        .await?;
    Ok(rows.len() as u64)
}

/// Gives an existing user a new generated password; the old one stops working at once.
pub async fn reset(app: &App, caller: &Caller, input: &On<RoleChange>) -> Result<UserResult> {
    let (target, p) = (&input.target, &input.params);
    let mut scope = AuditScope::for_op(app, caller, &UserOp::Reset, target, &p.username);
    let result = async {
        let (password, verifier) = new_password().await?;
        let build = |role: &RoleName, _: &RegistryEntry| Ok(plan::reset_password(role, &verifier));
        let change = Change {
            what: "reset password",
            success: status::RESET.to_owned(),
            password: Some(password),
            terminate: false,
        };
        let of = Existing {
            target,
            username: &p.username,
            dry_run: p.dry_run,
        };
        alter_existing(app, &mut scope, of, change, build).await
    }
    .await;
    scope.outcome(&result, status_of).await;
    result
}

/// Sets an existing user's search_path in the target database (default `public`).
pub async fn search_path(app: &App, caller: &Caller, input: &On<SearchPath>) -> Result<UserResult> {
    let (target, p) = (&input.target, &input.params);
    let mut scope = AuditScope::for_op(app, caller, &UserOp::SearchPath, target, &p.username);
    let result = async {
        let path = app
            .policy
            .names
            .search_path(p.schema.as_deref().unwrap_or("public"))?;
        let shown: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
        let success = format!("search_path set to {}", shown.join(", "));
        let schema = shown.join(",");
        let build = |role: &RoleName, entry: &RegistryEntry| {
            Ok(plan::set_search_path(role, &entry.db_name, &path))
        };
        let change = Change {
            what: "set search_path",
            success,
            password: None,
            terminate: false,
        };
        let of = Existing {
            target,
            username: &p.username,
            dry_run: p.dry_run,
        };
        let result = alter_existing(app, &mut scope, of, change, build).await?;
        Ok(UserResult {
            schema: Some(schema),
            ..result
        })
    }
    .await;
    scope.outcome(&result, status_of).await;
    result
}

/// A role with psql's attribute words.
pub(super) fn role_info(role: catalog::Role) -> RoleInfo {
    let flags = [
        (role.superuser, "Superuser"),
        (!role.inherit, "No inheritance"),
        (role.create_role, "Create role"),
        (role.create_db, "Create DB"),
        (!role.can_login, "Cannot login"),
        (role.replication, "Replication"),
        (role.bypass_rls, "Bypass RLS"),
    ];
    let mut attributes: Vec<String> = flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, word)| (*word).to_owned())
        .collect();
    let limit = role.connection_limit;
    if limit >= 0 {
        attributes.push(format!(
            "{limit} connection{}",
            if limit == 1 { "" } else { "s" }
        ));
    }
    if let Some(until) = role.valid_until {
        attributes.push(format!("Password valid until {until}"));
    }
    RoleInfo {
        username: role.name,
        attributes,
    }
}

/// Looks a user up by (folded) name.
pub async fn find(app: &App, caller: &Caller, input: &On<Lookup>) -> Result<FindResult> {
    let detail = |r: &FindResult| {
        if r.role.is_some() {
            "found"
        } else {
            "not found"
        }
        .into()
    };
    let (target, username) = (&input.target, &input.params.username);
    let mut scope = AuditScope::for_read(app, caller, "find", Some(target), username);
    let result = async {
        let role = app.policy.names.role(username)?;
        scope.set_username(role.as_str());
        let entry = app.resolve(&target.env, &target.database).await?;
        let conn = app.targets.shared(&entry).await?;
        let found = catalog::role_summary(conn.as_ref(), role.as_str()).await?;
        Ok(FindResult {
            username: role.to_string(),
            role: found.map(V1Role::from),
            entry,
        })
    }
    .await;
    scope.outcome(&result, detail).await;
    result
}

/// Lists the target's users as the original does: the roles that can log in, by name.
pub async fn list(app: &App, caller: &Caller, input: &On<Nothing>) -> Result<ListResult> {
    let detail = |r: &ListResult| format!("{} users", r.users.len());
    let target = &input.target;
    let scope = AuditScope::for_read(app, caller, "list", Some(target), "");
    let result = async {
        let entry = app.resolve(&target.env, &target.database).await?;
        let conn = app.targets.connect(&entry).await?;
        let users = catalog::login_roles(&conn).await?;
        Ok(ListResult {
            users: users.into_iter().map(V1Role::from).collect(),
            entry,
        })
    }
    .await;
    scope.outcome(&result, detail).await;
    result
}
