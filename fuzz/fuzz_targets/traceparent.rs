//! W3C `traceparent`: only a valid header yields a trace id, and that id
//! is 32 lower-case hex digits, never all zeros.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    if let Some(id) = plinth::trace::from_traceparent(value) {
        assert_eq!(id.len(), 32, "{value:?}");
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{value:?}");
        assert!(id.bytes().any(|b| b != b'0'), "{value:?}");
    }
});
