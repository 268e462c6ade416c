//! `pg-user-api seed` and `pg-user-api registry …`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::service::registry::{self as ops, SeedOutcome};
use crate::store::{NewEntry, SslMode, StoreError};

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

/// Runs a registry command.
pub async fn run(cmd: RegistryCommand, config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.store).await?;
    match cmd {
        RegistryCommand::List => {
            println!(
                "{:>4} {:<6} {:<24} {:<32} {:>5} {:<6} {:<11} notes",
                "id", "env", "database", "host", "port", "active", "sslmode"
            );
            for e in store.registry_list().await? {
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
            if let Err(why) = entry.validate() {
                bail!("{why}");
            }
            match store.registry_add(&entry).await {
                Ok(e) => println!(
                    "added #{} {} {} {}:{}",
                    e.id, e.env, e.db_name, e.hostname, e.port
                ),
                Err(StoreError::Duplicate { env, db_name }) => {
                    bail!("env='{env}' database='{db_name}' is already registered")
                }
                Err(other) => return Err(other.into()),
            }
        }
        RegistryCommand::SetActive {
            env,
            database,
            active,
        } => {
            if !store.registry_set_active(&env, &database, active).await? {
                bail!("no registry entry for env='{env}' database='{database}'");
            }
            println!("env='{env}' database='{database}' active={active}");
        }
        RegistryCommand::Remove { env, database } => {
            if !store.registry_remove(&env, &database).await? {
                bail!("no registry entry for env='{env}' database='{database}'");
            }
            println!("removed env='{env}' database='{database}'");
        }
        RegistryCommand::Import { file } => {
            let entries = ops::read_import_file(&file)?;
            ops::import(store.as_ref(), &entries).await?;
            println!("imported {} entries from {}", entries.len(), file.display());
        }
    }
    Ok(())
}
