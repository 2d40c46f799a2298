//! The dashboard's backend on the Admin listener: sign-in, sessions and the
//! JSON the dashboard reads besides the Admin API (`/ui/api/*`).
//!
//! | request | answer |
//! |---|---|
//! | `POST /ui/api/login` `{"username","password"}` or `{"key"}` | 200 `{"user","role","csrf","expires_at"}` and the `shardgate_session` cookie; 401 `wrong username or password` (unknown user, wrong password, wrong key alike); 429 when throttled; 400 naming the field |
//! | `GET /ui/api/session` | 200 as sign-in (a reloaded page finds its CSRF token again); 401 `not signed in` |
//! | `POST /ui/api/logout` | 200 `{}`, cookie cleared; needs `X-CSRF-Token` |
//! | `GET /ui/api/stats` | 200 `{"time","samples":[{"name","labels","value"}],"truncated"}`: the metrics registry, at most [`stats::MAX_SAMPLES`] samples, one answer reused for [`stats::CACHE_FOR`] ([`stats`]) |
//! | `GET /ui/api/health` | the metrics listener's `/v1/healthcheck` answer (APISIX Control API) |
//! | `GET /ui/api/certificates` | 200 `{"list":[{"id","snis","not_before","not_after","days_left","issuer","subject"}]}` soonest expiry first ([`certificates`]) |
//!
//! The last three need a session of any role (401 `not signed in`).
//!
//! Sign-in takes a configured user (`dashboard.users`, passwords hashed,
//! see [`password`]) or the admin key (role `admin`) or viewer key (role
//! `viewer`); users with `read_only: true` are viewers. The session is a
//! signed token ([`session`]) in an `HttpOnly; SameSite=Strict` cookie that
//! script cannot read; writes made with it need the CSRF token from the
//! sign-in answer in `X-CSRF-Token`. The Admin API accepts the cookie in
//! place of `X-API-KEY` ([`crate::auth`]).
//!
//! Sign-in bodies must be `application/json` (a cross-site form cannot send
//! that without a CORS preflight, which is not answered), at most
//! [`MAX_LOGIN_BODY`] bytes. Password checks run on blocking threads, at most
//! [`MAX_PASSWORD_CHECKS`] at once, and repeated failures make a user name
//! or client address (an IPv6 one by its /64) wait ([`throttle`]). An unknown user name costs the
//! hash computation of the costliest configured user (the most PBKDF2
//! iterations), so it is never the quickest answer and timing does not
//! single it out. Passwords, hashes, tokens and keys are never logged; a
//! user name is logged only when such a user exists (a password typed into
//! the name field must not reach the log).
//!
//! The client address is the TCP peer's: `X-Forwarded-For` is not trusted.
//! Behind a reverse proxy or an ingress, every user comes from the proxy's
//! address, so the per-address wait, once started, holds back all of them
//! together (the per-name wait still applies to each name alone).

pub mod certificates;
pub mod password;
pub mod session;
pub mod stats;
pub mod throttle;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::constant_time;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use password::PasswordHash;
pub use session::{Claims, DenyList, Role, SessionKey, TokenError, Via};

use shardgate_core::Metrics;

use crate::{AdminState, ApiError, HealthcheckStatus};

/// The session cookie's name.
pub const COOKIE: &str = "shardgate_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest sign-in body, in bytes.
pub const MAX_LOGIN_BODY: usize = 4 * 1024;
/// Password hashes computed at once; further sign-ins wait for a turn (at
/// most [`PASSWORD_CHECK_WAIT`]). One: a check keeps a CPU core busy for a
/// fraction of a second (600,000 PBKDF2-HMAC-SHA256 iterations, more for
/// hashes made with more), and this process also carries players'
/// connections, often on 2 cores, so a burst of sign-ins (or a guessing
/// run) may take at most one core from the data plane.
pub const MAX_PASSWORD_CHECKS: usize = 1;
/// Longest a sign-in waits for a turn before it is answered 503.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(10);
/// Longest user name accepted (in the file and at sign-in).
pub const MAX_USERNAME_BYTES: usize = 64;
/// Most session cookies of the same name looked at in one request.
const MAX_COOKIE_CANDIDATES: usize = 4;
/// The name key sessions show as their user.
pub const ADMIN_KEY_USER: &str = "admin key";
/// The name viewer-key sessions show as their user.
pub const VIEWER_KEY_USER: &str = "viewer key";

/// One dashboard user.
#[derive(Debug, Clone)]
pub struct User {
    /// The sign-in name.
    pub username: String,
    /// The password's hash.
    pub password_hash: PasswordHash,
    /// A viewer: `GET` only.
    pub read_only: bool,
}

