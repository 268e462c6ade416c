//! What the admin role holds on a target (typed catalog reads), and a one-off connection
//! that says why a target cannot be reached.

use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::{PoolKey, Targets};
use crate::plan::admin::{AdminFacts, AdminMembership};
use crate::store::RegistryEntry;

/// Which memberships of the admin role [`admin_facts`] reads.
pub enum Memberships<'a> {
    /// Only those in these roles (none: skip the query).
    Of(&'a [&'a str]),
    /// Those in these roles, every group role, and every role whose privileges it inherits.
    GroupsAnd(&'a [&'a str]),
}

/// Reads the admin role's attributes, predefined roles, the database owner and the
/// memberships asked for, in the connection's database.
pub async fn admin_facts(
    c: &impl GenericClient,
    memberships: Memberships<'_>,
) -> Result<AdminFacts, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT r.rolname::text,
                    pg_catalog.current_setting('server_version_num')::int,
                    pg_catalog.current_setting('server_version'),
                    r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
                    pg_catalog.pg_has_role('pg_signal_backend', 'USAGE'),
                    pg_catalog.pg_get_userbyid(d.datdba)::text,
                    pg_catalog.pg_has_role(d.datdba, 'USAGE')
             FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
             WHERE r.rolname = current_user AND d.datname = pg_catalog.current_database()",
            &[],
        )
        .await?;
    let (asked, all): (&[&str], bool) = match memberships {
        Memberships::Of(roles) => (roles, false),
        Memberships::GroupsAnd(roles) => (roles, true),
    };
    let superuser: bool = row.get(3);
    let memberships = if superuser || (asked.is_empty() && !all) {
        Vec::new()
    } else {
        c.query(
            "SELECT g.rolname::text, pg_catalog.pg_has_role(g.oid, 'USAGE'),
                    pg_catalog.pg_has_role(g.oid, 'MEMBER WITH ADMIN OPTION')
             FROM pg_catalog.pg_roles g
             WHERE (g.rolname = ANY($1) OR $2) AND g.rolname <> current_user
               AND pg_catalog.pg_has_role(g.oid, 'MEMBER')
               -- Users it created are members with ADMIN OPTION from 16 on: not groups.
               AND (g.rolname = ANY($1) OR NOT g.rolcanlogin
                    OR pg_catalog.pg_has_role(g.oid, 'USAGE'))
             ORDER BY 1",
            &[&asked, &all],
        )
        .await?
        .iter()
        .map(|r| AdminMembership {
            role: r.get(0),
            inherit: r.get(1),
            admin: r.get(2),
        })
        .collect()
    };
    Ok(AdminFacts {
        role: row.get(0),
        server_version_num: row.get(1),
        server_version: row.get(2),
        superuser,
        createrole: row.get(4),
        createdb: row.get(5),
        replication: row.get(6),
        bypassrls: row.get(7),
        pg_signal_backend: row.get(8),
        database_owner: row.get(9),
        member_of_database_owner: row.get(10),
        memberships,
    })
}

/// Whether this session is encrypted.
pub async fn tls_in_use(c: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Why a target could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnreachableKind {
    /// Nothing listens on the port.
    Refused,
    /// No complete answer within the connect timeout.
    Timeout,
    /// The TLS handshake failed (no TLS on the server, or the certificate was refused).
    Tls,
    /// The server refused the admin role's credentials.
    Authentication,
    /// Anything else (unknown host, unknown database, too many connections, …).
    Other,
}

/// A failed connection: the kind, and the error's text (which holds no secret).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Unreachable {
    /// Why.
    pub kind: UnreachableKind,
    /// What the client library or the server said.
    pub message: String,
}

impl Unreachable {
    fn of(e: &tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let auth = [
                SqlState::INVALID_PASSWORD,
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ];
            return Self {
                kind: if auth.contains(db.code()) {
                    UnreachableKind::Authentication
                } else {
                    UnreachableKind::Other
                },
                message: db.message().to_owned(),
            };
        }
        let message = e.to_string();
        let io = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        // tokio-postgres keeps its error kinds private; their texts are stable.
        let kind = if message.starts_with("error performing TLS handshake") {
            UnreachableKind::Tls
        } else if io == Some(std::io::ErrorKind::ConnectionRefused) {
            UnreachableKind::Refused
        } else if io == Some(std::io::ErrorKind::TimedOut) || message.starts_with("timeout") {
            UnreachableKind::Timeout
        } else if message.starts_with("authentication error")
            || message.contains("password missing")
        {
            UnreachableKind::Authentication
        } else {
            UnreachableKind::Other
        };
        Self { kind, message }
    }
}

impl Targets {
    /// A fresh admin connection to the entry, outside the pools, bounded by the connect
    /// timeout as a whole (the handshake included): for diagnosis, not for work.
    pub async fn probe(
        &self,
        entry: &RegistryEntry,
    ) -> Result<tokio_postgres::Client, Unreachable> {
        let key = PoolKey::of(entry);
        let internal = |e: anyhow::Error| Unreachable {
            kind: UnreachableKind::Other,
            message: format!("{e:#}"),
        };
        let tls = self.tls(&key).map_err(internal)?;
        let timeout = self.settings.connect_timeout;
        match tokio::time::timeout(timeout, self.pg_config(&key).connect(tls)).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                Ok(client)
            }
            Ok(Err(e)) => Err(Unreachable::of(&e)),
            Err(_) => Err(Unreachable {
                kind: UnreachableKind::Timeout,
                message: format!(
                    "no answer from {}:{} within {} s",
                    entry.hostname,
                    entry.port,
                    timeout.as_secs_f32()
                ),
            }),
        }
    }
}
