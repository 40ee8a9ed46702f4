//! What a pod sends back over HTTP/1.1, read as our client reads it: the response head
//! (interim answers skipped, framing decided) and a chunked body, delivered in pieces of
//! a size the input picks. Input: byte 0 is the piece size, byte 1's low bit makes the
//! request a HEAD, the rest is the pod's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [step, flags, answer @ ..] = data else {
        return;
    };
    let whole = portcullis::fuzzing::upstream_response(answer, usize::MAX, flags & 1 == 1);
    let pieces = portcullis::fuzzing::upstream_response(answer, usize::from(*step), flags & 1 == 1);
    // How the bytes arrive must not change what they mean.
    assert_eq!(whole, pieces, "split into pieces of {step}");
    if let Ok(len) = whole {
        assert!(len <= answer.len());
    }
});
