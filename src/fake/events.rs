//! An event destination that keeps what it is sent, and can be told to fail.

use std::sync::Mutex;

use super::faults::Faults;
use crate::ports::events::{Event, EventError, EventSink, Published};

#[derive(Debug, Default)]
pub struct MemoryEvents {
    pub faults: Faults<EventError>,
    published: Mutex<Vec<Event>>,
}

impl MemoryEvents {
    /// Every event delivered, in order (repeats included).
    pub fn published(&self) -> Vec<Event> {
        self.published.lock().unwrap().clone()
    }
}

impl EventSink for MemoryEvents {
    fn publish<'a>(&'a self, event: &'a Event) -> Published<'a> {
        Box::pin(async move {
            self.faults.call("publish").await?;
            self.published.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}
