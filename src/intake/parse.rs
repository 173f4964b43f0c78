//! What producers put on the queue, parsed and validated.
//!
//! Native format v1 (schema/invalidation-request.v1.json): `{"distribution_id": "E2QWRUHAPOMQZL", "paths":
//! ["/index.html", "/img/*"], "tags": ["product-42"], "idempotency_key": "optional", "requester": "optional"}`;
//! unknown fields are ignored so producers can add their own. S3 event notifications (direct, through SNS, or
//! through EventBridge) are routed to distributions by the routing rules.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::envelope::{self, Envelope, S3Object, Via};
use super::routes::{RouteError, Routing};
use crate::model::path::{InvalidationPath, PathError, TagError};
use crate::model::request::InvalidationRequest;
use crate::model::text::excerpt;
use crate::model::{DistributionId, InvalidDistributionId, InvalidTenantId, TenantId};

/// Most paths one message may carry: CloudFront's in-progress quota for one distribution.
pub const MAX_PATHS_PER_MESSAGE: usize = 3_000;

/// Longest idempotency key: it becomes part of a DynamoDB key, which allows 2 KB, and a log field.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Longest requester, in characters once trimmed (at most 1 KiB of UTF-8): it becomes part of the month's
/// per-requester counter key (DynamoDB keys take 2 KiB) and is stored in each batch record of its messages.
pub const MAX_REQUESTER_LEN: usize = 256;

/// Why a message was refused; the text travels to the dead-letter queue as the `reason` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("body is not a valid v1 invalidation request: {0}")]
    Malformed(String),
    #[error("body is not a readable producer message: {0}")]
    Envelope(String),
    #[error(transparent)]
    DistributionId(#[from] InvalidDistributionId),
    #[error("distribution {0} is not in this worker's --allow-distribution list")]
    DistributionNotAllowed(DistributionId),
    #[error(transparent)]
    TenantId(#[from] InvalidTenantId),
    #[error("tenant {0} is not in this worker's --allow-tenant list")]
    TenantNotAllowed(TenantId),
    #[error("SNS topic {0} is not in this worker's --allow-topic list")]
    TopicNotAllowed(String),
    #[error("SNS notification without a TopicArn, and --allow-topic is set: cannot tell who sent it")]
    TopicMissing,
    #[error("paths and tags are empty: a request needs at least one path or tag")]
    NoPaths,
    #[error("{0} paths and tags in one message; at most {MAX_PATHS_PER_MESSAGE} are allowed, split the request")]
    TooManyPaths(usize),
    #[error("path #{index} {path:?} is invalid: {error}")]
    InvalidPath { index: usize, path: String, error: PathError },
    #[error("tag #{index} {tag:?} is invalid: {error}")]
    InvalidTag { index: usize, tag: String, error: TagError },
    #[error("idempotency_key {0:?} is invalid: it must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters")]
    InvalidIdempotencyKey(String),
    #[error(
        "requester {0:?} is invalid: it must be at most {MAX_REQUESTER_LEN} characters (surrounding spaces trimmed) without control characters"
    )]
    InvalidRequester(String),
    #[error("priority {0:?} is invalid: it must be \"urgent\" or \"normal\" (in any case)")]
    InvalidPriority(String),
    #[error(transparent)]
    Unrouted(#[from] RouteError),
    #[error(
        "idempotency_key {key:?} was first used on this distribution by message {first_message_id} for other paths or tags, within the key period; a key names one request, so send new content with a new key"
    )]
    KeyConflict { key: String, first_message_id: String },
}

impl Rejection {
    /// A short, stable name for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Envelope(_) => "envelope",
            Self::DistributionId(_) => "invalid_distribution_id",
            Self::DistributionNotAllowed(_) => "distribution_not_allowed",
            Self::TenantId(_) => "invalid_tenant_id",
            Self::TenantNotAllowed(_) => "tenant_not_allowed",
            Self::TopicNotAllowed(_) | Self::TopicMissing => "topic_not_allowed",
            Self::NoPaths => "no_paths",
            Self::TooManyPaths(_) => "too_many_paths",
            Self::InvalidPath { .. } => "invalid_path",
            Self::InvalidTag { .. } => "invalid_tag",
            Self::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            Self::InvalidPriority(_) => "invalid_priority",
            Self::InvalidRequester(_) => "invalid_requester",
            Self::Unrouted(_) => "unrouted",
            Self::KeyConflict { .. } => "idempotency_key_conflict",
        }
    }
}

