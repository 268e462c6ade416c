//! Test support: two private PostgreSQL clusters (standing for dev and prod) shared by all
//! tests of this binary, and `spawn_app()` to boot the real server on a random port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pgua::cli::demo::{DEMO_ADMIN, prepare_cluster};
use pgua::cluster::{ClusterOptions, TempCluster, reap_stale_clusters};
use pgua::config::{ApiCredentials, Config};
use pgua::plan::Password;
use pgua::startup::Application;
use pgua::store::{NewEntry, SslMode, Store};
use pgua::target::AdminCredentials;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::Value;

pub mod issuer;

pub use issuer::localhost_tls;

/// What tests need to know of one cluster; the cluster itself lives in `OWNED`.
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    pub port: u16,
    pub superuser_password: String,
    pub admin_password: String,
    pub log_path: std::path::PathBuf,
}

impl ClusterInfo {
    fn of(c: &TempCluster, admin_password: &str) -> Self {
        Self {
            port: c.port(),
            superuser_password: c.superuser_password().to_owned(),
            admin_password: admin_password.to_owned(),
            log_path: c.log_path(),
        }
    }

    /// A superuser connection to `db`.
    pub async fn superuser(&self, db: &str) -> tokio_postgres::Client {
        connect(self.port, db, "postgres", &self.superuser_password)
            .await
            .expect("superuser connects")
    }

    /// `server_version_num`, e.g. 180004: what a test expects may depend on it.
    pub async fn server_version_num(&self) -> i32 {
        self.superuser("postgres")
            .await
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Clusters are stopped and removed when the test process exits.
static OWNED: Mutex<Vec<TempCluster>> = Mutex::new(Vec::new());

extern "C" fn stop_clusters() {
    if let Ok(mut owned) = OWNED.lock() {
        // Side by side: removing a data directory of a hundred test databases takes seconds.
        std::thread::scope(|s| {
            for cluster in owned.drain(..) {
                s.spawn(move || drop(cluster));
            }
        });
    }
}

/// The dev and prod clusters, started once per test process.
pub struct Clusters {
    pub dev: ClusterInfo,
    pub prod: ClusterInfo,
}

pub fn clusters() -> &'static Clusters {
    static CLUSTERS: OnceLock<Clusters> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        reap_stale_clusters();
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_clusters) };
        let logging = ClusterOptions {
            settings: vec![("log_statement".into(), "all".into())],
            ..Default::default()
        };
        // One admin role name and password on both, as the service has one admin identity.
        let admin_password = Password::generate();
        let pw = admin_password.expose();
        let (dev, prod) = std::thread::scope(|s| {
            let dev = s.spawn(|| start_prepared(logging.clone(), pw));
            let prod = s.spawn(|| start_prepared(ClusterOptions::default(), pw));
            (dev.join().unwrap(), prod.join().unwrap())
        });
        Clusters { dev, prod }
    })
}

/// Starts a cluster with the demo's layout: admin role `pgua_admin`, owner role `app_owner`,
/// databases `dev` and `prod` with a table `public.orders`.
pub fn start_prepared(options: ClusterOptions, admin_password: &str) -> ClusterInfo {
    let cluster = start_prepared_cluster(options, admin_password);
    with_groups(&cluster);
    let info = ClusterInfo::of(&cluster, admin_password);
    OWNED.lock().unwrap().push(cluster);
    info
}

/// Creates, as the admin role, the group roles of the built-in profiles in `dev` and `prod`,
/// as a service that has served before leaves them. The clusters are shared by every test,
/// and tests count their own audit records: whichever test happened to create a user first
/// would otherwise also find a group's audited creation in its log. First use is tested on
/// fresh databases (`groups::`).
fn with_groups(cluster: &TempCluster) {
    use pgua::plan::groups::Group;
    use pgua::plan::{NamePolicy, Profiles, SchemaFacts, batch};
    let profiles = Profiles::load(&Default::default(), &NamePolicy::default(), &[]).unwrap();
    // What the service reads there: `public` (of pg_database_owner, i.e. app_owner) with
    // app_owner's `orders`.
    let facts = [SchemaFacts {
        name: "public".into(),
        owners: vec![APP_OWNER.into()],
    }];
    for db in ["dev", "prod"] {
        let mut groups: Vec<Group> = profiles.iter().map(|p| Group::for_profile(p, db)).collect();
        groups.sort_by(|a, b| a.name().as_str().cmp(b.name().as_str()));
        groups.dedup_by(|a, b| a.name() == b.name());
        for g in groups {
            let sql = batch(&g.create(&facts).unwrap());
            cluster
                .psql(db, &format!("SET ROLE {DEMO_ADMIN}; {sql}"))
                .expect("group created");
        }
    }
}

