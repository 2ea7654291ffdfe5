//! The clock the CronJob controller schedules by: real in the server, fake in tests.

use jiff::Timestamp;

/// Tells the time.
pub(crate) trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FakeClock(std::sync::Mutex<Timestamp>);

#[cfg(test)]
impl FakeClock {
    /// A clock at `t` (RFC 3339).
    pub(crate) fn at(t: &str) -> Self {
        FakeClock(std::sync::Mutex::new(t.parse().expect("timestamp")))
    }

    /// Moves the clock to `t` (RFC 3339).
    pub(crate) fn set(&self, t: &str) {
        *self.0.lock().expect("clock") = t.parse().expect("timestamp");
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}
