//! Per-device delivery cursors over a user's archive (positions 1, 2, 3, …).
//!
//! A device is sent archive entries in order, at most `window` beyond what it acknowledged;
//! whatever it has not acknowledged is sent again when it reconnects (at-least-once, in archive
//! order). Acknowledgements are persisted in batches, so a crash re-sends at most one batch,
//! which the client drops by server id.

use std::ops::RangeInclusive;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCursor {
    /// The device has everything up to here.
    acked: u64,
    /// Sent on the current connection up to here.
    sent: u64,
    /// The acknowledgement last made durable.
    persisted: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    /// The device acknowledged a position it was never sent.
    Unsent { pos: u64, sent: u64 },
}

impl DeviceCursor {
    /// A device (re)connecting with its durable acknowledgement: everything after it is resent.
    pub fn attach(persisted: u64) -> Self {
        DeviceCursor { acked: persisted, sent: persisted, persisted }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Sent but not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    /// The positions to send next, given the archive's last position.
    pub fn next(&self, head: u64, window: u64) -> Option<RangeInclusive<u64>> {
        let end = head.min(self.acked + window);
        (end > self.sent).then(|| self.sent + 1..=end)
    }

    pub fn mark_sent(&mut self, upto: u64) {
        self.sent = self.sent.max(upto);
    }

    /// Records that the device has everything up to `pos`. Old or repeated acks are harmless.
    pub fn ack(&mut self, pos: u64) -> Result<(), AckError> {
        if pos > self.sent {
            return Err(AckError::Unsent { pos, sent: self.sent });
        }
        self.acked = self.acked.max(pos);
        Ok(())
    }

    /// The position to persist, once `every` acknowledgements have accumulated (or `force`).
    pub fn to_persist(&self, every: u64, force: bool) -> Option<u64> {
        let behind = self.acked - self.persisted;
        (behind > 0 && (force || behind >= every)).then_some(self.acked)
    }

    pub fn persisted(&mut self, pos: u64) {
        self.persisted = self.persisted.max(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_in_order_within_the_window() {
        let mut c = DeviceCursor::attach(0);
        assert_eq!(c.next(0, 4), None, "empty archive");
        assert_eq!(c.next(10, 4), Some(1..=4));
        c.mark_sent(4);
        assert_eq!(c.next(10, 4), None, "window full");
        c.ack(2).unwrap();
        assert_eq!(c.next(10, 4), Some(5..=6));
        c.mark_sent(6);
        c.ack(6).unwrap();
        assert_eq!(c.next(7, 4), Some(7..=7), "a new message goes out live");
    }

    #[test]
    fn reconnecting_resends_everything_unacknowledged() {
        let mut c = DeviceCursor::attach(0);
        c.mark_sent(5);
        c.ack(3).unwrap();
        assert_eq!(c.to_persist(10, false), None, "batched");
        let durable = c.to_persist(10, true).unwrap();
        c.persisted(durable);
        // The connection drops; positions 4 and 5 were sent but never acknowledged.
        let c = DeviceCursor::attach(durable);
        assert_eq!(c.next(5, 100), Some(4..=5));
    }

    #[test]
    fn acks_are_checked_and_monotonic() {
        let mut c = DeviceCursor::attach(2);
        c.mark_sent(5);
        assert_eq!(c.ack(9), Err(AckError::Unsent { pos: 9, sent: 5 }));
        c.ack(4).unwrap();
        c.ack(3).unwrap();
        assert_eq!(c.acked(), 4);
        assert_eq!(c.in_flight(), 1);
        assert_eq!(c.to_persist(2, false), Some(4));
    }
}
