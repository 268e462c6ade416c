//! Typed reads of a target's catalog (and the advisory lock operations take): each query
//! here has `$1` parameters and returns typed rows, so the service orchestrates and holds no
//! SQL text. Statements every change runs are prepared once per pooled connection: a round
//! trip and a parse less on the target, per call.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt as _;
use serde::Serialize;

use crate::error::Result;
use crate::plan::adopt::{AclGrant, AclObject};
use crate::plan::grants::GrantOn;
use crate::plan::groups::GROUP_COMMENT;

/// A role's place in the target's catalog.
pub enum RoleState {
    /// No such role.
    Missing,
    /// A superuser, the admin role itself, or a group pg-user-api manages (its comment
    /// begins with [`GROUP_COMMENT`]): no user endpoint touches it.
    Protected(Protection),
    /// Any other role.
    Ordinary,
}

/// Why a role is [`RoleState::Protected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// A superuser or the admin role.
    Power,
    /// A group role holding a profile's privileges ([`crate::plan::groups`]).
    Group,
}

/// The state of role `$1` as 0 (ordinary), 1 (superuser or admin) or 2 (managed group,
/// `$2` being [`GROUP_COMMENT`]); no row when it does not exist.
const ROLE_STATE: &str = "SELECT CASE WHEN r.rolsuper OR r.rolname = current_user THEN 1
                  WHEN pg_catalog.starts_with(d.description, $2) THEN 2 ELSE 0 END
 FROM pg_catalog.pg_roles r
 LEFT JOIN pg_catalog.pg_shdescription d
   ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass
 WHERE r.rolname = $1";

impl RoleState {
    fn of(code: Option<i32>) -> Self {
        match code {
            None => RoleState::Missing,
            Some(1) => RoleState::Protected(Protection::Power),
            Some(2) => RoleState::Protected(Protection::Group),
            Some(_) => RoleState::Ordinary,
        }
    }
}

/// A managed group's place in the catalog, as a create needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No role of the group's name.
    Missing,
    /// It exists, with this comment.
    Exists(Option<String>),
}

/// What a create reads before it plans, in one round trip.
pub struct CreateState {
    /// The user's role.
    pub role: RoleState,
    /// The group the profile's users join.
    pub group: GroupState,
    /// `server_version_num`.
    pub server_version_num: i32,
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

/// Takes the advisory lock `key` names, then runs `read` (catalog reads on `c`): the lock
/// and the reads leave together (one round trip) and PostgreSQL runs them in that order, so
/// each read's snapshot is taken once the lock is held. futures' `join!` polls in argument
/// order (tokio's rotates), and tokio-postgres sends a request when it is first polled: the
/// lock goes first.
pub async fn after_lock<T>(
    c: &impl GenericClient,
    key: &str,
    read: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let lock = c.prepare_cached(ADVISORY_XACT_LOCK).await?;
    let key: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&key];
    let (locked, read) = futures_util::join!(c.execute(&lock, key), read);
    locked?;
    read
}

/// Whether `role` exists, and whether it is protected (superuser, admin role, managed group).
pub async fn role_state(c: &impl GenericClient, role: &str) -> Result<RoleState> {
    let stmt = c.prepare_cached(ROLE_STATE).await?;
    let row = c.query_opt(&stmt, &[&role, &GROUP_COMMENT]).await?;
    Ok(RoleState::of(row.map(|r| r.get(0))))
}

/// [`create_state`]'s query: [`ROLE_STATE`] beside the group's row; composed once, not per
/// create.
static CREATE_STATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT ({ROLE_STATE}), g.oid IS NOT NULL, d.description,
                pg_catalog.current_setting('server_version_num')::int
         FROM (SELECT 1) one
         LEFT JOIN pg_catalog.pg_roles g ON g.rolname = $3
         LEFT JOIN pg_catalog.pg_shdescription d
           ON d.objoid = g.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass"
    )
});

