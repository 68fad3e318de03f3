//! The benchmark workload (issue 6's definition), generated deterministically:
//! type `request`, data `duration_ms` (float, long-tailed), `path` (one of 50,
//! skewed), `status` (mostly 200, some 404 and 500), `user` (one of 100,000),
//! spread unevenly over one UTC day.
#![allow(dead_code)]

/// The day the events fall in: 2026-11-22T00:00:00Z.
pub const DAY_START: i64 = 1_795_305_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// xorshift64*: small, fast, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn path_name(i: usize) -> String {
    if i == 0 {
        "/".to_owned()
    } else {
        format!("/api/v1/resource{i}")
    }
}

/// The most common path (index 0 gets the largest share).
pub fn most_common_path() -> String {
    path_name(0)
}

pub struct Event {
    pub time: i64,
    pub duration_ms: f64,
    pub path: usize,
    pub status: u16,
    pub user: u32,
}

/// `n` events, in time order.
pub fn generate(n: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let mut events: Vec<Event> = (0..n)
        .map(|_| {
            // uneven over the day: busier in the afternoon (a warped uniform)
            let u = rng.unit();
            let warped =
                u - 0.12 * (2.0 * std::f64::consts::PI * u).sin() / (2.0 * std::f64::consts::PI);
            let time = DAY_START + ((warped.clamp(0.0, 0.999_999_999)) * DAY_MS as f64) as i64;
            // long tail: log-normal via Box-Muller
            let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let duration_ms = ((3.0 + 0.9 * z).exp() * 1000.0).round() / 1000.0;
            let path = ((rng.unit().powi(3)) * 50.0) as usize;
            let s = rng.unit();
            let status = if s < 0.94 {
                200
            } else if s < 0.98 {
                404
            } else {
                500
            };
            let user = (rng.next_u64() % 100_000) as u32;
            Event {
                time,
                duration_ms,
                path,
                status,
                user,
            }
        })
        .collect();
    events.sort_by_key(|e| e.time);
    events
}

impl Event {
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"type":"request","time":{},"data":{{"duration_ms":{},"path":"{}","status":{},"user":"u{}"}}}}"#,
            self.time,
            self.duration_ms,
            path_name(self.path),
            self.status,
            self.user
        )
    }
}

/// The seven standard queries: (name, expression, step).
pub fn queries() -> Vec<(&'static str, String, i64)> {
    vec![
        ("Q1", "sum(request)".to_owned(), 60_000),
        (
            "Q2",
            format!(
                "sum(request(duration_ms).eq(path, \"{}\"))",
                most_common_path()
            ),
            300_000,
        ),
        ("Q3", "max(request(duration_ms))".to_owned(), 3_600_000),
        ("Q4", "median(request(duration_ms))".to_owned(), 300_000),
        ("Q5", "distinct(request(user))".to_owned(), 3_600_000),
        (
            "Q6",
            "sum(request.ge(status, 500)) / sum(request)".to_owned(),
            60_000,
        ),
        ("Q7", "sum(request)".to_owned(), 10_000),
    ]
}
