//! The process's file-descriptor budget: raised to the hard limit at start (as nginx's
//! `worker_rlimit_nofile` does), and split so that the admin listener and the process's
//! own files always have descriptors left when clients take all they are allowed.
use rustix::process::{Resource, getrlimit, setrlimit};

/// Descriptors kept out of the client connection budget: the admin listener's own
/// budget, watched files, the API-server connections, logs.
pub const RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in
/// force (`None` when it cannot be read; unlimited counts as `u64::MAX`).
pub fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let (current, max) = (limit.current, limit.maximum);
    if current.is_some() && current != max {
        let raised = rustix::process::Rlimit {
            current: max,
            maximum: max,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "could not raise the file-descriptor limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    Some(now.unwrap_or(u64::MAX))
}

/// Client connections the webhook and ingress listeners may hold together with `nofile`
/// descriptors: half of what is left after the reserve, since each proxied connection
/// may hold an upstream socket as well. At least 64.
pub fn connection_budget(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVE) / 2;
    usize::try_from(usable)
        .unwrap_or(usize::MAX / 2)
        .clamp(64, 1 << 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_the_reserve_and_room_for_upstreams() {
        assert_eq!(connection_budget(1024), 384);
        assert_eq!(connection_budget(65_536), 32_640);
        assert_eq!(connection_budget(100), 64);
        assert_eq!(connection_budget(u64::MAX), 1 << 24);
    }

    #[test]
    fn raising_reports_a_limit() {
        let n = raise_nofile().unwrap();
        assert!(n >= 64, "{n}");
    }
}
