//! A strict in-process DynamoDB: it speaks DynamoDB's JSON protocol, so the worker's real SDK adapter
//! (`aws::dynamodb`) runs against it unchanged, and it refuses what DynamoDB refuses and the emulators accept: an
//! item over 400 KB after an update, an expression over 4 KB, more than 100 actions or two on one item in a
//! transaction, a repeated set member, more than 25 writes or 100 keys in a batch, and it pages queries at 1 MB.
//!
//! Reached in process through [`StrictDynamo::client`] (no sockets; works on tokio's paused clock), or over HTTP
//! on a loopback port ([`wire::serve`], the `dynamodb-sim` binary; docs/simulator.md).
//!
//! Not modelled: capacity and throttling, PartiQL, streams, local secondary indexes, TransactGetItems, the legacy
//! `AttributeUpdates`/`KeyConditions` parameters, and UpdateItem's per-clause size accounting in the regions that
//! apply it (the finished item is measured, as a put is).

mod error;
mod expr;
mod number;
mod ops;
mod size;
mod stats;
mod table;
mod value;
pub mod wire;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value as Json;

pub use self::error::{Reason, Refusal};
pub use self::size::MAX_ITEM;
pub use self::stats::{IndexFigures, Largest, Observed, Reads, Stats, TableFigures};
use crate::clock::WallClock;

/// How long after its expiry TTL deletes an item by default: DynamoDB says within days; an hour keeps expired
/// items visible long enough for readers that forget to filter them to be caught.
pub const TTL_DELAY: Duration = Duration::from_secs(3_600);

#[derive(Debug)]
pub struct StrictDynamo {
    state: Mutex<ops::State>,
    clock: WallClock,
    ttl_delay: Duration,
}

impl Default for StrictDynamo {
    fn default() -> Self {
        Self::new(WallClock::System)
    }
}

impl StrictDynamo {
    pub fn new(clock: WallClock) -> Self {
        Self { state: Mutex::default(), clock, ttl_delay: TTL_DELAY }
    }

    /// Remembers when each item was first stored: `first_stored` answers for it. For tests that need to know when
    /// a write became durable; memory grows with every item ever written.
    pub fn recording_first_stores(self) -> Self {
        self.state().first_stored = Some(std::collections::HashMap::new());
        self
    }

    /// When the item with this (string) hash key was first stored, if the engine records it.
    pub fn first_stored(&self, key: &str) -> Option<std::time::SystemTime> {
        let seconds = *self.state().first_stored.as_ref()?.get(key)?;
        Some(UNIX_EPOCH + Duration::from_secs_f64(seconds))
    }

    /// Items are deleted this long after their TTL attribute's time (and still read until then).
    pub fn with_ttl_delay(self, ttl_delay: Duration) -> Self {
        Self { ttl_delay, ..self }
    }

    fn state(&self) -> MutexGuard<'_, ops::State> {
        // A panic while holding the lock is a bug in the engine; the state it left is still the best answer.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> Duration {
        self.clock.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// Answers one request: `target` is the `X-Amz-Target` header, `body` the JSON request. Returns the HTTP
    /// status and the JSON body.
    pub fn handle(&self, target: &str, body: &[u8]) -> (u16, Json) {
        let Some(operation) = target.strip_prefix("DynamoDB_20120810.") else {
            let refusal = Refusal::new("UnknownOperationException", format!("Unknown target {target:?}"));
            return (400, refusal.body());
        };
        let request: Json = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => return (400, Refusal::new("SerializationException", e.to_string()).body()),
        };
        let now = self.now();
        let mut state = self.state();
        self.expire(&mut state, now);
        match ops::dispatch(&mut state, operation, &request, now.as_secs_f64()) {
            Ok(answer) => (200, answer),
            Err(refusal) => {
                state.observed.refusal(&refusal);
                (400, refusal.body())
            }
        }
    }

    /// Deletes what TTL has deleted by `now`; returns how many items.
    fn expire(&self, state: &mut ops::State, now: Duration) -> usize {
        let before = now.saturating_sub(self.ttl_delay).as_secs();
        state.tables.values_mut().map(|table| table.expire(before)).sum()
    }

    /// Runs TTL's deletion now (it also runs before every request); returns how many items it deleted.
    pub fn sweep_ttl(&self) -> usize {
        let now = self.now();
        self.expire(&mut self.state(), now)
    }

    /// Every table's items and bytes, per index too, and what was observed since the last `take_observed`.
    pub fn stats(&self) -> Stats {
        let state = self.state();
        let tables = state
            .tables
            .values()
            .map(|table| TableFigures {
                name: table.name.clone(),
                items: table.items.len(),
                bytes: table.bytes,
                indexes: table
                    .indexes
                    .iter()
                    .map(|index| IndexFigures { name: index.name.clone(), items: index.items, bytes: index.bytes })
                    .collect(),
            })
            .collect();
        Stats { tables, observed: state.observed.clone() }
    }

    /// What was observed since the engine started or this was last called, and starts afresh.
    pub fn take_observed(&self) -> Observed {
        std::mem::take(&mut self.state().observed)
    }

    /// An SDK client whose requests this engine answers in process: static test credentials, us-east-1, and the
    /// SDK's standard retries, as the worker configures them.
    pub fn client(self: &Arc<Self>) -> aws_sdk_dynamodb::Client {
        wire::in_process_client(Arc::clone(self))
    }
}
