//! The Admin API resource handlers.
//!
//! | request | answer |
//! |---|---|
//! | `GET /apisix/admin/<kind>` | 200 `{"total","list":[{"key","value","createdIndex","modifiedIndex"}]}`; filters `name` (regex), `label` (`key` or `key:value`), `uri`, `filter` (`upstream_id=..&service_id=..`), then `page`/`page_size` paging; `total` counts the filtered list (`apisix/admin/v3_adapter.lua`) |
//! | `GET /apisix/admin/<kind>/<id>[/<anything>]` | 200 `{"key","value","createdIndex","modifiedIndex"}`, 404; a sub path returns the whole object, as APISIX's `resource.lua` `get` |
//! | `PUT /apisix/admin/<kind>/<id>`, `PUT /apisix/admin/<kind>` with `id` in the body | 201 created / 200 replaced, `{"key","value"}` |
//! | `POST /apisix/admin/<kind>` | 201, id generated from the store revision, 20 digits (APISIX `core.etcd.push`) |
//! | `DELETE /apisix/admin/<kind>/<id>` | 200 `{"deleted":"1","key"}`, 404; a resource another one refers to: 400 naming it, unless `?force=true` |
//! | `PATCH /apisix/admin/<kind>/<id>[/<sub/path>]` | merge patch or sub-path replace; stream routes (as APISIX) and invalidations: 405 |
//! | `?ttl=<seconds>` on PUT, POST, PATCH | the resource is deleted when it passes (an etcd lease in APISIX); a write without it makes the resource permanent again |
//! | `POST /apisix/admin/continuous_deployment_policies/<id>/promote\|discard` | canary actions (`api::canary`) |
//! | `POST /apisix/admin/functions/<id>/publish\|test` | function stages and test runs (`api::functions`) |
//! | `GET /apisix/admin/web_acls/<id>/sampled_requests` | recent WAF matches, AWS's `GetSampledRequests` shape |
//! | `POST\|GET /apisix/admin/distributions/<id>/warm[/<job>]`, `DELETE .../warm/<job>` | cache warm jobs (`api::warm`) |
//! | `POST /apisix/admin/schema/validate/<kind>` | 200 or 400, nothing stored |
//! | `HEAD /apisix/admin` | 200, no key needed (APISIX's `head` handler in `apisix/admin/init.lua`) |
//! | `OPTIONS` anything | 200 with APISIX's CORS headers, no key needed (`cors_admin` in `apisix/init.lua`) |
//!
//! Paths are split on `/` and empty segments dropped, as APISIX's
//! `core.utils.split_uri` does, so a trailing slash changes nothing.
//! `create_time` and `update_time` are the server's: a PUT or POST body that
//! carries them is refused as APISIX 3.x refuses it ("the property is
//! forbidden"), a PATCH may set them (APISIX `utils.inject_timestamp`).
//!
//! Reads and writes have separate budgets. A write's body is read first, with
//! its own deadline, holding nothing; only then does the write take one of
//! `admin_max_writes` turns and, for the reference checks and the store
//! write, the write lock that serializes writes of this process. Reads take
//! neither: they read the store directly, so a GET never waits for a write;
//! a read is bounded by `admin_request_timeout`, and a listing is filtered
//! and encoded on a blocking thread, not on the runtime's workers. GET
//! responses never include private keys, except for the admin key's
//! `GET /apisix/admin/ssls[/<id>]?include_secrets=true` (a shardgate
//! extension, for `shardgate export --include-secrets`), which returns them
//! through [`AdminState::reveal_secrets`]; the viewer key is refused it.
//!
//! A write runs in a task of its own, which holds its turn and the write
//! lock until the store has answered. `admin_request_timeout` bounds the
//! wait for the turn and the lock; once the lock is taken the write runs to
//! its end even if the client has been answered 503 meanwhile (or has gone),
//! so no other write can check references against a store that is about to
//! change (a route stored after its upstream was deleted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{Value, json};
use shardgate_core::Limits;
use shardgate_model::keyring::{open_ssl_value, seal_ssl_value};
use shardgate_model::resource::{Resource, Wire};
use shardgate_model::{Invalid, Keyring, ResourceId, ResourceKind, Validation, json as mjson};
use shardgate_store::{Condition, Fence, KeyValue, Store, StoreError};
use tokio::sync::{MutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::ApiError;
use crate::auth::require_key;
use crate::patch;

/// Longest `?ttl=` accepted, in seconds: etcd's `MaxLeaseTTL` (9,000,000,000
/// seconds, `server/lease/lessor.go`), the bound APISIX's leases have.
pub const MAX_TTL_SECS: u64 = 9_000_000_000;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    prefix: String,
    key: String,
    /// The viewer key (`GET` only), if one is configured.
    viewer_key: Option<String>,
    limits: Limits,
    /// The write lock of this process, holding the store's write fence as
    /// the current write read it (see [`AdminState::lock_write`]).
    write: tokio::sync::Mutex<Fence>,
    /// Turns for writes whose body has arrived (`limits.admin_max_writes`).
    writes: Arc<Semaphore>,
    /// Turns for reads (`limits.admin_max_concurrency`).
    reads: Arc<Semaphore>,
    /// APISIX's `enable_admin_cors`.
    cors: bool,
    /// Refuse certificates that have already expired (APISIX accepts them).
    refuse_expired: bool,
    /// The store revision the data plane runs (for invalidation status).
    applied: Option<tokio::sync::watch::Receiver<u64>>,
    /// Recent WAF samples, shared with the edge.
    samples: Option<Arc<shardgate_waf::Samples>>,
    /// Encrypts SSL private keys before they are stored (APISIX's
    /// `data_encryption`); `None` stores them as sent.
    keyring: Option<Arc<Keyring>>,
    /// The dashboard's sign-in state, when the dashboard is on.
    dashboard: Option<Arc<crate::dashboard::Dashboard>>,
    /// Cache warm jobs, when the binary gave a warmer.
    warm: Option<Arc<warm::WarmJobs>>,
}

