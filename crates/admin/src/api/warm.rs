//! Cache warm jobs: fill a distribution's cache ahead of a release, from a
//! list of paths, with a bounded number of fetches at once (what
//! `shardgate cache warm` and the dashboard start).
//!
//! | request | answer |
//! |---|---|
//! | `POST /apisix/admin/distributions/<id>/warm` `{"paths": [..], "variant": "primary"\|"staging", "concurrency": N}` | 202 with the job (`id`, progress) and its URL in `Location`; 400 naming the field; 404 unknown distribution; 409 a job of this distribution still runs, or the variant cannot be reached; 503 too many jobs |
//! | `GET /apisix/admin/distributions/<id>/warm` | 200 `{"total", "list"}`: the jobs kept for it, newest first |
//! | `GET /apisix/admin/distributions/<id>/warm/<job>` | 200 the job: `state`, `total`, `done`, `fetched`, `fresh`, `failed`, `failures` (`path`, `reason`; the first [`MAX_FAILURES_KEPT`]), `started_at`, `finished_at`, `elapsed_secs`, `rate` (paths per second) |
//! | `DELETE /apisix/admin/distributions/<id>/warm/<job>` | 200 the job: a running one stops once its fetches in flight end (`state` `cancelled`) |
//!
//! Each path is fetched once through the edge as a viewer's `GET` would be
//! (its cache, origins and, for `staging`, the staging distribution of the
//! primary's continuous deployment policy, whatever its traffic settings;
//! not its web ACL: the fetch is the operator's) by a [`Warmer`], which the
//! binary provides (`shardgate_http::warm`, in process): `fetched` when the edge went to the origin for it (a
//! miss, or a revalidation), `fresh` when the cache already held a fresh
//! copy, `failed` with the reason otherwise (an error status, an origin
//! that cannot be reached, a response the cache does not store).
//!
//! A job lives in the memory of the gateway that runs it: it warms that
//! gateway's cache (each instance of a cluster has its own), it is not in
//! the store, and it ends with the process. Jobs are bounded: paths per job
//! ([`MAX_WARM_PATHS`]) and the request body ([`MAX_WARM_BODY_BYTES`]),
//! fetches at once per job ([`MAX_WARM_CONCURRENCY`]), one running job per
//! distribution and [`MAX_RUNNING_JOBS`] in all, the last [`JOBS_KEPT`]
//! jobs kept for reading, each path's fetch ([`PATH_TIMEOUT`]). The viewer
//! key may read jobs, not start or cancel them (the key check lets a viewer
//! `GET` only).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shardgate_model::edge::InvalidationPath;
use shardgate_model::{Invalid, ResourceId, ResourceKind, json as mjson};
use tokio::sync::Semaphore;

use super::{AdminState, read_body};
use crate::ApiError;

/// Most paths in one job.
pub const MAX_WARM_PATHS: usize = 100_000;
/// Largest `POST .../warm` body, in bytes: 100,000 paths of about 80
/// characters. Larger lists are split into several jobs, one after the other.
pub const MAX_WARM_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How many `POST .../warm` bodies are read at once; more wait for none and
/// get 503. With [`MAX_WARM_BODY_BYTES`] it bounds the memory they hold.
pub const MAX_WARM_BODY_READS: usize = 2;
/// Fetches at once when the request does not say.
pub const DEFAULT_WARM_CONCURRENCY: usize = 8;
/// Most fetches at once in one job.
pub const MAX_WARM_CONCURRENCY: usize = 64;
/// Jobs running at once on this gateway, all distributions together.
pub const MAX_RUNNING_JOBS: usize = 4;
/// Jobs kept for reading (running ones and the most recent finished ones).
pub const JOBS_KEPT: usize = 32;
/// Failures a job keeps with their path and reason (the count goes on).
pub const MAX_FAILURES_KEPT: usize = 100;
/// Longest one path's fetch may take, body included, before it counts as failed.
pub const PATH_TIMEOUT: Duration = Duration::from_secs(600);

