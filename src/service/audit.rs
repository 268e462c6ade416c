//! Audit records around an operation: an intent before any DDL, one outcome after.

use std::time::Instant;

use chrono::Utc;

use super::input::Input;
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::store::{AuditRecord, status};

/// One operation's audit trail in the making.
pub struct AuditScope<'a> {
    app: &'a App,
    record: AuditRecord,
    started: Instant,
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
    /// Starts the trail of `operation` with the env, database and username as given.
    pub fn new(app: &'a App, caller: &Caller, operation: &str, input: &Input) -> Self {
        let field = |name| cap(input.get(name).unwrap_or_default());
        Self {
            app,
            record: AuditRecord {
                id: 0,
                performed_at: Utc::now(),
                request_id: caller.request_id.clone(),
                principal: caller.principal.clone(),
                client_addr: caller.client_addr.clone(),
                env: field("env"),
                db_name: field("database"),
                pg_username: field("username"),
                operation: operation.to_owned(),
                profile: String::new(),
                status: String::new(),
                detail: String::new(),
                error: None,
                duration_ms: None,
            },
            started: Instant::now(),
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
    pub async fn intent(&self, detail: &str) -> Result<()> {
        let mut r = self.record.clone();
        r.performed_at = Utc::now();
        r.status = status::INTENT.into();
        r.detail = detail.into();
        self.app
            .audit
            .append(r)
            .await
            .map_err(Error::AuditUnavailable)
    }

    /// Stores the outcome. A failure here is logged: the change already happened and the
    /// caller must still receive its result (a password would otherwise be lost).
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
        self.app.notifier.publish_audit(&self.record);
        if let Err(e) = self.app.audit.append(self.record).await {
            tracing::error!(error = %e, "could not write audit outcome");
        }
    }
}
