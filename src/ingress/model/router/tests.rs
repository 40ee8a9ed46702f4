//! Table-driven routing tests: INGRESS.md 1.2 (paths) and 1.4 (hosts), precedence, regex
//! and matchit's backtracking edge cases.
use std::sync::Arc;

use super::*;
use crate::ingress::model::policy::Policy;
use crate::ingress::model::snapshot::{Backend, EndpointCell, UpstreamProtocol};

use PathType::{Exact, ImplementationSpecific as Impl, Prefix};

fn route(host: Option<&str>, path: &str, path_type: PathType, tag: &str) -> Route {
    Route {
        ingress: Arc::from(tag),
        host: host.map(Arc::from),
        path: Arc::from(path),
        path_type,
        backend: Arc::new(Backend {
            name: Arc::from(tag),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(vec![], vec![]),
            external: None,
        }),
        policy: Arc::new(Policy::default()),
        metrics: Default::default(),
    }
}

/// Rules are (host, path, type); each route is tagged "path type" for assertions.
fn router(rules: &[(Option<&str>, &str, PathType)]) -> Router {
    let mut b = RouterBuilder::new();
    for (host, path, t) in rules {
        let tag = format!("{} {path} {t:?}", host.unwrap_or("*"));
        b.add(route(*host, path, *t, &tag), None).unwrap();
    }
    let (r, problems) = b.build();
    assert!(problems.is_empty(), "{problems:?}");
    r
}

fn hit(r: &Router, host: &str, path: &str) -> Option<String> {
    match r.lookup(host, path) {
        Lookup::Matched { route, .. } => Some(route.ingress.to_string()),
        Lookup::NotFound => None,
    }
}

#[test]
fn ingress_md_1_2_matching_table() {
    // (row, rules, request, expected "path type" or None)
    type Row<'a> = (
        u32,
        &'a [(&'a str, PathType)],
        &'a str,
        Option<(&'a str, PathType)>,
    );
    let table: &[Row] = &[
        (1, &[("/", Prefix)], "/", Some(("/", Prefix))),
        (
            1,
            &[("/", Prefix)],
            "/any/thing/at/all",
            Some(("/", Prefix)),
        ),
        (1, &[("/", Prefix)], "//x", Some(("/", Prefix))),
        (2, &[("/foo", Exact)], "/foo", Some(("/foo", Exact))),
        (3, &[("/foo", Exact)], "/bar", None),
        (4, &[("/foo", Exact)], "/foo/", None),
        (5, &[("/foo/", Exact)], "/foo", None),
        (6, &[("/foo", Prefix)], "/foo", Some(("/foo", Prefix))),
        (6, &[("/foo", Prefix)], "/foo/", Some(("/foo", Prefix))),
        (7, &[("/foo/", Prefix)], "/foo", Some(("/foo/", Prefix))),
        (7, &[("/foo/", Prefix)], "/foo/", Some(("/foo/", Prefix))),
        (8, &[("/aaa/bb", Prefix)], "/aaa/bbb", None),
        (
            9,
            &[("/aaa/bbb", Prefix)],
            "/aaa/bbb",
            Some(("/aaa/bbb", Prefix)),
        ),
        (
            10,
            &[("/aaa/bbb/", Prefix)],
            "/aaa/bbb",
            Some(("/aaa/bbb/", Prefix)),
        ),
        (
            11,
            &[("/aaa/bbb", Prefix)],
            "/aaa/bbb/",
            Some(("/aaa/bbb", Prefix)),
        ),
        (
            12,
            &[("/aaa/bbb", Prefix)],
            "/aaa/bbb/ccc",
            Some(("/aaa/bbb", Prefix)),
        ),
        (13, &[("/aaa/bbb", Prefix)], "/aaa/bbbxyz", None),
        (
            14,
            &[("/", Prefix), ("/aaa", Prefix)],
            "/aaa/ccc",
            Some(("/aaa", Prefix)),
        ),
        (
            15,
            &[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)],
            "/aaa/bbb",
            Some(("/aaa/bbb", Prefix)),
        ),
        (
            16,
            &[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)],
            "/ccc",
            Some(("/", Prefix)),
        ),
        (17, &[("/aaa", Prefix)], "/ccc", None),
        (
            18,
            &[("/foo", Prefix), ("/foo", Exact)],
            "/foo",
            Some(("/foo", Exact)),
        ),
        // Same rules declared in the other order.
        (
            18,
            &[("/foo", Exact), ("/foo", Prefix)],
            "/foo",
            Some(("/foo", Exact)),
        ),
        (
            18,
            &[("/foo", Exact), ("/foo", Prefix)],
            "/foo/",
            Some(("/foo", Prefix)),
        ),
        // Extra vectors from the API type comments.
        (19, &[("/foo/bar", Prefix)], "/foo/barbaz", None),
        (
            20,
            &[("/foo", Prefix), ("/foo/", Prefix)],
            "/foo",
            Some(("/foo/", Prefix)),
        ),
        (
            20,
            &[("/foo/", Prefix), ("/foo", Prefix)],
            "/foo",
            Some(("/foo/", Prefix)),
        ),
        // 1.3: the `/foo/`-Prefix versus `/foo`-Exact edge case goes to Exact.
        (
            21,
            &[("/foo/", Prefix), ("/foo", Exact)],
            "/foo",
            Some(("/foo", Exact)),
        ),
        // Case sensitive.
        (22, &[("/foo", Prefix)], "/FOO", None),
        (22, &[("/foo", Exact)], "/Foo", None),
        // ImplementationSpecific without regex is Prefix.
        (23, &[("/app", Impl)], "/app/x", Some(("/app", Impl))),
        (23, &[("/app", Impl)], "/apple", None),
    ];
    for (row, rules, request, want) in table {
        let rules: Vec<_> = rules.iter().map(|(p, t)| (None, *p, *t)).collect();
        let r = router(&rules);
        let want = want.map(|(p, t)| format!("* {p} {t:?}"));
        assert_eq!(hit(&r, "any.host", request), want, "row {row}: {request}");
    }
}

