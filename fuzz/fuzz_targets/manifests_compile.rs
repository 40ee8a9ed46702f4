//! Manifest file bytes through the files source's parser (YAML multi-document and Lists, or
//! JSON, chosen by the first byte), into a store, through compile, twice (the second time
//! with the first snapshot as `previous`, as a reload does). Compile is pure, so both give
//! the same routes. Every rule path looked up again with its own host is answered by a
//! rule that matches it (an Exact path by that very rule), and so is a path below a
//! Prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::parse_manifest_file;
use portcullis::ingress::compile::{CompileOptions, compile};
use portcullis::ingress::router::RouteRole;
use portcullis::ingress::snapshot::{Lookup, PathType};
use portcullis::source::ObjectStore;

#[path = "common.rs"]
mod common;

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
        .map(|(object, message)| portcullis::ingress::problem::Problem {
            file: Some(name.to_string()),
            object,
            message,
        })
        .collect();
    store.replace_origin(name, objects, problems);
    let opts = CompileOptions {
        watch_without_class: selector & 2 == 2,
        ..CompileOptions::default()
    };
    let first = compile(&store, &opts, None);
    let second = compile(&store, &opts, Some(&first));
    assert_eq!(
        first.router.len(),
        second.router.len(),
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
