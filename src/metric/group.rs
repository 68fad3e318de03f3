//! Group-by: one grouped leaf's bins split by its group field
//! ([`GroupedBinComputer`]), and a grouped expression's answer, one row
//! per group, from its leaves' bins ([`combine_groups`]). Pure code.
//!
//! The rules (README "Group-by"):
//! - a group is the group field's value in JavaScript's `String(v)`;
//!   events without the field are in no group;
//! - the groups of an answer are those any grouped leaf has in any bin of
//!   the range, in the order of their names (bytewise), the `other` row last;
//! - in a bin where a group has no events, a grouped leaf's value is its
//!   reduce's value over nothing (`sum` and `count` 0, the others undefined);
//! - an ungrouped leaf has the same value for every group;
//! - with a `top` N and more than N groups, the N groups whose values summed
//!   over the range are largest (ties by name) are kept and the rest become
//!   one `other` row, whose leaves are the rest merged where every grouped
//!   reduce is pyramidal (`sum`, `count`, `min`, `max`); otherwise there is
//!   no `other` row.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::reduce::{Accumulator, is_pyramidal, merge};
use super::tiers::Tier;
use crate::expr::Reduce;
use crate::plan::{LeafPlan, MetricPlan};

/// One grouped leaf's bins: per bin, the value of each group with events in it.
pub type GroupedBins = Vec<BTreeMap<String, Option<f64>>>;

/// Bytes a group entry of a bin is charged beyond its name.
const GROUP_ENTRY_BYTES: usize = 96;

/// One coarser bin from finer grouped bins (pyramidal reduces only): each
/// group's values merged over the finer bins it has events in.
pub fn merge_groups<'a>(
    reduce: Reduce,
    parts: impl IntoIterator<Item = &'a BTreeMap<String, Option<f64>>>,
) -> BTreeMap<String, Option<f64>> {
    let mut by_group: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for part in parts {
        for (g, v) in part {
            by_group.entry(g.clone()).or_default().push(*v);
        }
    }
    by_group
        .into_iter()
        .map(|(g, vs)| (g, merge(reduce, vs)))
        .collect()
}

/// Why grouped bins could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupError {
    /// More distinct groups in the range than allowed.
    TooManyGroups { max: usize },
}

/// The bins `[first, first + n * step)` of one grouped leaf, filled event by event.
pub struct GroupedBinComputer<'p> {
    leaf: &'p LeafPlan,
    step: i64,
    first: i64,
    bins: Vec<HashMap<String, Accumulator>>,
    groups: BTreeSet<String>,
    max_groups: usize,
    held: usize,
    failed: Option<GroupError>,
}

impl<'p> GroupedBinComputer<'p> {
    pub fn new(leaf: &'p LeafPlan, tier: Tier, first: i64, n: usize, max_groups: usize) -> Self {
        GroupedBinComputer {
            leaf,
            step: tier.step(),
            first,
            bins: (0..n).map(|_| HashMap::new()).collect(),
            groups: BTreeSet::new(),
            max_groups,
            held: 0,
            failed: None,
        }
    }

    /// Bytes held: group names, entries and the values `median`,
    /// percentiles and `distinct` keep.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Whether a limit was crossed (nothing more is added then).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Adds one event given as its whole data: the leaf's filter, value
    /// and group applied here.
    pub fn add(&mut self, time: i64, data: &Value) {
        if self.failed.is_some() || time < self.first {
            return;
        }
        let Some(i) = usize::try_from((time - self.first) / self.step)
            .ok()
            .filter(|&i| i < self.bins.len())
        else {
            return;
        };
        if !self.leaf.filter.matches(data) {
            return;
        }
        let (Some(value), Some(group)) = (self.leaf.value_of(data), self.leaf.group_of(data))
        else {
            return;
        };
        if !self.groups.contains(&group) {
            if self.groups.len() >= self.max_groups {
                self.failed = Some(GroupError::TooManyGroups {
                    max: self.max_groups,
                });
                return;
            }
            self.held += group.len();
            self.groups.insert(group.clone());
        }
        let reduce = self.leaf.reduce;
        let bin = &mut self.bins[i];
        let acc = match bin.get_mut(&group) {
            Some(acc) => acc,
            None => {
                self.held += group.len() + GROUP_ENTRY_BYTES;
                bin.entry(group).or_insert_with(|| Accumulator::new(reduce))
            }
        };
        self.held += acc.add(&value);
    }

