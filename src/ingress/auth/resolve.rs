//! Compile's part of basic auth: the users of the Secret an Ingress names, parsed once per
//! compile so no request ever parses an htpasswd file.
//!
//! Failure behaviour: a missing or unusable Secret leaves the routes refusing every request
//! (503 missing, 500 unusable) and is reported as a problem of the Ingress; users whose
//! hash cannot be checked are reported and cannot sign in.
use std::sync::Arc;

use super::basic::{SecretFormat, UsersState};
use super::htpasswd;
use crate::ingress::policy::Policy;
use crate::source::ObjectStore;

/// The key of an `auth-file` Secret that holds the htpasswd file.
pub const AUTH_FILE_KEY: &str = "auth";

/// Fills in the users of `policy`'s basic auth from `store`; the problems found.
/// `namespace` is the Ingress's, for an `auth-secret` without one.
pub fn attach(policy: &mut Arc<Policy>, store: &ObjectStore, namespace: &str) -> Vec<String> {
    let wants_users = policy.auth.as_ref().is_some_and(|a| a.basic.is_some());
    if !wants_users {
        return Vec::new();
    }
    // The plan's policy and auth were parsed for this compile and are not shared yet.
    let Some(basic) = Arc::get_mut(policy)
        .and_then(|p| p.auth.as_mut())
        .and_then(Arc::get_mut)
        .and_then(|a| a.basic.as_mut())
    else {
        return vec!["basic auth could not be prepared; requests are refused".into()];
    };
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
