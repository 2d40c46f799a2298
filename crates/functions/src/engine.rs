//! Running functions: per-thread QuickJS instances, budgets, and the
//! conversion of events to JavaScript and of return values back.
//!
//! Each worker thread keeps a cache of at most [`MAX_INSTANCES_PER_THREAD`]
//! instances (one QuickJS runtime and context each, with the function's
//! top-level code already evaluated and its `handler` held), keyed by the
//! function's runtime, limits, code and identity. A call finds its instance, sets the
//! deadline the interrupt handler checks, builds the event, calls `handler`
//! and reads the result back; the least recently used instance is dropped
//! when the cache is full. An instance is about 180 KiB (QuickJS counts
//! 106 KiB of its own, `bench/README.md`) plus what the function keeps
//! between calls, capped by [`Limits::memory`](crate::Limits); so a worker
//! holds at most `32 × (180 KiB + memory limit)`, in practice a few MiB.
//! An instance that was interrupted (in the handler, a getter read back or a
//! promise job left behind) or ran out of memory is dropped (its heap may be
//! half-built) and rebuilt on the next call.
//!
//! Globals a function sets persist between calls on the same instance, as
//! they may in CloudFront; functions must not rely on either.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{Array, Context, Ctx, Function, Module, Object, Persistent, Runtime, Value};

use crate::event::{Event, EventType, FieldValue, Fields, Request, RequestOutcome, Response};
use crate::{CodeError, CompiledFunction, JsRuntime};

mod readback;

pub use readback::{
    DISALLOWED_HEADER_PREFIXES, DISALLOWED_HEADERS, MAX_BODY_BYTES, MAX_FIELD_BYTES, MAX_URI_BYTES,
    READ_ONLY_REQUEST_HEADERS, READ_ONLY_RESPONSE_HEADERS, VALUE_OVERHEAD_BYTES, is_disallowed_header,
};
use readback::{Reader, fields_cost};

/// Instances one worker thread keeps (least recently used dropped first).
pub const MAX_INSTANCES_PER_THREAD: usize = 32;

/// Promise jobs run after a handler returned before the instance is given
/// up on (each also bounded by the call's deadline).
const MAX_LEFTOVER_JOBS: usize = 1024;

/// QuickJS's stack limit for a function, well inside a tokio worker's 2 MiB
/// stack: deep recursion ends in a `RangeError`, not a crash.
const MAX_STACK_BYTES: usize = 256 * 1024;

/// `console.log` lines kept per call.
const MAX_LOG_LINES: usize = 64;

/// Bytes of `console.log` lines kept per call: CloudFront truncates a
/// function's logs at 10 KB ("Restrictions on CloudFront Functions", Logs).
pub const MAX_LOG_BYTES: usize = 10 * 1024;

/// The time budget of a function's top-level statements, run once when an
/// instance is built (at compile, on the first call of each worker thread,
/// after a snapshot reload): generous, so a busy host does not refuse a
/// valid function, while a top-level infinite loop still ends.
pub const TOP_LEVEL_BUDGET: Duration = Duration::from_millis(50);

/// The name errors and stacks give the function's code.
const FILE_NAME: &str = "function.js";

/// Where the code's `handler` is left for the engine in module mode.
const HANDLER_SLOT: &str = "__shardgate_handler";

/// What went wrong in a call. The edge answers CloudFront's 503 for every
/// kind and counts it by [`RunErrorKind::label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct RunError {
    /// What went wrong.
    pub kind: RunErrorKind,
}

/// The kinds of [`RunError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunErrorKind {
    /// The call ran over its CPU budget and was interrupted.
    #[error("the function ran over its time budget and was stopped")]
    Timeout,
    /// The call ran over its memory limit.
    #[error("the function ran over its memory limit")]
    Memory,
    /// The function threw (or its promise rejected).
    #[error("the function threw: {message}")]
    Exception {
        /// The exception's name, message and position.
        message: String,
    },
    /// The function returned something CloudFront would refuse.
    #[error("the function returned an invalid value: {why}")]
    InvalidReturn {
        /// What is wrong with it, naming the field.
        why: String,
    },
}

