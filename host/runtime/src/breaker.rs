//! The circuit breaker of one plugin version.
//!
//! After `failure_threshold` consecutive faulted batches (traps, limit hits,
//! contract-breaking output), the version is taken out of service for
//! `cooldown`: its records are rejected with that reason, without running it.
//! After the cooldown one batch is let through; success closes the breaker, a
//! fault opens it again. Replacing the version (a new binding) starts afresh.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// What a batch's result did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerChange {
    /// Out of service for `cooldown`, after `consecutive_faults` faulted batches.
    Opened {
        consecutive_faults: u32,
        cooldown: Duration,
    },
    /// A trial batch after the cooldown succeeded: back in service.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    consecutive_faults: u32,
    open_until: Option<Instant>,
    last_fault: String,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            consecutive_faults: 0,
            open_until: None,
            last_fault: String::new(),
        }
    }

    /// `Err(why)` while the breaker is open.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), String> {
        match self.open_until {
            Some(until) if now < until => Err(format!(
                "disabled for {:.0?} more after {} consecutive faulted batches (last: {})",
                until - now,
                self.consecutive_faults,
                self.last_fault
            )),
            Some(_) => {
                // Half-open: let this batch through as a trial.
                self.open_until = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a batch's result; says when that opened or closed the breaker,
    /// so the change is logged once rather than with every batch.
    pub(crate) fn record(&mut self, fault: Option<&str>, now: Instant) -> Option<BreakerChange> {
        match fault {
            None => {
                // At or past the threshold, only a trial batch ran: it closes the breaker.
                let was_open = self.consecutive_faults >= self.settings.failure_threshold;
                self.consecutive_faults = 0;
                was_open.then_some(BreakerChange::Closed)
            }
            Some(why) => {
                self.consecutive_faults += 1;
                self.last_fault = why.to_owned();
                (self.consecutive_faults >= self.settings.failure_threshold).then(|| {
                    self.open_until = Some(now + self.settings.cooldown);
                    BreakerChange::Opened {
                        consecutive_faults: self.consecutive_faults,
                        cooldown: self.settings.cooldown,
                    }
                })
            }
        }
    }

    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let settings = BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
        };
        let mut b = Breaker::new(settings);
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit(t0).unwrap();
            assert_eq!(b.record(Some("trap"), t0), None);
        }
        assert!(!b.is_open(t0));
        let opened = BreakerChange::Opened {
            consecutive_faults: 3,
            cooldown: Duration::from_secs(10),
        };
        assert_eq!(b.record(Some("trap"), t0), Some(opened));
        assert!(b.is_open(t0));
        let why = b.admit(t0 + Duration::from_secs(1)).unwrap_err();
        assert!(
            why.contains("3 consecutive") && why.contains("trap"),
            "{why}"
        );
        // After the cooldown, one trial batch; a fault reopens at once.
        let later = t0 + Duration::from_secs(11);
        b.admit(later).unwrap();
        assert!(matches!(
            b.record(Some("trap again"), later),
            Some(BreakerChange::Opened {
                consecutive_faults: 4,
                ..
            })
        ));
        assert!(b.admit(later).is_err());
        // A success after the next cooldown closes it, and says so once.
        let much_later = later + Duration::from_secs(11);
        b.admit(much_later).unwrap();
        assert_eq!(b.record(None, much_later), Some(BreakerChange::Closed));
        assert_eq!(b.record(None, much_later), None);
        assert_eq!(b.record(Some("one-off"), much_later), None);
        assert!(b.admit(much_later).is_ok());
    }
}
