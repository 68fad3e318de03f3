//! The expression language: AST, canonical printing, nom parsers, errors.
//! Pure code: no IO, no async.

pub mod ast;
pub mod error;
pub mod parser;
pub mod pattern;
pub mod selector;

pub use ast::*;
pub use error::ParseError;
pub use parser::{MAX_DEPTH, MAX_EXPRESSION_BYTES, parse_event, parse_metric};
pub use pattern::compile_regex;
