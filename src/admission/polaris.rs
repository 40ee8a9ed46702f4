//! A Polaris configuration file read as it is: `checks` (severities), `exemptions`,
//! `customChecks`, `mutations` and the `disallow*Exemptions` switches, turned into
//! admission settings plus the custom rules.
//!
//! What it means here, as in Polaris: a Polaris check that `checks` does not name does not
//! run; `danger` denies, `warning` warns, `ignore` turns the check off. Portcullis' own
//! rules (Ingress validation and the rest) keep their settings. A custom check must be
//! given a severity in `checks`, and a configuration that names a check nobody defines
//! is refused, so a typo never silently drops a check.
use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::custom::{CustomCheck, CustomCheckDef, CustomError};
use super::engine::{Engine, UnknownRule};
use super::rules::{self, Rule};
use super::settings::{Action, AdmissionSettings, Exemption};

/// Polaris' 44 built-in checks with their category and the action of their default
/// severity (danger denies, warning warns), in the order of Polaris' default configuration.
pub const CHECKS: [(&str, &str, Action); 44] = [
    ("deploymentMissingReplicas", "Reliability", Action::Warn),
    ("priorityClassNotSet", "Reliability", Action::Warn),
    ("tagNotSpecified", "Reliability", Action::Deny),
    ("pullPolicyNotAlways", "Reliability", Action::Warn),
    ("readinessProbeMissing", "Reliability", Action::Warn),
    ("livenessProbeMissing", "Reliability", Action::Warn),
    ("metadataAndInstanceMismatched", "Reliability", Action::Warn),
    ("pdbDisruptionsIsZero", "Reliability", Action::Warn),
    ("missingPodDisruptionBudget", "Reliability", Action::Warn),
    ("topologySpreadConstraint", "Reliability", Action::Warn),
    ("hpaMaxAvailability", "Reliability", Action::Warn),
    ("hpaMinAvailability", "Reliability", Action::Warn),
    (
        "pdbMinAvailableGreaterThanHPAMinReplicas",
        "Reliability",
        Action::Warn,
    ),
    ("cpuRequestsMissing", "Efficiency", Action::Warn),
    ("cpuLimitsMissing", "Efficiency", Action::Warn),
    ("memoryRequestsMissing", "Efficiency", Action::Warn),
    ("memoryLimitsMissing", "Efficiency", Action::Warn),
    ("automountServiceAccountToken", "Security", Action::Warn),
    ("hostIPCSet", "Security", Action::Deny),
    ("hostPathSet", "Security", Action::Warn),
    ("hostProcess", "Security", Action::Warn),
    ("hostPIDSet", "Security", Action::Deny),
    ("linuxHardening", "Security", Action::Warn),
    ("missingNetworkPolicy", "Security", Action::Warn),
    ("notReadOnlyRootFilesystem", "Security", Action::Warn),
    ("privilegeEscalationAllowed", "Security", Action::Deny),
    ("procMount", "Security", Action::Warn),
    ("runAsRootAllowed", "Security", Action::Deny),
    ("runAsPrivileged", "Security", Action::Deny),
    ("dangerousCapabilities", "Security", Action::Deny),
    ("insecureCapabilities", "Security", Action::Warn),
    ("hostNetworkSet", "Security", Action::Deny),
    ("hostPortSet", "Security", Action::Warn),
    ("tlsSettingsMissing", "Security", Action::Warn),
    ("sensitiveContainerEnvVar", "Security", Action::Deny),
    ("sensitiveConfigmapContent", "Security", Action::Deny),
    ("clusterrolePodExecAttach", "Security", Action::Deny),
    ("rolePodExecAttach", "Security", Action::Deny),
    ("clusterrolebindingPodExecAttach", "Security", Action::Deny),
    (
        "rolebindingClusterRolePodExecAttach",
        "Security",
        Action::Deny,
    ),
    ("rolebindingRolePodExecAttach", "Security", Action::Deny),
    ("clusterrolebindingClusterAdmin", "Security", Action::Deny),
    (
        "rolebindingClusterAdminClusterRole",
        "Security",
        Action::Deny,
    ),
    ("rolebindingClusterAdminRole", "Security", Action::Deny),
];

