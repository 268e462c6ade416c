//! The console's sign-in session after single sign-on: a 256-bit random id in an
//! `HttpOnly`, `SameSite=Strict` cookie, known to the store only by its SHA-256, and the
//! CSRF token every call made with it must carry in `x-csrf-token`.
//!
//! The CSRF token is derived from the session id (SHA-256 under a domain label), so the
//! page can be given it again after a reload (`/api/v1/me`) without the store keeping it in
//! the clear; knowing it tells nothing of the id. A cross-site page can neither read it (no
//! CORS) nor send the cookie along (`SameSite=Strict`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// The header a cookie-authenticated call carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie over TLS: the `__Host-` prefix makes the browser refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no sibling host can plant or shadow it.
pub const COOKIE_SECURE: &str = "__Host-pgua_session";
/// The session cookie over plain HTTP (development, loopback tests).
pub const COOKIE_PLAIN: &str = "pgua_session";
/// The short-lived cookie that carries a started sign-in to its callback.
pub const LOGIN_COOKIE: &str = "pgua_oidc_login";
/// Where the login cookie is sent: the callback only.
pub const LOGIN_COOKIE_PATH: &str = "/auth/oidc/callback";

/// 256 bits from the OS CSPRNG, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 (hex) of a session id or CSRF token: what the store keeps.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of a session id.
pub fn csrf_token(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"pg-user-api csrf\0");
    h.update(session_id.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The session cookie's name.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { COOKIE_SECURE } else { COOKIE_PLAIN }
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    secure: bool,
    max_age: u64,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    )
}

/// The value of cookie `name` in a `Cookie` header.
pub fn read_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_session_and_is_not_its_id() {
        let id = random_token();
        assert_eq!(csrf_token(&id), csrf_token(&id));
        assert_ne!(csrf_token(&id), csrf_token(&random_token()));
        assert_ne!(digest_hex(&csrf_token(&id)), digest_hex(&id));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = "a=1; pgua_session=xyz; __Host-pgua_session=\"q\"";
        assert_eq!(read_cookie(h, COOKIE_PLAIN), Some("xyz"));
        assert_eq!(read_cookie(h, COOKIE_SECURE), Some("q"));
        assert_eq!(read_cookie(h, "pgua"), None);
        let c = set_cookie(COOKIE_SECURE, "v", "/", "Strict", true, 60);
        assert_eq!(
            c,
            "__Host-pgua_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
    }
}
