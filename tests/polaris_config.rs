//! A Polaris configuration file with custom checks and exemptions, read as it is, drives
//! the engine: severities, checks left out, custom JSON Schema checks (container, pod
//! template with `{{ }}` substitution, a core kind), namespace, controller and container
//! exemptions.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis::admission::AdmissionSettings;
use portcullis::admission::check::{check_objects, parse_manifests};
use portcullis::admission::cluster::ClusterView;
use portcullis::admission::polaris::{self, PolarisConfig, PolarisError};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/polaris")
}

#[test]
fn config_with_custom_checks_and_exemptions() {
    let (engine, notes) = polaris::engine(
        AdmissionSettings::default(),
        Some(&dir().join("config.yaml")),
    )
    .unwrap();
    assert_eq!(engine.display_name(), Some("test-cluster"));
    assert!(notes.is_empty(), "{notes:?}");

    let text = std::fs::read_to_string(dir().join("objects.yaml")).unwrap();
    let objects = parse_manifests("objects.yaml", &text).unwrap();
    let view = ClusterView::new(&objects);
    let reports = check_objects(&engine, "objects.yaml", &objects, None, Some(&view));
    let custom = ["imageRegistry", "instanceLabel", "configMapOwner"];
    let got: BTreeSet<(String, &str, &str, String)> = reports
        .iter()
        .filter(|r| polaris::category(r.finding.rule).is_some() || custom.contains(&r.finding.rule))
        .map(|r| {
            (
                r.object.clone(),
                r.finding.rule,
                r.finding.action.as_str(),
                r.finding.path.clone(),
            )
        })
        .collect();
    let want: BTreeSet<(String, &str, &str, String)> = [
        (
            "Deployment apps/web",
            "tagNotSpecified",
            "deny",
            "/spec/template/spec/containers/0/image",
        ),
        // The init container pulls from quay.io too, but the check excludes init containers.
        (
            "Deployment apps/web",
            "imageRegistry",
            "deny",
            "/spec/template/spec/containers/0",
        ),
        (
            "Deployment apps/api",
            "hostNetworkSet",
            "warn",
            "/spec/template/spec/hostNetwork",
        ),
        (
            "Deployment apps/api",
            "instanceLabel",
            "warn",
            "/spec/template",
        ),
        ("ConfigMap apps/settings", "configMapOwner", "warn", ""),
    ]
    .into_iter()
    .map(|(o, r, a, p)| (o.to_string(), r, a, p.to_string()))
    .collect();
    assert_eq!(got, want);
    let image = reports
        .iter()
        .find(|r| r.finding.rule == "imageRegistry")
        .unwrap();
    assert_eq!(
        image.finding.message,
        "container \"web\": Image must not come from quay.io"
    );
    let cat = engine
        .rules()
        .iter()
        .find(|r| r.id() == "imageRegistry")
        .map(|r| r.category().to_string());
    assert_eq!(cat.as_deref(), Some("Security"));
}

#[test]
fn checks_without_definitions_or_severities_are_refused() {
    let mut settings = AdmissionSettings::default();
    let unknown = PolarisConfig::parse("t", "checks: {noSuchCheck: danger}").unwrap();
    assert!(matches!(
        unknown.apply(&mut settings),
        Err(PolarisError::UnknownCheck(id)) if id == "noSuchCheck"
    ));
    let no_severity = PolarisConfig::parse(
        "t",
        "checks: {}\ncustomChecks:\n  mine:\n    target: Container\n    schema: {type: object}\n",
    )
    .unwrap();
    assert!(matches!(
        no_severity.apply(&mut settings),
        Err(PolarisError::NoSeverity(id)) if id == "mine"
    ));
    let bad_mutation = PolarisConfig::parse("t", "checks: {}\nmutations: [noSuchCheck]\n").unwrap();
    assert!(matches!(
        bad_mutation.apply(&mut settings),
        Err(PolarisError::NoMutation(_))
    ));
    // A Polaris check without a mutation (in Polaris either) changes nothing; that is said.
    let tag = PolarisConfig::parse(
        "t",
        "checks: {}\nmutations: [tagNotSpecified, hostIPCSet, livenessProbeMissing]\n",
    )
    .unwrap();
    let notes = tag.unsupported();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("tagNotSpecified"), "{notes:?}");
    tag.apply(&mut settings).unwrap();
    assert_eq!(settings.rules["hostIPCSet"].mutate, Some(true));
    assert_eq!(settings.rules["livenessProbeMissing"].mutate, Some(true));
}

#[test]
fn disallowing_annotation_exemptions_turns_them_off() {
    let mut settings = AdmissionSettings::default();
    let c = PolarisConfig::parse(
        "t",
        "checks: {hostPIDSet: danger}\nmutations: [pullPolicyNotAlways]\ndisallowAnnotationExemptions: true\n",
    )
    .unwrap();
    c.apply(&mut settings).unwrap();
    assert!(!settings.annotation_exemptions);
    assert_eq!(settings.rules["pullPolicyNotAlways"].mutate, Some(true));
    assert_eq!(
        settings.rules["hostIPCSet"].action,
        Some(portcullis::admission::Action::Off),
        "a Polaris check the configuration leaves out does not run"
    );
}

