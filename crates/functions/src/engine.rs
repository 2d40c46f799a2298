//! Running functions: per-thread QuickJS instances, budgets, and the
//! conversion of events to JavaScript and of return values back.
//!
//! Each worker thread keeps a cache of at most [`MAX_INSTANCES_PER_THREAD`]
//! instances (one QuickJS runtime and context each, with the function's
//! top-level code already evaluated and its `handler` held), keyed by the
//! function's runtime, limits and code. A call finds its instance, sets the
//! deadline the interrupt handler checks, builds the event, calls `handler`
//! and reads the result back; the least recently used instance is dropped
//! when the cache is full. An instance is about 180 KiB (QuickJS counts
//! 106 KiB of its own, `bench/README.md`) plus what the function keeps
//! between calls, capped by [`Limits::memory`](crate::Limits); so a worker
//! holds at most `32 × (180 KiB + memory limit)`, in practice a few MiB.
//! An instance that ran over its time or memory is dropped (its heap may be
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

use crate::event::{Body, Event, EventType, FieldValue, Fields, Request, RequestOutcome, Response};
use crate::{CodeError, CompiledFunction, JsRuntime};

/// Instances one worker thread keeps (least recently used dropped first).
pub const MAX_INSTANCES_PER_THREAD: usize = 32;

/// QuickJS's stack limit for a function, well inside a tokio worker's 2 MiB
/// stack: deep recursion ends in a `RangeError`, not a crash.
const MAX_STACK_BYTES: usize = 256 * 1024;

/// CloudFront's bound on a URI plus query string (8,192 characters): a
/// longer `uri` is an invalid return.
pub const MAX_URI_BYTES: usize = 8192;

/// `console.log` lines kept per call, and bytes of them.
const MAX_LOG_LINES: usize = 64;
const MAX_LOG_BYTES: usize = 16 * 1024;

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

/// One ready function: fields drop in order, the held `handler` before the
/// context and runtime it lives in.
struct Instance {
    handler: Persistent<Function<'static>>,
    context: Context,
    state: Rc<CallState>,
    /// Kept with the context that lives in it (the context holds it too).
    _runtime: Runtime,
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
    let handler = context.with(|ctx| -> Result<Persistent<Function<'static>>, BuildError> {
        let log_state = state.clone();
        helpers_install(&ctx, move |line| log_state.log(line)).map_err(engine)?;
        // Only the function's own top-level code runs under its budget.
        state.start(function.limits().cpu);
        let handler = evaluate(&ctx, function).map_err(|e| match e {
            rquickjs::Error::Exception => BuildError::Code(code_error(&ctx, function.code(), &state)),
            other => engine(other),
        })?;
        let Some(handler) = handler else {
            return Err(BuildError::Code(CodeError::MissingHandler));
        };
        Ok(Persistent::save(&ctx, handler))
    })?;
    state.deadline.set(None);
    // The function's memory is counted on top of what the engine, the
    // helpers and its top-level code already hold.
    let base = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
    runtime.set_memory_limit(base.saturating_add(function.limits().memory));
    Ok(Instance { handler, context, state, _runtime: runtime, last_used: 0 })
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
        return CodeError::TopLevel("the top-level statements ran over the time budget".to_owned());
    }
    let caught = describe_exception(&ctx.catch());
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
    /// `console.log` lines (at most 64 lines, 16 KiB).
    pub logs: Vec<String>,
}

