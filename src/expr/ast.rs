//! The abstract syntax of event and metric expressions.
//!
//! The `Display` impls print the *canonical* text of a node: the same AST always
//! prints the same text, and parsing that text gives the same AST back (a property
//! test checks this). The canonical text of a reduce leaf is its metric cache key.
//!
//! Invariant kept by the parser: numeric constants in metric and value arithmetic
//! are never negative; a leading minus is a [`MetricExpr::Neg`] / [`ValueExpr::Neg`]
//! node (the planner folds `-4` into the constant `-4`). Literals in filters carry
//! their sign.

use std::fmt;

/// One step of a field path after its first name.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `.name`
    Name(String),
    /// `[index]`
    Index(u32),
}

/// A field of the event's `data`: `a`, `a.b.c`, `a[0].b`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    pub head: String,
    pub tail: Vec<Segment>,
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Literal>),
}

/// The filter operators. `Eq`..`In` are Cube's; `Nin` and `Exists` are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
    In,
    Nin,
    Exists,
}

/// `.op(field, literal)`
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub op: FilterOp,
    pub field: FieldPath,
    pub literal: Literal,
}

/// An event expression: `type`, `type(f1, f2)`, then filters.
#[derive(Debug, Clone, PartialEq)]
pub struct EventExpr {
    pub event_type: String,
    pub fields: Vec<FieldPath>,
    pub filters: Vec<Filter>,
}

/// Binary arithmetic operators, shared by metric and value expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Value functions (our extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Sqrt,
    Ln,
    Log10,
    Exp,
    Floor,
    Ceil,
    Round,
}

/// The value a reduce consumes, computed per event.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueExpr {
    Field(FieldPath),
    Number(f64),
    Neg(Box<ValueExpr>),
    Binary(BinOp, Box<ValueExpr>, Box<ValueExpr>),
    Call(Func, Box<ValueExpr>),
}

/// The reduces. `Sum`..`Distinct` are Cube's; the rest are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reduce {
    Sum,
    Min,
    Max,
    Median,
    Distinct,
    Count,
    Avg,
    Stddev,
    P50,
    P75,
    P90,
    P95,
    P99,
    P999,
}

/// `.group(field)` or `.group(field, top)` after a reduce: its value split
/// by the field's values (their JavaScript string form).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBy {
    pub field: FieldPath,
    /// Only the `top` groups with the largest totals, the rest folded into
    /// one `other` group; `None`: every group.
    pub top: Option<u32>,
}

/// `reduce(type(value).filters...)`, optionally `.group(field)`: one leaf
/// of a metric expression.
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceExpr {
    pub reduce: Reduce,
    pub event_type: String,
    /// `None` means "1 per event".
    pub value: Option<ValueExpr>,
    pub filters: Vec<Filter>,
    pub group: Option<GroupBy>,
}

impl ReduceExpr {
    /// The canonical text without the group's `top`: what the leaf's bins
    /// are keyed by (the bins of every group are the same whatever `top`).
    pub fn source(&self) -> String {
        match &self.group {
            Some(g) if g.top.is_some() => ReduceExpr {
                group: Some(GroupBy {
                    field: g.field.clone(),
                    top: None,
                }),
                ..self.clone()
            }
            .to_string(),
            _ => self.to_string(),
        }
    }
}

/// A metric expression.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    Constant(f64),
    Neg(Box<MetricExpr>),
    Binary(BinOp, Box<MetricExpr>, Box<MetricExpr>),
    Reduce(ReduceExpr),
}

impl Reduce {
    pub const ALL: [Reduce; 14] = [
        Reduce::Sum,
        Reduce::Min,
        Reduce::Max,
        Reduce::Median,
        Reduce::Distinct,
        Reduce::Count,
        Reduce::Avg,
        Reduce::Stddev,
        Reduce::P50,
        Reduce::P75,
        Reduce::P90,
        Reduce::P95,
        Reduce::P99,
        Reduce::P999,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Min => "min",
            Reduce::Max => "max",
            Reduce::Median => "median",
            Reduce::Distinct => "distinct",
            Reduce::Count => "count",
            Reduce::Avg => "avg",
            Reduce::Stddev => "stddev",
            Reduce::P50 => "p50",
            Reduce::P75 => "p75",
            Reduce::P90 => "p90",
            Reduce::P95 => "p95",
            Reduce::P99 => "p99",
            Reduce::P999 => "p999",
        }
    }

    pub fn from_name(name: &str) -> Option<Reduce> {
        Reduce::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The quantile a percentile reduce computes (`median` is 0.5).
    pub fn quantile(self) -> Option<f64> {
        match self {
            Reduce::Median | Reduce::P50 => Some(0.5),
            Reduce::P75 => Some(0.75),
            Reduce::P90 => Some(0.9),
            Reduce::P95 => Some(0.95),
            Reduce::P99 => Some(0.99),
            Reduce::P999 => Some(0.999),
            Reduce::Sum
            | Reduce::Min
            | Reduce::Max
            | Reduce::Distinct
            | Reduce::Count
            | Reduce::Avg
            | Reduce::Stddev => None,
        }
    }
}

