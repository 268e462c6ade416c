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
    /// Generated passwords are ASCII, for which SASLprep changes nothing.
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
    use hmac::{KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let salted = pbkdf2_hmac_sha256(password, salt, SCRAM_ITERATIONS);
    let mac = |label: &[u8]| {
        let mut m = hmac::Hmac::<Sha256>::new_from_slice(&salted).expect("any key length");
        m.update(label);
        m.finalize().into_bytes()
    };
    let stored_key = Sha256::digest(mac(b"Client Key"));
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(mac(b"Server Key"))
    )
}

/// PBKDF2-HMAC-SHA256 for one 32-byte block, the SCRAM "Hi" function. The HMAC key's inner
/// and outer states are computed once, so each of the 4096 iterations costs exactly two
/// SHA-256 compressions (hardware-accelerated where the CPU has SHA extensions) and no
/// allocation or copying: this is the main CPU cost of creating a user.
fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    use sha2::block_api::compress256;
    use sha2::{Digest, Sha256};
    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let mut key = [0u8; 64];
    if password.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let (mut inner, mut outer) = (IV, IV);
    compress256(&mut inner, &[key.map(|b| b ^ 0x36)]);
    compress256(&mut outer, &[key.map(|b| b ^ 0x5c)]);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(password).expect("any key length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut result = u;
    // A 32-byte message after the 64-byte key block, padded: 96 bytes = 768 bits.
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    let digest = |state: [u32; 8]| {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    };
    for _ in 1..iterations {
        block[..32].copy_from_slice(&u);
        let mut state = inner;
        compress256(&mut state, &[block]);
        block[..32].copy_from_slice(&digest(state));
        let mut state = outer;
        compress256(&mut state, &[block]);
        u = digest(state);
        for (r, x) in result.iter_mut().zip(u) {
            *r ^= x;
        }
    }
    result
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
        let long = "p".repeat(100);
        for pw in ["pencil", "x", "Zm9vYmFyYmF6cXV1eA", long.as_str()] {
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
