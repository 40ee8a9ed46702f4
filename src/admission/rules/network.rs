//! Network exposure after Polaris: pods that no NetworkPolicy confines in both directions,
//! and Ingresses served without TLS.
use crate::admission::lookup::At;
use serde_json::Value;

use super::workloads::label_selector_misses;
use super::{Rule, Violation};
use crate::admission::cluster::namespace_of;
use crate::admission::context::Context;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;

/// The network rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(MissingNetworkPolicy), Box::new(TlsSettingsMissing)]
}

/// `missingNetworkPolicy` (Polaris id): no NetworkPolicy in the namespace selects the pods
/// with both ingress and egress rules, so they can talk to and be reached from anything.
pub struct MissingNetworkPolicy;

fn non_empty_list(policy: &Value, field: &str) -> bool {
    policy
        .at(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Both directions are governed: non-empty ingress and egress rules, and `policyTypes`
/// (when given) naming both.
fn governs_both(policy: &Value) -> bool {
    let types_ok = match policy.at("/spec/policyTypes").and_then(Value::as_array) {
        None => true,
        Some(types) => ["ingress", "egress"].iter().all(|want| {
            types
                .iter()
                .filter_map(Value::as_str)
                .any(|t| t.eq_ignore_ascii_case(want))
        }),
    };
    types_ok && non_empty_list(policy, "ingress") && non_empty_list(policy, "egress")
}

impl Rule for MissingNetworkPolicy {
    fn id(&self) -> &'static str {
        "missingNetworkPolicy"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let labels_ptr = t.metadata.child("labels");
        let Some(labels) = labels_ptr
            .get(ctx.object)
            .and_then(Value::as_object)
            .filter(|l| !l.is_empty())
        else {
            return vec![Violation::new(
                "pod has no labels, so no NetworkPolicy can select it: label it and add a policy with ingress and egress rules",
                labels_ptr,
            )];
        };
        let Some(view) = ctx.cluster else {
            return Vec::new();
        };
        let namespace = namespace_of(ctx.object);
        let covered = view
            .in_namespace("networking.k8s.io", "NetworkPolicy", namespace)
            .filter(|p| governs_both(p))
            .any(|p| {
                p.at("/spec/podSelector")
                    .and_then(Value::as_object)
                    .is_some_and(|sel| label_selector_misses(sel, Some(labels)).is_empty())
            });
        if covered {
            return Vec::new();
        }
        vec![Violation::new(
            format!(
                "no NetworkPolicy in namespace {namespace} among the objects given selects these pods with both ingress and egress rules: add one that allows only the traffic they need"
            ),
            labels_ptr,
        )]
    }
}

/// `tlsSettingsMissing` (Polaris id): an Ingress without `spec.tls` is served over plain
/// HTTP only.
pub struct TlsSettingsMissing;

impl Rule for TlsSettingsMissing {
    fn id(&self) -> &'static str {
        "tlsSettingsMissing"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != ("networking.k8s.io", "Ingress") {
            return Vec::new();
        }
        let ptr = Pointer::from_tokens(["spec", "tls"]);
        let has_tls = ptr
            .get(ctx.object)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_tls {
            return Vec::new();
        }
        vec![Violation::new(
            "Ingress has no spec.tls: add a TLS section with a certificate Secret so its hosts are not served in clear text",
            ptr,
        )]
    }
}
