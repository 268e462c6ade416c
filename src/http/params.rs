//! Parameters from the query string (GET, as the original) or a JSON or form body (POST),
//! read into the operation's typed parameters ([`crate::service::params`]). A body the
//! service cannot read is refused before anything runs: 415 for another content type on
//! POST, 400 for a body on GET. Parameters that do not fit (a missing one is a 400, a value
//! of the wrong kind a 422) are kept as the [`Call`]'s error, for the handler to surface
//! once the caller is known to be allowed the call: without scope it is a 403 whatever was
//! sent.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::error::json_error;
use crate::service::params::{Target, from_params};

/// Bodies larger than this are refused; no parameter set comes close.
const MAX_BODY: usize = 64 * 1024;

/// A call's parameters as `T` (body values override query values of the same name), or
/// why they are refused, beside the target and role as sent: the handler checks the
/// caller's scope and starts the audit trail with those before it surfaces a refusal.
pub struct Call<T> {
    /// The parameters, or the 400/422 that refuses them.
    pub parsed: crate::error::Result<T>,
    /// `env` and `database` as sent (empty when absent).
    pub target: Target,
    /// `username` as sent (empty when absent).
    pub username: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Call<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        let sent: BTreeMap<String, String> = pairs(req).await?.into_iter().collect();
        let text = |name: &str| sent.get(name).cloned().unwrap_or_default();
        Ok(Self {
            target: Target::new(text("env"), text("database")),
            username: text("username"),
            parsed: from_params(sent),
        })
    }
}

/// The name/value pairs of the query string and the body, in that order.
async fn pairs(req: Request) -> Result<Vec<(String, String)>, Response> {
    {
        let bad = |msg: String| json_error(StatusCode::BAD_REQUEST, msg);
        let mut pairs: Vec<(String, String)> = match req.uri().query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| bad(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        let post = req.method() == Method::POST;
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let too_large = || json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        // A declared length past the limit is refused before a byte of it is read: otherwise
        // each such request holds up to the limit in memory first. (The limit below still
        // bounds a chunked body, which declares none.)
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| too_large())?;
        if body.is_empty() {
            return Ok(pairs);
        }
        // A GET's body would be ignored, and with it a `dry_run=true` sent there.
        if !post {
            return Err(bad(
                "a GET takes its parameters from the query string; send a body with POST".into(),
            ));
        }
        match media_type.as_deref() {
            Some("application/json") => pairs.extend(json_pairs(&body).map_err(bad)?),
            Some("application/x-www-form-urlencoded") => pairs.extend(
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                    .map_err(|e| bad(format!("invalid form body: {e}")))?,
            ),
            other => {
                return Err(json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported content type {}: send application/json or \
                         application/x-www-form-urlencoded",
                        other.map_or("(none)".into(), |t| format!("'{t}'"))
                    ),
                ));
            }
        }
        Ok(pairs)
    }
}

/// A flat JSON object; numbers and booleans are taken as their text (`"port": 8080`).
fn json_pairs(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("the JSON body must be an object".into());
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in map {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => whole(&n).unwrap_or_else(|| n.to_string()),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            _ => {
                return Err(format!(
                    "parameter '{k}' must be a string, number or boolean"
                ));
            }
        };
        pairs.push((k, text));
    }
    Ok(pairs)
}

/// A number JSON writes with a fraction but that is whole (`0.0`, `8080.0`), as the whole
/// number: JSON Schema counts it an integer, and so do the parameters.
fn whole(n: &serde_json::Number) -> Option<String> {
    let f = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64())?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| format!("{}", f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scalars_become_text_and_whole_floats_whole_numbers() {
        let pairs =
            json_pairs(br#"{"port": 8080.0, "limit": 0.5, "dry_run": true, "x": null}"#).unwrap();
        assert_eq!(
            pairs,
            [
                ("dry_run".to_owned(), "true".to_owned()),
                ("limit".to_owned(), "0.5".to_owned()),
                ("port".to_owned(), "8080".to_owned()),
            ]
        );
        let err = json_pairs(br#"{"extra": {"a": 1}}"#).unwrap_err();
        assert_eq!(err, "parameter 'extra' must be a string, number or boolean");
    }
}
