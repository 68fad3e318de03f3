//! The five tiers (the only valid steps), aligned to the Unix epoch.

/// 10 s, 1 min, 5 min, 1 h, 1 day in milliseconds.
pub const TIERS: [i64; 5] = [10_000, 60_000, 300_000, 3_600_000, 86_400_000];

/// A valid step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tier(i64);

impl Tier {
    /// The tier of `step` milliseconds, if it is one.
    pub fn from_step(step: i64) -> Option<Tier> {
        TIERS.contains(&step).then_some(Tier(step))
    }

    /// The largest tier not above `step` (the 10 s tier for smaller steps).
    pub fn at_most(step: i64) -> Tier {
        Tier(
            TIERS
                .into_iter()
                .rev()
                .find(|&t| t <= step)
                .unwrap_or(TIERS[0]),
        )
    }

    /// The largest tier that divides `step` (so that a bin of `step` is a
    /// whole number of its bins), if any does.
    pub fn dividing(step: i64) -> Option<Tier> {
        TIERS
            .into_iter()
            .rev()
            .find(|&t| t <= step && step % t == 0)
            .map(Tier)
    }

    pub fn all() -> impl Iterator<Item = Tier> {
        TIERS.into_iter().map(Tier)
    }

    pub fn step(self) -> i64 {
        self.0
    }

    /// `t - t mod step` (towards minus infinity for negative times).
    pub fn floor(self, t: i64) -> i64 {
        t.saturating_sub(t.rem_euclid(self.0))
    }

    /// `floor(t - 1) + step`: the end of the bin that holds `t - 1`.
    pub fn ceil(self, t: i64) -> i64 {
        self.floor(t.saturating_sub(1)).saturating_add(self.0)
    }

    /// The finer tier whose bins this tier's pyramidal reduces are built from:
    /// hour from 5 minutes, day from hour.
    pub fn pyramid_source(self) -> Option<Tier> {
        match self.0 {
            3_600_000 => Some(Tier(300_000)),
            86_400_000 => Some(Tier(3_600_000)),
            _ => None,
        }
    }

    /// The start times of the bins covering `[floor(start), ceil(stop))`.
    pub fn bins(self, start: i64, stop: i64) -> impl Iterator<Item = i64> {
        let first = self.floor(start);
        let end = self.ceil(stop);
        let step = self.0;
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |t| *t < end)
    }

    /// How many bins `bins(start, stop)` yields.
    pub fn count(self, start: i64, stop: i64) -> i64 {
        let first = self.floor(start);
        let end = self.ceil(stop);
        if end <= first {
            0
        } else {
            (end - first) / self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tiers_for_other_steps() {
        assert_eq!(Tier::at_most(1).step(), 10_000);
        assert_eq!(Tier::at_most(15_000).step(), 10_000);
        assert_eq!(Tier::at_most(60_000).step(), 60_000);
        assert_eq!(Tier::at_most(7 * 86_400_000).step(), 86_400_000);
        assert_eq!(Tier::dividing(15_000), None);
        assert_eq!(Tier::dividing(90_000).map(Tier::step), Some(10_000));
        assert_eq!(Tier::dividing(120_000).map(Tier::step), Some(60_000));
        assert_eq!(Tier::dividing(900_000).map(Tier::step), Some(300_000));
        assert_eq!(Tier::dividing(7_200_000).map(Tier::step), Some(3_600_000));
        assert_eq!(Tier::dividing(3_600_000).map(Tier::step), Some(3_600_000));
    }

    #[test]
    fn floors_and_ceils_like_cube() {
        let m = Tier::from_step(60_000).unwrap();
        assert_eq!(m.floor(61_000), 60_000);
        assert_eq!(m.floor(60_000), 60_000);
        assert_eq!(m.ceil(60_000), 60_000);
        assert_eq!(m.ceil(60_001), 120_000);
        assert_eq!(m.floor(-1), -60_000);
        assert_eq!(
            Tier::from_step(86_400_000)
                .unwrap()
                .floor(1_334_592_000_000),
            1_334_534_400_000
        );
        assert!(Tier::from_step(1000).is_none());
        assert_eq!(m.bins(0, 180_000).collect::<Vec<_>>(), [0, 60_000, 120_000]);
        assert_eq!(
            m.bins(30_000, 150_000).collect::<Vec<_>>(),
            [0, 60_000, 120_000]
        );
        assert_eq!(m.bins(60_000, 60_000).count(), 0);
    }

    proptest! {
        #[test]
        fn bins_cover_the_range_exactly(step in 0usize..5, start in -1_000_000_000_000i64..1_000_000_000_000, len in 0i64..50_000_000) {
            let tier = Tier(TIERS[step]);
            let stop = start + len;
            let bins: Vec<i64> = tier.bins(start, stop).collect();
            prop_assert_eq!(bins.len() as i64, tier.count(start, stop));
            if len > 0 {
                // every instant of [start, stop) lies in exactly one bin
                prop_assert!(bins[0] <= start && start < bins[0] + tier.step());
                let last = *bins.last().unwrap();
                prop_assert!(last < stop && stop - 1 < last + tier.step());
            }
            for w in bins.windows(2) {
                prop_assert_eq!(w[1] - w[0], tier.step());
            }
            for b in &bins {
                prop_assert_eq!(b.rem_euclid(tier.step()), 0);
            }
        }
    }
}
