//! RBAC rules after Polaris: roles that let their subjects exec into or attach to pods,
//! and bindings that hand out such roles or cluster-admin-like wildcards.
//!
//! Bindings are judged by the role they reference, read from the cluster view: a role
//! that is not in the view is reported as missing (it cannot be vetted, and a binding to
//! a role created later inherits whatever that role will allow). Without any view only
//! what the binding itself shows (a reference to `cluster-admin`) is judged. Kubernetes'
//! own objects (`system:` names) and Polaris' other built-in exceptions are left alone.
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::cluster::{ClusterView, namespace_of};
use crate::admission::context::Context;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;

const RBAC: &str = "rbac.authorization.k8s.io";

/// The RBAC rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(RolePodExecAttach::CLUSTER_ROLE),
        Box::new(RolePodExecAttach::ROLE),
        Box::new(BindingCheck::CLUSTER_ROLE_BINDING_EXEC),
        Box::new(BindingCheck::ROLE_BINDING_CLUSTER_ROLE_EXEC),
        Box::new(BindingCheck::ROLE_BINDING_ROLE_EXEC),
        Box::new(BindingCheck::CLUSTER_ROLE_BINDING_ADMIN),
        Box::new(BindingCheck::ROLE_BINDING_CLUSTER_ROLE_ADMIN),
        Box::new(BindingCheck::ROLE_BINDING_ROLE_ADMIN),
    ]
}

/// Names Kubernetes (and GKE's Calico) create and manage themselves.
pub fn built_in(name: &str) -> bool {
    name.starts_with("system:") || name == "gce:podsecuritypolicy:calico-sa"
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(role: &Value) -> &[Value] {
    role.get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The index of the first policy rule that grants exec or attach: the core group (or
/// `*`), `pods/exec`, `pods/attach` (or `*`), and `get` (a WebSocket upgrade), `create`
/// (or `*`).
pub fn exec_attach_rule(role: &Value) -> Option<usize> {
    rules_of(role).iter().position(|r| {
        let groups = strings(r, "apiGroups");
        let resources = strings(r, "resources");
        let verbs = strings(r, "verbs");
        groups.iter().any(|g| g.is_empty() || g == "*")
            && resources
                .iter()
                .any(|x| matches!(x.as_str(), "*" | "pods/exec" | "pods/attach"))
            && verbs
                .iter()
                .any(|v| matches!(v.as_str(), "*" | "get" | "create"))
    })
}

const ALL_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// The index of the first policy rule that grants everything: `*` groups and resources,
/// and `*` or every one of the seven standard verbs.
pub fn wildcard_rule(role: &Value) -> Option<usize> {
    rules_of(role).iter().position(|r| {
        let verbs = strings(r, "verbs");
        strings(r, "apiGroups").iter().any(|g| g == "*")
            && strings(r, "resources").iter().any(|x| x == "*")
            && (verbs.iter().any(|v| v == "*")
                || ALL_VERBS.iter().all(|a| verbs.iter().any(|v| v == a)))
    })
}

/// `clusterrolePodExecAttach` and `rolePodExecAttach` (Polaris ids).
pub struct RolePodExecAttach {
    id: &'static str,
    kind: &'static str,
    /// Default roles that grant exec on purpose.
    exempt: &'static [&'static str],
}

impl RolePodExecAttach {
    const CLUSTER_ROLE: RolePodExecAttach = RolePodExecAttach {
        id: "clusterrolePodExecAttach",
        kind: "ClusterRole",
        exempt: &["admin", "cluster-admin", "edit"],
    };
    const ROLE: RolePodExecAttach = RolePodExecAttach {
        id: "rolePodExecAttach",
        kind: "Role",
        exempt: &[],
    };
}

impl Rule for RolePodExecAttach {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == (RBAC, self.kind)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != (RBAC, self.kind)
            || built_in(ctx.name)
            || self.exempt.contains(&ctx.name)
        {
            return Vec::new();
        }
        let Some(i) = exec_attach_rule(ctx.object) else {
            return Vec::new();
        };
        vec![Violation::new(
            format!(
                "{} {} lets its subjects exec into or attach to pods (pods/exec or pods/attach with get or create): grant that only to the few who debug, in a role of its own",
                self.kind, ctx.name
            ),
            Pointer::from_tokens(["rules".to_string(), i.to_string()]),
        )]
    }
}

/// What a binding check looks for in the role it references.
#[derive(Clone, Copy)]
enum Grant {
    ExecAttach,
    Everything,
}

/// The six binding checks: which binding kind, which role kind it must reference to be
/// judged, and what the role must not grant.
pub struct BindingCheck {
    id: &'static str,
    binding: &'static str,
    role_kind: &'static str,
    grant: Grant,
}

impl BindingCheck {
    const CLUSTER_ROLE_BINDING_EXEC: BindingCheck = BindingCheck {
        id: "clusterrolebindingPodExecAttach",
        binding: "ClusterRoleBinding",
        role_kind: "ClusterRole",
        grant: Grant::ExecAttach,
    };
    const ROLE_BINDING_CLUSTER_ROLE_EXEC: BindingCheck = BindingCheck {
        id: "rolebindingClusterRolePodExecAttach",
        binding: "RoleBinding",
        role_kind: "ClusterRole",
        grant: Grant::ExecAttach,
    };
    const ROLE_BINDING_ROLE_EXEC: BindingCheck = BindingCheck {
        id: "rolebindingRolePodExecAttach",
        binding: "RoleBinding",
        role_kind: "Role",
        grant: Grant::ExecAttach,
    };
    const CLUSTER_ROLE_BINDING_ADMIN: BindingCheck = BindingCheck {
        id: "clusterrolebindingClusterAdmin",
        binding: "ClusterRoleBinding",
        role_kind: "ClusterRole",
        grant: Grant::Everything,
    };
    const ROLE_BINDING_CLUSTER_ROLE_ADMIN: BindingCheck = BindingCheck {
        id: "rolebindingClusterAdminClusterRole",
        binding: "RoleBinding",
        role_kind: "ClusterRole",
        grant: Grant::Everything,
    };
    const ROLE_BINDING_ROLE_ADMIN: BindingCheck = BindingCheck {
        id: "rolebindingClusterAdminRole",
        binding: "RoleBinding",
        role_kind: "Role",
        grant: Grant::Everything,
    };

    fn what(&self) -> &'static str {
        match self.grant {
            Grant::ExecAttach => "exec into or attach to pods",
            Grant::Everything => {
                "do anything (cluster-admin or * on every group, resource and verb)"
            }
        }
    }

    fn judge_role(&self, ctx: &Context<'_>, view: &ClusterView, role_name: &str) -> Option<String> {
        let namespace = (self.role_kind == "Role").then(|| namespace_of(ctx.object));
        let Some(role) = view.get(RBAC, self.role_kind, namespace, role_name) else {
            if !view.absence_known() {
                return None;
            }
            let scope = match namespace {
                Some(ns) => format!(" in namespace {ns}"),
                None => String::new(),
            };
            return Some(format!(
                "{} {} references {} {role_name}, which is not among the objects given{scope}, so what it grants is unknown: create the role first (or check it together with the binding)",
                self.binding, ctx.name, self.role_kind
            ));
        };
        let hit = match self.grant {
            Grant::ExecAttach => exec_attach_rule(role),
            Grant::Everything => wildcard_rule(role),
        };
        hit.map(|i| {
            format!(
                "{} {} binds {} {role_name}, whose rule {i} lets its subjects {}: bind a narrower role",
                self.binding,
                ctx.name,
                self.role_kind,
                self.what()
            )
        })
    }
}

