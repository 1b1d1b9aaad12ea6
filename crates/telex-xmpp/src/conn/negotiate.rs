//! Stream negotiation up to a bound session: the stream header, STARTTLS, SASL, then resource
//! binding or a XEP-0198 resumption.

use telex_types::{Domain, UserJid};

use super::session::Session;
use super::{stream_error, stream_id, End, Xmpp};
use crate::errors::{condition, error_reply};
use crate::iq::{self, Request};
use crate::wire::Wire;
use crate::xml::{el, text_el, Event, Node};
use crate::{auth, ns};

/// Failed authentications before the stream ends.
const MAX_AUTH_FAILURES: usize = 3;

pub(crate) fn sm_failed(condition: &str, h: Option<u32>) -> crate::xml::Element {
    let h = h.map(|h| h.to_string()).unwrap_or_default();
    el("failed", &[("xmlns", ns::SM), ("h", &h)], vec![Node::Element(el(condition, &[("xmlns", ns::STANZAS)], vec![]))])
}

impl Xmpp {
    /// Reads a stream header and answers it with ours and the features on offer.
    async fn open_stream(
        &self,
        wire: &mut Wire,
        opened: &mut bool,
        features: impl FnOnce(&Wire, &Domain) -> Vec<Node>,
    ) -> Result<Domain, End> {
        let header = match wire.read().await? {
            Some(Event::StreamOpen(h)) => h,
            Some(_) => return Err(stream_error("not-well-formed", "expected a stream header")),
            None => return Err(End::Quiet),
        };
        let to = header.attr("to").unwrap_or_default().to_string();
        let domain = Domain::parse(&to).ok();
        // Only a domain that parsed is echoed (it cannot carry markup).
        wire.open(domain.as_ref().map_or("", |d| d.as_str()), &stream_id());
        *opened = true;
        if !wire.is_websocket() && header.attr("xmlns") != Some(ns::CLIENT) {
            return Err(stream_error("invalid-namespace", "the content namespace must be jabber:client"));
        }
        if header.attr("version").is_some_and(|v| !v.starts_with("1.")) {
            return Err(stream_error("unsupported-version", "this server speaks XMPP 1.0"));
        }
        let domain = domain.ok_or_else(|| stream_error("host-unknown", format!("{to:?} is not served here")))?;
        // One point lookup: nothing before authentication scans the tenants.
        let served = self.core.tenant_exists(&domain).map_err(|e| stream_error("internal-server-error", e.message))?;
        if !served {
            return Err(stream_error("host-unknown", format!("{domain} is not served here")));
        }
        let features = features(wire, &domain);
        wire.send(&el("stream:features", &[], features));
        wire.flush().await?;
        Ok(domain)
    }

