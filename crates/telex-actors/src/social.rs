//! The user actor's roster, block list and presence: RFC 6121 subscriptions decided by the pure
//! state machine, stored through the ledger, pushed to the user's devices; each device's
//! presence coalesced, reflected to the user's other devices and fanned out to the contacts
//! `telex_policy::decide` lets see it.

use std::collections::{BTreeMap, BTreeSet};

use telex_policy::directory::SharedContact;
use telex_policy::rules::PolicyAction;
use telex_policy::{decide, Action, Facts};
use telex_types::presence::{DevicePresence, Show};
use telex_types::roster::{self, RosterItem, RosterOp, RosterReply, Subscription, SubscriptionKind};
use telex_types::session::ServerFrame;
use telex_types::{ErrorCode, TelexError, UserJid};

use crate::actor::{DeviceState, UserActor, PRESENCE_WINDOW};
use crate::hub::{PresenceChange, Signal};
use crate::presence::{Coalesced, Coalescer};
use crate::subscription::{inbound, outbound};

impl UserActor {
    fn load(&mut self) -> Result<(), TelexError> {
        if self.roster.is_none() {
            self.roster = Some(self.ledger.roster(&self.user)?.into_iter().collect::<BTreeMap<_, _>>());
        }
        if self.blocked.is_none() {
            self.blocked = Some(self.ledger.blocked(&self.user)?.into_iter().collect::<BTreeSet<_>>());
        }
        if self.shared.is_none() {
            self.shared = Some(self.hub.policies.shared_roster(&self.user));
        }
        Ok(())
    }

    /// The item as stored (what the user and its contacts agreed).
    fn item(&self, contact: &UserJid) -> Option<RosterItem> {
        self.roster.as_ref().and_then(|r| r.get(contact).cloned())
    }

    fn shared_contact(&self, contact: &UserJid) -> Option<&SharedContact> {
        self.shared.as_ref().and_then(|s| s.get(contact))
    }

    /// The item as the user's devices see it: the stored one, with what shared roster groups
    /// add (their groups, and presence both ways).
    fn shown(&self, contact: &UserJid) -> Option<RosterItem> {
        let item = self.item(contact);
        match self.shared_contact(contact) {
            Some(shared) => Some(with_shared(item, shared)),
            None => item,
        }
    }

    /// The whole roster as the user's devices see it.
    fn shown_roster(&self) -> BTreeMap<UserJid, RosterItem> {
        let mut all: BTreeMap<UserJid, RosterItem> =
            self.roster.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (contact, shared) in self.shared.iter().flatten() {
            let item = all.remove(contact);
            all.insert(contact.clone(), with_shared(item, shared));
        }
        all
    }

    /// Whether the user sees `contact`'s presence (subscribed, or shared).
    fn sees(&self, contact: &UserJid) -> bool {
        self.item(contact).is_some_and(|i| i.subscription.has_to()) || self.shared_contact(contact).is_some()
    }

    /// Whether `contact` sees the user's presence (subscribed, or shared).
    fn seen_by(&self, contact: &UserJid) -> bool {
        self.item(contact).is_some_and(|i| i.subscription.has_from()) || self.shared_contact(contact).is_some()
    }

    /// Everyone on the roster, stored or shared.
    fn contacts(&self) -> Vec<UserJid> {
        let mut all: BTreeSet<&UserJid> = self.roster.iter().flatten().map(|(c, _)| c).collect();
        all.extend(self.shared.iter().flatten().map(|(c, _)| c));
        all.into_iter().cloned().collect()
    }

    fn is_blocked(&self, jid: &UserJid) -> bool {
        self.blocked.as_ref().is_some_and(|b| b.contains(jid))
    }

    /// Pushes to every device; a device whose queue is full misses it and refetches later.
    fn push_all(&self, make: impl Fn() -> ServerFrame) {
        for s in self.sessions.values() {
            let _ = s.tx.try_send(Box::new(make()));
        }
    }

    /// Pushes to every device that announced its presence (RFC 6121: presence and signals go
    /// to available resources).
    fn push_available(&self, make: impl Fn() -> ServerFrame) {
        for s in self.sessions.values().filter(|s| !s.hold) {
            let _ = s.tx.try_send(Box::new(make()));
        }
    }

    /// The roster's version (XEP-0237) as it is now.
    fn roster_version(&self) -> String {
        roster::version(&self.shown_roster())
    }

