//! The simulator (`FakeCdn`) over CloudFront's REST-XML API, so tests and benchmarks exercise the real SDK client
//! and the worker's adapter (`aws::cloudfront`), error parsing included.
//!
//! CloudFront API (2020-05-31): `POST /2020-05-31/distribution/{Id}/invalidation` (CreateInvalidation, 201),
//! `GET …/invalidation/{Id}` (GetInvalidation), `GET …/invalidation?Marker=&MaxItems=` (ListInvalidations), and
//! the same under `/2020-05-31/distribution-tenant/{Id}/` for a tenant (`…ForDistributionTenant`).
//! Each CreateInvalidation is billed to the access key id that signed it (the account), with that account's rate
//! quotas; nothing else of the signature is checked. Admin, for tests and people: `GET /_sim/report` (JSON), `POST /_sim/distributions/{Id}`,
//! `POST /_sim/tenants/{DistributionId}/{TenantId}`, and
//! `POST /_sim/human/{Id}` with newline-separated paths (an invalidation made in the console).

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudfront::config::retry::RetryConfig;
use aws_sdk_cloudfront::config::{BehaviorVersion, Credentials, Region};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, HOST, HeaderValue, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use self::wire::{InvalidationListXml, InvalidationXml, WireError, json, parse_batch, text, xml};
use super::cdn::FakeCdn;
use crate::fake::cdn::{IN_PROCESS_ACCOUNT, LIST_PAGE_SIZE};
use crate::model::{CallerReference, DistributionId, Target, TenantId};
use crate::ports::cdn::CdnError;

mod wire;

const XMLNS: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";
const API: &str = "2020-05-31";

/// Serves the simulator until `stop` is cancelled.
pub async fn serve(listener: TcpListener, cdn: Arc<FakeCdn>, stop: CancellationToken) -> io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let cdn = Arc::clone(&cdn);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&cdn)));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(%peer, error = %e, "simulator connection ended");
            }
        });
    }
}

/// The simulator served on a loopback port for as long as this lives: for tests and benchmarks in one process.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl SimServer {
    pub async fn start(cdn: Arc<FakeCdn>) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let serving = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(listener, cdn, serving).await {
                info!(error = %e, "the simulator stopped accepting connections");
            }
        });
        Ok(Self { addr, _stop: stop.drop_guard() })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> aws_sdk_cloudfront::Client {
        sdk_client(&self.url())
    }
}

/// An SDK client for a simulator at `url`: static test credentials, us-east-1, and the SDK's retries off, so each
/// call shows the simulator's own answer.
pub fn sdk_client(url: &str) -> aws_sdk_cloudfront::Client {
    sdk_client_as(url, "testing")
}

/// `sdk_client` signing with `access_key`: the account the simulator bills its calls to.
pub fn sdk_client_as(url: &str, access_key: &str) -> aws_sdk_cloudfront::Client {
    let config = aws_sdk_cloudfront::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, "testing", None, None, "cloudfront-sim"))
        .endpoint_url(url)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_cloudfront::Client::from_conf(config)
}

/// Whose invalidations a CloudFront call is about: `distribution/{Id}` or `distribution-tenant/{Id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    Distribution(&'a str),
    Tenant(&'a str),
}

