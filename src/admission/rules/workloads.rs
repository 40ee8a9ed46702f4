//! Workload controller rules: selectors that miss their own pods, Job restart policies,
//! rolling updates that cannot make progress, StatefulSets without a
//! governing Service. Odd input (wrong types, null) counts as absent or is skipped; a value
//! the API server would reject on its own is left to it unless the rule is about it.
use crate::admission::lookup::At;
use serde_json::{Map, Value};

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;

/// The workloads rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(SelectorMismatch),
        Box::new(JobRestartPolicy),
        Box::new(RollingUpdateStuck),
        Box::new(StatefulSetServiceName),
    ]
}

/// `spec.template.metadata.labels` style text for messages.
fn dotted(ptr: &Pointer) -> String {
    ptr.tokens().join(".")
}

/// At most `max` items joined, with a count of the rest so messages stay one short line.
fn join_some(items: &[String], max: usize, sep: &str) -> String {
    let mut s = items
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(sep);
    if items.len() > max {
        s.push_str(&format!("{sep}and {} more", items.len() - max));
    }
    s
}

fn spec_ptr() -> Pointer {
    Pointer::from_tokens(["spec"])
}

/// What the template has for `key`, for a mismatch message.
fn template_has(key: &str, have: Option<&str>) -> String {
    match have {
        Some(v) => format!("template has {key}={v}"),
        None => format!("template lacks {key}"),
    }
}

/// The requirements of a `metav1.LabelSelector` that `labels` fail, each described in
/// kubectl's selector syntax with what the template has instead. Unknown operators never
/// match, as in the API server.
pub fn label_selector_misses(
    selector: &Map<String, Value>,
    labels: Option<&Map<String, Value>>,
) -> Vec<String> {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let mut out = Vec::new();
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        out.extend(plain_selector_misses(ml, labels));
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for e in exprs {
        let Some(key) = e.get("key").and_then(Value::as_str) else {
            continue;
        };
        let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let have = get(key);
        let listed = have.is_some_and(|h| values.contains(&h));
        let holds = match op {
            "In" => listed,
            "NotIn" => !listed,
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if holds {
            continue;
        }
        let want = match op {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other:?} (unknown operator)"),
        };
        out.push(format!("{want} ({})", template_has(key, have)));
    }
    out
}

/// The pairs of a plain `key: value` selector (ReplicationController, matchLabels) that
/// `labels` do not carry.
pub fn plain_selector_misses(
    selector: &Map<String, Value>,
    labels: Option<&Map<String, Value>>,
) -> Vec<String> {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .iter()
        .filter_map(|(k, v)| {
            let want = v.as_str()?;
            let have = get(k);
            (have != Some(want)).then(|| format!("{k}={want} ({})", template_has(k, have)))
        })
        .collect()
}

/// True when a LabelSelector has no requirement at all, i.e. selects every pod.
fn selector_is_empty(selector: &Map<String, Value>) -> bool {
    let empty = |field: &str| match selector.get(field) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => true,
    };
    empty("matchLabels") && empty("matchExpressions")
}

/// The template's labels as a `{k: v, …}` example for a selector to copy.
fn suggest_match_labels(labels: Option<&Map<String, Value>>) -> Option<String> {
    let pairs: Vec<String> = labels?
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}: {}", v.as_str()?)))
        .collect();
    (!pairs.is_empty()).then(|| format!("{{{}}}", join_some(&pairs, 3, ", ")))
}

/// `selectorMismatch`: a controller's selector must select its own pod template, or the
/// API server refuses it and the controller could never count its pods.
pub struct SelectorMismatch;

/// How a kind carries its selector.
enum SelectorForm {
    /// metav1.LabelSelector, required and non-empty (apps/v1 kinds, manual Job selectors).
    Required,
    /// ReplicationController's plain map; when empty the API server copies the template
    /// labels into it.
    PlainOptional,
}

