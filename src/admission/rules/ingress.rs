//! Ingress rules, as ingress-nginx's validating webhook checks Ingresses but without its
//! flaws: nothing from the object is ever rendered into a configuration or run; every
//! field goes through the typed parsers and validators the data plane itself uses
//! (`ingress::build::inspect`), so admission refuses exactly what compile would refuse.
//!
//! Only Ingresses served by portcullis are checked (the class selection of the live
//! snapshot); an Ingress for another controller passes untouched. Without live state
//! (`check` without `--manifests`) every Ingress is assumed to be ours, and the rules that
//! compare with live state (collisions, Services, Secrets) find nothing.
use std::collections::HashSet;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::ingress::IngressView;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;
use crate::ingress::build::inspect::{DefaultScope, Field, IssueKind};
use crate::ingress::model::live::PortLookup;

/// The Ingress rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(Issues {
            id: "ingressInvalidAnnotation",
            kind: IssueKind::Annotation,
        }),
        Box::new(Issues {
            id: "ingressSnippetAnnotation",
            kind: IssueKind::Snippet,
        }),
        Box::new(Issues {
            id: "ingressInvalidRegex",
            kind: IssueKind::Regex,
        }),
        Box::new(Issues {
            id: "ingressInvalidSpec",
            kind: IssueKind::Spec,
        }),
        Box::new(AnnotationIgnored),
        Box::new(PathConflict),
        Box::new(CanaryWithoutMain),
        Box::new(BackendMissing),
        Box::new(TlsSecretMissing),
    ]
}

/// The Ingress under review when it is ours to check.
fn ours<'c>(ctx: &'c Context<'_>) -> Option<&'c IngressView> {
    let view = ctx.ingress()?;
    match ctx.live {
        Some(live) if !live.serves(&view.ingress) => None,
        _ => Some(view),
    }
}

fn pointer(field: &Field) -> Pointer {
    let spec = Pointer::from_tokens(["spec"]);
    match field {
        Field::Annotation(key) => {
            let all = Pointer::from_tokens(["metadata", "annotations"]);
            match key {
                Some(k) => all.child(k),
                None => all,
            }
        }
        Field::Spec => spec,
        Field::Host(r) => spec.child("rules").index(*r).child("host"),
        Field::Path { rule, path } => path_pointer(*rule, *path),
        Field::DefaultBackend => spec.child("defaultBackend"),
        Field::Tls(i) => spec.child("tls").index(*i),
    }
}

fn path_pointer(rule: usize, path: usize) -> Pointer {
    Pointer::from_tokens(["spec", "rules"])
        .index(rule)
        .child("http")
        .child("paths")
        .index(path)
}

/// Messages end up on one line of a kubectl error or warning; regex errors span several.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `ingressInvalidAnnotation`, `ingressSnippetAnnotation`, `ingressInvalidRegex`,
/// `ingressInvalidSpec`: the problems `ingress::build::inspect` finds, one rule per kind. Any of
/// them makes compile refuse the Ingress (its last good version keeps serving, or nothing
/// does), so they deny by default.
pub struct Issues {
    id: &'static str,
    kind: IssueKind,
}

impl Rule for Issues {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(view) = ours(ctx) else {
            return Vec::new();
        };
        view.inspection
            .issues
            .iter()
            .filter(|i| i.kind == self.kind)
            .map(|i| Violation::new(one_line(&i.message), pointer(&i.field)))
            .collect()
    }
}

/// `ingressAnnotationIgnored`: ingress-nginx annotations portcullis does not implement
/// (the Ingress serves without them), and annotations overridden or without effect.
pub struct AnnotationIgnored;

impl Rule for AnnotationIgnored {
    fn id(&self) -> &'static str {
        "ingressAnnotationIgnored"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(view) = ours(ctx) else {
            return Vec::new();
        };
        view.inspection
            .warnings
            .iter()
            .filter(|w| w.kind == IssueKind::Annotation)
            .map(|w| Violation::new(one_line(&w.message), pointer(&w.field)))
            .collect()
    }
}

fn self_key(ctx: &Context<'_>) -> String {
    format!("{}/{}", ctx.namespace, ctx.name)
}

