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

/// Polaris' 44 built-in checks with their category, in Polaris' order.
pub const CHECKS: [(&str, &str); 44] = [
    ("deploymentMissingReplicas", "Reliability"),
    ("priorityClassNotSet", "Reliability"),
    ("tagNotSpecified", "Reliability"),
    ("pullPolicyNotAlways", "Reliability"),
    ("readinessProbeMissing", "Reliability"),
    ("livenessProbeMissing", "Reliability"),
    ("metadataAndInstanceMismatched", "Reliability"),
    ("pdbDisruptionsIsZero", "Reliability"),
    ("missingPodDisruptionBudget", "Reliability"),
    ("topologySpreadConstraint", "Reliability"),
    ("hpaMaxAvailability", "Reliability"),
    ("hpaMinAvailability", "Reliability"),
    ("pdbMinAvailableGreaterThanHPAMinReplicas", "Reliability"),
    ("cpuRequestsMissing", "Efficiency"),
    ("cpuLimitsMissing", "Efficiency"),
    ("memoryRequestsMissing", "Efficiency"),
    ("memoryLimitsMissing", "Efficiency"),
    ("automountServiceAccountToken", "Security"),
    ("hostIPCSet", "Security"),
    ("hostPathSet", "Security"),
    ("hostProcess", "Security"),
    ("hostPIDSet", "Security"),
    ("linuxHardening", "Security"),
    ("missingNetworkPolicy", "Security"),
    ("notReadOnlyRootFilesystem", "Security"),
    ("privilegeEscalationAllowed", "Security"),
    ("procMount", "Security"),
    ("runAsRootAllowed", "Security"),
    ("runAsPrivileged", "Security"),
    ("dangerousCapabilities", "Security"),
    ("insecureCapabilities", "Security"),
    ("hostNetworkSet", "Security"),
    ("hostPortSet", "Security"),
    ("tlsSettingsMissing", "Security"),
    ("sensitiveContainerEnvVar", "Security"),
    ("sensitiveConfigmapContent", "Security"),
    ("clusterrolePodExecAttach", "Security"),
    ("rolePodExecAttach", "Security"),
    ("clusterrolebindingPodExecAttach", "Security"),
    ("rolebindingClusterRolePodExecAttach", "Security"),
    ("rolebindingRolePodExecAttach", "Security"),
    ("clusterrolebindingClusterAdmin", "Security"),
    ("rolebindingClusterAdminClusterRole", "Security"),
    ("rolebindingClusterAdminRole", "Security"),
];

/// Newer Polaris releases renamed this check; both names mean ours.
const ALIASES: [(&str, &str); 1] = [(
    "pdbMinAvailableGreaterThanOrEqualToHPAMinReplicas",
    "pdbMinAvailableGreaterThanHPAMinReplicas",
)];

/// The Polaris category of a built-in check, if it is one.
pub fn category(id: &str) -> Option<&'static str> {
    CHECKS.iter().find(|(c, _)| *c == id).map(|(_, cat)| *cat)
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
    #[error("Polaris configuration: {0:?} in mutations is not a check that can mutate")]
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

    /// Exemptions with container names cannot be honoured per container here (rules
    /// judge whole objects); they are reported so the caller can say so.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .exemptions
            .iter()
            .filter(|e| !e.container_names.is_empty())
            .map(|e| {
                format!(
                    "exemption by containerNames {:?} is not supported and is skipped",
                    e.container_names
                )
            })
            .collect();
        for (id, def) in &self.custom_checks {
            if def.has_additional_schemas() {
                out.push(format!(
                    "custom check {id:?}: additionalSchemas are not supported; only its main schema is used"
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
        for (id, _) in CHECKS {
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
        for id in &self.mutations {
            let id = canonical(id);
            if !mutating.contains(&id.as_str()) {
                return Err(PolarisError::NoMutation(id));
            }
            settings.rules.entry(id).or_default().mutate = Some(true);
        }
        let config_exemptions = !(self.disallow_exemptions || self.disallow_config_exemptions);
        if config_exemptions {
            for e in self
                .exemptions
                .iter()
                .filter(|e| e.container_names.is_empty())
            {
                let ex = Exemption {
                    namespaces: e.namespace.iter().cloned().collect(),
                    names: e.controller_names.clone(),
                    selector: None,
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
