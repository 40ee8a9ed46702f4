//! The dashboard as a person sees it: the real `portcullis serve` (with an admin token),
//! its page open in a real headless Chromium from Debian's packages, and the rendered DOM
//! checked for the served route and the background audit's score and findings, then,
//! without reloading, for an endpoint that turns not-ready, a denied review and the
//! audit finding of a workload added to the manifests appearing.
//!
//! Chromium is installed with apt when missing. When it cannot be had, the test says why
//! and passes without asserting, unless `CI` is set: there a missing browser fails it.
#[path = "common/chromium.rs"]
mod chromium;
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chromium::Browser;
use common::{Client, Proto};
use e2e::{NS, Portcullis, http_get, ingress, ingress_class, pod, service, slice};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::task::block_in_place;

const TOKEN: &str = "dash-e2e-token";
const HOST: &str = "dash.example.test";
const WEBHOOK_HOST: &str = "portcullis.portcullis.svc";
/// How long the page may take to show a change.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);

/// The `<tr …>…</tr>` of `dom` that contains `needle`.
fn row<'a>(dom: &'a str, needle: &str) -> Option<&'a str> {
    let at = dom.find(needle)?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")?;
    Some(&dom[start..end])
}

/// The `<table id="{id}">…</table>` of `dom`.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("<table id=\"{id}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no table {id}:\n{dom}"));
    let end = start + dom[start..].find("</table>").unwrap_or(dom.len() - start);
    &dom[start..end]
}

/// GET `path` on the admin listener with the token.
async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let mut c = Client::plain(admin, Proto::H1).await.unwrap();
    let req = Request::get(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = c.send(req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

fn endpoint_state(routes: &Value, addr: SocketAddr) -> Option<String> {
    routes["routes"]
        .as_array()?
        .iter()
        .flat_map(|r| r["endpoints"].as_array().into_iter().flatten())
        .find(|e| e["address"] == addr.to_string())
        .and_then(|e| e["state"].as_str().map(str::to_string))
}

/// A Pod review the default rules deny: it requests more memory than its limit.
fn greedy_review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d9a0f5e-0000-4000-8000-00000000da5b",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS,
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "greedy-pod", "namespace": NS},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "busybox:1.36",
                    "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}
                }]}
            }
        }
    })
}

/// The page's poll counter (how many state documents it has rendered).
fn polls(dom: &str) -> u32 {
    dom.split("data-polls=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A Deployment the default rules find fault with: its image has no fixed tag.
fn untagged_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "risky", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "risky"}},
            "template": {
                "metadata": {"labels": {"app": "risky"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:latest"}]}
            }
        }
    })
}

/// The overall score the page shows, when it shows one.
fn audit_score(dom: &str) -> Option<u64> {
    let at = dom.find("id=\"audit-score\"")?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    rest[start..end].trim().parse().ok()
}

