use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Errors queued per operation name; each call of that operation takes the next one, if any. An operation may also
/// be slowed down: each call then takes that long (on tokio's clock) before it answers.
#[derive(Debug)]
pub struct Faults<E> {
    queued: Mutex<HashMap<&'static str, VecDeque<E>>>,
    latency: Mutex<HashMap<&'static str, Duration>>,
}

impl<E> Default for Faults<E> {
    fn default() -> Self {
        Self { queued: Mutex::new(HashMap::new()), latency: Mutex::new(HashMap::new()) }
    }
}

impl<E> Faults<E> {
    /// Every later call of `operation` takes `latency` before it answers.
    pub fn slow_down(&self, operation: &'static str, latency: Duration) {
        self.latency.lock().unwrap().insert(operation, latency);
    }

    /// Waits for `operation`'s latency, then takes its next error, if any.
    pub(crate) async fn call(&self, operation: &'static str) -> Result<(), E> {
        let latency = self.latency.lock().unwrap().get(operation).copied();
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        self.take(operation)
    }

    /// The next call of `operation` fails with `error`.
    pub fn inject(&self, operation: &'static str, error: E) {
        self.queued.lock().unwrap().entry(operation).or_default().push_back(error);
    }

    pub(crate) fn take(&self, operation: &'static str) -> Result<(), E> {
        match self.queued.lock().unwrap().get_mut(operation).and_then(VecDeque::pop_front) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
