//! Where access-log lines go: a bounded queue drained by a thread of its own, so a slow
//! or blocked stdout (a full pipe, a stalled log collector) never stalls a worker thread
//! of the data plane. When the queue is full, lines are dropped and counted
//! (`portcullis_access_log_dropped_total`) rather than waited for.
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};

use prometheus::IntCounter;

/// Lines the queue holds; at a few hundred bytes each, about a few MiB at most.
pub const QUEUE_LINES: usize = 16 * 1024;

static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::register(
        IntCounter::new(
            "access_log_dropped_total",
            "Access-log lines dropped because the log output could not keep up.",
        )
        .expect("valid metric definition"),
    )
});

/// A `MakeWriter` for tracing-subscriber whose writes queue a line for the log thread.
#[derive(Clone, Debug)]
pub struct NonBlocking {
    /// `None` when the log thread could not be started: lines are written in place.
    tx: Option<SyncSender<Vec<u8>>>,
}

impl NonBlocking {
    /// Starts the thread that writes queued lines to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(queue.max(1));
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || drain(rx, out))?;
        LazyLock::force(&DROPPED);
        Ok(NonBlocking { tx: Some(tx) })
    }

    /// The process-wide writer to stdout (its thread started on first use).
    pub fn stdout() -> Self {
        static STDOUT: OnceLock<NonBlocking> = OnceLock::new();
        STDOUT
            .get_or_init(|| {
                NonBlocking::spawn(std::io::stdout(), QUEUE_LINES).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no access-log thread; writing in place");
                    NonBlocking { tx: None }
                })
            })
            .clone()
    }

    /// Lines dropped so far.
    pub fn dropped() -> u64 {
        DROPPED.get()
    }
}

fn drain<W: Write>(rx: Receiver<Vec<u8>>, mut out: W) {
    while let Ok(line) = rx.recv() {
        if out.write_all(&line).is_err() {
            DROPPED.inc();
        }
        // Flush when the queue is empty, so lines appear promptly when traffic is low
        // and are batched into few writes when it is high.
        let mut batch = 0;
        while let Ok(more) = rx.try_recv() {
            batch += 1;
            if out.write_all(&more).is_err() {
                DROPPED.inc();
            }
            if batch > 256 {
                break;
            }
        }
        let _ = out.flush();
    }
}

/// One event's bytes, queued when the formatter is done with it.
pub struct Line {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let Some(tx) = &self.tx else {
            let _ = std::io::stdout().write_all(&buf);
            return;
        };
        match tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => DROPPED.inc(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(384),
            tx: self.tx.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

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

    #[test]
    fn a_blocked_output_drops_lines_instead_of_blocking_writers() {
        let gate = Arc::new(Barrier::new(2));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Blocked {
            gate: gate.clone(),
            seen: seen.clone(),
            first: true,
        };
        let w = NonBlocking::spawn(out, 4).unwrap();
        let before = NonBlocking::dropped();
        // The log thread takes line 0 and blocks on it; 4 more fill the queue; the rest
        // must be dropped, and none of these writes may block.
        for i in 0..20 {
            let mut line = w.make_writer();
            writeln!(line, "line {i}").unwrap();
        }
        assert!(
            NonBlocking::dropped() - before >= 15 - 1,
            "lines were not dropped"
        );
        gate.wait();
        // Released: what was queued comes out, in order.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("line 0\n")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("line 0\n"), "{text}");
        assert!(text.lines().count() <= 6, "{text}");
    }
}
