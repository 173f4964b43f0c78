use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Errors queued per operation name; each call of that operation takes the next one, if any. An operation may also
/// be slowed down: each call then takes that long (on tokio's clock) before it answers; or be down for a while:
/// every call fails until then (an outage, on tokio's clock); or have its answer lost: the call is carried out,
/// then fails, as when the connection drops after the service wrote.
#[derive(Debug)]
pub struct Faults<E> {
    queued: Mutex<HashMap<&'static str, VecDeque<E>>>,
    lost_answers: Mutex<HashMap<&'static str, VecDeque<E>>>,
    latency: Mutex<HashMap<&'static str, Duration>>,
    outages: Mutex<HashMap<&'static str, (Instant, E)>>,
}

impl<E> Default for Faults<E> {
    fn default() -> Self {
        Self {
            queued: Mutex::default(),
            lost_answers: Mutex::default(),
            latency: Mutex::default(),
            outages: Mutex::default(),
        }
    }
}

impl<E: Clone> Faults<E> {
    /// Every call of `operation` fails with `error` until `until`.
    pub fn down_until(&self, operation: &'static str, error: E, until: Instant) {
        self.outages.lock().unwrap().insert(operation, (until, error));
    }

    /// Waits for `operation`'s latency, then fails if it is down, or takes its next queued error, if any.
    pub(crate) async fn call(&self, operation: &'static str) -> Result<(), E> {
        let latency = self.latency.lock().unwrap().get(operation).copied();
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        self.take(operation)
    }

    pub(crate) fn take(&self, operation: &'static str) -> Result<(), E> {
        let outage = self.outages.lock().unwrap().get(operation).cloned();
        if let Some((until, error)) = outage
            && Instant::now() < until
        {
            return Err(error);
        }
        match self.queued.lock().unwrap().get_mut(operation).and_then(VecDeque::pop_front) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl<E> Faults<E> {
    /// Every later call of `operation` takes `latency` before it answers.
    pub fn slow_down(&self, operation: &'static str, latency: Duration) {
        self.latency.lock().unwrap().insert(operation, latency);
    }

    /// The next call of `operation` fails with `error`.
    pub fn inject(&self, operation: &'static str, error: E) {
        self.queued.lock().unwrap().entry(operation).or_default().push_back(error);
    }

    /// The next call of `operation` is carried out, and then fails with `error`.
    pub fn lose_answer(&self, operation: &'static str, error: E) {
        self.lost_answers.lock().unwrap().entry(operation).or_default().push_back(error);
    }

    /// After `operation` was carried out: its answer, lost if one is queued.
    pub(crate) fn answer(&self, operation: &'static str) -> Result<(), E> {
        match self.lost_answers.lock().unwrap().get_mut(operation).and_then(VecDeque::pop_front) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
