//! One node's health as a pure state machine: four statuses and four
//! counters, moved by probe and traffic results. The rules are those of
//! lua-resty-healthcheck (`incr_counter`, api7's fork that APISIX runs), so
//! a node behaves as it would behind APISIX:
//!
//! - a success counts only when the node is not fully healthy; it clears the
//!   failure counters, and `successes` of them in a row make it `healthy`;
//! - a failure (TCP, timeout, HTTP) counts only when the node is not fully
//!   unhealthy; it clears the success counter, and the threshold of its
//!   kind in a row makes it `unhealthy`;
//! - below a threshold, a `healthy` node with a failure becomes
//!   `mostly_healthy` (still takes traffic), an `unhealthy` node with a
//!   success becomes `mostly_unhealthy` (still takes none);
//! - counters are not cleared by a change of status, so the status API
//!   shows the failures that made a node unhealthy.
//!
//! No I/O and no clock: the checker decides when to probe
//! ([`probe_interval`]), this module only what a result means.

use std::time::Duration;

use shardgate_model::health::{ActiveCheck, HealthChecks};

/// A node's status, as APISIX's control API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Takes traffic; no failure counted since it became healthy.
    Healthy,
    /// Takes traffic; some failures counted, fewer than the threshold.
    MostlyHealthy,
    /// Takes no traffic; some successes counted, fewer than the threshold.
    MostlyUnhealthy,
    /// Takes no traffic.
    Unhealthy,
}

impl Status {
    /// Whether the balancer may pick the node.
    pub fn takes_traffic(self) -> bool {
        matches!(self, Status::Healthy | Status::MostlyHealthy)
    }

    /// APISIX's name: `healthy`, `mostly_healthy`, `mostly_unhealthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::MostlyHealthy => "mostly_healthy",
            Status::MostlyUnhealthy => "mostly_unhealthy",
            Status::Unhealthy => "unhealthy",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Status::Healthy,
            1 => Status::MostlyHealthy,
            2 => Status::MostlyUnhealthy,
            _ => Status::Unhealthy,
        }
    }
}

/// Results in a row, by kind (APISIX's `counter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successes.
    pub success: u8,
    /// HTTP failures (an unhealthy status code, or no valid status line).
    pub http_failure: u8,
    /// TCP failures (refused, reset, closed, TLS handshake failed).
    pub tcp_failure: u8,
    /// Timeouts.
    pub timeout_failure: u8,
}

/// What one probe or one real connection attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Connected (TCP), or a status in `healthy.http_statuses`.
    Success,
    /// A status in `unhealthy.http_statuses`, or no valid status line.
    HttpFailure,
    /// Refused, reset, closed early, unresolvable, TLS handshake failed.
    TcpFailure,
    /// Not done within the timeout.
    Timeout,
    /// A status in neither list: counts for nothing (as APISIX).
    Ignored,
}

impl Outcome {
    /// The `result` label of `shardgate_upstream_health_probes_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpFailure => "http_failure",
            Outcome::TcpFailure => "tcp_failure",
            Outcome::Timeout => "timeout",
            Outcome::Ignored => "ignored",
        }
    }
}

/// How many results in a row change a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes that make a node healthy.
    pub successes: u8,
    /// HTTP failures that make it unhealthy.
    pub http_failures: u8,
    /// TCP failures that make it unhealthy.
    pub tcp_failures: u8,
    /// Timeouts that make it unhealthy.
    pub timeouts: u8,
}

impl Thresholds {
    /// For active probes (`checks.active`).
    pub fn active(c: &HealthChecks) -> Self {
        let a = &c.active;
        Thresholds {
            successes: a.healthy.successes,
            http_failures: a.unhealthy.http_failures,
            tcp_failures: a.unhealthy.tcp_failures,
            timeouts: a.unhealthy.timeouts,
        }
    }

    /// For real traffic (`checks.passive`).
    pub fn passive(c: &HealthChecks) -> Self {
        let p = &c.passive;
        Thresholds {
            successes: p.healthy.successes,
            http_failures: p.unhealthy.http_failures,
            tcp_failures: p.unhealthy.tcp_failures,
            timeouts: p.unhealthy.timeouts,
        }
    }
}

/// A node's status and counters. A node starts healthy, as in APISIX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    /// The status.
    pub status: Status,
    /// The counters.
    pub counters: Counters,
}

impl Default for NodeState {
    fn default() -> Self {
        NodeState { status: Status::Healthy, counters: Counters::default() }
    }
}

impl NodeState {
    /// Applies one result; returns the previous status when it changed.
    pub fn record(&mut self, outcome: Outcome, t: &Thresholds) -> Option<Status> {
        let before = self.status;
        let c = &mut self.counters;
        let after = match outcome {
            Outcome::Ignored => return None,
            Outcome::Success => {
                if before == Status::Healthy {
                    return None;
                }
                c.success = c.success.saturating_add(1);
                c.http_failure = 0;
                c.tcp_failure = 0;
                c.timeout_failure = 0;
                if c.success >= t.successes {
                    Status::Healthy
                } else if before == Status::Unhealthy {
                    Status::MostlyUnhealthy
                } else {
                    before
                }
            }
            failure => {
                if before == Status::Unhealthy {
                    return None;
                }
                let (count, limit) = match failure {
                    Outcome::HttpFailure => (&mut c.http_failure, t.http_failures),
                    Outcome::Timeout => (&mut c.timeout_failure, t.timeouts),
                    _ => (&mut c.tcp_failure, t.tcp_failures),
                };
                *count = count.saturating_add(1);
                let reached = *count >= limit;
                c.success = 0;
                if reached {
                    Status::Unhealthy
                } else if before == Status::Healthy {
                    Status::MostlyHealthy
                } else {
                    before
                }
            }
        };
        self.status = after;
        (after != before).then_some(before)
    }
}

