//! The AWS services the worker talks to, each behind a small trait with a documented contract.
//!
//! The SDK adapters in `crate::aws` and the in-memory fakes in `crate::fake` implement these traits, and one
//! contract-test suite (tests/contract.rs) runs against both, so the fakes cannot drift from the real services.
//! The ledger's table holds several ports by concern (`ledger`: batches, billing, the outbox, keys, dead letters;
//! `budget`: the in-progress budget every worker shares, the writes that change a batch and its budget together,
//! and the roster); `AuditLog` is its read side for operators. `EventSink` is where batch events go (SNS or
//! EventBridge), when configured. `Edge` fetches one URL from CloudFront's edge, to verify and warm what an
//! invalidation cleared.

pub mod audit;
pub mod budget;
pub mod cdn;
pub mod edge;
pub mod events;
pub mod ledger;
pub mod queue;

pub use audit::{AuditLog, BatchSummary, FailureRecord};
pub use budget::{Allowance, BudgetState, Budgets, JointWrites, Recorded, Reservation, ReservationWrite, Roster};
pub use cdn::{Cdn, CdnError, Invalidation, InvalidationDetail};
pub use edge::{ConnectVia, Edge, EdgeError, EdgeMethod, EdgeRequest, EdgeResponse, EdgeUrl};
pub use ledger::{
    BatchRecord, BatchStatus, Batches, Bills, Completion, DeadLetterRecord, DeadLetters, KeyClaim, KeyRecord, KeyUse,
    Keys, Ledger, LedgerError, Outbox, Owed, Submitted,
};
pub use queue::{BatchEntryFailure, Queue, QueueDepth, QueueError, QueueStats, Receipt, ReceivedMessage};
