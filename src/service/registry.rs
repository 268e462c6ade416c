//! The registry of target databases: listing, seeding, importing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::params::{Entry, RegistryFields, parse_flag};
use super::{App, Caller, audit::AuditScope};
use crate::error::{Error, Result};
use crate::store::{NewEntry, RegistryEntry, Store, StoreError};

/// How long a registry snapshot is used before it is read again. Changes made through this
/// process are seen at once; a name the snapshot lacks (or has inactive) is read from the
/// store before the answer is 404, so additions by another process (the CLI, another
/// replica, `sqlite3 … INSERT`) are seen at once too; removals and deactivations within this.
pub const REGISTRY_CACHE_TTL: Duration = Duration::from_secs(2);

/// How long a name just read and missing answers 404 without another read.
const MISS_TTL: Duration = Duration::from_millis(100);

/// Store reads for missing names per second at most, whatever the names: a flood of unknown
/// names costs the store this much, then answers from the snapshot.
const MISS_READS_PER_SECOND: u32 = 50;

type Key = (String, String);
type Snapshot = Arc<HashMap<Key, RegistryEntry>>;

/// The registry as last read from the store; every request needs it, so it is not read
/// from the store every time.
#[derive(Default)]
pub struct RegistryCache {
    snapshot: RwLock<Option<(Instant, Snapshot)>>,
    /// Held by the one request reading a new snapshot.
    reloading: tokio::sync::Mutex<()>,
    misses: Mutex<Misses>,
}

/// The bound on store reads for names the snapshot lacks.
#[derive(Default)]
struct Misses {
    /// Names read and missing, and when.
    recent: HashMap<Key, Instant>,
    /// Start of the current one-second window, and reads in it.
    window: Option<(Instant, u32)>,
}

impl Misses {
    /// Whether `key`, missing from the snapshot, may be read from the store now; counts it.
    fn may_read(&mut self, key: &Key, now: Instant) -> bool {
        if self
            .recent
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < MISS_TTL)
        {
            return false;
        }
        let reads = match &mut self.window {
            Some((start, reads)) if now.duration_since(*start) < Duration::from_secs(1) => reads,
            window => {
                // At most a window's reads are remembered: the map stays small.
                self.recent
                    .retain(|_, at| now.duration_since(*at) < MISS_TTL);
                &mut window.insert((now, 0)).1
            }
        };
        if *reads >= MISS_READS_PER_SECOND {
            return false;
        }
        *reads += 1;
        true
    }
}

impl RegistryCache {
    /// The entry for env and database, active or not, from a snapshot at most
    /// [`REGISTRY_CACHE_TTL`] old, or from the store when the snapshot lacks it or has it
    /// inactive. While the store cannot be read, the last snapshot is used, so reads keep
    /// working.
    pub async fn get(
        &self,
        store: &dyn Store,
        env: &str,
        db_name: &str,
    ) -> anyhow::Result<Option<RegistryEntry>> {
        let key = (env.to_owned(), db_name.to_owned());
        let Some(snapshot) = self.fresh() else {
            return self.reload(store, &key).await;
        };
        let cached = snapshot.get(&key);
        if cached.is_some_and(|e| e.active) {
            return Ok(cached.cloned());
        }
        let may_read = self
            .misses
            .lock()
            .expect("registry cache poisoned")
            .may_read(&key, Instant::now());
        if !may_read {
            return Ok(cached.cloned());
        }
        let started = Instant::now();
        let read = store.registry_get(env, db_name).await;
        metrics::histogram!("pgua_store_read_seconds").record(started.elapsed().as_secs_f64());
        match read {
            Ok(found) => {
                if !found.as_ref().is_some_and(|e| e.active) {
                    let mut misses = self.misses.lock().expect("registry cache poisoned");
                    misses.recent.insert(key.clone(), Instant::now());
                }
                if let Some(e) = &found {
                    self.remember(&key, e.clone());
                }
                Ok(found)
            }
            Err(e) => {
                tracing::warn!(error = %e, "store unreadable; using the registry snapshot");
                Ok(cached.cloned())
            }
        }
    }