/// The first number cell of a table row.
fn first_number(row: &str) -> Option<f64> {
    row.split("<td class=\"num\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let binary = match tokio::task::spawn_blocking(chromium::find_or_install)
        .await
        .unwrap()
    {
        Ok(b) => b,
        Err(why) if chromium::in_ci() => panic!("CI is set and chromium is unavailable: {why}"),
        Err(why) => {
            eprintln!("SKIPPED (CI unset): chromium is unavailable: {why}");
            return;
        }
    };

    let (a, _a) = pod("127.0.0.2", "pod-a").await;
    let (b, _b) = pod("127.0.0.3", "pod-b").await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    e2e::write_atomic(
        m,
        "10-ingress.yaml",
        &e2e::yaml(&[
            ingress_class(),
            service("web"),
            ingress("shop", HOST, None, &[("/shop", "web")], &[]),
        ]),
    );
    e2e::write_atomic(
        m,
        "30-slices.yaml",
        &e2e::yaml(&[slice("web", "a", a, true), slice("web", "b", b, true)]),
    );
    // Audits a second apart at most (the default is 30 s), so an edit shows up quickly.
    let settings_dir = tempfile::tempdir().unwrap();
    let settings = settings_dir.path().join("settings.yaml");
    std::fs::write(&settings, "dashboard: {auditMinIntervalSeconds: 1}\n").unwrap();
    let settings = settings.display().to_string();
    let gw = Portcullis::start(m, &["--admin-token", TOKEN, "--config", &settings]).await;
    for _ in 0..4 {
        let reply = http_get(gw.http, HOST, "/shop").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Browser calls block; the echo pods share this runtime, so keep a worker free.
    let mut browser = block_in_place(|| Browser::launch(&binary)).unwrap();

    // Without the token the page loads but shows no data, only the request for it.
    let locked = block_in_place(|| {
        let tab = browser
            .open(&format!("http://{}/dashboard", gw.admin))
            .unwrap();
        browser.wait_dom(&tab, SHOWN_WITHIN, "the token prompt", |d| {
            d.contains("this dashboard needs the admin token")
        })
    });
    assert!(!locked.contains(HOST), "data shown without the token");

    // With the token (from the fragment, as a person would paste the link).
    let tab = block_in_place(|| {
        browser
            .open(&format!("http://{}/dashboard#token={TOKEN}", gw.admin))
            .unwrap()
    });
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "the first state", |d| polls(d) >= 1)
    });
    let route = row(table(&dom, "routes"), HOST)
        .unwrap_or_else(|| panic!("no route row for {HOST}:\n{dom}"));
    for cell in ["/shop", "Prefix", "e2e/shop", "e2e/web:80"] {
        assert!(route.contains(cell), "route row lacks {cell}: {route}");
    }
    for addr in [a, b] {
        let ep = format!("data-address=\"{addr}\" data-state=\"ready\"");
        assert!(dom.contains(&ep), "{addr} not shown ready:\n{dom}");
    }
    let traffic = row(table(&dom, "traffic"), "<td>e2e/shop</td>")
        .unwrap_or_else(|| panic!("no traffic row:\n{dom}"));
    assert!(traffic.contains(">4<"), "4 requests not counted: {traffic}");
    let polls_before = polls(&dom);

    // The background audit of the manifests: a score, and the Ingress without TLS among
    // the failing checks.
    let tls_row = "data-check=\"tlsSettingsMissing\"";
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "the first audit", |d| {
            d.contains(tls_row) && audit_score(d).is_some()
        })
    });
    let score = audit_score(&dom).unwrap_or_else(|| panic!("no audit score:\n{dom}"));
    assert!(score <= 100, "score {score}");
    let finding = row(table(&dom, "audit-findings"), tls_row)
        .unwrap_or_else(|| panic!("no tlsSettingsMissing row:\n{dom}"));
    for cell in [
        "Ingress e2e/shop",
        "tlsSettingsMissing",
        ">warning<",
        "spec.tls",
    ] {
        assert!(finding.contains(cell), "finding lacks {cell}: {finding}");
    }
    let ns = row(table(&dom, "audit-namespaces"), "<td>e2e</td>")
        .unwrap_or_else(|| panic!("no namespace score for e2e:\n{dom}"));
    assert!(ns.contains("badge"), "namespace score not shown: {ns}");
    assert!(
        !dom.contains("tagNotSpecified"),
        "a finding before its workload exists:\n{dom}"
    );
    assert!(
        !dom.contains("\"findings\""),
        "the audit is dumped as JSON:\n{dom}"
    );

    // An EndpointSlice edit turns pod-b not ready; the open page shows it by itself.
    e2e::write_atomic(
        m,
        "30-slices.yaml",
        &e2e::yaml(&[slice("web", "a", a, true), slice("web", "b", b, false)]),
    );
    let b_row = format!("data-address=\"{b}\" data-state=\"not-ready\"");
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "pod-b not ready", |d| {
            d.contains(&b_row)
        })
    });
    assert!(
        polls(&dom) > polls_before,
        "the page was not updated by its own polling"
    );
    let ep = row(table(&dom, "endpoints"), &b_row).unwrap_or_else(|| panic!("{dom}"));
    assert!(ep.contains(">not-ready<"), "state not shown as text: {ep}");
    assert!(
        ep.contains("<td>no</td>"),
        "pod-b still takes traffic: {ep}"
    );
    assert!(dom.contains(&format!("data-address=\"{a}\" data-state=\"ready\"")));
    // The JSON says the same as the page.
    let routes = admin_json(gw.admin, "/routes").await;
    assert_eq!(endpoint_state(&routes, b).as_deref(), Some("not-ready"));

    // More traffic, and a review the webhook denies: both appear on the open page.
    for _ in 0..6 {
        let reply = http_get(gw.http, HOST, "/shop").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let mut c = Client::tls(gw.webhook, WEBHOOK_HOST, &gw.webhook_ca(), Proto::H1)
        .await
        .unwrap();
    let req = Request::post("/validate")
        .header("host", WEBHOOK_HOST)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&greedy_review()).unwrap(),
        )))
        .unwrap();
    let reply = c.send(req).await.unwrap();
    let answer: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "the denied review", |d| {
            d.contains("Pod e2e/greedy-pod")
        })
    });
    let decision = row(table(&dom, "decisions"), "Pod e2e/greedy-pod")
        .unwrap_or_else(|| panic!("no decision row for the denied pod:\n{dom}"));
    assert!(decision.contains("data-outcome=\"denied\""), "{decision}");
    assert!(decision.contains(">denied<"), "{decision}");
    assert!(decision.contains("requestAboveLimit"), "{decision}");
    assert!(decision.contains("CREATE"), "{decision}");

    // Counters are sampled each second: the rate follows within a poll or two.
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "10 requests with a rate", |d| {
            row(table(d, "traffic"), "<td>e2e/shop</td>")
                .is_some_and(|r| r.contains(">10<") && first_number(r).is_some_and(|n| n > 0.0))
        })
    });
    assert!(
        dom.contains("<li class=\"empty\">no problems</li>"),
        "a clean configuration shows problems:\n{dom}"
    );

    // A workload added to the manifests is audited and its finding appears on the open
    // page, without a reload.
    let polls_before = polls(&dom);
    e2e::write_atomic(m, "40-workloads.yaml", &e2e::yaml(&[untagged_deployment()]));
    let tag_row = "data-check=\"tagNotSpecified\"";
    let dom = block_in_place(|| {
        browser.wait_dom(&tab, SHOWN_WITHIN, "the new workload's finding", |d| {
            d.contains(tag_row)
        })
    });
    assert!(polls(&dom) > polls_before, "not updated by its own polling");
    let finding = row(table(&dom, "audit-findings"), tag_row)
        .unwrap_or_else(|| panic!("no tagNotSpecified row:\n{dom}"));
    for cell in ["Deployment e2e/risky", ">danger<", "nginx:latest"] {
        assert!(finding.contains(cell), "finding lacks {cell}: {finding}");
    }
    // Dangers are listed first.
    let findings = table(&dom, "audit-findings");
    let first_danger = findings.find("data-severity=\"danger\"");
    let first_warning = findings.find("data-severity=\"warning\"");
    assert!(first_danger < first_warning, "{findings}");
    // The JSON says the same as the page.
    let state = admin_json(gw.admin, "/dashboard/state.json").await;
    let audit = &state["audit"];
    assert!(audit["objects"].as_u64().is_some_and(|n| n >= 6), "{audit}");
    assert!(
        audit["findings"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["check"] == "tagNotSpecified"
                && f["name"] == "risky"
                && f["severity"] == "danger")),
        "{audit}"
    );
    assert_eq!(audit_score(&dom), audit["score"].as_u64(), "{audit}");
}
