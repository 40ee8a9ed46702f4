//! Manifest file bytes through the files source's parser (YAML multi-document and Lists, or
//! JSON, chosen by the first byte), into a store, through compile, twice (the second time
//! with the first snapshot as `previous`, as a reload does). Compile is pure, so both give
//! the same routes; and every Exact rule path must be found again by a lookup of its own
//! host and path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fuzzing::parse_manifest_file;
use portcullis::ingress::compile::{CompileOptions, compile};
use portcullis::ingress::router::RouteRole;
use portcullis::ingress::snapshot::{Lookup, PathType};
use portcullis::source::ObjectStore;

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
        if role != RouteRole::Rule || route.path_type != PathType::Exact {
            continue;
        }
        let host = route.host.as_deref().unwrap_or("");
        if host.starts_with("*.") || host.is_empty() {
            continue;
        }
        match first.router.lookup(host, &route.path) {
            Lookup::Matched { route: found, .. } => assert!(
                std::ptr::eq(found, route),
                "Exact {host}{} answered by {}{}",
                route.path,
                found.host.as_deref().unwrap_or(""),
                found.path
            ),
            Lookup::NotFound => panic!("Exact {host}{} not found", route.path),
        }
    }
});
