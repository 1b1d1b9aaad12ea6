//! The send path and archive queries: validate, store in both archives in parallel, then
//! acknowledge and wake the actors of both users.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

use dashmap::DashMap;

use telex_policy::rules::PolicyAction;
use telex_policy::{decide, Action, Denial, Facts};
use telex_types::records::{ArchivedMessage, TenantLimits};
use telex_types::session::{Refused, SendMessage, Sent};
use telex_types::{TelexError, UserJid};

use crate::hub::Signal;
use crate::policies::PolicyCache;
use crate::rate::TokenBucket;
use crate::{Hub, Ledger};

/// The node's default limits; `for_tenant` applies a tenant's overrides.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub sessions_per_user: usize,
    /// Archive entries sent to a device beyond what it acknowledged.
    pub delivery_window: u64,
    /// A device whose queue stays full this long (it is not reading) is disconnected.
    pub stall_timeout: std::time::Duration,
    /// Messages a user may send per second on average, and at once.
    pub sends_per_second: f64,
    pub send_burst: f64,
}

impl Limits {
    /// These limits with a tenant's overrides applied. A tenant's burst is twice its rate.
    pub fn for_tenant(&self, t: &TenantLimits) -> Limits {
        let mut l = self.clone();
        if let Some(v) = t.max_message_bytes {
            l.max_body_bytes = v as usize;
        }
        if let Some(v) = t.sends_per_second {
            l.sends_per_second = f64::from(v);
            l.send_burst = 2.0 * f64::from(v);
        }
        if let Some(v) = t.sessions_per_user {
            l.sessions_per_user = v as usize;
        }
        l
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            sessions_per_user: 10,
            delivery_window: 256,
            stall_timeout: std::time::Duration::from_secs(30),
            sends_per_second: 100.0,
            send_burst: 200.0,
        }
    }
}

const MAX_CLIENT_ID: usize = 128;
use telex_types::session::MAX_DEVICE_BYTES as MAX_DEVICE;
const MAX_PAGE: usize = 500;
/// Largest signal payload.
pub const MAX_SIGNAL_BYTES: usize = 4096;

/// A page request over one user's archive. Bounds combine: the page holds messages after every
/// lower bound and before every upper bound.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    pub with: Option<UserJid>,
    /// Strictly after this position.
    pub after: u64,
    /// Strictly before this position (0: unbounded). With no lower bound, the newest page.
    pub before: u64,
    /// Strictly after / before the message with this server id.
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// Sent at or after `start_ms`, and before `end_ms` (Unix milliseconds).
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub limit: usize,
}

/// How far send times may run out of archive order (senders' clocks and commit order differ),
/// so a time bound is turned into positions with this much slack and then filtered exactly.
const CLOCK_SLACK_MS: u64 = 60_000;

#[derive(Clone)]
pub struct Messaging {
    ledger: Arc<dyn Ledger>,
    hub: Hub,
    limits: Limits,
    /// Per-sender send budgets (one entry per user who sent since start).
    buckets: Arc<DashMap<UserJid, TokenBucket>>,
}

/// Namespaces of end-to-end encrypted payloads (OMEMO, legacy and current; OpenPGP for XMPP;
/// OTR has no element): content the archive cannot read.
const ENCRYPTED: &[&str] =
    &["eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0", "jabber:x:encrypted"];

/// Whether a message's extension elements carry end-to-end encrypted content.
pub fn is_encrypted(extras: &str) -> bool {
    ENCRYPTED.iter().any(|ns| extras.contains(&format!("xmlns='{ns}'")) || extras.contains(&format!("xmlns=\"{ns}\"")))
}

pub use telex_types::records::server_id;

fn refused(d: Denial) -> Refused {
    metrics::counter!("telex_policy_denials_total", "rule" => d.rule.as_str()).increment(1);
    Refused { error: d.error, retry_after: d.retry_after }
}

impl Messaging {
    pub fn new(ledger: Arc<dyn Ledger>, limits: Limits) -> Self {
        let hub = Hub::new(ledger.clone(), limits.clone());
        Messaging { ledger, hub, limits, buckets: Arc::new(DashMap::new()) }
    }

