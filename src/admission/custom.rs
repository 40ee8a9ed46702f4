//! Polaris custom checks: a JSON Schema over an object, its pod template, pod spec or
//! each container, with Polaris' `{{ .field }}` substitutions, plus the additional schemas
//! other objects of the cluster must meet, run as a rule.
//!
//! Schemas are validated by the `jsonschema` crate. A schema without `{{` is compiled once
//! when the configuration is read (so a broken schema is a start-up error); a templated
//! one is rendered and compiled per object, and an object whose rendering does not make
//! a valid schema gets a finding saying so rather than a silent pass. How schemas are
//! rendered is in `custom_schema`, what additional schemas mean in `custom_additional`.
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cluster::ClusterView;
use super::context::Context;
use super::custom_additional::{self, AdditionalSchema, Miss};
use super::custom_schema::{Prepared, Schema};
use super::patch::Pointer;
use super::rules::{Rule, Violation};
use super::settings::Action;
use super::template::{ContainerKind, containers};

/// Why a custom check cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CustomError {
    #[error("no schema: give schema, schemaString or jsonSchema")]
    NoSchema,
    #[error("unknown target {0:?} (use Container, PodSpec, PodTemplate, Controller or group/Kind)")]
    Target(String),
    #[error("schema text does not parse: {0}")]
    SchemaText(String),
    #[error("invalid JSON Schema: {0}")]
    Schema(String),
    #[error("template {0:?} is not supported: only {{{{ .field.path }}}} substitutions are")]
    Template(String),
    #[error(
        "additional schema key {0:?} is not a kind (use group/Kind, or Kind for the core group)"
    )]
    AdditionalKind(String),
    #[error("additional schema for {key}: {source}")]
    Additional {
        key: String,
        #[source]
        source: Box<CustomError>,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameFilter {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// One entry of `customChecks`, as Polaris writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomCheckDef {
    #[serde(default)]
    pub success_message: Option<String>,
    #[serde(default)]
    pub failure_message: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub schema_target: Option<String>,
    #[serde(default)]
    pub containers: NameFilter,
    #[serde(default)]
    pub controllers: NameFilter,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub schema_string: Option<String>,
    #[serde(default)]
    pub json_schema: Option<String>,
    #[serde(default)]
    pub additional_schemas: HashMap<String, Value>,
    #[serde(default)]
    pub additional_schema_strings: HashMap<String, String>,
}

/// What the schema is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Controller,
    PodTemplate,
    PodSpec,
    /// Each container; with `schemaTarget: PodSpec`, a copy of the pod spec holding only it.
    Container {
        as_pod_spec: bool,
    },
    Kind {
        group: String,
        kind: String,
    },
}

fn parse_target(def: &CustomCheckDef) -> Result<Target, CustomError> {
    let t = def.target.as_deref().unwrap_or("Container");
    Ok(match t {
        "Controller" => Target::Controller,
        "PodTemplate" => Target::PodTemplate,
        "PodSpec" | "Pod" => Target::PodSpec,
        "Container" => Target::Container {
            as_pod_spec: matches!(def.schema_target.as_deref(), Some("PodSpec" | "Pod")),
        },
        other => match other.split_once('/') {
            Some((g, k)) if !k.is_empty() => Target::Kind {
                group: g.to_string(),
                kind: k.to_string(),
            },
            None if other.chars().next().is_some_and(char::is_uppercase) => Target::Kind {
                group: String::new(),
                kind: other.to_string(),
            },
            _ => return Err(CustomError::Target(other.to_string())),
        },
    })
}

/// A custom check ready to run.
pub struct CustomCheck {
    id: &'static str,
    category: String,
    failure: String,
    success: String,
    target: Target,
    def: CustomCheckDef,
    schema: Schema,
    additional: Vec<AdditionalSchema>,
}

