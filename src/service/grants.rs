//! Grant and revoke privileges or memberships for an existing role, and report what a role
//! can do in a database.

use serde::Serialize;

use super::audit::AuditScope;
use super::doctor::refuse_missing;
use super::ops::UserOp;
use super::params::{self, Lookup, On};
use super::users::{
    RoleInfo, UserResult, existing_role, lock_existing, role_info, schema_facts, status, status_of,
};
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::plan::admin::PG16;
use crate::plan::grants::{Grant, GrantConfig, GrantOn, Privilege};
use crate::plan::sql::ident;
use crate::plan::{self, GRANT_LOCK_KEY, RoleName, Statement, sql::literal};
use crate::store::RegistryEntry;
use crate::target::admin::{Memberships, admin_facts};
use crate::target::classify;

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
    let on = input.on.trim().to_ascii_lowercase();
    if on == "role" {
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
    let on: GrantOn =
        serde_json::from_value(serde_json::Value::String(on.clone())).map_err(|_| {
            Error::Invalid(format!(
                "on '{on}' must be database, schema, tables, sequences, functions or role"
            ))
        })?;
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
    let tx = conn.transaction().await.map_err(|e| classify(&e))?;
    if !lock_existing(&tx, &role).await? {
        return Ok(UserResult::new(&role, entry, status::NOT_FOUND));
    }
    let mut plan = vec![Statement::new(
        format!(
            "SELECT pg_advisory_xact_lock(hashtext({}))",
            literal(GRANT_LOCK_KEY)
        ),
        "serialise catalog changes on this database",
    )];
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
    tx.batch_execute(&plan::batch(&plan))
        .await
        .map_err(|e| classify(&e))?;
    tx.commit().await.map_err(|e| classify(&e))?;
    Ok(UserResult::new(&role, entry, done))
}

/// Without membership in the database owner, GRANT on the database only warns.
async fn check_database_owner(
    tx: &tokio_postgres::Transaction<'_>,
    app: &App,
    entry: &RegistryEntry,
) -> Result<()> {
    let row = tx
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(datdba)::text, pg_catalog.pg_has_role(datdba, 'USAGE')
             FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(|e| classify(&e))?;
    if row.get::<_, bool>(1) {
        return Ok(());
    }
    Err(Error::TargetRefused(format!(
        "the admin role '{}' is not a member of '{}', the owner of database '{}'",
        app.targets.admin_user(),
        row.get::<_, String>(0),
        entry.db_name
    )))
}

/// `GRANT group TO role [WITH …]` or `REVOKE group FROM role`, after checking the group is
/// no superuser and the server supports the options asked for.
async fn membership(
    tx: &tokio_postgres::Transaction<'_>,
    role: &RoleName,
    group: &RoleName,
    admin: bool,
    inherit: Option<bool>,
    set: Option<bool>,
    revoke: bool,
) -> Result<Statement> {
    let row = tx
        .query_opt(
            "SELECT rolsuper OR rolname = current_user FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&group.as_str()],
        )
        .await
        .map_err(|e| classify(&e))?;
    match row {
        None => return Err(Error::Invalid(format!("role '{group}' does not exist"))),
        Some(r) if r.get::<_, bool>(0) => {
            return Err(Error::Forbidden(format!(
                "membership in '{group}' (a superuser or the admin role) is never granted"
            )));
        }
        Some(_) => {}
    }
    let facts = admin_facts(tx, Memberships::Of(&[group.as_str()]))
        .await
        .map_err(|e| classify(&e))?;
    refuse_missing(&facts, plan::admin::for_membership(group.as_str(), &facts))?;
    let (r, g) = (ident(role.as_str()), ident(group.as_str()));
    if revoke {
        return Ok(Statement::new(
            format!("REVOKE {g} FROM {r}"),
            "revoke membership",
        ));
    }
    let version = facts.server_version_num;
    if (inherit.is_some() || set.is_some()) && version < PG16 {
        return Err(Error::Invalid(
            "inherit and set options of a membership need PostgreSQL 16 or later".into(),
        ));
    }
    let mut options = Vec::new();
    if admin {
        options.push(if version >= PG16 {
            "ADMIN TRUE"
        } else {
            "ADMIN OPTION"
        });
    }
    for (word, value) in [("INHERIT", inherit), ("SET", set)] {
        if let Some(v) = value {
            options.push(match (word, v) {
                ("INHERIT", true) => "INHERIT TRUE",
                ("INHERIT", false) => "INHERIT FALSE",
                (_, true) => "SET TRUE",
                (_, false) => "SET FALSE",
            });
        }
    }
    let with = if options.is_empty() {
        String::new()
    } else {
        format!(" WITH {}", options.join(", "))
    };
    Ok(Statement::new(
        format!("GRANT {g} TO {r}{with}"),
        "grant membership",
    ))
}

/// What a role can do in one database.
#[derive(Debug, Serialize)]
pub struct PrivilegeReport {
    /// The role and its attributes.
    #[serde(flatten)]
    pub role: RoleInfo,
    /// The profile version that created it, if pg-user-api did.
    pub profile: Option<String>,
    /// Roles it is a member of.
    pub member_of: Vec<Membership>,
    /// Effective privileges on the database (PUBLIC's included).
    pub database_privileges: Vec<&'static str>,
    /// Per schema: usage, create, and how many tables it may read or change.
    pub schemas: Vec<SchemaReport>,
    /// Default privileges granted to it.
    pub default_privileges: Vec<DefaultPrivilege>,
    /// `ALTER ROLE … SET` values: in this database, and everywhere.
    pub settings: Settings,
}

