//! Metric computation — pure: tiers and binning, reduces, evaluation of one
//! leaf over an ordered stream of events. No IO, no async.

pub mod compute;
pub mod group;
pub mod reduce;
pub mod tiers;

pub use compute::{BinComputer, compute_bins};
pub use group::{GroupRow, GroupedBinComputer, LeafBins, combine_groups, compute_grouped_bins};
pub use reduce::{Accumulator, distinct_key};
pub use tiers::{TIERS, Tier};
