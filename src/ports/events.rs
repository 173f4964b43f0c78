//! Where batch events go (SNS or EventBridge), and what they say (schema/event.v1.json).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::path::count_wildcards;
use crate::ports::ledger::{BatchRecord, BatchStatus, DeadLetterRecord, VerificationRecord};
use crate::retry::Transient;

/// What happened, as the `kind` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Accepted,
    Completed,
    /// CloudFront refused the batch for good; its messages were dead-lettered.
    Failed,
    /// A message was refused before it reached a batch (or with its batch), and went to the dead-letter queue.
    DeadLettered,
    /// After completion, the edge was seen serving the new objects (`--verify-edge`), at once or after the second
    /// invalidation.
    Verified,
    /// The edge still served old copies after the second invalidation; nothing more is tried.
    Stale,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Verified => "verified",
            Self::Stale => "stale",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Accepted, Self::Completed, Self::Failed, Self::DeadLettered, Self::Verified, Self::Stale]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The events a batch in `status` is owed, in the order they happened.
    pub fn owed_by(status: BatchStatus) -> &'static [EventKind] {
        match status {
            BatchStatus::Pending => &[],
            BatchStatus::Failed => &[Self::Failed],
            BatchStatus::Accepted => &[Self::Accepted],
            BatchStatus::Completed => &[Self::Accepted, Self::Completed],
        }
    }
}

/// One event, version 1. Consumers ignore fields they do not know, and deduplicate on `caller_reference` and
/// `kind`: an event may be delivered more than once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub version: u32,
    pub kind: EventKind,
    /// Of a batch; for a dead letter, the distribution its body named, if a valid one.
    pub distribution_id: Option<String>,
    /// Of a tenant's batch: the tenant invalidated instead of the whole distribution (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub invalidation_id: Option<String>,
    /// Of a batch; none for a dead letter.
    pub caller_reference: Option<String>,
    pub message_ids: Vec<String>,
    pub idempotency_keys: Vec<String>,
    pub requesters: Vec<String>,
    /// Paths and tags submitted, wildcards among them, and paths the messages asked for before merging.
    pub paths: usize,
    pub wildcards: usize,
    pub requested_paths: usize,
    /// RFC 3339: when the batch was sealed, accepted by CloudFront, and seen completed.
    pub created_at: String,
    pub submitted_at: Option<String>,
    pub completed_at: Option<String>,
    pub time_to_complete_ms: Option<u64>,
    /// Why a batch failed or a message was dead-lettered.
    pub reason: Option<String>,
    /// Of `verified` and `stale`: the check at the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<EdgeSummary>,
}

/// What a `verified` or `stale` event says of the check at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSummary {
    pub outcome: String,
    /// RFC 3339: when the last answer came.
    pub at: String,
    pub checked: u32,
    pub fresh: u32,
    pub stale: u32,
    pub pops: Vec<String>,
    pub stale_paths: Vec<String>,
}

impl Event {
    pub fn of(kind: EventKind, record: &BatchRecord) -> Self {
        let completed = kind == EventKind::Completed;
        Self {
            version: 1,
            kind,
            distribution_id: Some(record.distribution_id.to_string()),
            tenant_id: record.tenant_id.as_ref().map(ToString::to_string),
            invalidation_id: record.invalidation_id.clone(),
            caller_reference: Some(record.caller_reference.to_string()),
            message_ids: record.message_ids.iter().map(|m| m.0.clone()).collect(),
            idempotency_keys: record.idempotency_keys.clone(),
            requesters: record.requesters.clone(),
            paths: record.paths.len(),
            wildcards: count_wildcards(&record.paths),
            requested_paths: record.requested_paths,
            created_at: rfc3339(record.created_at),
            submitted_at: record.submitted_at.map(rfc3339),
            completed_at: record.completed_at.filter(|_| completed).map(rfc3339),
            time_to_complete_ms: record
                .time_to_complete
                .filter(|_| completed)
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            reason: record.failure.clone().filter(|_| kind == EventKind::Failed),
            verification: None,
        }
    }

    /// A `verified` or `stale` event of a batch's check at the edge.
    pub fn of_verification(kind: EventKind, record: &BatchRecord, verified: &VerificationRecord) -> Self {
        let summary = EdgeSummary {
            outcome: verified.outcome.as_str().to_owned(),
            at: rfc3339(verified.at),
            checked: verified.checked,
            fresh: verified.fresh,
            stale: verified.stale,
            pops: verified.pops.clone(),
            stale_paths: verified.stale_paths.clone(),
        };
        Self { verification: Some(summary), ..Self::of(kind, record) }
    }

