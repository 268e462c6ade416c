//! `pg-user-api audit …`.

use clap::Subcommand;

use crate::config::Config;

/// Audit log commands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the latest records, newest first.
    List {
        /// How many records.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Runs an audit command.
pub async fn run(cmd: AuditCommand, config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.store).await?;
    match cmd {
        AuditCommand::List { limit } => {
            println!(
                "{:<27} {:<7} {:<16} {:<6} {:<20} {:<24} {:<10} {:<15} {:<36} detail",
                "performed_at",
                "status",
                "operation",
                "env",
                "database",
                "user",
                "principal",
                "client",
                "request_id"
            );
            for r in store.audit_latest(limit).await? {
                println!(
                    "{:<27} {:<7} {:<16} {:<6} {:<20} {:<24} {:<10} {:<15} {:<36} {}{}",
                    r.performed_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    r.status,
                    r.operation,
                    r.env,
                    r.db_name,
                    r.pg_username,
                    r.principal,
                    r.client_addr,
                    r.request_id,
                    r.detail,
                    r.error.map(|e| format!(": {e}")).unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}
