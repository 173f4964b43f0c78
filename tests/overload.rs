//! A tenfold overload over the in-memory fakes, on tokio's paused clock: producers send far more than the
//! CreateInvalidation rate can submit, and the worker must hold only what it can submit soon, leaving the rest in
//! the queue, instead of holding everything and extending its visibility round after round.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::ports::Queue;
use cf_invalidator::worker::{self, Exit, Services, Settings};
use serde_json::json;

const DISTRIBUTIONS: usize = 60;
const MESSAGES_PER_SECOND: usize = 20;
const SENDING: Duration = Duration::from_secs(300);

fn distribution(n: usize) -> String {
    format!("EOVERLOAD{n:03}")
}

#[tokio::test(start_paused = true)]
async fn a_tenfold_overload_holds_what_can_be_submitted_soon_and_leaves_the_rest_queued() {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let ids: Vec<String> = (0..DISTRIBUTIONS).map(distribution).collect();
    let cdn = Arc::new(FakeCdn::with_distributions(ids.iter().map(String::as_str)));
    let services = Services {
        queue: Arc::clone(&queue),
        dead_letter: Some(Arc::new(MemoryQueue::with_clock(clock))),
        cdn: Arc::clone(&cdn),
        ledger: Arc::new(MemoryLedger::default()),
    };
    // One call a second, while the messages spread over 60 distributions would fill 12 batches a second (one per
    // distribution per 5-second window): twelve times what can be submitted.
    let mut settings = Settings { clock, ..Settings::default() };
    settings.submission.create_rate = 1.0;
    settings.intake.visibility_timeout = Duration::from_secs(60);
    settings.intake.receive_wait = Duration::from_secs(1);

    let total = MESSAGES_PER_SECOND * SENDING.as_secs() as usize;
    let paths: Vec<(String, String)> =
        (0..total).map(|n| (distribution(n * 7 % DISTRIBUTIONS), format!("/p/{n}"))).collect();
    let producer = {
        let (queue, paths) = (Arc::clone(&queue), paths.clone());
        async move {
            for chunk in paths.chunks(MESSAGES_PER_SECOND) {
                for (distribution, path) in chunk {
                    let body = json!({"distribution_id": distribution, "paths": [path]});
                    queue.send(&body.to_string(), &[]).await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let most_held = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (queue, most_held) = (Arc::clone(&queue), Arc::clone(&most_held));
        async move {
            loop {
                most_held.fetch_max(queue.in_flight(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let drained = {
        let queue = Arc::clone(&queue);
        async move {
            tokio::time::sleep(SENDING).await;
            while !queue.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let (exit, ()) = tokio::select! {
        done = async { tokio::join!(worker::run(services, settings, drained), producer) } => done,
        () = sampler => unreachable!("the sampler never ends"),
    };

    assert_eq!(exit, Exit::Drained);
    let created = cdn.invalidations();
    for (distribution, path) in &paths {
        let covered = created.iter().any(|(d, p)| d.as_str() == distribution && is_covered_by(path, p));
        assert!(covered, "{distribution} {path} was never invalidated");
    }
    let most_held = most_held.load(Ordering::Relaxed);
    let per_message = queue.extension_entries() as f64 / total as f64;
    println!(
        "{total} messages, {} invalidations; at most {most_held} held at once; {per_message:.3} extension entries per message",
        created.len()
    );
    // The sealed batches of half a visibility timeout (30 calls) and a window for each of the 60 distributions: about
    // 95 seconds of calls, so about as many seconds of arrivals. Without the bound the worker held 5,402 at once here
    // and asked for 44.5 extension entries per message (3,000 invalidations instead of 400).
    assert!(most_held <= 95 * MESSAGES_PER_SECOND, "{most_held} messages held at once");
    assert!(per_message < 0.5, "{per_message} visibility extension entries per message");
}
