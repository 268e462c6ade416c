//! `pg-user-api adopt`: moves users created under per-user grants to membership in their
//! profile's group, per registry entry; a dry run unless `--apply`.

use std::fmt::Write as _;

use anyhow::bail;
use clap::Args;

use super::doctor::Format;
use crate::config::Config;
use crate::service::App;
use crate::service::adopt::{self, EntryMoves, Outcome};
use crate::service::doctor;
use crate::target::AdminCredentials;

/// `adopt` options.
#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// Only entries of this environment.
    #[arg(long)]
    env: Option<String>,
    /// Only entries of this database name.
    #[arg(long)]
    database: Option<String>,
    /// Move the users (each in its own transaction, audited); without it, only print the plan.
    #[arg(long)]
    apply: bool,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Plans or runs the moves with the admin role of `PG_ADMIN_USER`; fails (exit status 1)
/// when an entry could not be worked on or a user's move failed.
pub async fn run(args: AdoptArgs, config: &Config) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let store = crate::store::open(&config.store).await?;
    let app = App::open(config, store, None, AdminCredentials::from_env()?).await?;
    let entries = doctor::select(&app, args.env.as_deref(), args.database.as_deref()).await?;
    let caller = super::registry::cli_caller();
    let report = adopt::run(&app, &caller, entries, args.apply).await;
    // Every move's outcome follows its intent and was waited for; anything queued is
    // stored before the process ends all the same.
    app.audit.flush().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", text(&report, args.apply)),
    }
    let errors = report.iter().filter(|e| e.error.is_some()).count();
    let failed = report
        .iter()
        .flat_map(|e| &e.users)
        .filter(|u| u.outcome == Outcome::Failed)
        .count();
    if errors + failed > 0 {
        bail!("{errors} entries could not be worked on, {failed} users failed to move");
    }
    Ok(())
}

/// The report for people: per entry, per user its outcome and plan; a summary line.
pub fn text(report: &[EntryMoves], apply: bool) -> String {
    let mut out = String::new();
    let count = |o: Outcome| {
        report
            .iter()
            .flat_map(|e| &e.users)
            .filter(|u| u.outcome == o)
            .count()
    };
    for e in report {
        let r = &e.entry;
        let _ = writeln!(out, "{}/{} ({}:{})", r.env, r.db_name, r.hostname, r.port);
        if let Some(why) = &e.error {
            let _ = writeln!(out, "  FAIL  {why}");
        }
        if e.error.is_none() && e.users.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        }
        for u in &e.users {
            let what = match u.outcome {
                Outcome::WouldMove => "would move",
                Outcome::Moved => "moved",
                Outcome::Skipped => "skipped",
                Outcome::Failed => "FAILED",
            };
            let _ = writeln!(
                out,
                "  {} ({}) -> {}: {what}, {} per-user privileges{}",
                u.username,
                u.profile,
                u.group,
                u.revoked.len(),
                u.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            if u.outcome == Outcome::WouldMove {
                for s in &u.plan {
                    let _ = writeln!(out, "    {};", s.shown());
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "summary: {} moved, {} would move, {} skipped, {} failed{}",
        count(Outcome::Moved),
        count(Outcome::WouldMove),
        count(Outcome::Skipped),
        count(Outcome::Failed),
        if apply {
            ""
        } else {
            " (dry run: nothing was changed; --apply moves them)"
        }
    );
    out
}