#[test]
fn the_mutations_list_switches_polaris_fixes_on() {
    let mut settings = AdmissionSettings::default();
    let c = PolarisConfig::parse(
        "t",
        "checks: {hostIPCSet: danger, privilegeEscalationAllowed: danger}\nmutations: [hostIPCSet, privilegeEscalationAllowed]\n",
    )
    .unwrap();
    let custom = c.apply(&mut settings).unwrap();
    assert!(custom.is_empty());
    let engine = portcullis::admission::Engine::new(settings).unwrap();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "apps"},
        "spec": {"hostIPC": true, "containers": [{"name": "c", "image": "nginx:1.27"}]}});
    let ctx = portcullis::admission::Context::new(
        "",
        "Pod",
        portcullis::admission::Operation::Create,
        "apps",
        "",
        &pod,
        engine.settings(),
    );
    let ops: Vec<Value> = engine.mutate(&ctx).iter().map(|o| o.to_json()).collect();
    // The resource defaults (Polaris checks not in the list) stay off; portcullis' own
    // qosClassAnnotation keeps its default.
    assert_eq!(
        ops,
        [
            serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {"portcullis.io/qos-class": "BestEffort"}}),
            serde_json::json!({"op": "remove", "path": "/spec/hostIPC"}),
            serde_json::json!({"op": "add", "path": "/spec/containers/0/securityContext", "value": {"allowPrivilegeEscalation": false}}),
        ]
    );
}

#[test]
fn container_exemption_spares_only_that_container() {
    let text = std::fs::read_to_string(dir().join("objects.yaml")).unwrap();
    let objects = parse_manifests("objects.yaml", &text).unwrap();
    let view = ClusterView::new(&objects);
    let registry_paths = |config: &Path| -> BTreeSet<String> {
        let (engine, _) = polaris::engine(AdmissionSettings::default(), Some(config)).unwrap();
        check_objects(&engine, "objects.yaml", &objects, None, Some(&view))
            .iter()
            .filter(|r| r.finding.rule == "imageRegistry")
            .map(|r| r.finding.path.clone())
            .collect()
    };
    let with = registry_paths(&dir().join("config.yaml"));
    assert_eq!(
        with,
        BTreeSet::from(["/spec/template/spec/containers/0".to_string()])
    );
    // The same configuration without the exemption reports the sidecar too.
    let config = std::fs::read_to_string(dir().join("config.yaml")).unwrap();
    let without = config.replace(
        "  - containerNames: [istio-proxy]\n    rules: [imageRegistry]\n",
        "",
    );
    assert_ne!(config, without, "the fixture's exemption was not found");
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("config.yaml");
    std::fs::write(&path, without).unwrap();
    let all = registry_paths(&path);
    assert!(all.contains("/spec/template/spec/containers/1"), "{all:?}");
}

/// The ops `engine` adds to `obj`, and the ops it adds again to the patched object.
fn patch_twice(engine: &portcullis::admission::Engine, obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let run = |o: &Value| -> Vec<portcullis::admission::patch::PatchOp> {
        let ctx = portcullis::admission::Context::new(
            "apps",
            "Deployment",
            portcullis::admission::Operation::Create,
            "apps",
            "",
            o,
            engine.settings(),
        );
        engine.mutate(&ctx)
    };
    let ops = run(obj);
    let rendered = portcullis::admission::patch::render(&ops);
    let patch: json_patch::Patch = serde_json::from_slice(&rendered).unwrap();
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let again = run(&patched);
    (
        ops.iter().map(|o| o.to_json()).collect(),
        again.iter().map(|o| o.to_json()).collect(),
    )
}