    /// The tenants' compiled policies this node checks against.
    pub fn policies(&self) -> &Arc<PolicyCache> {
        &self.hub.policies
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// What the decision point needs to know about `subject` acting on `object`: whether the
    /// object exists and the blocks between them, from the local replica.
    pub async fn facts(&self, subject: &UserJid, object: &UserJid) -> Result<Facts, TelexError> {
        let (object_exists, object_blocks_subject) = self.ledger.object_facts(object, subject).await?;
        Ok(Facts {
            object_exists,
            subject_blocks_object: self.ledger.is_blocked(subject, object)?,
            object_blocks_subject,
            ..Facts::default()
        })
    }

    /// Stores a message from `from`/`device`. Returns once it is committed to both archives;
    /// a retry with the same client id returns the first result.
    pub async fn send(&self, from: &UserJid, device: &str, m: SendMessage) -> Result<Sent, Refused> {
        let limits = self.limits.for_tenant(&self.ledger.tenant_limits(from.domain())?);
        let to = UserJid::parse(&m.to)?;
        if m.client_id.is_empty() || m.client_id.len() > MAX_CLIENT_ID {
            return Err(TelexError::invalid(format!("client_id must be 1 to {MAX_CLIENT_ID} bytes")).into());
        }
        if m.to_device.len() > MAX_DEVICE {
            return Err(
                TelexError::invalid(format!("the recipient's device name is longer than {MAX_DEVICE} bytes")).into()
            );
        }
        let mut policy = self.hub.policies.check(from, PolicyAction::Message, &to);
        if policy.is_none() && is_encrypted(&m.extras) {
            policy = self.hub.policies.check(from, PolicyAction::E2ee, &to);
        }
        let facts = Facts {
            policy,
            message_bytes: m.body.len() + m.extras.len(),
            max_message_bytes: limits.max_body_bytes,
            rate_limited_for: self.take_token(from, &limits).err(),
            sends_per_second: limits.sends_per_second,
            ..self.facts(from, &to).await?
        };
        decide(from, Action::Message, &to, &facts).into_result().map_err(refused)?;
        let message = ArchivedMessage {
            server_id: server_id(from, &m.client_id),
            from: from.clone(),
            to: to.clone(),
            from_device: device.to_string(),
            client_id: m.client_id,
            body: m.body,
            extras: m.extras,
            to_device: m.to_device,
            sent_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        };
        let server_id = message.server_id.clone();
        let span = crate::trace::send_span(&server_id, from, &to);
        let commit = |owner: &UserJid, role: &'static str| {
            if span.is_disabled() {
                return tracing::Span::none();
            }
            tracing::info_span!(target: "telex_trace", parent: &span, "archive.commit", owner = %owner, role)
        };
        let (position, recipient_position) = if &to == from {
            let p = self.ledger.append(to.clone(), message).instrument(commit(&to, "both")).await?;
            (p, p)
        } else {
            let recipient = self.ledger.append(to.clone(), message.clone()).instrument(commit(&to, "recipient"));
            let sender = self.ledger.append(from.clone(), message).instrument(commit(from, "sender"));
            let (r, s) = futures::future::try_join(recipient, sender).instrument(span.clone()).await?;
            (s, r)
        };
        metrics::counter!("telex_messages_sent_total", "tenant" => from.domain().to_string()).increment(1);
        self.hub.notify(&to);
        self.hub.notify(from);
        Ok(Sent { server_id, position, recipient_position })
    }

    /// Passes a signal (chat state, receipt, marker, directed presence) to `to`'s online
    /// devices; nothing is stored. Rate limited with messages; a block either way drops it
    /// silently (as XMPP does), and so does an offline or unknown recipient.
    pub async fn signal(&self, from: &UserJid, device: &str, to: &str, payload: String) -> Result<(), Refused> {
        let limits = self.limits.for_tenant(&self.ledger.tenant_limits(from.domain())?);
        let to = UserJid::parse(to)?;
        if payload.len() > MAX_SIGNAL_BYTES {
            return Err(TelexError::invalid(format!("a signal may carry at most {MAX_SIGNAL_BYTES} bytes")).into());
        }
        let facts = Facts {
            policy: self.hub.policies.check(from, PolicyAction::Message, &to),
            rate_limited_for: self.take_token(from, &limits).err(),
            sends_per_second: limits.sends_per_second,
            ..self.facts(from, &to).await?
        };
        match decide(from, Action::Signal, &to, &facts).into_result() {
            Ok(()) => {}
            Err(d) if d.silent => return Ok(()),
            Err(d) => return Err(refused(d)),
        }
        metrics::counter!("telex_signals_total").increment(1);
        let signal = Signal { from: from.clone(), from_device: device.to_string(), payload };
        self.hub.deliver_signal(&to, signal).await;
        Ok(())
    }

