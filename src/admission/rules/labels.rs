//! Object metadata rules: labels the cluster requires on Deployments and Services, and the
//! default labels/annotations added to every object. Odd metadata (a list where a map
//! belongs, non-string values) is treated as missing or left alone, never a panic.
use crate::admission::lookup::At;
use serde_json::{Map, Value};

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::settings::Action;

/// The labels rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(RequiredLabelsMissing),
        Box::new(DefaultMetadata),
        Box::new(MetadataAndInstanceMismatched),
    ]
}

/// The entries of `required` that `labels` lacks (absent, null or not a string), in the
/// configured order, each once.
pub fn missing_labels<'r>(
    required: &'r [String],
    labels: Option<&Map<String, Value>>,
) -> Vec<&'r str> {
    let mut out: Vec<&str> = Vec::new();
    for key in required {
        let present = labels
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .is_some();
        if !present && !out.contains(&key.as_str()) {
            out.push(key);
        }
    }
    out
}

/// Label keys with a shared prefix folded, so six `app.kubernetes.io/*` keys read
/// `app.kubernetes.io/{name,instance,…}` and the message stays one short line.
pub fn compact_keys(keys: &[&str]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for key in keys {
        let (prefix, name) = key.split_once('/').unwrap_or(("", key));
        match groups.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, names)) => names.push(name),
            None => groups.push((prefix, vec![name])),
        }
    }
    groups
        .iter()
        .map(
            |(prefix, names)| match (prefix.is_empty(), names.as_slice()) {
                (true, _) => names.join(", "),
                (false, [one]) => format!("{prefix}/{one}"),
                (false, many) => format!("{prefix}/{{{}}}", many.join(",")),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// `requiredLabelsMissing`: Deployments and Services must carry every label in
/// `requiredLabels` (the banzaicloud example's six `app.kubernetes.io/*` labels are the
/// usual list). Off by default because the list is empty by default.
pub struct RequiredLabelsMissing;

impl Rule for RequiredLabelsMissing {
    fn id(&self) -> &'static str {
        "requiredLabelsMissing"
    }
    fn default_action(&self) -> Action {
        Action::Off
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        matches!(
            (ctx.group, ctx.kind),
            ("apps", "Deployment") | ("", "Service")
        )
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !matches!(
            (ctx.group, ctx.kind),
            ("apps", "Deployment") | ("", "Service")
        ) {
            return Vec::new();
        }
        let missing = missing_labels(&ctx.settings.required_labels, ctx.labels());
        if missing.is_empty() {
            return Vec::new();
        }
        let (plural, them) = if missing.len() == 1 {
            ("", "it")
        } else {
            ("s", "them")
        };
        vec![Violation::new(
            format!(
                "{} lacks required label{plural} {}: add {them} to metadata.labels; the cluster relies on them to tell what runs and who owns it",
                ctx.kind,
                compact_keys(&missing)
            ),
            Pointer::from_tokens(["metadata", "labels"]),
        )]
    }
}

/// `defaultMetadata` (mutation only): adds `defaults.labels` and `defaults.annotations` to
/// the object's own metadata where a key is absent; a user's value is never overwritten.
/// A missing map is added whole in one operation; an existing one is extended key by key,
/// because re-adding it would wipe the labels already there (selector labels included).
pub struct DefaultMetadata;

impl DefaultMetadata {
    fn fill(
        patch: &mut PatchBuilder,
        field: &str,
        defaults: &std::collections::BTreeMap<String, String>,
    ) {
        if defaults.is_empty() {
            return;
        }
        let map_ptr = Pointer::from_tokens(["metadata", field]);
        let to_add: Vec<(String, String)> = match patch.get(&map_ptr) {
            None | Some(Value::Null) => {
                let whole: Map<String, Value> = defaults
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                patch.add_if_absent(&map_ptr, Value::Object(whole));
                return;
            }
            Some(Value::Object(existing)) => defaults
                .iter()
                .filter(|(k, _)| existing.get(*k).is_none_or(Value::is_null))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            // Not a map: the API server rejects the object anyway; patching it would only
            // make the error harder to read.
            Some(_) => return,
        };
        for (k, v) in to_add {
            patch.add_if_absent(&map_ptr.child(k), Value::String(v));
        }
    }
}

impl Rule for DefaultMetadata {
    fn id(&self) -> &'static str {
        "defaultMetadata"
    }
    fn default_action(&self) -> Action {
        // Nothing to validate: a missing default is not the user's mistake.
        Action::Off
    }
    fn mutation(&self) -> Option<bool> {
        Some(true)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        let d = &ctx.settings.defaults;
        Self::fill(patch, "labels", &d.labels);
        Self::fill(patch, "annotations", &d.annotations);
    }
}

/// The recommended label that names the instance of an application.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// `metadataAndInstanceMismatched` (Polaris id): a workload's
/// `app.kubernetes.io/instance` label is missing or differs from its name, so tools that
/// group by instance (dashboards, cost reports) misfile it.
pub struct MetadataAndInstanceMismatched;

