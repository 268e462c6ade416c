//! The domain's errors, each with the HTTP status it stands for.

use axum::http::StatusCode;

use crate::plan::NameError;

/// Everything an operation can fail with. The `Display` text is what the caller sees, so it
/// never holds a secret; internal causes are logged with the request id instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required parameter is absent.
    #[error("missing parameter: {0}")]
    MissingParam(String),
    /// A parameter is present but unacceptable.
    #[error("{0}")]
    Invalid(String),
    /// A name failed validation.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Policy refuses the operation.
    #[error("{0}")]
    Forbidden(String),
    /// No active registry entry matches.
    #[error("No registry entry found for env='{env}' database='{database}'")]
    NoRegistryEntry { env: String, database: String },
    /// The operation would be unsafe in the target's current state; nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// The target database cannot be reached.
    #[error("target database unavailable: {0}")]
    TargetUnavailable(String),
    /// The target did not answer within the configured statement or lock timeout.
    #[error("target database timed out: {0}")]
    TargetTimeout(String),
    /// The target refused the statements (missing privilege, bad admin credentials, …).
    #[error("target database refused the operation: {0}")]
    TargetRefused(String),
    /// The store cannot be read and nothing else tells where the target is.
    #[error("store unavailable: the operation was not performed")]
    StoreUnavailable(#[source] anyhow::Error),
    /// The audit log cannot be written, so nothing is done (fail closed).
    #[error("audit log unavailable: the operation was not performed")]
    AuditUnavailable(#[source] anyhow::Error),
    /// The store failed in a way the caller cannot fix.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MissingParam(_) => StatusCode::BAD_REQUEST,
            Error::Invalid(_) | Error::Name(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NoRegistryEntry { .. } => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TargetUnavailable(_)
            | Error::AuditUnavailable(_)
            | Error::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TargetTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::TargetRefused(_) => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Shorthand for results of domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
