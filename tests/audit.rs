//! The five audit questions, each asked through the real binary against a ledger the worker filled on the
//! emulator. The emulator completes invalidations at once, so the worker's tracker marks them completed.
//!
//! The fill, shared by the tests: distribution D gets two batches.
//! - batch A (first wave): alice's `/index.html` and `/img/logo.png` with idempotency key `deploy-<run>`, and
//!   bob's `/img/*`, merged to `/img/*` and `/index.html`;
//! - batch B (second wave): erin's `/index.html`; a second message with alice's key is dropped as a duplicate.
//!
//! The first wave also holds carol's message with a path lacking its `/` (dead-lettered at intake) and dave's
//! request for a distribution that does not exist (a failed batch, then dead-lettered).

mod common;

use std::process::Command;
use std::time::Duration;

use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::{BatchStatus, Batches};
use cf_invalidator::worker::{self, Exit, Settings};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const UNKNOWN_DISTRIBUTION: &str = "EUNKNOWN00000";

/// What the worker left behind, as the tests need it.
#[derive(Debug)]
struct Filled {
    table: String,
    distribution: DistributionId,
    key: String,
    /// Message ids by sender.
    alice: String,
    alice_again: String,
    carol: String,
    dave: String,
    erin: String,
    /// (invalidation id, CallerReference) of batches A and B, as CloudFront recorded them.
    batch_a: (String, String),
    batch_b: (String, String),
}

static FILLED: OnceCell<Option<Filled>> = OnceCell::const_new();

async fn filled() -> Option<&'static Filled> {
    FILLED.get_or_init(fill).await.as_ref()
}

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: Value) -> String {
    let sent = sqs.send_message().queue_url(queue_url).message_body(body.to_string()).send().await.unwrap();
    sent.message_id().unwrap().to_owned()
}

/// Until the queue is empty and every batch recorded on `distribution` is completed.
async fn settled(sqs: &aws_sdk_sqs::Client, queue_url: &str, ledger: &DynamoLedger, distribution: &DistributionId) {
    let done = common::wait_until(Duration::from_secs(60), || async {
        let records = ledger.list(distribution, std::time::UNIX_EPOCH, 10).await.unwrap();
        common::queue_depth(sqs, queue_url).await == (0, 0)
            && !records.is_empty()
            && records.iter().all(|r| r.status == BatchStatus::Completed)
    })
    .await;
    assert!(done, "the worker did not settle");
}

