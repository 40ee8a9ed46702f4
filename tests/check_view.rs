//! `portcullis check FILE...`: every document of every file forms the cluster view the
//! cross-object checks read, so a PDB in one file protects a Deployment in another, and a
//! binding is judged by a Role given in a third. Absent objects are named in the message.
use std::process::Command;

use serde_json::Value;

fn check(files: &[&str], rules: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["check".to_string(), "--output=json".to_string()];
    for r in rules {
        args.push(format!("--rule={r}"));
    }
    for (i, text) in files.iter().enumerate() {
        let p = dir.path().join(format!("f{i}.yaml"));
        std::fs::write(&p, text).unwrap();
        args.push(p.display().to_string());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(&args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:1.27}]}\n";
const PDB: &str = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\nspec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n";
const BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: devs, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: debug}\nsubjects: []\n";
const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: debug, namespace: shop}\nrules: [{apiGroups: [\"\"], resources: [pods/exec], verbs: [create]}]\n";

#[test]
fn documents_of_all_files_form_the_view() {
    let pdb = ["missingPodDisruptionBudget"];
    let alone = check(&[DEPLOYMENT], &pdb);
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert!(
        alone[0]["message"]
            .as_str()
            .unwrap()
            .contains("no PodDisruptionBudget in namespace shop among the objects given"),
        "{alone:?}"
    );
    assert!(check(&[DEPLOYMENT, PDB], &pdb).is_empty());
    assert!(check(&[&format!("{DEPLOYMENT}---\n{PDB}")], &pdb).is_empty());

    let exec = ["rolebindingRolePodExecAttach"];
    let missing = check(&[BINDING], &exec);
    assert!(
        missing[0]["message"]
            .as_str()
            .unwrap()
            .contains("references Role debug, which is not among the objects given"),
        "{missing:?}"
    );
    let judged = check(&[BINDING, ROLE], &exec);
    assert_eq!(judged.len(), 1, "{judged:?}");
    assert!(
        judged[0]["message"]
            .as_str()
            .unwrap()
            .contains("binds Role debug, whose rule 0 lets its subjects exec"),
        "{judged:?}"
    );
    assert_eq!(judged[0]["action"], "deny");
}
