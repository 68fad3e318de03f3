//! Fuzzes collectd's write_http JSON conversion: no input may panic; what
//! is accepted stores and reads back; a refused body leaves the derive
//! state as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut state = cubed::ingest::collectd::DeriveState::default();
    let now = 1_700_000_000_000;
    match cubed::ingest::collectd::convert(data, now, &mut state) {
        Ok(events) => fuzz_common::stores_and_reads_back(&events),
        Err(errors) => assert!(!errors.is_empty()),
    }
    // The same body again with the state it left: still no panic.
    let _ = cubed::ingest::collectd::convert(data, now, &mut state);
});