impl RunErrorKind {
    /// A short label for metrics (`timeout`, `memory`, `exception`, `invalid_return`).
    pub fn label(&self) -> &'static str {
        match self {
            RunErrorKind::Timeout => "timeout",
            RunErrorKind::Memory => "memory",
            RunErrorKind::Exception { .. } => "exception",
            RunErrorKind::InvalidReturn { .. } => "invalid_return",
        }
    }
}

fn run_error(kind: RunErrorKind) -> RunError {
    RunError { kind }
}

fn invalid(why: impl Into<String>) -> RunError {
    run_error(RunErrorKind::InvalidReturn { why: why.into() })
}

/// Per-instance state the interrupt handler and `console.log` share with
/// the caller.
#[derive(Default)]
struct CallState {
    deadline: Cell<Option<Instant>>,
    interrupted: Cell<bool>,
    logs: RefCell<Vec<String>>,
    log_bytes: Cell<usize>,
}

impl CallState {
    fn log(&self, mut line: String) {
        let mut logs = self.logs.borrow_mut();
        let used = self.log_bytes.get();
        if logs.len() >= MAX_LOG_LINES || used >= MAX_LOG_BYTES {
            return;
        }
        let room = MAX_LOG_BYTES - used;
        if line.len() > room {
            let mut cut = room;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        self.log_bytes.set(used + line.len());
        logs.push(line);
    }

    fn start(&self, budget: Duration) {
        self.interrupted.set(false);
        self.logs.borrow_mut().clear();
        self.log_bytes.set(0);
        self.deadline.set(Some(Instant::now() + budget));
    }
}

/// One ready function: fields drop in order, the held functions before the
/// context and runtime they live in.
struct Instance {
    handler: Persistent<Function<'static>>,
    /// `(s) => s.length`, the engine's own, for checking a returned
    /// string's size before copying it.
    length: Persistent<Function<'static>>,
    context: Context,
    state: Rc<CallState>,
    runtime: Runtime,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    instances: HashMap<u128, Instance>,
    tick: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Why building an instance failed.
enum BuildError {
    Code(CodeError),
    Run(RunError),
}

fn new_instance(function: &CompiledFunction) -> Result<Instance, BuildError> {
    let engine =
        |e: rquickjs::Error| BuildError::Run(run_error(RunErrorKind::Exception { message: format!("engine: {e}") }));
    let runtime = Runtime::new().map_err(engine)?;
    runtime.set_max_stack_size(MAX_STACK_BYTES);
    let state = Rc::new(CallState::default());
    let interrupt_state = state.clone();
    runtime.set_interrupt_handler(Some(Box::new(move || match interrupt_state.deadline.get() {
        Some(deadline) if Instant::now() >= deadline => {
            interrupt_state.interrupted.set(true);
            true
        }
        _ => false,
    })));
    let context = Context::full(&runtime).map_err(engine)?;
    let length = context.with(|ctx| -> Result<_, BuildError> {
        let log_state = state.clone();
        helpers_install(&ctx, move |line| log_state.log(line)).map_err(engine)?;
        let length: Function = ctx.eval("(function (s) { return s.length; })").map_err(engine)?;
        Ok(Persistent::save(&ctx, length))
    })?;
    // The function's memory is counted on top of what the engine and the
    // helpers hold, from its first top-level statement on.
    let base = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
    runtime.set_memory_limit(base.saturating_add(function.limits().memory));
    let handler = context.with(|ctx| {
        // Only the function's own top-level code runs under a budget.
        state.start(TOP_LEVEL_BUDGET);
        let handler = evaluate(&ctx, function).map_err(|e| match e {
            rquickjs::Error::Exception => BuildError::Code(code_error(&ctx, function.code(), &state)),
            rquickjs::Error::Allocation => BuildError::Code(top_level_memory()),
            other => engine(other),
        })?;
        let Some(handler) = handler else {
            return Err(BuildError::Code(CodeError::MissingHandler));
        };
        Ok(Persistent::save(&ctx, handler))
    })?;
    state.deadline.set(None);
    Ok(Instance { handler, length, context, state, runtime, last_used: 0 })
}

fn top_level_memory() -> CodeError {
    CodeError::TopLevel("the top-level statements ran over the memory limit".to_owned())
}

fn helpers_install<'js>(ctx: &Ctx<'js>, log: impl Fn(String) + 'static) -> rquickjs::Result<()> {
    crate::helpers::install(ctx, log)
}

/// Whether `cloudfront-js-2.0` code uses `import` (then it runs as an ES
/// module; otherwise as a script, like runtime 1.0).
fn is_module(function: &CompiledFunction) -> bool {
    function.runtime() == JsRuntime::V2
        && function.code().lines().any(|line| {
            let line = line.trim_start();
            line.starts_with("import ") || line.starts_with("import{") || line.starts_with("import\t")
        })
}

/// Evaluates the function's top-level code and returns its `handler`.
fn evaluate<'js>(ctx: &Ctx<'js>, function: &CompiledFunction) -> rquickjs::Result<Option<Function<'js>>> {
    let globals = ctx.globals();
    if is_module(function) {
        for (name, source) in crate::helpers::MODULES {
            Module::declare(ctx.clone(), name, source)?;
        }
        // A module's top-level `handler` is not a global: a line after the
        // code (so positions in it are unchanged) hands it over.
        let source = format!(
            "{}\n;globalThis.{HANDLER_SLOT} = typeof handler === 'function' ? handler : undefined;\n",
            function.code()
        );
        let (_, done) = Module::declare(ctx.clone(), FILE_NAME, source)?.eval()?;
        done.finish::<()>()?;
        let handler: Value = globals.get(HANDLER_SLOT)?;
        globals.remove(HANDLER_SLOT)?;
        Ok(handler.into_function())
    } else {
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(FILE_NAME.to_owned());
        ctx.eval_with_options::<(), _>(function.code(), options)?;
        let handler: Value = globals.get("handler")?;
        Ok(handler.into_function())
    }
}