impl Rule for MetadataAndInstanceMismatched {
    fn id(&self) -> &'static str {
        "metadataAndInstanceMismatched"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if ctx.template.is_none() {
            return Vec::new();
        }
        let name = ctx
            .object
            .at("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(ctx.name);
        let have = ctx
            .labels()
            .and_then(|l| l.get(INSTANCE_LABEL))
            .and_then(Value::as_str);
        if have == Some(name) {
            return Vec::new();
        }
        let what = match have {
            Some(v) => format!("is {v:?}"),
            None => "is missing".to_string(),
        };
        vec![Violation::new(
            format!(
                "label {INSTANCE_LABEL} {what}: set it to the object's name {name:?} so tools that group by instance find it"
            ),
            Pointer::from_tokens(["metadata", "labels", INSTANCE_LABEL]),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::context::Operation;
    use crate::admission::patch::PatchOp;
    use crate::admission::settings::AdmissionSettings;
    use serde_json::json;

    fn settings() -> AdmissionSettings {
        let mut s = AdmissionSettings::default();
        s.defaults
            .labels
            .insert("app.kubernetes.io/managed-by".into(), "portcullis".into());
        s.defaults.labels.insert("team".into(), "platform".into());
        s.defaults
            .annotations
            .insert("example.com/cost~center".into(), "42".into());
        s
    }

    fn ops(obj: &Value, s: &AdmissionSettings) -> Vec<Value> {
        let ctx = Context::new("", "ConfigMap", Operation::Create, "ns", "", obj, s);
        let mut patch = PatchBuilder::new(obj.clone());
        DefaultMetadata.mutate(&ctx, &mut patch);
        patch.ops().iter().map(PatchOp::to_json).collect()
    }

    #[test]
    fn missing_maps_are_added_whole_once() {
        let s = settings();
        let got = ops(&json!({"metadata": {"name": "x"}}), &s);
        assert_eq!(
            got,
            vec![
                json!({"op": "add", "path": "/metadata/labels", "value": {"app.kubernetes.io/managed-by": "portcullis", "team": "platform"}}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {"example.com/cost~center": "42"}}),
            ]
        );
        // No metadata at all: one add creates it with the labels inside.
        let got = ops(&json!({"kind": "ConfigMap"}), &s);
        assert_eq!(got[0]["path"], "/metadata");
        assert_eq!(got[1]["path"], "/metadata/annotations");
    }

    #[test]
    fn existing_maps_are_extended_key_by_key_with_escaping() {
        let s = settings();
        let obj = json!({"metadata": {"labels": {"app": "web", "team": "payments"}, "annotations": {"note": "keep"}}});
        let got = ops(&obj, &s);
        assert_eq!(
            got,
            vec![
                json!({"op": "add", "path": "/metadata/labels/app.kubernetes.io~1managed-by", "value": "portcullis"}),
                json!({"op": "add", "path": "/metadata/annotations/example.com~1cost~0center", "value": "42"}),
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_empty_present_or_odd() {
        let empty = AdmissionSettings::default();
        assert!(ops(&json!({"metadata": {}}), &empty).is_empty());
        let s = settings();
        let done = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "argo", "team": "x"}, "annotations": {"example.com/cost~center": "7"}}});
        assert!(ops(&done, &s).is_empty());
        let odd = json!({"metadata": {"labels": ["a"], "annotations": "b"}});
        assert!(ops(&odd, &s).is_empty());
    }

    #[test]
    fn keys_are_folded_by_prefix() {
        let keys = [
            "app.kubernetes.io/name",
            "team",
            "app.kubernetes.io/version",
            "x.io/a",
            "owner",
        ];
        assert_eq!(
            compact_keys(&keys),
            "app.kubernetes.io/{name,version}, team, owner, x.io/a"
        );
    }

    #[test]
    fn required_labels_listed_in_order_once() {
        let req: Vec<String> = ["a", "b", "a", "c"].iter().map(|s| s.to_string()).collect();
        let labels = json!({"b": "1", "c": 3});
        assert_eq!(missing_labels(&req, labels.as_object()), vec!["a", "c"]);
        assert_eq!(missing_labels(&req, None), vec!["a", "b", "c"]);

        let s = AdmissionSettings {
            required_labels: req,
            ..Default::default()
        };
        let obj = json!({"metadata": {"labels": {"a": "1"}}});
        let ctx = Context::new("", "Service", Operation::Create, "ns", "", &obj, &s);
        let v = RequiredLabelsMissing.check(&ctx);
        assert!(
            v[0].message
                .starts_with("Service lacks required labels b, c:"),
            "{}",
            v[0].message
        );
        let ctx = Context::new("apps", "StatefulSet", Operation::Create, "ns", "", &obj, &s);
        assert!(RequiredLabelsMissing.check(&ctx).is_empty());
    }

    #[test]
    fn setting_the_list_alone_turns_the_rule_on() {
        use crate::admission::Engine;
        use crate::admission::settings::Action;
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        let findings = |s: AdmissionSettings| {
            let engine = Engine::new(s).unwrap();
            let ctx = Context::new(
                "",
                "Service",
                Operation::Create,
                "ns",
                "",
                &obj,
                engine.settings(),
            );
            engine
                .validate(&ctx)
                .findings
                .into_iter()
                .filter(|f| f.rule == "requiredLabelsMissing")
                .map(|f| f.action)
                .collect::<Vec<_>>()
        };
        assert!(findings(AdmissionSettings::default()).is_empty());
        let listed = AdmissionSettings {
            required_labels: vec!["team".into()],
            ..Default::default()
        };
        assert_eq!(findings(listed.clone()), vec![Action::Warn]);
        let mut off = listed;
        off.rules.insert(
            "requiredLabelsMissing".into(),
            crate::admission::settings::RuleSettings {
                action: Some(Action::Off),
                ..Default::default()
            },
        );
        assert!(findings(off).is_empty(), "an explicit off wins");
    }
}
