//! What a worker is told, grouped by the stage that uses it, with the defaults `run` starts from.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::WallClock;
use crate::edge::settings::EdgeSettings;
use crate::edge::tally::EdgeTally;
use crate::intake::parse::IntakeRules;
use crate::limit::account::AccountQuotas;
use crate::limit::accounts::AccountBoard;
use crate::limit::belief::LimitBoard;
use crate::limit::share::AccountRate;
use crate::limit::{TenantLimits, WaitingBoard};
use crate::model::role::Roles;
use crate::ports::Allowance;
use crate::ports::budget::QUOTA;
use crate::ports::edge::{DomainLookup, SharedEdge};
use crate::ports::events::Events;
use crate::retry::RetryPolicy;
use crate::submit::{Overload, Spending};
use crate::track::DEFAULT_STATUS_RATE;

/// Enough for 10,000 messages a second held through a 5 s window; at about 1 KiB each (body, receipt handle,
/// batch entry), some 50 MiB.
pub const DEFAULT_MAX_HELD_MESSAGES: usize = 50_000;

/// Everything a worker is told, grouped by the stage that uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub intake: IntakeSettings,
    pub batching: BatchingSettings,
    pub submission: SubmissionSettings,
    pub budget: BudgetTuning,
    pub ledger: LedgerSettings,
    pub tracking: TrackingSettings,
    pub shutdown_timeout: Duration,
    pub retry: RetryPolicy,
    pub clock: WallClock,
    /// Where batch events go; published by the completion tracker, so they need it on.
    pub events: Option<Events>,
    /// Where the batches waiting for room show, for the status page.
    pub waiting: Arc<WaitingBoard>,
    /// Where what the worker believes of CloudFront's limits shows, for the status page.
    pub limits: Arc<LimitBoard>,
    /// Where each account's rates and what this worker may take of them now show, for the status page.
    pub accounts: Arc<AccountBoard>,
    /// Verifying and warming completed batches at the edge (issue #28); off by default.
    pub edge: EdgeSettings,
    /// The client edge checks go through; they run only with one.
    pub edge_client: Option<SharedEdge>,
    /// Where distributions without `--edge-url` find their own domain (GetDistribution).
    pub edge_domains: Option<DomainLookup>,
    /// What the checks at the edge came to, for the status page.
    pub edge_tally: Arc<EdgeTally>,
}

/// Receiving and holding messages.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub pollers: usize,
    /// Receiving stops while this many messages are held; more stay in SQS for this or another worker.
    pub max_held_messages: usize,
    pub receive_wait: Duration,
    pub visibility_timeout: Duration,
    /// Routing of S3 events and the distribution allowlist.
    pub rules: Arc<IntakeRules>,
}

/// The windows paths are merged in.
#[derive(Debug, Clone, Copy)]
pub struct BatchingSettings {
    pub window: Duration,
    pub max_paths: usize,
}

/// CreateInvalidation: its pace, what an overloaded distribution's batches become, and what is done to keep the
/// bill down.
#[derive(Debug, Clone)]
pub struct SubmissionSettings {
    /// CreateInvalidation calls per second for this worker; 0 is no limit.
    pub create_rate: f64,
    pub create_burst: NonZeroU32,
    pub max_concurrent: usize,
    pub overload: Overload,
    pub spending: Spending,
    /// `--account-create-rate`: the account's rate, shared by every worker on the ledger, instead of `create_rate`
    /// and `create_burst`.
    pub account_rate: Option<AccountRate>,
    /// The account's paths and wildcards per second, shared by every worker on the ledger (`limit::account`).
    pub account_quotas: AccountQuotas,
    /// Distributions in other accounts, by their role: each account has its own rate and account quotas, as
    /// configured above (`limit::accounts`).
    pub roles: Roles,
    /// The worker's own 12-digit account, if STS told it at start: a role in it counts as the own account.
    pub own_account: Option<String>,
}