    pub fn of_dead_letter(record: &DeadLetterRecord) -> Self {
        Self {
            version: 1,
            kind: EventKind::DeadLettered,
            distribution_id: record.distribution_id.as_ref().map(ToString::to_string),
            tenant_id: None,
            invalidation_id: None,
            caller_reference: None,
            message_ids: vec![record.message_id.0.clone()],
            idempotency_keys: Vec::new(),
            requesters: record.requester.iter().cloned().collect(),
            paths: 0,
            wildcards: 0,
            requested_paths: 0,
            created_at: rfc3339(record.created_at),
            submitted_at: None,
            completed_at: None,
            time_to_complete_ms: None,
            reason: Some(record.reason.clone()),
            verification: None,
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("the event destination is unavailable, will retry: {0}")]
    Unavailable(String),
    #[error(
        "the event destination refused the event: {0}; check --events-topic-arn or --events-bus, and the role's sns:Publish or events:PutEvents"
    )]
    Refused(String),
}

impl Transient for EventError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type Published<'a> = Pin<Box<dyn Future<Output = Result<(), EventError>> + Send + 'a>>;

/// Contract: `publish` delivers one event or fails. Callers publish again what failed, and what a crash left
/// unrecorded as published, so a destination may see an event more than once, never lose one.
pub trait EventSink: Send + Sync + 'static {
    fn publish<'a>(&'a self, event: &'a Event) -> Published<'a>;
}

/// The configured destination, shared by the stages that publish.
#[derive(Clone)]
pub struct Events(pub Arc<dyn EventSink>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::pending_record;
    use crate::ports::cdn::Invalidation;

    /// The serialized event and schema/event.v1.json name the same fields, and the schema requires what is
    /// always there.
    #[test]
    fn events_have_the_fields_the_schema_describes() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../schema/event.v1.json")).unwrap();
        let mut record = pending_record("EAAA", &["/a", "/img/*"], &["m1"], SystemTime::UNIX_EPOCH);
        record.accept(&Invalidation { id: "I1".into(), status: "InProgress".into() }, SystemTime::UNIX_EPOCH);
        let event = serde_json::to_value(Event::of(EventKind::Accepted, &record)).unwrap();
        let fields: Vec<&String> = event.as_object().unwrap().keys().collect();
        let described: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        for field in &fields {
            assert!(described.contains(field), "{field} is not in the schema");
        }
        for required in schema["required"].as_array().unwrap() {
            assert!(!event[required.as_str().unwrap()].is_null(), "{required} is required but null");
        }
        assert_eq!((event["kind"].as_str(), event["wildcards"].as_u64()), (Some("accepted"), Some(1)));
        assert_eq!(event["completed_at"], serde_json::Value::Null, "only a completed event says when");
        assert!(event.get("tenant_id").is_none(), "a whole distribution's event is as it was");
        record.tenant_id = crate::model::TenantId::parse("dt_a").ok();
        let tenant = serde_json::to_value(Event::of(EventKind::Accepted, &record)).unwrap();
        assert_eq!(tenant["tenant_id"], "dt_a");
        assert!(described.contains(&&"tenant_id".to_owned()));
    }

    #[test]
    fn edge_events_carry_the_verification_the_schema_describes() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../schema/event.v1.json")).unwrap();
        let record = pending_record("EAAA", &["/a"], &["m1"], SystemTime::UNIX_EPOCH);
        let verified = crate::fake::verification(crate::ports::ledger::EdgeOutcome::Healed, SystemTime::UNIX_EPOCH);
        let event = serde_json::to_value(Event::of_verification(EventKind::Verified, &record, &verified)).unwrap();
        assert_eq!(event["kind"], "verified");
        let described = &schema["properties"]["verification"];
        let fields: Vec<&String> = event["verification"].as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), described["required"].as_array().unwrap().len());
        for field in fields {
            assert!(described["properties"].get(field).is_some(), "{field} is not in the schema");
        }
        let kinds = schema["properties"]["kind"]["enum"].as_array().unwrap();
        assert!(kinds.contains(&"verified".into()) && kinds.contains(&"stale".into()));
        let accepted = serde_json::to_value(Event::of(EventKind::Accepted, &record)).unwrap();
        assert!(accepted.get("verification").is_none(), "only edge events carry one");
    }
}
