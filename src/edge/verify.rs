//! The verify driver: a sample of a completed batch's paths, requested from the edge a few at a time and judged by
//! the freshness rule (`fresh`), makes the batch's [`Verification`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::fresh::{OriginVersion, Verdict, judge};
use super::sample::sample;
use super::settings::VerifySettings;
use super::url::{EdgeBase, edge_url};
use crate::clock::WallClock;
use crate::model::DistributionId;
use crate::ports::edge::{Edge, EdgeError, EdgeMethod, EdgeRequest, EdgeResponse};

/// What browsers accept: the edge is asked for the copy most viewers get (CloudFront caches each encoding apart).
const VIEWER_ENCODINGS: &str = "br, gzip";

/// What verifying and warming a batch need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFacts {
    pub distribution: DistributionId,
    /// Where its objects are requested (`EdgeSettings::edge_base`).
    pub edge: EdgeBase,
    /// The distribution's `*.cloudfront.net` domain (GetDistribution's `DomainName`), through which named POPs are
    /// reached.
    pub domain: Option<String>,
    /// Where the objects' current versions are asked for (`--origin-url`).
    pub origin: Option<EdgeBase>,
    /// The batch's paths as submitted: wildcards and tags among them are never requested.
    pub paths: Vec<String>,
    /// When the invalidation was created. The time the worker saw it accepted, a little later, is stricter and
    /// so will do.
    pub invalidation_created: SystemTime,
}

/// One batch's check at the edge, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// When the last answer came.
    pub at: SystemTime,
    /// Paths checked: `fresh` + `stale` + `errors`.
    pub checked: usize,
    pub fresh: usize,
    pub stale: Vec<StalePath>,
    /// POPs that answered (`X-Amz-Cf-Pop`).
    pub pops: BTreeSet<String>,
    /// Paths whose answer could not say: no answer, a redirect, a server error.
    pub errors: Vec<PathProblem>,
}

impl Verification {
    /// At least one path checked, and every one fresh.
    pub fn all_fresh(&self) -> bool {
        self.checked > 0 && self.fresh == self.checked
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalePath {
    pub path: String,
    pub pop: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathProblem {
    pub path: String,
    pub reason: String,
}

/// Checks completed batches at the edge.
#[derive(Debug)]
pub struct Verifier<E> {
    edge: Arc<E>,
    settings: VerifySettings,
    clock: WallClock,
}

/// One path's answer and its verdict.
struct Checked {
    path: String,
    pop: Option<String>,
    verdict: Verdict,
}

impl<E: Edge> Verifier<E> {
    pub fn new(edge: Arc<E>, settings: VerifySettings, clock: WallClock) -> Self {
        Self { edge, settings, clock }
    }

    /// Requests up to `--verify-sample` of the batch's plain paths, `concurrency` at a time: from the edge with
    /// HEAD (GET, its body read up to the cap, where HEAD is refused), and likewise from the origin when it is
    /// known. At most four requests a path.
    pub async fn verify(&self, facts: &BatchFacts) -> Verification {
        // The futures made first, not by a closure inside the stream: a stream holding a closure over borrowed
        // paths is not `Send` to the compiler, and the worker runs this on a task of its own.
        let checks: Vec<_> =
            sample(&facts.paths, self.settings.sample).into_iter().map(|p| self.check(facts, p)).collect();
        let mut checked: Vec<Checked> =
            stream::iter(checks).buffer_unordered(self.settings.concurrency.max(1)).collect().await;
        checked.sort_by(|a, b| a.path.cmp(&b.path));
        let mut verification = Verification {
            at: self.clock.now(),
            checked: checked.len(),
            fresh: 0,
            stale: Vec::new(),
            pops: checked.iter().filter_map(|check| check.pop.clone()).collect(),
            errors: Vec::new(),
        };
        for Checked { path, pop, verdict } in checked {
            match verdict {
                Verdict::Fresh => verification.fresh += 1,
                Verdict::Stale(staleness) => {
                    verification.stale.push(StalePath { path, pop, reason: staleness.to_string() })
                }
                Verdict::Unknown(reason) => verification.errors.push(PathProblem { path, reason }),
            }
        }
        verification
    }

    async fn check(&self, facts: &BatchFacts, path: &str) -> Checked {
        let unknown = |reason: String| Checked { path: path.to_owned(), pop: None, verdict: Verdict::Unknown(reason) };
        let edge = match self.look(&facts.edge, path, Some(VIEWER_ENCODINGS)).await {
            Ok(edge) => edge,
            Err(reason) => return unknown(reason),
        };
        let since_created = self.clock.now().duration_since(facts.invalidation_created).unwrap_or_default();
        let origin = match &facts.origin {
            None => None,
            Some(origin) => match self.look(origin, path, None).await {
                Ok(answer) => Some(OriginVersion::from(&answer)),
                Err(reason) => return unknown(format!("origin: {reason}")),
            },
        };
        Checked { path: path.to_owned(), pop: edge.pop.clone(), verdict: judge(&edge, since_created, origin.as_ref()) }
    }

    /// HEAD answers the question unless the server refuses the method; then a bounded GET.
    async fn look(&self, base: &EdgeBase, path: &str, encodings: Option<&str>) -> Result<EdgeResponse, String> {
        let url = edge_url(base, path).map_err(|unsafe_path| format!("not requested: the path {unsafe_path}"))?;
        let accept_encoding = encodings.map(str::to_owned);
        let head = EdgeRequest { method: EdgeMethod::Head, url, via: None, accept_encoding };
        let answer = self.edge.fetch(&head).await.map_err(|e: EdgeError| e.to_string())?;
        if !matches!(answer.status, 405 | 501) {
            return Ok(answer);
        }
        let get = EdgeRequest { method: EdgeMethod::Get, ..head };
        self.edge.fetch(&get).await.map_err(|e| e.to_string())
    }
}
