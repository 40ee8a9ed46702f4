//! The ingress data plane: Ingress objects compiled into an immutable snapshot, a router
//! over it, and the proxy that forwards matched requests to ready endpoints.
pub mod access_log;
pub mod balancer;
pub mod canary;
pub mod cow_map;
mod exchange;
pub mod filters;
pub mod forwarded;
pub mod gateway;
pub mod health;
pub mod ingress_metrics;
pub mod policy;
pub mod problem;
pub mod proxy;
pub mod respond;
pub mod rewrite;
pub mod router;
pub mod snapshot;
mod tail;
pub mod upstream;
pub mod upstream_h2;
pub mod upstream_tls;
