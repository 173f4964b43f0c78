//! Message format v1: the JSON body producers put on the queue.
//!
//! `{"distribution_id": "E2QWRUHAPOMQZL", "paths": ["/index.html", "/img/*"], "idempotency_key": "optional",
//!   "requester": "optional free text"}`; unknown fields are ignored so producers can add their own.

use std::collections::HashSet;

use serde::Deserialize;
use thiserror::Error;

use super::path::{InvalidationPath, PathError};
use crate::model::{DistributionId, InvalidDistributionId};

/// Most paths one message may carry: CloudFront's in-progress quota for one distribution.
pub const MAX_PATHS_PER_MESSAGE: usize = 3_000;

/// A validated request: every path is already encoded for CloudFront.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationRequest {
    pub distribution_id: DistributionId,
    pub paths: Vec<InvalidationPath>,
    pub idempotency_key: Option<String>,
    pub requester: Option<String>,
}

/// Why a message was refused; the text travels to the dead-letter queue as the `reason` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("body is not a valid v1 invalidation request: {0}")]
    Malformed(String),
    #[error(transparent)]
    DistributionId(#[from] InvalidDistributionId),
    #[error("paths is empty: a request needs at least one path")]
    NoPaths,
    #[error("{0} paths in one message; at most {MAX_PATHS_PER_MESSAGE} are allowed, split the request")]
    TooManyPaths(usize),
    #[error("path #{index} {path:?} is invalid: {error}")]
    InvalidPath { index: usize, path: String, error: PathError },
}

impl Rejection {
    /// A short, stable name for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::DistributionId(_) => "invalid_distribution_id",
            Self::NoPaths => "no_paths",
            Self::TooManyPaths(_) => "too_many_paths",
            Self::InvalidPath { .. } => "invalid_path",
        }
    }
}

#[derive(Deserialize)]
struct WireRequest {
    distribution_id: String,
    paths: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    requester: Option<String>,
}

/// Parses and validates one SQS message body.
pub fn parse_request(body: &str) -> Result<InvalidationRequest, Rejection> {
    let wire: WireRequest = serde_json::from_str(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let distribution_id = DistributionId::parse(&wire.distribution_id)?;
    match wire.paths.len() {
        0 => return Err(Rejection::NoPaths),
        n if n > MAX_PATHS_PER_MESSAGE => return Err(Rejection::TooManyPaths(n)),
        _ => {}
    }
    let mut paths: Vec<InvalidationPath> = wire
        .paths
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            InvalidationPath::parse(&raw).map_err(|error| Rejection::InvalidPath { index, path: truncated(raw), error })
        })
        .collect::<Result<_, _>>()?;
    // A path repeated within one message would otherwise be able to straddle two batches.
    let mut seen = HashSet::with_capacity(paths.len());
    paths.retain(|path| seen.insert(path.clone()));
    Ok(InvalidationRequest { distribution_id, paths, idempotency_key: wire.idempotency_key, requester: wire.requester })
}

/// What a body says about itself even when it is not a valid request: recorded with a dead-lettered message so the
/// audit can tell which distribution it was for and who sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyHints {
    pub distribution_id: Option<DistributionId>,
    pub requester: Option<String>,
}

impl BodyHints {
    pub fn of(body: &str) -> Self {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
            return Self::default();
        };
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        Self {
            distribution_id: field("distribution_id").and_then(|d| DistributionId::parse(d).ok()),
            requester: field("requester").map(str::to_owned),
        }
    }
}

/// Keeps reasons short enough for an SQS message attribute even when the offending path is 4,000+ characters.
fn truncated(mut path: String) -> String {
    const SHOWN: usize = 200;
    if path.len() > SHOWN {
        let cut = (0..=SHOWN).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
        path.truncate(cut);
        path.push('…');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_request_and_ignores_unknown_fields() {
        let request = parse_request(
            r#"{"distribution_id":"E2QWRUHAPOMQZL","paths":["/index.html","/img/*","/a b"],
                "idempotency_key":"deploy-42","requester":"ci","extra":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(request.distribution_id.as_str(), "E2QWRUHAPOMQZL");
        let paths: Vec<_> = request.paths.iter().map(InvalidationPath::as_str).collect();
        assert_eq!(paths, ["/index.html", "/img/*", "/a%20b"]);
        assert_eq!(request.idempotency_key.as_deref(), Some("deploy-42"));
        assert_eq!(request.requester.as_deref(), Some("ci"));
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            ("not json", "body is not a valid v1 invalidation request"),
            (r#"{"paths":["/a"]}"#, "missing field `distribution_id`"),
            (r#"{"distribution_id":"E1","paths":"/a"}"#, "invalid type"),
            (r#"{"distribution_id":"e1","paths":["/a"]}"#, "distribution id \"e1\" is not valid"),
            (r#"{"distribution_id":"E1","paths":[]}"#, "paths is empty"),
            (r#"{"distribution_id":"E1","paths":["/a","b"]}"#, "path #1 \"b\" is invalid: path must start with '/'"),
            (r#"{"distribution_id":"E1","paths":["/a*b"]}"#, "'*' may only be the last character"),
        ];
        for (body, expected) in cases {
            let reason = parse_request(body).unwrap_err().to_string();
            assert!(reason.contains(expected), "{body}: {reason}");
        }
    }

    #[test]
    fn hints_come_from_whatever_part_of_a_body_is_readable() {
        let hints = BodyHints::of(r#"{"distribution_id":"E1","paths":["no-slash"],"requester":"ci"}"#);
        assert_eq!(hints.distribution_id.as_ref().map(DistributionId::as_str), Some("E1"));
        assert_eq!(hints.requester.as_deref(), Some("ci"));
        let invalid_id = BodyHints::of(r#"{"distribution_id":"lower","requester":7}"#);
        assert_eq!(invalid_id, BodyHints::default(), "an invalid id or a non-string requester is no hint");
        assert_eq!(BodyHints::of("not json"), BodyHints::default());
        assert_eq!(BodyHints::of("[1,2]"), BodyHints::default());
    }

    #[test]
    fn repeated_paths_in_one_message_count_once() {
        let request = parse_request(r#"{"distribution_id":"E1","paths":["/b","/a","/b","/a%20","/a "]}"#).unwrap();
        let paths: Vec<_> = request.paths.iter().map(InvalidationPath::as_str).collect();
        assert_eq!(paths, ["/b", "/a", "/a%20"]);
    }

    #[test]
    fn refuses_more_paths_than_the_quota() {
        let paths: Vec<String> = (0..=MAX_PATHS_PER_MESSAGE).map(|i| format!("/p{i}")).collect();
        let body = serde_json::json!({"distribution_id": "E1", "paths": paths}).to_string();
        assert_eq!(parse_request(&body), Err(Rejection::TooManyPaths(3_001)));
    }

    #[test]
    fn shortens_huge_paths_in_the_reason() {
        let body = serde_json::json!({"distribution_id": "E1", "paths": [format!("x{}", "é".repeat(3_000))]});
        let reason = parse_request(&body.to_string()).unwrap_err().to_string();
        assert!(reason.len() < 400, "{}", reason.len());
    }
}
