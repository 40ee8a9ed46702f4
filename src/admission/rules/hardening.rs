//! Container hardening after Polaris' security checks: running as root, privilege
//! escalation, a writable root filesystem, capabilities, Linux security modules, proc
//! mounts, host paths, host ports and Windows host processes.
//!
//! A container's `securityContext` overrides the pod's field by field, so the checks that
//! have a pod-level counterpart read both. Init containers are judged like the others
//! (they run on the same kernel); ephemeral debug containers are left to the
//! `runAsPrivileged` rule. Fields of the wrong type count as not set. The checks Polaris
//! can fix carry its mutation (set the flag, drop ALL, remove the host port), off unless
//! configured.
use crate::admission::lookup::At;
use serde_json::Value;

use super::{Rule, Violation, violations_now};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::settings::Action;
use crate::admission::template::{ContainerRef, containers};

/// The hardening rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(RunAsRootAllowed),
        Box::new(PrivilegeEscalationAllowed),
        Box::new(NotReadOnlyRootFilesystem),
        Box::new(InsecureCapabilities),
        Box::new(LinuxHardening),
        Box::new(ProcMount),
        Box::new(HostPathSet),
        Box::new(HostPortSet),
        Box::new(HostProcess),
    ]
}

/// The pod spec and its containers (init containers included).
fn pod<'c, 'v>(ctx: &'c Context<'v>) -> Option<(&'v Value, &'c Pointer, Vec<ContainerRef<'v>>)> {
    let t = ctx.template.as_ref()?;
    let spec = t.spec.get(ctx.object)?;
    Some((spec, &t.spec, containers(ctx.object, &t.spec)))
}

fn sc<'v>(owner: &'v Value, field: &str) -> Option<&'v Value> {
    owner
        .get("securityContext")?
        .get(field)
        .filter(|v| !v.is_null())
}

fn sc_ptr(c: &ContainerRef<'_>, field: &str) -> Pointer {
    c.ptr.child("securityContext").child(field)
}

/// Capability names compared as the kernel sees them: any case, `CAP_` optional.
pub fn capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

fn capability_list(c: &Value, which: &str) -> Vec<String> {
    c.at(&format!("/securityContext/capabilities/{which}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(capability).collect())
        .unwrap_or_default()
}

/// `runAsRootAllowed` (Polaris id): neither the pod nor the container promises a non-root
/// user. The pod-level promise holds unless the container takes it back with
/// `runAsNonRoot: false` or `runAsUser: 0`.
pub struct RunAsRootAllowed;

/// `runAsNonRoot: true` or a non-zero `runAsUser`.
fn promises_non_root(owner: &Value) -> bool {
    sc(owner, "runAsNonRoot").and_then(Value::as_bool) == Some(true)
        || sc(owner, "runAsUser")
            .and_then(Value::as_i64)
            .is_some_and(|u| u >= 1)
}

/// The container sets root explicitly, overriding the pod.
fn takes_back_non_root(c: &Value) -> bool {
    sc(c, "runAsNonRoot").and_then(Value::as_bool) == Some(false)
        || sc(c, "runAsUser").and_then(Value::as_i64) == Some(0)
}

impl Rule for RunAsRootAllowed {
    fn id(&self) -> &'static str {
        "runAsRootAllowed"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::Bool(true));
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((spec, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        let pod_ok = promises_non_root(spec);
        cs.into_iter()
            .filter(|c| !(promises_non_root(c.value) || (pod_ok && !takes_back_non_root(c.value))))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} may run as root: set securityContext.runAsNonRoot: true (or a non-zero runAsUser) on it or on the pod; root in a container is one kernel bug away from root on the node",
                        c.label()
                    ),
                    sc_ptr(&c, "runAsNonRoot"),
                )
            })
            .collect()
    }
}

/// `privilegeEscalationAllowed` (Polaris id): `allowPrivilegeEscalation` must be set to
/// false; unset means setuid binaries can gain privileges.
pub struct PrivilegeEscalationAllowed;

impl Rule for PrivilegeEscalationAllowed {
    fn id(&self) -> &'static str {
        "privilegeEscalationAllowed"
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
        let Some((_, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        cs.into_iter()
            .filter(|c| sc(c.value, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} allows privilege escalation: set securityContext.allowPrivilegeEscalation: false so setuid binaries cannot gain more rights than the process started with",
                        c.label()
                    ),
                    sc_ptr(&c, "allowPrivilegeEscalation"),
                )
            })
            .collect()
    }
}

/// `notReadOnlyRootFilesystem` (Polaris id): the image's filesystem stays writable unless
/// `readOnlyRootFilesystem: true`.
pub struct NotReadOnlyRootFilesystem;

