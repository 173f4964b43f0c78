//! The ledger (DynamoDB): one record per batch, written before CloudFront is called.

use std::future::Future;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use super::cdn::Invalidation;
use super::events::EventKind;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::retry::Transient;

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
}

impl BatchRecord {
    /// The batch's invalidation to track, once it is accepted.
    pub fn submitted(&self) -> Option<Submitted> {
        Some(Submitted {
            caller_reference: self.caller_reference.clone(),
            distribution_id: self.distribution_id.clone(),
            invalidation_id: self.invalidation_id.clone()?,
            submitted_at: self.submitted_at?,
            status: self.status,
            published: self.published.clone(),
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
    pub invalidation_id: String,
    pub submitted_at: SystemTime,
    /// `Accepted`, or `Completed` while its events are still to be published.
    pub status: BatchStatus,
    pub published: Vec<EventKind>,
}

/// Who asked for a batch's paths, as the month's per-requester counters keep it apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requester {
    /// A producer's `requester`, as the parser normalised it (trimmed, at most 256 characters).
    Named(String),
    /// Messages that name no requester.
    Unnamed,
    /// The requesters past [`MAX_SHARES`] in one batch, added up. No producer can name this row.
    Others,
}

impl Requester {
    fn of(requester: Option<&str>) -> Self {
        requester.map_or(Self::Unnamed, |name| Self::Named(name.to_owned()))
    }

    /// The producer's name, if it is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Unnamed | Self::Others => None,
        }
    }
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => f.write_str(name),
            Self::Unnamed => f.write_str("(no requester)"),
            Self::Others => f.write_str("(other requesters)"),
        }
    }
}

/// One requester's part in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequesterShare {
    pub requester: Requester,
    pub messages: u64,
    pub paths_requested: u64,
}

/// Requesters counted apart per batch: each is one more item in the acceptance's transaction (at most 100).
pub const MAX_SHARES: usize = 20;

impl RequesterShare {
    /// The shares of messages given as (requester, paths requested), most paths first, at most [`MAX_SHARES`]: the
    /// smallest ones beyond that are added up as [`Requester::Others`]. Distinct requesters are distinct shares,
    /// so no two of them ever update one item.
    pub fn of<'a>(messages: impl IntoIterator<Item = (Option<&'a str>, usize)>) -> Vec<Self> {
        let mut by_requester: std::collections::BTreeMap<Requester, (u64, u64)> = std::collections::BTreeMap::new();
        for (requester, paths) in messages {
            let share = by_requester.entry(Requester::of(requester)).or_default();
            *share = (share.0 + 1, share.1 + paths as u64);
        }
        let mut shares: Vec<Self> = by_requester
            .into_iter()
            .map(|(requester, (messages, paths_requested))| Self { requester, messages, paths_requested })
            .collect();
        shares.sort_by(|a, b| b.paths_requested.cmp(&a.paths_requested).then_with(|| a.requester.cmp(&b.requester)));
        if shares.len() > MAX_SHARES {
            let rest = shares.split_off(MAX_SHARES - 1);
            shares.push(Self {
                requester: Requester::Others,
                messages: rest.iter().map(|s| s.messages).sum(),
                paths_requested: rest.iter().map(|s| s.paths_requested).sum(),
            });
        }
        shares
    }
}

/// What accepted invalidations billed in a month: CloudFront bills every path and tag of an invalidation, a
/// wildcard as one, past the account's first 1,000 a month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billing {
    pub batches: u64,
    /// Messages the batches covered.
    pub messages: u64,
    /// Paths and tags submitted in accepted invalidations: what CloudFront bills.
    pub paths_billed: u64,
    /// Paths the messages asked for before deduplication and merging: what one call per message would bill.
    pub paths_requested: u64,
    /// The distinct paths of each batch: what exact deduplication alone would bill. Not kept per requester.
    pub paths_distinct: u64,
    pub wildcards: u64,
}

impl Billing {
    pub fn of(record: &BatchRecord) -> Self {
        Self {
            batches: 1,
            messages: record.message_ids.len() as u64,
            paths_billed: record.paths.len() as u64,
            paths_requested: record.requested_paths as u64,
            paths_distinct: record.distinct_paths as u64,
            wildcards: record.paths.iter().filter(|p| p.ends_with('*')).count() as u64,
        }
    }

