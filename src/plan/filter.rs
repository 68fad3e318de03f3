//! The storage-neutral event filter: built from an expression's filters and
//! value fields exactly as Cube built its MongoDB query document, evaluated over
//! JSON event data with MongoDB's semantics, and printable as that document.

use regex::Regex;
use serde_json::{Map, Value};

use crate::expr::{FieldPath, Filter, FilterOp, Literal, Segment, compile_regex};
use crate::model::js::number_json;

/// One step of a MongoDB dotted path below `d`.
#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    Key(String),
    /// A numeric step: an array index, or an object key spelled with digits.
    Index(u32),
}

/// The top-level fields of an object, however they are held.
pub trait Fields {
    fn field(&self, name: &str) -> Option<&Value>;
}

impl Fields for serde_json::Map<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A compiled `re` pattern with the text it came from.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

/// One operator of a `{ "$op": literal, ... }` condition.
#[derive(Debug, Clone)]
pub enum OpTest {
    Ne(Literal),
    Lt(Literal),
    Le(Literal),
    Gt(Literal),
    Ge(Literal),
    Regex(Pattern),
    In(Vec<Literal>),
    Nin(Vec<Literal>),
    Exists(bool),
}

/// What one key of the filter document requires.
#[derive(Debug, Clone)]
pub enum Test {
    /// `"d.x": literal` — an `eq` filter; it overrides any operator on the key.
    Eq(Literal),
    /// `"d.x": {"$gt": .., "$lte": ..}` — all must hold.
    Ops(Vec<OpTest>),
}

/// One key of the filter document.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The MongoDB key, e.g. `d.x.y.0.z`.
    pub key: String,
    pub path: Vec<PathStep>,
    pub test: Test,
}

/// A conjunction of conditions over an event's data, in the order Cube's
/// document would list them.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub conditions: Vec<Condition>,
}

impl OpTest {
    fn mongo_name(&self) -> &'static str {
        match self {
            OpTest::Ne(_) => "$ne",
            OpTest::Lt(_) => "$lt",
            OpTest::Le(_) => "$lte",
            OpTest::Gt(_) => "$gt",
            OpTest::Ge(_) => "$gte",
            OpTest::Regex(_) => "$regex",
            OpTest::In(_) => "$in",
            OpTest::Nin(_) => "$nin",
            OpTest::Exists(_) => "$exists",
        }
    }

    fn mongo_value(&self) -> Value {
        match self {
            OpTest::Ne(l) | OpTest::Lt(l) | OpTest::Le(l) | OpTest::Gt(l) | OpTest::Ge(l) => {
                literal_json(l)
            }
            OpTest::Regex(p) => Value::String(p.source.clone()),
            OpTest::In(items) | OpTest::Nin(items) => {
                Value::Array(items.iter().map(literal_json).collect())
            }
            OpTest::Exists(b) => Value::Bool(*b),
        }
    }
}

/// A literal as JSON, numbers written as JavaScript would (`42`, not `42.0`).
pub fn literal_json(lit: &Literal) -> Value {
    match lit {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Number(x) => number_json(*x),
        Literal::String(s) => Value::String(s.clone()),
        Literal::Array(items) => Value::Array(items.iter().map(literal_json).collect()),
    }
}

/// `d.x.y.0.z`: the filter key of a field (array indices kept).
pub fn long_key(field: &FieldPath) -> (String, Vec<PathStep>) {
    let mut key = format!("d.{}", field.head);
    let mut path = vec![PathStep::Key(field.head.clone())];
    for seg in &field.tail {
        match seg {
            Segment::Name(n) => {
                key.push('.');
                key.push_str(n);
                path.push(PathStep::Key(n.clone()));
            }
            Segment::Index(i) => {
                key.push_str(&format!(".{i}"));
                path.push(PathStep::Index(*i));
            }
        }
    }
    (key, path)
}

/// `d.x.y.z`: the projection / existence key of a field (array indices dropped).
pub fn short_key(field: &FieldPath) -> (String, Vec<PathStep>) {
    let mut key = format!("d.{}", field.head);
    let mut path = vec![PathStep::Key(field.head.clone())];
    for seg in &field.tail {
        if let Segment::Name(n) = seg {
            key.push('.');
            key.push_str(n);
            path.push(PathStep::Key(n.clone()));
        }
    }
    (key, path)
}

