//! The last admission decisions, for the dashboard: a small ring of what was decided
//! about which object, by which rules. It keeps kind, namespace, name, operation, the
//! outcome, the rule ids and the time, never the object or the user, so showing it leaks
//! no more than the object's name.
//!
//! Failure behaviour: recording never fails and never blocks for long (one short lock);
//! the oldest entry is dropped when the ring is full.
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::context::Context;
use super::engine::Decision;
use super::settings::Action;

/// How many decisions the process keeps.
pub const CAPACITY: usize = 100;
/// Kubernetes names are at most 253 bytes; anything longer is not a name we need whole.
const MAX_FIELD: usize = 253;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Warned,
    Denied,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentDecision {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub outcome: Outcome,
    /// Rule ids that denied (for `denied`) or warned, each once, in finding order.
    pub rules: Vec<&'static str>,
}

impl RecentDecision {
    /// The entry for `decision` about the object in `ctx`.
    pub fn from_decision(ctx: &Context<'_>, decision: &Decision, time_ms: u64) -> Self {
        let outcome = if decision.denied() {
            Outcome::Denied
        } else if decision.findings.iter().any(|f| f.action == Action::Warn) {
            Outcome::Warned
        } else {
            Outcome::Allowed
        };
        // A denied object names the rules that denied it: those are what to fix first.
        let wanted = if outcome == Outcome::Denied {
            Action::Deny
        } else {
            Action::Warn
        };
        let mut rules: Vec<&'static str> = Vec::new();
        for f in decision.findings.iter().filter(|f| f.action == wanted) {
            if !rules.contains(&f.rule) {
                rules.push(f.rule);
            }
        }
        RecentDecision {
            time_ms,
            kind: bounded(ctx.kind),
            namespace: bounded(ctx.namespace),
            name: bounded(ctx.name),
            operation: ctx.operation.as_str(),
            outcome,
            rules,
        }
    }
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A bounded, newest-last list of decisions.
#[derive(Debug)]
pub struct DecisionRing {
    capacity: usize,
    entries: Mutex<VecDeque<RecentDecision>>,
}

impl DecisionRing {
    pub fn new(capacity: usize) -> Self {
        DecisionRing {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
        }
    }

    pub fn push(&self, entry: RecentDecision) {
        let mut entries = self.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The kept decisions, newest first (the order people read them in).
    pub fn newest_first(&self) -> Vec<RecentDecision> {
        self.lock().iter().rev().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<RecentDecision>> {
        // A push or a copy cannot panic half-way, so a poisoned ring is still consistent.
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The process-wide ring the webhook records into and the dashboard reads.
pub fn ring() -> &'static DecisionRing {
    static RING: OnceLock<DecisionRing> = OnceLock::new();
    RING.get_or_init(|| DecisionRing::new(CAPACITY))
}

/// Records one validation in the process-wide ring.
pub fn record(ctx: &Context<'_>, decision: &Decision) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ring().push(RecentDecision::from_decision(ctx, decision, now));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::context::Operation;
    use crate::admission::engine::Finding;
    use crate::admission::settings::AdmissionSettings;

    fn finding(rule: &'static str, action: Action) -> Finding {
        Finding {
            rule,
            action,
            message: "m".into(),
            path: "/spec".into(),
        }
    }

    fn decide(findings: Vec<Finding>) -> RecentDecision {
        let settings = AdmissionSettings::default();
        let object = serde_json::json!({"metadata": {"name": "from-metadata"}});
        let ctx = Context::new("", "Pod", Operation::Create, "shop", "", &object, &settings);
        RecentDecision::from_decision(&ctx, &Decision { findings }, 42)
    }

    #[test]
    fn outcome_and_rules_follow_the_findings() {
        let allowed = decide(vec![]);
        assert_eq!(allowed.outcome, Outcome::Allowed);
        assert!(allowed.rules.is_empty());
        assert_eq!(
            (allowed.kind.as_str(), allowed.namespace.as_str()),
            ("Pod", "shop")
        );
        assert_eq!(allowed.name, "from-metadata");
        assert_eq!((allowed.operation, allowed.time_ms), ("CREATE", 42));

        let warned = decide(vec![
            finding("tagNotSpecified", Action::Warn),
            finding("tagNotSpecified", Action::Warn),
            finding("livenessProbeMissing", Action::Warn),
        ]);
        assert_eq!(warned.outcome, Outcome::Warned);
        assert_eq!(warned.rules, ["tagNotSpecified", "livenessProbeMissing"]);

        let denied = decide(vec![
            finding("tagNotSpecified", Action::Warn),
            finding("requestAboveLimit", Action::Deny),
        ]);
        assert_eq!(denied.outcome, Outcome::Denied);
        assert_eq!(denied.rules, ["requestAboveLimit"]);
        let json = serde_json::to_value(&denied).unwrap();
        assert_eq!(json["outcome"], "denied");
        assert_eq!(json["timeMs"], 42);
    }

    #[test]
    fn ring_keeps_the_newest_up_to_its_capacity() {
        let ring = DecisionRing::new(3);
        assert!(ring.newest_first().is_empty());
        for t in 0..5 {
            let mut d = decide(vec![]);
            d.time_ms = t;
            ring.push(d);
        }
        let times: Vec<u64> = ring.newest_first().iter().map(|d| d.time_ms).collect();
        assert_eq!(times, [4, 3, 2]);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("web"), "web");
    }
}
