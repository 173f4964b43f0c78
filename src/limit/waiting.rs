//! The batches waiting for room: what they need together per distribution (the backlog coalescing weighs), and
//! when they began to wait, for the status page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::model::DistributionId;
use crate::ports::budget::Allowance;

/// A batch's place in its distribution's backlog, given up when dropped (however the wait ends).
pub struct Waiting {
    backlog: Arc<Mutex<Allowance>>,
    need: Allowance,
    /// Where the status page sees it, from when.
    shown: Option<(Arc<WaitingBoard>, DistributionId, SystemTime)>,
}

impl Waiting {
    /// Counts `need` in `backlog` until dropped, shown on a board if there is one.
    pub(super) fn new(
        backlog: Arc<Mutex<Allowance>>,
        need: Allowance,
        shown: Option<(Arc<WaitingBoard>, DistributionId, SystemTime)>,
    ) -> Self {
        {
            let mut total = backlog.lock().unwrap();
            *total = *total + need;
        }
        Self { backlog, need, shown }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut backlog = self.backlog.lock().unwrap();
        *backlog = *backlog - self.need;
        if let Some((board, distribution, since)) = &self.shown {
            board.remove(distribution, *since);
        }
    }
}

/// A distribution's batches waiting for room in this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub batches: usize,
    /// When the longest-waiting of them began to wait.
    pub since: SystemTime,
}

/// This worker's batches waiting for room, for the status page: no shared record holds them.
#[derive(Debug, Default)]
pub struct WaitingBoard(Mutex<HashMap<DistributionId, Vec<SystemTime>>>);

impl WaitingBoard {
    pub fn add(&self, distribution: &DistributionId, since: SystemTime) {
        self.0.lock().unwrap().entry(distribution.clone()).or_default().push(since);
    }

    pub(super) fn remove(&self, distribution: &DistributionId, since: SystemTime) {
        let mut waiting = self.0.lock().unwrap();
        if let Some(times) = waiting.get_mut(distribution) {
            if let Some(at) = times.iter().position(|t| *t == since) {
                times.swap_remove(at);
            }
            if times.is_empty() {
                waiting.remove(distribution);
            }
        }
    }

    /// Every distribution with batches waiting now.
    pub fn now(&self) -> Vec<(DistributionId, Backlog)> {
        let waiting = self.0.lock().unwrap();
        waiting
            .iter()
            .filter_map(|(distribution, times)| {
                let since = *times.iter().min()?;
                Some((distribution.clone(), Backlog { batches: times.len(), since }))
            })
            .collect()
    }
}
