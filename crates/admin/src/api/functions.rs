//! Admin API actions on `functions`, CloudFront's function lifecycle
//! (the CloudFront API Reference, `PublishFunction` and `TestFunction`):
//!
//! - `POST /apisix/admin/functions/<id>/publish`: the DEVELOPMENT stage
//!   (`runtime`, `code`) becomes the LIVE stage (`live`), which is what
//!   behaviors run. A PUT whose body has no `live` keeps the stored LIVE
//!   stage, so editing code never changes what runs until it is published.
//!   A body may carry `live` (it is compiled like the DEVELOPMENT code): that
//!   is how `shardgate export` and `apply` carry a function's LIVE stage
//!   between gateways, as CloudFormation's `AutoPublish` does for CloudFront.
//! - `POST /apisix/admin/functions/<id>/test[?stage=live]`: runs the
//!   DEVELOPMENT stage (or LIVE) on the event in the body (CloudFront's
//!   event JSON: `context.eventType`, `viewer`, `request`, `response`) and
//!   returns what the function returned, its compute utilization (percent of
//!   its time budget), its `console.log` lines and its error, if any.
//!   Nothing is stored.
//!
//! Behaviors may only name functions that have a LIVE stage
//! ([`check_published`]). A PATCH may not touch `live` ([`check_patch`]):
//! only publish (or a whole body, as export and apply write it) sets it, so
//! a PATCH can neither change what runs nor unpublish a function behaviors
//! use.
//!
//! A test run is bounded: its event is at most [`MAX_TEST_EVENT_BYTES`] and
//! [`MAX_TEST_EVENT_FIELDS`] values, and it runs in a fresh instance on
//! tokio's blocking pool, never on the async workers.

use std::collections::HashMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shardgate_functions::{Event, EventType, test_function};
use shardgate_model::resource::{Resource, Wire};
use shardgate_model::wire::function::FunctionStageWire;
use shardgate_model::{Invalid, ResourceId, ResourceKind, json as mjson};
use shardgate_store::{Condition, KeyValue};
use tokio::time::Instant;

use super::{AdminState, now_unix, parse_json, stored};
use crate::ApiError;

/// The largest event body the `test` endpoint takes (under the Admin API's
/// own body limit): room for a request at
/// CloudFront's 20,480-byte quota on headers and query string plus a
/// response of the same size, in JSON.
pub const MAX_TEST_EVENT_BYTES: usize = 48 * 1024;

/// The most query-string, header and cookie values a test event may hold,
/// over its request and response.
pub const MAX_TEST_EVENT_FIELDS: usize = 1_000;

/// A PATCH of a function may not set, change or remove `live` (whole body
/// or `sub` path): the LIVE stage changes only by publishing.
pub(super) fn check_patch(sub: Option<&str>, change: &Value) -> Result<(), ApiError> {
    let touches_live = match sub {
        Some(path) => path.trim_start_matches('/').split('/').next() == Some("live"),
        None => change.get("live").is_some(),
    };
    if touches_live {
        return Err(ApiError::Invalid(Invalid::new(
            "live",
            "a PATCH cannot change the LIVE stage: POST /apisix/admin/functions/<id>/publish publishes the code",
        )));
    }
    Ok(())
}

/// A PUT replacing a function without a `live` of its own keeps the stored
/// LIVE stage.
pub(super) fn keep_live(wire: &mut Wire, prev: Option<&KeyValue>) {
    let Wire::Function(function) = wire else { return };
    if function.live.is_some() {
        return;
    }
    function.live = prev
        .and_then(|kv| mjson::parse(&kv.value).ok())
        .and_then(|v| Wire::from_value(ResourceKind::Functions, v).ok())
        .and_then(|w| match w {
            Wire::Function(f) => f.live,
            _ => None,
        });
}

/// A behavior may name only a function that has a LIVE stage: `value` is
/// the stored function that `field` refers to.
pub(super) fn check_published(field: &str, id: &ResourceId, value: &[u8]) -> Result<(), ApiError> {
    let live = mjson::parse(value).ok().and_then(|v| v.get("live").cloned()).filter(|l| !l.is_null());
    if live.is_none() {
        return Err(ApiError::Invalid(Invalid::new(
            field,
            format!("function {id} has never been published: POST /apisix/admin/functions/{id}/publish first"),
        )));
    }
    Ok(())
}

