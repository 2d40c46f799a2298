//! `tracing:` in the bootstrap file: spans per stream connection, UDP
//! session and edge request, exported to an OpenTelemetry collector over
//! OTLP/HTTP when `tracing.otlp` is set (and not at all otherwise).
//!
//! The batch settings and their defaults are the OpenTelemetry SDKs'
//! batch span processor's (`OTEL_BSP_MAX_QUEUE_SIZE` 2048,
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` 512, `OTEL_BSP_SCHEDULE_DELAY` 5 s) and
//! the exporter's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use hyper::http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use shardgate_core::ConfigDuration;

use super::ConfigError;

/// The environment variable whose headers are added to `tracing.otlp.headers`
/// (and win over them): `name=value` pairs separated by commas, values
/// percent-decoded, as `OTEL_EXPORTER_OTLP_HEADERS` is written. For
/// credentials that should not sit in the file.
pub const HEADERS_ENV: &str = "SHARDGATE_TRACING_HEADERS";

/// Most spans the queue holds while the exporter is behind. A span holds at
/// most about 34 KiB (32 attributes of [`shardgate_core::trace::layer::MAX_ATTRIBUTE_BYTES`]
/// and the `tracestate` bound), most far less: the worst case of a full
/// queue at this limit is about 3 GiB, of the default 2,048 about 70 MiB.
const MAX_QUEUE_LIMIT: usize = 100_000;
/// Most spans in one export request: 512 spans of at most about 34 KiB stay
/// under the 20 MiB request limit OTLP receivers commonly apply, so a batch
/// is never refused for its size.
const MAX_BATCH_LIMIT: usize = 512;
/// Most extra headers on export requests.
const MAX_HEADERS: usize = 32;
/// Most extra resource attributes.
const MAX_RESOURCE_ATTRIBUTES: usize = 64;
/// Longest export timeout accepted.
const MAX_TIMEOUT_SECS: u64 = 120;

/// Headers an export request sets itself; configuring them would break the
/// request's framing or its content type.
const RESERVED_HEADERS: [&str; 7] =
    ["host", "content-length", "content-type", "transfer-encoding", "connection", "te", "upgrade"];

/// `tracing:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Where to send spans. Default: none, and then no span is recorded
    /// (the spans cost one disabled check each).
    pub otlp: Option<OtlpConfig>,
    /// The resource's `service.name`. Default `shardgate`.
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1 (a request that arrives
    /// with a W3C `traceparent` keeps its caller's decision). Default 1:
    /// every connection and request, as the OpenTelemetry SDKs' default
    /// sampler; lower it for busy edges (APISIX's `trace_id_ratio`
    /// fraction).
    pub sample_ratio: f64,
    /// Extra resource attributes, e.g. `deployment.environment: prod`.
    /// Default none (`service.version`, `service.instance.id` and
    /// `host.name` are always set).
    pub resource: BTreeMap<String, String>,
    /// Finished spans held while the exporter is behind; beyond this they
    /// are dropped and counted (`shardgate_trace_spans_dropped_total`).
    /// Default 2048.
    pub max_queue: usize,
    /// Most spans in one export request. Default 512.
    pub batch_size: usize,
    /// A batch is sent when full or this long after its first span.
    /// Default 5s.
    pub export_interval: ConfigDuration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp: None,
            service_name: "shardgate".into(),
            sample_ratio: 1.0,
            resource: BTreeMap::new(),
            max_queue: 2048,
            batch_size: 512,
            export_interval: ConfigDuration::from_secs(5),
        }
    }
}

/// `tracing.otlp:`. `Debug` leaves header values out.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`
    /// (an OpenTelemetry Collector's `otlp` receiver, HTTP protocol).
    /// `http://` or `https://`.
    pub endpoint: String,
    /// Headers sent with every export request, e.g. `authorization`.
    /// Not written back by `validate` or compared in logs; the
    /// `SHARDGATE_TRACING_HEADERS` environment variable adds to them.
    #[serde(default, skip_serializing)]
    pub headers: BTreeMap<String, String>,
    /// One export request's deadline (connect, send, answer). Default 10s.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// CA bundle (PEM) that signs an `https://` collector's certificate.
    /// Default: the system's bundle (`SSL_CERT_FILE`, or the usual paths).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            // The query may hold a token: left out, as in the logs.
            .field("endpoint", &without_query(&self.endpoint))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A checked `tracing.otlp.endpoint`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://`.
    pub tls: bool,
    /// The host (a name, or an IP address without brackets).
    pub host: String,
    /// The port (the scheme's default when the URL gives none).
    pub port: u16,
    /// The `Host` header.
    pub authority: String,
    /// Path and query of the request.
    pub path_and_query: String,
}

