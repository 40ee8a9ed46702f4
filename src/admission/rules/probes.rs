//! Probe rules: missing readiness/liveness probes, liveness probes that check too little or
//! start too early, readiness slower to react than liveness, and probes without exactly one
//! handler. Only workloads meant to keep running are asked for probes (a Job's pod may
//! finish); a probe that is not a map counts as absent.
//!
//! Only the two "missing" rules can mutate, and only when switched on (a Polaris
//! configuration's `mutations` list, or `mutate: true` in the settings): the probe they
//! write is Polaris' placeholder, which knows nothing of the application, so by default a
//! guess that could restart healthy pods is never made.
use serde_json::{Value, json};

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::PatchBuilder;
use crate::admission::settings::Action;
use crate::admission::template::{ContainerKind, ContainerRef, containers};

/// The probes rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(ProbeMissing::READINESS),
        Box::new(ProbeMissing::LIVENESS),
        Box::new(LivenessProbeTcpOnly),
        Box::new(LivenessProbeNoStartupGrace),
        Box::new(ReadinessSlowerThanLiveness),
        Box::new(ProbeHandlerCount),
    ]
}

/// The handler fields a probe may use; Kubernetes requires exactly one.
pub const HANDLERS: [&str; 4] = ["exec", "httpGet", "tcpSocket", "grpc"];
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// Kubernetes' defaults for an unset (or zero) `periodSeconds` and `failureThreshold`.
const DEFAULT_PERIOD_SECONDS: i64 = 10;
const DEFAULT_FAILURE_THRESHOLD: i64 = 3;

/// A container's probe when it is a map.
fn probe<'v>(c: &'v Value, name: &str) -> Option<&'v Value> {
    c.get(name).filter(|p| p.is_object())
}

/// The handlers a probe sets (null members do not count).
pub fn handlers(probe: &Value) -> Vec<&'static str> {
    HANDLERS
        .into_iter()
        .filter(|h| probe.get(h).is_some_and(|v| !v.is_null()))
        .collect()
}

/// How long a probe takes to give up on a failing container: `periodSeconds ×
/// failureThreshold`, with Kubernetes' defaults for unset, zero or odd values.
pub fn seconds_to_fail(probe: &Value) -> i64 {
    let int = |k: &str, default: i64| {
        probe
            .get(k)
            .and_then(Value::as_i64)
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    int("periodSeconds", DEFAULT_PERIOD_SECONDS)
        .saturating_mul(int("failureThreshold", DEFAULT_FAILURE_THRESHOLD))
}

/// The app containers of a long-running workload: the ones that serve and should be
/// probed. Init containers finish; sidecars are left to their own charts.
fn app_containers<'v>(ctx: &Context<'v>) -> Vec<ContainerRef<'v>> {
    let Some(t) = ctx.template.as_ref().filter(|t| t.long_running) else {
        return Vec::new();
    };
    containers(ctx.object, &t.spec)
        .into_iter()
        .filter(|c| c.kind == ContainerKind::Container)
        .collect()
}

/// `readinessProbeMissing` and `livenessProbeMissing` (Polaris ids).
struct ProbeMissing {
    id: &'static str,
    field: &'static str,
    why: &'static str,
}

impl ProbeMissing {
    const READINESS: ProbeMissing = ProbeMissing {
        id: "readinessProbeMissing",
        field: "readinessProbe",
        why: "Services send it traffic before it is ready and while it is failing",
    };
    const LIVENESS: ProbeMissing = ProbeMissing {
        id: "livenessProbeMissing",
        field: "livenessProbe",
        why: "a hung process is never restarted",
    };

    /// Polaris' mutation value for both probes, kept identical so a configuration moved
    /// from Polaris patches objects the same way.
    fn placeholder() -> Value {
        json!({
            "exec": {"command": ["cat", "/tmp/healthy"]},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
        })
    }
}