impl EventFilter {
    /// Builds the filter as Cube did: filters in order, then `$exists: true` for
    /// each value field whose short key no filter names.
    ///
    /// Fails only if an `re` pattern does not compile (the parser rejects those
    /// already, so this fails only for hand-built ASTs).
    pub fn build(filters: &[Filter], value_fields: &[FieldPath]) -> Result<Self, regex::Error> {
        let mut out = EventFilter::default();
        for f in filters {
            let (key, path) = long_key(&f.field);
            let op = match (f.op, &f.literal) {
                (FilterOp::Eq, lit) => {
                    out.set_eq(key, path, lit.clone());
                    continue;
                }
                (FilterOp::Ne, l) => OpTest::Ne(l.clone()),
                (FilterOp::Lt, l) => OpTest::Lt(l.clone()),
                (FilterOp::Le, l) => OpTest::Le(l.clone()),
                (FilterOp::Gt, l) => OpTest::Gt(l.clone()),
                (FilterOp::Ge, l) => OpTest::Ge(l.clone()),
                (FilterOp::Re, l) => {
                    let source = match l {
                        Literal::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let regex = compile_regex(&source)?;
                    OpTest::Regex(Pattern { source, regex })
                }
                (FilterOp::In, l) => OpTest::In(array_items(l)),
                (FilterOp::Nin, l) => OpTest::Nin(array_items(l)),
                (FilterOp::Exists, l) => OpTest::Exists(!matches!(l, Literal::Bool(false))),
            };
            out.set_op(key, path, op);
        }
        for field in value_fields {
            let (key, path) = short_key(field);
            if !out.conditions.iter().any(|c| c.key == key) {
                out.conditions.push(Condition {
                    key,
                    path,
                    test: Test::Ops(vec![OpTest::Exists(true)]),
                });
            }
        }
        Ok(out)
    }

    fn set_eq(&mut self, key: String, path: Vec<PathStep>, lit: Literal) {
        match self.conditions.iter_mut().find(|c| c.key == key) {
            Some(existing) => existing.test = Test::Eq(lit),
            None => self.conditions.push(Condition {
                key,
                path,
                test: Test::Eq(lit),
            }),
        }
    }

    fn set_op(&mut self, key: String, path: Vec<PathStep>, op: OpTest) {
        match self.conditions.iter_mut().find(|c| c.key == key) {
            // An existing eq wins over any operator, as in Cube.
            Some(Condition {
                test: Test::Eq(_), ..
            }) => {}
            Some(Condition {
                test: Test::Ops(ops),
                ..
            }) => {
                // Setting an operator twice keeps its place and takes the new value.
                match ops.iter_mut().find(|o| o.mongo_name() == op.mongo_name()) {
                    Some(slot) => *slot = op,
                    None => ops.push(op),
                }
            }
            None => self.conditions.push(Condition {
                key,
                path,
                test: Test::Ops(vec![op]),
            }),
        }
    }

    /// The MongoDB query document Cube would have sent (without the time range).
    pub fn query_document(&self) -> Map<String, Value> {
        self.conditions
            .iter()
            .map(|c| {
                let v = match &c.test {
                    Test::Eq(lit) => literal_json(lit),
                    Test::Ops(ops) => Value::Object(
                        ops.iter()
                            .map(|o| (o.mongo_name().to_owned(), o.mongo_value()))
                            .collect(),
                    ),
                };
                (c.key.clone(), v)
            })
            .collect()
    }

    /// Whether an event whose `data` is `data` passes every condition.
    pub fn matches(&self, data: &Value) -> bool {
        self.matches_with(|path, out| resolve(data, path, out))
    }

    /// Like [`matches`](Self::matches) for object data given as its
    /// top-level fields (the evaluator parses only the fields it needs).
    pub fn matches_fields(&self, fields: &impl Fields) -> bool {
        self.matches_with(|path, out| {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            let child = match first {
                PathStep::Key(k) => fields.field(k),
                PathStep::Index(i) => fields.field(&i.to_string()),
            };
            if let Some(v) = child {
                resolve(v, rest, out);
            }
        })
    }

    fn matches_with<'a>(
        &self,
        mut resolve_path: impl FnMut(&[PathStep], &mut Vec<&'a Value>),
    ) -> bool {
        let mut candidates = Vec::new();
        self.conditions.iter().all(|c| {
            candidates.clear();
            resolve_path(&c.path, &mut candidates);
            c.test.holds(&candidates)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }
}

fn array_items(lit: &Literal) -> Vec<Literal> {
    match lit {
        Literal::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Collects the values a MongoDB path reaches: through objects by key, into
/// every object element of an array met on the way, numeric steps indexing
/// arrays; a reached array also offers each of its elements.
fn resolve<'a>(v: &'a Value, path: &[PathStep], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = path.split_first() else {
        out.push(v);
        if let Value::Array(items) = v {
            out.extend(items.iter());
        }
        return;
    };
    match (v, step) {
        (Value::Object(m), PathStep::Key(k)) => {
            if let Some(child) = m.get(k) {
                resolve(child, rest, out);
            }
        }
        (Value::Object(m), PathStep::Index(i)) => {
            if let Some(child) = m.get(&i.to_string()) {
                resolve(child, rest, out);
            }
        }
        (Value::Array(items), PathStep::Index(i)) => {
            if let Some(child) = usize::try_from(*i).ok().and_then(|i| items.get(i)) {
                resolve(child, rest, out);
            }
            let key = i.to_string();
            for item in items {
                if let Some(child) = item.as_object().and_then(|m| m.get(&key)) {
                    resolve(child, rest, out);
                }
            }
        }
        (Value::Array(items), PathStep::Key(_)) => {
            for item in items.iter().filter(|item| item.is_object()) {
                resolve(item, path, out);
            }
        }
        _ => {}
    }
}

/// One value a condition's path reached, as a condition sees it. The JSON
/// path ([`EventFilter::matches`]) and a backend that reads top-level
/// scalars from columns ([`ScalarRef`]) both decide through
/// [`Test::holds`]: MongoDB's filter semantics are written once, here.
pub trait Candidate {
    /// Type-aware equality: numbers by value, no conversions across types.
    fn equals(&self, lit: &Literal) -> bool;
    /// Orders the value against a literal of the same kind; `None` across kinds.
    fn compare(&self, lit: &Literal) -> Option<std::cmp::Ordering>;
    /// The value if it is a string (what `$regex` tests).
    fn text(&self) -> Option<&str>;
}

impl Candidate for &Value {
    fn equals(&self, lit: &Literal) -> bool {
        value_equals(self, lit)
    }

    fn compare(&self, lit: &Literal) -> Option<std::cmp::Ordering> {
        match (*self, lit) {
            (Value::Number(a), Literal::Number(b)) => a.as_f64()?.partial_cmp(b),
            (Value::String(a), Literal::String(b)) => Some(a.as_str().cmp(b.as_str())),
            (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
            (Value::Null, Literal::Null) => Some(std::cmp::Ordering::Equal),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }
}

/// A top-level scalar as a backend may hold it outside JSON (a number or a
/// string column), tested without building a JSON value.
#[derive(Debug, Clone, Copy)]
pub enum ScalarRef<'a> {
    Number(f64),
    Text(&'a str),
}

impl Candidate for ScalarRef<'_> {
    fn equals(&self, lit: &Literal) -> bool {
        match (self, lit) {
            (ScalarRef::Number(a), Literal::Number(b)) => a == b,
            (ScalarRef::Text(a), Literal::String(b)) => a == b,
            _ => false,
        }
    }

    fn compare(&self, lit: &Literal) -> Option<std::cmp::Ordering> {
        match (self, lit) {
            (ScalarRef::Number(a), Literal::Number(b)) => a.partial_cmp(b),
            (ScalarRef::Text(a), Literal::String(b)) => Some((*a).cmp(b.as_str())),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            ScalarRef::Text(s) => Some(s),
            ScalarRef::Number(_) => None,
        }
    }
}

/// Type-aware equality: numbers by value, no conversions across types.
pub fn value_equals(v: &Value, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::Null, Literal::Null) => true,
        (Value::Bool(a), Literal::Bool(b)) => a == b,
        (Value::Number(a), Literal::Number(b)) => a.as_f64() == Some(*b),
        (Value::String(a), Literal::String(b)) => a == b,
        (Value::Array(a), Literal::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| value_equals(x, y))
        }
        _ => false,
    }
}

/// `{key: lit}`: some reached value equals `lit`; `null` also matches a missing field.
fn eq_any<C: Candidate>(candidates: &[C], lit: &Literal) -> bool {
    if candidates.is_empty() {
        return matches!(lit, Literal::Null);
    }
    candidates.iter().any(|v| v.equals(lit))
}

fn cmp_any<C: Candidate>(
    candidates: &[C],
    lit: &Literal,
    ok: fn(std::cmp::Ordering) -> bool,
) -> bool {
    if candidates.is_empty() && matches!(lit, Literal::Null) {
        // {$gte: null} and {$lte: null} match a missing field, as {$eq: null} does.
        return ok(std::cmp::Ordering::Equal);
    }
    candidates.iter().any(|v| v.compare(lit).is_some_and(ok))
}

fn op_matches<C: Candidate>(op: &OpTest, candidates: &[C]) -> bool {
    use std::cmp::Ordering::*;
    match op {
        OpTest::Ne(lit) => !eq_any(candidates, lit),
        OpTest::Lt(lit) => cmp_any(candidates, lit, |o| o == Less),
        OpTest::Le(lit) => cmp_any(candidates, lit, |o| o != Greater),
        OpTest::Gt(lit) => cmp_any(candidates, lit, |o| o == Greater),
        OpTest::Ge(lit) => cmp_any(candidates, lit, |o| o != Less),
        OpTest::Regex(p) => candidates
            .iter()
            .any(|v| v.text().is_some_and(|s| p.regex.is_match(s))),
        OpTest::In(items) => items.iter().any(|lit| eq_any(candidates, lit)),
        OpTest::Nin(items) => !items.iter().any(|lit| eq_any(candidates, lit)),
        OpTest::Exists(want) => candidates.is_empty() != *want,
    }
}

impl Test {
    /// Whether the values a condition's path reached (none: the field is
    /// missing) pass it, with MongoDB's semantics.
    pub fn holds<C: Candidate>(&self, candidates: &[C]) -> bool {
        match self {
            Test::Eq(lit) => eq_any(candidates, lit),
            Test::Ops(ops) => ops.iter().all(|op| op_matches(op, candidates)),
        }
    }
}
