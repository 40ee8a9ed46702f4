//! One Ingress checked field by field: the single walk that `compile` (to build routes) and
//! the admission webhook (to judge an Ingress before the API server stores it) both use, so
//! the two never disagree on what is valid or on which route a path claims. Pure.
//!
//! Failure behaviour: nothing fails. Every problem becomes an `Issue` that says what kind of
//! problem it is and which field it is about; any issue makes the Ingress unservable as
//! written (compile then keeps its last good version), warnings do not.
use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use regex::Regex;

use super::annotations::{CanarySpec, parse_annotations};
use super::backends::PortRef;
use super::validate;
use crate::ingress::model::policy::Policy;
use crate::ingress::model::router::compile_path_regex;
use crate::ingress::model::snapshot::PathType;

/// What sort of problem an issue is (admission reports each sort under its own rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// An annotation value that does not parse, an unknown `portcullis.io/` key, or an
    /// access-control annotation portcullis cannot enforce.
    Annotation,
    /// A `*-snippet` annotation (raw proxy configuration).
    Snippet,
    /// A host, path, pathType, backend or TLS entry the data plane refuses.
    Spec,
    /// A regex path that does not compile.
    Regex,
}

/// The field an issue is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `metadata.annotations[key]`, or the annotations as a whole without a key.
    Annotation(Option<String>),
    Spec,
    /// `spec.rules[i].host`
    Host(usize),
    /// `spec.rules[rule].http.paths[path]`
    Path {
        rule: usize,
        path: usize,
    },
    DefaultBackend,
    /// `spec.tls[i]`
    Tls(usize),
}

/// One problem (or, among `warnings`, one ignored setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub kind: IssueKind,
    pub field: Field,
    pub message: String,
}

/// A Service backend: name and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    pub service: String,
    pub port: PortRef,
}

/// One servable rule path.
#[derive(Debug)]
pub struct PathEntry {
    pub rule: usize,
    pub index: usize,
    pub host: Option<String>,
    /// The path as routed (`/` for an empty ImplementationSpecific one).
    pub path: String,
    pub path_type: PathType,
    /// `Some` for a regex path (ImplementationSpecific with `use-regex` or a capturing
    /// `rewrite-target`).
    pub regex: Option<Regex>,
    pub backend: BackendRef,
}

impl PathEntry {
    /// The route this path claims.
    pub(crate) fn claim(&self) -> RouteClaim {
        let kind = match (self.path_type, &self.regex) {
            (_, Some(_)) => MatchKind::Regex,
            (PathType::Exact, None) => MatchKind::Exact,
            _ => MatchKind::Prefix,
        };
        RouteClaim {
            host: self.host.clone(),
            kind,
            path: self.path.clone(),
        }
    }
}

/// One `spec.tls` entry with hosts.
#[derive(Debug, Clone)]
pub struct TlsEntry {
    pub index: usize,
    pub hosts: Vec<String>,
    pub secret: Option<String>,
}

/// How a route matches. ImplementationSpecific without regex matches as Prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    Exact,
    Prefix,
    Regex,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Exact => "Exact",
            MatchKind::Prefix => "Prefix",
            MatchKind::Regex => "regex",
        }
    }
}

/// What a route claims: host, matcher kind and raw path. The router refuses a second route
/// with the same claim (the oldest Ingress keeps it), so two Ingresses claiming one collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteClaim {
    pub host: Option<String>,
    pub kind: MatchKind,
    pub path: String,
}

impl RouteClaim {
    /// `host a.com path /api (Prefix)` for messages.
    pub fn describe(&self) -> String {
        format!(
            "host {} path {} ({})",
            self.host.as_deref().unwrap_or("*"),
            self.path,
            self.kind.as_str()
        )
    }
}

/// Which unmatched requests a `spec.defaultBackend` answers: every one (a rule-less
/// Ingress), or those for one host of the Ingress's rules (`None` = its hostless rules).
/// Like a route, each scope is served by the oldest Ingress that claims it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DefaultScope {
    CatchAll,
    Host(Option<String>),
}

