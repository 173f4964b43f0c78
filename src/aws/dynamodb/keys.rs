//! `Keys` on the ledger table: `key#<DistributionId>#<idempotency_key>` claims.

use super::*;

impl Keys for DynamoLedger {
    async fn claim_key(&self, key: &KeyUse, now: SystemTime, expires_at: SystemTime) -> Result<KeyClaim, LedgerError> {
        let message_id = &key.message_id;
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, key_item_key(&Target::new(key.distribution_id.clone(), key.tenant_id.clone()), &key.key))
            .item("message_id", AttributeValue::S(message_id.0.clone()))
            .item(CONTENT, AttributeValue::S(key.content.clone()))
            // So that the audit finds the key's batches with a query of one distribution instead of a scan.
            .item(FOR_DISTRIBUTION, AttributeValue::S(key.distribution_id.to_string()))
            .item("created_at", timestamp(now))
            .item(TTL_ATTRIBUTE, epoch_seconds(expires_at))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now OR message_id = :message_id")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", epoch_seconds(now))
            .expression_attribute_values(":message_id", AttributeValue::S(message_id.0.clone()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(KeyClaim::First),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed)) => {
                    let first = failed.item().and_then(|item| string(item, "message_id")).unwrap_or_default();
                    let first_message_id = MessageId(first);
                    let same = failed.item().and_then(|item| string(item, CONTENT)).as_ref() == Some(&key.content);
                    Ok(if same {
                        KeyClaim::Duplicate { first_message_id }
                    } else {
                        KeyClaim::Conflict { first_message_id }
                    })
                }
                _ => Err(self.error(classify(&e))),
            },
        }
    }
}