#[test]
fn longest_prefix_survives_matchit_backtracking() {
    // CRATES.md 1.6: `/foo/bar/` went to Prefix /foo when only `/foo/bar/{*rest}` existed.
    let r = router(&[
        (None, "/", Prefix),
        (None, "/foo", Prefix),
        (None, "/foo/bar", Prefix),
        (None, "/foo/bar/baz/qux", Prefix),
        (None, "/foo/bar", Exact),
    ]);
    let cases = [
        ("/foo/bar/", "/foo/bar Prefix"),
        ("/foo/bar", "/foo/bar Exact"),
        ("/foo/bar/baz", "/foo/bar Prefix"),
        ("/foo/bar/baz/qu", "/foo/bar Prefix"),
        ("/foo/bar/baz/qux/1", "/foo/bar/baz/qux Prefix"),
        ("/foo/barbaz", "/foo Prefix"),
        ("/foobar", "/ Prefix"),
        ("/foo//bar", "/foo Prefix"),
        ("/", "/ Prefix"),
        ("", "/ Prefix"),
    ];
    for (req, want) in cases {
        if req.is_empty() {
            // An empty path is not a valid origin-form target; it must not panic.
            let _ = hit(&r, "h", req);
            continue;
        }
        assert_eq!(
            hit(&r, "h", req).as_deref(),
            Some(&*format!("* {want}")),
            "{req}"
        );
    }
}

#[test]
fn braces_and_stars_are_literal() {
    let r = router(&[
        (None, "/a{b}", Prefix),
        (None, "/{x}", Exact),
        (None, "/c*", Prefix),
        (None, "/}", Exact),
    ]);
    assert_eq!(hit(&r, "h", "/a{b}/z").as_deref(), Some("* /a{b} Prefix"));
    assert_eq!(hit(&r, "h", "/{x}").as_deref(), Some("* /{x} Exact"));
    assert_eq!(hit(&r, "h", "/y"), None);
    assert_eq!(hit(&r, "h", "/c*").as_deref(), Some("* /c* Prefix"));
    assert_eq!(hit(&r, "h", "/cd"), None);
    assert_eq!(hit(&r, "h", "/}").as_deref(), Some("* /} Exact"));
}

#[test]
fn ingress_md_1_4_host_table() {
    let table: &[(&str, &str, bool)] = &[
        ("foo.bar.com", "foo.bar.com", true),
        ("foo.bar.com", "subdomain.bar.com", false),
        ("*.foo.com", "bar.foo.com", true),
        ("*.foo.com", "baz.bar.foo.com", false),
        ("*.foo.com", "foo.com", false),
        // The caller lower-cases and strips the port; a trailing dot is ignored here.
        ("foo.bar.com", "foo.bar.com.", true),
        ("*.foo.com", ".foo.com", false),
    ];
    for (rule, request, want) in table {
        let r = router(&[(Some(rule), "/", Prefix)]);
        assert_eq!(
            hit(&r, request, "/x").is_some(),
            *want,
            "{rule} vs {request}"
        );
    }
}

#[test]
fn host_precedence_and_no_fall_through() {
    let r = router(&[
        (Some("a.foo.com"), "/exact-only", Prefix),
        (Some("*.foo.com"), "/", Prefix),
        (None, "/", Prefix),
    ]);
    assert_eq!(
        hit(&r, "a.foo.com", "/exact-only/x").as_deref(),
        Some("a.foo.com /exact-only Prefix")
    );
    // Matched host, unmatched path: no fall-through to the wildcard or hostless rules.
    assert_eq!(hit(&r, "a.foo.com", "/other"), None);
    assert_eq!(
        hit(&r, "b.foo.com", "/other").as_deref(),
        Some("*.foo.com / Prefix")
    );
    assert_eq!(
        hit(&r, "b.bar.com", "/other").as_deref(),
        Some("* / Prefix")
    );
    assert_eq!(hit(&r, "", "/").as_deref(), Some("* / Prefix"));
}