/// The shared in-progress budget.
#[derive(Debug, Clone, Copy)]
pub struct BudgetTuning {
    /// Each distribution's in-progress quotas, where the worker's belief starts (`UNLIMITED`: off).
    pub quota: Allowance,
    /// Headroom of each distribution's in-progress quotas that workers leave to people and other tools.
    pub reserve: Allowance,
    /// How often a batch waiting for budget looks again for room other workers released.
    pub poll: Duration,
    /// How long a resync's count of invalidations nobody reserved is trusted.
    pub resync_every: Duration,
    /// How long invalidations are expected to take until some have been seen to complete.
    pub expected_completion: Duration,
    /// How long a reservation lasts without renewal: what a dead worker's reservations cost the others.
    pub lease: Duration,
    /// Whose budget a tenant's batches reserve in.
    pub tenant_limits: TenantLimits,
}

/// Who this worker is in the ledger, and how long what it writes there lasts.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// Recorded as the owner of the batches this worker submits.
    pub worker_id: String,
    /// How long a pending batch of this worker is left alone by others once this worker stops renewing it (then it
    /// may be taken over): it is renewed every third of it while the worker lives.
    pub lease: Duration,
    /// How long ledger records are kept (DynamoDB TTL).
    pub retention: Duration,
    /// How long a producer's idempotency key suppresses repeated sends.
    pub key_period: Duration,
}

/// Completion tracking.
#[derive(Debug, Clone, Copy)]
pub struct TrackingSettings {
    /// The first look at a distribution's invalidations after an acceptance.
    pub first_look: Duration,
    /// The longest gap between two looks at a distribution's invalidations until they complete; zero turns
    /// completion tracking off.
    pub poll: Duration,
    /// How often the ledger is read for accepted batches nobody tracks (a stopped worker's).
    pub adopt_every: Duration,
    /// How old such a batch must be to be adopted.
    pub adopt_after: Duration,
    /// ListInvalidations and GetInvalidation calls per second, at most.
    pub status_rate: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            intake: IntakeSettings::default(),
            batching: BatchingSettings::default(),
            submission: SubmissionSettings::default(),
            budget: BudgetTuning::default(),
            ledger: LedgerSettings::default(),
            tracking: TrackingSettings::default(),
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            clock: WallClock::System,
            events: None,
            waiting: Arc::default(),
            limits: Arc::default(),
            accounts: Arc::default(),
            edge: EdgeSettings::default(),
            edge_client: None,
            edge_domains: None,
            edge_tally: Arc::default(),
        }
    }
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            pollers: 2,
            max_held_messages: DEFAULT_MAX_HELD_MESSAGES,
            // Long enough that an idle worker's receives cost little (12 a minute with two pollers), short enough
            // that a stopping worker can let its last receives answer: one dropped unanswered may still take
            // messages, which then stay invisible for the visibility timeout.
            receive_wait: Duration::from_secs(10),
            visibility_timeout: Duration::from_secs(60),
            rules: Arc::default(),
        }
    }
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self { window: Duration::from_secs(5), max_paths: 1_000 }
    }
}

impl Default for SubmissionSettings {
    fn default() -> Self {
        Self {
            create_rate: 1.0,
            create_burst: NonZeroU32::new(5).expect("non-zero"),
            max_concurrent: 16,
            overload: Overload { coalesce: true, max_delay: Duration::from_secs(10 * 60) },
            spending: Spending::default(),
            account_rate: None,
            account_quotas: AccountQuotas::default(),
            roles: Roles::default(),
            own_account: None,
        }
    }
}

impl Default for BudgetTuning {
    fn default() -> Self {
        Self {
            quota: QUOTA,
            reserve: Allowance { paths: 100, wildcards: 2 },
            poll: Duration::from_secs(2),
            resync_every: Duration::from_secs(60),
            expected_completion: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            tenant_limits: TenantLimits::Shared,
        }
    }
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(90 * 24 * 3_600),
            key_period: Duration::from_secs(24 * 3_600),
        }
    }
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self {
            // CloudFront reports most completions within 25 s (P95): looks at 5, 15, 25 s... see most of them
            // promptly, and room in the budget with them.
            first_look: Duration::from_secs(5),
            poll: Duration::from_secs(10),
            adopt_every: Duration::from_secs(30),
            // Well past the poll: the worker that submitted a batch, if alive, has seen it complete by then.
            adopt_after: Duration::from_secs(60),
            status_rate: DEFAULT_STATUS_RATE,
        }
    }
}

/// Unique per process without configuration.
pub fn default_worker_id() -> String {
    format!("worker-{}", uuid::Uuid::now_v7())
}
