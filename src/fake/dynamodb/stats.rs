//! What the engine saw, for benchmarks that watch the ledger over simulated months: the largest item written and
//! which, the largest expression, items read per query, requests per operation; and, read from the tables, items and
//! bytes per table and per index.

use std::collections::BTreeMap;

use serde::Serialize;

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
    pub requests: BTreeMap<String, u64>,
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

    pub fn page_read(&mut self, items: u64) {
        self.pages += 1;
        self.items_read += items;
        self.most_read_by_a_page = self.most_read_by_a_page.max(items);
    }
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
