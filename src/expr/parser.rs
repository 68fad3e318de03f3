//! nom parsers for event and metric expressions (see `grammar/expressions.peg`).
//!
//! Error reporting works like a PEG parser generator's: every labelled token
//! records what it expected at the position it failed, the furthest position
//! wins, and the error names everything expected there
//! (`expected "," or ")" at 14`). Positions are character offsets from 0.
//!
//! Bounds: input length ([`MAX_EXPRESSION_BYTES`]), nesting depth
//! ([`MAX_DEPTH`]: parentheses, unary minus, calls, array literals), the
//! depth of the tree built ([`MAX_TREE_DEPTH`]: flat chains such as
//! `a + b + c + …` build deep trees without nesting) and field paths
//! ([`MAX_FIELD_SEGMENTS`]) are checked, so neither the parser nor anything
//! that walks what it returns can exhaust a stack. The parser never panics.

use std::cell::RefCell;

use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char as nom_char, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::error::{ErrorKind, ParseError as NomParseError};

use super::ast::*;
use super::error::ParseError;

pub use crate::limits::{
    MAX_DEPTH, MAX_EXPRESSION_BYTES, MAX_FIELD_SEGMENTS, MAX_GROUP_TOP, MAX_REGEX_BYTES,
    MAX_TREE_DEPTH,
};

/// nom's error type here carries nothing: what went wrong is kept in [`Cx`].
#[derive(Debug)]
struct Fail;

impl<I> NomParseError<I> for Fail {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        Fail
    }
    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type R<'a, T> = IResult<&'a str, T, Fail>;

/// Parse context: the whole input and the furthest failure seen so far.
struct Cx<'s> {
    source: &'s str,
    /// (bytes remaining at the furthest failure, what was expected there)
    furthest: RefCell<(usize, Vec<&'static str>)>,
    /// A fatal error (bad regex, too deep, number out of range): (bytes remaining, message)
    fatal: RefCell<Option<(usize, String)>>,
}

impl<'s> Cx<'s> {
    fn new(source: &'s str) -> Self {
        Cx {
            source,
            furthest: RefCell::new((usize::MAX, Vec::new())),
            fatal: RefCell::new(None),
        }
    }

    /// Records that `what` was expected where `rest` begins, and fails.
    fn expected<T>(&self, rest: &str, what: &'static str) -> R<'static, T> {
        let mut furthest = self.furthest.borrow_mut();
        let remaining = rest.len();
        if remaining < furthest.0 {
            *furthest = (remaining, vec![what]);
        } else if remaining == furthest.0 && !furthest.1.contains(&what) {
            furthest.1.push(what);
        }
        Err(nom::Err::Error(Fail))
    }

    /// Stops the whole parse with `message` at the start of `at`.
    fn fatal<T>(&self, at: &str, message: String) -> R<'static, T> {
        let mut fatal = self.fatal.borrow_mut();
        if fatal.is_none() {
            *fatal = Some((at.len(), message));
        }
        Err(nom::Err::Failure(Fail))
    }

    fn offset(&self, remaining: usize) -> usize {
        let byte = self.source.len().saturating_sub(remaining);
        self.source
            .get(..byte)
            .map_or(byte, |prefix| prefix.chars().count())
    }

    fn into_error(self) -> ParseError {
        if let Some((remaining, message)) = self.fatal.borrow_mut().take() {
            let offset = self.offset(remaining);
            return ParseError::Invalid { message, offset };
        }
        let (remaining, mut expected) = std::mem::take(&mut *self.furthest.borrow_mut());
        let offset = self.offset(remaining.min(self.source.len()));
        expected.sort_unstable();
        expected.dedup();
        ParseError::Expected {
            expected: expected.into_iter().map(str::to_owned).collect(),
            offset,
        }
    }

    /// Fails when a node `tree` levels deep would be built at `at`.
    fn check_tree<'a>(&self, at: &'a str, tree: usize) -> R<'a, ()> {
        if tree > MAX_TREE_DEPTH {
            return self.fatal(
                at,
                format!(
                    "expression too deep (more than {MAX_TREE_DEPTH} levels of operators, \
                     functions and reduces)"
                ),
            );
        }
        Ok((at, ()))
    }

    fn check_depth<'a>(&self, at: &'a str, depth: usize) -> R<'a, ()> {
        if depth > MAX_DEPTH {
            return self.fatal(
                at,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            );
        }
        Ok((at, ()))
    }
}

