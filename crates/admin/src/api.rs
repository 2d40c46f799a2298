//! The Admin API resource handlers.
//!
//! | request | answer |
//! |---|---|
//! | `GET /apisix/admin/<kind>` | 200 `{"total","list":[{"key","value","createdIndex","modifiedIndex"}]}`, `page`/`page_size` paging |
//! | `GET /apisix/admin/<kind>/<id>` | 200 `{"key","value","createdIndex","modifiedIndex"}`, 404 |
//! | `PUT /apisix/admin/<kind>/<id>` | 201 created / 200 replaced, `{"key","value"}` |
//! | `POST /apisix/admin/<kind>` | 201, id generated from the store revision, 20 digits (APISIX `core.etcd.push`) |
//! | `DELETE /apisix/admin/<kind>/<id>` | 200 `{"deleted":"1","key"}`, 404; a resource another one refers to: 400 naming it, unless `?force=true` |
//! | `PATCH /apisix/admin/<kind>/<id>[/<sub/path>]` | merge patch or sub-path replace; stream routes (as APISIX) and invalidations: 405 |
//! | `POST /apisix/admin/continuous_deployment_policies/<id>/promote\|discard` | canary actions (`api::canary`) |
//! | `GET /apisix/admin/web_acls/<id>/sampled_requests` | recent WAF matches, AWS's `GetSampledRequests` shape |
//! | `POST /apisix/admin/schema/validate/<kind>` | 200 or 400, nothing stored |
//!
//! Writes are serialized by one lock so that reference checks (an upstream
//! still used, an `upstream_id` that must exist) cannot race another write of
//! this process. GET responses never include private keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{BoxError, Json, Router};
use serde_json::{Value, json};
use shardgate_core::Limits;
use shardgate_model::resource::Wire;
use shardgate_model::{Invalid, ResourceId, ResourceKind, Validation, json as mjson};
use shardgate_store::{Condition, KeyValue, Store};
use tower::ServiceBuilder;

use crate::ApiError;
use crate::auth::require_key;
use crate::patch;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    prefix: String,
    key: String,
    limits: Limits,
    write: tokio::sync::Mutex<()>,
    /// The store revision the data plane runs (for invalidation status).
    applied: Option<tokio::sync::watch::Receiver<u64>>,
    /// Recent WAF samples, shared with the edge.
    samples: Option<Arc<shardgate_waf::Samples>>,
}

impl AdminState {
    /// State over `store`, with keys under `prefix`, guarded by `key`.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>, key: impl Into<String>, limits: Limits) -> Self {
        AdminState {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.into(),
                key: key.into(),
                limits,
                write: tokio::sync::Mutex::new(()),
                applied: None,
                samples: None,
            }),
        }
    }

    /// Reports invalidations as `Completed` once the data plane runs a
    /// generation at or past their revision (the snapshot generation watch).
    pub fn with_applied_generation(mut self, applied: tokio::sync::watch::Receiver<u64>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.applied = Some(applied);
        }
        self
    }

    /// Serves `GET /apisix/admin/web_acls/<id>/sampled_requests` from `samples`.
    pub fn with_samples(mut self, samples: Arc<shardgate_waf::Samples>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.samples = Some(samples);
        }
        self
    }

    fn applied(&self) -> u64 {
        self.inner.applied.as_ref().map_or(0, |rx| *rx.borrow())
    }

    pub(crate) fn key(&self) -> &str {
        &self.inner.key
    }
}

/// The Admin API router: resources, auth, body and concurrency limits, timeout.
pub fn router(state: AdminState) -> Router {
    let limits = &state.inner.limits;
    let guard = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(limits.admin_max_concurrency)
        .timeout(limits.admin_request_timeout.get());
    Router::new()
        .route("/apisix/admin/{kind}", any(collection))
        .route("/apisix/admin/{kind}/", any(collection))
        .route("/apisix/admin/{kind}/{id}", any(item))
        .route("/apisix/admin/{kind}/{id}/{*sub}", any(item_sub))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error_msg": "not found"}))) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_key))
        .layer(axum::middleware::map_response(|mut r: Response| async move {
            r.headers_mut().insert("x-api-version", HeaderValue::from_static("v3"));
            r
        }))
        .layer(guard)
        .with_state(state)
}

async fn overloaded(err: BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, Json(json!({"error_msg": "the request timed out"}))).into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error_msg": "too many concurrent Admin API requests"})))
            .into_response()
    } else {
        tracing::error!(error = %err, "Admin API middleware failure");
        (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error_msg": "internal error"}))).into_response()
    }
}

