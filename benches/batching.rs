//! Throughput of the pure stages: parsing and validating message bodies, merging paths into windows, and planning
//! wildcard replacements for a backlog that does not fit.
//!
//! The workload is seeded and realistic in shape: 50 distributions with skewed traffic, paths clustered in
//! directories with a few popular pages, about 30 % repeats, an occasional wildcard, 1–8 paths per message.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use cf_invalidator::batch::window::{BatchLimits, Batcher, MAX_WILDCARDS_PER_BATCH};
use cf_invalidator::intake::parse::parse_request;
use cf_invalidator::model::MessageId;
use cf_invalidator::model::message::Delivery;
use cf_invalidator::model::request::InvalidationRequest;
use cf_invalidator::plan::{Room, coalesce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// xorshift64*: deterministic and dependency-free; quality is irrelevant here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards small values: roughly Zipf-like popularity.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        self.below(a + 1)
    }
}

fn message_bodies(count: usize) -> Vec<String> {
    let mut rng = Rng(0x5eed);
    (0..count)
        .map(|_| {
            let distribution = format!("E{:013}", rng.skewed(50));
            let paths: Vec<String> = (0..1 + rng.below(8))
                .map(|_| {
                    let section = rng.skewed(20);
                    if rng.below(100) == 0 {
                        format!("/section-{section}/*")
                    } else if rng.below(10) < 3 {
                        format!("/section-{section}/index.html")
                    } else {
                        format!("/section-{section}/page-{}/article {}.html", rng.skewed(200), rng.below(10_000))
                    }
                })
                .collect();
            serde_json::json!({"distribution_id": distribution, "paths": paths, "requester": "bench"}).to_string()
        })
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let bodies = message_bodies(10_000);
    let mut group = c.benchmark_group("intake");
    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function("parse_and_validate_10k_messages", |b| {
        b.iter(|| bodies.iter().map(|body| parse_request(black_box(body)).is_ok()).filter(|ok| *ok).count())
    });
    group.finish();
}

fn bench_batching(c: &mut Criterion) {
    let requests: Vec<InvalidationRequest> =
        message_bodies(10_000).iter().map(|body| parse_request(body).unwrap()).collect();
    let paths: usize = requests.iter().map(|r| r.paths.len()).sum();
    let limits =
        BatchLimits { window: Duration::from_secs(5), max_paths: 1_000, max_wildcards: MAX_WILDCARDS_PER_BATCH };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let now = runtime.block_on(async { tokio::time::Instant::now() });
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(paths as u64));
    group.bench_function("window_merge_10k_messages", |b| {
        b.iter_batched(
            || requests.clone(),
            |requests| {
                let mut batcher = Batcher::new(limits);
                let mut sealed = 0;
                for (n, request) in requests.into_iter().enumerate() {
                    let delivery = Delivery { message_id: MessageId(n.to_string()), number: 1 };
                    sealed += batcher.add(now, delivery, vec![request], 0).0.len();
                }
                sealed + batcher.seal_all().len()
            },
            BatchSize::LargeInput,
        )
    });
    // Baseline in the same run: exact-duplicate removal with one HashSet per distribution and no wildcard
    // coverage or windows (what crates.io's queue does). The ratio is the price of coverage-aware merging.
    group.bench_function("baseline_hashset_dedup_10k_messages", |b| {
        b.iter_batched(
            || requests.clone(),
            |requests| {
                let mut per_distribution: HashMap<_, HashSet<_>> = HashMap::new();
                for request in requests {
                    per_distribution.entry(request.distribution_id).or_default().extend(request.paths);
                }
                per_distribution.values().map(HashSet::len).sum::<usize>()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// One distribution's backlog in the same shape as the messages: distinct encoded paths in skewed sections and
/// pages, an occasional page wildcard and a few tags.
fn backlog(count: usize) -> Vec<String> {
    let mut rng = Rng(0xc0a1);
    let mut paths: Vec<String> = (0..count)
        .map(|n| {
            let (section, page) = (rng.skewed(20), rng.skewed(200));
            match rng.below(200) {
                0 => format!("/section-{section}/page-{page}/*"),
                1 => format!("#product-{}", rng.below(50)),
                _ => format!("/section-{section}/page-{page}/article%20{n}.html"),
            }
        })
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

fn bench_coalesce(c: &mut Criterion) {
    // Room for 2,000 paths and every wildcard: the 48 page wildcards must merge and 13 sections become wildcards.
    let room = Room { paths: 2_000, wildcards: 15 };
    let paths = backlog(10_000);
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Elements(paths.len() as u64));
    group.bench_function("10k_paths_into_room", |b| b.iter(|| coalesce(black_box(&paths), room)));
    // Many more directories than paths to replace: each path alone in its own directory, up to 50 deep.
    let deep: Vec<String> = (0..10_000).map(|n| format!("/{}{n}/index.html", "d/".repeat(n % 50))).collect();
    group.bench_function("10k_deep_distinct_dirs_into_room", |b| b.iter(|| coalesce(black_box(&deep), room)));
    group.finish();
}

criterion_group!(benches, bench_parse, bench_batching, bench_coalesce);
criterion_main!(benches);
