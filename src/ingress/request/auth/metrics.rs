//! `ingress_auth_total{kind, result}`: how authentication ended, per mechanism. Both labels
//! come from fixed lists; only routes with auth ever touch it.
use std::sync::OnceLock;

use prometheus::{IntCounterVec, Opts};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Basic,
    External,
}

#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Checked now and let through.
    Pass,
    /// Let through (or refused) from a cached outcome.
    Cached,
    /// Refused: missing or wrong credentials, or the auth service said no.
    Denied,
    /// Refused because the configuration cannot be checked (missing or unusable Secret).
    FailClosed,
    /// The auth service did not answer usefully.
    Error,
}

pub fn count(kind: Kind, result: Outcome) {
    static COUNTER: OnceLock<Option<IntCounterVec>> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "ingress_auth_total",
                "Authentication outcomes by kind (basic, external) and result (pass, cached, \
                 denied, fail_closed, error).",
            ),
            &["kind", "result"],
        )
        .ok()?;
        Some(crate::metrics::register(c))
    });
    let Some(counter) = counter else {
        return;
    };
    let kind = match kind {
        Kind::Basic => "basic",
        Kind::External => "external",
    };
    let result = match result {
        Outcome::Pass => "pass",
        Outcome::Cached => "cached",
        Outcome::Denied => "denied",
        Outcome::FailClosed => "fail_closed",
        Outcome::Error => "error",
    };
    counter.with_label_values(&[kind, result]).inc();
}
