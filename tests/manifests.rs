//! The deployment manifests (`manifests/`) against the Kubernetes API types and against the
//! code they deploy: every object parses into its k8s-openapi type with no field the type
//! does not know, RBAC grants exactly what the object store watches, the webhook
//! configurations are the safe kind, the Deployment meets the issue's requirements, and
//! portcullis's own Deployment passes its own rules with no finding at all.
//!
//! What the running binary serves on those ports and paths is `manifests_e2e.rs`.
#[path = "common/manifests.rs"]
mod manifests;

use std::collections::BTreeSet;
use std::process::Command;

use manifests::{
    Doc, all, base, container_args, find, flag, kustomization, lost_fields, resources, root,
    strings, typed_round_trip,
};
use portcullis::admission::{AdmissionSettings, Context, Engine, Operation};
use portcullis::config::{Settings, ShutdownSettings};
use portcullis::source::Kind;
use serde_json::{Value, json};

const NS: &str = "portcullis";

fn deployment(docs: &[Doc]) -> Value {
    find(docs, "Deployment", "portcullis").value.clone()
}

#[test]
fn every_manifest_parses_into_its_type_without_unknown_fields() {
    let mut checked = 0;
    for dir in ["base", "cert-manager"] {
        for doc in resources(&root().join(dir)) {
            let file = doc.file.display();
            match typed_round_trip(&doc.value) {
                Some(Ok(back)) => {
                    let lost = lost_fields(&doc.value, &back);
                    assert!(
                        lost.is_empty(),
                        "{file}: {} {}: {lost:?}",
                        doc.kind(),
                        doc.name()
                    );
                    checked += 1;
                }
                Some(Err(e)) => panic!("{file}: {} does not parse: {e}", doc.kind()),
                // Only cert-manager's kinds have no k8s-openapi type (checked in
                // cert_manager_overlay_issues_the_webhook_certificate).
                None => assert_eq!(
                    doc.value["apiVersion"],
                    "cert-manager.io/v1",
                    "{file}: no type for {} {}",
                    doc.value["apiVersion"],
                    doc.kind()
                ),
            }
        }
    }
    // Namespace, ServiceAccount, 2+2 RBAC, Deployment, 2 Services, IngressClass, PDB, HPA,
    // PriorityClass, NetworkPolicy, 2 webhook configurations: 16 in the base, the same 16
    // again through the overlay.
    assert_eq!(checked, 32);
}

/// The round trip is what finds unknown fields, so it must find them.
#[test]
fn the_round_trip_catches_misspelled_and_misshapen_fields() {
    let mut d = deployment(&base());
    d["spec"]["replica"] = json!(3);
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = json!({});
    d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = json!("65532");
    let lost = match typed_round_trip(&d) {
        Some(Ok(back)) => lost_fields(&d, &back),
        Some(Err(e)) => vec![e],
        None => panic!("Deployment has a type"),
    };
    // A string where an integer belongs does not even deserialize; the other two are
    // dropped silently by serde and only the comparison sees them.
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].contains("runAsUser") || lost[0].contains("invalid type"),
        "{lost:?}"
    );
    d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = json!(65532);
    let back = typed_round_trip(&d).unwrap().unwrap();
    let lost = lost_fields(&d, &back);
    assert_eq!(
        lost,
        [
            ".spec.replica (unknown field)",
            ".spec.template.spec.containers[0].readinesProbe (unknown field)"
        ]
    );
}

