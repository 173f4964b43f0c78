//! Ledger records as DynamoDB items and back: keys, records, bounded texts. No I/O.

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::model::text::capped;

use super::attribute::*;
use super::*;
use crate::ports::audit::BatchSummary;
use crate::ports::ledger::{EdgeOutcome, Requester, RequesterShare, Submitted};
use sha2::{Digest, Sha256};

pub(super) fn key_of(caller_reference: &CallerReference) -> AttributeValue {
    AttributeValue::S(format!("batch#{caller_reference}"))
}

/// `lease#<CallerReference>`: who submits a pending batch, and until when.
pub(super) fn lease_key(caller_reference: &CallerReference) -> AttributeValue {
    AttributeValue::S(format!("lease#{caller_reference}"))
}

/// A new batch's lease: its owner until `lease_until`, kept a while after it ends (the lease of an accepted
/// batch is never renewed, and TTL removes it).
pub(super) fn lease_item(record: &BatchRecord) -> Item {
    Item::from([
        (KEY.into(), lease_key(&record.caller_reference)),
        ("owner".into(), AttributeValue::S(record.owner.clone())),
        ("lease_until".into(), epoch_millis(record.lease_until)),
        (TTL_ATTRIBUTE.into(), epoch_seconds(record.lease_until + LEASE_ITEM_RETENTION)),
    ])
}

/// Neither a distribution id nor a tenant id holds a `#`, so the key after the target is unambiguous.
pub(super) fn key_item_key(target: &Target, key: &str) -> AttributeValue {
    AttributeValue::S(format!("key#{target}#{key}"))
}

/// `day#YYYY-MM-DD`: one day's totals.
pub(super) fn day_key(day: &str) -> AttributeValue {
    AttributeValue::S(format!("day#{day}"))
}