impl DefaultScope {
    /// The scopes an inspected Ingress's defaultBackend claims.
    pub fn of(ins: &Inspection) -> Vec<DefaultScope> {
        if ins.default_backend.is_none() {
            return Vec::new();
        }
        if ins.rule_less {
            return vec![DefaultScope::CatchAll];
        }
        ins.hosts.iter().cloned().map(DefaultScope::Host).collect()
    }

    /// `the catch-all defaultBackend` / `the defaultBackend of host a.com` for messages.
    pub fn describe(&self) -> String {
        match self {
            DefaultScope::CatchAll => "the catch-all defaultBackend".into(),
            DefaultScope::Host(h) => {
                format!("the defaultBackend of host {}", h.as_deref().unwrap_or("*"))
            }
        }
    }
}

/// The main route a canary path attaches to: the same claim, else the same host and path
/// under any matcher (a canary normally repeats its main Ingress's pathType, but need not).
pub(crate) fn main_claim<'m, V>(
    claims: &'m HashMap<RouteClaim, V>,
    own: &RouteClaim,
) -> Option<(&'m RouteClaim, &'m V)> {
    [
        own.kind,
        MatchKind::Prefix,
        MatchKind::Exact,
        MatchKind::Regex,
    ]
    .into_iter()
    .find_map(|kind| {
        claims.get_key_value(&RouteClaim {
            kind,
            ..own.clone()
        })
    })
}

/// Everything one Ingress says, checked.
#[derive(Debug, Default)]
pub struct Inspection {
    pub policy: Policy,
    /// `Some` when the Ingress is a canary.
    pub canary: Option<CanarySpec>,
    /// Problems that make the Ingress unservable as written.
    pub issues: Vec<Issue>,
    /// Settings ignored; the Ingress serves without them.
    pub warnings: Vec<Issue>,
    pub paths: Vec<PathEntry>,
    /// Hosts of the valid rules (None = hostless), for the defaultBackend fallback.
    pub hosts: BTreeSet<Option<String>>,
    pub default_backend: Option<BackendRef>,
    /// No rules at all: a defaultBackend is then the catch-all.
    pub rule_less: bool,
    pub tls: Vec<TlsEntry>,
}

impl Inspection {
    pub fn is_servable(&self) -> bool {
        self.issues.is_empty()
    }

    fn issue(&mut self, kind: IssueKind, field: Field, message: String) {
        self.issues.push(Issue {
            kind,
            field,
            message,
        });
    }

    fn warning(&mut self, kind: IssueKind, field: Field, message: String) {
        self.warnings.push(Issue {
            kind,
            field,
            message,
        });
    }
}

