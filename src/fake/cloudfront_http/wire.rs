//! CloudFront's REST-XML on the wire: the request body the SDK sends, the answers and errors it parses.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::XMLNS;
use crate::fake::cdn::{FakeCdn, Page, Snapshot};
use crate::ports::cdn::CdnError;

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) caller_reference: String,
    pub(super) paths: Vec<String>,
}

pub(super) fn parse_batch(body: &[u8]) -> Result<Batch, WireError> {
    if body.is_empty() {
        return Err(WireError::sender(
            "MissingBody",
            "This operation requires a body. Ensure that the body is present and the Content-Type header is set.",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| WireError::malformed(format!("the body is not UTF-8: {e}")))?;
    let batch: InvalidationBatchXml =
        quick_xml::de::from_str(text).map_err(|e| WireError::malformed(format!("not an InvalidationBatch: {e}")))?;
    let paths = batch.paths.items.map(|items| items.path).unwrap_or_default();
    if paths.len() != batch.paths.quantity {
        return Err(WireError::sender(
            "InconsistentQuantities",
            "The value of Quantity and the size of Items don't match.",
        ));
    }
    Ok(Batch { caller_reference: batch.caller_reference, paths })
}

/// `InvalidationBatch`, both as CreateInvalidation's body and inside the `Invalidation` it answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InvalidationBatchXml {
    paths: PathsXml,
    caller_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PathsXml {
    quantity: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    items: Option<PathItemsXml>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PathItemsXml {
    #[serde(rename = "Path", default)]
    path: Vec<String>,
}

impl PathsXml {
    fn new(paths: Vec<String>) -> Self {
        Self { quantity: paths.len(), items: (!paths.is_empty()).then_some(PathItemsXml { path: paths }) }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InvalidationXml {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    id: String,
    status: &'static str,
    create_time: String,
    invalidation_batch: InvalidationBatchXml,
}

impl InvalidationXml {
    pub(super) fn new(cdn: &FakeCdn, Snapshot { created, status }: Snapshot) -> Self {
        Self {
            xmlns: XMLNS,
            create_time: create_time(cdn, created.at),
            id: created.id,
            status,
            invalidation_batch: InvalidationBatchXml {
                paths: PathsXml::new(created.paths),
                caller_reference: created.caller_reference.to_string(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InvalidationListXml {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    marker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    max_items: usize,
    is_truncated: bool,
    quantity: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<SummariesXml>,
}

#[derive(Debug, Serialize)]
struct SummariesXml {
    #[serde(rename = "InvalidationSummary")]
    summaries: Vec<SummaryXml>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SummaryXml {
    id: String,
    create_time: String,
    status: &'static str,
}

impl InvalidationListXml {
    pub(super) fn new(cdn: &FakeCdn, page: Page, marker: Option<String>, max_items: usize) -> Self {
        let summaries: Vec<SummaryXml> = page
            .items
            .into_iter()
            .map(|summary| SummaryXml {
                id: summary.id,
                create_time: create_time(cdn, summary.at),
                status: summary.status,
            })
            .collect();
        Self {
            xmlns: XMLNS,
            marker: marker.unwrap_or_default(),
            is_truncated: page.next_marker.is_some(),
            next_marker: page.next_marker,
            max_items,
            quantity: summaries.len(),
            items: (!summaries.is_empty()).then_some(SummariesXml { summaries }),
        }
    }
}

/// The SDK reads CreateTime as an RFC 3339 date-time.
fn create_time(cdn: &FakeCdn, at: tokio::time::Instant) -> String {
    humantime::format_rfc3339_millis(cdn.wall_time(at)).to_string()
}

/// An error as CloudFront sends it: the status, and `ErrorResponse` with the code the SDK matches on.
#[derive(Debug)]
pub(super) struct WireError {
    status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl WireError {
    pub(super) fn sender(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }

    pub(super) fn malformed(message: String) -> Self {
        Self::sender("MalformedInput", message)
    }

    pub(super) fn entity_not_found(message: String) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "EntityNotFound", message }
    }

    pub(super) fn not_found(method: &Method, path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NotFound",
            message: format!("the simulator does not serve {method} {path}; see docs/simulator.md"),
        }
    }

    pub(super) fn response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let error = ErrorResponseXml {
            xmlns: XMLNS,
            error: ErrorXml {
                kind: if self.status.is_server_error() { "Receiver" } else { "Sender" },
                code: self.code,
                message: &self.message,
            },
            request_id,
        };
        xml(self.status, "ErrorResponse", &error)
    }
}

impl From<CdnError> for WireError {
    fn from(error: CdnError) -> Self {
        let status = match &error {
            CdnError::NoSuchDistribution(_) | CdnError::NoSuchInvalidation(_) => StatusCode::NOT_FOUND,
            CdnError::AccessDenied(_) => StatusCode::FORBIDDEN,
            CdnError::BatchTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // Not in CloudFront's model (aws-facts.md A4); 409 is what its other *AlreadyExists errors use.
            CdnError::BatchAlreadyExists(_) => StatusCode::CONFLICT,
            CdnError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CdnError::Credentials(_) | CdnError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CdnError::Throttled(_) | CdnError::TooManyInProgress(_) | CdnError::InvalidArgument(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        let code = if status == StatusCode::INTERNAL_SERVER_ERROR { "InternalError" } else { error.code() };
        Self { status, code, message: message(error) }
    }
}

/// The text CloudFront would send, without the port's explanation around it.
fn message(error: CdnError) -> String {
    match error {
        CdnError::Throttled(m)
        | CdnError::TooManyInProgress(m)
        | CdnError::NoSuchDistribution(m)
        | CdnError::AccessDenied(m)
        | CdnError::InvalidArgument(m)
        | CdnError::BatchTooLarge(m)
        | CdnError::BatchAlreadyExists(m)
        | CdnError::NoSuchInvalidation(m)
        | CdnError::Credentials(m)
        | CdnError::Unavailable(m)
        | CdnError::Other(m) => m,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponseXml<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    error: ErrorXml<'a>,
    request_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml<'a> {
    #[serde(rename = "Type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
}

pub(super) fn xml(status: StatusCode, root: &str, value: &impl Serialize) -> Response<Full<Bytes>> {
    match quick_xml::se::to_string_with_root(root, value) {
        Ok(body) => text(status, "text/xml", format!(r#"<?xml version="1.0" encoding="UTF-8"?>{body}"#)),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("could not write {root}: {e}\n")),
    }
}

pub(super) fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(StatusCode::OK, "application/json", body + "\n"),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("could not write JSON: {e}\n")),
    }
}

pub(super) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_batch_the_sdk_writes() {
        let body = r#"<InvalidationBatch xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Paths><Quantity>2</Quantity><Items><Path>/a&amp;b</Path><Path>/img/*</Path></Items></Paths><CallerReference>cfi-1</CallerReference></InvalidationBatch>"#;
        let batch = parse_batch(body.as_bytes()).unwrap();
        assert_eq!((batch.caller_reference.as_str(), batch.paths), ("cfi-1", vec!["/a&b".into(), "/img/*".into()]));
    }

    #[test]
    fn refuses_a_batch_whose_quantity_does_not_match() {
        let body = "<InvalidationBatch><Paths><Quantity>2</Quantity><Items><Path>/a</Path></Items></Paths>\
                    <CallerReference>r</CallerReference></InvalidationBatch>";
        assert_eq!(parse_batch(body.as_bytes()).unwrap_err().code, "InconsistentQuantities");
        assert_eq!(parse_batch(b"").unwrap_err().code, "MissingBody");
        assert_eq!(parse_batch(b"<InvalidationBatch>").unwrap_err().code, "MalformedInput");
    }
}