impl Rule for SelectorMismatch {
    fn id(&self) -> &'static str {
        "selectorMismatch"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        // The selector sits in the spec that owns the template: /spec for a Job,
        // /spec/jobTemplate/spec for a CronJob's Jobs.
        let Some(owner_spec) = t.metadata.parent().and_then(|p| p.parent()) else {
            return Vec::new();
        };
        let form = match (ctx.group, ctx.kind) {
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
                SelectorForm::Required
            }
            ("", "ReplicationController") => SelectorForm::PlainOptional,
            ("batch", "Job" | "CronJob") => {
                let manual = owner_spec
                    .child("manualSelector")
                    .get(ctx.object)
                    .and_then(Value::as_bool);
                // Without manualSelector the API server generates a selector that matches.
                if manual != Some(true) {
                    return Vec::new();
                }
                SelectorForm::Required
            }
            _ => return Vec::new(),
        };
        let sel_ptr = owner_spec.child("selector");
        let labels_ptr = t.metadata.child("labels");
        let labels = labels_ptr.get(ctx.object).and_then(Value::as_object);
        let selector = sel_ptr.get(ctx.object).and_then(Value::as_object);
        let kind = ctx.kind;
        let fix_hint = match suggest_match_labels(labels) {
            Some(example) => format!("e.g. matchLabels: {example}"),
            None => format!("with labels you also set in {}", dotted(&labels_ptr)),
        };
        let misses = match (form, selector) {
            (SelectorForm::PlainOptional, None) => return Vec::new(),
            (SelectorForm::PlainOptional, Some(s)) => plain_selector_misses(s, labels),
            (SelectorForm::Required, None) => {
                return vec![Violation::new(
                    format!(
                        "{kind} has no {}: add one ({fix_hint}); the API server requires it to know which pods the {kind} owns",
                        dotted(&sel_ptr)
                    ),
                    sel_ptr,
                )];
            }
            (SelectorForm::Required, Some(s)) if selector_is_empty(s) => {
                return vec![Violation::new(
                    format!(
                        "{kind} has an empty {} that would select every pod in the namespace: add requirements ({fix_hint})",
                        dotted(&sel_ptr)
                    ),
                    sel_ptr,
                )];
            }
            (SelectorForm::Required, Some(s)) => label_selector_misses(s, labels),
        };
        if misses.is_empty() {
            return Vec::new();
        }
        vec![Violation::new(
            format!(
                "{kind} selector does not match its pod template: {}; make {} satisfy {}, or the API server rejects it",
                join_some(&misses, 3, "; "),
                dotted(&labels_ptr),
                dotted(&sel_ptr)
            ),
            sel_ptr,
        )]
    }
}

/// `jobRestartPolicy`: a Job's pods must be allowed to finish, so their restartPolicy is
/// Never or OnFailure; unset means Always for a pod template.
pub struct JobRestartPolicy;

impl Rule for JobRestartPolicy {
    fn id(&self) -> &'static str {
        "jobRestartPolicy"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        matches!((ctx.group, ctx.kind), ("batch", "Job" | "CronJob"))
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !matches!((ctx.group, ctx.kind), ("batch", "Job" | "CronJob")) {
            return Vec::new();
        }
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let ptr = t.spec.child("restartPolicy");
        let policy = ptr.get(ctx.object).and_then(Value::as_str);
        let what = match policy {
            Some("Never" | "OnFailure") => return Vec::new(),
            Some(p) => format!("restartPolicy {p:?}"),
            None => "no restartPolicy, which means Always".to_string(),
        };
        vec![Violation::new(
            format!(
                "{} pod template has {what}: set {} to Never or OnFailure; a Job's pods must be allowed to finish",
                ctx.kind,
                dotted(&ptr)
            ),
            ptr,
        )]
    }
}

