//! The simulator's edge: CloudFront's POP caches in front of a small origin, for verifying and warming tests.
//!
//! The origin holds objects per distribution and path, each put with a new version (its `ETag` and
//! `Last-Modified`). Each POP caches them per encoding (`br`, `gzip`, none) and answers with CloudFront's headers:
//! `X-Cache` (`Hit`, `RefreshHit`, `Miss from cloudfront`), `Age`, `ETag`, `Last-Modified`, `X-Amz-Cf-Pop`. A POP
//! keeps serving its copy until an invalidation covering the path completes in the simulator ([`FakeCdn`]), plus the
//! POP's lag; a POP or path can be kept stale for good. A copy older than the TTL is revalidated with the origin
//! (`RefreshHit` if the version is unchanged). Requests name their POP (a named POP's host), or POPs answer in turn.
//!
//! It implements the `Edge` port in-process, on tokio's clock, and `edge_http` serves it over HTTP. Every request
//! is recorded for tests to assert on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{AGE, ETAG, HeaderMap, HeaderName, HeaderValue, LAST_MODIFIED, LOCATION};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::cdn::FakeCdn;
pub use super::edge_types::{EdgeCall, EdgeConfig, Misbehaviour, SimAnswer, SimRequest};
use crate::edge::http::response_of;
use crate::model::DistributionId;
use crate::ports::cdn::CdnError;
use crate::ports::edge::{DomainLookup, Edge, EdgeError, EdgeMethod, EdgeRequest, EdgeResponse};

/// Where the origin answers, beside the distributions' edge paths (`/<DistributionId>/…`): a distribution id
/// never starts with `_`.
pub const ORIGIN_PREFIX: &str = "/_origin";
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_AMZ_CF_POP: HeaderName = HeaderName::from_static("x-amz-cf-pop");

#[derive(Debug, Clone)]
struct Object {
    version: u64,
    body: Bytes,
    modified: Instant,
}

#[derive(Debug, Clone)]
struct Copy {
    object: Object,
    /// Fetched or revalidated: `Age` counts from here.
    stored_at: Instant,
}

