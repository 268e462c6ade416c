//! Typed reads of a target's catalog (and the advisory lock operations take): each query
//! here has `$1` parameters and returns typed rows, so the service orchestrates and holds no
//! SQL text. Statements every change runs are prepared once per pooled connection: a round
//! trip and a parse less on the target, per call.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::error::Result;
use crate::plan::grants::GrantOn;

/// A role's place in the target's catalog.
pub enum RoleState {
    /// No such role.
    Missing,
    /// A superuser or the admin role itself.
    Protected,
    /// Any other role.
    Ordinary,
}

/// A role's attributes (`pg_roles`).
#[derive(Debug)]
pub struct Role {
    /// `rolname`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// `rolcreaterole`.
    pub create_role: bool,
    /// `rolcreatedb`.
    pub create_db: bool,
    /// `rolcanlogin`.
    pub can_login: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
    /// `rolconnlimit` (-1: none).
    pub connection_limit: i32,
    /// `rolvaliduntil` as PostgreSQL prints it.
    pub valid_until: Option<String>,
}

/// The columns [`Role`] is read from.
const ROLE_COLUMNS: &str = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
        rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text
 FROM pg_catalog.pg_roles";

impl Role {
    fn of(row: &tokio_postgres::Row) -> Self {
        Self {
            name: row.get(0),
            superuser: row.get(1),
            inherit: row.get(2),
            create_role: row.get(3),
            create_db: row.get(4),
            can_login: row.get(5),
            replication: row.get(6),
            bypass_rls: row.get(7),
            connection_limit: row.get(8),
            valid_until: row.get(9),
        }
    }
}

/// The transaction-level advisory lock on `hashtext($1)` (released at commit or rollback).
const ADVISORY_XACT_LOCK: &str = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))";

/// Whether the role `$1` exists, and whether it is a superuser or the admin role.
const ROLE_STATE: &str =
    "SELECT rolsuper OR rolname = current_user FROM pg_catalog.pg_roles WHERE rolname = $1";

impl RoleState {
    fn of(row: Option<tokio_postgres::Row>) -> Self {
        match row {
            None => Self::Missing,
            Some(r) if r.get::<_, bool>(0) => Self::Protected,
            Some(_) => Self::Ordinary,
        }
    }
}

/// Takes the transaction-level advisory lock `key` names (released at commit or rollback).
pub async fn advisory_xact_lock(c: &impl GenericClient, key: &str) -> Result<()> {
    let stmt = c.prepare_cached(ADVISORY_XACT_LOCK).await?;
    c.execute(&stmt, &[&key]).await?;
    Ok(())
}

/// Whether `role` exists, and whether it is a superuser or the admin role.
pub async fn role_state(c: &impl GenericClient, role: &str) -> Result<RoleState> {
    let stmt = c.prepare_cached(ROLE_STATE).await?;
    Ok(RoleState::of(c.query_opt(&stmt, &[&role]).await?))
}

/// Takes the advisory lock `key` names, then reads `role`'s state: both requests leave
/// together (one round trip) and PostgreSQL runs them in that order, so the read's snapshot
/// is taken once the lock is held. Both are prepared first, so that neither can overtake
/// the other while a fresh connection prepares them.
pub async fn lock_then_role_state(
    c: &impl GenericClient,
    key: &str,
    role: &str,
) -> Result<RoleState> {
    let (lock, state) = futures_util::try_join!(
        c.prepare_cached(ADVISORY_XACT_LOCK),
        c.prepare_cached(ROLE_STATE)
    )?;
    // futures' `join!` polls in argument order (tokio's rotates), and a request is sent
    // when first polled: the lock goes first.
    let (key, role): (&[&(dyn ToSql + Sync)], &[&(dyn ToSql + Sync)]) = (&[&key], &[&role]);
    let (locked, row) = futures_util::join!(c.execute(&lock, key), c.query_opt(&state, role));
    locked?;
    Ok(RoleState::of(row?))
}

/// The role called `name`, if it exists.
pub async fn role(c: &impl GenericClient, name: &str) -> Result<Option<Role>> {
    let stmt = c
        .prepare_cached(&format!("{ROLE_COLUMNS} WHERE rolname = $1"))
        .await?;
    Ok(c.query_opt(&stmt, &[&name]).await?.as_ref().map(Role::of))
}

