//! The rooms a bound session is in (XEP-0045): entering, leaving and speaking go to the room's
//! actor through the core; the room's events arrive as session frames and become stanzas here;
//! iq requests to the room service and to rooms (disco, MAM, self-ping) are answered here.

use std::collections::HashMap;
use std::time::Duration;

use telex_session::muc::Refusal;
use telex_session::{Say, ServerFrame};
use telex_types::occupancy::{RoomCall, RoomReply};
use telex_types::presence::DevicePresence;
use telex_types::room::{Affiliation, Occupant, Role, RoomEvent, RoomJid};
use telex_types::TelexError;

use super::session::Session;
use super::Xmpp;
use crate::errors::error_reply;
use crate::iq::{self, MamQuery, Request};
use crate::muc::{self, ToRoom};
use crate::room_admin::{self, AdminChange, AdminRequest};
use crate::stanza::{bare, resource};
use crate::wire::Wire;
use crate::xml::{el, Element, Node};

/// Tells apart the invitations of one stanza (the same on a retry of it).
fn invitation_digest(room: &RoomJid, invitee: &telex_types::UserJid) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same digest in every process, so a retry through another node matches.
    let mut h = std::hash::DefaultHasher::new();
    (room.to_string(), invitee.to_string()).hash(&mut h);
    h.finish()
}

/// A room call is retried this often while the room's shard changes leader (about 5 s).
const ROOM_ATTEMPTS: u32 = 50;
/// Rooms one session may be in at once.
pub(crate) const MAX_ROOMS: usize = 256;
/// Invitations one message may carry.
const MAX_INVITEES: usize = 20;

/// A room this session is in.
#[derive(Clone, Debug)]
pub(crate) struct InRoom {
    pub(crate) nick: String,
    pub(crate) affiliation: Option<Affiliation>,
    pub(crate) role: Role,
    pub(crate) presence: DevicePresence,
    /// The last log position the client was given (history or live).
    pub(crate) seen: u64,
}

pub(crate) type Rooms = HashMap<RoomJid, InRoom>;

/// The room's event as a stanza for this session, if it is in the room.
pub(crate) fn event_stanza(rooms: &mut Rooms, me: &str, frame: ServerFrame) -> Option<Element> {
    let ServerFrame::Room { room, event } = frame else { return None };
    let in_room = rooms.get_mut(&room)?;
    match event {
        RoomEvent::Entry { position, entry } => {
            if position <= in_room.seen {
                return None;
            }
            in_room.seen = position;
            Some(muc::groupchat(&room, &entry, me, false))
        }
        RoomEvent::Occupant { occupant, presence, removed } => {
            let real = in_room.role == Role::Moderator;
            let mine = me == format!("{}/{}", occupant.user, occupant.device);
            if let Some(why) = removed {
                if mine {
                    rooms.remove(&room);
                }
                return Some(muc::removed_presence(&room, &occupant, me, real, mine, why));
            }
            if mine {
                // The room answered the device's own entering and leaving; what else it says
                // of it is a role a moderator gave it (XEP-0045 §8.3: with status 110).
                if presence.is_none() || (occupant.affiliation, occupant.role) == (in_room.affiliation, in_room.role) {
                    return None;
                }
                (in_room.affiliation, in_room.role) = (occupant.affiliation, occupant.role);
                return Some(muc::occupant_presence(&room, &occupant, presence.as_ref(), me, true, &[muc::SELF]));
            }
            Some(muc::occupant_presence(&room, &occupant, presence.as_ref(), me, real, &[]))
        }
        RoomEvent::Private { from, client_id, body, extras, .. } => {
            Some(muc::private_message(&room, &from, &client_id, &body, &extras, me))
        }
    }
}

