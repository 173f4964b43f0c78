//! Operations: Prometheus metrics, health endpoints, and rate limits for repeated log lines.
//!
//! One listener (`--metrics-addr`) serves `/metrics` (Prometheus text format), `/healthz` (the process is alive),
//! `/readyz` (SQS and DynamoDB answered the last probe, no dependency is in an outage the worker is waiting
//! out, no batch waits for a spent monthly path budget, and the worker is not shutting down) and the status page
//! (`crate::status`) at `/`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics::gauge;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Latency buckets in seconds: CloudFront calls take tenths of a second, end-to-end waits up to minutes.
const LATENCY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 3_000.0];

/// Installs the process-wide metrics recorder; the handle renders the Prometheus page.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Prefix("cfi_batch_".into()), SIZE_BUCKETS)?
        .install_recorder()
}

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    queue_reachable: AtomicBool,
    ledger_reachable: AtomicBool,
    shutting_down: AtomicBool,
    /// What start-up waits for, while it waits.
    starting: Mutex<Option<String>>,
}

impl Health {
    /// Start-up waits for `why` (`None`: it is over).
    pub fn starting(&self, why: Option<String>) {
        *self.starting.lock().unwrap() = why;
    }

    pub fn record_probe(&self, queue_reachable: bool, ledger_reachable: bool) {
        self.queue_reachable.store(queue_reachable, Ordering::Relaxed);
        self.ledger_reachable.store(ledger_reachable, Ordering::Relaxed);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            Err("shutting down".into())
        } else if let Some(why) = self.starting.lock().unwrap().as_ref() {
            Err(format!("starting: {why}"))
        } else if !self.queue_reachable.load(Ordering::Relaxed) {
            Err("SQS did not answer the last probe".into())
        } else if !self.ledger_reachable.load(Ordering::Relaxed) {
            Err("DynamoDB did not answer the last probe".into())
        } else if held_for_budget() > 0 {
            let held = held_for_budget();
            Err(format!(
                "the monthly path budget is spent: {held} batches wait held until the month ends or --monthly-path-budget is raised"
            ))
        } else if let Some((dependency, lasted)) = outages().current().into_iter().next() {
            let lasted = humantime::format_duration(Duration::from_secs(lasted.as_secs()));
            Err(format!("{dependency} has failed every call for {lasted}; the messages wait held"))
        } else {
            Ok(())
        }
    }
}

/// Batches waiting because the monthly path budget is spent, in this process.
static HELD_FOR_BUDGET: AtomicU64 = AtomicU64::new(0);

/// Counts a batch among those waiting for the monthly path budget while it lives: `/readyz` and the gauge
/// `cfi_batches_held_for_month_budget` show them.
pub struct BudgetHold(());

impl BudgetHold {
    pub fn start() -> Self {
        let held = HELD_FOR_BUDGET.fetch_add(1, Ordering::Relaxed) + 1;
        gauge!("cfi_batches_held_for_month_budget").set(held as f64);
        Self(())
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        let held = HELD_FOR_BUDGET.fetch_sub(1, Ordering::Relaxed) - 1;
        gauge!("cfi_batches_held_for_month_budget").set(held as f64);
    }
}

/// How many batches wait because the monthly path budget is spent.
pub fn held_for_budget() -> u64 {
    HELD_FOR_BUDGET.load(Ordering::Relaxed)
}

/// A dependency that failed and has not answered since: what the worker waits out, and for how long.
#[derive(Debug, Default)]
pub struct Outages {
    failing_since: Mutex<BTreeMap<&'static str, Instant>>,
}

/// Failures shorter than this are retries, not outages: `/readyz` and the gauge ignore them.
const OUTAGE_AFTER: Duration = Duration::from_secs(30);

impl Outages {
    pub fn failed(&self, dependency: &'static str) {
        self.failing_since.lock().unwrap().entry(dependency).or_insert_with(Instant::now);
    }

    pub fn answered(&self, dependency: &'static str) {
        self.failing_since.lock().unwrap().remove(dependency);
    }

