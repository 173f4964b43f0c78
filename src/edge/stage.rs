//! The edge stage: what the tracker saw complete is verified at the edge, healed once if it stays stale, and
//! warmed, per the settings, with the outcome on the batch's record.
//!
//! The tracker hands completed batches over without waiting ([`EdgeHandoff`]): a full stage drops them, counted
//! (`cfi_edge_dropped_total`), so that a slow edge never delays completions, room in the budget or events. At most
//! `MAX_BATCHES_AT_ONCE` batches are checked at once, each with the verifier's and warmer's own bounds.
//!
//! Healing: paths still stale `--verify-grace` after completion are put back on the worker's own queue as one
//! urgent message (requester `heal-of:<CallerReference>`, a key of its own so it is sent once): the normal pipeline
//! then invalidates them, counts and records them like any producer's, and the heal batch is verified in turn. A
//! batch holding a heal message is never healed again; when its check is final, the healed batch's record says
//! `healed` or `stale`. Through the queue, not the submitter's channel: the message survives a restart of this
//! worker, and the submitter's merging and splitting work on messages, which a batch made here would not have.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics::{counter, histogram};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::domain::Domains;
use super::settings::EdgeSettings;
use super::tally::EdgeTally;
use super::url::EdgeBase;
use super::verify::{BatchFacts, Verification, Verifier};
use super::warm::{Warmer, Warming};
use crate::clock::WallClock;
use crate::model::{CallerReference, DistributionId};
use crate::ports::edge::{DomainLookup, SharedEdge};
use crate::ports::events::{Event, EventKind, Events};
use crate::ports::ledger::{BatchRecord, Batches, EdgeOutcome, VerificationRecord};
use crate::ports::queue::Queue;
use crate::telemetry::log_allowed;

/// Completed batches waiting for the stage; more are dropped and counted.
pub const EDGE_QUEUE: usize = 256;
/// Batches checked at once; each may wait out the grace, so this bounds what a stale edge holds.
const MAX_BATCHES_AT_ONCE: usize = 16;
/// The requester of a heal message, before the CallerReference of the batch it heals.
pub const HEAL_REQUESTER: &str = "heal-of:";

/// A batch the tracker recorded completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedBatch {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    pub completed_at: SystemTime,
}

/// Where the tracker hands completed batches: never waits.
#[derive(Debug, Clone)]
pub struct EdgeHandoff(mpsc::Sender<CompletedBatch>);

impl EdgeHandoff {
    pub fn hand(&self, batch: CompletedBatch) {
        if let Err(e) = self.0.try_send(batch) {
            counter!("cfi_edge_dropped_total").increment(1);
            if let Some(suppressed) = log_allowed("edge_dropped") {
                let batch = e.into_inner();
                warn!(caller_reference = %batch.caller_reference, suppressed, "the edge stage is full: this batch is not checked at the edge");
            }
        }
    }
}

/// What the stage needs: the edge client, the ledger for records, the queue for heal messages.
pub struct EdgeStage<L, Q> {
    pub edge: SharedEdge,
    /// Distributions' own domains, for those without `--edge-url`; without it, those are not checked.
    pub domains: Option<DomainLookup>,
    pub ledger: Arc<L>,
    pub queue: Arc<Q>,
    pub settings: EdgeSettings,
    pub events: Option<Events>,
    pub clock: WallClock,
    /// Where final outcomes are counted for the status page.
    pub tally: Arc<EdgeTally>,
}

/// The stage's drivers, shared by its batches' tasks.
struct Checks<L, Q> {
    verifier: Option<Verifier<SharedEdge>>,
    warmer: Option<Warmer<SharedEdge>>,
    /// Batches recorded `checking`, waiting out the grace: at most `MAX_BATCHES_AT_ONCE`.
    checking: Mutex<BTreeMap<CallerReference, VerificationRecord>>,
    domains: Domains,
    stage: EdgeStage<L, Q>,
}

