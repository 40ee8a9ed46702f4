//! SNI certificate selection on a real TLS listener: exact name, one-label wildcard, and
//! the default for unknown names and for clients that send no SNI.
mod common;

use std::sync::Arc;

use common::{Client, Proto, leaf_der};
use portcullis::tls::{CertMap, DevCerts, SniResolver, server_config};

struct Fixture {
    default: DevCerts,
    exact: DevCerts,
    wildcard: DevCerts,
    ca: String,
    resolver: Arc<SniResolver>,
}

fn fixture() -> Fixture {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let default =
        DevCerts::generate_for_names(&names(&["default.test", "other.test", "127.0.0.1"])).unwrap();
    let exact = DevCerts::generate_for_names(&names(&["www.example.com"])).unwrap();
    let wildcard = DevCerts::generate_for_names(&names(&["*.example.com"])).unwrap();
    let ca = format!("{}{}{}", default.ca_pem, exact.ca_pem, wildcard.ca_pem);
    let resolver = Arc::new(SniResolver::new(default.certified_key().unwrap()));
    let mut map = CertMap::default();
    map.exact
        .insert("www.example.com".into(), exact.certified_key().unwrap());
    map.wildcard
        .insert("example.com".into(), wildcard.certified_key().unwrap());
    resolver.set_map(map);
    Fixture {
        default,
        exact,
        wildcard,
        ca,
        resolver,
    }
}

/// A handler that reports what the server knew about the connection.
fn conn_echo() -> portcullis::server::Handler {
    common::handler(|_req, conn| async move {
        common::ok(format!(
            "tls={} sni={}",
            conn.tls,
            conn.sni.as_deref().unwrap_or("-")
        ))
    })
}

#[tokio::test]
async fn serves_exact_wildcard_and_default_certificates() {
    common::init();
    let f = fixture();
    let server = common::start(
        conn_echo(),
        Some(server_config(f.resolver.clone()).unwrap()),
    )
    .await;

    let cases = [
        ("www.example.com", &f.exact, "www.example.com"),
        ("api.example.com", &f.wildcard, "api.example.com"),
        // Not in the map: the default certificate (which happens to cover the name).
        ("other.test", &f.default, "other.test"),
        // An IP address as server name: rustls sends no SNI at all.
        ("127.0.0.1", &f.default, "-"),
    ];
    for (name, want, sni) in cases {
        for proto in [Proto::H1, Proto::H2] {
            let mut client = Client::tls(server.addr, name, f.ca.as_bytes(), proto)
                .await
                .unwrap_or_else(|e| panic!("{name} {proto:?}: {e:#}"));
            assert_eq!(
                client.peer_leaf.as_deref(),
                Some(leaf_der(&want.cert_pem).as_slice()),
                "{name} {proto:?} got the wrong certificate"
            );
            let reply = client.get(name, "/").await.unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.text(), format!("tls=true sni={sni}\n"));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn wildcard_covers_one_label_only() {
    common::init();
    let f = fixture();
    let server = common::start(
        conn_echo(),
        Some(server_config(f.resolver.clone()).unwrap()),
    )
    .await;
    // a.b.example.com is not matched by *.example.com, so the default certificate is
    // served, and a verifying client must refuse it.
    let err = Client::tls(server.addr, "a.b.example.com", f.ca.as_bytes(), Proto::H1).await;
    assert!(err.is_err(), "a.b.example.com must not verify");
    server.stop().await;
}

#[tokio::test]
async fn map_swaps_apply_to_new_connections() {
    common::init();
    let f = fixture();
    let server = common::start(
        conn_echo(),
        Some(server_config(f.resolver.clone()).unwrap()),
    )
    .await;

    let before = Client::tls(server.addr, "www.example.com", f.ca.as_bytes(), Proto::H1)
        .await
        .unwrap();
    assert_eq!(before.peer_leaf.unwrap(), leaf_der(&f.exact.cert_pem));

    // Remove the exact entry: www.example.com now falls to the wildcard.
    let mut map = CertMap::default();
    map.wildcard
        .insert("example.com".into(), f.wildcard.certified_key().unwrap());
    f.resolver.set_map(map);
    let after = Client::tls(server.addr, "www.example.com", f.ca.as_bytes(), Proto::H1)
        .await
        .unwrap();
    assert_eq!(after.peer_leaf.unwrap(), leaf_der(&f.wildcard.cert_pem));

    // A new default is served to clients without SNI.
    let fresh = DevCerts::generate_for_names(&["127.0.0.1".into()]).unwrap();
    f.resolver.set_default(fresh.certified_key().unwrap());
    let no_sni = Client::tls(server.addr, "127.0.0.1", fresh.ca_pem.as_bytes(), Proto::H2)
        .await
        .unwrap();
    assert_eq!(no_sni.peer_leaf.unwrap(), leaf_der(&fresh.cert_pem));
    server.stop().await;
}
