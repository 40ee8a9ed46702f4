//! Graceful shutdown of the real process: SIGTERM while requests are in flight to slow
//! pods. Every request in flight, and every request sent during the drain delay, must be
//! answered 200; `/readyz` must turn 503 at once; the process must exit 0 once the drain
//! delay is over and the last response is out.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::time::{Duration, Instant};

use common::{Client, Proto};
use e2e::{
    Portcullis, eventually, ingress, ingress_class, pod_name, service, slice, slow_pod,
    write_atomic, yaml,
};
use http::StatusCode;
use tokio::net::TcpStream;

const HOST: &str = "drain.e2e.test";
const DRAIN: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(5);

async fn get_ok(mut c: Client, path: &str, want_pod: &str) -> Duration {
    let start = Instant::now();
    let reply = c.get(HOST, path).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    assert_eq!(pod_name(&reply).as_deref(), Some(want_pod));
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (slow, _slow) = slow_pod("127.0.0.2", "slow-1", Duration::from_millis(300)).await;
    let (slower, _slower) = slow_pod("127.0.0.3", "slower-1", Duration::from_millis(800)).await;
    write_atomic(
        m,
        "00-all.yaml",
        &yaml(&[
            ingress_class(),
            ingress(
                "drain",
                HOST,
                None,
                &[("/slow", "slow"), ("/slower", "slower")],
                &[],
            ),
            service("slow"),
            service("slower"),
            slice("slow", "slow-1", slow, true),
            slice("slower", "slower-1", slower, true),
        ]),
    );
    let mut gw = Portcullis::start(m, &["--drain-delay", "1", "--grace-period", "5"]).await;
    let http = gw.http;

    // Connections opened before the signal: four HTTP/1.1, two h2c, plus one idle
    // keep-alive connection used late in the drain.
    let mut conns = Vec::new();
    for proto in [
        Proto::H1,
        Proto::H1,
        Proto::H1,
        Proto::H1,
        Proto::H2,
        Proto::H2,
    ] {
        conns.push(Client::plain(http, proto).await.unwrap());
    }
    let late = Client::plain(http, Proto::H1).await.unwrap();
    // Idle connections held open by clients through the whole shutdown, on every
    // listener: they must be closed by the server, not waited for until the grace ends.
    let idle = vec![
        Client::plain(http, Proto::H1).await.unwrap(),
        Client::plain(http, Proto::H2).await.unwrap(),
        Client::tls(
            gw.webhook,
            "portcullis.portcullis.svc",
            &gw.webhook_ca(),
            Proto::H2,
        )
        .await
        .unwrap(),
        Client::tls(
            gw.webhook,
            "portcullis.portcullis.svc",
            &gw.webhook_ca(),
            Proto::H1,
        )
        .await
        .unwrap(),
    ];
    let in_flight: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(get_ok(c, "/slow/x", "slow-1")))
        .collect();
    // Let the requests reach the pod before the signal.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let term = Instant::now();
    gw.terminate();
    let (reply, readyz_after) = eventually(Duration::from_millis(800), "/readyz 503", || async {
        gw.admin_get("/readyz")
            .await
            .ok()
            .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    assert!(reply.text().contains("draining"), "{}", reply.text());
    // Liveness keeps answering while draining.
    assert_eq!(
        gw.admin_get("/healthz").await.unwrap().status,
        StatusCode::OK
    );

    // During the drain delay new connections are still accepted and served.
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(term.elapsed())).await;
    let fresh = Client::plain(http, Proto::H1).await.unwrap();
    let during = tokio::spawn(get_ok(fresh, "/slow/fresh", "slow-1"));
    // A request sent at +0.5 s to an 800 ms pod is still in flight when accepting stops
    // at +1 s: the grace period must let it finish.
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(term.elapsed())).await;
    let straddling = tokio::spawn(get_ok(late, "/slower/x", "slower-1"));

    for (i, task) in in_flight.into_iter().enumerate() {
        let took = task
            .await
            .unwrap_or_else(|e| panic!("in-flight request {i}: {e}"));
        assert!(
            took >= Duration::from_millis(300),
            "request {i} did not wait for the pod"
        );
    }
    during.await.expect("request sent during the drain delay");
    straddling
        .await
        .expect("request straddling the end of accepting");
    assert!(
        term.elapsed() > DRAIN,
        "the straddling request finished before accepting stopped; the test proves nothing"
    );

    let status = gw.wait_exit(Duration::from_secs(8)).await.unwrap();
    let exit_after = term.elapsed();
    assert!(status.success(), "exit status {status}\n{}", gw.log());
    assert!(
        exit_after >= DRAIN,
        "exited {exit_after:?} after SIGTERM, before the {DRAIN:?} drain delay"
    );
    assert!(
        exit_after < DRAIN + GRACE / 2,
        "exit took {exit_after:?}: idle connections were waited for instead of closed"
    );
    for (i, c) in idle.into_iter().enumerate() {
        assert!(
            c.is_closed() || c.closed().await.is_ok(),
            "idle connection {i} left open"
        );
    }
    assert!(
        TcpStream::connect(http).await.is_err(),
        "the HTTP listener still accepts after exit"
    );
    let log = gw.log();
    assert!(
        log.contains("stopped"),
        "no orderly stop in the log:\n{log}"
    );
    eprintln!(
        "shutdown: /readyz 503 after {readyz_after:?}; exit 0 after {exit_after:?} (drain delay {DRAIN:?})"
    );
}

