//! Property-based fuzzing of the message parser and the path normaliser: no input panics, whatever is accepted is
//! safe to send to CloudFront, and every refusal says why.
//!
//! Two kinds of input. Unstructured: arbitrary bytes and request-shaped JSON with hostile leaves. Structure-aware:
//! every format `parse_message` reads (native requests, S3 event notifications and EventBridge S3 events, each on
//! its own and inside an SNS envelope, S3's test event), built well-formed more often than not (valid structure,
//! distributions the rules allow, the allowed topic, routed buckets) so the cases get past the envelope into
//! routing, path encoding and the allowlists; the rest mixes in hostile values (keys with `*`, `%`, `/`, `..`,
//! `//`, `+`, unicode and control characters; wrong types; foreign topics), and one case in ten has a top-level
//! field replaced by arbitrary JSON. `at_least_half_the_structured_messages_are_accepted` checks that the generator
//! keeps reaching the deep branches.
//!
//! CI runs proptest's default number of cases (256 per property). A long run (the issue asks for at least 10
//! minutes; the structured property runs about 5,000 cases a second in release on one core here, so 3,500,000 cases
//! take about 12 minutes):
//!
//! ```sh
//! PROPTEST_CASES=3500000 cargo test --release --test fuzz -- --nocapture
//! # or only the structure-aware property:
//! PROPTEST_CASES=3500000 cargo test --release --test fuzz every_structured -- --nocapture
//! ```
//!
//! With `--nocapture` the structure-aware property reports its case count at every power of two from 65,536.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cf_invalidator::intake::parse::{IntakeRules, MAX_PATHS_PER_MESSAGE, Parsed, parse_message, parse_request};
use cf_invalidator::intake::routes::Routing;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::{InvalidationPath, MAX_PATH_LEN, MAX_TAG_LEN};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

fn assert_sendable(path: &str) {
    assert!(path.starts_with('/'), "{path}");
    assert!(path.len() <= MAX_PATH_LEN);
    assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path}");
    assert!(path.find('*').is_none_or(|at| at == path.len() - 1), "{path}");
    assert_eq!(InvalidationPath::parse(path).map(InvalidationPath::into_string).as_deref(), Ok(path), "not idempotent");
}

/// A path, or a `#tag` item: 1 to 256 printable ASCII characters without comma or `*`, lower-cased.
fn assert_sendable_item(item: &str) {
    match item.strip_prefix('#') {
        Some(tag) => {
            assert!(!tag.is_empty() && tag.len() <= MAX_TAG_LEN, "{item}");
            assert!(tag.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b'*'), "{item}");
            assert_eq!(tag, tag.to_ascii_lowercase(), "tags are lower-cased");
        }
        None => assert_sendable(item),
    }
}

/// JSON values shaped like requests, with hostile leaves.
fn request_like() -> impl Strategy<Value = String> {
    let paths = prop::collection::vec(
        prop_oneof!["/[\\PC]{0,30}\\*?", any::<String>(), "/[a-z%0-9]{0,10}"].prop_map(serde_json::Value::from),
        0..8,
    );
    ("[A-Za-z0-9]{0,16}", paths, prop::option::of(json_value())).prop_map(|(distribution, paths, extra)| {
        let mut request = serde_json::json!({"distribution_id": distribution, "paths": paths});
        if let Some(extra) = extra {
            request["extra"] = extra;
        }
        request.to_string()
    })
}

/// Any JSON value, a few levels deep, with hostile leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::from),
        "/[ -~]{0,40}".prop_map(Value::from),
        "/[\\PC]{0,20}\\*?".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---- Structure-aware generation -------------------------------------------------------------------------------

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:fuzz";
const ALLOWED: [&str; 3] = ["EONE", "ETWO", "ETHREE"];
/// `site` fans out to two distributions, with the index-document forms and an extra path; `assets` maps a key to
/// `/static/<key>` and nothing else, which lets the properties check that a key reaches CloudFront as its literal
/// name. No extra path holds a `*`, so every `*` in a path made from an S3 event would have come from a key.
const ROUTES: &str = r#"
[[rule]]
bucket = "site"
prefix = "public/"
strip_prefix = "public"
distributions = ["EONE", "ETWO"]
index_document = "index.html"
directory_without_slash = true
extra_paths = ["/feed.xml"]

[[rule]]
bucket = "assets"
distributions = ["ETHREE"]
add_prefix = "/static"
"#;

