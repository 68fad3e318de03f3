//! [`EventStore::select`](crate::storage::EventStore::select) on blocks:
//! a leaf whose every condition is on a top-level field with a column, and
//! whose value is 1 or a number column, is evaluated straight from the
//! columns (a dictionary column's test once per distinct string); other
//! leaves fill their fields from columns where every one has a column, and
//! parse the JSON otherwise. The decisions are `plan::filter`'s
//! ([`Test::holds`]), the same as on JSON.

use std::ops::ControlFlow;

use super::blocks::Block;
use super::columns::ColumnView;
use super::{EmbeddedStore, corrupt, keys};
use crate::expr::ValueExpr;
use crate::model::Tenant;
use crate::plan::LeafPlan;
use crate::plan::filter::{PathStep, ScalarRef, Test};
use crate::storage::rows::{Batch, RowSelector};
use crate::storage::{Selected, Selection, StoreError};

/// The scalar of row `i` of a column, if the row has the field.
fn scalar<'a>(col: &ColumnView<'a>, i: usize) -> Option<ScalarRef<'a>> {
    if col.is_number() {
        col.number(i).map(ScalarRef::Number)
    } else {
        col.text(i).map(ScalarRef::Text)
    }
}

/// Whether a condition holds for a top-level scalar field (`None`: missing).
fn holds(test: &Test, c: Option<ScalarRef<'_>>) -> bool {
    match c {
        Some(c) => test.holds(&[c]),
        None => test.holds::<ScalarRef<'_>>(&[]),
    }
}

/// A leaf evaluated straight from a block's columns: every condition is on a
/// top-level field with a column, and the value is 1 or a number column.
struct ColumnLeaf<'p, 'b> {
    conditions: Vec<Condition<'p, 'b>>,
    value: Option<ColumnView<'b>>,
}

/// One filter condition over a column.
enum Condition<'p, 'b> {
    /// Tested event by event.
    Each(ColumnView<'b>, &'p Test),
    /// A dictionary column: the test's answer per code, computed once per
    /// block, and its answer for events without the field.
    Codes {
        col: ColumnView<'b>,
        pass: Vec<bool>,
        missing: bool,
    },
}

impl Condition<'_, '_> {
    fn holds(&self, i: usize) -> bool {
        match self {
            Condition::Each(col, test) => holds(test, scalar(col, i)),
            Condition::Codes { col, pass, missing } => match col.code(i) {
                Some(c) => pass.get(c as usize).copied().unwrap_or(false),
                None => *missing,
            },
        }
    }
}

impl<'p, 'b> ColumnLeaf<'p, 'b> {
    /// `None` when the leaf needs something columns cannot give.
    fn new(leaf: &'p LeafPlan, block: &Block<'b>) -> Option<Self> {
        let mut conditions = Vec::with_capacity(leaf.filter.conditions.len());
        for c in &leaf.filter.conditions {
            let [PathStep::Key(k)] = c.path.as_slice() else {
                return None;
            };
            let col = block.column(k)?;
            conditions.push(match col.dictionary() {
                Some(dict) => Condition::Codes {
                    col,
                    pass: dict
                        .iter()
                        .map(|s| holds(&c.test, Some(ScalarRef::Text(s))))
                        .collect(),
                    missing: holds(&c.test, None),
                },
                None => Condition::Each(col, &c.test),
            });
        }
        let value = match &leaf.value {
            None => None,
            Some(ValueExpr::Field(f)) if f.tail.is_empty() => {
                let col = block.column(&f.head)?;
                if !col.is_number() {
                    return None;
                }
                Some(col)
            }
            Some(_) => return None,
        };
        Some(ColumnLeaf { conditions, value })
    }

    /// The event's value if it passes the filter (never NaN: columns hold
    /// finite numbers).
    fn value(&self, i: usize) -> Option<f64> {
        if !self.conditions.iter().all(|c| c.holds(i)) {
            return None;
        }
        match &self.value {
            None => Some(1.0),
            Some(col) => col.number(i),
        }
    }
}

pub(super) fn select(
    store: &EmbeddedStore,
    tenant: &Tenant,
    selection: &Selection<'_>,
    visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let Selection {
        leaf, start, stop, ..
    } = *selection;
    let mut rows = RowSelector::new(leaf);
    let names: Vec<String> = rows.names().to_vec();
    let none_needed = names.is_empty();
    // No filter and no value: every event counts 1.
    let trivial = leaf.filter.is_empty() && leaf.value.is_none();
    let mut batch = Batch::default();
    let mut bad = None;
    store.scan_blocks(tenant, &leaf.event_type, start, stop, &mut |block, dead| {
        if block.is_empty() {
            return ControlFlow::Continue(());
        }
        // Blocks come hour by hour: every event before this block's hour
        // has been given.
        visit(Selected::Before(keys::bucket(block.time(0))))?;
        let live = |i: usize| {
            let t = block.time(i);
            (t >= start && t < stop && !dead.contains(i)).then_some(t)
        };
        if trivial {
            for i in 0..block.len() {
                if let Some(t) = live(i) {
                    batch.push_number(t, 1.0);
                }
            }
        } else if none_needed {
            for i in 0..block.len() {
                if let Some(t) = live(i) {
                    rows.select_slots(t, &mut batch);
                }
            }
        } else if let Some(cl) = ColumnLeaf::new(leaf, block) {
            // The whole leaf on columns: no JSON values at all.
            for i in 0..block.len() {
                if let Some(t) = live(i)
                    && let Some(x) = cl.value(i)
                {
                    batch.push_number(t, x);
                }
            }
        } else if let Some(columns) = names
            .iter()
            .map(|name| block.column(name))
            .collect::<Option<Vec<_>>>()
        {
            // Typed columns for every needed field: no JSON to parse.
            for i in 0..block.len() {
                if let Some(t) = live(i) {
                    for (slot, c) in rows.slots_mut().zip(&columns) {
                        c.write_into(i, slot);
                    }
                    rows.select_slots(t, &mut batch);
                }
            }
        } else {
            for i in 0..block.len() {
                let Some(t) = live(i) else { continue };
                let Some(data) = block.data(i) else {
                    bad = Some(corrupt("event block"));
                    return ControlFlow::Break(());
                };
                if let Err(e) = rows.select(t, data, &mut batch) {
                    bad = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        batch.flush(visit)
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
