//! Building and running the server, so tests boot the real application on port 0.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{ApiCredentials, Config, HttpConfig};
use crate::service::App;
use crate::store::Store;
use crate::target::AdminCredentials;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: Arc<App>,
    http: HttpConfig,
}

impl Application {
    /// Opens the store the config names and binds the listen address.
    pub async fn build(
        config: &Config,
        api: Option<ApiCredentials>,
        admin: AdminCredentials,
    ) -> anyhow::Result<Self> {
        let store = crate::store::open(&config.store).await.with_context(|| {
            format!("opening store {}", crate::store::redact_url(&config.store))
        })?;
        Self::with_store(config, store, api, admin).await
    }

    /// Like [`Application::build`], with a store already opened.
    pub async fn with_store(
        config: &Config,
        store: Arc<dyn Store>,
        api: Option<ApiCredentials>,
        admin: AdminCredentials,
    ) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        crate::http::metrics::handle();
        let app = Arc::new(App::open(config, store, api, admin).await?);
        crate::service::jobs::start(&app, config)?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            app,
            http: config.http.clone(),
        })
    }

    /// The bound port (useful with `127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state requests are served with.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` completes, then drains in-flight requests and the audit
    /// records still queued.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.app.clone();
        let router = crate::http::router(self.app);
        let served = crate::http::serve::serve(self.listener, router, &self.http, shutdown).await;
        if let Err(e) = app.audit.flush().await {
            tracing::error!(error = %e, "could not store the audit records queued at shutdown");
        }
        served
    }
}

/// Threads the runtime keeps at most for blocking work: argon2 and the Basic check, DNS
/// lookups. Tokio's default is 512; under a burst each becomes a thread with its own malloc
/// arena, kept after the burst — tens of MiB for no gain on a few cores, where more threads
/// hashing at once do not finish any sooner. Calls beyond it wait in tokio's queue for a
/// free thread. (SQLite connections have threads of their own, outside this pool, and so
/// do new passwords' verifiers: `service::passwords`.)
const BLOCKING_THREADS: usize = 8;

/// The malloc arenas glibc may make (its default is 8 per core): each thread that contends
/// for one gets one, and memory freed there is held for that arena's next use, so the
/// server's resident memory grew with every thread that ever ran. One arena measured 1 MiB
/// less at the peak than two, with no more CPU per call on two cores (README, *Memory*).
/// An operator's `MALLOC_ARENA_MAX` takes precedence.
const MALLOC_ARENAS: i32 = 1;

/// The tokio runtime every command runs on, with `workers` threads (`http.worker_threads`)
/// and memory bounded as described at [`BLOCKING_THREADS`] and [`MALLOC_ARENAS`].
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Sets glibc's arena limit, before the runtime starts any thread.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator tunable; no other thread runs yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: call it before the listener is bound, so that a signal arriving
/// as soon as the port answers drains the server instead of killing it outright.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested; draining in-flight requests");
    })
}