/// How long after a probe of a node in `status` the next one starts:
/// `healthy.interval` while it takes traffic, `unhealthy.interval` while it
/// does not (lua-resty-healthcheck's two timers).
pub fn probe_interval(status: Status, active: &ActiveCheck) -> Duration {
    if status.takes_traffic() { active.healthy.interval } else { active.unhealthy.interval }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checks(v: serde_json::Value) -> HealthChecks {
        HealthChecks::from_json(&v).expect("valid checks")
    }

    const T: Thresholds = Thresholds { successes: 2, http_failures: 3, tcp_failures: 2, timeouts: 3 };

    fn run(state: &mut NodeState, outcomes: &[Outcome]) -> Vec<Status> {
        outcomes
            .iter()
            .map(|o| {
                state.record(*o, &T);
                state.status
            })
            .collect()
    }

    #[test]
    fn failures_in_a_row_make_a_node_unhealthy_and_successes_bring_it_back() {
        use Outcome::*;
        use Status::*;
        let mut s = NodeState::default();
        assert_eq!(run(&mut s, &[TcpFailure, TcpFailure]), [MostlyHealthy, Unhealthy]);
        assert_eq!(s.counters, Counters { success: 0, http_failure: 0, tcp_failure: 2, timeout_failure: 0 });
        // Further failures of an unhealthy node change nothing.
        assert_eq!(run(&mut s, &[TcpFailure, Timeout]), [Unhealthy, Unhealthy]);
        assert_eq!(s.counters.tcp_failure, 2);
        assert_eq!(run(&mut s, &[Success, Success]), [MostlyUnhealthy, Healthy]);
        assert_eq!(s.counters, Counters { success: 2, ..Counters::default() }, "failures cleared by a success");
        // A healthy node's successes are not counted.
        assert_eq!(run(&mut s, &[Success]), [Healthy]);
        assert_eq!(s.counters.success, 2);
    }

    #[test]
    fn a_result_of_the_other_kind_breaks_the_run() {
        use Outcome::*;
        use Status::*;
        let mut s = NodeState::default();
        // One failure, a success (clears it), one failure: never two in a row.
        assert_eq!(run(&mut s, &[TcpFailure, Success, TcpFailure]), [MostlyHealthy, MostlyHealthy, MostlyHealthy]);
        assert_eq!(s.counters.tcp_failure, 1);
        // A mostly healthy node needs the full run of successes to be healthy again.
        assert_eq!(run(&mut s, &[Success, Success]), [MostlyHealthy, Healthy]);
        // Kinds count apart: two timeouts and two HTTP failures are below their own limits.
        let mut s = NodeState::default();
        assert_eq!(run(&mut s, &[Timeout, HttpFailure, Timeout, HttpFailure]), [MostlyHealthy; 4]);
        assert_eq!(run(&mut s, &[Timeout]), [Unhealthy]);
        // A failure between an unhealthy node's successes restarts their run
        // (the node stays mostly unhealthy: one timeout is below its limit).
        assert_eq!(
            run(&mut s, &[Success, Timeout, Success, Success]),
            [MostlyUnhealthy, MostlyUnhealthy, MostlyUnhealthy, Healthy]
        );
        // Ignored results count for nothing.
        let before = s;
        assert_eq!(s.record(Ignored, &T), None);
        assert_eq!(s, before);
    }

    #[test]
    fn record_reports_changes_of_status_only() {
        let mut s = NodeState::default();
        assert_eq!(s.record(Outcome::TcpFailure, &T), Some(Status::Healthy));
        assert_eq!(s.record(Outcome::Success, &T), None, "still mostly healthy");
        assert_eq!(s.record(Outcome::Success, &T), Some(Status::MostlyHealthy));
        assert_eq!(s.record(Outcome::Success, &T), None);
    }

    #[test]
    fn thresholds_come_from_the_configuration() {
        let c = checks(json!({
            "active": {"healthy": {"successes": 4}, "unhealthy": {"tcp_failures": 1, "timeouts": 5, "http_failures": 6}},
            "passive": {"healthy": {"successes": 7}, "unhealthy": {"tcp_failures": 8, "timeouts": 9, "http_failures": 10}}
        }));
        assert_eq!(Thresholds::active(&c), Thresholds { successes: 4, http_failures: 6, tcp_failures: 1, timeouts: 5 });
        assert_eq!(
            Thresholds::passive(&c),
            Thresholds { successes: 7, http_failures: 10, tcp_failures: 8, timeouts: 9 }
        );
        // One TCP failure is enough with tcp_failures = 1.
        let mut s = NodeState::default();
        s.record(Outcome::TcpFailure, &Thresholds::active(&c));
        assert_eq!(s.status, Status::Unhealthy);
    }

    #[test]
    fn the_interval_follows_whether_the_node_takes_traffic() {
        let c = checks(json!({"active": {"healthy": {"interval": 5}, "unhealthy": {"interval": 1}}}));
        assert_eq!(probe_interval(Status::Healthy, &c.active), Duration::from_secs(5));
        assert_eq!(probe_interval(Status::MostlyHealthy, &c.active), Duration::from_secs(5));
        assert_eq!(probe_interval(Status::MostlyUnhealthy, &c.active), Duration::from_secs(1));
        assert_eq!(probe_interval(Status::Unhealthy, &c.active), Duration::from_secs(1));
    }

    #[test]
    fn status_round_trips_through_its_byte() {
        for s in [Status::Healthy, Status::MostlyHealthy, Status::MostlyUnhealthy, Status::Unhealthy] {
            assert_eq!(Status::from_u8(s.to_u8()), s);
        }
    }
}
