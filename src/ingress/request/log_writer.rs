//! Where access-log entries go: a bounded queue drained by a thread of its own, which
//! formats each entry (`access_log::write_line`) and writes them in batches. A worker
//! thread of the data plane only moves the entry into the queue: no formatting, no write
//! system call, and no wake-up of the log thread (it drains on a short tick instead of
//! sleeping on the queue, so a send never has a sleeper to wake). A slow or blocked
//! stdout (a full pipe, a stalled log collector) fills the queue; then entries are
//! dropped and counted (`portcullis_access_log_dropped_total`) rather than waited for.
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::IntCounter;

use crate::ingress::request::access_log::{self, Entry};

/// Entries the queue holds: at the tick below, headroom for about 800,000 requests/s.
pub(crate) const QUEUE_ENTRIES: usize = 8 * 1024;

/// How often the log thread drains the queue: lines appear within this.
const TICK: Duration = Duration::from_millis(10);

/// Bytes gathered before one write to the output.
const BATCH_BYTES: usize = 64 * 1024;

static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::register(
        IntCounter::new(
            "access_log_dropped_total",
            "Access-log lines dropped because the log output could not keep up.",
        )
        .expect("valid metric definition"),
    )
});

/// The process-wide queue, once `stdout()` started the log thread.
static STDOUT: OnceLock<SyncSender<Entry>> = OnceLock::new();

/// Starts the thread that writes access-log lines to stdout (the binary calls this
/// once, when the access log is on). Later calls do nothing.
pub fn stdout() -> std::io::Result<()> {
    if STDOUT.get().is_some() {
        return Ok(());
    }
    let tx = spawn(std::io::stdout(), QUEUE_ENTRIES)?;
    let _ = STDOUT.set(tx);
    Ok(())
}

/// Queues `entry` for stdout; without a log thread it is dropped silently.
pub(crate) fn submit(entry: Entry) {
    if let Some(tx) = STDOUT.get() {
        send(tx, entry);
    }
}

fn send(tx: &SyncSender<Entry>, entry: Entry) {
    match tx.try_send(entry) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => DROPPED.inc(),
    }
}

/// Starts a log thread writing to `out`; the sender feeds it.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    queue: usize,
) -> std::io::Result<SyncSender<Entry>> {
    let (tx, rx) = sync_channel(queue.max(1));
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || drain(rx, out))?;
    LazyLock::force(&DROPPED);
    Ok(tx)
}

/// Lines dropped so far.
pub fn dropped() -> u64 {
    DROPPED.get()
}

fn drain<W: Write>(rx: Receiver<Entry>, mut out: W) {
    let mut buf = Vec::with_capacity(BATCH_BYTES + 1024);
    loop {
        let mut lines = 0u64;
        let disconnected = loop {
            match rx.try_recv() {
                Ok(entry) => {
                    access_log::write_line(&entry, &mut buf);
                    lines += 1;
                    if buf.len() >= BATCH_BYTES {
                        flush(&mut out, &mut buf, &mut lines);
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        flush(&mut out, &mut buf, &mut lines);
        if disconnected {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// Writes what `buf` holds; a failed write loses those lines, counted as dropped.
fn flush<W: Write>(out: &mut W, buf: &mut Vec<u8>, lines: &mut u64) {
    if buf.is_empty() {
        return;
    }
    if out.write_all(buf).and_then(|()| out.flush()).is_err() {
        DROPPED.inc_by(*lines);
    }
    buf.clear();
    *lines = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::Instant;

    /// An output that blocks until released, like a pipe nobody reads.
    struct Blocked {
        gate: Arc<Barrier>,
        seen: Arc<Mutex<Vec<u8>>>,
        first: bool,
    }

    impl Write for Blocked {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.first {
                self.first = false;
                self.gate.wait();
            }
            self.seen.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(status: u16) -> Entry {
        Entry {
            client: "10.0.0.1".parse().unwrap(),
            host: http::HeaderValue::from_static("example.com"),
            status,
            ..Entry::default()
        }
    }

    fn statuses(text: &str) -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_blocked_output_drops_entries_instead_of_blocking_senders() {
        let gate = Arc::new(Barrier::new(2));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Blocked {
            gate: gate.clone(),
            seen: seen.clone(),
            first: true,
        };
        let tx = spawn(out, 4).unwrap();
        // The first entry reaches the log thread, whose write then blocks.
        send(&tx, entry(100));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(tx.try_send(entry(101)), Err(TrySendError::Full(_)))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The queue is full: none of these may block, all are dropped.
        let before = dropped();
        for i in 0..20 {
            send(&tx, entry(200 + i));
        }
        assert!(dropped() - before >= 20, "entries were not dropped");
        gate.wait();
        drop(tx);
        // Released: what was queued comes out, in order, and nothing that was dropped.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
            let got = statuses(&text);
            if got.len() >= 5 || Instant::now() > deadline {
                assert_eq!(got.first(), Some(&100), "{text}");
                assert!(got.iter().all(|s| *s < 200), "{text}");
                assert!(got[1..].iter().all(|s| *s == 101), "{text}");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn entries_come_out_as_lines_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let tx = spawn(Shared(seen.clone()), 1024).unwrap();
        for i in 0..500 {
            send(&tx, entry(200 + (i % 300) as u16));
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(5);
        while statuses(&String::from_utf8_lossy(&seen.lock().unwrap())).len() < 500
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = statuses(&String::from_utf8(seen.lock().unwrap().clone()).unwrap());
        let want: Vec<u64> = (0..500).map(|i| 200 + (i % 300) as u64).collect();
        assert_eq!(got, want);
    }
}
