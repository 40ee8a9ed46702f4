//! What clients send, read as the server's own HTTP/1.x reader reads it: every head it
//! takes as plain, in order. Whatever it takes must read back the same once written out
//! in canonical form, so the reader and the request it builds agree on every field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for head in portcullis::fuzzing::request_heads(data) {
        let again = portcullis::fuzzing::request_heads(&head);
        assert_eq!(
            again,
            [head.clone()],
            "{:?} reads back differently",
            String::from_utf8_lossy(&head)
        );
    }
});
