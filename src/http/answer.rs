//! A typed JSON answer written as v1 clients have always read it: keys in alphabetical
//! order at every level, as the original's Flask `jsonify` wrote them.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A handler's typed answer; serialised through a sorted map so that adding or reordering
/// fields in a type never changes the bytes of an answer.
pub struct Answer<T>(pub T);

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.0) {
            Ok(value) => Json(value).into_response(),
            Err(e) => crate::error::Error::Internal(e.into()).into_response(),
        }
    }
}
