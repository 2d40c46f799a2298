//! The health of every checked upstream in the JSON of APISIX's control API
//! (`GET /v1/healthcheck`, `GET /v1/healthcheck/<src_type>/<src_id>`;
//! apache/apisix `apisix/control/v1.lua`, `docs/en/latest/control-api.md`):
//!
//! ```json
//! {"name": "/apisix/upstreams/1", "type": "tcp",
//!  "nodes": [{"ip": "127.0.0.1", "port": 9000, "hostname": "127.0.0.1", "status": "healthy",
//!             "counter": {"success": 0, "http_failure": 0, "tcp_failure": 0, "timeout_failure": 0}}]}
//! ```
//!
//! Unlike APISIX, whose list holds only checkers that have served traffic
//! in the answering worker, the list holds every upstream with `checks`
//! from the moment its configuration loads. `port` is the node's (the
//! traffic port), also when `active.port` probes another one; `ip` is the
//! address last probed or connected to (a name's first address), else the
//! configured host.

use serde_json::{Value, json};
use shardgate_model::ResourceId;

use super::Health;
use crate::{Registry, UpstreamKey};

impl Health {
    /// One checker's entry; `name` is the store key of its resource.
    fn to_json(&self, name: String) -> Value {
        let nodes: Vec<Value> = self
            .info
            .iter()
            .zip(self.nodes.iter())
            .map(|(info, node)| {
                let (state, ip) = {
                    let inner = node.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (inner.state, inner.ip)
                };
                let c = state.counters;
                json!({
                    "ip": ip.map_or_else(|| info.hostname.clone(), |ip| ip.to_string()),
                    "port": info.port,
                    "hostname": info.hostname,
                    "status": state.status.as_str(),
                    "counter": {
                        "success": c.success,
                        "http_failure": c.http_failure,
                        "tcp_failure": c.tcp_failure,
                        "timeout_failure": c.timeout_failure,
                    },
                })
            })
            .collect();
        json!({"name": name, "type": self.checks.active.kind.as_str(), "nodes": nodes})
    }
}

/// The store key of the resource an upstream runtime belongs to, under
/// `prefix` (`/apisix/upstreams/1`, `/apisix/stream_routes/7`).
fn name(prefix: &str, key: &UpstreamKey) -> String {
    format!("{}/{key}", prefix.trim_end_matches('/'))
}

impl Registry {
    /// APISIX's control API answer: `target` `None` lists every checker
    /// (sorted by name); `Some((src_type, src_id))` is one of them, where
    /// `src_type` is `upstreams` or `stream_routes` (an inline upstream).
    /// Returns the HTTP status and the JSON body (`{"error_msg"}` on 404
    /// and 400, worded as APISIX words them).
    pub fn healthcheck_status(&self, prefix: &str, target: Option<(&str, &str)>) -> (u16, Value) {
        let Some((src_type, src_id)) = target else {
            let mut all: Vec<(String, Value)> = self
                .entries()
                .into_iter()
                .filter_map(|(key, up)| {
                    let n = name(prefix, &key);
                    up.health().map(|h| (n.clone(), h.to_json(n)))
                })
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            return (200, Value::Array(all.into_iter().map(|(_, v)| v).collect()));
        };
        let not_found = || (404, json!({"error_msg": format!("{src_type}[{src_id}] not found")}));
        let Ok(id) = ResourceId::parse(src_id) else { return not_found() };
        let key = match src_type {
            "upstreams" => UpstreamKey::Named(id),
            "stream_routes" => UpstreamKey::InlineStream(id),
            other => return (400, json!({"error_msg": format!("invalid src type {other}")})),
        };
        match self.entries().into_iter().find(|(k, _)| *k == key) {
            None => not_found(),
            Some((key, up)) => match up.health() {
                Some(h) => (200, h.to_json(name(prefix, &key))),
                None => (404, json!({"error_msg": format!("no checker for {src_type}[{src_id}]")})),
            },
        }
    }
}