/// Checks a function by building an instance of it (compile time).
pub(crate) fn check(function: &CompiledFunction) -> Result<(), CodeError> {
    match new_instance(function) {
        Ok(_) => Ok(()),
        Err(BuildError::Code(e)) => Err(e),
        Err(BuildError::Run(e)) => Err(CodeError::TopLevel(e.to_string())),
    }
}

/// The pending exception as a [`CodeError`] with its position.
fn code_error(ctx: &Ctx<'_>, code: &str, state: &CallState) -> CodeError {
    if state.interrupted.get() {
        drop(ctx.catch());
        return CodeError::TopLevel("the top-level statements ran over the time budget".to_owned());
    }
    let caught = describe_exception(&ctx.catch());
    if caught.out_of_memory || caught.null {
        return top_level_memory();
    }
    let last_line = u32::try_from(code.lines().count().max(1)).unwrap_or(u32::MAX);
    // Module mode appends one line; an error found there (an unclosed block)
    // is reported at the end of the code.
    let line = caught.line.map(|l| l.min(last_line));
    CodeError::Syntax { line, column: caught.column, message: caught.text }
}

struct Caught {
    text: String,
    line: Option<u32>,
    column: Option<u32>,
    out_of_memory: bool,
    null: bool,
}

fn describe_exception(value: &Value<'_>) -> Caught {
    let Some(object) = value.as_object() else {
        let text = match value.as_string().and_then(|s| s.to_string().ok()) {
            Some(s) => s,
            None => format!("{} thrown", value.type_name()),
        };
        return Caught { text, line: None, column: None, out_of_memory: false, null: value.is_null() };
    };
    let field = |name: &str| object.get::<_, Option<rquickjs::Coerced<String>>>(name).ok().flatten().map(|c| c.0);
    let name = field("name").unwrap_or_else(|| "Error".to_owned());
    let message = field("message").unwrap_or_default();
    let (line, column) = field("stack").as_deref().and_then(position).map_or((None, None), |(l, c)| (Some(l), Some(c)));
    let out_of_memory = name == "InternalError" && message == "out of memory";
    Caught { text: format!("{name}: {message}"), line, column, out_of_memory, null: false }
}

