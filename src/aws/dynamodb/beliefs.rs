//! `Beliefs` on the ledger table: a `belief#<limit>#<scope>` item per learned limit, on `by_board` as the list
//! `beliefs` by the time of its cut, expiring a day after it. Reading them is one query and one BatchGetItem per
//! 100 beliefs.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::ports::budget::{BELIEF_LASTS, Beliefs, MAX_SHARED_BELIEFS, SharedBelief};

const BELIEF_PREFIX: &str = "belief#";
const BOARD_BELIEFS: &str = "beliefs";

impl Beliefs for DynamoLedger {
    async fn shared_beliefs(&self, now: SystemTime) -> Result<Vec<SharedBelief>, LedgerError> {
        let oldest = now.checked_sub(BELIEF_LASTS).unwrap_or(UNIX_EPOCH);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BOARD_INDEX)
            .key_condition_expression("#board = :beliefs AND created_at >= :oldest")
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_values(":beliefs", AttributeValue::S(BOARD_BELIEFS.into()))
            .expression_attribute_values(":oldest", timestamp(oldest))
            .scan_index_forward(false);
        // `by_board` projects none of a belief's own attributes (changing its projection would rebuild the index
        // on every deployed table): the query finds the keys, and the items are read by them.
        let mut keys = Vec::new();
        self.each_item(query, |item| {
            keys.extend(item.get(KEY).cloned());
            Ok(if keys.len() < MAX_SHARED_BELIEFS { ControlFlow::Continue(()) } else { ControlFlow::Break(()) })
        })
        .await?;
        Ok(self.get_many(keys).await?.values().filter_map(belief_from).collect())
    }

    async fn share_belief(&self, belief: &SharedBelief) -> Result<bool, LedgerError> {
        let cut = epoch_millis(belief.cut);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(format!("{BELIEF_PREFIX}{}#{}", belief.limit, belief.scope)))
            .item("limit", AttributeValue::S(belief.limit.clone()))
            .item("scope", AttributeValue::S(belief.scope.clone()))
            .item("believed", AttributeValue::N(belief.believed.to_string()))
            .item("cut", cut.clone())
            .item(BOARD, AttributeValue::S(BOARD_BELIEFS.into()))
            .item("created_at", timestamp(belief.cut))
            .item(TTL_ATTRIBUTE, epoch_seconds(belief.cut + BELIEF_LASTS))
            .condition_expression("attribute_not_exists(#cut) OR #cut < :cut")
            .expression_attribute_names("#cut", "cut")
            .expression_attribute_values(":cut", cut);
        self.conditional(put.send().await)
    }
}

fn belief_from(item: &Item) -> Option<SharedBelief> {
    let believed = item.get("believed")?.as_n().ok()?.parse().ok()?;
    Some(SharedBelief {
        limit: string(item, "limit")?,
        scope: string(item, "scope")?,
        believed,
        cut: UNIX_EPOCH + Duration::from_millis(number(item, "cut")?),
    })
}
