//! Router lookups against one fixed snapshot (exact, wildcard and hostless hosts; Exact,
//! Prefix and regex paths; a host fallback and a catch-all), compiled once. Input: the
//! host, a newline, the path. Whatever the input, a lookup answers (there is a catch-all),
//! and a rule that answers really matches: its host, and its path by its path type.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::ingress::model::snapshot::Snapshot;
use portcullis::ingress::request::forwarded::split_host;
use portcullis::ingress::request::normalize::normalize_path;

#[path = "common.rs"]
mod common;

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(common::site);

fn check(snapshot: &Snapshot, host: &str, path: &str) {
    if common::check_lookup(snapshot, host, path).is_none() {
        panic!("{host:?} {path:?}: no answer despite the catch-all");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (host, path) = text.split_once('\n').unwrap_or(("shop.example.com", &text));
    let snapshot = &*SNAPSHOT;
    check(snapshot, host, path);
    // What the gateway does before the lookup: port stripped, lower case, path normalised.
    let (name, _) = split_host(host);
    if let Ok(normal) = normalize_path(path) {
        check(snapshot, &name, &normal);
    }
});
