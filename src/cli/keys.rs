//! `pg-user-api keys …` and `pg-user-api hash-password`.

use std::io::Read;

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::service::keys;
use crate::service::params::KeyScopes;

/// API key commands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once).
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Who is responsible for it.
        #[arg(long)]
        owner: String,
        /// Environments it may touch (`*`: all).
        #[arg(long)]
        environments: String,
        /// Operations: read, create, reset, grant, lock, drop, registry-admin, audit-read (`*`: all).
        #[arg(long, default_value = "read")]
        operations: String,
        /// Profiles it may create (`*`: all).
        #[arg(long, default_value = "*")]
        profiles: String,
        /// Expiry: RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        expires: Option<String>,
        /// Expiry in days from now (1 to 3650).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: Option<u32>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key; every replica refuses it from the next call on.
    Revoke {
        /// Its name.
        #[arg(long)]
        name: String,
    },
}

/// Runs a keys command.
pub async fn run(cmd: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config.store).await?;
    match cmd {
        KeysCommand::Create {
            name,
            owner,
            environments,
            operations,
            profiles,
            expires,
            days,
        } => {
            let asked = KeyScopes {
                environments,
                operations: Some(operations),
                profiles: Some(profiles),
                expires,
                days,
            };
            let scopes = keys::scopes(&asked)?;
            let expiry = keys::expiry(&asked)?;
            let (key, secret) =
                keys::create(store.as_ref(), &name, &owner, &scopes, expiry).await?;
            eprintln!(
                "API key '{}' created; store the secret now, it is not shown again:",
                key.name
            );
            println!("{secret}");
        }
        KeysCommand::List => {
            println!(
                "{:<20} {:<16} {:<12} {:<25} {:<25} {:<8} scopes",
                "name", "owner", "prefix", "created", "expires", "revoked"
            );
            for k in store.key_list().await? {
                println!(
                    "{:<20} {:<16} {:<12} {:<25} {:<25} {:<8} {}",
                    k.name,
                    k.owner,
                    k.prefix,
                    k.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    k.expires_at
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "never".into()),
                    if k.revoked_at.is_some() { "yes" } else { "no" },
                    k.scopes
                );
            }
        }
        KeysCommand::Revoke { name } => {
            if !store.key_revoke(&name).await? {
                bail!("no active API key named '{name}'");
            }
            println!("revoked API key '{name}'");
        }
    }
    Ok(())
}

/// Reads a password on standard input and prints its argon2id hash for `[[auth.users]]`.
pub fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    println!("{}", keys::hash_password(password)?);
    Ok(())
}
