//! The plain lane against the usual path: the same raw requests through a proxy with the
//! lane on and one with it off, to a scripted pod that records the heads it gets. What the
//! pod receives and what the client gets back must match, field for field (names compared
//! without case; request ids and dates masked), for every answer framing.
mod proxy_common;

use std::net::SocketAddr;
use std::time::Duration;

use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::request::gateway::ProxyConfig;
use proxy_common::scripted_pod::{
    Seen, canonical, field_names, heads_starting, policy_adding_a_field, scripted_pod,
};
use proxy_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What every exchange ends with, so the proxy closes the connection when it is done.
const LAST: &str = "GET /end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Sends `raw` and then `LAST` on a fresh connection and reads until the proxy closes it.
async fn exchange(proxy: SocketAddr, raw: &str) -> String {
    let mut sock = TcpStream::connect(proxy).await.unwrap();
    sock.write_all(format!("{raw}{LAST}").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

struct Pair {
    lane: TestProxy,
    usual: TestProxy,
    lane_seen: Seen,
    usual_seen: Seen,
}

async fn pair(policy: impl Fn() -> Policy) -> Pair {
    let (lane_pod, lane_seen) = scripted_pod("127.0.0.91").await;
    let (usual_pod, usual_seen) = scripted_pod("127.0.0.92").await;
    let lane = start_proxy(
        route(backend("default/web:80", &[lane_pod]), policy()),
        ProxyConfig::default(),
    )
    .await;
    let usual = start_proxy(
        route(backend("default/web:80", &[usual_pod]), policy()),
        ProxyConfig {
            plain_lane: false,
            ..ProxyConfig::default()
        },
    )
    .await;
    Pair {
        lane,
        usual,
        lane_seen,
        usual_seen,
    }
}

/// The request both proxies get, spelled with mixed-case names so the lane's pass-through
/// shows: the usual path writes names from its map, in lower case.
fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: probe/1\r\nAccept: */*\r\n{extra}\r\n"
    )
}

impl Pair {
    /// Both proxies' answers to `raw`, canonical, after one warm-up request each so the
    /// lane finds an idle pooled connection.
    async fn both(&self, raw: &str) -> (String, String) {
        let warm = request("/len", "");
        exchange(self.lane.addr, &warm).await;
        exchange(self.usual.addr, &warm).await;
        let lane = exchange(self.lane.addr, raw).await;
        let usual = exchange(self.usual.addr, raw).await;
        (canonical(&lane), canonical(&usual))
    }

    /// The last head each pod got before `LAST`'s.
    fn last_heads(&self) -> (String, String) {
        let last = |seen: &Seen| {
            let seen = seen.lock().unwrap();
            let head = seen.iter().rev().find(|h| !h.starts_with("GET /end "));
            head.cloned().unwrap()
        };
        (last(&self.lane_seen), last(&self.usual_seen))
    }
}

#[tokio::test]
async fn the_pod_and_the_client_see_the_same_through_either_lane() {
    let p = pair(Policy::default).await;
    for path in [
        "/len", "/chunked", "/named", "/empty", "/zero", "/early", "/close", "/both",
    ] {
        let (lane, usual) = p.both(&request(path, "Connection: keep-alive\r\n")).await;
        assert!(
            lane.starts_with("HTTP/1.1 "),
            "{path}: no answer through the lane: {lane:?}"
        );
        assert_eq!(lane, usual, "{path}: answers differ");
        let (lane_head, usual_head) = p.last_heads();
        // The lane passed the client's own spelling on; the usual path wrote its map's.
        assert!(
            lane_head.contains("\r\nUser-Agent: probe/1\r\n"),
            "{lane_head}"
        );
        assert!(
            usual_head.contains("\r\nuser-agent: probe/1\r\n"),
            "{usual_head}"
        );
        assert_eq!(
            canonical(&lane_head),
            canonical(&usual_head),
            "{path}: heads differ"
        );
    }
}

#[tokio::test]
async fn answers_keep_their_framing_and_lose_hop_by_hop_fields() {
    let p = pair(Policy::default).await;
    let (lane, _) = p.both(&request("/chunked", "")).await;
    assert!(lane.contains("transfer-encoding: chunked\r\n"), "{lane}");
    assert!(
        lane.contains("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 404"),
        "{lane}"
    );
    assert!(!lane.contains("trailer:"), "{lane}");
    let (lane, _) = p.both(&request("/named", "")).await;
    assert!(lane.starts_with("HTTP/1.1 201 Created\r\n"), "{lane}");
    assert!(!lane.contains("x-drop"), "{lane}");
    assert!(lane.contains("x-keep: 2\r\n"), "{lane}");
    assert!(lane.contains("date: Mon, 01 Jan 2024"), "{lane}");
    let (lane, _) = p.both(&request("/close", "")).await;
    // A body that ends with the pod's connection goes to the client chunked.
    assert!(lane.contains("transfer-encoding: chunked\r\n"), "{lane}");
    assert!(lane.contains("until the end"), "{lane}");
    let (lane, _) = p.both(&request("/both", "")).await;
    let both = lane.split("HTTP/1.1 404").next().unwrap_or_default();
    // A length beside chunked framing describes nothing: only the chunked body goes on.
    assert!(!both.contains("content-length"), "{lane}");
    assert!(both.contains("transfer-encoding: chunked\r\n"), "{lane}");
    assert!(both.ends_with("2\r\nhi\r\n0\r\n\r\n"), "{lane}");
    let (lane, _) = p.both(&request("/empty", "")).await;
    let no_content = lane.split("HTTP/1.1 404").next().unwrap_or_default();
    assert!(
        no_content.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{lane}"
    );
    assert!(!no_content.contains("content-length"), "{lane}");
}

#[tokio::test]
async fn a_client_that_asks_to_close_is_answered_and_closed() {
    let p = pair(Policy::default).await;
    let (lane, usual) = p
        .both(&format!(
            "{}{}",
            request("/len", "Connection: close\r\n"),
            request("/len", "")
        ))
        .await;
    assert_eq!(lane, usual);
    assert_eq!(lane.matches("HTTP/1.1 200").count(), 1, "{lane}");
    assert!(lane.contains("connection: close\r\n"), "{lane}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let p = pair(Policy::default).await;
    let raw = format!(
        "{}{}{}",
        request("/len", ""),
        request("/zero", ""),
        request("/named", "Connection: close\r\n")
    );
    let (lane, usual) = p.both(&raw).await;
    assert_eq!(lane, usual);
    let statuses: Vec<&str> = lane
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &lane[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "201"], "{lane}");
}

#[tokio::test]
async fn targets_the_uri_rules_refuse_get_400_with_the_access_log_on_or_off() {
    // The lane parses the target for the access record; with the log off it still must,
    // or it would pass to the pod what the usual path refuses.
    for (i, access_log) in [true, false].into_iter().enumerate() {
        let (pod, seen) = scripted_pod(if i == 0 { "127.0.0.95" } else { "127.0.0.96" }).await;
        let proxy = start_proxy(
            route(backend("default/web:80", &[pod]), Policy::default()),
            ProxyConfig {
                access_log,
                ..ProxyConfig::default()
            },
        )
        .await;
        // Refused by the URI rules and not before: `<` in the query passes every other
        // check of the lane.
        for target in ["/?a<b", "/?q=<x>", "/a<b"] {
            let got = exchange(proxy.addr, &request(target, "")).await;
            assert!(
                got.starts_with("HTTP/1.1 400"),
                "log {access_log}, {target}: {got}"
            );
        }
        let seen = seen.lock().unwrap();
        assert!(
            !seen.iter().any(|h| h.contains('<')),
            "log {access_log}: the pod got {seen:?}"
        );
    }
}

#[tokio::test]
async fn requests_the_lane_does_not_take_still_match() {
    let p = pair(Policy::default).await;
    for extra in [
        "X-Forwarded-For: 6.6.6.6\r\n",
        "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
        "TE: trailers\r\n",
        "Content-Length: 0\r\n",
    ] {
        let (lane, usual) = p.both(&request("/len", extra)).await;
        assert_eq!(lane, usual, "{extra:?}");
        let (lane_head, usual_head) = p.last_heads();
        // Declined: the usual path wrote both heads.
        assert!(
            lane_head.contains("\r\nuser-agent: probe/1\r\n"),
            "{lane_head}"
        );
        assert_eq!(canonical(&lane_head), canonical(&usual_head), "{extra:?}");
    }
    // A path that normalises to another, and an HTTP/1.0 request.
    for raw in [
        "GET /a/../len HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "GET /len HTTP/1.0\r\nHost: x\r\n\r\n".to_string(),
    ] {
        let (lane, usual) = p.both(&raw).await;
        assert_eq!(lane, usual, "{raw:?}");
    }
}

#[tokio::test]
async fn routes_with_a_policy_go_the_usual_way() {
    let p = pair(policy_adding_a_field).await;
    let (lane, usual) = p.both(&request("/len", "")).await;
    assert_eq!(lane, usual);
    assert!(lane.contains("x-policy: 1\r\n"), "{lane}");
    let (lane_head, _) = p.last_heads();
    assert!(
        lane_head.contains("\r\nuser-agent: probe/1\r\n"),
        "{lane_head}"
    );
}

#[tokio::test]
async fn a_pooled_connection_that_breaks_sends_the_request_the_usual_way() {
    let p = pair(Policy::default).await;
    // Warm-up leaves an idle connection; the pod drops it on the next request.
    let (lane, usual) = p.both(&request("/drop", "")).await;
    assert!(lane.starts_with("HTTP/1.1 200 OK\r\n"), "{lane}");
    assert_eq!(lane, usual);
    let drops = heads_starting(&p.lane_seen, "GET /drop");
    assert_eq!(
        drops.len(),
        2,
        "the lane's attempt, then the usual one: {drops:?}"
    );
    assert!(drops[0].contains("User-Agent: probe/1"), "{}", drops[0]);
}

#[tokio::test]
async fn no_answer_within_the_read_timeout_is_a_504_from_either_lane() {
    let p = pair(|| Policy {
        read_timeout: Some(Duration::from_millis(200)),
        ..Policy::default()
    })
    .await;
    let (lane, usual) = p.both(&request("/slow", "")).await;
    assert!(
        lane.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{lane}"
    );
    // The reasons name each proxy's own pod; the fields are the same.
    assert_eq!(field_names(&lane), field_names(&usual));
    assert!(
        usual.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{usual}"
    );
    let (lane_head, _) = p.last_heads();
    assert!(lane_head.contains("User-Agent: probe/1"), "{lane_head}");
}

/// The lane's read timer stays with the pooled connection and is moved later for each
/// request: after quick answers, and after firing unwatched while the connection sat idle,
/// it must neither cut off a quick answer nor let a slow one through, and must not fire
/// before the timeout.
#[tokio::test]
async fn the_read_timer_kept_with_a_pooled_connection_fires_on_time_after_reuse_and_idling() {
    let timeout = Duration::from_millis(300);
    let p = pair(|| Policy {
        read_timeout: Some(timeout),
        ..Policy::default()
    })
    .await;
    let quick = || async {
        for _ in 0..3 {
            let answer = exchange(p.lane.addr, &request("/len", "")).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        }
    };
    quick().await;
    // Longer than the read timeout: the connection's timer comes due with nobody waiting.
    tokio::time::sleep(timeout + Duration::from_millis(200)).await;
    quick().await;
    let started = std::time::Instant::now();
    let slow = exchange(p.lane.addr, &request("/slow", "")).await;
    let took = started.elapsed();
    assert!(
        slow.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{slow}"
    );
    assert!(
        took >= timeout,
        "cut off after {took:?}, before the timeout"
    );
    // The lane does reuse pooled connections here: the pod drops one that served before
    // on `/drop`, and the lane then sends the request again the usual way.
    let again = exchange(p.lane.addr, &request("/drop", "")).await;
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
    assert_eq!(heads_starting(&p.lane_seen, "GET /drop").len(), 2);
}

#[tokio::test]
async fn hsts_and_server_tokens_are_added_as_the_usual_path_adds_them() {
    let (lane_pod, lane_seen) = scripted_pod("127.0.0.93").await;
    let (usual_pod, usual_seen) = scripted_pod("127.0.0.94").await;
    let settings = portcullis::config::EdgeSettings {
        hsts: true,
        server_tokens: true,
        ..Default::default()
    };
    let edge = portcullis::ingress::request::edge_headers::EdgeHeaders::from_settings(&settings);
    assert!(edge.is_some());
    let start = |pod, plain_lane| {
        start_proxy_with(
            TestRoute {
                route: route(backend("default/web:80", &[pod]), Policy::default()),
                regex: None,
                tls_hosts: vec!["shop.example"],
            },
            ProxyConfig {
                edge_headers: edge.clone(),
                plain_lane,
                ..ProxyConfig::default()
            },
            portcullis::ingress::request::gateway::Scheme::Https,
        )
    };
    let p = Pair {
        lane: start(lane_pod, true).await,
        usual: start(usual_pod, false).await,
        lane_seen,
        usual_seen,
    };
    let (lane, usual) = p.both(&request("/named", "")).await;
    assert_eq!(lane, usual);
    let (lane_head, _) = p.last_heads();
    assert!(lane_head.contains("User-Agent: probe/1"), "{lane_head}");
    assert!(
        lane_head.contains("x-forwarded-proto: https\r\n"),
        "{lane_head}"
    );
    let named = lane.split("HTTP/1.1 404").next().unwrap_or_default();
    assert!(
        named.contains("strict-transport-security: max-age="),
        "{lane}"
    );
    assert!(named.contains("server: portcullis/"), "{lane}");
    // A host without TLS gets no HSTS, from either.
    let other = "GET /len HTTP/1.1\r\nHost: plain.example\r\n\r\n";
    let (lane, usual) = p.both(other).await;
    assert_eq!(lane, usual);
    assert!(!lane.contains("strict-transport-security"), "{lane}");
}
