//! Audit records around an operation: an intent before any DDL, one outcome after.

use std::time::Instant;

use chrono::Utc;

use super::ops::UserOp;
use super::params::{AuditQuery, Target, parse_time_param};
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::notify::EventKind;
use crate::store::{AuditFilter, AuditRecord, status};

/// One operation's audit trail in the making.
pub struct AuditScope<'a> {
    app: &'a App,
    record: AuditRecord,
    started: Instant,
    /// What the outcome notifies: only user operations do.
    event: Option<EventKind>,
    /// An intent was stored: the operation may have changed something.
    intended: bool,
    /// The operation only reads ([`AuditScope::for_read`]).
    read: bool,
}

/// Audit fields hold caller text; cap them so a hostile megabyte cannot bloat the log.
fn cap(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl<'a> AuditScope<'a> {
    /// Starts the trail of `operation` on `target` (if any) for `username` as given.
    pub fn new(
        app: &'a App,
        caller: &Caller,
        operation: &str,
        target: Option<&Target>,
        username: &str,
    ) -> Self {
        Self {
            app,
            record: AuditRecord {
                id: 0,
                performed_at: Utc::now(),
                request_id: caller.request_id.clone(),
                principal: caller.audit_principal(),
                client_addr: caller.client_addr.clone(),
                env: cap(target.map_or("", |t| t.env.as_str())),
                db_name: cap(target.map_or("", |t| t.database.as_str())),
                pg_username: cap(username),
                operation: operation.to_owned(),
                profile: String::new(),
                prev_hash: String::new(),
                hash: String::new(),
                status: String::new(),
                detail: String::new(),
                error: None,
                duration_ms: None,
            },
            started: Instant::now(),
            event: None,
            intended: false,
            read: false,
        }
    }

    /// Starts the trail of a call that only reads (find, list, an export, …): its outcome
    /// is queued, not waited for (see [`AuditScope::outcome`]).
    pub fn for_read(
        app: &'a App,
        caller: &Caller,
        operation: &str,
        target: Option<&Target>,
        username: &str,
    ) -> Self {
        Self {
            read: true,
            ..Self::new(app, caller, operation, target, username)
        }
    }

    /// Starts the trail of a user operation, whose outcome is also notified.
    pub fn for_op(
        app: &'a App,
        caller: &Caller,
        op: &UserOp,
        target: &Target,
        username: &str,
    ) -> Self {
        Self {
            event: Some(op.event()),
            ..Self::new(app, caller, &op.audit_name(), Some(target), username)
        }
    }

    /// A trail of its own for a role the operation creates on the side (the group a
    /// create's profile needs): same request, principal and target; notified to no one.
    pub fn side(&self, operation: &str, username: &str) -> AuditScope<'a> {
        let mut record = self.record.clone();
        record.operation = operation.to_owned();
        record.pg_username = cap(username);
        AuditScope {
            app: self.app,
            record,
            started: Instant::now(),
            event: None,
            intended: false,
            read: self.read,
        }
    }

    /// Records the role name actually used (after folding or templating).
    pub fn set_username(&mut self, name: &str) {
        self.record.pg_username = cap(name);
    }

    /// Records the profile (`name@version`) a create uses.
    pub fn set_profile(&mut self, label: &str) {
        self.record.profile = label.to_owned();
    }

    /// Stores the intent; if that fails nothing may be done (fail closed).
    pub async fn intent(&mut self, detail: &str) -> Result<()> {
        let mut r = self.record.clone();
        r.performed_at = Utc::now();
        r.status = status::INTENT.into();
        r.detail = detail.into();
        self.intended = true;
        self.app
            .audit
            .append(r)
            .await
            .map_err(Error::AuditUnavailable)
    }

    /// Stores the outcome. When the call may have changed something — an intent was
    /// stored, or a call that is not a read succeeded — this waits for the record's commit;
    /// otherwise (a read, or a refusal or failure before any intent: nothing changed) the
    /// record is only queued, and the answer does not wait for the store
    /// (`store::audit_queue`). A failure here is logged: the change already happened and
    /// the caller must still receive its result (a password would otherwise be lost).
    pub async fn outcome<T>(mut self, result: &Result<T>, detail: impl FnOnce(&T) -> String) {
        self.record.performed_at = Utc::now();
        self.record.duration_ms = Some(self.started.elapsed().as_millis() as i64);
        match result {
            Ok(value) => {
                self.record.status = status::SUCCESS.into();
                self.record.detail = detail(value);
            }
            Err(e) => {
                self.record.status = status::FAILURE.into();
                self.record.detail = e.status().as_u16().to_string();
                self.record.error = Some(e.to_string());
            }
        }
        let env = if self.app.registry.knows_env(&self.record.env) {
            self.record.env.clone()
        } else {
            "other".to_owned()
        };
        metrics::counter!(
            "pgua_operations_total",
            "operation" => self.record.operation.clone(),
            "outcome" => self.record.status.clone(),
            "env" => env
        )
        .increment(1);
        if let Some(kind) = self.event {
            self.app.notifier.publish_audit(kind, &self.record);
        }
        let changed = self.intended || (result.is_ok() && !self.read);
        let stored = match changed {
            true => self.app.audit.append(self.record).await,
            false => self.app.audit.enqueue(self.record).await,
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "could not write audit outcome");
        }
    }
}