fn ws(i: &str) -> R<'_, &str> {
    take_while(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r')).parse_complete(i)
}

/// Skips whitespace, then matches `token` or records it as expected.
fn sym<'a>(cx: &Cx<'_>, token: &'static str, label: &'static str, i: &'a str) -> R<'a, &'a str> {
    let (i, _) = ws(i)?;
    match tag::<_, _, Fail>(token).parse_complete(i) {
        Ok(ok) => Ok(ok),
        Err(_) => cx.expected(i, label),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// A bare word `[a-zA-Z_][a-zA-Z0-9_$]*` (no whitespace skipping).
fn word(i: &str) -> R<'_, &str> {
    recognize((satisfy(is_ident_start), take_while(is_ident_char))).parse_complete(i)
}

/// `[a-z][a-zA-Z0-9_]+`, not followed by `$`.
fn event_type<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, String> {
    let (i, _) = ws(i)?;
    let parsed: R<'a, &'a str> = recognize((
        satisfy(|c: char| c.is_ascii_lowercase()),
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse_complete(i);
    match parsed {
        Ok((rest, name)) if !rest.starts_with('$') => Ok((rest, name.to_owned())),
        _ => cx.expected(i, "event type"),
    }
}

fn identifier<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, &'a str> {
    let (i, _) = ws(i)?;
    match word(i) {
        Ok(ok) => Ok(ok),
        Err(_) => cx.expected(i, "field name"),
    }
}

/// `name ( "[" index "]" | "." name )*`
fn field_path<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, FieldPath> {
    let (mut i, head) = identifier(cx, i)?;
    let mut tail = Vec::new();
    loop {
        if tail.len() + 1 > MAX_FIELD_SEGMENTS {
            return cx.fatal(
                i,
                format!("field path longer than {MAX_FIELD_SEGMENTS} segments"),
            );
        }
        if let Ok((rest, _)) = sym(cx, "[", "\"[\"", i) {
            let (rest, _) = ws(rest)?;
            let (rest, index) = match digits1(rest) {
                Ok((after, digits)) => match digits.parse::<u32>() {
                    Ok(n) => (after, n),
                    Err(_) => return cx.fatal(rest, format!("array index {digits} is too large")),
                },
                Err(_) => return cx.expected(rest, "array index"),
            };
            let (rest, _) = sym(cx, "]", "\"]\"", rest)?;
            tail.push(Segment::Index(index));
            i = rest;
        } else if let Ok((rest, _)) = sym(cx, ".", "\".\"", i) {
            // `field.eq(` cannot occur inside a field list, so a dot here is a member.
            let (rest, name) = identifier(cx, rest)?;
            tail.push(Segment::Name(name.to_owned()));
            i = rest;
        } else {
            return Ok((
                i,
                FieldPath {
                    head: head.to_owned(),
                    tail,
                },
            ));
        }
    }
}

/// `("." "group" "(" field ("," top)? ")")?` after a reduce, as the
/// infochimps and Marsup forks of Cube spelled it (plus the `top`).
fn group_by<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, Option<GroupBy>> {
    // Not an expected token where absent: error messages after a reduce
    // stay Cube's.
    let (after_ws, _) = ws(i)?;
    let Some(rest) = after_ws.strip_prefix('.') else {
        return Ok((i, None));
    };
    let (rest, _) = ws(rest)?;
    let rest = match word(rest) {
        Ok((after, "group")) => after,
        _ => return cx.expected(rest, "\"group\""),
    };
    let (rest, _) = sym(cx, "(", "\"(\"", rest)?;
    let (rest, field) = field_path(cx, rest)?;
    let (rest, top) = match sym(cx, ",", "\",\"", rest) {
        Ok((after, _)) => {
            let (at, _) = ws(after)?;
            let (after, digits) = match digits1(at) {
                Ok(ok) => ok,
                Err(_) => return cx.expected(at, "number of groups"),
            };
            match digits.parse::<u32>() {
                Ok(n) if (1..=MAX_GROUP_TOP).contains(&n) => (after, Some(n)),
                _ => {
                    return cx.fatal(
                        at,
                        format!("the number of groups must be 1 to {MAX_GROUP_TOP}, not {digits}"),
                    );
                }
            }
        }
        Err(_) => (rest, None),
    };
    let (rest, _) = sym(cx, ")", "\")\"", rest)?;
    Ok((rest, Some(GroupBy { field, top })))
}

/// An unsigned number: `int frac? exp?` or `frac exp?` (JSON-like, as Cube's).
fn unsigned_number<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, f64> {
    let (i, _) = ws(i)?;
    let int = recognize((one_of("0123456789"), digits0));
    let frac = recognize((nom_char('.'), digits1));
    let exp = recognize((one_of("eE"), opt(one_of("+-")), digits1));
    let parsed: R<'a, &'a str> = recognize((
        nom::branch::alt((recognize((int, opt(frac))), frac_only)),
        opt(exp),
    ))
    .parse_complete(i);
    let (rest, text) = match parsed {
        Ok(ok) => ok,
        Err(_) => return cx.expected(i, "number"),
    };
    // Cube's grammar forbids leading zeros: `01` is `0` followed by junk.
    let (rest, text) = match leading_zero_split(text) {
        Some(n) => (&i[n..], &text[..n]),
        None => (rest, text),
    };
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok((rest, x)),
        _ => cx.fatal(i, format!("number {text} is out of range")),
    }
}

