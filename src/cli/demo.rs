//! `pg-user-api demo`: a throw-away PostgreSQL, a temporary store, random credentials.

use anyhow::Context;
use secrecy::SecretString;

use crate::cluster::{ClusterOptions, PgBinaries, TempCluster, reap_stale_clusters};
use crate::config::{ApiCredentials, Config};
use crate::plan::Password;
use crate::plan::sql::{ident, literal};
use crate::startup::{Application, shutdown_signal};
use crate::store::{NewEntry, SslMode};
use crate::target::AdminCredentials;

/// The admin role the demo creates: CREATEROLE, member of the owner of the demo data.
pub const DEMO_ADMIN: &str = "pgua_admin";

/// Creates, in a fresh cluster, the admin role and the `dev` and `prod` databases owned by
/// `app_owner` (with one table each), as a platform team would set a target up.
pub fn prepare_cluster(cluster: &TempCluster, admin_password: &str) -> anyhow::Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(admin_password.as_bytes());
    let admin = ident(DEMO_ADMIN);
    cluster.psql(
        "postgres",
        &format!(
            "CREATE ROLE app_owner NOLOGIN;
             CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD {};
             GRANT app_owner TO {admin} WITH ADMIN OPTION;
             GRANT pg_signal_backend TO {admin};",
            literal(&verifier)
        ),
    )?;
    // What 16+ asks of the admin role beyond that, as the README's admin table says: CREATEDB
    // for `dba`, and ADMIN OPTION (without its privileges) on the predefined roles `grant
    // on=role` may give.
    let version: u32 = cluster
        .psql("postgres", "SHOW server_version_num")?
        .trim()
        .parse()?;
    if version >= 160000 {
        cluster.psql(
            "postgres",
            &format!(
                "ALTER ROLE {admin} CREATEDB;
                 GRANT pg_read_all_data, pg_write_all_data TO {admin}
                   WITH ADMIN TRUE, INHERIT FALSE, SET FALSE;"
            ),
        )?;
    }
    for db in ["dev", "prod"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db} OWNER app_owner"))?;
        cluster.psql(
            db,
            "SET ROLE app_owner;
             CREATE TABLE public.orders (id bigserial PRIMARY KEY, item text NOT NULL);
             INSERT INTO public.orders (item) VALUES ('demo');",
        )?;
    }
    Ok(())
}

/// The demo's address: `preferred` (by default the original's 127.0.0.1:5000) when it is
/// free, otherwise any free port on the same host, so a second demo or a busy port 5000
/// never stops it.
async fn listen_address(preferred: &str) -> String {
    // Bound as the server binds (SO_REUSEADDR), so a port in TIME_WAIT counts as free.
    match tokio::net::TcpListener::bind(preferred).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let host = preferred
                .rsplit_once(':')
                .map_or(preferred, |(host, _)| host);
            println!("{preferred} is in use; the demo listens on a free port instead");
            format!("{host}:0")
        }
        // Free: released here and bound again by the server (an error then is reported as
        // for any address); any other error is the server's to report.
        _ => preferred.to_owned(),
    }
}

/// Runs the demo until Ctrl-C, then removes everything it made.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // From here on Ctrl-C stops the demo cleanly, even while it is still starting.
    let shutdown = shutdown_signal()?;
    let _logs = crate::logging::buffer_while_serving();
    reap_stale_clusters();
    PgBinaries::locate()?;
    println!("starting a throw-away PostgreSQL cluster…");
    let cluster =
        tokio::task::spawn_blocking(|| TempCluster::start(ClusterOptions::default())).await??;
    let admin_password = Password::generate();
    prepare_cluster(&cluster, admin_password.expose()).context("preparing the demo cluster")?;

    let dir = tempfile::Builder::new().prefix("pgua-demo-").tempdir()?;
    config.store = format!("sqlite://{}", dir.path().join("pg_registry.db").display());
    let store = crate::store::open(&config.store).await?;
    for env in ["dev", "prod"] {
        store
            .registry_add(&NewEntry {
                env: env.into(),
                db_name: env.into(),
                hostname: cluster.host().into(),
                port: cluster.port(),
                active: true,
                notes: Some("demo cluster".into()),
                sslmode: SslMode::Disable,
            })
            .await?;
    }
    let api_password = Password::generate();
    let api = ApiCredentials {
        user: "demo".into(),
        password: SecretString::from(api_password.expose().to_owned()),
    };
    let admin = AdminCredentials {
        user: DEMO_ADMIN.into(),
        password: Some(SecretString::from(admin_password.expose().to_owned())),
    };
    config.listen = listen_address(&config.listen).await;
    let server = Application::with_store(&config, store, Some(api), admin).await?;
    let base = format!("http://127.0.0.1:{}", server.port());
    let auth = format!("demo:{}", api_password.expose());
    println!(
        "\npg-user-api demo is running at {base}
PostgreSQL {}:{} (databases dev, prod; admin role {DEMO_ADMIN})
API credentials (random, for this run only): {auth}
Web console: {base}/ui (user demo, the password above)

Try:
  curl -s -u '{auth}' '{base}/api/v1/registry'
  curl -s -u '{auth}' '{base}/api/v1/users/app?env=dev&database=dev&servername=web01&port=8080'
  curl -s -u '{auth}' '{base}/api/v1/users/readonly?env=prod&database=prod&username=analyst'
  curl -s -u '{auth}' '{base}/api/v1/users/find?env=dev&database=dev&username=web01_8080'
  curl -s -u '{auth}' '{base}/api/v1/users/reset?env=dev&database=dev&username=web01_8080'
  curl -s -u '{auth}' '{base}/api/v1/users/devqa?env=dev&database=dev&username=alice&dry_run=true'
  curl -s -u '{auth}' '{base}/api/v1/users/all?env=dev&database=dev'

Press Ctrl-C to stop; the cluster and the store are removed.",
        cluster.host(),
        cluster.port()
    );
    server.run_until(shutdown).await?;
    drop(cluster);
    drop(dir);
    println!("demo stopped; everything removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_address_gives_way_to_a_free_port_on_the_same_host() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().to_string();
        assert_eq!(listen_address(&taken).await, "127.0.0.1:0");
        drop(held);
        assert_eq!(
            listen_address(&taken).await,
            taken,
            "a free address is used as given"
        );
    }
}