fn kind_of(s: &str) -> Result<ResourceKind, ApiError> {
    ResourceKind::from_plural(s).ok_or_else(|| ApiError::UnsupportedKind(s.to_owned()))
}

fn id_of(s: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(s).map_err(|e| ApiError::BadRequest(format!("invalid id {s:?}: {e}")))
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64
}

async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    match axum::body::to_bytes(body, max).await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) => {
            let inner = e.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                Err(ApiError::TooLarge(max))
            } else {
                Err(ApiError::BadRequest(format!("invalid request body: {inner}")))
            }
        }
    }
}

/// What a stream route's web ACL may use, for error messages.
const STREAM_ACL: &str = "a stream connection has only the client address and its TLS fingerprints, so its web ACL may use IPSetReference, GeoMatch, LabelMatch, statements on JA3Fingerprint/JA4Fingerprint, RateBased (aggregated by IP, CONSTANT, or custom keys IP, LabelNamespace, JA3Fingerprint, JA4Fingerprint) and And/Or/Not of them";

/// The first rule of `acl` that inspects a request field, if any (syntax
/// compile only: sets are resolved later).
fn request_rule(acl: &shardgate_waf::json::WebAclJson) -> Option<String> {
    let compiled = shardgate_waf::WebAcl::compile(acl, &shardgate_waf::NoSets).ok()?;
    compiled.request_rule().map(str::to_owned)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("invalid request body: empty".into()));
    }
    mjson::parse(bytes).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// The stored value as clients see it: private keys removed.
fn shown(kind: ResourceKind, raw: &[u8]) -> Value {
    let mut v = mjson::parse(raw).unwrap_or(Value::Null);
    if kind == ResourceKind::Ssls
        && let Value::Object(obj) = &mut v
    {
        obj.remove("key");
        obj.remove("keys");
    }
    v
}

fn entry(kind: ResourceKind, kv: &KeyValue, applied: u64) -> Value {
    let mut value = shown(kind, &kv.value);
    if kind == ResourceKind::Invalidations
        && let Value::Object(obj) = &mut value
    {
        // CloudFront's invalidation statuses.
        let status = if applied >= kv.mod_revision { "Completed" } else { "InProgress" };
        obj.insert("status".into(), Value::String(status.into()));
    }
    json!({
        "key": kv.key,
        "value": value,
        "createdIndex": kv.create_revision,
        "modifiedIndex": kv.mod_revision,
    })
}

async fn collection(
    State(st): State<AdminState>,
    Path(kind): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kind)?;
    match method {
        Method::GET => st.list(kind, &query_map(&uri)).await,
        Method::POST => {
            let bytes = read_body(body, st.inner.limits.admin_body_max_bytes).await?;
            st.create(kind, &bytes).await
        }
        Method::PUT | Method::DELETE | Method::PATCH => {
            Err(ApiError::BadRequest(format!("missing {} id", kind.singular())))
        }
        other => Err(ApiError::MethodNotAllowed(format!("not supported `{other}` method for {}", kind.singular()))),
    }
}