/// `ingressPathConflict`: a host + path + match kind already served by another Ingress.
/// The router keeps the oldest Ingress's route and ignores the other, so the newcomer
/// would silently not get its traffic (or, if older, silently take it over). Matching is
/// by the router's own rule: same host, same kind (Exact, Prefix — which includes
/// ImplementationSpecific without regex — or regex) and same raw path. A canary Ingress
/// joins the main route instead; it conflicts only with another canary of that route.
/// The Ingress never conflicts with itself, so an UPDATE passes.
pub struct PathConflict;

impl Rule for PathConflict {
    fn id(&self) -> &'static str {
        "ingressPathConflict"
    }
    fn default_action(&self) -> Action {
        Action::Deny
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let (Some(view), Some(live)) = (ours(ctx), ctx.live) else {
            return Vec::new();
        };
        let me = self_key(ctx);
        let canary = view.inspection.canary.is_some();
        let mut out = Vec::new();
        for p in &view.inspection.paths {
            let claim = p.claim();
            let owner = if canary {
                live.canary_owner(&claim)
            } else {
                live.route_owner(&claim)
            };
            let Some(owner) = owner.filter(|o| *o != me) else {
                continue;
            };
            let host = p.host.as_deref().unwrap_or("*");
            // ingress-nginx's wording, so existing runbooks and searches still match.
            let message = if canary {
                format!(
                    "host {host:?} and path {:?} already has a canary: ingress {owner}; a route takes one canary",
                    p.path
                )
            } else {
                format!(
                    "host {host:?} and path {:?} is already defined in ingress {owner} ({}); use another host or path, or mark this Ingress as its canary",
                    p.path,
                    claim.kind.as_str()
                )
            };
            out.push(Violation::new(message, path_pointer(p.rule, p.index)));
        }
        // A canary's defaultBackend is never served as a fallback, so it claims nothing.
        if canary {
            return out;
        }
        for scope in DefaultScope::of(&view.inspection) {
            let Some(owner) = live.default_owner(&scope).filter(|o| *o != me) else {
                continue;
            };
            out.push(Violation::new(
                format!(
                    "{} is already provided by ingress {owner}; only the oldest one is served, so remove this defaultBackend or give it a rule of its own",
                    scope.describe()
                ),
                pointer(&Field::DefaultBackend),
            ));
        }
        out
    }
}

/// `ingressCanaryWithoutMain`: a canary path with no main route to join. Compile ignores
/// such a path, so it gets no traffic until an Ingress serves that host and path. Warns by
/// default: the main Ingress is often applied in the same batch, after the canary.
pub struct CanaryWithoutMain;

impl Rule for CanaryWithoutMain {
    fn id(&self) -> &'static str {
        "ingressCanaryWithoutMain"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let (Some(view), Some(live)) = (ours(ctx), ctx.live) else {
            return Vec::new();
        };
        if view.inspection.canary.is_none() {
            return Vec::new();
        }
        view.inspection
            .paths
            .iter()
            .filter(|p| live.canary_main(&p.claim()).is_none())
            .map(|p| {
                Violation::new(
                    format!(
                        "canary: no Ingress serves {}, so this canary path gets no traffic; create the main Ingress for it first, or fix host and path to match it",
                        p.claim().describe()
                    ),
                    path_pointer(p.rule, p.index),
                )
            })
            .collect()
    }
}

/// `ingressBackendMissing`: a backend Service that does not exist, or exists without the
/// port named. Requests to it get 503. Warns by default: the Service is often applied
/// right after the Ingress.
pub struct BackendMissing;

impl Rule for BackendMissing {
    fn id(&self) -> &'static str {
        "ingressBackendMissing"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let (Some(view), Some(live)) = (ours(ctx), ctx.live) else {
            return Vec::new();
        };
        let ins = &view.inspection;
        let backends = ins
            .paths
            .iter()
            .map(|p| (&p.backend, path_pointer(p.rule, p.index).child("backend")))
            .chain(
                ins.default_backend
                    .iter()
                    .map(|b| (b, pointer(&Field::DefaultBackend))),
            );
        // One finding per backend, at its first use: the same missing Service behind ten
        // paths is one problem.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (b, ptr) in backends {
            if !seen.insert(b) {
                continue;
            }
            let ns = ctx.namespace;
            let message = match live.service_port(ns, &b.service, &b.port) {
                PortLookup::Found => continue,
                PortLookup::NoService => format!(
                    "backend Service {ns}/{} does not exist; requests get 503 until it does",
                    b.service
                ),
                PortLookup::NoPort { known } => {
                    let has = if known.is_empty() {
                        "no ports".to_string()
                    } else {
                        format!("ports {}", known.join(", "))
                    };
                    format!(
                        "backend Service {ns}/{} has no port {} (it has {has}); requests get 503",
                        b.service, b.port
                    )
                }
            };
            out.push(Violation::new(message, ptr.child("service")));
        }
        out
    }
}