static RULES: LazyLock<IntakeRules> = LazyLock::new(|| IntakeRules {
    routing: Routing::parse(ROUTES).expect("the fuzz routes parse"),
    allowed_distributions: Some(ALLOWED.iter().map(|d| DistributionId::parse(d).unwrap()).collect()),
    allowed_topics: Some(BTreeSet::from([TOPIC.to_owned()])),
    allowed_tenants: None,
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Native,
    S3,
}

/// One generated SQS body, with what the generator knows about it.
#[derive(Debug, Clone)]
struct Message {
    body: Value,
    /// Which generator made it, for the acceptance statistics.
    kind: &'static str,
    source: Source,
    /// Literal names of the objects in bucket `assets` the message reports (tracked by the well-formed S3
    /// generators only): each must reach CloudFront as `/static/<name>`, percent-encoded.
    asset_names: Vec<String>,
}

impl Message {
    fn new(body: Value, kind: &'static str, source: Source) -> Self {
        Self { body, kind, source, asset_names: Vec::new() }
    }
}

/// Pieces of hostile S3 keys and paths.
fn hostile_piece() -> impl Strategy<Value = String> {
    let named = [
        "*",
        "%",
        "/",
        "..",
        "//",
        "+",
        "%2A",
        "%2a",
        "%2F",
        "%25",
        "%20",
        "%ZZ",
        "%FF",
        "%C3",
        "%C3%A9",
        "%00",
        "?",
        "?x=1",
        "#",
        " ",
        "~",
        "\u{0}",
        "\n",
        "\t",
        "\r",
        "\u{7f}",
        "\u{85}",
        "\u{202e}",
        "\u{feff}",
        "\u{2028}",
        "é",
        "e\u{301}",
        "日本",
        "🚀",
        "index.html",
        "public/",
        "&",
        "=",
        "\\",
        "\"",
    ];
    prop_oneof![
        3 => prop::sample::select(named.to_vec()).prop_map(String::from),
        2 => "[a-z0-9._-]{1,6}",
        1 => "\\PC{1,3}",
        1 => "[\\x00-\\x1f]",
    ]
}

fn hostile_key() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_piece(), 0..10).prop_map(|pieces| pieces.concat())
}

/// Any string that is not a valid request field: hostile pieces, arbitrary text, or nothing.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![hostile_key(), any::<String>(), "[\\x00-\\x20*%/]{0,8}", Just(String::new()), "[ -~]{257,300}"]
}

/// An object's literal name that the worker must accept: plain names mostly, else hostile pieces without `*`.
fn object_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]{1,8}(/[a-zA-Z0-9._-]{1,12}){0,3}(/index\\.html)?",
        2 => hostile_key().prop_map(|key| key.replace('*', "_")),
    ]
}

/// What S3 puts in a notification: the key form-urlencoded, space as `+`, slashes kept.
fn form_encoded(name: &str) -> String {
    const S3_KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b' ');
    utf8_percent_encode(name, S3_KEY).to_string().replace(' ', "+")
}

const CREATED_OR_REMOVED: [&str; 5] = [
    "ObjectCreated:Put",
    "ObjectCreated:Copy",
    "ObjectCreated:CompleteMultipartUpload",
    "ObjectRemoved:Delete",
    "ObjectRemoved:DeleteMarkerCreated",
];

fn s3_record(bucket: &str, key: &str, event: &str) -> Value {
    json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": key, "size": 5}}})
}

/// A routed object: (bucket, its key, its name below the route) for `site` or `assets`.
fn routed_object() -> impl Strategy<Value = (&'static str, String, String)> {
    (prop::bool::ANY, object_name()).prop_map(|(site, name)| {
        if site { ("site", format!("public/{name}"), name) } else { ("assets", name.clone(), name) }
    })
}

fn notification_well_formed() -> impl Strategy<Value = Message> {
    let record = (routed_object(), prop::sample::select(CREATED_OR_REMOVED.to_vec()));
    prop::collection::vec(record, 1..5).prop_map(|records| {
        let mut message = Message::new(Value::Null, "s3", Source::S3);
        let records: Vec<Value> = records
            .into_iter()
            .map(|((bucket, key, _), event)| {
                if bucket == "assets" {
                    message.asset_names.push(key.clone());
                }
                s3_record(bucket, &form_encoded(&key), event)
            })
            .collect();
        message.body = json!({"Records": records});
        message
    })
}

