//! Finding pod templates inside workload objects, each with its JSON Pointer base, so a
//! container rule is written once and works for every workload kind.
use crate::admission::lookup::At;
use serde_json::Value;

use super::patch::Pointer;

/// Where a pod spec lives in an object and what kind of workload owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTemplate {
    /// The pod spec (`/spec`, `/spec/template/spec`, `/spec/jobTemplate/spec/template/spec`).
    pub spec: Pointer,
    /// The pod metadata beside it (`/metadata` for a Pod, `.../template/metadata` otherwise).
    pub metadata: Pointer,
    /// True for workloads meant to keep running (probes make sense); false for Jobs,
    /// CronJobs and Pods that are allowed to finish.
    pub long_running: bool,
}

/// The pod-template base of a kind, in API server terms (`apps/Deployment` etc.). The
/// group is checked so a CRD that happens to be called `Deployment` is not misread.
pub fn find(group: &str, kind: &str, object: &Value) -> Option<PodTemplate> {
    let (spec, long_running): (&[&str], bool) = match (group, kind) {
        ("", "Pod") => {
            let restart = object.at("/spec/restartPolicy").and_then(Value::as_str);
            (&["spec"], !matches!(restart, Some("Never" | "OnFailure")))
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("", "ReplicationController") => (&["spec", "template", "spec"], true),
        ("batch", "Job") => (&["spec", "template", "spec"], false),
        ("batch", "CronJob") => (&["spec", "jobTemplate", "spec", "template", "spec"], false),
        _ => return None,
    };
    let spec = Pointer::from_tokens(spec.iter().copied());
    let metadata = match spec.parent() {
        Some(p) => p.child("metadata"),
        None => Pointer::from_tokens(["metadata"]),
    };
    // A Pod's metadata is the object's own, not a sibling of /spec under a template.
    let metadata = if kind == "Pod" {
        Pointer::from_tokens(["metadata"])
    } else {
        metadata
    };
    Some(PodTemplate {
        spec,
        metadata,
        long_running,
    })
}

/// Which list a container came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Container,
    Init,
}

impl ContainerKind {
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::Init => "initContainers",
        }
    }
}

/// One container of a pod spec with its pointer.
#[derive(Debug, Clone)]
pub struct ContainerRef<'v> {
    pub kind: ContainerKind,
    pub ptr: Pointer,
    pub value: &'v Value,
}

impl<'v> ContainerRef<'v> {
    pub fn name(&self) -> &'v str {
        self.value.get("name").and_then(Value::as_str).unwrap_or("")
    }

    /// A sidecar is an init container with `restartPolicy: Always` (Kubernetes 1.29+): it
    /// runs for the pod's whole life, so it is judged like a regular container.
    pub fn is_sidecar(&self) -> bool {
        self.kind == ContainerKind::Init
            && self.value.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    }

    /// A short label for messages: `container "web"` or `init container "setup"`.
    pub fn label(&self) -> String {
        match self.kind {
            ContainerKind::Container => format!("container {:?}", self.name()),
            ContainerKind::Init => format!("init container {:?}", self.name()),
        }
    }
}

/// Every container of the pod spec at `spec` in `doc`: regular containers first, then
/// init containers.
pub fn containers<'v>(doc: &'v Value, spec: &Pointer) -> Vec<ContainerRef<'v>> {
    let mut out = Vec::new();
    let Some(spec_v) = spec.get(doc) else {
        return out;
    };
    for kind in [ContainerKind::Container, ContainerKind::Init] {
        if let Some(list) = spec_v.get(kind.field()).and_then(Value::as_array) {
            let base = spec.child(kind.field());
            for (i, c) in list.iter().enumerate() {
                if c.is_object() {
                    out.push(ContainerRef {
                        kind,
                        ptr: base.index(i),
                        value: c,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bases_for_every_kind() {
        let o = json!({});
        let cases = [
            ("", "Pod", "/spec", "/metadata", true),
            (
                "apps",
                "Deployment",
                "/spec/template/spec",
                "/spec/template/metadata",
                true,
            ),
            (
                "apps",
                "ReplicaSet",
                "/spec/template/spec",
                "/spec/template/metadata",
                true,
            ),
            (
                "apps",
                "StatefulSet",
                "/spec/template/spec",
                "/spec/template/metadata",
                true,
            ),
            (
                "apps",
                "DaemonSet",
                "/spec/template/spec",
                "/spec/template/metadata",
                true,
            ),
            (
                "",
                "ReplicationController",
                "/spec/template/spec",
                "/spec/template/metadata",
                true,
            ),
            (
                "batch",
                "Job",
                "/spec/template/spec",
                "/spec/template/metadata",
                false,
            ),
            (
                "batch",
                "CronJob",
                "/spec/jobTemplate/spec/template/spec",
                "/spec/jobTemplate/spec/template/metadata",
                false,
            ),
        ];
        for (g, k, spec, meta, lr) in cases {
            let t = find(g, k, &o).unwrap_or_else(|| panic!("{k}"));
            assert_eq!(t.spec.render(), spec, "{k}");
            assert_eq!(t.metadata.render(), meta, "{k}");
            assert_eq!(t.long_running, lr, "{k}");
        }
        assert!(find("example.com", "Deployment", &o).is_none());
        assert!(find("", "Service", &o).is_none());
    }

    #[test]
    fn pods_that_finish_are_not_long_running() {
        let o = json!({"spec": {"restartPolicy": "Never"}});
        assert!(!find("", "Pod", &o).unwrap().long_running);
    }

    #[test]
    fn lists_containers_and_init_containers() {
        let o = json!({"spec": {"containers": [{"name": "a"}, "junk"], "initContainers": [{"name": "i", "restartPolicy": "Always"}]}});
        let cs = containers(&o, &Pointer::from_tokens(["spec"]));
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].ptr.render(), "/spec/containers/0");
        assert_eq!(cs[1].ptr.render(), "/spec/initContainers/0");
        assert!(cs[1].is_sidecar());
    }
}