/// The dashboard's settings (`dashboard:` in the bootstrap file).
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Who may sign in with a password.
    pub users: Vec<User>,
    /// How long a session lasts from sign-in.
    pub session_ttl: Duration,
    /// Signs sessions and CSRF tokens.
    pub key: SessionKey,
    /// Add `Secure` to the cookie (the dashboard is reached over HTTPS).
    pub secure_cookie: bool,
    /// Longest a sign-in body may take to arrive.
    pub body_timeout: Duration,
    /// Longest a store read for `/ui/api/certificates` may take.
    pub read_timeout: Duration,
}

struct UserEntry {
    hash: PasswordHash,
    role: Role,
    stamp: Vec<u8>,
}

struct KeyEntry {
    key: String,
    stamp: Vec<u8>,
}

/// The dashboard's sign-in state: users, keys, signed-out sessions and
/// failure counts.
pub struct Dashboard {
    key: SessionKey,
    session_ttl: Duration,
    secure_cookie: bool,
    body_timeout: Duration,
    read_timeout: Duration,
    users: HashMap<String, UserEntry>,
    admin_key: KeyEntry,
    viewer_key: Option<KeyEntry>,
    denied: DenyList,
    by_user: throttle::Backoff<String>,
    by_addr: throttle::Backoff<IpAddr>,
    checks: Arc<Semaphore>,
    /// Checked against when the user name is unknown, so the answer takes
    /// as long as for a known one: as many iterations as the costliest
    /// configured hash.
    decoy: PasswordHash,
    /// The process's registry, for `/ui/api/stats`.
    metrics: Metrics,
    /// The last `/ui/api/stats` answer; made one at a time.
    stats: stats::Cache,
    /// Health checkers' status, for `/ui/api/health`.
    health: Option<HealthcheckStatus>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("users", &self.users.len())
            .field("session_ttl", &self.session_ttl)
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

/// A valid session, as a request presented it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token's claims.
    pub claims: Claims,
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64
}

impl Dashboard {
    /// The dashboard of `settings`, signing in with `admin_key` and the
    /// optional `viewer_key` too.
    pub fn new(settings: DashboardSettings, admin_key: &str, viewer_key: Option<&str>) -> Self {
        let key = settings.key;
        // The costliest configured hash (new hashes' count without users).
        let decoy_iterations =
            settings.users.iter().map(|u| u.password_hash.iterations()).max().unwrap_or(password::ITERATIONS);
        let users = settings
            .users
            .into_iter()
            .map(|u| {
                let role = if u.read_only { Role::Viewer } else { Role::Admin };
                let stamp = key.stamp(Via::User, &u.username, role, u.password_hash.to_phc().as_bytes());
                (u.username, UserEntry { hash: u.password_hash, role, stamp })
            })
            .collect();
        let admin_key = KeyEntry {
            key: admin_key.to_owned(),
            stamp: key.stamp(Via::Key, ADMIN_KEY_USER, Role::Admin, admin_key.as_bytes()),
        };
        let viewer_key = viewer_key.filter(|k| !k.is_empty()).map(|k| KeyEntry {
            key: k.to_owned(),
            stamp: key.stamp(Via::Key, VIEWER_KEY_USER, Role::Viewer, k.as_bytes()),
        });
        Dashboard {
            key,
            session_ttl: settings.session_ttl,
            secure_cookie: settings.secure_cookie,
            body_timeout: settings.body_timeout,
            read_timeout: settings.read_timeout,
            users,
            admin_key,
            viewer_key,
            denied: DenyList::default(),
            by_user: throttle::Backoff::new(throttle::USER_FREE_FAILURES),
            by_addr: throttle::Backoff::new(throttle::ADDR_FREE_FAILURES),
            checks: Arc::new(Semaphore::new(MAX_PASSWORD_CHECKS)),
            decoy: PasswordHash::decoy(decoy_iterations),
            metrics: Metrics::default(),
            stats: stats::Cache::default(),
            health: None,
        }
    }

    /// Serves `/ui/api/stats` from `metrics` (default: an empty registry).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves `/ui/api/health` from the `/v1/healthcheck` status source.
    pub fn with_health(mut self, health: HealthcheckStatus) -> Self {
        self.health = Some(health);
        self
    }

