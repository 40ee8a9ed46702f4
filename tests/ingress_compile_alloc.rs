//! Heap allocations of router lookups, counted by a global allocator. Our side allocates
//! nothing on the non-regex path; matchit 0.9.2 allocates its backtrack stack (one small
//! Vec) when the walk passes a node with both static and catch-all children, which nearly
//! every real table has (`/` plus anything). The bound below is therefore 1, not 0.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::model::router::RouterBuilder;
use portcullis::ingress::model::snapshot::{
    Backend, EndpointCell, Lookup, PathType, Route, UpstreamProtocol,
};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn route(host: &str, path: &str, t: PathType) -> Route {
    Route {
        ingress: Arc::from("x"),
        host: Some(Arc::from(host)),
        path: Arc::from(path),
        path_type: t,
        backend: Arc::new(Backend {
            name: Arc::from("b"),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(vec![], vec![]),
            external: None,
        }),
        policy: Arc::new(Policy::default()),
        metrics: Default::default(),
    }
}

#[test]
fn non_regex_lookups_allocate_at_most_matchits_backtrack_stack() {
    let mut b = RouterBuilder::new();
    b.add(route("a.com", "/", PathType::Prefix), None).unwrap();
    b.add(route("a.com", "/foo", PathType::Prefix), None)
        .unwrap();
    b.add(route("a.com", "/foo/bar", PathType::Prefix), None)
        .unwrap();
    b.add(route("a.com", "/foo/bar", PathType::Exact), None)
        .unwrap();
    b.add(route("*.b.com", "/only", PathType::Exact), None)
        .unwrap();
    let (r, _) = b.build();
    let cases = [
        ("a.com", "/foo/bar", true),
        ("a.com", "/foo/bar/x", true),
        ("a.com", "/foo/barbaz", true),
        ("a.com", "/x", true),
        ("x.b.com", "/only", true),
        ("x.b.com", "/other", false),
        ("nowhere.com", "/", false),
    ];
    for (host, path, found) in cases {
        let before = ALLOCS.load(Ordering::Relaxed);
        let m = r.lookup(host, path);
        let n = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(matches!(m, Lookup::Matched { .. }), found, "{host}{path}");
        assert!(n <= 1, "{host}{path}: {n} allocations");
    }
    // A table without a catch-all next to static children never allocates.
    let before = ALLOCS.load(Ordering::Relaxed);
    let _ = r.lookup("x.b.com", "/only");
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0);
}
