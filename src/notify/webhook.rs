//! Generic webhook: the event as JSON, signed `X-PGUA-Signature: sha256=<hex HMAC-SHA256>`.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::config::{WebhookConfig, read_secret};
use super::{DeliveryError, Event, send_http};

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-PGUA-Signature";

/// An HTTP endpoint that takes the event as JSON.
pub(crate) struct Webhook {
    url: String,
    key: SecretString,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let key = read_secret(
            "HMAC key",
            config.secret_env.as_deref(),
            config.secret_file.as_deref(),
        )?;
        Ok(Self {
            url: config.url.clone(),
            key,
            http,
        })
    }

    pub async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| DeliveryError::Permanent(format!("encoding the event: {e}")))?;
        let request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(self.key.expose_secret().as_bytes(), &body),
            )
            .header("X-PGUA-Event", event.event.as_str())
            .body(body);
        send_http(request).await
    }
}

/// `sha256=` and the lower-case hex HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let sig = super::signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