    /// Each requester's part of the batch's billing: its messages and requested paths, and of the paths billed a
    /// share in proportion to the paths it requested (largest remainders first, so the shares add up to the bill).
    pub fn shares_of(record: &BatchRecord) -> Vec<(Requester, Billing)> {
        let billed = record.paths.len() as u64;
        let requested: u64 = record.shares.iter().map(|s| s.paths_requested).sum();
        // (whole paths, remainder) of its exact share.
        let exact = |share: &RequesterShare| {
            let scaled = share.paths_requested * billed;
            scaled.checked_div(requested).zip(scaled.checked_rem(requested)).unwrap_or_default()
        };
        let mut parts: Vec<(Requester, Billing, u64)> = record
            .shares
            .iter()
            .map(|share| {
                let (whole, remainder) = exact(share);
                let billing = Billing {
                    batches: 1,
                    messages: share.messages,
                    paths_billed: whole,
                    paths_requested: share.paths_requested,
                    paths_distinct: 0,
                    wildcards: 0,
                };
                (share.requester.clone(), billing, remainder)
            })
            .collect();
        // Fewer paths are left than there are shares: each floor lost less than one.
        let left = billed.saturating_sub(parts.iter().map(|p| p.1.paths_billed).sum());
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2).then(a.cmp(&b)));
        for &i in order.iter().take(left as usize) {
            parts[i].1.paths_billed += 1;
        }
        parts.into_iter().map(|(requester, billing, _)| (requester, billing)).collect()
    }

    pub fn add(&mut self, other: Billing) {
        self.batches += other.batches;
        self.messages += other.messages;
        self.paths_billed += other.paths_billed;
        self.paths_requested += other.paths_requested;
        self.paths_distinct += other.paths_distinct;
        self.wildcards += other.wildcards;
    }
}

/// Most distributions a month's billing lists: a month's report reads a bounded amount however many there were.
pub const LISTED_DISTRIBUTIONS: usize = 100;
/// Most requesters a month's billing lists (every CI run may be its own requester).
pub const LISTED_REQUESTERS: usize = 25;

/// A calendar month's billing (UTC), in total and per distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthBilling {
    /// `YYYY-MM`.
    pub month: String,
    pub total: Billing,
    /// Paths that workers with a monthly path budget committed to before calling CloudFront (`record_intent`
    /// with a cap): at least what those batches billed, since a batch refused afterwards keeps its count.
    pub committed: u64,
    /// The distributions that billed the most paths, biggest first, at most [`LISTED_DISTRIBUTIONS`].
    pub distributions: Vec<(DistributionId, Billing)>,
    /// The requesters whose shares of their batches' bills are biggest, biggest first, at most
    /// [`LISTED_REQUESTERS`].
    pub requesters: Vec<(Requester, Billing)>,
    /// Days (`YYYY-MM-DD`, UTC) with accepted invalidations, in order.
    pub days: Vec<(String, Billing)>,
}

impl MonthBilling {
    /// The distributions listed biggest first: who drives the bill.
    pub fn new(
        month: &str,
        total: Billing,
        mut distributions: Vec<(DistributionId, Billing)>,
        days: Vec<(String, Billing)>,
    ) -> Self {
        distributions.sort_by(|a, b| b.1.paths_billed.cmp(&a.1.paths_billed).then_with(|| a.0.cmp(&b.0)));
        distributions.truncate(LISTED_DISTRIBUTIONS);
        Self { month: month.to_owned(), total, committed: 0, distributions, requesters: Vec::new(), days }
    }

    /// With each requester's part, biggest first, the biggest [`LISTED_REQUESTERS`].
    pub fn with_requesters(mut self, mut requesters: Vec<(Requester, Billing)>) -> Self {
        requesters.sort_by(|a, b| b.1.paths_billed.cmp(&a.1.paths_billed).then_with(|| a.0.cmp(&b.0)));
        requesters.truncate(LISTED_REQUESTERS);
        self.requesters = requesters;
        self
    }

    /// What counts against a monthly path budget: the paths committed to, or billed if more (batches of workers
    /// without a budget, or from before it was set).
    pub fn spent(&self) -> u64 {
        self.committed.max(self.total.paths_billed)
    }
}

/// A monthly path budget, shared by every worker through the month's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthCap {
    /// `YYYY-MM`, the month of the intent.
    pub month: String,
    /// Paths (a wildcard or a tag counting as one) the month's batches may commit to in all.
    pub limit: u64,
}

/// What recording an intent under a [`MonthCap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// The intent is recorded (now, or by an earlier attempt) and its paths are counted once.
    Recorded,
    /// Its paths would take the month past the cap: nothing was written. `spent` is what counts against the cap.
    OverCap { spent: u64 },
}

/// The calendar month (UTC) `at` falls in, as `YYYY-MM`: what billing counters are kept by.
pub fn billing_month(at: SystemTime) -> String {
    billing_day(at)[..7].to_owned()
}

/// The day (UTC) `at` falls in, as `YYYY-MM-DD`: the daily series.
pub fn billing_day(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
}