impl<L: Batches, Q: Queue> EdgeStage<L, Q> {
    /// The handoff for the tracker, and the stage to run until `stop`.
    pub fn start(self, stop: CancellationToken) -> (EdgeHandoff, impl Future<Output = ()> + Send) {
        let (to_stage, completed) = mpsc::channel(EDGE_QUEUE);
        let edge = Arc::new(self.edge.clone());
        let checks = Checks {
            verifier: self.settings.verify.clone().map(|v| Verifier::new(Arc::clone(&edge), v, self.clock)),
            warmer: self.settings.warm.clone().map(|w| Warmer::new(Arc::clone(&edge), w)),
            checking: Mutex::default(),
            domains: Domains::new(self.domains.clone()),
            stage: self,
        };
        (EdgeHandoff(to_stage), Arc::new(checks).run(completed, stop))
    }
}

impl<L: Batches, Q: Queue> Checks<L, Q> {
    async fn run(self: Arc<Self>, mut completed: mpsc::Receiver<CompletedBatch>, stop: CancellationToken) {
        let mut running = JoinSet::new();
        loop {
            let room = running.len() < MAX_BATCHES_AT_ONCE;
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(_) = running.join_next() => {}
                batch = completed.recv(), if room => match batch {
                    Some(batch) => {
                        running.spawn(Arc::clone(&self).check(batch));
                    }
                    None => break,
                },
            }
        }
        if !running.is_empty() {
            info!(batches = running.len(), "stopping: edge checks under way are left unfinished");
        }
        running.shutdown().await;
        self.settle_interrupted().await;
    }

    /// Batches left `checking` by the stop are recorded `unverified`: nobody will check them again, and a
    /// `send --wait --verify` on them must end rather than wait out its timeout.
    async fn settle_interrupted(&self) {
        let interrupted = std::mem::take(&mut *self.checking.lock().expect("never poisoned"));
        for (reference, mut verified) in interrupted {
            verified.outcome = EdgeOutcome::Unverified;
            verified.at = self.stage.clock.now();
            self.write(&reference, &verified).await;
        }
    }

    /// Verifies, heals and warms one batch, as configured.
    async fn check(self: Arc<Self>, done: CompletedBatch) {
        let record = match self.stage.ledger.batch(&done.caller_reference).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                warn!(caller_reference = %done.caller_reference, error = %e, "cannot read the batch to check it at the edge");
                return;
            }
        };
        let facts = match self.facts(&record).await {
            Ok(facts) => facts,
            Err(reason) => {
                warn!(distribution_id = %record.distribution_id, "{reason}: the batch is not checked at the edge");
                let verified = unverified(self.stage.clock.now());
                self.write(&record.caller_reference, &verified).await;
                return;
            }
        };
        let mut verified = match &self.verifier {
            Some(verifier) => self.verify(verifier, &record, &facts, &done).await,
            None => VerificationRecord { outcome: EdgeOutcome::NotVerified, ..unverified(self.stage.clock.now()) },
        };
        if let Some(warmer) = &self.warmer {
            let warming = warmer.warm(&facts).await;
            count_warming(&warming);
            (verified.warmed, verified.warm_failed) = (Some(count(warming.warmed)), Some(count(warming.failed)));
        }
        self.write(&record.caller_reference, &verified).await;
    }

    /// Checks the sample; stale paths are checked again once the grace has passed since completion, and healed if
    /// they are still stale.
    async fn verify(
        &self,
        verifier: &Verifier<SharedEdge>,
        record: &BatchRecord,
        facts: &BatchFacts,
        done: &CompletedBatch,
    ) -> VerificationRecord {
        let mut verification = verifier.verify(facts).await;
        count_checks(&verification);
        if !verification.stale.is_empty() {
            let reference = &record.caller_reference;
            let checking = recorded(&verification, EdgeOutcome::Checking);
            self.write(reference, &checking).await;
            self.checking.lock().expect("never poisoned").insert(reference.clone(), checking);
            let grace = self.stage.settings.verify.as_ref().map_or(Duration::ZERO, |v| v.grace);
            let until = (done.completed_at + grace).duration_since(self.stage.clock.now()).unwrap_or_default();
            tokio::time::sleep(until).await;
            verification = verifier.verify(facts).await;
            count_checks(&verification);
            self.checking.lock().expect("never poisoned").remove(reference);
        }
        let heals = healed_batches(record);
        let outcome = if verification.all_fresh() {
            EdgeOutcome::Fresh
        } else if verification.stale.is_empty() {
            EdgeOutcome::Unverified
        } else if heals.is_empty() {
            return self.heal(record, &verification).await;
        } else {
            EdgeOutcome::Stale
        };
        let verified = recorded(&verification, outcome);
        if heals.is_empty() {
            self.announce(record, &verified, done.completed_at).await;
        }
        // A heal batch's outcome is announced as the outcome of the batches it healed: one event, and one stale
        // count, a producer's batch.
        for healed in heals {
            self.settle_healed(&healed, outcome).await;
        }
        verified
    }

    /// One more invalidation of the stale paths, through the queue.
    async fn heal(&self, record: &BatchRecord, verification: &Verification) -> VerificationRecord {
        let key = format!("heal-{}", record.caller_reference);
        let paths: Vec<&str> = verification.stale.iter().map(|stale| stale.path.as_str()).collect();
        let body = json!({
            "distribution_id": record.distribution_id.as_str(),
            "paths": paths,
            "requester": format!("{HEAL_REQUESTER}{}", record.caller_reference),
            "idempotency_key": key,
            "priority": "urgent",
            "awaited": record.awaited,
        });
        let mut verified = recorded(verification, EdgeOutcome::Healing);
        match self.stage.queue.send(&body.to_string(), &[]).await {
            Ok(()) => {
                counter!("cfi_edge_heals_total").increment(1);
                info!(caller_reference = %record.caller_reference, paths = paths.len(), "stale at the edge after the grace: invalidating the stale paths once more");
                verified.healed_by = Some(key);
            }
            Err(e) => {
                warn!(caller_reference = %record.caller_reference, error = %e, "could not send the second invalidation of the stale paths");
                verified.outcome = EdgeOutcome::Stale;
                self.announce(record, &verified, record.completed_at.unwrap_or(verified.at)).await;
            }
        }
        verified
    }

    /// A heal batch's check is final: the batch it healed is `healed` or `stale` for good.
    async fn settle_healed(&self, healed: &CallerReference, heal_outcome: EdgeOutcome) {
        let Ok(Some(record)) = self.stage.ledger.batch(healed).await else { return };
        let Some(mut verified) = record.verification.clone() else { return };
        if verified.outcome != EdgeOutcome::Healing {
            return;
        }
        verified.outcome = match heal_outcome {
            EdgeOutcome::Fresh | EdgeOutcome::Healed => EdgeOutcome::Healed,
            EdgeOutcome::Stale => EdgeOutcome::Stale,
            _ => EdgeOutcome::Unverified,
        };
        verified.at = self.stage.clock.now();
        self.announce(&record, &verified, record.completed_at.unwrap_or(verified.at)).await;
        self.write(&record.caller_reference, &verified).await;
    }

    /// Metrics and the `verified` or `stale` event of a final outcome. Events of the edge are published once, as
    /// they happen: they are not kept in the outbox like the batch's own.
    async fn announce(&self, record: &BatchRecord, verified: &VerificationRecord, completed_at: SystemTime) {
        let kind = match verified.outcome {
            EdgeOutcome::Fresh | EdgeOutcome::Healed => {
                let took = verified.at.duration_since(completed_at).unwrap_or_default();
                histogram!("cfi_edge_completion_to_verified_seconds").record(took.as_secs_f64());
                EventKind::Verified
            }
            EdgeOutcome::Stale => {
                counter!("cfi_edge_stale_batches_total").increment(1);
                warn!(caller_reference = %record.caller_reference, stale = ?verified.stale_paths, "the edge still serves old copies after the second invalidation; not invalidating again");
                EventKind::Stale
            }
            _ => return,
        };
        let Some(events) = &self.stage.events else { return };
        let event = Event::of_verification(kind, record, verified);
        if let Err(e) = events.0.publish(&event).await {
            warn!(caller_reference = %record.caller_reference, error = %e, kind = kind.as_str(), "could not publish the edge event");
        }
    }

    async fn write(&self, reference: &CallerReference, verified: &VerificationRecord) {
        self.stage.tally.add(reference, verified);
        if let Err(e) = self.stage.ledger.record_verification(reference, verified).await {
            warn!(caller_reference = %reference, error = %e, "could not record the check at the edge");
        }
    }

    /// Where the batch's objects are requested: its distribution's `--edge-url`, else its own domain.
    async fn facts(&self, record: &BatchRecord) -> Result<BatchFacts, String> {
        let distribution = &record.distribution_id;
        let domain = match self.stage.settings.edge_urls.contains_key(distribution) {
            true => None,
            false => Some(self.domains.domain(distribution).await?),
        };
        let edge = self
            .stage
            .settings
            .edge_base(distribution, domain.as_deref())
            .ok_or_else(|| format!("its domain {:?} is not a host name", domain.unwrap_or_default()))?;
        Ok(BatchFacts {
            distribution: distribution.clone(),
            domain: cloudfront_domain(&edge),
            origin: self.stage.settings.origin_urls.get(distribution).cloned(),
            paths: record.paths.clone(),
            invalidation_created: record.submitted_at.unwrap_or(record.created_at),
            edge,
        })
    }
}