    /// Until SASL succeeds: STARTTLS, then authentication.
    pub(super) async fn authenticate(&self, wire: &mut Wire, opened: &mut bool) -> Result<(UserJid, Domain), End> {
        let mut failures = 0;
        'stream: loop {
            let offer = auth::offer(
                self.config.require_tls,
                self.tls.is_some(),
                wire.is_tls(),
                wire.is_loopback(),
                wire.is_websocket(),
            );
            let (must_tls, offer_tls) = (offer.tls_required, offer.starttls);
            let directory = self.core.directory();
            let mut offered = offer.mechanisms.clone();
            let domain = self
                .open_stream(wire, opened, |_, domain| {
                    // A tenant whose passwords an LDAP server checks can only take PLAIN: SCRAM
                    // needs a key derived from the password, which is not stored here.
                    if directory.passwords_elsewhere(domain) {
                        offered.retain(|m| *m == "PLAIN");
                    }
                    let mut f = Vec::new();
                    if offer.starttls {
                        let required =
                            if offer.tls_required { vec![Node::Element(el("required", &[], vec![]))] } else { vec![] };
                        f.push(Node::Element(el("starttls", &[("xmlns", ns::TLS)], required)));
                    }
                    if !offer.tls_required {
                        let mechs = offered.iter().map(|m| text_el("mechanism", m)).collect();
                        f.push(Node::Element(el("mechanisms", &[("xmlns", ns::SASL)], mechs)));
                    }
                    f
                })
                .await?;
            loop {
                let e = match wire.read().await? {
                    Some(Event::Stanza(e)) => e,
                    Some(Event::StreamClose) | None => return Err(End::Quiet),
                    Some(Event::StreamOpen(_)) => {
                        return Err(stream_error("not-well-formed", "a second stream header"))
                    }
                };
                match (e.name.as_str(), e.attr("xmlns")) {
                    ("starttls", Some(ns::TLS)) if offer_tls => {
                        let Some(acceptor) = self.tls.clone() else {
                            return Err(stream_error("internal-server-error", "TLS is not configured"));
                        };
                        wire.send(&el("proceed", &[("xmlns", ns::TLS)], vec![]));
                        wire.flush().await?;
                        wire.starttls(&acceptor).await?;
                        continue 'stream;
                    }
                    ("auth", Some(ns::SASL)) if !must_tls => {
                        match auth::authenticate(directory, wire, &e, &domain, &offered).await {
                            auth::Outcome::Success(jid) => {
                                wire.restart();
                                return Ok((jid, domain));
                            }
                            auth::Outcome::Failed => {
                                failures += 1;
                                if failures >= MAX_AUTH_FAILURES {
                                    return Err(stream_error(
                                        "policy-violation",
                                        "too many failed authentication attempts",
                                    ));
                                }
                            }
                            auth::Outcome::Ended(Some(e)) => return Err(e.into()),
                            auth::Outcome::Ended(None) => return Err(End::Quiet),
                        }
                    }
                    ("auth", Some(ns::SASL)) => {
                        return Err(stream_error("policy-violation", "encryption is required: start TLS first"))
                    }
                    (name, _) => {
                        return Err(stream_error("not-authorized", format!("<{name}/> before authentication")));
                    }
                }
            }
        }
    }

    /// After authentication: the new stream, then resource binding or a resumption.
    pub(super) async fn bind(&self, wire: &mut Wire, jid: &UserJid, domain: &Domain) -> Result<Session, End> {
        let mut opened = true;
        let d = self
            .open_stream(wire, &mut opened, |_, _| {
                vec![
                    Node::Element(el("bind", &[("xmlns", ns::BIND)], vec![])),
                    Node::Element(el(
                        "session",
                        &[("xmlns", ns::SESSION)],
                        vec![Node::Element(el("optional", &[], vec![]))],
                    )),
                    Node::Element(el("sm", &[("xmlns", ns::SM)], vec![])),
                    Node::Element(el("ver", &[("xmlns", ns::ROSTER_VER)], vec![])),
                    Node::Element(el("csi", &[("xmlns", ns::CSI)], vec![])),
                ]
            })
            .await?;
        if &d != domain {
            return Err(stream_error("host-unknown", "the stream changed domain after authentication"));
        }
        let account = jid.to_string();
        loop {
            let e = match wire.read().await? {
                Some(Event::Stanza(e)) => e,
                Some(Event::StreamClose) | None => return Err(End::Quiet),
                Some(Event::StreamOpen(_)) => return Err(stream_error("not-well-formed", "a second stream header")),
            };
            match (e.name.as_str(), e.attr("xmlns")) {
                ("resume", Some(ns::SM)) => match self.resume(wire, jid, &e).await? {
                    Some(s) => return Ok(s),
                    None => continue,
                },
                ("enable", Some(ns::SM)) => {
                    wire.send(&sm_failed("unexpected-request", None));
                    wire.flush().await?;
                }
                ("iq", _) => {
                    let id = e.attr("id").unwrap_or_default().to_string();
                    let request = iq::request(e.attr("type").unwrap_or_default(), e.elements().next());
                    let Request::Bind { resource } = request else {
                        wire.send(&error_reply(&e, "", &account, "auth", "not-authorized", "bind a resource first"));
                        wire.flush().await?;
                        continue;
                    };
                    match self.open_session(wire.is_websocket(), jid, domain, &resource).await {
                        Ok(s) => {
                            let bound = el("bind", &[("xmlns", ns::BIND)], vec![text_el("jid", &s.full)]);
                            wire.send(&iq::result(&id, &account, &s.full, Some(bound)));
                            wire.flush().await?;
                            return Ok(s);
                        }
                        Err(err) => {
                            let (cond, kind) = condition(err.code);
                            wire.send(&error_reply(&e, "", &account, kind, cond, &err.message));
                            wire.flush().await?;
                        }
                    }
                }
                (name, _) => {
                    return Err(stream_error("not-authorized", format!("<{name}/> before binding a resource")))
                }
            }
        }
    }

    async fn open_session(
        &self,
        websocket: bool,
        jid: &UserJid,
        domain: &Domain,
        resource: &str,
    ) -> Result<Session, telex_types::TelexError> {
        // Offline messages wait for the client's initial presence (XEP-0160).
        let device = self.core.open(jid.clone(), resource, true).await?;
        tracing::info!(user = %jid, device = %device.device(), "XMPP session bound");
        Ok(Session::new(jid.clone(), domain, device, websocket))
    }

    /// `<resume/>`: takes the session over if it is this user's; otherwise says it failed.
    async fn resume(&self, wire: &mut Wire, jid: &UserJid, e: &crate::xml::Element) -> Result<Option<Session>, End> {
        let previd = e.attr("previd").unwrap_or_default();
        let h = e.attr("h").and_then(|h| h.parse::<u32>().ok());
        let taken = match h {
            Some(_) => self.resumable.take(previd, jid).await,
            None => None,
        };
        // Its unacknowledged stanzas were written for the transport it was on.
        let taken = taken.filter(|s| s.websocket == wire.is_websocket());
        let Some(mut s) = taken else {
            metrics::counter!("telex_xmpp_resumptions_total", "outcome" => "failed").increment(1);
            wire.send(&sm_failed("item-not-found", None));
            wire.flush().await?;
            return Ok(None);
        };
        s.client_acked(h.unwrap_or(0))?;
        metrics::counter!("telex_xmpp_resumptions_total", "outcome" => "resumed").increment(1);
        let h = s.inbound.h().to_string();
        wire.send(&el("resumed", &[("xmlns", ns::SM), ("previd", previd), ("h", &h)], vec![]));
        for stanza in s.outbound.unacked_stanzas() {
            wire.send_text(stanza);
        }
        s.resumed(wire);
        wire.flush().await?;
        tracing::info!(user = %jid, full = %s.full, "XMPP session resumed");
        Ok(Some(s))
    }
}