/// One membership.
#[derive(Debug, Serialize)]
pub struct Membership {
    /// The group role.
    pub role: String,
    /// With ADMIN OPTION.
    pub admin: bool,
}

/// One schema's view.
#[derive(Debug, Serialize)]
pub struct SchemaReport {
    /// Schema name.
    pub schema: String,
    /// USAGE.
    pub usage: bool,
    /// CREATE.
    pub create: bool,
    /// Tables, views and materialised views in it.
    pub tables: i64,
    /// Of which it may SELECT.
    pub select: i64,
    /// INSERT.
    pub insert: i64,
    /// UPDATE.
    pub update: i64,
    /// DELETE.
    pub delete: i64,
}

/// One default-privilege entry.
#[derive(Debug, Serialize)]
pub struct DefaultPrivilege {
    /// Whose future objects.
    pub owner: String,
    /// In which schema (none: all).
    pub schema: Option<String>,
    /// tables, sequences, functions, types or schemas.
    pub objects: &'static str,
    /// The privilege.
    pub privilege: String,
}

/// Per-role settings.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// In the target database.
    pub database: Vec<String>,
    /// In every database.
    pub all: Vec<String>,
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
    let mut scope = AuditScope::new(app, caller, "privileges", Some(target), username);
    let result = async {
        let role = app.policy.names.role(username)?;
        scope.set_username(role.as_str());
        let entry = app.resolve(&target.env, &target.database).await?;
        let conn = app.targets.connect(&entry).await?;
        let report = build_report(&conn, &role).await.map_err(|e| classify(&e))?;
        Ok(ReportResult {
            report,
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

async fn build_report(
    c: &tokio_postgres::Client,
    role: &RoleName,
) -> std::result::Result<Option<PrivilegeReport>, tokio_postgres::Error> {
    let name = role.as_str();
    let Some(row) = c
        .query_opt(
            &format!("{} WHERE rolname = $1", super::users::ROLE_COLUMNS),
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let profile: Option<String> = c
        .query_one(
            "SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles
             WHERE rolname = $1",
            &[&name],
        )
        .await?
        .get::<_, Option<String>>(0)
        .and_then(|c| {
            c.strip_prefix("created by pg-user-api, profile ")
                .map(str::to_owned)
        });
    let member_of = c
        .query(
            "SELECT g.rolname::text, m.admin_option FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
             JOIN pg_catalog.pg_roles u ON u.oid = m.member
             WHERE u.rolname = $1 ORDER BY 1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| Membership {
            role: r.get(0),
            admin: r.get(1),
        })
        .collect();
    let db = c
        .query_one(
            "SELECT has_database_privilege($1, current_database(), 'CONNECT'),
                    has_database_privilege($1, current_database(), 'CREATE'),
                    has_database_privilege($1, current_database(), 'TEMPORARY')",
            &[&name],
        )
        .await?;
    let database_privileges = ["CONNECT", "CREATE", "TEMPORARY"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| db.get::<_, bool>(*i))
        .map(|(_, p)| p)
        .collect();
    let schemas = c
        .query(
            "SELECT n.nspname::text,
                    has_schema_privilege($1, n.oid, 'USAGE'),
                    has_schema_privilege($1, n.oid, 'CREATE'),
                    count(t.oid),
                    count(t.oid) FILTER (WHERE has_table_privilege($1, t.oid, 'SELECT')),
                    count(t.oid) FILTER (WHERE has_table_privilege($1, t.oid, 'INSERT')),
                    count(t.oid) FILTER (WHERE has_table_privilege($1, t.oid, 'UPDATE')),
                    count(t.oid) FILTER (WHERE has_table_privilege($1, t.oid, 'DELETE'))
             FROM pg_catalog.pg_namespace n
             LEFT JOIN pg_catalog.pg_class t
               ON t.relnamespace = n.oid AND t.relkind IN ('r', 'v', 'm', 'p', 'f')
             WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
             GROUP BY n.oid, n.nspname ORDER BY 1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| SchemaReport {
            schema: r.get(0),
            usage: r.get(1),
            create: r.get(2),
            tables: r.get(3),
            select: r.get(4),
            insert: r.get(5),
            update: r.get(6),
            delete: r.get(7),
        })
        .collect();
    let default_privileges = c
        .query(
            "SELECT pg_catalog.pg_get_userbyid(d.defaclrole)::text, n.nspname::text,
                    d.defaclobjtype::text, a.privilege_type::text
             FROM pg_catalog.pg_default_acl d
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
             CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a
             WHERE a.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
             ORDER BY 1, 2, 3, 4",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| DefaultPrivilege {
            owner: r.get(0),
            schema: r.get(1),
            objects: match r.get::<_, String>(2).as_str() {
                "r" => "tables",
                "S" => "sequences",
                "f" => "functions",
                "T" => "types",
                _ => "schemas",
            },
            privilege: r.get(3),
        })
        .collect();
    let mut settings = Settings {
        database: Vec::new(),
        all: Vec::new(),
    };
    for r in c
        .query(
            "SELECT s.setdatabase = 0, unnest(s.setconfig)
             FROM pg_catalog.pg_db_role_setting s
             WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
               AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                         WHERE datname = current_database()))
             ORDER BY 2",
            &[&name],
        )
        .await?
    {
        let target = if r.get::<_, bool>(0) {
            &mut settings.all
        } else {
            &mut settings.database
        };
        target.push(r.get(1));
    }
    Ok(Some(PrivilegeReport {
        role: role_info(&row),
        profile,
        member_of,
        database_privileges,
        schemas,
        default_privileges,
        settings,
    }))
}