/// Runs `function` on `event` as `event_type` and reports everything, for
/// testing a function from the Admin API.
pub fn test_function(function: &CompiledFunction, event_type: EventType, event: &Event) -> TestOutput {
    let (result, elapsed, logs) = call(function, event_type, event);
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

fn call(
    function: &CompiledFunction,
    event_type: EventType,
    event: &Event,
) -> (Result<Outcome, RunError>, Duration, Vec<String>) {
    if event_type == EventType::ViewerResponse && event.response.is_none() {
        return (Err(invalid("a viewer-response event needs `response`")), Duration::ZERO, Vec::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = &mut *cache;
        cache.tick += 1;
        let key = function.key();
        if !cache.instances.contains_key(&key) {
            let instance = match new_instance(function) {
                Ok(instance) => instance,
                Err(BuildError::Run(e)) => return (Err(e), Duration::ZERO, Vec::new()),
                Err(BuildError::Code(e)) => {
                    // compile() checked this code; only an engine failure gets here.
                    let e = run_error(RunErrorKind::Exception { message: e.to_string() });
                    return (Err(e), Duration::ZERO, Vec::new());
                }
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
        let started = Instant::now();
        instance.state.start(function.limits().cpu);
        let result = instance.context.with(|ctx| invoke(&ctx, instance, event_type, event));
        instance.state.deadline.set(None);
        let elapsed = started.elapsed();
        let logs = std::mem::take(&mut *instance.state.logs.borrow_mut());
        if let Err(e) = &result
            && matches!(e.kind, RunErrorKind::Timeout | RunErrorKind::Memory)
        {
            cache.instances.remove(&key);
        }
        (result, elapsed, logs)
    })
}

fn invoke<'js>(ctx: &Ctx<'js>, instance: &Instance, event_type: EventType, event: &Event) -> Result<Outcome, RunError> {
    let fail = |e: rquickjs::Error| classify(ctx, &instance.state, e);
    let handler = instance.handler.clone().restore(ctx).map_err(fail)?;
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
    match event_type {
        EventType::ViewerRequest => {
            let status: Value = object.get("statusCode").map_err(fail)?;
            if status.is_undefined() {
                read_request(object, &event.request).map(Outcome::Request)
            } else {
                read_response(object, None).map(Outcome::Response)
            }
        }
        EventType::ViewerResponse => read_response(object, event.response.as_ref()).map(Outcome::Response),
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
    request.set("querystring", fields_to_js(ctx, &event.request.querystring)?)?;
    request.set("headers", fields_to_js(ctx, &event.request.headers)?)?;
    request.set("cookies", fields_to_js(ctx, &event.request.cookies)?)?;
    js.set("request", request)?;
    if let Some(response) = &event.response {
        let r = Object::new(ctx.clone())?;
        r.set("statusCode", response.status_code)?;
        if let Some(d) = &response.status_description {
            r.set("statusDescription", d.as_str())?;
        }
        r.set("headers", fields_to_js(ctx, &response.headers)?)?;
        r.set("cookies", fields_to_js(ctx, &response.cookies)?)?;
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

fn fields_to_js<'js>(ctx: &Ctx<'js>, fields: &Fields) -> rquickjs::Result<Object<'js>> {
    let js = Object::new(ctx.clone())?;
    for (name, values) in fields.iter() {
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

/// Which of a request's or response's maps is read (for names in errors and
/// the rules on names).
#[derive(Clone, Copy)]
enum FieldsKind {
    Querystring,
    Headers,
    Cookies,
}

impl FieldsKind {
    fn name(self) -> &'static str {
        match self {
            FieldsKind::Querystring => "querystring",
            FieldsKind::Headers => "headers",
            FieldsKind::Cookies => "cookies",
        }
    }
}

fn js_string(value: &Value<'_>, path: &dyn Fn() -> String) -> Result<String, RunError> {
    if let Some(s) = value.as_string() {
        return s.to_string().map_err(|e| invalid(format!("{}: {e}", path())));
    }
    if let Some(n) = value.as_number() {
        return Ok(if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() });
    }
    Err(invalid(format!("{} is {}, not a string", path(), value.type_name())))
}

fn read_value(entry: &Object<'_>, path: &dyn Fn() -> String) -> Result<FieldValue, RunError> {
    let value: Value = entry.get("value").map_err(|e| invalid(format!("{}: {e}", path())))?;
    let value = js_string(&value, &|| format!("{}.value", path()))?;
    let attributes: Value = entry.get("attributes").map_err(|e| invalid(format!("{}: {e}", path())))?;
    let attributes = if attributes.is_undefined() || attributes.is_null() {
        None
    } else {
        Some(js_string(&attributes, &|| format!("{}.attributes", path()))?)
    };
    Ok(FieldValue { value, attributes })
}

/// Reads a returned `querystring`, `headers` or `cookies` map, applying
/// CloudFront's rules for `multiValue` ("CloudFront Functions event
/// structure", duplicate query strings, headers and cookies): a modified
/// `multiValue` array wins; otherwise `value` replaces the first value and
/// the array's other values stay; without an array, `value` is the only value.
fn read_fields(
    owner: &Object<'_>,
    kind: FieldsKind,
    prefix: &str,
    original: Option<&Fields>,
) -> Result<Fields, RunError> {
    let map_name = kind.name();
    let map: Value = owner.get(map_name).map_err(|e| invalid(format!("{prefix}.{map_name}: {e}")))?;
    if map.is_undefined() || map.is_null() {
        return Ok(Fields::new());
    }
    let Some(map) = map.as_object() else {
        return Err(invalid(format!("{prefix}.{map_name} is {}, not an object", map.type_name())));
    };
    let mut fields = Fields::new();
    for prop in map.props::<String, Value>() {
        let (name, entry) = prop.map_err(|e| invalid(format!("{prefix}.{map_name}: {e}")))?;
        if entry.is_undefined() || entry.is_null() {
            continue;
        }
        let path = || format!("{prefix}.{map_name}['{name}']");
        if let FieldsKind::Headers = kind {
            check_header_name(&name).map_err(|why| invalid(format!("{}: {why}", path())))?;
        }
        let Some(entry) = entry.as_object() else {
            return Err(invalid(format!("{} is {}, not an object like {{value: \"...\"}}", path(), entry.type_name())));
        };
        let first = read_value(entry, &path)?;
        let multi: Value = entry.get("multiValue").map_err(|e| invalid(format!("{}: {e}", path())))?;
        let values = if multi.is_undefined() || multi.is_null() {
            vec![first]
        } else {
            let Some(array) = multi.as_array() else {
                return Err(invalid(format!("{}.multiValue is {}, not an array", path(), multi.type_name())));
            };
            let mut listed = Vec::with_capacity(array.len());
            for (i, item) in array.iter::<Value>().enumerate() {
                let item = item.map_err(|e| invalid(format!("{}.multiValue[{i}]: {e}", path())))?;
                let Some(item) = item.as_object() else {
                    return Err(invalid(format!("{}.multiValue[{i}] is not an object", path())));
                };
                listed.push(read_value(item, &|| format!("{}.multiValue[{i}]", path()))?);
            }
            let before = original.and_then(|o| o.get(&name));
            match before {
                // Unchanged array: `value` replaces the first, the rest stay.
                Some(before) if before.len() > 1 && before == listed.as_slice() => {
                    let mut values = listed;
                    values[0] = first;
                    values
                }
                _ if listed.is_empty() => vec![first],
                _ => listed,
            }
        };
        if let FieldsKind::Headers = kind {
            for v in &values {
                check_header_value(&v.value).map_err(|why| invalid(format!("{}: {why}", path())))?;
            }
        }
        fields.set(name, values);
    }
    Ok(fields)
}

/// Header names must be lower case ("Header names ... must be lowercase
/// when they're added by your function code") and HTTP tokens (RFC 9110,
/// section 5.1).
fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a header name is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(format!("header names must be lower case (found {c:?})"));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    match name.chars().find(|c| !token(*c)) {
        Some(c) => Err(format!("{c:?} is not allowed in a header name")),
        None => Ok(()),
    }
}

/// Header values may not hold control characters other than tab (RFC 9110, section 5.5).
fn check_header_value(value: &str) -> Result<(), String> {
    match value.chars().find(|c| (c.is_ascii_control() && *c != '\t') || *c == '\u{7f}') {
        Some(c) => Err(format!("the value holds the control character {c:?}")),
        None => Ok(()),
    }
}

fn read_request(object: &Object<'_>, original: &Request) -> Result<Request, RunError> {
    let uri: Value = object.get("uri").map_err(|e| invalid(format!("request.uri: {e}")))?;
    let uri = js_string(&uri, &|| "request.uri".to_owned())?;
    if !uri.starts_with('/') {
        return Err(invalid(format!("request.uri {uri:?} does not start with '/'")));
    }
    if uri.len() > MAX_URI_BYTES {
        return Err(invalid(format!("request.uri is {} bytes, over {MAX_URI_BYTES}", uri.len())));
    }
    if uri.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(invalid("request.uri holds a space or control character"));
    }
    Ok(Request {
        // The method is read-only: changes are ignored.
        method: original.method.clone(),
        uri,
        querystring: read_fields(object, FieldsKind::Querystring, "request", Some(&original.querystring))?,
        headers: read_fields(object, FieldsKind::Headers, "request", Some(&original.headers))?,
        cookies: read_fields(object, FieldsKind::Cookies, "request", Some(&original.cookies))?,
    })
}

fn read_response(object: &Object<'_>, original: Option<&Response>) -> Result<Response, RunError> {
    let status: Value = object.get("statusCode").map_err(|e| invalid(format!("response.statusCode: {e}")))?;
    let status = match status.as_number() {
        Some(n) if n.fract() == 0.0 && (100.0..=599.0).contains(&n) => n as u16,
        _ if status.is_undefined() => return Err(invalid("response.statusCode is missing")),
        _ => return Err(invalid("response.statusCode must be an integer from 100 to 599")),
    };
    let description: Value =
        object.get("statusDescription").map_err(|e| invalid(format!("response.statusDescription: {e}")))?;
    let status_description = if description.is_undefined() || description.is_null() {
        None
    } else {
        let d = js_string(&description, &|| "response.statusDescription".to_owned())?;
        check_header_value(&d).map_err(|why| invalid(format!("response.statusDescription: {why}")))?;
        Some(d)
    };
    let body: Value = object.get("body").map_err(|e| invalid(format!("response.body: {e}")))?;
    let body = read_body(&body)?;
    Ok(Response {
        status_code: status,
        status_description,
        headers: read_fields(object, FieldsKind::Headers, "response", original.map(|r| &r.headers))?,
        cookies: read_fields(object, FieldsKind::Cookies, "response", original.map(|r| &r.cookies))?,
        body,
    })
}

fn read_body(body: &Value<'_>) -> Result<Option<Body>, RunError> {
    if body.is_undefined() || body.is_null() {
        return Ok(None);
    }
    if body.is_string() {
        return js_string(body, &|| "response.body".to_owned()).map(|s| Some(Body::Text(s)));
    }
    let Some(object) = body.as_object() else {
        return Err(invalid(format!("response.body is {}, not a string or {{data, encoding}}", body.type_name())));
    };
    let data: Value = object.get("data").map_err(|e| invalid(format!("response.body.data: {e}")))?;
    let data = js_string(&data, &|| "response.body.data".to_owned())?;
    let encoding: Value = object.get("encoding").map_err(|e| invalid(format!("response.body.encoding: {e}")))?;
    let encoding = if encoding.is_undefined() {
        "text".to_owned()
    } else {
        js_string(&encoding, &|| "response.body.encoding".to_owned())?
    };
    match encoding.as_str() {
        "text" => Ok(Some(Body::Text(data))),
        "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map(|b| Some(Body::Binary(b)))
                .map_err(|e| invalid(format!("response.body.data is not valid base64: {e}")))
        }
        other => Err(invalid(format!("response.body.encoding {other:?} is neither \"text\" nor \"base64\""))),
    }
}

#[cfg(test)]
mod tests;
