//! A fixed-window request limit per client address, for the unauthenticated endpoints that
//! take secrets (accepting invitations, activating account managers): it turns guessing into
//! a slow crawl without getting in a real person's way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub struct RateLimiter {
    per_window: u32,
    window_millis: i64,
    counts: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_window: u32, window_millis: i64) -> Self {
        RateLimiter {
            per_window,
            window_millis,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `address`; `Err(seconds)` says how long until it may try again.
    pub fn check(&self, address: IpAddr, now_millis: i64) -> Result<(), u64> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now_millis - *start < self.window_millis);
        }
        let entry = counts.entry(address).or_insert((now_millis, 0));
        if now_millis - entry.0 >= self.window_millis {
            *entry = (now_millis, 0);
        }
        if entry.1 >= self.per_window {
            let wait = (entry.0 + self.window_millis - now_millis).max(0);
            return Err((wait as u64).div_ceil(1000).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_window_then_refuses_until_it_passes() {
        let limiter = RateLimiter::new(3, 60_000);
        let address: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(address, 1_000), Ok(()));
        }
        assert_eq!(limiter.check(address, 31_000), Err(30));
        assert_eq!(
            limiter.check(other, 31_000),
            Ok(()),
            "limits are per address"
        );
        assert_eq!(
            limiter.check(address, 61_000),
            Ok(()),
            "a new window starts"
        );
    }
}
