//! Pod security rules after Pod Security Admission's baseline: privileged containers, the
//! node's network/PID/IPC namespaces, added Linux capabilities. The Polaris ids deny by
//! default, as Polaris' `danger` does; `restrictedCapabilities` (ours) only warns. The
//! Polaris ids have Polaris' mutations, off unless configured (`mutate: true` or Polaris'
//! `mutations:` list): silently dropping a privilege someone asked for breaks their pod in
//! ways that are hard to trace, so it has to be asked for. Fields of the wrong type count
//! as not set.
use crate::admission::lookup::At;
use serde_json::Value;

use super::{Rule, Violation, violations_now};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::settings::Action;
use crate::admission::template::containers;

/// The security rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(RunAsPrivileged),
        Box::new(HostNamespace::NETWORK),
        Box::new(HostNamespace::PID),
        Box::new(HostNamespace::IPC),
        Box::new(DangerousCapabilities),
        Box::new(RestrictedCapabilities),
    ]
}

/// Any container of a pod spec, ephemeral (debug) containers included: they run with the
/// same kernel access as the others.
struct AnyContainer<'v> {
    label: String,
    ptr: Pointer,
    value: &'v Value,
}

fn all_containers<'v>(doc: &'v Value, spec: &Pointer) -> Vec<AnyContainer<'v>> {
    let mut out: Vec<AnyContainer<'v>> = containers(doc, spec)
        .into_iter()
        .map(|c| AnyContainer {
            label: c.label(),
            ptr: c.ptr,
            value: c.value,
        })
        .collect();
    let eph = spec.child("ephemeralContainers");
    if let Some(list) = eph.get(doc).and_then(Value::as_array) {
        for (i, c) in list.iter().enumerate().filter(|(_, c)| c.is_object()) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            out.push(AnyContainer {
                label: format!("ephemeral container {name:?}"),
                ptr: eph.index(i),
                value: c,
            });
        }
    }
    out
}

fn pod_containers<'v>(ctx: &Context<'v>) -> Vec<AnyContainer<'v>> {
    match &ctx.template {
        Some(t) => all_containers(ctx.object, &t.spec),
        None => Vec::new(),
    }
}

/// `runAsPrivileged` (Polaris id): `securityContext.privileged: true` gives the container
/// every device and capability of the node.
pub struct RunAsPrivileged;

impl Rule for RunAsPrivileged {
    fn id(&self) -> &'static str {
        "runAsPrivileged"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::Bool(false));
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        pod_containers(ctx)
            .into_iter()
            .filter(|c| c.value.at("/securityContext/privileged").and_then(Value::as_bool) == Some(true))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} runs privileged: remove securityContext.privileged (or set it false); a privileged container can take over the node",
                        c.label
                    ),
                    c.ptr.child("securityContext").child("privileged"),
                )
            })
            .collect()
    }
}

/// `hostNetworkSet`, `hostPIDSet`, `hostIPCSet` (Polaris ids): a pod that shares one of
/// the node's namespaces.
pub struct HostNamespace {
    id: &'static str,
    field: &'static str,
    what: &'static str,
    risk: &'static str,
}

impl HostNamespace {
    pub const NETWORK: HostNamespace = HostNamespace {
        id: "hostNetworkSet",
        field: "hostNetwork",
        what: "network",
        risk: "it sees all node traffic and can bind any node port",
    };
    pub const PID: HostNamespace = HostNamespace {
        id: "hostPIDSet",
        field: "hostPID",
        what: "process",
        risk: "it can see and signal every process on the node",
    };
    pub const IPC: HostNamespace = HostNamespace {
        id: "hostIPCSet",
        field: "hostIPC",
        what: "IPC",
        risk: "it can read other processes' shared memory",
    };
}

impl Rule for HostNamespace {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.remove(&v.path);
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let ptr = t.spec.child(self.field);
        if ptr.get(ctx.object).and_then(Value::as_bool) != Some(true) {
            return Vec::new();
        }
        vec![Violation::new(
            format!(
                "pod shares the node's {} namespace ({}: true): remove it unless the pod is a node agent that needs it; {}",
                self.what, self.field, self.risk
            ),
            ptr,
        )]
    }
}

/// The one capability Pod Security's restricted profile lets a container add.
const SAFE_CAPABILITY: &str = "NET_BIND_SERVICE";

/// True when `cap` (any case, with or without `CAP_`) is anything but NET_BIND_SERVICE.
pub fn is_dangerous_capability(cap: &str) -> bool {
    let upper = cap.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    name != SAFE_CAPABILITY
}

/// `restrictedCapabilities`: `capabilities.add` may only hold NET_BIND_SERVICE, as in Pod
/// Security's restricted profile; every other capability widens what a compromised
/// container can do. (Before the Polaris catalogue this was `dangerousCapabilities`.)
pub struct RestrictedCapabilities;

/// Polaris' three capabilities that amount to owning the node.
const NODE_CAPABILITIES: [&str; 3] = ["ALL", "SYS_ADMIN", "NET_ADMIN"];

/// `dangerousCapabilities` (Polaris id): `capabilities.add` holds ALL, SYS_ADMIN or
/// NET_ADMIN (any case, `CAP_` optional).
pub struct DangerousCapabilities;