#[test]
fn fallbacks_then_catch_all_then_not_found() {
    let mut b = RouterBuilder::new();
    b.add(route(Some("a.com"), "/api", Prefix, "a-api"), None)
        .unwrap();
    b.add(route(Some("b.com"), "/api", Prefix, "b-api"), None)
        .unwrap();
    b.add_host_fallback(route(Some("a.com"), "/", Prefix, "a-default"))
        .unwrap();
    assert_eq!(
        b.add_host_fallback(route(Some("a.com"), "/", Prefix, "a-default-2")),
        Err(RouteError::Taken)
    );
    let (r, _) = b.build();
    assert_eq!(hit(&r, "a.com", "/x").as_deref(), Some("a-default"));
    assert_eq!(hit(&r, "b.com", "/x"), None);
    assert_eq!(hit(&r, "c.com", "/x"), None);

    let mut b = RouterBuilder::new();
    b.add(route(Some("b.com"), "/api", Prefix, "b-api"), None)
        .unwrap();
    b.set_catch_all(route(None, "/", Prefix, "catch-all"))
        .unwrap();
    assert!(b.set_catch_all(route(None, "/", Prefix, "second")).is_err());
    let (r, _) = b.build();
    assert_eq!(hit(&r, "b.com", "/x").as_deref(), Some("catch-all"));
    assert_eq!(hit(&r, "c.com", "/api").as_deref(), Some("catch-all"));
    assert_eq!(hit(&r, "b.com", "/api").as_deref(), Some("b-api"));
    let roles: Vec<RouteRole> = r.entries().map(|(role, _)| role).collect();
    assert_eq!(roles, [RouteRole::Rule, RouteRole::CatchAll]);
}

#[test]
fn duplicates_are_refused_first_stays() {
    let mut b = RouterBuilder::new();
    b.add(route(None, "/a", Prefix, "old"), None).unwrap();
    assert_eq!(
        b.add(route(None, "/a", Prefix, "new"), None),
        Err(RouteError::Taken)
    );
    assert_eq!(
        b.add(route(None, "/a", Impl, "impl"), None),
        Err(RouteError::Taken)
    );
    b.add(route(None, "/a", Exact, "exact"), None).unwrap();
    assert_eq!(
        b.add(route(None, "/a", Exact, "exact2"), None),
        Err(RouteError::Taken)
    );
    // Other hosts are other tables.
    b.add(route(Some("x.com"), "/a", Prefix, "x"), None)
        .unwrap();
    let (r, _) = b.build();
    assert_eq!(hit(&r, "h", "/a/b").as_deref(), Some("old"));
    assert_eq!(r.len(), 3);
}

fn regex_route(b: &mut RouterBuilder, path: &str, tag: &str) {
    let re = compile_path_regex(path).unwrap();
    b.add(route(None, path, Impl, tag), Some(re)).unwrap();
}

#[test]
fn regex_paths_follow_nginx() {
    let mut b = RouterBuilder::new();
    b.add(route(None, "/", Prefix, "root"), None).unwrap();
    b.add(route(None, "/something/exact", Exact, "exact"), None)
        .unwrap();
    regex_route(&mut b, "/something(/|$)(.*)", "rewrite");
    regex_route(&mut b, "/s.*", "short");
    let (r, _) = b.build();
    let get = |path: &str| match r.lookup("h", path) {
        Lookup::Matched { route, captures } => (route.ingress.to_string(), captures),
        Lookup::NotFound => (String::new(), vec![]),
    };
    // Longest pattern first; captures returned for rewrite-target.
    assert_eq!(
        get("/something/new"),
        ("rewrite".into(), vec!["/".into(), "new".into()])
    );
    assert_eq!(
        get("/something"),
        ("rewrite".into(), vec!["".into(), "".into()])
    );
    // Case-insensitive, anchored at the start only.
    assert_eq!(get("/SOMETHING/x").0, "rewrite");
    assert_eq!(get("/stuff").0, "short");
    assert_eq!(get("/x/something").0, "root");
    // Exact beats regex; regex beats prefix.
    assert_eq!(get("/something/exact"), ("exact".into(), vec![]));
    assert_eq!(get("/somethingelse").0, "short");
}

#[test]
fn invalid_or_huge_regexes_are_refused() {
    assert!(compile_path_regex("/a(").is_err());
    assert!(
        compile_path_regex("/(?<=x)").is_err(),
        "no look-behind in the regex crate"
    );
    assert!(compile_path_regex("/a{1000}{1000}").is_err(), "size limit");
}
