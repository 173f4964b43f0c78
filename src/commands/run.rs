use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, ensure};
use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::events::{EventBridgeEvents, SnsEvents};
use cf_invalidator::aws::roles::{Clients, own_account};
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::edge::http::{HttpEdge, Resolver};
use cf_invalidator::intake::parse::IntakeRules;
use cf_invalidator::intake::routes::Routing;
use cf_invalidator::limit::account::{AccountQuota, AccountQuotas};
use cf_invalidator::limit::share::AccountRate;
use cf_invalidator::model::role::Roles;
use cf_invalidator::model::{DistributionId, TenantId};
use cf_invalidator::ports::edge::SharedEdge;
use cf_invalidator::ports::events::Events;
use cf_invalidator::status::StatusPage;
use cf_invalidator::status::page::render_error;
use cf_invalidator::status::view::StatusSettings;
use cf_invalidator::submit::{CostPolicy, Overload, Spending};
use cf_invalidator::telemetry::{self, Endpoints, Health, Page, Pages, install_metrics};
use cf_invalidator::worker::{
    self, BatchingSettings, BudgetTuning, Exit, IntakeSettings, LedgerSettings, Services, Settings, SubmissionSettings,
    TrackingSettings,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::exit::misconfigured;
use super::startup::{self, Started};
use crate::cli::{Coalesce, RunArgs};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let stop = shutdown_signal()?;
    let (mut settings, roles) = settings(&args).map_err(|e| misconfigured(format!("{e:#}")))?;
    if settings.edge.verify.is_some() || settings.edge.warm.is_some() {
        let client = HttpEdge::new(settings.edge.limits, Resolver::System).map_err(misconfigured)?;
        settings.edge_client = Some(SharedEdge::new(Arc::new(client)));
    }
    let config = super::aws_config().await?;
    let cloudfront = Clients::with_roles(super::cloudfront(&config), &roles, &config, &settings.ledger.worker_id);
    if !roles.is_empty() {
        settings.submission.own_account = own_account(&config).await;
    }
    let cloudfront = CloudFront::with_clients(cloudfront);
    if settings.edge_client.is_some() {
        settings.edge_domains = Some(cloudfront.clone().domain_lookup());
    }
    settings.events = events(&config, &args).await?;
    let health = Arc::new(Health::default());
    let stop_telemetry = CancellationToken::new();
    let page = Arc::new(PageOnceStarted::default());
    if let Some(addr) = args.metrics_addr {
        serve_telemetry(addr, &health, Arc::clone(&page), &stop_telemetry).await?;
    }
    let services = match connect(&config, cloudfront, &args, &health, &stop).await {
        Ok(Some(services)) => services,
        stopped_or_refused => {
            stop_telemetry.cancel();
            return stopped_or_refused.map(|_| ());
        }
    };
    if args.metrics_addr.is_some() {
        let _ = page.0.set(status_page(&services, &args, &settings));
        let (queue, ledger) = (Arc::clone(&services.queue), Arc::clone(&services.ledger));
        tokio::spawn(probe(queue, ledger, Arc::clone(&health), stop_telemetry.clone()));
    }
    info!(queue_url = %args.queue_url, table = %args.table, window = %args.window, "worker started");
    let shutdown = async {
        stop.cancelled().await;
        health.begin_shutdown();
    };
    let exit = worker::run(services, settings, shutdown).await;
    stop_telemetry.cancel();
    if let Exit::TimedOut { held } = exit {
        // Nothing is lost: the held messages were handed back to the queue. Exiting 0 keeps orchestrators from
        // flagging a normal scale-in as a crash.
        warn!(held, "exited with messages it could not finish; they were handed back to the queue");
    }
    Ok(())
}

