//! Errors of the expression parser.

use std::fmt;

/// Why an expression was rejected. `Display` gives the message users see,
/// e.g. `expected ")" at 14` (offsets count characters from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The input did not match the grammar at `offset`.
    Expected {
        expected: Vec<String>,
        offset: usize,
    },
    /// The input matched the grammar but is not acceptable (bad regex, nesting too deep...).
    Invalid { message: String, offset: usize },
    /// The input is longer than the parser accepts.
    TooLong { max: usize, len: usize },
}

impl ParseError {
    /// The character offset the error points at (0 for an over-long input).
    pub fn offset(&self) -> usize {
        match self {
            ParseError::Expected { offset, .. } | ParseError::Invalid { offset, .. } => *offset,
            ParseError::TooLong { .. } => 0,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Expected { expected, offset } => {
                f.write_str("expected ")?;
                match expected.as_slice() {
                    [] => f.write_str("a valid expression")?,
                    [only] => f.write_str(only)?,
                    [init @ .., last] => write!(f, "{} or {last}", init.join(", "))?,
                }
                write!(f, " at {offset}")
            }
            ParseError::Invalid { message, offset } => write!(f, "{message} at {offset}"),
            ParseError::TooLong { max, len } => {
                write!(f, "expression too long ({len} bytes; at most {max})")
            }
        }
    }
}

impl std::error::Error for ParseError {}
