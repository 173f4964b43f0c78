//! Batch records: one per batch, written before CloudFront is called, and what becomes of it.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::LedgerError;
use super::billing::{Intent, MonthCap, RequesterShare};
use super::outbox::Owed;
use super::verification::VerificationRecord;
use crate::model::{CallerReference, DistributionId, MessageId, Target, TenantId};
use crate::ports::cdn::Invalidation;
use crate::ports::events::EventKind;

/// Life cycle: `Pending` (intent written, CloudFront maybe not called yet) → `Accepted` (CloudFront returned an
/// invalidation id) → `Completed` (the worker that created it saw CloudFront report it completed); or `Pending` →
/// `Failed` (CloudFront refused the batch for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    Pending,
    Accepted,
    Completed,
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Accepted, Self::Completed, Self::Failed].into_iter().find(|status| status.as_str() == raw)
    }

    /// Whether CloudFront accepted the batch: its invalidation exists, in progress or completed, and covers its
    /// paths.
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Accepted | Self::Completed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    /// The tenant invalidated instead of the whole distribution.
    pub tenant_id: Option<TenantId>,
    /// The account CloudFront bills for it (`own` or a role's 12-digit id) when the worker serves more than one:
    /// its paths also count in that account's month (`MonthCap::account`). `None`: the month's total is the
    /// account's.
    pub account: Option<String>,
    pub paths: Vec<String>,
    pub message_ids: Vec<MessageId>,
    pub requesters: Vec<String>,
    /// Each requester's messages and requested paths, for the month's per-requester counters.
    pub shares: Vec<RequesterShare>,
    /// The producers' idempotency keys of its messages, for events.
    pub idempotency_keys: Vec<String>,
    /// Paths requested by the messages before merging; `paths.len()` of them were submitted.
    pub requested_paths: usize,
    /// The messages' distinct paths: what deduplication alone, without wildcards covering paths or coalescing,
    /// would have submitted.
    pub distinct_paths: usize,
    pub seal_reason: String,
    /// Why and how the paths were replaced by wildcards when the distribution was overloaded, if they were.
    pub coalescing: Option<String>,
    pub created_at: SystemTime,
    pub status: BatchStatus,
    pub invalidation_id: Option<String>,
    pub cloudfront_status: Option<String>,
    pub submitted_at: Option<SystemTime>,
    /// When the worker that created the invalidation saw CloudFront report it completed (at most one poll
    /// interval after it did).
    pub completed_at: Option<SystemTime>,
    /// From `submitted_at` to `completed_at`.
    pub time_to_complete: Option<Duration>,
    pub failure: Option<String>,
    /// The worker that is submitting the batch, until `lease_until`; after that any worker may take it over.
    pub owner: String,
    /// The worker that sealed the batch, whose clock `created_at` is on (`coverage`); empty for records from
    /// before it was kept.
    pub sealed_by: String,
    /// A member's producer waits on its completion (`send --wait`): its tracker looks every second.
    pub awaited: bool,
    pub lease_until: SystemTime,
    /// When the record may be deleted (DynamoDB TTL); readers ignore expired records.
    pub expires_at: SystemTime,
    /// The events published for it so far (`mark_published`).
    pub published: Vec<EventKind>,
    /// Written with a failed outcome when its failure is to be announced: the record then stays among those
    /// `in_progress` returns until the event is published (accepted records always do until completed).
    pub outbox: bool,
    /// Why its completion (or its events) will never be recorded, if a tracker gave up on it.
    pub tracking_abandoned: Option<String>,
    /// Its check at the edge, once completed, with `--verify-edge` or `--warm` (`record_verification`).
    pub verification: Option<VerificationRecord>,
}

impl BatchRecord {
    /// What its invalidation is for.
    pub fn target(&self) -> Target {
        Target::new(self.distribution_id.clone(), self.tenant_id.clone())
    }

    /// The batch's invalidation to track, once it is accepted.
    pub fn submitted(&self) -> Option<Submitted> {
        Some(Submitted {
            caller_reference: self.caller_reference.clone(),
            distribution_id: self.distribution_id.clone(),
            tenant_id: self.tenant_id.clone(),
            invalidation_id: self.invalidation_id.clone()?,
            submitted_at: self.submitted_at?,
            status: self.status,
            published: self.published.clone(),
            awaited: self.awaited,
        })
    }

    /// A terminal failure to announce.
    pub fn failure_owed(&self) -> Owed {
        Owed::Failure { caller_reference: self.caller_reference.clone(), created_at: self.created_at }
    }

