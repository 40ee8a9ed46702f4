//! Resource rules: missing CPU/memory requests and memory limits (with mutations that fill
//! in the configured defaults), requests above limits, and the pod's QoS class as an
//! annotation. Odd values (wrong types, unparseable quantities) count as absent; a mutation
//! that could make the object invalid (a request above its limit) is skipped instead.
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::quantity;
use crate::admission::settings::Action;
use crate::admission::template::{ContainerKind, ContainerRef, containers};

/// Annotation that records the QoS class the pod will get.
pub const ANNOTATION_QOS_CLASS: &str = "portcullis.io/qos-class";

/// The resources rules. Requests are filled before limits so a defaulted limit can be
/// raised to a request that is larger than the default limit.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(Missing::CPU_REQUEST),
        Box::new(Missing::MEMORY_REQUEST),
        Box::new(Missing::MEMORY_LIMIT),
        Box::new(Missing::CPU_LIMIT),
        Box::new(RequestAboveLimit),
        Box::new(QosClassAnnotation),
    ]
}

/// Kubernetes' pod QoS classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const CPU: &str = "cpu";
const MEMORY: &str = "memory";

/// A quantity field (`resources.<section>.<name>`) when it is set: null and `""` count as
/// absent, as in Polaris.
fn field<'v>(resources_owner: &'v Value, section: &str, name: &str) -> Option<&'v Value> {
    resources_owner
        .get("resources")?
        .get(section)?
        .get(name)
        .filter(|v| !v.is_null() && v.as_str() != Some(""))
}

/// A quantity as written, for messages.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Equal within float noise: `0.1` and `100m` parse to values that may differ in the last bit.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The effective request and limit of one resource on a container (or on the pod-level
/// `resources`), after Kubernetes' defaulting: an unset request takes the limit's value.
/// Zero and unparseable values count as unset, as in Kubernetes' QoS code (which skips
/// non-positive quantities).
fn effective(owner: &Value, name: &str) -> (Option<f64>, Option<f64>) {
    let positive = |v: Option<&Value>| v.and_then(quantity::from_json).filter(|q| *q > 0.0);
    let limit = positive(field(owner, "limits", name));
    let request = match field(owner, "requests", name) {
        Some(v) => positive(Some(v)),
        None => limit,
    };
    (request, limit)
}

