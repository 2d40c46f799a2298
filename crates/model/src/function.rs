//! The validated `functions` resource: CloudFront Functions with a
//! DEVELOPMENT stage (what the user edits and tests) and a LIVE stage (what
//! behaviors run), as CloudFront's function stages (AWS CloudFront Developer
//! Guide, "Managing functions": a function is published from DEVELOPMENT to
//! LIVE, and only LIVE code runs on requests).
//!
//! Validation compiles both stages with [`shardgate_functions::compile`], so
//! a syntax error is refused with its line and column before anything is
//! stored, and the LIVE stage's [`CompiledFunction`] is what the snapshot
//! hands the edge.

use shardgate_functions::{CodeError, CompiledFunction, EventType, JsRuntime};

use crate::wire::FunctionWire;
use crate::wire::function::{FunctionAssociationWire, FunctionStageWire};
use crate::{Invalid, ResourceId};

/// CloudFront's limit on `Comment` (the CloudFront API Reference, `FunctionConfig`).
pub const MAX_COMMENT_CHARS: usize = 128;

/// One stage of a function, compiled.
#[derive(Debug, Clone)]
pub struct FunctionStage {
    /// The checked code, ready to run.
    pub compiled: CompiledFunction,
}

impl FunctionStage {
    /// The runtime.
    pub fn runtime(&self) -> JsRuntime {
        self.compiled.runtime()
    }

    /// The code.
    pub fn code(&self) -> &str {
        self.compiled.code()
    }
}

impl PartialEq for FunctionStage {
    fn eq(&self, other: &Self) -> bool {
        self.runtime() == other.runtime() && self.code() == other.code()
    }
}

/// A published (LIVE) stage.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStage {
    /// The code and runtime.
    pub stage: FunctionStage,
    /// When it was published (seconds since the epoch).
    pub published_at: i64,
}

/// A validated function.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Name, for logs and metrics.
    pub name: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// The DEVELOPMENT stage.
    pub development: FunctionStage,
    /// The LIVE stage; `None` until the function is published.
    pub live: Option<LiveStage>,
}

/// A function a behavior runs (CloudFront `FunctionAssociation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionAssociation {
    /// When it runs.
    pub event_type: EventType,
    /// The `functions` resource whose LIVE stage runs.
    pub function: ResourceId,
}

/// Validates a behavior's `function_associations` (`field` is its path):
/// known event types, at most one function per event type (CloudFront's rule).
pub fn associations_from_wire(
    field: &str,
    w: &Option<Vec<FunctionAssociationWire>>,
) -> Result<Vec<FunctionAssociation>, Invalid> {
    let mut out: Vec<FunctionAssociation> = Vec::new();
    for (i, a) in w.iter().flatten().enumerate() {
        let at = format!("{field}[{i}]");
        let event_type = match a.event_type.as_deref() {
            Some("viewer-request") => EventType::ViewerRequest,
            Some("viewer-response") => EventType::ViewerResponse,
            Some(other) => {
                return Err(Invalid::new(
                    format!("{at}.event_type"),
                    format!("{other:?} is not an event type (viewer-request or viewer-response)"),
                ));
            }
            None => return Err(Invalid::new(format!("{at}.event_type"), "required")),
        };
        let Some(id) = &a.function else { return Err(Invalid::new(format!("{at}.function"), "required")) };
        let function = ResourceId::from_json(&format!("{at}.function"), id)?;
        if out.iter().any(|o| o.event_type == event_type) {
            return Err(Invalid::new(
                format!("{at}.event_type"),
                format!("a behavior has at most one {} function", event_type.as_str()),
            ));
        }
        out.push(FunctionAssociation { event_type, function });
    }
    Ok(out)
}

/// The checked runtime name of `field`.
fn runtime(field: &str, v: &Option<String>) -> Result<JsRuntime, Invalid> {
    let Some(name) = v else {
        return Err(Invalid::new(field, "required: cloudfront-js-1.0 or cloudfront-js-2.0"));
    };
    JsRuntime::parse(name).ok_or_else(|| {
        Invalid::new(field, format!("{name:?} is not a runtime (cloudfront-js-1.0 or cloudfront-js-2.0)"))
    })
}

/// Compiles `code` (field `field`); a code error names its line and column.
pub fn compile_stage(field: &str, runtime: JsRuntime, code: &Option<String>) -> Result<FunctionStage, Invalid> {
    let Some(code) = code else { return Err(Invalid::new(field, "required")) };
    let compiled = shardgate_functions::compile(runtime, code).map_err(|e| code_invalid(field, &e))?;
    Ok(FunctionStage { compiled })
}

fn code_invalid(field: &str, e: &CodeError) -> Invalid {
    Invalid::new(field, e.to_string())
}

fn live_from_wire(w: &FunctionStageWire) -> Result<LiveStage, Invalid> {
    let runtime = runtime("live.runtime", &w.runtime)?;
    let stage = compile_stage("live.code", runtime, &w.code)?;
    let Some(published_at) = w.published_at else { return Err(Invalid::new("live.published_at", "required")) };
    Ok(LiveStage { stage, published_at })
}

