//! Notifications: Slack, Webex, email and signed webhooks, sent from bounded queues.
//!
//! Every changing operation's outcome (and every failure of one) becomes an [`Event`], built
//! from the audit record, so it holds exactly what the audit log holds and never a password.
//! [`Notifier::publish`] only ever tries to enqueue: delivery, retries and backoff happen in
//! one background task per channel, and a full queue drops the message (logged and counted)
//! rather than slowing the API call down.

pub mod config;
mod email;
mod queue;
mod slack;
mod webex;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{AuditRecord, status};
pub use config::{ChannelConfig, NotifyConfig};
use queue::{ChannelQueue, Retry};

/// What happened, as channel filters name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A role was created (or found to exist already).
    Create,
    /// A password was reset.
    Reset,
    /// A role's search_path was set.
    SearchPath,
    /// A role was locked.
    Lock,
    /// A role was unlocked.
    Unlock,
    /// A role's password validity was ended or set.
    Expire,
    /// A role's password validity was extended.
    Renew,
    /// A role's attributes or connection limit changed.
    Alter,
    /// A role was dropped.
    Drop,
    /// Privileges or a membership were granted.
    Grant,
    /// Privileges or a membership were revoked.
    Revoke,
    /// A changing operation failed or was refused.
    Failure,
    /// A role's password expires soon (reminder).
    Expiring,
}

impl EventKind {
    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Reset => "reset",
            EventKind::SearchPath => "search-path",
            EventKind::Lock => "lock",
            EventKind::Unlock => "unlock",
            EventKind::Expire => "expire",
            EventKind::Renew => "renew",
            EventKind::Alter => "alter",
            EventKind::Drop => "drop",
            EventKind::Grant => "grant",
            EventKind::Revoke => "revoke",
            EventKind::Failure => "failure",
            EventKind::Expiring => "expiring",
        }
    }
}

/// One notification; the generic webhook receives it as JSON, the others as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The audited operation (`create:devqa`, `reset`, …; `expiring` for reminders).
    pub operation: String,
    /// `success`, `failure` or `reminder`.
    pub outcome: String,
    /// Target environment.
    pub env: String,
    /// Target database.
    pub database: String,
    /// Role concerned.
    pub role: String,
    /// Who called.
    pub principal: String,
    /// From where.
    pub client_addr: String,
    /// The request's id (`x-request-id`), empty for reminders.
    pub request_id: String,
    /// When it happened (UTC).
    pub time: DateTime<Utc>,
    /// Outcome text (`user created`, the HTTP status of a failure, the expiry of a reminder).
    pub detail: String,
    /// Error text shown to the caller, if any.
    pub error: Option<String>,
}

/// A dry run's outcome detail: nothing changed, so nobody is told.
const DRY_RUN: &str = "dry run";

impl Event {
    /// The event the audit outcome of a change of `kind` stands for: its success or its
    /// failure; never an intent or a dry run. (Reads have no kind and never get here.)
    pub fn from_audit(kind: EventKind, record: &AuditRecord) -> Option<Self> {
        let event = match record.status.as_str() {
            status::SUCCESS if record.detail != DRY_RUN => kind,
            status::FAILURE => EventKind::Failure,
            _ => return None,
        };
        Some(Self {
            event,
            operation: record.operation.clone(),
            outcome: record.status.clone(),
            env: record.env.clone(),
            database: record.db_name.clone(),
            role: record.pg_username.clone(),
            principal: record.principal.clone(),
            client_addr: record.client_addr.clone(),
            request_id: record.request_id.clone(),
            time: record.performed_at,
            detail: record.detail.clone(),
            error: record.error.clone(),
        })
    }

    /// One line: what happened to which role where.
    pub fn summary(&self) -> String {
        let what = match self.outcome.as_str() {
            status::SUCCESS => format!("{} succeeded", self.operation),
            status::FAILURE => format!("{} failed", self.operation),
            _ => "password expires soon".to_owned(),
        };
        // Env and database are caller text: keep the line one line (mail headers, chat).
        single_line(&format!(
            "[pg-user-api] {what}: role {} on {}/{}",
            self.role, self.env, self.database
        ))
    }

