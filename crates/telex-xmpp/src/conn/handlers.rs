//! What each stanza from a bound client does: session frames, iq requests answered through the
//! core, subscription stanzas, and the stream-management and client-state nonzas.

use telex_session::{ClientFrame, HistoryQuery, RosterOp, RosterReply};
use telex_types::{roster, ErrorCode, TelexError, UserJid};

use super::negotiate::sm_failed;
use super::session::Session;
use super::{stream_error, End, Xmpp};
use crate::errors::{error_reply, refused};
use crate::iq::{self, MamQuery, Request};
use crate::ns;
use crate::stanza::{self, bare, Inbound, Subscription};
use crate::wire::Wire;
use crate::xml::{el, parse_element, xml_of, Element, Node};

/// The type an error of this condition goes with, for stanzas refused as they are read.
fn kind_of(condition: &str) -> &'static str {
    match condition {
        "unsupported-stanza-type" | "feature-not-implemented" | "service-unavailable" => "cancel",
        _ => "modify",
    }
}

impl Xmpp {
    pub(super) async fn stanza(&self, wire: &mut Wire, s: &mut Session, e: Element) -> Result<(), End> {
        match e.attr("xmlns") {
            Some(ns::SM) => return self.stream_management(wire, s, &e),
            Some(ns::CSI) => {
                // XEP-0352: not a stanza, not counted, no answer.
                match e.name.as_str() {
                    "inactive" => s.inactive = true,
                    "active" => {
                        s.inactive = false;
                        s.flush_held(wire);
                    }
                    other => {
                        return Err(stream_error("unsupported-stanza-type", format!("<{other}/> of client state")))
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        if let Some(from) = e.attr("from") {
            if from != s.full && from != s.bare {
                return Err(stream_error("invalid-from", format!("you are {}, not {from}", s.full)));
            }
        }
        if e.name == "presence" {
            s.track_directed(&e);
        }
        match stanza::inbound(&e, || s.next_client_id()) {
            Inbound::Frame(ClientFrame::Send(m)) => {
                s.inbound.sending(m.client_id.clone());
                s.send_in_order(m);
            }
            Inbound::Frame(f) => {
                s.inbound.done();
                s.device.submit(f);
            }
            Inbound::Iq { id, request } => {
                let reply = self.iq(wire, s, &e, &id, request).await;
                s.inbound.done();
                s.emit(wire, &reply);
            }
            Inbound::Subscription { to, kind } => {
                s.inbound.done();
                let user = s.jid.clone();
                self.subscription(&user, &to, kind).await;
            }
            Inbound::Room(r) => {
                self.room_stanza(wire, s, &e, r).await;
                s.inbound.done();
            }
            Inbound::Refuse { stanza, condition, text } => {
                s.inbound.done();
                let reply = error_reply(&stanza, &s.full, &s.bare, kind_of(condition), condition, &text);
                s.emit(wire, &reply);
            }
            Inbound::Ignore => s.inbound.done(),
        }
        Ok(())
    }

    fn stream_management(&self, wire: &mut Wire, s: &mut Session, e: &Element) -> Result<(), End> {
        match e.name.as_str() {
            "enable" if !s.sm => {
                s.sm = true;
                s.inbound.enable();
                let resume = matches!(e.attr("resume"), Some("true" | "1"));
                let mut attrs = vec![("xmlns", ns::SM)];
                let id;
                let max = self.config.resume_timeout.as_secs().to_string();
                if resume {
                    let (rid, take) = self.resumable.register(&s.jid);
                    id = rid;
                    s.resume_id = Some((id.clone(), self.resumable.clone()));
                    s.take = Some(take);
                    attrs.extend([("id", id.as_str()), ("resume", "true"), ("max", max.as_str())]);
                }
                wire.send(&el("enabled", &attrs, vec![]));
            }
            "enable" => wire.send(&sm_failed("unexpected-request", Some(s.inbound.h()))),
            // Answered once everything read before it is handled (stored, for messages).
            "r" if s.sm => {
                // Repeated `<r/>`s while the same stanzas wait share one answer.
                let due = s.inbound.received();
                if s.acks_due.back() != Some(&due) {
                    s.acks_due.push_back(due);
                }
            }
            "a" if s.sm => {
                let h = e.attr("h").and_then(|h| h.parse::<u32>().ok()).unwrap_or(0);
                s.client_acked(h)?;
            }
            "resume" => wire.send(&sm_failed("unexpected-request", Some(s.inbound.h()))),
            other => return Err(stream_error("unsupported-stanza-type", format!("<{other}/> of stream management"))),
        }
        Ok(())
    }

    async fn subscription(&self, user: &UserJid, to: &str, kind: Subscription) {
        let Ok(contact) = UserJid::parse(to) else { return };
        let op = match kind {
            Subscription::Subscribe => RosterOp::Subscribe { contact },
            Subscription::Subscribed => RosterOp::Approve { contact },
            Subscription::Unsubscribe => RosterOp::Unsubscribe { contact },
            Subscription::Unsubscribed => RosterOp::Deny { contact },
        };
        if let Err(e) = self.core.roster(user, op).await {
            // Approving with nothing pending and the like are no-ops in XMPP.
            tracing::debug!(user = %user, error = %e, "subscription stanza not applied");
        }
    }

    /// Answers an iq request. The answer comes from whom the request was to (RFC 6120
    /// §8.1.2.1): the domain, or the user's bare JID for a request without `to`.
    async fn iq(&self, wire: &mut Wire, s: &mut Session, e: &Element, id: &str, req: Request) -> Element {
        let me = s.full.clone();
        let account = s.bare.clone();
        let to = e.attr("to");
        let from = to.unwrap_or(&account).to_string();
        let to_bare = to.map(bare);
        let to_server = to_bare.is_none_or(|t| t == s.domain);
        let to_account = to_bare == Some(account.as_str());
        let fail = |err: TelexError| refused(e, &me, &account, &err);
        let ok = |payload: Option<Element>| iq::result(id, &from, &me, payload);
        if let (Request::VCardGet, Some(other)) = (&req, to_bare) {
            if !to_server {
                // The server answers for its users (XEP-0054).
                return self.vcard_get(e, &s.jid.clone(), &me, id, other).await;
            }
        }
        if to.is_some_and(crate::muc::is_room_address) {
            return self.room_iq(wire, s, e, id, req).await;
        }
        if !to_server && !to_account {
            let text = "requests are not routed to other users";
            return error_reply(e, &me, &account, "cancel", "service-unavailable", text);
        }
        let user = s.jid.clone();
        let roster = |op| self.core.roster(&user, op);
        let jid = |j: &str| UserJid::parse(j);
        match req {
            Request::Session => ok(None),
            Request::Bind { .. } => {
                error_reply(e, &me, &account, "cancel", "not-allowed", "a resource is already bound")
            }
            Request::RosterGet { ver } => match roster(RosterOp::Get).await {
                Ok(RosterReply::Items(items)) => {
                    s.roster_fetched = true;
                    let version = roster::version(items.iter().map(|(j, i)| (j, i)));
                    // XEP-0237: the client's copy is current: an empty result.
                    if ver.as_deref() == Some(version.as_str()) {
                        return ok(None);
                    }
                    let items = items.iter().map(|(j, i)| Node::Element(stanza::roster_item(j, i))).collect();
                    ok(Some(el("query", &[("xmlns", ns::ROSTER), ("ver", &version)], items)))
                }
                Ok(_) => ok(Some(el("query", &[("xmlns", ns::ROSTER)], vec![]))),
                Err(err) => fail(err),
            },
            Request::RosterSet { jid: j, name, groups } => match jid(&j) {
                Ok(contact) => match roster(RosterOp::Set { contact, name, groups }).await {
                    Ok(_) => ok(None),
                    Err(err) => fail(err),
                },
                Err(err) => fail(err),
            },
            Request::RosterRemove { jid: j } => match jid(&j) {
                Ok(contact) => match roster(RosterOp::Remove { contact }).await {
                    Ok(_) => ok(None),
                    Err(err) => fail(err),
                },
                Err(err) => fail(err),
            },
            Request::DiscoInfo => ok(Some(iq::disco_info(to_account))),
            Request::DiscoItems => {
                let services = if to_account { vec![] } else { vec![telex_types::room::service_of(s.jid.domain())] };
                ok(Some(iq::disco_items(&services)))
            }
            Request::Ping => ok(None),
            Request::Carbons { enable } => {
                s.carbons = enable;
                ok(None)
            }
            Request::Mam(q) => self.mam(wire, s, e, id, &from, q).await,
            Request::BlockList => match roster(RosterOp::Blocked).await {
                Ok(RosterReply::Blocked(jids)) => {
                    s.blocklist_fetched = true;
                    let jids: Vec<String> = jids.iter().map(|j| j.to_string()).collect();
                    ok(Some(iq::blocklist(&jids)))
                }
                Ok(_) => ok(Some(iq::blocklist(&[]))),
                Err(err) => fail(err),
            },
            Request::Block { jids } | Request::Unblock { jids } if !jids.is_empty() => {
                let block = matches!(e.elements().next(), Some(p) if p.name == "block");
                for j in &jids {
                    let op = match jid(j) {
                        Ok(jid) if block => RosterOp::Block { jid },
                        Ok(jid) => RosterOp::Unblock { jid },
                        Err(err) => return fail(err),
                    };
                    if let Err(err) = roster(op).await {
                        return fail(err);
                    }
                }
                ok(None)
            }
            Request::Block { .. } | Request::Unblock { .. } => match roster(RosterOp::Blocked).await {
                Ok(RosterReply::Blocked(all)) => {
                    for jid in all {
                        if let Err(err) = roster(RosterOp::Unblock { jid }).await {
                            return fail(err);
                        }
                    }
                    ok(None)
                }
                Ok(_) => ok(None),
                Err(err) => fail(err),
            },
            Request::VCardGet => self.vcard_get(e, &user, &me, id, &account).await,
            Request::VCardSet(card) => match self.core.set_vcard(&s.jid, xml_of(&card)).await {
                Ok(()) => ok(None),
                Err(err) => fail(err),
            },
            Request::SearchFields => ok(Some(iq::search_fields())),
            Request::Search(q) => {
                // Every field must match (the address counts as a name too: not everyone has a
                // display name), before the limit applies.
                let keep = |jid: &UserJid, a: &telex_types::directory::UserAttributes| {
                    q.matches(&format!("{} {jid}", a.display_name), &a.email)
                };
                let people = self.core.search_directory(&user, q.key(), telex_session::MAX_SEARCH, &keep);
                let jids: Vec<String> = people.iter().map(|(j, _)| j.to_string()).collect();
                let found: Vec<iq::Found<'_>> = people
                    .iter()
                    .zip(&jids)
                    .map(|((_, a), jid)| iq::Found { jid, name: &a.display_name, email: &a.email })
                    .collect();
                ok(Some(iq::search_results(&found, q.form)))
            }
            Request::Bad(text) => error_reply(e, &me, &account, "modify", "bad-request", &text),
            Request::Unsupported => error_reply(e, &me, &account, "cancel", "service-unavailable", "not supported"),
        }
    }

    /// XEP-0054: `owner`'s stored vCard as this user may see it, or an empty one (no vCard is
    /// not an error).
    async fn vcard_get(&self, e: &Element, reader: &UserJid, me: &str, id: &str, owner: &str) -> Element {
        let account = reader.to_string();
        let from = e.attr("to").unwrap_or(&account);
        let Ok(owner) = UserJid::parse(owner) else {
            return error_reply(e, me, &account, "cancel", "service-unavailable", "no such user here");
        };
        let empty = || el("vCard", &[("xmlns", ns::VCARD)], vec![]);
        match self.core.vcard(reader, &owner).await {
            Ok(Some(xml)) => iq::result(id, from, me, Some(parse_element(&xml).unwrap_or_else(empty))),
            Ok(None) => iq::result(id, from, me, Some(empty())),
            // XEP-0191 §3.5: to someone who blocks you, as to no one.
            Err(err) if err.code == ErrorCode::NotFound => {
                error_reply(e, me, &account, "cancel", "service-unavailable", &err.message)
            }
            Err(err) => refused(e, me, &account, &err),
        }
    }

    /// XEP-0313: the page's messages go out as results, the returned `<iq/>` closes it.
    async fn mam(&self, wire: &mut Wire, s: &mut Session, e: &Element, id: &str, from: &str, q: MamQuery) -> Element {
        let me = s.full.clone();
        let max = q.max.unwrap_or(50).min(499);
        let with = match q.with.as_deref().map(|w| UserJid::parse(bare(w))).transpose() {
            Ok(w) => w,
            Err(err) => return error_reply(e, &me, &s.bare, "modify", "bad-request", &err.message),
        };
        let last_page = matches!(q.before_id, Some(None));
        let backward = q.before_id.is_some() && q.after_id.is_none() && q.start_ms.is_none();
        let query = HistoryQuery {
            with,
            after: 0,
            before: if last_page { u64::MAX } else { 0 },
            after_id: q.after_id,
            before_id: q.before_id.flatten(),
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: max + 1,
        };
        let mut page = match self.core.history(&s.jid, &s.jid, query).await {
            Ok(p) => p,
            Err(err) => return refused(e, &me, &s.bare, &err),
        };
        let complete = page.len() <= max;
        if !complete {
            if backward {
                page.remove(0);
            } else {
                page.pop();
            }
        }
        for (_, m) in &page {
            let from =
                if m.from_device.is_empty() { m.from.to_string() } else { format!("{}/{}", m.from, m.from_device) };
            let to = if m.to_device.is_empty() { m.to.to_string() } else { format!("{}/{}", m.to, m.to_device) };
            let archived = iq::Archived {
                server_id: &m.server_id,
                from,
                to: &to,
                client_id: &m.client_id,
                body: &m.body,
                extras: &m.extras,
                sent_at_ms: m.sent_at,
            };
            let result = iq::mam_result(&me, &s.bare, &q.queryid, &archived);
            s.emit(wire, &result);
        }
        let first = page.first().map(|(_, m)| m.server_id.as_str());
        let last = page.last().map(|(_, m)| m.server_id.as_str());
        iq::result(id, from, &me, Some(iq::mam_fin(first, last, complete)))
    }
}
