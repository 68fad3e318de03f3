//! The `cubed` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use cubed::plan;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    match args.command {
        cli::Command::Explain { event, expr } => {
            let result = if event {
                plan::explain_event(&expr)
            } else {
                plan::explain_metric(&expr)
            };
            match result {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
