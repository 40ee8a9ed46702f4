//! Host and path routing over the snapshot.
//!
//! Hosts: one virtual host per exact host, one per wildcard parent (`*.foo.com` is stored
//! under `foo.com` and matches exactly one extra label), and one hostless. The request host
//! picks exactly one of them, exact > wildcard > hostless, and the path is then matched in
//! that virtual host only: like ingress-nginx (whose `server` is chosen by name before any
//! `location`), an unmatched path does NOT fall through to a less specific host. It goes to
//! that host's fallback (the `defaultBackend` of an Ingress with rules for the host), then
//! to the catch-all (`defaultBackend` of a rule-less Ingress), else 404.
//!
//! Paths within a virtual host, in this order:
//! 1. an Exact rule equal to the path (nginx `location =` also stops the search at once);
//! 2. regex rules (ImplementationSpecific paths of Ingresses with `use-regex` or a
//!    capturing `rewrite-target`): case-insensitive, anchored at the start, tried in
//!    descending pattern length (oldest first on ties), first match wins — ingress-nginx's
//!    `location ~*` order; as in nginx, a matching regex beats any prefix;
//!    Unlike ingress-nginx, `use-regex` never turns Exact or Prefix paths, nor the paths of
//!    other Ingresses on the same host, into regexes: only the annotated Ingress's
//!    ImplementationSpecific paths, so one Ingress cannot change how another one matches.
//! 3. the longest Prefix rule (ImplementationSpecific without regex is Prefix), by
//!    elements, then by raw length (`/foo/` beats `/foo`).
//!
//! Exact and Prefix go through one matchit tree: Prefix `p` is inserted as `p`, `p/` and
//! `p/{*rest}`, Exact as `p`, each node holding `{exact, prefix}`. matchit prefers static
//! segments and backtracks to the deepest catch-all that fits, which is exactly the longest
//! element-wise prefix (`/foo/barbaz` falls back from `/foo/bar` to `/foo/{*rest}`).
//! Lookup allocates nothing on our side; matchit 0.9.2 itself allocates a small backtrack
//! stack when the walk passes a node that has both static and catch-all children.
use std::collections::BTreeMap;

use regex::Regex;

use crate::ingress::model::fast_map::FastMap;

use super::snapshot::{Lookup, PathType, Route};

/// Regexes larger than this compile are refused (a path is not a program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a route is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRole {
    /// A path of an Ingress rule.
    Rule,
    /// The `defaultBackend` of an Ingress with rules, for that Ingress's hosts.
    HostFallback,
    /// The `defaultBackend` of a rule-less Ingress: everything that matches nothing else.
    CatchAll,
}

/// Hosts → path matchers → routes.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    roles: Vec<RouteRole>,
    exact: FastMap<Box<str>, VirtualHost>,
    wildcard: FastMap<Box<str>, VirtualHost>,
    hostless: Option<VirtualHost>,
    catch_all: Option<u32>,
    /// compile's memory (last good Ingresses, parsed certificates) for the next build.
    pub(crate) memory: crate::ingress::build::compile::Memory,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    exact: Option<u32>,
    prefix: Option<u32>,
}

#[derive(Debug, Clone)]
struct RegexRoute {
    re: Regex,
    route: u32,
}

#[derive(Debug, Default)]
struct VirtualHost {
    paths: matchit::Router<Slot>,
    regexes: Vec<RegexRoute>,
    fallback: Option<u32>,
}

impl VirtualHost {
    fn find<'a>(&self, path: &str, routes: &'a [Route]) -> Option<Lookup<'a>> {
        let slot = self.paths.at(path).ok().map(|m| *m.value);
        if let Some(Slot { exact: Some(i), .. }) = slot {
            return matched(routes, i);
        }
        for r in &self.regexes {
            if let Some(caps) = r.re.captures(path) {
                let captures = caps
                    .iter()
                    .skip(1)
                    .map(|c| c.map_or_else(String::new, |m| m.as_str().to_string()))
                    .collect();
                let route = routes.get(r.route as usize)?;
                return Some(Lookup::Matched { route, captures });
            }
        }
        if let Some(Slot {
            prefix: Some(i), ..
        }) = slot
        {
            return matched(routes, i);
        }
        self.fallback.and_then(|i| matched(routes, i))
    }
}

