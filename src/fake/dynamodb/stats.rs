//! What the engine saw, for benchmarks that watch the ledger over simulated months: the largest item written and
//! which, the largest expression, items read per query (in all, and per index), requests per operation, refusals;
//! and, read from the tables, items and bytes per table and per index.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::Refusal;
use super::expr::Kind;

/// The largest of something seen so far, and what it was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Largest {
    pub bytes: usize,
    /// The item's table and key, or the expression's kind and its first 120 characters.
    pub what: String,
}

impl Largest {
    fn offer(&mut self, bytes: usize, what: impl FnOnce() -> String) {
        if bytes > self.bytes {
            *self = Self { bytes, what: what() };
        }
    }
}

/// Counters and maxima since the engine started or they were last taken (`StrictDynamo::take_observed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub largest_item: Largest,
    pub largest_expression: Largest,
    /// Query and Scan pages answered, the items they read (before filters), and the most one page read.
    pub pages: u64,
    pub items_read: u64,
    pub most_read_by_a_page: u64,
    /// The same, by what was read: an index's name, or the table's for the table itself. A reader's figure (the
    /// tracker's adoption rounds read `by_tracking`) without the other readers' pages.
    pub reads: BTreeMap<String, Reads>,
    pub requests: BTreeMap<String, u64>,
    /// Requests refused, by error code; a cancelled transaction also by its reasons' codes other than `None`
    /// (`TransactionCanceledException[ConditionalCheckFailed]`), so that a refusal as invalid shows however it came.
    pub refused: BTreeMap<String, u64>,
    /// The first refusal's message for each code in `refused`, so a refusal seen once in a long run can be traced.
    pub first_refusal: BTreeMap<String, String>,
}

/// Query and Scan pages of one table or index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reads {
    pub pages: u64,
    /// Items read, before filters.
    pub items: u64,
    /// The most one page read.
    pub most: u64,
}

impl Observed {
    pub fn item_written(&mut self, bytes: usize, table: &str, key: impl FnOnce() -> String) {
        self.largest_item.offer(bytes, || format!("{table} {}", key()));
    }

    pub fn expression(&mut self, text: &str, kind: Kind) {
        self.largest_expression.offer(text.len(), || {
            let start: String = text.chars().take(120).collect();
            format!("{}: {start}", kind.name())
        });
    }

    pub fn page_read(&mut self, read: &str, items: u64) {
        self.pages += 1;
        self.items_read += items;
        self.most_read_by_a_page = self.most_read_by_a_page.max(items);
        let reads = self.reads.entry(read.to_owned()).or_default();
        reads.pages += 1;
        reads.items += items;
        reads.most = reads.most.max(items);
    }

    pub fn refusal(&mut self, refusal: &Refusal) {
        let mut reasons: Vec<&str> = refusal.reasons.iter().map(|r| r.code).filter(|c| *c != "None").collect();
        reasons.sort_unstable();
        reasons.dedup();
        let code = match reasons.is_empty() {
            true => refusal.code.to_owned(),
            false => format!("{}[{}]", refusal.code, reasons.join(", ")),
        };
        *self.refused.entry(code.clone()).or_default() += 1;
        self.first_refusal.entry(code).or_insert_with(|| described(refusal));
    }

    /// Requests refused as invalid (`ValidationException`, or a transaction cancelled for a `ValidationError`):
    /// what DynamoDB would refuse however often it is sent.
    pub fn refused_as_invalid(&self) -> u64 {
        self.refused.iter().filter(|(code, _)| code.contains("Validation")).map(|(_, n)| n).sum()
    }
}

/// The refusal's message, followed by its reasons' own messages (a cancelled transaction's message names only codes).
fn described(refusal: &Refusal) -> String {
    let reasons = refusal.reasons.iter().filter_map(|r| r.message.as_deref().map(|m| format!("{}: {m}", r.code)));
    std::iter::once(refusal.message.clone()).chain(reasons).collect::<Vec<_>>().join("; ")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexFigures {
    pub name: String,
    pub items: usize,
    /// The projected attributes' bytes, by the item-size rules.
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFigures {
    pub name: String,
    pub items: usize,
    pub bytes: usize,
    pub indexes: Vec<IndexFigures>,
}

/// The tables as they are now, and what was observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub tables: Vec<TableFigures>,
    pub observed: Observed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::dynamodb::error::Reason;

    #[test]
    fn pages_are_counted_by_what_they_read_and_refusals_by_code_and_reason() {
        let mut observed = Observed::default();
        observed.page_read("by_tracking", 3);
        observed.page_read("ledger", 40);
        observed.page_read("by_tracking", 7);
        assert_eq!(observed.reads["by_tracking"], Reads { pages: 2, items: 10, most: 7 });
        assert_eq!(observed.most_read_by_a_page, 40);

        let failed = Reason { code: "ConditionalCheckFailed", message: None, item: None };
        let invalid = Reason { code: "ValidationError", message: Some("set has duplicates".into()), item: None };
        observed.refusal(&Refusal::condition_failed(None));
        observed.refusal(&Refusal::cancelled(vec![Reason::NONE, failed.clone(), failed]));
        observed.refusal(&Refusal::cancelled(vec![Reason::NONE, invalid]));
        observed.refusal(&Refusal::validation("Item size has exceeded the maximum allowed size"));
        assert_eq!(
            observed.refused.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "ConditionalCheckFailedException",
                "TransactionCanceledException[ConditionalCheckFailed]",
                "TransactionCanceledException[ValidationError]",
                "ValidationException"
            ]
        );
        assert_eq!(observed.refused_as_invalid(), 2);
        assert_eq!(observed.first_refusal["ValidationException"], "Item size has exceeded the maximum allowed size");
        assert!(
            observed.first_refusal["TransactionCanceledException[ValidationError]"]
                .ends_with("; ValidationError: set has duplicates"),
            "{:?}",
            observed.first_refusal
        );
    }
}
