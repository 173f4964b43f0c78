//! The command line. Every flag can also be set with an `INVALIDATOR_<FLAG>` environment variable.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use cf_invalidator::batch::window::MAX_PATHS_PER_BATCH;
use cf_invalidator::limit::TenantLimits;
use cf_invalidator::model::TenantId;
use cf_invalidator::ports::Allowance;
use cf_invalidator::ports::budget::QUOTA;
use cf_invalidator::worker::DEFAULT_MAX_HELD_MESSAGES;

mod edge;
#[cfg(test)]
mod flags_doc;

pub use self::edge::EdgeArgs;

/// What the exit codes mean (`commands::exit`).
const EXIT_CODES: &str = "Exit codes: 0 done; 1 failed (the last line says why; trying again may help); 2 send --wait \
timed out (the invalidation may still be running); 3 send --wait: a message was dead-lettered (with --verify: or \
the edge stayed stale); 64 the command line \
is wrong; 78 the configuration is wrong (a missing queue, table, topic or index, no region or credentials, access \
denied, a refused flag value): fix it, trying again will not help.";

#[derive(Debug, Parser)]
#[command(name = "cf-invalidator", version, about = "Batch CloudFront invalidations from an SQS queue", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format: human-readable text, or one JSON object per line for CloudWatch/Loki.
    #[arg(long, global = true, env = "INVALIDATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: consume the queue, batch, invalidate, record, acknowledge.
    // Boxed: it has many more flags than the other commands.
    Run(Box<RunArgs>),
    /// Put an invalidation request on the queue, checked as the worker will check it.
    #[command(after_help = EXIT_CODES)]
    Send(SendArgs),
    /// Create the queue, its dead-letter queue and the ledger table (idempotent).
    Setup(SetupArgs),
    /// Answer questions from the ledger: a distribution's invalidations (default), one invalidation, a message's
    /// or idempotency key's fate, when a path was last invalidated, failures and dead letters.
    Audit(AuditArgs),
    /// What this month's invalidations billed: month-to-date counters from the ledger, in total and per
    /// distribution, against CloudFront's free paths.
    Report(ReportArgs),
    /// Serve the status page (headroom, queue, dead letters, recent invalidations, cost, workers) without a
    /// worker; bind it to a private address.
    Status(StatusArgs),
}

/// Each distribution's in-progress quotas, and what every worker leaves of them to people: the same for all
/// workers of a table.
#[derive(Debug, Clone, Copy, Args)]
pub struct ReserveArgs {
    /// Paths and cache tags (wildcards apart) CloudFront lets each distribution have in progress, where the
    /// worker's belief starts: a refusal nothing else explains makes it believe less; 0 turns the quota off.
    #[arg(long, env = "INVALIDATOR_IN_PROGRESS_PATHS", default_value_t = QUOTA.paths)]
    pub in_progress_paths: u32,

    /// Wildcard paths CloudFront lets each distribution have in progress, counted apart; 0 turns the quota off.
    #[arg(long, env = "INVALIDATOR_IN_PROGRESS_WILDCARDS", default_value_t = QUOTA.wildcards)]
    pub in_progress_wildcards: u32,

    /// Paths of each distribution's --in-progress-paths that workers leave free for people and other tools.
    #[arg(long, env = "INVALIDATOR_RESERVE_PATHS", default_value_t = 100)]
    pub reserve_paths: u32,

    /// Wildcard paths of each distribution's --in-progress-wildcards that workers leave free for people and other
    /// tools.
    #[arg(long, env = "INVALIDATOR_RESERVE_WILDCARDS", default_value_t = 2)]
    pub reserve_wildcards: u32,
}

impl ReserveArgs {
    /// The in-progress quotas, `UNLIMITED` where one is off.
    pub fn quota(self) -> Allowance {
        Allowance::quota(self.in_progress_paths, self.in_progress_wildcards)
    }

    pub fn allowance(self) -> Allowance {
        Allowance { paths: self.reserve_paths, wildcards: self.reserve_wildcards }
    }

