//! The binary's edge: parse the command line, set up logging, run a command, turn errors into one clear line.

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

/// The SDK allocates and frees small buffers all through each request, and glibc's allocator spent a fifth of the
/// worker's CPU on them (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match runtime(&cli.command) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(*args).await,
            Command::Send(args) => commands::send::send(args).await,
            Command::Setup(args) => commands::setup::setup(args).await,
            Command::Audit(args) => commands::audit::audit(args).await,
            Command::Report(args) => commands::report::report(args).await,
            Command::Status(args) => commands::status::status(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<commands::send::WaitEnded>() {
            Some(ended) => {
                eprintln!("{ended}");
                ExitCode::from(ended.code)
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// One thread unless `run --threads` asks for more; the other commands make a few calls and exit.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match command {
        Command::Run(args) => usize::from(args.threads),
        _ => 1,
    };
    cf_invalidator::worker::runtime(threads)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("INVALIDATOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}
