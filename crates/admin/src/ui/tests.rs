use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use shardgate_core::Limits;
use shardgate_store::{EmbeddedOptions, EmbeddedStore, Store};
use tower::ServiceExt;

use super::*;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// Every file under `crates/admin/ui/`, relative, with `/` separators.
fn files_on_disk() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read ui dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under ui/").to_string_lossy().replace('\\', "/");
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&ui_dir(), &ui_dir(), &mut out);
    out.sort();
    out
}

fn text(name: &str) -> String {
    std::fs::read_to_string(ui_dir().join(name)).expect("read ui file")
}

/// Resolves `spec` (`./x.js`, `../x.js`) relative to the asset `from`.
fn resolve(from: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in spec.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[test]
fn every_file_in_the_ui_directory_is_embedded() {
    let embedded: Vec<&str> = ASSETS.iter().map(|a| a.name).chain(std::iter::once(INDEX.name)).collect();
    for f in files_on_disk() {
        assert!(embedded.contains(&f.as_str()), "crates/admin/ui/{f} is not listed in ui::ASSETS");
    }
}

#[test]
fn every_module_import_and_page_reference_resolves_to_an_embedded_file() {
    let import = regex::Regex::new(r#"(?m)^\s*import\s[^;]*?from\s+'([^']+)'"#).expect("regex");
    let mut checked = 0;
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let src = std::str::from_utf8(a.body).expect("utf-8");
        for cap in import.captures_iter(src) {
            let spec = &cap[1];
            assert!(spec.starts_with("./") || spec.starts_with("../"), "{}: import of {spec} is not relative", a.name);
            let target = resolve(a.name, spec);
            assert!(
                ASSETS.iter().any(|x| x.name == target),
                "{} imports {spec} ({target}), which is not embedded",
                a.name
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} imports found: the pattern no longer matches the code");
    let index = text("index.html");
    let reference = regex::Regex::new(r#"(?:src|href)="/ui/assets/([^"]+)""#).expect("regex");
    let refs: Vec<String> = reference.captures_iter(&index).map(|c| c[1].to_owned()).collect();
    assert!(refs.contains(&"app.js".to_owned()) && refs.contains(&"app.css".to_owned()), "{refs:?}");
    for r in refs {
        assert!(ASSETS.iter().any(|a| a.name == r), "index.html loads /ui/assets/{r}, which is not embedded");
    }
}

/// The CSP forbids inline script and style; the pages put data into the
/// DOM only as text (textContent, text nodes, attribute values).
#[test]
fn pages_have_no_inline_code_and_never_parse_html() {
    let index = text("index.html");
    let script = regex::Regex::new(r"<script\b[^>]*>").expect("regex");
    for tag in script.find_iter(&index) {
        assert!(tag.as_str().contains(" src="), "inline script in index.html: {}", tag.as_str());
    }
    for banned in ["<style", " style=", "javascript:", " onclick=", " onload="] {
        assert!(!index.contains(banned), "index.html contains {banned}");
    }
    for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        let src = std::str::from_utf8(a.body).expect("utf-8");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "setHTMLUnsafe",
            "createContextualFragment",
            "DOMParser",
            "srcdoc",
            "document.write",
            "eval(",
            "new Function",
            "'style'",
        ] {
            assert!(!src.contains(banned), "{} uses {banned}", a.name);
        }
    }
}

async fn get(router: &Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    call(router, "GET", path, headers).await
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body").to_vec();
    (status, headers, body)
}

/// The policy's directives, each as the contract states it: only this
/// origin's scripts, styles and images (and `data:` images), no plugins, no
/// framing, no `<base>`, forms only to this origin.
#[test]
fn the_policy_has_every_directive() {
    let directives: Vec<&str> = CONTENT_SECURITY_POLICY.split(';').map(str::trim).collect();
    for want in [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(directives.contains(&want), "the CSP lacks {want:?}: {CONTENT_SECURITY_POLICY}");
    }
    assert_eq!(directives.len(), 8, "unexpected directives: {CONTENT_SECURITY_POLICY}");
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"), "{CONTENT_SECURITY_POLICY}");
}

fn assert_secure(headers: &axum::http::HeaderMap, what: &str) {
    assert_eq!(
        headers.get(header::CONTENT_SECURITY_POLICY).map(|v| v.to_str().ok()),
        Some(Some(CONTENT_SECURITY_POLICY)),
        "{what}"
    );
    assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).and_then(|v| v.to_str().ok()), Some("nosniff"), "{what}");
    assert_eq!(headers.get(header::REFERRER_POLICY).and_then(|v| v.to_str().ok()), Some("no-referrer"), "{what}");
}

