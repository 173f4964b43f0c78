//! `Bills` on the ledger table: the month's counters (`month#YYYY-MM`, per distribution, per tenant, per requester,
//! per account) and the
//! day's (`day#YYYY-MM-DD`), moved once per accepted batch in its acceptance's transaction.

use super::*;

/// Whether an acceptance's billing was counted by this write or an earlier one.
pub(super) enum Billed {
    Now,
    Before,
}

impl DynamoLedger {
    /// The acceptance's fields and `billed_month`, and the counters of its month (in total, for the distribution
    /// and for each requester) and of its day, in one transaction conditioned on the batch not being billed yet: counters move
    /// once per CallerReference.
    pub(super) async fn record_billed_acceptance(
        &self,
        record: &BatchRecord,
        assignments: &[&str],
        values: &HashMap<String, AttributeValue>,
        day: &str,
        note: Option<Update>,
    ) -> Result<Billed, LedgerError> {
        let month = &day[..7];
        let mut batch_values = values.clone();
        batch_values.insert(":month".into(), AttributeValue::S(month.to_owned()));
        let batch = Update::builder()
            .table_name(&self.table)
            .key(KEY, key_of(&record.caller_reference))
            .update_expression(format!("SET {}, {BILLED_MONTH} = :month", assignments.join(", ")))
            .condition_expression(format!("attribute_exists(#pk) AND attribute_not_exists({BILLED_MONTH})"))
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(batch_values))
            .build()
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        // Kept as long as the month's last batch is: `--retention` after it. A ranked counter is also in a
        // `by_list` list, ranked by its paths billed, with `extra` attributes set (a requester's name).
        let counter = |key: AttributeValue, billing: Billing, ranked: Option<(String, &[(&str, String)])>| {
            let mut adds = "ADD batches :batches, messages :messages, paths_billed :billed, \
                            paths_requested :requested, paths_distinct :distinct, wildcards :wildcards"
                .to_owned();
            let mut sets = "SET #ttl = :ttl".to_owned();
            let mut update = Update::builder()
                .table_name(&self.table)
                .key(KEY, key)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":ttl", epoch_seconds(record.expires_at))
                .expression_attribute_values(":batches", number_of(billing.batches))
                .expression_attribute_values(":messages", number_of(billing.messages))
                .expression_attribute_values(":billed", number_of(billing.paths_billed))
                .expression_attribute_values(":requested", number_of(billing.paths_requested))
                .expression_attribute_values(":distinct", number_of(billing.paths_distinct))
                .expression_attribute_values(":wildcards", number_of(billing.wildcards));
            if let Some((list, extra)) = ranked {
                adds.push_str(", #rank :billed");
                sets.push_str(", #list = :list");
                update = update
                    .expression_attribute_names("#rank", RANK)
                    .expression_attribute_names("#list", LIST)
                    .expression_attribute_values(":list", AttributeValue::S(list));
                for (attribute, value) in extra {
                    sets.push_str(&format!(", {attribute} = :{attribute}"));
                    update =
                        update.expression_attribute_values(format!(":{attribute}"), AttributeValue::S(value.clone()));
                }
            }
            update.update_expression(format!("{adds} {sets}")).build().map_err(|e| LedgerError::Other(e.to_string()))
        };
        let billing = Billing::of(record);
        let mut updates = vec![
            batch,
            counter(month_key(month, None), billing, None)?,
            counter(month_key(month, Some(&record.distribution_id)), billing, Some((distributions_list(month), &[])))?,
            counter(day_key(day), billing, None)?,
        ];
        if let Some(account) = &record.account {
            updates.push(counter(account_month_key(month, account), billing, None)?);
        }
        if record.tenant_id.is_some() {
            let key = tenant_month_key(month, &record.target());
            updates.push(counter(key, billing, Some((tenants_list(month), &[])))?);
        }
        for (requester, share) in &Billing::shares_of(record) {
            let name: Vec<(&str, String)> =
                requester.name().map(|name| ("requester", name.to_owned())).into_iter().collect();
            let ranked = Some((requesters_list(month), name.as_slice()));
            updates.push(counter(requester_month_key(month, requester), *share, ranked)?);
        }
        let mut noted = note.is_some();
        updates.extend(note);
        let mut items: Vec<TransactWriteItem> =
            updates.into_iter().map(|update| TransactWriteItem::builder().update(update).build()).collect();
        loop {
            let cancelled = match self.transact(items.clone()).await? {
                Ok(()) => return Ok(Billed::Now),
                Err(cancelled) => cancelled,
            };
            // Billed before, or no such record: the plain update tells which.
            if cancelled.refused(0) {
                return Ok(Billed::Before);
            }
            let last = items.len() - 1;
            if noted && (cancelled.refused(last) || cancelled.conflicted(last)) {
                // The reservation is gone (expired and deleted), or being written: the outcome matters, the note
                // only saves a resync a question.
                items.pop();
                noted = false;
                continue;
            }
            return Err(cancelled.unexpected());
        }
    }
    /// The `limit` highest-ranked counters of a `by_list` list, named by `name` (items it cannot name are
    /// skipped), biggest first.
    pub(super) async fn biggest<T>(
        &self,
        list: &str,
        limit: usize,
        name: impl Fn(&Item) -> Option<T>,
    ) -> Result<Vec<(T, Billing)>, LedgerError> {
        let query = self
            .unexpired_in(LIST_INDEX)
            .key_condition_expression("#list = :list")
            .expression_attribute_names("#list", LIST)
            .expression_attribute_values(":list", AttributeValue::S(list.to_owned()))
            .scan_index_forward(false);
        self.first_items(query, limit, |item| Ok(name(item).map(|named| (named, billing_from(item))))).await
    }
    /// The total and `committed` of the month's counter under `key`.
    async fn totals(&self, month: &str, key: AttributeValue) -> Result<MonthBilling, LedgerError> {
        let total = self.get(key).await?.unwrap_or_default();
        let mut billing = MonthBilling::new(month, billing_from(&total), Vec::new(), Vec::new());
        billing.committed = number(&total, "committed").unwrap_or_default();
        Ok(billing)
    }
    /// `MonthBilling::spent` of the item `cap` counts in, as a refused condition returned it, or read now (not
    /// every DynamoDB-compatible store returns it).
    pub(super) async fn month_spent(&self, cap: &MonthCap, item: Option<&Item>) -> Result<u64, LedgerError> {
        let item = match item {
            Some(item) => item.clone(),
            None => self.get(cap_key(cap)).await?.unwrap_or_default(),
        };
        Ok(spent(number(&item, "committed").unwrap_or_default(), billing_from(&item).paths_billed))
    }
}

