//! How each stage is built from the settings and the services: the pollers, the budget, the submitter, the
//! acknowledger, the tracker and the edge stage. `run` (in `mod.rs`) connects them and owns shutdown.

use super::*;

pub(super) fn spawn_pollers<Q: Queue, C, L: Batches + Keys>(
    stages: &mut JoinSet<()>,
    services: &Services<Q, C, L>,
    settings: &Settings,
    inflight: &Arc<InFlight>,
    outlets: Outlets,
    stop: &CancellationToken,
) {
    let intake = &settings.intake;
    let poll_settings = PollSettings {
        wait: intake.receive_wait,
        visibility: intake.visibility_timeout,
        backoff: settings.retry.receive,
    };
    let ledger = &settings.ledger;
    let idempotency = Arc::new(Idempotency::new(
        Arc::clone(&services.ledger),
        ledger.worker_id.clone(),
        ledger.lease,
        ledger.key_period,
        settings.clock,
    ));
    for _ in 0..intake.pollers {
        stages.spawn(intake::poll(
            Arc::clone(&services.queue),
            Arc::clone(inflight),
            Arc::clone(&idempotency),
            Arc::clone(&intake.rules),
            poll_settings,
            outlets.clone(),
            stop.clone(),
        ));
    }
}

/// Every sealed batch must fit an idle distribution's budget, or it would wait forever.
pub(super) fn batch_limits(batching: BatchingSettings, capacity: Allowance) -> BatchLimits {
    BatchLimits {
        window: batching.window,
        max_paths: batching.max_paths.min(capacity.paths as usize),
        max_wildcards: MAX_WILDCARDS_PER_BATCH.min(capacity.wildcards as usize),
    }
}

pub(super) fn budget<Q, C: Cdn, L: JointWrites>(
    services: &Services<Q, C, L>,
    settings: &Settings,
    capacity: Allowance,
) -> Budget<C, L> {
    let tuning = settings.budget;
    Budget::new(
        Arc::clone(&services.cdn),
        Arc::clone(&services.ledger),
        BudgetSettings {
            capacity,
            lease: tuning.lease,
            poll: tuning.poll,
            resync_every: tuning.resync_every,
            expected_completion: tuning.expected_completion,
            tenant_limits: tuning.tenant_limits,
        },
        settings.ledger.worker_id.clone(),
        settings.clock,
    )
    .with_board(Arc::clone(&settings.waiting))
    .with_limits(Arc::clone(&settings.limits))
}

pub(super) fn acknowledger<Q: Queue, C, L: DeadLetters>(
    services: &Services<Q, C, L>,
    settings: &Settings,
    inflight: &Arc<InFlight>,
    tracker: Option<mpsc::Sender<Owed>>,
) -> Acknowledger<Q, L> {
    let log = DeadLetterLog {
        ledger: Arc::clone(&services.ledger),
        retention: settings.ledger.retention,
        clock: settings.clock,
        // Dead letters are announced by the tracker, which publishes the events.
        announce: tracker.filter(|_| settings.events.is_some()),
    };
    Acknowledger::new(
        Arc::clone(&services.queue),
        services.dead_letter.clone(),
        Arc::clone(inflight),
        settings.retry.queue,
        log,
    )
}

pub(super) fn submitter<C: Cdn, L: Ledger>(
    cdn: Arc<C>,
    ledger: Arc<L>,
    settings: &Settings,
    budget: Arc<Budget<C, L>>,
    tracker: Option<mpsc::Sender<Owed>>,
    month_to_date: Arc<MonthToDate>,
    backlog: Arc<SubmissionBacklog>,
) -> Submitter<C, L> {
    let submission = &settings.submission;
    let own = submission.own_account.as_deref();
    let accounts = Accounts::new(&submission.roles, own, submission.account_quotas, &settings.limits, || {
        match submission.account_rate {
            Some(_) => CreateRateLimiter::awaiting_share(),
            None => CreateRateLimiter::new(submission.create_rate, submission.create_burst),
        }
    });
    settings.accounts.show(&accounts);
    Submitter {
        cdn,
        ledger,
        budget,
        overload: submission.overload,
        spending: submission.spending.clone(),
        accounts: Arc::new(accounts),
        retry: settings.retry,
        ownership: Ownership {
            worker_id: settings.ledger.worker_id.clone(),
            lease: settings.ledger.lease,
            retention: settings.ledger.retention,
            clock: settings.clock,
        },
        announce_failures: settings.events.is_some(),
        month_to_date,
        tracker,
        backlog,
    }
}

/// Starts the completion tracker unless it is turned off; returns where accepted invalidations go.
pub(super) fn start_tracker<Q: Queue, C: Cdn, L: Ledger>(
    services: &Services<Q, C, L>,
    settings: &Settings,
    budget: &Arc<Budget<C, L>>,
    tasks: &mut JoinSet<()>,
    stop: CancellationToken,
) -> Option<mpsc::Sender<Owed>> {
    if settings.tracking.poll.is_zero() {
        return None;
    }
    let edge = start_edge_stage(services, settings, tasks, stop.clone());
    let (to_tracker, accepted) = mpsc::channel(CHANNEL_CAPACITY);
    let tracker = Tracker {
        cdn: Arc::clone(&services.cdn),
        ledger: Arc::clone(&services.ledger),
        budget: Arc::clone(budget),
        settings: TrackSettings {
            first_look: settings.tracking.first_look.min(settings.tracking.poll),
            poll: settings.tracking.poll,
            adopt_every: settings.tracking.adopt_every,
            adopt_after: settings.tracking.adopt_after,
            call_gap: Duration::from_secs_f64(1.0 / settings.tracking.status_rate),
            clock: settings.clock,
        },
        events: settings.events.clone(),
        edge,
    };
    tasks.spawn(tracker.run(accepted, stop));
    Some(to_tracker)
}

/// Starts the edge stage when checks are configured (and a client to make them); returns where the tracker hands
/// completed batches. Stopped with the tracker: a check under way then is left unfinished.
pub(super) fn start_edge_stage<Q: Queue, C, L: Ledger>(
    services: &Services<Q, C, L>,
    settings: &Settings,
    tasks: &mut JoinSet<()>,
    stop: CancellationToken,
) -> Option<EdgeHandoff> {
    let edge_settings = &settings.edge;
    let client =
        settings.edge_client.clone().filter(|_| edge_settings.verify.is_some() || edge_settings.warm.is_some())?;
    let stage = EdgeStage {
        edge: client,
        domains: settings.edge_domains.clone(),
        ledger: Arc::clone(&services.ledger),
        queue: Arc::clone(&services.queue),
        settings: edge_settings.clone(),
        events: settings.events.clone(),
        clock: settings.clock,
        tally: Arc::clone(&settings.edge_tally),
    };
    let (handoff, run) = stage.start(stop);
    tasks.spawn(run);
    Some(handoff)
}