/// A `*.cloudfront.net` edge URL is the distribution's own domain, through which named POPs are reached.
fn cloudfront_domain(edge: &EdgeBase) -> Option<String> {
    edge.host().ends_with(".cloudfront.net").then(|| edge.host().to_owned())
}

/// The batches a heal batch's messages heal, by their requester.
pub fn healed_batches(record: &BatchRecord) -> Vec<CallerReference> {
    let healed = record.requesters.iter().filter_map(|r| r.strip_prefix(HEAL_REQUESTER));
    healed.map(|reference| CallerReference::from_recorded(reference.to_owned())).collect()
}

fn unverified(at: SystemTime) -> VerificationRecord {
    VerificationRecord {
        outcome: EdgeOutcome::Unverified,
        at,
        checked: 0,
        fresh: 0,
        stale: 0,
        errors: 0,
        pops: Vec::new(),
        stale_paths: Vec::new(),
        healed_by: None,
        warmed: None,
        warm_failed: None,
    }
}

/// A verification as the ledger keeps it (bounded when written).
pub fn recorded(verification: &Verification, outcome: EdgeOutcome) -> VerificationRecord {
    VerificationRecord {
        outcome,
        at: verification.at,
        checked: count(verification.checked),
        fresh: count(verification.fresh),
        stale: count(verification.stale.len()),
        errors: count(verification.errors.len()),
        pops: verification.pops.iter().cloned().collect(),
        stale_paths: verification.stale.iter().map(|stale| stale.path.clone()).collect(),
        healed_by: None,
        warmed: None,
        warm_failed: None,
    }
    .bounded()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn count_checks(verification: &Verification) {
    counter!("cfi_edge_checks_total", "result" => "fresh").increment(verification.fresh as u64);
    counter!("cfi_edge_checks_total", "result" => "stale").increment(verification.stale.len() as u64);
    counter!("cfi_edge_checks_total", "result" => "error").increment(verification.errors.len() as u64);
}

fn count_warming(warming: &Warming) {
    counter!("cfi_edge_warm_requests_total", "result" => "warmed").increment(warming.warmed as u64);
    counter!("cfi_edge_warm_requests_total", "result" => "failed").increment(warming.failed as u64);
}