impl Bills for DynamoLedger {
    async fn month_billing(&self, month: &str) -> Result<MonthBilling, LedgerError> {
        let totals = self.month_totals(month).await?;
        if totals.total == Billing::default() && totals.committed == 0 {
            return Ok(totals);
        }
        let distributions = self
            .biggest(&distributions_list(month), LISTED_DISTRIBUTIONS, |item| {
                let key = string(item, KEY)?;
                let distribution = key.strip_prefix(&format!("month#{month}#"))?;
                DistributionId::parse(distribution).ok()
            })
            .await?;
        let requesters = self.biggest(&requesters_list(month), LISTED_REQUESTERS, requester_from).await?;
        let tenants = self.biggest(&tenants_list(month), LISTED_TENANTS, tenant_from).await?;
        let day_names: Vec<String> = (1..=31).map(|d| format!("{month}-{d:02}")).collect();
        let found = self.get_many(day_names.iter().map(|d| day_key(d)).collect()).await?;
        let days = day_names
            .into_iter()
            .filter_map(|day| {
                day_key(&day).as_s().ok().and_then(|key| found.get(key)).map(|item| (day, billing_from(item)))
            })
            .collect();
        let mut billing = MonthBilling::new(month, totals.total, distributions, days)
            .with_requesters(requesters)
            .with_tenants(tenants);
        billing.committed = totals.committed;
        Ok(billing)
    }
    async fn month_totals(&self, month: &str) -> Result<MonthBilling, LedgerError> {
        self.totals(month, month_key(month, None)).await
    }
    async fn account_totals(&self, month: &str, account: &str) -> Result<MonthBilling, LedgerError> {
        self.totals(month, account_month_key(month, account)).await
    }
}
