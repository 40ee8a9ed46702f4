//! How a snapshot is built: objects from the store compiled into the model.
pub mod annotations;
pub(crate) mod backends;
pub(crate) mod catalogue;
pub(crate) mod class;
pub mod compile;
pub mod endpoint_filter;
pub mod endpoint_refresh;
pub mod inspect;
pub mod migrate;
pub mod nginx_configmap;
pub(crate) mod secret_refs;
pub(crate) mod validate;
