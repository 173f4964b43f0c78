//! The edge port over HTTP(S): hyper-util's client with rustls and the system's CA certificates, through a
//! connector of our own so that a request can be sent to a named POP's address while its Host header and TLS
//! server name stay the distribution's. hyper's client follows no redirect. Connecting, the answer and each piece of
//! its body have a time limit, the whole request another; a GET's body is read up to a cap; a semaphore bounds the
//! requests under way.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT_ENCODING, AGE, ETAG, HeaderMap, HeaderName, LAST_MODIFIED, LOCATION, USER_AGENT};
use hyper::http::uri::Scheme;
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::settings::FetchLimits;
use crate::ports::edge::{ConnectVia, Edge, EdgeError, EdgeMethod, EdgeRequest, EdgeResponse};

const USER_AGENT_VALUE: &str = concat!("cf-invalidator/", env!("CARGO_PKG_VERSION"), " (edge check)");
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_AMZ_CF_POP: HeaderName = HeaderName::from_static("x-amz-cf-pop");

type HttpClient = Client<HttpsConnector<Dial>, Empty<Bytes>>;

/// How host names become addresses.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The system's resolver.
    #[default]
    System,
    /// These names to these addresses (port included), any other name by the system's: a test's loopback edge, or
    /// an operator pinning a POP.
    Pinned(Arc<HashMap<String, SocketAddr>>),
}

impl Resolver {
    pub fn pinned(pins: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        Self::Pinned(Arc::new(pins.into_iter().map(|(host, addr)| (host.to_ascii_lowercase(), addr)).collect()))
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Self::Pinned(pins) = self
            && let Some(addr) = pins.get(&host.to_ascii_lowercase())
        {
            return Ok(vec![*addr]);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(tokio::net::lookup_host((bare, port)).await?.collect())
    }
}

/// A name the resolver could not turn into an address, told apart from a refused connection.
#[derive(Debug, Error)]
#[error("{host}: {reason}")]
struct Unresolved {
    host: String,
    reason: String,
}

/// Connects to the URL's host, or to `via` instead; the TLS layer above still names the URL's host.
#[derive(Debug, Clone)]
struct Dial {
    via: Option<String>,
    resolver: Resolver,
    limits: FetchLimits,
}

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

impl Dial {
    async fn connect(self, uri: Uri) -> io::Result<TokioIo<TcpStream>> {
        let host = self.via.as_deref().or(uri.host()).unwrap_or_default().to_owned();
        let default_port = if uri.scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 };
        let addrs = self
            .resolver
            .resolve(&host, uri.port_u16().unwrap_or(default_port))
            .await
            .map_err(|e| io::Error::other(Unresolved { host: host.clone(), reason: e.to_string() }))?;
        let mut last = io::Error::other(Unresolved { host, reason: "no address".into() });
        for addr in addrs {
            match timeout(self.limits.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true)?;
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}")),
            }
        }
        Err(last)
    }
}

/// The edge over HTTP(S).
#[derive(Debug)]
pub struct HttpEdge {
    tls: Arc<rustls::ClientConfig>,
    resolver: Resolver,
    limits: FetchLimits,
    /// One client (and connection pool) per POP connected through; `None` for the URL's own host.
    clients: Mutex<HashMap<Option<String>, HttpClient>>,
    in_flight: Semaphore,
}

