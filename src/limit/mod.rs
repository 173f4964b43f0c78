//! Limits: what keeps the worker inside CloudFront's quotas.
//!
//! - [`rate`]: every CreateInvalidation of this process passes one adaptive token bucket (the account-wide request
//!   rate), whose rate [`share`] can set to this worker's share of the account's;
//! - [`budget`]: a batch is submitted only when its paths fit the distribution's in-progress allowances (3,000
//!   paths, 15 wildcard paths by default), shared by every worker through the ledger table; [`room`] makes its
//!   decisions, without I/O;
//! - [`account`]: the account's paths and wildcards per second, token buckets ([`bucket`]) shared like the rate;
//! - [`accounts`]: one limiter and one set of account buckets per AWS account served (`--role`);
//! - [`learn`] and [`belief`]: what the worker believes of each limit, cut by refusals its books cannot explain
//!   and probed back up by successes, shared with the other workers through the ledger ([`share`]).
//!
//! When a backlog cannot be cleared in time under the in-progress allowances, `crate::plan` replaces paths by the
//! narrowest wildcards that cover them.

pub mod account;
pub mod accounts;
pub mod belief;
pub mod bucket;
pub mod budget;
pub mod learn;
pub mod rate;
mod refusals;
mod resync;
pub mod room;
pub mod share;
pub mod waiting;
mod watched;

pub use budget::{Budget, BudgetKey, BudgetSettings, TenantLimits};
pub use rate::CreateRateLimiter;
pub use waiting::{Backlog, WaitingBoard};
