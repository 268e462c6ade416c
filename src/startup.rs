//! Building and running the server, so tests boot the real application on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{ApiCredentials, Config, LogFormat};
use crate::service::App;
use crate::store::Store;
use crate::target::AdminCredentials;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: Arc<App>,
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
        install_crypto_provider();
        crate::http::metrics::handle();
        let app = Arc::new(App::open(config, store, api, admin).await?);
        crate::http::auth::spawn_failure_summaries(&app);
        crate::http::sso::spawn_pruning(&app);
        if let Some(days) = config.audit.retention_days {
            spawn_pruning(app.store.clone(), days, crate::config::audit_key()?);
        }
        crate::notify::reminders::spawn(&app);
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self { listener, app })
    }

    /// The bound port (useful with `127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state requests are served with.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = crate::http::router(self.app);
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

/// Prunes audit records older than `days`, hourly, leaving signed checkpoints.
fn spawn_pruning(store: Arc<dyn Store>, days: u32, key: Option<secrecy::SecretString>) {
    use secrecy::ExposeSecret;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            let key = key.as_ref().map(|k| k.expose_secret().as_bytes());
            match store.audit_prune(before, key).await {
                Ok(Some(c)) => tracing::info!(
                    pruned = c.pruned,
                    through_id = c.through_id,
                    "audit records pruned"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "audit pruning failed"),
            }
        }
    });
}

/// rustls needs exactly one process-wide provider; ring is the one compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Structured logs to stderr; `RUST_LOG` narrows or widens them (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
