//! Configuration sources: they turn the outside world (a manifests directory, or the
//! Kubernetes API's watches) into objects in the `ObjectStore`; everything past the store
//! is source-agnostic.
pub mod cluster_list;
pub mod cluster_watch;
pub mod files;
pub(crate) mod kube;
pub(crate) mod store;

pub use store::{Kind, Object, ObjectStore};
