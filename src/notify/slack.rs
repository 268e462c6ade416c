//! Slack incoming webhook: `{"text": …}` POSTed to the webhook URL.

use secrecy::{ExposeSecret, SecretString};

use super::config::{SlackConfig, read_secret};
use super::{DeliveryError, Event, send_http};

/// A Slack incoming webhook.
pub(crate) struct Slack {
    url: SecretString,
    http: reqwest::Client,
}

impl Slack {
    pub fn new(config: &SlackConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let url = read_secret(
            "webhook URL",
            config.url_env.as_deref(),
            config.url_file.as_deref(),
        )?;
        if !url.expose_secret().starts_with("https://")
            && !url.expose_secret().starts_with("http://")
        {
            anyhow::bail!("the webhook URL is not an http:// or https:// URL");
        }
        Ok(Self { url, http })
    }

    pub async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "text": escape(&event.text()) });
        send_http(self.http.post(self.url.expose_secret()).json(&body)).await
    }
}

/// Slack reads `<…>` as links and mentions and `&` as an entity; caller text must not be.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn angle_brackets_cannot_mention_anyone() {
        assert_eq!(
            super::escape("<!channel> & co"),
            "&lt;!channel&gt; &amp; co"
        );
    }
}
