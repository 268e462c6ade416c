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

    /// The SCRAM-SHA-256 verifier (PBKDF2, 4096 iterations, a random 16-byte salt), as
    /// PostgreSQL stores it. CPU-bound: call it off the async executor.
    ///
    /// ring's PBKDF2 does half the hashing of the generic HMAC loop and is the main cost of a
    /// create. Generated passwords are ASCII, for which SASLprep changes nothing.
    pub fn scram_verifier(&self) -> Verifier {
        let mut salt = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut salt)
            .expect("the operating system's random source failed");
        Verifier(SecretString::from(scram_verifier_with_salt(
            self.expose().as_bytes(),
            &salt,
        )))
    }
}

/// PostgreSQL's iteration count for SCRAM-SHA-256.
const SCRAM_ITERATIONS: u32 = 4096;

fn scram_verifier_with_salt(password: &[u8], salt: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use ring::{digest, hmac, pbkdf2};
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(SCRAM_ITERATIONS).expect("non-zero"),
        salt,
        password,
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
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

    /// RFC 5802 / 7677 computed the slow, obvious way with other crates.
    fn reference_verifier(password: &[u8], salt: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        use hmac::{KeyInit, Mac};
        use sha2::{Digest, Sha256};
        let mac = |key: &[u8], data: &[&[u8]]| {
            let mut m = hmac::Hmac::<Sha256>::new_from_slice(key).unwrap();
            for d in data {
                m.update(d);
            }
            m.finalize().into_bytes()
        };
        let mut u = mac(password, &[salt, &[0, 0, 0, 1]]);
        let mut salted = u;
        for _ in 1..4096 {
            u = mac(password, &[&u]);
            for (s, x) in salted.iter_mut().zip(u) {
                *s ^= x;
            }
        }
        let client_key = mac(&salted, &[b"Client Key"]);
        let stored_key = Sha256::digest(client_key);
        let server_key = mac(&salted, &[b"Server Key"]);
        format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored_key),
            STANDARD.encode(server_key)
        )
    }

    #[test]
    fn verifier_matches_the_rfc_computation() {
        let salt = *b"0123456789abcdef";
        for pw in ["pencil", "x", "Zm9vYmFyYmF6cXV1eA"] {
            assert_eq!(
                scram_verifier_with_salt(pw.as_bytes(), &salt),
                reference_verifier(pw.as_bytes(), &salt)
            );
        }
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
