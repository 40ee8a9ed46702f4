//! The rule catalogue. A rule is one small unit with an id, a default action, and a
//! `check` and/or a `mutate`; it knows nothing about HTTP or AdmissionReview.
//!
//! Ids follow Polaris' check ids where the meaning is the same, so a Polaris
//! configuration carries over; new rules use the same lowerCamelCase style.
use super::context::Context;
use super::patch::{PatchBuilder, Pointer};
use super::settings::Action;

pub mod disruption;
pub mod explain;
pub mod hardening;
pub mod images;
pub mod ingress;
pub mod labels;
pub mod lifecycle;
pub mod network;
pub mod probes;
pub mod rbac;
pub mod replicas;
pub mod resources;
pub mod scheduling;
pub mod secrets;
pub mod security;
pub mod service_account;
pub mod storage;
pub mod workloads;

/// One problem a rule found: what to change and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Says what is wrong and how to fix it, in one line.
    pub message: String,
    /// The field it is about.
    pub path: Pointer,
}

impl Violation {
    pub fn new(message: impl Into<String>, path: Pointer) -> Self {
        Violation {
            message: message.into(),
            path,
        }
    }
}

/// A validation and/or mutation rule.
pub trait Rule: Send + Sync {
    /// Stable id used in configuration, messages and metrics.
    fn id(&self) -> &'static str;

    /// The action when the configuration does not name one.
    fn default_action(&self) -> Action;

    /// `Some(on_by_default)` for rules that can mutate.
    fn mutation(&self) -> Option<bool> {
        None
    }

    /// Polaris' category (Security, Efficiency, Reliability) for audit reports; `Other`
    /// for portcullis' own rules.
    fn category(&self) -> &str {
        crate::admission::polaris::category(self.id()).unwrap_or("Other")
    }

    /// One or two sentences on what the rule checks, for `portcullis rules`.
    fn checks(&self) -> &'static str {
        explain::checks(self.id())
    }

    /// How to fix what the rule reports, for `portcullis rules`.
    fn fix(&self) -> &'static str {
        explain::fix(self.id())
    }

    /// What an audit says when the rule finds nothing (empty: the report says "passed").
    fn success_message(&self) -> &str {
        ""
    }

    /// Whether the rule judges this kind of object at all, so an audit can count a pass
    /// as a success. Most rules judge pod templates; the others say which kinds they read.
    fn applies(&self, ctx: &Context<'_>) -> bool {
        ctx.template.is_some()
    }

    /// Findings for the object (empty when it is fine).
    fn check(&self, _ctx: &Context<'_>) -> Vec<Violation> {
        Vec::new()
    }

    /// Kinds this rule judges or reads from the cluster view that a live audit may not
    /// list on its own (a custom check's target and additional-schema kinds), as
    /// `(group, kind)`, so the audit lists them too.
    fn related_kinds(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Adds operations that fix what `check` complains about, reading the object as
    /// `patch.doc()` (earlier mutations already applied). Must be idempotent: on its own
    /// output it adds nothing.
    fn mutate(&self, _ctx: &Context<'_>, _patch: &mut PatchBuilder) {}
}

/// What `rule` finds on the patch's current document (earlier mutations applied), for
/// mutations that fix exactly the fields their check points at.
pub fn violations_now(rule: &dyn Rule, ctx: &Context<'_>, patch: &PatchBuilder) -> Vec<Violation> {
    let doc = patch.doc().clone();
    let mut c = Context::new(
        ctx.group,
        ctx.kind,
        ctx.operation,
        ctx.namespace,
        ctx.name,
        &doc,
        ctx.settings,
    );
    c.live = ctx.live;
    c.cluster = ctx.cluster;
    rule.check(&c)
}

/// Every built-in rule, in the order they run.
pub fn catalogue() -> Vec<Box<dyn Rule>> {
    let mut rules: Vec<Box<dyn Rule>> = Vec::new();
    rules.extend(resources::rules());
    rules.extend(probes::rules());
    rules.extend(images::rules());
    rules.extend(storage::rules());
    rules.extend(lifecycle::rules());
    rules.extend(workloads::rules());
    rules.extend(replicas::rules());
    rules.extend(labels::rules());
    rules.extend(security::rules());
    rules.extend(hardening::rules());
    rules.extend(service_account::rules());
    rules.extend(secrets::rules());
    rules.extend(scheduling::rules());
    rules.extend(disruption::rules());
    rules.extend(network::rules());
    rules.extend(rbac::rules());
    rules.extend(ingress::rules());
    rules
}