/// The filter of an audit export (`since`, `until` as RFC 3339 or `YYYY-MM-DD`; `env`,
/// `database`, `username`, `operation`, `principal`; `after_id`, `limit` up to
/// [`super::params::MAX_EXPORT_PAGE`]).
pub fn export_filter(q: &AuditQuery) -> Result<AuditFilter> {
    let time = |name: &str, raw: &Option<String>| {
        raw.as_deref()
            .map(|r| parse_time_param(name, r))
            .transpose()
    };
    Ok(AuditFilter {
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        env: q.env.clone(),
        database: q.database.clone(),
        username: q.username.as_ref().map(|u| u.to_ascii_lowercase()),
        operation: q.operation.clone(),
        principal: q.principal.clone(),
        after_id: q.after_id.unwrap_or(0),
        limit: q.limit.unwrap_or(1000) as u32,
    })
}

/// CSV columns of an export, in order.
pub const CSV_HEADER: [&str; 16] = [
    "id",
    "performed_at",
    "request_id",
    "principal",
    "client_addr",
    "env",
    "database",
    "username",
    "operation",
    "profile",
    "status",
    "detail",
    "error",
    "duration_ms",
    "prev_hash",
    "hash",
];

/// A cell a spreadsheet would run as a formula gets a leading `'` (OWASP's CSV advice).
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Writes records as CSV rows (RFC 4180 quoting, UTC times); `header` adds the header row.
pub fn write_csv(
    out: impl std::io::Write,
    records: &[AuditRecord],
    header: bool,
) -> anyhow::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    if header {
        w.write_record(CSV_HEADER)?;
    }
    for r in records {
        w.write_record([
            r.id.to_string(),
            r.performed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            cell(&r.request_id),
            cell(&r.principal),
            cell(&r.client_addr),
            cell(&r.env),
            cell(&r.db_name),
            cell(&r.pg_username),
            cell(&r.operation),
            cell(&r.profile),
            cell(&r.status),
            cell(&r.detail),
            r.error.as_deref().map(cell).unwrap_or_default(),
            r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
            r.prev_hash.clone(),
            r.hash.clone(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// One page of an audit export, itself audited (`audit:read`).
pub async fn export(app: &App, caller: &Caller, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
    let scope = AuditScope::for_read(app, caller, "audit:read", None, "");
    let result = async {
        let filter = export_filter(query)?;
        // The records still queued (the caller's own reads among them) belong in the page.
        app.audit.flush().await.map_err(Error::AuditUnavailable)?;
        Ok(app.store.audit_query(&filter).await?)
    }
    .await;
    scope
        .outcome(&result, |r: &Vec<AuditRecord>| {
            format!("{} records", r.len())
        })
        .await;
    result
}