impl AdminState {
    /// State over `store`, with keys under `prefix`, guarded by `key`.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>, key: impl Into<String>, limits: Limits) -> Self {
        AdminState {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.into(),
                key: key.into(),
                viewer_key: None,
                writes: Arc::new(Semaphore::new(limits.admin_max_writes)),
                reads: Arc::new(Semaphore::new(limits.admin_max_concurrency)),
                limits,
                write: tokio::sync::Mutex::new(Fence::default()),
                cors: true,
                refuse_expired: false,
                applied: None,
                samples: None,
                keyring: None,
                dashboard: None,
                warm: None,
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

    /// Stores SSL private keys encrypted under `keyring`'s first entry, and
    /// decrypts stored ones where the API needs them (PATCH merges).
    pub fn with_keyring(mut self, keyring: Option<Arc<Keyring>>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.keyring = keyring;
        }
        self
    }

    /// Turns the dashboard on: `/ui/api/*` (see [`crate::dashboard`]) and
    /// session cookies in place of the key. Call it while building the
    /// state, before it is cloned (into a router or elsewhere): a shared
    /// state cannot change, and debug builds panic to say so.
    pub fn with_dashboard(mut self, dashboard: Option<crate::dashboard::Dashboard>) -> Self {
        let inner = Arc::get_mut(&mut self.inner);
        debug_assert!(inner.is_some(), "AdminState::with_dashboard called on a state already cloned");
        if let Some(inner) = inner {
            inner.dashboard = dashboard.map(Arc::new);
        }
        self
    }

    pub(crate) fn dashboard(&self) -> Option<Arc<crate::dashboard::Dashboard>> {
        self.inner.dashboard.clone()
    }

    /// The bytes to store for `wire`: SSL private keys sealed under the
    /// keyring, when there is one.
    fn stored_bytes(&self, wire: &Wire) -> Result<Vec<u8>, ApiError> {
        match (&self.inner.keyring, wire.kind()) {
            (Some(keyring), ResourceKind::Ssls) => {
                let mut value = wire.to_value();
                seal_ssl_value(keyring, &mut value)
                    .map_err(|e| ApiError::Internal(format!("encrypting an SSL private key: {e}")))?;
                serde_json::to_vec(&value).map_err(|e| ApiError::Internal(format!("encoding an SSL object: {e}")))
            }
            _ => Ok(wire.to_bytes()),
        }
    }

    /// A stored value with SSL private keys decrypted, for a PATCH to merge
    /// into and validate.
    fn opened(&self, kind: ResourceKind, mut value: Value) -> Result<Value, ApiError> {
        if kind == ResourceKind::Ssls {
            open_ssl_value(self.inner.keyring.as_deref(), &mut value)?;
        }
        Ok(value)
    }

