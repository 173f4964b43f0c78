//! Proof at the edge (issue #28). "Completed" means CloudFront finished an invalidation, not that viewers get the
//! new objects: after completion, [`Verifier`] asks the edge for a sample of the batch's paths and judges each
//! answer by the freshness rule ([`fresh`]), and [`Warmer`] fetches the batch's paths through the edge at a gentle
//! rate so the origin is not hit by every viewer at once.
//!
//! Requests go only to the distribution's own domain or the URLs configured for it, with the worker's validated
//! paths ([`url`]); the HTTP client ([`http`]) follows no redirect and bounds time, bytes and concurrency.
//! docs/edge.md says what is requested and how often.

mod domain;
pub mod fresh;
pub mod http;
pub mod sample;
pub mod settings;
pub mod stage;
pub mod tally;
pub mod url;
mod verify;
mod warm;

pub use verify::{BatchFacts, PathProblem, StalePath, Verification, Verifier};
pub use warm::{EVERY_PATH, MAX_FAILURES_KEPT, Warmer, Warming, warm_requests};
