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
//! Input is bounded: [`MAX_LABELS`] labels per sample, and at most
//! [`MAX_SAMPLES`] samples are returned: a registry with more gives the
//! first ones and `"truncated": true` (the dashboard still draws what it
//! got), not an error.
//!
//! Encoding and parsing the registry costs CPU in proportion to its size,
//! so answers are made one at a time ([`Cache`]) and one answer is reused
//! for [`CACHE_FOR`]: any number of open dashboards polling at once cost
//! at most one encoding per [`CACHE_FOR`].

use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Map, Number, Value, json};
use tokio::time::Instant;

/// Most samples returned.
pub const MAX_SAMPLES: usize = 200_000;
/// How long one answer is served again to every poll (the dashboard polls
/// every few seconds; rates need two answers, not fresher ones).
pub const CACHE_FOR: Duration = Duration::from_secs(1);
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

/// Samples read from a text, at most a bound of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The samples, in the text's order.
    pub samples: Vec<Sample>,
    /// More samples followed than the bound let through.
    pub truncated: bool,
}

/// Parses the samples of Prometheus or OpenMetrics text, at most
/// [`MAX_SAMPLES`] of them.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    parse_at_most(text, MAX_SAMPLES)
}

/// Parses the first `max` samples; says whether more followed.
pub fn parse_at_most(text: &str, max: usize) -> Result<Parsed, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if samples.len() >= max {
            return Ok(Parsed { samples, truncated: true });
        }
        samples.push(sample(line).map_err(|why| ParseError { line: i + 1, why })?);
    }
    Ok(Parsed { samples, truncated: false })
}

/// The answer's JSON for metrics `text` read at `time` (unix seconds):
/// `{"time","samples":[...],"truncated"}` with at most `max` samples.
pub fn answer(text: &str, max: usize, time: f64) -> Result<Value, ParseError> {
    let parsed = parse_at_most(text, max)?;
    if parsed.truncated {
        tracing::warn!(
            max_samples = max,
            "the metrics registry holds more samples than /ui/api/stats returns; the answer is truncated"
        );
    }
    let samples: Vec<Value> = parsed.samples.iter().map(Sample::to_json).collect();
    Ok(json!({"time": time, "samples": samples, "truncated": parsed.truncated}))
}

/// Why no answer was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// Another answer was being made for longer than the wait allowed.
    Busy,
    /// Making the answer failed.
    Failed(String),
}

/// The last answer and when it was made; making a new one holds the lock,
/// so answers are made one at a time (a `Semaphore(1)` that also holds the
/// result) and callers that queued meanwhile get that fresh one.
#[derive(Debug, Default)]
pub struct Cache {
    slot: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
}

impl Cache {
    /// The answer made less than [`CACHE_FOR`] ago, else a new one from
    /// `make`. Waits at most `wait` for an answer being made by another
    /// caller.
    pub async fn get_or_make<F, Fut>(&self, wait: Duration, make: F) -> Result<Bytes, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        let mut slot = tokio::time::timeout(wait, self.slot.lock()).await.map_err(|_| CacheError::Busy)?;
        let started = Instant::now();
        if let Some((made, body)) = slot.as_ref()
            && started.saturating_duration_since(*made) < CACHE_FOR
        {
            return Ok(body.clone());
        }
        let body = make().await.map_err(CacheError::Failed)?;
        *slot = Some((started, body.clone()));
        Ok(body)
    }
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
        let parsed = parse(text).expect("parse");
        assert!(!parsed.truncated);
        let s = parsed.samples;
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
    fn past_the_bound_the_first_samples_come_with_truncated() {
        let text = "# TYPE a gauge\na 1\nb 2\n# comment\nc 3\n";
        let all = parse_at_most(text, 3).expect("parse");
        assert_eq!((all.samples.len(), all.truncated), (3, false), "exactly the bound is not truncated");
        let some = parse_at_most(text, 2).expect("parse");
        assert_eq!(some.samples.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(some.truncated);
        let body = answer(text, 2, 1.5).expect("answer");
        assert_eq!(
            body,
            serde_json::json!({"time": 1.5, "samples": [
                {"name": "a", "labels": {}, "value": 1.0},
                {"name": "b", "labels": {}, "value": 2.0}
            ], "truncated": true})
        );
        assert_eq!(answer(text, MAX_SAMPLES, 1.5).expect("answer")["truncated"], false);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_made_one_at_a_time_and_reused_for_a_second() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Cache::default();
        let made = AtomicUsize::new(0);
        let make = || async {
            let n = made.fetch_add(1, Ordering::SeqCst) + 1;
            // Let the other caller try meanwhile.
            tokio::task::yield_now().await;
            Ok::<_, String>(Bytes::from(n.to_string()))
        };
        let wait = Duration::from_secs(5);
        let (a, b) = tokio::join!(cache.get_or_make(wait, make), cache.get_or_make(wait, make));
        assert_eq!((a, b), (Ok(Bytes::from("1")), Ok(Bytes::from("1"))), "the second caller got the first answer");
        tokio::time::advance(CACHE_FOR - Duration::from_millis(1)).await;
        assert_eq!(cache.get_or_make(wait, make).await, Ok(Bytes::from("1")), "still fresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get_or_make(wait, make).await, Ok(Bytes::from("2")), "made again after CACHE_FOR");
        assert_eq!(made.load(Ordering::SeqCst), 2);
        let failed = cache.get_or_make(wait, || async { Err::<Bytes, _>("broken".to_owned()) });
        tokio::time::advance(CACHE_FOR).await;
        assert_eq!(failed.await, Err(CacheError::Failed("broken".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_waits_for_another_answer_only_so_long() {
        let cache = std::sync::Arc::new(Cache::default());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let slow = {
            let cache = std::sync::Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_make(Duration::from_secs(1), || async move {
                        started_tx.send(()).ok();
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, String>(Bytes::from("slow"))
                    })
                    .await
            })
        };
        started_rx.await.expect("started");
        let r = cache.get_or_make(Duration::from_secs(1), || async { Ok::<_, String>(Bytes::from("x")) }).await;
        assert_eq!(r, Err(CacheError::Busy));
        assert_eq!(slow.await.expect("task"), Ok(Bytes::from("slow")));
    }

    #[test]
    fn the_registry_round_trips() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let m = shardgate_core::Metrics::new();
        let f: Family<Vec<(String, String)>, Counter> = Family::default();
        f.get_or_create(&vec![("route".to_owned(), "r\"1".to_owned())]).inc_by(7);
        m.register(|r| r.register("test_hits", "Hits", f.clone()));
        let s = parse(&m.encode_openmetrics().expect("encode")).expect("parse").samples;
        assert_eq!(
            s,
            vec![Sample { name: "shardgate_test_hits_total".into(), labels: labels(&[("route", "r\"1")]), value: 7.0 }]
        );
    }
}