#[tokio::test]
async fn serves_the_page_and_its_assets_with_security_headers() {
    let r = router(true);
    let (status, h, _) = get(&r, "/ui", &[]).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(h.get(header::LOCATION).and_then(|v| v.to_str().ok()), Some("/ui/"));
    assert_secure(&h, "/ui");

    let (status, h, body) = get(&r, "/ui/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("text/html; charset=utf-8"));
    assert_eq!(h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("no-cache"));
    assert_secure(&h, "/ui/");
    assert!(String::from_utf8_lossy(&body).contains("/ui/assets/app.js"));

    for (path, ty) in [
        ("/ui/assets/app.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/pages/canary.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/app.css", "text/css; charset=utf-8"),
        ("/ui/assets/icon.svg", "image/svg+xml"),
    ] {
        let (status, h, body) = get(&r, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some(ty), "{path}");
        assert_secure(&h, path);
        let name = path.trim_start_matches("/ui/assets/");
        assert_eq!(body, std::fs::read(ui_dir().join(name)).expect("file"), "{path} is the file's bytes");
    }

    for path in ["/ui/assets/nope.js", "/ui/assets/", "/ui/assets/../index.html", "/ui/assets/pages"] {
        let (status, h, _) = get(&r, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_secure(&h, path);
    }
}

#[tokio::test]
async fn revalidation_answers_304_for_an_unchanged_file() {
    let r = router(true);
    let (_, h, _) = get(&r, "/ui/assets/app.js", &[]).await;
    let etag = h.get(header::ETAG).and_then(|v| v.to_str().ok()).expect("etag").to_owned();
    let (status, h2, body) = get(&r, "/ui/assets/app.js", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(h2.get(header::ETAG).and_then(|v| v.to_str().ok()), Some(etag.as_str()));
    let (status, _, _) = get(&r, "/ui/assets/app.js", &[("if-none-match", "\"0000000000000000\"")]).await;
    assert_eq!(status, StatusCode::OK);
    // Another file has another validator.
    let (_, h3, _) = get(&r, "/ui/assets/api.js", &[]).await;
    assert_ne!(h3.get(header::ETAG).and_then(|v| v.to_str().ok()), Some(etag.as_str()));
}

#[tokio::test]
async fn only_get_and_head() {
    let r = router(true);
    let (status, _, body) = call(&r, "HEAD", "/ui/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    let (status, _, _) = call(&r, "POST", "/ui/assets/app.js", &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

fn admin_router(dashboard: bool) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let key = "test-admin-key-0123456789";
    let mut state = crate::AdminState::new(store as Arc<dyn Store>, "/apisix", key, Limits::default());
    if dashboard {
        let settings = crate::dashboard::DashboardSettings {
            users: Vec::new(),
            session_ttl: std::time::Duration::from_secs(60),
            key: crate::dashboard::SessionKey::from_source(b"a-test-secret-0123456789"),
            secure_cookie: false,
            body_timeout: std::time::Duration::from_secs(5),
            read_timeout: std::time::Duration::from_secs(5),
        };
        state = state.with_dashboard(Some(crate::dashboard::Dashboard::new(settings, key, None)));
    }
    (crate::router(state), dir)
}

/// On the Admin listener the dashboard needs no key, and the Admin API
/// still does.
#[tokio::test]
async fn admin_router_serves_the_dashboard_without_a_key() {
    let (r, _dir) = admin_router(true);
    let (status, h, _) = get(&r, "/ui/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_secure(&h, "/ui/ on the admin router");
    let (status, _, _) = get(&r, "/ui/assets/app.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&r, "/apisix/admin/upstreams", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// `dashboard.enabled: false`: no page, and the answer says why.
#[tokio::test]
async fn no_dashboard_pages_when_the_dashboard_is_off() {
    let (r, _dir) = admin_router(false);
    for path in ["/ui", "/ui/", "/ui/assets/app.js"] {
        let (status, h, body) = get(&r, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(String::from_utf8_lossy(&body), "the dashboard is off (dashboard.enabled: false)\n");
        assert_secure(&h, path);
    }
}
