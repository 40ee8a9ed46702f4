//! One Prometheus registry for the whole process. Each module registers its own metric
//! families here (lazily, on first use) so the admin listener can expose them all.
use std::sync::OnceLock;

use prometheus::{Encoder, Registry, TextEncoder};

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Registry::new_custom(Some("portcullis".into()), None).unwrap_or_default())
}

/// Registers a collector, tolerating a second registration of the same family (tests
/// build several servers in one process).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = registry().register(Box::new(c.clone()));
    c
}

/// The Prometheus text exposition of every registered family.
pub fn encode() -> Vec<u8> {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry().gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    buf
}