/// kustomize installs only what a kustomization lists: a manifest file nobody lists would
/// silently not be deployed.
#[test]
fn every_file_is_listed_by_its_kustomization() {
    for dir in ["base", "cert-manager"] {
        let dir = root().join(dir);
        let k = kustomization(&dir);
        let mut listed: BTreeSet<String> = strings(&k["resources"])
            .into_iter()
            .map(str::to_string)
            .collect();
        for g in k["configMapGenerator"].as_array().into_iter().flatten() {
            listed.extend(strings(&g["files"]).into_iter().map(str::to_string));
        }
        listed.insert("kustomization.yaml".into());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") {
                assert!(
                    listed.contains(&name),
                    "{}: {name} is not listed",
                    dir.display()
                );
            }
        }
    }
    // The top-level kustomization is the default install: the base plus the certificate.
    let top = kustomization(&root());
    assert_eq!(strings(&top["resources"]), ["base"]);
    let secret = &top["secretGenerator"][0];
    assert_eq!(secret["name"], "portcullis-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["options"]["disableNameSuffixHash"], true);
}

/// The read rule of each kind the object store holds. Exhaustive on purpose: a new kind
/// does not compile here until its RBAC is decided.
fn watched(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::IngressClass => ("networking.k8s.io", "ingressclasses"),
        Kind::Ingress => ("networking.k8s.io", "ingresses"),
        Kind::Service => ("", "services"),
        Kind::EndpointSlice => ("discovery.k8s.io", "endpointslices"),
        Kind::Endpoints => ("", "endpoints"),
        Kind::Secret => ("", "secrets"),
        Kind::ConfigMap => ("", "configmaps"),
    }
}

const STORE_KINDS: [Kind; 7] = [
    Kind::IngressClass,
    Kind::Ingress,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Endpoints,
    Kind::Secret,
    Kind::ConfigMap,
];

/// (apiGroup, resource, verb) triples a role grants; a rule limited to resourceNames
/// grants `resource/name` for each name.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(rule.get("nonResourceURLs").is_none());
        let names: Vec<String> = match rule.get("resourceNames") {
            Some(n) => strings(n).iter().map(|n| format!("/{n}")).collect(),
            None => vec![String::new()],
        };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule}");
                    for n in &names {
                        out.insert((g.to_string(), format!("{r}{n}"), v.to_string()));
                    }
                }
            }
        }
    }
    out
}

fn triples(list: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_source_needs() {
    let docs = base();
    let mut want = Vec::new();
    for kind in STORE_KINDS {
        // v1 Endpoints are watched only with --watch-endpoints, which needs its own grant.
        if kind == Kind::Endpoints {
            continue;
        }
        let (group, resource) = watched(kind);
        for verb in ["get", "list", "watch"] {
            want.push((group, resource, verb));
        }
    }
    // The cluster view the cross-object rules read: every kind they need, read-only.
    let mut view_kinds: Vec<(&str, &str)> = portcullis::admission::rules::catalogue()
        .iter()
        .flat_map(|r| portcullis::source::cluster_watch::kinds_for(r.id()).iter())
        .map(|(group, _, _, plural)| (*group, *plural))
        .collect();
    view_kinds.sort_unstable();
    view_kinds.dedup();
    assert_eq!(view_kinds.len(), 6, "{view_kinds:?}");
    for (group, resource) in view_kinds {
        for verb in ["get", "list", "watch"] {
            want.push((group, resource, verb));
        }
    }
    // Ingress status, written by the Lease holder, and Events about Ingresses.
    want.push(("networking.k8s.io", "ingresses/status", "update"));
    want.push(("networking.k8s.io", "ingresses/status", "patch"));
    want.push(("events.k8s.io", "events", "create"));
    let cluster_role = find(&docs, "ClusterRole", "portcullis");
    assert_eq!(grants(&cluster_role.value), triples(&want));

    let role = find(&docs, "Role", "portcullis-leader");
    assert_eq!(role.namespace(), NS);
    assert_eq!(
        grants(&role.value),
        triples(&[
            ("coordination.k8s.io", "leases/portcullis-leader", "get"),
            ("coordination.k8s.io", "leases", "create"),
            ("coordination.k8s.io", "leases/portcullis-leader", "update"),
        ])
    );

    // Both bindings give their role to the ServiceAccount the pods run as.
    let d = deployment(&docs);
    let sa = d["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    assert_eq!(find(&docs, "ServiceAccount", sa).namespace(), NS);
    for (binding, role_kind, role_name) in [
        ("ClusterRoleBinding", "ClusterRole", "portcullis"),
        ("RoleBinding", "Role", "portcullis-leader"),
    ] {
        let b = &find(&docs, binding, role_name).value;
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], role_name);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": NS}])
        );
    }
    // Nothing else is granted anywhere.
    assert_eq!(all(&docs, "ClusterRole").len(), 1);
    assert_eq!(all(&docs, "Role").len(), 1);
}

