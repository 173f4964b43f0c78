//! DynamoDB attribute values and back: times, numbers, strings, bounded lists. No I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, TTL_ATTRIBUTE};
use crate::ports::ledger::LedgerError;

pub(crate) fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Epoch seconds: the format DynamoDB's TTL requires.
pub(crate) fn epoch_seconds(time: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(time).as_secs().to_string())
}

pub(crate) fn epoch_millis(time: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(time).as_millis().to_string())
}

pub(crate) fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()?.parse().ok())
}

pub(crate) fn timestamp(time: SystemTime) -> AttributeValue {
    AttributeValue::S(humantime::format_rfc3339_millis(time).to_string())
}

/// Keeps the leading values that fit in `budget` bytes; says whether any were cut.
pub(crate) fn bounded_list<'a>(values: impl Iterator<Item = &'a str>, budget: usize) -> (AttributeValue, bool) {
    let mut used = 0;
    let mut kept = Vec::new();
    let mut truncated = false;
    for value in values {
        used += value.len();
        if used > budget {
            truncated = true;
            break;
        }
        kept.push(AttributeValue::S(value.to_owned()));
    }
    (AttributeValue::L(kept), truncated)
}

pub(crate) fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn time(item: &Item, name: &str) -> Option<SystemTime> {
    string(item, name).and_then(|raw| humantime::parse_rfc3339(&raw).ok())
}

pub(crate) fn strings(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        Some(AttributeValue::Ss(values)) => values.clone(),
        _ => Vec::new(),
    }
}

pub(crate) fn expiry(item: &Item) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(number(item, TTL_ATTRIBUTE).unwrap_or_default())
}

/// TTL deletes lazily (up to days later): readers check expiry themselves.
pub(crate) fn unexpired(item: &Item, now: SystemTime) -> bool {
    expiry(item) > now
}

pub(crate) fn malformed(kind: &str, item: &Item) -> LedgerError {
    LedgerError::Other(format!("ledger item is not a {kind}: {item:?}"))
}
