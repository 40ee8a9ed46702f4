//! The admission webhook: AdmissionReview decoding, the rule engine, JSON Patch building,
//! the `/validate` and `/mutate` HTTP handler and the offline `check` command.
//!
//! Rules see a `Context` and never HTTP; the engine turns their findings and patch
//! operations into one decision. Bad input is answered with an HTTP error or an
//! AdmissionReview response carrying a message, never with a panic.
pub mod audit;
pub mod audit_polaris;
pub mod audit_render;
pub mod check;
pub mod check_input;
pub mod cluster;
pub mod context;
pub(crate) mod custom;
pub(crate) mod custom_additional;
pub(crate) mod custom_schema;
pub mod engine;
pub mod http;
pub(crate) mod ingress;
pub(crate) mod lookup;
pub(crate) mod metrics;
pub mod patch;
pub mod polaris;
pub(crate) mod quantity;
pub(crate) mod recent;
pub mod review;
pub mod rules;
pub mod settings;
pub mod template;

pub use context::{Context, Operation};
pub use engine::{Decision, Engine, Finding};
pub use settings::{Action, AdmissionSettings};