impl Rule for ProbeMissing {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        app_containers(ctx)
            .into_iter()
            .filter(|c| probe(c.value, self.field).is_none())
            .map(|c| {
                Violation::new(
                    format!(
                        "{} has no {}: add one; without it {}",
                        c.label(),
                        self.field,
                        self.why
                    ),
                    c.ptr.child(self.field),
                )
            })
            .collect()
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let Some(t) = ctx.template.as_ref().filter(|t| t.long_running) else {
            return;
        };
        // The same containers `check` reports, read from the patched document; `set`
        // also replaces a probe that is present but not a map (null, a string), as
        // Polaris' `add` does.
        let targets: Vec<_> = containers(patch.doc(), &t.spec)
            .into_iter()
            .filter(|c| c.kind == ContainerKind::Container)
            .filter(|c| probe(c.value, self.field).is_none())
            .map(|c| c.ptr.child(self.field))
            .collect();
        for ptr in targets {
            patch.set(&ptr, Self::placeholder());
        }
    }
}

/// `livenessProbeTcpOnly`: an open port says little about health (a deadlocked server
/// still accepts connections), so the restart the probe exists for never comes.
pub struct LivenessProbeTcpOnly;

impl Rule for LivenessProbeTcpOnly {
    fn id(&self) -> &'static str {
        "livenessProbeTcpOnly"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        app_containers(ctx)
            .into_iter()
            .filter(|c| probe(c.value, "livenessProbe").is_some_and(|p| handlers(p) == ["tcpSocket"]))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} livenessProbe only checks that a TCP port opens, which a hung server still does: use httpGet on a health endpoint, exec or grpc",
                        c.label()
                    ),
                    c.ptr.child("livenessProbe").child("tcpSocket"),
                )
            })
            .collect()
    }
}

/// `livenessProbeNoStartupGrace`: liveness starts probing at once, so an app that starts
/// slowly is killed before it is up, again and again.
pub struct LivenessProbeNoStartupGrace;

impl Rule for LivenessProbeNoStartupGrace {
    fn id(&self) -> &'static str {
        "livenessProbeNoStartupGrace"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        app_containers(ctx)
            .into_iter()
            .filter(|c| {
                let Some(live) = probe(c.value, "livenessProbe") else {
                    return false;
                };
                let delayed = live
                    .get("initialDelaySeconds")
                    .and_then(Value::as_i64)
                    .is_some_and(|d| d > 0);
                !delayed && probe(c.value, "startupProbe").is_none()
            })
            .map(|c| {
                Violation::new(
                    format!(
                        "{} livenessProbe has no startupProbe and no initialDelaySeconds: add a startupProbe so a slow start does not become a restart loop",
                        c.label()
                    ),
                    c.ptr.child("startupProbe"),
                )
            })
            .collect()
    }
}

/// `readinessSlowerThanLiveness`: when readiness needs longer to fail than liveness, a
/// failing pod is restarted while it still receives traffic, instead of first being taken
/// out of rotation.
pub struct ReadinessSlowerThanLiveness;

impl Rule for ReadinessSlowerThanLiveness {
    fn id(&self) -> &'static str {
        "readinessSlowerThanLiveness"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        app_containers(ctx)
            .into_iter()
            .filter_map(|c| {
                let ready = seconds_to_fail(probe(c.value, "readinessProbe")?);
                let live = seconds_to_fail(probe(c.value, "livenessProbe")?);
                (ready > live).then(|| {
                    Violation::new(
                        format!(
                            "{} readinessProbe takes {ready}s to fail but livenessProbe restarts it after {live}s: lower readiness periodSeconds×failureThreshold so it leaves rotation first",
                            c.label()
                        ),
                        c.ptr.child("readinessProbe"),
                    )
                })
            })
            .collect()
    }
}

/// `probeHandlerCount`: a probe must have exactly one of exec, httpGet, tcpSocket, grpc. The
/// API server rejects any other count; `portcullis check` says so before CI applies.
pub struct ProbeHandlerCount;

