//! `pg-user-api audit …`.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::service::audit;
use crate::service::params::{AuditQuery, parse_time_param};
use crate::store::chain;

/// Audit log commands.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum AuditCommand {
    /// Print the latest records, newest first.
    List {
        /// How many records.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Check the hash chain; exits non-zero and names the first broken record if any.
    Verify,
    /// Remove records older than `--before` (default: `[audit] retention_days`), leaving a
    /// checkpoint signed with PGUA_AUDIT_KEY.
    Prune {
        /// RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        before: Option<String>,
    },
    /// Write records (all, or those the filters select) as CSV or JSON.
    Export {
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// From this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Before this time.
        #[arg(long)]
        until: Option<String>,
        /// Environment.
        #[arg(long)]
        env: Option<String>,
        /// Database.
        #[arg(long)]
        database: Option<String>,
        /// Role name.
        #[arg(long)]
        username: Option<String>,
        /// Operation (`create` matches every profile's create).
        #[arg(long)]
        operation: Option<String>,
        /// Caller.
        #[arg(long)]
        principal: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

/// Runs an audit command.
pub async fn run(cmd: AuditCommand, config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.store).await?;
    match cmd {
        AuditCommand::Verify => {
            let key = crate::config::audit_key()?;
            let key = key.as_ref().map(|k| k.expose_secret().as_bytes());
            let v = chain::verify(store.as_ref(), key).await?;
            if let Some(b) = v.broken {
                bail!(
                    "audit chain broken at record #{}: {} ({} records before it are intact)",
                    b.id,
                    b.reason,
                    v.chained
                );
            }
            println!(
                "audit chain intact: {} records chained; {} older records before the chain began",
                v.chained, v.legacy
            );
            if let Some(c) = &v.checkpoint {
                let trust = match v.trust {
                    chain::CheckpointTrust::Verified => "signature verified",
                    chain::CheckpointTrust::NotChecked => {
                        "signature not checked: set PGUA_AUDIT_KEY"
                    }
                    _ => "UNSIGNED: set PGUA_AUDIT_KEY when pruning",
                };
                println!(
                    "records through #{} ({}) were pruned at {}; checkpoint {trust}",
                    c.through_id, c.pruned, c.created_at
                );
            }
        }
        AuditCommand::Prune { before } => {
            let before = match (before, config.audit.retention_days) {
                (Some(b), _) => parse_time_param("until", &b)?,
                (None, Some(days)) => chrono::Utc::now() - chrono::Duration::days(i64::from(days)),
                (None, None) => bail!("give --before, or set [audit] retention_days"),
            };
            let key = crate::config::audit_key()?;
            match store
                .audit_prune(before, key.as_ref().map(|k| k.expose_secret().as_bytes()))
                .await?
            {
                Some(c) => println!(
                    "pruned {} records through #{}; checkpoint {}",
                    c.pruned,
                    c.through_id,
                    if c.signature == "unsigned" {
                        "unsigned"
                    } else {
                        "signed"
                    }
                ),
                None => println!("no record older than {before}"),
            }
        }
        AuditCommand::Export {
            format,
            since,
            until,
            env,
            database,
            username,
            operation,
            principal,
            output,
        } => {
            let query = AuditQuery {
                since,
                until,
                env,
                database,
                username,
                operation,
                principal,
                ..Default::default()
            };
            let mut filter = audit::export_filter(&query)?;
            filter.limit = 1000;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(std::io::stdout().lock()),
            };
            let json = match format.as_str() {
                "json" => true,
                "csv" => false,
                other => bail!("format '{other}' must be csv or json"),
            };
            let mut first = true;
            out.write_all(if json { b"[" } else { b"" })?;
            loop {
                let page = store.audit_query(&filter).await?;
                let Some(last) = page.last() else { break };
                filter.after_id = last.id;
                if json {
                    for r in &page {
                        out.write_all(if first { b"\n" } else { b",\n" })?;
                        serde_json::to_writer(&mut out, r)?;
                        first = false;
                    }
                } else {
                    audit::write_csv(&mut out, &page, first)?;
                    first = false;
                }
            }
            if json {
                out.write_all(b"\n]\n")?;
            } else if first {
                audit::write_csv(&mut out, &[], true)?;
            }
            out.flush()?;
        }
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