    /// What CloudFront's answer changes on the record.
    pub fn accept(&mut self, invalidation: &Invalidation, submitted_at: SystemTime) {
        self.status = BatchStatus::Accepted;
        self.invalidation_id = Some(invalidation.id.clone());
        self.cloudfront_status = Some(invalidation.status.clone());
        self.submitted_at = Some(submitted_at);
    }

    pub fn fail(&mut self, reason: &str) {
        self.status = BatchStatus::Failed;
        self.failure = Some(reason.to_owned());
    }

    pub fn complete(&mut self, completion: &Completion) {
        self.status = BatchStatus::Completed;
        self.cloudfront_status = Some(completion.cloudfront_status.clone());
        self.completed_at = Some(completion.completed_at);
        self.time_to_complete = Some(completion.time_to_complete);
    }
}

/// An accepted batch whose invalidation is to be tracked until CloudFront completes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    pub tenant_id: Option<TenantId>,
    pub invalidation_id: String,
    pub submitted_at: SystemTime,
    /// `Accepted`, or `Completed` while its events are still to be published.
    pub status: BatchStatus,
    pub published: Vec<EventKind>,
    /// Someone waits on its completion (`BatchRecord::awaited`); not known of a batch adopted from the index.
    pub awaited: bool,
}

impl Submitted {
    /// What CloudFront is asked about its invalidation for.
    pub fn target(&self) -> Target {
        Target::new(self.distribution_id.clone(), self.tenant_id.clone())
    }
}

/// CloudFront reported an accepted batch's invalidation as completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub caller_reference: CallerReference,
    /// As CloudFront spelled it (`Completed`; the emulator says `COMPLETED`).
    pub cloudfront_status: String,
    pub completed_at: SystemTime,
    pub time_to_complete: Duration,
    /// Events are still to be published: the record stays among those `in_progress` returns until
    /// `mark_published` settles it.
    pub keep_tracking: bool,
}

/// Contract:
/// - `record_intent` stores a new `Pending` record, and its lease; storing the same CallerReference again (a
///   retry after an unknown outcome) succeeds without changing the stored record.
/// - `record_intent_capped` does what `record_intent` does and, in the same write, adds the record's paths to the
///   month's `committed` (the account's, if the cap names one), only if afterwards neither `committed` nor those
///   billed paths exceed `cap.limit`;
///   otherwise it writes nothing and answers `OverCap` with `MonthBilling::spent`. A record stored before answers
///   `Recorded` without being counted again.
/// - `record_outcome` stores the `Accepted` or `Failed` fields of a record written by `record_intent`, and fails
///   with `Conflict` if there is no such record. An `Accepted` outcome also adds the batch's `Billing` to the
///   counters of the month of its `submitted_at`, in total, for its distribution, for its tenant and its account
///   if it names them, for its day and for each of its requesters (`Billing::shares_of`), once per CallerReference however often it is recorded, by however
///   many workers. `record_intent` stores the record's `shares` so that a resumed batch counts them too.
/// - `list` returns a distribution's unexpired records created at or after `since`, newest first, at most `limit`.
/// - `take_over` makes `owner` the owner of a `Pending` record whose lease ended before `now`, and says whether
///   it did; it never changes a record that is not pending or whose lease still runs. Readers see the record's
///   owner and lease as recorded with the intent or by the last take-over.
/// - `renew_lease` moves the lease of a record that `owner` holds to `lease_until`, and says whether it did; it
///   never changes a lease another worker took over. Renewing after the record's outcome is harmless: only a
///   pending record is taken over.
/// - `record_completion` makes an existing record `Completed` with the completion's fields and says whether it
///   did: `false` if the record is completed already (another worker recorded it first), so a completion is
///   recorded once. It fails with `Conflict` if there is no such record.
/// - `batch` returns the record with this CallerReference.
/// - `record_verification` stores the record's check at the edge, replacing the one before (a later look knows
///   more); it fails with `Conflict` if there is no such record. Readers see it as `BatchRecord::verification`.
pub trait Batches: Send + Sync + 'static {
    fn record_intent(&self, record: &BatchRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn record_intent_capped(
        &self,
        record: &BatchRecord,
        cap: &MonthCap,
    ) -> impl Future<Output = Result<Intent, LedgerError>> + Send;

    fn record_outcome(&self, record: &BatchRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BatchRecord>, LedgerError>> + Send;

    fn take_over(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        now: SystemTime,
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn renew_lease(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn record_completion(&self, completion: &Completion) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn batch(
        &self,
        caller_reference: &CallerReference,
    ) -> impl Future<Output = Result<Option<BatchRecord>, LedgerError>> + Send;

    fn record_verification(
        &self,
        caller_reference: &CallerReference,
        verification: &VerificationRecord,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}
