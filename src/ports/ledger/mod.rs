//! The ledger (DynamoDB), by concern: batch records, the month's billing, the outbox of what is tracked and
//! announced, producers' keys and dead letters. Each concern is a port of its own with its contract; one table
//! holds them all, so one adapter implements every port, and [`Ledger`] names them together for the wiring.

mod batches;
mod billing;
mod dead_letters;
mod keys;
mod outbox;
mod verification;

use thiserror::Error;

pub use self::batches::{BatchRecord, BatchStatus, Batches, Completion, Submitted};
pub use self::billing::{
    AccountBills, Billing, Bills, Intent, LISTED_DISTRIBUTIONS, LISTED_REQUESTERS, LISTED_TENANTS, MAX_SHARES,
    MonthBilling, MonthCap, Requester, RequesterShare, billing_day, billing_month, by_account, spent,
};
pub use self::dead_letters::{DeadLetterRecord, DeadLetters};
pub use self::keys::{KeyClaim, KeyRecord, KeyUse, Keys};
pub use self::outbox::{InProgress, InProgressCursor, Outbox, Owed};
pub use self::verification::{EdgeOutcome, MAX_LISTED, VerificationRecord};
use super::budget::{Beliefs, Budgets, JointWrites, Roster};
use crate::retry::Transient;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    #[error("ledger table {0} does not exist: check --table (or run `cf-invalidator setup`)")]
    NotFound(String),
    #[error(
        "access to ledger table {table} was denied: {message}; the worker's role needs dynamodb:PutItem, dynamodb:UpdateItem and dynamodb:Query on it"
    )]
    AccessDenied { table: String, message: String },
    #[error("no AWS credentials: {0}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a role")]
    Credentials(String),
    #[error(
        "ledger table {table} lacks an index this version reads ({message}); run `cf-invalidator setup` with this table once to add it"
    )]
    MissingIndex { table: String, message: String },
    #[error("ledger unavailable, will retry: {0}")]
    Unavailable(String),
    #[error("ledger record {0} is missing or was changed by someone else")]
    Conflict(String),
    /// DynamoDB refused the request itself (an item or key too large): sending it again cannot succeed.
    #[error("the ledger refused the request as invalid: {0}")]
    Invalid(String),
    #[error("ledger request failed: {0}")]
    Other(String),
}

impl Transient for LedgerError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Every port of the ledger's table: what the worker's wiring needs of its one adapter.
pub trait Ledger: Batches + Bills + DeadLetters + Keys + Outbox + Budgets + JointWrites + Roster + Beliefs {}

impl<L: Batches + Bills + DeadLetters + Keys + Outbox + Budgets + JointWrites + Roster + Beliefs> Ledger for L {}
