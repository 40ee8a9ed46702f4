//! The ingress data plane: Ingress objects compiled into an immutable snapshot, a router
//! over it, and the proxy that forwards matched requests to ready endpoints.
pub mod annotations;
pub mod backends;
pub mod class;
pub mod compile;
pub mod config;
pub mod policy;
pub mod problem;
pub mod router;
pub mod routes;
pub mod snapshot;
pub mod validate;
