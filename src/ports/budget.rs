//! The shared in-progress budget of each distribution (in the ledger table): what every worker has reserved; and
//! the roster of workers that share the account's CreateInvalidation rate.

use std::future::Future;
use std::ops::{Add, Sub};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::ledger::{BatchRecord, Batches, Completion, LedgerError, MonthCap};
use crate::model::path::count_wildcards;
use crate::model::{CallerReference, DistributionId};

/// CloudFront's quotas per distribution (aws-facts.md A1): the defaults of `--in-progress-paths` and
/// `--in-progress-wildcards`.
pub const QUOTA: Allowance = Allowance { paths: 3_000, wildcards: 15 };

/// A quota turned off: more than any count reaches.
pub const UNLIMITED: u32 = u32::MAX;

/// What counts against a distribution's two in-progress quotas: paths, and separately wildcard paths (a path
/// ending in `*`, however much it covers). Cache-tag items count as paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    pub paths: u32,
    pub wildcards: u32,
}

impl Allowance {
    pub fn of<S: AsRef<str>>(paths: &[S]) -> Self {
        let wildcards = count_wildcards(paths) as u32;
        Self { paths: paths.len() as u32 - wildcards, wildcards }
    }

    /// In-progress quotas as configured, 0 turning one off (`UNLIMITED`).
    pub fn quota(paths: u32, wildcards: u32) -> Self {
        let on = |quota: u32| if quota == 0 { UNLIMITED } else { quota };
        Self { paths: on(paths), wildcards: on(wildcards) }
    }

    /// Whether `self` fits in `room`, both allowances at once.
    pub fn fits_in(self, room: Self) -> bool {
        self.paths <= room.paths && self.wildcards <= room.wildcards
    }

    pub fn is_empty(self) -> bool {
        self == Self::default()
    }

    /// Each allowance at its own minimum.
    pub fn min(self, other: Self) -> Self {
        Self { paths: self.paths.min(other.paths), wildcards: self.wildcards.min(other.wildcards) }
    }

    /// Each allowance at its own maximum: the worst moments of paths and of wildcards need not coincide.
    pub fn max(self, other: Self) -> Self {
        Self { paths: self.paths.max(other.paths), wildcards: self.wildcards.max(other.wildcards) }
    }
}

impl Add for Allowance {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { paths: self.paths + other.paths, wildcards: self.wildcards + other.wildcards }
    }
}

/// Never below zero: more can be in progress than a worker allows itself (a person used the reserve).
impl Sub for Allowance {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self {
            paths: self.paths.saturating_sub(other.paths),
            wildcards: self.wildcards.saturating_sub(other.wildcards),
        }
    }
}

impl std::iter::Sum for Allowance {
    fn sum<I: Iterator<Item = Self>>(allowances: I) -> Self {
        allowances.fold(Self::default(), Add::add)
    }
}

/// One batch's claim on its distribution's allowances, from before CreateInvalidation until CloudFront reports
/// the invalidation completed, or `until`, whichever comes first: a worker that dies leaves its reservations to
/// expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The batch's CallerReference.
    pub id: CallerReference,
    pub owner: String,
    pub need: Allowance,
    pub until: SystemTime,
    /// Once CloudFront accepted the batch: lets a resync tell the worker's invalidations from other people's.
    pub invalidation_id: Option<String>,
}

/// A distribution's budget as read, with the version a reservation must find unchanged to be written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetState {
    pub reservations: Vec<Reservation>,
    pub version: u64,
}

/// What writing a reservation together with its batch's intent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationWrite {
    /// Both are written (the intent maybe by an earlier attempt whose answer was lost).
    Written,
    /// Another reservation was written since the budget was read: nothing was written.
    VersionMoved,
    /// The intent would take the month past its cap: nothing was written (`Intent::OverCap`).
    OverCap { spent: u64 },
}

/// Most expired reservations one write deletes: each adds about 20 bytes to the update expression, which DynamoDB
/// caps at 4 KB. The rest go at the next writes.
pub const MAX_DELETED_AT_ONCE: usize = 100;

/// Most completions `release_completed` takes at once: one DynamoDB transaction holds at most 100 writes, and the
/// budget's release is one of them.
pub const RELEASED_AT_ONCE: usize = 99;

/// One completion's answer: whether this write recorded it (`false`: recorded before), as
/// `Batches::record_completion` says.
pub type Recorded = Result<bool, LedgerError>;

/// Which budget item a call is about: `budget#<name>`. A distribution's (`DistributionId`), or the budget a
/// target's batches reserve in as the worker's setting says (`limit::budget::BudgetKey`): with
/// `--tenant-limits separate`, a tenant's own.
pub trait BudgetItem: std::fmt::Display + Sync {}

impl BudgetItem for DistributionId {}

