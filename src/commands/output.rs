//! Standard output for the commands' answers. `println!` panics when the reader has gone (`audit --json | head -1`);
//! here a closed pipe ends the command quietly instead (`exit::ClosedOutput`).

use std::fmt;
use std::io::{ErrorKind, Write};

use super::exit::ClosedOutput;

/// Writes one line to standard output.
pub fn line(text: fmt::Arguments) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(ClosedOutput.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `println!` for the commands: `outln!("{x}")?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::commands::output::line(format_args!($($arg)*))
    };
}

pub(crate) use outln;