impl Function {
    /// Validates the wire form, compiling both stages.
    pub fn from_wire(w: &FunctionWire) -> Result<Self, Invalid> {
        crate::wire::check_name_desc(&w.name, &w.desc)?;
        crate::wire::check_labels(&w.labels)?;
        if let Some(c) = &w.comment
            && c.chars().count() > MAX_COMMENT_CHARS
        {
            return Err(Invalid::new("comment", format!("must be at most {MAX_COMMENT_CHARS} characters long")));
        }
        let rt = runtime("runtime", &w.runtime)?;
        let development = compile_stage("code", rt, &w.code)?;
        let live = w.live.as_ref().map(live_from_wire).transpose()?;
        Ok(Function { name: w.name.clone(), comment: w.comment.clone(), development, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn parse(v: serde_json::Value) -> Result<Function, Invalid> {
        Function::from_wire(&json::from_value::<FunctionWire>(v)?)
    }

    #[test]
    fn code_errors_name_the_field_line_and_column() {
        let err = parse(serde_json::json!({"runtime": "cloudfront-js-1.0", "code": "function handler(e) {\n  return e.request\n  var = 1;\n}"}))
            .expect_err("syntax error");
        assert_eq!(err.field, "code");
        assert!(err.reason.starts_with("line 3, column 7: SyntaxError"), "{}", err.reason);
        let err = parse(serde_json::json!({"runtime": "cloudfront-js-3.0", "code": "function handler(e) {}"}))
            .expect_err("runtime");
        assert_eq!(err.field, "runtime");
        let err = parse(serde_json::json!({"runtime": "cloudfront-js-2.0"})).expect_err("code required");
        assert_eq!((err.field.as_str(), err.reason.as_str()), ("code", "required"));
        let err = parse(
            serde_json::json!({"runtime": "cloudfront-js-2.0", "code": "function handler(e) { return e.request; }",
            "live": {"runtime": "cloudfront-js-2.0", "code": "function nope() {}", "published_at": 1}}),
        )
        .expect_err("live has no handler");
        assert_eq!(err.field, "live.code");
        assert!(err.reason.contains("handler"), "{}", err.reason);
    }

    #[test]
    fn behavior_associations_are_checked() {
        let dist = |assoc: serde_json::Value| {
            let v = serde_json::json!({"hosts": ["cdn.example.com"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:80": 1}}}},
                "default_behavior": {"function_associations": assoc}});
            crate::Distribution::from_wire(
                ResourceId::parse("d").expect("id"),
                &json::from_value::<crate::wire::DistributionWire>(v)?,
            )
        };
        let d = dist(serde_json::json!([{"event_type": "viewer-request", "function": "vendor"},
            {"event_type": "viewer-response", "function": 7}]))
        .expect("valid");
        let a = &d.default_behavior.function_associations;
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].event_type, a[0].function.as_str()), (EventType::ViewerRequest, "vendor"));
        assert_eq!((a[1].event_type, a[1].function.as_str()), (EventType::ViewerResponse, "7"));
        let err = dist(serde_json::json!([{"event_type": "viewer-request", "function": "a"},
            {"event_type": "viewer-request", "function": "b"}]))
        .expect_err("two viewer-request functions");
        assert_eq!(err.field, "default_behavior.function_associations[1].event_type");
        let err = dist(serde_json::json!([{"event_type": "origin-request", "function": "a"}])).expect_err("type");
        assert_eq!(err.field, "default_behavior.function_associations[0].event_type");
        let err = dist(serde_json::json!([{"event_type": "viewer-request"}])).expect_err("function");
        assert_eq!(err.field, "default_behavior.function_associations[0].function");
        let refs = crate::resource::Wire::from_value(
            crate::ResourceKind::Distributions,
            serde_json::json!({"hosts": ["a.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:80": 1}}}},
                "behaviors": [{"path_pattern": "/x/*", "function_associations": [{"event_type": "viewer-response", "function": "f"}]}]}),
        )
        .expect("wire")
        .references();
        assert!(refs.iter().any(|r| r.kind == crate::ResourceKind::Functions
            && r.id.as_str() == "f"
            && r.field == "behaviors[0].function_associations[0].function"));
    }

    #[test]
    fn stages_compile() {
        let f = parse(serde_json::json!({"name": "vendor", "runtime": "cloudfront-js-2.0", "code": "function handler(e) { return e.request; }",
            "live": {"runtime": "cloudfront-js-1.0", "code": "function handler(e) { return e.request; }", "published_at": 1700000000}}))
        .expect("valid");
        assert_eq!(f.development.runtime(), JsRuntime::V2);
        let live = f.live.expect("live");
        assert_eq!((live.stage.runtime(), live.published_at), (JsRuntime::V1, 1_700_000_000));
    }
}