    /// Each dependency failing for longer than `OUTAGE_AFTER`, with how long it has been failing.
    pub fn current(&self) -> Vec<(&'static str, Duration)> {
        let since = self.failing_since.lock().unwrap();
        since.iter().map(|(dependency, at)| (*dependency, at.elapsed())).filter(|(_, d)| *d >= OUTAGE_AFTER).collect()
    }

    /// Sets `cfi_outage_seconds{dependency}` for every dependency seen failing, 0 once it answers again.
    fn report(&self) {
        let since = self.failing_since.lock().unwrap();
        for dependency in ["cloudfront", "dynamodb"] {
            let lasted = since.get(dependency).map_or(0.0, |at| at.elapsed().as_secs_f64());
            gauge!("cfi_outage_seconds", "dependency" => dependency).set(lasted);
        }
    }
}

/// The process's outages: stages report to it, `/readyz` and the metrics read it.
pub fn outages() -> &'static Outages {
    static OUTAGES: OnceLock<Outages> = OnceLock::new();
    OUTAGES.get_or_init(Outages::default)
}

/// Distinct `distribution_id` label values the metrics carry at most: without an allowlist a producer can name
/// any number of distributions, and each label value is a series the exporter keeps for the process's life.
const DISTRIBUTION_LABELS: usize = 1_000;

/// What stands for the distributions past the first `DISTRIBUTION_LABELS` in a metric's `distribution_id`.
pub const OTHER_DISTRIBUTIONS: &str = "other";

/// The label value for a distribution id (or a scope such as `account`): itself for the first
/// `DISTRIBUTION_LABELS` this process labels, `OTHER_DISTRIBUTIONS` after that.
pub fn distribution_label(distribution: &str) -> String {
    static LABELLED: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let mut labelled = LABELLED.get_or_init(Mutex::default).lock().unwrap();
    if labelled.contains(distribution) {
        return distribution.to_owned();
    }
    if labelled.len() < DISTRIBUTION_LABELS {
        labelled.insert(distribution.to_owned());
        return distribution.to_owned();
    }
    OTHER_DISTRIBUTIONS.to_owned()
}

/// An HTML page.
pub struct Page {
    pub status: StatusCode,
    pub html: String,
}

impl Page {
    pub fn ok(html: String) -> Self {
        Self { status: StatusCode::OK, html }
    }

    pub fn unavailable(html: String) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, html }
    }
}

/// HTML pages served beside the endpoints (the status page): boxed so the server needs not know the ports.
pub trait Pages: Send + Sync + 'static {
    /// The page at `path`, or `None` when there is none.
    fn page<'a>(&'a self, path: &'a str) -> Pin<Box<dyn Future<Output = Option<Page>> + Send + 'a>>;
}

/// What a listener serves: the worker serves all of it, `cf-invalidator status` only the pages (and `/healthz`).
#[derive(Clone, Default)]
pub struct Endpoints {
    pub metrics: Option<PrometheusHandle>,
    pub health: Option<Arc<Health>>,
    pub pages: Option<Arc<dyn Pages>>,
}

/// Serves the endpoints until `stop` is cancelled.
pub async fn serve(listener: TcpListener, endpoints: Endpoints, stop: CancellationToken) -> std::io::Result<()> {
    info!(addr = %listener.local_addr()?, "serving /healthz{}{}{}", if endpoints.metrics.is_some() { ", /metrics" } else { "" },
        if endpoints.health.is_some() { ", /readyz" } else { "" }, if endpoints.pages.is_some() { " and the status page at /" } else { "" });
    let mut upkeep_ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            _ = upkeep_ticks.tick() => {
                if let Some(metrics) = &endpoints.metrics {
                    metrics.run_upkeep();
                    outages().report();
                }
                continue;
            }
            accepted = listener.accept() => accepted?,
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, endpoints.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(%peer, error = %e, "telemetry connection ended");
            }
        });
    }
}