fn matched(routes: &[Route], i: u32) -> Option<Lookup<'_>> {
    routes.get(i as usize).map(|route| Lookup::Matched {
        route,
        captures: Vec::new(),
    })
}

impl Router {
    /// Finds the route for a request host (lower case, no port) and path (no query).
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let vhost = self.exact.get(host).or_else(|| {
            let (label, parent) = host.split_once('.')?;
            if label.is_empty() {
                return None;
            }
            self.wildcard.get(parent)
        });
        if let Some(found) = vhost
            .or(self.hostless.as_ref())
            .and_then(|v| v.find(path, &self.routes))
        {
            return found;
        }
        self.catch_all
            .and_then(|i| matched(&self.routes, i))
            .unwrap_or(Lookup::NotFound)
    }

    /// Every route with its role, in insertion order (oldest Ingress first).
    pub fn entries(&self) -> impl Iterator<Item = (RouteRole, &Route)> {
        self.roles.iter().copied().zip(self.routes.iter())
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Compiles an ImplementationSpecific regex path the way ingress-nginx renders it
/// (`location ~* "^<path>"`): case-insensitive and anchored at the start only.
pub fn compile_path_regex(path: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{path})"))
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum HostKey {
    Exact(String),
    Wildcard(String),
    Hostless,
}

impl HostKey {
    fn of(host: Option<&str>) -> HostKey {
        match host {
            None | Some("") => HostKey::Hostless,
            Some(h) => match h.strip_prefix("*.") {
                Some(parent) => HostKey::Wildcard(parent.to_string()),
                None => HostKey::Exact(h.to_string()),
            },
        }
    }
}

#[derive(Debug, Default, Clone)]
struct VhostBuild {
    /// matchit route (escaped) → slot.
    slots: BTreeMap<String, Slot>,
    /// (pattern length, route)
    regexes: Vec<(usize, RegexRoute)>,
    fallback: Option<u32>,
}

/// Builds a `Router`. Add routes oldest Ingress first: on a tie the first one stays.
#[derive(Debug, Default)]
pub struct RouterBuilder {
    routes: Vec<Route>,
    roles: Vec<RouteRole>,
    hosts: BTreeMap<HostKey, VhostBuild>,
    catch_all: Option<u32>,
}

/// Why a route was not added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("already served by an earlier rule")]
    Taken,
    #[error("too many routes")]
    Full,
}