/// One requester's part of a month: `month#YYYY-MM#requester#<SHA-256 of the name>` for a named one (a key of
/// fixed size whatever the name, and one per name: two names sharing a long prefix never share an item), and
/// `month#YYYY-MM#requesters#unnamed` or `…#others` for the rows no producer can name. A distribution id holds no
/// `#`, so none of these names a distribution's item.
pub(super) fn requester_month_key(month: &str, requester: &Requester) -> AttributeValue {
    AttributeValue::S(match requester {
        Requester::Named(name) => {
            let digest: String = Sha256::digest(name.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
            format!("month#{month}#requester#{digest}")
        }
        Requester::Unnamed => format!("month#{month}#requesters#unnamed"),
        Requester::Others => format!("month#{month}#requesters#others"),
    })
}

/// Which requester a month's counter item is of (`requester_month_key`); named ones carry the name.
pub(super) fn requester_from(item: &Item) -> Option<Requester> {
    let key = string(item, KEY)?;
    if key.ends_with("#requesters#unnamed") {
        Some(Requester::Unnamed)
    } else if key.ends_with("#requesters#others") {
        Some(Requester::Others)
    } else {
        string(item, "requester").map(Requester::Named)
    }
}

/// One tenant's part of its distribution's month: `month#YYYY-MM#<DistributionId>/<TenantId>`, ranked in the
/// month's tenants list. Neither id holds a `#` or a `/`.
pub(super) fn tenant_month_key(month: &str, target: &Target) -> AttributeValue {
    AttributeValue::S(format!("month#{month}#{target}"))
}

/// The tenant a `tenant_month_key` item counts.
pub(super) fn tenant_from(item: &Item) -> Option<Target> {
    Target::parse(string(item, KEY)?.rsplit('#').next()?).filter(|target| target.tenant.is_some())
}

/// The `by_list` list of a month's per-tenant counters.
pub(super) fn tenants_list(month: &str) -> String {
    format!("{month}#tenants")
}

/// The `by_list` list of a month's per-distribution counters.
pub(super) fn distributions_list(month: &str) -> String {
    format!("{month}#distributions")
}

/// The `by_list` list of a month's per-requester counters.
pub(super) fn requesters_list(month: &str) -> String {
    format!("{month}#requesters")
}

/// `month#YYYY-MM` for the month's totals, `month#YYYY-MM#<DistributionId>` for one distribution's.
pub(super) fn month_key(month: &str, distribution: Option<&DistributionId>) -> AttributeValue {
    match distribution {
        Some(distribution) => AttributeValue::S(format!("month#{month}#{distribution}")),
        None => AttributeValue::S(format!("month#{month}")),
    }
}

/// One account's part of a month, when the worker serves more than one (`BatchRecord::account`):
/// `month#YYYY-MM#account#<own or 12-digit id>`. Not ranked in any list: one per configured account.
pub(super) fn account_month_key(month: &str, account: &str) -> AttributeValue {
    AttributeValue::S(format!("month#{month}#account#{account}"))
}

/// The item a monthly cap counts in: the account's, or the month's total.
pub(super) fn cap_key(cap: &MonthCap) -> AttributeValue {
    match &cap.account {
        Some(account) => account_month_key(&cap.month, account),
        None => month_key(&cap.month, None),
    }
}

pub(super) fn number_of(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A month item's counters.
pub(super) fn billing_from(item: &Item) -> Billing {
    let counter = |name| number(item, name).unwrap_or_default();
    Billing {
        batches: counter("batches"),
        messages: counter("messages"),
        paths_billed: counter("paths_billed"),
        paths_requested: counter("paths_requested"),
        paths_distinct: counter("paths_distinct"),
        wildcards: counter("wildcards"),
    }
}

pub(super) fn intent_item(record: &BatchRecord) -> Item {
    let (paths, paths_truncated) = bounded_list(record.paths.iter().map(String::as_str), MAX_PATH_BYTES);
    let (message_ids, ids_truncated) =
        bounded_list(record.message_ids.iter().map(|m| m.0.as_str()), MAX_MESSAGE_ID_BYTES);
    let mut item = Item::from([
        (KEY.into(), key_of(&record.caller_reference)),
        ("caller_reference".into(), AttributeValue::S(record.caller_reference.to_string())),
        ("distribution_id".into(), AttributeValue::S(record.distribution_id.to_string())),
        ("created_at".into(), timestamp(record.created_at)),
        ("status".into(), AttributeValue::S(record.status.as_str().into())),
        ("paths".into(), paths),
        ("path_count".into(), AttributeValue::N(record.paths.len().to_string())),
        ("requested_paths".into(), AttributeValue::N(record.requested_paths.to_string())),
        ("distinct_paths".into(), AttributeValue::N(record.distinct_paths.to_string())),
        ("message_ids".into(), message_ids),
        ("message_count".into(), AttributeValue::N(record.message_ids.len().to_string())),
        ("seal_reason".into(), AttributeValue::S(record.seal_reason.clone())),
        ("owner".into(), AttributeValue::S(record.owner.clone())),
        ("sealed_by".into(), AttributeValue::S(record.sealed_by.clone())),
        ("lease_until".into(), epoch_millis(record.lease_until)),
        (TTL_ATTRIBUTE.into(), epoch_seconds(record.expires_at)),
        (BOARD.into(), AttributeValue::S(BOARD_PENDING.into())),
    ]);
    if let Some(tenant) = &record.tenant_id {
        item.insert("tenant_id".into(), AttributeValue::S(tenant.to_string()));
    }
    if let Some(account) = &record.account {
        item.insert("account".into(), AttributeValue::S(account.clone()));
    }
    for (name, texts) in [("requesters", &record.requesters), ("idempotency_keys", &record.idempotency_keys)] {
        let kept = texts_within_limits(texts);
        if !kept.is_empty() {
            item.insert(name.into(), AttributeValue::Ss(kept));
        }
    }
    if let Some(coalescing) = &record.coalescing {
        item.insert("coalescing".into(), AttributeValue::S(capped(coalescing, MAX_REASON_BYTES)));
    }
    if !record.shares.is_empty() {
        item.insert("requester_shares".into(), shares_attribute(&record.shares));
    }
    if record.awaited {
        item.insert("awaited".into(), AttributeValue::Bool(true));
    }
    if paths_truncated {
        item.insert("paths_truncated".into(), AttributeValue::Bool(true));
    }
    if ids_truncated {
        item.insert("message_ids_truncated".into(), AttributeValue::Bool(true));
    }
    item
}

/// Producers' free texts (requesters, idempotency keys), each and all together bounded so that no producer can
/// push a batch record over the item limit.
pub(super) fn texts_within_limits(requesters: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut used = 0;
    for requester in requesters {
        let short = capped(requester, MAX_REQUESTER_BYTES);
        used += short.len();
        if used > REQUESTERS_BYTES {
            break;
        }
        // A string set holds distinct values: two requesters that agree on their first bytes are one.
        if !kept.contains(&short) {
            kept.push(short);
        }
    }
    kept
}

/// At most `MAX_SHARES` entries, each name cut to MAX_REQUESTER_BYTES (256 characters may be 1 KB of UTF-8):
/// bounded like the other producer texts. The rows no producer names carry `kind` instead of a name.
fn shares_attribute(shares: &[RequesterShare]) -> AttributeValue {
    let share = |s: &RequesterShare| {
        let who = match &s.requester {
            Requester::Named(name) => ("requester", name.as_str()),
            Requester::Unnamed => ("kind", SHARE_UNNAMED),
            Requester::Others => ("kind", SHARE_OTHERS),
        };
        AttributeValue::M(HashMap::from([
            (who.0.to_owned(), AttributeValue::S(capped(who.1, MAX_REQUESTER_BYTES))),
            ("messages".to_owned(), number_of(s.messages)),
            ("paths_requested".to_owned(), number_of(s.paths_requested)),
        ]))
    };
    AttributeValue::L(shares.iter().map(share).collect())
}

const SHARE_UNNAMED: &str = "unnamed";
const SHARE_OTHERS: &str = "others";

fn shares_from(item: &Item) -> Vec<RequesterShare> {
    let Some(AttributeValue::L(shares)) = item.get("requester_shares") else {
        return Vec::new();
    };
    shares
        .iter()
        .filter_map(|share| {
            let share = share.as_m().ok()?;
            let requester = match string(share, "kind").as_deref() {
                Some(SHARE_UNNAMED) => Requester::Unnamed,
                Some(SHARE_OTHERS) => Requester::Others,
                _ => Requester::Named(string(share, "requester")?),
            };
            Some(RequesterShare {
                requester,
                messages: number(share, "messages")?,
                paths_requested: number(share, "paths_requested")?,
            })
        })
        .collect()
}

pub(crate) fn record_from(item: &Item) -> Result<BatchRecord, LedgerError> {
    let not_a_batch = || malformed("batch record", item);
    let distribution_id = string(item, "distribution_id").and_then(|d| DistributionId::parse(&d).ok());
    let paths = strings(item, "paths");
    Ok(BatchRecord {
        caller_reference: CallerReference::from_recorded(string(item, "caller_reference").ok_or_else(not_a_batch)?),
        distribution_id: distribution_id.ok_or_else(not_a_batch)?,
        tenant_id: tenant_of(item),
        account: string(item, "account"),
        // Records from before it was kept: as if nothing had repeated.
        distinct_paths: number(item, "distinct_paths").map_or(paths.len(), |n| n as usize),
        paths,
        message_ids: strings(item, "message_ids").into_iter().map(MessageId).collect(),
        requesters: strings(item, "requesters"),
        shares: shares_from(item),
        idempotency_keys: strings(item, "idempotency_keys"),
        requested_paths: item.get("requested_paths").and_then(|v| v.as_n().ok()?.parse().ok()).unwrap_or_default(),
        seal_reason: string(item, "seal_reason").unwrap_or_default(),
        coalescing: string(item, "coalescing"),
        created_at: time(item, "created_at").ok_or_else(not_a_batch)?,
        status: string(item, "status").and_then(|s| BatchStatus::parse(&s)).ok_or_else(not_a_batch)?,
        invalidation_id: string(item, "invalidation_id"),
        cloudfront_status: string(item, "cloudfront_status"),
        submitted_at: time(item, "submitted_at"),
        completed_at: time(item, "completed_at"),
        time_to_complete: number(item, "time_to_complete_ms").map(Duration::from_millis),
        failure: string(item, "failure"),
        owner: string(item, "owner").unwrap_or_default(),
        sealed_by: string(item, "sealed_by").unwrap_or_default(),
        awaited: item.get("awaited").and_then(|v| v.as_bool().ok()).copied().unwrap_or_default(),
        lease_until: UNIX_EPOCH + Duration::from_millis(number(item, "lease_until").unwrap_or_default()),
        expires_at: expiry(item),
        published: published(item),
        outbox: false,
        tracking_abandoned: string(item, TRACKING_ABANDONED),
        verification: verification_from(item),
    })
}

/// A batch's check at the edge as the map its record keeps (`VerificationRecord::bounded` keeps it small).
pub(super) fn verification_item(verification: &VerificationRecord) -> AttributeValue {
    let list = |texts: &[String]| AttributeValue::L(texts.iter().cloned().map(AttributeValue::S).collect());
    let mut map = Item::from([
        ("outcome".into(), AttributeValue::S(verification.outcome.as_str().into())),
        ("at".into(), timestamp(verification.at)),
        ("checked".into(), number_of(verification.checked.into())),
        ("fresh".into(), number_of(verification.fresh.into())),
        ("stale".into(), number_of(verification.stale.into())),
        ("errors".into(), number_of(verification.errors.into())),
        ("pops".into(), list(&verification.pops)),
        ("stale_paths".into(), list(&verification.stale_paths)),
    ]);
    let optional = [
        ("healed_by", verification.healed_by.clone().map(AttributeValue::S)),
        ("warmed", verification.warmed.map(|n| number_of(n.into()))),
        ("warm_failed", verification.warm_failed.map(|n| number_of(n.into()))),
    ];
    map.extend(optional.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))));
    AttributeValue::M(map)
}