// nom's `digit0`/`digit1` can hand back an empty rest that is not a subslice of
// the input at end of input, which breaks `recognize`; `take_while` does not.
fn digits0(i: &str) -> R<'_, &str> {
    take_while(|c: char| c.is_ascii_digit()).parse_complete(i)
}

fn digits1(i: &str) -> R<'_, &str> {
    take_while1(|c: char| c.is_ascii_digit()).parse_complete(i)
}

fn frac_only(i: &str) -> R<'_, &str> {
    recognize((nom_char('.'), digits1)).parse_complete(i)
}

/// For `0123`, `0` alone is the number: returns its length.
fn leading_zero_split(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (bytes.len() > 1 && bytes[0] == b'0' && bytes[1].is_ascii_digit()).then_some(1)
}

/// A signed number literal: `"-" _ number | number`.
fn signed_number<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, f64> {
    let (i, _) = ws(i)?;
    if let Some(rest) = i.strip_prefix('-') {
        let (rest, x) = unsigned_number(cx, rest)?;
        Ok((rest, -x))
    } else {
        unsigned_number(cx, i)
    }
}

fn hex_value(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

/// A string in single or double quotes, with JavaScript's escapes.
fn string_literal<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, String> {
    let (i, _) = ws(i)?;
    let quote = match i.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return cx.expected(i, "string"),
    };
    let mut out = String::new();
    let mut rest = &i[1..];
    loop {
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            return cx.expected(rest, if quote == '"' { "'\"'" } else { "\"'\"" });
        };
        let after = chars.as_str();
        if c == quote {
            return Ok((after, out));
        }
        if c != '\\' {
            out.push(c);
            rest = after;
            continue;
        }
        let mut esc = after.chars();
        let Some(e) = esc.next() else {
            return cx.expected(after, "escape sequence");
        };
        let esc_rest = esc.as_str();
        rest = match e {
            'b' => push(&mut out, '\u{8}', esc_rest),
            'f' => push(&mut out, '\u{c}', esc_rest),
            'n' => push(&mut out, '\n', esc_rest),
            'r' => push(&mut out, '\r', esc_rest),
            't' => push(&mut out, '\t', esc_rest),
            'v' => push(&mut out, '\u{b}', esc_rest),
            '0' if !esc_rest.starts_with(|c: char| c.is_ascii_digit()) => {
                push(&mut out, '\0', esc_rest)
            }
            'x' => match esc_rest
                .get(..2)
                .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
            {
                Some(h) => {
                    let code = hex_value(h).and_then(char::from_u32).unwrap_or('\u{fffd}');
                    push(&mut out, code, &esc_rest[2..])
                }
                None => return cx.expected(esc_rest, "two hexadecimal digits"),
            },
            'u' => {
                let (after_u, code) = unicode_escape(cx, esc_rest)?;
                out.push(code);
                after_u
            }
            c if c.is_ascii_digit() => return cx.expected(after, "escape sequence"),
            other => push(&mut out, other, esc_rest),
        };
    }
}

fn push<'a>(out: &mut String, c: char, rest: &'a str) -> &'a str {
    out.push(c);
    rest
}

fn four_hex(i: &str) -> Option<u32> {
    i.get(..4)
        .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
        .and_then(hex_value)
}

