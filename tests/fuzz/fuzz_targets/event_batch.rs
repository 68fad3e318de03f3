//! Fuzzes the event put body parser (HTTP batches) and the one-event
//! validator (WebSocket and UDP messages): no input may panic, and whatever
//! is accepted must store and read back as it was accepted — every event
//! within every limit, its data loadable by a JSON reader, its id
//! canonical, and a block of the batch decoding to the same times, ids and
//! data, with columns that agree with the data.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = cubed::ingest::parse_event_batch(data, 1_000_000) {
        fuzz_common::stores_and_reads_back(&events);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(raw) = serde_json::from_str::<&serde_json::value::RawValue>(text)
        && let Ok(event) = cubed::ingest::validate_event(raw, 1_000_000)
    {
        fuzz_common::stores_and_reads_back(std::slice::from_ref(&event));
    }
});