/// The QoS class Kubernetes gives a pod with this spec (pkg/apis/core/helper/qos):
/// BestEffort when no container (init included) has a CPU or memory request or limit;
/// Guaranteed when every container has CPU and memory limits and the pod's summed requests
/// equal its summed limits (an unset request defaults to the limit); Burstable otherwise.
/// Pod-level `resources`, when set, decide alone. Ephemeral containers never count.
pub fn qos_class(pod_spec: &Value) -> QosClass {
    let mut requests = [None::<f64>; 2];
    let mut limits = [None::<f64>; 2];
    let mut guaranteed = true;
    let mut add = |owner: &Value, guaranteed: &mut bool| {
        let mut has_limits = true;
        for (i, name) in [CPU, MEMORY].into_iter().enumerate() {
            let (req, lim) = effective(owner, name);
            if let Some(r) = req {
                requests[i] = Some(requests[i].unwrap_or(0.0) + r);
            }
            match lim {
                Some(l) => limits[i] = Some(limits[i].unwrap_or(0.0) + l),
                None => has_limits = false,
            }
        }
        if !has_limits {
            *guaranteed = false;
        }
    };
    let pod_level = pod_spec.get("resources").is_some_and(|r| {
        ["requests", "limits"].iter().any(|s| {
            r.get(s)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if pod_level {
        add(pod_spec, &mut guaranteed);
    } else {
        for list in ["containers", "initContainers"] {
            for c in pod_spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add(c, &mut guaranteed);
            }
        }
    }
    if requests.iter().chain(&limits).all(Option::is_none) {
        return QosClass::BestEffort;
    }
    let equal = requests.iter().zip(&limits).all(|(r, l)| match (r, l) {
        (Some(r), Some(l)) => same(*r, *l),
        (None, None) => true,
        _ => false,
    });
    if guaranteed && equal {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The containers the "missing" rules judge: regular containers and sidecars. Plain init
/// containers run one at a time before the app and are exempt, as in Polaris.
fn long_lived<'v>(doc: &'v Value, spec: &Pointer) -> Vec<ContainerRef<'v>> {
    containers(doc, spec)
        .into_iter()
        .filter(|c| c.kind == ContainerKind::Container || c.is_sidecar())
        .collect()
}

/// The CPU limit Polaris' `cpuLimitsMissing` mutation writes.
const POLARIS_CPU_LIMIT: &str = "100m";

/// Which resource field a `Missing` rule looks after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    CpuRequest,
    MemoryRequest,
    MemoryLimit,
    CpuLimit,
}

/// `cpuRequestsMissing`, `memoryRequestsMissing`, `memoryLimitsMissing`, `cpuLimitsMissing`
/// (Polaris ids). `cpuLimitsMissing` mutates only when switched on (a Polaris
/// configuration's `mutations` list, or `mutate: true` in the settings): a guessed CPU
/// limit throttles, so it is never written by default. When on, it writes Polaris' 100m,
/// or the container's CPU request when that is larger (Polaris would write 100m there too
/// and produce an object the API server rejects for its request above the limit).
///
/// As in Polaris, the field itself must be set: a container with only a limit fails the
/// request check, although Kubernetes would default the request to the limit (Polaris'
/// schema requires `resources.requests.cpu`, and the explicit value is what reviewers
/// and cost tools read). The mutation then writes the limit's own value as the request,
/// which is what Kubernetes would have used, so nothing moves (the QoS class included).
/// A pod-level `resources` entry for the resource also satisfies the rule (it bounds the
/// whole pod, and a container default could contradict it); Polaris predates that field.
struct Missing {
    id: &'static str,
    field: Field,
}

impl Missing {
    const CPU_REQUEST: Missing = Missing {
        id: "cpuRequestsMissing",
        field: Field::CpuRequest,
    };
    const MEMORY_REQUEST: Missing = Missing {
        id: "memoryRequestsMissing",
        field: Field::MemoryRequest,
    };
    const MEMORY_LIMIT: Missing = Missing {
        id: "memoryLimitsMissing",
        field: Field::MemoryLimit,
    };
    const CPU_LIMIT: Missing = Missing {
        id: "cpuLimitsMissing",
        field: Field::CpuLimit,
    };

    fn section_and_name(&self) -> (&'static str, &'static str) {
        match self.field {
            Field::CpuRequest => ("requests", CPU),
            Field::MemoryRequest => ("requests", MEMORY),
            Field::MemoryLimit => ("limits", MEMORY),
            Field::CpuLimit => ("limits", CPU),
        }
    }

    fn is_missing(&self, c: &Value, pod_spec: &Value) -> bool {
        let (section, name) = self.section_and_name();
        let covered = |owner: &Value| field(owner, section, name).is_some();
        !covered(c) && !covered(pod_spec)
    }

    fn why(&self) -> &'static str {
        match self.field {
            Field::CpuRequest => {
                "has no CPU request: set resources.requests.cpu; without one HPA cannot scale on CPU utilisation and the scheduler packs blindly"
            }
            Field::MemoryRequest => {
                "has no memory request: set resources.requests.memory; without one the scheduler overcommits the node and this pod is evicted first"
            }
            Field::MemoryLimit => {
                "has no memory limit: set resources.limits.memory; without one a leak OOM-kills or starves other pods on the node"
            }
            Field::CpuLimit => {
                "has no CPU limit: set resources.limits.cpu; without one a busy loop takes CPU from every other pod on the node"
            }
        }
    }

    /// The value to fill in for `c`, or None when no value would be valid.
    fn fill_value(&self, ctx: &Context<'_>, c: &Value) -> Option<String> {
        let d = &ctx.settings.defaults;
        let default = match self.field {
            Field::CpuRequest => &d.cpu_request,
            Field::MemoryRequest => &d.memory_request,
            Field::MemoryLimit => &d.memory_limit,
            Field::CpuLimit => {
                let polaris = quantity::parse(POLARIS_CPU_LIMIT)?;
                let request = field(c, "requests", CPU);
                return match request.and_then(|r| quantity::from_json(r).map(|q| (r, q))) {
                    Some((r, q)) if q > polaris => Some(show(r)),
                    _ => Some(POLARIS_CPU_LIMIT.to_string()),
                };
            }
        };
        let default_q = quantity::parse(default)?;
        if self.field != Field::MemoryLimit {
            // A request above the container's limit would make the object invalid; the
            // limit is what Kubernetes defaults the request to anyway.
            let (_, name) = self.section_and_name();
            return match field(c, "limits", name) {
                Some(limit) => Some(show(limit)),
                None => Some(default.clone()),
            };
        }
        // A default limit below the container's own request would make the object
        // invalid: take the request instead (memory limit = request, nothing else moves).
        match field(c, "requests", MEMORY) {
            None => Some(default.clone()),
            Some(req) => {
                let req_q = quantity::from_json(req)?;
                if req_q > default_q {
                    Some(show(req))
                } else {
                    Some(default.clone())
                }
            }
        }
    }
}

impl Rule for Missing {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(self.field != Field::CpuLimit)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let Some(spec) = t.spec.get(ctx.object) else {
            return Vec::new();
        };
        let (section, name) = self.section_and_name();
        let mut qos = None;
        long_lived(ctx.object, &t.spec)
            .into_iter()
            .filter(|c| self.is_missing(c.value, spec))
            .map(|c| {
                let q = *qos.get_or_insert_with(|| qos_class(spec));
                Violation::new(
                    format!("{} {} (pod QoS: {q})", c.label(), self.why()),
                    c.ptr.child("resources").child(section).child(name),
                )
            })
            .collect()
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let Some(t) = &ctx.template else {
            return;
        };
        let Some(spec) = t.spec.get(patch.doc()) else {
            return;
        };
        let (section, name) = self.section_and_name();
        let targets: Vec<(Pointer, String)> = long_lived(patch.doc(), &t.spec)
            .into_iter()
            .filter(|c| self.is_missing(c.value, spec))
            .filter_map(|c| {
                let v = self.fill_value(ctx, c.value)?;
                Some((c.ptr.child("resources").child(section).child(name), v))
            })
            .collect();
        for (ptr, v) in targets {
            // `""` counts as missing, and add_if_absent leaves present values alone.
            if patch.get(&ptr).and_then(Value::as_str) == Some("") {
                patch.set(&ptr, Value::String(v));
            } else {
                patch.add_if_absent(&ptr, Value::String(v));
            }
        }
    }
}

