//! The planner: turns parsed expressions into query plans.
//!
//! A metric plan is an arithmetic tree whose leaves are [`LeafPlan`]s: one event
//! type, one reduce, a value evaluator, a storage-neutral [`EventFilter`], and
//! the canonical source text that keys the metric cache. Pure code: no IO, no async.

pub mod filter;
pub mod value;

use serde_json::{Map, Value, json};

use crate::model::js::number_json;

pub use filter::EventFilter;
pub use value::Scalar;

use crate::expr::{
    self, BinOp, EventExpr, FieldPath, MetricExpr, ParseError, Reduce, ReduceExpr, ValueExpr,
};

/// Why an expression could not be planned.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    Parse(ParseError),
    /// Only for hand-built ASTs: the parser rejects bad patterns itself.
    Regex(String),
    /// A reduce whose canonical text (its cache key) is longer than
    /// [`MAX_SOURCE_BYTES`](crate::limits::MAX_SOURCE_BYTES).
    SourceTooLong {
        len: usize,
    },
    /// Grouped reduces of one expression that group differently.
    Group(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Parse(e) => write!(f, "{e}"),
            PlanError::Regex(e) => write!(f, "invalid regular expression: {e}"),
            PlanError::Group(e) => f.write_str(e),
            PlanError::SourceTooLong { len } => write!(
                f,
                "a reduce's canonical text is {len} bytes, more than {} (numbers are spelled out in full there)",
                crate::limits::MAX_SOURCE_BYTES
            ),
        }
    }
}

impl std::error::Error for PlanError {}

impl From<ParseError> for PlanError {
    fn from(e: ParseError) -> Self {
        PlanError::Parse(e)
    }
}

impl From<regex::Error> for PlanError {
    fn from(e: regex::Error) -> Self {
        PlanError::Regex(e.to_string())
    }
}

/// One reduce over one event type: the unit the evaluator computes and caches.
#[derive(Debug, Clone)]
pub struct LeafPlan {
    pub event_type: String,
    pub reduce: Reduce,
    /// `None`: each event counts as 1.
    pub value: Option<ValueExpr>,
    pub filter: EventFilter,
    /// Fields the value reads (projection), in order of first use, deduplicated.
    pub fields: Vec<FieldPath>,
    /// The field a grouped leaf splits its value by (`.group(field)`).
    pub group: Option<FieldPath>,
    /// Canonical text of the leaf, e.g. `sum(request(duration).eq(path, "/"))`
    /// (a grouped one with its `.group(field)`, without a `top`): the cache key.
    pub source: String,
}

impl LeafPlan {
    pub fn new(leaf: &ReduceExpr) -> Result<Self, PlanError> {
        let mut fields = Vec::new();
        if let Some(v) = &leaf.value {
            value::collect_fields(v, &mut fields);
        }
        // Events without the group field are in no group: the filter
        // requires it as it requires the fields the value reads.
        let mut required = fields.clone();
        if let Some(g) = leaf.group.as_ref().filter(|g| !required.contains(&g.field)) {
            required.push(g.field.clone());
        }
        let filter = EventFilter::build(&leaf.filters, &required)?;
        let source = leaf.source();
        if source.len() > crate::limits::MAX_SOURCE_BYTES {
            return Err(PlanError::SourceTooLong { len: source.len() });
        }
        Ok(LeafPlan {
            event_type: leaf.event_type.clone(),
            reduce: leaf.reduce,
            value: leaf.value.clone(),
            filter,
            fields,
            group: leaf.group.as_ref().map(|g| g.field.clone()),
            source,
        })
    }

    /// The group of an event's data: its group field's value in
    /// JavaScript's `String(v)`; `None` when the field is missing (or the
    /// leaf is not grouped).
    pub fn group_of(&self, data: &Value) -> Option<String> {
        let field = self.group.as_ref()?;
        value::lookup(data, field).map(crate::model::js::string)
    }

    /// The value this leaf takes from an event's data; `None` when a field it
    /// reads is missing (the event is skipped).
    pub fn value_of(&self, data: &Value) -> Option<Scalar> {
        match &self.value {
            None => Some(Scalar::Number(1.0)),
            Some(v) => value::eval(v, data),
        }
    }

    /// [`value_of`](Self::value_of) for object data given as its top-level fields.
    pub fn value_of_fields(&self, fields: &impl filter::Fields) -> Option<Scalar> {
        match &self.value {
            None => Some(Scalar::Number(1.0)),
            Some(v) => value::eval_fields(v, fields),
        }
    }