impl Rule for ProbeHandlerCount {
    fn id(&self) -> &'static str {
        "probeHandlerCount"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in containers(ctx.object, &t.spec) {
            for name in PROBES {
                let Some(p) = probe(c.value, name) else {
                    continue;
                };
                let found = handlers(p);
                if found.len() == 1 {
                    continue;
                }
                let what = if found.is_empty() {
                    "has no handler".to_string()
                } else {
                    format!("has {} handlers ({})", found.len(), found.join(", "))
                };
                out.push(Violation::new(
                    format!(
                        "{} {name} {what}: keep exactly one of exec, httpGet, tcpSocket or grpc; the API server rejects it otherwise",
                        c.label()
                    ),
                    c.ptr.child(name),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::context::Operation;
    use crate::admission::settings::AdmissionSettings;
    use serde_json::json;

    fn check(rule: &dyn Rule, obj: &Value) -> Vec<Violation> {
        let settings = AdmissionSettings::default();
        let kind = obj["kind"].as_str().unwrap_or("");
        let group = if kind == "Pod" { "" } else { "apps" };
        let ctx = Context::new(
            group,
            kind,
            Operation::Create,
            "default",
            "",
            obj,
            &settings,
        );
        rule.check(&ctx)
    }

    fn pod(container: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [container]}})
    }

    #[test]
    fn seconds_to_fail_uses_kubernetes_defaults() {
        assert_eq!(seconds_to_fail(&json!({})), 30);
        assert_eq!(seconds_to_fail(&json!({"periodSeconds": 5})), 15);
        assert_eq!(
            seconds_to_fail(&json!({"periodSeconds": 0, "failureThreshold": 0})),
            30
        );
        assert_eq!(
            seconds_to_fail(&json!({"periodSeconds": "5", "failureThreshold": 1})),
            10
        );
        assert_eq!(
            seconds_to_fail(&json!({"periodSeconds": i64::MAX, "failureThreshold": 2})),
            i64::MAX
        );
    }

    #[test]
    fn handlers_ignore_nulls() {
        assert_eq!(handlers(&json!({"exec": null, "httpGet": {}})), ["httpGet"]);
        assert!(handlers(&json!({"periodSeconds": 1})).is_empty());
    }

    #[test]
    fn readiness_equal_to_liveness_is_fine() {
        let c = json!({"name": "a", "readinessProbe": {"httpGet": {}}, "livenessProbe": {"httpGet": {}}});
        assert!(check(&ReadinessSlowerThanLiveness, &pod(c)).is_empty());
        let c = json!({"name": "a",
            "readinessProbe": {"httpGet": {}, "periodSeconds": 20},
            "livenessProbe": {"httpGet": {}, "periodSeconds": 10, "failureThreshold": 5}});
        let v = check(&ReadinessSlowerThanLiveness, &pod(c));
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("60s to fail"), "{}", v[0].message);
        assert!(v[0].message.contains("after 50s"), "{}", v[0].message);
    }

    #[test]
    fn pods_that_finish_need_no_probes_but_still_get_handler_checks() {
        let mut obj = pod(json!({"name": "a", "livenessProbe": {}}));
        obj["spec"]["restartPolicy"] = json!("Never");
        assert!(check(&ProbeMissing::READINESS, &obj).is_empty());
        assert!(check(&LivenessProbeNoStartupGrace, &obj).is_empty());
        let v = check(&ProbeHandlerCount, &obj);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path.render(), "/spec/containers/0/livenessProbe");
    }

    #[test]
    fn messages_are_single_short_lines() {
        let c = json!({"name": "a-rather-long-container-name",
            "livenessProbe": {"tcpSocket": {"port": 1}},
            "readinessProbe": {"exec": {}, "grpc": {}, "periodSeconds": 60}});
        let obj = pod(c);
        let mut all = Vec::new();
        for r in rules() {
            all.extend(check(r.as_ref(), &obj));
        }
        all.extend(check(&ProbeMissing::LIVENESS, &pod(json!({"name": "b"}))));
        assert_eq!(all.len(), 5, "{all:?}");
        for v in all {
            assert!(
                v.message.chars().count() < 200 && !v.message.contains('\n'),
                "{}",
                v.message
            );
        }
    }
}