impl Rule for NotReadOnlyRootFilesystem {
    fn id(&self) -> &'static str {
        "notReadOnlyRootFilesystem"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::Bool(true));
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((_, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        cs.into_iter()
            .filter(|c| sc(c.value, "readOnlyRootFilesystem").and_then(Value::as_bool) != Some(true))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} has a writable root filesystem: set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where it must write, so an intruder cannot change its binaries",
                        c.label()
                    ),
                    sc_ptr(&c, "readOnlyRootFilesystem"),
                )
            })
            .collect()
    }
}

/// The capabilities Docker grants by default plus NET_ADMIN: dropping all of them (or
/// `ALL`) is what `insecureCapabilities` asks for.
pub const INSECURE_CAPABILITIES: [&str; 15] = [
    "NET_ADMIN",
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// `insecureCapabilities` (Polaris id): `capabilities.drop` must hold `ALL` or every
/// capability in [`INSECURE_CAPABILITIES`].
pub struct InsecureCapabilities;

impl Rule for InsecureCapabilities {
    fn id(&self) -> &'static str {
        "insecureCapabilities"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::Array(vec![Value::String("ALL".into())]));
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((_, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in cs {
            let dropped = capability_list(c.value, "drop");
            if dropped.iter().any(|d| d == "ALL") {
                continue;
            }
            let kept: Vec<&str> = INSECURE_CAPABILITIES
                .into_iter()
                .filter(|cap| !dropped.iter().any(|d| d == cap))
                .collect();
            if kept.is_empty() {
                continue;
            }
            out.push(Violation::new(
                format!(
                    "{} keeps default capabilities ({}): set securityContext.capabilities.drop: [ALL] and add back only what it needs",
                    c.label(),
                    kept.join(", ")
                ),
                c.ptr
                    .child("securityContext")
                    .child("capabilities")
                    .child("drop"),
            ));
        }
        out
    }
}

/// `linuxHardening` (Polaris id): at least one Linux security module or capability drop
/// confines the container: an AppArmor profile (annotation or field), a seccomp profile
/// other than Unconfined, SELinux options, or a non-empty `capabilities.drop` that is not
/// undone by adding `ALL`.
pub struct LinuxHardening;

fn confined_profile(owner: &Value, field: &str) -> Option<bool> {
    let t = sc(owner, field)?.get("type")?.as_str()?;
    Some(!t.is_empty() && t != "Unconfined")
}

fn hardened(ctx: &Context<'_>, spec: &Value, c: &ContainerRef<'_>) -> bool {
    let annotation = format!(
        "container.apparmor.security.beta.kubernetes.io/{}",
        c.name()
    );
    let template_annotations = ctx
        .template
        .as_ref()
        .and_then(|t| t.metadata.child("annotations").get(ctx.object));
    if template_annotations
        .and_then(|a| a.get(&annotation))
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return true;
    }
    // The container's profile wins over the pod's, in either direction.
    for field in ["seccompProfile", "appArmorProfile"] {
        let own = confined_profile(c.value, field);
        if own.or_else(|| confined_profile(spec, field)) == Some(true) {
            return true;
        }
    }
    let non_empty_map = |owner: &Value| {
        sc(owner, "seLinuxOptions")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    };
    if non_empty_map(c.value) || non_empty_map(spec) {
        return true;
    }
    let dropped = capability_list(c.value, "drop");
    let adds_all = capability_list(c.value, "add").iter().any(|a| a == "ALL");
    !dropped.is_empty() && !adds_all
}

impl Rule for LinuxHardening {
    fn id(&self) -> &'static str {
        "linuxHardening"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((spec, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        cs.into_iter()
            .filter(|c| !hardened(ctx, spec, c))
            .map(|c| {
                Violation::new(
                    format!(
                        "{} is not confined by AppArmor, seccomp, SELinux or dropped capabilities: set securityContext.seccompProfile.type: RuntimeDefault (or drop capabilities)",
                        c.label()
                    ),
                    c.ptr.child("securityContext"),
                )
            })
            .collect()
    }
}

/// `procMount` (Polaris id): any proc mount other than `Default` unmasks kernel files.
pub struct ProcMount;

impl Rule for ProcMount {
    fn id(&self) -> &'static str {
        "procMount"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((_, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        cs.into_iter()
            .filter_map(|c| {
                let m = sc(c.value, "procMount")?.as_str()?;
                (m != "Default").then(|| {
                    Violation::new(
                        format!(
                            "{} uses procMount {m:?}: remove it (or use Default) so /proc keeps its masked paths",
                            c.label()
                        ),
                        sc_ptr(&c, "procMount"),
                    )
                })
            })
            .collect()
    }
}

/// `hostPathSet` (Polaris id): a hostPath volume reaches into the node's filesystem.
pub struct HostPathSet;

impl Rule for HostPathSet {
    fn id(&self) -> &'static str {
        "hostPathSet"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((spec, base, _)) = pod(ctx) else {
            return Vec::new();
        };
        let Some(volumes) = spec.get("volumes").and_then(Value::as_array) else {
            return Vec::new();
        };
        volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.get("hostPath").is_some_and(|h| !h.is_null()))
            .map(|(i, v)| {
                let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                Violation::new(
                    format!(
                        "volume {name:?} mounts a path of the node (hostPath): use a PersistentVolumeClaim, configMap or emptyDir; node files let a container escape or read other pods' data"
                    ),
                    base.child("volumes").index(i).child("hostPath"),
                )
            })
            .collect()
    }
}

