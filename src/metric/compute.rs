//! Computing one leaf's bins from events, and reading only the fields a
//! leaf needs out of an event's JSON.

use std::collections::BTreeSet;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::reduce::Accumulator;
use super::tiers::Tier;
use crate::expr::Reduce;
use crate::expr::{Literal, ValueExpr};
use crate::plan::filter::PathStep;
use crate::plan::filter::{OpTest, Test};
use crate::plan::{LeafPlan, Scalar};
use crate::storage::columns::ColumnView;
use crate::storage::keys::Block;

/// The bins `[first, first + n * step)` of one leaf, filled event by event.
pub struct BinComputer<'p> {
    leaf: &'p LeafPlan,
    step: i64,
    first: i64,
    accs: Vec<Accumulator>,
    /// No filter and no value: every event counts 1.
    trivial: bool,
    /// Bytes of values the accumulators keep (see [`Accumulator::add`]).
    held: usize,
    /// Bins before this index are finished ([`close_before`](Self::close_before)).
    closed: usize,
}

impl<'p> BinComputer<'p> {
    pub fn new(leaf: &'p LeafPlan, tier: Tier, first: i64, n: usize) -> Self {
        BinComputer {
            leaf,
            step: tier.step(),
            first,
            accs: (0..n).map(|_| Accumulator::new(leaf.reduce)).collect(),
            trivial: leaf.filter.is_empty() && leaf.value.is_none(),
            held: 0,
            closed: 0,
        }
    }

    /// Finishes every bin that ends at or before `time`, dropping the
    /// values `median`, percentiles and `distinct` kept for them: called
    /// when no later event can fall into those bins (a scan that visits
    /// hours in order has moved past them).
    pub fn close_before(&mut self, time: i64) {
        let end = match time.checked_sub(self.first) {
            Some(d) if d > 0 => usize::try_from(d / self.step).unwrap_or(usize::MAX),
            _ => return,
        }
        .min(self.accs.len());
        for acc in self.accs.get_mut(self.closed..end).into_iter().flatten() {
            self.held -= acc.close();
        }
        self.closed = self.closed.max(end);
    }

    /// Bytes of values held so far for bins not finished (`median`,
    /// percentiles and `distinct` keep values; other reduces none).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// The bin index of `time`, if it is one of ours.
    fn slot(&self, time: i64) -> Option<usize> {
        if time < self.first {
            return None;
        }
        let i = usize::try_from((time - self.first) / self.step).ok()?;
        (i < self.accs.len()).then_some(i)
    }

    /// Adds one event given as its whole data.
    pub fn add(&mut self, time: i64, data: &Value) {
        self.add_with(time, |leaf| {
            leaf.filter
                .matches(data)
                .then(|| leaf.value_of(data))
                .flatten()
        });
    }

    /// Adds one event whose data is an object, given as the needed fields.
    pub fn add_fields(&mut self, time: i64, fields: &Slots) {
        self.add_with(time, |leaf| {
            leaf.filter
                .matches_fields(fields)
                .then(|| leaf.value_of_fields(fields))
                .flatten()
        });
    }

    /// Adds a number that already passed the filter.
    pub fn add_value(&mut self, time: i64, x: f64) {
        if let Some(i) = self.slot(time) {
            self.held += self.accs[i].add_number(x);
        }
    }

    /// `value`: the event's value if it passes the filter.
    fn add_with(&mut self, time: i64, value: impl FnOnce(&LeafPlan) -> Option<Scalar>) {
        let Some(i) = self.slot(time) else { return };
        if self.trivial {
            self.held += self.accs[i].add_number(1.0);
        } else if let Some(v) = value(self.leaf) {
            self.held += self.accs[i].add(&v);
        }
    }

    pub fn finish(self) -> Vec<Option<f64>> {
        self.accs.into_iter().map(Accumulator::finish).collect()
    }

    pub fn reduce(&self) -> Reduce {
        self.leaf.reduce
    }
}

/// A top-level scalar read from a column, without building a JSON value.
#[derive(Debug, Clone, Copy)]
enum Cand<'a> {
    Num(f64),
    Str(&'a str),
}

fn cand<'a>(col: &ColumnView<'a>, i: usize) -> Option<Cand<'a>> {
    if col.is_number() {
        col.number(i).map(Cand::Num)
    } else {
        col.text(i).map(Cand::Str)
    }
}

fn cand_eq(c: Cand<'_>, lit: &Literal) -> bool {
    match (c, lit) {
        (Cand::Num(a), Literal::Number(b)) => a == *b,
        (Cand::Str(a), Literal::String(b)) => a == b,
        _ => false,
    }
}

fn cand_cmp(c: Cand<'_>, lit: &Literal) -> Option<std::cmp::Ordering> {
    match (c, lit) {
        (Cand::Num(a), Literal::Number(b)) => a.partial_cmp(b),
        (Cand::Str(a), Literal::String(b)) => Some(a.cmp(b.as_str())),
        _ => None,
    }
}

