//! Every error the HTTP surface returns, and — in exactly one place,
//! [`ApiError::status`] — the HTTP status of each kind.
//!
//! Handlers return `Result<_, ApiError>` and use `?`; the body is always
//! `{"error":{"kind","message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::control::admin::AdminError;
use crate::control::fleet::ops::FleetOpError;
use crate::control::store::StoreError;
use crate::sandbox::error::{CallError, ErrorKind};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is malformed: bad JSON, wrong shape, bad header.
    #[error("{0}")]
    Malformed(String),
    /// The body is not JSON (by its content type).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit.
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within the read timeout.
    #[error("the request body did not arrive within {timeout:?}")]
    BodyTimeout {
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// A batch with more rows than the server accepts.
    #[error("{rows} rows in one batch; at most {limit} are accepted (split the batch)")]
    TooManyRows {
        /// Rows sent.
        rows: usize,
        /// The limit.
        limit: usize,
    },
    /// A row or event with more fields than the server accepts.
    #[error("{fields} fields in one row; at most {limit} are accepted")]
    TooManyFields {
        /// Fields sent.
        fields: usize,
        /// The limit.
        limit: usize,
    },
    /// No such plugin or pipeline.
    #[error("{0}")]
    NotFound(String),
    /// No route for this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Every in-flight slot is taken; retry after a moment.
    #[error("too many requests in flight ({limit}); retry shortly")]
    Overloaded {
        /// The in-flight limit.
        limit: usize,
    },
    /// The server is shutting down or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// The plugin call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// An admin call without a bearer token.
    #[error("this endpoint needs `Authorization: Bearer <admin token>`")]
    Unauthorized,
    /// An admin call with the wrong token.
    #[error("the admin token is not valid")]
    Forbidden,
    /// An admin operation failed or was refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A local change on a fleet replica, where the fleet's desired state decides.
    #[error(
        "this server is a fleet replica: change the fleet instead (`scorehost fleet …` or \
         /admin/v1/fleet/plugins/{{name}}/{{op}}), or every replica would serve something else"
    )]
    FleetMode,
    /// A fleet change failed or was refused.
    #[error(transparent)]
    Fleet(#[from] FleetOpError),
}

impl ApiError {
    /// The stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed_request",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooLarge { .. } => "body_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::TooManyRows { .. } => "too_many_rows",
            ApiError::TooManyFields { .. } => "too_many_fields",
            ApiError::NotFound(_) => "not_found",
            ApiError::NoRoute(_) => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Call(e) => e.kind().as_str(),
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::Admin(AdminError::GateFailed { .. }) => "gate_failed",
            ApiError::Admin(AdminError::Conflict(_)) => "conflict",
            ApiError::Admin(AdminError::Invalid(_)) => "invalid_request",
            ApiError::Admin(AdminError::Store(e)) => match e {
                StoreError::InvalidName(_) => "invalid_name",
                StoreError::InvalidUpload(_) => "invalid_upload",
                StoreError::Exists { .. } => "version_exists",
                StoreError::NotFound { .. } => "not_found",
                StoreError::Io { .. } => "store_io",
            },
            ApiError::FleetMode => "fleet_mode",
            ApiError::Fleet(e) => match e {
                FleetOpError::Refused(_) => "refused",
                FleetOpError::Conflict(_) => "conflict",
                FleetOpError::Unavailable(_) => "fleet_unavailable",
                FleetOpError::Invalid(_) => "invalid_request",
                FleetOpError::Corrupt(_) => "fleet_state_corrupt",
            },
        }
    }

    /// The one error → status map of the HTTP surface (see DESIGN.md §4).
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } | ApiError::TooManyRows { .. } | ApiError::TooManyFields { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded { .. } | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Call(e) => call_status(e.kind()),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Admin(AdminError::GateFailed { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Admin(AdminError::Conflict(_)) => StatusCode::CONFLICT,
            ApiError::Admin(AdminError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Admin(AdminError::Store(e)) => match e {
                StoreError::InvalidName(_) | StoreError::InvalidUpload(_) => StatusCode::BAD_REQUEST,
                StoreError::Exists { .. } => StatusCode::CONFLICT,
                StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
                StoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::FleetMode => StatusCode::CONFLICT,
            ApiError::Fleet(e) => match e {
                FleetOpError::Refused(_) | FleetOpError::Conflict(_) => StatusCode::CONFLICT,
                FleetOpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                FleetOpError::Invalid(_) => StatusCode::BAD_REQUEST,
                FleetOpError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

/// The status of a plugin-call failure.
pub fn call_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Overloaded | ErrorKind::PluginQuarantined => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        // The plugin's fault: budgets, traps, its own errors, unusable output.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::Call(CallError::Quarantined { retry_after, .. }) => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
            _ => 1,
        };
        let message = self.to_string();
        // A fault on our side (a plugin's or the server's) is for the on-call
        // engineer, with the request's id.
        if matches!(status, StatusCode::INTERNAL_SERVER_ERROR | StatusCode::GATEWAY_TIMEOUT) {
            let request_id = crate::sandbox::request_id::display();
            tracing::warn!(kind = self.kind(), status = status.as_u16(), %request_id, "{message}");
        }
        let body = serde_json::json!({"error": {"kind": self.kind(), "message": message}});
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
