//! The warm driver: a completed batch's plain paths fetched through the edge once per encoding (and per named POP),
//! at most `--warm-rate` requests a second per distribution, so the origin is refilled gently instead of by every
//! viewer at once.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::sample::plain_paths;
use super::settings::WarmSettings;
use super::url::{NotCloudFrontDomain, edge_url, pop_host};
use super::verify::{BatchFacts, PathProblem};
use crate::clock::TokioClock;
use crate::model::DistributionId;
use crate::ports::edge::{ConnectVia, Edge, EdgeMethod, EdgeRequest, EdgeResponse};

/// Failures kept in a [`Warming`] for people to read; the counts are complete.
pub const MAX_FAILURES_KEPT: usize = 10;

/// The path of a failure that befell every path of the batch.
pub const EVERY_PATH: &str = "*";

type Limiter =
    RateLimiter<DistributionId, HashMapStateStore<DistributionId>, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// One batch's warm-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warming {
    /// Requests answered 2xx.
    pub warmed: usize,
    pub failed: usize,
    /// The first failures, at most [`MAX_FAILURES_KEPT`].
    pub failures: Vec<PathProblem>,
}

impl Warming {
    fn failed(&mut self, count: usize, path: &str, reason: String) {
        self.failed += count;
        if self.failures.len() < MAX_FAILURES_KEPT {
            self.failures.push(PathProblem { path: path.to_owned(), reason });
        }
    }
}

/// Warms completed batches, one rate per distribution for all of them.
#[derive(Debug)]
pub struct Warmer<E> {
    edge: Arc<E>,
    settings: WarmSettings,
    limiter: Limiter,
}

impl<E: Edge> Warmer<E> {
    /// `settings.rate` must be positive (`settings::parse_warm_rate` sees to it).
    pub fn new(edge: Arc<E>, settings: WarmSettings) -> Self {
        let period = Duration::from_secs_f64(1.0 / settings.rate);
        // No burst: `rate` requests in any second, so an origin sees the pace it was promised from the start.
        let quota = Quota::with_period(period).expect("a positive rate").allow_burst(NonZeroU32::MIN);
        Self { edge, limiter: RateLimiter::hashmap_with_clock(quota, TokioClock), settings }
    }

    /// GETs every request of [`warm_requests`], each after a permit of the distribution's rate, `concurrency` at a
    /// time, reading and discarding the bodies up to the cap.
    pub async fn warm(&self, facts: &BatchFacts) -> Warming {
        let mut warming = Warming::default();
        let requests = match warm_requests(facts, &self.settings) {
            Ok(requests) => requests,
            Err(no_pops) => {
                let count = plain_paths(&facts.paths).len() * self.settings.pops.len() * self.settings.encodings.len();
                warming.failed(count, EVERY_PATH, no_pops.to_string());
                return warming;
            }
        };
        let answers: Vec<(EdgeRequest, Result<EdgeResponse, String>)> = stream::iter(requests)
            .map(|request| async {
                self.permit(&facts.distribution).await;
                let answer = self.edge.fetch(&request).await.map_err(|e| e.to_string());
                (request, answer)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (request, answer) in answers {
            match answer {
                Ok(answer) if (200..300).contains(&answer.status) => warming.warmed += 1,
                Ok(answer) => warming.failed(1, request.url.path_and_query(), refusal(&answer)),
                Err(reason) => warming.failed(1, request.url.path_and_query(), reason),
            }
        }
        warming
    }

    /// governor's own waits run on a timer tokio's paused clock does not drive; this sleep does.
    async fn permit(&self, distribution: &DistributionId) {
        while let Err(not_until) = self.limiter.check_key(distribution) {
            tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
        }
    }
}

fn refusal(answer: &EdgeResponse) -> String {
    match &answer.location {
        Some(to) if (300..400).contains(&answer.status) => {
            format!("a {} redirect to {to}, not followed", answer.status)
        }
        _ => format!("the edge answered {}", answer.status),
    }
}

/// The GETs that warm a batch: each plain path once per encoding, through each named POP (or once, through
/// whichever POP answers, when none is named). Never more than paths × encodings × POPs.
pub fn warm_requests(facts: &BatchFacts, settings: &WarmSettings) -> Result<Vec<EdgeRequest>, NotCloudFrontDomain> {
    let routes: Vec<Option<ConnectVia>> = if settings.pops.is_empty() {
        vec![None]
    } else {
        let domain = facts.domain.as_deref().unwrap_or_default();
        settings.pops.iter().map(|pop| pop_host(domain, pop).map(Some)).collect::<Result<_, _>>()?
    };
    let mut requests = Vec::new();
    for path in plain_paths(&facts.paths) {
        let Ok(url) = edge_url(&facts.edge, path) else { continue };
        for via in &routes {
            for encoding in &settings.encodings {
                requests.push(EdgeRequest {
                    method: EdgeMethod::Get,
                    url: url.clone(),
                    via: via.clone(),
                    accept_encoding: Some(encoding.clone()),
                });
            }
        }
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::url::{EdgeBase, Pop};
    use std::time::SystemTime;

    fn facts(domain: Option<&str>, paths: &[&str]) -> BatchFacts {
        BatchFacts {
            distribution: DistributionId::parse("E1").unwrap(),
            edge: EdgeBase::parse("https://www.example.com").unwrap(),
            domain: domain.map(str::to_owned),
            origin: None,
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            invalidation_created: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn each_plain_path_once_per_encoding_and_pop_with_the_distributions_host() {
        let pops = vec![Pop::parse("IAD89-C1").unwrap(), Pop::parse("FRA56-P2").unwrap()];
        let settings = WarmSettings { pops, ..WarmSettings::default() };
        let batch = facts(Some("d1.cloudfront.net"), &["/a", "/img/*", "#t", "/b", "//evil.com/c"]);
        let requests = warm_requests(&batch, &settings).unwrap();
        assert_eq!(requests.len(), 2 * 2 * 2, "paths × POPs × encodings");
        assert!(requests.iter().all(|r| r.method == EdgeMethod::Get && r.url.host() == "www.example.com"));
        let seen: Vec<(&str, &str, &str)> = requests
            .iter()
            .map(|r| (r.url.path_and_query(), r.via.as_ref().unwrap().host(), r.accept_encoding.as_deref().unwrap()))
            .collect();
        assert_eq!(
            seen[..4],
            [
                ("/a", "d1.IAD89-C1.cloudfront.net", "br"),
                ("/a", "d1.IAD89-C1.cloudfront.net", "gzip"),
                ("/a", "d1.FRA56-P2.cloudfront.net", "br"),
                ("/a", "d1.FRA56-P2.cloudfront.net", "gzip"),
            ]
        );

        let plain = warm_requests(&batch, &WarmSettings::default()).unwrap();
        assert_eq!(plain.len(), 2 * 2);
        assert!(plain.iter().all(|r| r.via.is_none()));
    }

    #[test]
    fn named_pops_need_the_cloudfront_domain() {
        let settings = WarmSettings { pops: vec![Pop::parse("IAD89-C1").unwrap()], ..WarmSettings::default() };
        assert!(warm_requests(&facts(None, &["/a"]), &settings).is_err());
        assert!(warm_requests(&facts(Some("www.example.com"), &["/a"]), &settings).is_err());
    }
}