fn notification_hostile() -> impl Strategy<Value = Message> {
    let bucket = prop_oneof![
        3 => prop::sample::select(vec!["site", "assets", "other", "", "Site", "site "]).prop_map(String::from),
        1 => any::<String>(),
    ];
    let event = prop_oneof![
        3 => prop::sample::select(CREATED_OR_REMOVED.to_vec()),
        1 => prop::sample::select(vec!["ObjectTagging:Put", "ObjectRestore:Completed", "objectcreated:put", ""]),
    ];
    // The key as it arrives: raw hostile text (decoded by the worker, perhaps into invalid UTF-8), or a name
    // encoded as S3 would, `*` included.
    let key = prop_oneof![hostile_key(), hostile_key().prop_map(|name| form_encoded(&name)), Just("public/*".into())];
    let record = prop_oneof![
        6 => (bucket, key, event).prop_map(|(bucket, key, event)| s3_record(&bucket, &key, event)),
        1 => json_value().prop_map(|broken| json!({"eventName": "ObjectCreated:Put", "s3": broken})),
    ];
    prop::collection::vec(record, 0..5).prop_map(|records| Message::new(json!({"Records": records}), "s3", Source::S3))
}

fn eventbridge_event(bucket: &str, key: &str, kind: &str) -> Value {
    json!({"version": "0", "id": "fuzz", "detail-type": kind, "source": "aws.s3", "account": "123456789012",
        "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 5},
            "reason": "PutObject"}})
}

fn eventbridge_well_formed() -> impl Strategy<Value = Message> {
    (routed_object(), prop::sample::select(vec!["Object Created", "Object Deleted"])).prop_map(
        |((bucket, key, _), kind)| {
            let mut message = Message::new(eventbridge_event(bucket, &key, kind), "eventbridge", Source::S3);
            if bucket == "assets" {
                message.asset_names.push(key);
            }
            message
        },
    )
}

fn eventbridge_hostile() -> impl Strategy<Value = Message> {
    let bucket =
        prop_oneof![prop::sample::select(vec!["site", "assets", "other"]).prop_map(String::from), any::<String>()];
    let kind =
        prop::sample::select(vec!["Object Created", "Object Deleted", "Object Restore Completed", "object created"]);
    (bucket, prop_oneof![hostile_key(), Just("*".into()), Just("public/img/*".into())], kind)
        .prop_map(|(bucket, key, kind)| Message::new(eventbridge_event(&bucket, &key, kind), "eventbridge", Source::S3))
}

fn allowed_distribution() -> impl Strategy<Value = String> {
    prop::sample::select(ALLOWED.to_vec()).prop_map(String::from)
}

fn good_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "/[a-zA-Z0-9/._~-]{0,30}",
        1 => "/[a-z0-9/]{0,12}\\*",
        1 => "/[a-zA-Z0-9/ é%?=&._-]{0,24}",
    ]
}

fn native_value(
    distribution: BoxedStrategy<String>,
    item: BoxedStrategy<String>,
    tag: BoxedStrategy<String>,
    key: BoxedStrategy<String>,
) -> impl Strategy<Value = Value> {
    let paths = prop::collection::vec(item, 1..6);
    let tags = prop::option::weighted(0.3, prop::collection::vec(tag, 0..4));
    let key = prop::option::weighted(0.3, key);
    let requester = prop::option::of("[ -~]{0,20}");
    (distribution, paths, tags, key, requester).prop_map(|(distribution, paths, tags, key, requester)| {
        let mut request = json!({"distribution_id": distribution, "paths": paths});
        if let Some(tags) = tags {
            request["tags"] = json!(tags);
        }
        if let Some(key) = key {
            request["idempotency_key"] = json!(key);
        }
        if let Some(requester) = requester {
            request["requester"] = json!(requester);
        }
        request
    })
}

fn native_well_formed() -> impl Strategy<Value = Value> {
    native_value(
        allowed_distribution().boxed(),
        good_path().boxed(),
        "[a-zA-Z0-9:_-]{1,20}".boxed(),
        "[ -~]{1,64}".boxed(),
    )
}

fn native_hostile() -> impl Strategy<Value = Value> {
    native_value(
        prop_oneof![allowed_distribution(), "[A-Z0-9]{1,16}", "[A-Za-z0-9 é-]{0,40}"].boxed(),
        prop_oneof![good_path(), hostile_string(), hostile_key().prop_map(|k| format!("/{k}"))].boxed(),
        prop_oneof!["[a-zA-Z0-9:_-]{1,20}", hostile_string()].boxed(),
        prop_oneof!["[ -~]{1,64}", hostile_string()].boxed(),
    )
}

