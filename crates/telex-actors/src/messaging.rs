//! The send path and archive queries: validate, store in both archives in parallel, then
//! acknowledge and wake the actors of both users.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use telex_types::records::{ArchivedMessage, TenantLimits};
use telex_types::{ErrorCode, TelexError, UserJid};

use crate::rate::TokenBucket;
use crate::{Hub, Ledger};

/// Per-tenant limits (defaults until tenant policies exist).
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
const MAX_PAGE: usize = 500;
/// Largest signal payload.
pub const MAX_SIGNAL_BYTES: usize = 4096;

/// A durably stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub server_id: String,
    /// Position in the sender's archive, and in the recipient's.
    pub position: u64,
    pub recipient_position: u64,
}

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

/// Why a send was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub error: TelexError,
    /// For rate limiting: when a retry can succeed.
    pub retry_after: Option<Duration>,
}

impl From<TelexError> for Refused {
    fn from(error: TelexError) -> Self {
        Refused { error, retry_after: None }
    }
}

#[derive(Clone)]
pub struct Messaging {
    ledger: Arc<dyn Ledger>,
    hub: Hub,
    limits: Limits,
    /// Per-sender send budgets (one entry per user who sent since start).
    buckets: Arc<DashMap<UserJid, TokenBucket>>,
}