    pub fn finish(self) -> Result<GroupedBins, GroupError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        Ok(self
            .bins
            .into_iter()
            .map(|bin| bin.into_iter().map(|(g, acc)| (g, acc.finish())).collect())
            .collect())
    }
}

/// Computes one grouped leaf's bins from events given as (time, data): the
/// reference the tests hold the evaluator to, and what it runs itself.
pub fn compute_grouped_bins<'a>(
    leaf: &LeafPlan,
    tier: Tier,
    first: i64,
    n: usize,
    max_groups: usize,
    events: impl IntoIterator<Item = (i64, &'a Value)>,
) -> Result<GroupedBins, GroupError> {
    let mut c = GroupedBinComputer::new(leaf, tier, first, n, max_groups);
    for (t, d) in events {
        c.add(t, d);
    }
    c.finish()
}

/// One leaf's bins, as the evaluator has them.
#[derive(Debug, Clone)]
pub enum LeafBins {
    Plain(Vec<Option<f64>>),
    Grouped(GroupedBins),
}

/// One row of a grouped answer: a group (`None`: the `other` row) and its
/// value per bin.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub group: Option<String>,
    pub values: Vec<Option<f64>>,
}

/// A reduce's value over no events.
fn empty_value(reduce: Reduce) -> Option<f64> {
    Accumulator::new(reduce).finish()
}