fn webhooks(docs: &[Doc], kind: &str) -> Vec<Value> {
    let config = find(docs, kind, "portcullis");
    config.value["webhooks"].as_array().unwrap().clone()
}

/// (apiGroup, resource, operation) triples a webhook's rules match.
fn matched(webhook: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in webhook["rules"].as_array().unwrap() {
        assert_eq!(strings(&rule["apiVersions"]), ["v1"], "{rule}");
        // Only the RBAC kinds that live outside namespaces are matched cluster-wide.
        let cluster_scoped = strings(&rule["resources"])
            .iter()
            .all(|r| matches!(*r, "clusterroles" | "clusterrolebindings"));
        let scope = if cluster_scoped {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(rule["scope"], scope, "{rule}");
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for op in strings(&rule["operations"]) {
                    out.insert((g.to_string(), r.to_string(), op.to_string()));
                }
            }
        }
    }
    out
}

fn kinds_with_ops(list: &[(&str, &[&str])], ops: &[&str]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resources) in list {
        for r in *resources {
            for op in ops {
                out.insert((group.to_string(), r.to_string(), op.to_string()));
            }
        }
    }
    out
}

/// Kinds people and CI write; Fail, CREATE and UPDATE.
const AUTHORED: &[(&str, &[&str])] = &[
    ("apps", &["deployments", "statefulsets", "daemonsets"]),
    ("batch", &["cronjobs"]),
    ("", &["replicationcontrollers", "services"]),
];

