//! Configuration sources: they turn the outside world (a manifests directory today, a
//! Kubernetes watch later) into objects in the `ObjectStore`; everything past the store is
//! source-agnostic.
pub mod files;
pub mod store;

pub use store::{Kind, Object, ObjectStore};