/// One condition on a scalar (or missing) top-level field, with the same
/// MongoDB semantics as [`crate::plan::EventFilter::matches`] gives a scalar.
fn scalar_test(test: &Test, c: Option<Cand<'_>>) -> bool {
    use std::cmp::Ordering::*;
    let eq = |lit: &Literal| match c {
        None => matches!(lit, Literal::Null),
        Some(c) => cand_eq(c, lit),
    };
    let cmp = |lit: &Literal, ok: fn(std::cmp::Ordering) -> bool| match c {
        None => matches!(lit, Literal::Null) && ok(Equal),
        Some(c) => cand_cmp(c, lit).is_some_and(ok),
    };
    match test {
        Test::Eq(lit) => eq(lit),
        Test::Ops(ops) => ops.iter().all(|op| match op {
            OpTest::Ne(l) => !eq(l),
            OpTest::Lt(l) => cmp(l, |o| o == Less),
            OpTest::Le(l) => cmp(l, |o| o != Greater),
            OpTest::Gt(l) => cmp(l, |o| o == Greater),
            OpTest::Ge(l) => cmp(l, |o| o != Less),
            OpTest::Regex(p) => matches!(c, Some(Cand::Str(s)) if p.regex.is_match(s)),
            OpTest::In(items) => items.iter().any(eq),
            OpTest::Nin(items) => !items.iter().any(eq),
            OpTest::Exists(want) => c.is_some() == *want,
        }),
    }
}

/// A leaf evaluated straight from a block's columns: every condition is on a
/// top-level field with a column, and the value is 1 or a number column.
pub struct ColumnLeaf<'p, 'b> {
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
            Condition::Each(col, test) => scalar_test(test, cand(col, i)),
            Condition::Codes { col, pass, missing } => match col.code(i) {
                Some(c) => pass.get(c as usize).copied().unwrap_or(false),
                None => *missing,
            },
        }
    }
}

impl<'p, 'b> ColumnLeaf<'p, 'b> {
    /// `None` when the leaf needs something columns cannot give.
    pub fn new(leaf: &'p LeafPlan, block: &Block<'b>) -> Option<Self> {
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
                        .map(|s| scalar_test(&c.test, Some(Cand::Str(s))))
                        .collect(),
                    missing: scalar_test(&c.test, None),
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

    /// The event's value if it passes the filter.
    pub fn value(&self, i: usize) -> Option<f64> {
        if !self.conditions.iter().all(|c| c.holds(i)) {
            return None;
        }
        match &self.value {
            None => Some(1.0),
            Some(col) => col.number(i),
        }
    }
}

/// Computes bins from events given as (time, data).
pub fn compute_bins<'a>(
    leaf: &LeafPlan,
    tier: Tier,
    first: i64,
    n: usize,
    events: impl IntoIterator<Item = (i64, &'a Value)>,
) -> Vec<Option<f64>> {
    let mut c = BinComputer::new(leaf, tier, first, n);
    for (t, d) in events {
        c.add(t, d);
    }
    c.finish()
}

/// The top-level data fields a leaf reads (filters and value); empty when it
/// reads none, so events need not be parsed at all.
pub fn needed_fields(leaf: &LeafPlan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in &leaf.filter.conditions {
        if let Some(PathStep::Key(k)) = c.path.first() {
            out.insert(k.clone());
        } else if let Some(PathStep::Index(i)) = c.path.first() {
            out.insert(i.to_string());
        }
    }
    for f in &leaf.fields {
        out.insert(f.head.clone());
    }
    out
}

/// The values of a few named top-level fields of one event (reused from
/// event to event, so parsing allocates only for the values themselves).
pub struct Slots {
    names: Vec<String>,
    values: Vec<Option<Value>>,
}

impl Slots {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let names: Vec<String> = names.into_iter().collect();
        let values = vec![None; names.len()];
        Slots { names, values }
    }