    /// The session a request's cookie holds: `None` without a session
    /// cookie, the reason when none of them is valid now.
    pub fn session(&self, headers: &HeaderMap) -> Option<Result<Session, TokenError>> {
        let now = now_unix();
        let mut first_error = None;
        for token in session_cookies(headers).take(MAX_COOKIE_CANDIDATES) {
            match self.check(token, now) {
                Ok(s) => return Some(Ok(s)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map(Err)
    }

    fn check(&self, token: &str, now: i64) -> Result<Session, TokenError> {
        let claims = self.key.open(token, now)?;
        if self.denied.denied(&claims.id) {
            return Err(TokenError::SignedOut);
        }
        let current = match (claims.via, claims.role) {
            (Via::User, _) => self.users.get(&claims.user).map(|u| &u.stamp),
            (Via::Key, Role::Admin) => Some(&self.admin_key.stamp),
            (Via::Key, Role::Viewer) => self.viewer_key.as_ref().map(|k| &k.stamp),
        };
        match current {
            Some(stamp) if constant_time::verify_slices_are_equal(stamp, &claims.stamp).is_ok() => {
                Ok(Session { claims })
            }
            _ => Err(TokenError::Stale),
        }
    }

    /// Whether the request carries the session's CSRF token.
    pub fn csrf_ok(&self, session: &Session, headers: &HeaderMap) -> bool {
        headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|presented| self.key.csrf_matches(&session.claims.id, presented))
    }

    /// The JSON body of sign-in and `GET /ui/api/session`.
    fn describe(&self, claims: &Claims) -> Value {
        json!({
            "user": claims.user,
            "role": claims.role.as_str(),
            "csrf": self.key.csrf(&claims.id),
            "expires_at": claims.expires_at,
        })
    }

    fn cookie(&self, value: &str, clear: bool) -> Result<HeaderValue, ApiError> {
        let mut c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
        if clear {
            c.push_str("; Max-Age=0");
        }
        if self.secure_cookie {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).map_err(|e| ApiError::Internal(format!("session cookie: {e}")))
    }

    /// A new session for `user` with `role`.
    fn issue(&self, user: &str, role: Role, via: Via, stamp: &[u8]) -> Result<Response, ApiError> {
        let id = session::new_id().map_err(|_| ApiError::Internal("the system's random generator failed".into()))?;
        let ttl = i64::try_from(self.session_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            user: user.to_owned(),
            role,
            via,
            expires_at: now_unix().saturating_add(ttl),
            id,
            stamp: stamp.to_vec(),
        };
        let token = self.key.sign(&claims);
        let mut r = (StatusCode::OK, Json(self.describe(&claims))).into_response();
        r.headers_mut().insert(header::SET_COOKIE, self.cookie(&token, false)?);
        Ok(r)
    }
}

/// Every `shardgate_session` value in the request's `Cookie` headers.
fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The routes of `/ui/api/*`, with `state`'s dashboard; when the dashboard
/// is off, `/ui/api/*` answers 404 saying so.
pub fn router(state: AdminState) -> Router {
    if state.dashboard().is_none() {
        return Router::new().route(
            "/ui/api/{*rest}",
            axum::routing::any(|| async {
                error(StatusCode::NOT_FOUND, "the dashboard is off (dashboard.enabled: false)")
            }),
        );
    }
    Router::new()
        .route("/ui/api/login", post(login))
        .route("/ui/api/session", get(current))
        .route("/ui/api/logout", post(logout))
        .route("/ui/api/stats", get(stats_json))
        .route("/ui/api/health", get(health_json))
        .route("/ui/api/certificates", get(certificates_json))
        .layer(axum::middleware::map_response(|mut r: Response| async move {
            // Answers hold session and CSRF tokens: never cached.
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }))
        .with_state(state)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error_msg": msg.into() }))).into_response()
}

fn not_signed_in() -> Response {
    error(StatusCode::UNAUTHORIZED, "not signed in")
}

fn wrong_credentials() -> Response {
    error(StatusCode::UNAUTHORIZED, "wrong username or password")
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, format!("too many sign-in attempts; retry in {} s", secs.max(1)));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// What a sign-in body asks for.
enum Credentials {
    Password { username: String, password: String },
    Key(String),
}

/// Parses a sign-in body, naming the field at fault.
fn credentials(body: &[u8]) -> Result<Credentials, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("invalid request body: expected a JSON object with username and password, or key".into());
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "username" | "password" | "key") {
            let shown: String = k.chars().take(32).collect();
            return Err(format!(
                "invalid request body: unknown field {shown:?} (expected username and password, or key)"
            ));
        }
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("invalid request body: {name}: expected a string")),
        }
    };
    match (text("username")?, text("password")?, text("key")?) {
        (None, None, Some(key)) if !key.is_empty() => Ok(Credentials::Key(key)),
        (None, None, Some(_)) => Err("invalid request body: key: empty".into()),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err("invalid request body: key: give username and password, or key, not both".into())
        }
        (Some(username), Some(password), None) => {
            if username.is_empty() {
                return Err("invalid request body: username: empty".into());
            }
            if username.len() > MAX_USERNAME_BYTES {
                return Err(format!("invalid request body: username: longer than {MAX_USERNAME_BYTES} bytes"));
            }
            Ok(Credentials::Password { username, password })
        }
        (None, _, None) => Err("invalid request body: username: missing".into()),
        (Some(_), None, None) => Err("invalid request body: password: missing".into()),
    }
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip().to_canonical())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn login(State(state): State<AdminState>, req: Request) -> Response {
    let Some(d) = state.dashboard() else { return not_signed_in() };
    match sign_in(&d, req).await {
        Ok(r) | Err(r) => r,
    }
}