    /// A reserve of a quota that is on leaves workers at least one path of it.
    pub fn check(self) -> Result<(), String> {
        let leaves_room = |quota: u32, reserve: u32| quota == 0 || reserve < quota;
        if !leaves_room(self.in_progress_paths, self.reserve_paths) {
            return Err("--reserve-paths must be below --in-progress-paths".into());
        }
        if !leaves_room(self.in_progress_wildcards, self.reserve_wildcards) {
            return Err("--reserve-wildcards must be below --in-progress-wildcards".into());
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Name of the DynamoDB ledger table.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: String,

    /// URL of the SQS queue the workers consume; its dead-letter queue is found from its RedrivePolicy.
    #[arg(long, env = "INVALIDATOR_QUEUE_URL")]
    pub queue_url: String,

    /// Address to serve the page on. It shows nothing secret but is not meant for the internet: keep it private.
    #[arg(long, env = "INVALIDATOR_STATUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// Paths the month's invalidations should bill at most: shown against the month-to-date count.
    #[arg(long, env = "INVALIDATOR_MONTHLY_PATH_BUDGET")]
    pub monthly_path_budget: Option<u64>,

    #[command(flatten)]
    pub reserve: ReserveArgs,
}

/// Distributions in other AWS accounts (docs/accounts.md).
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// A distribution in another AWS account and the IAM role there to assume for its calls:
    /// DIST=ARN or DIST=ARN,external-id=ID (repeat, or semicolon-separate in the variable; docs/accounts.md). Rules
    /// in --routes may name roles too.
    #[arg(long = "role", env = "INVALIDATOR_ROLE", value_delimiter = ';', value_name = "DIST=ARN[,external-id=ID]")]
    pub roles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Name of the DynamoDB ledger table.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: String,

    /// The calendar month (UTC), as YYYY-MM; default: this month.
    #[arg(long, env = "INVALIDATOR_MONTH")]
    pub month: Option<String>,

    /// Only this distribution's counters (the total, the accounts and the daily series stay the month's).
    #[arg(long, env = "INVALIDATOR_DISTRIBUTION")]
    pub distribution: Option<String>,

    /// With the worker's --role flags: each account's paths and free tier apart (the free paths are per account).
    #[command(flatten)]
    pub accounts: AccountArgs,

    /// The worker's routes file, read only for the roles its rules name.
    #[arg(long, env = "INVALIDATOR_ROUTES")]
    pub routes: Option<std::path::PathBuf>,

    /// One JSON object instead of the table.
    #[arg(long, env = "INVALIDATOR_JSON")]
    pub json: bool,

    /// Also write a chart to this SVG file (its name must end in .svg): paths billed and requested per day, and
    /// the month's paths billed so far against the free tier.
    #[arg(long, env = "INVALIDATOR_PLOT", value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// URL of the SQS queue to consume.
    #[arg(long, env = "INVALIDATOR_QUEUE_URL")]
    pub queue_url: String,

    /// Name of the DynamoDB ledger table.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: String,

    /// Dead-letter queue for refused messages; defaults to the queue's RedrivePolicy target.
    #[arg(long, env = "INVALIDATOR_DLQ_URL")]
    pub dlq_url: Option<String>,

    /// How long a distribution's window stays open after its first pending path.
    #[arg(long, env = "INVALIDATOR_WINDOW", default_value = "5s")]
    pub window: humantime::Duration,

    /// Seal a batch early once it holds this many paths (at most 3,000, CloudFront's in-progress quota).
    #[arg(long, env = "INVALIDATOR_MAX_BATCH_PATHS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u16).range(1..=MAX_PATHS_PER_BATCH as i64))]
    pub max_batch_paths: u16,

    /// Concurrent ReceiveMessage loops.
    #[arg(long, env = "INVALIDATOR_POLLERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pollers: u16,

    /// Receiving stops while this many messages are held (received, not yet deleted; a receive already under way
    /// may add up to 10 per poller); the rest wait in SQS for any worker. Receiving also pauses while visibility
    /// extensions fall behind, whatever this says.
    #[arg(long, env = "INVALIDATOR_MAX_HELD_MESSAGES", default_value_t = DEFAULT_MAX_HELD_MESSAGES as u32,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub max_held_messages: u32,

    /// On SIGTERM/SIGINT, the longest the worker takes to exit: it drains (seals, submits, deletes) for all but the
    /// last quarter of it (5 s at most), then hands back to the queue at once whatever it could not finish.
    #[arg(long, env = "INVALIDATOR_SHUTDOWN_TIMEOUT", default_value = "30s")]
    pub shutdown_timeout: humantime::Duration,

    /// Visibility timeout asked for on receipt; a heartbeat extends it while messages wait.
    #[arg(long, env = "INVALIDATOR_VISIBILITY_TIMEOUT", default_value = "60s")]
    pub visibility_timeout: humantime::Duration,

    /// Average CreateInvalidation calls per second for this worker (CloudFront throttles per account); 0 turns
    /// the limit off.
    #[arg(long, env = "INVALIDATOR_CREATE_RATE", default_value_t = 1.0)]
    pub create_rate: f64,

    /// Paths and cache tags (wildcards apart) per second for the whole account, shared by every worker on the
    /// ledger table, for CloudFront's per-account rate model (a third-party listing says 150); a refusal nothing
    /// else explains makes the workers believe less. 0 turns it off. Like the account's rates below, a new worker
    /// submits from its second check-in, about 5 s after it starts; a worker with nothing to submit leaves its
    /// share to the others until it has work again, and its second check-in then.
    #[arg(long, env = "INVALIDATOR_ACCOUNT_PATH_RATE", default_value_t = 0.0)]
    pub account_path_rate: f64,

    /// Paths the account may submit at once after a quiet spell under --account-path-rate (no batch is larger than
    /// a worker's share of it); 0: one second's worth.
    #[arg(long, env = "INVALIDATOR_ACCOUNT_PATH_BURST", default_value_t = 0)]
    pub account_path_burst: u32,

    /// Wildcard paths per second for the whole account, shared like --account-path-rate (a third-party listing
    /// says 1), with a burst of one second's worth; 0 turns it off.
    #[arg(long, env = "INVALIDATOR_ACCOUNT_WILDCARD_RATE", default_value_t = 0.0)]
    pub account_wildcard_rate: f64,

    /// CreateInvalidation calls per second for the whole account, shared by every worker on the ledger table:
    /// each takes an equal share (and of --create-burst), re-divided as workers start and stop. Replaces
    /// --create-rate. A new worker submits from its second check-in, about 5 s after it starts; a worker with
    /// nothing to submit leaves its share to the others until it has work again, and its second check-in then.
    #[arg(long, env = "INVALIDATOR_ACCOUNT_CREATE_RATE")]
    pub account_create_rate: Option<f64>,

    /// Routing rules for S3 event notifications (TOML; see routes.example.toml).
    #[arg(long, env = "INVALIDATOR_ROUTES")]
    pub routes: Option<PathBuf>,

    /// Distributions any request may target, native, SNS-wrapped or routed (repeat, or comma-separate in the
    /// variable); default: any. The routes file must stay within it.
    #[arg(long = "allow-distribution", env = "INVALIDATOR_ALLOW_DISTRIBUTION", value_delimiter = ',')]
    pub allow_distributions: Vec<String>,

    #[command(flatten)]
    pub accounts: AccountArgs,

    /// Tenants of multi-tenant distributions a request may name in `tenant_id` (repeat, or comma-separate in the
    /// variable); default: any. Requests for a whole distribution meet only --allow-distribution.
    #[arg(long = "allow-tenant", env = "INVALIDATOR_ALLOW_TENANT", value_delimiter = ',', value_name = "TENANT_ID")]
    pub allow_tenants: Vec<String>,

    /// Whose in-progress budget a tenant's batches reserve in. `shared`: its distribution's, with the whole
    /// distribution's batches and the other tenants'. `separate`: a budget of its own per tenant, with the same
    /// limits; the distribution's then counts only whole-distribution batches. AWS does not say whether tenants
    /// share the distribution's quotas (docs/tenants.md). The same for all workers of a table.
    #[arg(
        long,
        env = "INVALIDATOR_TENANT_LIMITS",
        default_value = "shared",
        value_parser = clap::builder::PossibleValuesParser::new(["shared", "separate"]).map(|raw| {
            if raw == "separate" { TenantLimits::Separate } else { TenantLimits::Shared }
        })
    )]
    pub tenant_limits: TenantLimits,

    /// SNS topics whose envelopes are accepted (repeat, or comma-separate in the variable); default: any. Others
    /// are dead-lettered. Raw message delivery has no envelope to check: the queue policy is its gate.
    #[arg(long = "allow-topic", env = "INVALIDATOR_ALLOW_TOPIC", value_delimiter = ',', value_name = "ARN")]
    pub allow_topics: Vec<String>,

    /// Serve /metrics (Prometheus), /healthz, /readyz and the status page (/) on this address, e.g. 10.0.1.5:9464;
    /// keep it private.
    #[arg(long, env = "INVALIDATOR_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// How long ledger records are kept before DynamoDB's TTL removes them.
    #[arg(long, env = "INVALIDATOR_RETENTION", default_value = "90d")]
    pub retention: humantime::Duration,

    /// How long a producer's idempotency_key suppresses repeated sends of the same key.
    #[arg(long, env = "INVALIDATOR_IDEMPOTENCY_PERIOD", default_value = "24h")]
    pub idempotency_period: humantime::Duration,

    /// CreateInvalidation calls allowed at once after a quiet period.
    #[arg(long, env = "INVALIDATOR_CREATE_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub create_burst: u32,

    /// The longest gap between two looks (one ListInvalidations per distribution) at accepted invalidations until
    /// CloudFront completes them, to record when they did and return their room in the budget; the first look is
    /// 5 s after acceptance. Any worker finishes a stopped worker's tracking. 0s turns tracking off (records then
    /// stay `accepted`, and reservations last their whole lease).
    #[arg(long, env = "INVALIDATOR_COMPLETION_POLL", default_value = "10s")]
    pub completion_poll: humantime::Duration,

    /// Publish an event to this SNS topic when a batch is accepted, when it completes, when CloudFront refuses it
    /// for good and when a message is dead-lettered (schema/event.v1.json), at least once: the ledger keeps a batch
    /// tracked until its events are published.
    #[arg(long, env = "INVALIDATOR_EVENTS_TOPIC_ARN", value_name = "ARN", conflicts_with = "events_bus")]
    pub events_topic_arn: Option<String>,

    /// Publish the same events to this EventBridge bus (source `cf-invalidator`, detail-type `Invalidation
    /// Accepted`, `Invalidation Completed`, `Invalidation Failed`, `Message Dead-Lettered`, and with --verify-edge
    /// `Invalidation Verified` or `Invalidation Stale`).
    #[arg(long, env = "INVALIDATOR_EVENTS_BUS", value_name = "NAME")]
    pub events_bus: Option<String>,

    /// ListInvalidations and GetInvalidation calls per second at most, for completion tracking (CloudFront
    /// throttles its API per account).
    #[arg(long, env = "INVALIDATOR_STATUS_RATE", default_value_t = 4.0)]
    pub status_rate: f64,

    #[command(flatten)]
    pub reserve: ReserveArgs,

    /// `auto`: when a distribution's backlog would take longer than --max-delay to clear under its quotas,
    /// replace groups of paths by the narrowest directory wildcards; `off`: always wait; `cost`: as `auto`, and
    /// also replace a directory's paths by its wildcard whenever that saves --coalesce-min-saving billed paths
    /// (at the price of cache misses on the directory's other files).
    #[arg(long, env = "INVALIDATOR_COALESCE", value_enum, default_value_t = Coalesce::Auto)]
    pub coalesce: Coalesce,

    /// With --coalesce cost: the billed paths a directory wildcard must save to replace the directory's paths.
    /// A rule in the routes file may set its own (`coalesce_min_saving`).
    #[arg(long, env = "INVALIDATOR_COALESCE_MIN_SAVING", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub coalesce_min_saving: u32,

    /// Paths (a wildcard or a cache tag counting as one) that all workers sharing the ledger may submit in a
    /// calendar month (UTC), per account with --role (each account's own). Near it, batches are coalesced into directory wildcards to stay under; once even
    /// that cannot fit, they wait with their messages held (see /readyz) until the month ends. Unset: no cap.
    #[arg(long, env = "INVALIDATOR_MONTHLY_PATH_BUDGET", value_parser = clap::value_parser!(u64).range(1..))]
    pub monthly_path_budget: Option<u64>,

    /// The longest a backlog may take to clear before it is coalesced.
    #[arg(long, env = "INVALIDATOR_MAX_DELAY", default_value = "10m")]
    pub max_delay: humantime::Duration,

    /// This worker's name in the ledger (batch owner, budget reservations), e.g. the ECS task or pod name;
    /// default: `worker-<UUIDv7>`. Must be unique among running workers; 1 to 128 printable ASCII characters.
    #[arg(long, env = "INVALIDATOR_WORKER_ID", value_parser = parse_worker_id)]
    pub worker_id: Option<String>,

    /// How often a distribution's in-progress invalidations nobody reserved (a person's, another tool's) are
    /// counted again with ListInvalidations while the worker submits to it.
    #[arg(long, env = "INVALIDATOR_RESYNC_INTERVAL", default_value = "60s")]
    pub resync_interval: humantime::Duration,

    /// Threads running the worker. The worker waits on AWS almost all the time, and one thread spends about half
    /// the CPU per AWS request that two do (no wake-ups across threads); one thread carries tens of thousands of
    /// messages a second. Raise it only when a worker's CPU nears one core; more workers are the first way to scale.
    #[arg(long, env = "INVALIDATOR_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,

    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Coalesce {
    Off,
    Auto,
    Cost,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// URL of the SQS queue the worker consumes.
    #[arg(long, env = "INVALIDATOR_QUEUE_URL")]
    pub queue_url: String,

    /// CloudFront distribution id, e.g. E2QWRUHAPOMQZL.
    #[arg(long, env = "INVALIDATOR_DISTRIBUTION")]
    pub distribution: String,

    /// Invalidate this tenant of a multi-tenant distribution (dt_…) instead of the whole distribution.
    #[arg(long, env = "INVALIDATOR_TENANT", value_name = "TENANT_ID", value_parser = TenantId::parse)]
    pub tenant: Option<TenantId>,

    /// Paths to invalidate; `-` reads one path per line from standard input.
    #[arg(required_unless_present_any = ["file", "tags"])]
    pub paths: Vec<String>,

    /// Cache tag to invalidate (repeatable); each counts as one path.
    #[arg(long = "tag", env = "INVALIDATOR_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Read paths from this file, one per line.
    #[arg(long, env = "INVALIDATOR_FILE")]
    pub file: Option<PathBuf>,

    /// Free text recorded in the ledger as who asked.
    #[arg(long, env = "INVALIDATOR_REQUESTER")]
    pub requester: Option<String>,

    /// Producer-chosen key for deduplicating repeated sends.
    #[arg(long, env = "INVALIDATOR_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,

    /// Send with `"priority": "urgent"`: the worker seals the distribution's window at once and submits ahead of
    /// normal batches.
    #[arg(long, env = "INVALIDATOR_URGENT")]
    pub urgent: bool,

    /// After sending, wait until every path and tag is covered by invalidations CloudFront reports completed,
    /// reading the ledger (--table). Exit 0 when complete, 2 on timeout, 3 when a message was dead-lettered.
    #[arg(long, env = "INVALIDATOR_WAIT", requires = "table")]
    pub wait: bool,

    /// The worker's ledger table, read by --wait.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: Option<String>,

    /// How long --wait waits.
    #[arg(long, env = "INVALIDATOR_WAIT_TIMEOUT", default_value = "15m")]
    pub wait_timeout: humantime::Duration,

    /// With --wait: also wait for the worker's check at the edge (run --verify-edge) to show the new objects, not
    /// only CloudFront's completion. Exit 0 when verified, 3 when the edge stays stale after the second
    /// invalidation (or the check could not tell), 2 on timeout (also when no worker verifies).
    #[arg(long, env = "INVALIDATOR_VERIFY", requires = "wait")]
    pub verify: bool,

    /// With --wait: print the result as JSON on standard output (invalidation ids and times).
    #[arg(long, env = "INVALIDATOR_JSON", requires = "wait")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Name of the queue to create; its dead-letter queue is NAME-dlq.
    #[arg(long, env = "INVALIDATOR_QUEUE_NAME")]
    pub queue_name: String,

    /// Name of the DynamoDB ledger table to create.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: String,

    /// Deliveries before SQS moves a message to the dead-letter queue.
    #[arg(long, env = "INVALIDATOR_MAX_RECEIVE_COUNT", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub max_receive_count: u16,
}