impl Func {
    pub const ALL: [Func; 8] = [
        Func::Abs,
        Func::Sqrt,
        Func::Ln,
        Func::Log10,
        Func::Exp,
        Func::Floor,
        Func::Ceil,
        Func::Round,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Sqrt => "sqrt",
            Func::Ln => "ln",
            Func::Log10 => "log10",
            Func::Exp => "exp",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Round => "round",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn apply(self, x: f64) -> f64 {
        match self {
            Func::Abs => x.abs(),
            Func::Sqrt => x.sqrt(),
            Func::Ln => x.ln(),
            Func::Log10 => x.log10(),
            Func::Exp => x.exp(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            // JavaScript's Math.round: halves go up (towards +infinity).
            Func::Round => (x + 0.5).floor(),
        }
    }
}

impl FilterOp {
    pub const ALL: [FilterOp; 10] = [
        FilterOp::Eq,
        FilterOp::Ne,
        FilterOp::Lt,
        FilterOp::Le,
        FilterOp::Gt,
        FilterOp::Ge,
        FilterOp::Re,
        FilterOp::In,
        FilterOp::Nin,
        FilterOp::Exists,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Ne => "ne",
            FilterOp::Lt => "lt",
            FilterOp::Le => "le",
            FilterOp::Gt => "gt",
            FilterOp::Ge => "ge",
            FilterOp::Re => "re",
            FilterOp::In => "in",
            FilterOp::Nin => "nin",
            FilterOp::Exists => "exists",
        }
    }

    pub fn from_name(name: &str) -> Option<FilterOp> {
        FilterOp::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    /// Binding strength: `*` and `/` bind tighter than `+` and `-`.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div => 2,
        }
    }

    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

/// Writes a number the way the canonical text spells it: the shortest decimal
/// that reads back to the same `f64`, never with an exponent.
pub fn write_number(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x == 0.0 {
        // -0 and 0 are the same number to every reduce and filter.
        f.write_str("0")
    } else {
        write!(f, "{x}")
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            '\u{b}' => f.write_str("\\v")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.head)?;
        for seg in &self.tail {
            match seg {
                Segment::Name(n) => write!(f, ".{n}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(x) => write_number(f, *x),
            Literal::String(s) => write_string(f, s),
            Literal::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{}({}, {})", self.op.name(), self.field, self.literal)
    }
}

fn write_filters(f: &mut fmt::Formatter<'_>, filters: &[Filter]) -> fmt::Result {
    filters.iter().try_for_each(|flt| write!(f, "{flt}"))
}

impl fmt::Display for EventExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.event_type)?;
        if !self.fields.is_empty() {
            f.write_str("(")?;
            for (i, field) in self.fields.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{field}")?;
            }
            f.write_str(")")?;
        }
        write_filters(f, &self.filters)
    }
}

/// What a printer needs to know about a node to parenthesise it minimally.
enum Shape {
    /// A binary node with this operator.
    Binary(BinOp),
    /// Unary minus.
    Neg,
    /// Constants, fields, calls, leaves, parenthesised groups.
    Atom,
}

/// Writes `left op right` with the fewest parentheses that keep the tree
/// left-associative with the usual precedence.
fn write_binary<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    op: BinOp,
    left: (&T, Shape),
    right: (&T, Shape),
) -> fmt::Result {
    let left_parens = matches!(left.1, Shape::Binary(l) if l.precedence() < op.precedence());
    let right_parens = matches!(right.1, Shape::Binary(r) if r.precedence() <= op.precedence());
    write_maybe_parens(f, left.0, left_parens)?;
    write!(f, " {} ", op.symbol())?;
    write_maybe_parens(f, right.0, right_parens)
}

fn write_maybe_parens<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    node: &T,
    parens: bool,
) -> fmt::Result {
    if parens {
        write!(f, "({node})")
    } else {
        write!(f, "{node}")
    }
}

fn write_neg<T: fmt::Display>(f: &mut fmt::Formatter<'_>, arg: &T, shape: Shape) -> fmt::Result {
    f.write_str("-")?;
    write_maybe_parens(f, arg, matches!(shape, Shape::Binary(_)))
}

impl ValueExpr {
    fn shape(&self) -> Shape {
        match self {
            ValueExpr::Binary(op, ..) => Shape::Binary(*op),
            ValueExpr::Neg(_) => Shape::Neg,
            _ => Shape::Atom,
        }
    }
}

impl fmt::Display for ValueExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueExpr::Field(path) => write!(f, "{path}"),
            ValueExpr::Number(x) => write_number(f, *x),
            ValueExpr::Neg(arg) => write_neg(f, arg.as_ref(), arg.shape()),
            ValueExpr::Binary(op, l, r) => {
                write_binary(f, *op, (l.as_ref(), l.shape()), (r.as_ref(), r.shape()))
            }
            ValueExpr::Call(func, arg) => write!(f, "{}({arg})", func.name()),
        }
    }
}

impl fmt::Display for ReduceExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}", self.reduce.name(), self.event_type)?;
        if let Some(value) = &self.value {
            write!(f, "({value})")?;
        }
        write_filters(f, &self.filters)?;
        f.write_str(")")?;
        match &self.group {
            None => Ok(()),
            Some(GroupBy { field, top: None }) => write!(f, ".group({field})"),
            Some(GroupBy {
                field,
                top: Some(n),
            }) => write!(f, ".group({field}, {n})"),
        }
    }
}

impl MetricExpr {
    fn shape(&self) -> Shape {
        match self {
            MetricExpr::Binary(op, ..) => Shape::Binary(*op),
            MetricExpr::Neg(_) => Shape::Neg,
            _ => Shape::Atom,
        }
    }
}

impl fmt::Display for MetricExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Constant(x) => write_number(f, *x),
            MetricExpr::Neg(arg) => write_neg(f, arg.as_ref(), arg.shape()),
            MetricExpr::Binary(op, l, r) => {
                write_binary(f, *op, (l.as_ref(), l.shape()), (r.as_ref(), r.shape()))
            }
            MetricExpr::Reduce(leaf) => write!(f, "{leaf}"),
        }
    }
}