fn sns(inner: &Value, topic: Option<&str>) -> Value {
    let mut envelope = json!({"Type": "Notification", "MessageId": "fuzz", "Message": inner.to_string(),
        "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "1"});
    if let Some(topic) = topic {
        envelope["TopicArn"] = json!(topic);
    }
    envelope
}

/// Wraps a message in an SNS envelope from `topic` (`None`: the envelope names none).
fn wrapped(message: Message, topic: Option<String>, kind: &'static str) -> Message {
    Message { body: sns(&message.body, topic.as_deref()), kind, ..message }
}

fn allowed_topic() -> Option<String> {
    Some(TOPIC.to_owned())
}

fn native(body: Value) -> Message {
    Message::new(body, "native", Source::Native)
}

fn hostile_topic() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(Some(TOPIC.to_owned())),
        Just(None),
        Just(Some(format!("{TOPIC}-evil"))),
        Just(Some("arn:aws:sns:us-east-1:999999999999:fuzz".to_owned())),
        any::<String>().prop_map(Some),
    ]
}

/// One S3 event with about a thousand index documents in `site`: three paths each, on each of two
/// distributions, plus the extra path, so the cap after fan-out is met or passed.
fn fanned_out() -> impl Strategy<Value = Message> {
    (995usize..=1_005, prop::bool::ANY).prop_map(|(count, through_sns)| {
        let records: Vec<Value> =
            (0..count).map(|i| s3_record("site", &format!("public/d{i}/index.html"), "ObjectCreated:Put")).collect();
        let message = Message::new(json!({"Records": records}), "s3 fan-out", Source::S3);
        if through_sns { wrapped(message, allowed_topic(), "s3 fan-out") } else { message }
    })
}

fn skipped() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "site"})),
        Just(json!({"Records": [s3_record("site", "public/a.html", "ObjectTagging:Put")]})),
        Just(eventbridge_event("site", "public/a.html", "Object Restore Completed")),
    ]
    .prop_map(|body| Message::new(body, "skip", Source::S3))
}

/// Replaces one top-level field of the body (of the envelope, for SNS) with arbitrary JSON.
fn mutate(message: &mut Message, at: prop::sample::Index, value: Value) {
    if let Value::Object(fields) = &mut message.body
        && !fields.is_empty()
    {
        let name = fields.keys().nth(at.index(fields.len())).cloned().unwrap();
        fields.insert(name, value);
        message.asset_names.clear();
    }
}

/// Every format, well-formed about two times in three.
fn message() -> impl Strategy<Value = Message> {
    let base = prop_oneof![
        6 => native_well_formed().prop_map(native),
        3 => native_hostile().prop_map(native),
        3 => native_well_formed().prop_map(|body| wrapped(native(body), allowed_topic(), "sns native")),
        2 => (native_hostile(), hostile_topic()).prop_map(|(body, topic)| wrapped(native(body), topic, "sns native")),
        5 => notification_well_formed(),
        3 => notification_hostile(),
        3 => notification_well_formed().prop_map(|m| wrapped(m, allowed_topic(), "sns s3")),
        2 => (notification_hostile(), hostile_topic()).prop_map(|(m, topic)| wrapped(m, topic, "sns s3")),
        4 => eventbridge_well_formed(),
        2 => eventbridge_hostile(),
        1 => eventbridge_well_formed().prop_map(|m| wrapped(m, allowed_topic(), "sns eventbridge")),
        1 => (eventbridge_hostile(), hostile_topic()).prop_map(|(m, topic)| wrapped(m, topic, "sns eventbridge")),
        1 => fanned_out(),
        1 => skipped(),
    ];
    (base, prop::option::weighted(0.1, (any::<prop::sample::Index>(), json_value()))).prop_map(
        |(mut message, mutation)| {
            if let Some((at, value)) = mutation {
                mutate(&mut message, at, value);
            }
            message
        },
    )
}

