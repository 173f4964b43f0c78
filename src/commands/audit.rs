//! `cf-invalidator audit`: one question per run (docs/audit.md), a human table by default, one JSON object per
//! line with `--json`. Every JSON object has a `kind`: `batch`, `dead_letter` or `idempotency_key`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cf_invalidator::audit::{Question, Row, answer};
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::model::path::InvalidationPath;
use cf_invalidator::model::{CallerReference, MessageId, Target};
use cf_invalidator::ports::{BatchRecord, DeadLetterRecord, KeyRecord};
use serde_json::{Value, json};

use super::output::outln;
use crate::cli::AuditArgs;

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let question = question(&args, SystemTime::now())?;
    let config = super::aws_config().await?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), &args.table);
    let rows = answer(&ledger, question).await?;
    if args.json {
        for row in &rows {
            outln!("{}", as_json(row))?;
        }
        Ok(())
    } else {
        print_human(&rows)
    }
}

/// The question the flags ask; clap has already made sure at most one question flag is given.
fn question(args: &AuditArgs, now: SystemTime) -> anyhow::Result<Question> {
    // The ledger's timestamps start at the epoch; so does any look back.
    let since = now.checked_sub(args.since.into()).map_or(UNIX_EPOCH, |since| since.max(UNIX_EPOCH));
    let distribution = args.distribution.as_deref().map(super::parse_distribution).transpose()?;
    let limit = args.limit;
    Ok(if let Some(id) = &args.invalidation {
        Question::Invalidation(id.clone())
    } else if let Some(reference) = &args.caller_reference {
        Question::CallerReference(CallerReference::from_recorded(reference.clone()))
    } else if let Some(message) = &args.message {
        Question::Message { message: MessageId(message.clone()), distribution, since }
    } else if let Some(key) = &args.idempotency_key {
        let distribution = distribution.context("--idempotency-key needs --distribution: keys are per distribution")?;
        Question::IdempotencyKey { target: Target::new(distribution, args.tenant.clone()), key: key.clone(), since }
    } else if let Some(path) = &args.path {
        // Encoded as the worker encodes paths before it submits and records them.
        let path = InvalidationPath::parse(path).with_context(|| format!("--path {path:?}"))?;
        Question::Path { distribution: distribution.context("--path needs --distribution")?, path, since }
    } else if args.failures {
        Question::Failures { distribution, since, limit }
    } else {
        Question::Batches { distribution: distribution.context("--distribution is required")?, since, limit }
    })
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn as_json(row: &Row) -> Value {
    match row {
        Row::Batch(record) => batch_json(record),
        Row::Covering { path, covered_by, batch } => {
            let mut value = batch_json(batch);
            value["path"] = json!(path);
            value["covered_by"] = json!(covered_by);
            value["match"] = json!(if covered_by == path { "exact" } else { "wildcard" });
            value
        }
        Row::DeadLetter(record) => dead_letter_json(record),
        Row::Key(claim) => key_json(claim),
    }
}

fn batch_json(record: &BatchRecord) -> Value {
    let mut batch = json!({
        "kind": "batch",
        "distribution_id": record.distribution_id.as_str(),
        "caller_reference": record.caller_reference.as_str(),
        "created_at": time(record.created_at),
        "status": record.status.as_str(),
        "invalidation_id": record.invalidation_id,
        "cloudfront_status": record.cloudfront_status,
        "submitted_at": record.submitted_at.map(time),
        "completed_at": record.completed_at.map(time),
        "time_to_complete_ms": record.time_to_complete.map(millis),
        "paths": record.paths,
        "requested_paths": record.requested_paths,
        "message_ids": record.message_ids.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        "requesters": record.requesters,
        "seal_reason": record.seal_reason,
        "coalescing": record.coalescing,
        "failure": record.failure,
        "tracking_abandoned": record.tracking_abandoned,
        "verification": record.verification.as_ref().map(|v| json!({
            "outcome": v.outcome.as_str(),
            "at": time(v.at),
            "checked": v.checked,
            "fresh": v.fresh,
            "stale": v.stale,
            "errors": v.errors,
            "pops": v.pops,
            "stale_paths": v.stale_paths,
            "healed_by": v.healed_by,
            "warmed": v.warmed,
            "warm_failed": v.warm_failed,
        })),
    });
    // A tenant's batch names its tenant; a whole distribution's reads as it always has.
    if let Some(tenant) = &record.tenant_id {
        batch["tenant_id"] = tenant.as_str().into();
    }
    batch
}

fn dead_letter_json(record: &DeadLetterRecord) -> Value {
    json!({
        "kind": "dead_letter",
        "message_id": record.message_id.0,
        "created_at": time(record.created_at),
        "code": record.code,
        "reason": record.reason,
        "distribution_id": record.distribution_id.as_ref().map(|d| d.as_str()),
        "requester": record.requester,
    })
}

fn key_json(claim: &KeyRecord) -> Value {
    let mut key = json!({
        "kind": "idempotency_key",
        "key": claim.key,
        "message_id": claim.message_id.0,
        "distribution_id": claim.distribution_id.as_str(),
        "created_at": time(claim.created_at),
        "expires_at": time(claim.expires_at),
    });
    if let Some(tenant) = &claim.tenant_id {
        key["tenant_id"] = tenant.as_str().into();
    }
    key
}

/// Whole seconds (`1m 40s`), or milliseconds under a second.
fn short(duration: Duration) -> String {
    match duration.as_secs() {
        0 => format!("{}ms", duration.as_millis()),
        seconds => humantime::format_duration(Duration::from_secs(seconds)).to_string(),
    }
}

fn print_human(rows: &[Row]) -> anyhow::Result<()> {
    for row in rows {
        if let Row::Key(claim) = row {
            outln!(
                "idempotency key {:?}: first used by message {} (distribution {}) at {}; later messages with it for the same paths were deleted without an invalidation, others dead-lettered",
                claim.key,
                claim.message_id,
                Target::new(claim.distribution_id.clone(), claim.tenant_id.clone()),
                time(claim.created_at)
            )?;
        }
    }
    let batches = rows.iter().filter(|row| matches!(row, Row::Batch(_) | Row::Covering { .. })).count();
    let dead_letters: Vec<&DeadLetterRecord> =
        rows.iter().filter_map(|row| if let Row::DeadLetter(d) = row { Some(d) } else { None }).collect();
    if batches > 0 || dead_letters.is_empty() {
        print_batches(rows)?;
        outln!("{batches} batch(es)")?;
    }
    if !dead_letters.is_empty() {
        print_dead_letters(&dead_letters)?;
        outln!("{} dead-lettered message(s)", dead_letters.len())?;
    }
    Ok(())
}

/// Width of the requesters column: a longer list is cut, so the caller reference after it stays in line.
const REQUESTERS_WIDTH: usize = 20;

/// `text` in at most `width` characters, cut with an ellipsis.
fn column(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

fn print_batches(rows: &[Row]) -> anyhow::Result<()> {
    outln!(
        "{:<24}  {:<9}  {:<16}  {:<10}  {:>12}  {:>5}  {:>9}  {:>8}  {:<20}  CALLER REFERENCE",
        "CREATED",
        "STATUS",
        "INVALIDATION",
        "CF STATUS",
        "COMPLETED IN",
        "PATHS",
        "REQUESTED",
        "MESSAGES",
        "REQUESTERS"
    )?;
    for row in rows {
        let (record, coverage) = match row {
            Row::Batch(record) => (record, None),
            Row::Covering { path, covered_by, batch } => (batch, Some((path, covered_by))),
            Row::DeadLetter(_) | Row::Key(_) => continue,
        };
        outln!(
            "{:<24}  {:<9}  {:<16}  {:<10}  {:>12}  {:>5}  {:>9}  {:>8}  {:<20}  {}",
            time(record.created_at),
            record.status.as_str(),
            record.invalidation_id.as_deref().unwrap_or("-"),
            record.cloudfront_status.as_deref().unwrap_or("-"),
            record.time_to_complete.map_or_else(|| "-".to_owned(), short),
            record.paths.len(),
            record.requested_paths,
            record.message_ids.len(),
            column(&record.requesters.join(","), REQUESTERS_WIDTH),
            record.caller_reference,
        )?;
        if record.requesters.join(",").chars().count() > REQUESTERS_WIDTH {
            outln!("    requesters: {}", record.requesters.join(", "))?;
        }
        if let Some(failure) = &record.failure {
            outln!("    failure: {failure}")?;
        }
        if let Some(reason) = &record.tracking_abandoned {
            outln!("    completion not tracked: {reason}")?;
        }
        if let Some(coalescing) = &record.coalescing {
            outln!("    coalesced: {coalescing}")?;
        }
        if let Some(verification) = &record.verification {
            outln!("    edge: {}", verification.summary())?;
        }
        if let Some((path, covered_by)) = coverage {
            let how = if covered_by == path { "exactly" } else { "by the wildcard" };
            outln!("    {path} invalidated {how} {covered_by}")?;
            if record.verification.as_ref().is_some_and(|v| v.stale_paths.contains(path)) {
                outln!("    {path} was seen stale at the edge")?;
            }
        }
    }
    Ok(())
}

/// Width of the requester column of dead letters.
const REQUESTER_WIDTH: usize = 16;

fn print_dead_letters(records: &[&DeadLetterRecord]) -> anyhow::Result<()> {
    outln!("{:<24}  {:<24}  {:<16}  {:<16}  MESSAGE ID", "DEAD-LETTERED", "CODE", "DISTRIBUTION", "REQUESTER")?;
    for record in records {
        let requester = record.requester.as_deref().unwrap_or("-");
        outln!(
            "{:<24}  {:<24}  {:<16}  {:<16}  {}",
            time(record.created_at),
            record.code,
            record.distribution_id.as_ref().map_or("-", |d| d.as_str()),
            column(requester, REQUESTER_WIDTH),
            record.message_id,
        )?;
        if requester.chars().count() > REQUESTER_WIDTH {
            outln!("    requester: {requester}")?;
        }
        outln!("    reason: {}", record.reason)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn ask(args: &[&str]) -> Result<Question, String> {
        let cli = Cli::try_parse_from(["cf-invalidator", "audit", "--table", "t"].iter().chain(args))
            .map_err(|e| e.kind().to_string())?;
        let Command::Audit(audit) = cli.command else { unreachable!() };
        question(&audit, UNIX_EPOCH + Duration::from_secs(100_000)).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn each_flag_asks_its_question() {
        let since = UNIX_EPOCH + Duration::from_secs(100_000 - 3_600);
        assert!(
            matches!(ask(&["--distribution", "EAAA", "--since", "1h"]), Ok(Question::Batches { since: s, limit: 100, .. }) if s == since)
        );
        assert_eq!(ask(&["--invalidation", "I1"]), Ok(Question::Invalidation("I1".into())));
        assert!(matches!(ask(&["--caller-reference", "cfi-1"]), Ok(Question::CallerReference(_))));
        assert!(matches!(ask(&["--message", "m-1"]), Ok(Question::Message { distribution: None, .. })));
        assert!(matches!(
            ask(&["--message", "m-1", "--distribution", "EAAA"]),
            Ok(Question::Message { distribution: Some(_), .. })
        ));
        assert!(matches!(
            ask(&["--idempotency-key", "k", "--distribution", "EAAA"]),
            Ok(Question::IdempotencyKey { key, target, .. }) if key == "k" && target.tenant.is_none()
        ));
        assert!(matches!(
            ask(&["--idempotency-key", "k", "--distribution", "EAAA", "--tenant", "dt_shop1"]),
            Ok(Question::IdempotencyKey { target, .. }) if target.to_string() == "EAAA/dt_shop1"
        ));
        let path = ask(&["--path", "/a b", "--distribution", "EAAA"]);
        assert!(matches!(&path, Ok(Question::Path { path, .. }) if path.as_str() == "/a%20b"), "{path:?}");
        assert!(matches!(ask(&["--failures"]), Ok(Question::Failures { distribution: None, .. })));
        assert!(matches!(ask(&["--since", "100y", "--failures"]), Ok(Question::Failures { since: UNIX_EPOCH, .. })));
    }

    #[test]
    fn refuses_ambiguous_or_incomplete_questions() {
        assert!(ask(&["--invalidation", "I1", "--failures"]).unwrap_err().contains("cannot be used with"));
        assert!(ask(&["--path", "/a"]).unwrap_err().contains("required"));
        assert!(ask(&[]).unwrap_err().contains("required"));
        assert!(ask(&["--path", "no-slash", "--distribution", "EAAA"]).unwrap_err().contains("--path"));
        assert!(ask(&["--distribution", "EAAA", "--tenant", "dt_shop1"]).unwrap_err().contains("required"));
    }

    #[test]
    fn a_long_text_is_cut_to_its_column() {
        assert_eq!(column("ci", 4), "ci");
        assert_eq!(column("github:org/repo@0123456789abcdef", 12), "github:org/…");
        assert_eq!(column("ééééé", 4).chars().count(), 4);
    }

    #[test]
    fn durations_read_shortly() {
        assert_eq!(short(Duration::from_millis(250)), "250ms");
        assert_eq!(short(Duration::from_millis(100_900)), "1m 40s");
    }
}
