//! Runs the rule catalogue over one object: picks each rule's action from the settings,
//! applies exemptions, and gathers findings and patch operations.
use crate::admission::lookup::At;
use std::collections::HashSet;

use serde_json::Value;

use super::context::{Context, Operation};
use super::patch::{PatchBuilder, PatchOp, Pointer};
use super::rules::{self, Rule};
use super::settings::{Action, AdmissionSettings, Exemption};

/// Annotation keys users put on objects.
pub const ANNOTATION_VALIDATE: &str = "portcullis.io/validate";
pub const ANNOTATION_MUTATE: &str = "portcullis.io/mutate";
pub const ANNOTATION_EXEMPT: &str = "portcullis.io/exempt";
pub const ANNOTATION_MUTATED: &str = "portcullis.io/mutated";

/// Something a rule reported, with the action configured for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub action: Action,
    pub message: String,
    /// JSON Pointer of the field concerned.
    pub path: String,
}

/// The outcome of validating one object.
#[derive(Debug, Default)]
pub struct Decision {
    pub findings: Vec<Finding>,
}

impl Decision {
    pub fn denied(&self) -> bool {
        self.findings.iter().any(|f| f.action == Action::Deny)
    }
}

/// The settings name a rule that does not exist: caught at start-up, not per request.
#[derive(Debug, thiserror::Error)]
#[error("unknown rule id {0:?} in the admission settings (known: {1})")]
pub struct UnknownRule(pub String, pub String);

/// Why an object was left alone without running rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Namespace,
    Annotation,
    Operation,
    Deleting,
}

/// Which endpoint is asking, for the opt-out annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Validate,
    Mutate,
}

/// The rule engine, built once from settings and shared by every request.
pub struct Engine {
    rules: Vec<Box<dyn Rule>>,
    settings: AdmissionSettings,
    only: Option<HashSet<String>>,
    display_name: Option<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rule_ids())
            .finish()
    }
}

impl Engine {
    /// An engine over the built-in catalogue.
    pub fn new(settings: AdmissionSettings) -> Result<Self, UnknownRule> {
        Self::with_rules(settings, rules::catalogue())
    }

    /// An engine over a given rule set (tests, and the catalogue).
    pub fn with_rules(
        settings: AdmissionSettings,
        rules: Vec<Box<dyn Rule>>,
    ) -> Result<Self, UnknownRule> {
        let known: HashSet<&str> = rules.iter().map(|r| r.id()).collect();
        for id in settings.rules.keys() {
            if !known.contains(id.as_str()) {
                let mut all: Vec<&str> = known.iter().copied().collect();
                all.sort_unstable();
                return Err(UnknownRule(id.clone(), all.join(", ")));
            }
        }
        let mut settings = settings;
        // A list of required labels is a request to check them: without this, setting
        // `requiredLabels` alone would do nothing, the rule being off while the list is
        // empty. An explicit action (even off) still wins.
        if !settings.required_labels.is_empty() {
            let entry = settings
                .rules
                .entry("requiredLabelsMissing".to_string())
                .or_default();
            if entry.action.is_none() && known.contains("requiredLabelsMissing") {
                entry.action = Some(Action::Warn);
            }
        }
        Ok(Engine {
            rules,
            settings,
            only: None,
            display_name: None,
        })
    }

    /// Restricts the engine to the named rules (`portcullis check --rule ID`). A named rule
    /// runs even when it is off (by default or by configuration), as a warning unless
    /// configured to deny: asking for a rule by name means wanting its findings.
    pub fn restrict_to(&mut self, ids: &[String]) -> Result<(), UnknownRule> {
        let known: HashSet<&str> = self.rules.iter().map(|r| r.id()).collect();
        for id in ids {
            if !known.contains(id.as_str()) {
                return Err(UnknownRule(id.clone(), self.rule_ids().join(", ")));
            }
        }
        self.only = Some(ids.iter().cloned().collect());
        Ok(())
    }

    /// The name a Polaris configuration gives the cluster, for audit reports.
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    pub fn set_display_name(&mut self, name: Option<String>) {
        self.display_name = name;
    }

    /// The rules, in the order they run.
    pub fn rules(&self) -> &[Box<dyn Rule>] {
        &self.rules
    }

