//! The user actor's roster, block list and presence: RFC 6121 subscriptions decided by the pure
//! state machine, stored through the ledger, pushed to the user's devices; presence aggregated
//! over devices, coalesced, and fanned out to the contacts allowed to see it.

use std::collections::{BTreeMap, BTreeSet};

use telex_types::presence::{DevicePresence, Show};
use telex_types::roster::{RosterItem, SubscriptionKind};
use telex_types::{ErrorCode, TelexError, UserJid};

use crate::hub::{Outbound, UserActor};
use crate::presence::{aggregate, Coalesced};
use crate::subscription::{inbound, outbound};

/// Roster and block-list requests from the user's own devices.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum RosterOp {
    Get,
    /// Set the item's name and groups and ask to see the contact's presence.
    Add {
        contact: UserJid,
        name: String,
        groups: Vec<String>,
    },
    /// Remove the item, ending subscriptions both ways.
    Remove {
        contact: UserJid,
    },
    /// Let a contact who asked see the user's presence.
    Approve {
        contact: UserJid,
    },
    /// Refuse a pending request, or stop a contact seeing the user's presence.
    Deny {
        contact: UserJid,
    },
    Block {
        jid: UserJid,
    },
    Unblock {
        jid: UserJid,
    },
    Blocked,
    /// Set the item's name and groups only (an XMPP roster set), creating it if needed.
    Set {
        contact: UserJid,
        name: String,
        groups: Vec<String>,
    },
    /// Ask to see the contact's presence, keeping the item's name and groups.
    Subscribe {
        contact: UserJid,
    },
    /// Stop seeing the contact's presence, or withdraw a pending request.
    Unsubscribe {
        contact: UserJid,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RosterReply {
    Items(Vec<(UserJid, RosterItem)>),
    Blocked(Vec<UserJid>),
}

impl UserActor {
    fn load(&mut self) -> Result<(), TelexError> {
        if self.roster.is_none() {
            self.roster = Some(self.ledger.roster(&self.user)?.into_iter().collect::<BTreeMap<_, _>>());
        }
        if self.blocked.is_none() {
            self.blocked = Some(self.ledger.blocked(&self.user)?.into_iter().collect::<BTreeSet<_>>());
        }
        Ok(())
    }

    fn item(&self, contact: &UserJid) -> Option<RosterItem> {
        self.roster.as_ref().and_then(|r| r.get(contact).cloned())
    }

    fn is_blocked(&self, jid: &UserJid) -> bool {
        self.blocked.as_ref().is_some_and(|b| b.contains(jid))
    }

    /// Pushes to every device; a device whose queue is full misses it and refetches later.
    fn push_all(&self, make: impl Fn() -> Outbound) {
        for s in self.sessions.values() {
            let _ = s.tx.try_send(Box::new(make()));
        }
    }

    async fn save(&mut self, contact: &UserJid, item: Option<RosterItem>) -> Result<(), TelexError> {
        self.ledger.roster_put(self.user.clone(), contact.clone(), item.clone()).await?;
        let roster = self.roster.get_or_insert_with(BTreeMap::new);
        match &item {
            Some(i) => roster.insert(contact.clone(), i.clone()),
            None => roster.remove(contact),
        };
        self.push_all(|| Outbound::Roster { contact: contact.clone(), item: item.clone() });
        Ok(())
    }

    /// The item for `contact` with a new name and groups, if `contact` may be on the roster.
    fn named_item(&self, contact: &UserJid, name: String, groups: Vec<String>) -> Result<RosterItem, TelexError> {
        if contact == &self.user {
            return Err(TelexError::invalid("you cannot add yourself to your roster"));
        }
        if !self.ledger.user_exists(contact)? {
            return Err(TelexError::not_found(format!("no such user {contact}")));
        }
        Ok(RosterItem { name, groups, ..self.item(contact).unwrap_or_default() })
    }

    pub(crate) async fn roster_op(&mut self, op: RosterOp) -> Result<RosterReply, TelexError> {
        self.load()?;
        let items =
            |a: &Self| RosterReply::Items(a.roster.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect());
        let approve = matches!(op, RosterOp::Approve { .. });
        let block = matches!(op, RosterOp::Block { .. });
        match op {
            RosterOp::Get => Ok(items(self)),
            RosterOp::Blocked => Ok(RosterReply::Blocked(self.blocked.iter().flatten().cloned().collect())),
            RosterOp::Add { contact, name, groups } => {
                let item = self.named_item(&contact, name, groups)?;
                let o = outbound(&item, SubscriptionKind::Subscribe);
                self.save(&contact, Some(o.item)).await?;
                if o.route {
                    self.hub.deliver_subscription(&contact, &self.user, SubscriptionKind::Subscribe).await;
                }
                Ok(items(self))
            }
            RosterOp::Subscribe { contact } => {
                let item = self.item(&contact).unwrap_or_default();
                let (name, groups) = (item.name, item.groups);
                Box::pin(self.roster_op(RosterOp::Add { contact, name, groups })).await
            }
            RosterOp::Set { contact, name, groups } => {
                let item = self.named_item(&contact, name, groups)?;
                self.save(&contact, Some(item)).await?;
                Ok(items(self))
            }
            RosterOp::Unsubscribe { contact } => {
                let item = self.item(&contact).unwrap_or_default();
                let o = outbound(&item, SubscriptionKind::Unsubscribe);
                if o.changed && self.item(&contact).is_some() {
                    self.save(&contact, Some(o.item)).await?;
                }
                if o.route {
                    self.hub.deliver_subscription(&contact, &self.user, SubscriptionKind::Unsubscribe).await;
                }
                Ok(items(self))
            }
            RosterOp::Remove { contact } => {
                let Some(item) = self.item(&contact) else {
                    return Err(TelexError::not_found(format!("{contact} is not on your roster")));
                };
                self.save(&contact, None).await?;
                if item.subscription.has_to() || item.pending_out {
                    self.hub.deliver_subscription(&contact, &self.user, SubscriptionKind::Unsubscribe).await;
                }
                if item.subscription.has_from() || item.pending_in {
                    self.hub.deliver_subscription(&contact, &self.user, SubscriptionKind::Unsubscribed).await;
                }
                Ok(items(self))
            }
            RosterOp::Approve { contact } | RosterOp::Deny { contact } => {
                let kind = if approve { SubscriptionKind::Subscribed } else { SubscriptionKind::Unsubscribed };
                let item = self.item(&contact).unwrap_or_default();
                let o = outbound(&item, kind);
                if !o.route {
                    let what = if approve { "no pending request from" } else { "nothing to deny for" };
                    return Err(TelexError::new(ErrorCode::FailedPrecondition, format!("{what} {contact}")));
                }
                self.save(&contact, Some(o.item)).await?;
                // The contact's actor shows (or hides) the user's presence when it applies this.
                self.hub.deliver_subscription(&contact, &self.user, kind).await;
                Ok(items(self))
            }
            RosterOp::Block { jid } | RosterOp::Unblock { jid } => {
                if jid == self.user {
                    return Err(TelexError::invalid("you cannot block yourself"));
                }
                self.ledger.set_blocked(self.user.clone(), jid.clone(), block).await?;
                let set = self.blocked.get_or_insert_with(BTreeSet::new);
                if block {
                    set.insert(jid.clone());
                    // Hidden both ways from now on.
                    self.hub.presence_to(&jid, &self.user, None);
                    self.push_all(|| Outbound::Presence { from: jid.clone(), presence: None });
                } else {
                    set.remove(&jid);
                    if self.item(&jid).is_some_and(|i| i.subscription.has_from()) {
                        let current = self.hub.online.get(&self.user).map(|p| p.clone());
                        self.hub.presence_to(&jid, &self.user, current);
                    }
                }
                Ok(RosterReply::Blocked(self.blocked.iter().flatten().cloned().collect()))
            }
        }
    }

    /// A signal from another user's device, for every device of this user; hidden when the
    /// user blocks the sender (the sender's side checked the other direction).
    pub(crate) fn signal(&mut self, from: UserJid, from_device: String, payload: String) {
        if self.load().is_err() || self.is_blocked(&from) {
            return;
        }
        self.push_all(|| Outbound::Signal {
            from: from.clone(),
            from_device: from_device.clone(),
            payload: payload.clone(),
        });
    }

    /// A subscription stanza from a contact.
    pub(crate) async fn inbound(&mut self, from: UserJid, kind: SubscriptionKind) {
        if let Err(e) = self.load() {
            tracing::warn!(user = %self.user, error = %e, "cannot load roster");
            return;
        }
        if self.is_blocked(&from) {
            return;
        }
        let item = self.item(&from).unwrap_or_default();
        let o = inbound(&item, kind);
        if o.changed {
            if let Err(e) = self.save(&from, Some(o.item.clone())).await {
                tracing::warn!(user = %self.user, error = %e, "roster change not stored");
                return;
            }
        }
        if o.route && kind == SubscriptionKind::Subscribe {
            self.push_all(|| Outbound::SubscriptionRequest { from: from.clone() });
        }
        if let Some(reply) = o.auto_reply {
            self.hub.deliver_subscription(&from, &self.user, reply).await;
        }
        match kind {
            // Newly allowed to see the contact: show where they are now.
            SubscriptionKind::Subscribed if o.changed => {
                let current = self.hub.online.get(&from).map(|p| p.clone());
                if current.is_some() {
                    self.push_all(|| Outbound::Presence { from: from.clone(), presence: current.clone() });
                }
            }
            SubscriptionKind::Unsubscribed if o.changed => {
                self.push_all(|| Outbound::Presence { from: from.clone(), presence: None });
            }
            _ => {}
        }
    }

    pub(crate) fn set_presence(&mut self, device: &str, presence: DevicePresence) {
        let first = !self.devices.contains_key(device);
        if presence.show == Show::Unavailable {
            self.devices.remove(device);
        } else {
            self.devices.insert(device.to_string(), presence);
            if first {
                self.probe(device);
            }
        }
        self.presence_changed();
    }

    /// A device left: its presence goes with it.
    pub(crate) fn device_gone(&mut self, device: &str) {
        self.hub.session_ended(&self.user, device);
        if self.devices.remove(device).is_some() {
            self.presence_changed();
        }
    }

    fn presence_changed(&mut self) {
        let now = tokio::time::Instant::now();
        match self.coalescer.update(aggregate(self.devices.values()), now.into_std()) {
            Coalesced::Send(p) => self.broadcast(p),
            Coalesced::FlushAt(at) => self.flush_at = Some(at.into()),
            Coalesced::Nothing => {}
        }
    }

    pub(crate) fn flush_presence(&mut self) {
        self.flush_at = None;
        if let Some(p) = self.coalescer.flush(tokio::time::Instant::now().into_std()) {
            self.broadcast(p);
        }
    }

    /// Sends the user's aggregated presence to every contact allowed to see it.
    fn broadcast(&mut self, presence: Option<DevicePresence>) {
        match &presence {
            Some(p) => self.hub.online.insert(self.user.clone(), p.clone()),
            None => self.hub.online.remove(&self.user).map(|(_, p)| p),
        };
        if self.load().is_err() {
            return;
        }
        for (contact, item) in self.roster.iter().flatten() {
            if item.subscription.has_from() && !self.is_blocked(contact) {
                self.hub.presence_to(contact, &self.user, presence.clone());
            }
        }
    }

    /// On a device's first presence: the current presence of every contact it may see, and
    /// the subscription requests still waiting for the user's answer.
    fn probe(&mut self, device: &str) {
        if self.load().is_err() {
            return;
        }
        let Some(session) = self.sessions.get(device) else { return };
        for (contact, item) in self.roster.iter().flatten() {
            if self.is_blocked(contact) {
                continue;
            }
            // A request that arrived while no device was online waits for an answer
            // (RFC 6121 §3.1.3): shown again to each device that comes online.
            if item.pending_in {
                let _ = session.tx.try_send(Box::new(Outbound::SubscriptionRequest { from: contact.clone() }));
            }
            if !item.subscription.has_to() {
                continue;
            }
            let Some(p) = self.hub.online.get(contact).map(|p| p.clone()) else { continue };
            if self.ledger.is_blocked(contact, &self.user).unwrap_or(true) {
                continue;
            }
            let _ = session.tx.try_send(Box::new(Outbound::Presence { from: contact.clone(), presence: Some(p) }));
        }
    }

    pub(crate) fn contact_presence(&mut self, from: UserJid, presence: Option<DevicePresence>) {
        if self.load().is_err() || self.is_blocked(&from) {
            return;
        }
        // Only contacts the user subscribed to are shown (the sender checked its side).
        if !self.item(&from).is_some_and(|i| i.subscription.has_to()) && presence.is_some() {
            return;
        }
        self.push_all(|| Outbound::Presence { from: from.clone(), presence: presence.clone() });
    }
}
