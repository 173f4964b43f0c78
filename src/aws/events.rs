//! `EventSink` on Amazon SNS (one Publish per event) and on Amazon EventBridge (one PutEvents entry per event).

use std::collections::HashMap;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sns::types::MessageAttributeValue;

use super::error::{Failure, classify};
use crate::ports::events::{Event, EventError, EventKind, EventSink, Published};

/// EventBridge's `source` for every event, what rules match on.
pub const EVENT_SOURCE: &str = "cf-invalidator";

pub struct SnsEvents {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsEvents {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self { client, topic_arn: topic_arn.into() }
    }
}

impl EventSink for SnsEvents {
    fn publish<'a>(&'a self, event: &'a Event) -> Published<'a> {
        Box::pin(async move {
            // Attributes let subscriptions filter by kind or distribution without reading the body.
            self.client
                .publish()
                .topic_arn(&self.topic_arn)
                .message(body(event)?)
                .set_message_attributes(Some(attributes(event)?))
                .send()
                .await
                .map_err(|e| failed(classify(&e)))?;
            Ok(())
        })
    }
}

pub struct EventBridgeEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeEvents {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

impl EventSink for EventBridgeEvents {
    fn publish<'a>(&'a self, event: &'a Event) -> Published<'a> {
        Box::pin(async move {
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(EVENT_SOURCE)
                .detail_type(detail_type(event))
                .detail(body(event)?)
                .build();
            let output = self.client.put_events().entries(entry).send().await.map_err(|e| failed(classify(&e)))?;
            // PutEvents answers 200 with per-entry failures.
            match output.entries().first().and_then(|e| e.error_code().map(|code| (code, e.error_message()))) {
                None => Ok(()),
                Some((code, message)) if code.contains("Throttling") || code.contains("InternalFailure") => {
                    Err(EventError::Unavailable(format!("{code}: {}", message.unwrap_or_default())))
                }
                Some((code, message)) => Err(EventError::Refused(format!("{code}: {}", message.unwrap_or_default()))),
            }
        })
    }
}

/// `kind`, and `distribution_id` when there is one: what subscription filter policies match on.
fn attributes(event: &Event) -> Result<HashMap<String, MessageAttributeValue>, EventError> {
    let attribute =
        |value: &str| MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(refused);
    let mut attributes = HashMap::from([("kind".to_owned(), attribute(event.kind.as_str())?)]);
    if let Some(distribution) = &event.distribution_id {
        attributes.insert("distribution_id".to_owned(), attribute(distribution)?);
    }
    Ok(attributes)
}

/// The `detail-type` EventBridge rules match on.
fn detail_type(event: &Event) -> &'static str {
    match event.kind {
        EventKind::Accepted => "Invalidation Accepted",
        EventKind::Completed => "Invalidation Completed",
        EventKind::Failed => "Invalidation Failed",
        EventKind::DeadLettered => "Message Dead-Lettered",
        EventKind::Verified => "Invalidation Verified",
        EventKind::Stale => "Invalidation Stale",
    }
}

fn body(event: &Event) -> Result<String, EventError> {
    serde_json::to_string(event).map_err(refused)
}

fn refused(error: impl std::fmt::Display) -> EventError {
    EventError::Refused(error.to_string())
}

fn failed(failure: Failure) -> EventError {
    let text = failure.describe();
    if failure.is_throttling_or_server_fault() { EventError::Unavailable(text) } else { EventError::Refused(text) }
}