    /// MongoDB projection document: `{"d.x.y": 1, ...}`.
    pub fn projection(&self) -> Map<String, Value> {
        projection(&self.fields)
    }
}

fn projection(fields: &[FieldPath]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (filter::short_key(f).0, json!(1)))
        .collect()
}

/// How a grouped expression groups: one field for all its grouped
/// reduces, and the `top` if one was given.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub field: FieldPath,
    pub top: Option<u32>,
}

/// A planned metric expression.
#[derive(Debug, Clone)]
pub enum MetricPlan {
    Constant(f64),
    Neg(Box<MetricPlan>),
    Binary(BinOp, Box<MetricPlan>, Box<MetricPlan>),
    Leaf(LeafPlan),
}

impl MetricPlan {
    /// Plans a parsed metric expression; `-` applied to a constant folds into it.
    pub fn new(expr: &MetricExpr) -> Result<Self, PlanError> {
        Ok(match expr {
            MetricExpr::Constant(x) => MetricPlan::Constant(*x),
            MetricExpr::Neg(arg) => match MetricPlan::new(arg)? {
                MetricPlan::Constant(x) => MetricPlan::Constant(-x),
                other => MetricPlan::Neg(Box::new(other)),
            },
            MetricExpr::Binary(op, l, r) => MetricPlan::Binary(
                *op,
                Box::new(MetricPlan::new(l)?),
                Box::new(MetricPlan::new(r)?),
            ),
            MetricExpr::Reduce(leaf) => MetricPlan::Leaf(LeafPlan::new(leaf)?),
        })
    }

    /// How the expression groups, `None` if no reduce of it is grouped.
    /// Its grouped reduces must group by the same field, and give the
    /// same `top` if more than one gives one.
    pub fn group(expr: &MetricExpr) -> Result<Option<GroupSpec>, PlanError> {
        let mut spec: Option<GroupSpec> = None;
        let mut stack = vec![expr];
        while let Some(e) = stack.pop() {
            match e {
                MetricExpr::Constant(_) => {}
                MetricExpr::Neg(a) => stack.push(a),
                MetricExpr::Binary(_, l, r) => {
                    stack.push(r);
                    stack.push(l);
                }
                MetricExpr::Reduce(ReduceExpr { group: Some(g), .. }) => match &mut spec {
                    None => {
                        spec = Some(GroupSpec {
                            field: g.field.clone(),
                            top: g.top,
                        })
                    }
                    Some(s) => {
                        if s.field != g.field {
                            return Err(PlanError::Group(format!(
                                "every grouped reduce of an expression must group by the same field, not by {} and by {}",
                                s.field, g.field
                            )));
                        }
                        match (s.top, g.top) {
                            (Some(a), Some(b)) if a != b => {
                                return Err(PlanError::Group(format!(
                                    "grouped reduces of one expression ask for {a} and for {b} groups; give the number once"
                                )));
                            }
                            (None, Some(b)) => s.top = Some(b),
                            _ => {}
                        }
                    }
                },
                MetricExpr::Reduce(_) => {}
            }
        }
        Ok(spec)
    }

    /// Every leaf, left to right.
    pub fn leaves(&self) -> Vec<&LeafPlan> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    /// The distinct leaves (one per source), in the order first seen, and
    /// for each of [`leaves`](Self::leaves) the index of its distinct one:
    /// what is computed once, and where each leaf's values come from.
    pub fn distinct_leaves(&self) -> (Vec<&LeafPlan>, Vec<usize>) {
        let mut distinct: Vec<&LeafPlan> = Vec::new();
        let index = self
            .leaves()
            .into_iter()
            .map(
                |l| match distinct.iter().position(|d| d.source == l.source) {
                    Some(i) => i,
                    None => {
                        distinct.push(l);
                        distinct.len() - 1
                    }
                },
            )
            .collect();
        (distinct, index)
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a LeafPlan>) {
        match self {
            MetricPlan::Constant(_) => {}
            MetricPlan::Neg(arg) => arg.collect_leaves(out),
            MetricPlan::Binary(_, l, r) => {
                l.collect_leaves(out);
                r.collect_leaves(out);
            }
            MetricPlan::Leaf(leaf) => out.push(leaf),
        }
    }