/// The SDK adapters, once start-up found everything they need (`startup::checked`); `None` when a signal came
/// first.
async fn connect(
    config: &aws_config::SdkConfig,
    cloudfront: CloudFront,
    args: &RunArgs,
    health: &Health,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Services<SqsQueue, CloudFront, DynamoLedger>>> {
    let sqs = super::sqs(config);
    let queue = SqsQueue::new(sqs.clone(), &args.queue_url);
    let ledger = DynamoLedger::new(super::dynamodb(config), &args.table);
    let Started::Ready { dead_letter } =
        startup::checked(&queue, &ledger, args.dlq_url.as_deref(), health, stop).await?
    else {
        return Ok(None);
    };
    match &dead_letter {
        Some(url) => info!(dlq_url = %url, "refused messages go to the dead-letter queue"),
        None => warn!(
            "the queue has no dead-letter queue: refused messages stay on the queue; set a RedrivePolicy or --dlq-url"
        ),
    }
    Ok(Some(Services {
        queue: Arc::new(queue),
        dead_letter: dead_letter.map(|url| Arc::new(SqsQueue::new(sqs, url))),
        cdn: Arc::new(cloudfront),
        ledger: Arc::new(ledger),
    }))
}

/// The worker's settings from the command line, checked, and the roles of distributions in other accounts.
fn settings(args: &RunArgs) -> anyhow::Result<(Settings, Roles)> {
    for (flag, rate) in [
        ("--create-rate", args.create_rate),
        ("--account-path-rate", args.account_path_rate),
        ("--account-wildcard-rate", args.account_wildcard_rate),
    ] {
        ensure!(rate.is_finite() && rate >= 0.0, "{flag} must be a number per second, 0 to turn it off");
    }
    args.reserve.check().map_err(anyhow::Error::msg)?;
    ensure!(
        args.account_create_rate.is_none_or(|rate| rate.is_finite() && rate > 0.0),
        "--account-create-rate must be a positive number of calls per second"
    );
    ensure!(
        args.status_rate.is_finite() && args.status_rate > 0.0,
        "--status-rate must be a positive number of calls per second"
    );
    ensure!(
        (args.events_topic_arn.is_none() && args.events_bus.is_none()) || !args.completion_poll.is_zero(),
        "events are published by completion tracking: --events-topic-arn and --events-bus need a --completion-poll above 0s"
    );
    ensure!(
        !(args.edge.verify_edge || args.edge.warm) || !args.completion_poll.is_zero(),
        "--verify-edge and --warm start when completion tracking sees a batch complete: they need a --completion-poll above 0s"
    );
    let edge = args.edge.settings()?;
    let create_burst = NonZeroU32::new(args.create_burst).context("--create-burst must be at least 1")?;
    let routing = match &args.routes {
        Some(path) => Routing::load(path)?,
        None => Routing::default(),
    };
    let roles = super::roles(&args.accounts.roles, routing.roles())?;
    let visibility_timeout = Duration::from(args.visibility_timeout);
    ensure!(
        visibility_timeout.as_secs() >= 10,
        "--visibility-timeout must be at least 10s so the heartbeat can extend it in time"
    );
    let settings = Settings {
        intake: IntakeSettings {
            pollers: usize::from(args.pollers),
            max_held_messages: args.max_held_messages as usize,
            visibility_timeout,
            rules: Arc::new(intake_rules(args, routing.clone())?),
            ..IntakeSettings::default()
        },
        batching: BatchingSettings { window: args.window.into(), max_paths: usize::from(args.max_batch_paths) },
        submission: SubmissionSettings {
            create_rate: args.create_rate,
            create_burst,
            overload: Overload { coalesce: args.coalesce != Coalesce::Off, max_delay: args.max_delay.into() },
            spending: Spending {
                cost: (args.coalesce == Coalesce::Cost).then(|| CostPolicy {
                    min_saving: args.coalesce_min_saving as usize,
                    overrides: Arc::new(routing.min_savings().clone()),
                }),
                monthly_path_budget: args.monthly_path_budget,
            },
            account_rate: args.account_create_rate.map(|per_second| AccountRate { per_second, burst: create_burst }),
            account_quotas: AccountQuotas {
                paths: AccountQuota::configured(args.account_path_rate, args.account_path_burst),
                wildcards: AccountQuota::configured(args.account_wildcard_rate, 0),
            },
            roles: roles.clone(),
            ..SubmissionSettings::default()
        },
        budget: BudgetTuning {
            quota: args.reserve.quota(),
            reserve: args.reserve.allowance(),
            resync_every: args.resync_interval.into(),
            // A stopped worker's reservations are renewed by nobody; by two visibility timeouts they are over.
            lease: 2 * visibility_timeout,
            tenant_limits: args.tenant_limits,
            ..BudgetTuning::default()
        },
        ledger: LedgerSettings {
            worker_id: args.worker_id.clone().unwrap_or_else(worker::default_worker_id),
            retention: args.retention.into(),
            key_period: args.idempotency_period.into(),
            ..LedgerSettings::default()
        },
        tracking: TrackingSettings {
            poll: args.completion_poll.into(),
            status_rate: args.status_rate,
            ..TrackingSettings::default()
        },
        shutdown_timeout: args.shutdown_timeout.into(),
        edge,
        ..Settings::default()
    };
    Ok((settings, roles))
}

/// Where batch events go, if anywhere. A topic or bus that does not exist is refused; one the role may not
/// describe (the CloudFormation role may only publish) is taken on trust: publishing tells.
async fn events(config: &aws_config::SdkConfig, args: &RunArgs) -> anyhow::Result<Option<Events>> {
    if let Some(topic_arn) = &args.events_topic_arn {
        let sns = aws_sdk_sns::Client::new(config);
        let described = sns.get_topic_attributes().topic_arn(topic_arn).send().await;
        if described.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_not_found_exception())) {
            return Err(misconfigured(format!("events topic {topic_arn} does not exist: check --events-topic-arn")));
        }
        return Ok(Some(Events(Arc::new(SnsEvents::new(sns, topic_arn)))));
    }
    let Some(bus) = &args.events_bus else { return Ok(None) };
    let eventbridge = aws_sdk_eventbridge::Client::new(config);
    let described = eventbridge.describe_event_bus().name(bus).send().await;
    if described.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception())) {
        return Err(misconfigured(format!("events bus {bus} does not exist: check --events-bus")));
    }
    Ok(Some(Events(Arc::new(EventBridgeEvents::new(eventbridge, bus)))))
}