/// `requestAboveLimit`: a CPU or memory request larger than its limit. The API server
/// rejects these too; catching them here makes `portcullis check` fail before CI applies.
pub struct RequestAboveLimit;

impl Rule for RequestAboveLimit {
    fn id(&self) -> &'static str {
        "requestAboveLimit"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let mut owners: Vec<(String, Pointer, &Value)> = containers(ctx.object, &t.spec)
            .into_iter()
            .map(|c| (c.label(), c.ptr, c.value))
            .collect();
        if let Some(spec) = t.spec.get(ctx.object) {
            owners.push(("pod-level".to_string(), t.spec.clone(), spec));
        }
        let mut out = Vec::new();
        for (label, ptr, owner) in owners {
            for name in [CPU, MEMORY] {
                let (Some(req), Some(lim)) =
                    (field(owner, "requests", name), field(owner, "limits", name))
                else {
                    continue;
                };
                let (Some(rq), Some(lq)) = (quantity::from_json(req), quantity::from_json(lim))
                else {
                    continue;
                };
                if rq > lq && !same(rq, lq) {
                    out.push(Violation::new(
                        format!(
                            "{label} requests {name} {} above its limit {}: lower resources.requests.{name} or raise the limit; the API server rejects request > limit",
                            show(req),
                            show(lim)
                        ),
                        ptr.child("resources").child("requests").child(name),
                    ));
                }
            }
        }
        out
    }
}