/// `spec.replicas`, with the API default of 1 when absent or not a number.
pub(super) fn replicas(object: &Value) -> i64 {
    object
        .at("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// An IntOrString rollout bound: an absolute count or a percentage of the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    /// Reads `2` or `"25%"`; anything else (negative, `"2"`, `"2.5%"`) is what the API
    /// server rejects on its own, so it is None here.
    pub fn parse(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().filter(|i| *i >= 0).map(IntOrPercent::Int),
            Value::String(s) => s
                .strip_suffix('%')?
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .map(IntOrPercent::Percent),
            _ => None,
        }
    }

    /// The value against `total`, rounding a percentage up or down the way the
    /// Deployment controller does (maxSurge up, maxUnavailable down).
    pub fn scaled(self, total: i64, round_up: bool) -> i64 {
        match self {
            IntOrPercent::Int(i) => i,
            IntOrPercent::Percent(p) => {
                let x = p.saturating_mul(total.max(0));
                if round_up {
                    x.saturating_add(99) / 100
                } else {
                    x / 100
                }
            }
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
    }
}

impl std::fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrPercent::Int(i) => write!(f, "{i}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A rollout bound from `ptr`, or `default` when absent/null; None when unreadable.
fn bound(object: &Value, ptr: &Pointer, default: IntOrPercent) -> Option<(IntOrPercent, bool)> {
    match ptr.get(object) {
        None | Some(Value::Null) => Some((default, true)),
        Some(v) => IntOrPercent::parse(v).map(|b| (b, false)),
    }
}

/// `rollingUpdateStuck`: a rolling update whose surge and unavailability both come to 0
/// cannot replace a pod without breaking its own promise. Literal zeros are refused by the
/// API server; a percentage that rounds down to 0 is accepted, and the Deployment
/// controller then quietly allows 1 unavailable pod, which is not what the author asked.
pub struct RollingUpdateStuck;

impl RollingUpdateStuck {
    fn deployment(ctx: &Context<'_>) -> Vec<Violation> {
        let strategy = spec_ptr().child("strategy");
        let kind = strategy
            .child("type")
            .get(ctx.object)
            .and_then(Value::as_str);
        if kind.is_some_and(|k| k != "RollingUpdate") {
            return Vec::new();
        }
        let ru = strategy.child("rollingUpdate");
        let surge_ptr = ru.child("maxSurge");
        let Some((surge, _)) = bound(ctx.object, &surge_ptr, IntOrPercent::Percent(25)) else {
            return Vec::new();
        };
        let Some((unavailable, unavailable_default)) = bound(
            ctx.object,
            &ru.child("maxUnavailable"),
            IntOrPercent::Percent(25),
        ) else {
            return Vec::new();
        };
        let n = replicas(ctx.object);
        if n < 0 || surge.scaled(n, true) != 0 || unavailable.scaled(n, false) != 0 {
            return Vec::new();
        }
        let message = if surge.is_zero() && unavailable.is_zero() {
            "Deployment rolling update has maxSurge 0 and maxUnavailable 0, so no pod can ever be replaced: set maxSurge to 1 (or maxUnavailable to 1); the API server rejects both at 0".to_string()
        } else if n == 0 {
            // Nothing to roll while scaled to zero.
            return Vec::new();
        } else {
            let default = if unavailable_default { "default " } else { "" };
            let plural = if n == 1 { "" } else { "s" };
            format!(
                "Deployment rolling update resolves to maxSurge 0 and maxUnavailable 0 ({default}{unavailable} of {n} replica{plural} rounds down): the controller then takes 1 pod down anyway; set maxSurge to 1 to keep capacity"
            )
        };
        vec![Violation::new(message, surge_ptr)]
    }

    fn daemon_set(ctx: &Context<'_>) -> Vec<Violation> {
        let strategy = spec_ptr().child("updateStrategy");
        let kind = strategy
            .child("type")
            .get(ctx.object)
            .and_then(Value::as_str);
        if kind.is_some_and(|k| k != "RollingUpdate") {
            return Vec::new();
        }
        let ru = strategy.child("rollingUpdate");
        let unavailable_ptr = ru.child("maxUnavailable");
        // DaemonSet percentages are of the node count and round up, so only literal zeros
        // come to 0; the defaults are maxUnavailable 1, maxSurge 0.
        let Some((unavailable, _)) = bound(ctx.object, &unavailable_ptr, IntOrPercent::Int(1))
        else {
            return Vec::new();
        };
        let Some((surge, _)) = bound(ctx.object, &ru.child("maxSurge"), IntOrPercent::Int(0))
        else {
            return Vec::new();
        };
        if !(unavailable.is_zero() && surge.is_zero()) {
            return Vec::new();
        }
        vec![Violation::new(
            "DaemonSet rolling update has maxUnavailable 0 and maxSurge 0, so no node's pod can ever be replaced: set maxUnavailable to 1 (or maxSurge to 1); the API server rejects both at 0",
            unavailable_ptr,
        )]
    }
}

impl Rule for RollingUpdateStuck {
    fn id(&self) -> &'static str {
        "rollingUpdateStuck"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        matches!((ctx.group, ctx.kind), ("apps", "Deployment" | "DaemonSet"))
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        match (ctx.group, ctx.kind) {
            ("apps", "Deployment") => Self::deployment(ctx),
            ("apps", "DaemonSet") => Self::daemon_set(ctx),
            _ => Vec::new(),
        }
    }
}

/// `statefulSetServiceName`: the governing headless Service gives each pod its stable DNS
/// name. Newer Kubernetes accepts it empty; denied by default because peers that find each
/// other by name break without it (set the action to warn or off to allow it).
pub struct StatefulSetServiceName;

impl Rule for StatefulSetServiceName {
    fn id(&self) -> &'static str {
        "statefulSetServiceName"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("apps", "StatefulSet")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != ("apps", "StatefulSet") {
            return Vec::new();
        }
        let ptr = spec_ptr().child("serviceName");
        let named = ptr
            .get(ctx.object)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        if named {
            return Vec::new();
        }
        let name = if ctx.name.is_empty() { "web" } else { ctx.name };
        vec![Violation::new(
            format!(
                "StatefulSet has no spec.serviceName: set it to the headless Service that gives its pods stable DNS names ({name}-0.<service>); peers cannot find each other without it"
            ),
            ptr,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::context::Operation;
    use crate::admission::settings::AdmissionSettings;
    use serde_json::json;

    fn run(rule: &dyn Rule, group: &str, kind: &str, obj: &Value) -> Vec<Violation> {
        let settings = AdmissionSettings::default();
        let ctx = Context::new(group, kind, Operation::Create, "ns", "x", obj, &settings);
        rule.check(&ctx)
    }

    #[test]
    fn selector_expressions_and_messages() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"}
            ]
        });
        let sel = sel.as_object().unwrap();
        let ok = json!({"app": "web", "tier": "be", "env": "prod", "team": "a"});
        assert!(label_selector_misses(sel, ok.as_object()).is_empty());
        let bad = json!({"app": "api", "tier": "db", "legacy": "1", "env": "dev"});
        let misses = label_selector_misses(sel, bad.as_object());
        assert_eq!(
            misses,
            vec![
                "app=web (template has app=api)",
                "tier in (fe,be) (template has tier=db)",
                "!legacy (template has legacy=1)",
                "env notin (dev) (template has env=dev)",
                "team (template lacks team)",
            ]
        );
        let odd = json!({"matchExpressions": [{"key": "k", "operator": "Sometimes"}]});
        assert_eq!(
            label_selector_misses(odd.as_object().unwrap(), None).len(),
            1,
            "unknown operators never match"
        );
    }

    #[test]
    fn selector_rule_per_kind() {
        let rc = json!({"spec": {"selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "api"}}}}});
        let v = run(&SelectorMismatch, "", "ReplicationController", &rc);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("app=web (template has app=api)"),
            "{}",
            v[0].message
        );
        // RC without a selector is defaulted from the template labels.
        let rc = json!({"spec": {"template": {"metadata": {"labels": {"app": "api"}}}}});
        assert!(run(&SelectorMismatch, "", "ReplicationController", &rc).is_empty());
        // A Job selector only matters with manualSelector.
        let job = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {}}}});
        assert!(run(&SelectorMismatch, "batch", "Job", &job).is_empty());
        let job = json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {}}}});
        assert_eq!(
            run(&SelectorMismatch, "batch", "Job", &job)[0]
                .path
                .render(),
            "/spec/selector"
        );
        let cj = json!({"spec": {"jobTemplate": {"spec": {"manualSelector": true, "template": {"metadata": {"labels": {"a": "b"}}}}}}});
        let v = run(&SelectorMismatch, "batch", "CronJob", &cj);
        assert_eq!(v[0].path.render(), "/spec/jobTemplate/spec/selector");
        assert!(
            v[0].message.contains("matchLabels: {a: b}"),
            "{}",
            v[0].message
        );
        // Missing and empty selectors on apps kinds.
        let d = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}});
        assert!(
            run(&SelectorMismatch, "apps", "Deployment", &d)[0]
                .message
                .contains("has no spec.selector")
        );
        let d = json!({"spec": {"selector": {"matchLabels": {}}, "template": {"metadata": {"labels": {"app": "web"}}}}});
        assert!(
            run(&SelectorMismatch, "apps", "DaemonSet", &d)[0]
                .message
                .contains("empty")
        );
        // Wrong types never panic.
        let d = json!({"spec": {"selector": "app=web", "template": {"metadata": {"labels": 3}}}});
        assert_eq!(run(&SelectorMismatch, "apps", "ReplicaSet", &d).len(), 1);
        assert!(run(&SelectorMismatch, "example.com", "Deployment", &d).is_empty());
    }

    #[test]
    fn int_or_percent_rounding() {
        let p = |v: Value| IntOrPercent::parse(&v);
        assert_eq!(p(json!(3)), Some(IntOrPercent::Int(3)));
        assert_eq!(p(json!("10%")), Some(IntOrPercent::Percent(10)));
        assert_eq!(p(json!("10")), None);
        assert_eq!(p(json!("2.5%")), None);
        assert_eq!(p(json!(-1)), None);
        let ten = IntOrPercent::Percent(10);
        assert_eq!(ten.scaled(3, true), 1);
        assert_eq!(ten.scaled(3, false), 0);
        assert_eq!(ten.scaled(10, false), 1);
        assert_eq!(IntOrPercent::Percent(25).scaled(4, false), 1);
        assert_eq!(IntOrPercent::Percent(25).scaled(3, false), 0);
        assert_eq!(
            IntOrPercent::Percent(i64::MAX).scaled(i64::MAX, true),
            i64::MAX / 100
        );
    }

    #[test]
    fn rolling_update_resolution() {
        let d = |strategy: Value, replicas: Value| json!({"spec": {"replicas": replicas, "strategy": strategy}});
        let dep = |o: &Value| run(&RollingUpdateStuck, "apps", "Deployment", o);
        // Defaults 25%/25%: surge rounds up, so never stuck.
        assert!(dep(&d(json!(null), json!(1))).is_empty());
        // maxSurge 0 with the default 25% of 3 replicas rounds down to 0.
        let v = dep(&d(json!({"rollingUpdate": {"maxSurge": 0}}), json!(3)));
        assert!(
            v[0].message
                .contains("default 25% of 3 replicas rounds down"),
            "{}",
            v[0].message
        );
        assert_eq!(v[0].path.render(), "/spec/strategy/rollingUpdate/maxSurge");
        // The brief's example: 10% unavailable of 3 is 0.
        let v = dep(&d(
            json!({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "10%"}}),
            json!(3),
        ));
        assert_eq!(v.len(), 1);
        // 10% of 10 is 1: fine.
        assert!(
            dep(&d(
                json!({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "10%"}}),
                json!(10)
            ))
            .is_empty()
        );
        // Literal zeros, even scaled to zero.
        let v = dep(&d(
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            json!(0),
        ));
        assert!(v[0].message.contains("rejects both at 0"));
        // Scaled to zero with percentages: nothing to roll.
        assert!(dep(&d(json!({"rollingUpdate": {"maxSurge": 0}}), json!(0))).is_empty());
        // Recreate and unreadable values are skipped.
        assert!(
            dep(&d(
                json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
                json!(3)
            ))
            .is_empty()
        );
        assert!(
            dep(&d(
                json!({"rollingUpdate": {"maxSurge": "none", "maxUnavailable": 0}}),
                json!(3)
            ))
            .is_empty()
        );
        // DaemonSet: defaults are 1 unavailable; only literal zeros are stuck.
        let ds = |ru: Value| {
            run(
                &RollingUpdateStuck,
                "apps",
                "DaemonSet",
                &json!({"spec": {"updateStrategy": {"rollingUpdate": ru}}}),
            )
        };
        assert!(ds(json!({"maxSurge": 0})).is_empty());
        assert!(ds(json!({"maxUnavailable": "1%"})).is_empty());
        assert_eq!(ds(json!({"maxUnavailable": 0})).len(), 1);
        assert_eq!(
            ds(json!({"maxUnavailable": "0%", "maxSurge": "0%"})).len(),
            1
        );
    }

    #[test]
    fn replicas_and_service_name() {
        let v = run(
            &super::super::replicas::DeploymentMissingReplicas::DEPLOYMENT,
            "apps",
            "Deployment",
            &json!({"spec": {}}),
        );
        assert!(v[0].message.contains("runs 1 replica:"), "{}", v[0].message);
        assert!(
            run(
                &super::super::replicas::DeploymentMissingReplicas::STATEFUL_SET,
                "apps",
                "StatefulSet",
                &json!({"spec": {"replicas": 2}})
            )
            .is_empty()
        );
        assert!(
            run(
                &super::super::replicas::DeploymentMissingReplicas::DEPLOYMENT,
                "apps",
                "DaemonSet",
                &json!({"spec": {}})
            )
            .is_empty()
        );
        let v = run(
            &StatefulSetServiceName,
            "apps",
            "StatefulSet",
            &json!({"spec": {"serviceName": " "}}),
        );
        assert!(v[0].message.contains("x-0.<service>"), "{}", v[0].message);
        assert!(
            run(
                &StatefulSetServiceName,
                "apps",
                "StatefulSet",
                &json!({"spec": {"serviceName": "db"}})
            )
            .is_empty()
        );
    }

    #[test]
    fn job_restart_policy_messages() {
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}});
        let v = run(&JobRestartPolicy, "batch", "Job", &job);
        assert!(v[0].message.contains("restartPolicy \"Always\""));
        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}});
        let v = run(&JobRestartPolicy, "batch", "CronJob", &cj);
        assert!(
            v[0].message
                .contains("no restartPolicy, which means Always")
        );
        assert!(
            v[0].message
                .contains("spec.jobTemplate.spec.template.spec.restartPolicy")
        );
        let job = json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}});
        assert!(run(&JobRestartPolicy, "batch", "Job", &job).is_empty());
        assert!(run(&JobRestartPolicy, "", "Pod", &json!({"spec": {}})).is_empty());
    }
}
