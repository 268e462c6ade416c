//! `pg-user-api serve`.

use crate::config::{ApiCredentials, Config};
use crate::startup::{Application, shutdown_signal};
use crate::store::redact_url;
use crate::target::AdminCredentials;

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let _logs = crate::logging::buffer_while_serving();
    // The compatibility Basic user is required unless configuration turns it off (then
    // callers use API keys or the Basic users of `[auth]`).
    let api = if config.auth.basic_enabled {
        Some(ApiCredentials::from_env()?)
    } else {
        None
    };
    let admin = AdminCredentials::from_env()?;
    let server = Application::build(&config, api, admin).await?;
    tracing::info!(listen = %config.listen, port = server.port(), store = %redact_url(&config.store), "serving");
    server.run_until(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
