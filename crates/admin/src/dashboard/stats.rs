//! `GET /ui/api/stats`: every sample of the process's metrics registry (what
//! `/metrics` shows) as JSON, for the dashboard's live charts.
//!
//! prometheus-client offers no way to read values back out of a registry,
//! so the registry is encoded in the OpenMetrics text format and parsed
//! here. The parser reads what the exposition formats allow for samples
//! (prometheus/docs `exposition_formats.md`, the OpenMetrics 1.0
//! specification): `name{label="value",...} value [timestamp] [# exemplar]`,
//! label values with the escapes `\\`, `\"` and `\n`, values as floats or
//! `+Inf`, `-Inf`, `NaN` (JSON has no such numbers: they become `null`).
//! Comment lines (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) are skipped.
//! Input is bounded: [`MAX_SAMPLES`] samples, [`MAX_LABELS`] labels each.

use serde_json::{Map, Number, Value};

/// Most samples returned.
pub const MAX_SAMPLES: usize = 200_000;
/// Most labels on one sample.
pub const MAX_LABELS: usize = 64;

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`shardgate_stream_connections_active`,
    /// `..._bucket`, `..._total`).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// `{"name","labels":{...},"value"}`; a value that is not finite is `null`.
    pub fn to_json(&self) -> Value {
        let labels: Map<String, Value> =
            self.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let value = Number::from_f64(self.value).map_or(Value::Null, Value::Number);
        let mut obj = Map::new();
        obj.insert("name".into(), Value::String(self.name.clone()));
        obj.insert("labels".into(), Value::Object(labels));
        obj.insert("value".into(), value);
        Value::Object(obj)
    }
}

/// Why a line was refused: its number (from 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "metrics text line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for ParseError {}

/// Parses the samples of Prometheus or OpenMetrics text.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_SAMPLES {
            return Err(ParseError { line: i + 1, why: "more samples than the dashboard reads" });
        }
        out.push(sample(line).map_err(|why| ParseError { line: i + 1, why })?);
    }
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if !name.starts_with(is_name_start) {
        return Err("a sample must start with a metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let trimmed = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() {
        return Err("the value is missing");
    }
    if trimmed.len() == rest.len() {
        return Err("a space is expected before the value");
    }
    let rest = trimmed;
    let value_text = rest.split([' ', '\t']).next().unwrap_or_default();
    let value = match value_text {
        "" => return Err("the value is missing"),
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| "the value is not a number")?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Reads `name="value",...}`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, &'static str> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        if labels.len() >= MAX_LABELS {
            return Err("too many labels");
        }
        let end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
        let name = &s[..end];
        if !name.starts_with(is_name_start) {
            return Err("a label name is expected");
        }
        s = s[end..].trim_start_matches([' ', '\t']);
        s = s.strip_prefix('=').ok_or("'=' is expected after a label name")?;
        s = s.trim_start_matches([' ', '\t']);
        s = s.strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("a label value is not closed"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("unknown escape in a label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        s = s[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("',' or '}' is expected after a label");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn samples_of_every_kind_parse() {
        let text = "# HELP shardgate_stream_connections_active Open connections.\n\
            # TYPE shardgate_stream_connections_active gauge\n\
            shardgate_stream_connections_active{listener=\"tls/127.0.0.1:8888\"} 3\n\
            shardgate_config_generation 17\n\
            # TYPE shardgate_origin_seconds histogram\n\
            shardgate_origin_seconds_bucket{le=\"0.005\",origin=\"a\"} 1\n\
            shardgate_origin_seconds_bucket{le=\"+Inf\",origin=\"a\"} 4\n\
            shardgate_origin_seconds_sum{origin=\"a\"} 0.25\n\
            shardgate_x_total{a=\"q\\\"uote\",b=\"back\\\\slash\",c=\"new\\nline\",} 1.5e3 1700000000000\n\
            shardgate_y{} NaN\n\
            shardgate_z -Inf\n\
            shardgate_w{k=\"v\"} 2 # {trace_id=\"abc\"} 1.0\n\
            # EOF\n";
        let s = parse(text).expect("parse");
        assert_eq!(s.len(), 9);
        assert_eq!(
            s[0],
            Sample {
                name: "shardgate_stream_connections_active".into(),
                labels: labels(&[("listener", "tls/127.0.0.1:8888")]),
                value: 3.0
            }
        );
        assert_eq!(s[1].labels, labels(&[]));
        assert_eq!(s[3].labels, labels(&[("le", "+Inf"), ("origin", "a")]));
        assert_eq!(s[5].labels, labels(&[("a", "q\"uote"), ("b", "back\\slash"), ("c", "new\nline")]));
        assert_eq!(s[5].value, 1500.0);
        assert!(s[6].value.is_nan() && s[7].value == f64::NEG_INFINITY);
        assert_eq!((s[8].name.as_str(), s[8].value), ("shardgate_w", 2.0), "the exemplar is ignored");
        assert_eq!(s[6].to_json()["value"], Value::Null, "JSON has no NaN");
        assert_eq!(
            s[0].to_json(),
            serde_json::json!({"name": "shardgate_stream_connections_active", "labels": {"listener": "tls/127.0.0.1:8888"}, "value": 3.0})
        );
    }

    #[test]
    fn broken_lines_are_refused_with_their_number() {
        for (line, why) in [
            ("9bad 1", "a sample must start with a metric name"),
            ("m{a=\"1\" 2", "',' or '}' is expected after a label"),
            ("m{a=1} 2", "a label value must be quoted"),
            ("m{a=\"1} 2", "a label value is not closed"),
            ("m{a=\"\\t\"} 2", "unknown escape in a label value"),
            ("m{=\"1\"} 2", "a label name is expected"),
            ("m{a\"1\"} 2", "'=' is expected after a label name"),
            ("m", "the value is missing"),
            ("m one", "the value is not a number"),
            ("m!x 1", "a space is expected before the value"),
            ("m{a=\"1\"}2", "a space is expected before the value"),
        ] {
            let e = parse(&format!("# TYPE m gauge\n{line}\n")).expect_err(line);
            assert_eq!(e, ParseError { line: 2, why }, "{line}");
        }
        let many: String = (0..=MAX_LABELS).map(|i| format!("l{i}=\"v\",")).collect();
        assert_eq!(parse(&format!("m{{{many}}} 1")).expect_err("labels").why, "too many labels");
    }

    #[test]
    fn the_registry_round_trips() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let m = shardgate_core::Metrics::new();
        let f: Family<Vec<(String, String)>, Counter> = Family::default();
        f.get_or_create(&vec![("route".to_owned(), "r\"1".to_owned())]).inc_by(7);
        m.register(|r| r.register("test_hits", "Hits", f.clone()));
        let s = parse(&m.encode_openmetrics().expect("encode")).expect("parse");
        assert_eq!(
            s,
            vec![Sample { name: "shardgate_test_hits_total".into(), labels: labels(&[("route", "r\"1")]), value: 7.0 }]
        );
    }
}