async fn item(
    State(st): State<AdminState>,
    Path((kind, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kind)?;
    let id = id_of(&id)?;
    match method {
        Method::GET => st.get(kind, &id).await,
        Method::PUT => {
            let bytes = read_body(body, st.inner.limits.admin_body_max_bytes).await?;
            st.put(kind, id, &bytes).await
        }
        Method::DELETE => st.delete(kind, &id, &query_map(&uri)).await,
        Method::PATCH => {
            let bytes = read_body(body, st.inner.limits.admin_body_max_bytes).await?;
            st.patch(kind, &id, None, &bytes).await
        }
        Method::POST => Err(ApiError::BadRequest(format!("wrong {} id, do not need it", kind.singular()))),
        other => Err(ApiError::MethodNotAllowed(format!("not supported `{other}` method for {}", kind.singular()))),
    }
}

async fn item_sub(
    State(st): State<AdminState>,
    Path((kind, id, sub)): Path<(String, String, String)>,
    method: Method,
    body: Body,
) -> Result<Response, ApiError> {
    if kind == "schema" && id == "validate" && method == Method::POST {
        let kind = kind_of(&sub)?;
        let bytes = read_body(body, st.inner.limits.admin_body_max_bytes).await?;
        let wire = Wire::from_value(kind, parse_json(&bytes)?)?;
        let placeholder = ResourceId::parse("validate").map_err(ApiError::BadRequest)?;
        wire.validate(&placeholder, Validation { now_unix: Some(now_unix()) })?;
        return Ok((StatusCode::OK, Json(json!({}))).into_response());
    }
    let kind = kind_of(&kind)?;
    let id = id_of(&id)?;
    if kind == ResourceKind::WebAcls && method == Method::GET && sub == "sampled_requests" {
        // The shape of AWS's GetSampledRequests answer.
        st.get(kind, &id).await?;
        let (list, population) = st.inner.samples.as_ref().map_or((Vec::new(), 0), |s| s.get(id.as_str()));
        return Ok(
            (StatusCode::OK, Json(json!({"SampledRequests": list, "PopulationSize": population}))).into_response()
        );
    }
    if kind == ResourceKind::CdPolicies && method == Method::POST {
        return match sub.as_str() {
            "promote" => st.promote(&id).await,
            "discard" => st.discard(&id).await,
            other => Err(ApiError::NotFound { what: format!("action {other:?} (use promote or discard)") }),
        };
    }
    if method != Method::PATCH {
        return Err(ApiError::MethodNotAllowed(format!(
            "not supported `{method}` method on a sub path of {}",
            kind.singular()
        )));
    }
    let bytes = read_body(body, st.inner.limits.admin_body_max_bytes).await?;
    st.patch(kind, &id, Some(&sub), &bytes).await
}

fn stored(status: StatusCode, key: &str, wire: Wire) -> Response {
    (status, Json(json!({"key": key, "value": wire.redacted().to_value()}))).into_response()
}

impl AdminState {
    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    async fn get(&self, kind: ResourceKind, id: &ResourceId) -> Result<Response, ApiError> {
        let key = kind.key(self.prefix(), id);
        let kv = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("{} {id}", kind.singular()) })?;
        Ok((StatusCode::OK, Json(entry(kind, &kv, self.applied()))).into_response())
    }

    async fn list(&self, kind: ResourceKind, query: &HashMap<String, String>) -> Result<Response, ApiError> {
        let listing = self.store().list(&kind.key_prefix(self.prefix())).await?;
        let mut kvs = listing.kvs;
        let total = kvs.len();
        if let (Some(page), Some(size)) = (query.get("page"), query.get("page_size")) {
            // APISIX v3 paging (apisix/admin/v3_adapter.lua): sorted by creation.
            let size: usize = size
                .parse()
                .ok()
                .filter(|s| (10..=500).contains(s))
                .ok_or_else(|| ApiError::BadRequest("page_size must be between 10 and 500".into()))?;
            let page: usize = page.parse().ok().filter(|p| *p >= 1).unwrap_or(1);
            kvs.sort_by_key(|kv| kv.create_revision);
            kvs = kvs.into_iter().skip((page - 1) * size).take(size).collect();
        }
        let applied = self.applied();
        let list: Vec<Value> = kvs.iter().map(|kv| entry(kind, kv, applied)).collect();
        Ok((StatusCode::OK, Json(json!({"total": total, "list": list}))).into_response())
    }

    /// Parses and validates a body; the id in the body, if any, must be `id`.
    fn validated(&self, kind: ResourceKind, id: &ResourceId, value: Value) -> Result<Wire, ApiError> {
        let wire = Wire::from_value(kind, value)?;
        if let Some(body_id) = wire.id() {
            let body_id = ResourceId::from_json("id", body_id)?;
            if body_id != *id {
                return Err(ApiError::BadRequest(format!("wrong {} id", kind.singular())));
            }
        }
        wire.validate(id, Validation { now_unix: Some(now_unix()) })?;
        Ok(wire)
    }

    /// Refuses references to resources that do not exist (and a staging
    /// reference to a distribution that is not a staging one).
    async fn check_references(&self, wire: &Wire) -> Result<(), ApiError> {
        for r in wire.references() {
            let key = r.kind.key(self.prefix(), &r.id);
            let Some(kv) = self.store().get(&key).await? else {
                if r.kind == ResourceKind::Upstreams && matches!(wire, Wire::StreamRoute(_)) {
                    // APISIX's wording (apisix/admin/stream_routes.lua check_conf).
                    return Err(ApiError::BadRequest(format!(
                        "failed to fetch upstream info by upstream id [{}], response code: 404",
                        r.id
                    )));
                }
                return Err(ApiError::Invalid(Invalid::new(
                    r.field,
                    format!("{} {} does not exist", r.kind.singular(), r.id),
                )));
            };
            if r.kind == ResourceKind::WebAcls && matches!(wire, Wire::StreamRoute(_)) {
                let acl = mjson::parse(&kv.value).ok().and_then(|v| Wire::from_value(ResourceKind::WebAcls, v).ok());
                if let Some(Wire::WebAcl(acl)) = acl
                    && let Some(rule) = request_rule(&acl)
                {
                    return Err(ApiError::Invalid(Invalid::new(
                        r.field,
                        format!("web ACL {} rule {rule:?} inspects request fields; {STREAM_ACL}", r.id),
                    )));
                }
            }
            if r.field == "staging_distribution_id" {
                let staging = mjson::parse(&kv.value).ok().and_then(|v| v.get("staging").and_then(Value::as_bool));
                if staging != Some(true) {
                    return Err(ApiError::Invalid(Invalid::new(
                        r.field,
                        format!("distribution {} is not a staging distribution (\"staging\": true)", r.id),
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses a web ACL that inspects request fields while a stream route
    /// uses it: a connection has only the client address.
    async fn check_stream_users(&self, id: &ResourceId, wire: &Wire) -> Result<(), ApiError> {
        let Wire::WebAcl(acl) = wire else { return Ok(()) };
        let Some(rule) = request_rule(acl) else { return Ok(()) };
        let listing = self.store().list(&ResourceKind::StreamRoutes.key_prefix(self.prefix())).await?;
        for kv in &listing.kvs {
            let Ok(value) = mjson::parse(&kv.value) else { continue };
            let Ok(route) = Wire::from_value(ResourceKind::StreamRoutes, value) else { continue };
            if route.references().iter().any(|r| r.kind == ResourceKind::WebAcls && r.id == *id) {
                let rid = kv.key.rsplit('/').next().unwrap_or_default();
                return Err(ApiError::Invalid(Invalid::new(
                    "Rules",
                    format!(
                        "rule {rule:?} inspects request fields, but stream route [{rid}] uses this web ACL; {STREAM_ACL}"
                    ),
                )));
            }
        }
        Ok(())
    }

    /// The first stored resource that refers to `kind`/`id`, as `(kind, id)`.
    async fn referrer(&self, kind: ResourceKind, id: &ResourceId) -> Result<Option<(ResourceKind, String)>, ApiError> {
        // Invalidations are history, not a use: they never block a delete.
        for other in ResourceKind::ALL.into_iter().filter(|k| *k != ResourceKind::Invalidations) {
            let listing = self.store().list(&other.key_prefix(self.prefix())).await?;
            for kv in &listing.kvs {
                let Ok(value) = mjson::parse(&kv.value) else { continue };
                let Ok(wire) = Wire::from_value(other, value) else { continue };
                if wire.references().iter().any(|r| r.kind == kind && r.id == *id) {
                    let rid = kv.key.rsplit('/').next().unwrap_or_default().to_owned();
                    return Ok(Some((other, rid)));
                }
            }
        }
        Ok(None)
    }

    pub(super) async fn check_capacity(&self, kind: ResourceKind) -> Result<(), ApiError> {
        let max = self.inner.limits.max_resources_per_kind;
        if self.store().count(&kind.key_prefix(self.prefix())).await? >= max {
            return Err(ApiError::BadRequest(format!("too many {kind}: the limit is {max}")));
        }
        Ok(())
    }

    async fn put(&self, kind: ResourceKind, id: ResourceId, bytes: &[u8]) -> Result<Response, ApiError> {
        let mut wire = self.validated(kind, &id, parse_json(bytes)?)?;
        let _write = self.inner.write.lock().await;
        self.check_references(&wire).await?;
        self.check_stream_users(&id, &wire).await?;
        let key = kind.key(self.prefix(), &id);
        let prev = self.store().get(&key).await?;
        if prev.is_none() {
            self.check_capacity(kind).await?;
        } else if kind == ResourceKind::Invalidations {
            return Err(ApiError::BadRequest(format!(
                "invalidation {id} exists and cannot be changed; create a new invalidation"
            )));
        }
        let now = now_unix();
        // The server owns the timestamps: create_time survives a replace.
        let created = prev
            .as_ref()
            .and_then(|kv| mjson::parse(&kv.value).ok())
            .and_then(|v| v.get("create_time").and_then(Value::as_i64))
            .unwrap_or(now);
        wire.set_id(&id);
        wire.set_times(created, now);
        let cond = prev.as_ref().map_or(Condition::Absent, |p| Condition::ModRevision(p.mod_revision));
        let res = self.store().put(&key, wire.to_bytes(), cond).await?;
        let status = if res.prev.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        tracing::info!(kind = kind.plural(), %id, revision = res.kv.mod_revision, created = res.prev.is_none(), "resource stored");
        Ok(stored(status, &key, wire))
    }

    async fn create(&self, kind: ResourceKind, bytes: &[u8]) -> Result<Response, ApiError> {
        let value = parse_json(bytes)?;
        let mut wire = Wire::from_value(kind, value)?;
        if wire.id().is_some() {
            return Err(ApiError::BadRequest(format!("wrong {} id, do not need it", kind.singular())));
        }
        let placeholder = ResourceId::parse("new").map_err(ApiError::BadRequest)?;
        wire.validate(&placeholder, Validation { now_unix: Some(now_unix()) })?;
        let _write = self.inner.write.lock().await;
        self.check_references(&wire).await?;
        self.check_capacity(kind).await?;
        let now = now_unix();
        wire.set_times(now, now);
        let key = self.insert_new(kind, &mut wire).await?;
        Ok(stored(StatusCode::CREATED, &key, wire))
    }

    /// Stores `wire` under a new id and returns its key. Ids are the store
    /// revision, zero-padded to 20 digits, as APISIX's `core.etcd.push`
    /// makes them, so they sort in creation order. The caller holds the
    /// write lock and has checked the capacity.
    pub(super) async fn insert_new(&self, kind: ResourceKind, wire: &mut Wire) -> Result<String, ApiError> {
        for _ in 0..8 {
            let rev = self.store().revision().await?;
            let id = id_of(&format!("{:020}", rev + 1))?;
            let key = kind.key(self.prefix(), &id);
            wire.set_id(&id);
            match self.store().put(&key, wire.to_bytes(), Condition::Absent).await {
                Ok(res) => {
                    tracing::info!(kind = kind.plural(), %id, revision = res.kv.mod_revision, created = true, "resource stored");
                    return Ok(key);
                }
                Err(shardgate_store::StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(format!("could not allocate an id for a new {}; retry", kind.singular())))
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        query: &HashMap<String, String>,
    ) -> Result<Response, ApiError> {
        let _write = self.inner.write.lock().await;
        let force = query.get("force").is_some_and(|v| v == "true");
        if !force && let Some((other, rid)) = self.referrer(kind, id).await? {
            // APISIX's wording (apisix/admin/upstreams.lua delete_checker).
            return Err(ApiError::BadRequest(format!(
                "can not delete this {}, {} [{rid}] is still using it now",
                kind.singular(),
                other.label()
            )));
        }
        let key = kind.key(self.prefix(), id);
        match self.store().delete(&key, Condition::Always).await? {
            Some(_) => {
                tracing::info!(kind = kind.plural(), %id, "resource deleted");
                Ok((StatusCode::OK, Json(json!({"deleted": "1", "key": key}))).into_response())
            }
            None => Err(ApiError::NotFound { what: format!("{} {id}", kind.singular()) }),
        }
    }

    async fn patch(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        sub: Option<&str>,
        bytes: &[u8],
    ) -> Result<Response, ApiError> {
        if matches!(kind, ResourceKind::StreamRoutes | ResourceKind::Invalidations) {
            // APISIX: `unsupported_methods = {"patch"}` in apisix/admin/stream_routes.lua;
            // invalidations cannot change once created (CloudFront).
            return Err(ApiError::MethodNotAllowed(format!("not supported `PATCH` method for {}", kind.singular())));
        }
        let change = parse_json(bytes)?;
        let _write = self.inner.write.lock().await;
        let key = kind.key(self.prefix(), id);
        let prev = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("{} {id}", kind.singular()) })?;
        let mut current = mjson::parse(&prev.value)
            .map_err(|e| ApiError::Invalid(Invalid::new("", format!("the stored value is not JSON: {e}"))))?;
        match sub {
            Some(path) => patch::replace_at(&mut current, path, change).map_err(ApiError::BadRequest)?,
            None if change.is_object() => patch::merge(&mut current, change),
            None => {
                return Err(ApiError::BadRequest("invalid configuration: a PATCH body must be a JSON object".into()));
            }
        }
        let mut wire = self.validated(kind, id, current)?;
        self.check_references(&wire).await?;
        self.check_stream_users(id, &wire).await?;
        let now = now_unix();
        let created = wire.times().0.unwrap_or(now);
        wire.set_id(id);
        wire.set_times(created, now);
        self.store().put(&key, wire.to_bytes(), Condition::ModRevision(prev.mod_revision)).await?;
        tracing::info!(kind = kind.plural(), %id, "resource patched");
        Ok(stored(StatusCode::OK, &key, wire))
    }
}

mod canary;

#[cfg(test)]
mod tests;
