//! One request to CloudFront's edge (a distribution's domain, an alternate domain or a test endpoint), answering
//! what verifying and warming a batch read: the status and a few headers.
//!
//! Requests carry an [`EdgeUrl`], which only `crate::edge::url` builds from a configured host and a checked path,
//! so nothing a producer wrote can choose the host, port or scheme a worker connects to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use thiserror::Error;

use super::cdn::CdnError;
use crate::model::DistributionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeMethod {
    /// Headers only: enough to tell a cached copy from a fresh one.
    Head,
    /// The body is read up to the adapter's cap and discarded.
    Get,
}

impl EdgeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "HEAD",
            Self::Get => "GET",
        }
    }
}

/// An absolute `http`/`https` URL whose scheme and authority are a configured edge's, and whose path and query are
/// exactly the checked path asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeUrl(Uri);

impl EdgeUrl {
    /// `crate::edge::url` alone calls this, after checking the URL says what was asked and nothing more.
    pub(crate) fn checked(uri: Uri) -> Self {
        Self(uri)
    }

    pub fn uri(&self) -> &Uri {
        &self.0
    }

    pub fn host(&self) -> &str {
        self.0.host().unwrap_or_default()
    }

    /// The path and query, as sent in the request line.
    pub fn path_and_query(&self) -> &str {
        self.0.path_and_query().map_or("/", |path| path.as_str())
    }
}

impl fmt::Display for EdgeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A named POP to send a request through: its host name (`d111111abcdef8.IAD89-C1.cloudfront.net`) is resolved
/// and connected to, while the request's Host header and TLS server name stay the URL's, as CloudFront serves the
/// distribution only under its own names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectVia {
    host: String,
    pop: String,
}

impl ConnectVia {
    /// `crate::edge::url` alone calls this, with a checked host name and POP code.
    pub(crate) fn checked(host: String, pop: String) -> Self {
        Self { host, pop }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The POP's code, as `X-Amz-Cf-Pop` shows it (`IAD89-C1`).
    pub fn pop(&self) -> &str {
        &self.pop
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeRequest {
    pub method: EdgeMethod,
    pub url: EdgeUrl,
    pub via: Option<ConnectVia>,
    /// Sent as `Accept-Encoding`; CloudFront caches each encoding it normalises to (`br`, `gzip`, none) apart.
    pub accept_encoding: Option<String>,
}

/// What an answer says about where its copy came from. Header values that are not text are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeResponse {
    pub status: u16,
    /// `Hit from cloudfront`, `RefreshHit from cloudfront`, `Miss from cloudfront`, …
    pub x_cache: Option<String>,
    /// Seconds the copy has been in the cache; absent or unreadable as `None`.
    pub age: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `X-Amz-Cf-Pop`: the POP that answered.
    pub pop: Option<String>,
    /// Where a redirect pointed; it is never followed.
    pub location: Option<String>,
    pub bytes_read: u64,
    /// The body went on past the cap: reading stopped there.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EdgeError {
    #[error("could not resolve {host}: {reason}; check the distribution's domain, --edge-url or --warm-pops")]
    Resolve { host: String, reason: String },
    #[error("could not connect to {url}: {reason}; check that the worker can reach the edge (egress rules, proxy)")]
    Connect { url: String, reason: String },
    #[error("{url} did not {what} within {after:?}; the edge or the network is slow, or the answer trickles")]
    Timeout { url: String, what: &'static str, after: Duration },
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("no TLS client: {0}; the worker needs the system's CA certificates (the ca-certificates package)")]
    Tls(String),
}

impl EdgeError {
    /// A short, stable name for logs, metrics and the ledger.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Resolve { .. } => "resolve",
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Request { .. } => "request",
            Self::Tls(_) => "tls",
        }
    }
}

/// Contract:
/// - `fetch` sends one request to the URL's host (or to `via`'s address, with the URL's Host header and TLS name)
///   and answers its status and headers, redirects included: a redirect is never followed.
/// - A GET's body is read up to a cap and discarded (`bytes_read`, `truncated`); a HEAD reads none.
/// - Connecting, the answer and its body are each bounded in time; running out is `EdgeError::Timeout`.
pub trait Edge: Send + Sync + 'static {
    fn fetch(&self, request: &EdgeRequest) -> impl Future<Output = Result<EdgeResponse, EdgeError>> + Send;
}

pub type Fetched<'a> = Pin<Box<dyn Future<Output = Result<EdgeResponse, EdgeError>> + Send + 'a>>;

/// `Edge` as an object, so the worker's settings can carry whichever client was configured.
trait DynEdge: Send + Sync + 'static {
    fn fetch_boxed<'a>(&'a self, request: &'a EdgeRequest) -> Fetched<'a>;
}

impl<E: Edge> DynEdge for E {
    fn fetch_boxed<'a>(&'a self, request: &'a EdgeRequest) -> Fetched<'a> {
        Box::pin(self.fetch(request))
    }
}

/// The configured edge client (HTTP in production, the simulator's edge in tests), shared by the edge stage.
#[derive(Clone)]
pub struct SharedEdge(Arc<dyn DynEdge>);

impl SharedEdge {
    pub fn new(edge: Arc<impl Edge>) -> Self {
        Self(edge)
    }
}

impl fmt::Debug for SharedEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedEdge")
    }
}

impl Edge for SharedEdge {
    async fn fetch(&self, request: &EdgeRequest) -> Result<EdgeResponse, EdgeError> {
        self.0.fetch_boxed(request).await
    }
}

pub type DomainAnswer = Pin<Box<dyn Future<Output = Result<String, CdnError>> + Send>>;

/// Where a distribution's own domain name is read (GetDistribution's `DomainName`, `d111111abcdef8.cloudfront.net`)
/// for distributions without `--edge-url`. A function rather than a port of its own: it is one read, and the edge
/// stage alone asks it, once per distribution.
#[derive(Clone)]
pub struct DomainLookup(Arc<dyn Fn(DistributionId) -> DomainAnswer + Send + Sync>);

impl DomainLookup {
    pub fn new(lookup: impl Fn(DistributionId) -> DomainAnswer + Send + Sync + 'static) -> Self {
        Self(Arc::new(lookup))
    }

    pub async fn domain(&self, distribution: &DistributionId) -> Result<String, CdnError> {
        (self.0)(distribution.clone()).await
    }
}

impl fmt::Debug for DomainLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DomainLookup")
    }
}
