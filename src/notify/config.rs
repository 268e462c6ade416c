//! `[notify]` and `[[notify.channels]]`: which events go where, and how delivery retries.
//!
//! Secrets (the Slack webhook URL, the Webex bot token, the HMAC key, the SMTP password) are
//! never written in the file: each channel names an environment variable (`…_env`) or a file
//! (`…_file`) that holds it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::EventKind;

/// `[notify]`: delivery settings and the channels.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Messages waiting per channel at most; more are dropped and counted, never waited for.
    pub queue_capacity: usize,
    /// Delivery attempts per message, the first included.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubled after each failed attempt.
    pub retry_base_delay_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    pub retry_max_delay_ms: u64,
    /// Seconds one HTTP request or SMTP session may take.
    pub timeout_secs: u64,
    /// Remind of passwords (`VALID UNTIL`) that expire within this many days; unset: never.
    pub expiry_reminder_days: Option<u32>,
    /// Seconds between two looks for expiring passwords.
    pub expiry_check_interval_secs: u64,
    /// Where messages go, each with its own filters.
    pub channels: Vec<ChannelConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1000,
            max_attempts: 5,
            retry_base_delay_ms: 1000,
            retry_max_delay_ms: 300_000,
            timeout_secs: 10,
            expiry_reminder_days: None,
            expiry_check_interval_secs: 3600,
            channels: Vec::new(),
        }
    }
}

/// One `[[notify.channels]]` entry; `kind` selects the channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelConfig {
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// A Webex Teams room, through the messages API with a bot token.
    Webex(WebexConfig),
    /// Email over SMTP.
    Email(EmailConfig),
    /// Any HTTP endpoint that takes the event as JSON, signed with HMAC-SHA256.
    Webhook(WebhookConfig),
}

/// `kind = "slack"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Name in log lines (default: the kind and position, e.g. `slack#1`).
    pub name: Option<String>,
    /// Events sent (empty: all).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Environments whose events are sent (empty: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Environment variable holding the webhook URL (the URL is the credential).
    pub url_env: Option<String>,
    /// File holding the webhook URL.
    pub url_file: Option<PathBuf>,
}

/// `kind = "webex"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebexConfig {
    /// Name in log lines (default: the kind and position, e.g. `webex#2`).
    pub name: Option<String>,
    /// Events sent (empty: all).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Environments whose events are sent (empty: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// API base URL; messages are posted to `<base_url>/v1/messages`.
    #[serde(default = "default_webex_base_url")]
    pub base_url: String,
    /// The room messages are posted to.
    pub room_id: String,
    /// Environment variable holding the bot's access token.
    pub token_env: Option<String>,
    /// File holding the bot's access token.
    pub token_file: Option<PathBuf>,
}

fn default_webex_base_url() -> String {
    "https://webexapis.com".into()
}

/// `kind = "webhook"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name in log lines (default: the kind and position, e.g. `webhook#3`).
    pub name: Option<String>,
    /// Events sent (empty: all).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Environments whose events are sent (empty: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// The URL the event is POSTed to as JSON.
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 key for `X-PGUA-Signature`.
    pub secret_env: Option<String>,
    /// File holding the HMAC-SHA256 key.
    pub secret_file: Option<PathBuf>,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, default port 465).
    Implicit,
}

/// `kind = "email"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Name in log lines (default: the kind and position, e.g. `email#4`).
    pub name: Option<String>,
    /// Events sent (empty: all).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Environments whose events are sent (empty: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// SMTP server host name (also the name its certificate must carry).
    pub host: String,
    /// SMTP port (default: 25, 587 or 465 by `tls`).
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `implicit`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Extra PEM CA bundle trusted for the server's certificate, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Sender address, e.g. `pg-user-api <pgua@example.com>`.
    pub from: String,
    /// Recipient addresses.
    pub to: Vec<String>,
    /// SMTP user name; unset: no authentication.
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// File holding the SMTP password.
    pub password_file: Option<PathBuf>,
}

/// What a channel lets through; empty lists let everything through.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Event kinds sent.
    pub events: Vec<EventKind>,
    /// Environments whose events are sent.
    pub environments: Vec<String>,
}

impl Filter {
    /// Whether an event of `kind` in `env` passes.
    pub fn accepts(&self, kind: EventKind, env: &str) -> bool {
        (self.events.is_empty() || self.events.contains(&kind))
            && (self.environments.is_empty() || self.environments.iter().any(|e| e == env))
    }
}

impl ChannelConfig {
    /// `slack`, `webex`, `email` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Slack(_) => "slack",
            ChannelConfig::Webex(_) => "webex",
            ChannelConfig::Email(_) => "email",
            ChannelConfig::Webhook(_) => "webhook",
        }
    }

    /// The configured name, or the kind and 1-based position.
    pub fn display_name(&self, position: usize) -> String {
        let name = match self {
            ChannelConfig::Slack(c) => &c.name,
            ChannelConfig::Webex(c) => &c.name,
            ChannelConfig::Email(c) => &c.name,
            ChannelConfig::Webhook(c) => &c.name,
        };
        name.clone()
            .unwrap_or_else(|| format!("{}#{position}", self.kind()))
    }

    /// The channel's event and environment filter.
    pub fn filter(&self) -> Filter {
        let (events, environments) = match self {
            ChannelConfig::Slack(c) => (&c.events, &c.environments),
            ChannelConfig::Webex(c) => (&c.events, &c.environments),
            ChannelConfig::Email(c) => (&c.events, &c.environments),
            ChannelConfig::Webhook(c) => (&c.events, &c.environments),
        };
        Filter {
            events: events.clone(),
            environments: environments.clone(),
        }
    }

    /// Checks what serde cannot, without reading any secret.
    fn validate(&self) -> anyhow::Result<()> {
        match self {
            ChannelConfig::Slack(c) => one_source("url", &c.url_env, &c.url_file),
            ChannelConfig::Webex(c) => {
                if c.room_id.trim().is_empty() {
                    bail!("room_id is empty");
                }
                http_url("base_url", &c.base_url)?;
                one_source("token", &c.token_env, &c.token_file)
            }
            ChannelConfig::Webhook(c) => {
                http_url("url", &c.url)?;
                one_source("secret", &c.secret_env, &c.secret_file)
            }
            ChannelConfig::Email(c) => {
                if c.host.trim().is_empty() {
                    bail!("host is empty");
                }
                if c.to.is_empty() {
                    bail!("to lists no recipient");
                }
                match (&c.username, &c.password_env, &c.password_file) {
                    (Some(_), _, _) => one_source("password", &c.password_env, &c.password_file),
                    (None, None, None) => Ok(()),
                    (None, _, _) => bail!("a password is set but no username"),
                }
            }
        }
    }
}

