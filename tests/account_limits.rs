//! Each AWS account the worker serves has its own CreateInvalidation rate and account-wide path buckets
//! (docs/accounts.md): a distribution reached through a role counts against the role's account, so an account
//! saturated by its own distributions holds back none of another account's. On the in-memory fakes and tokio's
//! paused clock; asserts on when the fake CloudFront created each invalidation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::limit::account::{AccountQuota, AccountQuotas};
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::role::{Role, Roles};
use cf_invalidator::ports::Queue;
use cf_invalidator::worker::Settings;
use tokio::time::Instant;

use common::memory;

/// Distributions in account 111122223333, reached through its role; `EOWN` is in the worker's own account.
const BUSY: [&str; 6] = ["EA01", "EA02", "EA03", "EA04", "EA05", "EA06"];
const OWN: &str = "EOWN";
const ROLE: &str = "arn:aws:iam::111122223333:role/cf-invalidator";

/// Sends one message of `paths` pages to each busy distribution, then one to `EOWN`, all at once, runs a worker
/// with `settings` for a minute and answers when each distribution's first invalidation was created, since the
/// first of all.
async fn created_at(settings: Settings, paths: usize) -> Vec<(String, Duration)> {
    let cdn = Arc::new(FakeCdn::with_distributions(BUSY.into_iter().chain([OWN])));
    let queue = Arc::new(MemoryQueue::with_clock(WallClock::following_tokio()));
    let ledger = Arc::new(MemoryLedger::default());
    for id in BUSY.into_iter().chain([OWN]) {
        let paths: Vec<_> = (0..paths).map(|n| format!("/{id}/page-{n}.html")).collect();
        let body = serde_json::json!({"distribution_id": id, "paths": paths});
        queue.send(&body.to_string(), &[]).await.unwrap();
    }
    memory::run_for(&queue, &cdn, &ledger, Duration::from_secs(60), settings).await;
    assert!(queue.is_empty(), "every message was covered and deleted");
    let created = cdn.created();
    let first = created.iter().map(|c| c.at).min().expect("invalidations were created");
    let at = |id: &str| created.iter().filter(|c| c.distribution_id.as_str() == id).map(|c| c.at).min();
    let at = |id: &str| at(id).map_or_else(|| panic!("{id} was never invalidated"), |at: Instant| at - first);
    BUSY.into_iter().chain([OWN]).map(|id| (id.to_owned(), at(id))).collect()
}

/// The busy distributions in the role's account.
fn settings() -> Settings {
    let mut settings = memory::settings();
    let mut roles = Roles::default();
    for id in BUSY {
        roles.assign(DistributionId::parse(id).unwrap(), Role::parse(ROLE).unwrap()).unwrap();
    }
    settings.submission.roles = roles;
    settings
}

fn spread(created: &[(String, Duration)]) -> (Duration, Duration) {
    let busy = created.iter().filter(|(id, _)| id != OWN).map(|(_, at)| *at);
    let own = created.iter().find(|(id, _)| id == OWN).map(|(_, at)| *at).unwrap();
    (busy.max().unwrap(), own)
}

#[tokio::test(start_paused = true)]
async fn a_saturated_accounts_call_rate_does_not_delay_another_accounts_calls() {
    let mut settings = settings();
    settings.submission.create_rate = 0.5;
    settings.submission.create_burst = 1.try_into().unwrap();
    let created = created_at(settings, 1).await;
    let (last_busy, own) = spread(&created);
    assert_eq!(last_busy, Duration::from_secs(10), "the busy account's six calls, one every 2 s: {created:?}");
    assert_eq!(own, Duration::ZERO, "the own account's call waits for none of them: {created:?}");
}

#[tokio::test(start_paused = true)]
async fn a_saturated_accounts_path_rate_does_not_delay_another_accounts_paths() {
    let mut settings = settings();
    let quota = AccountQuota::configured(10.0, 10);
    settings.submission.account_quotas = AccountQuotas { paths: quota, wildcards: None };
    let created = created_at(settings, 10).await;
    let (last_busy, own) = spread(&created);
    assert_eq!(last_busy, Duration::from_secs(5), "the busy account's 60 paths, 10 a second: {created:?}");
    assert_eq!(own, Duration::ZERO, "the own account's 10 paths wait for none of them: {created:?}");
}
