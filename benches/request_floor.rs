//! The CPU one AWS request costs through the Rust SDK, beside boto3 making the same request, against the local
//! emulator: the floor under the emulator benchmark's CPU per message (scripts/bench-emulator), which is this
//! times the requests a message costs.
//!
//! ```sh
//! eval "$(scripts/emulator start)"; cargo bench --bench request_floor; scripts/emulator stop
//! ```
//!
//! Sequential DynamoDB GetItem calls on one client, the SDK configured as the worker configures it
//! (`cf_invalidator::aws::load_config`), on a current-thread runtime (the worker's default) and on a two-thread
//! one; boto3 runs the same loop in a child process. The three alternate, and each reports the CPU (user + system)
//! its process spent in the loop. Without an emulator on loopback it prints why and does nothing, or fails under
//! CFI_REQUIRE_EMULATOR (which scripts/test sets); under `cargo test --all-targets` (no `--bench` argument) it
//! makes a few calls of each kind and times nothing.

use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

const WARM_UP: usize = 50;

const BOTO3_LOOP: &str = r#"
import sys, time, boto3
table, calls, warm_up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = boto3.client("dynamodb")
key = {"pk": {"S": "floor"}}
for _ in range(warm_up):
    client.get_item(TableName=table, Key=key)
start = time.process_time()
for _ in range(calls):
    client.get_item(TableName=table, Key=key)
print(time.process_time() - start)
"#;

fn main() {
    let Some(python) = emulator_python() else {
        // scripts/test starts an emulator and sets CFI_REQUIRE_EMULATOR: there, a skip would hide a broken setup.
        assert!(
            std::env::var_os("CFI_REQUIRE_EMULATOR").is_none(),
            "request_floor: CFI_REQUIRE_EMULATOR is set but no emulator is configured (AWS_ENDPOINT_URL on loopback \
             and CFI_EMULATOR_PYTHON)"
        );
        println!("request_floor: skipped, it needs the emulator: eval \"$(scripts/emulator start)\" first");
        return;
    };
    let benching = std::env::args().any(|a| a == "--bench");
    let (calls, rounds) = if benching { (2_000, 3) } else { (5, 1) };
    let table = format!("request-floor-{}", std::process::id());
    runtime(1).block_on(create_table(&table));
    let mut results: [(&str, Vec<f64>); 3] =
        [("Rust SDK, 1 thread", vec![]), ("Rust SDK, 2 threads", vec![]), ("boto3", vec![])];
    for round in 1..=rounds {
        results[0].1.push(rust_loop(1, &table, calls));
        results[1].1.push(rust_loop(2, &table, calls));
        results[2].1.push(boto3_loop(&python, &table, calls));
        let per_call: Vec<String> =
            results.iter().map(|(_, r)| format!("{:.0}", r[round - 1] * 1e6 / calls as f64)).collect();
        println!("round {round}: µs CPU per GetItem (Rust 1 thread, Rust 2 threads, boto3): {}", per_call.join(", "));
    }
    if !benching {
        return;
    }
    let boto3 = median(&results[2].1);
    println!("medians of {rounds} rounds of {calls} sequential GetItem calls:");
    for (name, seconds) in &results {
        let median = median(seconds);
        println!(
            "  {name:<20} {:>6.0} µs CPU per call, 1/{:.1} of boto3's",
            median * 1e6 / calls as f64,
            boto3 / median
        );
    }
}

fn emulator_python() -> Option<String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok()?;
    let on_loopback = endpoint.starts_with("http://127.") || endpoint.starts_with("http://localhost");
    on_loopback.then(|| std::env::var("CFI_EMULATOR_PYTHON").ok()).flatten()
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    cf_invalidator::worker::runtime(threads).expect("a tokio runtime")
}

async fn client() -> Client {
    Client::new(&cf_invalidator::aws::load_config().await)
}

async fn create_table(table: &str) {
    client()
        .await
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the table on the emulator");
}

/// CPU seconds the whole process spent in `calls` GetItem calls on a runtime of `threads` threads.
fn rust_loop(threads: usize, table: &str, calls: usize) -> f64 {
    let runtime = runtime(threads);
    let seconds = runtime.block_on(async {
        let client = client().await;
        let get = || client.get_item().table_name(table).key("pk", AttributeValue::S("floor".into())).send();
        for _ in 0..WARM_UP {
            get().await.expect("GetItem on the emulator");
        }
        let start = process_cpu_seconds();
        for _ in 0..calls {
            get().await.expect("GetItem on the emulator");
        }
        process_cpu_seconds() - start
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    seconds
}

fn boto3_loop(python: &str, table: &str, calls: usize) -> f64 {
    let output = Command::new(python)
        .args(["-c", BOTO3_LOOP, table, &calls.to_string(), &WARM_UP.to_string()])
        .output()
        .expect("run the boto3 loop");
    assert!(output.status.success(), "boto3 loop failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("the boto3 loop prints its CPU seconds")
}

/// utime + stime of this process, all threads, from /proc (clock ticks of 10 ms: hence thousands of calls).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