fn one_source(what: &str, env: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<()> {
    match (env, file) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        (None, None) => bail!("set {what}_env or {what}_file (secrets are never in the file)"),
        (Some(_), Some(_)) => bail!("set either {what}_env or {what}_file, not both"),
    }
}

fn http_url(what: &str, url: &str) -> anyhow::Result<()> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        bail!("{what} '{url}' is not an http:// or https:// URL")
    }
}

impl NotifyConfig {
    /// Checks numbers and each channel's settings, without reading secrets.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.queue_capacity == 0 {
            bail!("notify.queue_capacity must be at least 1");
        }
        if self.max_attempts == 0 {
            bail!("notify.max_attempts must be at least 1");
        }
        if self.timeout_secs == 0 {
            bail!("notify.timeout_secs must be at least 1");
        }
        if self.expiry_reminder_days == Some(0) {
            bail!("notify.expiry_reminder_days must be at least 1 (or unset)");
        }
        if self.expiry_check_interval_secs == 0 {
            bail!("notify.expiry_check_interval_secs must be at least 1");
        }
        for (i, channel) in self.channels.iter().enumerate() {
            channel
                .validate()
                .with_context(|| format!("notify channel {}", channel.display_name(i + 1)))?;
        }
        Ok(())
    }
}

/// Reads a secret from the environment variable or the file a channel names (trailing
/// newline dropped); either way it must not be empty.
pub fn read_secret(
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<SecretString> {
    let value = match (env, file) {
        (Some(var), _) => std::env::var(var).unwrap_or_default(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} from {}", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        (None, None) => bail!("no source for the {what}"),
    };
    if value.is_empty() {
        match env {
            Some(var) => bail!("the {what} variable {var} is not set or empty"),
            None => bail!("the {what} file is empty"),
        }
    }
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<NotifyConfig> {
        let c: NotifyConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn channels_of_every_kind_parse() {
        let c = parse(
            r#"
            queue_capacity = 10
            expiry_reminder_days = 7
            [[channels]]
            kind = "slack"
            url_env = "SLACK_URL"
            events = ["create", "failure"]
            environments = ["prod"]
            [[channels]]
            kind = "webex"
            room_id = "R1"
            token_file = "/run/secrets/webex"
            [[channels]]
            kind = "email"
            host = "smtp.example.com"
            tls = "implicit"
            from = "pgua@example.com"
            to = ["dba@example.com"]
            username = "pgua"
            password_env = "SMTP_PASS"
            [[channels]]
            kind = "webhook"
            name = "audit-sink"
            url = "https://sink.example.com/pgua"
            secret_env = "HOOK_KEY"
            "#,
        )
        .unwrap();
        assert_eq!(c.channels.len(), 4);
        let filter = c.channels[0].filter();
        assert!(filter.accepts(EventKind::Create, "prod"));
        assert!(!filter.accepts(EventKind::Create, "dev"));
        assert!(!filter.accepts(EventKind::Drop, "prod"));
        assert!(c.channels[1].filter().accepts(EventKind::Drop, "dev"));
        assert_eq!(c.channels[3].display_name(4), "audit-sink");
        assert_eq!(c.channels[2].display_name(3), "email#3");
        match &c.channels[1] {
            ChannelConfig::Webex(w) => assert_eq!(w.base_url, "https://webexapis.com"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_channel_keys_and_kinds_are_rejected() {
        let err = parse("[[channels]]\nkind = \"slack\"\nurl = \"https://x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("url"), "{err:#}");
        let err = parse("[[channels]]\nkind = \"pager\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("pager"), "{err:#}");
        let err = parse("[[channels]]\nkind = \"slack\"\nurl_env = \"U\"\nevents = [\"boot\"]\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("boot"), "{err:#}");
    }

    #[test]
    fn a_secret_needs_exactly_one_source() {
        let err = parse("[[channels]]\nkind = \"slack\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("url_env or url_file"),
            "{err:#}"
        );
        let err = parse(
            "[[channels]]\nkind = \"webhook\"\nurl = \"http://h\"\nsecret_env = \"K\"\nsecret_file = \"/k\"\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not both"), "{err:#}");
    }

    #[test]
    fn email_without_username_needs_no_password() {
        parse("[[channels]]\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n")
            .unwrap();
        let err = parse(
            "[[channels]]\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\npassword_env = \"P\"\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("no username"), "{err:#}");
    }

    #[test]
    fn secrets_are_read_from_files_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let s = read_secret("token", None, Some(&path)).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret("token", None, Some(&path)).is_err());
    }
}
