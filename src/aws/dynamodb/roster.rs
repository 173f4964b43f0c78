//! `Roster` on the ledger table: a `worker#<id>` item per worker, on `by_board` as the list `workers`.

use std::time::Duration;

use super::*;

impl Roster for DynamoLedger {
    async fn check_in(&self, worker: &str, now: SystemTime, until: SystemTime) -> Result<Vec<String>, LedgerError> {
        // On `by_board` as the list `workers`, sorted by the last check-in: the status page's workers too.
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY, worker_key(worker))
            .item(BOARD, AttributeValue::S(BOARD_WORKERS.into()))
            .item("created_at", timestamp(now))
            .item(TTL_ATTRIBUTE, epoch_seconds(until))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        // Every worker checks in for as long as this one does: a check-in older than that has run out, and is not
        // read at all (the index keeps dead workers' items until TTL deletes them, days later).
        let oldest = now.checked_sub(until.duration_since(now).unwrap_or_default()).unwrap_or(now);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BOARD_INDEX)
            .key_condition_expression("#board = :workers AND created_at >= :oldest")
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":workers", AttributeValue::S(BOARD_WORKERS.into()))
            .expression_attribute_values(":oldest", timestamp(oldest))
            .expression_attribute_values(":now", epoch_seconds(now));
        let mut live = vec![worker.to_owned()];
        self.each_item(query, |item| {
            let id = string(item, KEY).and_then(|key| key.strip_prefix(WORKER_PREFIX).map(str::to_owned));
            live.extend(id);
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .await?;
        // The index is eventually consistent: this worker's own check-in may not show yet.
        live.sort_unstable();
        live.dedup();
        Ok(live)
    }
    async fn check_out(&self, worker: &str) -> Result<(), LedgerError> {
        // Expired rather than deleted: the worker's role needs no dynamodb:DeleteItem, and TTL removes it. An hour
        // back, so that no other worker's clock, a little behind, still counts it.
        let expired = self.clock.now() - Duration::from_secs(3_600);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, worker_key(worker))
            .update_expression("SET #ttl = :expired")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":expired", epoch_seconds(expired))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
}

const WORKER_PREFIX: &str = "worker#";

/// `worker#<worker id>`: a worker sharing the account's CreateInvalidation rate, until its check-in runs out.
fn worker_key(worker: &str) -> AttributeValue {
    AttributeValue::S(format!("{WORKER_PREFIX}{worker}"))
}
