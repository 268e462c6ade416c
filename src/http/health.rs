//! Unauthenticated endpoints: service banner, liveness, readiness.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::service::App;

/// `GET /`: the original's banner.
pub async fn root() -> Json<Value> {
    Json(json!({
        "service": "PostgreSQL User Management API",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": "HTTP Basic or Bearer API key",
    }))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers (503 otherwise); targets whose last connection failed
/// are listed, without failing the service.
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    let degraded: Vec<Value> = app
        .targets
        .degraded()
        .into_iter()
        .map(|(target, error)| json!({ "target": target, "error": error }))
        .collect();
    match app.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": "ok", "degraded_targets": degraded })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store not reachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "not ready", "store": "unavailable" })),
            )
        }
    }
}