/// Newer Polaris releases renamed this check; both names mean ours.
const ALIASES: [(&str, &str); 1] = [(
    "pdbMinAvailableGreaterThanOrEqualToHPAMinReplicas",
    "pdbMinAvailableGreaterThanHPAMinReplicas",
)];

/// The Polaris category of a built-in check, if it is one.
pub fn category(id: &str) -> Option<&'static str> {
    CHECKS
        .iter()
        .find(|(c, _, _)| *c == id)
        .map(|(_, cat, _)| *cat)
}

/// Why a Polaris configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolarisError {
    #[error("reading Polaris configuration {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Polaris configuration {path}: {message}")]
    Parse { path: String, message: String },
    #[error(
        "Polaris configuration: check {0:?} has a severity but is neither built in nor defined in customChecks"
    )]
    UnknownCheck(String),
    #[error(
        "Polaris configuration: custom check {0:?} needs a severity under checks (danger, warning or ignore)"
    )]
    NoSeverity(String),
    #[error("Polaris configuration: {0:?} in mutations is not a check")]
    NoMutation(String),
    #[error("Polaris configuration: custom check {id:?}: {source}")]
    Custom {
        id: String,
        #[source]
        source: CustomError,
    },
    #[error(transparent)]
    Rule(#[from] UnknownRule),
}

/// One `exemptions` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolarisExemption {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub controller_names: Vec<String>,
    #[serde(default)]
    pub container_names: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// The parts of a Polaris configuration file portcullis reads. Fields Polaris has for its
/// dashboard and audit output only (`displayName`) are accepted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolarisConfig {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub checks: HashMap<String, Action>,
    #[serde(default)]
    pub custom_checks: HashMap<String, CustomCheckDef>,
    #[serde(default)]
    pub exemptions: Vec<PolarisExemption>,
    #[serde(default)]
    pub mutations: Vec<String>,
    #[serde(default)]
    pub disallow_exemptions: bool,
    #[serde(default)]
    pub disallow_config_exemptions: bool,
    #[serde(default)]
    pub disallow_annotation_exemptions: bool,
}

impl PolarisConfig {
    pub fn load(path: &Path) -> Result<Self, PolarisError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolarisError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&name, &text)
    }

    /// Parses YAML or JSON (YAML is a superset).
    pub fn parse(name: &str, text: &str) -> Result<Self, PolarisError> {
        serde_saphyr::from_str(text).map_err(|e| PolarisError::Parse {
            path: name.to_string(),
            message: e.to_string(),
        })
    }

    /// What the configuration asks for that will change nothing, for the caller to
    /// report: mutations of checks that have none (here or in Polaris).
    pub fn unsupported(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mutating: Vec<&'static str> = rules::catalogue()
            .iter()
            .filter(|r| r.mutation().is_some())
            .map(|r| r.id())
            .collect();
        for id in &self.mutations {
            if category(id).is_some() && !mutating.contains(&id.as_str()) {
                out.push(format!(
                    "mutations lists {id:?}, which has no mutation (in Polaris either): nothing is changed for it"
                ));
            }
        }
        out
    }

    /// Applies the configuration to `settings` and returns the custom rules to run beside
    /// the catalogue.
    pub fn apply(
        &self,
        settings: &mut AdmissionSettings,
    ) -> Result<Vec<Box<dyn Rule>>, PolarisError> {
        let canonical = |id: &str| -> String {
            ALIASES
                .iter()
                .find(|(alias, _)| *alias == id)
                .map(|(_, real)| real.to_string())
                .unwrap_or_else(|| id.to_string())
        };
        let checks: HashMap<String, Action> = self
            .checks
            .iter()
            .map(|(id, a)| (canonical(id), *a))
            .collect();
        for id in checks.keys() {
            if category(id).is_none() && !self.custom_checks.contains_key(id) {
                return Err(PolarisError::UnknownCheck(id.clone()));
            }
        }
        for (id, _, _) in CHECKS {
            let action = checks.get(id).copied().unwrap_or(Action::Off);
            settings.rules.entry(id.to_string()).or_default().action = Some(action);
        }
        let mut custom: Vec<Box<dyn Rule>> = Vec::new();
        let mut ids: Vec<&String> = self.custom_checks.keys().collect();
        ids.sort();
        for id in ids {
            let action = *checks
                .get(id)
                .ok_or_else(|| PolarisError::NoSeverity(id.clone()))?;
            let def = &self.custom_checks[id];
            let check = CustomCheck::new(id, def).map_err(|source| PolarisError::Custom {
                id: id.clone(),
                source,
            })?;
            settings.rules.entry(id.clone()).or_default().action = Some(action);
            custom.push(Box::new(check));
        }
        let mutating: Vec<&'static str> = rules::catalogue()
            .iter()
            .filter(|r| r.mutation().is_some())
            .map(|r| r.id())
            .collect();
        // As in Polaris, a Polaris check mutates only when the list names it.
        for id in mutating.iter().filter(|id| category(id).is_some()) {
            settings.rules.entry(id.to_string()).or_default().mutate = Some(false);
        }
        for id in &self.mutations {
            let id = canonical(id);
            if mutating.contains(&id.as_str()) {
                settings.rules.entry(id).or_default().mutate = Some(true);
            } else if category(&id).is_none() {
                return Err(PolarisError::NoMutation(id));
            }
            // A Polaris check without a mutation is reported by `unsupported`.
        }
        let config_exemptions = !(self.disallow_exemptions || self.disallow_config_exemptions);
        if config_exemptions {
            for e in &self.exemptions {
                let ex = Exemption {
                    namespaces: e.namespace.iter().cloned().collect(),
                    names: e.controller_names.clone(),
                    selector: None,
                    containers: e.container_names.clone(),
                };
                if e.rules.is_empty() {
                    settings.exemptions.push(ex);
                } else {
                    for rule in &e.rules {
                        settings
                            .rules
                            .entry(canonical(rule))
                            .or_default()
                            .exemptions
                            .push(ex.clone());
                    }
                }
            }
        }
        if self.disallow_exemptions || self.disallow_annotation_exemptions {
            settings.annotation_exemptions = false;
        }
        Ok(custom)
    }
}