enum Route<'a> {
    Create(Scope<'a>),
    Get(Scope<'a>, &'a str),
    List(Scope<'a>),
    Report,
    AddDistribution(&'a str),
    AddTenant(&'a str, &'a str),
    Human(&'a str),
    Outage(&'a str),
    Unknown,
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let scope = |kind: &str, id| match kind {
        "distribution" => Some(Scope::Distribution(id)),
        "distribution-tenant" => Some(Scope::Tenant(id)),
        _ => None,
    };
    match (method, segments.as_slice()) {
        (&Method::POST, [API, kind, id, "invalidation"]) if let Some(scope) = scope(kind, id) => Route::Create(scope),
        (&Method::GET, [API, kind, id, "invalidation"]) if let Some(scope) = scope(kind, id) => Route::List(scope),
        (&Method::GET, [API, kind, of, "invalidation", id]) if let Some(scope) = scope(kind, of) => {
            Route::Get(scope, id)
        }
        (&Method::GET, ["_sim", "report"]) => Route::Report,
        (&Method::POST, ["_sim", "distributions", distribution]) => Route::AddDistribution(distribution),
        (&Method::POST, ["_sim", "tenants", distribution, tenant]) => Route::AddTenant(distribution, tenant),
        (&Method::POST, ["_sim", "human", distribution]) => Route::Human(distribution),
        (&Method::POST, ["_sim", "outage", seconds]) => Route::Outage(seconds),
        _ => Route::Unknown,
    }
}

async fn respond(request: Request<Incoming>, cdn: Arc<FakeCdn>) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut response = answer(request, &cdn, &request_id).await;
    if let Ok(request_id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", request_id);
    }
    Ok(response)
}

async fn answer(request: Request<Incoming>, cdn: &FakeCdn, request_id: &str) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return WireError::malformed(format!("the request body could not be read: {e}")).response(request_id),
    };
    let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("cloudfront.amazonaws.com");
    let account = access_key(parts.headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()));
    let answered = match route(&parts.method, parts.uri.path()) {
        Route::Create(scope) => create(cdn, account, scope, &body, host).await,
        Route::Get(scope, id) => get(cdn, scope, id).await,
        Route::List(scope) => list(cdn, scope, parts.uri.query()).await,
        Route::Report => Ok(json(&cdn.report())),
        Route::AddDistribution(distribution) => add_distribution(cdn, distribution),
        Route::AddTenant(distribution, tenant) => add_tenant(cdn, distribution, tenant),
        Route::Human(distribution) => human(cdn, distribution, &body, host),
        Route::Outage(seconds) => outage(cdn, seconds),
        Route::Unknown => Err(WireError::not_found(&parts.method, parts.uri.path())),
    };
    answered.unwrap_or_else(|error| {
        info!(path = parts.uri.path(), code = error.code, message = %error.message, "refused");
        error.response(request_id)
    })
}

/// The account a call is billed to: the access key id in its SigV4 `Credential=` (`AKID/date/region/service/…`);
/// an unsigned call is the in-process account's.
fn access_key(authorization: Option<&str>) -> &str {
    let credential = authorization.and_then(|value| value.split_once("Credential=")).map(|(_, rest)| rest);
    credential.and_then(|rest| rest.split('/').next()).filter(|key| !key.is_empty()).unwrap_or(IN_PROCESS_ACCOUNT)
}

async fn create(
    cdn: &FakeCdn,
    account: &str,
    scope: Scope<'_>,
    body: &[u8],
    host: &str,
) -> Result<Response<Full<Bytes>>, WireError> {
    let target = target(cdn, scope)?;
    let batch = parse_batch(body)?;
    let reference = CallerReference::from_recorded(batch.caller_reference);
    let invalidation = cdn.create_as(account, &target, &reference, &batch.paths).await.map_err(|e| wire(scope, e))?;
    created(cdn, &target, &invalidation.id, host)
}

/// Every CloudFront call answers 503 for the next `seconds`.
fn outage(cdn: &FakeCdn, seconds: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let seconds: u64 =
        seconds.parse().map_err(|_| WireError::malformed(format!("not a number of seconds: {seconds}")))?;
    cdn.down_for(Duration::from_secs(seconds));
    Ok(json(&serde_json::json!({ "down_for_seconds": seconds })))
}

fn human(cdn: &FakeCdn, distribution: &str, body: &[u8], host: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let distribution = Target::from(distribution_id(distribution)?);
    let text = std::str::from_utf8(body).map_err(|e| WireError::malformed(format!("paths are not UTF-8: {e}")))?;
    let paths: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect();
    let invalidation = cdn.create_as_someone_else(&distribution, &paths)?;
    created(cdn, &distribution, &invalidation.id, host)
}

