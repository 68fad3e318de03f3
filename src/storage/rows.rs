//! A [`Selection`](super::Selection) evaluated over events held as JSON
//! text, for backends that store events that way (and for the embedded
//! backend's events that its columns cannot answer): only the top-level
//! fields the leaf reads are parsed, then `plan`'s filter and value decide.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{Selected, StoreError};
use crate::plan::filter::{Fields, PathStep};
use crate::plan::{LeafPlan, Scalar};

/// Most events one [`Batch`] holds before it is given to the caller.
pub const BATCH_EVENTS: usize = 4096;

/// `select` over (time, data JSON text) pairs that `feed` gives to the
/// visitor it is handed, every event of an hour before any of a later one
/// (what `scan_data` gives): each event is checked and valued by
/// [`RowSelector`], batched, with a [`Selected::Before`] at the start of
/// each hour. The default `select`, and any backend that reads events as
/// JSON, run this.
pub fn select_rows(
    leaf: &LeafPlan,
    visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    feed: impl FnOnce(&mut dyn FnMut(i64, &[u8]) -> ControlFlow<()>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut rows = RowSelector::new(leaf);
    let mut batch = Batch::default();
    let mut hour: Option<i64> = None;
    let mut bad = None;
    let mut stopped = false;
    feed(&mut |t, data| {
        let h = hour_of(t);
        if hour != Some(h) {
            hour = Some(h);
            if batch.flush(visit).is_break() || visit(Selected::Before(h)).is_break() {
                stopped = true;
                return ControlFlow::Break(());
            }
        }
        if let Err(e) = rows.select(t, data, &mut batch) {
            bad = Some(e);
            return ControlFlow::Break(());
        }
        if batch.is_full() && batch.flush(visit).is_break() {
            stopped = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = bad {
        return Err(e);
    }
    if !stopped {
        let _ = batch.flush(visit);
    }
    Ok(())
}

/// Selected events waiting to be given to the caller of `select`.
#[derive(Debug, Default)]
pub struct Batch {
    numbers: Vec<(i64, f64)>,
    values: Vec<(i64, Scalar)>,
}

impl Batch {
    /// Adds a selected event's value.
    pub fn push(&mut self, time: i64, value: Scalar) {
        match value {
            Scalar::Number(x) if !x.is_nan() => self.numbers.push((time, x)),
            other => self.values.push((time, other)),
        }
    }

    /// Adds a selected event whose value is a number (not NaN).
    pub fn push_number(&mut self, time: i64, x: f64) {
        self.numbers.push((time, x));
    }

    pub fn is_full(&self) -> bool {
        self.numbers.len() + self.values.len() >= BATCH_EVENTS
    }

    /// Gives what it holds to `visit` and empties itself.
    pub fn flush(
        &mut self,
        visit: &mut dyn FnMut(Selected<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if !self.numbers.is_empty() {
            let r = visit(Selected::Numbers(&self.numbers));
            self.numbers.clear();
            r?;
        }
        if !self.values.is_empty() {
            let r = visit(Selected::Values(&self.values));
            self.values.clear();
            r?;
        }
        ControlFlow::Continue(())
    }
}

/// Decides, event by event, whether a leaf selects an event and with what value.
pub struct RowSelector<'p> {
    leaf: &'p LeafPlan,
    slots: Slots,
    /// The leaf reads no field: nothing to parse.
    none_needed: bool,
}

impl<'p> RowSelector<'p> {
    pub fn new(leaf: &'p LeafPlan) -> Self {
        let names = top_level_fields(leaf);
        RowSelector {
            leaf,
            none_needed: names.is_empty(),
            slots: Slots::new(names),
        }
    }

    /// The names of the fields the leaf reads, in the order of the slots.
    pub fn names(&self) -> &[String] {
        &self.slots.names
    }

    /// Evaluates one event given as its data's JSON text.
    pub fn select(&mut self, time: i64, data: &[u8], out: &mut Batch) -> Result<(), StoreError> {
        if self.none_needed {
            self.select_slots(time, out);
            return Ok(());
        }
        match parse_slots(data, &mut self.slots) {
            Ok(Parsed::Object) => self.select_slots(time, out),
            Ok(Parsed::Other(v)) => {
                if self.leaf.filter.matches(&v)
                    && let Some(x) = self.leaf.value_of(&v)
                {
                    out.push(time, x);
                }
            }
            Err(e) => return Err(StoreError::Corrupt(format!("event data: {e}"))),
        }
        Ok(())
    }

    /// Sets the slots (in [`names`](Self::names) order) from values a
    /// backend holds outside JSON, for [`select_slots`](Self::select_slots).
    pub fn slots_mut(&mut self) -> impl Iterator<Item = &mut Option<Value>> {
        self.slots.values.iter_mut()
    }

    /// Evaluates one event of object data whose needed fields are in the slots.
    pub fn select_slots(&mut self, time: i64, out: &mut Batch) {
        if self.leaf.filter.matches_fields(&self.slots)
            && let Some(x) = self.leaf.value_of_fields(&self.slots)
        {
            out.push(time, x);
        }
    }
}

/// The top-level data fields a leaf reads (filters and value); empty when it
/// reads none, so events need not be parsed at all.
pub fn top_level_fields(leaf: &LeafPlan) -> BTreeSet<String> {
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

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

impl Fields for Slots {
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

/// The hour a time falls in (its start): the unit [`select`] and
/// [`scan_data`] go forward by.
///
/// [`select`]: super::EventStore::select
/// [`scan_data`]: super::EventStore::scan_data
pub fn hour_of(time: i64) -> i64 {
    time.saturating_sub(time.rem_euclid(HOUR_MS))
}

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

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
    fn parses_only_needed_fields() {
        let l = leaf("sum(t1(a.b).eq(c[0], 1).gt(d, 2))");
        let need = top_level_fields(&l);
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
        assert_eq!(slots.field("a"), Some(&json!({"b": 1, "z": [1, 2]})));
        assert_eq!(slots.field("d"), Some(&json!(3)));
        assert_eq!(slots.field("big"), None);
        assert!(top_level_fields(&leaf("sum(t1)")).is_empty());
        assert!(
            matches!(parse_slots(b"[1,2]", &mut slots).unwrap(), Parsed::Other(v) if v == json!([1, 2]))
        );
        // slots are cleared between events
        assert_eq!(slots.field("a"), None);
        assert!(parse_slots(b"{", &mut slots).is_err());
    }

    /// What a batch holds, in the order it gives it.
    fn drain(batch: &mut Batch) -> Vec<(i64, Scalar)> {
        let mut out = Vec::new();
        let _ = batch.flush(&mut |s| {
            match s {
                Selected::Numbers(xs) => {
                    out.extend(xs.iter().map(|&(t, x)| (t, Scalar::Number(x))))
                }
                Selected::Values(vs) => out.extend(vs.iter().cloned()),
                Selected::Before(_) | Selected::Partials(_) => {}
            }
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn rows_select_what_the_filter_and_value_select_on_whole_data() {
        let events = [
            br#"{"a":{"b":1},"c":[1],"d":3,"z":"skip"}"#.as_slice(),
            br#"{"a":{"b":5},"c":[2],"d":3}"#,
            br#"{"a":{"b":7},"c":[1],"d":9}"#,
            br#"{"a":{"b":7},"c":1,"d":9}"#,
            br#"{"a":{"b":"x"},"c":[1],"d":9}"#,
            br#"[1,2]"#,
            br#"{"c":[1],"d":9}"#,
        ];
        for source in [
            "sum(t1(a.b * 2).eq(c[0], 1).gt(d, 2))",
            "distinct(t1(a.b).gt(d, 2))",
            "sum(t1)",
            "count(t1(a.b))",
        ] {
            let l = leaf(source);
            let mut rows = RowSelector::new(&l);
            let mut batch = Batch::default();
            let mut want = Vec::new();
            for (t, e) in events.iter().enumerate() {
                let t = t as i64;
                rows.select(t, e, &mut batch).unwrap();
                let v: Value = serde_json::from_slice(e).unwrap();
                if l.filter.matches(&v)
                    && let Some(x) = l.value_of(&v)
                {
                    want.push((t, x));
                }
            }
            let mut got = drain(&mut batch);
            got.sort_by_key(|(t, _)| *t);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{source}");
        }
        let l = leaf("sum(t1(a.b * 2).eq(c[0], 1).gt(d, 2))");
        let mut rows = RowSelector::new(&l);
        let mut batch = Batch::default();
        assert!(rows.select(0, b"{", &mut batch).is_err());
    }
}
