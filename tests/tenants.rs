//! Tenants of multi-tenant distributions (#29) through the whole worker, on the fakes: what the CloudFront fake
//! received for each target and what the ledger holds. The SDK adapter's tenant calls are exercised over HTTP
//! against the project's simulator in `tests/simulator.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::model::{DistributionId, TenantId};
use cf_invalidator::ports::budget::QUOTA;
use cf_invalidator::ports::{Allowance, BatchStatus, Queue};
use cf_invalidator::worker::{Exit, Settings};
use common::memory::settings;
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

struct Harness {
    queue: Arc<MemoryQueue>,
    cdn: Arc<FakeCdn>,
    ledger: Arc<MemoryLedger>,
}

impl Harness {
    /// Distribution EAAA with tenants dt_a and dt_b.
    fn new() -> Self {
        let cdn = FakeCdn::with_distributions(["EAAA"]);
        for tenant in ["dt_a", "dt_b"] {
            cdn.add_tenant(distribution(), TenantId::parse(tenant).unwrap()).unwrap();
        }
        Self {
            queue: Arc::new(MemoryQueue::with_clock(WallClock::following_tokio())),
            cdn: Arc::new(cdn),
            ledger: Arc::default(),
        }
    }

    async fn send(&self, tenant: Option<&str>, paths: &[&str]) {
        let mut body = json!({"distribution_id": "EAAA", "paths": paths});
        if let Some(tenant) = tenant {
            body["tenant_id"] = tenant.into();
        }
        self.queue.send(&body.to_string(), &[]).await.unwrap();
    }

    async fn run_for(&self, duration: Duration, settings: Settings) -> Exit {
        common::memory::run_for(&self.queue, &self.cdn, &self.ledger, duration, settings).await
    }

    /// What CloudFront created, as (target, paths), in creation order.
    fn created(&self) -> Vec<(String, Vec<String>)> {
        self.cdn.created().into_iter().map(|c| (c.target().to_string(), c.paths)).collect()
    }
}

fn distribution() -> DistributionId {
    DistributionId::parse("EAAA").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_tenant_request_invalidates_only_the_tenant_and_is_tracked_to_completion() {
    let h = Harness::new();
    h.cdn.complete_after(Duration::from_secs(20));
    h.send(Some("dt_a"), &["/index.html"]).await;

    assert_eq!(h.run_for(2 * MINUTE, settings()).await, Exit::Drained);

    assert_eq!(h.created(), [("EAAA/dt_a".to_owned(), vec!["/index.html".to_owned()])]);
    let whole = h.cdn.report().distributions["EAAA"].worker_paths_billed;
    assert_eq!(whole, 0, "nothing was invalidated on the whole distribution");
    assert!(h.queue.is_empty(), "left on the queue: {:?}", h.queue.messages());
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].tenant_id.as_ref().map(TenantId::as_str), Some("dt_a"));
    assert_eq!(records[0].status, BatchStatus::Completed, "tracked with the tenant's list and get calls");
}

#[tokio::test(start_paused = true)]
async fn two_tenants_and_the_whole_distribution_batch_separately() {
    let h = Harness::new();
    h.send(Some("dt_a"), &["/a", "/shared"]).await;
    h.send(Some("dt_b"), &["/b", "/shared"]).await;
    h.send(None, &["/shared"]).await;
    h.send(Some("dt_a"), &["/shared", "/a2"]).await;

    assert_eq!(h.run_for(MINUTE, settings()).await, Exit::Drained);

    let mut created = h.created();
    created.sort();
    let expected =
        [("EAAA", vec!["/shared"]), ("EAAA/dt_a", vec!["/a", "/a2", "/shared"]), ("EAAA/dt_b", vec!["/b", "/shared"])]
            .map(|(target, paths)| (target.to_owned(), paths.into_iter().map(String::from).collect::<Vec<_>>()));
    assert_eq!(created, expected);
    assert!(h.queue.is_empty());
    let mut targets: Vec<(Option<String>, usize)> =
        h.ledger.records().iter().map(|r| (r.tenant_id.as_ref().map(|t| t.to_string()), r.message_ids.len())).collect();
    targets.sort();
    assert_eq!(targets, [(None, 1), (Some("dt_a".into()), 2), (Some("dt_b".into()), 1)]);
}

