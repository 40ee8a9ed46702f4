//! What a listener may do with a connection before TLS or HTTP see it: read a PROXY
//! protocol header (the client's address, from a load balancer), and read the TLS
//! ClientHello's server name to pick who terminates the connection (another TLS
//! configuration, e.g. one that asks for client certificates, or nobody: SSL
//! passthrough hands the raw bytes to a backend).
//!
//! Failure behaviour: every read here is bounded in size and time. A connection that
//! should carry a PROXY header and does not (or sends a malformed one) is closed; one
//! whose ClientHello cannot be read in time is closed as a failed handshake would be.
use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client_hello::{self, Hello};
use super::prefixed::Prefixed;
use super::proxy_protocol::{self, Parsed};

/// A connection handed over whole (SSL passthrough).
pub type SpliceFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Takes a connection (with the bytes already read replayed first) and the client address.
pub type Splice = Box<dyn FnOnce(Prefixed<TcpStream>, SocketAddr) -> SpliceFuture + Send>;

/// Decides from a ClientHello's server name what happens to a TLS connection.
pub trait SniHook: Send + Sync {
    /// False while no host needs its ClientHello looked at: the listener then does not
    /// read ahead at all.
    fn active(&self) -> bool;
    /// What to do with a connection whose ClientHello names `sni` (lower case).
    fn route(&self, sni: Option<&str>) -> SniChoice;
}

/// The outcome of [`SniHook::route`].
pub enum SniChoice {
    /// The listener's own TLS configuration.
    Default,
    /// Another configuration for this connection; `check` turns the client's
    /// certificates into a tag every request of the connection carries.
    Tls {
        config: Arc<rustls::ServerConfig>,
        check: Arc<dyn PeerCheck>,
    },
    /// Not terminated here: the connection is handed over.
    Splice(Splice),
}

/// Judges a connection's client certificate chain once, after the handshake.
pub trait PeerCheck: Send + Sync {
    fn check(&self, chain: Option<&[CertificateDer<'static>]>) -> ConnTag;
}

/// What a [`PeerCheck`] found, in the extensions of every request on the connection.
#[derive(Clone)]
pub struct ConnTag(pub Arc<dyn Any + Send + Sync>);

impl fmt::Debug for ConnTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnTag")
    }
}

/// The pre-TLS steps of a listener; both off by default.
#[derive(Clone, Default)]
pub struct EdgeOptions {
    /// Every connection starts with a PROXY header (v1 or v2), read within this time.
    pub proxy_protocol: Option<Duration>,
    /// TLS listeners: who terminates each connection, by server name.
    pub sni_hook: Option<Arc<dyn SniHook>>,
}

impl fmt::Debug for EdgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeOptions")
            .field("proxy_protocol", &self.proxy_protocol)
            .field("sni_hook", &self.sni_hook.is_some())
            .finish()
    }
}

/// A connection after the pre-TLS steps.
pub(super) struct Prelude {
    pub stream: Prefixed<TcpStream>,
    /// The client: from the PROXY header when there was one naming it.
    pub remote: SocketAddr,
    pub choice: SniChoice,
}

/// Why a connection was closed before TLS or HTTP.
#[derive(Debug, thiserror::Error)]
pub(super) enum PreludeError {
    #[error(transparent)]
    Header(#[from] proxy_protocol::HeaderError),
    #[error("closed by the client")]
    Eof,
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("over {0} bytes")]
    TooLong(usize),
}

impl PreludeError {
    fn reason(&self) -> &'static str {
        match self {
            PreludeError::Header(proxy_protocol::HeaderError::Missing) => "missing",
            PreludeError::Header(_) | PreludeError::TooLong(_) => "malformed",
            PreludeError::Eof | PreludeError::Io(_) => "closed",
            PreludeError::Timeout => "timeout",
        }
    }
}

/// Runs the pre-TLS steps `edge` asks for. `deadline` bounds the ClientHello read (the
/// handshake's own deadline).
pub(super) async fn prelude(
    mut stream: TcpStream,
    remote: SocketAddr,
    edge: &EdgeOptions,
    tls: bool,
    deadline: Instant,
    listener: &str,
) -> Result<Prelude, PreludeError> {
    let mut buf = Vec::new();
    let mut remote = remote;
    if let Some(limit) = edge.proxy_protocol {
        let until = Instant::now() + limit;
        let read = read_until(&mut stream, &mut buf, until, proxy_protocol::V2_MAX, |b| {
            match proxy_protocol::parse(b)? {
                Parsed::Incomplete => Ok::<_, PreludeError>(None),
                Parsed::Done(h) => Ok(Some(h)),
            }
        })
        .await;
        let header = match read {
            Ok(h) => h,
            Err(e) => {
                failures().with_label_values(&[listener, e.reason()]).inc();
                return Err(e);
            }
        };
        buf.drain(..header.len);
        if let Some(source) = header.source {
            remote = SocketAddr::new(source.ip().to_canonical(), source.port());
        }
    }
    let mut choice = SniChoice::Default;
    if tls && let Some(hook) = edge.sni_hook.as_ref().filter(|h| h.active()) {
        let sni = read_until(
            &mut stream,
            &mut buf,
            deadline,
            client_hello::MAX_RECORD,
            |b| {
                Ok::<_, PreludeError>(match client_hello::parse(b) {
                    Hello::Incomplete => None,
                    Hello::NotTls => Some(None),
                    Hello::Done(sni) => Some(sni),
                })
            },
        )
        .await?;
        choice = hook.route(sni.as_deref());
    }
    Ok(Prelude {
        stream: Prefixed::new(buf, stream),
        remote,
        choice,
    })
}

/// Reads into `buf` until `parse` decides, at most `max` bytes, until `until`.
async fn read_until<T, E>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
    max: usize,
    parse: impl Fn(&[u8]) -> Result<Option<T>, E>,
) -> Result<T, PreludeError>
where
    PreludeError: From<E>,
{
    loop {
        if !buf.is_empty()
            && let Some(done) = parse(buf)?
        {
            return Ok(done);
        }
        if buf.len() >= max {
            return Err(PreludeError::TooLong(max));
        }
        let old = buf.len();
        let want = (max - old).min(4096);
        buf.resize(old + want, 0);
        let read = tokio::time::timeout_at(until, stream.read(&mut buf[old..])).await;
        let n = match read {
            Ok(Ok(0)) => {
                buf.truncate(old);
                return Err(PreludeError::Eof);
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(PreludeError::Timeout),
        };
        buf.truncate(old + n);
    }
}

fn failures() -> &'static IntCounterVec {
    static FAMILY: OnceLock<IntCounterVec> = OnceLock::new();
    FAMILY.get_or_init(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "proxy_protocol_failures_total",
                    "Connections closed because their PROXY protocol header was missing, \
                     malformed, late or cut off, by listener and reason.",
                ),
                &["listener", "reason"],
            )
            .expect("valid metric definition"),
        )
    })
}