#[test]
fn webhook_configurations_are_safe_and_cover_every_pod_template_kind() {
    let docs = base();
    let raw = |file: &str| std::fs::read_to_string(root().join("base").join(file)).unwrap();
    for (kind, file) in [
        ("ValidatingWebhookConfiguration", "webhook-validating.yaml"),
        ("MutatingWebhookConfiguration", "webhook-mutating.yaml"),
    ] {
        // The choice of failurePolicy is explained where it is made.
        let comment: String = raw(file)
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect();
        assert!(
            comment.contains("failurePolicy"),
            "{file}: no comment on failurePolicy"
        );
        for w in webhooks(&docs, kind) {
            let name = w["name"].as_str().unwrap();
            assert_eq!(w["admissionReviewVersions"], json!(["v1"]), "{name}");
            assert_eq!(w["sideEffects"], "None", "{name}");
            assert_eq!(w["timeoutSeconds"], 5, "{name}");
            assert_eq!(w["matchPolicy"], "Equivalent", "{name}");
            assert!(
                matches!(w["failurePolicy"].as_str(), Some("Fail" | "Ignore")),
                "{name}: failurePolicy must be explicit"
            );
            // The webhook can never block its own restart, nor kube-system's.
            let exprs = w["namespaceSelector"]["matchExpressions"]
                .as_array()
                .unwrap();
            assert!(
                exprs
                    .iter()
                    .any(|e| e["key"] == "kubernetes.io/metadata.name"
                        && e["operator"] == "NotIn"
                        && strings(&e["values"]) == ["kube-system", NS]),
                "{name}: {exprs:?}"
            );
            // The opt-out label, and nothing else, lets an object skip the call.
            assert_eq!(
                w["objectSelector"],
                json!({"matchExpressions": [{"key": "portcullis.io/webhook", "operator": "NotIn", "values": ["false"]}]}),
                "{name}"
            );
            if kind == "MutatingWebhookConfiguration" {
                assert_eq!(w["reinvocationPolicy"], "IfNeeded", "{name}");
                assert_eq!(w["failurePolicy"], "Ignore", "{name}");
            }
            // DELETE and CONNECT are skipped by the engine: never worth a round trip.
            for (_, _, op) in matched(&w) {
                assert!(op == "CREATE" || op == "UPDATE", "{name}: {op}");
            }
        }
    }

    let by_name = |kind: &str, name: &str| {
        webhooks(&docs, kind)
            .into_iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no webhook {name}"))
    };
    let validating = "ValidatingWebhookConfiguration";
    let mutating = "MutatingWebhookConfiguration";

    let w = by_name(validating, "workloads.validate.portcullis.io");
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(matched(&w), kinds_with_ops(AUTHORED, &["CREATE", "UPDATE"]));
    let w = by_name(validating, "ingresses.validate.portcullis.io");
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(
        matched(&w),
        kinds_with_ops(
            &[("networking.k8s.io", &["ingresses"])],
            &["CREATE", "UPDATE"]
        )
    );
    let controlled: &[(&str, &[&str])] = &[
        ("", &["pods"]),
        ("apps", &["replicasets"]),
        ("batch", &["jobs"]),
    ];
    let w = by_name(validating, "controlled.validate.portcullis.io");
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(matched(&w), kinds_with_ops(controlled, &["CREATE"]));

    // The other kinds Polaris' checks judge reach the engine too, failing open.
    let w = by_name(validating, "objects.validate.portcullis.io");
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(
        matched(&w),
        kinds_with_ops(
            &[
                ("", &["configmaps"]),
                ("policy", &["poddisruptionbudgets"]),
                ("autoscaling", &["horizontalpodautoscalers"]),
                (
                    "rbac.authorization.k8s.io",
                    &[
                        "roles",
                        "rolebindings",
                        "clusterroles",
                        "clusterrolebindings"
                    ]
                ),
            ],
            &["CREATE", "UPDATE"]
        )
    );

    let w = by_name(mutating, "workloads.mutate.portcullis.io");
    assert_eq!(matched(&w), kinds_with_ops(AUTHORED, &["CREATE", "UPDATE"]));
    // No ReplicaSets: a mutated template makes the Deployment controller loop.
    let w = by_name(mutating, "controlled.mutate.portcullis.io");
    assert_eq!(
        matched(&w),
        kinds_with_ops(&[("", &["pods"]), ("batch", &["jobs"])], &["CREATE"])
    );

    // Every kind the engine finds a pod template in is validated somewhere, so no kind
    // is a way around the rules.
    let mut validated = BTreeSet::new();
    for w in webhooks(&docs, validating) {
        for (g, r, _) in matched(&w) {
            validated.insert((g, r));
        }
    }
    for (group, resource, kind) in [
        ("", "pods", "Pod"),
        ("apps", "deployments", "Deployment"),
        ("apps", "replicasets", "ReplicaSet"),
        ("apps", "statefulsets", "StatefulSet"),
        ("apps", "daemonsets", "DaemonSet"),
        ("batch", "jobs", "Job"),
        ("batch", "cronjobs", "CronJob"),
        ("", "replicationcontrollers", "ReplicationController"),
    ] {
        let api_version = if group.is_empty() {
            "v1".to_string()
        } else {
            format!("{group}/v1")
        };
        let obj = json!({"apiVersion": api_version, "kind": kind, "spec": {}});
        assert!(
            portcullis::admission::template::find(group, kind, &obj).is_some(),
            "the engine has no pod template for {kind}"
        );
        assert!(
            validated.contains(&(group.to_string(), resource.to_string())),
            "{resource} is not validated"
        );
    }
}

