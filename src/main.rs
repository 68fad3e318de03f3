//! The `cubed` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use cubed::plan;

/// mimalloc: glibc's allocator was the top entry in ingest profiles. The
/// `system-allocator` feature leaves it out, for heap profilers that watch
/// malloc (heaptrack; see README "Soak").
#[cfg(not(any(feature = "system-allocator", feature = "heap-gauge")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `heap-gauge`: mimalloc, counting the bytes held.
#[cfg(all(feature = "heap-gauge", not(feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

mod admin;
mod cli;
mod import;
mod keys;
mod query;
mod serve;

fn main() -> ExitCode {
    #[cfg(all(feature = "heap-gauge", not(feature = "system-allocator")))]
    cubed::telemetry::results::set_heap_probe(|| GLOBAL.allocated());
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match args.command {
        cli::Command::Serve(serve) => match serve::run(*serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Import(import) => match import::run(&import) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Keys(keys) => match keys::run(keys) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Stats(args) => admin::done(admin::stats(&args)),
        cli::Command::Query(args) => admin::done(query::run(&args)),
        cli::Command::Retention {
            admin: args,
            command,
        } => admin::done(admin::retention(&args, command)),
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
