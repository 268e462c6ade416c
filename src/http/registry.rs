//! `/api/v1/registry`: the databases this service manages.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::Result;
use crate::service::{self, App, Caller};

/// Lists every registry entry, as the original: `{count, databases}`.
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Value>> {
    let entries = service::registry::list(&app, &caller).await?;
    Ok(Json(
        json!({ "count": entries.len(), "databases": entries }),
    ))
}