impl HttpEdge {
    /// Loads the system's CA certificates: without them no HTTPS edge can be checked, so this fails at start.
    pub fn new(limits: FetchLimits, resolver: Resolver) -> Result<Self, EdgeError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EdgeError::Tls(e.to_string()))?
            .with_native_roots()
            .map_err(|e| EdgeError::Tls(e.to_string()))?
            .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(tls),
            resolver,
            limits,
            clients: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(limits.max_in_flight.max(1)),
        })
    }

    fn client(&self, via: Option<&ConnectVia>) -> HttpClient {
        let via = via.map(|via| via.host().to_owned());
        let mut clients = self.clients.lock().unwrap();
        let client = clients.entry(via.clone()).or_insert_with(|| {
            let dial = Dial { via, resolver: self.resolver.clone(), limits: self.limits };
            Client::builder(TokioExecutor::new()).build(HttpsConnector::from((dial, Arc::clone(&self.tls))))
        });
        client.clone()
    }

    async fn send(&self, request: &EdgeRequest) -> Result<EdgeResponse, EdgeError> {
        let url = request.url.to_string();
        let method = match request.method {
            EdgeMethod::Head => Method::HEAD,
            EdgeMethod::Get => Method::GET,
        };
        let mut outgoing =
            Request::builder().method(method).uri(request.url.uri().clone()).header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(encoding) = &request.accept_encoding {
            outgoing = outgoing.header(ACCEPT_ENCODING, encoding);
        }
        let outgoing =
            outgoing.body(Empty::new()).map_err(|e| EdgeError::Request { url: url.clone(), reason: e.to_string() })?;
        let sent = timeout(self.limits.read_timeout, self.client(request.via.as_ref()).request(outgoing));
        let response = match sent.await {
            Err(_) => return Err(timed_out(&url, "answer", self.limits.read_timeout)),
            Ok(Err(error)) => return Err(self.failed(&url, &error)),
            Ok(Ok(response)) => response,
        };
        let mut answer = response_of(response.status().as_u16(), response.headers());
        if request.method == EdgeMethod::Get {
            self.read_body(&url, response, &mut answer).await?;
        }
        Ok(answer)
    }

    /// Reads up to the cap, each piece within the read timeout; the rest is left unread (the connection closes).
    async fn read_body(
        &self,
        url: &str,
        response: Response<Incoming>,
        answer: &mut EdgeResponse,
    ) -> Result<(), EdgeError> {
        let mut body = response.into_body();
        loop {
            let frame = match timeout(self.limits.read_timeout, body.frame()).await {
                Err(_) => return Err(timed_out(url, "send its body", self.limits.read_timeout)),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(EdgeError::Request { url: url.to_owned(), reason: e.to_string() }),
                Ok(Some(Ok(frame))) => frame,
            };
            let length = frame.data_ref().map_or(0, |data| data.len() as u64);
            if answer.bytes_read + length > self.limits.max_body_bytes {
                answer.bytes_read = self.limits.max_body_bytes;
                answer.truncated = true;
                return Ok(());
            }
            answer.bytes_read += length;
        }
    }

    fn failed(&self, url: &str, error: &hyper_util::client::legacy::Error) -> EdgeError {
        let causes = || std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| (*e).source());
        let io_errors = || causes().filter_map(|e| e.downcast_ref::<io::Error>());
        if let Some(unresolved) = io_errors().find_map(|e| e.get_ref()?.downcast_ref::<Unresolved>()) {
            return EdgeError::Resolve { host: unresolved.host.clone(), reason: unresolved.reason.clone() };
        }
        let reason = causes().map(ToString::to_string).collect::<Vec<_>>().join(": ");
        if !error.is_connect() {
            return EdgeError::Request { url: url.to_owned(), reason };
        }
        if io_errors().any(|e| e.kind() == io::ErrorKind::TimedOut) {
            return timed_out(url, "accept a connection", self.limits.connect_timeout);
        }
        EdgeError::Connect { url: url.to_owned(), reason }
    }
}

impl Edge for HttpEdge {
    async fn fetch(&self, request: &EdgeRequest) -> Result<EdgeResponse, EdgeError> {
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        match timeout(self.limits.total_timeout, self.send(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(timed_out(&request.url.to_string(), "finish", self.limits.total_timeout)),
        }
    }
}

fn timed_out(url: &str, what: &'static str, after: Duration) -> EdgeError {
    EdgeError::Timeout { url: url.to_owned(), what, after }
}

/// What an answer's status and headers say, before its body is read.
pub fn response_of(status: u16, headers: &HeaderMap) -> EdgeResponse {
    EdgeResponse {
        status,
        x_cache: text(headers, &X_CACHE),
        age: text(headers, &AGE).and_then(|age| age.trim().parse().ok()),
        etag: text(headers, &ETAG),
        last_modified: text(headers, &LAST_MODIFIED),
        pop: text(headers, &X_AMZ_CF_POP),
        location: text(headers, &LOCATION),
        bytes_read: 0,
        truncated: false,
    }
}

fn text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}
