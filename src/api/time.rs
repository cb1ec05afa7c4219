//! Time for the portal: a clock that tests can move, and the wire format of timestamps.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where the portal reads "now" (milliseconds since the Unix epoch).
pub trait Clock: Send + Sync + 'static {
    fn now_millis(&self) -> i64;

    /// Told when the clock is moved by hand (a test clock), for the one task that sleeps until
    /// a moment on it (the portal's expiry sweeper): a real clock reaches that moment by
    /// itself; a moved one must say so. None for a real clock.
    fn moved(&self) -> Option<&tokio::sync::Notify> {
        None
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// A clock that stands still until moved: tests use it to cross an expiry without waiting.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
    moved: tokio::sync::Notify,
}

impl ManualClock {
    pub fn new(start_millis: i64) -> Self {
        ManualClock {
            millis: AtomicI64::new(start_millis),
            moved: tokio::sync::Notify::new(),
        }
    }

    pub fn starting_now() -> Self {
        ManualClock::new(SystemClock.now_millis())
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        // A permit is kept if nobody waits yet, so a move during a sweep is not missed.
        self.moved.notify_one();
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }

    fn moved(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.moved)
    }
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T14:30:00.123Z`.
pub fn format_millis(millis: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let at = at
        .replace_nanosecond((millis.rem_euclid(1000) as u32) * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Parses RFC 3339 back to milliseconds.
pub fn parse_millis(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let millis = 1_795_000_000_123;
        let text = format_millis(millis);
        assert!(text.ends_with(".123Z"), "{text}");
        assert_eq!(parse_millis(&text), Some(millis));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1000);
        assert_eq!(clock.now_millis(), 1000);
        clock.advance(std::time::Duration::from_secs(2));
        assert_eq!(clock.now_millis(), 3000);
    }
}
