//! `automountServiceAccountToken` (Polaris id): a pod that gets an API token it may not
//! need. The pod's own field decides when set; otherwise its ServiceAccount's does, read
//! from the cluster view.
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::cluster::namespace_of;
use crate::admission::context::Context;
use crate::admission::settings::Action;

/// The service-account rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(AutomountServiceAccountToken)]
}

pub struct AutomountServiceAccountToken;

impl Rule for AutomountServiceAccountToken {
    fn id(&self) -> &'static str {
        "automountServiceAccountToken"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let Some(spec) = t.spec.get(ctx.object) else {
            return Vec::new();
        };
        let ptr = t.spec.child("automountServiceAccountToken");
        let fix = "set automountServiceAccountToken: false on the pod (or its ServiceAccount) unless it calls the Kubernetes API";
        match spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
        {
            Some(false) => return Vec::new(),
            Some(true) => {
                return vec![Violation::new(
                    format!(
                        "pod mounts a service account token (automountServiceAccountToken: true): {fix}"
                    ),
                    ptr,
                )];
            }
            None => {}
        }
        let Some(view) = ctx.cluster else {
            return Vec::new();
        };
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let namespace = namespace_of(ctx.object);
        let message = match view.get("", "ServiceAccount", Some(namespace), sa) {
            None if !view.absence_known() => return Vec::new(),
            None => format!(
                "pod leaves automountServiceAccountToken unset and its ServiceAccount {namespace}/{sa} is not among the objects given, so the token is mounted unless that account turns it off: {fix}"
            ),
            Some(account) => match account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
            {
                Some(false) => return Vec::new(),
                _ => format!(
                    "pod leaves automountServiceAccountToken unset and ServiceAccount {namespace}/{sa} does not turn it off, so an API token is mounted: {fix}"
                ),
            },
        };
        vec![Violation::new(message, ptr)]
    }
}
