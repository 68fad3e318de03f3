//! The `cubed` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use cubed::plan;

/// jemalloc (tikv-jemallocator): glibc's allocator was the top entry in
/// ingest profiles, and mimalloc, used before, kept memory it had freed:
/// under the soak its share of RSS grew ~15 MiB a minute while the live
/// heap stayed flat (README "Soak"). jemalloc gives freed pages back from a
/// background thread after a second (`dirty_decay_ms`), at once rather
/// than as lazily-freed pages that still count in RSS (`muzzy_decay_ms:0`),
/// and never in transparent huge pages (faulting in 2 MiB zeroed pages for
/// short-lived buffers cost a tenth of ingest's CPU with mimalloc).
/// The `system-allocator` feature leaves it out, for heap profilers that
/// watch malloc (heaptrack).
#[cfg(not(any(feature = "system-allocator", feature = "heap-gauge")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// With `heap-gauge`: jemalloc, counting the bytes held.
#[cfg(all(feature = "heap-gauge", not(feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: cap::Cap<tikv_jemallocator::Jemalloc> =
    cap::Cap::new(tikv_jemallocator::Jemalloc, usize::MAX);

/// jemalloc's options, read when it starts (the symbol its prefixed build
/// looks for: a C string).
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 70] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,thp:never\0";

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
        cli::Command::Tail(args) => match query::tail(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
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
