//! Email over SMTP (lettre): plain, STARTTLS or implicit TLS, with optional authentication.

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::config::{EmailConfig, SmtpTls, read_secret};
use super::{DeliveryError, Event};

/// An SMTP relay and the message's sender and recipients.
pub(crate) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Certificate checks against the public roots plus `ca_file`, for the configured host name.
fn tls_parameters(config: &EmailConfig) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem =
            std::fs::read(path).with_context(|| format!("reading ca_file {}", path.display()))?;
        let ca = Certificate::from_pem(&pem)
            .with_context(|| format!("ca_file {} holds no PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder.build()?)
}

impl Email {
    pub fn new(config: &EmailConfig, timeout: Duration) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .from
            .parse()
            .with_context(|| format!("from address '{}'", config.from))?;
        let to = config
            .to
            .iter()
            .map(|a| a.parse().with_context(|| format!("to address '{a}'")))
            .collect::<anyhow::Result<Vec<Mailbox>>>()?;
        let (tls, default_port) = match config.tls {
            SmtpTls::None => (Tls::None, 25),
            SmtpTls::Starttls => (Tls::Required(tls_parameters(config)?), 587),
            SmtpTls::Implicit => (Tls::Wrapper(tls_parameters(config)?), 465),
        };
        // builder_dangerous only means "no TLS preset": the mode is chosen explicitly here.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &config.username {
            let password = read_secret(
                "SMTP password",
                config.password_env.as_deref(),
                config.password_file.as_deref(),
            )?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
        })
    }

    pub async fn send(&self, event: &Event) -> Result<(), DeliveryError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(event.summary())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(event.text())
            .map_err(|e| DeliveryError::Permanent(format!("building the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Transient(e.to_string())),
        }
    }
}