/// `hostPortSet` (Polaris id): a host port ties the pod to one per node and exposes it on
/// the node's address.
pub struct HostPortSet;

impl Rule for HostPortSet {
    fn id(&self) -> &'static str {
        "hostPortSet"
    }
    fn default_action(&self) -> Action {
        Action::Warn
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
        let Some((_, _, cs)) = pod(ctx) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in cs {
            let Some(ports) = c.value.get("ports").and_then(Value::as_array) else {
                continue;
            };
            for (i, p) in ports.iter().enumerate() {
                let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if host != 0 {
                    out.push(Violation::new(
                        format!(
                            "{} binds host port {host}: remove hostPort and expose it with a Service; host ports bypass network policy and limit the pod to one per node",
                            c.label()
                        ),
                        c.ptr.child("ports").index(i).child("hostPort"),
                    ));
                }
            }
        }
        out
    }
}

/// `hostProcess` (Polaris id): a Windows HostProcess container runs on the node itself.
pub struct HostProcess;

fn host_process(owner: &Value) -> bool {
    owner
        .at("/securityContext/windowsOptions/hostProcess")
        .and_then(Value::as_bool)
        == Some(true)
}

impl Rule for HostProcess {
    fn id(&self) -> &'static str {
        "hostProcess"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some((spec, base, cs)) = pod(ctx) else {
            return Vec::new();
        };
        let why = "remove securityContext.windowsOptions.hostProcess; a HostProcess container has the node's full access";
        let mut out = Vec::new();
        if host_process(spec) {
            out.push(Violation::new(
                format!("pod runs as a Windows HostProcess: {why}"),
                base.child("securityContext")
                    .child("windowsOptions")
                    .child("hostProcess"),
            ));
        }
        for c in cs.iter().filter(|c| host_process(c.value)) {
            out.push(Violation::new(
                format!("{} runs as a Windows HostProcess: {why}", c.label()),
                c.ptr
                    .child("securityContext")
                    .child("windowsOptions")
                    .child("hostProcess"),
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

    fn run(rule: &dyn Rule, obj: &Value) -> Vec<String> {
        let settings = AdmissionSettings::default();
        let ctx = Context::new("", "Pod", Operation::Create, "ns", "x", obj, &settings);
        rule.check(&ctx)
            .into_iter()
            .map(|v| v.path.render())
            .collect()
    }

    #[test]
    fn container_overrides_pod_for_root() {
        let pod = json!({"spec": {"securityContext": {"runAsNonRoot": true}, "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"runAsUser": 0}},
            {"name": "c", "securityContext": {"runAsNonRoot": false, "runAsUser": 1000}}
        ]}});
        // c promises a non-root uid of its own, so its runAsNonRoot: false does not matter.
        assert_eq!(
            run(&RunAsRootAllowed, &pod),
            ["/spec/containers/1/securityContext/runAsNonRoot"]
        );
    }

    #[test]
    fn capability_names_ignore_case_and_prefix() {
        assert_eq!(capability(" cap_net_raw "), "NET_RAW");
        let pod = json!({"spec": {"containers": [
            {"name": "a", "securityContext": {"capabilities": {"drop": ["all"]}}},
            {"name": "b", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}
        ]}});
        assert_eq!(
            run(&InsecureCapabilities, &pod),
            ["/spec/containers/1/securityContext/capabilities/drop"]
        );
    }

    #[test]
    fn hardening_by_pod_seccomp_unless_the_container_unconfines() {
        let pod = json!({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "c", "securityContext": {"capabilities": {"drop": ["NET_RAW"], "add": ["ALL"]}, "seccompProfile": {"type": "Unconfined"}}}
        ]}});
        assert_eq!(
            run(&LinuxHardening, &pod),
            [
                "/spec/containers/1/securityContext",
                "/spec/containers/2/securityContext"
            ]
        );
    }
}