/// The properties every structured message must meet, whatever the parser made of it.
fn check(message: &Message) -> Result<(), TestCaseError> {
    let body = message.body.to_string();
    match parse_message(&body, &RULES) {
        Ok(Parsed::Requests(requests)) => {
            prop_assert!(!requests.is_empty(), "accepted with no request");
            let allowed = RULES.allowed_distributions.as_ref().unwrap();
            for request in &requests {
                prop_assert!(allowed.contains(&request.distribution_id), "{} is not allowed", request.distribution_id);
                prop_assert!(!request.paths.is_empty(), "a request without paths for {}", request.distribution_id);
                prop_assert!(
                    request.paths.len() <= MAX_PATHS_PER_MESSAGE,
                    "{} paths for {}",
                    request.paths.len(),
                    request.distribution_id
                );
                for path in &request.paths {
                    assert_sendable_item(path.as_str());
                    if message.source == Source::S3 {
                        prop_assert!(!path.as_str().contains('*'), "S3 event made the path {}", path);
                    }
                }
            }
            for name in &message.asset_names {
                let assets = requests.iter().find(|r| r.distribution_id.as_str() == "ETHREE");
                let paths = assets.map(|r| r.paths.as_slice()).unwrap_or_default();
                let wanted = format!("/static/{name}");
                prop_assert!(
                    paths.iter().any(|p| percent_decode_str(p.as_str()).decode_utf8().is_ok_and(|d| d == wanted)),
                    "object {name:?} in assets is not invalidated as itself: {paths:?}"
                );
            }
        }
        Ok(Parsed::Skip(why)) => prop_assert!(!why.is_empty(), "a skip without a reason"),
        Err(rejection) => {
            prop_assert!(!rejection.to_string().is_empty(), "a refusal without a reason: {rejection:?}");
            prop_assert!(!rejection.code().is_empty(), "a refusal without a code: {rejection:?}");
        }
    }
    Ok(())
}

static STRUCTURED_CASES: AtomicU64 = AtomicU64::new(0);

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let body = String::from_utf8_lossy(&bytes);
        if let Ok(request) = parse_request(&body) {
            request.paths.iter().for_each(|p| assert_sendable_item(p.as_str()));
        }
        if let Ok(Parsed::Requests(requests)) = parse_message(&body, &RULES) {
            requests.iter().flat_map(|r| &r.paths).for_each(|p| assert_sendable_item(p.as_str()));
        }
    }

    #[test]
    fn request_shaped_input_is_accepted_only_when_sendable(body in request_like()) {
        if let Ok(request) = parse_request(&body) {
            prop_assert!(!request.paths.is_empty());
            request.paths.iter().for_each(|p| assert_sendable(p.as_str()));
        }
    }

    #[test]
    fn any_path_string_is_refused_or_made_sendable(
        raw in prop_oneof![any::<String>(), "/[\\PC%*]{0,60}", "/[ -~]{0,60}"]
    ) {
        if let Ok(path) = InvalidationPath::parse(&raw) {
            assert_sendable(path.as_str());
        }
    }

    #[test]
    fn every_structured_message_is_refused_with_a_reason_or_accepted_safely(message in message()) {
        let run = STRUCTURED_CASES.fetch_add(1, Ordering::Relaxed) + 1;
        if run.is_power_of_two() && run >= 1 << 16 {
            eprintln!("every_structured_message_is_refused_with_a_reason_or_accepted_safely: {run} cases so far");
        }
        check(&message)?;
    }
}

/// The generator reaches the deep branches: at least half its messages are accepted, and every kind of message
/// is accepted some of the time. Deterministic (a fixed seed), so it cannot flake.
#[test]
fn at_least_half_the_structured_messages_are_accepted() {
    const SAMPLE: usize = 2_000;
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut by_kind: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for _ in 0..SAMPLE {
        let message = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = match parse_message(&message.body.to_string(), &RULES) {
            Ok(Parsed::Requests(_)) => 0,
            Ok(Parsed::Skip(_)) => 1,
            Err(_) => 2,
        };
        by_kind.entry(message.kind).or_default()[outcome] += 1;
    }
    let accepted: usize = by_kind.values().map(|[accepted, _, _]| accepted).sum();
    eprintln!("of {SAMPLE} messages, {accepted} accepted; per kind [accepted, skipped, refused]: {by_kind:?}");
    assert!(accepted * 2 >= SAMPLE, "only {accepted} of {SAMPLE} accepted: {by_kind:?}");
    for (kind, [accepted, _, refused]) in &by_kind {
        assert!(*accepted > 0 || *kind == "skip", "no {kind} message was accepted: {by_kind:?}");
        assert!(*refused > 0, "no {kind} message was refused: {by_kind:?}");
    }
}
