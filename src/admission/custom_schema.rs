//! One JSON Schema of a Polaris custom check, with Polaris' `{{ .field }}` substitutions:
//! compiled once when it has none, rendered and compiled per object when it has some.
//!
//! Polaris runs every schema of a check through Go's template engine, the `schema:` and
//! `additionalSchemas:` objects included (it serialises them to text first). Here the text
//! forms are rendered as text, and the object forms string by string, which gives the same
//! result without a substituted quote or backslash breaking the schema's syntax. Of Go's
//! template language only field substitution is supported; anything else is refused when
//! the configuration is read.
use serde_json::{Map, Value};

use super::custom::CustomError;

/// A schema ready to validate, or the source to render per object first.
pub enum Schema {
    Fixed(Box<jsonschema::Validator>),
    /// Text (YAML or JSON) holding `{{ }}`.
    TemplatedText(String),
    /// A schema object with `{{ }}` in some of its strings.
    TemplatedValue(Value),
}

/// A schema rendered for one object.
pub enum Prepared<'s> {
    Fixed(&'s jsonschema::Validator),
    Rendered(Box<jsonschema::Validator>),
    /// The schema rendered to nothing: Polaris drops such a schema, so it judges nothing.
    Empty,
    /// The rendering is not a usable schema; the reason.
    Unusable(String),
}

impl Prepared<'_> {
    /// Whether `instance` passes; an empty schema passes everything. Call only after
    /// ruling out `Unusable`, which passes nothing.
    pub fn passes(&self, instance: &Value) -> bool {
        match self {
            Prepared::Fixed(v) => v.is_valid(instance),
            Prepared::Rendered(v) => v.is_valid(instance),
            Prepared::Empty => true,
            Prepared::Unusable(_) => false,
        }
    }
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, CustomError> {
    jsonschema::validator_for(schema).map_err(|e| CustomError::Schema(e.to_string()))
}

fn parse_text(text: &str) -> Result<Value, CustomError> {
    serde_saphyr::from_str(text).map_err(|e| CustomError::SchemaText(e.to_string()))
}

/// The `{{ ... }}` expressions of a template, trimmed.
fn expressions(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push(after.trim());
            break;
        };
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

fn is_field_path(expr: &str) -> bool {
    expr.starts_with('.')
        && expr[1..].split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
}

/// Refuses a template that uses more than field substitution.
fn only_substitutions(text: &str) -> Result<(), CustomError> {
    match expressions(text).into_iter().find(|e| !is_field_path(e)) {
        Some(bad) => Err(CustomError::Template(bad.to_string())),
        None => Ok(()),
    }
}

/// Every string of a schema object, keys included.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                strings(x, out);
            }
        }
        _ => {}
    }
}

/// Renders `{{ .a.b }}` from `data`: strings as they are, other values as JSON, missing
/// fields as an empty string.
pub fn render(text: &str, data: &Value) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = after[..end].trim();
        let mut cur = Some(data);
        for part in expr
            .trim_start_matches('.')
            .split('.')
            .filter(|p| !p.is_empty())
        {
            cur = cur.and_then(|v| v.get(part));
        }
        match cur {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            Some(v) => out.push_str(&v.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A schema object with every string (and key) rendered from `data`.
fn render_value(v: &Value, data: &Value) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => Value::String(render(s, data)),
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, data)).collect()),
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, x) in m {
                let key = if k.contains("{{") {
                    render(k, data)
                } else {
                    k.clone()
                };
                out.insert(key, render_value(x, data));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

impl Schema {
    /// A schema given as an object (`schema:`, an `additionalSchemas` entry).
    pub fn from_value(v: &Value) -> Result<Self, CustomError> {
        let mut all = Vec::new();
        strings(v, &mut all);
        let templated = all.iter().any(|s| s.contains("{{"));
        for s in &all {
            only_substitutions(s)?;
        }
        if templated {
            Ok(Schema::TemplatedValue(v.clone()))
        } else {
            Ok(Schema::Fixed(Box::new(compile(v)?)))
        }
    }

    /// A schema given as YAML or JSON text (`schemaString`, `jsonSchema`, an
    /// `additionalSchemaStrings` entry).
    pub fn from_text(text: &str) -> Result<Self, CustomError> {
        only_substitutions(text)?;
        if text.contains("{{") {
            Ok(Schema::TemplatedText(text.to_string()))
        } else {
            Ok(Schema::Fixed(Box::new(compile(&parse_text(text)?)?)))
        }
    }

    /// The schema for one object: rendered against `data` when templated.
    pub fn prepare(&self, data: &Value) -> Prepared<'_> {
        let schema = match self {
            Schema::Fixed(v) => return Prepared::Fixed(v),
            Schema::TemplatedText(text) => {
                let rendered = render(text, data);
                if rendered.trim().is_empty() {
                    return Prepared::Empty;
                }
                match parse_text(&rendered) {
                    Ok(s) => s,
                    Err(e) => return Prepared::Unusable(e.to_string()),
                }
            }
            Schema::TemplatedValue(v) => render_value(v, data),
        };
        match compile(&schema) {
            Ok(v) => Prepared::Rendered(Box::new(v)),
            Err(e) => Prepared::Unusable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitutions_only() {
        let data = json!({"metadata": {"name": "web", "labels": {"n": 3}}});
        assert_eq!(
            render(
                "a {{ .metadata.name }} b {{.metadata.labels.n}} c {{ .x.y }}",
                &data
            ),
            "a web b 3 c "
        );
        assert!(matches!(
            Schema::from_text("{{ if .x }}type: object{{ end }}"),
            Err(CustomError::Template(_))
        ));
        assert!(matches!(
            Schema::from_value(&json!({"const": "{{ range .x }}"})),
            Err(CustomError::Template(_))
        ));
    }

    #[test]
    fn object_schemas_are_rendered_string_by_string() {
        let s = Schema::from_value(&json!({
            "properties": {"metadata": {"properties": {"name": {"const": "{{ .metadata.name }}-pdb"}}}}
        }))
        .unwrap();
        // A quote in the value cannot break the schema, as it could in rendered text.
        let data = json!({"metadata": {"name": "we\"b"}});
        let ok = json!({"metadata": {"name": "we\"b-pdb"}});
        let bad = json!({"metadata": {"name": "other"}});
        let p = s.prepare(&data);
        assert!(p.passes(&ok));
        assert!(!p.passes(&bad));
    }

    #[test]
    fn a_blank_rendering_judges_nothing() {
        let s = Schema::from_text("{{ .nothing }}\n").unwrap();
        assert!(matches!(s.prepare(&json!({})), Prepared::Empty));
        let broken = Schema::from_text("type: {{ .t }}").unwrap();
        assert!(matches!(
            broken.prepare(&json!({"t": 12})),
            Prepared::Unusable(_)
        ));
    }
}
