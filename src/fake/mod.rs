//! In-memory implementations of the ports, for fast tests and simulations.
//!
//! They follow the contracts in `crate::ports` (tests/contract.rs runs the same suite against them and the SDK
//! adapters) and model what the emulator does not: CallerReference idempotency, stale receipt handles, and
//! injected faults. They run on tokio's clock, so tests can pause and advance time.
//!
//! `FakeCdn` doubles as the CloudFront simulator (docs/simulator.md): with a [`SimConfig`] it also enforces the
//! in-progress quotas and the request rate, and `cloudfront_http` serves it to the real SDK. `FakeEdge` is its
//! edge: POP caches in front of a small origin that drop copies as `FakeCdn`'s invalidations complete, served
//! over HTTP by `edge_http`.

mod cdn;
pub mod cloudfront_http;
pub mod dynamodb;
mod edge;
pub mod edge_http;
mod edge_types;
mod events;
mod faults;
mod hooked;
mod ledger;
mod queue;

pub use cdn::{
    AccountRates, Completion, CreateCall, CreateRate, Created, DistributionReport, FakeCdn, IN_PROCESS_ACCOUNT, Page,
    RateQuota, Rejection, Report, SimConfig, Snapshot, StatusCheck, Summary, Tally,
};
pub use edge::{EdgeCall, EdgeConfig, FakeEdge, Misbehaviour, ORIGIN_PREFIX, SimAnswer, SimRequest};
pub use events::MemoryEvents;
pub use faults::Faults;
pub use ledger::{MemoryLedger, pending_record, verification};
pub use queue::{MemoryQueue, StoredMessage};
