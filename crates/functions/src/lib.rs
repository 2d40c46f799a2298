//! CloudFront Functions for shardgate's edge: checking a function's code and
//! running it on viewer-request and viewer-response events.
//!
//! A function is JavaScript with a top-level `handler(event)`, as in
//! CloudFront Functions (AWS CloudFront Developer Guide, "Writing function
//! code" and "CloudFront Functions event structure"). [`compile`] checks the
//! code once (size, syntax with line and column, a `handler` function) and
//! returns a [`CompiledFunction`] that the snapshot shares between workers;
//! [`run_viewer_request`] and [`run_viewer_response`] call it with an
//! [`Event`] and read back a rewritten request or a generated or modified
//! response.
//!
//! The engine is QuickJS (through `rquickjs`), chosen by measurement: seed
//! 003's function costs about 3 µs per call against 14–17 µs for Boa, and
//! QuickJS has the per-runtime memory limit and the interrupt hook an edge
//! needs (`bench/README.md`, "Edge functions"). Each call runs under a
//! budget ([`Limits`]): a wall-clock deadline checked by the interpreter's
//! interrupt handler, so an infinite loop ends in [`RunErrorKind::Timeout`]
//! instead of holding a worker, and a memory cap on the function's own heap.
//!
//! What is bounded, and what is not:
//!
//! - a call's JavaScript: the deadline ([`Limits::cpu`], wall-clock) and the
//!   memory cap ([`Limits::memory`], set before the top-level statements
//!   run, so they count too); top-level statements have their own budget
//!   ([`engine::TOP_LEVEL_BUDGET`]) so a busy host does not refuse a valid
//!   function; promise jobs left after a return run under the call's deadline;
//! - what a function returns: sizes and counts are checked before anything
//!   is copied out of the engine (`engine::readback`'s limits), so a small
//!   heap cannot make the edge allocate without bound;
//! - not bounded: a single native builtin that does not check QuickJS's
//!   interrupt flag runs to completion inside one call, however long it takes
//!   (for example `indexOf` on two large strings, quadratic in their
//!   lengths). Memory still caps the inputs (a few MB), so such a call ends,
//!   but it can hold a worker thread for longer than the time budget. A
//!   dedicated thread pool with a watchdog would be needed to cut it off.
//!
//! Thread model: QuickJS runtimes are `!Send`, and the edge runs on a
//! multi-threaded tokio runtime. Each worker thread keeps its own small cache
//! of ready instances (runtime, context, the compiled `handler`), keyed by
//! the function's code, limits and identity
//! ([`CompiledFunction::with_identity`]; without one, functions with the same
//! code share instances and their globals), so a call on the hot path
//! compiles nothing; a call is synchronous and bounded by its budget, so it
//! runs inline on the worker.

pub mod engine;
pub mod event;
mod helpers;
mod md5;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use engine::{RunError, RunErrorKind, TestOutput, run_viewer_request, run_viewer_response, test_function};
pub use event::{Body, Event, EventContext, EventType, FieldValue, Fields, Request, RequestOutcome, Response};

/// CloudFront's limit on a function's code: 10 KB ("Quotas on CloudFront
/// Functions", maximum function size).
pub const MAX_CODE_BYTES: usize = 10 * 1024;

/// The default CPU budget of one call. CloudFront allows a sub-millisecond
/// compute budget on its own hardware; shardgate's default leaves room for a
/// busy shared machine while still cutting off a runaway function quickly.
pub const DEFAULT_CPU_BUDGET: Duration = Duration::from_millis(5);

/// The default memory a function may use on top of the engine's own runtime
/// (about 110 KiB): CloudFront's 2 MB.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 * 1024 * 1024;

/// The JavaScript runtimes of CloudFront Functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsRuntime {
    /// `cloudfront-js-1.0`: ES 5.1 with some later additions.
    V1,
    /// `cloudfront-js-2.0`: adds `const`/`let`, arrow functions, template
    /// literals, async/await and `import` of the helper modules.
    V2,
}

impl JsRuntime {
    /// The runtime's name as CloudFront spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JsRuntime::V1 => "cloudfront-js-1.0",
            JsRuntime::V2 => "cloudfront-js-2.0",
        }
    }

    /// Parses a runtime name (`cloudfront-js-1.0`, `cloudfront-js-2.0`).
    pub fn parse(name: &str) -> Option<JsRuntime> {
        match name {
            "cloudfront-js-1.0" => Some(JsRuntime::V1),
            "cloudfront-js-2.0" => Some(JsRuntime::V2),
            _ => None,
        }
    }
}

impl fmt::Display for JsRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The budget of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Wall-clock time one call (including its promise jobs) may take.
    pub cpu: Duration,
    /// Bytes the function may allocate on top of the engine's own runtime.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu: DEFAULT_CPU_BUDGET, memory: DEFAULT_MEMORY_LIMIT }
    }
}