/// `\uXXXX`, combining a surrogate pair `\uD83D\uDE00` into one character.
fn unicode_escape<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, char> {
    let Some(high) = four_hex(i) else {
        return cx.expected(i, "four hexadecimal digits");
    };
    let rest = &i[4..];
    if let Some(c) = char::from_u32(high) {
        return Ok((rest, c));
    }
    if (0xD800..0xDC00).contains(&high)
        && let Some(low) = rest.strip_prefix("\\u").and_then(four_hex)
        && (0xDC00..0xE000).contains(&low)
    {
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        if let Some(c) = char::from_u32(code) {
            return Ok((&rest[6..], c));
        }
    }
    cx.fatal(
        i,
        format!("\\u{} is a lone surrogate, not a character", &i[..4]),
    )
}

/// Checks that the next word is exactly `kw` (not a prefix of a longer word).
fn keyword<'a>(i: &'a str, kw: &str) -> Option<&'a str> {
    let rest = i.strip_prefix(kw)?;
    (!rest.starts_with(is_ident_char)).then_some(rest)
}

/// `array | string | number | true | false | null`
fn literal<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, Literal> {
    let (i, _) = ws(i)?;
    cx.check_depth(i, depth)?;
    if i.starts_with('[') {
        return array_literal(cx, i, depth).map(|(r, items)| (r, Literal::Array(items)));
    }
    if i.starts_with(['"', '\'']) {
        return string_literal(cx, i).map(|(r, s)| (r, Literal::String(s)));
    }
    if i.starts_with(|c: char| c == '-' || c == '.' || c.is_ascii_digit()) {
        return signed_number(cx, i).map(|(r, x)| (r, Literal::Number(x)));
    }
    for (kw, lit) in [
        ("true", Literal::Bool(true)),
        ("false", Literal::Bool(false)),
        ("null", Literal::Null),
    ] {
        if let Some(rest) = keyword(i, kw) {
            return Ok((rest, lit));
        }
    }
    cx.expected(i, "literal")
}

/// `"[" (literal ("," literal)*)? "]"`
fn array_literal<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, Vec<Literal>> {
    let (i, _) = sym(cx, "[", "\"[\"", i)?;
    let mut items = Vec::new();
    if let Ok((rest, _)) = sym(cx, "]", "\"]\"", i) {
        return Ok((rest, items));
    }
    let (mut i, first) = literal(cx, i, depth + 1)?;
    items.push(first);
    loop {
        if let Ok((rest, _)) = sym(cx, "]", "\"]\"", i) {
            return Ok((rest, items));
        }
        let (rest, _) = sym(cx, ",", "\",\"", i)?;
        let (rest, item) = literal(cx, rest, depth + 1)?;
        items.push(item);
        i = rest;
    }
}

/// `op "(" field "," literal ")"`, with the literal checked against the operator.
fn filter<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, Filter> {
    let (i, _) = ws(i)?;
    let op = match word(i) {
        Ok((rest, name)) => FilterOp::from_name(name).map(|op| (rest, op)),
        Err(_) => None,
    };
    let Some((i, op)) = op else {
        return cx.expected(i, "filter (eq, ne, lt, le, gt, ge, re, in, nin, exists)");
    };
    let (i, _) = sym(cx, "(", "\"(\"", i)?;
    let (i, field) = field_path(cx, i)?;
    let (i, _) = sym(cx, ",", "\",\"", i)?;
    let (lit_at, _) = ws(i)?;
    let (i, literal) = literal(cx, lit_at, 1)?;
    match (op, &literal) {
        (FilterOp::In | FilterOp::Nin, Literal::Array(_)) => {}
        (FilterOp::In | FilterOp::Nin, _) => {
            return cx.fatal(lit_at, format!("{} takes an array literal", op.name()));
        }
        (FilterOp::Exists, Literal::Bool(_)) => {}
        (FilterOp::Exists, _) => return cx.fatal(lit_at, "exists takes true or false".to_owned()),
        (FilterOp::Re, Literal::String(pattern)) => {
            if let Err(e) = super::pattern::compile_regex(pattern) {
                return cx.fatal(
                    lit_at,
                    format!("invalid regular expression: {}", regex_error_summary(&e)),
                );
            }
        }
        (FilterOp::Re, _) => return cx.fatal(lit_at, "re takes a string literal".to_owned()),
        _ => {}
    }
    let (i, _) = sym(cx, ")", "\")\"", i)?;
    Ok((i, Filter { op, field, literal }))
}

/// The one-line reason of a regex error (its `Display` spans several lines).
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.trim().trim_start_matches("error: ").to_owned()
}

