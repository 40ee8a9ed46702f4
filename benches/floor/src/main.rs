//! The floor: see README.md. Configured by the harness' environment (`PERF_HTTP_PORT`,
//! `PERF_HTTPS_PORT`, `PERF_BACKENDS`, `PERF_CERT`, `PERF_KEY`).
mod h1;
mod h2;
mod upstream;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::upstream::{Pool, SharedPool};

/// Whether a pricing switch (README.md) is set; read once.
fn switch(cell: &'static std::sync::OnceLock<bool>, name: &str) -> bool {
    *cell.get_or_init(|| std::env::var_os(name).is_some())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run under ../shared/perf)"))
}

fn port(name: &str) -> Result<u16, String> {
    env(name)?.parse().map_err(|e| format!("{name}: {e}"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("portcullis-floor: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let http_port = port("PERF_HTTP_PORT")?;
    let https_port = port("PERF_HTTPS_PORT")?;
    let backends = env("PERF_BACKENDS")?
        .split(',')
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|e| format!("PERF_BACKENDS {s}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if backends.is_empty() {
        return Err("PERF_BACKENDS is empty".into());
    }
    let tls = tls_config()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pool: SharedPool = Rc::new(RefCell::new(Pool::new(backends)));
        let plain = TcpListener::bind(("127.0.0.1", http_port))
            .await
            .map_err(|e| format!("bind {http_port}: {e}"))?;
        let secure = TcpListener::bind(("127.0.0.1", https_port))
            .await
            .map_err(|e| format!("bind {https_port}: {e}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let tls_pool = pool.clone();
        tokio::task::spawn_local(async move {
            loop {
                let Ok((tcp, peer)) = secure.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let pool = tls_pool.clone();
                tokio::task::spawn_local(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        h2::serve(tls, pool, peer).await;
                    } else {
                        h1::serve(tls, pool, peer, b"https").await;
                    }
                });
            }
        });
        loop {
            let Ok((tcp, peer)) = plain.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::task::spawn_local(h1::serve(tcp, pool.clone(), peer, b"http"));
        }
    })
}

fn tls_config() -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_path = env("PERF_CERT")?;
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert_path}: {e}"))?;
    let key_path = env("PERF_KEY")?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{key_path}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
