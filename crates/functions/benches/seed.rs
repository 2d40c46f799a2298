//! Seed 003's viewer-request function per call: building the event, the
//! call, and reading the rewritten request back.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.
use criterion::{Criterion, criterion_group, criterion_main};
use shardgate_functions::event::Viewer;
use shardgate_functions::{Event, EventContext, Fields, JsRuntime, Request, compile, run_viewer_request};

const SEED: &str = "function handler(event) {\n// 获取请求头\nvar request = event.request;var headers = event.request.headers;var originUrl = event.request.uri;\n// 检查 x-vendor-type 请求头是否存在\nif (headers['x-vendor-type']) {var targetObject = headers['x-vendor-type'].value\n//修改回源 URL Path\n event.request.uri = '/' + targetObject + originUrl;}return request;\n}\n";

fn event(vendor: bool) -> Event {
    let mut headers: Fields =
        [("host", "cdn.example.com"), ("user-agent", "curl/8.5.0"), ("accept", "*/*")].into_iter().collect();
    if vendor {
        headers.append("x-vendor-type", shardgate_functions::FieldValue::new("huawei"));
    }
    Event {
        context: EventContext {
            distribution_domain_name: "cdn.example.com".into(),
            distribution_id: "games".into(),
            request_id: "r".into(),
        },
        viewer: Viewer { ip: "198.51.100.11".into() },
        request: Request {
            method: "GET".into(),
            uri: "/pkg/game.apk".into(),
            querystring: Fields::new(),
            headers,
            cookies: Fields::new(),
        },
        response: None,
    }
}

fn seed(c: &mut Criterion) {
    let Ok(f) = compile(JsRuntime::V1, SEED) else { panic!("the seed compiles") };
    for (name, vendor) in [("seed/with_header", true), ("seed/without_header", false)] {
        let ev = event(vendor);
        c.bench_function(name, |b| b.iter(|| run_viewer_request(&f, &ev)));
    }
    c.bench_function("compile/seed", |b| b.iter(|| compile(JsRuntime::V1, SEED)));
}

criterion_group!(benches, seed);
criterion_main!(benches);
