//! `/api/v1/audit`: the audit log for compliance workflows, as JSON or CSV, page by page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use super::params::Call;
use crate::auth::Operation;
use crate::error::{Error, Result};
use crate::service::params::AuditQuery;
use crate::service::{App, Caller, audit};
use crate::store::AuditRecord;

/// A page of audit records (or CSV with `format=csv`).
#[derive(Serialize, ToSchema)]
pub struct AuditBody {
    /// The records, oldest first.
    records: Vec<AuditRecord>,
    /// The cursor of the next page, when there may be one.
    next_after_id: Option<i64>,
}

/// Header naming the cursor of the next page (`after_id=`), when there may be one.
pub const NEXT_AFTER_ID: &str = "x-next-after-id";

/// Exports audit records: `format=json|csv`, filters `since`, `until`, `env`, `database`,
/// `username`, `operation`, `principal`, paging with `after_id` and `limit`.
#[utoipa::path(
    method(get, post), path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "a page of records", content((AuditBody = "application/json"), (String = "text/csv")))),
)]
pub async fn export(
    State(app): State<Arc<App>>,
    caller: Caller,
    call: Call<AuditQuery>,
) -> Result<Response> {
    super::users::authorize(&app, &caller, Operation::AuditRead, "audit:read", None, "").await?;
    let query = call.parsed?;
    let format = query
        .format
        .as_deref()
        .unwrap_or("json")
        .to_ascii_lowercase();
    if format != "json" && format != "csv" {
        return Err(Error::Invalid(format!(
            "format '{format}' must be json or csv"
        )));
    }
    let limit = audit::export_filter(&query)?.limit as usize;
    let records = audit::export(&app, &caller, &query).await?;
    let next = (records.len() == limit && limit > 0)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    let mut res = if format == "csv" {
        let mut body = Vec::new();
        audit::write_csv(&mut body, &records, true).map_err(Error::Internal)?;
        let mut res = body.into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"audit.csv\""),
        );
        res
    } else {
        Answer(AuditBody {
            records,
            next_after_id: next,
        })
        .into_response()
    };
    if let Some(id) = next {
        res.headers_mut()
            .insert(NEXT_AFTER_ID, HeaderValue::from(id));
    }
    Ok(res)
}