/// The state of the user's role and of `group`, and the server version, in one round trip.
pub async fn create_state(c: &impl GenericClient, role: &str, group: &str) -> Result<CreateState> {
    let stmt = c.prepare_cached(&CREATE_STATE).await?;
    let row = c.query_one(&stmt, &[&role, &GROUP_COMMENT, &group]).await?;
    Ok(CreateState {
        role: RoleState::of(row.get(0)),
        group: if row.get(1) {
            GroupState::Exists(row.get(2))
        } else {
            GroupState::Missing
        },
        server_version_num: row.get(3),
    })
}

/// Whether `group` exists and its comment (read again under the group's locks).
pub async fn group_state(c: &impl GenericClient, group: &str) -> Result<GroupState> {
    let stmt = c
        .prepare_cached(
            "SELECT pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles
             WHERE rolname = $1",
        )
        .await?;
    Ok(match c.query_opt(&stmt, &[&group]).await? {
        None => GroupState::Missing,
        Some(r) => GroupState::Exists(r.get(0)),
    })
}

/// A role's name and the two attributes v1's `find` and `all` show.
#[derive(Debug, PartialEq, Eq)]
pub struct RoleSummary {
    /// `rolname`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolcreatedb`.
    pub create_db: bool,
}

/// The `SELECT` a [`RoleSummary`] is read from, followed by `$rest` (a literal, so that
/// the statement cache is looked up without building its text on every call).
macro_rules! summary_select {
    ($rest:literal) => {
        concat!(
            "SELECT rolname::text, rolsuper, rolcreatedb FROM pg_catalog.pg_roles ",
            $rest
        )
    };
}

impl RoleSummary {
    fn of(row: &tokio_postgres::Row) -> Self {
        Self {
            name: row.get(0),
            superuser: row.get(1),
            create_db: row.get(2),
        }
    }
}

/// The role called `name`, if it exists, as v1's `find` shows it.
pub async fn role_summary(c: &impl GenericClient, name: &str) -> Result<Option<RoleSummary>> {
    let stmt = c
        .prepare_cached(summary_select!("WHERE rolname = $1"))
        .await?;
    Ok(c.query_opt(&stmt, &[&name])
        .await?
        .as_ref()
        .map(RoleSummary::of))
}

/// The roles that can log in, by name. The rows are read as they arrive, each turned into
/// its [`RoleSummary`] and dropped, so a target with thousands of users never holds all
/// its rows at once beside the answer.
pub async fn login_roles(c: &impl GenericClient) -> Result<Vec<RoleSummary>> {
    let stmt = c
        .prepare_cached(summary_select!("WHERE rolcanlogin ORDER BY rolname"))
        .await?;
    let rows = c.query_raw(&stmt, std::iter::empty::<&str>()).await?;
    Ok(rows
        .map_ok(|row| RoleSummary::of(&row))
        .try_collect()
        .await?)
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
/// of its tables, sequences and functions; by schema, then owner. Owners are named by oid
/// (`pg_get_userbyid`), not by a join with `pg_roles`: the planner hashes the whole of
/// `pg_authid` for such a join, which made every `readonly` create cost O(roles in the
/// cluster) — ~130 ms at 50,000 roles against ~2 ms this way.
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
             SELECT o.nspname::text, pg_catalog.pg_get_userbyid(o.owner)::text, o.kind,
                    pg_catalog.pg_has_role(o.owner, 'USAGE')
             FROM o
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

/// A role pg-user-api created (its comment begins with [`crate::plan::PROFILE_COMMENT`]),
/// other than a superuser or the admin role, as `adopt` and the doctor see it.
#[derive(Debug)]
pub struct ManagedRole {
    /// `rolname`.
    pub name: String,
    /// The comment after the prefix: `profile@version`.
    pub profile_label: String,
    /// `rolinherit`.
    pub inherit: bool,
    /// The roles it is a member of and, per membership, whether it inherits their
    /// privileges (16+: the membership's INHERIT option; 15: `rolinherit`).
    pub member_of: Vec<(String, bool)>,
}

/// The roles whose comment begins with `prefix` (only the one named `only`, if given), but
/// no superuser or the admin role; by name.
pub async fn managed_roles(
    c: &impl GenericClient,
    prefix: &str,
    only: Option<&str>,
) -> Result<Vec<ManagedRole>> {
    // `inherit_option` exists from 16 on; read through to_jsonb so one text serves 15 too.
    let rows = c
        .query(
            "WITH r AS (
                 SELECT oid, rolname, rolinherit,
                        pg_catalog.shobj_description(oid, 'pg_authid') AS comment
                 FROM pg_catalog.pg_roles
                 WHERE NOT rolsuper AND rolname <> current_user
                   AND ($2::text IS NULL OR rolname = $2)
             )
             SELECT r.rolname::text, substr(r.comment, length($1) + 1), r.rolinherit,
                    coalesce(array_agg(g.rolname::text ORDER BY g.rolname)
                             FILTER (WHERE g.oid IS NOT NULL), '{}'),
                    coalesce(array_agg(coalesce((pg_catalog.to_jsonb(m) ->> 'inherit_option')::bool,
                                                r.rolinherit) ORDER BY g.rolname)
                             FILTER (WHERE g.oid IS NOT NULL), '{}')
             FROM r
             LEFT JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
             LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
             WHERE starts_with(r.comment, $1)
             GROUP BY r.rolname, r.comment, r.rolinherit
             ORDER BY 1",
            &[&prefix, &only],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let groups: Vec<String> = row.get(3);
            let inherits: Vec<bool> = row.get(4);
            ManagedRole {
                name: row.get(0),
                profile_label: row.get(1),
                inherit: row.get(2),
                member_of: groups.into_iter().zip(inherits).collect(),
            }
        })
        .collect())
}