    /// Takes a send token from `from`'s budget, or says how long until one is available.
    fn take_token(&self, from: &UserJid, limits: &Limits) -> Result<(), Duration> {
        let now = Instant::now();
        let fresh = || TokenBucket::new(limits.sends_per_second, limits.send_burst, now);
        let mut bucket = self.buckets.entry(from.clone()).or_insert_with(fresh);
        if bucket.per_second() != limits.sends_per_second {
            // The tenant's limit changed.
            *bucket = fresh();
        }
        bucket.take(now).inspect_err(|_| {
            metrics::counter!("telex_messages_rate_limited_total").increment(1);
        })
    }

    /// A page of `owner`'s archive, in archive order. A query with a peer reads the peer index,
    /// so it costs what the page holds, not what the archive holds.
    pub fn history(&self, owner: &UserJid, q: &HistoryQuery) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let limit = match q.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        };
        let head = self.ledger.head(owner)?;
        let (after, before) = self.position_bounds(owner, q, head)?;
        let last = if before == 0 { head } else { head.min(before.saturating_sub(1)) };
        let Some(first) = after.checked_add(1) else { return Ok(Vec::new()) };
        if first > last {
            return Ok(Vec::new());
        }
        let in_time =
            |m: &ArchivedMessage| q.start_ms.is_none_or(|t| m.sent_at >= t) && q.end_ms.is_none_or(|t| m.sent_at < t);
        let lower_bound = q.after != 0 || q.after_id.is_some() || q.start_ms.is_some();
        let page = Page { limit, newest_first: !lower_bound && (q.before != 0 || q.before_id.is_some()) };
        let mut out = Vec::new();
        let Some(peer) = &q.with else {
            self.scan(owner, first, last, &page, &in_time, &mut out)?;
            return Ok(out);
        };
        // The message's other party, as the peer index files it.
        let other = |m: &ArchivedMessage| if &m.to == owner { m.from.clone() } else { m.to.clone() };
        let with_peer = |m: &ArchivedMessage| in_time(m) && &other(m) == peer;
        // Entries older than the peer index are scanned; the rest come from the index.
        let start = self.ledger.peer_index_start(owner)?.max(1);
        let (old_last, new_first) = (last.min(start - 1), first.max(start));
        if page.newest_first {
            self.indexed(owner, peer, new_first, last, &page, &in_time, &mut out)?;
            self.scan(owner, first, old_last, &page, &with_peer, &mut out)?;
        } else {
            self.scan(owner, first, old_last, &page, &with_peer, &mut out)?;
            self.indexed(owner, peer, new_first, last, &page, &in_time, &mut out)?;
        }
        Ok(out)
    }

    /// Adds the entries in `first..=last` that `keep` accepts to the page, in chunks.
    fn scan(
        &self,
        owner: &UserJid,
        first: u64,
        last: u64,
        page: &Page,
        keep: &dyn Fn(&ArchivedMessage) -> bool,
        out: &mut Vec<(u64, ArchivedMessage)>,
    ) -> Result<(), TelexError> {
        let chunk = (page.limit * 4).max(256) as u64;
        if first > last || out.len() >= page.limit {
            return Ok(());
        }
        if page.newest_first {
            let mut end = last;
            while out.len() < page.limit {
                let start = end.saturating_sub(chunk - 1).max(first);
                let part = self.ledger.range(owner, start, end, chunk as usize)?;
                page.add(out, part.into_iter().filter(|(_, m)| keep(m)).collect());
                if start == first {
                    break;
                }
                end = start - 1;
            }
        } else {
            let mut start = first;
            while start <= last && out.len() < page.limit {
                let end = (start + chunk - 1).min(last);
                let part = self.ledger.range(owner, start, end, chunk as usize)?;
                page.add(out, part.into_iter().filter(|(_, m)| keep(m)).collect());
                start = end + 1;
            }
        }
        Ok(())
    }

    /// Adds the entries with `peer` in `first..=last` that `keep` accepts, from the peer index.
    #[allow(clippy::too_many_arguments)]
    fn indexed(
        &self,
        owner: &UserJid,
        peer: &UserJid,
        first: u64,
        last: u64,
        page: &Page,
        keep: &dyn Fn(&ArchivedMessage) -> bool,
        out: &mut Vec<(u64, ArchivedMessage)>,
    ) -> Result<(), TelexError> {
        let (mut from, mut to) = (first, last);
        while from <= to && out.len() < page.limit {
            let want = page.limit - out.len();
            let positions = self.ledger.peer_positions(owner, peer, from, to, want, page.newest_first)?;
            let Some(&edge) = positions.last() else { break };
            let mut part = self.ledger.entries(owner, &positions)?;
            if page.newest_first {
                part.reverse();
                to = edge.saturating_sub(1);
                if edge == 0 {
                    break;
                }
            } else {
                from = edge + 1;
            }
            page.add(out, part.into_iter().filter(|(_, m)| keep(m)).collect());
            if positions.len() < want {
                break;
            }
        }
        Ok(())
    }

    /// The query's bounds as positions: (strictly after, strictly before or 0 for none).
    fn position_bounds(&self, owner: &UserJid, q: &HistoryQuery, head: u64) -> Result<(u64, u64), TelexError> {
        let by_id = |id: &str| {
            self.ledger
                .position_of(owner, id)?
                .ok_or_else(|| TelexError::not_found(format!("no message {id} in the archive of {owner}")))
        };
        let mut after = q.after;
        let mut before = q.before;
        let mut lower = |p: u64| after = after.max(p);
        if let Some(id) = &q.after_id {
            lower(by_id(id)?);
        }
        if let Some(t) = q.start_ms {
            // Everything before the first entry sent at or after `t - slack` is too old.
            lower(self.first_sent_at_or_after(owner, t.saturating_sub(CLOCK_SLACK_MS), head)? - 1);
        }
        let mut upper = |p: u64| before = if before == 0 { p } else { before.min(p) };
        if let Some(id) = &q.before_id {
            upper(by_id(id)?);
        }
        if let Some(t) = q.end_ms {
            let p = self.first_sent_at_or_after(owner, t.saturating_add(CLOCK_SLACK_MS), head)?;
            if p <= head {
                upper(p);
            }
        }
        Ok((after, before))
    }

    /// The first position whose send time is at least `t` (head + 1 when none), by binary search:
    /// send times rise with positions up to the clock slack.
    fn first_sent_at_or_after(&self, owner: &UserJid, t: u64, head: u64) -> Result<u64, TelexError> {
        let (mut lo, mut hi) = (1, head + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let sent_at = self.ledger.range(owner, mid, mid, 1)?.first().map_or(u64::MAX, |(_, m)| m.sent_at);
            if sent_at >= t {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }
}

/// How a page fills: up to `limit` entries, the oldest first or (with no lower bound) the
/// newest ones below the upper bound.
struct Page {
    limit: usize,
    newest_first: bool,
}

impl Page {
    /// Adds `part` (in archive order) to `out` (in archive order): after it, or, when walking
    /// backwards, before it, keeping the newest that fit.
    fn add(&self, out: &mut Vec<(u64, ArchivedMessage)>, mut part: Vec<(u64, ArchivedMessage)>) {
        let take = (self.limit - out.len().min(self.limit)).min(part.len());
        if self.newest_first {
            let keep_from = part.len() - take;
            out.splice(0..0, part.drain(keep_from..));
        } else {
            out.extend(part.into_iter().take(take));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_per_sender_and_client_id() {
        let a = UserJid::parse("alice@x.example").unwrap();
        let b = UserJid::parse("bob@x.example").unwrap();
        assert_eq!(server_id(&a, "1"), server_id(&a, "1"));
        assert_ne!(server_id(&a, "1"), server_id(&a, "2"));
        assert_ne!(server_id(&a, "1"), server_id(&b, "1"));
        assert_eq!(server_id(&a, "1").len(), 32);
    }
}