/// `( "." filter )*`
fn filters<'a>(cx: &Cx<'_>, mut i: &'a str) -> R<'a, Vec<Filter>> {
    let mut out = Vec::new();
    while let Ok((rest, _)) = sym(cx, ".", "\".\"", i) {
        let (rest, f) = filter(cx, rest)?;
        out.push(f);
        i = rest;
    }
    Ok((i, out))
}

/// Requires the end of input after optional whitespace.
fn end<'a>(cx: &Cx<'_>, i: &'a str) -> R<'a, ()> {
    let (i, _) = ws(i)?;
    if i.is_empty() {
        Ok((i, ()))
    } else {
        cx.expected(i, "end of input")
    }
}

fn additive_op<'a>(cx: &Cx<'_>, i: &'a str) -> Option<(&'a str, BinOp)> {
    if let Ok((rest, _)) = sym(cx, "+", "\"+\"", i) {
        return Some((rest, BinOp::Add));
    }
    sym(cx, "-", "\"-\"", i)
        .ok()
        .map(|(rest, _)| (rest, BinOp::Sub))
}

fn multiplicative_op<'a>(cx: &Cx<'_>, i: &'a str) -> Option<(&'a str, BinOp)> {
    if let Ok((rest, _)) = sym(cx, "*", "\"*\"", i) {
        return Some((rest, BinOp::Mul));
    }
    sym(cx, "/", "\"/\"", i)
        .ok()
        .map(|(rest, _)| (rest, BinOp::Div))
}

/// Left-associative binary chains, shared by metric and value arithmetic.
/// Every parser returns the node and the depth of the tree under it
/// (a leaf is 1), so that chains cannot build trees deeper than
/// [`MAX_TREE_DEPTH`].
trait Arith: Sized {
    fn binary(op: BinOp, l: Self, r: Self) -> Self;
    fn neg(arg: Self) -> Self;
    fn primary<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)>;

    fn additive<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (mut i, (mut acc, mut tree)) = Self::multiplicative(cx, i, depth)?;
        while let Some((rest, op)) = additive_op(cx, i) {
            let (rest, (rhs, rtree)) = Self::multiplicative(cx, rest, depth)?;
            tree = tree.max(rtree) + 1;
            cx.check_tree(i, tree)?;
            acc = Self::binary(op, acc, rhs);
            i = rest;
        }
        Ok((i, (acc, tree)))
    }

    fn multiplicative<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (mut i, (mut acc, mut tree)) = Self::unary(cx, i, depth)?;
        while let Some((rest, op)) = multiplicative_op(cx, i) {
            let (rest, (rhs, rtree)) = Self::unary(cx, rest, depth)?;
            tree = tree.max(rtree) + 1;
            cx.check_tree(i, tree)?;
            acc = Self::binary(op, acc, rhs);
            i = rest;
        }
        Ok((i, (acc, tree)))
    }

    fn unary<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (i, _) = ws(i)?;
        cx.check_depth(i, depth)?;
        if let Ok((rest, _)) = sym(cx, "-", "\"-\"", i) {
            let (rest, (arg, tree)) = Self::unary(cx, rest, depth + 1)?;
            cx.check_tree(i, tree + 1)?;
            return Ok((rest, (Self::neg(arg), tree + 1)));
        }
        Self::primary(cx, i, depth)
    }

    /// `"(" additive ")"`
    fn group<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (i, _) = sym(cx, "(", "\"(\"", i)?;
        let (i, inner) = Self::additive(cx, i, depth + 1)?;
        let (i, _) = sym(cx, ")", "\")\"", i)?;
        Ok((i, inner))
    }
}

impl Arith for ValueExpr {
    fn binary(op: BinOp, l: Self, r: Self) -> Self {
        ValueExpr::Binary(op, Box::new(l), Box::new(r))
    }
    fn neg(arg: Self) -> Self {
        ValueExpr::Neg(Box::new(arg))
    }
    /// `func "(" value ")" | field | number | "(" value ")"`
    fn primary<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (i, _) = ws(i)?;
        if let Ok((rest, name)) = word(i) {
            if let Some(func) = Func::from_name(name)
                && let Ok((after, _)) = sym(cx, "(", "\"(\"", rest)
            {
                let (after, (arg, tree)) = Self::additive(cx, after, depth + 1)?;
                cx.check_tree(i, tree + 1)?;
                let (after, _) = sym(cx, ")", "\")\"", after)?;
                return Ok((after, (ValueExpr::Call(func, Box::new(arg)), tree + 1)));
            }
            return field_path(cx, i).map(|(r, path)| (r, (ValueExpr::Field(path), 1)));
        }
        if i.starts_with('(') {
            return Self::group(cx, i, depth);
        }
        if i.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return unsigned_number(cx, i).map(|(r, x)| (r, (ValueExpr::Number(x), 1)));
        }
        cx.expected::<()>(i, "field name").ok();
        cx.expected::<()>(i, "number").ok();
        cx.expected(i, "\"(\"")
    }
}