/// Checks one Ingress.
pub fn inspect(ingress: &Ingress) -> Inspection {
    let empty = Default::default();
    let annotations = ingress.metadata.annotations.as_ref().unwrap_or(&empty);
    let parsed = parse_annotations(annotations);
    let mut out = Inspection {
        policy: parsed.policy,
        canary: parsed.canary,
        ..Inspection::default()
    };
    for n in parsed.errors {
        out.issue(IssueKind::Annotation, Field::Annotation(n.key), n.message);
    }
    for n in parsed.snippets {
        out.issue(IssueKind::Snippet, Field::Annotation(n.key), n.message);
    }
    for n in parsed.warnings {
        out.warning(IssueKind::Annotation, Field::Annotation(n.key), n.message);
    }
    let spec = ingress.spec.as_ref();
    let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
    let spec_default = spec.and_then(|s| s.default_backend.as_ref());
    out.rule_less = rules.is_empty();

    for (ri, rule) in rules.iter().enumerate() {
        let host = rule.host.as_deref().filter(|h| !h.is_empty());
        if let Some(h) = host
            && let Err(e) = validate::host(h)
        {
            out.issue(IssueKind::Spec, Field::Host(ri), e);
            continue;
        }
        out.hosts.insert(host.map(str::to_string));
        for (pi, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let field = Field::Path { rule: ri, path: pi };
            let path_type = match validate::path_type(&p.path_type) {
                Ok(t) => t,
                Err(e) => {
                    out.issue(IssueKind::Spec, field, e);
                    continue;
                }
            };
            let path = match validate::path(path_type, p.path.as_deref()) {
                Ok(path) => path,
                Err(e) => {
                    out.issue(IssueKind::Spec, field, e);
                    continue;
                }
            };
            let regex = if path_type == PathType::ImplementationSpecific && out.policy.use_regex {
                match compile_path_regex(&path) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let m = format!("path {path:?} is not a valid regex: {e}");
                        out.issue(IssueKind::Regex, field, m);
                        continue;
                    }
                }
            } else {
                None
            };
            match backend_ref(&p.backend) {
                Ok(Some(backend)) => out.paths.push(PathEntry {
                    rule: ri,
                    index: pi,
                    host: host.map(str::to_string),
                    path,
                    path_type,
                    regex,
                    backend,
                }),
                Ok(None) => out.warning(
                    IssueKind::Spec,
                    field,
                    format!("path {path}: resource backends cannot be proxied; path skipped"),
                ),
                Err(e) => out.issue(IssueKind::Spec, field, format!("path {path}: {e}")),
            }
        }
    }
    out.default_backend = match spec_default.map(backend_ref) {
        None => None,
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            out.issue(
                IssueKind::Spec,
                Field::DefaultBackend,
                format!("defaultBackend: {e}"),
            );
            None
        }
    };
    if rules.is_empty() && spec_default.is_none() {
        out.issue(
            IssueKind::Spec,
            Field::Spec,
            "neither rules nor defaultBackend".into(),
        );
    }
    for (ti, entry) in spec
        .and_then(|s| s.tls.as_deref())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let hosts: Vec<String> = entry.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            out.warning(
                IssueKind::Spec,
                Field::Tls(ti),
                "a tls entry without hosts is ignored".into(),
            );
            continue;
        }
        for h in &hosts {
            if let Err(e) = validate::host(h) {
                out.issue(IssueKind::Spec, Field::Tls(ti), format!("tls: {e}"));
            }
        }
        let secret = entry.secret_name.clone().filter(|s| !s.is_empty());
        if let Some(s) = &secret
            && !validate::is_dns_subdomain(s)
        {
            out.issue(
                IssueKind::Spec,
                Field::Tls(ti),
                format!("tls: secretName {s:?} is not a valid Secret name"),
            );
        }
        out.tls.push(TlsEntry {
            index: ti,
            hosts,
            secret,
        });
    }
    out
}

