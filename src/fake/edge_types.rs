//! What the simulator's edge is configured with, receives and answers.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::HeaderMap;
use tokio::time::Instant;

use crate::ports::edge::EdgeMethod;

/// How the edge is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// POP codes. A request that names none is answered by each in turn.
    pub pops: Vec<String>,
    /// How long after an invalidation completes a POP drops its copies; absent, at once.
    pub lag: BTreeMap<String, Duration>,
    /// How long a copy is served without asking the origin (the cache policy's TTL).
    pub ttl: Duration,
}

impl Default for EdgeConfig {
    /// Two POPs, no lag, a day's TTL.
    fn default() -> Self {
        Self {
            pops: vec!["IAD89-C1".into(), "FRA56-P2".into()],
            lag: BTreeMap::new(),
            ttl: Duration::from_secs(86_400),
        }
    }
}

/// How a path misbehaves, to test the client's bounds; over HTTP only (the in-process edge answers normally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `301` to this location.
    Redirect(String),
    /// A body of this many bytes.
    Huge(u64),
    /// One byte of body every so often, without end.
    Trickle(Duration),
    /// Never answers.
    Silent,
}

/// One request the edge or its origin received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCall {
    /// On tokio's clock.
    pub at: Instant,
    /// The POP that answered; `None` for the origin.
    pub pop: Option<String>,
    pub distribution: String,
    /// The path and query, without the routing prefix.
    pub path: String,
    pub method: EdgeMethod,
    pub accept_encoding: Option<String>,
    /// The Host header (over HTTP) or the URL's host (in-process).
    pub host: String,
    pub status: u16,
    /// `X-Cache`, for the edge's answers.
    pub x_cache: Option<String>,
}

/// A request as the edge routes it.
#[derive(Debug, Clone)]
pub struct SimRequest<'a> {
    pub method: EdgeMethod,
    pub path_and_query: &'a str,
    pub host: &'a str,
    /// The POP it was sent to, if it named one.
    pub pop: Option<&'a str>,
    pub accept_encoding: Option<&'a str>,
}

/// The edge's answer: what `edge_http` sends, and the in-process port reads.
#[derive(Debug, Clone)]
pub struct SimAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    /// Empty for a HEAD.
    pub body: Bytes,
    pub misbehaviour: Option<Misbehaviour>,
}