    /// Sets every slot, in name order, from columns of a block.
    pub fn fill_from(&mut self, columns: &[crate::storage::columns::ColumnView<'_>], i: usize) {
        for (slot, c) in self.values.iter_mut().zip(columns) {
            c.write_into(i, slot);
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

impl crate::plan::filter::Fields for Slots {
    fn field(&self, name: &str) -> Option<&Value> {
        self.values.get(self.position(name)?)?.as_ref()
    }
}

/// What [`parse_slots`] found.
pub enum Parsed {
    /// The data is an object; the needed fields are in the slots.
    Object,
    /// The data is not an object; here it is whole.
    Other(Value),
}

/// Parses event data into `slots`: only the named top-level fields of an
/// object are materialised, everything else is skipped.
pub fn parse_slots(json: &[u8], slots: &mut Slots) -> Result<Parsed, serde_json::Error> {
    struct Seed<'s>(&'s mut Slots);
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Parsed;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Parsed;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Parsed, M::Error> {
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match self.0.position(&k) {
                    Some(i) => self.0.values[i] = Some(map.next_value::<Value>()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Parsed::Object)
        }
        fn visit_bool<E>(self, v: bool) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::from(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::String(v.to_owned())))
        }
        fn visit_unit<E>(self) -> Result<Parsed, E> {
            Ok(Parsed::Other(Value::Null))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element::<Value>()? {
                items.push(v);
            }
            Ok(Parsed::Other(Value::Array(items)))
        }
    }
    for v in &mut slots.values {
        *v = None;
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = Seed(slots).deserialize(&mut de)?;
    de.end()?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{MetricPlan, compile_metric};
    use serde_json::json;

    fn leaf(e: &str) -> LeafPlan {
        match compile_metric(e).unwrap().1 {
            MetricPlan::Leaf(l) => l,
            _ => panic!(),
        }
    }

    #[test]
    fn bins_events_by_tier() {
        let l = leaf("sum(t1(x).gt(x, 1))");
        let tier = Tier::from_step(60_000).unwrap();
        let events = [
            (0, json!({"x": 5})),
            (59_999, json!({"x": 1})),
            (60_000, json!({"x": 2})),
            (125_000, json!({"x": "7"})),
            (200_000, json!({"x": 100})),
            (-1, json!({"x": 100})),
        ];
        let got = compute_bins(&l, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(5.0), Some(2.0), Some(0.0)]);
        let m = leaf("median(t1(x))");
        let got = compute_bins(&m, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(3.0), Some(2.0), None]);
        let c = leaf("sum(t1)");
        let got = compute_bins(&c, tier, 0, 3, events.iter().map(|(t, d)| (*t, d)));
        assert_eq!(got, [Some(2.0), Some(1.0), Some(1.0)]);
    }

    #[test]
    fn parses_only_needed_fields() {
        let l = leaf("sum(t1(a.b).eq(c[0], 1).gt(d, 2))");
        let need = needed_fields(&l);
        assert_eq!(
            need.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "c", "d"]
        );
        let mut slots = Slots::new(need);
        let parsed = parse_slots(
            br#"{"a":{"b":1,"z":[1,2]},"big":{"x":[1,2,3]},"c":[1],"d":3,"e":"s"}"#,
            &mut slots,
        )
        .unwrap();
        assert!(matches!(parsed, Parsed::Object));
        use crate::plan::filter::Fields;
        assert_eq!(slots.field("a"), Some(&json!({"b": 1, "z": [1, 2]})));
        assert_eq!(slots.field("d"), Some(&json!(3)));
        assert_eq!(slots.field("big"), None);
        assert!(needed_fields(&leaf("sum(t1)")).is_empty());
        assert!(
            matches!(parse_slots(b"[1,2]", &mut slots).unwrap(), Parsed::Other(v) if v == json!([1, 2]))
        );
        // slots are cleared between events
        assert_eq!(slots.field("a"), None);
        assert!(parse_slots(b"{", &mut slots).is_err());
    }

    #[test]
    fn slots_give_the_same_bins_as_whole_values() {
        let l = leaf("sum(t1(a.b * 2).eq(c[0], 1).gt(d, 2))");
        let tier = Tier::from_step(60_000).unwrap();
        let events = [
            br#"{"a":{"b":1},"c":[1],"d":3,"z":"skip"}"#.as_slice(),
            br#"{"a":{"b":5},"c":[2],"d":3}"#,
            br#"{"a":{"b":7},"c":[1],"d":9}"#,
            br#"{"a":{"b":7},"c":1,"d":9}"#,
            br#"[1,2]"#,
            br#"{"c":[1],"d":9}"#,
        ];
        let mut whole = BinComputer::new(&l, tier, 0, 1);
        let mut fast = BinComputer::new(&l, tier, 0, 1);
        let mut slots = Slots::new(needed_fields(&l));
        for e in events {
            whole.add(0, &serde_json::from_slice(e).unwrap());
            match parse_slots(e, &mut slots).unwrap() {
                Parsed::Object => fast.add_fields(0, &slots),
                Parsed::Other(v) => fast.add(0, &v),
            }
        }
        assert_eq!(whole.finish(), [Some(16.0)]);
        assert_eq!(fast.finish(), [Some(16.0)]);
    }

    #[test]
    fn finished_bins_give_back_what_they_kept() {
        let tier = Tier::from_step(60_000).unwrap();
        for source in [
            "median(t1(x))",
            "distinct(t1(x))",
            "p90(t1(x))",
            "sum(t1(x))",
        ] {
            let l = leaf(source);
            let events: Vec<(i64, Value)> = (0..300)
                .map(|i| (i * 1_000, json!({"x": i % 17})))
                .collect();
            let mut whole = BinComputer::new(&l, tier, 0, 5);
            let mut closing = BinComputer::new(&l, tier, 0, 5);
            let mut peak = 0;
            for (t, d) in &events {
                whole.add(*t, d);
                closing.close_before(*t - t % 60_000);
                closing.add(*t, d);
                peak = peak.max(closing.held_bytes());
            }
            if source.starts_with("sum") {
                assert_eq!(whole.held_bytes(), 0);
            } else {
                assert!(peak < whole.held_bytes(), "{source}: {peak}");
            }
            closing.close_before(i64::MAX);
            assert_eq!(closing.held_bytes(), 0, "{source}");
            assert_eq!(closing.finish(), whole.finish(), "{source}");
        }
    }
}