/// Which side of a distribution a job warms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmVariant {
    /// The distribution itself (the primary, when it has a canary).
    Primary,
    /// The staging distribution of its continuous deployment policy.
    Staging,
}

impl WarmVariant {
    /// `primary` or `staging`, as in the request and the job.
    pub fn as_str(self) -> &'static str {
        match self {
            WarmVariant::Primary => "primary",
            WarmVariant::Staging => "staging",
        }
    }
}

/// What fetching one path did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmOutcome {
    /// The edge fetched it from the origin (a miss or a revalidation) and stored it.
    Fetched,
    /// The cache already held a fresh copy.
    Fresh,
    /// Not in the cache afterwards; why (a status, an unreachable origin, ...).
    Failed(String),
}

/// A [`Warmer`]'s fetch of one path.
pub type WarmFuture<'a> = Pin<Box<dyn Future<Output = WarmOutcome> + Send + 'a>>;

/// Fetches paths through the edge, as a viewer's `GET` would (the binary
/// gives the Admin API one, see [`AdminState::with_warmer`]).
pub trait Warmer: Send + Sync {
    /// Whether `variant` of `distribution` can be warmed now; why not otherwise
    /// (not in the running configuration, no staging, ...).
    fn check(&self, distribution: &str, variant: WarmVariant) -> Result<(), String>;

    /// Fetches `path` (a path with an optional `?query`) of `distribution`
    /// through its cache. Never panics on bad input: a failure is an outcome.
    fn warm<'a>(&'a self, distribution: &'a str, path: &'a str, variant: WarmVariant) -> WarmFuture<'a>;
}

/// The jobs of this gateway and what runs them.
pub(crate) struct WarmJobs {
    warmer: Arc<dyn Warmer>,
    /// Oldest first; at most [`JOBS_KEPT`] (more only while that many run).
    jobs: Mutex<VecDeque<Arc<Job>>>,
    /// Turns to read a body ([`MAX_WARM_BODY_READS`]).
    body_reads: Arc<Semaphore>,
    seq: AtomicU64,
}