/// `ingressTlsSecretMissing`: a `spec.tls` Secret that does not exist (or is not of type
/// kubernetes.io/tls). Its hosts get the default certificate. Warns by default: the
/// Secret is often created right after (cert-manager issues it from the Ingress).
pub struct TlsSecretMissing;

impl Rule for TlsSecretMissing {
    fn id(&self) -> &'static str {
        "ingressTlsSecretMissing"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("networking.k8s.io", "Ingress")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let (Some(view), Some(live)) = (ours(ctx), ctx.live) else {
            return Vec::new();
        };
        // A canary's TLS section is not served (its main Ingress's is).
        if view.inspection.canary.is_some() {
            return Vec::new();
        }
        let ns = ctx.namespace;
        view.inspection
            .tls
            .iter()
            .filter_map(|t| {
                let secret = t.secret.as_deref()?;
                if live.tls_secret_exists(ns, secret) {
                    return None;
                }
                Some(Violation::new(
                    format!(
                        "TLS Secret {ns}/{secret} does not exist (or is not of type kubernetes.io/tls); {} served with the default certificate until it does",
                        t.hosts.join(", ")
                    ),
                    pointer(&Field::Tls(t.index)).child("secretName"),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::admission::check::parse_manifests;
    use crate::admission::context::Operation;
    use crate::admission::settings::AdmissionSettings;
    use crate::ingress::build::compile::{CompileOptions, compile};
    use crate::ingress::model::live::LiveState;
    use crate::ingress::model::snapshot::Snapshot;
    use crate::source::{Object, ObjectStore};

    const LIVE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {name: shop-tls, namespace: shop}
data: {tls.crt: "", tls.key: ""}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: portcullis
  rules:
    - host: shop.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
          - {path: /api, pathType: Exact, backend: {service: {name: web, port: {name: http}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web-canary
  namespace: shop
  annotations: {nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "10"}
spec:
  ingressClassName: portcullis
  rules:
    - host: shop.example.com
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

    fn live() -> Snapshot {
        let objs = parse_manifests("live", LIVE)
            .unwrap()
            .into_iter()
            .filter_map(|v| Object::from_value(v).unwrap())
            .collect();
        let mut store = ObjectStore::new();
        store.replace_origin("live", objs, vec![]);
        compile(&store, &CompileOptions::default(), None)
    }

    fn ingress(name: &str, annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
               "spec": spec})
    }

    fn paths(host: &str, paths: Value) -> Value {
        json!({"ingressClassName": "portcullis", "rules": [{"host": host, "http": {"paths": paths}}]})
    }

    fn path(p: &str, t: &str, svc: &str, port: Value) -> Value {
        json!({"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": port}}})
    }

    fn check(id: &str, obj: &Value, live: Option<&Snapshot>) -> Vec<Violation> {
        let settings = AdmissionSettings::default();
        let mut ctx = Context::new(
            "networking.k8s.io",
            "Ingress",
            Operation::Update,
            "shop",
            "",
            obj,
            &settings,
        );
        ctx.live = live.map(|s| s as &dyn LiveState);
        let rules = rules();
        let rule = rules.iter().find(|r| r.id() == id).unwrap();
        rule.check(&ctx)
    }

    #[test]
    fn collision_names_the_owner_and_skips_itself() {
        let snap = live();
        let obj = ingress(
            "other",
            json!({}),
            paths(
                "shop.example.com",
                json!([path("/", "Prefix", "web", json!({"number": 80}))]),
            ),
        );
        let v = check("ingressPathConflict", &obj, Some(&snap));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].message.starts_with(
                r#"host "shop.example.com" and path "/" is already defined in ingress shop/web"#
            ),
            "{}",
            v[0].message
        );
        assert_eq!(v[0].path.render(), "/spec/rules/0/http/paths/0");
        // The same Ingress, updated, is not a collision with itself.
        let same = ingress("web", json!({}), obj["spec"].clone());
        assert!(check("ingressPathConflict", &same, Some(&snap)).is_empty());
        // ImplementationSpecific without regex is a Prefix: still a collision.
        let is = ingress(
            "other",
            json!({}),
            paths(
                "shop.example.com",
                json!([path(
                    "/",
                    "ImplementationSpecific",
                    "web",
                    json!({"number": 80})
                )]),
            ),
        );
        assert_eq!(check("ingressPathConflict", &is, Some(&snap)).len(), 1);
        // Exact /api is taken, Prefix /api and Exact / are not; another host is free.
        let free = ingress(
            "other",
            json!({}),
            json!({"ingressClassName": "portcullis", "rules": [
                {"host": "shop.example.com", "http": {"paths": [
                    path("/api", "Prefix", "web", json!({"number": 80})),
                    path("/", "Exact", "web", json!({"number": 80})),
                    path("/api", "Exact", "web", json!({"number": 80}))]}},
                {"host": "other.example.com", "http": {"paths": [
                    path("/", "Prefix", "web", json!({"number": 80}))]}}]}),
        );
        let v = check("ingressPathConflict", &free, Some(&snap));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path.render(), "/spec/rules/0/http/paths/2");
        // Without live state nothing is compared.
        assert!(check("ingressPathConflict", &obj, None).is_empty());
    }