    /// APISIX's `enable_admin_cors` (default on): CORS preflights are
    /// answered and every answer carries APISIX's `Access-Control-*` headers.
    pub fn with_cors(mut self, on: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.cors = on;
        }
        self
    }

    /// Refuse `ssls` whose certificate has already expired (default: accept
    /// them with a warning, as APISIX accepts them).
    pub fn with_refuse_expired_certificates(mut self, on: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.refuse_expired = on;
        }
        self
    }

    /// A second key that may only read (APISIX's `viewer` role): `GET`
    /// only, and never private keys. `None` (the default) means none.
    pub fn with_viewer_key(mut self, key: Option<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.viewer_key = key.filter(|k| !k.is_empty());
        }
        self
    }

    /// Turns an SSL object's stored value into the one an admin's
    /// `?include_secrets=true` read returns, private keys (`key`, `keys`)
    /// included, decrypted when they are stored under the keyring. Every
    /// read that returns a private key goes through here and nowhere else.
    pub fn reveal_secrets(&self, value: &mut Value) -> Result<(), ApiError> {
        // A value that is not an object (another writer's) has no keys to reveal.
        if !value.is_object() {
            return Err(ApiError::Internal("a stored ssl is not a JSON object; its keys cannot be returned".into()));
        }
        open_ssl_value(self.inner.keyring.as_deref(), value)?;
        Ok(())
    }

    pub(crate) fn viewer_key(&self) -> Option<&str> {
        self.inner.viewer_key.as_deref()
    }

    fn applied(&self) -> u64 {
        self.inner.applied.as_ref().map_or(0, |rx| *rx.borrow())
    }

    pub(crate) fn key(&self) -> &str {
        &self.inner.key
    }

    /// What validation checks beyond the schema, as configured.
    fn validation(&self) -> Validation {
        Validation { now_unix: self.inner.refuse_expired.then(now_unix) }
    }
}

/// The Admin API router: resources, auth, CORS, per-request bounds.
pub fn router(state: AdminState) -> Router {
    let dashboard_on = state.dashboard().is_some();
    Router::new()
        .route("/apisix/admin", any(root))
        .route("/apisix/admin/", any(root))
        .route("/apisix/admin/{*path}", any(dispatch))
        .route("/apisix/admin/distributions/{id}/warm", any(warm::jobs))
        .route("/apisix/admin/distributions/{id}/warm/{job}", any(warm::job))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error_msg": "not found"}))) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_key))
        .layer(axum::middleware::map_response(|mut r: Response| async move {
            r.headers_mut().insert("x-api-version", HeaderValue::from_static("v3"));
            r
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
        // The dashboard's static files hold no data: no key (merged after
        // the layers above, which therefore do not apply to them).
        .merge(crate::ui::router(dashboard_on))
}

/// APISIX's `cors_admin` (`apisix/init.lua`), run before the key check: an
/// `OPTIONS` preflight is answered 200 with the allowed methods and headers;
/// every other answer gets `Access-Control-Allow-Origin: *` and friends.
/// A browser sends no credentials to a `*` origin, so the key stays needed.
async fn cors(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if !st.inner.cors {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::OK.into_response();
        let h = r.headers_mut();
        for (name, value) in [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "POST, GET, PUT, OPTIONS, DELETE, PATCH"),
            ("access-control-max-age", "3600"),
            ("access-control-allow-headers", "*"),
            ("access-control-allow-credentials", "true"),
            ("content-type", "text/plain"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        return r;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "*"),
        ("access-control-max-age", "3600"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// `/apisix/admin` itself: `HEAD` answers 200 (clients use it to check the
/// Admin API is there; APISIX needs no key for it either).
async fn root(method: Method) -> Response {
    if method == Method::HEAD {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"error_msg": "not found"}))).into_response()
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

/// Whether the request asks for private keys: `?include_secrets=true`.
pub(crate) fn include_secrets(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "include_secrets" && v == "true"))
}

/// `?include_secrets=`: absent, `true` or `false`; anything else is refused
/// rather than read as `false`.
fn secrets_of(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("include_secrets").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            Err(ApiError::BadRequest(format!("invalid argument include_secrets: {other:?}, should be true or false")))
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64
}

/// `?ttl=`: absent, or a whole number of seconds from 1 to [`MAX_TTL_SECS`].
///
/// What APISIX does with it: a value that is not a number is refused with
/// this exact message (`apisix/admin/init.lua`); a number is handed to
/// lua-resty-etcd's `grant` (`apisix/core/etcd.lua`), which refuses one that
/// is not an integer ("ttl must be integer"; APISIX answers 503 with it,
/// shardgate 400, as it is the client's mistake). etcd's lessor
/// (`server/lease/lessor.go` `Grant`) refuses a TTL above `MaxLeaseTTL`
/// ("too large lease TTL") but does not refuse a small one: a TTL under its
/// minimum lease TTL (1.5 election timeouts, rounded up: 2 s with etcd's
/// defaults) is raised to it, so in APISIX `?ttl=0` or a negative ttl stores
/// a resource that disappears about two seconds later. shardgate refuses
/// zero and negative values instead (almost surely a mistake), and keeps
/// `?ttl=1` to one second.
fn ttl_of(query: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = query.get("ttl") else { return Ok(None) };
    let secs: f64 = raw
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite())
        .ok_or_else(|| ApiError::BadRequest("invalid argument ttl: should be a number".into()))?;
    if secs.fract() != 0.0 {
        return Err(ApiError::BadRequest("invalid argument ttl: ttl must be integer".into()));
    }
    if !(secs >= 1.0 && secs <= MAX_TTL_SECS as f64) {
        return Err(ApiError::BadRequest(format!(
            "invalid argument ttl: should be a number of seconds greater than 0 and at most {MAX_TTL_SECS}"
        )));
    }
    // Whole and within 1..=9e9: exact as an integer.
    Ok(Some(Duration::from_secs(secs as u64)))
}

/// Reads a request body: at most `max` bytes, within `deadline`. Called
/// before any budget or lock is taken, so a slow client holds nothing.
pub(crate) async fn read_body(body: Body, max: usize, deadline: Duration) -> Result<Vec<u8>, ApiError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::BodyTimeout(deadline)),
        Ok(Ok(b)) => Ok(b.to_vec()),
        Ok(Err(e)) => {
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
    envelope(kv, value)
}