impl CustomCheck {
    pub fn new(id: &str, def: &CustomCheckDef) -> Result<Self, CustomError> {
        let target = parse_target(def)?;
        let schema = match (&def.schema, &def.schema_string, &def.json_schema) {
            (Some(v), _, _) => Schema::from_value(v)?,
            (None, Some(text), _) | (None, None, Some(text)) => Schema::from_text(text)?,
            (None, None, None) => return Err(CustomError::NoSchema),
        };
        let additional =
            custom_additional::parse(&def.additional_schema_strings, &def.additional_schemas)?;
        Ok(CustomCheck {
            // Rule ids are `&'static str` so findings and metrics can hold them without
            // copies; a configuration is read once per process, so leaking its few ids
            // costs a few bytes once.
            id: Box::leak(id.to_string().into_boxed_str()),
            category: def.category.clone().unwrap_or_else(|| "Custom".to_string()),
            failure: def
                .failure_message
                .clone()
                .unwrap_or_else(|| format!("custom check {id} failed")),
            success: def
                .success_message
                .clone()
                .unwrap_or_else(|| format!("custom check {id} passed")),
            target,
            def: def.clone(),
            schema,
            additional,
        })
    }

    fn kind_allowed(&self, kind: &str) -> bool {
        let f = &self.def.controllers;
        (f.include.is_empty() || f.include.iter().any(|k| k == kind))
            && !f.exclude.iter().any(|k| k == kind)
    }

    /// Whether `instance` passes the main schema, rendered against `data` when templated,
    /// and `object`'s related objects in `view` pass the additional ones.
    fn passes(
        &self,
        instance: &Value,
        object: &Value,
        data: &Value,
        view: Option<&ClusterView>,
    ) -> Result<(), Failure> {
        match self.schema.prepare(data) {
            Prepared::Unusable(reason) => return Err(Failure::Unusable(reason)),
            p if !p.passes(instance) => return Err(Failure::Main),
            _ => {}
        }
        custom_additional::check(&self.additional, object, data, view).map_err(Failure::Related)
    }

    fn violation(
        &self,
        what: Option<String>,
        why: Result<(), Failure>,
        path: Pointer,
    ) -> Option<Violation> {
        let failure = why.err()?;
        let mut message = match what {
            Some(w) => format!("{w}: {}", self.failure),
            None => self.failure.clone(),
        };
        match failure {
            Failure::Main => {}
            Failure::Unusable(err) => message.push_str(&format!(
                " (the check's schema could not be used for this object: {err})"
            )),
            Failure::Related(Miss::NoMatch { key, namespace }) => message.push_str(&format!(
                " (no {key} in namespace {namespace} passes the check's additional schema)"
            )),
            Failure::Related(Miss::Unusable { key, reason }) => message.push_str(&format!(
                " (the check's additional schema for {key} could not be used for this object: {reason})"
            )),
        }
        Some(Violation::new(message, path))
    }
}

/// Why a custom check failed, for its message.
enum Failure {
    Main,
    Unusable(String),
    Related(Miss),
}