    /// The `(group, kind)`s the rules that are on need listed beyond the built-in ones
    /// (custom checks' targets and additional schemas), each once, sorted.
    pub fn related_kinds(&self) -> Vec<(String, String)> {
        let mut kinds: Vec<(String, String)> = self
            .rules
            .iter()
            .filter(|r| self.action(r.as_ref()) != Action::Off)
            .flat_map(|r| r.related_kinds())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.id()).collect()
    }

    /// The action in force for a rule.
    pub fn action(&self, rule: &dyn Rule) -> Action {
        let configured = self
            .settings
            .rules
            .get(rule.id())
            .and_then(|s| s.action)
            .unwrap_or_else(|| rule.default_action());
        match &self.only {
            Some(only) if !only.contains(rule.id()) => Action::Off,
            Some(_) if configured == Action::Off => Action::Warn,
            _ => configured,
        }
    }

    fn mutation_on(&self, rule: &dyn Rule) -> bool {
        let Some(default) = rule.mutation() else {
            return false;
        };
        if self.only.as_ref().is_some_and(|o| !o.contains(rule.id())) {
            return false;
        }
        self.settings
            .rules
            .get(rule.id())
            .and_then(|s| s.mutate)
            .unwrap_or(default)
    }

    /// Whether the object is left alone entirely, and why.
    pub fn skip(&self, ctx: &Context<'_>, mode: Mode) -> Option<Skip> {
        if matches!(ctx.operation, Operation::Delete | Operation::Connect) {
            return Some(Skip::Operation);
        }
        // An object being deleted only loses finalizers; blocking that would make it
        // undeletable.
        if ctx
            .object
            .at("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Some(Skip::Deleting);
        }
        if self
            .settings
            .skip_namespaces
            .iter()
            .any(|n| n == ctx.namespace)
        {
            return Some(Skip::Namespace);
        }
        if self.settings.annotation_exemptions {
            let key = match mode {
                Mode::Validate => ANNOTATION_VALIDATE,
                Mode::Mutate => ANNOTATION_MUTATE,
            };
            let opted_out = ctx
                .annotations()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .is_some_and(|v| {
                    matches!(
                        v.to_ascii_lowercase().as_str(),
                        "false" | "n" | "no" | "off"
                    )
                });
            if opted_out {
                return Some(Skip::Annotation);
            }
        }
        None
    }

    /// The configured exemptions that can apply to `rule`: its own, then the global ones.
    fn exemptions_for<'s>(&'s self, rule: &dyn Rule) -> impl Iterator<Item = &'s Exemption> {
        self.settings
            .rules
            .get(rule.id())
            .map(|s| s.exemptions.as_slice())
            .unwrap_or(&[])
            .iter()
            .chain(&self.settings.exemptions)
    }

    /// Whether an exemption (configured or by annotation) takes `rule` off this object.
    pub fn exempt(&self, rule: &dyn Rule, ctx: &Context<'_>) -> bool {
        let labels = ctx.labels();
        if self
            .exemptions_for(rule)
            .any(|e| e.containers.is_empty() && e.applies(ctx.namespace, ctx.name, labels))
        {
            return true;
        }
        self.settings.annotation_exemptions
            && (ctx
                .annotations()
                .and_then(|a| a.get(ANNOTATION_EXEMPT))
                .and_then(Value::as_str)
                .is_some_and(|list| list.split(',').any(|id| id.trim() == rule.id()))
                || super::polaris::annotation_exempt(ctx.annotations(), rule.id()))
    }

    /// Container names exempted from `rule` on this object (exemptions that name
    /// containers); empty for most objects.
    pub fn exempt_containers<'s>(&'s self, rule: &dyn Rule, ctx: &Context<'_>) -> Vec<&'s str> {
        let labels = ctx.labels();
        self.exemptions_for(rule)
            .filter(|e| !e.containers.is_empty() && e.applies(ctx.namespace, ctx.name, labels))
            .flat_map(|e| e.containers.iter().map(String::as_str))
            .collect()
    }

    /// `rule`'s findings on the object, less those inside exempted containers.
    pub fn findings(&self, rule: &dyn Rule, ctx: &Context<'_>) -> Vec<super::rules::Violation> {
        let found = rule.check(ctx);
        let exempt = self.exempt_containers(rule, ctx);
        if exempt.is_empty() {
            return found;
        }
        found
            .into_iter()
            .filter(|v| {
                container_at(ctx.object, &v.path.render())
                    .is_none_or(|c| !exempt.contains(&c.as_str()))
            })
            .collect()
    }

    /// Runs every active check.
    /// Whether any rule judges this kind of object (on or off), so `check` can tell an
    /// object nothing looks at (a misspelled kind, say) from one that passed.
    pub fn judges(&self, ctx: &Context<'_>) -> bool {
        self.rules.iter().any(|r| r.applies(ctx))
    }

    pub fn validate(&self, ctx: &Context<'_>) -> Decision {
        let mut findings = Vec::new();
        if self.skip(ctx, Mode::Validate).is_some() {
            return Decision { findings };
        }
        for rule in &self.rules {
            let action = self.action(rule.as_ref());
            if action == Action::Off || self.exempt(rule.as_ref(), ctx) {
                continue;
            }
            for v in self.findings(rule.as_ref(), ctx) {
                findings.push(Finding {
                    rule: rule.id(),
                    action,
                    message: v.message,
                    path: v.path.render(),
                });
            }
        }
        Decision { findings }
    }

    /// Runs every enabled mutation and returns the operations (empty when nothing changes).
    pub fn mutate(&self, ctx: &Context<'_>) -> Vec<PatchOp> {
        if self.skip(ctx, Mode::Mutate).is_some() || !ctx.object.is_object() {
            return Vec::new();
        }
        let mut patch = PatchBuilder::new(ctx.object.clone());
        for rule in &self.rules {
            // A mutation edits containers it cannot be told to spare, so an object with an
            // exempted container is left to its owner for that rule.
            if self.mutation_on(rule.as_ref())
                && !self.exempt(rule.as_ref(), ctx)
                && self.exempt_containers(rule.as_ref(), ctx).is_empty()
            {
                rule.mutate(ctx, &mut patch);
            }
        }
        if !patch.is_empty() && self.settings.defaults.mark_mutated {
            let ptr = Pointer::from_tokens(["metadata", "annotations", ANNOTATION_MUTATED]);
            patch.add_if_absent(&ptr, Value::String("true".into()));
        }
        patch.into_ops()
    }
}