/// An SSL object's entry with its private keys, for an admin's
/// `?include_secrets=true` ([`AdminState::reveal_secrets`]).
fn entry_with_secrets(st: &AdminState, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut value = mjson::parse(&kv.value).unwrap_or(Value::Null);
    // The request is fine; the stored SSL is not readable: name it (500).
    st.reveal_secrets(&mut value).map_err(|e| {
        let why = match e {
            ApiError::Invalid(inv) => inv.to_string(),
            ApiError::Internal(m) => m,
            other => format!("{other:?}"),
        };
        ApiError::Internal(format!("cannot return the private keys of {}: {why}", kv.key))
    })?;
    Ok(envelope(kv, value))
}

fn envelope(kv: &KeyValue, value: Value) -> Value {
    json!({
        "key": kv.key,
        "value": value,
        "createdIndex": kv.create_revision,
        "modifiedIndex": kv.mod_revision,
    })
}

/// A request once its path is split: what it names (decoded segments).
#[derive(Clone)]
enum Target {
    /// `/apisix/admin/<kind>`.
    Collection(String),
    /// `/apisix/admin/<kind>/<id>`.
    Item(String, String),
    /// `/apisix/admin/<kind>/<id>/<sub/path>`.
    Sub(String, String, String),
}

/// Every path under `/apisix/admin/`: splits it, takes the read or write
/// budget, reads a write's body, and hands over to the operation.
async fn dispatch(State(st): State<AdminState>, method: Method, uri: Uri, body: Body) -> Result<Response, ApiError> {
    // APISIX's split_uri: empty segments (a trailing slash) change nothing.
    // The raw path is split on `/` before each segment is decoded, so a
    // `%2F` in the kind or the id stays inside that segment (and an id with
    // a `/` is refused). The segments after the id are the sub path,
    // decoded one by one and joined again with `/`: there `a%2Fb` and `a/b`
    // name the same sub path.
    let raw = uri.path().strip_prefix("/apisix/admin").unwrap_or_default();
    let segs: Vec<String> = raw.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect::<Result<_, _>>()?;
    let mut segs = segs.into_iter();
    let target = match (segs.next(), segs.next()) {
        (None, _) => return Ok(root(method).await),
        (Some(kind), None) => Target::Collection(kind),
        (Some(kind), Some(id)) => {
            let rest: Vec<String> = segs.collect();
            if rest.is_empty() { Target::Item(kind, id) } else { Target::Sub(kind, id, rest.join("/")) }
        }
    };
    let query = query_map(&uri);
    let limits = &st.inner.limits;
    let timeout = limits.admin_request_timeout.get();
    if matches!(method, Method::GET | Method::HEAD) {
        let Ok(turn) = Arc::clone(&st.inner.reads).try_acquire_owned() else {
            return Err(ApiError::Busy("too many concurrent Admin API reads; retry".into()));
        };
        return match tokio::time::timeout(timeout, st.read(target, &query, turn)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Busy(format!("the read did not finish within {timeout:?}; retry"))),
        };
    }
    // A write: its body first, holding nothing.
    let bytes = read_body(body, limits.admin_body_max_bytes, limits.admin_body_read_timeout.get()).await?;
    let deadline = Instant::now() + timeout;
    let turn = tokio::time::timeout_at(deadline, Arc::clone(&st.inner.writes).acquire_owned()).await;
    let turn: OwnedSemaphorePermit = match turn {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::Busy(format!(
                "too many concurrent Admin API writes: no turn within {timeout:?}; retry"
            )));
        }
    };
    // The write runs in its own task with its turn: once it holds the
    // write lock, neither this deadline nor a client that leaves can drop
    // the lock while the store write goes on.
    let task = {
        let st = st.clone();
        tokio::spawn(async move {
            let _turn = turn;
            run_write(&st, method, target, &query, &bytes, deadline).await
        })
    };
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(ApiError::Internal(format!("an Admin API write task ended abnormally: {e}"))),
        Err(_) => Err(ApiError::Busy(format!(
            "the write did not finish within {timeout:?}; one that had begun storing completes when the store answers: check with GET whether it was stored"
        ))),
    }
}

