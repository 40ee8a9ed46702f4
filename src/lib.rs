//! portcullis: a Kubernetes admission webhook and ingress data plane in one binary.
//!
//! The binary (`src/main.rs`) is a thin CLI; everything it runs lives here so tests and
//! benches drive the same code. See `docs/ARCHITECTURE.md` for how requests and
//! configuration changes flow through these modules.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod body;
pub mod config;
pub mod dashboard;
pub mod echo;
#[doc(hidden)]
pub mod fuzzing;
mod header_pool;
mod http_text;
pub mod ingress;
pub mod metrics;
pub mod process_metrics;
pub mod reload;
pub mod server;
pub mod sock;
pub mod source;
mod span_list;
pub mod status;
pub mod tls;
