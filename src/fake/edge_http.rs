//! The simulator's edge ([`FakeEdge`]) over HTTP, for the worker's HTTP client and for people.
//!
//! Paths route by distribution: `/<DistributionId>/<path>` is the edge, `/_origin/<DistributionId>/<path>` the
//! origin, so `--edge-url ID=http://HOST:PORT/ID` and `--origin-url ID=http://HOST:PORT/_origin/ID` point a worker
//! at them. One listener answers as the POPs in turn, or as the POP a request names in `X-Sim-Pop`; each POP also
//! has a listener of its own that answers as that POP alone, so a named POP's host name (`--warm-pops`) pinned to
//! it reaches that POP, as CloudFront's POP host names do. Admin: `PUT /_edge/objects/<DistributionId>/<path>` (the
//! body becomes the object's next version), `POST /_edge/stale-pop/<POP>`,
//! `POST /_edge/stale-path/<DistributionId>/<path>`, `POST /_edge/lag/<POP>/<seconds>`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HOST;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use super::edge::{FakeEdge, Misbehaviour, ORIGIN_PREFIX, SimAnswer, SimRequest, route};
use crate::model::DistributionId;
use crate::ports::edge::EdgeMethod;

/// Names the POP that answers a request to the shared listener.
pub const POP_HEADER: &str = "x-sim-pop";
/// A huge body goes out in pieces of this size.
const PIECE: usize = 64 << 10;

type Body = BoxBody<Bytes, Infallible>;

/// Serves the edge on `listener` until `stop` is cancelled: as `pop` alone, or as the POPs in turn when `None`.
pub async fn serve(
    listener: TcpListener,
    edge: Arc<FakeEdge>,
    pop: Option<String>,
    stop: CancellationToken,
) -> io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let (edge, pop) = (Arc::clone(&edge), pop.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&edge), pop.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(%peer, error = %e, "edge connection ended");
            }
        });
    }
}

/// The edge served on a host's free or given port, with a listener per POP, for as long as this lives.
#[derive(Debug)]
pub struct EdgeServer {
    addr: SocketAddr,
    pops: BTreeMap<String, SocketAddr>,
    _stop: DropGuard,
}

impl EdgeServer {
    /// On loopback, every listener on a free port.
    pub async fn start(edge: Arc<FakeEdge>) -> io::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, edge).await
    }

    /// The shared listener on `host:port`, the POPs' on free ports of `host`.
    pub async fn start_on(host: IpAddr, port: u16, edge: Arc<FakeEdge>) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let addr = listen(TcpListener::bind((host, port)).await?, &edge, None, &stop)?;
        let mut pops = BTreeMap::new();
        for pop in edge.pops() {
            let pop_addr = listen(TcpListener::bind((host, 0)).await?, &edge, Some(pop.clone()), &stop)?;
            pops.insert(pop, pop_addr);
        }
        Ok(Self { addr, pops, _stop: stop.drop_guard() })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `--edge-url`'s URL for `distribution`.
    pub fn edge_url(&self, distribution: &DistributionId) -> String {
        format!("{}/{distribution}", self.url())
    }

    /// `--origin-url`'s URL for `distribution`.
    pub fn origin_url(&self, distribution: &DistributionId) -> String {
        format!("{}{ORIGIN_PREFIX}/{distribution}", self.url())
    }

    /// Each POP's own listener.
    pub fn pops(&self) -> &BTreeMap<String, SocketAddr> {
        &self.pops
    }
}

fn listen(
    listener: TcpListener,
    edge: &Arc<FakeEdge>,
    pop: Option<String>,
    stop: &CancellationToken,
) -> io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let (edge, serving) = (Arc::clone(edge), stop.clone());
    tokio::spawn(async move {
        if let Err(e) = serve(listener, edge, pop, serving).await {
            info!(error = %e, "the simulator's edge stopped accepting connections");
        }
    });
    Ok(addr)
}

async fn respond(
    request: Request<Incoming>,
    edge: Arc<FakeEdge>,
    pop: Option<String>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    if let Some(action) = path_and_query.strip_prefix("/_edge/") {
        let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
        return Ok(admin(&edge, &parts.method, action, body));
    }
    let method = match parts.method {
        Method::HEAD => EdgeMethod::Head,
        Method::GET => EdgeMethod::Get,
        _ => return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only\n")),
    };
    let text = |name| parts.headers.get(name).and_then(|value: &hyper::header::HeaderValue| value.to_str().ok());
    let request = SimRequest {
        method,
        path_and_query: &path_and_query,
        host: text(HOST.as_str()).unwrap_or_default(),
        pop: pop.as_deref().or(text(POP_HEADER)),
        accept_encoding: text("accept-encoding"),
    };
    match edge.respond(&request) {
        Some(answer) => Ok(send(answer).await),
        None => Ok(plain(StatusCode::BAD_GATEWAY, "the simulator's edge has no such POP\n")),
    }
}

async fn send(answer: SimAnswer) -> Response<Body> {
    let body: Body = match answer.misbehaviour {
        Some(Misbehaviour::Silent) => std::future::pending().await,
        Some(Misbehaviour::Trickle(every)) => stream_body(stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Bytes::from_static(b"."), ()))
        })),
        Some(Misbehaviour::Huge(length)) => {
            let pieces = (0..length)
                .step_by(PIECE)
                .map(move |start| Bytes::from(vec![b'.'; (length - start).min(PIECE as u64) as usize]));
            stream_body(stream::iter(pieces))
        }
        _ => Full::new(answer.body).boxed(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = answer.headers;
    response
}

fn stream_body(pieces: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(pieces.map(|piece| Ok(Frame::data(piece)))))
}

fn admin(edge: &FakeEdge, method: &Method, action: &str, body: Bytes) -> Response<Body> {
    let (verb, rest) = action.split_once('/').unwrap_or((action, ""));
    let target = || {
        route(&format!("/{rest}"))
            .and_then(|(_, distribution, path)| Some((DistributionId::parse(distribution).ok()?, path)))
    };
    match (method, verb) {
        (&Method::PUT, "objects") => match target() {
            Some((distribution, path)) => {
                let version = edge.put_object(&distribution, &path, body);
                plain(StatusCode::CREATED, &format!("{distribution}{path} version {version}\n"))
            }
            None => plain(StatusCode::BAD_REQUEST, "PUT /_edge/objects/<DistributionId>/<path>\n"),
        },
        (&Method::POST, "stale-path") => match target() {
            Some((distribution, path)) => {
                edge.keep_stale_path(&distribution, &path);
                plain(StatusCode::OK, &format!("{distribution}{path} stays stale\n"))
            }
            None => plain(StatusCode::BAD_REQUEST, "POST /_edge/stale-path/<DistributionId>/<path>\n"),
        },
        (&Method::POST, "stale-pop") if !rest.is_empty() => {
            edge.keep_stale_pop(rest);
            plain(StatusCode::OK, &format!("{rest} stays stale\n"))
        }
        (&Method::POST, "lag") => match rest.split_once('/').map(|(pop, seconds)| (pop, seconds.parse::<u64>())) {
            Some((pop, Ok(seconds))) => {
                edge.set_lag(pop, Duration::from_secs(seconds));
                plain(StatusCode::OK, &format!("{pop} lags {seconds} s\n"))
            }
            _ => plain(StatusCode::BAD_REQUEST, "POST /_edge/lag/<POP>/<seconds>\n"),
        },
        _ => plain(StatusCode::NOT_FOUND, "unknown admin request; see docs/simulator.md\n"),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())).boxed());
    *response.status_mut() = status;
    response
}