impl Rule for CustomCheck {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn category(&self) -> &str {
        &self.category
    }
    fn success_message(&self) -> &str {
        &self.success
    }
    fn related_kinds(&self) -> Vec<(String, String)> {
        let mut kinds: Vec<(String, String)> = self
            .additional
            .iter()
            .map(AdditionalSchema::group_kind)
            .collect();
        if let Target::Kind { group, kind } = &self.target {
            kinds.push((group.clone(), kind.clone()));
        }
        kinds
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        match &self.target {
            Target::Kind { group, kind } => ctx.group == group && ctx.kind == kind,
            _ => ctx.template.is_some() && self.kind_allowed(ctx.kind),
        }
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !self.applies(ctx) {
            return Vec::new();
        }
        let template = ctx.template.as_ref();
        let spec = template.and_then(|t| t.spec.get(ctx.object)).cloned();
        let pod_template = template.map(|t| {
            let mut m = Map::new();
            if let Some(meta) = t.metadata.get(ctx.object) {
                m.insert("metadata".into(), meta.clone());
            }
            if let Some(s) = &spec {
                m.insert("spec".into(), s.clone());
            }
            Value::Object(m)
        });
        let mut data = ctx.object.clone();
        let mut polaris = Map::new();
        polaris.insert("PodSpec".into(), spec.clone().unwrap_or(Value::Null));
        polaris.insert(
            "PodTemplate".into(),
            pod_template.clone().unwrap_or(Value::Null),
        );
        let root = Pointer::root();
        match &self.target {
            Target::Kind { .. } | Target::Controller => {
                if let Value::Object(m) = &mut data {
                    m.insert("Polaris".into(), Value::Object(polaris));
                }
                self.violation(
                    None,
                    self.passes(ctx.object, ctx.object, &data, ctx.cluster),
                    root,
                )
                .into_iter()
                .collect()
            }
            Target::PodTemplate | Target::PodSpec => {
                let Some(t) = template else { return Vec::new() };
                let (instance, path) = if self.target == Target::PodSpec {
                    (spec.clone().unwrap_or(Value::Null), t.spec.clone())
                } else {
                    (
                        pod_template.clone().unwrap_or(Value::Null),
                        t.metadata.parent().unwrap_or_default(),
                    )
                };
                if let Value::Object(m) = &mut data {
                    m.insert("Polaris".into(), Value::Object(polaris));
                }
                self.violation(
                    None,
                    self.passes(&instance, ctx.object, &data, ctx.cluster),
                    path,
                )
                .into_iter()
                .collect()
            }
            Target::Container { as_pod_spec } => {
                let Some(t) = template else { return Vec::new() };
                let excluded = |k: ContainerKind| {
                    let word = match k {
                        ContainerKind::Container => "container",
                        ContainerKind::Init => "initContainer",
                    };
                    self.def.containers.exclude.iter().any(|e| e == word)
                };
                let mut out = Vec::new();
                for c in containers(ctx.object, &t.spec)
                    .into_iter()
                    .filter(|c| !excluded(c.kind))
                {
                    let instance = if *as_pod_spec {
                        let mut s = spec.clone().unwrap_or_else(|| Value::Object(Map::new()));
                        if let Value::Object(m) = &mut s {
                            m.remove("initContainers");
                            m.insert("containers".into(), Value::Array(vec![c.value.clone()]));
                        }
                        s
                    } else {
                        c.value.clone()
                    };
                    let mut p = polaris.clone();
                    p.insert("Container".into(), c.value.clone());
                    let mut d = data.clone();
                    if let Value::Object(m) = &mut d {
                        m.insert("Polaris".into(), Value::Object(p));
                    }
                    out.extend(self.violation(
                        Some(c.label()),
                        self.passes(&instance, ctx.object, &d, ctx.cluster),
                        c.ptr.clone(),
                    ));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unusable_definitions_are_refused() {
        let def = CustomCheckDef {
            schema_string: Some("{{ if .x }}type: object{{ end }}".into()),
            ..Default::default()
        };
        assert!(matches!(
            CustomCheck::new("c", &def),
            Err(CustomError::Template(_))
        ));
        let def = CustomCheckDef {
            schema: Some(json!({"type": 12})),
            ..Default::default()
        };
        assert!(matches!(
            CustomCheck::new("c", &def),
            Err(CustomError::Schema(_))
        ));
        let def = CustomCheckDef {
            target: Some("sometimes".into()),
            schema: Some(json!({})),
            ..Default::default()
        };
        assert!(matches!(
            CustomCheck::new("c", &def),
            Err(CustomError::Target(_))
        ));
        let def = CustomCheckDef {
            schema: Some(json!({})),
            additional_schema_strings: HashMap::from([("pdb".into(), "{}".into())]),
            ..Default::default()
        };
        assert!(matches!(
            CustomCheck::new("c", &def),
            Err(CustomError::AdditionalKind(_))
        ));
        let def = CustomCheckDef {
            schema: Some(json!({})),
            additional_schema_strings: HashMap::from([(
                "policy/PodDisruptionBudget".into(),
                "{{ range .x }}".into(),
            )]),
            ..Default::default()
        };
        assert!(matches!(
            CustomCheck::new("c", &def),
            Err(CustomError::Additional { .. })
        ));
    }
}