    /// The fields as `label: value` pairs, in the order messages show them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("event", self.event.as_str().to_owned()),
            ("operation", self.operation.clone()),
            ("outcome", self.outcome.clone()),
            ("env", self.env.clone()),
            ("database", self.database.clone()),
            ("role", self.role.clone()),
            ("principal", self.principal.clone()),
            ("client", self.client_addr.clone()),
            ("request id", self.request_id.clone()),
            ("time", self.time.to_rfc3339()),
            ("detail", self.detail.clone()),
        ];
        if let Some(e) = &self.error {
            f.push(("error", e.clone()));
        }
        f.retain(|(_, v)| !v.is_empty());
        f
    }

    /// The summary and one `label: value` line per field.
    pub fn text(&self) -> String {
        let mut out = self.summary();
        out.push('\n');
        for (label, value) in self.fields() {
            out.push_str(&format!("\n{label}: {}", single_line(&value)));
        }
        out
    }
}

fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Delivery counts since start, for logs and a metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Fans events out to the channels whose filters accept them.
pub struct Notifier {
    queues: Vec<ChannelQueue>,
    counters: Arc<Counters>,
    expiry_reminder_days: Option<u32>,
    expiry_check_interval: Duration,
}

impl Notifier {
    /// Reads each channel's secret and starts one delivery task per channel; fails at
    /// start-up, not at the first event, when a secret or address is missing or bad.
    pub fn new(config: &NotifyConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let timeout = Duration::from_secs(config.timeout_secs);
        let retry = Retry {
            max_attempts: config.max_attempts,
            base_delay: Duration::from_millis(config.retry_base_delay_ms),
            max_delay: Duration::from_millis(config.retry_max_delay_ms),
        };
        let http = if config.channels.is_empty() {
            None
        } else {
            // reqwest is built without a crypto provider of its own: ring must be installed.
            crate::tls::install_crypto_provider();
            Some(
                reqwest::Client::builder()
                    .timeout(timeout)
                    .user_agent(concat!("pg-user-api/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .context("building the notification HTTP client")?,
            )
        };
        let mut queues = Vec::with_capacity(config.channels.len());
        for (i, channel_config) in config.channels.iter().enumerate() {
            let name = channel_config.display_name(i + 1);
            let http = http
                .clone()
                .expect("an HTTP client exists when channels do");
            let channel = Channel::new(channel_config, http, timeout)
                .with_context(|| format!("notify channel {name}"))?;
            queues.push(ChannelQueue::spawn(
                name,
                channel_config.filter(),
                channel,
                config.queue_capacity,
                retry.clone(),
                counters.clone(),
            ));
        }
        Ok(Self {
            queues,
            counters,
            expiry_reminder_days: config.expiry_reminder_days,
            expiry_check_interval: Duration::from_secs(config.expiry_check_interval_secs),
        })
    }

    /// Queues `event` for every channel that wants it; never waits and never fails.
    pub fn publish(&self, event: Event) {
        for queue in &self.queues {
            queue.offer(&event);
        }
    }

    /// Publishes the event the audit outcome of a change of `kind` stands for, if any.
    pub fn publish_audit(&self, kind: EventKind, record: &AuditRecord) {
        if self.queues.is_empty() {
            return;
        }
        if let Some(event) = Event::from_audit(kind, record) {
            self.publish(event);
        }
    }

    /// Each channel's name and queue depth, for metrics.
    pub fn queue_depths(&self) -> Vec<(&str, usize)> {
        self.queues.iter().map(|q| q.depth()).collect()
    }

    /// Messages dropped because a channel's queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Messages a channel accepted.
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    /// Messages given up on after the last attempt or a permanent refusal.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Days ahead to remind of expiring passwords, and how often to look; none: off.
    pub fn expiry_reminders(&self) -> Option<(u32, Duration)> {
        if self.queues.is_empty() {
            return None;
        }
        self.expiry_reminder_days
            .map(|days| (days, self.expiry_check_interval))
    }
}

/// Why one delivery attempt failed.
#[derive(Debug)]
pub(crate) enum DeliveryError {
    /// Worth another attempt: connection trouble, timeouts, 5xx, 429, SMTP 4xx.
    Transient(String),
    /// Another attempt would fail the same way: bad token, bad address, 4xx, SMTP 5xx.
    Permanent(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Transient(m) => write!(f, "{m} (will retry)"),
            DeliveryError::Permanent(m) => write!(f, "{m} (permanent)"),
        }
    }
}

/// A configured destination, ready to send.
pub(crate) enum Channel {
    Slack(slack::Slack),
    Webex(webex::Webex),
    Email(email::Email),
    Webhook(webhook::Webhook),
}

impl Channel {
    fn new(
        config: &ChannelConfig,
        http: reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(match config {
            ChannelConfig::Slack(c) => Channel::Slack(slack::Slack::new(c, http)?),
            ChannelConfig::Webex(c) => Channel::Webex(webex::Webex::new(c, http)?),
            ChannelConfig::Email(c) => Channel::Email(email::Email::new(c, timeout)?),
            ChannelConfig::Webhook(c) => Channel::Webhook(webhook::Webhook::new(c, http)?),
        })
    }