/// A record's check at the edge; none when it has none, or one this version cannot read.
fn verification_from(item: &Item) -> Option<VerificationRecord> {
    let map = item.get("verification")?.as_m().ok()?;
    let count = |name| number(map, name).and_then(|n| u32::try_from(n).ok());
    Some(VerificationRecord {
        outcome: string(map, "outcome").and_then(|raw| EdgeOutcome::parse(&raw))?,
        at: time(map, "at")?,
        checked: count("checked")?,
        fresh: count("fresh")?,
        stale: count("stale")?,
        errors: count("errors")?,
        pops: strings(map, "pops"),
        stale_paths: strings(map, "stale_paths"),
        healed_by: string(map, "healed_by"),
        warmed: count("warmed"),
        warm_failed: count("warm_failed"),
    })
}

/// A batch as the `by_board` index projects it.
pub(super) fn summary_from(item: &Item) -> Result<BatchSummary, LedgerError> {
    let not_a_batch = || malformed("batch summary", item);
    let distribution_id = string(item, "distribution_id").and_then(|d| DistributionId::parse(&d).ok());
    Ok(BatchSummary {
        caller_reference: CallerReference::from_recorded(string(item, "caller_reference").ok_or_else(not_a_batch)?),
        distribution_id: distribution_id.ok_or_else(not_a_batch)?,
        created_at: time(item, "created_at").ok_or_else(not_a_batch)?,
        status: string(item, "status").and_then(|s| BatchStatus::parse(&s)).ok_or_else(not_a_batch)?,
        path_count: number(item, "path_count").unwrap_or_default() as usize,
        requesters: strings(item, "requesters"),
        invalidation_id: string(item, "invalidation_id"),
        submitted_at: time(item, "submitted_at"),
        time_to_complete: number(item, "time_to_complete_ms").map(Duration::from_millis),
        owner: string(item, "owner").unwrap_or_default(),
        lease_until: UNIX_EPOCH + Duration::from_millis(number(item, "lease_until").unwrap_or_default()),
    })
}

