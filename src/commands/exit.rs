//! How a command ends: its exit code, and the one line on standard error that says why.
//!
//! A CI step reads the code before anyone reads the line, so each kind of ending has its own: a wrong setup must
//! not look like `send --wait`'s "still running" (2), nor like a failure worth retrying (1).

use std::error::Error;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use cf_invalidator::aws::dynamodb::SchemaError;
use cf_invalidator::aws::sqs::DeadLetterError;
use cf_invalidator::ports::ledger::LedgerError;
use cf_invalidator::ports::queue::QueueError;

use super::send::WaitEnded;

/// The command line itself is wrong (an unknown flag, a missing value): `sysexits.h`'s EX_USAGE.
pub const EXIT_USAGE: u8 = 64;
/// The setup is wrong (a missing queue, table, topic or index, no region or credentials, access denied, a flag
/// value the worker refuses): retrying cannot help. `sysexits.h`'s EX_CONFIG.
pub const EXIT_CONFIG: u8 = 78;

/// A mistake only a change of configuration fixes; the text says which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Misconfigured(pub String);

/// A `Misconfigured` error saying `text`.
pub fn misconfigured(text: impl fmt::Display) -> anyhow::Error {
    Misconfigured(text.to_string()).into()
}

/// Standard output was closed by its reader (`| head -1`): nothing more to say, and nobody to say it to.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct ClosedOutput;

/// Prints why `error` ended the command, once, and answers the exit code.
pub fn ended(error: &anyhow::Error) -> ExitCode {
    if error.chain().any(|cause| cause.is::<ClosedOutput>()) {
        return ExitCode::SUCCESS;
    }
    if let Some(ended) = error.downcast_ref::<WaitEnded>() {
        say(format_args!("{ended}"));
        return ExitCode::from(ended.code);
    }
    if let Some(details) = error.chain().find_map(credentials_details) {
        // The SDK's account of every provider it tried runs to kilobytes: worth a debug line, not the error line.
        tracing::debug!(details, "no AWS credentials");
        say(format_args!(
            "error: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run \
             with a role (INVALIDATOR_LOG=debug shows where the SDK looked)"
        ));
        return ExitCode::from(EXIT_CONFIG);
    }
    let line: Vec<String> = error.chain().map(|cause| plainly(cause).unwrap_or_else(|| cause.to_string())).collect();
    say(format_args!("error: {}", line.join(": ")));
    if error.chain().any(is_misconfiguration) { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE }
}

/// One line on standard error; a closed standard error loses it, and nothing else can be done about that.
pub fn say(line: fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn credentials_details<'a>(cause: &'a (dyn Error + 'static)) -> Option<&'a str> {
    match (cause.downcast_ref::<QueueError>(), cause.downcast_ref::<LedgerError>()) {
        (Some(QueueError::Credentials(details)), _) | (_, Some(LedgerError::Credentials(details))) => Some(details),
        _ => None,
    }
}

fn is_misconfiguration(cause: &(dyn Error + 'static)) -> bool {
    cause.is::<Misconfigured>()
        || cause.is::<SchemaError>()
        || matches!(
            cause.downcast_ref::<DeadLetterError>(),
            Some(DeadLetterError::Missing { .. } | DeadLetterError::Unreadable { .. })
        )
        || matches!(cause.downcast_ref::<QueueError>(), Some(QueueError::NotFound(_) | QueueError::AccessDenied { .. }))
        || matches!(
            cause.downcast_ref::<LedgerError>(),
            Some(LedgerError::NotFound(_) | LedgerError::AccessDenied { .. } | LedgerError::MissingIndex { .. })
        )
}

/// What happened, for an error whose text speaks for the worker ("will retry"): a command that gives up says so.
fn plainly(cause: &(dyn Error + 'static)) -> Option<String> {
    match (cause.downcast_ref::<QueueError>(), cause.downcast_ref::<LedgerError>()) {
        (Some(QueueError::Transient(details)), _) => Some(format!("SQS did not answer: {details}")),
        (_, Some(LedgerError::Unavailable(details))) => Some(format!("DynamoDB did not answer: {details}")),
        _ => None,
    }
}
