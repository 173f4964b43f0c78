//! cf-invalidator: a queue-driven worker that batches CloudFront invalidations.
//!
//! The modules follow the data flow: [`intake`] receives and validates messages, [`batch`] merges their paths
//! per distribution within a time window, [`limit`] paces CreateInvalidation, [`submit`] calls CloudFront and
//! records each batch in the ledger, and [`ack`] deletes or dead-letters messages and keeps held ones invisible.
//! [`track`] records when accepted invalidations complete, and [`edge`] checks and warms what they cleared.
//! [`worker`] wires the stages together. [`audit`] answers operators' questions from the ledger, and
//! [`status`] shows them the state of it all on a page. AWS services sit behind the traits in [`ports`], implemented by the SDK
//! adapters in [`aws`] and the in-memory fakes in [`fake`].

pub mod ack;
pub mod audit;
pub mod aws;
pub mod batch;
pub mod billing;
pub mod clock;
pub mod coverage;
pub mod edge;
#[cfg(feature = "test-support")]
pub mod fake;
pub mod held;
pub mod intake;
pub mod limit;
pub mod model;
pub mod plan;
pub mod ports;
pub mod redelivery;
pub mod retry;
pub mod status;
pub mod submit;
pub mod telemetry;
pub mod track;
pub mod wait;
pub mod worker;
