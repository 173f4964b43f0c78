//! Shared by the custom-harness benchmarks (`pipeline`, `memory`, `year`, ...): a seeded, realistic workload, port
//! wrappers that count AWS requests, CloudFront for runs of simulated months, process metrics read from /proc, and a
//! runner that measures each sample in a fresh child process so peak RSS is per run.

#![allow(dead_code)] // each benchmark uses a different part of this module

pub mod cloudfront;
pub mod fixture;
pub mod spool;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use cf_invalidator::fake::MemoryLedger;
use cf_invalidator::model::{CallerReference, Target};
use cf_invalidator::ports::{
    BatchEntryFailure, Cdn, CdnError, Invalidation, InvalidationDetail, LedgerError, Queue, QueueError, Receipt,
    ReceivedMessage,
};

// ---------------------------------------------------------------------------------------------------------------
// Workload

/// xorshift64*: deterministic and dependency-free; quality is irrelevant here.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Zipf(s) over `0..n` by inverse CDF: rank 0 is the most popular.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }

    /// Share of draws that land on rank 0.
    pub fn top_share(&self) -> f64 {
        self.cdf[0]
    }
}

pub fn distribution_id(index: usize) -> String {
    format!("EBENCH{index:08}")
}

const SECTIONS: [&str; 24] = [
    "blog",
    "docs",
    "img",
    "assets/js",
    "assets/css",
    "products",
    "news",
    "help",
    "api/v1",
    "api/v2",
    "fonts",
    "downloads",
    "about",
    "careers",
    "events",
    "media/video",
    "media/audio",
    "shop/cart",
    "shop/items",
    "search",
    "legal",
    "partners",
    "press",
    "status",
];

/// One site's path space: directories of Zipf-popular pages, with a few hot pages per directory.
pub struct PathModel {
    section: Zipf,
    page: Zipf,
    hot: Zipf,
}

impl Default for PathModel {
    fn default() -> Self {
        Self {
            section: Zipf::new(SECTIONS.len() * 4, 1.0),
            page: Zipf::new(PAGES as usize, 0.9),
            hot: Zipf::new(12, 1.0),
        }
    }
}

/// What a path is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Page,
    Hot,
    Wildcard,
}

impl PathModel {
    pub fn section(&self, rng: &mut Rng) -> String {
        let s = self.section.sample(rng);
        let name = SECTIONS[s % SECTIONS.len()];
        match s / SECTIONS.len() {
            0 => format!("/{name}"),
            variant => format!("/{name}/{}", 2023 + variant),
        }
    }

    /// A path in `section`: 1 % wildcards, 30 % hot pages (index, listing, feed: the usual repeats), otherwise a
    /// page drawn from a large Zipf(0.9)-popular space, which repeats a little on its own (together ~30 % of the
    /// paths of the 200,000-message workload repeat an earlier one). A few names need percent-encoding.
    pub fn path(&self, rng: &mut Rng, section: &str) -> (String, PathKind) {
        if rng.chance(0.01) {
            return (format!("{section}/*"), PathKind::Wildcard);
        }
        if rng.chance(0.30) {
            const HOT: [&str; 12] = [
                "index.html",
                "",
                "feed.xml",
                "sitemap.xml",
                "index.json",
                "latest.html",
                "menu.json",
                "top.html",
                "nav.js",
                "styles.css",
                "banner.png",
                "rss",
            ];
            return (format!("{section}/{}", HOT[self.hot.sample(rng)]), PathKind::Hot);
        }
        let page = self.page.sample(rng);
        let path = match page % 50 {
            0 => format!("{section}/files/report {page} (final).pdf"),
            1 => format!("{section}/caf\u{e9}-{page}.html"),
            2 => format!("{section}/item-{page}.jpg?size={}", page % 4),
            n => format!("{section}/{:02}/page-{page}.html", n % 16),
        };
        (path, PathKind::Page)
    }

    /// How many objects a distribution's site holds under `dir` (ending in `/`): every page and hot file the model
    /// can draw, in every section. What a wildcard `dir*` clears from the cache, changed or not.
    pub fn objects_under(dir: &str) -> u64 {
        let per_section = PAGES + HOT_FILES;
        let sections = SECTIONS.iter().flat_map(|name| {
            std::iter::once(format!("/{name}")).chain((1..4).map(move |variant| format!("/{name}/{}", 2023 + variant)))
        });
        sections
            .map(|section| {
                let inside = format!("{section}/");
                if inside.starts_with(dir) {
                    return per_section;
                }
                match dir.strip_prefix(&inside) {
                    Some("files/") => PAGES / 50,
                    Some(sub) => sub
                        .strip_suffix('/')
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|_| sub.len() == 3)
                        .map_or(0, |n| (3..50).filter(|r| r % 16 == n).count() as u64 * (PAGES / 50)),
                    None => 0,
                }
            })
            .sum()
    }
}

/// Pages in each section's Zipf space, and its hot files (the directory itself among them).
const PAGES: u64 = 50_000;
const HOT_FILES: u64 = 12;

