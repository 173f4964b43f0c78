//! Limits: what keeps the worker inside CloudFront's quotas.
//!
//! - [`rate`]: every CreateInvalidation of this process passes one adaptive token bucket (the account-wide request
//!   rate), whose rate [`share`] can set to this worker's share of the account's;
//! - [`budget`]: a batch is submitted only when its paths fit the distribution's in-progress allowances (3,000
//!   paths, 15 wildcard paths), shared by every worker through the ledger table; [`room`] makes its decisions,
//!   without I/O. When a backlog cannot be cleared in time under those allowances, `crate::plan` replaces paths
//!   by the narrowest wildcards that cover them.

pub mod budget;
pub mod rate;
pub mod room;
pub mod share;

pub use budget::{Backlog, Budget, BudgetSettings, WaitingBoard};
pub use rate::CreateRateLimiter;
