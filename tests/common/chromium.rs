//! A headless Chromium from Debian's packages, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4), so a test can keep one
//! page open and watch it change, the way a person watches a dashboard.
//!
//! Include it with `#[path = "common/chromium.rs"] mod chromium;`.
//!
//! Failure behaviour: every call has a timeout; the browser is killed when its `Browser`
//! drops (also when a test panics).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// True when the `CI` variable says this is a CI run (there a missing browser is a failure).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn find() -> Option<PathBuf> {
    on_path(&["chromium", "chromium-browser"])
}

/// `apt-get <args>`, the tail of its output kept for the explanation when it fails.
fn apt(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=120"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    tail.reverse();
    Err(format!(
        "apt-get {} failed ({}): {}",
        args.join(" "),
        out.status,
        tail.join(" | ")
    ))
}

/// The browser binary, installed from the Debian archive when it is not there yet.
pub fn find_or_install() -> Result<PathBuf, String> {
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("chromium not found: installing it with apt-get");
    let install = ["install", "-y", "--no-install-recommends", "chromium"];
    if let Err(first) = apt(&install) {
        // A fresh machine (or container) has no package lists yet.
        eprintln!("{first}; running apt-get update and trying again");
        apt(&["update"])?;
        apt(&install)?;
    }
    find().ok_or_else(|| "apt-get succeeded but no chromium binary is on PATH".into())
}

/// One open page.
pub struct Tab {
    session: String,
}

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    to: File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Browser {
    /// Starts a browser with a fresh profile. The pipes are FIFOs the shell connects to
    /// fds 3 and 4, which keeps the test free of `unsafe` descriptor juggling.
    pub fn launch(binary: &Path) -> anyhow::Result<Browser> {
        let scratch = tempfile::tempdir()?;
        let to_browser = scratch.path().join("cdp-in");
        let from_browser = scratch.path().join("cdp-out");
        for fifo in [&to_browser, &from_browser] {
            let status = Command::new("mkfifo").arg(fifo).status()?;
            if !status.success() {
                bail!("mkfifo {} failed: {status}", fifo.display());
            }
        }
        let log = scratch.path().join("chromium.log");
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<"$CDP_IN" 4>"$CDP_OUT""#)
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.path().join("profile").display()
            ))
            .arg("about:blank")
            .env("CDP_IN", &to_browser)
            .env("CDP_OUT", &from_browser)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting chromium")?;
        // Opening a FIFO waits for the other end; the shell opens them in this order.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let opened = OpenOptions::new()
                .write(true)
                .open(&to_browser)
                .and_then(|w| File::open(&from_browser).map(|r| (w, r)));
            let _ = tx.send(opened);
        });
        let mut browser_child = child;
        let (to, from) = match rx.recv_timeout(CALL_TIMEOUT) {
            Ok(Ok(pipes)) => pipes,
            other => {
                let _ = browser_child.kill();
                bail!(
                    "chromium did not open its DevTools pipes: {other:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let (reply_tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && reply_tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Ok(Browser {
            child: browser_child,
            to,
            replies,
            next_id: 1,
            log,
            _scratch: scratch,
        })
    }

    /// Sends one command and waits for its answer (events in between are skipped).
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(0);
        self.to.write_all(&bytes)?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .map_err(|e| anyhow!("{method}: no answer ({e})\n{}", self.log()))?;
            if reply["id"] != id {
                continue;
            }
            if let Some(err) = reply.get("error") {
                bail!("{method}: {err}");
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Opens `url` in a new tab (its own session storage).
    pub fn open(&mut self, url: &str) -> anyhow::Result<Tab> {
        let target = self.call(None, "Target.createTarget", json!({"url": url}))?;
        let target_id = target["targetId"]
            .as_str()
            .context("no targetId")?
            .to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_string();
        Ok(Tab { session })
    }

    /// The value of a JavaScript expression in `tab`.
    pub fn eval(&mut self, tab: &Tab, expression: &str) -> anyhow::Result<Value> {
        let r = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("{expression}: {ex}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// The page's current DOM, serialised.
    pub fn dom(&mut self, tab: &Tab) -> anyhow::Result<String> {
        // Null until the first byte of the page has been parsed.
        let v = self.eval(
            tab,
            "document.documentElement ? document.documentElement.outerHTML : ''",
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Polls the DOM of `tab` until `pred` holds; panics with the last DOM after `timeout`.
    pub fn wait_dom(
        &mut self,
        tab: &Tab,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            // An evaluation can fail while the page is still navigating: try again.
            let dom = match self.dom(tab) {
                Ok(dom) if pred(&dom) => return dom,
                Ok(dom) => dom,
                Err(e) => format!("(no DOM: {e:#})"),
            };
            if Instant::now() > deadline {
                panic!("{what}: not shown within {timeout:?}\n--- DOM ---\n{dom}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the browser wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close, the browser takes its renderer processes with it; killed, it
        // leaves them to notice on their own.
        let close = json!({"id": 0, "method": "Browser.close"});
        if let Ok(mut bytes) = serde_json::to_vec(&close) {
            bytes.push(0);
            let _ = self.to.write_all(&bytes);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