#[derive(Debug, Default, Clone, Copy)]
pub struct WorkloadStats {
    pub messages: usize,
    pub paths: usize,
    /// Paths counted once per message (the parser drops a message's own duplicates).
    pub distinct_in_message: usize,
    /// Paths equal to an earlier path of the same distribution.
    pub repeats: usize,
    pub wildcards: usize,
    pub distributions_used: usize,
    pub top_distribution_share: f64,
}

impl WorkloadStats {
    pub fn describe(&self) -> String {
        format!(
            "{} messages, {} paths ({:.2} per message), {:.1} % repeats, {:.2} % wildcards, {} distributions used, top distribution {:.1} % of messages",
            self.messages,
            self.paths,
            self.paths as f64 / self.messages as f64,
            100.0 * self.repeats as f64 / self.paths as f64,
            100.0 * self.wildcards as f64 / self.paths as f64,
            self.distributions_used,
            100.0 * self.top_distribution_share
        )
    }
}

pub fn body(distribution: usize, paths: &[String], requester: &str) -> String {
    serde_json::json!({"distribution_id": distribution_id(distribution), "paths": paths, "requester": requester})
        .to_string()
}

/// The end-to-end workload: `messages` message bodies for `distributions` distributions with Zipf(1.0) traffic,
/// 1–8 paths per message, mostly within one directory per message.
pub fn pipeline_workload(seed: u64, messages: usize, distributions: usize) -> (Vec<String>, WorkloadStats) {
    let mut rng = Rng(seed);
    let traffic = Zipf::new(distributions, 1.0);
    let model = PathModel::default();
    let mut seen: HashSet<(usize, String)> = HashSet::new();
    let mut used = HashSet::new();
    let mut top = 0;
    let mut stats = WorkloadStats { messages, ..WorkloadStats::default() };
    let bodies = (0..messages)
        .map(|n| {
            let distribution = traffic.sample(&mut rng);
            used.insert(distribution);
            top += usize::from(distribution == 0);
            let home = model.section(&mut rng);
            let count = 1 + rng.below(8) as usize;
            let paths: Vec<String> = (0..count)
                .map(|_| {
                    // Directory-clustered: a message mostly touches one directory.
                    let section = if rng.chance(0.8) { home.clone() } else { model.section(&mut rng) };
                    let (path, kind) = model.path(&mut rng, &section);
                    stats.wildcards += usize::from(kind == PathKind::Wildcard);
                    stats.repeats += usize::from(!seen.insert((distribution, path.clone())));
                    path
                })
                .collect();
            stats.paths += paths.len();
            stats.distinct_in_message += paths.iter().collect::<HashSet<_>>().len();
            body(distribution, &paths, &format!("deploy-{}", n % 7))
        })
        .collect();
    stats.distributions_used = used.len();
    stats.top_distribution_share = top as f64 / messages as f64;
    (bodies, stats)
}

// ---------------------------------------------------------------------------------------------------------------
// Request counting

/// Requests the worker made, by service and kind. Counted when the call returns.
#[derive(Debug, Default)]
pub struct Counts {
    pub sqs_receive: AtomicU64,
    pub sqs_receive_empty: AtomicU64,
    pub sqs_received_messages: AtomicU64,
    pub sqs_delete: AtomicU64,
    pub sqs_delete_entries: AtomicU64,
    pub sqs_visibility: AtomicU64,
    pub sqs_visibility_entries: AtomicU64,
    pub sqs_send: AtomicU64,
    pub cloudfront_create: AtomicU64,
    pub cloudfront_get: AtomicU64,
    pub cloudfront_list: AtomicU64,
    pub dynamodb_writes: AtomicU64,
    pub dynamodb_reads: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CountSnapshot {
    pub sqs_receive: u64,
    pub sqs_receive_empty: u64,
    pub sqs_received_messages: u64,
    pub sqs_delete: u64,
    pub sqs_delete_entries: u64,
    pub sqs_visibility: u64,
    pub sqs_visibility_entries: u64,
    pub sqs_send: u64,
    pub cloudfront_create: u64,
    pub cloudfront_get: u64,
    pub cloudfront_list: u64,
    pub dynamodb_writes: u64,
    pub dynamodb_reads: u64,
}

impl Counts {
    pub fn snapshot(&self) -> CountSnapshot {
        CountSnapshot {
            sqs_receive: self.sqs_receive.load(Relaxed),
            sqs_receive_empty: self.sqs_receive_empty.load(Relaxed),
            sqs_received_messages: self.sqs_received_messages.load(Relaxed),
            sqs_delete: self.sqs_delete.load(Relaxed),
            sqs_delete_entries: self.sqs_delete_entries.load(Relaxed),
            sqs_visibility: self.sqs_visibility.load(Relaxed),
            sqs_visibility_entries: self.sqs_visibility_entries.load(Relaxed),
            sqs_send: self.sqs_send.load(Relaxed),
            cloudfront_create: self.cloudfront_create.load(Relaxed),
            cloudfront_get: self.cloudfront_get.load(Relaxed),
            cloudfront_list: self.cloudfront_list.load(Relaxed),
            dynamodb_writes: self.dynamodb_writes.load(Relaxed),
            dynamodb_reads: self.dynamodb_reads.load(Relaxed),
        }
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Relaxed);
}

/// A `Queue` that counts the calls made through it.
pub struct CountingQueue<Q> {
    pub inner: Q,
    pub counts: Arc<Counts>,
}

impl<Q: Queue> Queue for CountingQueue<Q> {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let received = self.inner.receive(max, wait, visibility).await;
        add(&self.counts.sqs_receive, 1);
        match &received {
            Ok(messages) if messages.is_empty() => add(&self.counts.sqs_receive_empty, 1),
            Ok(messages) => add(&self.counts.sqs_received_messages, messages.len()),
            Err(_) => {}
        }
        received
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<BatchEntryFailure>, QueueError> {
        add(&self.counts.sqs_delete, 1);
        add(&self.counts.sqs_delete_entries, receipts.len());
        self.inner.delete(receipts).await
    }

