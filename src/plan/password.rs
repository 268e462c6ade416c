//! Generated passwords and the SCRAM-SHA-256 verifiers sent in their place.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};

/// Bytes of OS randomness per password: 128 bits, as the original's `token_urlsafe(16)`.
const PASSWORD_BYTES: usize = 16;

/// A generated password. `Debug` never shows it.
pub struct Password(SecretString);

impl Password {
    /// A fresh URL-safe password from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; PASSWORD_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source failed");
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The plaintext, for the one response that hands it to the caller.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The SCRAM-SHA-256 verifier (PBKDF2, 4096 iterations): CPU-bound, so call it off the async executor.
    pub fn scram_verifier(&self) -> Verifier {
        Verifier(SecretString::from(
            postgres_protocol::password::scram_sha_256(self.expose().as_bytes()),
        ))
    }
}

impl Clone for Password {
    fn clone(&self) -> Self {
        Self(SecretString::from(self.expose().to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(********)")
    }
}

/// A SCRAM-SHA-256 verifier: what the target stores instead of the password. Treated as a secret too.
pub struct Verifier(SecretString);

impl Verifier {
    /// The verifier text, only for building the statement that sets it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(********)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_url_safe_and_carry_128_bits() {
        let p = Password::generate();
        assert_eq!(p.expose().len(), 22);
        assert!(
            p.expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(p.expose(), Password::generate().expose());
    }

    #[test]
    fn verifier_is_scram_and_hides_the_password() {
        let p = Password::generate();
        let v = p.scram_verifier();
        assert!(v.expose().starts_with("SCRAM-SHA-256$4096:"));
        assert!(!v.expose().contains(p.expose()));
        assert_eq!(
            format!("{p:?} {v:?}"),
            "Password(********) Verifier(********)"
        );
    }
}
