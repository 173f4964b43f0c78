//! `DeadLetters` on the ledger table: `dlq#<message_id>` records, and their items.

use super::attribute::*;
use super::*;

impl DeadLetters for DynamoLedger {
    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(dead_letter_item(record)))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
    async fn dead_letter(&self, message: &MessageId) -> Result<Option<DeadLetterRecord>, LedgerError> {
        self.get(dead_letter_key(message)).await?.map(|item| dead_letter_from(&item)).transpose()
    }
}

pub(super) fn dead_letter_key(message_id: &MessageId) -> AttributeValue {
    AttributeValue::S(format!("dlq#{message_id}"))
}

pub(super) fn dead_letter_item(record: &DeadLetterRecord) -> Item {
    let mut item = Item::from([
        (KEY.into(), dead_letter_key(&record.message_id)),
        ("message_id".into(), AttributeValue::S(record.message_id.0.clone())),
        ("reason".into(), AttributeValue::S(capped(&record.reason, MAX_REASON_BYTES))),
        ("code".into(), AttributeValue::S(record.code.clone())),
        ("outcome".into(), AttributeValue::S(OUTCOME_DEAD_LETTERED.into())),
        ("created_at".into(), timestamp(record.created_at)),
        (TTL_ATTRIBUTE.into(), epoch_seconds(record.expires_at)),
    ]);
    if let Some(distribution) = &record.distribution_id {
        item.insert(FOR_DISTRIBUTION.into(), AttributeValue::S(distribution.to_string()));
    }
    if let Some(requester) = &record.requester {
        item.insert("requester".into(), AttributeValue::S(capped(requester, MAX_REQUESTER_BYTES)));
    }
    if record.outbox {
        // In `by_tracking` until its event is published.
        item.insert(TRACKING.into(), AttributeValue::S(TRACKING_IN_PROGRESS.into()));
    }
    item
}

pub(crate) fn dead_letter_from(item: &Item) -> Result<DeadLetterRecord, LedgerError> {
    Ok(DeadLetterRecord {
        message_id: MessageId(string(item, "message_id").ok_or_else(|| malformed("dead-letter record", item))?),
        reason: string(item, "reason").unwrap_or_default(),
        code: string(item, "code").unwrap_or_default(),
        distribution_id: string(item, FOR_DISTRIBUTION).and_then(|d| DistributionId::parse(&d).ok()),
        requester: string(item, "requester"),
        created_at: time(item, "created_at").ok_or_else(|| malformed("dead-letter record", item))?,
        expires_at: expiry(item),
        outbox: item.contains_key(TRACKING),
    })
}