#[test]
fn deployment_meets_the_requirements() {
    let docs = base();
    let d = deployment(&docs);
    let spec = &d["spec"];
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    // The image tag follows the crate version.
    assert_eq!(
        c["image"],
        format!(
            "ghcr.io/portcullis/portcullis:{}",
            env!("CARGO_PKG_VERSION")
        )
    );

    // Spread over nodes, preferably.
    let term = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    assert!(
        pod["affinity"]["podAntiAffinity"]
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );

    // Memory limited at its request (never OOM-killed for a neighbour's use), CPU requested
    // but not limited: a CFS quota throttles a proxy in the middle of a burst, which shows
    // as tail latency, while the request already buys its share under contention.
    let r = &c["resources"];
    for res in ["cpu", "memory"] {
        assert!(r["requests"][res].is_string(), "no {res} request");
    }
    assert_eq!(r["requests"]["memory"], r["limits"]["memory"]);
    assert!(
        r["limits"].get("cpu").is_none(),
        "the data plane must not have a CPU limit"
    );
    assert_eq!(pod["priorityClassName"], "portcullis-critical");

    // Locked down.
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);

    // The downward API.
    let env = c["env"].as_array().unwrap();
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env.iter().find(|e| e["name"] == name).expect(name);
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path);
    }

    // The serving certificate: a directory mount of the Secret (a subPath mount never
    // sees the kubelet's ..data swap, so rotation would need a restart).
    let args = container_args(&d);
    assert_eq!(args[0], "serve");
    let cert = flag(&args, "--tls-cert").unwrap();
    let key = flag(&args, "--tls-key").unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()));
    let mount_of = |file: &str| {
        let dir = std::path::Path::new(file)
            .parent()
            .unwrap()
            .to_str()
            .unwrap();
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        let name = m["name"].as_str().unwrap();
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()
            .clone()
    };
    let tls = mount_of(&cert);
    assert_eq!(tls, mount_of(&key));
    assert_eq!(tls["secret"]["secretName"], "portcullis-webhook-tls");
    let config = mount_of(&flag(&args, "--config").unwrap());
    assert_eq!(config["configMap"]["name"], "portcullis-config");
    assert_eq!(flag(&args, "--source").as_deref(), Some("kube"));
    assert_eq!(
        flag(&args, "--publish-service").as_deref(),
        Some("portcullis/portcullis-ingress")
    );
    find(&docs, "Service", "portcullis-ingress");

    // A writable /tmp on the read-only root, bounded.
    let tmp = mount_of("/tmp/x");
    assert!(tmp["emptyDir"]["sizeLimit"].is_string(), "{tmp}");

    // The kubelet's SIGKILL comes after the drain and the grace period, with time to spare.
    let config_file = root().join("base").join("config.yaml");
    let text = std::fs::read_to_string(&config_file).unwrap();
    let settings = Settings::parse("config.yaml", &text).unwrap();
    let shutdown = &settings.shutdown;
    let needed = shutdown.drain_delay() + shutdown.grace();
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination >= needed.as_secs() + 5,
        "terminationGracePeriodSeconds {termination} vs drain + grace {needed:?}"
    );
    assert_eq!(
        (
            shutdown.drain_delay_seconds,
            ShutdownSettings::default().drain_delay_seconds
        ),
        (5, 5),
        "the issue's drain delay, in the file and as the default"
    );

    // The disruption budget and the autoscaler both aim at this Deployment.
    let pdb = &find(&docs, "PodDisruptionBudget", "portcullis").value;
    // One pod at a time, whatever size the autoscaler chose (minAvailable: 1 would let a
    // drain take 9 of 10 at once).
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none());
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);
    let hpa = &find(&docs, "HorizontalPodAutoscaler", "portcullis").value;
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "portcullis"})
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    // The class the data plane serves.
    let class = &find(&docs, "IngressClass", "portcullis").value;
    assert_eq!(
        class["spec"]["controller"],
        settings.ingress.controller.as_str()
    );
}