/// What a worker accepts besides well-formed requests: routing for S3 events, which distributions any request
/// may name, however it arrived (`None`: any), and which SNS topics may send through an envelope (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct IntakeRules {
    pub routing: Routing,
    pub allowed_distributions: Option<BTreeSet<DistributionId>>,
    pub allowed_topics: Option<BTreeSet<String>>,
    /// Which tenants a request may name (`None`: any); a request for a whole distribution meets only the
    /// distribution allowlist.
    pub allowed_tenants: Option<BTreeSet<TenantId>>,
}

/// Why a worker's intake rules contradict themselves.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RulesError {
    #[error(
        "the routes file sends objects to {0}, which --allow-distribution does not list: add it to the allowlist or remove it from the routes"
    )]
    RouteNotAllowed(DistributionId),
}

impl IntakeRules {
    /// Rules whose routes stay within the distribution allowlist: a routed object must not be refused for a
    /// distribution the operator's own routes name.
    pub fn new(
        routing: Routing,
        allowed_distributions: Option<BTreeSet<DistributionId>>,
        allowed_topics: Option<BTreeSet<String>>,
    ) -> Result<Self, RulesError> {
        if let Some(allowed) = &allowed_distributions
            && let Some(outside) = routing.distributions().find(|d| !allowed.contains(*d))
        {
            return Err(RulesError::RouteNotAllowed(outside.clone()));
        }
        Ok(Self { routing, allowed_distributions, allowed_topics, allowed_tenants: None })
    }

    pub fn with_allowed_tenants(self, allowed_tenants: Option<BTreeSet<TenantId>>) -> Self {
        Self { allowed_tenants, ..self }
    }

    fn admit_sender(&self, via: &Via) -> Result<(), Rejection> {
        match (&self.allowed_topics, via) {
            (Some(allowed), Via::Sns { topic_arn: Some(topic) }) if !allowed.contains(topic) => {
                Err(Rejection::TopicNotAllowed(topic.clone()))
            }
            (Some(_), Via::Sns { topic_arn: None }) => Err(Rejection::TopicMissing),
            _ => Ok(()),
        }
    }

