//! Reading the deployment manifests under `manifests/` as kustomize does: a directory's
//! `kustomization.yaml` lists its resources (files, or directories with their own
//! kustomization), and only those are installed. Plus the typed round trip that finds
//! fields a k8s-openapi type does not know.
//!
//! Include it with `#[path = "common/manifests.rs"] mod manifests;`. Everything panics
//! with the file name on a problem: these are test helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `manifests/` of this repository.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// One object and the file it came from.
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: PathBuf,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }
}

/// The documents of a multi-document YAML stream (empty documents dropped).
pub fn parse_docs(name: &str, text: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{name}: not valid YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The documents of one YAML file.
pub fn read_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_docs(&path.display().to_string(), &text)
}

/// A directory's kustomization.yaml.
pub fn kustomization(dir: &Path) -> Value {
    let path = dir.join("kustomization.yaml");
    let mut docs = read_docs(&path);
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// The strings of a YAML list (an absent list is empty).
pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every object a kustomization's `resources` bring in, directories followed.
pub fn resources(dir: &Path) -> Vec<Doc> {
    let k = kustomization(dir);
    let mut out = Vec::new();
    for entry in strings(&k["resources"]) {
        let path = dir.join(entry);
        if path.is_dir() {
            out.extend(resources(&path));
        } else {
            for value in read_docs(&path) {
                out.push(Doc {
                    file: path.clone(),
                    value,
                });
            }
        }
    }
    out
}

/// The objects of `manifests/base/`.
pub fn base() -> Vec<Doc> {
    resources(&root().join("base"))
}

/// The one object of `kind` named `name`.
pub fn find<'d>(docs: &'d [Doc], kind: &str, name: &str) -> &'d Doc {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == kind && d.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}");
    found[0]
}

/// Every object of `kind`.
pub fn all<'d>(docs: &'d [Doc], kind: &str) -> Vec<&'d Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

/// Deserializes `v` as `T` and serializes it back.
fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The typed round trip of a manifest by its apiVersion and kind; `None` when k8s-openapi
/// has no type for it (CRDs such as cert-manager's).
pub fn typed_round_trip(v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::admissionregistration::v1 as adm;
    use k8s_openapi::api::{apps, autoscaling, core, networking, policy, rbac};
    let api_version = v["apiVersion"].as_str().unwrap_or("");
    let kind = v["kind"].as_str().unwrap_or("");
    Some(match (api_version, kind) {
        ("v1", "Namespace") => round_trip::<core::v1::Namespace>(v),
        ("v1", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(v),
        ("v1", "Service") => round_trip::<core::v1::Service>(v),
        ("v1", "ConfigMap") => round_trip::<core::v1::ConfigMap>(v),
        ("v1", "Secret") => round_trip::<core::v1::Secret>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(v),
        ("apps/v1", "Deployment") => round_trip::<apps::v1::Deployment>(v),
        ("networking.k8s.io/v1", "IngressClass") => round_trip::<networking::v1::IngressClass>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<networking::v1::NetworkPolicy>(v),
        ("scheduling.k8s.io/v1", "PriorityClass") => {
            round_trip::<k8s_openapi::api::scheduling::v1::PriorityClass>(v)
        }
        ("policy/v1", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(v),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            round_trip::<autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            round_trip::<adm::ValidatingWebhookConfiguration>(v)
        }
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            round_trip::<adm::MutatingWebhookConfiguration>(v)
        }
        _ => return None,
    })
}

/// Where `back` (the typed round trip) lost or changed something of `orig`: a field the
/// type does not know is dropped by serde, a value of the wrong shape changes. Fields the
/// type adds (defaults) are fine.
pub fn lost_fields(orig: &Value, back: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(orig, back, String::new(), &mut out);
    out
}

fn walk(orig: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => walk(v, bv, p, out),
                    None => out.push(format!("{p} (unknown field)")),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                walk(ov, bv, format!("{path}[{i}]"), out);
            }
        }
        (o, b) if o == b => {}
        (o, b) => out.push(format!("{path}: {o} came back as {b}")),
    }
}

/// Resolves a Service `targetPort` (a number, or a container port name) against the pod
/// template of `deployment`.
pub fn resolve_target_port(deployment: &Value, target: &Value) -> u16 {
    if let Some(n) = target.as_u64() {
        return u16::try_from(n).expect("port in range");
    }
    let name = target.as_str().expect("targetPort is a number or a name");
    container_port(deployment, name)
}

/// The containerPort named `name` in `deployment`'s first container.
pub fn container_port(deployment: &Value, name: &str) -> u16 {
    let ports = deployment
        .pointer("/spec/template/spec/containers/0/ports")
        .and_then(Value::as_array)
        .expect("the container declares ports");
    let port = ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    u16::try_from(port["containerPort"].as_u64().expect("containerPort")).expect("port in range")
}

/// The Deployment's container arguments.
pub fn container_args(deployment: &Value) -> Vec<String> {
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The value of `--flag` in `args` (`--flag=v` or `--flag v`).
pub fn flag(args: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
        if a == flag {
            return args.get(i + 1).cloned();
        }
    }
    None
}
