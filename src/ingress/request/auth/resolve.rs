//! Compile's part of auth: the users of the Secret an Ingress names for basic auth, parsed
//! once per compile so no request ever parses an htpasswd file, and the external-auth
//! headers of its `auth-proxy-set-headers` ConfigMap (see `proxy_headers`).
//!
//! Failure behaviour: a missing or unusable Secret leaves the routes refusing every request
//! (503 missing, 500 unusable) and is reported as a problem of the Ingress; users whose
//! hash cannot be checked are reported and cannot sign in.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::basic::{Basic, SecretFormat, UsersState};
use super::cache::{self, Cache, Key};
use super::htpasswd;
use crate::ingress::model::policy::Policy;
use crate::source::ObjectStore;

/// The key of an `auth-file` Secret that holds the htpasswd file.
pub const AUTH_FILE_KEY: &str = "auth";

/// Fills in the users of `policy`'s basic auth and the headers of its external auth from
/// `store`; the problems found. `namespace` is the Ingress's, for references without one.
pub fn attach(policy: &mut Arc<Policy>, store: &ObjectStore, namespace: &str) -> Vec<String> {
    let wants_users = policy.auth.as_ref().is_some_and(|a| a.basic.is_some());
    let wants_headers = policy
        .auth
        .as_ref()
        .and_then(|a| a.external.as_ref())
        .is_some_and(|e| e.proxy_headers_ref.is_some());
    if !wants_users && !wants_headers {
        return Vec::new();
    }
    // The plan's policy and auth were parsed for this compile and are not shared yet. If
    // they were, the users stay missing and the headers unresolved: both refuse requests.
    let Some(auth) = Arc::get_mut(policy)
        .and_then(|p| p.auth.as_mut())
        .and_then(Arc::get_mut)
    else {
        return vec!["auth could not be prepared; requests are refused".into()];
    };
    let mut problems = Vec::new();
    if let Some(basic) = auth.basic.as_mut() {
        problems.extend(attach_users(basic, store, namespace));
    }
    if let Some(external) = auth.external.as_mut() {
        problems.extend(super::proxy_headers::attach(external, store, namespace));
    }
    problems
}

fn attach_users(basic: &mut Basic, store: &ObjectStore, namespace: &str) -> Vec<String> {
    let ns = basic.secret_namespace.as_deref().unwrap_or(namespace);
    let key = format!("{ns}/{}", basic.secret_name);
    let Some(data) = store.secret_data(ns, &basic.secret_name) else {
        basic.users = UsersState::Missing;
        return vec![format!(
            "basic auth Secret {key} does not exist; requests are answered 503"
        )];
    };
    let parsed = match basic.format {
        SecretFormat::AuthFile => match data.get(AUTH_FILE_KEY) {
            Some(file) => htpasswd::parse_file(file),
            None => Err(format!("no {AUTH_FILE_KEY:?} key")),
        },
        SecretFormat::AuthMap => htpasswd::parse_map(data.entries()),
    };
    match parsed {
        Ok(parsed) => {
            basic.verified = verified_memory(basic.format, &data.entries());
            basic.users = UsersState::Ready(Arc::new(parsed.users));
            parsed
                .notes
                .into_iter()
                .map(|n| format!("basic auth Secret {key}: {n}"))
                .collect()
        }
        Err(e) => {
            basic.users = UsersState::Unusable;
            vec![format!(
                "basic auth Secret {key} is unusable ({e}); requests are answered 500"
            )]
        }
    }
}

/// The verified-credentials memory for one exact user list: the one an earlier compile made
/// for the same Secret content while any route still holds it, else a new one. Keyed by a
/// digest of the content, so changed users never inherit an old memory.
fn verified_memory(format: SecretFormat, entries: &[(&str, &[u8])]) -> Arc<Cache<()>> {
    static LIVE: Mutex<Option<HashMap<Key, Weak<Cache<()>>>>> = Mutex::new(None);
    let mut parts: Vec<&[u8]> = vec![match format {
        SecretFormat::AuthFile => b"auth-file",
        SecretFormat::AuthMap => b"auth-map",
    }];
    for (k, v) in entries {
        parts.push(k.as_bytes());
        parts.push(v);
    }
    let key = cache::key(&parts);
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let live = live.get_or_insert_with(HashMap::new);
    if let Some(existing) = live.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    // Entries of lists no route holds any more go whenever a new list arrives.
    live.retain(|_, w| w.strong_count() > 0);
    let fresh: Arc<Cache<()>> = Arc::default();
    live.insert(key, Arc::downgrade(&fresh));
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_follows_the_exact_user_list() {
        let a = verified_memory(SecretFormat::AuthFile, &[("auth", b"alice:x")]);
        let again = verified_memory(SecretFormat::AuthFile, &[("auth", b"alice:x")]);
        assert!(Arc::ptr_eq(&a, &again), "same content, same memory");
        a.put(
            cache::key(&[b"header"]),
            (),
            std::time::Duration::from_secs(60),
        );
        assert_eq!(again.len(), 1);
        let changed = verified_memory(SecretFormat::AuthFile, &[("auth", b"alice:y")]);
        assert!(!Arc::ptr_eq(&a, &changed));
        let as_map = verified_memory(SecretFormat::AuthMap, &[("auth", b"alice:x")]);
        assert!(!Arc::ptr_eq(&a, &as_map));
        drop((a, again));
        let later = verified_memory(SecretFormat::AuthFile, &[("auth", b"alice:x")]);
        assert!(later.is_empty(), "nobody held it: a new memory");
    }
}
