//! `pg-user-api store …`: moving the store from SQLite to PostgreSQL.

use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::store::postgres::{Import, PostgresStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ApiKey, AuditRecord, RegistryEntry, Store, chain, is_postgres_url, redact_url, sqlite_path,
};

/// Audit records read and written per round trip; bounds memory whatever the log's size.
const PAGE: u32 = 1000;

/// Store commands.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy registry and audit log from a SQLite store into an empty PostgreSQL store, ids
    /// and timestamps included, and verify the copy before committing it.
    Migrate {
        /// The SQLite store to copy: sqlite://PATH (must exist).
        #[arg(long)]
        from: String,
        /// The PostgreSQL store to fill: postgres://USER:PASSWORD@HOST:PORT/DB (must be empty).
        #[arg(long)]
        to: String,
    },
}

/// Runs a store command.
pub async fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate { from, to } => migrate(&from, &to).await,
    }
}

async fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    if is_postgres_url(from) {
        bail!("--from must name a SQLite store (sqlite://PATH)");
    }
    if !is_postgres_url(to) {
        bail!("--to must name a PostgreSQL store (postgres://…)");
    }
    let path = sqlite_path(from);
    // Opening a missing file would create an empty store and "copy" nothing.
    if !Path::new(path).is_file() {
        bail!("no SQLite store at {path}");
    }
    let source = SqliteStore::open(path).await?;
    let target = PostgresStore::open(to).await?;
    let mut import = target
        .begin_import()
        .await
        .with_context(|| format!("copying into {}", redact_url(to)))?;

    let registry = stored_registry(&source).await?;
    import.add_registry(&registry).await?;
    let mut keys: Vec<ApiKey> = source
        .key_list()
        .await?
        .iter()
        .map(ApiKey::to_stored)
        .collect();
    keys.sort_by_key(|k| k.id);
    import.add_keys(&keys).await?;
    let fingerprints = crate::service::keys::fingerprint_key(&source).await?;
    import.set_fingerprint_key(&fingerprints).await?;
    if let Some(checkpoint) = source.audit_checkpoint_latest().await? {
        import.add_checkpoint(&checkpoint).await?;
    }
    let mut copied = 0;
    let mut last = i64::MIN;
    loop {
        let page = audit_page(&source, last).await?;
        let Some(tail) = page.last() else { break };
        last = tail.id;
        copied += page.len();
        import.add_audit(&page).await?;
    }

    // Verified inside the copy's transaction: a mismatch rolls everything back.
    let entries = verify_registry(&source, &mut import).await?;
    if import.key_list().await? != keys {
        bail!("verification failed: the API keys differ between the source and the copy");
    }
    let records = verify_audit(&source, &mut import).await?;
    if entries != registry.len() || records != copied {
        bail!(
            "the SQLite store changed during the copy (copied {} entries and {copied} records, \
             found {entries} and {records}); stop the servers using it and try again",
            registry.len()
        );
    }
    import.commit().await?;
    println!(
        "copied and verified {entries} registry entries, {} API keys and {records} audit records from {} to {}",
        keys.len(),
        path,
        redact_url(to)
    );
    Ok(())
}

fn by_id(mut entries: Vec<RegistryEntry>) -> Vec<RegistryEntry> {
    entries.sort_by_key(|e| e.id);
    entries
}

/// The source's registry as PostgreSQL must hold it: an entry added by hand may hold a NUL
/// or another control character, which the copy keeps escaped as the service stores text.
async fn stored_registry(source: &SqliteStore) -> anyhow::Result<Vec<RegistryEntry>> {
    let entries = source.registry_list().await?;
    Ok(entries.iter().map(RegistryEntry::to_stored).collect())
}

/// A page of the source's audit log as the copy must hold it ([`chain::for_migration`]).
async fn audit_page(source: &SqliteStore, after_id: i64) -> anyhow::Result<Vec<AuditRecord>> {
    let page = source.audit_after(after_id, PAGE).await?;
    Ok(page.iter().map(chain::for_migration).collect())
}

async fn verify_registry(source: &SqliteStore, import: &mut Import) -> anyhow::Result<usize> {
    let want = by_id(stored_registry(source).await?);
    let got = by_id(import.registry_list().await?);
    if want.len() != got.len() {
        bail!(
            "verification failed: {} registry entries in the source, {} in the copy",
            want.len(),
            got.len()
        );
    }
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            bail!("verification failed: registry entry differs\n source: {w:?}\n   copy: {g:?}");
        }
    }
    Ok(want.len())
}

async fn verify_audit(source: &SqliteStore, import: &mut Import) -> anyhow::Result<usize> {
    let mut checked = 0;
    let mut last = i64::MIN;
    loop {
        let want = audit_page(source, last).await?;
        let got = import.audit_after(last, PAGE).await?;
        for (w, g) in want.iter().zip(&got) {
            if w != g {
                bail!("verification failed: audit record differs\n source: {w:?}\n   copy: {g:?}");
            }
        }
        if want.len() != got.len() {
            bail!(
                "verification failed: audit log lengths differ after id {last} \
                 ({} records in the source page, {} in the copy)",
                want.len(),
                got.len()
            );
        }
        let Some(tail) = want.last() else {
            return Ok(checked);
        };
        last = tail.id;
        checked += want.len();
    }
}