impl WarmJobs {
    pub(crate) fn new(warmer: Arc<dyn Warmer>) -> Self {
        WarmJobs {
            warmer,
            jobs: Mutex::new(VecDeque::new()),
            body_reads: Arc::new(Semaphore::new(MAX_WARM_BODY_READS)),
            seq: AtomicU64::new(0),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        // The list stays consistent whatever panicked while holding it.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, distribution: &str, job: &str) -> Option<Arc<Job>> {
        self.jobs().iter().find(|j| j.id == job && j.distribution == distribution).cloned()
    }

    /// A new id: the start time in milliseconds and a sequence number, so
    /// ids stay unique across restarts of the gateway.
    fn next_id(&self) -> String {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("{ms}-{}", self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A validated `POST .../warm` body.
#[derive(Debug, PartialEq, Eq)]
struct WarmRequest {
    /// Distinct paths, in the order given.
    paths: Vec<String>,
    /// How many paths were given twice or more (fetched once).
    duplicates: usize,
    variant: WarmVariant,
    concurrency: usize,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("invalid request body: {}", Invalid::new(field, reason)))
}

/// Checks a path the way an invalidation path is checked (starts with `/`,
/// at most 4,000 characters, no control character), without a wildcard, and
/// as a request target (RFC 9112 §3.2.1 origin-form).
fn check_path(i: usize, v: &Value) -> Result<String, ApiError> {
    let field = || format!("paths[{i}]");
    let Some(s) = v.as_str() else { return Err(invalid(field(), "must be a string")) };
    match InvalidationPath::parse(s).map_err(|e| invalid(field(), e))? {
        InvalidationPath::Exact(_) => {}
        InvalidationPath::Prefix(_) => {
            return Err(invalid(
                field(),
                format!("{s:?}: '*' is not allowed: a warm fetches objects by their exact path"),
            ));
        }
    }
    if s.contains('#') {
        return Err(invalid(field(), format!("{s:?}: a request target has no fragment ('#')")));
    }
    s.parse::<axum::http::uri::PathAndQuery>()
        .map_err(|e| invalid(field(), format!("{s:?} is not a valid request target: {e}")))?;
    Ok(s.to_owned())
}

fn parse_request(bytes: &[u8]) -> Result<WarmRequest, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("invalid request body: empty; send {\"paths\": [\"/a\", ...]}".into()));
    }
    let value = mjson::parse(bytes).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::BadRequest("invalid request body: must be a JSON object".into()));
    };
    if let Some(other) = obj.keys().find(|k| !matches!(k.as_str(), "paths" | "variant" | "concurrency")) {
        return Err(invalid(other.as_str(), "unknown field; expected paths, variant and concurrency"));
    }
    let range = format!("must list 1 to {MAX_WARM_PATHS} paths");
    let list = match obj.get("paths") {
        None => return Err(invalid("paths", format!("required: {range}"))),
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_WARM_PATHS => list,
        Some(Value::Array(list)) => return Err(invalid("paths", format!("{range}, got {}", list.len()))),
        Some(_) => return Err(invalid("paths", format!("must be an array of strings ({range})"))),
    };
    let mut seen = HashSet::with_capacity(list.len());
    let mut paths = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let path = check_path(i, v)?;
        if seen.insert(path.clone()) {
            paths.push(path);
        }
    }
    let variant = match obj.get("variant") {
        None => WarmVariant::Primary,
        Some(Value::String(s)) if s == "primary" => WarmVariant::Primary,
        Some(Value::String(s)) if s == "staging" => WarmVariant::Staging,
        Some(_) => return Err(invalid("variant", "must be \"primary\" or \"staging\"")),
    };
    let concurrency = match obj.get("concurrency") {
        None => DEFAULT_WARM_CONCURRENCY,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_WARM_CONCURRENCY).contains(n))
            .ok_or_else(|| invalid("concurrency", format!("must be an integer from 1 to {MAX_WARM_CONCURRENCY}")))?,
    };
    Ok(WarmRequest { duplicates: list.len() - paths.len(), paths, variant, concurrency })
}

