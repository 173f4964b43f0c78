//! A value that tasks wait on, waking them in the order they began to wait.
//!
//! Not `tokio::sync::watch`: it spreads its waiters over several `Notify`s chosen at random, so batches released
//! together would call CloudFront in a different order in every run of a simulation, and seeds would not replay.

use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Watched<T> {
    value: Mutex<T>,
    changed: Notify,
}

impl<T: Copy> Watched<T> {
    pub fn new(value: T) -> Self {
        Self { value: Mutex::new(value), changed: Notify::new() }
    }

    pub fn get(&self) -> T {
        *self.value.lock().unwrap()
    }

    pub fn set(&self, value: T) {
        self.modify(|current| *current = value);
    }

    pub fn modify(&self, change: impl FnOnce(&mut T)) {
        change(&mut self.value.lock().unwrap());
        self.changed.notify_waiters();
    }

    /// Returns once the value satisfies `wanted`, at once if it does now.
    pub async fn until(&self, wanted: impl Fn(T) -> bool) {
        loop {
            // Registered before the look, so that a change between the look and the wait is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if wanted(self.get()) {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_in_the_order_they_began_to_wait() {
        let gate = Arc::new(Watched::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..16)
            .map(|n| {
                let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
                tokio::spawn(async move {
                    gate.until(|open| open).await;
                    order.lock().unwrap().push(n);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.set(true);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