/// Why code was refused by [`compile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The code is longer than [`MAX_CODE_BYTES`].
    #[error("code is {len} bytes, over CloudFront Functions' limit of {max} bytes")]
    TooLarge {
        /// The code's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A syntax error (or an exception thrown by top-level code).
    #[error("{}", syntax_text(*.line, *.column, .message))]
    Syntax {
        /// 1-based line, when the engine reported one.
        line: Option<u32>,
        /// 1-based column, when the engine reported one.
        column: Option<u32>,
        /// The engine's message (`SyntaxError: unexpected token ...`).
        message: String,
    },
    /// The code defines no function named `handler`.
    #[error("the code defines no function named `handler` (CloudFront calls `function handler(event)`)")]
    MissingHandler,
    /// The top-level code ran over its budget or failed in the engine.
    #[error("the code's top-level statements failed: {0}")]
    TopLevel(String),
}

fn syntax_text(line: Option<u32>, column: Option<u32>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: {message}"),
        (Some(l), None) => format!("line {l}: {message}"),
        _ => message.to_owned(),
    }
}

/// A function whose code passed [`compile`]: what workers run. Cheap to
/// clone and share (`Arc` inside).
#[derive(Clone)]
pub struct CompiledFunction {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: JsRuntime,
    code: String,
    limits: Limits,
    /// Who runs this code ([`CompiledFunction::with_identity`]), if set.
    identity: Option<String>,
    /// Identifies (runtime, limits, code, identity) in the per-thread
    /// instance caches: the first 128 bits of their SHA-256, so recompiling
    /// the same code (every snapshot rebuild) reuses the instances workers
    /// already hold.
    key: u128,
}

impl fmt::Debug for CompiledFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFunction")
            .field("runtime", &self.inner.runtime)
            .field("code_bytes", &self.inner.code.len())
            .field("limits", &self.inner.limits)
            .field("identity", &self.inner.identity)
            .field("key", &format_args!("{:032x}", self.inner.key))
            .finish()
    }
}

impl CompiledFunction {
    /// The function's runtime.
    pub fn runtime(&self) -> JsRuntime {
        self.inner.runtime
    }

    /// The function's code.
    pub fn code(&self) -> &str {
        &self.inner.code
    }

    /// The budget of each call.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The identity set by [`CompiledFunction::with_identity`].
    pub fn identity(&self) -> Option<&str> {
        self.inner.identity.as_deref()
    }

    /// The same code, run in instances of its own: two functions (or two
    /// stages of one) with the same code and different identities never
    /// share an instance, so globals one sets are never seen by the other.
    /// Without an identity, functions with the same runtime, limits and code
    /// share instances on a worker thread (and so share their globals).
    /// Nothing is compiled again.
    pub fn with_identity(&self, id: &str, stage: &str) -> CompiledFunction {
        let identity = format!("{id}\u{0}{stage}");
        let key = code_key(self.inner.runtime, self.inner.limits, &self.inner.code, Some(&identity));
        CompiledFunction {
            inner: Arc::new(Inner {
                runtime: self.inner.runtime,
                code: self.inner.code.clone(),
                limits: self.inner.limits,
                identity: Some(identity),
                key,
            }),
        }
    }

    pub(crate) fn key(&self) -> u128 {
        self.inner.key
    }
}

/// Checks `code` for `runtime` with the default [`Limits`].
pub fn compile(runtime: JsRuntime, code: &str) -> Result<CompiledFunction, CodeError> {
    compile_with_limits(runtime, code, Limits::default())
}

/// Checks `code` for `runtime`: its size, its syntax (line and column of the
/// first error), and that its top-level statements define a `handler`
/// function, running them once in a throwaway instance under `limits`.
pub fn compile_with_limits(runtime: JsRuntime, code: &str, limits: Limits) -> Result<CompiledFunction, CodeError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(CodeError::TooLarge { len: code.len(), max: MAX_CODE_BYTES });
    }
    let key = code_key(runtime, limits, code, None);
    let function =
        CompiledFunction { inner: Arc::new(Inner { runtime, code: code.to_owned(), limits, identity: None, key }) };
    engine::check(&function)?;
    Ok(function)
}

fn code_key(runtime: JsRuntime, limits: Limits, code: &str, identity: Option<&str>) -> u128 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(runtime.as_str().as_bytes());
    ctx.update(&limits.cpu.as_nanos().to_le_bytes());
    ctx.update(&(limits.memory as u64).to_le_bytes());
    // Lengths keep (identity, code) pairs from running into each other.
    let identity = identity.unwrap_or("");
    ctx.update(&(identity.len() as u64).to_le_bytes());
    ctx.update(identity.as_bytes());
    ctx.update(code.as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest.as_ref()[..16]);
    u128::from_le_bytes(first)
}