/// The roles that can log in, by name.
pub async fn login_roles(c: &impl GenericClient) -> Result<Vec<Role>> {
    let stmt = c
        .prepare_cached(&format!(
            "{ROLE_COLUMNS} WHERE rolcanlogin ORDER BY rolname"
        ))
        .await?;
    Ok(c.query(&stmt, &[]).await?.iter().map(Role::of).collect())
}

/// Those of `roles` that are superusers or the admin role.
pub async fn protected_among(c: &impl GenericClient, roles: &[&str]) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles
             WHERE rolname = ANY($1) AND (rolsuper OR rolname = current_user)",
            &[&roles],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether the admin role has the privileges of `role` (`pg_has_role … USAGE`).
pub async fn admin_uses(c: &impl GenericClient, role: &str) -> Result<bool> {
    let row = c
        .query_one("SELECT pg_catalog.pg_has_role($1, 'USAGE')", &[&role])
        .await?;
    Ok(row.get(0))
}

/// `server_version_num`, e.g. 170002.
pub async fn server_version_num(c: &impl GenericClient) -> Result<i32> {
    let row = c
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The owner of the connection's database.
pub struct DatabaseOwner {
    /// Its name.
    pub name: String,
    /// Whether the admin role has its privileges.
    pub admin_uses: bool,
}

/// Who owns the connection's database.
pub async fn database_owner(c: &impl GenericClient) -> Result<DatabaseOwner> {
    let row = c
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(datdba)::text, pg_catalog.pg_has_role(datdba, 'USAGE')
             FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()",
            &[],
        )
        .await?;
    Ok(DatabaseOwner {
        name: row.get(0),
        admin_uses: row.get(1),
    })
}

/// An owner of objects of one kind in a schema.
pub struct ObjectOwner {
    /// The schema.
    pub schema: String,
    /// The owning role (the database owner for schemas owned by `pg_database_owner`).
    pub owner: String,
    /// What it owns: the schema itself, or tables, sequences or functions in it.
    pub on: GrantOn,
    /// Whether the admin role has the owner's privileges.
    pub admin_uses: bool,
}

/// Per non-system schema (those named in `schemas`, or all), the owners of the schema and
/// of its tables, sequences and functions; by schema, then owner.
pub async fn object_owners(
    c: &impl GenericClient,
    schemas: Option<&[String]>,
) -> Result<Vec<ObjectOwner>> {
    let rows = c
        .query(
            "WITH s AS (
                 SELECT n.oid, n.nspname,
                        CASE WHEN pg_catalog.pg_get_userbyid(n.nspowner) = 'pg_database_owner'
                             THEN d.datdba ELSE n.nspowner END AS owner
                 FROM pg_catalog.pg_namespace n
                 JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database()
                 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
                   AND ($1::text[] IS NULL OR n.nspname = ANY($1))
             ), o AS (
                 SELECT nspname, owner, 'schema' AS kind FROM s
                 UNION
                 SELECT s.nspname, c.relowner,
                        CASE WHEN c.relkind = 'S' THEN 'sequences' ELSE 'tables' END
                 FROM s JOIN pg_catalog.pg_class c ON c.relnamespace = s.oid
                 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
                 UNION
                 SELECT s.nspname, p.proowner, 'functions' FROM s
                 JOIN pg_catalog.pg_proc p ON p.pronamespace = s.oid
             )
             SELECT o.nspname::text, r.rolname::text, o.kind, pg_catalog.pg_has_role(r.oid, 'USAGE')
             FROM o JOIN pg_catalog.pg_roles r ON r.oid = o.owner
             ORDER BY 1, 2",
            &[&schemas],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ObjectOwner {
            schema: row.get(0),
            owner: row.get(1),
            on: match row.get::<_, &str>(2) {
                "schema" => GrantOn::Schema,
                "sequences" => GrantOn::Sequences,
                "functions" => GrantOn::Functions,
                _ => GrantOn::Tables,
            },
            admin_uses: row.get(3),
        })
        .collect())
}

/// A database of the server where a role owns objects or holds privileges.
pub struct DependentDatabase {
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// Whether the admin role may connect to it.
    pub reachable: bool,
    /// Whether the role owns the database itself.
    pub owned_by_role: bool,
}

