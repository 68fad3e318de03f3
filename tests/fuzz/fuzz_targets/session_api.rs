//! Fuzzes the session metric logging API (metrics and events): the first
//! line is the session id of the path, the rest the body. No input may
//! panic; what is accepted stores and reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(session) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    for convert in [
        cubed::ingest::session_api::metric,
        cubed::ingest::session_api::event,
    ] {
        if let Ok(event) = convert(session, body, 1_700_000_000_000) {
            fuzz_common::stores_and_reads_back(std::slice::from_ref(&event));
        }
    }
});