/// The name of the container a JSON Pointer points into, if it does.
pub fn container_at(obj: &Value, path: &str) -> Option<String> {
    for list in ["/containers/", "/initContainers/", "/ephemeralContainers/"] {
        if let Some(at) = path.find(list) {
            let end = at + list.len();
            let index = path[end..].split('/').next().unwrap_or("");
            let item = format!("{}{index}/name", &path[..end]);
            return obj.at(&item).and_then(Value::as_str).map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_named_by_restrict_to_runs_even_when_off() {
        let mut engine = Engine::new(AdmissionSettings::default()).unwrap();
        let off = rules::catalogue()
            .into_iter()
            .find(|r| r.id() == "statefulSetMissingReplicas")
            .unwrap();
        assert_eq!(engine.action(off.as_ref()), Action::Off);
        engine
            .restrict_to(&["statefulSetMissingReplicas".to_string()])
            .unwrap();
        assert_eq!(engine.action(off.as_ref()), Action::Warn);
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {"serviceName": "db", "template": {"spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}});
        let settings = AdmissionSettings::default();
        let ctx = Context::new(
            "apps",
            "StatefulSet",
            Operation::Create,
            "ns",
            "",
            &sts,
            &settings,
        );
        let rules: Vec<&str> = engine
            .validate(&ctx)
            .findings
            .iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(rules, ["statefulSetMissingReplicas"]);
    }

    #[test]
    fn unknown_rule_ids_list_the_known_ones() {
        let mut engine = Engine::new(AdmissionSettings::default()).unwrap();
        let err = engine.restrict_to(&["noSuchRule".to_string()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"noSuchRule\""), "{text}");
        for id in [
            "hostPathSet",
            "rolebindingClusterAdminRole",
            "missingNetworkPolicy",
        ] {
            assert!(text.contains(id), "{id} not listed in {text}");
        }
    }
}