/// The first `function.js:<line>:<column>` of a stack.
fn position(stack: &str) -> Option<(u32, u32)> {
    let at = stack.find(FILE_NAME)? + FILE_NAME.len();
    let rest = stack[at..].strip_prefix(':')?;
    let line_end = rest.find(|c: char| !c.is_ascii_digit())?;
    let line = rest[..line_end].parse().ok()?;
    let rest = rest[line_end..].strip_prefix(':')?;
    let col_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let column = rest[..col_end].parse().ok()?;
    Some((line, column))
}

/// Runs a viewer-request function: the request to go on with, or a
/// response to send instead.
pub fn run_viewer_request(function: &CompiledFunction, event: &Event) -> Result<RequestOutcome, RunError> {
    call(function, EventType::ViewerRequest, event).0.map(|out| match out {
        Outcome::Request(r) => RequestOutcome::Request(r),
        Outcome::Response(r) => RequestOutcome::Response(r),
    })
}

/// Runs a viewer-response function on `event.response` (which must be set):
/// the response to send.
pub fn run_viewer_response(function: &CompiledFunction, event: &Event) -> Result<Response, RunError> {
    match call(function, EventType::ViewerResponse, event).0? {
        Outcome::Response(r) => Ok(r),
        Outcome::Request(_) => Err(invalid("a viewer-response function must return a response")),
    }
}

/// What the Admin API's `test` endpoint returns (CloudFront's TestResult).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestOutput {
    /// The returned request or response, in CloudFront's JSON form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// What went wrong, if the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The call's time as a percentage of its budget (0–100).
    pub compute_utilization: u32,
    /// `console.log` lines (at most 64 lines, [`MAX_LOG_BYTES`]).
    pub logs: Vec<String>,
}