impl Xmpp {
    /// Runs a room call, retrying while the room's shard has no reachable leader.
    async fn room_call(&self, room: &RoomJid, call: RoomCall) -> Result<RoomReply, TelexError> {
        let mut attempt = 0;
        loop {
            match self.core.room_call(room, call.clone()).await {
                Err(e) if muc::retryable(&e) && attempt < ROOM_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// A presence or message stanza to a room.
    pub(super) async fn room_stanza(&self, wire: &mut Wire, s: &mut Session, e: &Element, r: ToRoom) {
        let user = s.jid.clone();
        let device = s.device.device().to_string();
        match r {
            ToRoom::Enter { room, .. } if !s.rooms.contains_key(&room) && s.rooms.len() >= MAX_ROOMS => {
                let text = format!("a session may be in at most {MAX_ROOMS} rooms; leave one first");
                self.room_error(wire, s, e, "wait", "resource-constraint", &text);
            }
            ToRoom::Enter { room, nick, password, history, presence } => {
                let call = RoomCall::Enter { user, device, nick, password, presence: presence.clone(), history };
                match self.room_call(&room, call).await {
                    Ok(RoomReply::Entered { others, you, fresh, created, history, subject }) => {
                        let real = you.role == Role::Moderator;
                        // A change of presence only gets its own presence back.
                        for (o, p) in others.iter().filter(|_| fresh) {
                            s.emit(wire, &muc::occupant_presence(&room, o, Some(p), &s.full.clone(), real, &[]));
                        }
                        let mut codes = vec![muc::SELF];
                        if created {
                            codes.push(muc::CREATED);
                        }
                        let me = s.full.clone();
                        s.emit(wire, &muc::occupant_presence(&room, &you, Some(&presence), &me, true, &codes));
                        let mut seen = s.rooms.get(&room).map_or(0, |r| r.seen);
                        if fresh {
                            for (position, entry) in &history {
                                s.emit(wire, &muc::groupchat(&room, entry, &me, true));
                                seen = seen.max(*position);
                            }
                            s.emit(wire, &muc::subject(&room, &subject, &me));
                        }
                        let (nick, affiliation, role) = (you.nick, you.affiliation, you.role);
                        s.rooms.insert(room, InRoom { nick, affiliation, role, presence, seen });
                    }
                    Ok(other) => tracing::warn!(?other, "unexpected answer to entering a room"),
                    Err(err) => {
                        let (condition, kind) = muc::condition(&err);
                        let to = e.attr("to").unwrap_or_default();
                        let me = s.full.clone();
                        s.emit(wire, &muc::presence_error(to, &me, condition, kind, &err.message));
                    }
                }
            }
            ToRoom::Leave { room } => {
                let was = s.rooms.remove(&room);
                let you =
                    match self.room_call(&room, RoomCall::Leave { user: user.clone(), device: device.clone() }).await {
                        Ok(RoomReply::Left { you }) => you,
                        _ => None,
                    };
                // The client hears it left even if the room had lost track of it.
                let you = you.or_else(|| {
                    was.map(|w| Occupant { nick: w.nick, user, device, affiliation: w.affiliation, role: w.role })
                });
                if let Some(you) = you {
                    let me = s.full.clone();
                    s.emit(wire, &muc::occupant_presence(&room, &you, None, &me, true, &[muc::SELF]));
                }
            }
            ToRoom::Say { room, client_id, body, subject, extras } => {
                let Some(nick) = s.rooms.get(&room).map(|r| r.nick.clone()) else {
                    let refusal = telex_session::muc::Refusal::NotOccupant;
                    let (condition, kind) = refusal.condition();
                    self.room_error(wire, s, e, kind, condition, &refusal.to_string());
                    return;
                };
                let text = subject.as_deref().unwrap_or(&body);
                let say = Say {
                    client_id: &client_id,
                    body: text,
                    subject: subject.is_some(),
                    nick: &nick,
                    extras: &extras,
                    entered: true,
                };
                let mut attempt = 0;
                let said = loop {
                    match self.core.room_say(&s.jid, &device, &room, say).await {
                        Err(e) if muc::retryable(&e) && attempt < ROOM_ATTEMPTS => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break other,
                    }
                };
                // Stored: the room reflects it to every occupant, the sender included.
                if let Err(err) = said {
                    let (condition, kind) = muc::condition(&err);
                    self.room_error(wire, s, e, kind, condition, &err.message);
                }
            }
            ToRoom::Private { room, nick, client_id, body, extras } => {
                let call = RoomCall::Private { user, device, to_nick: nick, client_id, body, extras };
                if let Err(err) = self.room_call(&room, call).await {
                    let (condition, kind) = muc::condition(&err);
                    self.room_error(wire, s, e, kind, condition, &err.message);
                }
            }
            ToRoom::Invite { room, invitees } => {
                if let Err(err) = self.invite(s, e, &room, invitees).await {
                    let (condition, kind) = muc::condition(&err);
                    self.room_error(wire, s, e, kind, condition, &err.message);
                }
            }
            ToRoom::Refuse { condition, text } => {
                let kind = if condition == "feature-not-implemented" { "cancel" } else { "modify" };
                self.room_error(wire, s, e, kind, condition, &text);
            }
            ToRoom::Ignore => {}
        }
    }

    /// Mediated invitations: each invitee becomes a member where the room needs it, and gets a
    /// direct invitation (XEP-0249) from the inviter, stored like a chat message.
    async fn invite(
        &self,
        s: &mut Session,
        e: &Element,
        room: &RoomJid,
        invitees: Vec<(String, String)>,
    ) -> Result<(), TelexError> {
        let rooms = self.core.room_hub()?.rooms().clone();
        let device = s.device.device().to_string();
        if invitees.len() > MAX_INVITEES {
            return Err(TelexError::invalid(format!("at most {MAX_INVITEES} invitations in one message")));
        }
        let base = e.attr("id").filter(|id| !id.is_empty() && id.len() <= 64).map(str::to_string);
        for (to, reason) in invitees {
            let invitee = telex_types::UserJid::parse(&to)?;
            let record = rooms.invite(&s.jid, room, &invitee).await?;
            let client_id = match &base {
                // A retried stanza invites once; another stanza reusing the id is another send.
                Some(id) => format!("{id}-invite-{:016x}", invitation_digest(room, &invitee)),
                None => s.next_client_id(),
            };
            let body = format!("{} invites you to the room {room}", s.jid);
            // The password only from someone who could enter already (not an outsider inviting
            // itself into an open room to read it).
            let insider =
                record.affiliation(&s.jid).is_some_and(|a| a != Affiliation::Outcast) || s.rooms.contains_key(room);
            let extras = room_admin::invitation_extras(&record, &reason, insider);
            let m = telex_session::SendMessage { client_id, to, to_device: String::new(), body, extras };
            self.core.messaging().send(&s.jid, &device, m).await.map_err(|r| r.error)?;
        }
        Ok(())
    }

    /// An owner's or admin's request to a room (XEP-0045 §9, §10).
    async fn room_admin(&self, s: &mut Session, e: &Element, id: &str, room: &RoomJid, req: AdminRequest) -> Element {
        let (me, account) = (s.full.clone(), s.bare.clone());
        let fail = |err: &TelexError| {
            let (condition, kind) = muc::condition(err);
            error_reply(e, &me, &account, kind, condition, &err.message)
        };
        let rooms = match self.core.room_hub() {
            Ok(hub) => hub.rooms().clone(),
            Err(err) => return fail(&err),
        };
        let user = &s.jid;
        let needs = |what: &str| Refusal::NotAllowed(what.to_string()).to_error();
        let done: Result<Option<Element>, TelexError> = match req {
            AdminRequest::ConfigForm => match rooms.get(user, room).await {
                Ok(r) if r.affiliation(user) == Some(Affiliation::Owner) => Ok(Some(room_admin::config_form(&r))),
                Ok(_) => Err(needs("the configuration is for owners")),
                Err(err) => Err(err),
            },
            AdminRequest::Configure(fields) => match rooms.get(user, room).await {
                Ok(r) if r.affiliation(user) != Some(Affiliation::Owner) => {
                    Err(needs("the configuration is for owners"))
                }
                Ok(r) => match room_admin::apply_form(r.config.clone(), &fields) {
                    Ok(config) => rooms.configure(user, room, config).await.map(|_| None),
                    Err(why) => Err(TelexError::invalid(why)),
                },
                Err(err) => Err(err),
            },
            AdminRequest::CancelConfig => Ok(None),
            AdminRequest::Destroy => rooms.destroy(user, room).await.map(|_| None),
            AdminRequest::List(which) => match rooms.get(user, room).await {
                Ok(r) if matches!(r.affiliation(user), Some(Affiliation::Owner | Affiliation::Admin)) => {
                    Ok(Some(room_admin::affiliation_list(&r, which)))
                }
                Ok(_) => Err(needs("affiliation lists are for owners and admins")),
                Err(err) => Err(err),
            },
            AdminRequest::Roles(role) => {
                match self.room_call(room, RoomCall::WithRole { user: user.clone(), role }).await {
                    Ok(RoomReply::Occupants(list)) => Ok(Some(room_admin::role_list(&list))),
                    Ok(other) => Err(TelexError::internal(format!("unexpected answer to a role list: {other:?}"))),
                    Err(err) => Err(err),
                }
            }
            AdminRequest::Change(changes) => {
                let mut outcome = Ok(None);
                for change in changes {
                    let result = match change {
                        AdminChange::Affiliation { user: who, affiliation } => {
                            rooms.set_affiliation(user, room, who, affiliation).await.map(|_| ())
                        }
                        AdminChange::Kick { nick } => {
                            self.room_call(room, RoomCall::Kick { user: user.clone(), nick }).await.map(|_| ())
                        }
                        AdminChange::Role { nick, role } => {
                            let call = RoomCall::SetRole { user: user.clone(), nick, role };
                            self.room_call(room, call).await.map(|_| ())
                        }
                    };
                    if let Err(err) = result {
                        outcome = Err(err);
                        break;
                    }
                }
                outcome
            }
            AdminRequest::Bad(why) => Err(TelexError::invalid(why)),
        };
        match done {
            Ok(payload) => iq::result(id, &room.to_string(), &me, payload),
            Err(err) => fail(&err),
        }
    }

    fn room_error(&self, wire: &mut Wire, s: &mut Session, e: &Element, kind: &str, condition: &str, text: &str) {
        let (me, account) = (s.full.clone(), s.bare.clone());
        let reply = if e.name == "presence" {
            muc::presence_error(e.attr("to").unwrap_or_default(), &me, condition, kind, text)
        } else {
            error_reply(e, &me, &account, kind, condition, text)
        };
        s.emit(wire, &reply);
    }

    /// Tells every room the session is in that it is still there (occupancy is soft state).
    pub(super) async fn refresh_rooms(&self, wire: &mut Wire, s: &mut Session) {
        let rooms: Vec<(RoomJid, InRoom)> = s.rooms.iter().map(|(r, i)| (r.clone(), i.clone())).collect();
        for (room, in_room) in rooms {
            let call = RoomCall::Refresh {
                user: s.jid.clone(),
                device: s.device.device().to_string(),
                nick: in_room.nick.clone(),
                presence: in_room.presence.clone(),
            };
            match self.core.room_call(&room, call).await {
                Ok(_) => {}
                Err(e) if muc::retryable(&e) => {}
                Err(e) => {
                    // Banned or destroyed meanwhile: out, and the client is told.
                    tracing::info!(%room, error = %e, "a room no longer has this occupant");
                    s.rooms.remove(&room);
                    let you = Occupant {
                        nick: in_room.nick,
                        user: s.jid.clone(),
                        device: s.device.device().to_string(),
                        affiliation: None,
                        role: in_room.role,
                    };
                    let me = s.full.clone();
                    s.emit(wire, &muc::occupant_presence(&room, &you, None, &me, true, &[muc::SELF]));
                }
            }
        }
    }

    /// The session ends: it leaves its rooms (in the background; the room forgets it anyway
    /// once its refreshes stop).
    pub(super) fn leave_rooms(&self, s: &mut Session) {
        for room in std::mem::take(&mut s.rooms).into_keys() {
            let (core, user, device) = (self.core.clone(), s.jid.clone(), s.device.device().to_string());
            tokio::spawn(async move {
                let _ = core.room_call(&room, RoomCall::Leave { user, device }).await;
            });
        }
    }

    /// An iq to the room service, a room or an occupant.
    pub(super) async fn room_iq(
        &self,
        wire: &mut Wire,
        s: &mut Session,
        e: &Element,
        id: &str,
        req: Request,
    ) -> Element {
        let (me, account) = (s.full.clone(), s.bare.clone());
        let to = e.attr("to").unwrap_or_default().to_string();
        let ok = |payload: Option<Element>| iq::result(id, &to, &me, payload);
        let fail = |err: &TelexError| {
            let (condition, kind) = muc::condition(err);
            error_reply(e, &me, &account, kind, condition, &err.message)
        };
        let service = !bare(&to).contains('@');
        if service {
            let domain = bare(&to);
            if telex_types::room::service_tenant(domain).as_ref() != Some(s.jid.domain()) {
                return error_reply(e, &me, &account, "cancel", "remote-server-not-found", "no such room service here");
            }
            return match req {
                Request::DiscoInfo => ok(Some(muc::service_info())),
                Request::DiscoItems => match self.core.rooms(&s.jid).await {
                    Ok(rooms) => ok(Some(muc::room_items(&rooms))),
                    Err(err) => fail(&err),
                },
                Request::Ping => ok(None),
                _ => error_reply(
                    e,
                    &me,
                    &account,
                    "cancel",
                    "feature-not-implemented",
                    "the room service answers disco and ping",
                ),
            };
        }
        let room = match RoomJid::parse(bare(&to)) {
            Ok(r) => r,
            Err(err) => return fail(&err),
        };
        let nick = resource(&to);
        if !nick.is_empty() {
            // XEP-0410: a client asks whether it is still in the room.
            return match req {
                Request::Ping if s.rooms.get(&room).is_some_and(|r| r.nick == nick) => ok(None),
                Request::Ping => error_reply(
                    e,
                    &me,
                    &account,
                    "cancel",
                    "not-acceptable",
                    "you are not in this room under that nickname",
                ),
                _ => error_reply(
                    e,
                    &me,
                    &account,
                    "cancel",
                    "feature-not-implemented",
                    "requests are not passed to occupants",
                ),
            };
        }
        if let Some(admin) = room_admin::request(e) {
            return self.room_admin(s, e, id, &room, admin).await;
        }
        match req {
            Request::DiscoInfo => match self.core.room(&s.jid, &room).await {
                Ok(record) => ok(Some(muc::room_info(&record, None))),
                Err(err) => fail(&err),
            },
            // Occupants are not listed to outsiders.
            Request::DiscoItems => ok(Some(el("query", &[("xmlns", crate::ns::DISCO_ITEMS)], vec![]))),
            Request::Ping => ok(None),
            Request::Mam(q) => self.room_mam(wire, s, e, id, &room, q).await,
            _ => error_reply(e, &me, &account, "cancel", "feature-not-implemented", "not offered by rooms yet"),
        }
    }

    /// XEP-0313 on a room's log: forward from the start or after an id, or the last page.
    async fn room_mam(
        &self,
        wire: &mut Wire,
        s: &mut Session,
        e: &Element,
        id: &str,
        room: &RoomJid,
        q: MamQuery,
    ) -> Element {
        let (me, account) = (s.full.clone(), s.bare.clone());
        let fail = |err: &TelexError| {
            let (condition, kind) = muc::condition(err);
            error_reply(e, &me, &account, kind, condition, &err.message)
        };
        let max = q.max.unwrap_or(50).min(499);
        let user = s.jid.clone();
        let position_of = |sid: String| {
            let user = user.clone();
            async move {
                match self.core.room_position(&user, room, &sid).await {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => Err(TelexError::not_found(format!("no message {sid} in this room"))),
                    Err(err) => Err(err),
                }
            }
        };
        let (_, head) = match self.core.room_history(&s.jid, room, u64::MAX, 1).await {
            Ok(h) => h,
            Err(err) => return fail(&err),
        };
        let (after, upto) = match (&q.after_id, &q.before_id) {
            (Some(a), _) => match position_of(a.clone()).await {
                Ok(p) => (p, head),
                Err(err) => return fail(&err),
            },
            (None, Some(Some(b))) => match position_of(b.clone()).await {
                Ok(p) => (p.saturating_sub(max as u64 + 1), p.saturating_sub(1)),
                Err(err) => return fail(&err),
            },
            (None, Some(None)) => (head.saturating_sub(max as u64), head),
            (None, None) => (0, head),
        };
        let mut page = match self.core.room_history(&s.jid, room, after, max + 1).await {
            Ok((p, _)) => p,
            Err(err) => return fail(&err),
        };
        page.retain(|(p, m)| {
            *p <= upto && q.start_ms.is_none_or(|t| m.sent_at >= t) && q.end_ms.is_none_or(|t| m.sent_at <= t)
        });
        let complete = page.len() <= max;
        page.truncate(max);
        let archive = room.to_string();
        for (_, entry) in &page {
            let mut inner = muc::groupchat(room, entry, &me, false);
            inner.attrs.insert(0, ("xmlns".into(), crate::ns::CLIENT.into()));
            let delay = el("delay", &[("xmlns", crate::ns::DELAY), ("stamp", &iq::format_time(entry.sent_at))], vec![]);
            let forwarded =
                el("forwarded", &[("xmlns", crate::ns::FORWARD)], vec![Node::Element(delay), Node::Element(inner)]);
            let result = el(
                "result",
                &[("xmlns", crate::ns::MAM), ("queryid", &q.queryid), ("id", &entry.server_id)],
                vec![Node::Element(forwarded)],
            );
            s.emit(wire, &el("message", &[("from", &archive), ("to", &me)], vec![Node::Element(result)]));
        }
        let first = page.first().map(|(_, m)| m.server_id.as_str());
        let last = page.last().map(|(_, m)| m.server_id.as_str());
        iq::result(id, &archive, &me, Some(iq::mam_fin(first, last, complete)))
    }
}
