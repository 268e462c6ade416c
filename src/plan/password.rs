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
        Self::scram_verifiers(std::slice::from_ref(self)).remove(0)
    }

    /// The verifiers of several passwords, computed side by side ([`pgua_scram`]: about
    /// half the CPU each of computing them one by one, on CPUs with SHA extensions).
    pub fn scram_verifiers(passwords: &[Password]) -> Vec<Verifier> {
        let salts: Vec<[u8; 16]> = passwords
            .iter()
            .map(|_| {
                let mut salt = [0u8; 16];
                OsRng
                    .try_fill_bytes(&mut salt)
                    .expect("the operating system's random source failed");
                salt
            })
            .collect();
        let inputs: Vec<pgua_scram::Input> = passwords
            .iter()
            .zip(&salts)
            .map(|(p, salt)| pgua_scram::Input {
                password: p.expose().as_bytes(),
                salt,
            })
            .collect();
        pgua_scram::verifiers(&inputs)
            .into_iter()
            .map(|v| Verifier(SecretString::from(v)))
            .collect()
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
    fn verifiers_hashed_together_each_have_their_own_salt_and_password() {
        use base64::engine::general_purpose::STANDARD;
        let passwords: Vec<Password> = (0..5).map(|_| Password::generate()).collect();
        let verifiers = Password::scram_verifiers(&passwords);
        let mut salts = std::collections::HashSet::new();
        for (p, v) in passwords.iter().zip(&verifiers) {
            let salt = v
                .expose()
                .split('$')
                .nth(1)
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap();
            assert!(salts.insert(salt.to_owned()), "salt {salt} used twice");
            let salt = STANDARD.decode(salt).unwrap();
            assert_eq!(salt.len(), 16);
            assert_eq!(
                pgua_scram::verifier(p.expose().as_bytes(), &salt),
                v.expose()
            );
        }
        assert_eq!(salts.len(), 5);
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