#[tokio::test(start_paused = true)]
async fn tenants_share_their_distribution_s_in_progress_limits() {
    let h = Harness::new();
    let completion = Duration::from_secs(40);
    h.cdn.complete_after(completion);
    h.send(Some("dt_a"), &["/a1", "/a2"]).await;
    h.send(Some("dt_b"), &["/b1", "/b2"]).await;
    let mut settings = settings();
    // Room for one tenant's batch at a time in the distribution.
    settings.budget.reserve = Allowance { paths: QUOTA.paths - 2, wildcards: 0 };

    assert_eq!(h.run_for(3 * MINUTE, settings).await, Exit::Drained);

    let created = h.cdn.created();
    assert_eq!(created.len(), 2, "{created:?}");
    let mut tenants: Vec<String> = created.iter().map(|c| c.target().to_string()).collect();
    tenants.sort();
    assert_eq!(tenants, ["EAAA/dt_a", "EAAA/dt_b"]);
    assert!(
        created[1].at >= created[0].at + completion,
        "the second tenant's batch waited for the first to complete: {:?} after it",
        created[1].at - created[0].at
    );
    assert!(h.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_persons_tenant_invalidation_in_progress_counts_against_the_distribution_s_budget() {
    let h = Harness::new();
    let completion = Duration::from_secs(40);
    h.cdn.complete_after(completion);
    let tenant_a = cf_invalidator::model::Target::tenant(distribution(), TenantId::parse("dt_a").unwrap());
    let by_hand: Vec<String> = (0..8).map(|n| format!("/console/{n}")).collect();
    let person = h.cdn.create_as_someone_else(tenant_a, &by_hand).unwrap();
    h.send(Some("dt_a"), &["/a1", "/a2", "/a3", "/a4", "/a5"]).await;
    let mut settings = settings();
    // Room for 10 paths in the distribution: the person's 8 in progress leave 2.
    settings.budget.reserve = Allowance { paths: QUOTA.paths - 10, wildcards: 0 };

    assert_eq!(h.run_for(3 * MINUTE, settings).await, Exit::Drained);

    let created = h.cdn.created();
    let by_hand_done = created.iter().find(|c| c.id == person.id).unwrap().at + completion;
    let worker = created.iter().filter(|c| c.id != person.id);
    let early: usize = worker.clone().filter(|c| c.at < by_hand_done).map(|c| c.paths.len()).sum();
    assert_eq!(early, 2, "only the room the person's tenant invalidation left, until it completed: {created:?}");
    assert_eq!(worker.map(|c| c.paths.len()).sum::<usize>(), 5, "the rest after it");
    assert!(h.queue.is_empty());
}

// ---- Over HTTP: the SDK adapter's tenant calls against the project's simulator ----

mod over_http {
    use std::time::SystemTime;

    use cf_invalidator::aws::cloudfront::CloudFront;
    use cf_invalidator::fake::cloudfront_http::SimServer;
    use cf_invalidator::fake::{Completion, SimConfig};
    use cf_invalidator::model::{CallerReference, Target};
    use cf_invalidator::ports::{Cdn, CdnError};

    use super::*;

    fn tenant(id: &str) -> Target {
        Target::tenant(distribution(), TenantId::parse(id).unwrap())
    }

    fn files(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("/{prefix}/{i}.html")).collect()
    }

    #[tokio::test]
    async fn a_tenant_has_its_own_invalidations_and_in_progress_quota() {
        let cdn = FakeCdn::simulator(SimConfig { completion: Completion::After(MINUTE), ..SimConfig::cloudfront() });
        cdn.add_distribution(distribution());
        for id in ["dt_a", "dt_b"] {
            cdn.add_tenant(distribution(), TenantId::parse(id).unwrap()).unwrap();
        }
        let cdn = Arc::new(cdn);
        let server = SimServer::start(Arc::clone(&cdn)).await.unwrap();
        let cloudfront = CloudFront::new(server.client());
        let create = |target: Target, paths: Vec<String>| {
            let cloudfront = cloudfront.clone();
            async move { cloudfront.create_invalidation(&target, &CallerReference::mint(), &paths).await }
        };

        let full = create(tenant("dt_a"), files("a", QUOTA.paths as usize)).await.unwrap();
        let over = create(tenant("dt_a"), files("more", 1)).await;
        assert!(matches!(over, Err(CdnError::TooManyInProgress(_))), "{over:?}");
        let other_tenant = create(tenant("dt_b"), files("b", 1)).await.unwrap();
        let whole = create(distribution().into(), files("w", 1)).await.unwrap();

        let detail = cloudfront.get_invalidation(tenant("dt_a"), &full.id).await.unwrap();
        assert_eq!(detail.paths.len(), QUOTA.paths as usize);
        for elsewhere in [tenant("dt_b"), distribution().into()] {
            let missing = cloudfront.get_invalidation(&elsewhere, &full.id).await;
            assert!(matches!(missing, Err(CdnError::NoSuchInvalidation(_))), "{elsewhere}: {missing:?}");
        }
        let listed = |target: Target| {
            let cloudfront = cloudfront.clone();
            async move {
                let listed = cloudfront.list_recent(&target, SystemTime::UNIX_EPOCH).await.unwrap();
                listed.into_iter().map(|i| i.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed(tenant("dt_a")).await, std::slice::from_ref(&full.id));
        assert_eq!(listed(tenant("dt_b")).await, [other_tenant.id]);
        assert_eq!(listed(distribution().into()).await, [whole.id]);
        let unknown = create(tenant("dt_zzz"), files("z", 1)).await;
        assert!(
            matches!(unknown, Err(CdnError::NoSuchDistribution(ref m)) if m.contains("EntityNotFound")),
            "{unknown:?}"
        );

        let report = cdn.report();
        assert_eq!(report.distributions["EAAA/dt_a"].in_progress.paths, QUOTA.paths);
        assert_eq!(report.distributions["EAAA"].in_progress.paths, 1);
    }
}