/// Runs `function` on `event` as `event_type` and reports everything, for
/// testing a function from the Admin API. The call runs in a fresh instance
/// that is dropped afterwards, so a test neither sees nor leaves state in
/// the instances the edge runs (it is synchronous and may take the
/// top-level budget plus the call's: run it off the async workers).
pub fn test_function(function: &CompiledFunction, event_type: EventType, event: &Event) -> TestOutput {
    let (result, elapsed, logs) = match precheck(event_type, event) {
        Err(e) => (Err(e), Duration::ZERO, Vec::new()),
        Ok(()) => match new_instance(function) {
            Ok(mut instance) => call_on(&mut instance, function, event_type, event).0,
            Err(e) => (Err(build_error(e)), Duration::ZERO, Vec::new()),
        },
    };
    let budget = function.limits().cpu.as_nanos().max(1);
    let compute_utilization = u32::try_from((elapsed.as_nanos() * 100).div_ceil(budget).min(100)).unwrap_or(100);
    let (output, error) = match result {
        Ok(Outcome::Request(r)) => (serde_json::to_value(&r).ok(), None),
        Ok(Outcome::Response(r)) => (serde_json::to_value(&r).ok(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    TestOutput { output, error, compute_utilization, logs }
}

enum Outcome {
    Request(Request),
    Response(Response),
}

type CallResult = (Result<Outcome, RunError>, Duration, Vec<String>);

fn precheck(event_type: EventType, event: &Event) -> Result<(), RunError> {
    if event_type == EventType::ViewerResponse && event.response.is_none() {
        return Err(invalid("a viewer-response event needs `response`"));
    }
    Ok(())
}

fn build_error(e: BuildError) -> RunError {
    match e {
        BuildError::Run(e) => e,
        // compile() checked this code; only an engine failure (or a
        // top-level budget exceeded on a busy host) gets here.
        BuildError::Code(e) => run_error(RunErrorKind::Exception { message: e.to_string() }),
    }
}

fn call(function: &CompiledFunction, event_type: EventType, event: &Event) -> CallResult {
    if let Err(e) = precheck(event_type, event) {
        return (Err(e), Duration::ZERO, Vec::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = &mut *cache;
        cache.tick += 1;
        let key = function.key();
        if !cache.instances.contains_key(&key) {
            let instance = match new_instance(function) {
                Ok(instance) => instance,
                Err(e) => return (Err(build_error(e)), Duration::ZERO, Vec::new()),
            };
            if cache.instances.len() >= MAX_INSTANCES_PER_THREAD
                && let Some(oldest) = cache.instances.iter().min_by_key(|(_, i)| i.last_used).map(|(k, _)| *k)
            {
                cache.instances.remove(&oldest);
            }
            cache.instances.insert(key, instance);
        }
        let Some(instance) = cache.instances.get_mut(&key) else {
            return (Err(invalid("no instance")), Duration::ZERO, Vec::new());
        };
        instance.last_used = cache.tick;
        let (out, keep) = call_on(instance, function, event_type, event);
        if !keep {
            cache.instances.remove(&key);
        }
        out
    })
}

/// Calls the function on `instance`; the flag says whether the instance is
/// still sound (no interrupt fired, no memory exhausted, no jobs left over).
fn call_on(
    instance: &mut Instance,
    function: &CompiledFunction,
    event_type: EventType,
    event: &Event,
) -> (CallResult, bool) {
    let started = Instant::now();
    instance.state.start(function.limits().cpu);
    let result = instance.context.with(|ctx| invoke(&ctx, instance, event_type, event));
    // Promise jobs the handler left behind (a `.then` it did not await) run
    // now, under what is left of the deadline; if they do not finish, the
    // instance goes with them.
    let mut sound = true;
    for _ in 0..MAX_LEFTOVER_JOBS {
        if !instance.runtime.is_job_pending() {
            break;
        }
        if instance.runtime.execute_pending_job().is_err() {
            sound = false;
            break;
        }
    }
    if instance.runtime.is_job_pending() {
        sound = false;
    }
    instance.state.deadline.set(None);
    let elapsed = started.elapsed();
    let logs = std::mem::take(&mut *instance.state.logs.borrow_mut());
    if instance.state.interrupted.get() {
        sound = false;
    }
    if let Err(e) = &result
        && matches!(e.kind, RunErrorKind::Timeout | RunErrorKind::Memory)
    {
        sound = false;
    }
    ((result, elapsed, logs), sound)
}

fn invoke<'js>(ctx: &Ctx<'js>, instance: &Instance, event_type: EventType, event: &Event) -> Result<Outcome, RunError> {
    let fail = |e: rquickjs::Error| classify(ctx, &instance.state, e);
    let handler = instance.handler.clone().restore(ctx).map_err(fail)?;
    let length = instance.length.clone().restore(ctx).map_err(fail)?;
    let js_event = event_to_js(ctx, event_type, event).map_err(fail)?;
    let mut returned: Value = handler.call((js_event,)).map_err(fail)?;
    if let Some(promise) = returned.as_promise() {
        returned = match promise.finish::<Value>() {
            Ok(v) => v,
            Err(rquickjs::Error::WouldBlock) => {
                return Err(invalid("the handler's promise never settled"));
            }
            Err(e) => return Err(fail(e)),
        };
    }
    let Some(object) = returned.as_object() else {
        return Err(invalid(format!("the handler returned {}, not the request or a response", returned.type_name())));
    };
    let request_cost = event.request.uri.len()
        + fields_cost(&event.request.querystring)
        + fields_cost(&event.request.headers)
        + fields_cost(&event.request.cookies);
    let response_cost = event.response.as_ref().map_or(0, |r| fields_cost(&r.headers) + fields_cost(&r.cookies));
    match event_type {
        EventType::ViewerRequest => {
            let status: Value = object.get("statusCode").map_err(fail)?;
            if status.is_undefined() {
                let mut reader = Reader::new(ctx, &instance.state, length, MAX_FIELD_BYTES.max(request_cost));
                reader.read_request(object, &event.request).map(Outcome::Request)
            } else {
                let mut reader = Reader::new(ctx, &instance.state, length, MAX_FIELD_BYTES);
                reader.read_response(object, None).map(Outcome::Response)
            }
        }
        EventType::ViewerResponse => {
            let mut reader = Reader::new(ctx, &instance.state, length, MAX_FIELD_BYTES.max(response_cost));
            reader.read_response(object, event.response.as_ref()).map(Outcome::Response)
        }
    }
}

fn classify(ctx: &Ctx<'_>, state: &CallState, error: rquickjs::Error) -> RunError {
    if state.interrupted.get() {
        // Clear the uncatchable interrupt exception.
        drop(ctx.catch());
        return run_error(RunErrorKind::Timeout);
    }
    match error {
        rquickjs::Error::Allocation => run_error(RunErrorKind::Memory),
        rquickjs::Error::Exception => {
            let caught = describe_exception(&ctx.catch());
            // QuickJS raises "out of memory" as an InternalError, or throws
            // `null` when even that error cannot be allocated (quickjs.c,
            // `JS_ThrowError2`). A function that throws `null` itself is
            // counted as out of memory too; either way the viewer gets 503.
            if caught.out_of_memory || caught.null {
                return run_error(RunErrorKind::Memory);
            }
            let message = match (caught.line, caught.column) {
                (Some(l), Some(c)) => format!("{} (line {l}, column {c})", caught.text),
                _ => caught.text,
            };
            run_error(RunErrorKind::Exception { message })
        }
        other => run_error(RunErrorKind::Exception { message: format!("engine: {other}") }),
    }
}

fn event_to_js<'js>(ctx: &Ctx<'js>, event_type: EventType, event: &Event) -> rquickjs::Result<Object<'js>> {
    let js = Object::new(ctx.clone())?;
    js.set("version", "1.0")?;
    let context = Object::new(ctx.clone())?;
    context.set("distributionDomainName", event.context.distribution_domain_name.as_str())?;
    context.set("distributionId", event.context.distribution_id.as_str())?;
    context.set("eventType", event_type.as_str())?;
    context.set("requestId", event.context.request_id.as_str())?;
    js.set("context", context)?;
    let viewer = Object::new(ctx.clone())?;
    viewer.set("ip", event.viewer.ip.as_str())?;
    js.set("viewer", viewer)?;
    let request = Object::new(ctx.clone())?;
    request.set("method", event.request.method.as_str())?;
    request.set("uri", event.request.uri.as_str())?;
    request.set("querystring", fields_to_js(ctx, &event.request.querystring, false)?)?;
    request.set("headers", fields_to_js(ctx, &event.request.headers, true)?)?;
    request.set("cookies", fields_to_js(ctx, &event.request.cookies, false)?)?;
    js.set("request", request)?;
    if let Some(response) = &event.response {
        let r = Object::new(ctx.clone())?;
        r.set("statusCode", response.status_code)?;
        if let Some(d) = &response.status_description {
            r.set("statusDescription", d.as_str())?;
        }
        r.set("headers", fields_to_js(ctx, &response.headers, true)?)?;
        r.set("cookies", fields_to_js(ctx, &response.cookies, false)?)?;
        js.set("response", r)?;
    }
    Ok(js)
}

fn value_to_js<'js>(ctx: &Ctx<'js>, value: &FieldValue) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    o.set("value", value.value.as_str())?;
    if let Some(a) = &value.attributes {
        o.set("attributes", a.as_str())?;
    }
    Ok(o)
}

/// A map in its JavaScript form; `headers` hides the disallowed headers
/// (CloudFront does not expose them to functions).
fn fields_to_js<'js>(ctx: &Ctx<'js>, fields: &Fields, headers: bool) -> rquickjs::Result<Object<'js>> {
    let js = Object::new(ctx.clone())?;
    for (name, values) in fields.iter() {
        if headers && is_disallowed_header(name) {
            continue;
        }
        let Some(first) = values.first() else { continue };
        let entry = value_to_js(ctx, first)?;
        if values.len() > 1 {
            let multi = Array::new(ctx.clone())?;
            for (i, v) in values.iter().enumerate() {
                multi.set(i, value_to_js(ctx, v)?)?;
            }
            entry.set("multiValue", multi)?;
        }
        js.set(name, entry)?;
    }
    Ok(js)
}

#[cfg(test)]
mod tests;