impl Arith for MetricExpr {
    fn binary(op: BinOp, l: Self, r: Self) -> Self {
        MetricExpr::Binary(op, Box::new(l), Box::new(r))
    }
    fn neg(arg: Self) -> Self {
        MetricExpr::Neg(Box::new(arg))
    }
    /// `reduce "(" type ("(" value ")")? filters ")" | number | "(" metric ")"`
    fn primary<'a>(cx: &Cx<'_>, i: &'a str, depth: usize) -> R<'a, (Self, usize)> {
        let (i, _) = ws(i)?;
        if let Ok((rest, name)) = word(i) {
            let Some(reduce) = Reduce::from_name(name) else {
                return cx.expected(i, "reduce (sum, min, max, median, distinct, count, avg, stddev, p50, p75, p90, p95, p99, p999)");
            };
            let (rest, _) = sym(cx, "(", "\"(\"", rest)?;
            let (rest, event_type) = event_type(cx, rest)?;
            let (rest, value, tree) = match sym(cx, "(", "\"(\"", rest) {
                Ok((after, _)) => {
                    let (after, (value, tree)) = ValueExpr::additive(cx, after, depth + 1)?;
                    let (after, _) = sym(cx, ")", "\")\"", after)?;
                    (after, Some(value), tree + 1)
                }
                Err(_) => (rest, None, 1),
            };
            cx.check_tree(i, tree)?;
            let (rest, filters) = filters(cx, rest)?;
            let (rest, _) = sym(cx, ")", "\")\"", rest)?;
            let (rest, group) = group_by(cx, rest)?;
            let leaf = ReduceExpr {
                reduce,
                event_type,
                value,
                filters,
                group,
            };
            return Ok((rest, (MetricExpr::Reduce(leaf), tree)));
        }
        if i.starts_with('(') {
            return Self::group(cx, i, depth);
        }
        if i.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return unsigned_number(cx, i).map(|(r, x)| (r, (MetricExpr::Constant(x), 1)));
        }
        cx.expected::<()>(i, "reduce").ok();
        cx.expected::<()>(i, "number").ok();
        cx.expected(i, "\"(\"")
    }
}

fn check_length(source: &str) -> Result<(), ParseError> {
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(ParseError::TooLong {
            max: MAX_EXPRESSION_BYTES,
            len: source.len(),
        });
    }
    Ok(())
}

fn run<'s, T>(
    source: &'s str,
    parser: impl FnOnce(&Cx<'s>, &'s str) -> R<'s, T>,
) -> Result<T, ParseError> {
    check_length(source)?;
    let cx = Cx::new(source);
    match parser(&cx, source) {
        Ok((_, value)) => Ok(value),
        Err(_) => Err(cx.into_error()),
    }
}

/// Parses a metric expression such as `sum(request(duration).eq(path, "/")) / sum(request)`.
pub fn parse_metric(source: &str) -> Result<MetricExpr, ParseError> {
    run(source, |cx, i| {
        let (i, (expr, _)) = MetricExpr::additive(cx, i, 0)?;
        let (i, _) = end(cx, i)?;
        Ok((i, expr))
    })
}

/// Parses an event expression such as `request(path).ge(status, 500)`.
pub fn parse_event(source: &str) -> Result<EventExpr, ParseError> {
    run(source, |cx, i| {
        let (i, event_type) = event_type(cx, i)?;
        let mut fields = Vec::new();
        let mut i = i;
        if let Ok((rest, _)) = sym(cx, "(", "\"(\"", i) {
            let (mut rest, first) = field_path(cx, rest)?;
            fields.push(first);
            while let Ok((after, _)) = sym(cx, ",", "\",\"", rest) {
                let (after, f) = field_path(cx, after)?;
                fields.push(f);
                rest = after;
            }
            let (rest, _) = sym(cx, ")", "\")\"", rest)?;
            i = rest;
        }
        let (i, filters) = filters(cx, i)?;
        let (i, _) = end(cx, i)?;
        Ok((
            i,
            EventExpr {
                event_type,
                fields,
                filters,
            },
        ))
    })
}
