//! The AWS services the worker talks to, each behind a small trait with a documented contract.
//!
//! The SDK adapters in `crate::aws` and the in-memory fakes in `crate::fake` implement these traits, and one
//! contract-test suite (tests/contract.rs) runs against both, so the fakes cannot drift from the real services.
//! `AuditLog` is the ledger's read side for operators; `BudgetStore` holds the in-progress budget every worker
//! shares, in the ledger table; `EventSink` is where batch events go (SNS or EventBridge), when configured. `Edge`
//! fetches one URL from CloudFront's edge, to verify and warm what an invalidation cleared.

pub mod audit;
pub mod budget;
pub mod cdn;
pub mod edge;
pub mod events;
pub mod ledger;
pub mod queue;

pub use audit::{AuditLog, BatchSummary, FailureRecord};
pub use budget::{Allowance, BudgetState, BudgetStore, Recorded, Reservation, ReservationWrite};
pub use cdn::{Cdn, CdnError, Invalidation, InvalidationDetail};
pub use edge::{ConnectVia, Edge, EdgeError, EdgeMethod, EdgeRequest, EdgeResponse, EdgeUrl};
pub use ledger::{
    BatchRecord, BatchStatus, Completion, DeadLetterRecord, KeyClaim, KeyRecord, KeyUse, Ledger, LedgerError, Owed,
    Submitted,
};
pub use queue::{BatchEntryFailure, Queue, QueueDepth, QueueError, QueueStats, Receipt, ReceivedMessage};
