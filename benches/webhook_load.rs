//! Load test of the admission webhook over real TLS connections.
//!
//! Starts the webhook listener in-process on 127.0.0.1 (its own one-thread runtime, so
//! server and client each get one of the machine's cores), then drives it with many
//! kept-alive HTTP/1.1 TLS connections (the API server's transport):
//! 1. open loop at a fixed rate (default 2,000 reviews/s): latency is measured from when
//!    each request was *due*, so a stall is not hidden by the client waiting;
//! 2. closed loop, every connection back to back: the saturation throughput.
//!
//! Run: `cargo bench --bench webhook_load` (env RATE, SECONDS, CONNECTIONS to change).
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use portcullis::admission::{AdmissionSettings, Engine};
use portcullis::server::{ServeOptions, Shutdown, serve};
use portcullis::tls::{config::server_config, generate::DevCerts, resolver::SniResolver};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const REVIEW: &[u8] = include_bytes!("data/deployment-review.json");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr, connector: &TlsConnector) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn call(sender: &mut Sender, path: &'static str) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REVIEW)))?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(body.starts_with(b"{\"apiVersion\""), "unexpected body");
    Ok(())
}

/// tokio's timer has millisecond granularity, which would add up to a millisecond to every
/// open-loop latency; sleep to just before the due time, then yield until it arrives.
async fn wait_until(due: Instant) {
    let early = Duration::from_micros(1500);
    if let Some(coarse) = due.checked_sub(early)
        && coarse > Instant::now()
    {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(label: &str, mut lat: Vec<Duration>, errors: usize, elapsed: Duration) {
    lat.sort_unstable();
    let n = lat.len();
    println!(
        "{label}: {n} reviews in {:.2}s = {:.0} reviews/s, errors {errors}, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("webhook_load: run with `cargo bench --bench webhook_load`");
        return Ok(());
    }
    portcullis::tls::install_provider();
    let rate = env_or("RATE", 2000);
    let seconds = env_or("SECONDS", 10);
    let conns = env_or("CONNECTIONS", 32) as usize;

    let certs = DevCerts::generate("portcullis", "portcullis")?;
    let resolver = Arc::new(SniResolver::new(certs.certified_key()?));
    let tls = server_config(resolver)?;
    let engine = Arc::new(Engine::new(AdmissionSettings::default())?);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = server_rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let handler = portcullis::admission::http::handler(engine, None);
    server_rt.spawn(serve(
        listener,
        Some(tls),
        handler,
        shutdown.clone(),
        ServeOptions::new("webhook"),
    ));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client_cfg =
        portcullis::tls::client::client_config(certs.ca_pem.as_bytes(), &[b"http/1.1"])?;
    let connector = TlsConnector::from(client_cfg);
    client_rt.block_on(async move {
        let mut senders = Vec::new();
        for _ in 0..conns {
            senders.push(connect(addr, &connector).await?);
        }
        // Warm up pools, allocator and branch predictors.
        for s in senders.iter_mut() {
            for _ in 0..20 {
                call(s, "/validate").await?;
            }
        }

        // 1. Open loop at a fixed rate.
        let total = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now() + Duration::from_millis(50);
        let per_conn = senders.len();
        let mut tasks = Vec::new();
        for (ci, mut s) in senders.drain(..).enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut i = ci as u64;
                while i < total {
                    let due = start + interval * i as u32;
                    wait_until(due).await;
                    match call(&mut s, "/validate").await {
                        Ok(()) => lat.push(due.elapsed()),
                        Err(_) => errors += 1,
                    }
                    i += per_conn as u64;
                }
                (s, lat, errors)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (s, l, e) = t.await?;
            senders.push(s);
            lat.extend(l);
            errors += e;
        }
        report(
            &format!("open loop at {rate}/s, {conns} TLS connections"),
            lat,
            errors,
            start.elapsed(),
        );

        // 2. Closed loop: every connection back to back.
        let stop_at = Instant::now() + Duration::from_secs(seconds);
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for mut s in senders.drain(..) {
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                while Instant::now() < stop_at {
                    let t = Instant::now();
                    match call(&mut s, "/validate").await {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            lat.extend(l);
            errors += e;
        }
        report(
            &format!("saturation, {conns} TLS connections"),
            lat,
            errors,
            begin.elapsed(),
        );
        anyhow::Ok(())
    })?;
    shutdown.trigger();
    Ok(())
}