impl RouterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, route: Route, role: RouteRole) -> Result<u32, RouteError> {
        let i = u32::try_from(self.routes.len()).map_err(|_| RouteError::Full)?;
        self.routes.push(route);
        self.roles.push(role);
        Ok(i)
    }

    /// Adds a rule path. `regex` is `Some` for a regex (ImplementationSpecific) path; an
    /// ImplementationSpecific path without one is a Prefix. `Err(Taken)` when an earlier
    /// rule has the same host, matcher and path.
    pub fn add(&mut self, route: Route, regex: Option<Regex>) -> Result<usize, RouteError> {
        // The index the route will get; nothing is recorded unless it is accepted.
        let i = u32::try_from(self.routes.len()).map_err(|_| RouteError::Full)?;
        let vh = self
            .hosts
            .entry(HostKey::of(route.host.as_deref()))
            .or_default();
        if let Some(re) = regex {
            if vh.regexes.iter().any(|(_, r)| r.re.as_str() == re.as_str()) {
                return Err(RouteError::Taken);
            }
            vh.regexes
                .push((route.path.len(), RegexRoute { re, route: i }));
        } else {
            let exact = route.path_type == PathType::Exact;
            let keys = if exact {
                vec![escape(&route.path)]
            } else {
                prefix_keys(&route.path)
            };
            let routes = &self.routes;
            let holder = |slot: &Slot| {
                let held = if exact { slot.exact } else { slot.prefix };
                routes.get(held? as usize)
            };
            // `/foo` and `/foo/` share nodes without conflicting; only the same raw path
            // does.
            let taken = keys.iter().any(|k| {
                vh.slots
                    .get(k)
                    .and_then(holder)
                    .is_some_and(|r| r.path == route.path)
            });
            if taken {
                return Err(RouteError::Taken);
            }
            for k in keys {
                let slot = vh.slots.entry(k).or_default();
                if exact {
                    slot.exact = Some(i);
                } else if holder(slot).is_none_or(|r| r.path.len() < route.path.len()) {
                    // The longer raw path (`/foo/` over `/foo`) holds the nodes; a shorter
                    // one stays listed but unreachable.
                    slot.prefix = Some(i);
                }
            }
        }
        self.routes.push(route);
        self.roles.push(RouteRole::Rule);
        Ok(i as usize)
    }

    /// Sets the fallback of the virtual host `route.host` (first one stays).
    pub(crate) fn add_host_fallback(&mut self, route: Route) -> Result<(), RouteError> {
        let key = HostKey::of(route.host.as_deref());
        if self.hosts.get(&key).is_some_and(|v| v.fallback.is_some()) {
            return Err(RouteError::Taken);
        }
        let i = self.push(route, RouteRole::HostFallback)?;
        self.hosts.entry(key).or_default().fallback = Some(i);
        Ok(())
    }

    /// Sets the catch-all for requests nothing else matches (first one stays).
    pub(crate) fn set_catch_all(&mut self, route: Route) -> Result<(), RouteError> {
        if self.catch_all.is_some() {
            return Err(RouteError::Taken);
        }
        let i = self.push(route, RouteRole::CatchAll)?;
        self.catch_all = Some(i);
        Ok(())
    }

    /// Whether `host` (`*.parent` for a wildcard) already has rules or a fallback.
    pub(crate) fn has_host(&self, host: &str) -> bool {
        self.hosts.contains_key(&HostKey::of(Some(host)))
    }

    /// Serves `alias` with the rules of `host` as they are now (`server-alias`). Add
    /// aliases after every rule: an alias never takes a name that has rules of its own.
    pub fn alias(&mut self, alias: &str, host: &str) -> Result<(), RouteError> {
        let key = HostKey::of(Some(alias));
        if key == HostKey::Hostless || self.hosts.contains_key(&key) {
            return Err(RouteError::Taken);
        }
        let Some(rules) = self.hosts.get(&HostKey::of(Some(host))).cloned() else {
            return Err(RouteError::Taken);
        };
        self.hosts.insert(key, rules);
        Ok(())
    }

    /// A route added earlier, by the index `add` returned (compile attaches canaries).
    pub(crate) fn route_mut(&mut self, index: usize) -> Option<&mut Route> {
        self.routes.get_mut(index)
    }

    /// Builds the router; the messages name matchit insertions that failed (none are
    /// expected, since paths are escaped and slots merged).
    pub fn build(self) -> (Router, Vec<String>) {
        let mut problems = Vec::new();
        let mut router = Router {
            routes: self.routes,
            roles: self.roles,
            catch_all: self.catch_all,
            ..Router::default()
        };
        for (key, vb) in self.hosts {
            let mut vh = VirtualHost {
                fallback: vb.fallback,
                ..VirtualHost::default()
            };
            for (path, slot) in vb.slots {
                if let Err(e) = vh.paths.insert(path.clone(), slot) {
                    problems.push(format!("path {path}: {e}"));
                }
            }
            let mut regexes = vb.regexes;
            // Stable: equal lengths keep insertion (age) order.
            regexes.sort_by_key(|r| std::cmp::Reverse(r.0));
            vh.regexes = regexes.into_iter().map(|(_, r)| r).collect();
            match key {
                HostKey::Exact(h) => {
                    router.exact.insert(h.into_boxed_str(), vh);
                }
                HostKey::Wildcard(h) => {
                    router.wildcard.insert(h.into_boxed_str(), vh);
                }
                HostKey::Hostless => router.hostless = Some(vh),
            }
        }
        (router, problems)
    }
}

/// matchit treats `{` and `}` as parameter syntax; Ingress paths are literal.
fn escape(path: &str) -> String {
    if !path.contains(['{', '}']) {
        return path.to_string();
    }
    path.replace('{', "{{").replace('}', "}}")
}

/// The three matchit routes of a Prefix path: `p`, `p/` and `p/{*rest}`.
fn prefix_keys(path: &str) -> Vec<String> {
    let trimmed = match path.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => path,
    };
    if trimmed == "/" || trimmed.is_empty() {
        return vec!["/".to_string(), "/{*rest}".to_string()];
    }
    let p = escape(trimmed);
    vec![p.clone(), format!("{p}/"), format!("{p}/{{*rest}}")]
}

#[cfg(test)]
mod tests;