impl Rule for DangerousCapabilities {
    fn id(&self) -> &'static str {
        "dangerousCapabilities"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    /// Drops only the three node-owning capabilities from `add`; the list goes when empty.
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            let kept: Vec<Value> = patch
                .get(&v.path)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|c| {
                            c.as_str().is_none_or(|c| {
                                !NODE_CAPABILITIES
                                    .contains(&super::hardening::capability(c).as_str())
                            })
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if kept.is_empty() {
                patch.remove(&v.path);
            } else {
                patch.set(&v.path, Value::Array(kept));
            }
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        for c in pod_containers(ctx) {
            let Some(added) = c
                .value
                .at("/securityContext/capabilities/add")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let bad: Vec<&str> = added
                .iter()
                .filter_map(Value::as_str)
                .filter(|cap| {
                    let name = super::hardening::capability(cap);
                    NODE_CAPABILITIES.contains(&name.as_str())
                })
                .collect();
            if bad.is_empty() {
                continue;
            }
            out.push(Violation::new(
                format!(
                    "{} adds {}: remove it from securityContext.capabilities.add; ALL, SYS_ADMIN and NET_ADMIN each hand the container control of the node",
                    c.label,
                    bad.join(", ")
                ),
                c.ptr
                    .child("securityContext")
                    .child("capabilities")
                    .child("add"),
            ));
        }
        out
    }
}

impl Rule for RestrictedCapabilities {
    fn id(&self) -> &'static str {
        "restrictedCapabilities"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        for c in pod_containers(ctx) {
            let Some(added) = c
                .value
                .at("/securityContext/capabilities/add")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let bad: Vec<&str> = added
                .iter()
                .filter_map(Value::as_str)
                .filter(|cap| is_dangerous_capability(cap))
                .collect();
            if bad.is_empty() {
                continue;
            }
            let (plural, them) = if bad.len() == 1 {
                ("y", "it")
            } else {
                ("ies", "them")
            };
            out.push(Violation::new(
                format!(
                    "{} adds capabilit{plural} {}: remove {them} from securityContext.capabilities.add (only NET_BIND_SERVICE is safe); each widens what a break-in can do to the node",
                    c.label,
                    bad.join(", ")
                ),
                c.ptr
                    .child("securityContext")
                    .child("capabilities")
                    .child("add"),
            ));
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

    fn run(rule: &dyn Rule, group: &str, kind: &str, obj: &Value) -> Vec<Violation> {
        let settings = AdmissionSettings::default();
        let ctx = Context::new(group, kind, Operation::Create, "ns", "x", obj, &settings);
        rule.check(&ctx)
    }

    #[test]
    fn capability_names() {
        for bad in ["ALL", "sys_admin", "CAP_NET_ADMIN", "cap_net_raw", "CHOWN"] {
            assert!(is_dangerous_capability(bad), "{bad}");
        }
        for ok in [
            "NET_BIND_SERVICE",
            "net_bind_service",
            "CAP_NET_BIND_SERVICE",
            " Cap_Net_Bind_Service ",
        ] {
            assert!(!is_dangerous_capability(ok), "{ok}");
        }
    }

    #[test]
    fn every_container_list_is_checked_with_its_pointer() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN", 7]}}}],
            "initContainers": [{"name": "i", "securityContext": {"privileged": "true"}}],
            "ephemeralContainers": [{"name": "dbg", "securityContext": {"privileged": true, "capabilities": {"add": ["cap_sys_ptrace", "all"]}}}]
        }});
        let v = run(&RunAsPrivileged, "", "Pod", &pod);
        let paths: Vec<String> = v.iter().map(|v| v.path.render()).collect();
        assert_eq!(
            paths,
            vec![
                "/spec/containers/0/securityContext/privileged",
                "/spec/ephemeralContainers/0/securityContext/privileged"
            ],
            "a string \"true\" is not a privileged flag"
        );
        assert!(
            v[1].message
                .starts_with("ephemeral container \"dbg\" runs privileged")
        );
        let v = run(&RestrictedCapabilities, "", "Pod", &pod);
        assert_eq!(v.len(), 2);
        assert!(
            v[0].message.contains("adds capability SYS_ADMIN:"),
            "{}",
            v[0].message
        );
        assert!(
            v[1].message
                .contains("adds capabilities cap_sys_ptrace, all:"),
            "{}",
            v[1].message
        );
        assert_eq!(
            v[1].path.render(),
            "/spec/ephemeralContainers/0/securityContext/capabilities/add"
        );
    }

    #[test]
    fn host_namespaces_on_templates() {
        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostPID": true, "hostIPC": false, "hostNetwork": "yes"}}}}}});
        let v = run(&HostNamespace::PID, "batch", "CronJob", &cj);
        assert_eq!(
            v[0].path.render(),
            "/spec/jobTemplate/spec/template/spec/hostPID"
        );
        assert!(run(&HostNamespace::IPC, "batch", "CronJob", &cj).is_empty());
        assert!(run(&HostNamespace::NETWORK, "batch", "CronJob", &cj).is_empty());
        assert!(
            run(
                &HostNamespace::PID,
                "",
                "ConfigMap",
                &json!({"spec": {"hostPID": true}})
            )
            .is_empty()
        );
    }
}
