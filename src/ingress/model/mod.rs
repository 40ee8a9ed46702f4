//! What a compiled snapshot is: the data every request reads and admission checks against.
pub(crate) mod fast_map;
pub mod ingress_metrics;
pub mod live;
pub(crate) mod metric_labels;
pub mod policy;
pub mod problem;
pub mod route_metrics;
pub mod router;
pub mod routes;
pub mod snapshot;
