//! The engine on DynamoDB's wire protocol (awsJson1_0: `POST /`, `X-Amz-Target: DynamoDB_20120810.<Op>`, JSON in
//! and out, errors as `{"__type": …, "message": …}` with status 400): in process, as the SDK's HTTP client, and on
//! a loopback port.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use super::StrictDynamo;

const TARGET: &str = "x-amz-target";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Hands each request to the engine and answers at once: no socket, no task, no timer.
#[derive(Debug, Clone)]
struct InProcess(Arc<StrictDynamo>);

impl HttpConnector for InProcess {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get(TARGET).unwrap_or_default();
        let (status, body) = self.0.handle(target, request.body().bytes().unwrap_or_default());
        let status = StatusCode::try_from(status).expect("the engine answers 200 or 400");
        let mut response = HttpResponse::new(status, SdkBody::from(body.to_string()));
        response.headers_mut().insert("content-type", CONTENT_TYPE);
        response.headers_mut().insert("x-amzn-requestid", uuid::Uuid::now_v7().to_string());
        HttpConnectorFuture::ready(Ok(response))
    }
}

pub(super) fn in_process_client(engine: Arc<StrictDynamo>) -> aws_sdk_dynamodb::Client {
    let connector = SharedHttpConnector::new(InProcess(engine));
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "strict-dynamo"))
        .endpoint_url("http://strict-dynamo.invalid")
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SDK client for the engine served at `url`, configured as the in-process one.
pub fn sdk_client(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "strict-dynamo"))
        .endpoint_url(url)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Serves the engine until `stop` is cancelled.
pub async fn serve(listener: TcpListener, engine: Arc<StrictDynamo>, stop: CancellationToken) -> io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let engine = Arc::clone(&engine);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&engine)));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!(%peer, error = %e, "strict DynamoDB connection ended");
            }
        });
    }
}

async fn respond(request: Request<Incoming>, engine: Arc<StrictDynamo>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request.headers().get(TARGET).and_then(|t| t.to_str().ok()).unwrap_or_default().to_owned();
    let (status, body) = match request.into_body().collect().await {
        Ok(body) => engine.handle(&target, &body.to_bytes()),
        Err(e) => (400, super::Refusal::new("SerializationException", e.to_string()).body()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

/// The engine served on a loopback port for as long as this lives.
#[derive(Debug)]
pub struct DynamoServer {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl DynamoServer {
    pub async fn start(engine: Arc<StrictDynamo>) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let serving = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(listener, engine, serving).await {
                info!(error = %e, "the strict DynamoDB stopped accepting connections");
            }
        });
        Ok(Self { addr, _stop: stop.drop_guard() })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
