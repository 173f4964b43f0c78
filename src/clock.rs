//! Time that simulations control: the wall clock for ledger timestamps, leases and expiry, and the rate limiter's
//! clock.
//!
//! Production reads the system clock. Simulations run on tokio's paused clock, where leases must expire as
//! simulated time passes, so they use a wall clock that follows tokio's.

use std::time::SystemTime;

use governor::clock::Clock;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub enum WallClock {
    #[default]
    System,
    /// The system time when created, advanced by tokio's clock since then.
    FollowsTokio { anchor: SystemTime, since: Instant },
}

impl WallClock {
    pub fn following_tokio() -> Self {
        Self::FollowsTokio { anchor: SystemTime::now(), since: Instant::now() }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Self::System => SystemTime::now(),
            Self::FollowsTokio { anchor, since } => *anchor + since.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let clock = WallClock::following_tokio();
        let start = clock.now();
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        assert_eq!(clock.now().duration_since(start).unwrap(), Duration::from_secs(3_600));
    }
}

/// governor's clock, read from tokio's, so a paused test runtime controls the limiter too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}
