//! Per-event value evaluation: field access as JavaScript's `o.a[0].b`, and
//! arithmetic that yields NaN when an operand is not a number (numeric reduces
//! then ignore the event).

use serde_json::{Map, Value};

use super::filter::Fields;
use crate::expr::{FieldPath, Segment, ValueExpr};

/// A value computed from one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(f64),
    /// A non-numeric JSON value read straight from a field (string, bool, ...).
    Other(Value),
}

impl Scalar {
    /// The number, if this is one (NaN is not).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Scalar::Number(x) if !x.is_nan() => Some(*x),
            _ => None,
        }
    }
}

/// Reads a field of `data` by plain access (no array fan-out).
pub fn lookup<'a>(data: &'a Value, field: &FieldPath) -> Option<&'a Value> {
    lookup_tail(data.get(&field.head)?, field)
}

/// [`lookup`] on object data given as its top-level fields.
pub fn lookup_fields<'a>(fields: &'a impl Fields, field: &FieldPath) -> Option<&'a Value> {
    lookup_tail(fields.field(&field.head)?, field)
}

fn lookup_tail<'a>(mut v: &'a Value, field: &FieldPath) -> Option<&'a Value> {
    for seg in &field.tail {
        v = match (seg, v) {
            (Segment::Name(n), Value::Object(m)) => m.get(n)?,
            (Segment::Index(i), Value::Array(items)) => items.get(usize::try_from(*i).ok()?)?,
            (Segment::Index(i), Value::Object(m)) => m.get(&i.to_string())?,
            _ => return None,
        };
    }
    Some(v)
}

fn number(s: Scalar) -> f64 {
    match s {
        Scalar::Number(x) => x,
        Scalar::Other(_) => f64::NAN,
    }
}

/// Evaluates a value expression; `None` if a field it reads is missing.
pub fn eval(expr: &ValueExpr, data: &Value) -> Option<Scalar> {
    eval_with(expr, &|f| lookup(data, f))
}

/// [`eval`] on object data given as its top-level fields.
pub fn eval_fields(expr: &ValueExpr, fields: &impl Fields) -> Option<Scalar> {
    eval_with(expr, &|f| lookup_fields(fields, f))
}

fn eval_with<'a>(
    expr: &ValueExpr,
    get: &dyn Fn(&FieldPath) -> Option<&'a Value>,
) -> Option<Scalar> {
    Some(match expr {
        ValueExpr::Field(f) => match get(f)? {
            Value::Number(n) => Scalar::Number(n.as_f64().unwrap_or(f64::NAN)),
            other => Scalar::Other(other.clone()),
        },
        ValueExpr::Number(x) => Scalar::Number(*x),
        ValueExpr::Neg(arg) => Scalar::Number(-number(eval_with(arg, get)?)),
        ValueExpr::Binary(op, l, r) => {
            let a = number(eval_with(l, get)?);
            let b = number(eval_with(r, get)?);
            Scalar::Number(op.apply(a, b))
        }
        ValueExpr::Call(func, arg) => Scalar::Number(func.apply(number(eval_with(arg, get)?))),
    })
}

/// Appends every field the expression reads, skipping repeats.
pub fn collect_fields(expr: &ValueExpr, out: &mut Vec<FieldPath>) {
    match expr {
        ValueExpr::Field(f) => {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        ValueExpr::Number(_) => {}
        ValueExpr::Neg(a) | ValueExpr::Call(_, a) => collect_fields(a, out),
        ValueExpr::Binary(_, l, r) => {
            collect_fields(l, out);
            collect_fields(r, out);
        }
    }
}

/// Copies the named (short-key) field of `data` into `out` at the same place,
/// as a MongoDB projection on `d.a.b` would.
pub fn project_into(data: &Value, field: &FieldPath, out: &mut Map<String, Value>) {
    let names: Vec<&str> = std::iter::once(field.head.as_str())
        .chain(field.tail.iter().filter_map(|s| match s {
            Segment::Name(n) => Some(n.as_str()),
            Segment::Index(_) => None,
        }))
        .collect();
    if let Value::Object(src) = data {
        project_names(src, &names, out);
    }
}

fn project_names(src: &Map<String, Value>, names: &[&str], out: &mut Map<String, Value>) {
    let Some((first, rest)) = names.split_first() else {
        return;
    };
    let Some(v) = src.get(*first) else {
        return;
    };
    if rest.is_empty() {
        out.insert((*first).to_owned(), v.clone());
        return;
    }
    match v {
        Value::Object(child) => {
            let slot = out
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(slot) = slot {
                project_names(child, rest, slot);
            }
        }
        Value::Array(items) => {
            // MongoDB projects through arrays element by element.
            let projected: Vec<Value> = items
                .iter()
                .filter_map(|item| item.as_object())
                .map(|child| {
                    let mut m = Map::new();
                    project_names(child, rest, &mut m);
                    Value::Object(m)
                })
                .collect();
            out.insert((*first).to_owned(), Value::Array(projected));
        }
        _ => {}
    }
}
