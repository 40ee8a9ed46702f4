//! `portcullis migrate`: what would change if these Ingresses (and this ingress-nginx
//! ConfigMap) were served by portcullis instead of ingress-nginx. Each annotation is
//! judged by the same parser that serves it, so the report cannot promise more than the
//! data plane does.
use std::collections::BTreeMap;

use serde::Serialize;

use super::annotations::{NGINX_PREFIX, PORTCULLIS_PREFIX, parse_annotations};
use super::catalogue::{self, Support};
use super::nginx_configmap::{KeyStatus, translate};

/// One annotation's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotationVerdict {
    pub key: String,
    pub value: String,
    /// `honoured`, `honoured, with a difference`, `accepted, no effect`, `not supported`,
    /// `refused`, `invalid` or `unknown`.
    pub status: &'static str,
    pub detail: String,
    /// Serving this Ingress with portcullis would not do what ingress-nginx did.
    pub changes_behaviour: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngressVerdict {
    /// Where the object came from (a file, or `cluster`).
    pub source: String,
    pub namespace: String,
    pub name: String,
    /// The Ingress as a whole is refused (an invalid value or a snippet): it would not be
    /// served at all until fixed.
    pub refused: bool,
    pub annotations: Vec<AnnotationVerdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigMapKeyVerdict {
    pub key: String,
    pub value: String,
    pub status: &'static str,
    pub detail: String,
    pub changes_behaviour: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigMapVerdict {
    pub source: String,
    pub keys: Vec<ConfigMapKeyVerdict>,
    /// The settings document the ConfigMap amounts to.
    pub settings: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationReport {
    pub ingresses: Vec<IngressVerdict>,
    pub configmap: Option<ConfigMapVerdict>,
}

impl MigrationReport {
    /// Whether anything would behave differently after the switch.
    pub fn changes_behaviour(&self) -> bool {
        self.ingresses
            .iter()
            .any(|i| i.refused || i.annotations.iter().any(|a| a.changes_behaviour))
            || self
                .configmap
                .as_ref()
                .is_some_and(|c| c.keys.iter().any(|k| k.changes_behaviour))
    }

    /// Counts per status over all Ingress annotations, for the summary line.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for a in self.ingresses.iter().flat_map(|i| &i.annotations) {
            *out.entry(a.status).or_default() += 1;
        }
        out
    }
}

/// Judges one Ingress's annotations. Keys outside the two prefixes are not ours to judge
/// and are left out.
pub fn judge_ingress(
    source: &str,
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> IngressVerdict {
    let parsed = parse_annotations(annotations);
    let mut errors: BTreeMap<&str, &str> = BTreeMap::new();
    for note in parsed.errors.iter().chain(&parsed.snippets) {
        if let Some(key) = &note.key {
            errors.entry(key.as_str()).or_insert(note.message.as_str());
        }
    }
    let mut warnings: BTreeMap<&str, &str> = BTreeMap::new();
    for note in &parsed.warnings {
        if let Some(key) = &note.key {
            warnings
                .entry(key.as_str())
                .or_insert(note.message.as_str());
        }
    }
    let mut verdicts = Vec::new();
    for (key, value) in annotations {
        let (short, nginx) = if let Some(s) = key.strip_prefix(NGINX_PREFIX) {
            (s, true)
        } else if let Some(s) = key.strip_prefix(PORTCULLIS_PREFIX) {
            (s, false)
        } else {
            continue;
        };
        let support = catalogue::support(short);
        let (status, detail, changes) = if let Some(e) = errors.get(key.as_str()) {
            let status = match support {
                Some(Support::Refused(_)) => "refused",
                _ if short.ends_with("-snippet") => "refused",
                _ => "invalid",
            };
            (status, e.to_string(), true)
        } else if !nginx {
            ("honoured", "portcullis annotation".to_string(), false)
        } else {
            match support {
                Some(s) => {
                    // A parser warning (say, a canary-* key on a non-canary Ingress) says
                    // more about this Ingress than the general entry.
                    let detail = warnings
                        .get(key.as_str())
                        .map(|w| w.to_string())
                        .unwrap_or_else(|| s.detail().to_string());
                    let changes = s.changes_behaviour()
                        || (matches!(s, Support::Honoured | Support::Differs(_))
                            && warnings.contains_key(key.as_str())
                            && !detail.contains("overridden by"));
                    (s.label(), detail, changes)
                }
                None => (
                    "unknown",
                    "not an annotation ingress-nginx documents; ignored".to_string(),
                    true,
                ),
            }
        };
        verdicts.push(AnnotationVerdict {
            key: key.clone(),
            value: value.clone(),
            status,
            detail,
            changes_behaviour: changes,
        });
    }
    IngressVerdict {
        source: source.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        refused: !parsed.is_ok(),
        annotations: verdicts,
    }
}

/// Judges the `data` of an ingress-nginx controller ConfigMap.
pub fn judge_configmap(source: &str, data: &BTreeMap<String, String>) -> ConfigMapVerdict {
    let t = translate(data);
    let keys = t
        .keys
        .into_iter()
        .map(|k| {
            let detail = match &k.status {
                KeyStatus::Setting { path, value } => format!("{path}: {value}"),
                KeyStatus::NoOp(s) | KeyStatus::Unsupported(s) => s.to_string(),
                KeyStatus::Invalid(e) => e.clone(),
                KeyStatus::Unknown => "not a ConfigMap key portcullis knows; ignored".into(),
            };
            ConfigMapKeyVerdict {
                changes_behaviour: k.status.changes_behaviour(),
                status: k.status.label(),
                key: k.key,
                value: k.value,
                detail,
            }
        })
        .collect();
    ConfigMapVerdict {
        source: source.to_string(),
        keys,
        settings: t.settings,
    }
}

/// Every catalogue entry as a Markdown table: annotation, treatment, and why or instead.
pub fn catalogue_table() -> String {
    let mut out = String::from("| annotation | portcullis | notes |\n|---|---|---|\n");
    for (name, support) in catalogue::ANNOTATIONS {
        out.push_str(&format!(
            "| `{name}` | {} | {} |\n",
            support.label(),
            support.detail().replace('|', "\\|")
        ));
    }
    out
}

/// The report as text: one block per Ingress, then the ConfigMap, then a summary.
pub fn render_text(report: &MigrationReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for ing in &report.ingresses {
        let _ = writeln!(
            out,
            "Ingress {}/{} ({})",
            ing.namespace, ing.name, ing.source
        );
        if ing.refused {
            let _ = writeln!(
                out,
                "  ! refused as written: portcullis would not serve it until the lines marked invalid or refused are fixed"
            );
        }
        if ing.annotations.is_empty() {
            let _ = writeln!(out, "  (no ingress-nginx or portcullis annotations)");
        }
        for a in &ing.annotations {
            let mark = if a.changes_behaviour { "!" } else { " " };
            let _ = write!(out, "  {mark} {:<28} {} = {:?}", a.status, a.key, a.value);
            if !a.detail.is_empty() {
                let _ = write!(out, "\n      {}", a.detail);
            }
            out.push('\n');
        }
    }
    if let Some(cm) = &report.configmap {
        let _ = writeln!(out, "ConfigMap ({})", cm.source);
        for k in &cm.keys {
            let mark = if k.changes_behaviour { "!" } else { " " };
            let _ = writeln!(
                out,
                "  {mark} {:<28} {} = {:?}\n      {}",
                k.status, k.key, k.value, k.detail
            );
        }
        if cm.settings.as_object().is_some_and(|m| !m.is_empty()) {
            let pretty = serde_json::to_string_pretty(&cm.settings).unwrap_or_default();
            let _ = writeln!(out, "  settings it amounts to (for --config):\n{pretty}");
        }
    }
    let counts = report
        .counts()
        .into_iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "\n{} Ingresses; annotations: {}",
        report.ingresses.len(),
        if counts.is_empty() { "none" } else { &counts }
    );
    let verdict = if report.changes_behaviour() {
        "Behaviour would change: see the lines marked !"
    } else {
        "Nothing would change behaviour."
    };
    let _ = writeln!(out, "{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn status<'a>(v: &'a IngressVerdict, key: &str) -> &'a AnnotationVerdict {
        v.annotations.iter().find(|a| a.key == key).expect(key)
    }

    #[test]
    fn each_kind_of_verdict() {
        let v = judge_ingress(
            "f.yaml",
            "shop",
            "web",
            &ann(&[
                ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
                ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
                ("nginx.ingress.kubernetes.io/enable-modsecurity", "true"),
                ("nginx.ingress.kubernetes.io/no-such-thing", "1"),
                ("kubernetes.io/ingress.class", "nginx"),
            ]),
        );
        assert!(!v.refused);
        assert_eq!(v.annotations.len(), 4, "foreign keys are left out");
        let r = status(&v, "nginx.ingress.kubernetes.io/rewrite-target");
        assert_eq!((r.status, r.changes_behaviour), ("honoured", false));
        let b = status(&v, "nginx.ingress.kubernetes.io/proxy-buffering");
        assert_eq!(
            (b.status, b.changes_behaviour),
            ("accepted, no effect", false)
        );
        let m = status(&v, "nginx.ingress.kubernetes.io/enable-modsecurity");
        assert_eq!((m.status, m.changes_behaviour), ("not supported", true));
        assert!(m.detail.contains("firewall"));
        let u = status(&v, "nginx.ingress.kubernetes.io/no-such-thing");
        assert_eq!((u.status, u.changes_behaviour), ("unknown", true));
    }

    #[test]
    fn invalid_values_and_snippets_refuse_the_ingress() {
        let v = judge_ingress(
            "f.yaml",
            "shop",
            "web",
            &ann(&[
                ("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon"),
                (
                    "nginx.ingress.kubernetes.io/configuration-snippet",
                    "return 200;",
                ),
            ]),
        );
        assert!(v.refused);
        let t = status(&v, "nginx.ingress.kubernetes.io/proxy-read-timeout");
        assert_eq!(t.status, "invalid");
        assert!(t.detail.contains("soon"), "{}", t.detail);
        let s = status(&v, "nginx.ingress.kubernetes.io/configuration-snippet");
        assert_eq!(s.status, "refused");
        let report = MigrationReport {
            ingresses: vec![v],
            configmap: None,
        };
        assert!(report.changes_behaviour());
        let text = render_text(&report);
        assert!(text.contains("refused as written"), "{text}");
    }

    #[test]
    fn a_clean_ingress_changes_nothing() {
        let v = judge_ingress(
            "f.yaml",
            "shop",
            "web",
            &ann(&[
                ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
                ("portcullis.io/request-headers", "X-A: 1"),
            ]),
        );
        let report = MigrationReport {
            ingresses: vec![v],
            configmap: Some(judge_configmap(
                "cm.yaml",
                &ann(&[("proxy-read-timeout", "30"), ("proxy-buffering", "off")]),
            )),
        };
        assert!(!report.changes_behaviour());
        let text = render_text(&report);
        assert!(text.contains("Nothing would change behaviour."), "{text}");
        assert!(text.contains("readTimeoutSeconds"), "{text}");
    }
}