/// Without a question flag, `audit` lists a distribution's batches.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("question").multiple(false)))]
pub struct AuditArgs {
    /// Name of the DynamoDB ledger table.
    #[arg(long, env = "INVALIDATOR_TABLE")]
    pub table: String,

    /// CloudFront distribution id: whose batches to list; narrows --message and --failures; needed by --path.
    #[arg(long, env = "INVALIDATOR_DISTRIBUTION",
          required_unless_present_any = ["invalidation", "caller_reference", "message", "idempotency_key", "failures"])]
    pub distribution: Option<String>,

    /// The batch CloudFront's invalidation ID belongs to.
    #[arg(long, env = "INVALIDATOR_INVALIDATION", group = "question")]
    pub invalidation: Option<String>,

    /// The batch with this CallerReference (`cfi-…`).
    #[arg(long, env = "INVALIDATOR_CALLER_REFERENCE", group = "question")]
    pub caller_reference: Option<String>,

    /// What happened to this SQS message: its batches, and whether it was dead-lettered. Without --distribution
    /// the whole table is scanned.
    #[arg(long, env = "INVALIDATOR_MESSAGE", group = "question")]
    pub message: Option<String>,

    /// What happened to the message that used this producer idempotency_key on --distribution (or --tenant).
    #[arg(long, env = "INVALIDATOR_IDEMPOTENCY_KEY", group = "question", requires = "distribution")]
    pub idempotency_key: Option<String>,

    /// With --idempotency-key: the key was used for this tenant of --distribution (dt_…); a tenant's keys are
    /// its own.
    #[arg(long, env = "INVALIDATOR_TENANT", value_name = "TENANT_ID", requires = "idempotency_key", value_parser = TenantId::parse)]
    pub tenant: Option<TenantId>,

    /// When this path was last invalidated on --distribution, and by which batch (exactly or by a wildcard).
    #[arg(long, env = "INVALIDATOR_PATH", group = "question", requires = "distribution")]
    pub path: Option<String>,

    /// Failed batches and dead-lettered messages, of every distribution unless --distribution is given.
    #[arg(long, env = "INVALIDATOR_FAILURES", group = "question")]
    pub failures: bool,

    /// How far back to look.
    #[arg(long, env = "INVALIDATOR_SINCE", default_value = "24h")]
    pub since: humantime::Duration,

    /// At most this many batches (or failures).
    #[arg(long, env = "INVALIDATOR_LIMIT", default_value_t = 100)]
    pub limit: usize,

    /// One JSON object per line instead of a table.
    #[arg(long, env = "INVALIDATOR_JSON")]
    pub json: bool,
}

/// A worker id is written into every reservation and batch the worker owns: bounded and printable, so those items
/// stay bounded.
fn parse_worker_id(raw: &str) -> Result<String, String> {
    let max = cf_invalidator::limit::room::MAX_WORKER_ID_BYTES;
    if raw.is_empty() || raw.len() > max || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("must be 1 to {max} printable ASCII characters without spaces"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_id_is_short_and_printable() {
        assert_eq!(parse_worker_id("ecs-task-1f2e").unwrap(), "ecs-task-1f2e");
        for bad in ["", "has space", "tab\there", &"x".repeat(129)] {
            assert!(parse_worker_id(bad).is_err(), "{bad:?}");
        }
    }
}