    /// Combines per-leaf values (in [`leaves`](Self::leaves) order) into the
    /// expression's value; an undefined leaf (`None`) makes the result NaN.
    pub fn combine(&self, leaf_values: &[Option<f64>]) -> f64 {
        let mut next = 0;
        self.combine_from(leaf_values, &mut next)
    }

    fn combine_from(&self, leaf_values: &[Option<f64>], next: &mut usize) -> f64 {
        match self {
            MetricPlan::Constant(x) => *x,
            MetricPlan::Neg(arg) => -arg.combine_from(leaf_values, next),
            MetricPlan::Binary(op, l, r) => {
                let a = l.combine_from(leaf_values, next);
                let b = r.combine_from(leaf_values, next);
                op.apply(a, b)
            }
            MetricPlan::Leaf(_) => {
                let v = leaf_values
                    .get(*next)
                    .copied()
                    .flatten()
                    .unwrap_or(f64::NAN);
                *next += 1;
                v
            }
        }
    }

    /// The plan as `cubed explain` prints it.
    pub fn explain(&self) -> Value {
        match self {
            MetricPlan::Constant(x) => json!({ "constant": number_json(*x) }),
            MetricPlan::Neg(arg) => json!({ "op": "neg", "arg": arg.explain() }),
            MetricPlan::Binary(op, l, r) => {
                json!({ "op": op.symbol(), "left": l.explain(), "right": r.explain() })
            }
            MetricPlan::Leaf(leaf) => {
                let mut out = json!({
                    "type": leaf.event_type,
                    "reduce": leaf.reduce.name(),
                    "source": leaf.source,
                    "filter": leaf.filter.query_document(),
                    "fields": leaf.projection(),
                });
                if let (Some(g), Some(m)) = (&leaf.group, out.as_object_mut()) {
                    m.insert("group".into(), json!(g.to_string()));
                }
                out
            }
        }
    }
}

/// A planned event expression (for event/get and live streams).
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub event_type: String,
    /// The fields returned with each event.
    pub fields: Vec<FieldPath>,
    pub filter: EventFilter,
    pub canonical: String,
}

impl EventPlan {
    pub fn new(expr: &EventExpr) -> Result<Self, PlanError> {
        Ok(EventPlan {
            event_type: expr.event_type.clone(),
            fields: expr.fields.clone(),
            filter: EventFilter::build(&expr.filters, &expr.fields)?,
            canonical: expr.to_string(),
        })
    }

    /// MongoDB projection document: `{"d.x": 1, ...}`.
    pub fn projection(&self) -> Map<String, Value> {
        projection(&self.fields)
    }

    /// The part of `data` this expression returns: only the named fields, at
    /// their places (`a.b` gives `{"a": {"b": ...}}`); `None` when none is named.
    pub fn project(&self, data: &Value) -> Option<Value> {
        if self.fields.is_empty() {
            return None;
        }
        let mut out = Map::new();
        for field in &self.fields {
            value::project_into(data, field, &mut out);
        }
        Some(Value::Object(out))
    }

    pub fn explain(&self) -> Value {
        json!({
            "type": self.event_type,
            "filter": self.filter.query_document(),
            "fields": self.projection(),
        })
    }
}

/// Parses and plans a metric expression.
pub fn compile_metric(source: &str) -> Result<(MetricExpr, MetricPlan), PlanError> {
    let ast = expr::parse_metric(source)?;
    MetricPlan::group(&ast)?;
    let plan = MetricPlan::new(&ast)?;
    Ok((ast, plan))
}

/// Parses and plans an event expression.
pub fn compile_event(source: &str) -> Result<EventPlan, PlanError> {
    EventPlan::new(&expr::parse_event(source)?)
}

/// `cubed explain` output for a metric expression.
pub fn explain_metric(source: &str) -> Result<Value, PlanError> {
    let (ast, plan) = compile_metric(source)?;
    let mut out = json!({
        "kind": "metric",
        "expression": source,
        "canonical": ast.to_string(),
        "plan": plan.explain(),
    });
    if let (Some(g), Some(m)) = (MetricPlan::group(&ast)?, out.as_object_mut()) {
        m.insert(
            "group".into(),
            json!({ "field": g.field.to_string(), "top": g.top }),
        );
    }
    Ok(out)
}

/// `cubed explain --event` output.
pub fn explain_event(source: &str) -> Result<Value, PlanError> {
    let plan = compile_event(source)?;
    Ok(json!({
        "kind": "event",
        "expression": source,
        "canonical": plan.canonical,
        "plan": plan.explain(),
    }))
}
