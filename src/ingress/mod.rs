//! The ingress data plane: Ingress objects compiled into an immutable snapshot, a router
//! over it, and the proxy that forwards matched requests to ready endpoints.
pub mod build;
pub mod model;
pub mod request;