    async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        match self {
            Channel::Slack(c) => c.send(event).await,
            Channel::Webex(c) => c.send(event).await,
            Channel::Email(c) => c.send(event).await,
            Channel::Webhook(c) => c.send(event).await,
        }
    }
}

/// Sends an HTTP request and sorts the answer into delivered, transient or permanent.
async fn send_http(request: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    // Without the URL: a Slack webhook URL is itself the credential.
    let response = request
        .send()
        .await
        .map_err(|e| DeliveryError::Transient(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    let message = format!("HTTP {status}: {}", single_line(&body));
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(DeliveryError::Transient(message))
    } else {
        Err(DeliveryError::Permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(operation: &str, status: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            id: 0,
            performed_at: Utc::now(),
            request_id: "req-1".into(),
            principal: "ci".into(),
            client_addr: "127.0.0.1".into(),
            env: "dev".into(),
            db_name: "app".into(),
            pg_username: "alice".into(),
            operation: operation.into(),
            profile: String::new(),
            status: status.into(),
            detail: detail.into(),
            error: None,
            duration_ms: Some(3),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn changes_and_their_failures_notify_intents_and_dry_runs_do_not() {
        let created = record("create:devqa", "success", "user created");
        let e = Event::from_audit(EventKind::Create, &created).unwrap();
        assert_eq!(
            (e.event, e.operation.as_str()),
            (EventKind::Create, "create:devqa")
        );
        let e = Event::from_audit(EventKind::Drop, &record("drop", "failure", "409")).unwrap();
        assert_eq!(e.event, EventKind::Failure);
        for (kind, op, st, detail) in [
            (EventKind::Reset, "reset", "intent", ""),
            (EventKind::Create, "create:app", "success", "dry run"),
        ] {
            assert_eq!(
                Event::from_audit(kind, &record(op, st, detail)),
                None,
                "{op} {st}"
            );
        }
    }

    #[test]
    fn caller_text_cannot_break_the_summary_line() {
        let mut r = record("reset", "success", "password reset");
        r.env = "dev\r\nBcc: x@example.com".into();
        let e = Event::from_audit(EventKind::Reset, &r).unwrap();
        assert!(!e.summary().contains('\n'), "{}", e.summary());
        assert!(!e.summary().contains('\r'));
    }

    #[test]
    fn event_kinds_have_their_config_names() {
        for kind in [
            EventKind::SearchPath,
            EventKind::Expiring,
            EventKind::Failure,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
