//! Why a routed request got an answer of ours instead of the pod's: one type for every
//! failure on the request path, knowing who caused it, whether sending the request again
//! is safe, which status answers it and what the access log and metrics call it.
//!
//! Policy answers (403 from an allow-list, 429 from a rate limit, redirects) are not
//! errors: they are what the Ingress asked for, and stay plain responses.
use std::borrow::Cow;

use http::{Response, StatusCode};

use crate::body::Body;
use crate::ingress::request::respond::generated;
use crate::ingress::request::upstream::ConnectKind;

/// Who a failure is down to; the access log and the balancer treat them differently
/// (only the upstream's failures count against an endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The pod or the path to it.
    Upstream,
    /// The client: a body it could not send, or one over the limit.
    Client,
    /// Our configuration: nothing the client or the pod could have done differently.
    Config,
}

/// The kind of a request-path failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The backend has no ready endpoint.
    NoEndpoints,
    /// Every permit of the chosen endpoint stayed taken for the connect timeout.
    EndpointBusy,
    /// No connection could be made; nothing of the request was sent.
    Connect(ConnectKind),
    /// The exchange broke on an established connection, possibly after sending.
    UpstreamFailed,
    /// The pod answered with a status `proxy-next-upstream` passes on.
    UpstreamStatus(StatusCode),
    /// No response head within the read timeout.
    ReadTimeout,
    /// The request body stopped moving for the send timeout.
    BodyStalled,
    /// The request body is over `proxy-body-size`.
    BodyTooLarge,
    /// The request body did not decode.
    ClientBody,
    /// The client paused its body longer than the body timeout.
    ClientBodyTimeout,
    /// `rewrite-target` produced something that is not a path.
    BadRewrite,
    /// The host to send (`upstream-vhost` or the client's) is no header value.
    BadHost,
    /// An ExternalName Service names no valid host.
    BadExternalName,
    /// `proxy-ssl-*` names a Secret that did not load.
    BackendTls,
}

impl ErrorKind {
    pub fn blame(self) -> Blame {
        use ErrorKind::*;
        match self {
            NoEndpoints | EndpointBusy | Connect(_) | UpstreamFailed | UpstreamStatus(_)
            | ReadTimeout => Blame::Upstream,
            BodyStalled | BodyTooLarge | ClientBody | ClientBodyTimeout | BadHost => Blame::Client,
            BadRewrite | BadExternalName | BackendTls => Blame::Config,
        }
    }

    /// The status we answer with (nginx's choice for the same failure).
    pub fn status(self) -> StatusCode {
        use ErrorKind::*;
        match self {
            NoEndpoints | EndpointBusy => StatusCode::SERVICE_UNAVAILABLE,
            Connect(_) | UpstreamFailed | BadExternalName | BackendTls => StatusCode::BAD_GATEWAY,
            UpstreamStatus(s) => s,
            ReadTimeout | BodyStalled => StatusCode::GATEWAY_TIMEOUT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientBody | BadRewrite | BadHost => StatusCode::BAD_REQUEST,
            ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Whether the same request may go to another endpoint, given what happened to it:
    /// a failed connect sent nothing, so only a body already streaming forbids it;
    /// anything that may have reached the pod also needs an idempotent method (or the
    /// Ingress's leave, `non_idempotent`) and no upgrade. Failures that are not the
    /// upstream's would fail the same way anywhere.
    pub fn retry_safe(self, sent: &Sent) -> bool {
        use ErrorKind::*;
        match self {
            Connect(_) => !sent.body_started,
            UpstreamFailed | UpstreamStatus(_) | ReadTimeout => {
                sent.idempotent && !sent.body_started && !sent.upgrade
            }
            _ => false,
        }
    }

    /// The `ingress_upstream_errors_total` label, for the failures counted there.
    pub fn metric(self) -> Option<&'static str> {
        use ErrorKind::*;
        match self {
            Connect(k) => Some(k.metric()),
            UpstreamFailed => Some("send"),
            UpstreamStatus(_) => Some("status"),
            ReadTimeout => Some("read_timeout"),
            BodyStalled => Some("send_timeout"),
            _ => None,
        }
    }

    /// The access log's `error` field.
    pub fn as_str(self) -> &'static str {
        use ErrorKind::*;
        match self {
            NoEndpoints => "no_endpoints",
            EndpointBusy => "endpoint_busy",
            Connect(ConnectKind::Refused) => "connect_refused",
            Connect(ConnectKind::Timeout) => "connect_timeout",
            Connect(ConnectKind::Unreachable) => "connect_unreachable",
            Connect(ConnectKind::Tls) => "connect_tls",
            Connect(ConnectKind::Other) => "connect",
            UpstreamFailed => "upstream_failed",
            UpstreamStatus(_) => "upstream_status",
            ReadTimeout => "read_timeout",
            BodyStalled => "body_stalled",
            BodyTooLarge => "body_too_large",
            ClientBody => "client_body",
            ClientBodyTimeout => "client_body_timeout",
            BadRewrite => "bad_rewrite",
            BadHost => "bad_host",
            BadExternalName => "bad_external_name",
            BackendTls => "backend_tls",
        }
    }
}

