//! What the listeners parse before TLS: the PROXY protocol header, the ClientHello's
//! server name, and (after a handshake) a client certificate's names. Input: the first
//! byte picks the parser, the rest is fed to it. None may panic; a header that parses
//! must fit in the input and parse the same from exactly its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::server::client_hello::{self, Hello};
use portcullis::server::proxy_protocol::{self, Parsed};
use portcullis::tls::x509_name;

fuzz_target!(|data: &[u8]| {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(Parsed::Done(h)) = proxy_protocol::parse(input) {
                assert!(h.len <= input.len());
                assert_eq!(proxy_protocol::parse(&input[..h.len]), Ok(Parsed::Done(h)));
            }
        }
        1 => {
            if let Hello::Done(Some(name)) = client_hello::parse(input) {
                assert!(!name.is_empty() && name.len() <= 253);
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }
        _ => {
            let _ = x509_name::names(input);
        }
    }
});
