//! Tamper evidence for the audit log: every record carries the SHA-256 of its predecessor's
//! hash and its own fields, so changing, inserting or removing a record breaks the chain
//! from there on. Records are chained in id order by the one writer that holds the store's
//! write lock (SQLite's, or an advisory lock in PostgreSQL), whatever the number of replicas.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::{AuditRecord, Store};

/// The `prev_hash` of the first chained record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Stores keep microseconds; hash exactly what is stored.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The hash of a record following `prev`.
pub fn link(prev: &str, r: &AuditRecord) -> String {
    let fields = serde_json::json!([
        prev,
        micros(r.performed_at).to_rfc3339_opts(SecondsFormat::Micros, true),
        r.request_id,
        r.principal,
        r.client_addr,
        r.env,
        r.db_name,
        r.pg_username,
        r.operation,
        r.profile,
        r.status,
        r.detail,
        r.error,
        r.duration_ms,
    ]);
    Sha256::digest(fields.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Chains `records` after the record whose hash is `last` (None: the log has no chained
/// record yet), filling `prev_hash` and `hash`.
pub fn chain(last: Option<String>, records: &mut [AuditRecord]) {
    let mut prev = last.unwrap_or_else(|| GENESIS.to_owned());
    for r in records {
        r.performed_at = micros(r.performed_at);
        r.prev_hash = prev.clone();
        r.hash = link(&prev, r);
        prev = r.hash.clone();
    }
}

/// What `audit verify` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verification {
    /// Chained records checked.
    pub chained: u64,
    /// Records before the chain began (written by the original service or by hand before
    /// pg-user-api's first record).
    pub legacy: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

/// Where and why the chain breaks.
#[derive(Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The first record that does not fit.
    pub id: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Walks the whole log in id order and reports the first record that breaks the chain.
pub async fn verify(store: &dyn Store) -> anyhow::Result<Verification> {
    const PAGE: u32 = 1000;
    let mut v = Verification {
        chained: 0,
        legacy: 0,
        broken: None,
    };
    let mut prev: Option<String> = None;
    let mut after = i64::MIN;
    loop {
        let page = store.audit_after(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(v);
        };
        after = last.id;
        for r in page {
            let reason = match (&prev, r.hash.is_empty()) {
                (None, true) => {
                    v.legacy += 1;
                    continue;
                }
                (Some(_), true) => Some("it has no hash: written around the service".to_owned()),
                (None, false) if r.prev_hash != GENESIS => Some(format!(
                    "the chain starts here but links to {} instead of the genesis",
                    r.prev_hash
                )),
                (Some(p), false) if &r.prev_hash != p => Some(
                    "it does not link to the record before it: a record was removed or inserted"
                        .to_owned(),
                ),
                _ if link(&r.prev_hash, &r) != r.hash => {
                    Some("its contents do not match its hash: it was altered".to_owned())
                }
                _ => None,
            };
            if let Some(reason) = reason {
                v.broken = Some(BrokenLink { id: r.id, reason });
                return Ok(v);
            }
            v.chained += 1;
            prev = Some(r.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> AuditRecord {
        AuditRecord {
            id: n,
            performed_at: Utc::now(),
            request_id: format!("r{n}"),
            principal: "p".into(),
            client_addr: "127.0.0.1".into(),
            env: "dev".into(),
            db_name: "d".into(),
            pg_username: "u".into(),
            operation: "create:devqa".into(),
            profile: String::new(),
            status: "success".into(),
            detail: "user created".into(),
            error: None,
            duration_ms: Some(n),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn each_link_covers_its_predecessor_and_every_field() {
        let mut rs: Vec<AuditRecord> = (1..=3).map(record).collect();
        chain(None, &mut rs);
        assert_eq!(rs[0].prev_hash, GENESIS);
        assert_eq!(rs[1].prev_hash, rs[0].hash);
        assert_eq!(link(&rs[2].prev_hash, &rs[2]), rs[2].hash);
        let mut altered = rs[1].clone();
        altered.detail = "user already exists".into();
        assert_ne!(link(&altered.prev_hash, &altered), altered.hash);
        let mut altered = rs[1].clone();
        altered.error = Some(String::new());
        assert_ne!(link(&altered.prev_hash, &altered), altered.hash);
    }

    #[test]
    fn hashes_ignore_sub_microsecond_time_as_the_stores_do() {
        let mut a = vec![record(1)];
        chain(None, &mut a);
        let stored = a[0].clone();
        assert_eq!(link(&stored.prev_hash, &stored), stored.hash);
        assert_eq!(stored.performed_at.timestamp_subsec_nanos() % 1000, 0);
    }
}