/// The owner of the demo layout's databases and tables.
const APP_OWNER: &str = "app_owner";

/// Like [`start_prepared`], but the caller owns the cluster (to stop and restart it).
pub fn start_prepared_cluster(options: ClusterOptions, admin_password: &str) -> TempCluster {
    let cluster = TempCluster::start(options).expect("cluster starts");
    prepare_cluster(&cluster, admin_password).expect("cluster prepared");
    cluster
}

/// Connects with a password over TCP, as any client would.
pub async fn connect(
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user(user)
        .password(password)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Waits (up to 20 s) until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "nothing listens on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether `program --version` runs and succeeds.
pub fn found(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A role name no other test uses.
/// Polls `check` every 25 ms until it gives a value; fails saying `what` did not happen
/// after 400 tries (10 s).
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what}");
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A free TCP port with nothing listening on it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An active registry entry for `db_name` on 127.0.0.1:`port`, without TLS.
pub fn local_entry(env: &str, db_name: &str, port: u16) -> NewEntry {
    NewEntry {
        env: env.into(),
        db_name: db_name.into(),
        hostname: "127.0.0.1".into(),
        port,
        active: true,
        notes: None,
        sslmode: SslMode::Disable,
    }
}

/// A running server and what tests need to call it.
pub struct TestApp {
    pub base: String,
    pub user: String,
    pub pass: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The store's URL, for the CLI and for direct access.
    pub store_url: String,
    pub clusters: &'static Clusters,
    /// The server's shared state, for what HTTP does not show (e.g. notification counters).
    pub state: Arc<pgua::service::App>,
    _dir: tempfile::TempDir,
}

/// A response, parsed.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn str(&self, key: &str) -> &str {
        self.body[key].as_str().unwrap_or_default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

/// Boots the server with `config`, a fresh SQLite store and the registry entries
/// dev/dev, prod/prod, dev/archive (inactive) and qa/down (nothing listening).
pub async fn spawn_app_with(config: Config) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("pg_registry.db");
    let store_url = format!("sqlite://{}", store_path.display());
    let store = pgua::store::open(&store_url).await.unwrap();
    spawn_app_on(config, store, store_url, dir, None).await
}

/// Like [`spawn_app_with`], with another admin role than the clusters' `pgua_admin`.
pub async fn spawn_app_as(config: Config, admin: AdminCredentials) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("pg_registry.db").display());
    let store = pgua::store::open(&store_url).await.unwrap();
    spawn_app_on(config, store, store_url, dir, Some(admin)).await
}

/// Like [`spawn_app_with`], on the store `store_url` names; registry entries already there
/// (another replica added them) are kept.
pub async fn spawn_app_with_store(config: Config, store_url: &str) -> TestApp {
    let store = pgua::store::open(store_url).await.unwrap();
    spawn_app_on(
        config,
        store,
        store_url.to_owned(),
        tempfile::tempdir().unwrap(),
        None,
    )
    .await
}

async fn spawn_app_on(
    mut config: Config,
    store: Arc<dyn Store>,
    store_url: String,
    dir: tempfile::TempDir,
    admin: Option<AdminCredentials>,
) -> TestApp {
    let clusters = clusters();
    let entries = [
        ("dev", "dev", clusters.dev.port, true),
        ("prod", "prod", clusters.prod.port, true),
        ("dev", "archive", clusters.dev.port, false),
        ("qa", "down", closed_port(), true),
    ];
    for (env, db, port, active) in entries {
        if store.registry_get(env, db).await.unwrap().is_some() {
            continue;
        }
        store
            .registry_add(&NewEntry {
                env: env.into(),
                db_name: db.into(),
                hostname: "127.0.0.1".into(),
                port,
                active,
                notes: None,
                sslmode: SslMode::Disable,
            })
            .await
            .unwrap();
    }
    // A test that must know the port before the server starts (a redirect URL registered
    // at an identity provider) names it; every other test gets a free one.
    if config.listen == pgua::config::DEFAULT_LISTEN {
        config.listen = "127.0.0.1:0".into();
    }
    let pass = Password::generate().expose().to_owned();
    let api = ApiCredentials {
        user: "tester".into(),
        password: SecretString::from(pass.clone()),
    };
    let admin = admin.unwrap_or_else(|| AdminCredentials {
        user: DEMO_ADMIN.into(),
        password: Some(SecretString::from(clusters.dev.admin_password.clone())),
    });
    let server = Application::with_store(&config, store.clone(), Some(api), admin)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", server.port());
    let state = server.app().clone();
    tokio::spawn(server.run_until(std::future::pending()));
    TestApp {
        base,
        user: "tester".into(),
        pass,
        client: reqwest::Client::new(),
        store,
        store_url,
        clusters,
        state,
        _dir: dir,
    }
}