/// The status page once start-up is over; until then, a page that says the worker is starting.
#[derive(Default)]
struct PageOnceStarted(OnceLock<StatusPage<DynamoLedger, SqsQueue>>);

impl Pages for PageOnceStarted {
    fn page<'a>(&'a self, path: &'a str) -> Pin<Box<dyn Future<Output = Option<Page>> + Send + 'a>> {
        match self.0.get() {
            Some(page) => page.page(path),
            None => Box::pin(async {
                Some(Page::unavailable(render_error("the worker is starting: /readyz says what it waits for")))
            }),
        }
    }
}

/// The status page as this worker serves it: with the reserves it keeps.
fn status_page(
    services: &Services<SqsQueue, CloudFront, DynamoLedger>,
    args: &RunArgs,
    settings: &Settings,
) -> StatusPage<DynamoLedger, SqsQueue> {
    StatusPage {
        ledger: Arc::clone(&services.ledger),
        queue: Arc::clone(&services.queue),
        dead_letter_queue: services.dead_letter.clone(),
        settings: StatusSettings {
            table: args.table.clone(),
            quota: args.reserve.quota(),
            reserve: args.reserve.allowance(),
            monthly_path_budget: args.monthly_path_budget,
        },
        waiting: Some(Arc::clone(&settings.waiting)),
        limits: Some(Arc::clone(&settings.limits)),
        accounts: Some(Arc::clone(&settings.accounts)),
        edge: (settings.edge.verify.is_some() || settings.edge.warm.is_some())
            .then(|| Arc::clone(&settings.edge_tally)),
    }
}

/// `/metrics`, `/healthz`, `/readyz` and the status page on `addr`, from the start: while start-up waits,
/// `/readyz` says for what.
async fn serve_telemetry(
    addr: std::net::SocketAddr,
    health: &Arc<Health>,
    page: Arc<PageOnceStarted>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let metrics = install_metrics().context("installing the metrics recorder")?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| misconfigured(format!("cannot listen on --metrics-addr {addr}: {e}")))?;
    let endpoints = Endpoints { metrics: Some(metrics), health: Some(Arc::clone(health)), pages: Some(page) };
    tokio::spawn(telemetry::serve(listener, endpoints, stop.clone()));
    Ok(())
}

fn intake_rules(args: &RunArgs, routing: Routing) -> anyhow::Result<IntakeRules> {
    let allowed_distributions = if args.allow_distributions.is_empty() {
        None
    } else {
        let ids = args.allow_distributions.iter().map(|raw| DistributionId::parse(raw));
        Some(ids.collect::<Result<_, _>>().context("--allow-distribution")?)
    };
    let allowed_topics = (!args.allow_topics.is_empty()).then(|| args.allow_topics.iter().cloned().collect());
    let allowed_tenants = if args.allow_tenants.is_empty() {
        None
    } else {
        let ids = args.allow_tenants.iter().map(|raw| TenantId::parse(raw));
        Some(ids.collect::<Result<_, _>>().context("--allow-tenant")?)
    };
    Ok(IntakeRules::new(routing, allowed_distributions, allowed_topics)?.with_allowed_tenants(allowed_tenants))
}

/// How often `/readyz` re-checks that SQS and DynamoDB answer.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

async fn probe(queue: Arc<SqsQueue>, ledger: Arc<DynamoLedger>, health: Arc<Health>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (queue_ok, ledger_ok) = tokio::join!(
            tokio::time::timeout(PROBE_INTERVAL / 2, queue.check_access()),
            tokio::time::timeout(PROBE_INTERVAL / 2, ledger.check_access()),
        );
        health.record_probe(matches!(queue_ok, Ok(Ok(()))), matches!(ledger_ok, Ok(Ok(()))));
    }
}

/// Listens for SIGTERM and SIGINT from the moment it is called, so a signal that arrives while the worker is still
/// starting (checking access, waiting out an outage) stops it cleanly instead of killing it.
fn shutdown_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let stop = CancellationToken::new();
    let signalled = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM received"),
            _ = interrupt.recv() => info!("SIGINT received"),
        }
        signalled.cancel();
    });
    Ok(stop)
}