/// `url` up to its query (`?...`), for errors and `Debug`.
fn without_query(url: &str) -> String {
    url.split_once('?').map_or(url, |(before, _)| before).to_owned()
}

impl OtlpConfig {
    /// The endpoint, checked: the error names the field and the problem.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let field = "tracing.otlp.endpoint";
        let raw = self.endpoint.trim();
        // Errors echo the URL without its query, which may hold a token.
        let shown = without_query(raw);
        let raw_for_errors = shown.as_str();
        let lower = raw.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(ConfigError(format!(
                "{field}: {raw_for_errors:?} must start with http:// or https:// (OTLP/HTTP; e.g. http://127.0.0.1:4318/v1/traces)"
            )));
        }
        let uri: Uri =
            raw.parse().map_err(|e| ConfigError(format!("{field}: {raw_for_errors:?} is not a URL: {e}")))?;
        let tls = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let Some(authority) = uri.authority() else {
            return Err(ConfigError(format!("{field}: {raw_for_errors:?} names no host")));
        };
        if authority.as_str().contains('@') {
            return Err(ConfigError(format!(
                "{field}: credentials in the URL are not sent; put them in tracing.otlp.headers (e.g. authorization)"
            )));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(ConfigError(format!("{field}: {raw_for_errors:?} names no host")));
        }
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if uri.path() == "/" {
            return Err(ConfigError(format!(
                "{field}: {raw_for_errors:?} has no path; the OTLP/HTTP traces URL is usually {}://{}/v1/traces",
                if tls { "https" } else { "http" },
                authority
            )));
        }
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_and_query: path_and_query.to_owned(),
        })
    }

    /// The extra headers, checked.
    pub fn header_map(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
        if self.headers.len() > MAX_HEADERS {
            return Err(ConfigError(format!("tracing.otlp.headers: at most {MAX_HEADERS} headers")));
        }
        let mut out = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let field = format!("tracing.otlp.headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError(format!("{field}: {name:?} is not a header name")))?;
            if RESERVED_HEADERS.contains(&n.as_str()) {
                return Err(ConfigError(format!("{field}: the export request sets this header itself")));
            }
            // The value is a secret: never repeated in the error.
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                ConfigError(format!("{field}: the value is not a valid header value (control characters or non-ASCII)"))
            })?;
            v.set_sensitive(true);
            out.push((n, v));
        }
        Ok(out)
    }
}