impl TestApp {
    async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET with query parameters, authenticated.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .query(query)
            .send()
            .await
            .unwrap();
        Self::reply(res).await
    }

    /// POST with a JSON body, authenticated.
    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .json(&body)
            .send()
            .await
            .unwrap();
        Self::reply(res).await
    }

    /// POST with a form body, authenticated.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(form).unwrap();
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Self::reply(res).await
    }

    /// GET with an API key.
    pub async fn get_bearer(&self, token: &str, path: &str, query: &[(&str, &str)]) -> Reply {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap();
        Self::reply(res).await
    }

    /// A new API key with these scopes (comma lists), straight through the store.
    pub async fn key(&self, environments: &str, operations: &str, profiles: &str) -> String {
        let asked = pgua::service::params::KeyScopes {
            environments: environments.to_owned(),
            operations: Some(operations.to_owned()),
            profiles: Some(profiles.to_owned()),
            ..Default::default()
        };
        let scopes = pgua::service::keys::scopes(&asked).unwrap();
        let name = unique("key");
        pgua::service::keys::create(self.store.as_ref(), &name, "tests", &scopes, None)
            .await
            .unwrap()
            .1
    }

    /// GET without credentials, or with the given ones.
    pub async fn get_as(&self, path: &str, auth: Option<(&str, &str)>) -> Reply {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        Self::reply(req.send().await.unwrap()).await
    }

    /// Registers `env`/`db_name` on 127.0.0.1:`port`; call it before the first request.
    pub async fn register(&self, env: &str, db_name: &str, port: u16) {
        self.store
            .registry_add(&local_entry(env, db_name, port))
            .await
            .unwrap();
    }

    /// A new database on the dev cluster, owned by `app_owner` and registered under `env`.
    /// Call it before the first request: the server reads the registry into a snapshot.
    pub async fn fresh_database(&self, env: &str) -> String {
        let db = unique("db");
        let su = self.clusters.dev.superuser("postgres").await;
        su.batch_execute(&format!("CREATE DATABASE {db} OWNER app_owner"))
            .await
            .unwrap();
        self.register(env, &db, self.clusters.dev.port).await;
        db
    }

    /// Whether a role exists on the dev cluster.
    pub async fn dev_role_exists(&self, name: &str) -> bool {
        let c = self.clusters.dev.superuser("postgres").await;
        c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .unwrap()
            .is_some()
    }

    /// Every role name on the dev cluster.
    pub async fn dev_roles(&self) -> Vec<String> {
        let c = self.clusters.dev.superuser("postgres").await;
        c.query("SELECT rolname::text FROM pg_roles ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Waits until the audit records the server has queued (reads' outcomes are not waited
    /// for by the calls themselves) are in the store.
    pub async fn flush_audit(&self) {
        self.state.audit.flush().await.unwrap();
    }

    /// All audit records, oldest first (the queued ones included).
    pub async fn audit(&self) -> Vec<pgua::store::AuditRecord> {
        self.flush_audit().await;
        let mut records = self.store.audit_latest(100_000).await.unwrap();
        records.reverse();
        records
    }
}

/// The URL of a new, empty database on the prod cluster, for a PostgreSQL store. The prod
/// cluster, because the dev cluster logs every statement for other tests to read.
pub async fn fresh_postgres_store_url() -> String {
    let cluster = &clusters().prod;
    let db = unique("pgua_store");
    cluster
        .superuser("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    format!(
        "postgres://postgres:{}@127.0.0.1:{}/{db}",
        cluster.superuser_password, cluster.port
    )
}
