//! Unit tests of compiling and running functions (no sockets).

use super::*;
use crate::event::Body;
use crate::event::Viewer;
use crate::{CodeError, EventContext, Limits, compile, compile_with_limits};

/// Seed 003's function, with the line breaks its text lost restored.
pub(crate) const SEED: &str = "function handler(event) {\n// 获取请求头\nvar request = event.request;var headers = event.request.headers;var originUrl = event.request.uri;\n// 检查 x-vendor-type 请求头是否存在\nif (headers['x-vendor-type']) {var targetObject = headers['x-vendor-type'].value\n//修改回源 URL Path\n event.request.uri = '/' + targetObject + originUrl;}return request;\n}\n";

fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: "GET".into(),
        uri: uri.into(),
        querystring: Fields::new(),
        headers: headers.iter().map(|(n, v)| (*n, *v)).collect(),
        cookies: Fields::new(),
    }
}

fn event(request: Request) -> Event {
    Event {
        context: EventContext {
            distribution_domain_name: "cdn.example.com".into(),
            distribution_id: "games".into(),
            request_id: "req-1".into(),
        },
        viewer: Viewer { ip: "198.51.100.11".into() },
        request,
        response: None,
    }
}

fn rewritten(outcome: RequestOutcome) -> Request {
    match outcome {
        RequestOutcome::Request(r) => r,
        RequestOutcome::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

#[test]
fn seed_function_prefixes_the_vendor() {
    let f = compile(JsRuntime::V1, SEED).expect("seed compiles");
    let with =
        run_viewer_request(&f, &event(request("/pkg/game.apk", &[("host", "cdn"), ("x-vendor-type", "huawei")])))
            .expect("runs");
    let with = rewritten(with);
    assert_eq!(with.uri, "/huawei/pkg/game.apk");
    assert_eq!(with.headers.first("x-vendor-type"), Some("huawei"));
    assert_eq!(with.headers.first("host"), Some("cdn"));
    let without =
        rewritten(run_viewer_request(&f, &event(request("/pkg/game.apk", &[("host", "cdn")]))).expect("runs"));
    assert_eq!(without.uri, "/pkg/game.apk");
    // The same code under runtime 2.0 gives the same results.
    let f2 = compile(JsRuntime::V2, SEED).expect("seed compiles for 2.0");
    let with = rewritten(run_viewer_request(&f2, &event(request("/a", &[("x-vendor-type", "oppo")]))).expect("runs"));
    assert_eq!(with.uri, "/oppo/a");
}

#[test]
fn redirect_function_returns_a_response() {
    let code = "function handler(event) {\n  var host = event.request.headers.host.value;\n  return { statusCode: 302, statusDescription: 'Found',\n    headers: { location: { value: 'https://' + host + '/new' + event.request.uri } } };\n}";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = run_viewer_request(&f, &event(request("/old", &[("host", "games.example")]))).expect("runs");
    let RequestOutcome::Response(r) = out else { panic!("expected a response") };
    assert_eq!(r.status_code, 302);
    assert_eq!(r.status_description.as_deref(), Some("Found"));
    assert_eq!(r.headers.first("location"), Some("https://games.example/new/old"));
    assert_eq!(r.body, None);
}

#[test]
fn generated_response_bodies() {
    let code = "function handler(event) {\n  if (event.request.uri === '/text') return { statusCode: 200, body: 'hello' };\n  if (event.request.uri === '/b64') return { statusCode: 200, body: { data: 'aGk=', encoding: 'base64' } };\n  return { statusCode: 200, body: { data: 'x', encoding: 'gzip' } };\n}";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let body = |uri: &str| match run_viewer_request(&f, &event(request(uri, &[]))) {
        Ok(RequestOutcome::Response(r)) => Ok(r.body),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(body("/text").expect("runs"), Some(Body::Text("hello".into())));
    assert_eq!(body("/b64").expect("runs"), Some(Body::Binary(b"hi".to_vec())));
    let err = body("/other").expect_err("gzip is no encoding");
    assert!(matches!(&err.kind, RunErrorKind::InvalidReturn { why } if why.contains("encoding")), "{err}");
}

#[test]
fn viewer_response_function_adds_headers() {
    let code = "function handler(event) {\n  var response = event.response;\n  response.headers['x-served-by'] = { value: 'shardgate' };\n  response.headers['strict-transport-security'] = { value: 'max-age=63072000' };\n  response.cookies['seen'] = { value: '1', attributes: 'Path=/; Secure' };\n  return response;\n}";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let mut ev = event(request("/a", &[]));
    let mut headers = Fields::new();
    headers.append("content-type", FieldValue::new("text/plain"));
    ev.response = Some(Response {
        status_code: 200,
        status_description: Some("OK".into()),
        headers,
        cookies: Fields::new(),
        body: None,
    });
    let r = run_viewer_response(&f, &ev).expect("runs");
    assert_eq!(r.status_code, 200);
    assert_eq!(r.headers.first("content-type"), Some("text/plain"));
    assert_eq!(r.headers.first("x-served-by"), Some("shardgate"));
    assert_eq!(r.headers.first("strict-transport-security"), Some("max-age=63072000"));
    let cookie = &r.cookies.get("seen").expect("cookie")[0];
    assert_eq!((cookie.value.as_str(), cookie.attributes.as_deref()), ("1", Some("Path=/; Secure")));
    // A viewer-response event needs its response.
    assert!(run_viewer_response(&f, &event(request("/a", &[]))).is_err());
}

#[test]
fn syntax_errors_name_line_and_column() {
    let err = compile(JsRuntime::V1, "function handler(event) {\n  var x = ;\n  return event.request;\n}")
        .expect_err("syntax error");
    match &err {
        CodeError::Syntax { line, column, message } => {
            assert_eq!(*line, Some(2));
            assert_eq!(*column, Some(11));
            assert!(message.starts_with("SyntaxError"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("line 2, column 11: SyntaxError"), "{err}");
    // Module mode (2.0 with import) reports positions in the code too.
    let err = compile(JsRuntime::V2, "import crypto from 'crypto';\nfunction handler(event) {\n  let x = {;\n}")
        .expect_err("syntax error");
    assert!(matches!(err, CodeError::Syntax { line: Some(3), .. }), "{err:?}");
}

#[test]
fn code_without_handler_or_too_large_is_refused() {
    assert_eq!(
        compile(JsRuntime::V1, "function other(e) { return e.request; }").unwrap_err(),
        CodeError::MissingHandler
    );
    assert_eq!(compile(JsRuntime::V1, "var handler = 3;").unwrap_err(), CodeError::MissingHandler);
    let big = format!("function handler(e) {{ return e.request; }}\n//{}", "x".repeat(crate::MAX_CODE_BYTES));
    assert!(matches!(compile(JsRuntime::V1, &big), Err(CodeError::TooLarge { .. })));
    let err = compile(JsRuntime::V1, "function handler(e) { return e.request; }\nnotDefined();").unwrap_err();
    assert!(
        matches!(&err, CodeError::Syntax { line: Some(2), message, .. } if message.contains("ReferenceError")),
        "{err:?}"
    );
    assert!(matches!(compile(JsRuntime::V1, "while (true) {}"), Err(CodeError::TopLevel(_))));
}

#[test]
fn infinite_loop_times_out_and_the_thread_recovers() {
    let code = "function handler(event) {\n  if (event.request.uri === '/loop') { try { while (true) {} } catch (e) {} }\n  return event.request;\n}";
    let limits = Limits { cpu: Duration::from_millis(20), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let err = run_viewer_request(&f, &event(request("/loop", &[]))).expect_err("cut off");
    assert_eq!(err.kind, RunErrorKind::Timeout);
    let ok = rewritten(run_viewer_request(&f, &event(request("/fine", &[]))).expect("next call works"));
    assert_eq!(ok.uri, "/fine");
}

#[test]
fn memory_hog_hits_the_limit() {
    let code = "var keep = [];\nfunction handler(event) {\n  if (event.request.uri === '/hog') { for (var i = 0; ; i++) { keep.push('xxxxxxxxxxxxxxxx' + i); } }\n  return event.request;\n}";
    let limits = Limits { cpu: Duration::from_secs(5), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let err = run_viewer_request(&f, &event(request("/hog", &[]))).expect_err("over memory");
    assert_eq!(err.kind, RunErrorKind::Memory, "{err}");
    let ok = rewritten(run_viewer_request(&f, &event(request("/fine", &[]))).expect("next call works"));
    assert_eq!(ok.uri, "/fine");
}

#[test]
fn memory_hog_in_a_local_hits_the_limit() {
    // The array is freed as the exception unwinds: the kind comes from the
    // exception QuickJS raised, not from the heap left afterwards.
    let code = "function handler(event) {\n  var a = [];\n  for (var i = 0; ; i++) { a.push({ n: i, s: 'yyyyyyyyyyyyyyyy' + i }); }\n}";
    let limits = Limits { cpu: Duration::from_secs(5), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let err = run_viewer_request(&f, &event(request("/", &[]))).expect_err("over memory");
    assert_eq!(err.kind, RunErrorKind::Memory, "{err}");
}

#[test]
fn exceptions_and_bad_returns_are_errors() {
    let cases: [(&str, &str); 6] = [
        ("function handler(e) { return e.request.headers.missing.value; }", "exception"),
        ("function handler(e) { throw new Error('nope'); }", "exception"),
        ("function handler(e) { }", "invalid_return"),
        ("function handler(e) { e.request.uri = 'no-slash'; return e.request; }", "invalid_return"),
        ("function handler(e) { e.request.headers['X-Up'] = {value: 'a'}; return e.request; }", "invalid_return"),
        ("function handler(e) { return { statusCode: 99 }; }", "invalid_return"),
    ];
    for (code, label) in cases {
        let f = compile(JsRuntime::V1, code).expect("compiles");
        let err = run_viewer_request(&f, &event(request("/", &[]))).expect_err(code);
        assert_eq!(err.kind.label(), label, "{code}: {err}");
    }
    let f = compile(JsRuntime::V1, "function handler(e) {\n  throw new TypeError('bad vendor');\n}").expect("compiles");
    let err = run_viewer_request(&f, &event(request("/", &[]))).expect_err("throws");
    assert_eq!(err.kind, RunErrorKind::Exception { message: "TypeError: bad vendor (line 2, column 13)".into() });
}

#[test]
fn method_is_read_only() {
    let f = compile(JsRuntime::V1, "function handler(e) { e.request.method = 'POST'; return e.request; }")
        .expect("compiles");
    assert_eq!(rewritten(run_viewer_request(&f, &event(request("/", &[]))).expect("runs")).method, "GET");
}

fn multi(values: &[&str]) -> Vec<FieldValue> {
    values.iter().map(|v| FieldValue::new(*v)).collect()
}

#[test]
fn multi_value_rules() {
    let mut req = request("/", &[]);
    req.headers.set("accept", multi(&["a", "b", "c"]));
    req.querystring.set("q", multi(&["1", "2"]));
    req.cookies.set("id", multi(&["x"]));
    let code = "function handler(e) {\n  var r = e.request;\n  r.headers.accept.value = 'A';\n  r.querystring.q.value = 'one';\n  r.querystring.q.multiValue[1].value = 'two';\n  r.cookies.id = { value: 'y', multiValue: [{ value: 'y' }, { value: 'z' }] };\n  r.headers['x-new'] = { value: 'n' };\n  return r;\n}";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = rewritten(run_viewer_request(&f, &event(req)).expect("runs"));
    // multiValue untouched: `value` replaces the first, the rest stay.
    assert_eq!(out.headers.get("accept").expect("accept"), multi(&["A", "b", "c"]).as_slice());
    // multiValue modified: it wins, `value` is ignored.
    assert_eq!(out.querystring.get("q").expect("q"), multi(&["1", "two"]).as_slice());
    // A new multiValue on a single value is a modification too.
    assert_eq!(out.cookies.get("id").expect("id"), multi(&["y", "z"]).as_slice());
    assert_eq!(out.headers.get("x-new").expect("x-new"), multi(&["n"]).as_slice());
    // The event shows duplicates as CloudFront does: `value` is the first, `multiValue` all.
    let f = compile(JsRuntime::V1, "function handler(e) { var a = e.request.headers.accept; e.request.uri = '/' + a.value + '/' + a.multiValue.length + '/' + (e.request.cookies.id.multiValue === undefined); return e.request; }").expect("compiles");
    let mut req = request("/", &[]);
    req.headers.set("accept", multi(&["a", "b", "c"]));
    req.cookies.set("id", multi(&["x"]));
    assert_eq!(rewritten(run_viewer_request(&f, &event(req)).expect("runs")).uri, "/a/3/true");
}

#[test]
fn event_fields_reach_the_function() {
    let code = "function handler(e) { e.request.uri = '/' + [e.version, e.context.eventType, e.context.distributionId, e.context.requestId, e.viewer.ip].join('/'); return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = rewritten(run_viewer_request(&f, &event(request("/", &[]))).expect("runs"));
    assert_eq!(out.uri, "/1.0/viewer-request/games/req-1/198.51.100.11");
}

fn run_expr(runtime: JsRuntime, prelude: &str, expr: &str) -> String {
    let code = format!(
        "{prelude}\nfunction handler(e) {{ e.request.headers['x-out'] = {{ value: String({expr}) }}; return e.request; }}"
    );
    let f = compile(runtime, &code).unwrap_or_else(|e| panic!("{code}: {e}"));
    let out = rewritten(run_viewer_request(&f, &event(request("/", &[]))).unwrap_or_else(|e| panic!("{code}: {e}")));
    out.headers.first("x-out").expect("x-out").to_owned()
}

#[test]
fn crypto_helpers_match_known_vectors() {
    let v1 = |expr: &str| run_expr(JsRuntime::V1, "var crypto = require('crypto');", expr);
    assert_eq!(v1("crypto.createHash('md5').update('abc').digest('hex')"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(v1("crypto.createHash('sha1').update('abc').digest('hex')"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(
        v1("crypto.createHash('sha256').update('a').update('bc').digest('hex')"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        v1("crypto.createHash('sha256').update('abc').digest('base64')"),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    // RFC 4231 test case 2, RFC 2202 test cases 2 (SHA-1 and MD5).
    assert_eq!(
        v1("crypto.createHmac('sha256', 'Jefe').update('what do ya want for nothing?').digest('hex')"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        v1("crypto.createHmac('sha1', 'Jefe').update('what do ya want for nothing?').digest('hex')"),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    assert_eq!(
        v1("crypto.createHmac('md5', 'Jefe').update('what do ya want for nothing?').digest('hex')"),
        "750c783e6ab0b503eaa86e310a5db738"
    );
    // Runtime 2.0's import form reaches the same module.
    let v2 =
        run_expr(JsRuntime::V2, "import crypto from 'crypto';", "crypto.createHash('md5').update('a').digest('hex')");
    assert_eq!(v2, "0cc175b9c0f1b6a831c399e269772661");
    let f = compile(JsRuntime::V1, "function handler(e) { require('crypto').createHash('sha512'); return e.request; }")
        .expect("compiles");
    let err = run_viewer_request(&f, &event(request("/", &[]))).expect_err("sha512 is not offered");
    assert!(err.to_string().contains("digest method not supported: sha512"), "{err}");
}

#[test]
fn querystring_helpers_match_node() {
    let qs = |expr: &str| run_expr(JsRuntime::V1, "var qs = require('querystring');", expr);
    // Node.js documentation examples for querystring.stringify and parse.
    assert_eq!(qs("qs.stringify({ foo: 'bar', baz: ['qux', 'quux'], corge: '' })"), "foo=bar&baz=qux&baz=quux&corge=");
    assert_eq!(qs("qs.stringify({ foo: 'bar', baz: 'qux' }, ';', ':')"), "foo:bar;baz:qux");
    assert_eq!(qs("JSON.stringify(qs.parse('foo=bar&abc=xyz&abc=123'))"), r#"{"foo":"bar","abc":["xyz","123"]}"#);
    assert_eq!(qs("JSON.stringify(qs.parse('a=1+2&b=%E4%BD%A0&&c'))"), r#"{"a":"1 2","b":"你","c":""}"#);
    assert_eq!(qs("qs.escape('a b&c/你')"), "a%20b%26c%2F%E4%BD%A0");
    assert_eq!(qs("qs.unescape('a%20b%zz')"), "a b%zz");
    let v2 = run_expr(JsRuntime::V2, "import querystring from 'querystring';", "querystring.stringify({ v: 'x y' })");
    assert_eq!(v2, "v=x%20y");
}

#[test]
fn runtime_two_features() {
    let code = "import cf from 'cloudfront';\nconst prefix = '/v2';\nasync function handler(event) {\n  const r = event.request;\n  const up = await Promise.resolve((s) => `${prefix}${s}`);\n  r.uri = up(r.uri);\n  return r;\n}";
    let f = compile(JsRuntime::V2, code).expect("compiles");
    assert_eq!(rewritten(run_viewer_request(&f, &event(request("/a", &[]))).expect("runs")).uri, "/v2/a");
    let f =
        compile(JsRuntime::V2, "import cf from 'cloudfront';\nfunction handler(e) { cf.kvs('x'); return e.request; }")
            .expect("compiles");
    let err = run_viewer_request(&f, &event(request("/a", &[]))).expect_err("no kvs");
    assert!(err.to_string().contains("key value stores are not available"), "{err}");
    assert!(matches!(
        compile(JsRuntime::V2, "import x from 'fs';\nfunction handler(e) { return e.request; }"),
        Err(CodeError::Syntax { .. })
    ));
}

#[test]
fn test_function_reports_logs_and_utilization() {
    let code = "function handler(e) { console.log('uri', e.request.uri, {a: 1}); return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = test_function(&f, EventType::ViewerRequest, &event(request("/x", &[])));
    assert_eq!(out.error, None);
    assert_eq!(out.logs, vec![r#"uri /x {"a":1}"#.to_owned()]);
    assert_eq!(out.output.expect("output")["uri"], "/x");
    // A call that waits out at least 30 ms of a 100 ms budget used at least
    // 30% of it (a lower bound: a slow host only raises it).
    let code = "function handler(e) { var t = Date.now(); while (Date.now() - t < 30) {} return e.request; }";
    let limits = Limits { cpu: Duration::from_millis(100), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let out = test_function(&f, EventType::ViewerRequest, &event(request("/x", &[])));
    if out.error.is_none() {
        assert!((30..=100).contains(&out.compute_utilization), "{out:?}");
    } else {
        // Only a host stalled for 70 ms gets here; then the budget was spent.
        assert_eq!(out.compute_utilization, 100, "{out:?}");
    }
}

#[test]
fn many_functions_on_one_thread_stay_bounded() {
    for i in 0..(MAX_INSTANCES_PER_THREAD + 5) {
        let code = format!("function handler(e) {{ e.request.uri = '/{i}'; return e.request; }}");
        let f = compile(JsRuntime::V1, &code).expect("compiles");
        assert_eq!(rewritten(run_viewer_request(&f, &event(request("/", &[]))).expect("runs")).uri, format!("/{i}"));
    }
    CACHE.with(|c| assert!(c.borrow().instances.len() <= MAX_INSTANCES_PER_THREAD));
}

fn invalid_why(result: Result<RequestOutcome, RunError>) -> String {
    match result {
        Err(RunError { kind: RunErrorKind::InvalidReturn { why } }) => why,
        other => panic!("expected an invalid return, got {other:?}"),
    }
}

fn instance_cached(f: &crate::CompiledFunction) -> bool {
    CACHE.with(|c| c.borrow().instances.contains_key(&f.key()))
}

#[test]
fn read_back_checks_sizes_before_copying() {
    // Generous time: the point is the size checks, not the time budget.
    let slow = Limits { cpu: Duration::from_secs(5), ..Limits::default() };
    // 64 references to one 512 KiB string: 32 MiB once copied, 512 KiB in JS.
    let code = "var big = 'x'.repeat(1 << 19);\nvar one = { value: big };\nfunction handler(e) {\n  var m = [];\n  for (var i = 0; i < 64; i++) { m.push(one); }\n  e.request.headers['x-a'] = { value: 'a', multiValue: m };\n  return e.request;\n}";
    let f = compile_with_limits(JsRuntime::V1, code, slow).expect("compiles");
    let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
    assert!(why.contains("x-a") && why.contains("over"), "{why}");
    // A 1 MiB name, checked before it is copied.
    let code = "var big = 'k'.repeat(1 << 20);\nfunction handler(e) { e.request.cookies[big] = { value: '1' }; return e.request; }";
    let f = compile_with_limits(JsRuntime::V1, code, slow).expect("compiles");
    let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
    assert!(why.contains("cookies") && why.contains("over"), "{why}");
    // A Proxy whose ownKeys lists many names: refused at the budget.
    let code = "function handler(e) {\n  var keys = [];\n  for (var i = 0; i < 5000; i++) { keys.push('h' + i); }\n  e.request.headers = new Proxy({}, {\n    ownKeys: function () { return keys; },\n    getOwnPropertyDescriptor: function () { return { value: { value: 'v' }, enumerable: true, configurable: true }; },\n    get: function () { return { value: 'v' }; }\n  });\n  return e.request;\n}";
    let f = compile_with_limits(JsRuntime::V1, code, slow).expect("compiles");
    let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
    assert!(why.contains("budget") || why.contains("over"), "{why}");
    // A huge sparse multiValue array is refused by its length, not walked.
    let code = "function handler(e) { var m = []; m.length = 4294967295; e.request.headers['x-m'] = { value: 'a', multiValue: m }; return e.request; }";
    let f = compile_with_limits(JsRuntime::V1, code, slow).expect("compiles");
    let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
    assert!(why.contains("multiValue"), "{why}");
}

#[test]
fn generated_bodies_are_capped_and_large_requests_pass_through() {
    let code = "function handler(e) { return { statusCode: 200, body: 'b'.repeat(Number(e.request.uri.slice(1))) }; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let ok = run_viewer_request(&f, &event(request(&format!("/{MAX_BODY_BYTES}"), &[]))).expect("40 KB is allowed");
    assert!(
        matches!(ok, RequestOutcome::Response(r) if r.body.as_ref().map(|b| b.as_bytes().len()) == Some(MAX_BODY_BYTES))
    );
    let why = invalid_why(run_viewer_request(&f, &event(request(&format!("/{}", MAX_BODY_BYTES + 1), &[]))));
    assert!(why.contains("response.body"), "{why}");
    // A viewer request larger than the budget comes back unchanged.
    let f = compile(JsRuntime::V1, "function handler(e) { return e.request; }").expect("compiles");
    let big = "v".repeat(1000);
    let headers: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), big.clone())).collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let out = rewritten(run_viewer_request(&f, &event(request("/", &headers))).expect("passes through"));
    assert_eq!(out.headers.len(), 30);
    // The same amount added by the function is refused.
    let code = "function handler(e) { for (var i = 0; i < 30; i++) { e.request.headers['x-h' + i] = { value: 'v'.repeat(1000) }; } return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    assert!(invalid_why(run_viewer_request(&f, &event(request("/", &[])))).contains("over"));
}

#[test]
fn top_level_code_runs_under_the_memory_limit() {
    let code = "var keep = [];\nfor (var i = 0; ; i++) { keep.push('xxxxxxxxxxxxxxxx' + i); }\nfunction handler(e) { return e.request; }";
    let limits = Limits { cpu: Duration::from_secs(5), ..Limits::default() };
    match compile_with_limits(JsRuntime::V1, code, limits) {
        Err(CodeError::TopLevel(why)) => assert!(why.contains("memory"), "{why}"),
        other => panic!("expected a top-level memory error, got {other:?}"),
    }
}

#[test]
fn top_level_code_has_its_own_budget() {
    // 5 ms of top-level work is fine under a 1 ms per-call budget.
    let code = "var t = Date.now();\nwhile (Date.now() - t < 5) {}\nfunction handler(e) { return e.request; }";
    let limits = Limits { cpu: Duration::from_millis(1), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("top level has its own budget");
    assert_eq!(f.limits().cpu, Duration::from_millis(1));
}

#[test]
fn cookies_and_query_strings_are_validated() {
    let cases = [
        ("e.request.cookies['a b'] = { value: '1' };", "cookie name"),
        ("e.request.cookies['a;b'] = { value: '1' };", "cookie name"),
        ("e.request.cookies['id'] = { value: '1; admin=1' };", "cookie value"),
        ("e.request.cookies['id'] = { value: '1\\r\\nx: y' };", "cookie value"),
        ("e.request.querystring['a b'] = { value: '1' };", "query string"),
        ("e.request.querystring['q'] = { value: 'x#y' };", "query string"),
        ("e.request.querystring['q'] = { value: 'x\\ny' };", "query string"),
        ("e.request.querystring['q'] = { value: 'v'.repeat(8000) }; e.request.uri = '/' + 'u'.repeat(300);", "8192"),
    ];
    for (statement, expected) in cases {
        let code = format!("function handler(e) {{ {statement} return e.request; }}");
        let f = compile(JsRuntime::V1, &code).expect("compiles");
        let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
        assert!(why.contains(expected), "{statement}: {why}");
    }
    let code = "function handler(e) { var r = e.response; r.cookies['s'] = { value: '1', attributes: 'Path=/\\r\\nx: y' }; return r; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let mut ev = event(request("/", &[]));
    ev.response = Some(Response {
        status_code: 200,
        status_description: None,
        headers: Fields::new(),
        cookies: Fields::new(),
        body: None,
    });
    let err = run_viewer_response(&f, &ev).expect_err("CRLF in attributes");
    assert!(err.to_string().contains("attributes"), "{err}");
    // Valid ones go through.
    let code = "function handler(e) { e.request.cookies['sid'] = { value: 'a%3Bb' }; e.request.querystring['q'] = { value: 'a%20b' }; return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = rewritten(run_viewer_request(&f, &event(request("/", &[]))).expect("valid"));
    assert_eq!((out.cookies.first("sid"), out.querystring.first("q")), (Some("a%3Bb"), Some("a%20b")));
}

#[test]
fn disallowed_and_read_only_headers() {
    let refused = [
        ("e.request.headers['connection'] = { value: 'close' };", "connection"),
        ("e.request.headers['x-edge-origin'] = { value: 'a' };", "x-edge-origin"),
        ("e.request.headers['x-amz-cf-id'] = { value: 'a' };", "x-amz-cf-id"),
        ("e.request.headers['host'] = { value: 'evil.example' };", "host"),
        ("delete e.request.headers['host'];", "host"),
        ("e.request.headers['via'] = { value: '1.1 x' };", "via"),
    ];
    for (statement, header) in refused {
        let code = format!("function handler(e) {{ {statement} return e.request; }}");
        let f = compile(JsRuntime::V1, &code).expect("compiles");
        let why = invalid_why(run_viewer_request(&f, &event(request("/", &[("host", "games.example")]))));
        assert!(why.contains(&format!("{header:?}")), "{statement}: {why}");
    }
    // Disallowed headers are hidden from the function and passed through.
    let code = "function handler(e) { e.request.uri = '/' + (e.request.headers['connection'] === undefined); return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let out = rewritten(
        run_viewer_request(&f, &event(request("/", &[("host", "h"), ("connection", "keep-alive")]))).expect("runs"),
    );
    assert_eq!(out.uri, "/true");
    assert_eq!(out.headers.first("connection"), Some("keep-alive"));
    // A generated response may not set its framing or a disallowed header.
    for header in ["content-length", "transfer-encoding", "x-cache"] {
        let code = format!(
            "function handler(e) {{ return {{ statusCode: 200, headers: {{ '{header}': {{ value: '1' }} }} }}; }}"
        );
        let f = compile(JsRuntime::V1, &code).expect("compiles");
        let why = invalid_why(run_viewer_request(&f, &event(request("/", &[]))));
        assert!(why.contains(header), "{why}");
    }
    // A viewer-response function may not change content-length.
    let f = compile(
        JsRuntime::V1,
        "function handler(e) { e.response.headers['content-length'] = { value: '1' }; return e.response; }",
    )
    .expect("compiles");
    let mut ev = event(request("/", &[]));
    ev.response = Some(Response {
        status_code: 200,
        status_description: None,
        headers: [("content-length", "10")].into_iter().collect(),
        cookies: Fields::new(),
        body: None,
    });
    let err = run_viewer_response(&f, &ev).expect_err("read-only");
    assert!(err.to_string().contains("\"content-length\" is read-only"), "{err}");
}

#[test]
fn read_back_errors_keep_their_kind_and_drop_the_instance() {
    let code = "function handler(e) {\n  if (e.request.uri === '/loop') { return { get uri() { while (true) {} } }; }\n  if (e.request.uri === '/hog') { return { get uri() { var a = []; for (;;) { a.push('zzzzzzzzzzzz' + a.length); } } }; }\n  return e.request;\n}";
    let limits = Limits { cpu: Duration::from_millis(50), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let err = run_viewer_request(&f, &event(request("/loop", &[]))).expect_err("getter loops");
    assert_eq!(err.kind, RunErrorKind::Timeout, "{err}");
    assert!(!instance_cached(&f), "an interrupted instance is dropped");
    let limits = Limits { cpu: Duration::from_secs(5), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let err = run_viewer_request(&f, &event(request("/hog", &[]))).expect_err("getter allocates");
    assert_eq!(err.kind, RunErrorKind::Memory, "{err}");
    assert!(!instance_cached(&f));
    assert_eq!(rewritten(run_viewer_request(&f, &event(request("/ok", &[]))).expect("recovers")).uri, "/ok");
}

#[test]
fn identities_and_tests_do_not_share_globals() {
    let code = "var n = 0;\nfunction handler(e) { n++; e.request.uri = '/' + n; return e.request; }";
    let f = compile(JsRuntime::V1, code).expect("compiles");
    let a = f.with_identity("a", "LIVE");
    let b = f.with_identity("b", "LIVE");
    assert_eq!(a.identity(), Some("a\u{0}LIVE"));
    let uri =
        |f: &crate::CompiledFunction| rewritten(run_viewer_request(f, &event(request("/", &[]))).expect("runs")).uri;
    assert_eq!(uri(&a), "/1");
    assert_eq!(uri(&a), "/2");
    assert_eq!(uri(&b), "/1", "another function with the same code has its own globals");
    // The test endpoint's runs use a fresh instance each time and leave the
    // edge's instances alone.
    for _ in 0..2 {
        let out = test_function(&a, EventType::ViewerRequest, &event(request("/", &[])));
        assert_eq!(out.output.expect("output")["uri"], "/1");
    }
    assert_eq!(uri(&a), "/3");
}

#[test]
fn leftover_promise_jobs_run_under_the_deadline() {
    let code = "function handler(e) {\n  if (e.request.uri === '/spin') { Promise.resolve().then(function () { while (true) {} }); }\n  return e.request;\n}";
    let limits = Limits { cpu: Duration::from_millis(20), ..Limits::default() };
    let f = compile_with_limits(JsRuntime::V1, code, limits).expect("compiles");
    let out = rewritten(run_viewer_request(&f, &event(request("/spin", &[]))).expect("the handler returned"));
    assert_eq!(out.uri, "/spin");
    assert!(!instance_cached(&f), "the instance whose job ran over is dropped");
    rewritten(run_viewer_request(&f, &event(request("/fine", &[]))).expect("next call works"));
    assert!(instance_cached(&f));
}

#[test]
fn digest_without_encoding_logs_cap_and_interim_statuses() {
    let v1 = |expr: &str| run_expr(JsRuntime::V1, "var crypto = require('crypto');", expr);
    // md5('a') = 0cc175b9...: 16 bytes, the first 0x0c.
    assert_eq!(
        v1(
            "(function (d) { return d.length + ':' + d.charCodeAt(0) + ':' + d.charCodeAt(1); })(crypto.createHash('md5').update('a').digest())"
        ),
        "16:12:193"
    );
    let f = compile(
        JsRuntime::V1,
        "function handler(e) { for (var i = 0; i < 40; i++) { console.log('l'.repeat(1000)); } return e.request; }",
    )
    .expect("compiles");
    let out = test_function(&f, EventType::ViewerRequest, &event(request("/", &[])));
    let bytes: usize = out.logs.iter().map(String::len).sum();
    assert_eq!(bytes, MAX_LOG_BYTES);
    assert_eq!(MAX_LOG_BYTES, 10 * 1024);
    let f = compile(JsRuntime::V1, "function handler(e) { return { statusCode: 101 }; }").expect("compiles");
    assert!(invalid_why(run_viewer_request(&f, &event(request("/", &[])))).contains("200 to 599"));
}

#[test]
fn fields_index_follows_changes() {
    let mut f = Fields::new();
    for i in 0..100 {
        f.append(format!("n{i}"), FieldValue::new(format!("{i}")));
    }
    f.append("n5", FieldValue::new("again"));
    f.set("n3", Vec::new());
    f.set("n7", vec![FieldValue::new("seven")]);
    assert_eq!(f.len(), 99);
    assert_eq!(f.get("n3"), None);
    assert_eq!(f.get("n5").map(<[FieldValue]>::len), Some(2));
    assert_eq!(f.first("n4"), Some("4"));
    assert_eq!(f.first("n7"), Some("seven"));
    assert_eq!(f.first("n99"), Some("99"));
    // Replacing keeps the name's place.
    assert_eq!(f.iter().nth(6).map(|(n, _)| n), Some("n7"));
}
