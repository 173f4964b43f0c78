use std::time::SystemTime;

use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::ports::{BatchRecord, Ledger};

use crate::cli::AuditArgs;

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let distribution = super::parse_distribution(&args.distribution)?;
    let config = super::aws_config().await?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), &args.table);
    let since = SystemTime::now() - std::time::Duration::from(args.since);
    let records = ledger.list(&distribution, since, args.limit).await?;
    if args.json {
        for record in &records {
            println!("{}", as_json(record));
        }
    } else {
        print_table(&records);
    }
    Ok(())
}

fn time(at: Option<SystemTime>) -> String {
    at.map(|t| humantime::format_rfc3339_millis(t).to_string()).unwrap_or_default()
}

fn as_json(record: &BatchRecord) -> serde_json::Value {
    serde_json::json!({
        "distribution_id": record.distribution_id.as_str(),
        "caller_reference": record.caller_reference.as_str(),
        "created_at": time(Some(record.created_at)),
        "status": record.status.as_str(),
        "invalidation_id": record.invalidation_id,
        "cloudfront_status": record.cloudfront_status,
        "submitted_at": record.submitted_at.map(|t| time(Some(t))),
        "paths": record.paths,
        "requested_paths": record.requested_paths,
        "message_ids": record.message_ids.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        "requesters": record.requesters,
        "seal_reason": record.seal_reason,
        "failure": record.failure,
    })
}

fn print_table(records: &[BatchRecord]) {
    println!(
        "{:<24}  {:<8}  {:<16}  {:<10}  {:>5}  {:>9}  {:>8}  {:<20}  CALLER REFERENCE",
        "CREATED", "STATUS", "INVALIDATION", "CF STATUS", "PATHS", "REQUESTED", "MESSAGES", "REQUESTERS"
    );
    for r in records {
        println!(
            "{:<24}  {:<8}  {:<16}  {:<10}  {:>5}  {:>9}  {:>8}  {:<20}  {}",
            time(Some(r.created_at)),
            r.status.as_str(),
            r.invalidation_id.as_deref().unwrap_or("-"),
            r.cloudfront_status.as_deref().unwrap_or("-"),
            r.paths.len(),
            r.requested_paths,
            r.message_ids.len(),
            r.requesters.join(","),
            r.caller_reference,
        );
        if let Some(failure) = &r.failure {
            println!("    failure: {failure}");
        }
    }
    println!("{} batch(es)", records.len());
}
