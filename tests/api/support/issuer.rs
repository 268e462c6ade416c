//! A token issuer of the tests' own: HTTPS on loopback with a private CA, serving OpenID
//! discovery and a JWKS, signing RS256 (keys from `openssl`) and ES256 (keys from ring)
//! tokens. It can rotate keys, change its `Cache-Control` and go down. Self-contained, so
//! the load benchmark uses it too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A signing key and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (RS256), made by `openssl`.
    pub fn rsa(kid: &str) -> Self {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .stderr(std::process::Stdio::null())
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl genrsa failed");
        let der = rustls_pemfile::rsa_private_keys(&mut out.stdout.as_slice())
            .next()
            .expect("a PKCS#1 key")
            .unwrap();
        let pair = ring::rsa::KeyPair::from_der(der.secret_pkcs1_der()).unwrap();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(&public.n),
            "e": b64(&public.e),
        });
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.secret_pkcs1_der()),
            jwk,
        }
    }

    /// A fresh P-256 key (ES256).
    pub fn ec(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// A token over `claims`, with this key's `kid` (or `kid` instead).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(claims, Some(&self.kid))
    }

    /// A token naming `kid` (none: no `kid` header).
    pub fn sign_as(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

struct State {
    keys: Vec<Value>,
    cache_control: String,
}

/// A running issuer.
pub struct TestIssuer {
    /// `https://localhost:<port>`: the `iss` of its tokens.
    pub url: String,
    /// The PEM of the CA that signed its certificate.
    pub ca_file: std::path::PathBuf,
    state: Arc<Mutex<State>>,
    jwks_fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestIssuer {
    /// Starts an issuer publishing `keys`, with `Cache-Control: max-age=300`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let (tls, ca_pem) = localhost_tls();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let state = Arc::new(Mutex::new(State {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
            cache_control: "max-age=300".into(),
        }));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (shared, fetches, issuer) = (state.clone(), jwks_fetches.clone(), url.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tls, shared, fetches, issuer) =
                    (tls.clone(), shared.clone(), fetches.clone(), issuer.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = TlsAcceptor::from(tls).accept(stream).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&buf);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let (status, body, cache) = match path.as_str() {
                        "/.well-known/openid-configuration" => (
                            "200 OK",
                            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}),
                            "max-age=300".to_owned(),
                        ),
                        "/jwks" => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let st = shared.lock().unwrap();
                            ("200 OK", json!({"keys": st.keys}), st.cache_control.clone())
                        }
                        _ => ("404 Not Found", json!({}), "no-store".to_owned()),
                    };
                    let body = body.to_string();
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         cache-control: {cache}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            url,
            ca_file,
            state,
            jwks_fetches,
            server,
            _dir: dir,
        }
    }

    /// Publishes exactly `keys` from now on.
    pub fn publish(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// The `Cache-Control` of JWKS responses from now on.
    pub fn cache_control(&self, value: &str) {
        self.state.lock().unwrap().cache_control = value.into();
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&self) {
        self.server.abort();
    }

    /// Claims of a token from this issuer, valid for ten minutes, for `aud`.
    pub fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.url, "aud": aud, "iat": now, "nbf": now - 5, "exp": now + 600,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        for (k, v) in extra.as_object().expect("an object").clone() {
            claims[k] = v;
        }
        claims
    }
}

/// A fresh private CA and a server certificate for `localhost` it signed.
pub struct LocalhostPki {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca_pem: String,
    /// The server's certificate (PEM).
    pub cert_pem: String,
    /// The server's key (PKCS#8 PEM).
    pub key_pem: String,
    cert_der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// Makes a [`LocalhostPki`].
pub fn localhost_pki() -> LocalhostPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    LocalhostPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// A server certificate for `localhost` from a fresh private CA; the CA's PEM is returned too.
pub fn localhost_tls() -> (Arc<tokio_rustls::rustls::ServerConfig>, String) {
    let pki = localhost_pki();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert_der],
            tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key_der).into(),
        )
        .unwrap();
    (Arc::new(config), pki.ca_pem)
}
