//! How a snapshot is built: objects from the store compiled into the model.
pub mod annotations;
pub mod backends;
pub mod catalogue;
pub mod class;
pub mod compile;
pub mod endpoint_filter;
pub mod endpoint_refresh;
pub mod inspect;
pub mod migrate;
pub mod nginx_configmap;
pub mod secret_refs;
pub mod validate;
