//! `pg-user-api seed` and `pg-user-api registry …`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Subcommand;

use crate::auth::Scopes;
use crate::config::Config;
use crate::error::Error;
use crate::service::params::Entry;
use crate::service::registry::{self as ops, SeedOutcome};
use crate::service::{App, Caller};
use crate::store::{NewEntry, SslMode, Store};
use crate::target::AdminCredentials;

/// Registry commands.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// List all entries.
    List,
    /// Add an entry.
    Add {
        /// Environment (dev, qa, uat, prod, …).
        #[arg(long)]
        env: String,
        /// Database name on the target server.
        #[arg(long)]
        database: String,
        /// Target server host.
        #[arg(long)]
        host: String,
        /// Target server port.
        #[arg(long, default_value_t = 5432)]
        port: u16,
        /// Free text.
        #[arg(long)]
        notes: Option<String>,
        /// Add it inactive.
        #[arg(long)]
        inactive: bool,
        /// TLS mode: disable, prefer, require, verify-full.
        #[arg(long, default_value = "prefer")]
        sslmode: SslMode,
    },
    /// Activate or deactivate an entry.
    SetActive {
        /// Environment.
        #[arg(long)]
        env: String,
        /// Database name.
        #[arg(long)]
        database: String,
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        active: bool,
    },
    /// Remove an entry.
    Remove {
        /// Environment.
        #[arg(long)]
        env: String,
        /// Database name.
        #[arg(long)]
        database: String,
    },
    /// Import entries from a CSV (header row) or TOML (`[[database]]`) file, all or nothing.
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// `pg-user-api seed`.
pub async fn seed(config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.store).await?;
    for outcome in ops::seed(store.as_ref()).await? {
        let (word, e) = match &outcome {
            SeedOutcome::Inserted(e) => ("inserted", e),
            SeedOutcome::Skipped(e) => ("skipped (exists)", e),
        };
        println!(
            "{word:<17} {:<5} {:<18} {}:{}{}",
            e.env,
            e.db_name,
            e.hostname,
            e.port,
            if e.active { "" } else { " (inactive)" }
        );
    }
    Ok(())
}

/// Runs a registry command. Changes go through the service functions HTTP uses, so each is
/// audited once, as `cli:<OS user>`.
pub async fn run(cmd: RegistryCommand, config: &Config) -> anyhow::Result<()> {
    let app = cli_app(config, crate::store::open(&config.store).await?).await?;
    let result = execute(&app, cmd).await;
    // A refused change's outcome is queued, not waited for: stored before the process ends.
    app.audit.flush().await?;
    result
}

async fn execute(app: &App, cmd: RegistryCommand) -> anyhow::Result<()> {
    let caller = cli_caller();
    let key = |env: &str, database: &str| Entry {
        env: env.to_owned(),
        database: database.to_owned(),
        ..Default::default()
    };
    match cmd {
        RegistryCommand::List => {
            println!(
                "{:>4} {:<6} {:<24} {:<32} {:>5} {:<6} {:<11} notes",
                "id", "env", "database", "host", "port", "active", "sslmode"
            );
            for e in app.store.registry_list().await? {
                println!(
                    "{:>4} {:<6} {:<24} {:<32} {:>5} {:<6} {:<11} {}",
                    e.id,
                    e.env,
                    e.db_name,
                    e.hostname,
                    e.port,
                    if e.active { "yes" } else { "no" },
                    e.sslmode,
                    e.notes.unwrap_or_default()
                );
            }
        }
        RegistryCommand::Add {
            env,
            database,
            host,
            port,
            notes,
            inactive,
            sslmode,
        } => {
            let entry = NewEntry {
                env,
                db_name: database,
                hostname: host,
                port,
                active: !inactive,
                notes,
                sslmode,
            };
            let e = match ops::change(app, &caller, "add", &ops::entry_of(&entry)).await {
                Ok(c) => c.entry,
                Err(Error::Conflict(_)) => bail!(
                    "env='{}' database='{}' is already registered",
                    entry.env,
                    entry.db_name
                ),
                Err(other) => bail!("{other}"),
            };
            println!(
                "added #{} {} {} {}:{}",
                e.id, e.env, e.db_name, e.hostname, e.port
            );
        }
        RegistryCommand::SetActive {
            env,
            database,
            active,
        } => {
            // As over HTTP: deactivating is `deactivate`, activating an `update`.
            let mut input = key(&env, &database);
            let action = if active {
                input.fields.active = Some(true);
                "update"
            } else {
                "deactivate"
            };
            ops::change(app, &caller, action, &input).await?;
            println!("env='{env}' database='{database}' active={active}");
        }
        RegistryCommand::Remove { env, database } => {
            ops::change(app, &caller, "remove", &key(&env, &database)).await?;
            println!("removed env='{env}' database='{database}'");
        }
        RegistryCommand::Import { file } => {
            let entries = ops::read_import_file(&file)?;
            ops::import(app, &caller, &entries).await?;
            println!("imported {} entries from {}", entries.len(), file.display());
        }
    }
    Ok(())
}

/// The service as the command line runs it: store and audit trail, no target is contacted.
async fn cli_app(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<App> {
    let mut config = config.clone();
    // Registry changes notify nobody; channel secrets need not be set for the CLI.
    config.notify = Default::default();
    let admin = AdminCredentials {
        user: String::new(),
        password: None,
    };
    App::open(&config, store, None, admin).await
}

/// Who runs the command: `cli:<OS user>`, with every scope (the store is theirs already).
pub(super) fn cli_caller() -> Caller {
    Caller {
        request_id: uuid::Uuid::new_v4().to_string(),
        principal: format!("cli:{}", os_user()),
        client_addr: "local".into(),
        scopes: Some(Scopes::shared_all()),
        identity: None,
    }
}

/// The name of the real user running this process, from the password database (`$USER` is
/// whatever the environment says), else `uid<N>`.
fn os_user() -> String {
    // SAFETY: getuid cannot fail; getpwuid returns null or a valid entry that stays valid
    // until the next call, and nothing else in this process looks users up meanwhile.
    let uid = unsafe { libc::getuid() };
    let pw = unsafe { libc::getpwuid(uid) };
    if !pw.is_null() {
        let name = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
        if let Ok(name) = name.to_str() {
            return name.to_owned();
        }
    }
    format!("uid{uid}")
}
