//! The process's one rustls crypto provider (ring), for every TLS client: target
//! databases, the PostgreSQL store, webhooks and SMTP. A leaf: it imports nothing of the
//! crate, so every layer may use it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The one crypto provider compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider: clients built without one of their
/// own (reqwest, sqlx, lettre) need it, and rustls accepts exactly one. Later calls do
/// nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
