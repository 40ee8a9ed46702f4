//! Admission settings: per-rule actions, mutation switches and exemptions, plus the
//! defaults mutations fill in. Read from the `admission:` section of the config file.
//!
//! Rule actions accept portcullis' words (`deny`, `warn`, `off`) and Polaris' severities
//! (`danger`, `warning`, `ignore`) so a Polaris configuration carries over.
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

/// What a rule's finding does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deny,
    Warn,
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Off => "off",
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "deny" | "danger" | "error" => Ok(Action::Deny),
            "warn" | "warning" => Ok(Action::Warn),
            "off" | "ignore" | "none" => Ok(Action::Off),
            other => Err(serde::de::Error::custom(format!(
                "unknown action {other:?}: use deny, warn or off (Polaris' danger, warning, ignore also work)"
            ))),
        }
    }
}

/// A Kubernetes label selector (matchLabels + matchExpressions).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Kubernetes semantics: every matchLabels pair and every expression must hold.
    /// Unknown operators never match, so a typo cannot exempt everything.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| {
                let val = get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.iter().any(|x| x == v)),
                    "NotIn" => !val.is_some_and(|v| e.values.iter().any(|x| x == v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

/// One exemption: it applies when every field given matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemption {
    /// Namespaces, exact names; a trailing `*` makes a prefix.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Object name prefixes (Polaris' controllerNames).
    #[serde(default)]
    pub names: Vec<String>,
    /// Label selector over the object's own labels.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// Container names (Polaris' containerNames): when given, the exemption covers only
    /// findings inside these containers, not the whole object.
    #[serde(default)]
    pub containers: Vec<String>,
}

impl Exemption {
    pub fn applies(
        &self,
        namespace: &str,
        name: &str,
        labels: Option<&serde_json::Map<String, Value>>,
    ) -> bool {
        let ns_ok = self.namespaces.is_empty()
            || self.namespaces.iter().any(|p| name_matches(p, namespace));
        let name_ok =
            self.names.is_empty() || self.names.iter().any(|p| name.starts_with(p.as_str()));
        let sel_ok = self.selector.as_ref().is_none_or(|s| s.matches(labels));
        ns_ok && name_ok && sel_ok
    }
}

fn name_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// Settings of one rule. Written either as a bare action (`memoryLimitsMissing: deny`) or
/// as a map.
#[derive(Debug, Clone, Default)]
pub struct RuleSettings {
    pub action: Option<Action>,
    pub mutate: Option<bool>,
    pub exemptions: Vec<Exemption>,
}

impl<'de> Deserialize<'de> for RuleSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Full {
            action: Option<Action>,
            mutate: Option<bool>,
            #[serde(default)]
            exemptions: Vec<Exemption>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bare(Action),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Bare(a) => RuleSettings {
                action: Some(a),
                ..Default::default()
            },
            Form::Full(f) => RuleSettings {
                action: f.action,
                mutate: f.mutate,
                exemptions: f.exemptions,
            },
        })
    }
}

/// Values the mutations fill in where the object leaves them out.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MutationDefaults {
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub empty_dir_size_limit: String,
    /// Labels added to workloads (and their pod templates' objects) when absent.
    pub labels: BTreeMap<String, String>,
    /// Annotations added when absent.
    pub annotations: BTreeMap<String, String>,
    /// Adds `portcullis.io/mutated: "true"` to objects portcullis changed.
    pub mark_mutated: bool,
}

impl Default for MutationDefaults {
    fn default() -> Self {
        MutationDefaults {
            cpu_request: "100m".into(),
            memory_request: "128Mi".into(),
            memory_limit: "512Mi".into(),
            empty_dir_size_limit: "1Gi".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            mark_mutated: false,
        }
    }
}

/// Everything the admission side is configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AdmissionSettings {
    /// Namespaces whose objects are never checked or mutated.
    pub skip_namespaces: Vec<String>,
    /// Largest AdmissionReview body accepted (413 above).
    pub max_body_bytes: usize,
    /// Honour `portcullis.io/validate: "false"`, `portcullis.io/mutate: "false"` and
    /// `portcullis.io/exempt: "ruleA,ruleB"` on objects. An admin who does not want users
    /// to opt themselves out turns this off.
    pub annotation_exemptions: bool,
    /// Per-rule settings by rule id.
    pub rules: HashMap<String, RuleSettings>,
    /// Labels that Deployments and Services must carry (rule requiredLabelsMissing).
    pub required_labels: Vec<String>,
    pub defaults: MutationDefaults,
    /// Exemptions that apply to every rule.
    pub exemptions: Vec<Exemption>,
    /// A Polaris configuration file read as it is (checks, exemptions, customChecks,
    /// mutations) on top of these settings; `--polaris-config` overrides it.
    pub polaris_config: Option<std::path::PathBuf>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            skip_namespaces: vec!["kube-system".into(), "kube-public".into()],
            max_body_bytes: 3 * 1024 * 1024,
            annotation_exemptions: true,
            rules: HashMap::new(),
            required_labels: Vec::new(),
            defaults: MutationDefaults::default(),
            exemptions: Vec::new(),
            polaris_config: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_settings_accept_bare_and_polaris_words() {
        let s: HashMap<String, RuleSettings> = serde_json::from_value(
            json!({"a": "danger", "b": {"action": "warning", "mutate": false}, "c": "ignore"}),
        )
        .unwrap();
        assert_eq!(s["a"].action, Some(Action::Deny));
        assert_eq!(s["b"].action, Some(Action::Warn));
        assert_eq!(s["b"].mutate, Some(false));
        assert_eq!(s["c"].action, Some(Action::Off));
        assert!(serde_json::from_value::<RuleSettings>(json!("sometimes")).is_err());
    }

    #[test]
    fn selector_semantics() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}, {"key": "legacy", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let l = json!({"team": "a", "tier": "y"});
        assert!(sel.matches(l.as_object()));
        let l = json!({"team": "a", "tier": "z"});
        assert!(!sel.matches(l.as_object()));
        let l = json!({"team": "a", "tier": "x", "legacy": "1"});
        assert!(!sel.matches(l.as_object()));
        let bad: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "k", "operator": "Sometimes"}]}),
        )
        .unwrap();
        assert!(!bad.matches(None));
    }

    #[test]
    fn exemption_namespace_prefix_and_names() {
        let e = Exemption {
            namespaces: vec!["team-*".into()],
            names: vec!["legacy-".into()],
            selector: None,
            containers: Vec::new(),
        };
        assert!(e.applies("team-a", "legacy-api", None));
        assert!(!e.applies("teamb", "legacy-api", None));
        assert!(!e.applies("team-a", "api", None));
    }
}