/// Contract:
/// - `read_budget` returns the distribution's reservations, expired ones included, with the budget's version
///   (0 and none for a distribution never reserved), read strongly consistently.
/// - `write_reservation` stores `reservation` (replacing one with its id) and deletes the `expired` ones (the first
///   `MAX_DELETED_AT_ONCE` of them: the rest stay for a later write), only if the version is still `version`, and
///   then increments it; it answers false, changing nothing, if another reservation was written in between.
///   Renewals and releases do not change the version: they never make a decision taken on an older read unsafe.
/// - `renew_reservation` moves the end of an existing reservation and notes its invalidation; it answers false
///   if the reservation is gone (released, or deleted as expired).
/// - `release_reservation` deletes the reservation; releasing one that is gone succeeds.
pub trait Budgets: Send + Sync + 'static {
    fn read_budget(&self, budget: &impl BudgetItem) -> impl Future<Output = Result<BudgetState, LedgerError>> + Send;

    fn write_reservation(
        &self,
        budget: &impl BudgetItem,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn renew_reservation(
        &self,
        budget: &impl BudgetItem,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn release_reservation(
        &self,
        budget: &impl BudgetItem,
        id: &CallerReference,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// The writes that change a batch's record and its reservation together, in one transaction: a batch never holds
/// room without a record that says so, nor a record that says it holds room it does not.
///
/// Contract:
/// - `reserve_recording` does what `Budgets::write_reservation` does and, in the same write, what
///   `Batches::record_intent` does, or with `cap` `Batches::record_intent_capped`: both or neither. An intent
///   stored before is left as it is, and the reservation is still written.
/// - `record_acceptance` does what `Batches::record_outcome` does for an accepted record and, in the same write,
///   notes the invalidation on the batch's reservation in `budget` and moves its end to `until`, if the
///   reservation exists.
/// - `release_completed` does what `Batches::record_completion` does for each of `completions` (distinct batches
///   of the distribution, at most `RELEASED_AT_ONCE`), with its answers in their order, and, in the same write,
///   deletes their reservations; a completion recorded before still deletes its reservation. After an error,
///   what was written answers `Ok(false)` when asked again.
pub trait JointWrites: Budgets + Batches {
    fn reserve_recording(
        &self,
        budget: &impl BudgetItem,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
        intent: &BatchRecord,
        cap: Option<&MonthCap>,
    ) -> impl Future<Output = Result<ReservationWrite, LedgerError>> + Send;

    fn record_acceptance(
        &self,
        budget: &impl BudgetItem,
        record: &BatchRecord,
        until: SystemTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn release_completed(
        &self,
        budget: &impl BudgetItem,
        completions: &[Completion],
    ) -> impl Future<Output = Result<Vec<Recorded>, LedgerError>> + Send;
}

/// The workers sharing the account's CreateInvalidation rate.
///
/// Contract: `check_in` records `worker` as live until `until` and returns the workers live at `now`, itself
/// included, sorted; `check_out` removes it at once.
pub trait Roster: Send + Sync + 'static {
    fn check_in(
        &self,
        worker: &str,
        now: SystemTime,
        until: SystemTime,
    ) -> impl Future<Output = Result<Vec<String>, LedgerError>> + Send;

    fn check_out(&self, worker: &str) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// One limit as a worker learned it, shared so that every worker follows the latest cut and a new worker starts
/// from it (`limit::belief`).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedBelief {
    /// The limit, as `cfi_limit_effective` names it (`in_progress_paths`, `account_paths_per_second`, ...).
    pub limit: String,
    /// Its distribution, or `account`.
    pub scope: String,
    pub believed: f64,
    /// When the cut that set it was made: a later cut wins.
    pub cut: SystemTime,
}

/// Most beliefs shared at once: two per distribution and two for the account. Each is its own item of about 120
/// bytes (its key, two numbers, the board and an expiry) on `by_board`, so reading all of them is one query of at
/// most about 120 KB (a few pages); a worker shares no belief in a new scope past this.
pub const MAX_SHARED_BELIEFS: usize = 1_000;

/// Contract: `shared_beliefs` returns every belief shared within the last `BELIEF_LASTS` (at most
/// `MAX_SHARED_BELIEFS`); `share_belief` stores `belief` for its limit and scope unless one with a later `cut` is
/// stored, and answers whether it did.
pub trait Beliefs: Send + Sync + 'static {
    fn shared_beliefs(&self, now: SystemTime) -> impl Future<Output = Result<Vec<SharedBelief>, LedgerError>> + Send;

    fn share_belief(&self, belief: &SharedBelief) -> impl Future<Output = Result<bool, LedgerError>> + Send;
}

/// How long a shared belief counts: a cut older than this was made under conditions long gone.
pub const BELIEF_LASTS: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);
