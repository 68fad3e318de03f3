//! Fuzzes the evaluator's WebSocket request messages (metric/get and
//! event/get, live or not): no message may panic; an accepted metric
//! request stays within the bins one request may compute.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let now = 1_700_000_000_000;
    let _ = cubed::server::evaluator_ws::request_id(&request);
    if let Ok(q) = cubed::server::evaluator_ws::metric_query(&request, now) {
        let mut sources: Vec<&str> = q.plan.leaves().iter().map(|l| l.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        assert!(q.n <= cubed::limits::MAX_METRIC_LIMIT);
        assert!(q.n * sources.len() <= cubed::limits::MAX_BINS_PER_REQUEST);
        if q.n > 0 {
            let _ = q.time(q.n - 1);
        }
    }
    if let Ok((q, delay)) = cubed::server::evaluator_ws::event_query(&request, now) {
        assert!(q.limit <= cubed::limits::MAX_EVENT_LIMIT);
        assert!(delay.is_none_or(|d| d >= 0));
    }
});