/// The server id of a message: the same for every retry of the same (sender, client id).
pub fn server_id(from: &UserJid, client_id: &str) -> String {
    let key = format!("{from}\0{client_id}");
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

impl Messaging {
    pub fn new(ledger: Arc<dyn Ledger>, limits: Limits) -> Self {
        let hub = Hub::new(ledger.clone(), limits.clone());
        Messaging { ledger, hub, limits, buckets: Arc::new(DashMap::new()) }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Stores a message from `from`/`device` to `to`. Returns once it is committed to both
    /// archives; a retry with the same `client_id` returns the first result.
    pub async fn send(
        &self,
        from: &UserJid,
        device: &str,
        to: &str,
        client_id: &str,
        body: &str,
        extras: &str,
    ) -> Result<Sent, Refused> {
        let limits = self.limits.for_tenant(&self.ledger.tenant_limits(from.domain())?);
        self.take_token(from, &limits)?;
        let to = self.check(from, to, client_id, body, &limits)?;
        if extras.len() > limits.max_body_bytes {
            return Err(TelexError::invalid(format!(
                "message extras are {} bytes; the limit is {} bytes",
                extras.len(),
                limits.max_body_bytes
            ))
            .into());
        }
        let message = ArchivedMessage {
            server_id: server_id(from, client_id),
            from: from.clone(),
            to: to.clone(),
            from_device: device.to_string(),
            client_id: client_id.to_string(),
            body: body.to_string(),
            extras: extras.to_string(),
            sent_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        };
        let server_id = message.server_id.clone();
        let (position, recipient_position) = if &to == from {
            let p = self.ledger.append(to.clone(), message).await?;
            (p, p)
        } else {
            let recipient = self.ledger.append(to.clone(), message.clone());
            let sender = self.ledger.append(from.clone(), message);
            let (r, s) = futures::future::try_join(recipient, sender).await?;
            (s, r)
        };
        metrics::counter!("telex_messages_sent_total", "tenant" => from.domain().to_string()).increment(1);
        self.hub.notify(&to);
        self.hub.notify(from);
        Ok(Sent { server_id, position, recipient_position })
    }

    /// Passes a signal (chat state, receipt, marker) to `to`'s online devices; nothing is
    /// stored. Rate limited with messages; a block either way drops it silently (as XMPP
    /// does), and so does an offline or unknown recipient.
    pub async fn signal(&self, from: &UserJid, device: &str, to: &str, payload: String) -> Result<(), Refused> {
        let limits = self.limits.for_tenant(&self.ledger.tenant_limits(from.domain())?);
        self.take_token(from, &limits)?;
        let to = UserJid::parse(to)?;
        if payload.len() > MAX_SIGNAL_BYTES {
            return Err(TelexError::invalid(format!("a signal may carry at most {MAX_SIGNAL_BYTES} bytes")).into());
        }
        if self.ledger.is_blocked(from, &to)? {
            return Ok(());
        }
        metrics::counter!("telex_signals_total").increment(1);
        self.hub.deliver_signal(&to, from, device, payload).await;
        Ok(())
    }

    /// The recipient, once the send is known to be acceptable.
    fn check(
        &self,
        from: &UserJid,
        to: &str,
        client_id: &str,
        body: &str,
        limits: &Limits,
    ) -> Result<UserJid, TelexError> {
        let to = UserJid::parse(to)?;
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID {
            return Err(TelexError::invalid(format!("client_id must be 1 to {MAX_CLIENT_ID} bytes")));
        }
        if body.len() > limits.max_body_bytes {
            return Err(TelexError::invalid(format!(
                "message body is {} bytes; the limit is {} bytes",
                body.len(),
                limits.max_body_bytes
            )));
        }
        if !self.ledger.user_exists(&to)? {
            return Err(TelexError::not_found(format!("no such user {to}")));
        }
        if self.ledger.is_blocked(from, &to)? {
            return Err(TelexError::new(
                ErrorCode::PermissionDenied,
                format!("you have blocked {to}; unblock to send"),
            ));
        }
        if self.ledger.is_blocked(&to, from)? {
            return Err(TelexError::new(ErrorCode::PermissionDenied, format!("{to} does not accept your messages")));
        }
        Ok(to)
    }

    fn take_token(&self, from: &UserJid, limits: &Limits) -> Result<(), Refused> {
        let now = Instant::now();
        let fresh = || TokenBucket::new(limits.sends_per_second, limits.send_burst, now);
        let mut bucket = self.buckets.entry(from.clone()).or_insert_with(fresh);
        if bucket.per_second() != limits.sends_per_second {
            // The tenant's limit changed.
            *bucket = fresh();
        }
        bucket.take(now).map_err(|wait| {
            metrics::counter!("telex_messages_rate_limited_total").increment(1);
            let ms = wait.as_millis().max(1) as u64;
            Refused {
                error: TelexError::new(
                    ErrorCode::ResourceExhausted,
                    format!("send rate limit of {} messages/s exceeded; retry after {ms} ms", limits.sends_per_second),
                ),
                retry_after: Some(Duration::from_millis(ms)),
            }
        })
    }

    /// A page of `owner`'s archive, in archive order.
    pub fn history(&self, owner: &UserJid, q: &HistoryQuery) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let limit = match q.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        };
        let head = self.ledger.head(owner)?;
        let (after, before) = self.position_bounds(owner, q, head)?;
        let last = if before == 0 { head } else { head.min(before.saturating_sub(1)) };
        let first = after + 1;
        if first > last {
            return Ok(Vec::new());
        }
        let keep = |m: &ArchivedMessage| {
            q.with.as_ref().is_none_or(|w| &m.from == w || &m.to == w)
                && q.start_ms.is_none_or(|t| m.sent_at >= t)
                && q.end_ms.is_none_or(|t| m.sent_at < t)
        };
        let chunk = (limit * 4).max(256) as u64;
        let mut out = Vec::new();
        let lower_bound = q.after != 0 || q.after_id.is_some() || q.start_ms.is_some();
        let newest_first = !lower_bound && (q.before != 0 || q.before_id.is_some());
        if newest_first {
            // The newest page below the upper bound: walk backwards in chunks.
            let mut end = last;
            while end >= first && out.len() < limit {
                let start = end.saturating_sub(chunk - 1).max(first);
                let mut part: Vec<_> = self
                    .ledger
                    .range(owner, start, end, chunk as usize)?
                    .into_iter()
                    .filter(|(_, m)| keep(m))
                    .collect();
                let take = (limit - out.len()).min(part.len());
                out.splice(0..0, part.drain(part.len() - take..));
                if start == first {
                    break;
                }
                end = start - 1;
            }
        } else {
            let mut start = first;
            while start <= last && out.len() < limit {
                let end = (start + chunk - 1).min(last);
                let part = self.ledger.range(owner, start, end, chunk as usize)?;
                out.extend(part.into_iter().filter(|(_, m)| keep(m)).take(limit - out.len()));
                start = end + 1;
            }
        }
        Ok(out)
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