/// The rows of a grouped expression over `n` bins: `leaves` are the
/// values of `plan.leaves()` in order (a leaf that appears twice, twice);
/// the groups are those of the bins and those `also` names.
pub fn combine_groups(
    plan: &MetricPlan,
    leaves: &[LeafBins],
    n: usize,
    top: Option<u32>,
    also: &[String],
) -> Vec<GroupRow> {
    let reduces: Vec<Reduce> = plan.leaves().iter().map(|l| l.reduce).collect();
    let mut names: BTreeSet<&str> = also.iter().map(String::as_str).collect();
    for l in leaves {
        if let LeafBins::Grouped(bins) = l {
            for bin in bins {
                names.extend(bin.keys().map(String::as_str));
            }
        }
    }
    let single = matches!(plan, MetricPlan::Leaf(_));
    let value_at = |per_leaf: &[Option<f64>]| -> Option<f64> {
        if single {
            per_leaf.first().copied().flatten()
        } else {
            Some(plan.combine(per_leaf))
        }
    };
    let row_of = |group: &str| -> Vec<Option<f64>> {
        (0..n)
            .map(|i| {
                let per_leaf: Vec<Option<f64>> = leaves
                    .iter()
                    .zip(&reduces)
                    .map(|(l, &r)| match l {
                        LeafBins::Plain(v) => v.get(i).copied().flatten(),
                        LeafBins::Grouped(bins) => match bins.get(i).and_then(|b| b.get(group)) {
                            Some(v) => *v,
                            None => empty_value(r),
                        },
                    })
                    .collect();
                value_at(&per_leaf)
            })
            .collect()
    };
    let mut rows: Vec<GroupRow> = names
        .iter()
        .map(|g| GroupRow {
            group: Some((*g).to_owned()),
            values: row_of(g),
        })
        .collect();
    let Some(top) = top.and_then(|t| usize::try_from(t).ok()) else {
        return rows;
    };
    if rows.len() <= top {
        return rows;
    }
    let total = |r: &GroupRow| -> f64 {
        r.values
            .iter()
            .flatten()
            .filter(|x| x.is_finite())
            .sum::<f64>()
    };
    let mut ranked: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (total(r), i))
        .collect();
    // Largest total first; equal totals by name (rows are in name order).
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut keep = vec![false; rows.len()];
    for &(_, i) in ranked.iter().take(top) {
        keep[i] = true;
    }
    let rest: Vec<&str> = names
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(g, _)| *g)
        .collect();
    let groups_merge = leaves
        .iter()
        .zip(&reduces)
        .all(|(l, &r)| matches!(l, LeafBins::Plain(_)) || is_pyramidal(r));
    let other = groups_merge.then(|| {
        let values = (0..n)
            .map(|i| {
                let per_leaf: Vec<Option<f64>> = leaves
                    .iter()
                    .zip(&reduces)
                    .map(|(l, &r)| match l {
                        LeafBins::Plain(v) => v.get(i).copied().flatten(),
                        LeafBins::Grouped(bins) => {
                            let bin = bins.get(i);
                            let parts = rest.iter().filter_map(|g| bin.and_then(|b| b.get(*g)));
                            merge(r, parts.copied())
                        }
                    })
                    .collect();
                value_at(&per_leaf)
            })
            .collect();
        GroupRow {
            group: None,
            values,
        }
    });
    let mut i = 0;
    rows.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    rows.extend(other);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile_metric;
    use serde_json::json;

    fn plan(s: &str) -> MetricPlan {
        compile_metric(s).map(|(_, p)| p).expect("plans")
    }

    #[test]
    fn groups_are_javascript_strings_and_missing_fields_are_left_out() {
        let p = plan("sum(request(d)).group(path)");
        let leaf = p.leaves()[0].clone();
        let tier = Tier::from_step(60_000).expect("tier");
        let evs = [
            (0, json!({"d": 1, "path": "/a"})),
            (1, json!({"d": 2, "path": 1})),
            (2, json!({"d": 3, "path": "1"})),
            (3, json!({"d": 4})),
            (60_000, json!({"d": 5, "path": [1, null, 2]})),
        ];
        let bins = compute_grouped_bins(&leaf, tier, 0, 2, 10, evs.iter().map(|(t, d)| (*t, d)))
            .expect("computes");
        assert_eq!(bins[0].get("/a"), Some(&Some(1.0)));
        assert_eq!(bins[0].get("1"), Some(&Some(5.0)));
        assert_eq!(bins[0].len(), 2);
        assert_eq!(bins[1].get("1,,2"), Some(&Some(5.0)));
        let rows = combine_groups(&p, &[LeafBins::Grouped(bins)], 2, None, &[]);
        let names: Vec<_> = rows.iter().map(|r| r.group.clone()).collect();
        assert_eq!(
            names,
            vec![Some("/a".into()), Some("1".into()), Some("1,,2".into())]
        );
        // A group without events in a bin sums to 0 there.
        assert_eq!(rows[0].values, vec![Some(1.0), Some(0.0)]);
    }

    #[test]
    fn too_many_groups_is_an_error() {
        let p = plan("count(request).group(u)");
        let leaf = p.leaves()[0].clone();
        let tier = Tier::from_step(60_000).expect("tier");
        let evs: Vec<(i64, Value)> = (0..5).map(|i| (i, json!({ "u": i }))).collect();
        let r = compute_grouped_bins(&leaf, tier, 0, 1, 4, evs.iter().map(|(t, d)| (*t, d)));
        assert_eq!(r, Err(GroupError::TooManyGroups { max: 4 }));
    }

    #[test]
    fn top_keeps_the_largest_and_folds_the_rest_into_other() {
        let p = plan("sum(rq(x)).group(g, 2)");
        let bins: GroupedBins = vec![
            [("a", 1.0), ("b", 5.0), ("c", 3.0), ("d", 3.0)]
                .into_iter()
                .map(|(g, v)| (g.to_owned(), Some(v)))
                .collect(),
        ];
        let rows = combine_groups(&p, &[LeafBins::Grouped(bins.clone())], 1, Some(2), &[]);
        assert_eq!(
            rows,
            vec![
                GroupRow {
                    group: Some("b".into()),
                    values: vec![Some(5.0)]
                },
                GroupRow {
                    group: Some("c".into()),
                    values: vec![Some(3.0)]
                },
                GroupRow {
                    group: None,
                    values: vec![Some(4.0)]
                },
            ]
        );
        // A median cannot be merged: no `other` row.
        let p = plan("median(rq(x)).group(g, 2)");
        let rows = combine_groups(&p, &[LeafBins::Grouped(bins)], 1, Some(2), &[]);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn grouped_and_ungrouped_sides_combine_per_group() {
        let p = plan("sum(rq(x)).group(g) / sum(rq(x))");
        let grouped: GroupedBins = vec![
            [("a", 1.0), ("b", 3.0)]
                .into_iter()
                .map(|(g, v)| (g.to_owned(), Some(v)))
                .collect(),
        ];
        let rows = combine_groups(
            &p,
            &[
                LeafBins::Grouped(grouped.clone()),
                LeafBins::Plain(vec![Some(4.0)]),
            ],
            1,
            None,
            &[],
        );
        assert_eq!(rows[0].values, vec![Some(0.25)]);
        assert_eq!(rows[1].values, vec![Some(0.75)]);
        // A group asked for without events: its value over nothing.
        let rows = combine_groups(
            &p,
            &[LeafBins::Grouped(grouped), LeafBins::Plain(vec![Some(4.0)])],
            1,
            None,
            &["c".to_owned()],
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[2].group.as_deref(), &rows[2].values),
            (Some("c"), &vec![Some(0.0)])
        );
    }
}