/// The database `current` and every database of the server where `role` owns the database,
/// objects or privileges; `current` first, then by name.
pub async fn dependent_databases(
    c: &impl GenericClient,
    role: &str,
    current: &str,
) -> Result<Vec<DependentDatabase>> {
    let rows = c
        .query(
            "WITH r AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
             SELECT d.datname::text,
                    pg_catalog.pg_get_userbyid(d.datdba)::text,
                    d.datallowconn AND pg_catalog.has_database_privilege(d.oid, 'CONNECT'),
                    d.datdba = (SELECT oid FROM r)
             FROM pg_catalog.pg_database d
             WHERE d.datname = $2
                OR d.datdba = (SELECT oid FROM r)
                OR d.oid IN (SELECT dbid FROM pg_catalog.pg_shdepend
                             WHERE refclassid = 'pg_catalog.pg_authid'::regclass
                               AND refobjid = (SELECT oid FROM r))
             ORDER BY d.datname = $2 DESC, 1",
            &[&role, &current],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DependentDatabase {
            name: row.get(0),
            owner: row.get(1),
            reachable: row.get(2),
            owned_by_role: row.get(3),
        })
        .collect())
}

/// The tablespaces `role` owns.
pub async fn owned_tablespaces(c: &impl GenericClient, role: &str) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT spcname::text FROM pg_catalog.pg_tablespace
             WHERE spcowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A role whose password stops working soon.
pub struct ExpiringRole {
    /// Its name.
    pub name: String,
    /// When (`VALID UNTIL`), to the second.
    pub valid_until: DateTime<Utc>,
}

/// Roles (other than `pg_*`) whose `VALID UNTIL` falls within the next `days` days, soonest
/// first.
pub async fn expiring_roles(c: &impl GenericClient, days: u32) -> Result<Vec<ExpiringRole>> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let rows = c
        .query(
            "SELECT rolname::text, extract(epoch FROM rolvaliduntil)::float8
             FROM pg_catalog.pg_roles
             WHERE rolvaliduntil > now()
               AND rolvaliduntil <= now() + make_interval(days => $1)
               AND rolname !~ '^pg_'
             ORDER BY rolvaliduntil, rolname",
            &[&days],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let epoch: f64 = row.get(1);
            Some(ExpiringRole {
                name: row.get(0),
                valid_until: DateTime::from_timestamp(epoch.floor() as i64, 0)?,
            })
        })
        .collect())
}

/// One membership of a role.
#[derive(Debug, Serialize)]
pub struct Membership {
    /// The group role.
    pub role: String,
    /// With ADMIN OPTION.
    pub admin: bool,
}

/// A role's privileges in one schema.
#[derive(Debug, Serialize)]
pub struct SchemaPrivileges {
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

/// One default-privilege entry granted to a role.
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

/// A role's `ALTER ROLE … SET` values.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// In the connection's database.
    pub database: Vec<String>,
    /// In every database.
    pub all: Vec<String>,
}

/// A role, its comment, and what it can do in the connection's database.
pub struct RolePrivileges {
    /// Its attributes.
    pub role: Role,
    /// Its comment (`COMMENT ON ROLE`).
    pub comment: Option<String>,
    /// What it can do.
    pub privileges: Privileges,
}

/// What a role can do in the connection's database.
#[derive(Debug, Serialize)]
pub struct Privileges {
    /// Roles it is a member of, by name.
    pub member_of: Vec<Membership>,
    /// Effective privileges on the database (PUBLIC's included).
    pub database_privileges: Vec<&'static str>,
    /// Per non-system schema: usage, create, and how many tables it may read or change.
    pub schemas: Vec<SchemaPrivileges>,
    /// Default privileges granted to it.
    pub default_privileges: Vec<DefaultPrivilege>,
    /// `ALTER ROLE … SET` values: in this database, and everywhere.
    pub settings: Settings,
}

/// Everything [`RolePrivileges`] holds about `name`, when the role exists.
pub async fn role_privileges(c: &impl GenericClient, name: &str) -> Result<Option<RolePrivileges>> {
    let Some(role) = c
        .query_opt(&format!("{ROLE_COLUMNS} WHERE rolname = $1"), &[&name])
        .await?
        .as_ref()
        .map(Role::of)
    else {
        return Ok(None);
    };
    let comment: Option<String> = c
        .query_one(
            "SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles
             WHERE rolname = $1",
            &[&name],
        )
        .await?
        .get(0);
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
        .map(|r| SchemaPrivileges {
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
            objects: match r.get::<_, &str>(2) {
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
        let everywhere: bool = r.get(0);
        let target = if everywhere {
            &mut settings.all
        } else {
            &mut settings.database
        };
        target.push(r.get(1));
    }
    Ok(Some(RolePrivileges {
        role,
        comment,
        privileges: Privileges {
            member_of,
            database_privileges,
            schemas,
            default_privileges,
            settings,
        },
    }))
}
