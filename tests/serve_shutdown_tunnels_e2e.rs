//! Upgraded connections (WebSocket and the like) across SIGTERM, with the real process:
//! they leave hyper once upgraded, so the listeners' drain alone would let the process exit
//! under them. They must keep working through the grace period, let the process exit as
//! soon as they close, and be cut (exit 0 still) when the grace period ends.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::{Portcullis, ingress, ingress_class, pod, service, slice, write_atomic, yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "tunnel.e2e.test";

async fn gateway(
    dir: &std::path::Path,
    grace_secs: &str,
) -> (Portcullis, tokio::task::JoinHandle<()>) {
    let (addr, task) = pod("127.0.0.2", "tunnel-1").await;
    write_atomic(
        dir,
        "00-all.yaml",
        &yaml(&[
            ingress_class(),
            // The echo pod speaks a made-up `echo` protocol; only WebSocket is tunnelled
            // unless an Ingress enables more.
            ingress(
                "tunnel",
                HOST,
                None,
                &[("/", "tunnel")],
                &[("portcullis.io/upgrade-protocols", "echo")],
            ),
            service("tunnel"),
            slice("tunnel", "tunnel-1", addr, true),
        ]),
    );
    let gw = Portcullis::start(dir, &["--grace-period", grace_secs]).await;
    (gw, task)
}

/// Opens a raw `Upgrade: echo` tunnel through the proxy to the echo pod.
async fn open_tunnel(http: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(http).await.unwrap();
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed before the 101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::other("no echo within 5 s"))??;
    assert_eq!(back, msg);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_keeps_working_after_sigterm_and_exit_follows_its_close() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _pod) = gateway(dir.path(), "20").await;
    let mut tunnel = open_tunnel(gw.http).await;
    round_trip(&mut tunnel, b"before").await.unwrap();

    gw.terminate();
    // The listeners stop at once (no drain delay) and have no request in flight, so
    // without tracking the tunnel the process would be gone by now.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 0..5 {
        round_trip(&mut tunnel, format!("during {i}").as_bytes())
            .await
            .unwrap();
    }
    assert!(
        TcpStream::connect(gw.http).await.is_err(),
        "the listener still accepts new connections"
    );

    let closed = Instant::now();
    drop(tunnel);
    let status = gw.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}");
    // Well inside the 20 s grace period: the close, not the deadline, ended the wait.
    assert!(closed.elapsed() < Duration::from_secs(10));
    assert!(gw.log().contains("waiting for upgraded connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_still_open_when_the_grace_period_ends_is_cut_and_exit_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _pod) = gateway(dir.path(), "2").await;
    let mut tunnel = open_tunnel(gw.http).await;
    round_trip(&mut tunnel, b"before").await.unwrap();

    let signalled = Instant::now();
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    round_trip(&mut tunnel, b"still open").await.unwrap();

    // The proxy closes the tunnel when the grace period ends: the client reads EOF (or a
    // reset), not an echo.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tunnel.read(&mut buf))
        .await
        .expect("the tunnel outlived the grace period");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "cut after {:?}, before the grace period ended",
        signalled.elapsed()
    );
    let status = gw.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{status}");
    assert!(gw.log().contains("closed upgraded connections"));
}
