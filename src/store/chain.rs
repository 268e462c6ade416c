//! Tamper evidence for the audit log: every record carries the SHA-256 of its predecessor's
//! hash and its own fields, so changing, inserting or removing a record breaks the chain
//! from there on. Records are chained in id order by the one writer that holds the store's
//! write lock (SQLite's, or an advisory lock in PostgreSQL), whatever the number of replicas.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{KeyInit, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use subtle::ConstantTimeEq;

use super::{AuditRecord, Store};

/// What a prune leaves behind: where the chain continues, signed so that a forged
/// checkpoint cannot hide removed records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Row id.
    pub id: i64,
    /// When the prune ran.
    pub created_at: DateTime<Utc>,
    /// Every record up to this id was removed.
    pub through_id: i64,
    /// The hash of the last removed chained record (empty: none was chained).
    pub last_hash: String,
    /// How many records were removed.
    pub pruned: i64,
    /// `hmac-sha256:<hex>` with `PGUA_AUDIT_KEY`, or `unsigned`.
    pub signature: String,
}

/// The signature of a checkpoint's fields, or `unsigned` without a key.
pub fn sign(key: Option<&[u8]>, c: &Checkpoint) -> String {
    let Some(key) = key else {
        return "unsigned".into();
    };
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(checkpoint_message(c).as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("hmac-sha256:{}", hex::encode(tag))
}

fn checkpoint_message(c: &Checkpoint) -> String {
    format!(
        "pg-user-api audit checkpoint|{}|{}|{}|{}",
        c.through_id,
        c.last_hash,
        c.pruned,
        micros(c.created_at).to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

/// How far a checkpoint can be trusted.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckpointTrust {
    /// No prune has happened.
    NoCheckpoint,
    /// Signed, and the signature matches the key given.
    Verified,
    /// Signed, but no key was given to check it.
    NotChecked,
    /// Written without a key: anyone with write access could have made it.
    Unsigned,
    /// Signed, but not with the key given.
    Forged,
}

/// The `prev_hash` of the first chained record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Stores keep microseconds; hash exactly what is stored.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The hash of a record following `prev`: SHA-256 of its fields as a compact JSON array,
/// hashed as serde_json writes it (no `Value` tree, no string of it).
pub fn link(prev: &str, r: &AuditRecord) -> String {
    let fields = (
        prev,
        micros(r.performed_at).to_rfc3339_opts(SecondsFormat::Micros, true),
        &r.request_id,
        &r.principal,
        &r.client_addr,
        &r.env,
        &r.db_name,
        &r.pg_username,
        &r.operation,
        &r.profile,
        &r.status,
        &r.detail,
        &r.error,
        r.duration_ms,
    );
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, &fields).expect("writing to a hash cannot fail");
    hex::encode(hasher.0.finalize())
}

/// Feeds what is written into the hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Chains `records` after the record whose hash is `last` (None: the log has no chained
/// record yet), filling `prev_hash` and `hash`; their text becomes what is stored
/// ([`super::stored_text`]), so the hash covers exactly that.
pub fn chain(last: Option<String>, records: &mut [AuditRecord]) {
    let mut prev = last.unwrap_or_else(|| GENESIS.to_owned());
    for r in records {
        super::store_texts(r.texts_mut());
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
    /// The latest prune's checkpoint, where the chain now starts.
    pub checkpoint: Option<Checkpoint>,
    /// Whether that checkpoint's signature was checked.
    pub trust: CheckpointTrust,
}

/// Where and why the chain breaks.
#[derive(Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The first record that does not fit.
    pub id: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Walks the whole log in id order from the latest checkpoint on and reports the first
/// record that breaks the chain; with `key`, a checkpoint must carry its signature.
pub async fn verify(store: &dyn Store, key: Option<&[u8]>) -> anyhow::Result<Verification> {
    const PAGE: u32 = 1000;
    let checkpoint = store.audit_checkpoint_latest().await?;
    let trust = match (&checkpoint, key) {
        (None, _) => CheckpointTrust::NoCheckpoint,
        (Some(c), _) if c.signature == "unsigned" => CheckpointTrust::Unsigned,
        (Some(_), None) => CheckpointTrust::NotChecked,
        (Some(c), Some(_)) if bool::from(sign(key, c).as_bytes().ct_eq(c.signature.as_bytes())) => {
            CheckpointTrust::Verified
        }
        (Some(_), Some(_)) => CheckpointTrust::Forged,
    };
    let refusal = match (&trust, key) {
        (CheckpointTrust::Forged, _) => {
            Some("the checkpoint's signature does not match the key: it was forged or altered")
        }
        (CheckpointTrust::Unsigned, Some(_)) => {
            Some("the checkpoint is unsigned although a key is configured")
        }
        _ => None,
    };
    let mut v = Verification {
        chained: 0,
        legacy: 0,
        broken: None,
        checkpoint: checkpoint.clone(),
        trust,
    };
    if let (Some(reason), Some(c)) = (refusal, &checkpoint) {
        v.broken = Some(BrokenLink {
            id: c.through_id,
            reason: reason.into(),
        });
        return Ok(v);
    }
    // After a prune the chain continues from the checkpoint's hash.
    let start = checkpoint
        .as_ref()
        .map(|c| c.last_hash.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| GENESIS.to_owned());
    let mut prev: Option<String> = None;
    let mut after = checkpoint.as_ref().map_or(i64::MIN, |c| c.through_id);
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
                (None, false) if r.prev_hash != start => Some(format!(
                    "the chain starts here but links to {} instead of {}",
                    r.prev_hash,
                    if start == GENESIS {
                        "the genesis"
                    } else {
                        "the last checkpoint"
                    }
                )),
                (Some(p), false) if &r.prev_hash != p => Some(
                    "it does not link to the record before it: a record was removed or inserted"
                        .to_owned(),
                ),
                _ if !hash_matches(&r) => {
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

/// Whether a record's hash covers its contents, as stored or as they were before
/// [`for_migration`] escaped them.
fn hash_matches(r: &AuditRecord) -> bool {
    link(&r.prev_hash, r) == r.hash
        || before_migration(r).is_some_and(|o| link(&o.prev_hash, &o) == r.hash)
}

/// How `store migrate` copies a record that holds raw control characters (written before
/// stored text was escaped; PostgreSQL refuses NUL): every text field escaped reversibly,
/// backslashes doubled as well as control characters written as `\uXXXX`. The record keeps
/// its hash, over the original; [`verify`] undoes the escape to check it. Any other record is
/// copied as it is.
pub fn for_migration(r: &AuditRecord) -> AuditRecord {
    let mut r = r.clone();
    if r.texts_mut().any(|t| t.contains(char::is_control)) {
        for t in r.texts_mut() {
            *t = escape_reversibly(t);
        }
    }
    r
}

/// [`super::stored_text`] after doubling every backslash: an escape that can be undone.
fn escape_reversibly(s: &str) -> String {
    super::stored_text(&s.replace('\\', r"\\")).into_owned()
}

/// The text [`escape_reversibly`] made `s` from, if it made exactly `s`.
fn unescape_reversibly(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if hex.len() != 4
                        || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        return None;
                    }
                    let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                    if !c.is_control() {
                        return None;
                    }
                    out.push(c);
                }
                _ => return None,
            },
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The record as it was before [`for_migration`] escaped it, if `r` is such a copy: only a
/// record that held a control character was escaped, so only such an original counts, and
/// a record written by the service cannot pass for an escaped one.
fn before_migration(r: &AuditRecord) -> Option<AuditRecord> {
    let mut original = r.clone();
    for t in original.texts_mut() {
        *t = unescape_reversibly(t)?;
    }
    let held_control = original.texts_mut().any(|t| t.contains(char::is_control));
    held_control.then_some(original)
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

    /// The hash of a record is what every stored log's chain was built with: it must never
    /// change (this value was computed by the first implementation, over `json!`).
    #[test]
    fn a_link_is_the_sha256_of_the_fields_as_a_compact_json_array() {
        let r = AuditRecord {
            performed_at: DateTime::from_timestamp_micros(1_764_700_000_123_456).unwrap(),
            principal: "k:ci \"quoted\" \\ back".into(),
            pg_username: "us\u{e9}r_\u{1f600}".into(),
            detail: "line\nbreak\ttab\u{7f}".into(),
            error: Some("boom".into()),
            profile: "devqa@1a2b3c4d".into(),
            ..record(7)
        };
        let got = link(GENESIS, &r);
        assert_eq!(
            got,
            "cca6c991510abeaec674abdff30e47f3722f42884a33d2c3ef9fb0283dfc4907"
        );
        let none = AuditRecord {
            error: None,
            duration_ms: None,
            ..r
        };
        assert_eq!(
            link(&got, &none),
            "7b7c033f43aa406c8e5ea2f52802a6a0ae4675697966b0100bcf341e42f0266d"
        );
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

    #[test]
    fn text_is_stored_escaped_and_hashed_as_stored() {
        let mut rs = vec![record(1)];
        rs[0].pg_username = "acc\0x\u{1b}[2J\\".into();
        chain(None, &mut rs);
        assert_eq!(rs[0].pg_username, r"acc\u0000x\u001b[2J\");
        assert!(hash_matches(&rs[0]));
    }

    #[test]
    fn a_migrated_record_keeps_its_original_hash_and_only_it_verifies() {
        // Written before stored text was escaped: raw controls, a backslash, a literal escape.
        let mut old = record(1);
        old.pg_username = "acc\0x".into();
        old.detail = r"a\b and \u0001".into();
        old.prev_hash = GENESIS.into();
        old.hash = link(GENESIS, &old);
        let mut copy = for_migration(&old);
        assert!(copy.texts_mut().all(|t| !t.contains(char::is_control)));
        assert_eq!(copy.detail, r"a\\b and \\u0001");
        assert_eq!(copy.hash, old.hash);
        assert!(hash_matches(&copy));
        let mut altered = copy.clone();
        altered.detail = r"a\\b and \\u0002".into();
        assert!(!hash_matches(&altered));

        // A record without controls is copied as it is, and cannot pass for an escaped one.
        let mut rs = vec![record(2)];
        rs[0].detail = r"C:\temp".into();
        chain(None, &mut rs);
        assert_eq!(for_migration(&rs[0]), rs[0]);
        let mut respelled = rs[0].clone();
        respelled.detail = r"C:\\temp".into();
        assert!(!hash_matches(&respelled));
    }
}
