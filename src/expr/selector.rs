//! Prometheus series selectors (`request`, `{__name__=~"req.*"}`,
//! `request{job!=""}`), as `/api/v1/series` and `match[]` parameters take
//! them: which event types a selector names. Pure code.
//!
//! An event type is a series whose only label is `__name__` (the type); a
//! matcher on another label sees the empty string, as Prometheus treats a
//! label a series does not have.

use nom::branch::alt;
use nom::bytes::complete::{escaped_transform, is_not, tag, take_while, take_while1};
use nom::character::complete::{char, multispace0};
use nom::combinator::{all_consuming, map, opt, recognize, value};
use nom::multi::separated_list0;
use nom::sequence::{delimited, pair, preceded, terminated};
use nom::{IResult, Parser};
use regex::Regex;

use super::ParseError;

pub use crate::limits::MAX_SELECTOR_BYTES;

/// How a matcher compares a label's value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal(String),
    NotEqual(String),
    /// Anchored at both ends, as Prometheus anchors its regular expressions.
    Regex(Regex),
    NotRegex(Regex),
}

impl MatchOp {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            MatchOp::Equal(s) => v == s,
            MatchOp::NotEqual(s) => v != s,
            MatchOp::Regex(r) => r.is_match(v),
            MatchOp::NotRegex(r) => !r.is_match(v),
        }
    }
}

/// One `label op "value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
}

/// A parsed series selector.
#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Whether the series of event type `name` is selected.
    pub fn selects_type(&self, name: &str) -> bool {
        self.matchers.iter().all(|m| {
            let v = if m.label == "__name__" { name } else { "" };
            m.op.matches(v)
        })
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn metric_name(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| is_name_start(c) || c == ':'),
        take_while(|c: char| is_name_char(c) || c == ':'),
    ))
    .parse(i)
}

fn label_name(i: &str) -> IResult<&str, &str> {
    recognize(pair(take_while1(is_name_start), take_while(is_name_char))).parse(i)
}

/// What follows a backslash in a quoted string.
fn escape(i: &str) -> IResult<&str, &str> {
    alt((
        value("\\", char('\\')),
        value("\"", char('"')),
        value("'", char('\'')),
        value("\n", char('n')),
        value("\t", char('t')),
        value("\r", char('r')),
    ))
    .parse(i)
}

fn quoted<'a>(
    q: char,
    not: &'static str,
) -> impl Parser<&'a str, Output = String, Error = nom::error::Error<&'a str>> {
    delimited(
        char(q),
        map(
            opt(escaped_transform(is_not(not), '\\', escape)),
            Option::unwrap_or_default,
        ),
        char(q),
    )
}

/// A quoted string: `"…"` or `'…'` with Go's common escapes, or a raw
/// `` `…` ``.
fn string(i: &str) -> IResult<&str, String> {
    alt((
        quoted('"', "\"\\"),
        quoted('\'', "'\\"),
        delimited(
            char('`'),
            map(take_while(|c: char| c != '`'), str::to_owned),
            char('`'),
        ),
    ))
    .parse(i)
}

fn ws<'a, O>(
    inner: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, inner, multispace0)
}

type RawMatcher = (String, String, String);

fn matcher(i: &str) -> IResult<&str, RawMatcher> {
    let (i, label) = ws(label_name).parse(i)?;
    let (i, op) = ws(alt((tag("=~"), tag("!~"), tag("!="), tag("=")))).parse(i)?;
    let (i, v) = ws(string).parse(i)?;
    Ok((i, (label.to_owned(), op.to_owned(), v)))
}

fn selector(i: &str) -> IResult<&str, (Option<&str>, Vec<RawMatcher>)> {
    all_consuming(ws(pair(
        opt(metric_name),
        map(
            opt(preceded(
                ws(char('{')),
                terminated(
                    terminated(separated_list0(ws(char(',')), matcher), opt(ws(char(',')))),
                    ws(char('}')),
                ),
            )),
            Option::unwrap_or_default,
        ),
    )))
    .parse(i)
}

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        message: message.into(),
        offset: 0,
    }
}

/// Parses one series selector. Like Prometheus, refuses one whose every
/// matcher matches the empty string (it would select everything).
pub fn parse_selector(text: &str) -> Result<Selector, ParseError> {
    if text.len() > MAX_SELECTOR_BYTES {
        return Err(ParseError::TooLong {
            max: MAX_SELECTOR_BYTES,
            len: text.len(),
        });
    }
    let (_, (name, raw)) = selector(text).map_err(|e| {
        let offset = match &e {
            nom::Err::Error(e) | nom::Err::Failure(e) => text.len() - e.input.len(),
            nom::Err::Incomplete(_) => text.len(),
        };
        ParseError::Expected {
            expected: vec!["a series selector such as request or {__name__=~\"req.*\"}".into()],
            offset: text[..offset].chars().count(),
        }
    })?;
    let mut matchers = Vec::with_capacity(raw.len() + 1);
    if let Some(name) = name {
        matchers.push(Matcher {
            label: "__name__".into(),
            op: MatchOp::Equal(name.to_owned()),
        });
    }
    for (label, op, v) in raw {
        let regex = |v: &str| {
            regex::RegexBuilder::new(&format!("^(?:{v})$"))
                .size_limit(crate::limits::MAX_REGEX_BYTES)
                .build()
                .map_err(|e| invalid(format!("invalid regular expression for {label}: {e}")))
        };
        let op = match op.as_str() {
            "=" => MatchOp::Equal(v),
            "!=" => MatchOp::NotEqual(v),
            "=~" => MatchOp::Regex(regex(&v)?),
            _ => MatchOp::NotRegex(regex(&v)?),
        };
        matchers.push(Matcher { label, op });
    }
    if matchers.iter().all(|m| m.op.matches("")) {
        return Err(invalid(
            "a series selector needs at least one matcher that does not match the empty string",
        ));
    }
    Ok(Selector { matchers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selects(sel: &str, name: &str) -> bool {
        parse_selector(sel)
            .map(|s| s.selects_type(name))
            .unwrap_or(false)
    }

    #[test]
    fn selectors_pick_types() {
        assert!(selects("request", "request"));
        assert!(!selects("request", "requests"));
        assert!(selects(r#"{__name__="request"}"#, "request"));
        assert!(selects(r#"{__name__=~"req.*"}"#, "request"));
        assert!(!selects(r#"{__name__=~"req"}"#, "request"), "anchored");
        assert!(selects(
            r#"{__name__!~"cube_.*", __name__=~".+"}"#,
            "request"
        ));
        assert!(!selects(
            r#"{__name__!~"cube_.*", __name__=~".+"}"#,
            "cube_request"
        ));
        assert!(selects(r#"request{job=""}"#, "request"));
        assert!(!selects(r#"request{job="api"}"#, "request"));
        assert!(selects(" request { } ", "request"));
        assert!(selects("{__name__='request',}", "request"));
        assert!(selects("{__name__=`re\\quest`}", "re\\quest"));
        assert!(selects(r#"{__name__="a\"b"}"#, "a\"b"));
    }

    #[test]
    fn bad_selectors_are_refused() {
        for bad in [
            "",
            "{}",
            r#"{job=""}"#,
            r#"{__name__=~".*"}"#,
            "request{",
            "request}",
            r#"{__name__=~"("}"#,
            "1request",
            r#"{__name__="x" job}"#,
            r#"{__name__="unterminated}"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            parse_selector(&"a".repeat(MAX_SELECTOR_BYTES + 1)),
            Err(ParseError::TooLong { .. })
        ));
    }
}