#[test]
fn probe_cpu_limit_and_priority_mutations_only_when_listed() {
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}}]}}}});
    let checks = "checks: {livenessProbeMissing: warning, readinessProbeMissing: warning, cpuLimitsMissing: warning, priorityClassNotSet: warning}\n";
    let engine_with = |mutations: &str| {
        let mut settings = AdmissionSettings::default();
        // portcullis' own qosClassAnnotation would add its annotation to every patch.
        settings
            .rules
            .entry("qosClassAnnotation".into())
            .or_default()
            .mutate = Some(false);
        let c = PolarisConfig::parse("t", &format!("{checks}{mutations}")).unwrap();
        assert!(c.unsupported().is_empty(), "{:?}", c.unsupported());
        c.apply(&mut settings).unwrap();
        portcullis::admission::Engine::new(settings).unwrap()
    };

    // Named in the checks but not in mutations: reported, never patched.
    let (ops, _) = patch_twice(&engine_with(""), &deployment);
    assert!(ops.is_empty(), "{ops:?}");

    let engine = engine_with(
        "mutations: [livenessProbeMissing, readinessProbeMissing, cpuLimitsMissing, priorityClassNotSet]\n",
    );
    let (ops, again) = patch_twice(&engine, &deployment);
    let probe = serde_json::json!({"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5});
    let c = "/spec/template/spec/containers/0";
    let want: BTreeSet<String> = [
        serde_json::json!({"op": "add", "path": format!("{c}/resources/limits/cpu"), "value": "100m"}),
        serde_json::json!({"op": "add", "path": format!("{c}/readinessProbe"), "value": probe}),
        serde_json::json!({"op": "add", "path": format!("{c}/livenessProbe"), "value": probe}),
        serde_json::json!({"op": "add", "path": "/spec/template/spec/priorityClassName", "value": "high-priority"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let got: BTreeSet<String> = ops.iter().map(Value::to_string).collect();
    assert_eq!(got, want);
    assert_eq!(ops.len(), 4, "{ops:?}");
    assert!(again.is_empty(), "second pass: {again:?}");

    // One of them alone changes only its own field.
    let (ops, again) = patch_twice(
        &engine_with("mutations: [priorityClassNotSet]\n"),
        &deployment,
    );
    assert_eq!(
        ops,
        [
            serde_json::json!({"op": "add", "path": "/spec/template/spec/priorityClassName", "value": "high-priority"})
        ]
    );
    assert!(again.is_empty(), "{again:?}");
}

/// `(object, rule, path)` of every custom-check finding of the additional-schema fixture,
/// judged against `view`.
fn additional_findings(view: Option<&ClusterView>) -> BTreeSet<(String, String, String)> {
    let (engine, notes) = polaris::engine(
        AdmissionSettings::default(),
        Some(&dir().join("additional-config.yaml")),
    )
    .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let text = std::fs::read_to_string(dir().join("additional-objects.yaml")).unwrap();
    let objects = parse_manifests("additional-objects.yaml", &text).unwrap();
    let custom = [
        "pdbNamed",
        "serviceAccountNoAutomount",
        "namespaceMonitored",
    ];
    check_objects(&engine, "additional-objects.yaml", &objects, None, view)
        .iter()
        .filter(|r| custom.contains(&r.finding.rule))
        .map(|r| {
            (
                r.object.clone(),
                r.finding.rule.to_string(),
                r.finding.path.clone(),
            )
        })
        .collect()
}

#[test]
fn additional_schemas_need_a_passing_object_in_the_namespace() {
    let text = std::fs::read_to_string(dir().join("additional-objects.yaml")).unwrap();
    let objects = parse_manifests("additional-objects.yaml", &text).unwrap();
    let view = ClusterView::new(&objects);
    let got = additional_findings(Some(&view));
    let want: BTreeSet<(String, String, String)> = [
        // No AlertmanagerConfig in it; "apps" has one and passes.
        ("Namespace default/bare", "namespaceMonitored", ""),
        // Its PDB is in another namespace; its ServiceAccount automounts.
        ("Deployment apps/api", "pdbNamed", ""),
        (
            "Deployment apps/api",
            "serviceAccountNoAutomount",
            "/spec/template/spec",
        ),
        // Its PDB selects other pods; its ServiceAccount is not there.
        ("Deployment apps/worker", "pdbNamed", ""),
        (
            "Deployment apps/worker",
            "serviceAccountNoAutomount",
            "/spec/template/spec",
        ),
    ]
    .into_iter()
    .map(|(o, r, p)| (o.to_string(), r.to_string(), p.to_string()))
    .collect();
    assert_eq!(got, want);

    let (engine, _) = polaris::engine(
        AdmissionSettings::default(),
        Some(&dir().join("additional-config.yaml")),
    )
    .unwrap();
    let reports = check_objects(&engine, "x", &objects, None, Some(&view));
    let api = reports
        .iter()
        .find(|r| r.finding.rule == "pdbNamed" && r.object.ends_with("/api"))
        .map(|r| r.finding.message.clone());
    assert_eq!(
        api.as_deref(),
        Some(
            "Needs a PodDisruptionBudget named after the Deployment selecting its pods (no policy/PodDisruptionBudget in namespace apps passes the check's additional schema)"
        )
    );
    let severity = reports
        .iter()
        .find(|r| r.finding.rule == "serviceAccountNoAutomount")
        .map(|r| r.finding.action.as_str());
    assert_eq!(severity, Some("deny"));
}

#[test]
fn additional_schemas_judge_nothing_without_a_complete_view() {
    // Without a view, and with one that cannot prove absence (the webhook's watched
    // view), only the main schemas judge: every object here passes those.
    assert!(additional_findings(None).is_empty());
    let text = std::fs::read_to_string(dir().join("additional-objects.yaml")).unwrap();
    let mut watched = ClusterView::default();
    for o in parse_manifests("additional-objects.yaml", &text).unwrap() {
        watched.insert(o);
    }
    assert!(additional_findings(Some(&watched)).is_empty());
}
