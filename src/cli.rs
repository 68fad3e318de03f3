//! Command-line interface. Every flag can also be set by an environment
//! variable named `CUBED_<FLAG>`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cubed",
    version,
    about = "Cube-compatible time-series server: collect events, compute metrics"
)]
pub struct Cli {
    /// Log filter (tracing-subscriber syntax), e.g. `info` or `cubed=debug`.
    #[arg(long, global = true, env = "CUBED_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the query plan of an expression as JSON (exit 1 with the error on stderr if it is invalid).
    Explain {
        /// Treat EXPR as an event expression (`type(fields).filters`) instead of a metric expression.
        #[arg(long, env = "CUBED_EXPLAIN_EVENT")]
        event: bool,
        /// The expression (may start with `-`), e.g. `sum(request(duration).eq(path, "/login")) / sum(request)`.
        #[arg(allow_hyphen_values = true)]
        expr: String,
    },
}
