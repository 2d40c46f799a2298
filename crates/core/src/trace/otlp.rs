//! The OTLP/HTTP JSON body of a batch of spans: an
//! `ExportTraceServiceRequest` in the JSON Protobuf encoding that the OTLP
//! specification defines (opentelemetry-proto `docs/specification.md`,
//! "JSON Protobuf Encoding"): lowerCamelCase field names, `traceId` and
//! `spanId` as hex strings (not base64), enums as integers, 64-bit integers
//! as decimal strings (proto3's JSON mapping), one resource, one scope.
//!
//! Pure: bytes in, bytes out.

use serde::Serialize;

use super::layer::{FinishedSpan, StatusCode, Value};

/// `flags` bit 8: whether the parent's remoteness is known; bit 9: it is
/// remote (opentelemetry-proto `trace.proto`, `SpanFlags`).
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// Who produced the spans: the OTLP `Resource` and instrumentation scope.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Resource attributes (`service.name`, `service.version`, `host.name`, ...).
    pub attributes: Vec<(String, Value)>,
    /// The instrumentation scope's name.
    pub scope_name: &'static str,
    /// The instrumentation scope's version.
    pub scope_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: ResourceJson<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct ResourceJson<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_state: Option<&'a str>,
    flags: u32,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

#[derive(Serialize)]
struct Status<'a> {
    code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

/// OTLP's `AnyValue`, its variants named as the JSON keys are.
#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    String(&'a str),
    /// proto3 JSON writes int64 as a decimal string.
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "boolValue")]
    Bool(bool),
    #[serde(rename = "doubleValue")]
    Double(f64),
    /// A non-finite double, as proto3 JSON writes it.
    #[serde(rename = "doubleValue")]
    DoubleText(&'static str),
}

fn non_finite(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn any_value(v: &Value) -> AnyValue<'_> {
    match v {
        Value::Str(s) => AnyValue::String(s),
        Value::Int(i) => AnyValue::Int(i.to_string()),
        Value::Bool(b) => AnyValue::Bool(*b),
        // JSON has no NaN or infinity: proto3's JSON mapping writes them as
        // the strings "NaN", "Infinity", "-Infinity".
        Value::Double(d) if !d.is_finite() => AnyValue::DoubleText(non_finite(*d)),
        Value::Double(d) => AnyValue::Double(*d),
    }
}

fn span_json(s: &FinishedSpan) -> Span<'_> {
    let remote = if s.parent_span_id.is_some() {
        FLAG_HAS_IS_REMOTE | if s.remote_parent { FLAG_IS_REMOTE } else { 0 }
    } else {
        0
    };
    Span {
        trace_id: s.trace_id.to_string(),
        span_id: s.span_id.to_string(),
        parent_span_id: s.parent_span_id.map(|p| p.to_string()),
        trace_state: s.trace_state.as_deref(),
        flags: u32::from(s.flags) | remote,
        name: s.name,
        kind: s.kind as u8,
        start_time_unix_nano: s.start_unix_nanos.to_string(),
        end_time_unix_nano: s.end_unix_nanos.to_string(),
        attributes: s.attributes.iter().map(|(k, v)| KeyValue { key: k, value: any_value(v) }).collect(),
        status: (s.status != StatusCode::Unset)
            .then_some(Status { code: s.status as u8, message: s.status_message.as_deref() }),
    }
}

/// The `ExportTraceServiceRequest` JSON for `spans`.
pub fn encode(resource: &Resource, spans: &[FinishedSpan]) -> Result<Vec<u8>, serde_json::Error> {
    let request = Request {
        resource_spans: [ResourceSpans {
            resource: ResourceJson {
                attributes: resource.attributes.iter().map(|(k, v)| KeyValue { key: k, value: any_value(v) }).collect(),
            },
            scope_spans: [ScopeSpans {
                scope: Scope { name: resource.scope_name, version: resource.scope_version },
                spans: spans.iter().map(span_json).collect(),
            }],
        }],
    };
    serde_json::to_vec(&request)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::trace::context::{SpanId, TraceId};
    use crate::trace::layer::SpanKind;

    #[test]
    fn a_batch_encodes_in_otlp_json() {
        let resource = Resource {
            attributes: vec![("service.name".into(), Value::Str("shardgate".into()))],
            scope_name: "shardgate",
            scope_version: "0.1.0",
        };
        let span = FinishedSpan {
            trace_id: TraceId([0x5b; 16]),
            span_id: SpanId([0xee; 8]),
            parent_span_id: Some(SpanId([0x01; 8])),
            remote_parent: true,
            flags: 1,
            trace_state: Some(Arc::from("congo=t61rcWkgMzE")),
            name: "edge.request",
            kind: SpanKind::Server,
            start_unix_nanos: 1_544_712_660_000_000_000,
            end_unix_nanos: 1_544_712_661_000_000_000,
            attributes: vec![
                ("http.request.method", Value::Str("GET".into())),
                ("http.response.status_code", Value::Int(200)),
                ("ok", Value::Bool(true)),
                ("ratio", Value::Double(0.5)),
                ("nan", Value::Double(f64::NAN)),
            ],
            status: StatusCode::Error,
            status_message: Some("origin failed".into()),
        };
        let body = encode(&resource, &[span]).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "shardgate");
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "shardgate");
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "5b".repeat(16));
        assert_eq!(s["spanId"], "ee".repeat(8));
        assert_eq!(s["parentSpanId"], "01".repeat(8));
        assert_eq!(s["traceState"], "congo=t61rcWkgMzE");
        assert_eq!(s["flags"], 0x301, "sampled, parent known to be remote");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1544712660000000000");
        assert_eq!(s["endTimeUnixNano"], "1544712661000000000");
        assert_eq!(s["attributes"][0]["value"]["stringValue"], "GET");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "200");
        assert_eq!(s["attributes"][2]["value"]["boolValue"], true);
        assert_eq!(s["attributes"][3]["value"]["doubleValue"], 0.5);
        assert_eq!(s["attributes"][4]["value"]["doubleValue"], "NaN");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["status"]["message"], "origin failed");
    }
}