/// `qosClassAnnotation` (mutation only): records the QoS class the pod will have after the
/// mutations before it in `portcullis.io/qos-class` on the pod template, replacing a stale
/// value so it follows resource changes on UPDATE.
pub struct QosClassAnnotation;

impl Rule for QosClassAnnotation {
    fn id(&self) -> &'static str {
        "qosClassAnnotation"
    }
    /// It never reports a finding, so there is nothing to act on; `mutate: false` turns it off.
    fn default_action(&self) -> Action {
        Action::Off
    }
    fn mutation(&self) -> Option<bool> {
        Some(true)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let Some(t) = &ctx.template else {
            return;
        };
        let Some(spec) = t.spec.get(patch.doc()).filter(|s| s.is_object()) else {
            return;
        };
        let class = qos_class(spec);
        let ptr = t.metadata.child("annotations").child(ANNOTATION_QOS_CLASS);
        // `set` adds nothing when the value is already right, so a second pass is empty.
        patch.set(&ptr, Value::String(class.as_str().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::lookup::At;
    use serde_json::json;

    fn c(resources: Value) -> Value {
        json!({"name": "c", "resources": resources})
    }

    #[test]
    fn best_effort_when_nothing_is_set() {
        assert_eq!(qos_class(&json!({})), QosClass::BestEffort);
        let spec = json!({"containers": [{"name": "a"}, c(json!({"requests": {"ephemeral-storage": "1Gi"}}))]});
        assert_eq!(qos_class(&spec), QosClass::BestEffort);
        // Zero quantities do not count.
        let spec = json!({"containers": [c(json!({"requests": {"cpu": "0"}}))]});
        assert_eq!(qos_class(&spec), QosClass::BestEffort);
    }

    #[test]
    fn guaranteed_needs_every_container_including_init() {
        let full = c(json!({"limits": {"cpu": "500m", "memory": "1Gi"}}));
        let spec = json!({"containers": [full.clone()]});
        assert_eq!(qos_class(&spec), QosClass::Guaranteed);
        let spec = json!({"containers": [full.clone()], "initContainers": [c(json!({"limits": {"cpu": "1"}}))]});
        assert_eq!(qos_class(&spec), QosClass::Burstable);
        let spec = json!({"containers": [full.clone()], "initContainers": [{"name": "bare"}]});
        assert_eq!(qos_class(&spec), QosClass::Burstable);
    }

    #[test]
    fn requests_default_to_limits_and_forms_compare_by_value() {
        let spec = json!({"containers": [c(json!({
            "requests": {"cpu": "0.5", "memory": "1024Mi"},
            "limits": {"cpu": "500m", "memory": "1Gi"}
        }))]});
        assert_eq!(qos_class(&spec), QosClass::Guaranteed);
        let spec = json!({"containers": [c(json!({
            "requests": {"cpu": "100m"},
            "limits": {"cpu": "500m", "memory": "1Gi"}
        }))]});
        assert_eq!(qos_class(&spec), QosClass::Burstable);
        let spec = json!({"containers": [c(json!({"limits": {"cpu": 1, "memory": "64Mi"}}))]});
        assert_eq!(qos_class(&spec), QosClass::Guaranteed);
    }

    #[test]
    fn burstable_with_any_request() {
        let spec =
            json!({"containers": [{"name": "a"}, c(json!({"requests": {"memory": "64Mi"}}))]});
        assert_eq!(qos_class(&spec), QosClass::Burstable);
    }

    #[test]
    fn pod_level_resources_decide_alone() {
        let spec = json!({
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "containers": [{"name": "a"}]
        });
        assert_eq!(qos_class(&spec), QosClass::Guaranteed);
    }

    #[test]
    fn odd_input_does_not_panic() {
        for spec in [
            json!(null),
            json!("x"),
            json!({"containers": "x"}),
            json!({"containers": [null, 1, {"resources": "x"}, {"resources": {"limits": [1]}}]}),
            json!({"containers": [c(json!({"limits": {"cpu": "lots", "memory": true}}))]}),
        ] {
            assert_eq!(qos_class(&spec), QosClass::BestEffort, "{spec}");
        }
    }

    #[test]
    fn a_limit_does_not_stand_in_for_the_request() {
        let spec = json!({});
        let limited = c(json!({"limits": {"memory": "1Gi"}}));
        assert!(Missing::MEMORY_REQUEST.is_missing(&limited, &spec));
        assert!(Missing::CPU_REQUEST.is_missing(&limited, &spec));
        assert!(!Missing::MEMORY_LIMIT.is_missing(&limited, &spec));
        let empty = c(json!({"limits": {"memory": ""}, "requests": {"memory": null}}));
        assert!(Missing::MEMORY_LIMIT.is_missing(&empty, &spec));
        assert!(Missing::MEMORY_REQUEST.is_missing(&empty, &spec));
    }

    use crate::admission::context::Operation;
    use crate::admission::settings::AdmissionSettings;

    /// Runs the resources mutations that are on by default (with `opt_in`, the ones that
    /// must be switched on too) in catalogue order and returns the result.
    fn mutate_with(obj: &Value, settings: &AdmissionSettings, opt_in: bool) -> Value {
        let ctx = Context::new("", "Pod", Operation::Create, "default", "", obj, settings);
        let mut patch = PatchBuilder::new(obj.clone());
        for r in rules() {
            if r.mutation() == Some(true) || (opt_in && r.mutation().is_some()) {
                r.mutate(&ctx, &mut patch);
            }
        }
        patch.doc().clone()
    }

    fn mutate_all(obj: &Value, settings: &AdmissionSettings) -> Value {
        mutate_with(obj, settings, false)
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    fn findings(rule: &dyn Rule, obj: &Value) -> Vec<Violation> {
        let settings = AdmissionSettings::default();
        let ctx = Context::new("", "Pod", Operation::Create, "default", "", obj, &settings);
        rule.check(&ctx)
    }

    #[test]
    fn annotation_reflects_the_mutations_before_it() {
        let settings = AdmissionSettings::default();
        let out = mutate_all(&pod(json!([{"name": "a"}])), &settings);
        assert_eq!(
            out.at("/spec/containers/0/resources"),
            Some(
                &json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
            )
        );
        assert_eq!(
            out.at("/metadata/annotations/portcullis.io~1qos-class"),
            Some(&json!("Burstable"))
        );
    }

    #[test]
    fn mutations_never_put_a_request_above_its_limit() {
        let mut settings = AdmissionSettings::default();
        // A misconfigured pair (request default above limit default) must still yield a
        // valid object.
        settings.defaults.memory_request = "1Gi".into();
        settings.defaults.memory_limit = "256Mi".into();
        let cases = [
            json!({}),
            json!({"requests": {"memory": "4Gi"}}),
            json!({"requests": {"memory": "64Mi"}}),
            json!({"limits": {"memory": "32Mi"}}),
            json!({"limits": {"cpu": "10m"}}),
            json!({"requests": {"memory": ""}, "limits": {"memory": ""}}),
            // Above Polaris' 100m CPU limit: the opt-in limit takes the request.
            json!({"requests": {"cpu": "2"}}),
        ];
        for (res, opt_in) in cases.iter().flat_map(|r| [(r, false), (r, true)]) {
            let out = mutate_with(&pod(json!([c(res.clone())])), &settings, opt_in);
            assert!(
                findings(&RequestAboveLimit, &out).is_empty(),
                "{res} -> {}",
                out["spec"]
            );
            for m in [
                Missing::CPU_REQUEST,
                Missing::MEMORY_REQUEST,
                Missing::MEMORY_LIMIT,
            ] {
                assert!(
                    findings(&m, &out).is_empty(),
                    "{} still fires on {res}",
                    m.id
                );
            }
            if opt_in {
                assert!(findings(&Missing::CPU_LIMIT, &out).is_empty(), "{res}");
            }
        }
    }

    #[test]
    fn broken_defaults_are_not_written() {
        let mut settings = AdmissionSettings::default();
        settings.defaults.memory_limit = "plenty".into();
        let out = mutate_all(&pod(json!([{"name": "a"}])), &settings);
        assert_eq!(out.at("/spec/containers/0/resources/limits"), None);
    }

    #[test]
    fn messages_name_the_container_the_fix_and_the_qos_class() {
        let obj = pod(json!([{"name": "web"}]));
        let v = findings(&Missing::MEMORY_LIMIT, &obj);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message
                .starts_with("container \"web\" has no memory limit: set resources.limits.memory")
        );
        assert!(
            v[0].message.ends_with("(pod QoS: BestEffort)"),
            "{}",
            v[0].message
        );
        assert_eq!(
            v[0].path.render(),
            "/spec/containers/0/resources/limits/memory"
        );
        let v = findings(&Missing::CPU_REQUEST, &obj);
        assert!(v[0].message.contains("HPA"), "{}", v[0].message);
        for rule in [
            Missing::CPU_REQUEST,
            Missing::MEMORY_REQUEST,
            Missing::MEMORY_LIMIT,
        ] {
            let m = &findings(&rule, &obj)[0].message;
            assert!(m.chars().count() < 200 && !m.contains('\n'), "{m}");
        }
        let obj = pod(json!([c(
            json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}})
        )]));
        let v = findings(&RequestAboveLimit, &obj);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("cpu 2 above its limit 1500m"),
            "{}",
            v[0].message
        );
        assert_eq!(
            v[0].path.render(),
            "/spec/containers/0/resources/requests/cpu"
        );
    }

    #[test]
    fn whole_catalogue_mutation_is_valid_and_idempotent() {
        use crate::admission::engine::Engine;
        use crate::admission::patch::render;
        let engine = Engine::new(AdmissionSettings::default()).unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "app:1"},
                               {"name": "b", "image": "app:1", "resources": {"requests": {"memory": "2Gi"}}}],
                "volumes": [{"name": "v", "emptyDir": {}}]}}}});
        let run = |o: &Value| {
            let ctx = Context::new(
                "apps",
                "Deployment",
                Operation::Create,
                "ns",
                "",
                o,
                engine.settings(),
            );
            engine.mutate(&ctx)
        };
        let ops = run(&obj);
        let patch: json_patch::Patch = serde_json::from_slice(&render(&ops)).unwrap();
        let mut out = obj.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        assert!(run(&out).is_empty(), "second pass: {:?}", run(&out));
        assert_eq!(
            out.at("/spec/template/spec/containers/1/resources/limits/memory"),
            Some(&json!("2Gi"))
        );
        assert_eq!(
            out.at("/spec/template/metadata/annotations/portcullis.io~1qos-class"),
            Some(&json!("Burstable"))
        );
        let ctx = Context::new(
            "apps",
            "Deployment",
            Operation::Create,
            "ns",
            "",
            &out,
            engine.settings(),
        );
        assert!(RequestAboveLimit.check(&ctx).is_empty());
    }
}