/// What is in the outbox: a batch being tracked (and its events), a failed batch or a dead letter whose event is
/// still to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owed {
    Batch(Submitted),
    Failure { caller_reference: CallerReference, created_at: SystemTime },
    DeadLetter { message_id: MessageId, created_at: SystemTime },
}

/// A read of what is in progress: what it found, and where the next read goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub owed: Vec<Owed>,
    /// `None` when the read reached the end.
    pub next: Option<InProgressCursor>,
}

/// Where a read of what is in progress stopped: the sort key and the item key of the last item read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgressCursor {
    pub(crate) created_at: String,
    pub(crate) key: String,
}

impl Owed {
    /// What a log line names it by.
    pub fn subject(&self) -> String {
        match self {
            Self::Batch(submitted) => submitted.caller_reference.to_string(),
            Self::Failure { caller_reference, .. } => caller_reference.to_string(),
            Self::DeadLetter { message_id, .. } => message_id.to_string(),
        }
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

/// A message the worker moved to the dead-letter queue: item `dlq#<message_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub message_id: MessageId,
    /// The `reason` attribute the message carries on the dead-letter queue.
    pub reason: String,
    /// A short, stable name for the reason (the metrics label), e.g. `malformed` or `NoSuchDistribution`.
    pub code: String,
    /// The distribution the body asked for, when it names a valid one.
    pub distribution_id: Option<DistributionId>,
    /// The body's `requester`, when it has one.
    pub requester: Option<String>,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    /// Its event is to be published: the record stays among those `in_progress` returns until it is.
    pub outbox: bool,
}

/// A producer's idempotency key as a message uses it. A key is scoped to its distribution: two teams may both
/// use `deploy-42`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub distribution_id: DistributionId,
    pub key: String,
    pub message_id: MessageId,
    /// `InvalidationRequest::content_digest` of what the message asks for.
    pub content: String,
}

/// A producer key's claim as stored: item `key#<distribution>#<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: String,
    /// The message that holds the claim: the one that was batched; later ones with the key were dropped.
    pub message_id: MessageId,
    pub distribution_id: DistributionId,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
}

/// Result of claiming a producer's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// First use of the key within its period (or a redelivery of the message that first used it).
    First,
    /// Another message used the key for the same paths and tags within its period.
    Duplicate { first_message_id: MessageId },
    /// Another message used the key for other paths or tags within its period: a producer error.
    Conflict { first_message_id: MessageId },
}

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

