//! Listeners: accept, optional TLS, HTTP/1.1 + HTTP/2 serving, graceful shutdown.
//!
//! CONTRACT used by every handler (admission, admin, ingress proxy): a `Handler` gets the
//! request and what is known about its connection, and returns a response. It never fails:
//! errors are turned into responses by the handler itself.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// True when the connection is TLS.
    pub tls: bool,
    /// The SNI name the client sent, lower case.
    pub sni: Option<String>,
}

/// A boxed response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A request handler shared by every connection of a listener.
pub type Handler = Arc<dyn Fn(Request<Incoming>, Arc<ConnInfo>) -> ResponseFuture + Send + Sync>;
