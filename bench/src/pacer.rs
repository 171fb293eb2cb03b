//! Open-loop pacing. Record `i` of a producer is *intended* to be sent at `start + i / rate`,
//! whatever happened before it; latency is measured from that intended time, so a stall in the
//! broker shows up in every record that should have been sent during it (no coordinated
//! omission). Without a rate, a record's intended time is the moment it is created.

/// Intended send times for one producer.
#[derive(Debug, Clone)]
pub struct Pacer {
    start_ns: u64,
    /// Nanoseconds between records; `None` = unlimited.
    interval_ns: Option<f64>,
    /// Records handed out so far.
    issued: u64,
}

impl Pacer {
    /// `rate` in records per second for this producer; `None` for unlimited.
    pub fn new(start_ns: u64, rate: Option<f64>) -> Pacer {
        Pacer {
            start_ns,
            interval_ns: rate.map(|r| 1e9 / r),
            issued: 0,
        }
    }

    /// Records handed out so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Intended send time of record `i`.
    pub fn intended_ns(&self, i: u64) -> Option<u64> {
        self.interval_ns
            .map(|dt| self.start_ns + (i as f64 * dt) as u64)
    }

    /// How many records are due at `now_ns` and not yet handed out (at most `cap`).
    pub fn due(&self, now_ns: u64, cap: u64) -> u64 {
        match self.interval_ns {
            None => cap,
            Some(_) if now_ns < self.start_ns => 0,
            Some(dt) => {
                let total = ((now_ns - self.start_ns) as f64 / dt) as u64 + 1;
                total.saturating_sub(self.issued).min(cap)
            }
        }
    }

    /// Hands out the next record: its intended send time (`now_ns` when unlimited).
    pub fn take(&mut self, now_ns: u64) -> u64 {
        let t = self.intended_ns(self.issued).unwrap_or(now_ns);
        self.issued += 1;
        t
    }

    /// When the next record becomes due; `None` when unlimited (always due).
    pub fn next_due_ns(&self) -> Option<u64> {
        self.intended_ns(self.issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_records_are_due_on_schedule() {
        // 1000 records/s from t=1s: one every millisecond.
        let mut p = Pacer::new(1_000_000_000, Some(1000.0));
        assert_eq!(p.due(999_999_999, 100), 0);
        assert_eq!(p.due(1_000_000_000, 100), 1);
        assert_eq!(p.due(1_004_500_000, 100), 5);
        for want in 0..5u64 {
            assert_eq!(p.take(0), 1_000_000_000 + want * 1_000_000);
        }
        assert_eq!(p.due(1_004_500_000, 100), 0);
        assert_eq!(p.next_due_ns(), Some(1_005_000_000));
    }

    #[test]
    fn a_stall_makes_every_missed_record_due_with_its_own_time() {
        let mut p = Pacer::new(0, Some(100.0));
        // The sender stalled for a whole second: 101 records are due, measured from schedule.
        assert_eq!(p.due(1_000_000_000, u64::MAX), 101);
        assert_eq!(p.due(1_000_000_000, 10), 10);
        let times: Vec<u64> = (0..3).map(|_| p.take(1_000_000_000)).collect();
        assert_eq!(times, vec![0, 10_000_000, 20_000_000]);
        assert_eq!(p.issued(), 3);
    }

    #[test]
    fn unlimited_uses_creation_time() {
        let mut p = Pacer::new(0, None);
        assert_eq!(p.due(5, 64), 64);
        assert_eq!(p.take(42), 42);
        assert_eq!(p.next_due_ns(), None);
    }
}
