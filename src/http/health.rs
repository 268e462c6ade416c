//! Unauthenticated endpoints: service banner, liveness, readiness.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::service::App;

/// `GET /`: the original's banner.
#[utoipa::path(
    get, path = "/", tag = "service",
    responses((status = 200, description = "the banner", body = Object)),
)]
pub async fn root() -> Json<Value> {
    Json(json!({
        "service": "PostgreSQL User Management API",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": "HTTP Basic or Bearer API key",
    }))
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses((status = 200, description = "alive", body = Object)),
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers (503 otherwise); targets whose last connection failed
/// are listed, without failing the service.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "ready; degraded targets listed", body = Object),
    (status = 503, description = "the store does not answer", body = Object),
))]
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
