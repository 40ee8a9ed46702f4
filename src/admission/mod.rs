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
pub mod custom;
pub mod custom_additional;
pub mod custom_schema;
pub mod engine;
pub mod http;
pub mod ingress;
pub mod lookup;
pub mod metrics;
pub mod patch;
pub mod polaris;
pub mod quantity;
pub mod recent;
pub mod review;
pub mod rules;
pub mod settings;
pub mod template;

pub use context::{Context, Operation};
pub use engine::{Decision, Engine, Finding};
pub use settings::{Action, AdmissionSettings};