    /// The snapshot, unless it is older than [`REGISTRY_CACHE_TTL`].
    fn fresh(&self) -> Option<Snapshot> {
        let guard = self.snapshot.read().expect("registry cache poisoned");
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REGISTRY_CACHE_TTL)
            .map(|(_, s)| s.clone())
    }

    /// Reads the registry into a new snapshot and looks `key` up in it. One request reads
    /// while the others wait for its snapshot, so an expired snapshot costs one store read,
    /// not one per request in flight. When the store cannot be read, the last snapshot
    /// serves for another [`REGISTRY_CACHE_TTL`] before the next attempt.
    async fn reload(&self, store: &dyn Store, key: &Key) -> anyhow::Result<Option<RegistryEntry>> {
        let _reading = self.reloading.lock().await;
        if let Some(snapshot) = self.fresh() {
            return Ok(snapshot.get(key).cloned());
        }
        let started = Instant::now();
        let read = store.registry_list().await;
        metrics::histogram!("pgua_store_read_seconds").record(started.elapsed().as_secs_f64());
        let last = self
            .snapshot
            .read()
            .expect("registry cache poisoned")
            .as_ref()
            .map(|(_, s)| s.clone());
        let map: Snapshot = match (read, last) {
            (Ok(entries), _) => Arc::new(
                entries
                    .into_iter()
                    .map(|e| ((e.env.clone(), e.db_name.clone()), e))
                    .collect(),
            ),
            (Err(e), Some(last)) => {
                tracing::warn!(error = %e, "store unreadable; using the last registry snapshot");
                last
            }
            (Err(e), None) => return Err(e),
        };
        *self.snapshot.write().expect("registry cache poisoned") =
            Some((Instant::now(), map.clone()));
        Ok(map.get(key).cloned())
    }

    /// Puts an entry read from the store into the snapshot, which keeps its age.
    fn remember(&self, key: &Key, entry: RegistryEntry) {
        let mut guard = self.snapshot.write().expect("registry cache poisoned");
        if let Some((_, snapshot)) = guard.as_mut() {
            Arc::make_mut(snapshot).insert(key.clone(), entry);
        }
    }

    /// Whether `env` names a registered environment (metrics label only those).
    pub fn knows_env(&self, env: &str) -> bool {
        self.snapshot
            .read()
            .expect("registry cache poisoned")
            .as_ref()
            .is_some_and(|(_, s)| s.keys().any(|(e, _)| e == env))
    }

    /// Forgets the snapshot, after this process changed the registry.
    pub fn invalidate(&self) {
        *self.snapshot.write().expect("registry cache poisoned") = None;
    }
}

/// Every registry entry, inactive ones included.
pub async fn list(app: &App, caller: &Caller) -> Result<Vec<RegistryEntry>> {
    let scope = AuditScope::for_read(app, caller, "registry:list", None, "");
    let result = app.store.registry_list().await.map_err(Into::into);
    scope
        .outcome(&result, |e: &Vec<RegistryEntry>| {
            format!("{} entries", e.len())
        })
        .await;
    result
}

/// The original service's sample entries.
pub fn sample_entries() -> Vec<NewEntry> {
    let rows: [(&str, &str, &str, bool); 10] = [
        ("dev", "app_dev_main", "pg-dev-01.example.com", true),
        ("dev", "app_dev_reports", "pg-dev-01.example.com", true),
        ("dev", "app_dev_archive", "pg-dev-02.example.com", false),
        ("qa", "app_qa_reports", "pg-qa-01.example.com", true),
        ("qa", "app_qa_inttest", "pg-qa-01.example.com", true),
        ("uat", "app_uat_main", "pg-uat-01.example.com", true),
        ("uat", "app_uat_reports", "pg-uat-01.example.com", true),
        ("prod", "app_prod_main", "pg-prod-01.example.com", true),
        ("prod", "app_prod_reports", "pg-prod-02.example.com", true),
        ("prod", "app_prod_archive", "pg-prod-03.example.com", false),
    ];
    rows.iter()
        .map(|(env, db, host, active)| NewEntry {
            env: (*env).into(),
            db_name: (*db).into(),
            hostname: (*host).into(),
            port: 5432,
            active: *active,
            notes: Some("sample entry from `pg-user-api seed`".into()),
            sslmode: Default::default(),
        })
        .collect()
}

/// What happened to one seeded entry.
pub enum SeedOutcome {
    /// Added now.
    Inserted(NewEntry),
    /// Was there already.
    Skipped(NewEntry),
}