/// Connections that never send a byte (a TCP health check, a client that stalls before
/// its TLS ClientHello or its first request) must not hold the process past the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_delay_exit() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "00-class.yaml", &yaml(&[ingress_class()]));
    let mut gw = Portcullis::start(dir.path(), &["--grace-period", "20"]).await;
    let mut silent = Vec::new();
    for addr in [gw.http, gw.https, gw.webhook] {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let term = Instant::now();
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(25)).await.unwrap();
    let took = term.elapsed();
    assert!(status.success(), "exit status {status}");
    eprintln!("silent connections: exit after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} with silent connections open"
    );
    drop(silent);
}

/// Keep-alive clients that send requests back to back through SIGTERM: during the drain
/// delay every HTTP/1.1 response says `Connection: close`, so each client moves to a new
/// connection (accepted until the delay ends) and no request is ever sent on a connection
/// the server is about to close. A request may only fail on a connection the server never
/// took: refused once accepting has stopped, or reset because the kernel completed its
/// handshake in the instant the listening socket closed (a race every server that closes
/// its listener has; the drain delay exists to make it rare). Either happens only at the
/// end of the delay, never during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_clients_lose_no_request_through_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    let (pod, _pod) = slow_pod("127.0.0.2", "ka-1", Duration::from_millis(5)).await;
    write_atomic(
        m,
        "00-all.yaml",
        &yaml(&[
            ingress_class(),
            ingress("ka", HOST, None, &[("/", "ka")], &[]),
            service("ka"),
            slice("ka", "ka-1", pod, true),
        ]),
    );
    let mut gw = Portcullis::start(m, &["--drain-delay", "1", "--grace-period", "5"]).await;
    let http = gw.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut closes) = (0u32, 0u32);
                let mut lost = Vec::new();
                // When this client's first request on a new connection failed.
                let mut never_taken = None;
                let mut conn: Option<Client> = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (mut c, fresh) = match conn.take() {
                        Some(c) => (c, false),
                        None => match Client::plain(http, Proto::H1).await {
                            Ok(c) => (c, true),
                            // Refused: accepting has stopped. Not a lost request.
                            Err(_) => break,
                        },
                    };
                    match c.get(HOST, "/").await {
                        Ok(reply) if reply.status == StatusCode::OK => {
                            ok += 1;
                            if reply.header("connection") == Some("close") {
                                closes += 1;
                            } else {
                                conn = Some(c);
                            }
                        }
                        // Reset before any answer on a connection just made: the
                        // listener closed under its handshake. Checked against the time
                        // below.
                        Err(_) if fresh => {
                            never_taken = Some(Instant::now());
                            break;
                        }
                        Ok(reply) => lost.push(format!("{}: {}", reply.status, reply.text())),
                        Err(e) => lost.push(format!("{e:#}")),
                    }
                }
                (ok, lost, closes, never_taken)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Instant::now();
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(8)).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "exit status {status}\n{}", gw.log());
    // The process is gone; the failures below are told by what the clients saw, last in
    // the output rather than above the whole access log.
    drop(gw);
    let (mut ok, mut lost, mut closes, mut resets) = (0, Vec::new(), 0, 0);
    for c in clients {
        let (o, l, cl, never_taken) = c.await.unwrap();
        ok += o;
        lost.extend(l);
        closes += cl;
        if let Some(at) = never_taken {
            resets += 1;
            // The signal left after `term`, so the listener cannot have closed before
            // the drain delay was over: a fresh connection failing earlier is a bug.
            assert!(
                at >= term + DRAIN,
                "a new connection failed {:?} after SIGTERM, inside the drain delay",
                at - term
            );
        }
    }
    eprintln!(
        "keep-alive through SIGTERM: {ok} answered, {closes} told to close, {} lost, \
         {resets} new connections reset as the listener closed",
        lost.len()
    );
    assert!(
        closes >= 6,
        "the drain never said Connection: close ({closes})"
    );
    assert!(ok > 60, "too little traffic to prove anything ({ok})");
    assert!(
        lost.is_empty(),
        "requests lost on open connections: {lost:?}"
    );
}
