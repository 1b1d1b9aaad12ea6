//! The RFC 6121 subscription state machine for one roster item, from the user's side.
//!
//! `outbound` handles a subscription stanza the user sends to a contact; `inbound` one the
//! contact sends to the user. Each returns the new item and what to do with the stanza.

use telex_types::roster::{RosterItem, Subscription, SubscriptionKind};

/// The result of one subscription event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub item: RosterItem,
    /// The item changed: persist it and push it to the user's devices.
    pub changed: bool,
    /// Route the stanza onwards: to the contact (outbound) or to the user's devices (inbound).
    pub route: bool,
    /// Answer the sender automatically with this (inbound subscribe when already approved).
    pub auto_reply: Option<SubscriptionKind>,
}

fn set(item: &RosterItem, to: bool, from: bool, pending_out: bool, pending_in: bool) -> RosterItem {
    RosterItem { subscription: Subscription::from_parts(to, from), pending_out, pending_in, ..item.clone() }
}

fn outcome(old: &RosterItem, item: RosterItem, route: bool) -> Outcome {
    Outcome { changed: &item != old, item, route, auto_reply: None }
}

/// The user sends `kind` to the contact.
pub fn outbound(old: &RosterItem, kind: SubscriptionKind) -> Outcome {
    let (to, from) = (old.subscription.has_to(), old.subscription.has_from());
    match kind {
        // Ask to see the contact's presence. Re-sent even when pending, so a lost request can
        // be retried; the contact's side auto-approves when it already approved.
        SubscriptionKind::Subscribe => {
            let item = set(old, to, from, !to, old.pending_in);
            outcome(old, item, true)
        }
        // Approve the contact's request. Without a pending request there is nothing to approve
        // (pre-approval is not offered).
        SubscriptionKind::Subscribed => {
            if old.pending_in {
                outcome(old, set(old, to, true, old.pending_out, false), true)
            } else {
                outcome(old, old.clone(), false)
            }
        }
        // Stop seeing the contact's presence, or withdraw a pending request.
        SubscriptionKind::Unsubscribe => {
            let active = to || old.pending_out;
            outcome(old, set(old, false, from, false, old.pending_in), active)
        }
        // Stop the contact seeing the user's presence, or deny a pending request.
        SubscriptionKind::Unsubscribed => {
            let active = from || old.pending_in;
            outcome(old, set(old, to, false, old.pending_out, false), active)
        }
    }
}

/// The contact sends `kind` to the user.
pub fn inbound(old: &RosterItem, kind: SubscriptionKind) -> Outcome {
    let (to, from) = (old.subscription.has_to(), old.subscription.has_from());
    match kind {
        SubscriptionKind::Subscribe => {
            if from {
                // Already approved: answer for the user, bother no device.
                let mut o = outcome(old, old.clone(), false);
                o.auto_reply = Some(SubscriptionKind::Subscribed);
                o
            } else {
                // Shown to the user once; repeats while pending are not re-shown.
                outcome(old, set(old, to, from, old.pending_out, true), !old.pending_in)
            }
        }
        SubscriptionKind::Subscribed => {
            if old.pending_out {
                outcome(old, set(old, true, from, false, old.pending_in), true)
            } else {
                outcome(old, old.clone(), false)
            }
        }
        SubscriptionKind::Unsubscribe => {
            let active = from || old.pending_in;
            outcome(old, set(old, to, false, old.pending_out, false), active)
        }
        SubscriptionKind::Unsubscribed => {
            let active = to || old.pending_out;
            outcome(old, set(old, false, from, false, old.pending_in), active)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionKind::*;

    /// Alice's and Bob's items for each other, driven through both sides like the servers would.
    struct Pair {
        alice: RosterItem,
        bob: RosterItem,
    }

    impl Pair {
        fn new() -> Self {
            Pair { alice: RosterItem::default(), bob: RosterItem::default() }
        }
        /// Alice sends `kind` to Bob.
        fn alice_sends(&mut self, kind: SubscriptionKind) -> (Outcome, Option<Outcome>) {
            let out = outbound(&self.alice, kind);
            self.alice = out.item.clone();
            let delivered = out.route.then(|| {
                let i = inbound(&self.bob, kind);
                self.bob = i.item.clone();
                i
            });
            (out, delivered)
        }
        fn bob_sends(&mut self, kind: SubscriptionKind) -> (Outcome, Option<Outcome>) {
            std::mem::swap(&mut self.alice, &mut self.bob);
            let r = self.alice_sends(kind);
            std::mem::swap(&mut self.alice, &mut self.bob);
            r
        }
    }

    #[test]
    fn the_full_subscription_dance_reaches_both() {
        let mut p = Pair::new();
        let (_, shown) = p.alice_sends(Subscribe);
        assert!(p.alice.pending_out && p.bob.pending_in);
        assert!(shown.unwrap().route, "Bob's devices see the request");
        p.bob_sends(Subscribed);
        assert_eq!(p.alice.subscription, Subscription::To);
        assert_eq!(p.bob.subscription, Subscription::From);
        assert!(!p.alice.pending_out && !p.bob.pending_in);
        p.bob_sends(Subscribe);
        p.alice_sends(Subscribed);
        assert_eq!(p.alice.subscription, Subscription::Both);
        assert_eq!(p.bob.subscription, Subscription::Both);
    }

    #[test]
    fn an_approved_contact_resubscribing_is_answered_automatically() {
        let mut p = Pair::new();
        p.alice_sends(Subscribe);
        p.bob_sends(Subscribed);
        let i = inbound(&p.bob, Subscribe);
        assert_eq!(i.auto_reply, Some(Subscribed));
        assert!(!i.changed && !i.route);
    }

    #[test]
    fn denial_and_cancellation() {
        let mut p = Pair::new();
        p.alice_sends(Subscribe);
        p.bob_sends(Unsubscribed); // Bob denies
        assert_eq!((p.alice.subscription, p.alice.pending_out), (Subscription::None, false));
        assert!(!p.bob.pending_in);

        p.alice_sends(Subscribe);
        p.bob_sends(Subscribed);
        p.alice_sends(Unsubscribe); // Alice no longer wants Bob's presence
        assert_eq!(p.alice.subscription, Subscription::None);
        assert_eq!(p.bob.subscription, Subscription::None);

        p.bob_sends(Subscribe);
        p.alice_sends(Subscribed);
        p.alice_sends(Unsubscribed); // Alice revokes Bob's view
        assert_eq!(p.bob.subscription, Subscription::None);
        assert_eq!(p.alice.subscription, Subscription::None);
    }

    #[test]
    fn stray_answers_change_nothing() {
        let item = RosterItem { name: "Bob".into(), groups: vec!["Friends".into()], ..Default::default() };
        for kind in [Subscribed, Unsubscribe, Unsubscribed] {
            let o = inbound(&item, kind);
            assert!(!o.changed && !o.route, "{kind:?}");
        }
        let o = outbound(&item, Subscribed);
        assert!(!o.changed && !o.route, "no pre-approval");
        // Names and groups survive state changes.
        let o = outbound(&item, Subscribe);
        assert_eq!((o.item.name.as_str(), o.item.groups.len()), ("Bob", 1));
    }

    #[test]
    fn repeated_requests_are_shown_once() {
        let first = inbound(&RosterItem::default(), Subscribe);
        assert!(first.route);
        let again = inbound(&first.item, Subscribe);
        assert!(!again.route && !again.changed);
    }
}