impl Rule for BindingCheck {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == (RBAC, self.binding)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != (RBAC, self.binding) || built_in(ctx.name) {
            return Vec::new();
        }
        if self.binding == "ClusterRoleBinding" && ctx.name == "cluster-admin" {
            return Vec::new();
        }
        let role_ref = ctx.object.get("roleRef");
        let field = |f: &str| {
            role_ref
                .and_then(|r| r.get(f))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        if field("kind") != self.role_kind || field("name").is_empty() {
            return Vec::new();
        }
        let role_name = field("name");
        if built_in(role_name) || role_name == "view" {
            return Vec::new();
        }
        let message = match self.grant {
            // cluster-admin is Kubernetes' own ClusterRole: nothing to look up.
            Grant::Everything
                if self.role_kind == "ClusterRole" && role_name == "cluster-admin" =>
            {
                Some(format!(
                    "{} {} binds cluster-admin: bind a role that grants only what its subjects need",
                    self.binding, ctx.name
                ))
            }
            Grant::ExecAttach
                if self.role_kind == "ClusterRole" && role_name == "cluster-admin" =>
            {
                Some(format!(
                    "{} {} binds cluster-admin, which lets its subjects exec into or attach to pods: bind a narrower role",
                    self.binding, ctx.name
                ))
            }
            _ => match ctx.cluster {
                Some(view) => self.judge_role(ctx, view, role_name),
                None => None,
            },
        };
        message
            .map(|m| vec![Violation::new(m, Pointer::from_tokens(["roleRef", "name"]))])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_needs_group_resource_and_verb() {
        let role = |g: Value, r: Value, v: Value| json!({"rules": [{"apiGroups": g, "resources": r, "verbs": v}]});
        assert_eq!(
            exec_attach_rule(&role(json!([""]), json!(["pods/exec"]), json!(["create"]))),
            Some(0)
        );
        assert_eq!(
            exec_attach_rule(&role(json!(["*"]), json!(["*"]), json!(["get"]))),
            Some(0)
        );
        assert_eq!(
            exec_attach_rule(&role(json!(["apps"]), json!(["pods/exec"]), json!(["*"]))),
            None
        );
        assert_eq!(
            exec_attach_rule(&role(json!([""]), json!(["pods/log"]), json!(["*"]))),
            None
        );
        assert_eq!(
            exec_attach_rule(&role(json!([""]), json!(["pods/attach"]), json!(["list"]))),
            None
        );
        assert_eq!(exec_attach_rule(&json!({"rules": "junk"})), None);
    }

    #[test]
    fn wildcards_or_all_seven_verbs() {
        let all = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ALL_VERBS}]});
        assert_eq!(wildcard_rule(&all), Some(0));
        let six = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "update", "patch"]}]});
        assert_eq!(wildcard_rule(&six), None);
        let one_group =
            json!({"rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}]});
        assert_eq!(wildcard_rule(&one_group), None);
    }
}
