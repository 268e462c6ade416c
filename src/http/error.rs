//! One JSON error envelope: `{"error": "…"}` with the status the domain error names.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // The cause stays in the log (with the request id from the span), not the body.
            Error::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Error::AuditUnavailable(cause) => {
                tracing::error!(error = ?cause, "audit log unavailable")
            }
            Error::StoreUnavailable(cause) => tracing::error!(error = ?cause, "store unavailable"),
            e if status.is_server_error() => tracing::warn!(error = %e, "target error"),
            _ => {}
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A JSON error response without a domain error behind it (auth, bad body, 404 route).
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