/// `portcullis check` over every manifest of the installation: nothing, not even a
/// warning, with the default settings and with the shipped config.yaml.
#[test]
fn portcullis_check_finds_nothing_in_its_own_manifests() {
    let dir = root().join("base");
    let files: BTreeSet<String> = resources(&dir)
        .iter()
        .map(|d| d.file.display().to_string())
        .collect();
    let config = dir.join("config.yaml");
    for extra in [
        vec![],
        vec!["--config".to_string(), config.display().to_string()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "--output", "json"])
            .args(&extra)
            .args(&files)
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{extra:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let findings: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(findings, json!([]), "{extra:?}");
    }

    // The same through the library, and /mutate would change nothing either: what is in
    // git is what runs.
    let engine = Engine::new(AdmissionSettings::default()).unwrap();
    let d = deployment(&base());
    let ctx = Context::new(
        "apps",
        "Deployment",
        Operation::Create,
        NS,
        "",
        &d,
        engine.settings(),
    );
    assert!(
        engine
            .skip(&ctx, portcullis::admission::engine::Mode::Validate)
            .is_none(),
        "the Deployment must really be checked, not skipped"
    );
    assert!(engine.validate(&ctx).findings.is_empty());
    assert!(engine.mutate(&ctx).is_empty(), "{:?}", engine.mutate(&ctx));
}

#[test]
fn cert_manager_overlay_issues_the_webhook_certificate() {
    let dir = root().join("cert-manager");
    let docs = resources(&dir);
    let base_docs = base();
    let webhook_service = find(&base_docs, "Service", "portcullis-webhook");
    let svc = format!(
        "{}.{}.svc",
        webhook_service.name(),
        webhook_service.namespace()
    );

    let cert = &find(&docs, "Certificate", "portcullis-webhook").value;
    let spec = &cert["spec"];
    assert_eq!(cert["metadata"]["namespace"], NS);
    // The Secret the Deployment mounts.
    let d = deployment(&base_docs);
    let secret_volume = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(spec["secretName"], secret_volume.as_str());
    assert!(strings(&spec["dnsNames"]).contains(&svc.as_str()), "{spec}");
    assert!(strings(&spec["usages"]).contains(&"server auth"));

    // issuerRef chain: webhook certificate <- CA Issuer <- CA certificate <- self-signed.
    let issuer_of = |c: &Value| {
        assert_eq!(c["spec"]["issuerRef"]["kind"], "Issuer");
        find(
            &docs,
            "Issuer",
            c["spec"]["issuerRef"]["name"].as_str().unwrap(),
        )
        .value
        .clone()
    };
    let ca_issuer = issuer_of(cert);
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca_cert = all(&docs, "Certificate")
        .into_iter()
        .find(|c| c.value["spec"]["secretName"] == ca_secret)
        .expect("a Certificate writes the CA Issuer's secret");
    assert_eq!(ca_cert.value["spec"]["isCA"], true);
    let root_issuer = issuer_of(&ca_cert.value);
    assert_eq!(root_issuer["spec"]["selfSigned"], json!({}));

    // cainjector fills both configurations from that Certificate.
    let k = kustomization(&dir);
    let mut annotated = BTreeSet::new();
    for p in k["patches"].as_array().unwrap() {
        let patch = manifests::parse_docs("patch", p["patch"].as_str().unwrap());
        let annotation = &patch[0]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
        assert_eq!(annotation, &json!(format!("{NS}/portcullis-webhook")));
        annotated.insert(patch[0]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(
        annotated,
        BTreeSet::from([
            "MutatingWebhookConfiguration".to_string(),
            "ValidatingWebhookConfiguration".to_string()
        ])
    );
    // No Secret of its own: cert-manager writes it.
    assert!(all(&docs, "Secret").is_empty());
}