/// Every privilege that `grantees` hold directly in the connection's database: the
/// database's ACL, those of its non-system schemas and of their tables, views and
/// sequences, and the default ACLs that grant to them.
pub async fn acl_grants(c: &impl GenericClient, grantees: &[&str]) -> Result<Vec<AclGrant>> {
    let rows = c
        .query(
            "WITH g AS (SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1)),
             n AS (SELECT oid, nspname, nspacl FROM pg_catalog.pg_namespace
                   WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'),
             e AS (
                 SELECT 'database' AS kind, NULL::name AS schema, NULL::name AS object,
                        NULL::text AS owner, a.grantee, a.privilege_type, a.is_grantable
                 FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
                 WHERE d.datname = pg_catalog.current_database()
                 UNION ALL
                 SELECT 'schema', n.nspname, NULL, NULL, a.grantee, a.privilege_type,
                        a.is_grantable
                 FROM n, pg_catalog.aclexplode(n.nspacl) a
                 UNION ALL
                 SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, n.nspname,
                        c.relname, NULL, a.grantee, a.privilege_type, a.is_grantable
                 FROM n JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid,
                      pg_catalog.aclexplode(c.relacl) a
                 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
                 UNION ALL
                 SELECT 'default:' || d.defaclobjtype::text, dn.nspname, NULL,
                        pg_catalog.pg_get_userbyid(d.defaclrole)::text, a.grantee,
                        a.privilege_type, a.is_grantable
                 FROM pg_catalog.pg_default_acl d
                 LEFT JOIN pg_catalog.pg_namespace dn ON dn.oid = d.defaclnamespace,
                      pg_catalog.aclexplode(d.defaclacl) a
             )
             SELECT g.rolname::text, e.kind, e.schema::text, e.object::text, e.owner,
                    e.privilege_type::text, e.is_grantable
             FROM e JOIN g ON g.oid = e.grantee
             ORDER BY 1, 2, 3, 4, 5, 6",
            &[&grantees],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let kind: &str = row.get(1);
            let schema: Option<String> = row.get(2);
            let object = match kind {
                "database" => AclObject::Database,
                "schema" => AclObject::Schema(schema.unwrap_or_default()),
                "table" | "sequence" => AclObject::Relation {
                    schema: schema.unwrap_or_default(),
                    name: row.get(3),
                    sequence: kind == "sequence",
                },
                _ => AclObject::Default {
                    owner: row.get(4),
                    schema,
                    on: match kind {
                        "default:r" => Some(GrantOn::Tables),
                        "default:S" => Some(GrantOn::Sequences),
                        "default:f" => Some(GrantOn::Functions),
                        _ => None,
                    },
                },
            };
            AclGrant {
                grantee: row.get(0),
                object,
                privilege: row.get(5),
                grantable: row.get(6),
            }
        })
        .collect())
}