    fn admit_distribution(&self, request: &InvalidationRequest) -> Result<(), Rejection> {
        match &self.allowed_distributions {
            Some(allowed) if !allowed.contains(&request.distribution_id) => {
                Err(Rejection::DistributionNotAllowed(request.distribution_id.clone()))
            }
            _ => Ok(()),
        }?;
        match (&self.allowed_tenants, &request.tenant_id) {
            (Some(allowed), Some(tenant)) if !allowed.contains(tenant) => {
                Err(Rejection::TenantNotAllowed(tenant.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// One request per distribution (an S3 object may be served by several).
    Requests(Vec<InvalidationRequest>),
    /// Nothing to invalidate: acknowledge the message. The text says why, for the log.
    Skip(&'static str),
}

#[derive(Deserialize)]
struct WireRequest {
    distribution_id: String,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    requester: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    max_delay_seconds: Option<u64>,
    #[serde(default)]
    awaited: bool,
}

/// Parses and validates one SQS message body in any format the worker reads. Every source meets the same
/// checks: the distribution allowlist, the topic allowlist for SNS envelopes, and the path cap per distribution
/// once routing has fanned an event out.
pub fn parse_message(body: &str, rules: &IntakeRules) -> Result<Parsed, Rejection> {
    let parsed = parse_unchecked(body, rules)?;
    if let Parsed::Requests(requests) = &parsed {
        for request in requests {
            rules.admit_distribution(request)?;
            if request.paths.len() > MAX_PATHS_PER_MESSAGE {
                return Err(Rejection::TooManyPaths(request.paths.len()));
            }
        }
    }
    Ok(parsed)
}

fn parse_unchecked(body: &str, rules: &IntakeRules) -> Result<Parsed, Rejection> {
    // The common case first: a native request parses straight into its struct, without an intermediate tree.
    // Serde would also read a struct from a JSON array; a request is an object.
    if body.trim_start().starts_with('{')
        && let Ok(wire) = serde_json::from_str::<WireRequest>(body)
    {
        return Ok(Parsed::Requests(vec![validate(wire)?]));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let (envelope, via) = envelope::open(value).map_err(Rejection::Envelope)?;
    rules.admit_sender(&via)?;
    match envelope {
        Envelope::Native(value) if !value.is_object() => {
            Err(Rejection::Malformed("a request is a JSON object, not an array or a scalar".into()))
        }
        Envelope::Native(value) => {
            let wire = serde_json::from_value(value).map_err(|e| Rejection::Malformed(e.to_string()))?;
            Ok(Parsed::Requests(vec![validate(wire)?]))
        }
        Envelope::S3Objects(objects) => routed(&objects, &rules.routing),
        Envelope::Ignorable(why) => Ok(Parsed::Skip(why)),
    }
}

/// Parses a native v1 request, ignoring envelopes and routing.
pub fn parse_request(body: &str) -> Result<InvalidationRequest, Rejection> {
    validate(serde_json::from_str(body).map_err(|e| Rejection::Malformed(e.to_string()))?)
}

fn routed(objects: &[S3Object], routing: &Routing) -> Result<Parsed, Rejection> {
    let mut requests: Vec<InvalidationRequest> = Vec::new();
    for object in objects {
        for routed in routing.route(object)? {
            let same_target = |r: &&mut InvalidationRequest| {
                r.distribution_id == routed.distribution_id && r.tenant_id == routed.tenant_id
            };
            match requests.iter_mut().find(same_target) {
                Some(request) => request.paths.extend(routed.paths),
                None => requests.push(InvalidationRequest {
                    distribution_id: routed.distribution_id,
                    tenant_id: routed.tenant_id,
                    paths: routed.paths,
                    idempotency_key: None,
                    requester: Some(format!("s3://{}", object.bucket)),
                    max_delay: None,
                    awaited: false,
                    sent_at: None,
                }),
            }
        }
    }
    if requests.is_empty() {
        return Ok(Parsed::Skip("no routing rule matches the S3 objects"));
    }
    for request in &mut requests {
        dedup(&mut request.paths);
    }
    Ok(Parsed::Requests(requests))
}

fn validate(wire: WireRequest) -> Result<InvalidationRequest, Rejection> {
    let distribution_id = DistributionId::parse(&wire.distribution_id)?;
    let tenant_id = wire.tenant_id.as_deref().map(TenantId::parse).transpose()?;
    if let Some(key) = &wire.idempotency_key {
        let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
            return Err(Rejection::InvalidIdempotencyKey(excerpt(key)));
        }
    }
    match wire.paths.len() + wire.tags.len() {
        0 => return Err(Rejection::NoPaths),
        n if n > MAX_PATHS_PER_MESSAGE => return Err(Rejection::TooManyPaths(n)),
        _ => {}
    }
    let mut paths: Vec<InvalidationPath> = wire
        .paths
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            InvalidationPath::parse_owned(raw).map_err(|(error, raw)| Rejection::InvalidPath {
                index,
                path: excerpt(&raw),
                error,
            })
        })
        .collect::<Result<_, _>>()?;
    for (index, raw) in wire.tags.into_iter().enumerate() {
        let tag =
            InvalidationPath::tag(&raw).map_err(|error| Rejection::InvalidTag { index, tag: excerpt(&raw), error })?;
        paths.push(tag);
    }
    dedup(&mut paths);
    // Any case, as tags are: "URGENT" is no less urgent.
    let priority = wire.priority.as_deref().map(str::to_ascii_lowercase);
    let max_delay = match priority.as_deref() {
        Some("urgent") => Some(Duration::ZERO),
        None | Some("normal") => wire.max_delay_seconds.map(Duration::from_secs),
        Some(_) => return Err(Rejection::InvalidPriority(excerpt(wire.priority.as_deref().unwrap_or_default()))),
    };
    Ok(InvalidationRequest {
        distribution_id,
        tenant_id,
        paths,
        idempotency_key: wire.idempotency_key,
        requester: wire.requester.map(|r| requester(&r)).transpose()?.flatten(),
        max_delay,
        awaited: wire.awaited,
        sent_at: None,
    })
}

/// A requester as it is counted: trimmed, so that two spellings of one name are one requester, and bounded. A
/// blank one is no requester.
fn requester(raw: &str) -> Result<Option<String>, Rejection> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_REQUESTER_LEN || trimmed.chars().any(char::is_control) {
        return Err(Rejection::InvalidRequester(excerpt(raw)));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// Up to this many paths, a linear scan finds repeats faster than hashing (a message carries a few paths).
const DEDUP_SCAN_LIMIT: usize = 16;

/// A path repeated within one message would otherwise be able to straddle two batches. Keeps the first of each,
/// in order, without copying any path.
fn dedup(paths: &mut Vec<InvalidationPath>) {
    if paths.len() <= DEDUP_SCAN_LIMIT {
        let mut kept = 0;
        for i in 0..paths.len() {
            if !paths[..kept].contains(&paths[i]) {
                paths.swap(kept, i);
                kept += 1;
            }
        }
        paths.truncate(kept);
        return;
    }
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(paths.len());
        paths.iter().map(|path| seen.insert(path.as_str())).collect()
    };
    let mut keep = keep.into_iter();
    paths.retain(|_| keep.next().unwrap_or(true));
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
    fn a_requester_is_trimmed_and_bounded() {
        let with = |requester: &str| {
            let body = serde_json::json!({"distribution_id": "E1", "paths": ["/a"], "requester": requester});
            parse_request(&body.to_string()).map(|r| r.requester)
        };
        assert_eq!(with("  ci: deploy \t").unwrap().as_deref(), Some("ci: deploy"), "one name, however spaced");
        assert_eq!(with("   ").unwrap(), None, "a blank requester is none");
        assert_eq!(with(&"é".repeat(MAX_REQUESTER_LEN)).unwrap().map(|r| r.chars().count()), Some(256));
        for bad in ["x".repeat(MAX_REQUESTER_LEN + 1), "a\u{0}b".to_owned(), "line\nbreak".to_owned()] {
            let refused = with(&bad).unwrap_err();
            assert_eq!(refused.code(), "invalid_requester", "{bad:?}");
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            ("not json", "body is not a valid v1 invalidation request"),
            (r#"{"paths":["/a"]}"#, "missing field `distribution_id`"),
            (r#"{"distribution_id":"E1","paths":"/a"}"#, "invalid type"),
            (r#"{"distribution_id":"e1","paths":["/a"]}"#, "distribution id \"e1\" is not valid"),
            (r#"{"distribution_id":"E1","paths":[]}"#, "paths and tags are empty"),
            (r#"{"distribution_id":"E1","paths":["/a","b"]}"#, "path #1 \"b\" is invalid: path must start with '/'"),
            (r#"{"distribution_id":"E1","paths":["/a*b"]}"#, "'*' may only be the last character"),
        ];
        let array = parse_message(r#"["E1", ["/a"]]"#, &IntakeRules::default()).unwrap_err();
        assert!(array.to_string().contains("a request is a JSON object"), "{array}");
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
    fn dedup_keeps_the_first_of_each_path_in_order_for_short_and_long_lists() {
        for len in [0, 1, 5, DEDUP_SCAN_LIMIT, DEDUP_SCAN_LIMIT + 1, 100] {
            let raws: Vec<String> = (0..len).map(|i| format!("/p{}", (i * 7) % 5 + i / 3)).collect();
            let mut paths: Vec<InvalidationPath> = raws.iter().map(|r| InvalidationPath::parse(r).unwrap()).collect();
            dedup(&mut paths);
            let mut expected: Vec<&str> = Vec::new();
            for raw in &raws {
                if !expected.contains(&raw.as_str()) {
                    expected.push(raw);
                }
            }
            assert_eq!(paths.iter().map(InvalidationPath::as_str).collect::<Vec<_>>(), expected, "{len} paths");
        }
    }

    #[test]
    fn refuses_more_paths_than_the_quota() {
        let paths: Vec<String> = (0..=MAX_PATHS_PER_MESSAGE).map(|i| format!("/p{i}")).collect();
        let body = serde_json::json!({"distribution_id": "E1", "paths": paths}).to_string();
        assert_eq!(parse_request(&body), Err(Rejection::TooManyPaths(3_001)));
    }

    fn rules(routes: &str, allowed: &[&str]) -> IntakeRules {
        let allowed =
            (!allowed.is_empty()).then(|| allowed.iter().map(|d| DistributionId::parse(d).unwrap()).collect());
        IntakeRules::new(Routing::parse(routes).unwrap(), allowed, None).unwrap()
    }

    const SITE: &str = "[[rule]]\nbucket = \"site\"\ndistributions = [\"E1\"]";
    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:publish";

    /// The same S3 object as each producer format delivers it: a notification (key form-encoded), the
    /// notification inside an SNS envelope, and an EventBridge event (key as it is).
    fn s3_bodies(key: &str) -> [(&'static str, String); 3] {
        let encoded: String = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).collect();
        let notification = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "site"}, "object": {"key": encoded}}}]});
        let sns = serde_json::json!({"Type": "Notification", "TopicArn": TOPIC, "Message": notification.to_string()});
        let eventbridge = serde_json::json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "site"}, "object": {"key": key}}});
        [("S3", notification.to_string()), ("SNS", sns.to_string()), ("EventBridge", eventbridge.to_string())]
    }

    #[test]
    fn an_s3_key_reaches_cloudfront_as_the_object_s_own_path_from_every_source() {
        let rules = rules(SITE, &[]);
        let cases = [
            ("/lead.html", "//lead.html"),
            ("a//b.html", "/a//b.html"),
            ("a/../b.html", "/a/../b.html"),
            ("100%.html", "/100%25.html"),
            ("a%20b.html", "/a%2520b.html"),
            ("why?.html", "/why%3F.html"),
        ];
        for (key, path) in cases {
            for (source, body) in s3_bodies(key) {
                let routed = requests(parse_message(&body, &rules).unwrap());
                assert_eq!(routed, [("E1".into(), vec![path.to_owned()])], "{source} {key:?}");
            }
        }
    }

    #[test]
    fn an_s3_key_with_an_asterisk_is_never_a_wildcard_from_any_source() {
        let rules = rules(SITE, &[]);
        for key in ["*", "x*", "img/*", "a*b.png"] {
            for (source, body) in s3_bodies(key) {
                let rejection = parse_message(&body, &rules).unwrap_err();
                assert_eq!(rejection.code(), "unrouted", "{source} {key:?}");
                assert!(rejection.to_string().contains("has '*' in its key"), "{source} {key:?}: {rejection}");
            }
        }
    }

    #[test]
    fn the_distribution_allowlist_applies_to_every_source() {
        let sns_native = serde_json::json!({"Type": "Notification", "TopicArn": TOPIC,
            "Message": r#"{"distribution_id":"EOTHER","paths":["/a"]}"#});
        let allowing = rules(SITE, &["E1"]);
        let refused = parse_message(&sns_native.to_string(), &allowing).unwrap_err();
        assert_eq!(refused, Rejection::DistributionNotAllowed(DistributionId::parse("EOTHER").unwrap()));
        let [(_, s3), ..] = s3_bodies("a.html");
        assert!(parse_message(&s3, &allowing).is_ok());
        // Routed requests meet the check too, even for rules built without the start-up check.
        let unchecked = IntakeRules {
            allowed_distributions: Some([DistributionId::parse("E9").unwrap()].into()),
            ..rules(SITE, &[])
        };
        assert_eq!(parse_message(&s3, &unchecked).unwrap_err().code(), "distribution_not_allowed");
    }

    #[test]
    fn a_request_may_name_a_tenant_which_the_tenant_allowlist_admits() {
        let body = |tenant: &str| format!(r#"{{"distribution_id":"E1","tenant_id":"{tenant}","paths":["/a"]}}"#);
        let request = parse_request(&body("dt_abc1")).unwrap();
        assert_eq!(request.target().to_string(), "E1/dt_abc1");
        assert_eq!(parse_request(r#"{"distribution_id":"E1","paths":["/a"]}"#).unwrap().tenant_id, None);
        assert_eq!(parse_request(&body("tenant-1")).unwrap_err().code(), "invalid_tenant_id");
        let allowing = rules(SITE, &[]).with_allowed_tenants(Some([TenantId::parse("dt_abc1").unwrap()].into()));
        assert!(parse_message(&body("dt_abc1"), &allowing).is_ok());
        assert_eq!(parse_message(&body("dt_other"), &allowing).unwrap_err().code(), "tenant_not_allowed");
        let whole = r#"{"distribution_id":"E1","paths":["/a"]}"#;
        assert!(parse_message(whole, &allowing).is_ok(), "the tenant allowlist leaves whole distributions alone");
    }

    #[test]
    fn routes_outside_the_allowlist_stop_the_worker_at_start_up() {
        let allowed = Some([DistributionId::parse("E2").unwrap()].into());
        let error = IntakeRules::new(Routing::parse(SITE).unwrap(), allowed, None).unwrap_err();
        assert_eq!(error, RulesError::RouteNotAllowed(DistributionId::parse("E1").unwrap()));
        assert!(error.to_string().contains("the routes file sends objects to E1"), "{error}");
    }

    #[test]
    fn sns_envelopes_from_other_topics_are_refused_when_topics_are_listed() {
        let topics = Some([TOPIC.to_owned()].into());
        let rules = IntakeRules::new(Routing::parse(SITE).unwrap(), None, topics).unwrap();
        let envelope = |topic: Option<&str>| {
            let mut body = serde_json::json!({"Type": "Notification",
                "Message": r#"{"distribution_id":"E1","paths":["/a"]}"#});
            if let Some(topic) = topic {
                body["TopicArn"] = topic.into();
            }
            body.to_string()
        };
        assert!(parse_message(&envelope(Some(TOPIC)), &rules).is_ok());
        let other = "arn:aws:sns:eu-west-1:210987654321:elsewhere";
        assert_eq!(parse_message(&envelope(Some(other)), &rules), Err(Rejection::TopicNotAllowed(other.into())));
        assert_eq!(parse_message(&envelope(None), &rules), Err(Rejection::TopicMissing));
        // A direct native request has no envelope to check.
        assert!(parse_message(r#"{"distribution_id":"E1","paths":["/a"]}"#, &rules).is_ok());
    }

    #[test]
    fn the_path_cap_applies_after_routing_fans_an_event_out() {
        let rules = rules(&format!("{SITE}\nindex_document = \"index.html\"\nextra_paths = [\"/feed.xml\"]"), &[]);
        let record = |i: usize| {
            serde_json::json!({"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "site"}, "object": {"key": format!("d{i}/index.html")}}})
        };
        // 1,000 objects, each its page and its directory: 2,001 paths with the feed.
        let fits = serde_json::json!({"Records": (0..1_000).map(record).collect::<Vec<_>>()});
        assert_eq!(requests(parse_message(&fits.to_string(), &rules).unwrap())[0].1.len(), 2_001);
        let over = serde_json::json!({"Records": (0..1_500).map(record).collect::<Vec<_>>()});
        assert_eq!(parse_message(&over.to_string(), &rules), Err(Rejection::TooManyPaths(3_001)));
    }

    fn requests(parsed: Parsed) -> Vec<(String, Vec<String>)> {
        let Parsed::Requests(requests) = parsed else { panic!("{parsed:?}") };
        requests
            .into_iter()
            .map(|r| (r.distribution_id.to_string(), r.paths.into_iter().map(InvalidationPath::into_string).collect()))
            .collect()
    }

    #[test]
    fn tags_join_the_paths_and_count_towards_the_limit() {
        let parsed = parse_message(
            r#"{"distribution_id":"E1","paths":["/a"],"tags":["Product-42","product-42"]}"#,
            &IntakeRules::default(),
        );
        assert_eq!(requests(parsed.unwrap()), [("E1".into(), vec!["/a".into(), "#product-42".into()])]);
        let only_tags = parse_message(r#"{"distribution_id":"E1","tags":["t"]}"#, &IntakeRules::default());
        assert_eq!(requests(only_tags.unwrap()), [("E1".into(), vec!["#t".into()])]);
        let body = serde_json::json!({"distribution_id": "E1", "paths": vec!["/a"; 2_000], "tags": vec!["t"; 1_001]});
        assert_eq!(parse_message(&body.to_string(), &IntakeRules::default()), Err(Rejection::TooManyPaths(3_001)));
    }

    #[test]
    fn routes_s3_events_and_merges_objects_per_distribution() {
        let rules = rules("[[rule]]\nbucket = \"site\"\ndistributions = [\"E1\", \"E2\"]", &[]);
        let event = serde_json::json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "site"}, "object": {"key": "a+b.html"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "site"}, "object": {"key": "c.html"}}},
        ]});
        let expected = vec!["/a%20b.html".to_owned(), "/c.html".to_owned()];
        let routed = requests(parse_message(&event.to_string(), &rules).unwrap());
        assert_eq!(routed, [("E1".into(), expected.clone()), ("E2".into(), expected)]);
    }

    #[test]
    fn skips_what_asks_for_nothing() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"site"}"#;
        assert_eq!(parse_message(test_event, &IntakeRules::default()), Ok(Parsed::Skip("s3:TestEvent")));
        let skipping = rules("unmatched = \"skip\"", &[]);
        let event =
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"x"},"object":{"key":"k"}}}]}"#;
        assert!(matches!(parse_message(event, &skipping), Ok(Parsed::Skip(_))));
    }

    #[test]
    fn refuses_distributions_outside_the_allowlist() {
        let allowing = rules("", &["EALLOWED"]);
        let refused = parse_message(r#"{"distribution_id":"EOTHER","paths":["/a"]}"#, &allowing);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "distribution EOTHER is not in this worker's --allow-distribution list"
        );
        assert!(parse_message(r#"{"distribution_id":"EALLOWED","paths":["/a"]}"#, &allowing).is_ok());
    }

    #[test]
    fn shortens_huge_paths_in_the_reason() {
        let body = serde_json::json!({"distribution_id": "E1", "paths": [format!("x{}", "é".repeat(3_000))]});
        let reason = parse_request(&body.to_string()).unwrap_err().to_string();
        assert!(reason.len() < 400, "{}", reason.len());
    }

    #[test]
    fn priority_and_max_delay_say_how_long_a_message_may_wait() {
        let with = |extra: serde_json::Value| {
            let mut body = serde_json::json!({"distribution_id": "EAAA", "paths": ["/a"]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse_request(&body.to_string())
        };
        assert_eq!(with(serde_json::json!({})).unwrap().max_delay, None);
        assert!(with(serde_json::json!({"priority": "urgent"})).unwrap().is_urgent());
        assert!(with(serde_json::json!({"priority": "URGENT"})).unwrap().is_urgent(), "any case");
        assert!(!with(serde_json::json!({"priority": "Normal"})).unwrap().is_urgent());
        let capped = with(serde_json::json!({"priority": "normal", "max_delay_seconds": 30})).unwrap();
        assert_eq!(capped.max_delay, Some(Duration::from_secs(30)));
        assert!(!capped.is_urgent());
        assert_eq!(with(serde_json::json!({"priority": "asap"})).unwrap_err().code(), "invalid_priority");
        assert_eq!(with(serde_json::json!({"max_delay_seconds": -1})).unwrap_err().code(), "malformed");
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        let with_key = |key: &str| {
            let body = serde_json::json!({"distribution_id": "EAAA", "paths": ["/a"], "idempotency_key": key});
            parse_request(&body.to_string())
        };
        assert_eq!(with_key("deploy-42 #7").unwrap().idempotency_key.as_deref(), Some("deploy-42 #7"));
        assert!(with_key(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).is_ok());
        for bad in [String::new(), "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1), "tab\there".into(), "déploiement".into()] {
            let rejection = with_key(&bad).unwrap_err();
            assert_eq!(rejection.code(), "invalid_idempotency_key", "{bad:?}");
        }
    }
}