/// Adds the sample entries that are missing; running it twice changes nothing.
pub async fn seed(store: &dyn Store) -> anyhow::Result<Vec<SeedOutcome>> {
    let mut out = Vec::new();
    for entry in sample_entries() {
        if store
            .registry_get(&entry.env, &entry.db_name)
            .await?
            .is_some()
        {
            out.push(SeedOutcome::Skipped(entry));
        } else {
            store.registry_add(&entry).await?;
            out.push(SeedOutcome::Inserted(entry));
        }
    }
    Ok(out)
}

/// A file of entries to import: `[[database]]` tables in TOML.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportFile {
    database: Vec<NewEntry>,
}

/// A CSV row: the registry columns, `active` as 1/0/true/false.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    env: String,
    #[serde(alias = "database")]
    db_name: String,
    #[serde(alias = "host")]
    hostname: String,
    port: Option<u16>,
    active: Option<String>,
    notes: Option<String>,
    sslmode: Option<String>,
}

impl CsvRow {
    fn into_entry(self) -> std::result::Result<NewEntry, String> {
        let active = match self.active.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(v) => parse_flag("active", v).map_err(|e| e.to_string())?,
        };
        Ok(NewEntry {
            env: self.env,
            db_name: self.db_name,
            hostname: self.hostname,
            port: self.port.unwrap_or(5432),
            active,
            notes: self.notes.filter(|n| !n.is_empty()),
            sslmode: match self.sslmode.as_deref() {
                None | Some("") => Default::default(),
                Some(s) => s.parse()?,
            },
        })
    }
}

/// Reads entries from a `.csv` or `.toml` file, with the line or row of each bad one.
pub fn read_import_file(path: &Path) -> anyhow::Result<Vec<NewEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let entries = if is_toml {
        toml::from_str::<ImportFile>(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .database
    } else {
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        for (i, row) in reader.deserialize::<CsvRow>().enumerate() {
            // Row 1 is the header.
            match row.map_err(|e| e.to_string()).and_then(CsvRow::into_entry) {
                Ok(entry) => entries.push(entry),
                Err(e) => errors.push(format!("row {}: {e}", i + 2)),
            }
        }
        if !errors.is_empty() {
            bail!("{}:\n  {}", path.display(), errors.join("\n  "));
        }
        entries
    };
    Ok(entries)
}

/// Imports entries all or nothing: every bad or duplicate row is reported and none is added;
/// then each is added as [`change`] adds one, audited as `registry:add`.
pub async fn import(app: &App, caller: &Caller, entries: &[NewEntry]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let n = i + 1;
        if let Err(why) = e.validate() {
            errors.push(format!("entry {n}: {why}"));
        } else if !seen.insert((e.env.clone(), e.db_name.clone())) {
            errors.push(format!(
                "entry {n}: env='{}' database='{}' appears twice in the file",
                e.env, e.db_name
            ));
        } else if app.store.registry_get(&e.env, &e.db_name).await?.is_some() {
            errors.push(format!(
                "entry {n}: env='{}' database='{}' is already registered",
                e.env, e.db_name
            ));
        }
    }
    if !errors.is_empty() {
        bail!("nothing imported:\n  {}", errors.join("\n  "));
    }
    for e in entries {
        change(app, caller, "add", &entry_of(e)).await?;
    }
    Ok(())
}

/// The call parameters that add `e` through [`change`].
pub fn entry_of(e: &NewEntry) -> Entry {
    Entry {
        env: e.env.clone(),
        database: e.db_name.clone(),
        fields: RegistryFields {
            host: Some(e.hostname.clone()),
            port: Some(e.port),
            notes: e.notes.clone(),
            active: Some(e.active),
            sslmode: Some(e.sslmode.as_str().to_owned()),
        },
    }
}

/// What a registry change did.
#[derive(Debug)]
pub struct RegistryChange {
    /// The entry after the change (before it, for a removal).
    pub entry: RegistryEntry,
    /// `added`, `updated`, `deactivated`, `removed`.
    pub status: &'static str,
}