impl AdminState {
    async fn load_function(&self, id: &ResourceId) -> Result<(KeyValue, Wire), ApiError> {
        let kind = ResourceKind::Functions;
        let kv = self
            .store()
            .get(&kind.key(self.prefix(), id))
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("function {id}") })?;
        let value = mjson::parse(&kv.value)
            .map_err(|e| ApiError::BadRequest(format!("stored function {id} is not JSON: {e}")))?;
        Ok((kv, Wire::from_value(kind, value)?))
    }

    pub(super) async fn publish(&self, id: &ResourceId, deadline: Instant) -> Result<Response, ApiError> {
        let mut turn = self.lock_write(deadline).await?;
        let (kv, mut wire) = self.load_function(id).await?;
        let Wire::Function(function) = &mut wire else {
            return Err(ApiError::Internal(format!("function {id} loaded as another kind")));
        };
        function.live = Some(FunctionStageWire {
            runtime: function.runtime.clone(),
            code: function.code.clone(),
            published_at: Some(now_unix()),
        });
        // The stored DEVELOPMENT stage compiled when it was written; checked
        // again so a stored value written by another tool cannot go LIVE broken.
        wire.validate(id, self.validation())?;
        let created = wire.times().0.unwrap_or_else(now_unix);
        wire.set_id(id);
        wire.set_times(created, now_unix());
        let bytes = self.stored_bytes(&wire)?;
        self.store().put_fenced(&kv.key, bytes, Condition::ModRevision(kv.mod_revision), None, &mut turn).await?;
        tracing::info!(function = %id, "function published");
        Ok(stored(StatusCode::OK, &kv.key, wire))
    }

    pub(super) async fn test(
        &self,
        id: &ResourceId,
        query: &HashMap<String, String>,
        bytes: &[u8],
    ) -> Result<Response, ApiError> {
        let stage = match query.get("stage").map(String::as_str) {
            None | Some("development") | Some("DEVELOPMENT") => "DEVELOPMENT",
            Some("live") | Some("LIVE") => "LIVE",
            Some(other) => {
                return Err(ApiError::BadRequest(format!("stage {other:?} is neither development nor live")));
            }
        };
        if bytes.len() > MAX_TEST_EVENT_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the test event is {} bytes, over the limit of {MAX_TEST_EVENT_BYTES}",
                bytes.len()
            )));
        }
        let body = parse_json(bytes)?;
        let event_type = match body.pointer("/context/eventType").and_then(Value::as_str) {
            Some("viewer-request") => EventType::ViewerRequest,
            Some("viewer-response") => EventType::ViewerResponse,
            Some(other) => {
                return Err(ApiError::Invalid(Invalid::new(
                    "context.eventType",
                    format!("{other:?} is neither viewer-request nor viewer-response"),
                )));
            }
            None if body.get("response").is_some() => EventType::ViewerResponse,
            None => EventType::ViewerRequest,
        };
        let event: Event = mjson::from_value(body)?;
        check_event(&event, event_type)?;
        let (_, wire) = self.load_function(id).await?;
        let Resource::Function(function) = wire.validate(id, self.validation())? else {
            return Err(ApiError::Internal(format!("function {id} validated as another kind")));
        };
        let compiled = match stage {
            "LIVE" => match &function.live {
                Some(live) => live.stage.compiled.clone(),
                None => {
                    return Err(ApiError::BadRequest(format!("function {id} has no LIVE stage: publish it first")));
                }
            },
            _ => function.development.compiled.clone(),
        };
        let out = tokio::task::spawn_blocking(move || test_function(&compiled, event_type, &event))
            .await
            .map_err(|e| ApiError::Internal(format!("the test run of function {id} failed: {e}")))?;
        Ok((
            StatusCode::OK,
            Json(json!({
                "stage": stage,
                "event_type": event_type.as_str(),
                "compute_utilization": out.compute_utilization,
                "function_output": out.output,
                "function_error_message": out.error,
                "function_execution_logs": out.logs,
            })),
        )
            .into_response())
    }
}

/// The test event's request as CloudFront requires it of a test event:
/// a `uri` starting with `/`, lower-case header names; a viewer-response
/// event has its `response`.
fn check_event(event: &Event, event_type: EventType) -> Result<(), ApiError> {
    if !event.request.uri.starts_with('/') {
        return Err(ApiError::Invalid(Invalid::new("request.uri", "must start with '/'")));
    }
    let headers = event.request.headers.iter().chain(event.response.iter().flat_map(|r| r.headers.iter()));
    for (name, _) in headers {
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ApiError::Invalid(Invalid::new(
                format!("headers.{name}"),
                "header names must be lower case, as CloudFront passes them",
            )));
        }
    }
    let fields = [&event.request.querystring, &event.request.headers, &event.request.cookies]
        .into_iter()
        .chain(event.response.iter().flat_map(|r| [&r.headers, &r.cookies]))
        .flat_map(|f| f.iter())
        .map(|(_, values)| values.len())
        .sum::<usize>();
    if fields > MAX_TEST_EVENT_FIELDS {
        return Err(ApiError::Invalid(Invalid::new(
            "request",
            format!(
                "the event holds {fields} query-string, header and cookie values, over the limit of {MAX_TEST_EVENT_FIELDS}"
            ),
        )));
    }
    if event_type == EventType::ViewerResponse && event.response.is_none() {
        return Err(ApiError::Invalid(Invalid::new("response", "required for a viewer-response event")));
    }
    Ok(())
}
