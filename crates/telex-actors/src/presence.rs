//! Presence aggregation (one user, many devices) and flap coalescing.

use std::time::{Duration, Instant};

use telex_types::presence::{DevicePresence, Show};

/// How strongly a show value wins when devices disagree. "Do not disturb" set on any device is
/// respected; otherwise the most available device wins.
fn rank(show: Show) -> u8 {
    match show {
        Show::Dnd => 5,
        Show::Chat => 4,
        Show::Available => 3,
        Show::Away => 2,
        Show::Xa => 1,
        Show::Unavailable => 0,
    }
}

/// The presence a user shows to contacts: the highest-ranked device, ties broken by priority.
/// `None` when no device is available.
pub fn aggregate<'a>(devices: impl IntoIterator<Item = &'a DevicePresence>) -> Option<DevicePresence> {
    devices.into_iter().filter(|d| d.show != Show::Unavailable).max_by_key(|d| (rank(d.show), d.priority)).cloned()
}

/// What the caller should do after a presence change.
#[derive(Debug, PartialEq, Eq)]
pub enum Coalesced<P> {
    /// Send this to contacts now.
    Send(P),
    /// Hold the change; call [`Coalescer::flush`] at this instant.
    FlushAt(Instant),
    /// Nothing to send (unchanged, or a flush is already scheduled).
    Nothing,
}

/// Coalesces rapid presence changes: the first change after a quiet period goes out at once;
/// later changes within `window` are held and only the latest is sent when the window ends,
/// and not at all if it equals what contacts already have.
#[derive(Debug)]
pub struct Coalescer<P> {
    window: Duration,
    sent: Option<P>,
    held: Option<P>,
    quiet_from: Option<Instant>,
}

impl<P: Clone + PartialEq> Coalescer<P> {
    pub fn new(window: Duration) -> Self {
        Coalescer { window, sent: None, held: None, quiet_from: None }
    }

    pub fn update(&mut self, presence: P, now: Instant) -> Coalesced<P> {
        let in_window = self.quiet_from.is_some_and(|q| now < q);
        if !in_window {
            self.held = None;
            if self.sent.as_ref() == Some(&presence) {
                return Coalesced::Nothing;
            }
            self.sent = Some(presence.clone());
            self.quiet_from = Some(now + self.window);
            return Coalesced::Send(presence);
        }
        let first_held = self.held.is_none();
        self.held = Some(presence);
        match (first_held, self.quiet_from) {
            (true, Some(at)) => Coalesced::FlushAt(at),
            _ => Coalesced::Nothing,
        }
    }

    /// At the end of a window: the held change, if it differs from what was last sent.
    pub fn flush(&mut self, now: Instant) -> Option<P> {
        let held = self.held.take()?;
        if self.sent.as_ref() == Some(&held) {
            return None;
        }
        self.sent = Some(held.clone());
        self.quiet_from = Some(now + self.window);
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(show: Show, priority: i8, status: &str) -> DevicePresence {
        DevicePresence { show, priority, status: status.into(), extras: String::new() }
    }

    #[test]
    fn most_available_wins_and_priority_breaks_ties() {
        let phone = dev(Show::Away, 10, "phone");
        let laptop = dev(Show::Available, 0, "laptop");
        assert_eq!(aggregate([&phone, &laptop]).unwrap().status, "laptop");
        let desk = dev(Show::Available, 5, "desk");
        assert_eq!(aggregate([&phone, &laptop, &desk]).unwrap().status, "desk");
        assert_eq!(aggregate([&dev(Show::Unavailable, 99, "gone")]), None);
        assert_eq!(aggregate([]), None);
    }

    #[test]
    fn dnd_on_any_device_is_respected() {
        let laptop = dev(Show::Chat, 50, "free");
        let desk = dev(Show::Dnd, -5, "in a meeting");
        assert_eq!(aggregate([&laptop, &desk]).unwrap().show, Show::Dnd);
    }

    #[test]
    fn flapping_is_coalesced_to_the_latest_state() {
        let t0 = Instant::now();
        let w = Duration::from_millis(200);
        let mut c = Coalescer::new(w);
        assert_eq!(c.update("away", t0), Coalesced::Send("away"));
        assert_eq!(c.update("away", t0 + w * 2), Coalesced::Nothing, "unchanged");
        let t1 = t0 + w * 3;
        assert_eq!(c.update("available", t1), Coalesced::Send("available"));
        // Flapping inside the window: held, one flush scheduled.
        assert_eq!(c.update("away", t1 + w / 4), Coalesced::FlushAt(t1 + w));
        assert_eq!(c.update("xa", t1 + w / 2), Coalesced::Nothing);
        assert_eq!(c.update("dnd", t1 + w * 3 / 4), Coalesced::Nothing);
        assert_eq!(c.flush(t1 + w), Some("dnd"), "only the latest goes out");
        // A flap that ends where it started sends nothing at all.
        let t2 = t1 + w * 5;
        assert_eq!(c.update("away", t2), Coalesced::Send("away"));
        assert!(matches!(c.update("available", t2 + w / 2), Coalesced::FlushAt(_)));
        c.update("away", t2 + w * 3 / 4);
        assert_eq!(c.flush(t2 + w), None);
    }
}