/// What a `by_tracking` entry owes: a dead letter's event, a failed batch's, or a batch to track.
pub(super) fn owed_from(item: &Item) -> Result<Owed, LedgerError> {
    let not_tracked = || malformed("tracked item", item);
    let key = string(item, KEY).ok_or_else(not_tracked)?;
    let created_at = time(item, "created_at").ok_or_else(not_tracked)?;
    if let Some(message_id) = key.strip_prefix("dlq#") {
        return Ok(Owed::DeadLetter { message_id: MessageId(message_id.to_owned()), created_at });
    }
    if string(item, "status").as_deref() == Some(BatchStatus::Failed.as_str()) {
        let caller_reference = string(item, "caller_reference").ok_or_else(not_tracked)?;
        return Ok(Owed::Failure { caller_reference: CallerReference::from_recorded(caller_reference), created_at });
    }
    submitted_from(item).map(Owed::Batch)
}

/// An accepted batch as the `by_tracking` index projects it.
fn submitted_from(item: &Item) -> Result<Submitted, LedgerError> {
    let not_tracked = || malformed("tracked batch", item);
    let distribution_id = string(item, "distribution_id").and_then(|d| DistributionId::parse(&d).ok());
    Ok(Submitted {
        caller_reference: CallerReference::from_recorded(string(item, "caller_reference").ok_or_else(not_tracked)?),
        distribution_id: distribution_id.ok_or_else(not_tracked)?,
        tenant_id: tenant_of(item),
        invalidation_id: string(item, "invalidation_id").ok_or_else(not_tracked)?,
        submitted_at: time(item, "submitted_at").ok_or_else(not_tracked)?,
        status: string(item, "status").and_then(|s| BatchStatus::parse(&s)).ok_or_else(not_tracked)?,
        published: published(item),
        awaited: false,
    })
}

/// The tenant a batch invalidates; none for a whole distribution.
fn tenant_of(item: &Item) -> Option<TenantId> {
    string(item, "tenant_id").and_then(|t| TenantId::parse(&t).ok())
}

/// The events recorded as published (a string set).
fn published(item: &Item) -> Vec<EventKind> {
    let mut kinds: Vec<EventKind> = strings(item, PUBLISHED).iter().filter_map(|k| EventKind::parse(k)).collect();
    kinds.sort_unstable();
    kinds
}

pub(super) fn key_record_from(target: &Target, key: &str, item: &Item) -> Result<KeyRecord, LedgerError> {
    Ok(KeyRecord {
        key: key.to_owned(),
        message_id: MessageId(string(item, "message_id").ok_or_else(|| malformed("key claim", item))?),
        distribution_id: target.distribution.clone(),
        tenant_id: target.tenant.clone(),
        created_at: time(item, "created_at").ok_or_else(|| malformed("key claim", item))?,
        expires_at: expiry(item),
    })
}
