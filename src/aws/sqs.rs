//! `Queue` on Amazon SQS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName,
};

use super::error::{Failure, classify};
use crate::model::MessageId;
use crate::ports::queue::{
    BatchEntryFailure, MAX_BATCH_ENTRIES, Queue, QueueDepth, QueueError, QueueStats, Receipt, ReceivedMessage,
};

/// ReceiveMessage's longest long poll; the HTTP read timeout must exceed it (aws-facts.md B).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, failure: Failure) -> QueueError {
        let text = failure.describe();
        match failure {
            Failure::Credentials(_) => QueueError::Credentials(text),
            _ if failure.is_throttling_or_server_fault() => QueueError::Transient(text),
            Failure::Service { ref code, .. }
                if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") =>
            {
                QueueError::NotFound(self.url.clone())
            }
            Failure::Service { ref code, .. } if code.contains("AccessDenied") => {
                QueueError::AccessDenied { queue: self.url.clone(), message: text }
            }
            _ => QueueError::Other(text),
        }
    }

    /// Fails with a clear error when the queue is missing or unreadable: run before the worker starts.
    pub async fn check_access(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }

    /// The dead-letter queue named by the queue's RedrivePolicy, if any; an error names the dead-letter queue when
    /// it is the one that is missing.
    pub async fn dead_letter_queue_url(&self) -> Result<Option<String>, DeadLetterError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        let Some(policy) = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)) else {
            return Ok(None);
        };
        let unreadable = || DeadLetterError::Unreadable { queue: self.url.clone(), policy: policy.clone() };
        let arn = serde_json::from_str::<serde_json::Value>(policy)
            .ok()
            .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_owned))
            .ok_or_else(unreadable)?;
        // arn:aws:sqs:REGION:ACCOUNT:NAME
        let mut parts = arn.rsplitn(3, ':');
        let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
            return Err(unreadable());
        };
        let named_by = format!("the RedrivePolicy of {}", self.url);
        self.queue_url_of(name, account, named_by).await.map(Some)
    }

    /// Fails when the dead-letter queue at `url` (--dlq-url) does not exist, asking only what a role that sends
    /// to it may ask (GetQueueUrl).
    pub async fn check_dead_letter_queue(&self, url: &str) -> Result<(), DeadLetterError> {
        // https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
        let mut segments = url.trim_end_matches('/').rsplit('/');
        let (Some(name), Some(account)) = (segments.next(), segments.next()) else {
            return Err(DeadLetterError::Missing { name: url.to_owned(), named_by: "--dlq-url".into() });
        };
        self.queue_url_of(name, account, "--dlq-url".into()).await.map(|_| ())
    }

    async fn queue_url_of(&self, name: &str, account: &str, named_by: String) -> Result<String, DeadLetterError> {
        let found = self.client.get_queue_url().queue_name(name).queue_owner_aws_account_id(account).send().await;
        match found.map_err(|e| self.error(classify(&e))) {
            Ok(found) => Ok(found.queue_url().unwrap_or_default().to_owned()),
            Err(QueueError::NotFound(_)) => Err(DeadLetterError::Missing { name: name.to_owned(), named_by }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Why the dead-letter queue cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter queue {name} does not exist ({named_by} names it): create it, or name one that exists")]
    Missing { name: String, named_by: String },
    #[error("unreadable RedrivePolicy on {queue}: {policy}")]
    Unreadable { queue: String, policy: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn epoch_millis(raw: &str) -> Option<SystemTime> {
    raw.parse::<u64>().ok().map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// Batch entry ids must be short and alphanumeric, so entries are numbered and mapped back by index.
fn entry_failures(
    receipts: &[Receipt],
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<BatchEntryFailure> {
    failed
        .iter()
        .filter_map(|entry| {
            let receipt = receipts.get(entry.id().parse::<usize>().ok()?)?;
            Some(BatchEntryFailure {
                message_id: receipt.message_id.clone(),
                code: entry.code().to_owned(),
                message: entry.message().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH_ENTRIES) as i32)
            .wait_time_seconds(seconds(wait.min(MAX_WAIT)))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|message| {
                let attribute = |name| message.attributes().and_then(|a| a.get(&name));
                Some(ReceivedMessage {
                    message_id: MessageId(message.message_id()?.to_owned()),
                    receipt_handle: message.receipt_handle()?.to_owned(),
                    body: message.body().unwrap_or_default().to_owned(),
                    sent_at: attribute(MessageSystemAttributeName::SentTimestamp).and_then(|v| epoch_millis(v)),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<BatchEntryFailure>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.receipt_handle).build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Other(e.to_string()))?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(entry_failures(receipts, output.failed()))
    }

    async fn extend_visibility(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.receipt_handle)
                    .visibility_timeout(seconds(visibility))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Other(e.to_string()))?;
        let output = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(entry_failures(receipts, output.failed()))
    }

    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        self.send_message(body, attributes).await.map(|_| ())
    }
}

impl SqsQueue {
    /// SendMessage, answering the id SQS gave the message (what the ledger records it by).
    pub async fn send_message(&self, body: &str, attributes: &[(&str, &str)]) -> Result<MessageId, QueueError> {
        let mut request = self.client.send_message().queue_url(&self.url).message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()
                .map_err(|e| QueueError::Other(e.to_string()))?;
            request = request.message_attributes(*name, value);
        }
        let sent = request.send().await.map_err(|e| self.error(classify(&e)))?;
        Ok(MessageId(sent.message_id().unwrap_or_default().to_owned()))
    }
}

/// Created queue URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedQueues {
    pub queue_url: String,
    pub dead_letter_url: String,
}

/// Creates `NAME-dlq` and `NAME` with a RedrivePolicy to it; CreateQueue is idempotent for equal attributes.
pub async fn create_queue_with_dead_letter(
    client: &Client,
    name: &str,
    max_receive_count: u16,
) -> Result<CreatedQueues, QueueError> {
    let fail = |e: Failure| QueueError::Other(format!("creating queue {name}: {}", e.describe()));
    let dead_letter_name = format!("{name}-dlq");
    let dead_letter = client
        .create_queue()
        .queue_name(&dead_letter_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| fail(classify(&e)))?;
    let dead_letter_url = dead_letter.queue_url().unwrap_or_default().to_owned();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(classify(&e)))?;
    let dead_letter_arn =
        attributes.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count});
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
        .send()
        .await
        .map_err(|e| fail(classify(&e)))?;
    Ok(CreatedQueues { queue_url: queue.queue_url().unwrap_or_default().to_owned(), dead_letter_url })
}

impl QueueStats for SqsQueue {
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let counts = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        let count = |name: &QueueAttributeName| {
            output.attributes().and_then(|a| a.get(name)).and_then(|raw| raw.parse().ok()).unwrap_or_default()
        };
        Ok(QueueDepth { visible: count(&counts[0]), in_flight: count(&counts[1]), delayed: count(&counts[2]) })
    }
}