    async fn save(&mut self, contact: &UserJid, item: Option<RosterItem>) -> Result<(), TelexError> {
        self.ledger.roster_put(self.user.clone(), contact.clone(), item.clone()).await?;
        let roster = self.roster.get_or_insert_with(BTreeMap::new);
        match &item {
            Some(i) => roster.insert(contact.clone(), i.clone()),
            None => roster.remove(contact),
        };
        self.push_item(contact);
        Ok(())
    }

    /// Tells every device what `contact`'s item now looks like.
    fn push_item(&self, contact: &UserJid) {
        let (item, version) = (self.shown(contact), self.roster_version());
        self.push_all(|| ServerFrame::Roster {
            contact: contact.clone(),
            item: item.clone(),
            version: version.clone(),
        });
    }

    /// The item for `contact` with a new name and groups, if `contact` may be on the roster.
    fn named_item(&self, contact: &UserJid, name: String, groups: Vec<String>) -> Result<RosterItem, TelexError> {
        if contact == &self.user {
            return Err(TelexError::invalid("you cannot add yourself to your roster"));
        }
        let facts = Facts { object_exists: self.ledger.user_exists(contact)?, ..Facts::default() };
        match decide(&self.user, Action::Subscribe, contact, &facts).into_result() {
            // A contact who blocks the user may still be on the user's roster.
            Err(d) if !d.silent => return Err(d.error),
            _ => {}
        }
        Ok(RosterItem { name, groups, ..self.item(contact).unwrap_or_default() })
    }

