//! Process and build metrics, read from /proc when `/metrics` is scraped (so they cost
//! nothing between scrapes): resident memory, CPU seconds, open and maximum descriptors,
//! start time, thread count, and a constant `build_info` carrying the version.
use std::sync::OnceLock;

use prometheus::{Gauge, IntGauge, IntGaugeVec, Opts};

struct Gauges {
    rss: IntGauge,
    cpu: Gauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start: Gauge,
    threads: IntGauge,
}

fn gauges() -> Option<&'static Gauges> {
    static G: OnceLock<Option<Gauges>> = OnceLock::new();
    G.get_or_init(|| {
        let build = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; the labels say which build runs."),
            &["version"],
        )
        .ok()?;
        crate::metrics::register(build.clone())
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Some(Gauges {
            rss: crate::metrics::register(
                IntGauge::new("process_resident_memory_bytes", "Resident memory.").ok()?,
            ),
            cpu: crate::metrics::register(
                Gauge::new("process_cpu_seconds_total", "User and system CPU time.").ok()?,
            ),
            open_fds: crate::metrics::register(
                IntGauge::new("process_open_fds", "Open file descriptors.").ok()?,
            ),
            max_fds: crate::metrics::register(
                IntGauge::new("process_max_fds", "The file-descriptor limit.").ok()?,
            ),
            start: crate::metrics::register(
                Gauge::new(
                    "process_start_time_seconds",
                    "Unix time the process started.",
                )
                .ok()?,
            ),
            threads: crate::metrics::register(
                IntGauge::new("process_threads", "OS threads.").ok()?,
            ),
        })
    })
    .as_ref()
}

/// Registers the families (so they are listed from the first scrape) and refreshes them.
pub fn refresh() {
    let Some(g) = gauges() else { return };
    let Some(p) = read() else { return };
    g.rss.set(p.rss_bytes);
    g.cpu.set(p.cpu_seconds);
    g.open_fds.set(p.open_fds);
    g.max_fds.set(p.max_fds);
    g.start.set(p.start_time);
    g.threads.set(p.threads);
}

#[derive(Debug, Default, PartialEq)]
struct Process {
    rss_bytes: i64,
    cpu_seconds: f64,
    open_fds: i64,
    max_fds: i64,
    start_time: f64,
    threads: i64,
}

/// Linux's clock ticks per second; every platform Rust supports for Linux uses 100.
const TICKS: f64 = 100.0;
const PAGE: i64 = 4096;

fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    let mut p = parse(&stat, &boot, &limits)?;
    p.open_fds = open_fds;
    Some(p)
}

/// Parses /proc/self/stat (after the command name, which may hold spaces), the boot time
/// from /proc/stat and the soft descriptor limit from /proc/self/limits.
fn parse(stat: &str, boot: &str, limits: &str) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name, 0-based from `state`: utime 11, stime 12, threads 17,
    // starttime 19, rss (pages) 21.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    Some(Process {
        rss_bytes: num(21)? as i64 * PAGE,
        cpu_seconds: (num(11)? + num(12)?) / TICKS,
        open_fds: 0,
        max_fds,
        start_time: btime + num(19)? / TICKS,
        threads: num(17)? as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_with_a_spaced_name() {
        let stat =
            "4242 (my (odd) proc) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 12000 999 300 rest";
        let boot = "cpu 1 2 3\nbtime 1700000000\n";
        let limits = "Limit Soft Hard Units\nMax open files            1024                 4096                 files\n";
        let p = parse(stat, boot, limits).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_time, 1_700_000_120.0);
        assert_eq!(p.rss_bytes, 300 * 4096);
        assert_eq!(p.max_fds, 1024);
    }

    #[test]
    fn reads_this_process() {
        let p = read().unwrap();
        assert!(p.rss_bytes > 0 && p.open_fds > 0 && p.threads >= 1, "{p:?}");
    }
}
