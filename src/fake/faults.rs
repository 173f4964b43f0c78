use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Errors queued per operation name; each call of that operation takes the next one, if any.
#[derive(Debug)]
pub struct Faults<E> {
    queued: Mutex<HashMap<&'static str, VecDeque<E>>>,
}

impl<E> Default for Faults<E> {
    fn default() -> Self {
        Self { queued: Mutex::new(HashMap::new()) }
    }
}

impl<E> Faults<E> {
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