    pub(crate) async fn roster_op(&mut self, op: RosterOp) -> Result<RosterReply, TelexError> {
        self.load()?;
        let items = |a: &Self| RosterReply::Items(a.shown_roster().into_iter().collect());
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
                    if let Some(shared) = self.shared_contact(&contact) {
                        let groups: Vec<&str> = shared.groups.iter().map(String::as_str).collect();
                        return Err(TelexError::new(
                            ErrorCode::FailedPrecondition,
                            format!(
                                "{contact} is on your roster through the shared group {}; only an administrator can change that",
                                groups.join(", ")
                            ),
                        ));
                    }
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
                } else {
                    set.remove(&jid);
                }
                // Every device learns of the change (XEP-0191 pushes).
                self.push_all(|| ServerFrame::Blocked { jid: jid.clone(), blocked: block });
                if block {
                    // Hidden both ways from now on.
                    for device in self.devices.keys() {
                        let change = PresenceChange {
                            to: jid.clone(),
                            from: self.user.clone(),
                            device: device.clone(),
                            presence: None,
                        };
                        self.hub.presence_to(change);
                    }
                    for (device, _) in self.hub.devices_of(&jid) {
                        self.push_available(|| ServerFrame::Presence {
                            from: jid.clone(),
                            device: device.clone(),
                            presence: None,
                        });
                    }
                } else {
                    // Visible again where the subscription says so, both ways.
                    if self.sees(&jid) {
                        for (device, p) in self.hub.devices_of(&jid) {
                            let frame = ServerFrame::Presence { from: jid.clone(), device, presence: Some(p) };
                            self.push_available(|| frame.clone());
                        }
                    }
                }
                if !block && self.seen_by(&jid) {
                    for (device, state) in &self.devices {
                        let change = PresenceChange {
                            to: jid.clone(),
                            from: self.user.clone(),
                            device: device.clone(),
                            presence: Some(state.presence.clone()),
                        };
                        self.hub.presence_to(change);
                    }
                }
                Ok(RosterReply::Blocked(self.blocked.iter().flatten().cloned().collect()))
            }
        }
    }

    /// A signal from another user's device, for every available device of this user; dropped
    /// when the user blocks the sender (the sender's side checked the other direction).
    pub(crate) fn signal(&mut self, signal: Signal) {
        if self.load().is_err() {
            return;
        }
        let facts = Facts { object_blocks_subject: self.is_blocked(&signal.from), ..Facts::default() };
        if !decide(&signal.from, Action::Signal, &self.user, &facts).is_allowed() {
            return;
        }
        let frame = ServerFrame::Signal { from: signal.from, from_device: signal.from_device, payload: signal.payload };
        self.push_available(|| frame.clone());
    }

    /// A subscription stanza from a contact.
    pub(crate) async fn inbound(&mut self, from: UserJid, kind: SubscriptionKind) {
        if let Err(e) = self.load() {
            tracing::warn!(user = %self.user, error = %e, "cannot load roster");
            return;
        }
        let facts = Facts { object_exists: true, object_blocks_subject: self.is_blocked(&from), ..Facts::default() };
        if !decide(&from, Action::Subscribe, &self.user, &facts).is_allowed() {
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
            self.push_available(|| ServerFrame::SubscriptionRequest { from: from.clone() });
        }
        if let Some(reply) = o.auto_reply {
            self.hub.deliver_subscription(&from, &self.user, reply).await;
        }
        match kind {
            // Newly allowed to see the contact: show where they are now.
            SubscriptionKind::Subscribed if o.changed => {
                for (device, p) in self.hub.devices_of(&from) {
                    let frame = ServerFrame::Presence { from: from.clone(), device, presence: Some(p) };
                    self.push_available(|| frame.clone());
                }
            }
            SubscriptionKind::Unsubscribed if o.changed => {
                for (device, _) in self.hub.devices_of(&from) {
                    self.push_available(|| ServerFrame::Presence {
                        from: from.clone(),
                        device: device.clone(),
                        presence: None,
                    });
                }
            }
            _ => {}
        }
    }

    /// One device's presence, as the device announced it.
    pub(crate) fn set_presence(&mut self, device: &str, presence: DevicePresence) {
        if presence.show == Show::Unavailable {
            if self.devices.remove(device).is_some() {
                self.broadcast(device, None);
            }
            return;
        }
        let now = tokio::time::Instant::now();
        let first = !self.devices.contains_key(device);
        let state = self.devices.entry(device.to_string()).or_insert_with(|| DeviceState {
            presence: presence.clone(),
            coalescer: Coalescer::new(PRESENCE_WINDOW),
            flush_at: None,
        });
        state.presence = presence.clone();
        let out = state.coalescer.update(Some(presence), now.into_std());
        match out {
            Coalesced::Send(p) => self.broadcast(device, p),
            Coalesced::FlushAt(at) => {
                if let Some(s) = self.devices.get_mut(device) {
                    s.flush_at = Some(at.into());
                }
            }
            Coalesced::Nothing => {}
        }
        if first {
            self.probe(device);
        }
    }

    /// A device left: its presence goes with it.
    pub(crate) fn device_gone(&mut self, device: &str) {
        self.hub.session_ended(&self.user, device);
        if self.devices.remove(device).is_some() {
            self.broadcast(device, None);
        }
    }

    /// Sends the held presence changes whose coalescing window ended.
    pub(crate) fn flush_presence(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, s)| s.flush_at.is_some_and(|at| at <= now))
            .map(|(d, _)| d.clone())
            .collect();
        for device in due {
            let Some(state) = self.devices.get_mut(&device) else { continue };
            state.flush_at = None;
            if let Some(p) = state.coalescer.flush(now.into_std()) {
                self.broadcast(&device, p);
            }
        }
    }

    /// Sends one device's presence to the user's available devices (RFC 6121 §4.2.2: including
    /// the one that sent it) and to every contact allowed to see it.
    fn broadcast(&mut self, device: &str, presence: Option<DevicePresence>) {
        crate::hub::remember(&self.hub.online, &self.user, device, presence.clone());
        let own =
            ServerFrame::Presence { from: self.user.clone(), device: device.to_string(), presence: presence.clone() };
        self.push_available(|| own.clone());
        if self.load().is_err() {
            return;
        }
        for contact in self.contacts() {
            let facts = Facts {
                subscribed: self.seen_by(&contact),
                object_blocks_subject: self.is_blocked(&contact),
                policy: self.hub.policies.check(&contact, PolicyAction::See, &self.user),
                ..Facts::default()
            };
            if decide(&contact, Action::SeePresence, &self.user, &facts).is_allowed() {
                let change = PresenceChange {
                    to: contact,
                    from: self.user.clone(),
                    device: device.to_string(),
                    presence: presence.clone(),
                };
                self.hub.presence_to(change);
            }
        }
    }

    /// On a device's first presence: the presence of the user's other devices and of every
    /// contact it may see, and the subscription requests still waiting for the user's answer.
    fn probe(&mut self, device: &str) {
        if self.load().is_err() {
            return;
        }
        let Some(session) = self.sessions.get(device) else { return };
        let push = |f: ServerFrame| {
            let _ = session.tx.try_send(Box::new(f));
        };
        for (other, state) in self.devices.iter().filter(|(d, _)| d.as_str() != device) {
            push(ServerFrame::Presence {
                from: self.user.clone(),
                device: other.clone(),
                presence: Some(state.presence.clone()),
            });
        }
        for contact in self.contacts() {
            // A request that arrived while no device was online waits for an answer
            // (RFC 6121 §3.1.3): shown again to each device that comes online.
            if self.item(&contact).is_some_and(|i| i.pending_in) && !self.is_blocked(&contact) {
                push(ServerFrame::SubscriptionRequest { from: contact.clone() });
            }
            let devices = self.hub.devices_of(&contact);
            if devices.is_empty() || !self.may_see(&contact) {
                continue;
            }
            for (d, p) in devices {
                push(ServerFrame::Presence { from: contact.clone(), device: d, presence: Some(p) });
            }
        }
    }

    /// Whether the user's devices may be shown `contact`'s presence now.
    fn may_see(&self, contact: &UserJid) -> bool {
        let facts = Facts {
            subscribed: self.sees(contact),
            subject_blocks_object: self.is_blocked(contact),
            object_blocks_subject: self.ledger.is_blocked(contact, &self.user).unwrap_or(true),
            policy: self.hub.policies.check(&self.user, PolicyAction::See, contact),
            ..Facts::default()
        };
        decide(&self.user, Action::SeePresence, contact, &facts).is_allowed()
    }

    /// The directory or policy changed: shows the devices the contacts shared roster groups
    /// now give the user, and swaps presence with those gained or lost.
    pub(crate) fn shared_changed(&mut self) {
        // Not loaded yet: the next use loads it as it is now.
        let Some(before) = self.shared.clone() else { return };
        // The stored roster too (a reload may have dropped it), or pushes would misstate it.
        if self.load().is_err() {
            return;
        }
        let after = self.hub.policies.shared_roster(&self.user);
        for (contact, shared) in &after {
            if before.get(contact) == Some(shared) {
                continue;
            }
            // One change at a time: each push carries the roster's version after it.
            if let Some(s) = self.shared.as_mut() {
                s.insert(contact.clone(), shared.clone());
            }
            self.push_item(contact);
            if before.contains_key(contact) {
                continue;
            }
            // Newly shared: presence both ways (the contact's actor does the same; a repeated
            // presence changes nothing for a client).
            if !self.item(contact).is_some_and(|i| i.subscription.has_from()) && !self.is_blocked(contact) {
                self.send_own_presence(contact, true);
            }
            if self.may_see(contact) {
                for (device, p) in self.hub.devices_of(contact) {
                    let frame = ServerFrame::Presence { from: contact.clone(), device, presence: Some(p) };
                    self.push_available(|| frame.clone());
                }
            }
        }
        for contact in before.keys().filter(|c| !after.contains_key(*c)) {
            if let Some(s) = self.shared.as_mut() {
                s.remove(contact);
            }
            self.push_item(contact);
            if !self.seen_by(contact) {
                self.send_own_presence(contact, false);
            }
            if !self.sees(contact) {
                for (device, _) in self.hub.devices_of(contact) {
                    self.push_available(|| ServerFrame::Presence {
                        from: contact.clone(),
                        device: device.clone(),
                        presence: None,
                    });
                }
            }
        }
    }

    /// Sends each of the user's devices' presence (or, with `available` false, its absence)
    /// to `contact`.
    fn send_own_presence(&self, contact: &UserJid, available: bool) {
        for (device, state) in &self.devices {
            self.hub.presence_to(PresenceChange {
                to: contact.clone(),
                from: self.user.clone(),
                device: device.clone(),
                presence: available.then(|| state.presence.clone()),
            });
        }
    }

    pub(crate) fn contact_presence(&mut self, change: PresenceChange) {
        if self.load().is_err() {
            return;
        }
        let PresenceChange { from, device, presence, .. } = change;
        // Only contacts the user subscribed to are shown (the sender checked its side); an
        // unavailable passes whenever the contact is not blocked, so nothing stale remains.
        let facts = Facts {
            // Shared groups are asked of the directory itself: the sender's actor may have
            // learnt of a new shared group before this one did.
            subscribed: presence.is_none() || self.sees(&from) || self.hub.policies.shares(&self.user, &from),
            subject_blocks_object: self.is_blocked(&from),
            // An unavailable always passes (nothing stale may remain after a barrier goes up).
            policy: presence.as_ref().and_then(|_| self.hub.policies.check(&self.user, PolicyAction::See, &from)),
            ..Facts::default()
        };
        if !decide(&self.user, Action::SeePresence, &from, &facts).is_allowed() {
            return;
        }
        let frame = ServerFrame::Presence { from, device, presence };
        self.push_available(|| frame.clone());
    }
}

/// A stored item (or none) as shared roster groups show it: presence both ways, and the
/// shared groups beside the user's own.
fn with_shared(item: Option<RosterItem>, shared: &SharedContact) -> RosterItem {
    let mut item = item.unwrap_or_else(|| RosterItem { name: shared.name.clone(), ..RosterItem::default() });
    item.subscription = Subscription::Both;
    item.pending_out = false;
    for g in &shared.groups {
        if !item.groups.contains(g) {
            item.groups.push(g.clone());
        }
    }
    item
}