fn entry_from_input(input: &Entry, current: Option<&RegistryEntry>) -> Result<NewEntry> {
    let fields = &input.fields;
    let env = input.env.clone();
    let db_name = input.database.clone();
    let port = match fields.port {
        Some(p) => p,
        None => current.map_or(5432, |c| c.port),
    };
    let hostname = match (fields.host.as_deref(), current) {
        (Some(h), _) => h.to_owned(),
        (None, Some(c)) => c.hostname.clone(),
        (None, None) => return Err(Error::MissingParam("host".into())),
    };
    let entry = NewEntry {
        env,
        db_name,
        hostname,
        port,
        active: match fields.active {
            Some(active) => active,
            None => current.is_none_or(|c| c.active),
        },
        notes: fields
            .notes
            .clone()
            .or_else(|| current.and_then(|c| c.notes.clone())),
        sslmode: match fields.sslmode.as_deref() {
            Some(s) => s.parse().map_err(Error::Invalid)?,
            None => current.map(|c| c.sslmode).unwrap_or_default(),
        },
    };
    entry.validate().map_err(Error::Invalid)?;
    Ok(entry)
}

/// Adds, updates, deactivates or removes a registry entry over HTTP, audited as
/// `registry:<action>`; the registry snapshot of this process is refreshed at once.
pub async fn change(
    app: &App,
    caller: &Caller,
    action: &str,
    input: &Entry,
) -> Result<RegistryChange> {
    let key = super::params::Target::new(input.env.clone(), input.database.clone());
    let scope = AuditScope::new(app, caller, &format!("registry:{action}"), Some(&key), "");
    let result = async {
        let (env, db) = (input.env.as_str(), input.database.as_str());
        let current = app.store.registry_get(env, db).await?;
        let missing = || Error::NoRegistryEntry {
            env: env.to_owned(),
            database: db.to_owned(),
        };
        let change = match action {
            "add" => {
                let entry = entry_from_input(input, None)?;
                let added = app.store.registry_add(&entry).await.map_err(|e| match e {
                    StoreError::Duplicate { env, db_name } => Error::Conflict(format!(
                        "a registry entry for env='{env}' database='{db_name}' already exists"
                    )),
                    other => Error::Internal(other.into()),
                })?;
                RegistryChange {
                    entry: added,
                    status: "added",
                }
            }
            "update" | "deactivate" => {
                let current = current.ok_or_else(missing)?;
                let mut entry = entry_from_input(input, Some(&current))?;
                if action == "deactivate" {
                    entry.active = false;
                }
                app.store.registry_update(&entry).await?;
                let updated = app.store.registry_get(env, db).await?.ok_or_else(missing)?;
                RegistryChange {
                    entry: updated,
                    status: if action == "update" {
                        "updated"
                    } else {
                        "deactivated"
                    },
                }
            }
            "remove" => {
                let current = current.ok_or_else(missing)?;
                app.store.registry_remove(env, db).await?;
                RegistryChange {
                    entry: current,
                    status: "removed",
                }
            }
            other => return Err(Error::Invalid(format!("unknown registry action '{other}'"))),
        };
        app.registry.invalidate();
        Ok(change)
    }
    .await;
    scope
        .outcome(&result, |c: &RegistryChange| c.status.into())
        .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(db: &str) -> Key {
        ("dev".into(), db.into())
    }

    #[test]
    fn a_missing_name_is_read_again_only_after_the_miss_ttl() {
        let mut m = Misses::default();
        let t0 = Instant::now();
        assert!(m.may_read(&key("a"), t0));
        m.recent.insert(key("a"), t0);
        assert!(!m.may_read(&key("a"), t0 + MISS_TTL / 2));
        assert!(
            m.may_read(&key("b"), t0 + MISS_TTL / 2),
            "other names are read"
        );
        assert!(m.may_read(&key("a"), t0 + MISS_TTL));
    }

    #[test]
    fn a_flood_of_unknown_names_reads_the_store_a_bounded_number_of_times() {
        let mut m = Misses::default();
        let t0 = Instant::now();
        let reads = (0..10_000)
            .filter(|n| m.may_read(&key(&format!("flood{n}")), t0))
            .count();
        assert_eq!(reads, MISS_READS_PER_SECOND as usize);
        assert!(m.may_read(&key("next"), t0 + Duration::from_secs(1)));
        for n in 0..1000 {
            m.recent.insert(key(&format!("old{n}")), t0);
        }
        m.may_read(&key("later"), t0 + Duration::from_secs(2));
        assert!(m.recent.is_empty(), "stale misses are forgotten");
    }
}