/// Longest pause between two runs of a write that lost to another
/// instance's write; each pause is a random part of a doubling bound, so
/// two instances that keep colliding drift apart.
const FENCE_BACKOFF_MAX: Duration = Duration::from_millis(32);

/// Runs a write, again (checks included) while it loses to writes made by
/// other instances on the same store ([`StoreError::Fenced`]), until the
/// request's deadline; a write that found its own resource changed is a
/// conflict and is not retried.
async fn run_write(
    st: &AdminState,
    method: Method,
    target: Target,
    query: &HashMap<String, String>,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Response, ApiError> {
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let result = st.write(method.clone(), target.clone(), query, bytes, deadline).await;
        match result {
            Err(ApiError::Store(StoreError::Fenced)) => {
                attempt = attempt.saturating_add(1);
                let bound = Duration::from_millis(1u64 << attempt.min(5)).min(FENCE_BACKOFF_MAX);
                let pause = bound.mul_f64(jitter(attempt));
                // Another run only if it can end before the deadline, as
                // long as this one took: otherwise the conflict is the answer.
                if Instant::now() + pause + started.elapsed() >= deadline {
                    return result;
                }
                tracing::debug!(
                    attempt,
                    pause_us = pause.as_micros() as u64,
                    "another instance wrote during this Admin API write's checks; checking again"
                );
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// A number in [0, 1) that differs between processes and attempts (std's
/// randomly keyed SipHash; no cryptographic strength needed).
fn jitter(attempt: u32) -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl AdminState {
    async fn read(
        &self,
        target: Target,
        query: &HashMap<String, String>,
        turn: OwnedSemaphorePermit,
    ) -> Result<Response, ApiError> {
        // Private keys only exist on ssls; elsewhere the argument changes nothing.
        let secrets = secrets_of(query)?;
        match target {
            Target::Collection(kind) => {
                let kind = kind_of(&kind)?;
                self.list(kind, query, turn, secrets && kind == ResourceKind::Ssls).await
            }
            Target::Item(kind, id) => {
                let kind = kind_of(&kind)?;
                if secrets && kind == ResourceKind::Ssls {
                    return self.get_with_secrets(&id_of(&id)?).await;
                }
                self.get(kind, &id_of(&id)?).await
            }
            Target::Sub(kind, id, sub) => {
                let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
                if secrets && kind == ResourceKind::Ssls {
                    return self.get_with_secrets(&id).await;
                }
                if kind == ResourceKind::WebAcls && sub == "sampled_requests" {
                    // The shape of AWS's GetSampledRequests answer.
                    self.get(kind, &id).await?;
                    let (list, population) =
                        self.inner.samples.as_ref().map_or((Vec::new(), 0), |s| s.get(id.as_str()));
                    return Ok((StatusCode::OK, Json(json!({"SampledRequests": list, "PopulationSize": population})))
                        .into_response());
                }
                // APISIX's `get` ignores the sub path: the whole object.
                self.get(kind, &id).await
            }
        }
    }

    /// Waits for the write lock until `deadline`; past it nothing was
    /// written and the client may retry. Then reads the store's write
    /// fence: the checks this write makes (references, users, capacity)
    /// hold across every instance sharing the store, because its writes are
    /// fenced and fail with [`StoreError::Fenced`] if another instance wrote
    /// in between (the operation is then run again, see [`run_write`]).
    async fn lock_write(&self, deadline: Instant) -> Result<MutexGuard<'_, Fence>, ApiError> {
        let mut turn = tokio::time::timeout_at(deadline, self.inner.write.lock()).await.map_err(|_| {
            ApiError::Busy(format!(
                "another Admin API write held the write lock for longer than {:?}; nothing was stored, retry",
                self.inner.limits.admin_request_timeout.get()
            ))
        })?;
        *turn = self.store().fence().await?;
        Ok(turn)
    }

    async fn write(
        &self,
        method: Method,
        target: Target,
        query: &HashMap<String, String>,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        match (target, method) {
            (Target::Sub(kind, id, sub), Method::POST) if kind == "schema" && id == "validate" => {
                let kind = kind_of(&sub)?;
                let wire = Wire::from_value(kind, parse_json(bytes)?)?;
                let placeholder = ResourceId::parse("validate").map_err(ApiError::BadRequest)?;
                wire.validate(&placeholder, self.validation())?;
                Ok((StatusCode::OK, Json(json!({}))).into_response())
            }
            (Target::Collection(kind), method) => {
                let kind = kind_of(&kind)?;
                match method {
                    Method::POST => self.create(kind, bytes, ttl_of(query)?, deadline).await,
                    // APISIX's `check_conf`: the id may come from the body.
                    Method::PUT => {
                        let value = parse_json(bytes)?;
                        let id = match value.get("id") {
                            Some(id) => ResourceId::from_json("id", id)?,
                            None => return Err(ApiError::BadRequest(format!("missing {} id", kind.singular()))),
                        };
                        self.put(kind, id, value, ttl_of(query)?, deadline).await
                    }
                    Method::DELETE | Method::PATCH => {
                        Err(ApiError::BadRequest(format!("missing {} id", kind.singular())))
                    }
                    other => Err(not_supported(&other, kind)),
                }
            }
            (Target::Item(kind, id), method) => {
                let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
                match method {
                    Method::PUT => self.put(kind, id, parse_json(bytes)?, ttl_of(query)?, deadline).await,
                    Method::DELETE => self.delete(kind, &id, query, deadline).await,
                    Method::PATCH => self.patch(kind, &id, None, bytes, ttl_of(query)?, deadline).await,
                    Method::POST => Err(ApiError::BadRequest(format!("wrong {} id, do not need it", kind.singular()))),
                    other => Err(not_supported(&other, kind)),
                }
            }
            (Target::Sub(kind, id, sub), method) => {
                let (kind, id) = (kind_of(&kind)?, id_of(&id)?);
                match method {
                    Method::POST if kind == ResourceKind::CdPolicies => match sub.as_str() {
                        "promote" => self.promote(&id, deadline).await,
                        "discard" => self.discard(&id, deadline).await,
                        other => Err(ApiError::NotFound { what: format!("action {other:?} (use promote or discard)") }),
                    },
                    Method::POST if kind == ResourceKind::Functions => match sub.as_str() {
                        "publish" => self.publish(&id, deadline).await,
                        "test" => self.test(&id, query, bytes).await,
                        other => Err(ApiError::NotFound { what: format!("action {other:?} (use publish or test)") }),
                    },
                    Method::PATCH => self.patch(kind, &id, Some(&sub), bytes, ttl_of(query)?, deadline).await,
                    other => Err(ApiError::MethodNotAllowed(format!(
                        "not supported `{other}` method on a sub path of {}",
                        kind.singular()
                    ))),
                }
            }
        }
    }
}

/// Decodes the `%XX` escapes of one path segment (RFC 3986 §2.1); a `%`
/// not followed by two hex digits stays as it is.
fn percent_decode(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ApiError::BadRequest(format!("the path segment {segment:?} is not UTF-8")))
}

fn not_supported(method: &Method, kind: ResourceKind) -> ApiError {
    ApiError::MethodNotAllowed(format!("not supported `{method}` method for {}", kind.singular()))
}

/// APISIX 3.x refuses `create_time` and `update_time` in a PUT or POST body
/// (`check_forbidden_properties` in `apisix/admin/resource.lua`), at the
/// top level and in an inline `upstream`, with this message (two spaces
/// included, so scripts that match APISIX's text keep matching).
fn refuse_times(value: &Value) -> Result<(), ApiError> {
    for (prefix, obj) in [("", Some(value)), ("upstream.", value.get("upstream"))] {
        for field in ["create_time", "update_time"] {
            if obj.and_then(|o| o.get(field)).is_some() {
                return Err(ApiError::BadRequest(format!("the property is forbidden:  {prefix}{field}")));
            }
        }
    }
    Ok(())
}

/// Logs a warning for each certificate of `resource` that has already
/// expired (it is stored anyway, as APISIX stores it). Never logs the key.
fn warn_expired(id: &ResourceId, resource: &Resource) {
    let Resource::Ssl(ssl) = resource else { return };
    let now = now_unix();
    for pair in ssl.pairs.iter().filter(|p| p.not_after < now) {
        tracing::warn!(
            ssl = %id,
            subject = %pair.subject,
            not_after_unix = pair.not_after,
            expired_secs_ago = now - pair.not_after,
            "stored a certificate that has already expired; clients will refuse it (set admin.refuse_expired_certificates to refuse such writes)"
        );
    }
}

/// A listing's answer: filters first, then `total`, then paging
/// (`apisix/admin/v3_adapter.lua`), encoded to JSON. CPU work proportional to
/// the listing: called on a blocking thread.
fn list_response(
    kind: ResourceKind,
    kvs: Vec<KeyValue>,
    query: &HashMap<String, String>,
    applied: u64,
    secrets: Option<&AdminState>,
) -> Result<Response, ApiError> {
    let mut kvs = list::filter(kind, kvs, query)?;
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
        kvs = kvs.into_iter().skip((page - 1).saturating_mul(size)).take(size).collect();
    }
    let list: Vec<Value> = match secrets {
        None => kvs.iter().map(|kv| entry(kind, kv, applied)).collect(),
        Some(st) => {
            let list = kvs.iter().map(|kv| entry_with_secrets(st, kv)).collect::<Result<_, _>>()?;
            tracing::info!(kind = kind.plural(), count = kvs.len(), "private keys returned (include_secrets)");
            list
        }
    };
    let body = serde_json::to_vec(&json!({"total": total, "list": list}))
        .map_err(|e| ApiError::Internal(format!("encoding a listing: {e}")))?;
    Ok((StatusCode::OK, [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
        .into_response())
}

fn stored(status: StatusCode, key: &str, wire: Wire) -> Response {
    (status, Json(json!({"key": key, "value": wire.redacted().to_value()}))).into_response()
}

impl AdminState {
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    pub(crate) fn prefix(&self) -> &str {
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

    /// `GET /ssls/<id>?include_secrets=true`: the object with its private
    /// keys (the key check has already refused the viewer key).
    async fn get_with_secrets(&self, id: &ResourceId) -> Result<Response, ApiError> {
        let kind = ResourceKind::Ssls;
        let kv = self
            .store()
            .get(&kind.key(self.prefix(), id))
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("{} {id}", kind.singular()) })?;
        let entry = entry_with_secrets(self, &kv)?;
        tracing::info!(kind = kind.plural(), %id, "private keys returned (include_secrets)");
        Ok((StatusCode::OK, Json(entry)).into_response())
    }

    /// A listing: the store's keys are filtered, paged and encoded on a
    /// blocking thread (every value is parsed as JSON, which for a large
    /// listing is too long for a runtime worker). The read turn is held
    /// until that work ends, even if the request timed out meanwhile.
    async fn list(
        &self,
        kind: ResourceKind,
        query: &HashMap<String, String>,
        turn: OwnedSemaphorePermit,
        secrets: bool,
    ) -> Result<Response, ApiError> {
        let listing = self.store().list(&kind.key_prefix(self.prefix())).await?;
        let query = query.clone();
        let applied = self.applied();
        let st = secrets.then(|| self.clone());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            list_response(kind, listing.kvs, &query, applied, st.as_ref())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("an Admin API listing ended abnormally: {e}")))?
    }

    /// Parses and validates a body; the id in the body, if any, must be
    /// `id`. `create_time`/`update_time` are refused unless `allow_times`
    /// (PATCH), in APISIX's order: id, forbidden properties, schema.
    fn validated(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        value: Value,
        allow_times: bool,
    ) -> Result<(Wire, Resource), ApiError> {
        if let Some(body_id) = value.get("id") {
            let body_id = ResourceId::from_json("id", body_id)?;
            if body_id != *id {
                return Err(ApiError::BadRequest(format!("wrong {} id", kind.singular())));
            }
        }
        if !allow_times {
            refuse_times(&value)?;
        }
        let wire = Wire::from_value(kind, value)?;
        let resource = wire.validate(id, self.validation())?;
        Ok((wire, resource))
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
            if r.kind == ResourceKind::Functions {
                functions::check_published(&r.field, &r.id, &kv.value)?;
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

    async fn put(
        &self,
        kind: ResourceKind,
        id: ResourceId,
        value: Value,
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        let (mut wire, resource) = self.validated(kind, &id, value, false)?;
        let mut turn = self.lock_write(deadline).await?;
        self.check_references(&wire).await?;
        self.check_stream_users(&id, &wire).await?;
        self.check_templates(&id, &wire).await?;
        let key = kind.key(self.prefix(), &id);
        let prev = self.store().get(&key).await?;
        if prev.is_none() {
            self.check_capacity(kind).await?;
        } else if kind == ResourceKind::Invalidations {
            return Err(ApiError::BadRequest(format!(
                "invalidation {id} exists and cannot be changed; create a new invalidation"
            )));
        }
        functions::keep_live(&mut wire, prev.as_ref());
        let now = now_unix();
        // The server owns the timestamps: create_time survives a replace
        // (apisix/admin/utils.lua inject_timestamp).
        let created = prev
            .as_ref()
            .and_then(|kv| mjson::parse(&kv.value).ok())
            .and_then(|v| v.get("create_time").and_then(Value::as_i64))
            .unwrap_or(now);
        wire.set_id(&id);
        wire.set_times(created, now);
        let cond = prev.as_ref().map_or(Condition::Absent, |p| Condition::ModRevision(p.mod_revision));
        let res = self.store().put_fenced(&key, self.stored_bytes(&wire)?, cond, ttl, &mut turn).await?;
        let status = if res.prev.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        tracing::info!(kind = kind.plural(), %id, revision = res.kv.mod_revision, created = res.prev.is_none(), ttl_secs = ttl.map(|t| t.as_secs_f64()), "resource stored");
        warn_expired(&id, &resource);
        Ok(stored(status, &key, wire))
    }

    async fn create(
        &self,
        kind: ResourceKind,
        bytes: &[u8],
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        let value = parse_json(bytes)?;
        if value.get("id").is_some() {
            return Err(ApiError::BadRequest(format!("wrong {} id, do not need it", kind.singular())));
        }
        refuse_times(&value)?;
        let mut wire = Wire::from_value(kind, value)?;
        let placeholder = ResourceId::parse("new").map_err(ApiError::BadRequest)?;
        let resource = wire.validate(&placeholder, self.validation())?;
        let mut turn = self.lock_write(deadline).await?;
        self.check_references(&wire).await?;
        self.check_templates(&placeholder, &wire).await?;
        self.check_capacity(kind).await?;
        let now = now_unix();
        wire.set_times(now, now);
        let key = self.insert_new(kind, &mut wire, ttl, Some(&mut *turn)).await?;
        if let Some(id) = key.rsplit('/').next().and_then(|id| ResourceId::parse(id).ok()) {
            warn_expired(&id, &resource);
        }
        Ok(stored(StatusCode::CREATED, &key, wire))
    }

    /// Stores `wire` under a new id and returns its key. Ids are the store
    /// revision, zero-padded to 20 digits, as APISIX's `core.etcd.push`
    /// makes them, so they sort in creation order. The caller holds the
    /// write lock (whose fence is `turn`) and has checked the capacity.
    pub(super) async fn insert_new(
        &self,
        kind: ResourceKind,
        wire: &mut Wire,
        ttl: Option<Duration>,
        mut turn: Option<&mut Fence>,
    ) -> Result<String, ApiError> {
        for _ in 0..8 {
            let rev = self.store().revision().await?;
            let id = id_of(&format!("{:020}", rev + 1))?;
            let key = kind.key(self.prefix(), &id);
            wire.set_id(&id);
            let bytes = self.stored_bytes(wire)?;
            let stored = match turn.as_deref_mut() {
                Some(fence) => self.store().put_fenced(&key, bytes, Condition::Absent, ttl, fence).await,
                None => self.store().put_with_ttl(&key, bytes, Condition::Absent, ttl).await,
            };
            match stored {
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
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        let mut turn = self.lock_write(deadline).await?;
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
        match self.store().delete_fenced(&key, Condition::Always, &mut turn).await? {
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
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        if matches!(kind, ResourceKind::StreamRoutes | ResourceKind::Invalidations) {
            // APISIX: `unsupported_methods = {"patch"}` in apisix/admin/stream_routes.lua;
            // invalidations cannot change once created (CloudFront).
            return Err(ApiError::MethodNotAllowed(format!("not supported `PATCH` method for {}", kind.singular())));
        }
        let change = parse_json(bytes)?;
        if kind == ResourceKind::Functions {
            functions::check_patch(sub, &change)?;
        }
        // A PATCH that sets update_time keeps it; otherwise it is now
        // (apisix/admin/utils.lua inject_timestamp; a sub-path PATCH always
        // sets it to now).
        let keeps_update_time = sub.is_none() && change.get("update_time").is_some();
        let mut turn = self.lock_write(deadline).await?;
        let key = kind.key(self.prefix(), id);
        let prev = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("{} {id}", kind.singular()) })?;
        let current = mjson::parse(&prev.value)
            .map_err(|e| ApiError::Invalid(Invalid::new("", format!("the stored value is not JSON: {e}"))))?;
        let mut current = self.opened(kind, current)?;
        match sub {
            Some(path) => patch::replace_at(&mut current, path, change).map_err(ApiError::BadRequest)?,
            None if change.is_object() => patch::merge(&mut current, change),
            None => {
                return Err(ApiError::BadRequest("invalid configuration: a PATCH body must be a JSON object".into()));
            }
        }
        // The merge or replacement may nest deeper than either part did.
        mjson::check_value_depth(&current).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
        let (mut wire, resource) = self.validated(kind, id, current, true)?;
        self.check_references(&wire).await?;
        self.check_stream_users(id, &wire).await?;
        self.check_templates(id, &wire).await?;
        let now = now_unix();
        let (created, updated) = wire.times();
        let updated = if keeps_update_time { updated.unwrap_or(now) } else { now };
        wire.set_id(id);
        wire.set_times(created.unwrap_or(now), updated);
        self.store()
            .put_fenced(&key, self.stored_bytes(&wire)?, Condition::ModRevision(prev.mod_revision), ttl, &mut turn)
            .await?;
        tracing::info!(kind = kind.plural(), %id, ttl_secs = ttl.map(|t| t.as_secs_f64()), "resource patched");
        warn_expired(id, &resource);
        Ok(stored(StatusCode::OK, &key, wire))
    }
}

mod canary;
mod functions;
mod list;
mod templates;
pub mod warm;

#[cfg(test)]
mod tests;
