//! [`Backoff`]: when to try the coordinator again after a failed connect or
//! a lost session.
//!
//! Exponential from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], plus up to 50 %
//! random jitter so that a fleet does not reconnect in lockstep. A session
//! that stayed up for [`HEALTHY_SESSION`] starts the sequence over.

use std::time::Duration;

use tokio::time::Instant;

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Largest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// The reconnect schedule.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Delay before the next attempt, before jitter.
    delay: Duration,
    /// When the next attempt may start.
    reconnect_at: Instant,
}

impl Backoff {
    /// Returns a schedule whose first attempt is due now.
    pub(crate) fn new() -> Backoff {
        Backoff {
            delay: BACKOFF_MIN,
            reconnect_at: Instant::now(),
        }
    }

    /// Returns when the next attempt may start.
    pub(crate) fn reconnect_at(&self) -> Instant {
        self.reconnect_at
    }

    /// Returns the delay the next failure will wait, before jitter.
    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }

    /// Schedules the next attempt after a failed connect.
    pub(crate) fn failed(&mut self) {
        self.reconnect_at = Instant::now() + jitter(self.delay);
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }

    /// Schedules the next attempt after a session that lasted `lasted` ended.
    pub(crate) fn session_ended(&mut self, lasted: Duration) {
        if lasted >= HEALTHY_SESSION {
            self.delay = BACKOFF_MIN;
        }
        self.failed();
    }
}

/// Adds up to 50 % random jitter so that a fleet does not reconnect in lockstep.
fn jitter(base: Duration) -> Duration {
    // fastrand's thread-local generator gets a random seed (std's randomly
    // keyed hasher) per thread, so agents started together draw different delays.
    let fraction = f64::from(fastrand::u32(0..1000)) / 2000.0;
    base + base.mul_f64(fraction)
}