impl TracingConfig {
    /// Checks what the types cannot; the error names the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.sample_ratio.is_finite() || !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError(format!(
                "tracing.sample_ratio: {} is not between 0 and 1 (1 records every new trace, 0.01 one in a hundred)",
                self.sample_ratio
            )));
        }
        let name = self.service_name.trim();
        if name.is_empty() || name.len() > 255 {
            return Err(ConfigError("tracing.service_name: 1 to 255 characters".into()));
        }
        if self.resource.len() > MAX_RESOURCE_ATTRIBUTES {
            return Err(ConfigError(format!("tracing.resource: at most {MAX_RESOURCE_ATTRIBUTES} attributes")));
        }
        for (key, value) in &self.resource {
            if key.trim().is_empty() || key.len() > 255 {
                return Err(ConfigError(format!(
                    "tracing.resource: {key:?} is not an attribute name (1 to 255 characters)"
                )));
            }
            if key == "service.name" {
                return Err(ConfigError("tracing.resource.service.name: set tracing.service_name instead".into()));
            }
            if value.len() > shardgate_core::trace::layer::MAX_ATTRIBUTE_BYTES {
                return Err(ConfigError(format!(
                    "tracing.resource.{key}: longer than {} bytes",
                    shardgate_core::trace::layer::MAX_ATTRIBUTE_BYTES
                )));
            }
        }
        if self.max_queue == 0 || self.max_queue > MAX_QUEUE_LIMIT {
            return Err(ConfigError(format!("tracing.max_queue: 1 to {MAX_QUEUE_LIMIT} spans")));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_LIMIT {
            return Err(ConfigError(format!("tracing.batch_size: 1 to {MAX_BATCH_LIMIT} spans")));
        }
        if self.batch_size > self.max_queue {
            return Err(ConfigError("tracing.batch_size cannot exceed tracing.max_queue".into()));
        }
        if self.export_interval.get().is_zero() {
            return Err(ConfigError("tracing.export_interval must be greater than 0".into()));
        }
        if let Some(otlp) = &self.otlp {
            otlp.endpoint()?;
            otlp.header_map()?;
            let t = otlp.timeout.get();
            if t.is_zero() || t.as_secs() > MAX_TIMEOUT_SECS {
                return Err(ConfigError(format!("tracing.otlp.timeout: more than 0 and at most {MAX_TIMEOUT_SECS}s")));
            }
            if let Some(ca) = &otlp.ca_file {
                if !otlp.endpoint()?.tls {
                    return Err(ConfigError("tracing.otlp.ca_file: only an https:// endpoint uses a CA".into()));
                }
                if !ca.is_file() {
                    return Err(ConfigError(format!("tracing.otlp.ca_file: {} is not a readable file", ca.display())));
                }
            }
        }
        Ok(())
    }

    /// Adds the headers of [`HEADERS_ENV`] (`value` is its content) to
    /// `tracing.otlp.headers`; they win over the file's.
    pub fn add_env_headers(&mut self, value: &str) -> Result<(), ConfigError> {
        let Some(otlp) = self.otlp.as_mut() else { return Ok(()) };
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, v)) = pair.split_once('=') else {
                return Err(ConfigError(format!("{HEADERS_ENV}: an entry is not name=value")));
            };
            let decoded = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .map_err(|_| ConfigError(format!("{HEADERS_ENV}: the value of {:?} is not UTF-8", name.trim())))?;
            otlp.headers.insert(name.trim().to_ascii_lowercase(), decoded.into_owned());
        }
        Ok(())
    }

    /// Warnings for settings that work but leak or lose something.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(otlp) = &self.otlp
            && let Ok(e) = otlp.endpoint()
            && !e.tls
            && !otlp.headers.is_empty()
            && !e.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            && e.host != "localhost"
        {
            out.push(format!(
                "tracing.otlp.endpoint is http:// to {}: the tracing.otlp.headers (credentials?) cross the network in clear text; use https://",
                e.host
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn check(yaml: &str) -> Result<Config, String> {
        let c = Config::parse(yaml).map_err(|e| e.0)?;
        c.tracing.check().map_err(|e| e.0)?;
        Ok(c)
    }

    #[test]
    fn defaults_export_nothing_and_follow_the_sdk_batch_defaults() {
        let c = Config::default();
        assert!(c.tracing.otlp.is_none());
        assert_eq!((c.tracing.max_queue, c.tracing.batch_size), (2048, 512));
        assert_eq!(c.tracing.export_interval.get().as_secs(), 5);
        assert_eq!(c.tracing.sample_ratio, 1.0);
        assert_eq!(c.tracing.service_name, "shardgate");
        c.tracing.check().expect("defaults are valid");
    }

    #[test]
    fn a_full_section_parses() {
        let c = check(
            "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n    headers:\n      authorization: Bearer abc\n    timeout: 3s\n  service_name: edge-eu\n  sample_ratio: 0.25\n  resource:\n    deployment.environment: prod\n  max_queue: 100\n  batch_size: 10\n  export_interval: 250ms\n",
        )
        .expect("valid");
        let otlp = c.tracing.otlp.as_ref().expect("otlp");
        let e = otlp.endpoint().expect("endpoint");
        assert!(!e.tls);
        assert_eq!((e.host.as_str(), e.port, e.path_and_query.as_str()), ("127.0.0.1", 4318, "/v1/traces"));
        assert_eq!(otlp.header_map().expect("headers")[0].0, "authorization");
        assert_eq!(c.tracing.sample_ratio, 0.25);
        let shown = format!("{c:?}");
        assert!(!shown.contains("Bearer abc"), "{shown}");
        let written = serde_json::to_string(&c).expect("serialize");
        assert!(!written.contains("Bearer abc"), "{written}");
        let e = OtlpConfig { endpoint: "https://[::1]/otlp/v1/traces?tenant=a".into(), ..otlp.clone() }
            .endpoint()
            .expect("https");
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port, e.path_and_query.as_str()), ("::1", 443, "/otlp/v1/traces?tenant=a"));
    }

    #[test]
    fn a_token_in_the_endpoint_query_is_never_shown() {
        let e =
            check("tracing:\n  otlp:\n    endpoint: \"grpc://c:4317/v1/traces?token=SECRET\"\n").expect_err("scheme");
        assert!(e.contains("grpc://c:4317/v1/traces") && !e.contains("SECRET"), "{e}");
        let c = Config::parse("tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces?token=SECRET\"\n")
            .expect("parse");
        let shown = format!("{:?}", c.tracing.otlp.expect("otlp"));
        assert!(shown.contains("http://c:4318/v1/traces") && !shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        for (yaml, expected) in [
            ("tracing:\n  sample_ratio: 1.5\n", "tracing.sample_ratio: 1.5 is not between 0 and 1"),
            ("tracing:\n  sample_ratio: -0.1\n", "tracing.sample_ratio"),
            ("tracing:\n  sample_ratio: .nan\n", "tracing.sample_ratio"),
            ("tracing:\n  otlp:\n    endpoint: \"127.0.0.1:4318\"\n", "tracing.otlp.endpoint"),
            ("tracing:\n  otlp:\n    endpoint: \"http://bad host/v1/traces\"\n", "is not a URL"),
            ("tracing:\n  otlp:\n    endpoint: \"grpc://c:4317/v1/traces\"\n", "must start with http:// or https://"),
            (
                "tracing:\n  otlp:\n    endpoint: \"http://c:4318\"\n",
                "has no path; the OTLP/HTTP traces URL is usually http://c:4318/v1/traces",
            ),
            ("tracing:\n  otlp:\n    endpoint: \"http://u:p@c:4318/v1/traces\"\n", "credentials in the URL"),
            ("tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces\"\n    timeout: 0s\n", "tracing.otlp.timeout"),
            (
                "tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces\"\n    headers:\n      \"bad name\": x\n",
                "tracing.otlp.headers.bad name",
            ),
            (
                "tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces\"\n    headers:\n      content-type: x\n",
                "sets this header itself",
            ),
            (
                "tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces\"\n    ca_file: /etc/hostname\n",
                "only an https:// endpoint",
            ),
            (
                "tracing:\n  otlp:\n    endpoint: \"https://c/v1/traces\"\n    ca_file: /nonexistent.pem\n",
                "tracing.otlp.ca_file: /nonexistent.pem",
            ),
            ("tracing:\n  max_queue: 0\n", "tracing.max_queue"),
            ("tracing:\n  batch_size: 4096\n  max_queue: 100\n", "tracing.batch_size"),
            ("tracing:\n  export_interval: 0s\n", "tracing.export_interval"),
            ("tracing:\n  service_name: \"\"\n", "tracing.service_name"),
            ("tracing:\n  resource:\n    service.name: x\n", "tracing.resource.service.name"),
        ] {
            let e = check(yaml).expect_err(yaml);
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        // A bad header value is named, never echoed.
        let e = check("tracing:\n  otlp:\n    endpoint: \"http://c:4318/v1/traces\"\n    headers:\n      authorization: \"secret\\nx\"\n")
            .expect_err("control character");
        assert!(e.contains("tracing.otlp.headers.authorization") && !e.contains("secret"), "{e}");
        // Unknown fields are named with their path.
        let e = Config::parse("tracing:\n  otlp:\n    url: x\n").expect_err("unknown").0;
        assert!(e.contains("tracing.otlp") && e.contains("url"), "{e}");
    }

    #[test]
    fn environment_headers_add_to_and_win_over_the_file() {
        let mut c = check("tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n    headers:\n      x-tenant: a\n      authorization: old\n").expect("valid").tracing;
        c.add_env_headers("Authorization=Basic%20dXNlcjpwdw==, x-extra = 1").expect("env");
        let h = &c.otlp.as_ref().expect("otlp").headers;
        assert_eq!(h["authorization"], "Basic dXNlcjpwdw==");
        assert_eq!((h["x-tenant"].as_str(), h["x-extra"].as_str()), ("a", "1"));
        assert!(c.add_env_headers("no-equals-sign").unwrap_err().0.contains(HEADERS_ENV));
        let mut off = TracingConfig::default();
        off.add_env_headers("a=b").expect("ignored without an endpoint");
    }

    #[test]
    fn credentials_over_clear_text_are_warned_about() {
        let c = check("tracing:\n  otlp:\n    endpoint: http://collector.example:4318/v1/traces\n    headers:\n      authorization: x\n").expect("valid");
        assert!(c.tracing.warnings().iter().any(|w| w.contains("clear text")));
        let c = check(
            "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n    headers:\n      authorization: x\n",
        )
        .expect("valid");
        assert!(c.tracing.warnings().is_empty());
    }
}
