//! The image build (`Dockerfile`, `.dockerignore`) against the scripts its build stage runs.
//! No container engine runs here, so this holds the part that can break without one: the
//! profile-guided build trains with `scripts/load-test.sh`, and every file those scripts
//! read must be in the build context `.dockerignore` lets through and in a `COPY`.

use std::collections::BTreeSet;
use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The top-level entries `.dockerignore` lets through: it ignores `*` and re-admits names.
fn admitted() -> BTreeSet<String> {
    let text = read(".dockerignore");
    assert!(
        text.lines().any(|l| l.trim() == "*"),
        ".dockerignore no longer starts from `*`"
    );
    text.lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|name| name.trim_end_matches('/').to_string())
        .collect()
}

/// The sources of the build stage's `COPY` lines (not `COPY --from`).
fn copied() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in read("Dockerfile").lines() {
        let Some(rest) = line.trim().strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let Some((_, sources)) = words.split_last() {
            out.extend(sources.iter().map(|s| s.trim_end_matches('/').to_string()));
        }
    }
    out
}

/// Repository paths a script names: `examples/…`, `scripts/…` and the like.
fn paths_named(script: &str) -> BTreeSet<String> {
    let text = read(script);
    let mut out = BTreeSet::new();
    for top in [
        "examples/",
        "scripts/",
        "src/",
        "benches/",
        "tests/",
        "certs/",
        "manifests/",
    ] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(top) {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./*".contains(c)))
                .unwrap_or(tail.len());
            // `target/pgo/...` or `$work/manifests/...` are not repository paths.
            if !matches!(before, Some(c) if c == '/' || c.is_ascii_alphanumeric()) {
                out.insert(tail[..end].to_string());
            }
            rest = &tail[top.len()..];
        }
    }
    out
}

#[test]
fn every_copied_source_is_admitted_by_dockerignore() {
    let admitted = admitted();
    let copied = copied();
    for needed in ["Cargo.toml", "Cargo.lock", "src", "scripts", "examples"] {
        assert!(
            copied.contains(needed),
            "the build stage does not COPY {needed}"
        );
    }
    for source in &copied {
        assert!(
            admitted.contains(source),
            "COPY {source} but .dockerignore leaves it out"
        );
    }
}

#[test]
fn the_profile_guided_build_finds_every_file_it_reads_in_the_image_context() {
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("scripts/build-pgo.sh"),
        "the build stage no longer runs scripts/build-pgo.sh"
    );
    let copied = copied();
    let mut checked = 0;
    for script in ["scripts/build-pgo.sh", "scripts/load-test.sh"] {
        for path in paths_named(script) {
            let top = path.split('/').next().unwrap_or_default();
            assert!(
                copied.contains(top),
                "{script} reads {path}, which the image build does not copy"
            );
            let on_disk = path.split('*').next().unwrap_or_default();
            let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(on_disk);
            assert!(full.exists(), "{script} reads {path}, which does not exist");
            checked += 1;
        }
    }
    // The two scripts name at least examples/manifests, the review body and load-test.sh.
    assert!(
        checked >= 3,
        "found only {checked} repository paths in the scripts"
    );
}