/// What had happened to a request when an attempt failed, for [`ErrorKind::retry_safe`].
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Its method is idempotent, or the Ingress allows resending any method.
    pub idempotent: bool,
    /// Its body started streaming to an attempt (it cannot be replayed).
    pub body_started: bool,
    pub upgrade: bool,
}

/// A request-path failure: its kind and the one line that explains it.
#[derive(Debug)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub detail: Cow<'static, str>,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The answer the client gets: the kind's status with the detail as its short body.
    pub fn into_response(self) -> Response<Body> {
        generated(self.kind.status(), self.detail)
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Sent = Sent {
        idempotent: true,
        body_started: false,
        upgrade: false,
    };

    #[test]
    fn a_failed_connect_is_retried_unless_the_body_is_gone() {
        let k = ErrorKind::Connect(ConnectKind::Refused);
        assert!(k.retry_safe(&Sent {
            idempotent: false,
            ..FRESH
        }));
        assert!(!k.retry_safe(&Sent {
            body_started: true,
            ..FRESH
        }));
        assert_eq!(k.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(k.blame(), Blame::Upstream);
    }

    #[test]
    fn what_may_have_reached_the_pod_needs_an_idempotent_method_and_no_upgrade() {
        for k in [
            ErrorKind::UpstreamFailed,
            ErrorKind::ReadTimeout,
            ErrorKind::UpstreamStatus(StatusCode::BAD_GATEWAY),
        ] {
            assert!(k.retry_safe(&FRESH), "{k:?}");
            assert!(
                !k.retry_safe(&Sent {
                    idempotent: false,
                    ..FRESH
                }),
                "{k:?}"
            );
            assert!(!k.retry_safe(&Sent {
                upgrade: true,
                ..FRESH
            }));
        }
    }

    #[test]
    fn client_and_configuration_failures_are_never_retried() {
        for k in [
            ErrorKind::BodyTooLarge,
            ErrorKind::ClientBody,
            ErrorKind::BadRewrite,
            ErrorKind::BackendTls,
        ] {
            assert!(!k.retry_safe(&FRESH), "{k:?}");
            assert_ne!(k.blame(), Blame::Upstream, "{k:?}");
        }
    }

    #[test]
    fn statuses_follow_nginx() {
        assert_eq!(ErrorKind::NoEndpoints.status(), 503);
        assert_eq!(ErrorKind::ReadTimeout.status(), 504);
        assert_eq!(ErrorKind::BodyStalled.status(), 504);
        assert_eq!(ErrorKind::BodyTooLarge.status(), 413);
        assert_eq!(ErrorKind::ClientBodyTimeout.status(), 408);
        assert_eq!(
            ErrorKind::UpstreamStatus(StatusCode::IM_A_TEAPOT).status(),
            418
        );
        let answer = ProxyError::new(ErrorKind::BadHost, "invalid host").into_response();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    }
}
