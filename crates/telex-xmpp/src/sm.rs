//! Stream management counters (XEP-0198), pure. "Handled" means committed: a message counts
//! only once its send is stored in both archives (or refused), so a resumed client resends
//! exactly what the server may not have; the outbound queue keeps every stanza the client has
//! not acknowledged, with the archive position it carries, so archive acks never run ahead of
//! what the client confirmed.

use std::collections::VecDeque;

/// Stanzas the client has sent, in order, and which of them are handled.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Handled stanzas before the first one still pending.
    handled: u32,
    /// Stanzas after those: `Some(client id)` while its send is in flight, `None` once handled.
    pending: VecDeque<Option<String>>,
    /// Pending stanzas that came before `<enable/>`: not counted when handled.
    before_enable: usize,
}

impl Inbound {
    /// Stream management was enabled: `h` counts from here (XEP-0198 §4), so stanzas the client
    /// sent before (the roster query, say) never make its acknowledgements run ahead.
    pub fn enable(&mut self) {
        self.handled = 0;
        self.before_enable = self.pending.len();
    }

    /// A stanza that is handled as soon as it is read (presence, iq answered inline, ...).
    pub fn done(&mut self) {
        if self.pending.is_empty() {
            self.handled = self.handled.wrapping_add(1);
        } else {
            self.pending.push_back(None);
        }
    }

    /// A message whose send is in flight under `client_id`.
    pub fn sending(&mut self, client_id: String) {
        self.pending.push_back(Some(client_id));
    }

    /// The send of `client_id` finished (stored or refused).
    pub fn sent(&mut self, client_id: &str) {
        if let Some(slot) = self.pending.iter_mut().find(|p| p.as_deref() == Some(client_id)) {
            *slot = None;
        }
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            if self.before_enable > 0 {
                self.before_enable -= 1;
            } else {
                self.handled = self.handled.wrapping_add(1);
            }
        }
    }

    /// The `h` to report.
    pub fn h(&self) -> u32 {
        self.handled
    }

    /// The `h` to report once everything received so far is handled: what an `<a/>`
    /// answering an `<r/>` read now must count (XEP-0198 §4).
    pub fn received(&self) -> u32 {
        let after_enable = self.pending.len().saturating_sub(self.before_enable);
        self.handled.wrapping_add(after_enable as u32)
    }
}

/// What the server sent and the client has not acknowledged.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Stanzas sent so far (the client's `h` counts these).
    count: u32,
    /// `(stanza number, the stanza as written or None for an archive entry with nothing to
    /// show, archive position)`. An entry with no stanza carries the number of the stanza
    /// before it.
    unacked: VecDeque<(u32, Option<String>, Option<u64>)>,
    /// Bytes of the stanzas held.
    bytes: usize,
}

/// An acknowledgement the client may not give: more stanzas than were sent.
#[derive(Debug, PartialEq, Eq)]
pub struct AckTooHigh {
    pub h: u32,
    pub sent: u32,
}

impl Outbound {
    /// Records a stanza sent to the client; `position` when it carries an archive entry.
    pub fn sent(&mut self, stanza: String, position: Option<u64>) {
        self.count = self.count.wrapping_add(1);
        self.bytes += stanza.len();
        self.unacked.push_back((self.count, Some(stanza), position));
    }

    /// An archive entry the client is not shown (its own message): acknowledged with the
    /// stanza before it.
    pub fn skipped(&mut self, position: u64) {
        self.unacked.push_back((self.count, None, Some(position)));
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Bytes of unacknowledged stanzas held for a resumption.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The client has `h` stanzas: drops them; the last archive position now acknowledged.
    pub fn ack(&mut self, h: u32) -> Result<Option<u64>, AckTooHigh> {
        // Counts wrap at 2^32; compare by distance.
        if h.wrapping_sub(self.count) as i32 > 0 {
            return Err(AckTooHigh { h, sent: self.count });
        }
        let mut position = None;
        while let Some((n, _, p)) = self.unacked.front() {
            if (h.wrapping_sub(*n) as i32) < 0 {
                break;
            }
            position = position.max(*p);
            if let Some((_, Some(s), _)) = self.unacked.pop_front() {
                self.bytes -= s.len();
            }
        }
        Ok(position)
    }

    /// The stanzas to send again after a resumption.
    pub fn unacked_stanzas(&self) -> impl Iterator<Item = &str> {
        self.unacked.iter().filter_map(|(_, e, _)| e.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(n: &str) -> String {
        format!("<{n}/>")
    }

    #[test]
    fn inbound_counts_only_the_handled_prefix() {
        let mut i = Inbound::default();
        i.done();
        i.sending("a".into());
        i.done();
        i.sending("b".into());
        assert_eq!(i.h(), 1);
        i.sent("b");
        assert_eq!(i.h(), 1, "b is handled but a before it is not");
        i.sent("a");
        assert_eq!(i.h(), 4);
        i.done();
        assert_eq!(i.h(), 5);
        i.sent("unknown");
        assert_eq!(i.h(), 5);
    }

    #[test]
    fn an_answer_to_r_waits_for_what_came_before_it() {
        let mut i = Inbound::default();
        i.done();
        i.sending("a".into());
        i.done();
        assert_eq!((i.h(), i.received()), (1, 3), "the <a/> for an <r/> read now must say 3");
        i.sent("a");
        assert_eq!(i.h(), i.received());
    }

    #[test]
    fn h_counts_from_enable() {
        let mut i = Inbound::default();
        // A roster query answered, and a message still being stored, before <enable/>.
        i.done();
        i.sending("early".into());
        i.enable();
        assert_eq!(i.h(), 0);
        i.done();
        i.sending("late".into());
        i.sent("late");
        assert_eq!(i.h(), 0, "behind the early send");
        i.sent("early");
        assert_eq!(i.h(), 2, "the presence and the late message; not the early one");
    }

    #[test]
    fn outbound_acks_positions_up_to_the_acknowledged_stanza() {
        let mut o = Outbound::default();
        o.sent(el("presence"), None);
        o.sent(el("message"), Some(7));
        o.skipped(8);
        o.sent(el("message"), Some(9));
        assert_eq!(o.ack(1), Ok(None));
        assert_eq!(o.ack(2), Ok(Some(8)), "the skipped entry goes with the stanza before it");
        assert_eq!(o.unacked_stanzas().count(), 1);
        assert_eq!(o.ack(2), Ok(None), "repeated acks are harmless");
        assert_eq!(o.ack(4), Err(AckTooHigh { h: 4, sent: 3 }));
        assert_eq!(o.ack(3), Ok(Some(9)));
        assert_eq!((o.unacked(), o.bytes()), (0, 0));
    }

    #[test]
    fn counters_wrap() {
        let mut o = Outbound { count: u32::MAX - 1, ..Outbound::default() };
        o.sent(el("a"), Some(1));
        o.sent(el("b"), Some(2));
        assert_eq!(o.count(), 0);
        assert_eq!(o.ack(u32::MAX), Ok(Some(1)));
        assert_eq!(o.ack(0), Ok(Some(2)));
    }
}
