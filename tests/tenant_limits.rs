//! `--tenant-limits` (docs/tenants.md): with `shared`, a tenant's batches reserve room in its distribution's
//! in-progress budget, so two tenants of one distribution take turns with it; with `separate`, each tenant has a
//! budget of its own with the same limits. On the in-memory fakes and tokio's paused clock; asserts on when the
//! fake CloudFront created each tenant's invalidation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::limit::TenantLimits;
use cf_invalidator::model::{DistributionId, TenantId};
use cf_invalidator::ports::{Allowance, Queue};
use tokio::time::Instant;

use common::memory;

const DISTRIBUTION: &str = "ESAAS";
const TENANTS: [&str; 2] = ["dt_one", "dt_two"];
/// The in-progress limit: one tenant's batch fills it.
const LIMIT: u32 = 10;

/// Sends `LIMIT` pages for each tenant at once, runs a worker whose invalidations stay in progress a minute, and
/// answers when each tenant's invalidation was created, since the first.
async fn created_at(tenant_limits: TenantLimits) -> Vec<(String, Duration)> {
    let cdn = Arc::new(FakeCdn::with_distributions([DISTRIBUTION]));
    let distribution = DistributionId::parse(DISTRIBUTION).unwrap();
    for tenant in TENANTS {
        cdn.add_tenant(distribution.clone(), TenantId::parse(tenant).unwrap()).unwrap();
    }
    cdn.complete_after(Duration::from_secs(60));
    let queue = Arc::new(MemoryQueue::with_clock(WallClock::following_tokio()));
    for tenant in TENANTS {
        let paths: Vec<_> = (0..LIMIT).map(|n| format!("/{tenant}/page-{n}.html")).collect();
        let body = serde_json::json!({"distribution_id": DISTRIBUTION, "tenant_id": tenant, "paths": paths});
        queue.send(&body.to_string(), &[]).await.unwrap();
    }
    let mut settings = memory::settings();
    settings.budget.quota = Allowance { paths: LIMIT, wildcards: 15 };
    settings.budget.reserve = Allowance::default();
    settings.budget.tenant_limits = tenant_limits;
    // Waiting is the behaviour under test: no coalescing into wildcards to fit.
    settings.submission.overload.coalesce = false;
    memory::run_for(&queue, &cdn, &Arc::new(MemoryLedger::default()), Duration::from_secs(150), settings).await;
    assert!(queue.is_empty(), "both completed, their room returned, their messages deleted");
    let created = cdn.created();
    let first = created.iter().map(|c| c.at).min().expect("invalidations were created");
    let at = |tenant: &str| {
        let of_tenant = created.iter().filter(|c| c.tenant_id.as_ref().is_some_and(|t| t.as_str() == tenant));
        of_tenant.map(|c| c.at).min().map(|at: Instant| at - first)
    };
    TENANTS.iter().map(|&t| (t.to_owned(), at(t).unwrap_or_else(|| panic!("{t} was never invalidated")))).collect()
}

fn last(created: &[(String, Duration)]) -> Duration {
    created.iter().map(|(_, at)| *at).max().unwrap()
}

#[tokio::test(start_paused = true)]
async fn separate_tenants_each_get_the_full_in_progress_limit_at_once() {
    let created = created_at(TenantLimits::Separate).await;
    assert_eq!(last(&created), Duration::ZERO, "neither waits for the other: {created:?}");
}

#[tokio::test(start_paused = true)]
async fn shared_tenants_take_turns_with_their_distributions_limit() {
    let created = created_at(TenantLimits::Shared).await;
    assert!(last(&created) >= Duration::from_secs(60), "the second waits for the first to complete: {created:?}");
}
