//! Fuzzes the e-metrics dump conversion (JSON arrays and newline-delimited
//! JSON): no input may panic; what is accepted stores and reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = cubed::ingest::emetrics::convert(data, 1_700_000_000_000) {
        fuzz_common::stores_and_reads_back(&events);
    }
});