/// CreateInvalidation's answer: 201, the new invalidation's URL in `Location`, the invalidation in the body.
fn created(cdn: &FakeCdn, target: &Target, id: &str, host: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let snapshot = cdn.find(target, id)?;
    let mut response = xml(StatusCode::CREATED, "Invalidation", &InvalidationXml::new(cdn, snapshot));
    let scope = match &target.tenant {
        None => format!("distribution/{}", target.distribution),
        Some(tenant) => format!("distribution-tenant/{tenant}"),
    };
    let location = format!("http://{host}/{API}/{scope}/invalidation/{id}");
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

async fn get(cdn: &FakeCdn, scope: Scope<'_>, id: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let snapshot = cdn.snapshot(&target(cdn, scope)?, id).await.map_err(|e| wire(scope, e))?;
    Ok(xml(StatusCode::OK, "Invalidation", &InvalidationXml::new(cdn, snapshot)))
}

async fn list(cdn: &FakeCdn, scope: Scope<'_>, query: Option<&str>) -> Result<Response<Full<Bytes>>, WireError> {
    let target = target(cdn, scope)?;
    let marker = query_param(query, "Marker").filter(|marker| !marker.is_empty());
    let max_items = match query_param(query, "MaxItems") {
        None => LIST_PAGE_SIZE,
        Some(raw) => raw.parse().map_err(|_| CdnError::InvalidArgument(format!("MaxItems is not a number: {raw}")))?,
    };
    let page = cdn.list(&target, marker.as_deref(), max_items).await.map_err(|e| wire(scope, e))?;
    Ok(xml(StatusCode::OK, "InvalidationList", &InvalidationListXml::new(cdn, page, marker, max_items)))
}

fn add_distribution(cdn: &FakeCdn, distribution: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let id = DistributionId::parse(distribution)
        .map_err(|_| CdnError::InvalidArgument(format!("not a distribution id: {distribution}")))?;
    let status = if cdn.add_distribution(id) { StatusCode::CREATED } else { StatusCode::OK };
    Ok(text(status, "text/plain", format!("{distribution}\n")))
}

fn add_tenant(cdn: &FakeCdn, distribution: &str, tenant: &str) -> Result<Response<Full<Bytes>>, WireError> {
    let id = TenantId::parse(tenant).map_err(|e| CdnError::InvalidArgument(e.to_string()))?;
    let status = if cdn.add_tenant(distribution_id(distribution)?, id)? { StatusCode::CREATED } else { StatusCode::OK };
    Ok(text(status, "text/plain", format!("{distribution}/{tenant}\n")))
}

/// The distribution, or the tenant with the distribution it belongs to.
fn target(cdn: &FakeCdn, scope: Scope<'_>) -> Result<Target, WireError> {
    match scope {
        Scope::Distribution(id) => Ok(distribution_id(id)?.into()),
        Scope::Tenant(id) => TenantId::parse(id).ok().and_then(|tenant| cdn.tenant(&tenant)).ok_or_else(|| {
            WireError::entity_not_found(format!("The specified distribution tenant does not exist: {id}"))
        }),
    }
}

/// The tenant calls name an unknown tenant `EntityNotFound`, as CloudFront's model has them.
fn wire(scope: Scope<'_>, error: CdnError) -> WireError {
    match (scope, error) {
        (Scope::Tenant(_), CdnError::NoSuchDistribution(message)) => WireError::entity_not_found(message),
        (_, error) => error.into(),
    }
}

/// An id CloudFront could not have issued names no distribution.
fn distribution_id(raw: &str) -> Result<DistributionId, CdnError> {
    DistributionId::parse(raw)
        .map_err(|_| CdnError::NoSuchDistribution(format!("The specified distribution does not exist: {raw}")))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode_str(value).decode_utf8_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_attributed_to_the_access_key_that_signed_it() {
        let signed = "AWS4-HMAC-SHA256 Credential=AKIAOTHER/20261207/us-east-1/cloudfront/aws4_request, \
                      SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(access_key(Some(signed)), "AKIAOTHER");
        assert_eq!(access_key(None), IN_PROCESS_ACCOUNT);
        assert_eq!(access_key(Some("Bearer x")), IN_PROCESS_ACCOUNT);
    }

    #[test]
    fn routes_cloudfront_and_admin_paths() {
        let base = "/2020-05-31/distribution/EAAA/invalidation";
        let (eaaa, tenant) = (Scope::Distribution("EAAA"), Scope::Tenant("dt_a"));
        assert!(matches!(route(&Method::POST, base), Route::Create(s) if s == eaaa));
        assert!(matches!(route(&Method::GET, base), Route::List(s) if s == eaaa));
        assert!(matches!(route(&Method::GET, &format!("{base}/I1")), Route::Get(s, "I1") if s == eaaa));
        let tenants = "/2020-05-31/distribution-tenant/dt_a/invalidation";
        assert!(matches!(route(&Method::POST, tenants), Route::Create(s) if s == tenant));
        assert!(matches!(route(&Method::GET, tenants), Route::List(s) if s == tenant));
        assert!(matches!(route(&Method::GET, &format!("{tenants}/I1")), Route::Get(s, "I1") if s == tenant));
        assert!(matches!(route(&Method::POST, "/2020-05-31/other/x/invalidation"), Route::Unknown));
        assert!(matches!(route(&Method::DELETE, base), Route::Unknown));
        assert!(matches!(route(&Method::POST, "/_sim/human/EAAA"), Route::Human("EAAA")));
    }
}
