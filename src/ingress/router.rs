//! Host and path routing over the snapshot (owned by the routing work; placeholder so
//! the snapshot contract compiles).
use super::snapshot::Lookup;

/// Hosts → path matchers → routes.
#[derive(Debug, Default)]
pub struct Router {}

impl Router {
    /// Finds the route for a request host (lower case, no port) and path (no query).
    pub fn lookup(&self, _host: &str, _path: &str) -> Lookup<'_> {
        Lookup::NotFound
    }
}