async fn respond(request: Request<Incoming>, endpoints: Endpoints) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (status, content_type, body) = match (path, &endpoints.metrics, &endpoints.health) {
        ("/metrics", Some(metrics), _) => (StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        ("/healthz", _, _) => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        ("/readyz", _, Some(health)) => match health.readiness() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {why}\n")),
        },
        _ => match endpoints.pages.as_ref().map(|pages| pages.page(path)) {
            Some(page) => match page.await {
                Some(page) => (page.status, "text/html; charset=utf-8", page.html),
                None => (StatusCode::NOT_FOUND, "text/plain", "not found: try /\n".to_owned()),
            },
            None => (StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz or /readyz\n".to_owned()),
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    Ok(response)
}

/// Repeated identical errors (an outage makes every poll fail) are logged at most a few times a minute per kind;
/// the next line that gets through says how many were suppressed.
pub fn log_allowed(kind: &'static str) -> Option<u64> {
    static LIMITER: OnceLock<(DefaultKeyedRateLimiter<&'static str>, SuppressedCounts)> = OnceLock::new();
    let (limiter, suppressed) = LIMITER.get_or_init(|| {
        let quota =
            Quota::per_minute(NonZeroU32::new(6).expect("non-zero")).allow_burst(NonZeroU32::new(3).expect("non-zero"));
        (RateLimiter::keyed(quota), SuppressedCounts::default())
    });
    match limiter.check_key(&kind) {
        Ok(()) => Some(suppressed.take(kind)),
        Err(_) => {
            suppressed.add(kind);
            None
        }
    }
}

#[derive(Default)]
struct SuppressedCounts(std::sync::Mutex<std::collections::HashMap<&'static str, Arc<AtomicU64>>>);

impl SuppressedCounts {
    fn counter(&self, kind: &'static str) -> Arc<AtomicU64> {
        Arc::clone(self.0.lock().unwrap().entry(kind).or_default())
    }

    fn add(&self, kind: &'static str) {
        self.counter(kind).fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self, kind: &'static str) -> u64 {
        self.counter(kind).swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_missing() {
        let health = Health::default();
        assert_eq!(health.readiness(), Err("SQS did not answer the last probe".to_owned()));
        health.record_probe(true, false);
        assert_eq!(health.readiness(), Err("DynamoDB did not answer the last probe".to_owned()));
        health.record_probe(true, true);
        assert_eq!(health.readiness(), Ok(()));
        health.begin_shutdown();
        assert_eq!(health.readiness(), Err("shutting down".to_owned()));
    }

    #[test]
    fn a_burst_of_identical_errors_is_cut_and_counted() {
        let allowed: Vec<Option<u64>> = (0..10).map(|_| log_allowed("test_burst")).collect();
        assert_eq!(&allowed[..3], [Some(0), Some(0), Some(0)]);
        assert!(allowed[3..].iter().all(Option::is_none));
        assert_eq!(log_allowed("another_kind"), Some(0), "kinds are limited separately");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_shows_after_half_a_minute_and_ends_with_the_first_answer() {
        let outages = Outages::default();
        outages.failed("cloudfront");
        tokio::time::sleep(Duration::from_secs(10)).await;
        outages.failed("cloudfront");
        assert!(outages.current().is_empty(), "a few failures are retries");
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(outages.current(), [("cloudfront", Duration::from_secs(35))], "counted from the first failure");
        outages.answered("cloudfront");
        assert!(outages.current().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_names_the_dependency_in_an_outage() {
        let health = Health::default();
        health.record_probe(true, true);
        outages().failed("dynamodb");
        tokio::time::sleep(Duration::from_secs(95)).await;
        let why = health.readiness().unwrap_err();
        outages().answered("dynamodb");
        assert_eq!(why, "dynamodb has failed every call for 1m 35s; the messages wait held");
        assert_eq!(health.readiness(), Ok(()));
    }

    #[test]
    fn distribution_labels_are_bounded_and_each_keeps_its_value() {
        let id = |n: usize| format!("ELABEL{n:06}");
        let first = distribution_label(&id(0));
        assert_eq!(first, "ELABEL000000");
        let spilled = (1..=DISTRIBUTION_LABELS).find(|&n| distribution_label(&id(n)) == OTHER_DISTRIBUTIONS);
        assert!(spilled.is_some(), "the labels never ran out");
        assert_eq!(distribution_label(&id(0)), first, "a labelled distribution keeps its label");
        assert_eq!(distribution_label(&id(DISTRIBUTION_LABELS + 1)), OTHER_DISTRIBUTIONS);
    }
}