async fn fill() -> Option<Filled> {
    let config = common::emulator().await?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cloudfront = common::cloudfront(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let distribution = common::create_distribution(&cloudfront).await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let key = common::unique("deploy");
    let d = distribution.as_str();

    let services = common::sdk_services(&config, &queues, &table);
    let mut settings = Settings::default();
    settings.batching.window = Duration::from_secs(2);
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.submission.create_rate = 10.0;
    settings.tracking.poll = Duration::from_millis(300);
    let url = queues.queue_url.as_str();
    // The producers' side, run while the worker works; when it returns, the worker shuts down.
    let produce = async {
        let alice = send(
            &sqs,
            url,
            json!({"distribution_id": d, "paths": ["/index.html", "/img/logo.png"], "requester": "alice", "idempotency_key": key}),
        )
        .await;
        send(&sqs, url, json!({"distribution_id": d, "paths": ["/img/*"], "requester": "bob"})).await;
        let carol = send(&sqs, url, json!({"distribution_id": d, "paths": ["no-slash"], "requester": "carol"})).await;
        let dave =
            send(&sqs, url, json!({"distribution_id": UNKNOWN_DISTRIBUTION, "paths": ["/x"], "requester": "dave"}))
                .await;
        settled(&sqs, url, &ledger, &distribution).await;
        let erin = send(&sqs, url, json!({"distribution_id": d, "paths": ["/index.html"], "requester": "erin"})).await;
        let alice_again = send(
            &sqs,
            url,
            json!({"distribution_id": d, "paths": ["/img/logo.png", "/index.html"], "requester": "alice", "idempotency_key": key}),
        )
        .await;
        common::wait_until(Duration::from_secs(60), || async {
            ledger.list(&distribution, std::time::UNIX_EPOCH, 10).await.unwrap().len() == 2
        })
        .await;
        settled(&sqs, url, &ledger, &distribution).await;
        (alice, alice_again, carol, dave, erin)
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shutdown = async {
        let _ = tx.send(produce.await);
    };
    assert_eq!(worker::run(services, settings, shutdown).await, Exit::Drained);
    let (alice, alice_again, carol, dave, erin) = rx.await.unwrap();

    let mut invalidations = common::invalidations(&cloudfront, &distribution).await;
    assert_eq!(invalidations.len(), 2, "{invalidations:?}");
    invalidations.sort_by_key(|i| i.paths.len());
    let batch = |n: usize| (invalidations[n].id.clone(), invalidations[n].caller_reference.clone());
    // B holds one path, A two.
    let (batch_b, batch_a) = (batch(0), batch(1));
    assert_eq!(invalidations[1].paths, ["/img/*", "/index.html"]);
    Some(Filled { table, distribution, key, alice, alice_again, carol, dave, erin, batch_a, batch_b })
}

fn audit(filled: &Filled, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cf-invalidator"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["audit", "--table", &filled.table])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "audit {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The `--json` answer, one object per line.
fn audit_json(filled: &Filled, args: &[&str]) -> Vec<Value> {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    audit(filled, &args).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// A completed batch as the worker records it: invalidation id, requesters, and a measured time to complete.
fn assert_completed_batch(row: &Value, (invalidation_id, caller_reference): &(String, String), requesters: &[&str]) {
    assert_eq!(row["kind"], "batch", "{row}");
    assert_eq!(row["invalidation_id"], invalidation_id.as_str(), "{row}");
    assert_eq!(row["caller_reference"], caller_reference.as_str(), "{row}");
    assert_eq!(row["status"], "completed", "{row}");
    assert!(row["cloudfront_status"].as_str().unwrap().eq_ignore_ascii_case("completed"), "{row}");
    assert!(row["completed_at"].is_string(), "{row}");
    assert!(row["time_to_complete_ms"].as_u64().is_some(), "{row}");
    assert_eq!(row["requesters"], json!(requesters), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_1_invalidations_of_a_distribution_in_a_time_range_newest_first() {
    let Some(filled) = filled().await else { return };
    let d = filled.distribution.as_str();
    let rows = audit_json(filled, &["--distribution", d, "--since", "1h"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_completed_batch(&rows[0], &filled.batch_b, &["erin"]);
    assert_completed_batch(&rows[1], &filled.batch_a, &["alice", "bob"]);
    assert_eq!(rows[1]["paths"], json!(["/img/*", "/index.html"]));
    assert_eq!(rows[1]["requested_paths"], 3);

    assert_eq!(audit_json(filled, &["--distribution", d, "--since", "1h", "--limit", "1"]).len(), 1);
    let table = audit(filled, &["--distribution", d]);
    assert!(table.contains(&filled.batch_a.0) && table.contains(&filled.batch_b.0), "{table}");
    assert!(table.contains("completed") && table.contains("2 batch(es)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_2_one_invalidation_by_its_id_and_by_its_caller_reference() {
    let Some(filled) = filled().await else { return };
    let by_id = audit_json(filled, &["--invalidation", &filled.batch_a.0]);
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_completed_batch(&by_id[0], &filled.batch_a, &["alice", "bob"]);

    let by_reference = audit_json(filled, &["--caller-reference", &filled.batch_b.1]);
    assert_eq!(by_reference.len(), 1, "{by_reference:?}");
    assert_completed_batch(&by_reference[0], &filled.batch_b, &["erin"]);

    assert!(audit_json(filled, &["--invalidation", "INOSUCHINVALIDATION"]).is_empty());
    let table = audit(filled, &["--invalidation", &filled.batch_b.0]);
    assert!(table.contains(&filled.batch_b.1) && table.contains("1 batch(es)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_3_what_happened_to_a_message_and_to_an_idempotency_key() {
    let Some(filled) = filled().await else { return };
    let d = filled.distribution.as_str();

    // Alice's message: in batch A, whether found by a query of its distribution or by a scan of the table.
    for args in [vec!["--message", filled.alice.as_str(), "--distribution", d], vec!["--message", &filled.alice]] {
        let rows = audit_json(filled, &args);
        assert_eq!(rows.len(), 1, "{args:?}: {rows:?}");
        assert_completed_batch(&rows[0], &filled.batch_a, &["alice", "bob"]);
        assert!(rows[0]["message_ids"].as_array().unwrap().contains(&json!(filled.alice)));
    }

    let rows = audit_json(filled, &["--message", &filled.erin, "--distribution", d]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_completed_batch(&rows[0], &filled.batch_b, &["erin"]);

    // Her key: held by her first message; the second one with it went nowhere.
    let rows = audit_json(filled, &["--idempotency-key", &filled.key, "--distribution", d]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["kind"], "idempotency_key");
    assert_eq!(rows[0]["message_id"], filled.alice.as_str());
    assert_eq!(rows[0]["distribution_id"], d);
    assert_completed_batch(&rows[1], &filled.batch_a, &["alice", "bob"]);
    assert!(audit_json(filled, &["--message", &filled.alice_again, "--distribution", d]).is_empty());

    // Dave's message: a failed batch, then the dead-letter queue.
    let rows = audit_json(filled, &["--message", &filled.dave]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((&rows[0]["kind"], &rows[0]["status"]), (&json!("batch"), &json!("failed")));
    assert_eq!(rows[0]["distribution_id"], UNKNOWN_DISTRIBUTION);
    assert!(rows[0]["failure"].as_str().unwrap().contains("does not exist"), "{rows:?}");
    assert_eq!(rows[1]["kind"], "dead_letter");
    assert_eq!(rows[1]["code"], "NoSuchDistribution");
    assert_eq!(rows[1]["requester"], "dave");

    let table = audit(filled, &["--idempotency-key", &filled.key, "--distribution", d]);
    assert!(table.contains(&format!("first used by message {}", filled.alice)), "{table}");
    assert!(table.contains(&filled.batch_a.0), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_4_when_a_path_was_last_invalidated_and_by_which_batch() {
    let Some(filled) = filled().await else { return };
    let d = filled.distribution.as_str();

    let rows = audit_json(filled, &["--path", "/img/logo.png", "--distribution", d]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_completed_batch(&rows[0], &filled.batch_a, &["alice", "bob"]);
    assert_eq!((&rows[0]["covered_by"], &rows[0]["match"]), (&json!("/img/*"), &json!("wildcard")));

    // Both batches invalidated /index.html: B is the later one.
    let rows = audit_json(filled, &["--path", "/index.html", "--distribution", d]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_completed_batch(&rows[0], &filled.batch_b, &["erin"]);
    assert_eq!((&rows[0]["path"], &rows[0]["match"]), (&json!("/index.html"), &json!("exact")));

    assert!(audit_json(filled, &["--path", "/about.html", "--distribution", d]).is_empty(), "the duplicate's path");
    let table = audit(filled, &["--path", "/img/a/b.png", "--distribution", d]);
    assert!(table.contains("/img/a/b.png invalidated by the wildcard /img/*"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_5_failures_and_dead_letter_sends_in_a_time_range() {
    let Some(filled) = filled().await else { return };
    let d = filled.distribution.as_str();

    let rows = audit_json(filled, &["--failures", "--since", "1h"]);
    let failed: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "batch").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert_eq!((&failed[0]["status"], &failed[0]["distribution_id"]), (&json!("failed"), &json!(UNKNOWN_DISTRIBUTION)));
    assert_eq!(failed[0]["requesters"], json!(["dave"]));
    assert_eq!(failed[0]["message_ids"], json!([filled.dave]));
    let dead: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "dead_letter").collect();
    assert_eq!(dead.len(), 2, "{rows:?}");
    let carol = dead.iter().find(|r| r["message_id"] == filled.carol.as_str()).expect("carol's message");
    assert_eq!(
        (&carol["code"], &carol["distribution_id"], &carol["requester"]),
        (&json!("invalid_path"), &json!(d), &json!("carol"))
    );
    assert!(carol["reason"].as_str().unwrap().contains("must start with '/'"), "{carol}");
    assert!(dead.iter().any(|r| r["message_id"] == filled.dave.as_str() && r["code"] == "NoSuchDistribution"));
    let times: Vec<&str> = rows.iter().map(|r| r["created_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");

    // One distribution's failures; and none in a range that ends before the worker ran.
    let rows = audit_json(filled, &["--failures", "--distribution", d]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["message_id"], filled.carol.as_str());
    assert!(audit_json(filled, &["--failures", "--since", "1ms"]).is_empty());

    let table = audit(filled, &["--failures"]);
    assert!(table.contains("1 batch(es)") && table.contains("2 dead-lettered message(s)"), "{table}");
    assert!(table.contains("NoSuchDistribution") && table.contains("invalid_path"), "{table}");
}

/// A table as `setup` created it before the audit indexes existed.
async fn create_old_table(config: &aws_config::SdkConfig) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    let table = common::unique("cfi-old-ledger");
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    let by_distribution = GlobalSecondaryIndex::builder()
        .index_name("by_distribution")
        .key_schema(key("distribution_id", KeyType::Hash))
        .key_schema(key("created_at", KeyType::Range))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .unwrap();
    aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk").unwrap())
        .attribute_definitions(attribute("distribution_id").unwrap())
        .attribute_definitions(attribute("created_at").unwrap())
        .key_schema(key("pk", KeyType::Hash))
        .global_secondary_indexes(by_distribution)
        .send()
        .await
        .unwrap();
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_adds_the_audit_indexes_to_a_table_an_older_version_created() {
    let Some(config) = common::emulator().await else { return };
    let table = create_old_table(&config).await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cf-invalidator"))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
            .output()
            .unwrap()
    };

    let refused = run(&["audit", "--table", &table, "--invalidation", "I1"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("lacks an index this version reads") && stderr.contains("cf-invalidator setup"),
        "{stderr}"
    );

    let setup = run(&["setup", "--queue-name", &common::unique("old"), "--table", &table]);
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let described = aws_sdk_dynamodb::Client::new(&config).describe_table().table_name(&table).send().await.unwrap();
    let mut indexes: Vec<&str> =
        described.table().unwrap().global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, ["by_board", "by_distribution", "by_invalidation", "by_list", "by_outcome", "by_tracking"]);
    for question in [["--invalidation", "I1"], ["--failures", "--json"]] {
        let answered = run(&["audit", "--table", &table, question[0], question[1]]);
        assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_counts_this_month_s_accepted_batches_once_each() {
    let Some(filled) = filled().await else { return };
    let chart = std::env::temp_dir().join(format!("{}.svg", common::unique("report")));
    let output = Command::new(env!("CARGO_BIN_EXE_cf-invalidator"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["report", "--table", &filled.table, "--json", "--plot"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    // Batch A: alice's two paths and bob's /img/* merged into /img/* and /index.html; batch B: erin's one path.
    // Dave's batch failed and carol's message was dead-lettered: neither is billed.
    // Exact deduplication alone would have sent alice's two paths and bob's wildcard: 3, and erin's 1.
    let expected = json!({"batches": 2, "messages": 3, "paths_requested": 4, "paths_distinct": 4, "paths_billed": 3, "wildcards": 1});
    assert_eq!(report["total"], expected, "{report}");
    // Batch A's two billed paths shared by what alice (2) and bob (1) requested: one each, the remainders decide.
    let requesters: Vec<(&str, u64, u64)> = report["requesters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["requester"].as_str().unwrap(),
                r["paths_requested"].as_u64().unwrap(),
                r["paths_billed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(requesters, [("alice", 2, 1), ("bob", 1, 1), ("erin", 1, 1)], "{report}");
    assert_eq!(report["distributions"][0]["distribution_id"], filled.distribution.as_str());
    assert_eq!(report["free_paths_left"], 997);
    assert_eq!(report["estimated_dollars"], 0.0);
    // No --role: every distribution is the worker's own account's.
    let own = (report["accounts"][0]["account"].as_str(), report["accounts"][0]["free_paths_left"].as_u64());
    assert_eq!((own, report["accounts"].as_array().map(Vec::len)), ((Some("own"), Some(997)), Some(1)), "{report}");
    // One day, or two if the run straddled midnight UTC: the daily series adds up to the month.
    let daily: u64 = report["days"].as_array().unwrap().iter().map(|d| d["paths_billed"].as_u64().unwrap()).sum();
    assert_eq!(daily, 3, "{report}");

    // The chart opens as an SVG of its size, with both panels' series and labelled axes.
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_file(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(r#"width="900""#) && svg.contains(r#"height="640""#));
    for label in ["day of the month (UTC)", "paths billed so far", "paths requested (one invalidation per message)"] {
        assert!(svg.contains(label), "{label} missing from the chart");
    }
    assert!(svg.contains("3 paths billed") || svg.contains("against the free tier: 3,"), "the month's total is drawn");
    assert!(svg.matches("<polyline").count() >= 4, "two series a panel and the free tier");
}

/// A role's account is billed from the month's counter the workers keep for it (`month#YYYY-MM#account#<id>`),
/// with its own free paths; the own account (STS on the emulator says 123456789012) from what that leaves of the
/// month's total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_bills_a_roles_account_from_its_own_counter() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let now = std::time::SystemTime::now();
    // A worker serving both accounts counts the own one's part as `own`; one serving only its own counts no part.
    // EOLD went through the role earlier in the month and has none now: only the counter knows it is the other's.
    let batches = [
        ("EOTHER", Some("111122223333"), 1_200),
        ("EOLD", Some("111122223333"), 100),
        ("EOWN", Some("own"), 3),
        ("EOWN", None, 2),
    ];
    for (distribution, account, paths) in batches {
        let paths: Vec<String> =
            (0..paths).map(|n| format!("/{distribution}/{}/{n}", account.unwrap_or("no-part"))).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let mut record = cf_invalidator::fake::pending_record(distribution, &paths, &["m"], now);
        (record.account, record.expires_at) = (account.map(str::to_owned), now + Duration::from_secs(3_600));
        ledger.record_intent(&record).await.unwrap();
        record
            .accept(&cf_invalidator::ports::Invalidation { id: common::unique("I"), status: "InProgress".into() }, now);
        ledger.record_outcome(&record).await.unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_cf-invalidator"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["report", "--table", &table, "--json", "--role", "EOTHER=arn:aws:iam::111122223333:role/cfi"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows: Vec<(&str, u64, u64)> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let field = |name: &str| a[name].as_u64().unwrap();
            (a["account"].as_str().unwrap(), field("paths_billed"), field("free_paths_left"))
        })
        .collect();
    assert_eq!(rows, [("own", 5, 995), ("111122223333", 1_300, 0)], "{report}");
    assert_eq!(report["estimated_dollars"], 1.5, "300 paths past the other account's free ones: {report}");
}
