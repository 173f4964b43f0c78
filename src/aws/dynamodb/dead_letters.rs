//! `DeadLetters` on the ledger table: `dlq#<message_id>` records.

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
