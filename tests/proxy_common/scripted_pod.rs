//! A pod with scripted answers that records every request head it gets, for tests that
//! hold two ways of proxying to the same output (the plain lane against the usual path),
//! and the canonical form both outputs are compared in.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Heads the pod received, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// The answer the pod gives for a path.
pub fn answer_for(path: &str) -> (&'static [u8], bool) {
    match path {
        "/len" => (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Pod: a\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
            false,
        ),
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
            false,
        ),
        "/named" => (
            b"HTTP/1.1 201 Whatever\r\nConnection: X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\nServer: portcullis\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/empty" => (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nX-E: 1\r\n\r\n",
            false,
        ),
        "/zero" => (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        "/both" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
            true,
        ),
        "/early" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            false,
        ),
        "/close" => (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Until: close\r\n\r\nuntil the end",
            true,
        ),
        _ => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
    }
}

/// A pod that records each request head and answers from `answer_for`. On `/slow` it
/// waits before answering; on `/drop` it closes the connection without answering when
/// the connection already served a request (a pooled connection gone bad).
pub async fn scripted_pod(ip: &str) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    record.lock().unwrap().push(head);
                    if path == "/drop" && served > 0 {
                        return;
                    }
                    served += 1;
                    if path == "/slow" {
                        tokio::time::sleep(Duration::from_millis(800)).await;
                    }
                    let (answer, close) = match path.as_str() {
                        "/drop" | "/slow" => (
                            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
                            false,
                        ),
                        p => answer_for(p),
                    };
                    if sock.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Heads and answers with field names in lower case, the values that differ per run
/// (dates, request ids) masked, and each head's fields sorted by name (same-name fields
/// keep their order): the usual path's maps do not keep the order of distinct names once
/// a field was removed, and nothing may depend on it.
pub fn canonical(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let flush = |fields: &mut Vec<(String, String)>, out: &mut Vec<String>| {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(fields.drain(..).map(|(n, v)| format!("{n}: {v}")));
    };
    for line in text.split("\r\n") {
        match line.split_once(": ") {
            Some((name, value)) if !name.contains(' ') => {
                let name = name.to_ascii_lowercase();
                let value = match name.as_str() {
                    "date" if !value.starts_with("Mon, 01 Jan 2024") => "<now>",
                    "x-request-id" => "<id>",
                    _ => value,
                };
                fields.push((name, value.to_string()));
            }
            _ => {
                flush(&mut fields, &mut out);
                out.push(line.to_string());
            }
        }
    }
    flush(&mut fields, &mut out);
    out.join("\r\n")
}

/// The names of an answer head's fields, in order: what two answers whose values differ
/// (a reason naming each proxy's own pod) must still share.
pub fn field_names(answer: &str) -> Vec<String> {
    answer
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect()
}

/// The heads the pod got whose request line starts with `start`, in order.
pub fn heads_starting(seen: &Seen, start: &str) -> Vec<String> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|h| h.starts_with(start))
        .cloned()
        .collect()
}

/// A route policy that adds a response field (`x-policy: 1`), which keeps its requests off
/// the plain lane.
pub fn policy_adding_a_field() -> portcullis::ingress::model::policy::Policy {
    portcullis::ingress::model::policy::Policy {
        response_headers: vec![(
            http::HeaderName::from_static("x-policy"),
            http::HeaderValue::from_static("1"),
        )],
        ..Default::default()
    }
}