/// One job: what it was asked and how far it is.
struct Job {
    id: String,
    distribution: String,
    variant: WarmVariant,
    concurrency: usize,
    total: usize,
    duplicates: usize,
    started: Instant,
    started_at: f64,
    /// Set once the last fetch has ended: (time taken, Unix time).
    finished: OnceLock<(Duration, f64)>,
    cancelled: AtomicBool,
    done: AtomicUsize,
    fetched: AtomicUsize,
    fresh: AtomicUsize,
    failed: AtomicUsize,
    failures: Mutex<Vec<(String, String)>>,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds to the millisecond, for JSON.
fn secs(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

impl Job {
    fn running(&self) -> bool {
        self.finished.get().is_none()
    }

    fn record(&self, path: &str, outcome: WarmOutcome) {
        match outcome {
            WarmOutcome::Fetched => self.fetched.fetch_add(1, Ordering::Relaxed),
            WarmOutcome::Fresh => self.fresh.fetch_add(1, Ordering::Relaxed),
            WarmOutcome::Failed(reason) => {
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                if failures.len() < MAX_FAILURES_KEPT {
                    failures.push((path.to_owned(), reason));
                }
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn state(&self) -> &'static str {
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        match (self.running(), cancelled) {
            (true, false) => "running",
            (true, true) => "cancelling",
            (false, true) => "cancelled",
            (false, false) if self.done.load(Ordering::Relaxed) < self.total => "incomplete",
            (false, false) => "finished",
        }
    }

    fn progress(&self) -> Value {
        let done = self.done.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let failures: Vec<Value> = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(path, reason)| json!({"path": path, "reason": reason}))
            .collect();
        let (elapsed, finished_at) = match self.finished.get() {
            Some((took, at)) => (*took, Some(secs(*at))),
            None => (self.started.elapsed(), None),
        };
        let elapsed = elapsed.as_secs_f64();
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        json!({
            "id": self.id,
            "distribution": self.distribution,
            "variant": self.variant.as_str(),
            "concurrency": self.concurrency,
            "state": self.state(),
            "total": self.total,
            "duplicates": self.duplicates,
            "done": done,
            "fetched": self.fetched.load(Ordering::Relaxed),
            "fresh": self.fresh.load(Ordering::Relaxed),
            "failed": failed,
            "failures": failures,
            "failures_not_listed": failed.saturating_sub(failures.len()),
            "started_at": secs(self.started_at),
            "finished_at": finished_at,
            "elapsed_secs": secs(elapsed),
            "rate": (rate * 10.0).round() / 10.0,
        })
    }
}

/// Runs `job` over `paths`: `job.concurrency` workers take the next path
/// until none is left or the job is cancelled.
async fn run(job: Arc<Job>, warmer: Arc<dyn Warmer>, paths: Vec<String>) {
    let paths: Arc<[String]> = paths.into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..job.concurrency.min(paths.len()) {
        let (job, warmer, paths, next) = (Arc::clone(&job), Arc::clone(&warmer), Arc::clone(&paths), Arc::clone(&next));
        workers.spawn(async move {
            while !job.cancelled.load(Ordering::Relaxed) {
                let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                let outcome = tokio::time::timeout(PATH_TIMEOUT, warmer.warm(&job.distribution, path, job.variant))
                    .await
                    .unwrap_or_else(|_| WarmOutcome::Failed(format!("not done within {PATH_TIMEOUT:?}")));
                job.record(path, outcome);
            }
        });
    }
    while let Some(ended) = workers.join_next().await {
        if let Err(e) = ended {
            tracing::error!(job = %job.id, distribution = %job.distribution, error = %e, "a cache warm worker ended abnormally; its remaining paths are not fetched");
        }
    }
    if job.finished.set((job.started.elapsed(), unix_now())).is_err() {
        tracing::debug!(job = %job.id, "cache warm job finished twice");
    }
    tracing::info!(
        job = %job.id,
        distribution = %job.distribution,
        variant = job.variant.as_str(),
        state = job.state(),
        total = job.total,
        fetched = job.fetched.load(Ordering::Relaxed),
        fresh = job.fresh.load(Ordering::Relaxed),
        failed = job.failed.load(Ordering::Relaxed),
        elapsed_ms = job.started.elapsed().as_millis() as u64,
        "cache warm job ended"
    );
}

fn job_url(distribution: &str, job: &str) -> String {
    format!("/apisix/admin/distributions/{distribution}/warm/{job}")
}

impl AdminState {
    /// Serves cache warm jobs (`/apisix/admin/distributions/<id>/warm`)
    /// with `warmer`. Without one, starting a job is refused.
    pub fn with_warmer(mut self, warmer: Arc<dyn Warmer>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.warm = Some(Arc::new(WarmJobs::new(warmer)));
        }
        self
    }

    fn warm_jobs(&self) -> Result<&WarmJobs, ApiError> {
        self.inner.warm.as_deref().ok_or_else(|| {
            ApiError::Conflict("cache warm is not available on this gateway: it serves no edge (edge.http)".into())
        })
    }

    async fn start_warm(&self, distribution: &str, body: Body) -> Result<Response, ApiError> {
        let jobs = self.warm_jobs()?;
        let id = ResourceId::parse(distribution)
            .map_err(|e| ApiError::BadRequest(format!("invalid id {distribution:?}: {e}")))?;
        let req = {
            let Ok(_turn) = Arc::clone(&jobs.body_reads).try_acquire_owned() else {
                return Err(ApiError::Busy("other cache warm requests are being read; retry".into()));
            };
            let limits = &self.inner.limits;
            let bytes = read_body(body, MAX_WARM_BODY_BYTES, limits.admin_body_read_timeout.get()).await?;
            parse_request(&bytes)?
        };
        let kind = ResourceKind::Distributions;
        if self.store().get(&kind.key(self.prefix(), &id)).await?.is_none() {
            return Err(ApiError::NotFound { what: format!("distribution {id}") });
        }
        jobs.warmer.check(id.as_str(), req.variant).map_err(|why| {
            ApiError::Conflict(format!("cannot warm {} of distribution {id}: {why}", req.variant.as_str()))
        })?;
        let job = {
            let mut list = jobs.jobs();
            if let Some(running) = list.iter().find(|j| j.distribution == id.as_str() && j.running()) {
                return Err(ApiError::Conflict(format!(
                    "cache warm job {} of distribution {id} is still running ({} of {} paths done); wait for it, or cancel it with DELETE {}",
                    running.id,
                    running.done.load(Ordering::Relaxed),
                    running.total,
                    job_url(id.as_str(), &running.id)
                )));
            }
            if list.iter().filter(|j| j.running()).count() >= MAX_RUNNING_JOBS {
                return Err(ApiError::Busy(format!(
                    "{MAX_RUNNING_JOBS} cache warm jobs are running on this gateway, the most at once; retry when one has finished"
                )));
            }
            let job = Arc::new(Job {
                id: jobs.next_id(),
                distribution: id.as_str().to_owned(),
                variant: req.variant,
                concurrency: req.concurrency,
                total: req.paths.len(),
                duplicates: req.duplicates,
                started: Instant::now(),
                started_at: unix_now(),
                finished: OnceLock::new(),
                cancelled: AtomicBool::new(false),
                done: AtomicUsize::new(0),
                fetched: AtomicUsize::new(0),
                fresh: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
                failures: Mutex::new(Vec::new()),
            });
            list.push_back(Arc::clone(&job));
            // Forget the oldest finished jobs beyond the bound.
            while list.len() > JOBS_KEPT {
                let Some(i) = list.iter().position(|j| !j.running()) else { break };
                list.remove(i);
            }
            job
        };
        tracing::info!(job = %job.id, distribution = %id, variant = req.variant.as_str(), paths = job.total, concurrency = job.concurrency, "cache warm job started");
        tokio::spawn(run(Arc::clone(&job), Arc::clone(&jobs.warmer), req.paths));
        let mut resp = (StatusCode::ACCEPTED, Json(job.progress())).into_response();
        if let Ok(v) = HeaderValue::from_str(&job_url(id.as_str(), &job.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    fn list_warm(&self, distribution: &str) -> Result<Response, ApiError> {
        let jobs = self.warm_jobs()?;
        let list: Vec<Value> =
            jobs.jobs().iter().rev().filter(|j| j.distribution == distribution).map(|j| j.progress()).collect();
        Ok((StatusCode::OK, Json(json!({"total": list.len(), "list": list}))).into_response())
    }
}

fn not_found(distribution: &str, job: &str) -> ApiError {
    ApiError::NotFound {
        what: format!(
            "cache warm job {job} of distribution {distribution} (jobs live in the gateway's memory: the last {JOBS_KEPT} are kept until it restarts)"
        ),
    }
}

/// `/apisix/admin/distributions/<id>/warm`: start a job (`POST`), list them (`GET`).
pub(super) async fn jobs(
    State(st): State<AdminState>,
    Path(distribution): Path<String>,
    method: Method,
    body: Body,
) -> Result<Response, ApiError> {
    match method {
        Method::POST => st.start_warm(&distribution, body).await,
        Method::GET | Method::HEAD => st.list_warm(&distribution),
        other => Err(ApiError::MethodNotAllowed(format!(
            "not supported `{other}` method on cache warm jobs (POST starts one, GET lists them)"
        ))),
    }
}

/// `/apisix/admin/distributions/<id>/warm/<job>`: its progress (`GET`), cancel it (`DELETE`).
pub(super) async fn job(
    State(st): State<AdminState>,
    Path((distribution, job)): Path<(String, String)>,
    method: Method,
) -> Result<Response, ApiError> {
    let jobs = st.warm_jobs()?;
    let found = jobs.find(&distribution, &job).ok_or_else(|| not_found(&distribution, &job))?;
    match method {
        Method::GET | Method::HEAD => Ok((StatusCode::OK, Json(found.progress())).into_response()),
        Method::DELETE => {
            if found.running() && !found.cancelled.swap(true, Ordering::Relaxed) {
                tracing::info!(job = %found.id, distribution = %found.distribution, "cache warm job cancelled");
            }
            Ok((StatusCode::OK, Json(found.progress())).into_response())
        }
        other => Err(ApiError::MethodNotAllowed(format!(
            "not supported `{other}` method on a cache warm job (GET reads it, DELETE cancels it)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
        v.get(name).unwrap_or(&Value::Null)
    }

    fn parse(v: Value) -> Result<WarmRequest, String> {
        parse_request(v.to_string().as_bytes()).map_err(|e| match e {
            ApiError::BadRequest(m) => m,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn a_request_names_the_field_it_refuses() {
        let ok = parse(json!({"paths": ["/a", "/b?v=1", "/a"], "variant": "staging", "concurrency": 64})).expect("ok");
        assert_eq!(ok.paths, ["/a", "/b?v=1"]);
        assert_eq!((ok.duplicates, ok.variant, ok.concurrency), (1, WarmVariant::Staging, 64));
        let defaults = parse(json!({"paths": ["/x"]})).expect("defaults");
        assert_eq!((defaults.variant, defaults.concurrency), (WarmVariant::Primary, DEFAULT_WARM_CONCURRENCY));

        let long = format!("/{}", "a".repeat(4000));
        let too_many: Vec<String> = (0..=MAX_WARM_PATHS).map(|i| format!("/{i}")).collect();
        for (body, want) in [
            (json!({}), "\"paths\" validation failed: required"),
            (json!({"paths": []}), "\"paths\" validation failed: must list 1 to 100000 paths, got 0"),
            (json!({"paths": too_many}), "must list 1 to 100000 paths, got 100001"),
            (json!({"paths": "/a"}), "\"paths\" validation failed: must be an array"),
            (json!({"paths": ["/a", "b"]}), "\"paths[1]\" validation failed: \"b\" must start with '/'"),
            (json!({"paths": [7]}), "\"paths[0]\" validation failed: must be a string"),
            (json!({"paths": ["/a*"]}), "\"paths[0]\" validation failed: \"/a*\": '*' is not allowed"),
            (json!({"paths": [long]}), "\"paths[0]\" validation failed: a path is at most 4000 characters"),
            (json!({"paths": ["/a b"]}), "\"paths[0]\" validation failed: \"/a b\" is not a valid request target"),
            (json!({"paths": ["/a#b"]}), "\"paths[0]\" validation failed: \"/a#b\": a request target has no fragment"),
            (json!({"paths": ["/a\n"]}), "\"paths[0]\" validation failed: \"/a\\n\" contains a control character"),
            (json!({"paths": ["/a"], "variant": "blue"}), "\"variant\" validation failed"),
            (
                json!({"paths": ["/a"], "concurrency": 0}),
                "\"concurrency\" validation failed: must be an integer from 1 to 64",
            ),
            (json!({"paths": ["/a"], "concurrency": 65}), "\"concurrency\" validation failed"),
            (json!({"paths": ["/a"], "concurrency": 1.5}), "\"concurrency\" validation failed"),
            (json!({"paths": ["/a"], "distribution": "d"}), "\"distribution\" validation failed: unknown field"),
            (json!(["/a"]), "must be a JSON object"),
        ] {
            let got = parse(body.clone()).expect_err("refused");
            assert!(got.contains(want), "{body}: {got}");
        }
        assert!(parse_request(b" ").is_err());
        assert!(parse_request(b"{").is_err());
    }

    /// A warmer that says fresh for `/fresh*`, fails `/bad*` and fetches the
    /// rest, after waiting for `gate` (so a test can hold a job running).
    struct Fake {
        gate: tokio::sync::Semaphore,
        seen: AtomicUsize,
    }

    impl Warmer for Fake {
        fn check(&self, distribution: &str, _: WarmVariant) -> Result<(), String> {
            if distribution == "unserved" { Err("not in the running configuration".into()) } else { Ok(()) }
        }

        fn warm<'a>(&'a self, _: &'a str, path: &'a str, _: WarmVariant) -> WarmFuture<'a> {
            Box::pin(async move {
                if let Ok(permit) = self.gate.acquire().await {
                    permit.forget();
                }
                self.seen.fetch_add(1, Ordering::Relaxed);
                if path.starts_with("/fresh") {
                    WarmOutcome::Fresh
                } else if path.starts_with("/bad") {
                    WarmOutcome::Failed(format!("404 Not Found for {path}"))
                } else {
                    WarmOutcome::Fetched
                }
            })
        }
    }

    fn job(total: usize) -> Arc<Job> {
        Arc::new(Job {
            id: "1-1".into(),
            distribution: "d".into(),
            variant: WarmVariant::Primary,
            concurrency: 3,
            total,
            duplicates: 0,
            started: Instant::now(),
            started_at: unix_now(),
            finished: OnceLock::new(),
            cancelled: AtomicBool::new(false),
            done: AtomicUsize::new(0),
            fetched: AtomicUsize::new(0),
            fresh: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test]
    async fn a_job_counts_every_outcome_and_keeps_a_bounded_list_of_failures() {
        let fake = Arc::new(Fake { gate: Semaphore::new(Semaphore::MAX_PERMITS), seen: AtomicUsize::new(0) });
        let mut paths: Vec<String> = (0..50).map(|i| format!("/ok{i}")).collect();
        paths.extend((0..20).map(|i| format!("/fresh{i}")));
        paths.extend((0..(MAX_FAILURES_KEPT + 5)).map(|i| format!("/bad{i}")));
        let total = paths.len();
        let j = job(total);
        run(Arc::clone(&j), fake.clone(), paths).await;
        let p = j.progress();
        assert_eq!(field(&p, "state"), "finished");
        assert_eq!(field(&p, "done"), total);
        assert_eq!(
            (field(&p, "fetched"), field(&p, "fresh"), field(&p, "failed")),
            (&json!(50), &json!(20), &json!(105))
        );
        assert_eq!(field(&p, "failures").as_array().map(Vec::len), Some(MAX_FAILURES_KEPT));
        assert_eq!(field(&p, "failures_not_listed"), 5);
        let first = &field(&p, "failures")[0];
        assert!(field(first, "path").as_str().is_some_and(|s| s.starts_with("/bad")), "{first}");
        assert!(field(first, "reason").as_str().is_some_and(|s| s.starts_with("404 Not Found")), "{first}");
        assert!(field(&p, "finished_at").is_number());
        assert_eq!(fake.seen.load(Ordering::Relaxed), total, "each path fetched once");
    }

    #[tokio::test]
    async fn a_cancelled_job_stops_taking_paths() {
        let fake = Arc::new(Fake { gate: Semaphore::new(0), seen: AtomicUsize::new(0) });
        let j = job(100);
        let paths: Vec<String> = (0..100).map(|i| format!("/p{i}")).collect();
        let task = tokio::spawn(run(Arc::clone(&j), fake.clone(), paths));
        // Three workers wait at the gate; cancel, then let them through.
        j.cancelled.store(true, Ordering::Relaxed);
        assert_eq!(j.state(), "cancelling");
        fake.gate.add_permits(100);
        task.await.expect("job");
        assert_eq!(j.state(), "cancelled");
        assert!(j.done.load(Ordering::Relaxed) <= 3, "only the fetches in flight ended: {}", j.progress());
    }

    #[test]
    fn ids_are_unique() {
        let jobs = WarmJobs::new(Arc::new(Fake { gate: Semaphore::new(0), seen: AtomicUsize::new(0) }));
        let (a, b) = (jobs.next_id(), jobs.next_id());
        assert_ne!(a, b);
        assert!(ResourceId::parse(&a).is_ok(), "a job id is a valid path segment: {a}");
    }
}
