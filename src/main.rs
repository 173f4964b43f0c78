//! The binary's edge: parse the command line, set up logging, run a command, turn errors into one clear line and
//! an exit code (`commands::exit`).

// Output goes through `commands::output` and `commands::exit::say`: the macros panic on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};
use crate::commands::exit;

/// The SDK allocates and frees small buffers all through each request, and glibc's allocator spent a fifth of the
/// worker's CPU on them (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage(&error),
    };
    init_logging(cli.log_format);
    let runtime = match runtime(&cli.command) {
        Ok(runtime) => runtime,
        Err(error) => {
            exit::say(format_args!("error: cannot start the async runtime: {error}"));
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
        Err(error) => exit::ended(&error),
    }
}

/// `--help` and `--version` print and succeed; a wrong command line exits with its own code, not clap's 2, which
/// `send --wait` answers for "still running".
fn usage(error: &clap::Error) -> ExitCode {
    // A closed pipe (`--help | head`) loses the rest of the text, nothing more.
    let _ = error.print();
    if error.use_stderr() { ExitCode::from(exit::EXIT_USAGE) } else { ExitCode::SUCCESS }
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