    async fn extend_visibility(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        add(&self.counts.sqs_visibility, 1);
        add(&self.counts.sqs_visibility_entries, receipts.len());
        self.inner.extend_visibility(receipts, visibility).await
    }

    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        add(&self.counts.sqs_send, 1);
        self.inner.send(body, attributes).await
    }
}

/// A `Cdn` that counts CreateInvalidation and GetInvalidation calls.
pub struct CountingCdn<C> {
    pub inner: C,
    pub counts: Arc<Counts>,
}

impl<C: Cdn> Cdn for CountingCdn<C> {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        add(&self.counts.cloudfront_create, 1);
        self.inner.create_invalidation(target, caller_reference, paths).await
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        add(&self.counts.cloudfront_get, 1);
        self.inner.get_invalidation(target, id).await
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        add(&self.counts.cloudfront_list, 1);
        self.inner.list_recent(target, since).await
    }
}

/// The fake ledger, counting DynamoDB requests: a read for each query or get, a write for each put, update or
/// transaction, both for a check-in (a put, then a query of the roster).
pub struct CountingLedger {
    pub inner: MemoryLedger,
    pub counts: Arc<Counts>,
}

impl CountingLedger {
    async fn before(&self, method: &'static str, _parts: &[&'static str]) -> Result<(), LedgerError> {
        const READS: [&str; 17] = [
            "list",
            "shared_beliefs",
            "in_progress",
            "month_billing",
            "month_totals",
            "account_totals",
            "dead_letter",
            "batch",
            "read_budget",
            "batch_by_invalidation",
            "batches_with_message",
            "latest_covering",
            "key_claim",
            "failures",
            "budgets",
            "pending_batches",
            "recent_batches",
        ];
        let read = READS.contains(&method);
        add(if read { &self.counts.dynamodb_reads } else { &self.counts.dynamodb_writes }, 1);
        if method == "check_in" {
            add(&self.counts.dynamodb_reads, 1);
        }
        Ok(())
    }

    fn after(&self, _method: &'static str) -> Result<(), LedgerError> {
        Ok(())
    }
}

cf_invalidator::hooked_ledger!(CountingLedger, inner, before, after);

// ---------------------------------------------------------------------------------------------------------------
// Process metrics (Linux /proc)

/// User + system CPU time of this process so far (all threads), at the kernel's 10 ms tick.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may contain spaces): state is field 3, utime 14,
    // stime 15 (man 5 proc).
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// A `Vm*` line of /proc/self/status, in KiB.
pub fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from /proc/self/status"))
}

/// Resets VmHWM (peak RSS) to the current RSS, so the peak covers only what follows.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("write /proc/self/clear_refs");
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------------------------
// Running samples in child processes

/// True when run by `cargo bench` (which passes `--bench`); `cargo test --all-targets` runs the binary without
/// it, and then the benchmarks only smoke-test themselves and time nothing.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub const CHILD_ENV: &str = "CFI_BENCH_CHILD";

/// Runs this executable again with `CFI_BENCH_CHILD=mode` and returns the `key=value` pairs of its `RESULT` line.
pub fn run_child(mode: &str) -> Vec<(String, String)> {
    run_child_with(mode, &[])
}

/// `run_child` with more environment variables for the child.
pub fn run_child_with(mode: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command.arg("--bench").env(CHILD_ENV, mode).envs(env.iter().copied());
    let output = command.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child {mode} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no RESULT: {stdout}"));
    result_pairs(line)
}

/// The `key=value` pairs of a RESULT line.
pub fn result_pairs(line: &str) -> Vec<(String, String)> {
    line.split_whitespace().filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

pub fn field(pairs: &[(String, String)], key: &str) -> f64 {
    pairs.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok()).unwrap_or_else(|| panic!("no {key}"))
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}
