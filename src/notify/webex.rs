//! Webex Teams: the messages API, with a bot token, `{"roomId", "markdown"}`.

use secrecy::{ExposeSecret, SecretString};

use super::config::{WebexConfig, read_secret};
use super::{DeliveryError, Event, send_http};

/// A Webex room, posted to as a bot.
pub(crate) struct Webex {
    endpoint: String,
    room_id: String,
    token: SecretString,
    http: reqwest::Client,
}

impl Webex {
    pub fn new(config: &WebexConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let token = read_secret(
            "bot token",
            config.token_env.as_deref(),
            config.token_file.as_deref(),
        )?;
        Ok(Self {
            endpoint: format!("{}/v1/messages", config.base_url.trim_end_matches('/')),
            room_id: config.room_id.clone(),
            token,
            http,
        })
    }

    pub async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "roomId": self.room_id, "markdown": markdown(event) });
        let request = self
            .http
            .post(&self.endpoint)
            .bearer_auth(self.token.expose_secret())
            .json(&body);
        send_http(request).await
    }
}

/// A bold summary, then one line per field; values escaped so caller text stays text.
fn markdown(event: &Event) -> String {
    let mut out = format!("**{}**", escape(&event.summary()));
    for (label, value) in event.fields() {
        out.push_str(&format!("  \n{label}: {}", escape(&value)));
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push(' ');
            continue;
        }
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '~' | '|' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markdown_in_caller_text_is_escaped() {
        assert_eq!(super::escape("app_user [x](y)"), r"app\_user \[x\]\(y\)");
    }
}