type ObjectKey = (String, String);
/// POP, distribution, path, encoding.
type CacheKey = (String, String, String, &'static str);

#[derive(Debug, Default)]
struct State {
    origin: HashMap<ObjectKey, Object>,
    caches: HashMap<CacheKey, Copy>,
    stale_pops: BTreeSet<String>,
    stale_paths: BTreeSet<ObjectKey>,
    misbehaviours: HashMap<ObjectKey, Misbehaviour>,
    /// Distributions' own domains (`serve_domain`).
    domains: BTreeMap<DistributionId, String>,
    calls: Vec<EdgeCall>,
    /// The next POP in turn.
    turn: usize,
}

/// CloudFront's edge in front of a small origin; see the module's documentation.
#[derive(Debug)]
pub struct FakeEdge {
    cdn: Arc<FakeCdn>,
    config: Mutex<EdgeConfig>,
    state: Mutex<State>,
}

/// Where a request goes.
pub(super) enum Target {
    Edge,
    Origin,
}

impl FakeEdge {
    /// `config` names at least one POP.
    pub fn new(cdn: Arc<FakeCdn>, config: EdgeConfig) -> Self {
        assert!(!config.pops.is_empty(), "the simulator's edge needs a POP");
        Self { cdn, config: Mutex::new(config), state: Mutex::new(State::default()) }
    }

    pub fn pops(&self) -> Vec<String> {
        self.config.lock().unwrap().pops.clone()
    }

    /// Puts `body` at the origin as the next version of `path` (encoded, with its query if any); returns the
    /// version. The POPs' copies stay as they are.
    pub fn put_object(&self, distribution: &DistributionId, path: &str, body: impl Into<Bytes>) -> u64 {
        let mut state = self.state.lock().unwrap();
        let key = (distribution.to_string(), path.to_owned());
        let version = state.origin.get(&key).map_or(1, |object| object.version + 1);
        state.origin.insert(key, Object { version, body: body.into(), modified: Instant::now() });
        version
    }

    /// `pop` drops copies this long after an invalidation completes.
    pub fn set_lag(&self, pop: &str, lag: Duration) {
        self.config.lock().unwrap().lag.insert(pop.to_owned(), lag);
    }

    /// `pop` never drops a copy.
    pub fn keep_stale_pop(&self, pop: &str) {
        self.state.lock().unwrap().stale_pops.insert(pop.to_owned());
    }

    /// No POP ever drops its copies of `path`.
    pub fn keep_stale_path(&self, distribution: &DistributionId, path: &str) {
        self.state.lock().unwrap().stale_paths.insert((distribution.to_string(), path.to_owned()));
    }

    /// Over HTTP, `path` answers with `misbehaviour` instead of its object.
    pub fn misbehave(&self, distribution: &DistributionId, path: &str, misbehaviour: Misbehaviour) {
        self.state.lock().unwrap().misbehaviours.insert((distribution.to_string(), path.to_owned()), misbehaviour);
    }

    /// `domain` is `distribution`'s own, as GetDistribution names it: [`Self::domain_lookup`] answers it, and
    /// requests to it reach the distribution's objects without the routing prefix.
    pub fn serve_domain(&self, distribution: &DistributionId, domain: &str) {
        self.state.lock().unwrap().domains.insert(distribution.clone(), domain.to_owned());
    }

    /// GetDistribution's `DomainName`, for the domains `serve_domain` set; any other distribution does not exist.
    pub fn domain_lookup(self: &Arc<Self>) -> DomainLookup {
        let edge = Arc::clone(self);
        DomainLookup::new(move |distribution| {
            let domain = edge.state.lock().unwrap().domains.get(&distribution).cloned();
            Box::pin(async move { domain.ok_or_else(|| CdnError::NoSuchDistribution(distribution.to_string())) })
        })
    }

    /// The path and query as routed: with the distribution's prefix when sent to its own domain.
    fn routed(&self, host: &str, path_and_query: &str) -> String {
        let state = self.state.lock().unwrap();
        match state.domains.iter().find(|(_, domain)| *domain == host) {
            Some((distribution, _)) => format!("/{distribution}{path_and_query}"),
            None => path_and_query.to_owned(),
        }
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<EdgeCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// A browser's GET of `path` at every POP, through `host`: each caches the origin's current version for the
    /// encodings browsers accept (the copy verification asks for).
    pub fn cache_everywhere(&self, distribution: &DistributionId, path: &str, host: &str) {
        let path_and_query = format!("/{distribution}{path}");
        for pop in self.pops() {
            let request = SimRequest {
                method: EdgeMethod::Get,
                path_and_query: &path_and_query,
                host,
                pop: Some(&pop),
                accept_encoding: Some("br, gzip"),
            };
            assert_eq!(self.respond(&request).map(|answer| answer.status), Some(200), "{path} cached at {pop}");
        }
    }

    /// Answers a request routed by its path: `/<DistributionId>/<path>` to the edge, `/_origin/<DistributionId>/<path>`
    /// to the origin; anything else is `404`. A POP the edge does not have is `None`: no such host exists.
    pub fn respond(&self, request: &SimRequest<'_>) -> Option<SimAnswer> {
        let Some((target, distribution, path)) = route(request.path_and_query) else {
            return Some(answer(404, HeaderMap::new(), Bytes::new()));
        };
        let config = self.config.lock().unwrap().clone();
        let mut state = self.state.lock().unwrap();
        let pop = match (&target, request.pop) {
            (Target::Origin, _) => None,
            (Target::Edge, Some(pop)) => {
                Some(config.pops.iter().find(|known| known.eq_ignore_ascii_case(pop))?.clone())
            }
            (Target::Edge, None) => {
                state.turn += 1;
                Some(config.pops[(state.turn - 1) % config.pops.len()].clone())
            }
        };
        let key = (distribution.to_owned(), path);
        let mut sim = match &pop {
            None => origin_answer(&self.cdn, state.origin.get(&key)),
            Some(pop) => self.edge_answer(&config, &mut state, pop, &key, request.accept_encoding),
        };
        if request.method == EdgeMethod::Head {
            sim.body = Bytes::new();
        }
        // A HEAD has no body to make huge or to trickle.
        sim.misbehaviour = state.misbehaviours.get(&key).cloned().filter(|misbehaviour| {
            request.method == EdgeMethod::Get
                || !matches!(misbehaviour, Misbehaviour::Huge(_) | Misbehaviour::Trickle(_))
        });
        if let Some(Misbehaviour::Redirect(to)) = &sim.misbehaviour {
            sim.status = 301;
            sim.headers.insert(LOCATION, header(to));
        }
        state.calls.push(EdgeCall {
            at: Instant::now(),
            pop,
            distribution: key.0,
            path: key.1,
            method: request.method,
            accept_encoding: request.accept_encoding.map(str::to_owned),
            host: request.host.to_owned(),
            status: sim.status,
            x_cache: sim.headers.get(X_CACHE).and_then(|value| value.to_str().ok()).map(str::to_owned),
        });
        Some(sim)
    }

    fn edge_answer(
        &self,
        config: &EdgeConfig,
        state: &mut State,
        pop: &str,
        key: &ObjectKey,
        accept_encoding: Option<&str>,
    ) -> SimAnswer {
        let now = Instant::now();
        let cache_key = (pop.to_owned(), key.0.clone(), key.1.clone(), encoding(accept_encoding));
        let stale_for_good = state.stale_pops.contains(pop) || state.stale_paths.contains(key);
        if !stale_for_good
            && let Some(copy) = state.caches.get(&cache_key)
            && self.dropped(config, pop, key, copy.stored_at, now)
        {
            state.caches.remove(&cache_key);
        }
        let current = state.origin.get(key).cloned();
        let (x_cache, copy) = match (state.caches.get(&cache_key).cloned(), current) {
            (Some(copy), _) if now.duration_since(copy.stored_at) < config.ttl => ("Hit", copy),
            (Some(copy), Some(current)) if copy.object.version == current.version => {
                ("RefreshHit", Copy { object: copy.object, stored_at: now })
            }
            (_, Some(current)) => ("Miss", Copy { object: current, stored_at: now }),
            (_, None) => {
                state.caches.remove(&cache_key);
                let mut headers = HeaderMap::new();
                headers.insert(X_CACHE, header("Error from cloudfront"));
                headers.insert(X_AMZ_CF_POP, header(pop));
                return answer(404, headers, Bytes::new());
            }
        };
        state.caches.insert(cache_key, copy.clone());
        let mut headers = object_headers(&self.cdn, &copy.object);
        headers.insert(X_CACHE, header(&format!("{x_cache} from cloudfront")));
        headers.insert(X_AMZ_CF_POP, header(pop));
        if x_cache != "Miss" {
            headers.insert(AGE, header(&now.duration_since(copy.stored_at).as_secs().to_string()));
        }
        answer(200, headers, copy.object.body)
    }

    /// Whether `pop` has dropped a copy stored at `stored_at`: an invalidation covering the path completed, and
    /// the POP's lag passed, after it was stored.
    fn dropped(&self, config: &EdgeConfig, pop: &str, key: &ObjectKey, stored_at: Instant, now: Instant) -> bool {
        let lag = config.lag.get(pop).copied().unwrap_or_default();
        let (Some(by), Ok(distribution)) = (now.checked_sub(lag), DistributionId::parse(&key.0)) else {
            return false;
        };
        self.cdn
            .last_completion_covering(&distribution, &key.1, by)
            .is_some_and(|completed| completed + lag > stored_at)
    }
}

impl Edge for FakeEdge {
    async fn fetch(&self, request: &EdgeRequest) -> Result<EdgeResponse, EdgeError> {
        let path_and_query = self.routed(request.url.host(), request.url.path_and_query());
        let sim = SimRequest {
            method: request.method,
            path_and_query: &path_and_query,
            host: request.url.host(),
            pop: request.via.as_ref().map(|via| via.pop()),
            accept_encoding: request.accept_encoding.as_deref(),
        };
        let answer = self.respond(&sim).ok_or_else(|| {
            let host = request.via.as_ref().map_or_else(|| request.url.host().to_owned(), |via| via.host().to_owned());
            EdgeError::Resolve { host, reason: "the simulator's edge has no such POP".into() }
        })?;
        let mut response = response_of(answer.status, &answer.headers);
        response.bytes_read = answer.body.len() as u64;
        Ok(response)
    }
}

/// `(target, distribution, path)` of a routed path and query.
pub(super) fn route(path_and_query: &str) -> Option<(Target, &str, String)> {
    let (target, rest) = match path_and_query.strip_prefix(ORIGIN_PREFIX) {
        Some(rest) => (Target::Origin, rest),
        None => (Target::Edge, path_and_query),
    };
    let rest = rest.strip_prefix('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (distribution, path) = rest.split_at(end);
    DistributionId::parse(distribution).ok()?;
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Some((target, distribution, path))
}

/// CloudFront's cache key normalises `Accept-Encoding` to Brotli, else Gzip, else none.
fn encoding(accept_encoding: Option<&str>) -> &'static str {
    let accepted = accept_encoding.unwrap_or_default();
    ["br", "gzip"].into_iter().find(|name| accepted.split(',').any(|item| item.trim() == *name)).unwrap_or("identity")
}

fn origin_answer(cdn: &FakeCdn, object: Option<&Object>) -> SimAnswer {
    match object {
        Some(object) => answer(200, object_headers(cdn, object), object.body.clone()),
        None => answer(404, HeaderMap::new(), Bytes::new()),
    }
}

fn object_headers(cdn: &FakeCdn, object: &Object) -> HeaderMap {
    let digest = Sha256::digest(&object.body);
    let mut headers = HeaderMap::new();
    headers.insert(
        ETAG,
        header(&format!("\"{}-{:02x}{:02x}{:02x}{:02x}\"", object.version, digest[0], digest[1], digest[2], digest[3])),
    );
    headers.insert(LAST_MODIFIED, header(&httpdate::fmt_http_date(cdn.wall_time(object.modified))));
    headers
}

fn answer(status: u16, headers: HeaderMap, body: Bytes) -> SimAnswer {
    SimAnswer { status, headers, body, misbehaviour: None }
}

/// Values the simulator writes itself, or a test passes: printable.
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_distribution_prefix() {
        let routed =
            |raw| route(raw).map(|(target, distribution, path)| (matches!(target, Target::Origin), distribution, path));
        assert_eq!(routed("/EAAA/index.html?v=1"), Some((false, "EAAA", "/index.html?v=1".into())));
        assert_eq!(routed("/EAAA"), Some((false, "EAAA", "/".into())));
        assert_eq!(routed("/EAAA?x"), Some((false, "EAAA", "/?x".into())));
        assert_eq!(routed("/_origin/EAAA/a"), Some((true, "EAAA", "/a".into())));
        assert_eq!(routed("/eaaa/a"), None);
        assert_eq!(routed("/_sim/report"), None);
    }

    #[test]
    fn the_cache_key_takes_brotli_then_gzip() {
        assert_eq!(encoding(Some("br, gzip")), "br");
        assert_eq!(encoding(Some("gzip, deflate")), "gzip");
        assert_eq!(encoding(Some("brotli")), "identity");
        assert_eq!(encoding(None), "identity");
    }
}
