//! `pg-user-api doctor`: what the admin role can do on each registry entry, for people or
//! as the JSON of `GET /api/v1/registry/check`.

use std::fmt::Write as _;

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::service::App;
use crate::service::doctor::{self, CheckReport, EntryCheck};
use crate::target::AdminCredentials;

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One line per finding, grouped by entry, and a summary line.
    Text,
    /// The JSON of `GET /api/v1/registry/check`.
    Json,
}

/// `doctor` options.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Only entries of this environment.
    #[arg(long)]
    env: Option<String>,
    /// Only entries of this database name.
    #[arg(long)]
    database: Option<String>,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Checks the entries with the admin role of `PG_ADMIN_USER`; fails (exit status 1) when
/// an active entry has a problem.
pub async fn run(args: DoctorArgs, config: &Config) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let store = crate::store::open(&config.store).await?;
    let app = App::open(config, store, None, AdminCredentials::from_env()?).await?;
    let entries = doctor::select(&app, args.env.as_deref(), args.database.as_deref()).await?;
    let report = doctor::check(&app, entries).await;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", text(&report)),
    }
    if report.has_problems() {
        bail!(
            "{} of {} active entries have problems",
            report.summary.problems,
            report.summary.problems + report.summary.ok
        );
    }
    Ok(())
}

/// The report for people: a heading per entry, one line per finding, a summary line.
pub fn text(report: &CheckReport) -> String {
    let mut out = String::new();
    for e in &report.entries {
        entry_text(&mut out, e);
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "summary: {} entries: {} ok, {} with problems, {} inactive (not checked)",
        s.entries, s.ok, s.problems, s.inactive
    );
    out
}

fn entry_text(out: &mut String, e: &EntryCheck) {
    let r = &e.entry;
    let _ = writeln!(
        out,
        "{}/{} ({}:{}, sslmode {})",
        r.env, r.db_name, r.hostname, r.port, r.sslmode
    );
    let mut line = |ok: bool, text: String| {
        let _ = writeln!(out, "  {:<4}  {text}", if ok { "ok" } else { "FAIL" });
    };
    if !r.active {
        line(true, "inactive: not checked".into());
        return;
    }
    if let Some(why) = &e.unreachable {
        line(
            false,
            format!(
                "unreachable ({}): {}",
                format!("{:?}", why.kind).to_lowercase(),
                why.message
            ),
        );
        return;
    }
    if let (Some(version), Some(tls)) = (&e.server_version, &e.tls) {
        line(
            true,
            format!(
                "reachable: PostgreSQL {version}; TLS {}; certificate {}",
                if tls.in_use { "in use" } else { "not in use" },
                if tls.certificate_checked {
                    "checked"
                } else {
                    "not checked"
                }
            ),
        );
    }
    if let Some(a) = &e.admin {
        let mut attributes: Vec<&str> = [
            (a.superuser, "SUPERUSER"),
            (a.createrole, "CREATEROLE"),
            (a.createdb, "CREATEDB"),
            (a.replication, "REPLICATION"),
            (a.bypassrls, "BYPASSRLS"),
            (a.pg_signal_backend, "pg_signal_backend"),
        ]
        .into_iter()
        .filter_map(|(has, word)| has.then_some(word))
        .collect();
        if attributes.is_empty() {
            attributes.push("no attributes");
        }
        let members: Vec<String> = a
            .memberships
            .iter()
            .map(|m| {
                let mut options = Vec::new();
                if m.admin {
                    options.push("admin option");
                }
                if !m.inherit {
                    options.push("not inherited");
                }
                if options.is_empty() {
                    m.role.clone()
                } else {
                    format!("{} ({})", m.role, options.join(", "))
                }
            })
            .collect();
        line(
            true,
            format!(
                "admin role {}: {}; member of: {}; database owner {} ({})",
                a.role,
                attributes.join(", "),
                if members.is_empty() {
                    "none".into()
                } else {
                    members.join(", ")
                },
                a.database_owner,
                if a.member_of_database_owner {
                    "member"
                } else {
                    "not a member"
                }
            ),
        );
        for op in &e.operations {
            if op.ok {
                line(true, op.operation.clone());
            }
            for m in &op.missing {
                line(false, format!("{}: {}", op.operation, m.message(&a.role)));
            }
        }
    }
    let adopt = format!("pg-user-api adopt --env {} --database {}", r.env, r.db_name);
    if let Some(why) = &e.adoption_error {
        let _ = writeln!(out, "  note  per-user grants not surveyed: {why}");
    }
    if let Some(a) = &e.adoption {
        for g in &a.groups {
            let _ = writeln!(
                out,
                "  note  {} users hold per-user grants that group {} covers (profiles {}); {adopt} moves them",
                g.users,
                g.group,
                g.profiles.join(", ")
            );
        }
        if a.skipped > 0 {
            let _ = writeln!(
                out,
                "  note  {} users keep per-user grants adopt cannot move here (NOINHERIT on PostgreSQL 15)",
                a.skipped
            );
        }
    }
}
