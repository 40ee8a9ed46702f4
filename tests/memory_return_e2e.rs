//! After a wave of connections closes, the process gives the heap they used back to the
//! system (RSS falls again) instead of keeping it for good.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::time::Duration;

use e2e::{Portcullis, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 3000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test]
async fn heap_is_returned_after_many_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Portcullis::start(dir.path(), &[]).await;
    let base = rss_kib(gw.pid());

    let mut conns = Vec::with_capacity(CONNECTIONS);
    let mut buf = [0u8; 1024];
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(gw.http).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: nothing.test\r\n\r\n")
            .await
            .unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 404"));
        conns.push(c);
    }
    let held = rss_kib(gw.pid());
    assert!(
        held > base + 10 * 1024,
        "{CONNECTIONS} kept-alive connections should cost more than 10 MiB ({base} -> {held} KiB)"
    );
    drop(conns);

    let just_closed = {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rss_kib(gw.pid())
    };
    eventually(Duration::from_secs(20), "a trim is counted", || async {
        let reply = gw.admin_get("/metrics").await.ok()?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        text.lines()
            .any(|l| l.starts_with("portcullis_memory_trims_total ") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    let after = rss_kib(gw.pid());
    eprintln!(
        "RSS KiB: {base} at start, {held} with {CONNECTIONS} connections, {just_closed} just after they closed, {after} after the trim"
    );
    assert!(
        after < base + (held - base) / 3,
        "RSS did not fall back: {base} -> {held} -> {after} KiB"
    );
}
