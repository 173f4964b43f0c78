//! Proof at the edge (issue #28): how long after a recorded completion a batch is verified, and how many requests
//! verifying and warming add per batch, with the default settings.
//!
//! The whole worker runs over the fakes and the simulator's edge on tokio's paused clock. `BATCHES` distributions
//! each get one message of `PATHS` objects, cached at both POPs beforehand; CloudFront completes each invalidation
//! after 20 s. Three runs: no lag; one POP lagging 10 s behind each completion (less than the 30 s grace); one POP
//! lagging 60 s (more than the grace, so the stale paths are invalidated once more). Each prints completion recorded
//! → verified (p50, p99, max, in simulated seconds) and the edge requests per batch, by method; the last run warms
//! too. It asserts outcomes only: every batch verified fresh or healed.
//!
//! `cargo bench --bench edge_proof`; `CFI_BENCH_BATCHES` overrides the number of batches (default 50).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::edge::settings::{VerifySettings, WarmSettings};
use cf_invalidator::edge::url::EdgeBase;
use cf_invalidator::fake::{EdgeConfig, FakeCdn, FakeEdge, MemoryLedger, MemoryQueue};
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::edge::{EdgeMethod, SharedEdge};
use cf_invalidator::ports::ledger::EdgeOutcome;
use cf_invalidator::ports::{BatchStatus, Queue};
use cf_invalidator::worker::{self, Services, Settings};
use common::env_or;

const PATHS: usize = 10;
const DOMAIN: &str = "d111111abcdef8.cloudfront.net";
const LAGGING: &str = "FRA56-P2";

fn id(n: usize) -> DistributionId {
    DistributionId::parse(&format!("EPROOF{n}")).unwrap()
}

fn path(n: usize) -> String {
    format!("/page/{n}.html")
}

struct Run {
    lag: Duration,
    warm: bool,
}

async fn run(batches: usize, scenario: &Run) -> String {
    let ids: Vec<DistributionId> = (0..batches).map(id).collect();
    let cdn = Arc::new(FakeCdn::with_distributions(ids.iter().map(DistributionId::as_str)));
    cdn.complete_after(Duration::from_secs(20));
    let edge = Arc::new(FakeEdge::new(Arc::clone(&cdn), EdgeConfig::default()));
    edge.set_lag(LAGGING, scenario.lag);
    let queue = Arc::new(MemoryQueue::with_clock(WallClock::following_tokio()));
    let ledger = Arc::new(MemoryLedger::default());
    let mut settings = Settings { clock: WallClock::following_tokio(), ..Settings::default() };
    settings.submission.create_rate = 100.0;
    settings.edge.verify = Some(VerifySettings::default());
    settings.edge.warm = scenario.warm.then(WarmSettings::default);
    settings.edge_client = Some(SharedEdge::new(Arc::clone(&edge)));
    for distribution in &ids {
        let base = EdgeBase::parse(&format!("https://{DOMAIN}/{distribution}")).unwrap();
        settings.edge.edge_urls.insert(distribution.clone(), base);
        for n in 0..PATHS {
            edge.put_object(distribution, &path(n), "v1");
            edge.cache_everywhere(distribution, &path(n), DOMAIN);
            edge.put_object(distribution, &path(n), "v2");
        }
        let paths: Vec<String> = (0..PATHS).map(path).collect();
        let body = serde_json::json!({"distribution_id": distribution.as_str(), "paths": paths});
        queue.send(&body.to_string(), &[]).await.unwrap();
    }
    let primed = edge.calls().len();
    let services = Services { queue, dead_letter: None, cdn, ledger: Arc::clone(&ledger) };
    worker::run(services, settings, tokio::time::sleep(Duration::from_secs(900))).await;

    let records = ledger.records();
    let firsts: Vec<_> = records.iter().filter(|r| r.requesters.is_empty()).collect();
    assert_eq!(firsts.len(), batches);
    let mut took: Vec<f64> = firsts
        .iter()
        .map(|r| {
            assert_eq!(r.status, BatchStatus::Completed);
            let verified = r.verification.clone().expect("verified");
            assert!(matches!(verified.outcome, EdgeOutcome::Fresh | EdgeOutcome::Healed), "{verified:?}");
            verified.at.duration_since(r.completed_at.unwrap()).unwrap().as_secs_f64()
        })
        .collect();
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    let calls = edge.calls().split_off(primed);
    let per_batch = |method| calls.iter().filter(|c| c.method == method).count() as f64 / batches as f64;
    let heals = records.len() - firsts.len();
    format!(
        "| {} s | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} | {:.1} | {} |",
        scenario.lag.as_secs(),
        if scenario.warm { "yes" } else { "no" },
        at(0.5),
        at(0.99),
        took[took.len() - 1],
        per_batch(EdgeMethod::Head),
        per_batch(EdgeMethod::Get),
        heals,
    )
}

fn main() {
    let batches = env_or("CFI_BENCH_BATCHES", 50);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    println!(
        "{batches} batches of {PATHS} paths, completion after 20 s, {LAGGING} lagging; simulated time\n\n\
         | lag | warm | completion → verified p50 | p99 | max | HEAD / batch | GET / batch | second invalidations |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for scenario in [
        Run { lag: Duration::ZERO, warm: false },
        Run { lag: Duration::from_secs(10), warm: false },
        Run { lag: Duration::from_secs(60), warm: true },
    ] {
        println!("{}", runtime.block_on(run(batches, &scenario)));
    }
}