/// The engine for `settings`, with the Polaris configuration at `polaris` applied when
/// given (the command-line file wins over `admission.polarisConfig`).
pub fn engine(
    mut settings: AdmissionSettings,
    polaris: Option<&Path>,
) -> Result<(Engine, Vec<String>), PolarisError> {
    let path = polaris
        .map(Path::to_path_buf)
        .or_else(|| settings.polaris_config.clone());
    let Some(path) = path else {
        return Ok((Engine::new(settings)?, Vec::new()));
    };
    let config = PolarisConfig::load(&path)?;
    let notes = config.unsupported();
    let custom = config.apply(&mut settings)?;
    let mut all = rules::catalogue();
    all.extend(custom);
    let mut engine = Engine::with_rules(settings, all)?;
    engine.set_display_name(config.display_name.clone());
    Ok((engine, notes))
}

/// Polaris' annotation exemptions: `polaris.fairwinds.com/exempt: "true"` for every check,
/// `polaris.fairwinds.com/<id>-exempt: "true"` for one.
pub fn annotation_exempt(annotations: Option<&serde_json::Map<String, Value>>, id: &str) -> bool {
    let Some(a) = annotations else {
        return false;
    };
    let yes = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    yes("polaris.fairwinds.com/exempt") || yes(&format!("polaris.fairwinds.com/{id}-exempt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_polaris_check_is_built_in_with_polaris_default() {
        let catalogue = rules::catalogue();
        for (id, _, action) in CHECKS {
            let rule = catalogue.iter().find(|r| r.id() == id);
            let rule = rule.unwrap_or_else(|| panic!("Polaris check {id} is missing"));
            assert_eq!(rule.default_action(), action, "{id}");
        }
    }

    #[test]
    fn polaris_annotations_exempt() {
        let a = serde_json::json!({"polaris.fairwinds.com/hostPIDSet-exempt": "true"});
        assert!(annotation_exempt(a.as_object(), "hostPIDSet"));
        assert!(!annotation_exempt(a.as_object(), "hostIPCSet"));
        let all = serde_json::json!({"polaris.fairwinds.com/exempt": "TRUE"});
        assert!(annotation_exempt(all.as_object(), "anything"));
        let no = serde_json::json!({"polaris.fairwinds.com/exempt": "false"});
        assert!(!annotation_exempt(no.as_object(), "anything"));
    }
}