async fn sign_in(d: &Arc<Dashboard>, req: Request) -> Result<Response, Response> {
    let ip = client_ip(&req);
    let addr = throttle::addr_key(ip);
    if !is_json(req.headers()) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the sign-in body must be Content-Type: application/json",
        ));
    }
    let body = crate::api::read_body(req.into_body(), MAX_LOGIN_BODY, d.body_timeout)
        .await
        .map_err(IntoResponse::into_response)?;
    let creds = credentials(&body).map_err(|msg| error(StatusCode::BAD_REQUEST, msg))?;
    let user_key = match &creds {
        Credentials::Password { username, .. } => Some(username.clone()),
        Credentials::Key(_) => None,
    };
    let throttled = |now: Instant| {
        let by_user = user_key.as_ref().and_then(|u| d.by_user.wait(u, now));
        by_user.into_iter().chain(d.by_addr.wait(&addr, now)).max()
    };
    if let Some(wait) = throttled(Instant::now()) {
        // Cheap to send: at debug, so a flood does not flood the log (each
        // failure that started the wait was logged at warn).
        match user_key.as_deref().filter(|u| d.users.contains_key(*u)) {
            Some(user) => tracing::debug!(client = %ip, user = %user, "dashboard sign-in refused: too many failures"),
            None => tracing::debug!(client = %ip, "dashboard sign-in refused: too many failures"),
        }
        return Err(too_many(wait));
    }
    let permit = match tokio::time::timeout(PASSWORD_CHECK_WAIT, Arc::clone(&d.checks).acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return Err(ApiError::Busy("too many sign-ins at once; retry in a few seconds".into()).into_response()),
    };
    // Attempts that queued while this one waited may have failed meanwhile.
    if let Some(wait) = throttled(Instant::now()) {
        return Err(too_many(wait));
    }
    let verifier = Arc::clone(d);
    let verdict = tokio::task::spawn_blocking(move || {
        let verdict = verifier.verify(creds);
        drop(permit);
        verdict
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check: {e}")).into_response())?;
    let now = Instant::now();
    match verdict {
        Some((user, role, via, stamp)) => {
            if let Some(u) = &user_key {
                d.by_user.clear(u);
            }
            tracing::info!(client = %ip, user = %user, role = role.as_str(), "dashboard sign-in");
            d.issue(&user, role, via, &stamp).map_err(IntoResponse::into_response)
        }
        None => {
            if let Some(u) = &user_key {
                d.by_user.fail(u, now);
            }
            d.by_addr.fail(&addr, now);
            // The name only when such a user exists: an unknown "name" may
            // be a password typed into the wrong field.
            match &user_key {
                Some(user) if d.users.contains_key(user) => {
                    tracing::warn!(client = %ip, user = %user, "dashboard sign-in failed: wrong password");
                }
                Some(_) => tracing::warn!(client = %ip, "dashboard sign-in failed: unknown user name (not logged)"),
                None => tracing::warn!(client = %ip, "dashboard sign-in failed: wrong key"),
            }
            Err(wrong_credentials())
        }
    }
}

impl Dashboard {
    /// Checks credentials (blocking: hashes). The user, role, how, and the
    /// credential's stamp when they are right.
    fn verify(&self, creds: Credentials) -> Option<(String, Role, Via, Vec<u8>)> {
        match creds {
            Credentials::Key(presented) => {
                // Both comparisons always run.
                let admin = constant_time::verify_slices_are_equal(presented.as_bytes(), self.admin_key.key.as_bytes());
                let viewer = self
                    .viewer_key
                    .as_ref()
                    .map(|v| constant_time::verify_slices_are_equal(presented.as_bytes(), v.key.as_bytes()));
                if admin.is_ok() {
                    Some((ADMIN_KEY_USER.to_owned(), Role::Admin, Via::Key, self.admin_key.stamp.clone()))
                } else if let (Some(Ok(())), Some(v)) = (viewer, &self.viewer_key) {
                    Some((VIEWER_KEY_USER.to_owned(), Role::Viewer, Via::Key, v.stamp.clone()))
                } else {
                    None
                }
            }
            Credentials::Password { username, password } => match self.users.get(&username) {
                Some(u) if u.hash.verify(password.as_bytes()) => Some((username, u.role, Via::User, u.stamp.clone())),
                Some(_) => None,
                None => {
                    // Same cost as a known user's check; the answer is no either way.
                    let matched = self.decoy.verify(password.as_bytes());
                    debug_assert!(!matched, "no password matches the decoy");
                    None
                }
            },
        }
    }
}

async fn current(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(d) = state.dashboard() else { return not_signed_in() };
    match d.session(&headers) {
        Some(Ok(s)) => (StatusCode::OK, Json(d.describe(&s.claims))).into_response(),
        Some(Err(e)) => {
            tracing::debug!(reason = %e, "dashboard session refused");
            not_signed_in()
        }
        None => not_signed_in(),
    }
}

async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(d) = state.dashboard() else { return not_signed_in() };
    let session = match d.session(&headers) {
        Some(Ok(s)) => s,
        _ => return not_signed_in(),
    };
    if !d.csrf_ok(&session, &headers) {
        return csrf_refused();
    }
    d.denied.deny(&session.claims.id, session.claims.expires_at, now_unix());
    tracing::info!(user = %session.claims.user, "dashboard sign-out");
    let mut r = (StatusCode::OK, Json(json!({}))).into_response();
    match d.cookie("", true) {
        Ok(c) => {
            r.headers_mut().insert(header::SET_COOKIE, c);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// The dashboard, if the request carries a valid session.
fn signed_in(state: &AdminState, headers: &HeaderMap) -> Option<Arc<Dashboard>> {
    let d = state.dashboard()?;
    match d.session(headers)? {
        Ok(_) => Some(d),
        Err(e) => {
            tracing::debug!(reason = %e, "dashboard session refused");
            None
        }
    }
}

async fn stats_json(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(d) = signed_in(&state, &headers) else { return not_signed_in() };
    let metrics = d.metrics.clone();
    let make = || async move {
        // Encoding and parsing a large registry is CPU work: off the runtime.
        tokio::task::spawn_blocking(move || {
            let text = metrics.encode_openmetrics().map_err(|e| format!("encoding the metrics: {e}"))?;
            let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
            let body = stats::answer(&text, stats::MAX_SAMPLES, time).map_err(|e| e.to_string())?;
            serde_json::to_vec(&body).map(axum::body::Bytes::from).map_err(|e| format!("encoding the stats: {e}"))
        })
        .await
        .map_err(|e| format!("stats task: {e}"))?
    };
    match d.stats.get_or_make(d.read_timeout, make).await {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
            .into_response(),
        Err(stats::CacheError::Busy) => {
            ApiError::Busy(format!("the stats took longer than {:?} to make; retry", d.read_timeout)).into_response()
        }
        Err(stats::CacheError::Failed(e)) => ApiError::Internal(e).into_response(),
    }
}

async fn health_json(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(d) = signed_in(&state, &headers) else { return not_signed_in() };
    let Some(health) = &d.health else {
        return error(StatusCode::NOT_FOUND, "health checks are not available on this listener");
    };
    let (code, body) = health(None);
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}

async fn certificates_json(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(d) = signed_in(&state, &headers) else { return not_signed_in() };
    let prefix = shardgate_model::ResourceKind::Ssls.key_prefix(state.prefix());
    let listing = match tokio::time::timeout(d.read_timeout, state.store().list(&prefix)).await {
        Err(_) => {
            return ApiError::Busy(format!("the store did not answer within {:?}; retry", d.read_timeout))
                .into_response();
        }
        Ok(Err(e)) => return ApiError::from(e).into_response(),
        Ok(Ok(l)) => l,
    };
    // Parsing every certificate is CPU work: off the runtime.
    let answer = tokio::task::spawn_blocking(move || {
        let entries = listing.kvs.iter().map(|kv| certificates::entry(&kv.key, &kv.value)).collect();
        certificates::list(entries, now_unix())
    })
    .await;
    match answer {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => ApiError::Internal(format!("certificates task: {e}")).into_response(),
    }
}

/// 403 `missing or wrong CSRF token`.
pub fn csrf_refused() -> Response {
    error(StatusCode::FORBIDDEN, "missing or wrong CSRF token")
}

#[cfg(test)]
mod tests;