/// `Ok(None)` for a resource backend (skipped, not an error).
fn backend_ref(b: &IngressBackend) -> Result<Option<BackendRef>, String> {
    match (&b.service, &b.resource) {
        (Some(s), None) => {
            if s.name.is_empty() {
                return Err("backend service name is empty".into());
            }
            let port = s.port.as_ref();
            let port = match (
                port.and_then(|p| p.number),
                port.and_then(|p| p.name.clone()),
            ) {
                (Some(n), None) if (1..=65535).contains(&n) => PortRef::Number(n),
                (None, Some(name)) if !name.is_empty() => PortRef::Name(name),
                _ => {
                    return Err(
                        "backend port needs exactly one of a number (1-65535) or a name".into(),
                    );
                }
            };
            Ok(Some(BackendRef {
                service: s.name.clone(),
                port,
            }))
        }
        (None, Some(_)) => Ok(None),
        _ => Err("backend needs exactly one of service or resource".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(v: serde_json::Value) -> Ingress {
        serde_json::from_value(v).unwrap()
    }

    fn annotation(key: &str) -> Field {
        Field::Annotation(Some(key.to_string()))
    }

    #[test]
    fn kinds_and_fields_of_issues() {
        let ing = ingress(json!({
            "metadata": {"name": "i", "namespace": "ns", "annotations": {
                "nginx.ingress.kubernetes.io/use-regex": "true",
                "nginx.ingress.kubernetes.io/proxy-body-size": "10mb",
                "nginx.ingress.kubernetes.io/server-snippet": "return 200;",
                "nginx.ingress.kubernetes.io/enable-modsecurity": "true"
            }},
            "spec": {"rules": [
                {"host": "Bad.Host", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}}]}},
                {"host": "a.com", "http": {"paths": [
                    {"path": "/ok(/|$)(.*)", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "a", "port": {"number": 80}}}},
                    {"path": "/bad(", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "a", "port": {"number": 80}}}},
                    {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {}}}},
                    {"path": "/res", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}]}}
            ],
            "tls": [{"hosts": ["a.com"], "secretName": "Not_Valid"}, {"secretName": "x"}]}
        }));
        let ins = inspect(&ing);
        let got: Vec<(IssueKind, Field)> = ins
            .issues
            .iter()
            .map(|i| (i.kind, i.field.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    IssueKind::Annotation,
                    annotation("nginx.ingress.kubernetes.io/proxy-body-size")
                ),
                (
                    IssueKind::Snippet,
                    annotation("nginx.ingress.kubernetes.io/server-snippet")
                ),
                (IssueKind::Spec, Field::Host(0)),
                (IssueKind::Regex, Field::Path { rule: 1, path: 1 }),
                (IssueKind::Spec, Field::Path { rule: 1, path: 2 }),
                (IssueKind::Spec, Field::Tls(0)),
            ]
        );
        let warned: Vec<(IssueKind, Field)> = ins
            .warnings
            .iter()
            .map(|i| (i.kind, i.field.clone()))
            .collect();
        assert_eq!(
            warned,
            [
                (
                    IssueKind::Annotation,
                    annotation("nginx.ingress.kubernetes.io/enable-modsecurity")
                ),
                (IssueKind::Spec, Field::Path { rule: 1, path: 3 }),
                (IssueKind::Spec, Field::Tls(1)),
            ]
        );
        assert_eq!(ins.paths.len(), 1);
        assert_eq!(ins.paths[0].claim().kind, MatchKind::Regex);
        assert!(!ins.is_servable());
    }

    #[test]
    fn claims_follow_the_router() {
        let ing = ingress(json!({
            "metadata": {"name": "i"},
            "spec": {"rules": [{"http": {"paths": [
                {"path": "/a", "pathType": "Exact", "backend": {"service": {"name": "a", "port": {"name": "http"}}}},
                {"path": "/a", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}},
                {"pathType": "ImplementationSpecific", "backend": {"service": {"name": "a", "port": {"number": 80}}}}]}}]}
        }));
        let ins = inspect(&ing);
        assert!(ins.is_servable(), "{:?}", ins.issues);
        let claims: Vec<RouteClaim> = ins.paths.iter().map(PathEntry::claim).collect();
        assert_eq!(claims[0].kind, MatchKind::Exact);
        assert_eq!(claims[1].kind, MatchKind::Prefix);
        // ImplementationSpecific without regex is a Prefix, and empty means `/`.
        assert_eq!(
            (claims[2].kind, claims[2].path.as_str()),
            (MatchKind::Prefix, "/")
        );
        assert_eq!(claims[0].describe(), "host * path /a (Exact)");

        let mut map = HashMap::new();
        map.insert(claims[1].clone(), "main");
        let own = RouteClaim {
            kind: MatchKind::Regex,
            ..claims[1].clone()
        };
        assert_eq!(main_claim(&map, &own).map(|(_, v)| *v), Some("main"));
        let other = RouteClaim {
            path: "/b".into(),
            ..own
        };
        assert!(main_claim(&map, &other).is_none());
    }
}