/// Contract:
/// - `record_intent` stores a new `Pending` record; storing the same CallerReference again (a retry after an
///   unknown outcome) succeeds without changing the stored record.
/// - `record_intent_capped` does what `record_intent` does and, in the same write, adds the record's paths to the
///   month's `committed`, only if afterwards neither `committed` nor the month's billed paths exceed `cap.limit`;
///   otherwise it writes nothing and answers `OverCap` with `MonthBilling::spent`. A record stored before answers
///   `Recorded` without being counted again.
/// - `record_outcome` stores the `Accepted` or `Failed` fields of a record written by `record_intent`, and fails
///   with `Conflict` if there is no such record. An `Accepted` outcome also adds the batch's `Billing` to the
///   counters of the month of its `submitted_at`, in total, for its distribution, for its day and for each of
///   its requesters (`Billing::shares_of`), once per CallerReference however often it is recorded, by however
///   many workers. `record_intent` stores the record's `shares` so that a resumed batch counts them too.
/// - `list` returns a distribution's unexpired records created at or after `since`, newest first, at most `limit`.
/// - `take_over` makes `owner` the owner of a `Pending` record whose lease ended before `now`, and says whether
///   it did; it never changes a record that is not pending or whose lease still runs. Readers see the record's
///   owner and lease as recorded with the intent or by the last take-over.
/// - `renew_lease` moves the lease of a record that `owner` holds to `lease_until`, and says whether it did; it
///   never changes a lease another worker took over. Renewing after the record's outcome is harmless: only a
///   pending record is taken over.
/// - `claim_key` records that a message used a producer key in its distribution until `expires_at`; if another
///   message holds an unexpired claim of the key in that distribution it answers `Duplicate` when that message
///   asked for the same content and `Conflict` when not, and `First` otherwise (a repeated claim by the same
///   message included).
/// - `record_completion` makes an existing record `Completed` with the completion's fields and says whether it
///   did: `false` if the record is completed already (another worker recorded it first), so a completion is
///   recorded once. It fails with `Conflict` if there is no such record.
/// - `in_progress` returns, of every distribution and worker, at most `limit` of those created at or before
///   `created_before`, oldest first, going on `after` where an earlier read stopped (`InProgress::next`; `None`
///   once there is nothing more): accepted records not yet completed, completed ones whose events are still to
///   be published, and failed records and dead letters written with `outbox` whose event is not published yet.
///   An item it cannot read is skipped (and counted), never fatal. `give_up_tracking` takes one of them out of
///   what `in_progress` returns for good, recording why (`BatchRecord::tracking_abandoned`; a batch given up is
///   among the `AuditLog::failures`).
/// - `mark_published` records that the batch's `kind` event was published; with `settled`, the record leaves
///   those `in_progress` returns. `mark_dead_letter_published` does so for a dead letter.
/// - `batch` returns the record with this CallerReference; `dead_letter` the record of a dead-lettered message.
/// - `month_billing` returns a month's billing counters (`YYYY-MM`): in total, per day, and for the distributions
///   and requesters with the most paths billed (`MonthBilling`'s bounds), biggest first; `month_totals` returns
///   its total and `committed` alone, with no distributions, requesters or days.
/// - `record_dead_letter` stores the record of a dead-lettered message, replacing an earlier one for the same
///   message id (a message can be dead-lettered twice if its delete failed).
pub trait Ledger: Send + Sync + 'static {
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

    fn claim_key(
        &self,
        key: &KeyUse,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<KeyClaim, LedgerError>> + Send;

    fn record_completion(&self, completion: &Completion) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn in_progress(
        &self,
        created_before: SystemTime,
        after: Option<&InProgressCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<InProgress, LedgerError>> + Send;

    fn give_up_tracking(&self, owed: &Owed, reason: &str) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn mark_dead_letter_published(&self, message: &MessageId) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn dead_letter(
        &self,
        message: &MessageId,
    ) -> impl Future<Output = Result<Option<DeadLetterRecord>, LedgerError>> + Send;

    fn month_billing(&self, month: &str) -> impl Future<Output = Result<MonthBilling, LedgerError>> + Send;

    fn month_totals(&self, month: &str) -> impl Future<Output = Result<MonthBilling, LedgerError>> + Send;

    fn mark_published(
        &self,
        caller_reference: &CallerReference,
        kind: EventKind,
        settled: bool,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn batch(
        &self,
        caller_reference: &CallerReference,
    ) -> impl Future<Output = Result<Option<BatchRecord>, LedgerError>> + Send;

    fn record_dead_letter(&self, record: &DeadLetterRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fake::pending_record;

    #[test]
    fn many_requesters_keep_the_biggest_apart_and_add_up_the_rest() {
        let names: Vec<String> = (0..30).map(|n| format!("team-{n:02}")).collect();
        let shares = RequesterShare::of(names.iter().enumerate().map(|(n, name)| (Some(name.as_str()), n + 1)));
        assert_eq!(shares.len(), MAX_SHARES);
        assert_eq!(shares[0].requester, Requester::Named("team-29".into()));
        let others = shares.last().unwrap();
        assert_eq!((&others.requester, others.messages, others.paths_requested), (&Requester::Others, 11, 66));
    }

    #[test]
    fn no_producer_can_name_the_rows_that_stand_for_no_requester_or_many() {
        // Before, these were the literal texts "(no requester)" and "(other requesters)": a producer naming itself
        // so shared an item with them, and two updates of one item in one transaction were refused.
        let shares = RequesterShare::of([(Some("(no requester)"), 1), (None, 1), (Some("(other requesters)"), 1)]);
        let requesters: Vec<&Requester> = shares.iter().map(|s| &s.requester).collect();
        assert_eq!(requesters.len(), 3);
        assert!(requesters.contains(&&Requester::Unnamed));
        assert!(requesters.contains(&&Requester::Named("(no requester)".into())));
    }

    proptest! {
        #[test]
        fn shares_of_the_bill_add_up_to_it(
            requested in proptest::collection::vec((0usize..6, 1usize..50), 1..40),
            billed in 0usize..100,
        ) {
            let names = ["a", "b", "c", "d", "e"];
            let mut record = pending_record("EAAA", &[], &[], std::time::SystemTime::UNIX_EPOCH);
            record.paths = (0..billed).map(|n| format!("/{n}")).collect();
            record.shares = RequesterShare::of(requested.iter().map(|&(who, paths)| (names.get(who).copied(), paths)));
            let shares = Billing::shares_of(&record);
            prop_assert_eq!(shares.iter().map(|(_, b)| b.paths_billed).sum::<u64>(), billed as u64);
            prop_assert_eq!(shares.iter().map(|(_, b)| b.messages).sum::<u64>(), requested.len() as u64);
            let total: u64 = requested.iter().map(|&(_, paths)| paths as u64).sum();
            for (_, share) in &shares {
                // Each within one path of its exact proportion.
                let exact = share.paths_requested as f64 * billed as f64 / total as f64;
                prop_assert!((share.paths_billed as f64 - exact).abs() < 1.0);
            }
        }
    }
}