    #[test]
    fn canaries_join_main_routes_but_not_other_canaries() {
        let snap = live();
        let spec = paths(
            "shop.example.com",
            json!([path("/", "Prefix", "web", json!({"number": 80}))]),
        );
        let canary = json!({"nginx.ingress.kubernetes.io/canary": "true"});
        let second = ingress("second-canary", canary.clone(), spec.clone());
        let v = check("ingressPathConflict", &second, Some(&snap));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("shop/web-canary"), "{}", v[0].message);
        let itself = ingress("web-canary", canary.clone(), spec);
        assert!(check("ingressPathConflict", &itself, Some(&snap)).is_empty());
        let api = ingress(
            "api-canary",
            canary,
            paths(
                "shop.example.com",
                json!([path("/api", "Exact", "web", json!({"number": 80}))]),
            ),
        );
        assert!(check("ingressPathConflict", &api, Some(&snap)).is_empty());
    }

    #[test]
    fn other_classes_pass_untouched() {
        let snap = live();
        let mut obj = ingress(
            "nginx-one",
            json!({"nginx.ingress.kubernetes.io/server-snippet": "return 200;"}),
            paths(
                "shop.example.com",
                json!([path(
                    "/(",
                    "ImplementationSpecific",
                    "nope",
                    json!({"number": 1})
                )]),
            ),
        );
        obj["spec"]["ingressClassName"] = json!("nginx");
        for r in rules() {
            assert!(
                check(r.id(), &obj, Some(&snap)).is_empty(),
                "{} fired",
                r.id()
            );
        }
        // Without live state every Ingress is assumed ours: the static rules run.
        assert_eq!(check("ingressSnippetAnnotation", &obj, None).len(), 1);
    }

    #[test]
    fn static_rules_split_by_kind() {
        let obj = ingress(
            "x",
            json!({
                "nginx.ingress.kubernetes.io/use-regex": "true",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "5h",
                "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
                "nginx.ingress.kubernetes.io/enable-modsecurity": "true"
            }),
            paths(
                "shop.example.com",
                json!([
                    path(
                        "/ok/(.*)",
                        "ImplementationSpecific",
                        "web",
                        json!({"number": 80})
                    ),
                    path(
                        "/bad/(.*",
                        "ImplementationSpecific",
                        "web",
                        json!({"number": 80})
                    ),
                    path("/a//b", "Prefix", "web", json!({"number": 80}))
                ]),
            ),
        );
        let snap = live();
        let one = |id: &str| {
            let v = check(id, &obj, Some(&snap));
            assert_eq!(v.len(), 1, "{id}: {v:?}");
            v.into_iter().next().unwrap()
        };
        let a = one("ingressInvalidAnnotation");
        assert!(
            a.message
                .starts_with("nginx.ingress.kubernetes.io/proxy-read-timeout"),
            "{}",
            a.message
        );
        assert_eq!(
            a.path.render(),
            "/metadata/annotations/nginx.ingress.kubernetes.io~1proxy-read-timeout"
        );
        let s = one("ingressSnippetAnnotation");
        assert!(s.message.contains("configuration-snippet"));
        let r = one("ingressInvalidRegex");
        assert_eq!(r.path.render(), "/spec/rules/0/http/paths/1");
        assert!(!r.message.contains('\n'), "{}", r.message);
        assert!(r.message.contains("/bad/(.*"), "{}", r.message);
        let p = one("ingressInvalidSpec");
        assert_eq!(p.path.render(), "/spec/rules/0/http/paths/2");
        let w = one("ingressAnnotationIgnored");
        assert!(w.message.contains("enable-modsecurity"), "{}", w.message);
    }

    #[test]
    fn a_collision_can_be_configured_to_warn() {
        let snap = live();
        let obj = ingress(
            "other",
            json!({}),
            paths(
                "shop.example.com",
                json!([path("/", "Prefix", "web", json!({"number": 80}))]),
            ),
        );
        let mut settings = AdmissionSettings::default();
        settings.rules.insert(
            "ingressPathConflict".into(),
            serde_json::from_value(json!("warn")).unwrap(),
        );
        let engine = crate::admission::Engine::new(settings).unwrap();
        let mut ctx = Context::new(
            "networking.k8s.io",
            "Ingress",
            Operation::Create,
            "shop",
            "",
            &obj,
            engine.settings(),
        );
        ctx.live = Some(&snap);
        let decision = engine.validate(&ctx);
        assert!(!decision.denied(), "{:?}", decision.findings);
        let f: Vec<_> = decision
            .findings
            .iter()
            .filter(|f| f.rule == "ingressPathConflict")
            .collect();
        assert_eq!(f.len(), 1, "{:?}", decision.findings);
        assert_eq!(f[0].action, Action::Warn);
    }

    #[test]
    fn missing_backends_and_ports() {
        let snap = live();
        let obj = ingress(
            "x",
            json!({}),
            json!({"ingressClassName": "portcullis",
                   "defaultBackend": {"service": {"name": "gone", "port": {"number": 80}}},
                   "rules": [{"host": "x.example.com", "http": {"paths": [
                       path("/a", "Prefix", "web", json!({"number": 80})),
                       path("/b", "Prefix", "web", json!({"name": "http"})),
                       path("/c", "Prefix", "web", json!({"number": 8080})),
                       path("/d", "Prefix", "web", json!({"number": 8080})),
                       path("/e", "Prefix", "ext", json!({"number": 443})),
                       path("/f", "Prefix", "ext", json!({"name": "https"})),
                       path("/g", "Prefix", "gone", json!({"number": 80}))]}}]}),
        );
        let v = check("ingressBackendMissing", &obj, Some(&snap));
        let got: Vec<(String, &str)> = v
            .iter()
            .map(|v| (v.path.render(), v.message.as_str()))
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, "/spec/rules/0/http/paths/2/backend/service");
        assert!(
            got[0]
                .1
                .contains("shop/web has no port 8080 (it has ports 80/http)")
        );
        assert_eq!(got[1].0, "/spec/rules/0/http/paths/5/backend/service");
        assert!(
            got[1]
                .1
                .contains("shop/ext has no port https (it has no ports)")
        );
        assert_eq!(got[2].0, "/spec/rules/0/http/paths/6/backend/service");
        assert!(got[2].1.contains("Service shop/gone does not exist"));
        assert!(check("ingressBackendMissing", &obj, None).is_empty());
    }

    #[test]
    fn missing_tls_secrets() {
        let snap = live();
        let mut obj = ingress(
            "x",
            json!({}),
            paths(
                "a.example.com",
                json!([path("/", "Prefix", "web", json!({"number": 80}))]),
            ),
        );
        obj["spec"]["tls"] = json!([
            {"hosts": ["a.example.com"], "secretName": "shop-tls"},
            {"hosts": ["b.example.com", "c.example.com"], "secretName": "absent"},
            {"hosts": ["d.example.com"]}
        ]);
        let v = check("ingressTlsSecretMissing", &obj, Some(&snap));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path.render(), "/spec/tls/1/secretName");
        assert!(
            v[0].message
                .contains("shop/absent does not exist (or is not of type kubernetes.io/tls); b.example.com, c.example.com served with"),
            "{}",
            v[0].message
        );
    }
}
