//! Retention — pure: how long events are kept, per service and per type.
//!
//! A [`Horizon`] is a duration (`30d`, `12h`, `90m`) or `forever`. The
//! [`Policy`] answers the horizon of one (service, type): an override for
//! the type, else an override for the service, else the self-monitoring
//! default for Cubed's own types (`cube_request`, `cube_compute`, and the
//! results documents of the system service), else the server's default.
//! Overrides are kept by the store (`EventStore::retention_overrides`) and
//! set over `/admin/retention` or `cubed retention`.

use std::collections::BTreeMap;
use std::fmt;

use super::Tenant;

/// How long events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Horizon {
    /// Never deleted (Cube's behaviour).
    #[default]
    Forever,
    /// Deleted once older than this many milliseconds.
    Ms(i64),
}

/// Shortest horizon accepted: an hour (events are deleted hour by hour).
pub const MIN_HORIZON_MS: i64 = 3_600_000;
/// Longest horizon accepted (a longer one is `forever`): 100 years.
pub const MAX_HORIZON_MS: i64 = 100 * 366 * 86_400_000;

impl Horizon {
    /// Parses `forever` or a whole number with a unit: `m` (minutes), `h`,
    /// `d`, `w`; at least an hour, at most 100 years.
    pub fn parse(text: &str) -> Result<Horizon, String> {
        let text = text.trim();
        if text == "forever" {
            return Ok(Horizon::Forever);
        }
        let bad = || {
            format!(
                "invalid retention {text:?}: expected forever or a whole number with a unit m, h, d or w (e.g. 30d), from 1h to 100 years"
            )
        };
        let unit_at = text.len().checked_sub(1).ok_or_else(bad)?;
        let (digits, unit) = text.split_at(unit_at);
        let unit_ms: i64 = match unit {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
        if !(MIN_HORIZON_MS..=MAX_HORIZON_MS).contains(&ms) {
            return Err(bad());
        }
        Ok(Horizon::Ms(ms))
    }

    /// The time before which events are expired at `now`, if any are.
    pub fn before(self, now: i64) -> Option<i64> {
        match self {
            Horizon::Forever => None,
            Horizon::Ms(ms) => Some(now.saturating_sub(ms)),
        }
    }
}

impl fmt::Display for Horizon {
    /// The shortest exact spelling: `30d`, `36h`, `90m`, `forever`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Horizon::Forever => f.write_str("forever"),
            Horizon::Ms(ms) => {
                for (unit, len) in [("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000)] {
                    if ms % len == 0 {
                        return write!(f, "{}{unit}", ms / len);
                    }
                }
                write!(f, "{}m", ms / 60_000)
            }
        }
    }
}

/// The types Cubed writes itself, kept for the self-monitoring horizon:
/// `cube_request` and `cube_compute` in any service, and the results
/// documents of the system service.
pub fn is_self_type(tenant: &Tenant, event_type: &str) -> bool {
    matches!(event_type, "cube_request" | "cube_compute")
        || (tenant.key() == SYSTEM_SERVICE && event_type == RESULTS_TYPE)
}

/// The store tenant that holds results documents.
pub const SYSTEM_SERVICE: &str = "cubed-system";
/// The event type of results documents.
pub const RESULTS_TYPE: &str = "results";

/// Where a type's horizon comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An override for the type.
    Type,
    /// An override for the whole service.
    Service,
    /// The self-monitoring default (`--self-retention`).
    SelfDefault,
    /// The server's default (`--retention`).
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Type => "type",
            Source::Service => "service",
            Source::SelfDefault => "self-retention",
            Source::Default => "retention",
        }
    }
}

/// The retention of every (service, type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// `--retention`.
    pub default: Horizon,
    /// `--self-retention`.
    pub self_default: Horizon,
    /// (service key, type; `None` for the whole service) → horizon.
    pub overrides: BTreeMap<(String, Option<String>), Horizon>,
}

impl Policy {
    /// The horizon of one type of one service, and where it comes from.
    pub fn horizon(&self, tenant: &Tenant, event_type: &str) -> (Horizon, Source) {
        let service = tenant.key().to_owned();
        if let Some(h) = self
            .overrides
            .get(&(service.clone(), Some(event_type.to_owned())))
        {
            return (*h, Source::Type);
        }
        if let Some(h) = self.overrides.get(&(service, None)) {
            return (*h, Source::Service);
        }
        if is_self_type(tenant, event_type) {
            return (self.self_default, Source::SelfDefault);
        }
        (self.default, Source::Default)
    }

    /// Whether any type of any service may expire (a sweep has work).
    pub fn expires_anything(&self) -> bool {
        self.default != Horizon::Forever
            || self.self_default != Horizon::Forever
            || self.overrides.values().any(|h| *h != Horizon::Forever)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_parse_and_print() {
        assert_eq!(Horizon::parse("30d"), Ok(Horizon::Ms(30 * 86_400_000)));
        assert_eq!(Horizon::parse("forever"), Ok(Horizon::Forever));
        assert_eq!(
            Horizon::parse("90m").map(|h| h.to_string()),
            Ok("90m".into())
        );
        assert_eq!(
            Horizon::parse("48h").map(|h| h.to_string()),
            Ok("2d".into())
        );
        assert_eq!(Horizon::parse("2w").map(|h| h.to_string()), Ok("2w".into()));
        for bad in [
            "",
            "d",
            "30",
            "30s",
            "59m",
            "-1d",
            "1.5d",
            "99999999999999d",
            "30 d",
        ] {
            assert!(Horizon::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Horizon::Ms(3_600_000).before(10_000_000), Some(6_400_000));
        assert_eq!(Horizon::Forever.before(10), None);
    }

    #[test]
    fn type_overrides_service_overrides_self_default_overrides_default() {
        let t = Tenant::from_key("shop");
        let mut p = Policy {
            default: Horizon::Ms(30 * 86_400_000),
            self_default: Horizon::Ms(7 * 86_400_000),
            ..Policy::default()
        };
        assert_eq!(p.horizon(&t, "request").1, Source::Default);
        assert_eq!(
            p.horizon(&t, "cube_request"),
            (Horizon::Ms(7 * 86_400_000), Source::SelfDefault)
        );
        let system = Tenant::from_key(SYSTEM_SERVICE);
        assert_eq!(p.horizon(&system, "results").1, Source::SelfDefault);
        assert_eq!(p.horizon(&t, "results").1, Source::Default);
        p.overrides.insert(("shop".into(), None), Horizon::Forever);
        assert_eq!(
            p.horizon(&t, "cube_request"),
            (Horizon::Forever, Source::Service)
        );
        p.overrides.insert(
            ("shop".into(), Some("request".into())),
            Horizon::Ms(3_600_000),
        );
        assert_eq!(
            p.horizon(&t, "request"),
            (Horizon::Ms(3_600_000), Source::Type)
        );
        assert_eq!(
            p.horizon(&Tenant::from_key("other"), "request").1,
            Source::Default
        );
        assert!(p.expires_anything());
        assert!(!Policy::default().expires_anything());
    }
}
