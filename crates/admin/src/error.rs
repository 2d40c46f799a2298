//! Errors of the Admin API, rendered the way APISIX renders them.
//!
//! Client errors name the problem (field, id, resource). Internal errors are
//! logged once with their detail and answered with a generic message: store
//! paths and I/O errors are not echoed to clients. What an operator needs to
//! act on is said: an unreachable store names its endpoints, and a refusal
//! by etcd (authentication, permission, size) its reason, as APISIX passes
//! etcd's error through on 503.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardgate_model::Invalid;
use shardgate_store::StoreError;

/// An Admin API error.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a message.
    BadRequest(String),
    /// 400 `invalid configuration: property "x" validation failed: ...`.
    Invalid(Invalid),
    /// 404 for a key that does not exist.
    NotFound {
        /// What was looked for, e.g. `ssl 1`.
        what: String,
    },
    /// 404 for a resource type shardgate does not serve.
    UnsupportedKind(String),
    /// 405.
    MethodNotAllowed(String),
    /// 409: a concurrent writer changed the resource.
    Conflict(String),
    /// 413.
    TooLarge(usize),
    /// 408: the body did not arrive within the deadline; the connection is
    /// closed (the rest of the body is not waited for).
    BodyTimeout(std::time::Duration),
    /// 503: no budget or time left for the request; retrying later works.
    Busy(String),
    /// 401 with APISIX's `description`.
    Unauthorized(&'static str),
    /// 503: the store failed (I/O details logged, not echoed; endpoints
    /// and etcd's refusals are said); 409 for a write that kept losing to
    /// other instances.
    Store(StoreError),
    /// 500: a bug on our side (logged, not echoed).
    Internal(String),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConditionFailed { .. } => ApiError::Conflict("value changed before overwritten".into()),
            StoreError::TooLarge { size, max, .. } => {
                ApiError::BadRequest(format!("the resource is {size} bytes, over the limit of {max} bytes"))
            }
            other => ApiError::Store(other),
        }
    }
}

fn body(status: StatusCode, value: serde_json::Value) -> Response {
    (status, Json(value)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(msg) => body(StatusCode::BAD_REQUEST, json!({ "error_msg": msg })),
            ApiError::Invalid(inv) => {
                body(StatusCode::BAD_REQUEST, json!({ "error_msg": format!("invalid configuration: {inv}") }))
            }
            // APISIX passes etcd's answer through: `{"message":"Key not found"}`
            // (apisix/core/etcd.lua `not_found`); `error_msg` says which.
            ApiError::NotFound { what } => body(
                StatusCode::NOT_FOUND,
                json!({ "message": "Key not found", "error_msg": format!("{what} not found") }),
            ),
            ApiError::UnsupportedKind(kind) => {
                body(StatusCode::NOT_FOUND, json!({ "error_msg": format!("Unsupported resource type: {kind}") }))
            }
            ApiError::MethodNotAllowed(msg) => body(StatusCode::METHOD_NOT_ALLOWED, json!({ "error_msg": msg })),
            ApiError::Conflict(msg) => body(StatusCode::CONFLICT, json!({ "error_msg": msg })),
            ApiError::TooLarge(max) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error_msg": format!("invalid request body: larger than {max} bytes") }),
            ),
            ApiError::BodyTimeout(deadline) => {
                let mut r = body(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({ "error_msg": format!("invalid request body: not received within {deadline:?}") }),
                );
                r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                r
            }
            ApiError::Busy(msg) => body(StatusCode::SERVICE_UNAVAILABLE, json!({ "error_msg": msg })),
            ApiError::Unauthorized(description) => body(
                StatusCode::UNAUTHORIZED,
                json!({ "error_msg": "failed to check token", "description": description }),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error while serving an Admin API request");
                body(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error_msg": "internal error; see the gateway log" }))
            }
            ApiError::Store(StoreError::Fenced) => body(
                StatusCode::CONFLICT,
                json!({ "error_msg": "other Admin API writes (on other gateway instances) kept changing the configuration while this write was checked; nothing was stored, retry" }),
            ),
            ApiError::Store(StoreError::Unavailable { endpoints, reason }) => {
                tracing::warn!(%endpoints, %reason, "the configuration store is unreachable; Admin API request refused");
                body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error_msg": format!("the configuration store is unreachable ({endpoints}); the gateway keeps serving its last good configuration, retry once the store is back") }),
                )
            }
            ApiError::Store(StoreError::Backend { context, reason }) => {
                tracing::error!(%context, %reason, "the configuration store refused an Admin API request");
                body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error_msg": format!("the configuration store refused the request: {context}: {reason}") }),
                )
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failure while serving an Admin API request");
                body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error_msg": "the configuration store is unavailable; see the gateway log" }),
                )
            }
        }
    }
}
