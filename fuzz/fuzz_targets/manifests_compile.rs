//! Manifest file bytes through the files source's parser (YAML multi-document and Lists, or
//! JSON, chosen by the first byte), into a store, through compile, twice (the second time
//! with the first snapshot as `previous`, as a reload does) and once more without. Compile
//! is pure, so all three give the same routes. Every rule path looked up again with its own host is answered by a
//! rule that matches it (an Exact path by that very rule), and so is a path below a
//! Prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::parse_manifest_file;
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::ingress::model::router::RouteRole;
use portcullis::ingress::model::snapshot::{Lookup, PathType, Snapshot};
use portcullis::source::ObjectStore;

#[path = "common.rs"]
mod common;

/// What a snapshot routes, comparable across compiles.
fn routes(s: &Snapshot) -> Vec<String> {
    s.router
        .entries()
        .map(|(role, r)| {
            format!(
                "{role:?} {} {:?}{} {:?} -> {}",
                r.ingress, r.host, r.path, r.path_type, r.backend.name
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let name = if selector & 1 == 1 {
        "fuzz.json"
    } else {
        "fuzz.yaml"
    };
    let Ok((objects, warnings)) = parse_manifest_file(name, content) else {
        return;
    };
    let mut store = ObjectStore::new();
    let problems = warnings
        .into_iter()
        .map(
            |(object, message)| portcullis::ingress::model::problem::Problem {
                file: Some(name.to_string()),
                object,
                message,
            },
        )
        .collect();
    store.replace_origin(name, objects, problems);
    let opts = CompileOptions {
        watch_without_class: selector & 2 == 2,
        ..CompileOptions::default()
    };
    let first = compile(&store, &opts, None);
    let again = compile(&store, &opts, None);
    assert_eq!(
        routes(&first),
        routes(&again),
        "compile is not deterministic"
    );
    assert_eq!(
        first.problems, again.problems,
        "compile is not deterministic"
    );
    let second = compile(&store, &opts, Some(&first));
    assert_eq!(
        routes(&first),
        routes(&second),
        "recompile changed the routes"
    );
    assert_eq!(
        first.served, second.served,
        "recompile changed what is served"
    );

    for (role, route) in first.router.entries() {
        let host = route.host.as_deref().unwrap_or("");
        if role != RouteRole::Rule || host.starts_with("*.") || host.is_empty() {
            continue;
        }
        let regex = route.policy.use_regex && route.path_type == PathType::ImplementationSpecific;
        if regex {
            continue;
        }
        // A rule path matches itself, so some rule (this one or a more specific one)
        // answers it, and deeper paths under a Prefix too.
        let answer = common::check_lookup(&first, host, &route.path);
        assert_eq!(
            answer,
            Some(RouteRole::Rule),
            "{:?} {host}{} not answered by a rule",
            route.path_type,
            route.path
        );
        if route.path_type == PathType::Exact {
            let Lookup::Matched { route: found, .. } = first.router.lookup(host, &route.path)
            else {
                unreachable!("checked above");
            };
            assert!(
                std::ptr::eq(found, route),
                "Exact {host}{} answered by {}{}",
                route.path,
                found.host.as_deref().unwrap_or(""),
                found.path
            );
        } else {
            let deeper = format!("{}/x", route.path.trim_end_matches('/'));
            assert_eq!(
                common::check_lookup(&first, host, &deeper),
                Some(RouteRole::Rule),
                "Prefix {host}{} does not cover {deeper}",
                route.path
            );
        }
    }
});
