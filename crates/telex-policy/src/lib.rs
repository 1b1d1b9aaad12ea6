//! The one place Telex decides who may do what to whom.
//!
//! Every check of who may message, see, or read whom (blocking, roster subscriptions, vCard
//! reads, archive queries, tenant limits) is a call to [`decide`]: a pure function of the
//! request and the facts the caller gathered (block lists, the roster item, counts, limits).
//! The actors and the session core gather the facts and act on the answer; neither adapter
//! (gRPC, XMPP) decides anything itself. The tenant policy engine plugs in here.
//!
//! This crate depends on `telex-types` only and does no I/O.

// Network input reaches this crate: nothing here may panic on it.
#![deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod directory;
pub mod rules;

use std::time::Duration;

use telex_types::{ErrorCode, TelexError, UserJid};

/// What a subject asks to do to an object (another user, or itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Store a message in both archives.
    Message,
    /// Pass a signal (chat state, receipt, marker, directed presence) to online devices.
    Signal,
    /// See the object's presence (the subject is the viewer).
    SeePresence,
    /// Send the object a subscription stanza (ask, approve, cancel).
    Subscribe,
    /// Read the object's vCard.
    ReadVCard,
    /// Query the object's archive.
    ReadArchive,
    /// Open one more device session (the object is the subject itself).
    OpenSession,
}

/// What the caller knows about the subject, the object and their relation. Fields that do not
/// matter for an action are ignored; `Facts::default()` is "nothing special".
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The object is an existing account.
    pub object_exists: bool,
    /// The subject's block list holds the object.
    pub subject_blocks_object: bool,
    /// The object's block list holds the subject.
    pub object_blocks_subject: bool,
    /// For `SeePresence`: the subscription lets the subject see the object's presence (the
    /// object's roster item for the subject is `from`/`both`, or equivalently the subject's
    /// item for the object is `to`/`both`).
    pub subscribed: bool,
    /// For `Message`: the body and extension bytes, and the tenant's limit.
    pub message_bytes: usize,
    pub max_message_bytes: usize,
    /// For `Message` and `Signal`: how long until the sender's rate limit lets it send
    /// (`None`: it may send now), and the limit in messages per second.
    pub rate_limited_for: Option<Duration>,
    pub sends_per_second: f64,
    /// For `OpenSession`: sessions the user has open, and the tenant's limit.
    pub open_sessions: usize,
    pub max_sessions: usize,
    /// The tenant's policy refuses this (the caller asked `TenantPolicy::check`).
    pub policy: Option<rules::PolicyRefusal>,
}

/// Which rule made a decision: shown by diagnostics, counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Users of one tenant do not reach users of another.
    TenantIsolation,
    NoSuchUser,
    SubjectBlocks,
    ObjectBlocks,
    NotSubscribed,
    OwnArchiveOnly,
    MessageSize,
    SendRate,
    SessionsPerUser,
    /// The tenant's policy file.
    TenantPolicy,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::TenantIsolation => "tenant_isolation",
            Rule::NoSuchUser => "no_such_user",
            Rule::SubjectBlocks => "subject_blocks",
            Rule::ObjectBlocks => "object_blocks",
            Rule::NotSubscribed => "not_subscribed",
            Rule::OwnArchiveOnly => "own_archive_only",
            Rule::MessageSize => "message_size",
            Rule::SendRate => "send_rate",
            Rule::SessionsPerUser => "sessions_per_user",
            Rule::TenantPolicy => "tenant_policy",
        }
    }
}

/// A refusal: the error to answer with, the rule behind it, and whether to answer at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    pub error: TelexError,
    /// Drop without telling the subject (presence, signals and subscription stanzas to someone
    /// who blocks you vanish, as XMPP requires: an answer would reveal the block).
    pub silent: bool,
    /// For rate limits: when the same request can succeed.
    pub retry_after: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// `Ok` when allowed; the denial otherwise.
    pub fn into_result(self) -> Result<(), Denial> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Deny(d) => Err(d),
        }
    }
}

fn deny(rule: Rule, code: ErrorCode, message: String) -> Decision {
    Decision::Deny(Denial { rule, error: TelexError::new(code, message), silent: false, retry_after: None })
}

fn drop_silently(rule: Rule, message: String) -> Decision {
    Decision::Deny(Denial {
        rule,
        error: TelexError::new(ErrorCode::PermissionDenied, message),
        silent: true,
        retry_after: None,
    })
}

/// Decides whether `subject` may do `action` to `object`, given `facts`. Deny wins: the first
/// rule that refuses decides, in the order below (isolation, existence, blocks, the action's own
/// rules, limits).
pub fn decide(subject: &UserJid, action: Action, object: &UserJid, facts: &Facts) -> Decision {
    use Action::*;
    if subject.domain() != object.domain() {
        let what = match action {
            Message | Signal | Subscribe => "message",
            SeePresence => "see the presence of",
            ReadVCard | ReadArchive => "read data of",
            OpenSession => "open sessions for",
        };
        let message = format!("users of {} may not {what} users of {}", subject.domain(), object.domain());
        return match action {
            Signal | SeePresence => drop_silently(Rule::TenantIsolation, message),
            _ => deny(Rule::TenantIsolation, ErrorCode::PermissionDenied, message),
        };
    }
    if let Some(refusal) = &facts.policy {
        // After isolation, before the rest: an admin's rule outranks a user's own settings.
        let m = refusal.message();
        return match action {
            // What the other side would learn from an answer, it learns nothing of.
            Signal | SeePresence | Subscribe => drop_silently(Rule::TenantPolicy, m),
            _ => deny(Rule::TenantPolicy, ErrorCode::PolicyDenied, m),
        };
    }
    match action {
        Message => {
            if !facts.object_exists {
                return deny(Rule::NoSuchUser, ErrorCode::NotFound, format!("no such user {object}"));
            }
            if facts.subject_blocks_object {
                let m = format!("you have blocked {object}; unblock to send");
                return deny(Rule::SubjectBlocks, ErrorCode::PermissionDenied, m);
            }
            if facts.object_blocks_subject {
                let m = format!("{object} does not accept your messages");
                return deny(Rule::ObjectBlocks, ErrorCode::PermissionDenied, m);
            }
            if facts.message_bytes > facts.max_message_bytes {
                let m =
                    format!("message is {} bytes; the limit is {} bytes", facts.message_bytes, facts.max_message_bytes);
                return deny(Rule::MessageSize, ErrorCode::InvalidArgument, m);
            }
            rate(facts)
        }
        Signal => {
            if facts.subject_blocks_object || facts.object_blocks_subject {
                return drop_silently(Rule::ObjectBlocks, format!("{object} is blocked"));
            }
            rate(facts)
        }
        SeePresence => {
            if facts.subject_blocks_object || facts.object_blocks_subject {
                return drop_silently(Rule::ObjectBlocks, format!("{object} is blocked"));
            }
            if !facts.subscribed && subject != object {
                return drop_silently(Rule::NotSubscribed, format!("not subscribed to {object}'s presence"));
            }
            Decision::Allow
        }
        Subscribe => {
            if !facts.object_exists {
                return deny(Rule::NoSuchUser, ErrorCode::NotFound, format!("no such user {object}"));
            }
            if facts.object_blocks_subject {
                return drop_silently(Rule::ObjectBlocks, format!("{object} does not accept your requests"));
            }
            Decision::Allow
        }
        ReadVCard => {
            if subject == object {
                return Decision::Allow;
            }
            if !facts.object_exists {
                return deny(Rule::NoSuchUser, ErrorCode::NotFound, format!("no such user {object}"));
            }
            if facts.object_blocks_subject {
                // Answered as if there were no such user: a blocked reader learns nothing.
                return deny(Rule::ObjectBlocks, ErrorCode::NotFound, format!("no such user {object}"));
            }
            Decision::Allow
        }
        ReadArchive => {
            if subject != object {
                let m = format!("{subject} may query only their own archive, not {object}'s");
                return deny(Rule::OwnArchiveOnly, ErrorCode::PermissionDenied, m);
            }
            Decision::Allow
        }
        OpenSession => {
            if facts.open_sessions >= facts.max_sessions {
                let m = format!("too many sessions for {subject}: the limit is {}", facts.max_sessions);
                return deny(Rule::SessionsPerUser, ErrorCode::ResourceExhausted, m);
            }
            Decision::Allow
        }
    }
}

fn rate(facts: &Facts) -> Decision {
    match facts.rate_limited_for {
        None => Decision::Allow,
        Some(wait) => {
            let ms = wait.as_millis().max(1);
            Decision::Deny(Denial {
                rule: Rule::SendRate,
                error: TelexError::new(
                    ErrorCode::ResourceExhausted,
                    format!("send rate limit of {} messages/s exceeded; retry after {ms} ms", facts.sends_per_second),
                ),
                silent: false,
                retry_after: Some(Duration::from_millis(ms as u64)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> UserJid {
        UserJid::parse(s).unwrap()
    }

    fn rule(d: Decision) -> Option<(Rule, bool)> {
        match d {
            Decision::Allow => None,
            Decision::Deny(d) => Some((d.rule, d.silent)),
        }
    }

    fn exists() -> Facts {
        Facts { object_exists: true, max_message_bytes: 100, max_sessions: 2, ..Facts::default() }
    }

    #[test]
    fn the_tenant_policy_refuses_with_its_description_and_silences_presence() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        let refusal = rules::PolicyRefusal { rule: "wall".into(), description: "Research and trading".into() };
        let facts = Facts { policy: Some(refusal), ..exists() };
        let Decision::Deny(d) = decide(&a, Action::Message, &b, &facts) else { panic!() };
        assert_eq!((d.rule, d.error.code, d.silent), (Rule::TenantPolicy, ErrorCode::PolicyDenied, false));
        assert_eq!(d.error.message, "Research and trading");
        assert_eq!(rule(decide(&a, Action::SeePresence, &b, &facts)), Some((Rule::TenantPolicy, true)));
        // Isolation still comes first.
        let other = jid("eve@y.example");
        assert_eq!(rule(decide(&a, Action::Message, &other, &facts)), Some((Rule::TenantIsolation, false)));
    }

    #[test]
    fn messages_need_an_existing_unblocked_recipient_in_the_same_tenant() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        assert_eq!(decide(&a, Action::Message, &b, &exists()), Decision::Allow);
        let none = Facts { object_exists: false, ..exists() };
        assert_eq!(rule(decide(&a, Action::Message, &b, &none)), Some((Rule::NoSuchUser, false)));
        let blocks = Facts { subject_blocks_object: true, ..exists() };
        assert_eq!(rule(decide(&a, Action::Message, &b, &blocks)), Some((Rule::SubjectBlocks, false)));
        let blocked = Facts { object_blocks_subject: true, ..exists() };
        let Decision::Deny(d) = decide(&a, Action::Message, &b, &blocked) else { panic!() };
        assert_eq!((d.rule, d.error.code), (Rule::ObjectBlocks, ErrorCode::PermissionDenied));
        assert!(d.error.message.contains("bob@x.example does not accept"), "{}", d.error.message);
        let other = jid("eve@y.example");
        assert_eq!(rule(decide(&a, Action::Message, &other, &exists())), Some((Rule::TenantIsolation, false)));
    }

    #[test]
    fn limits_come_after_who_may_and_say_when_to_retry() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        let big = Facts { message_bytes: 101, ..exists() };
        let Decision::Deny(d) = decide(&a, Action::Message, &b, &big) else { panic!() };
        assert_eq!((d.rule, d.error.code), (Rule::MessageSize, ErrorCode::InvalidArgument));
        assert!(d.error.message.contains("101 bytes; the limit is 100"));
        let fast = Facts { rate_limited_for: Some(Duration::from_micros(10)), ..exists() };
        let Decision::Deny(d) = decide(&a, Action::Message, &b, &fast) else { panic!() };
        assert_eq!(d.retry_after, Some(Duration::from_millis(1)), "at least a millisecond");
        assert!(d.error.code.retryable());
        // A blocked recipient is refused before the size is looked at.
        let both = Facts { object_blocks_subject: true, message_bytes: 101, ..exists() };
        assert_eq!(rule(decide(&a, Action::Message, &b, &both)), Some((Rule::ObjectBlocks, false)));
    }

    #[test]
    fn presence_and_signals_vanish_silently_when_blocked_or_unsubscribed() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        let subscribed = Facts { subscribed: true, ..Facts::default() };
        assert_eq!(decide(&a, Action::SeePresence, &b, &subscribed), Decision::Allow);
        assert_eq!(rule(decide(&a, Action::SeePresence, &b, &Facts::default())), Some((Rule::NotSubscribed, true)));
        assert_eq!(decide(&a, Action::SeePresence, &a, &Facts::default()), Decision::Allow, "your own devices");
        let blocked = Facts { subscribed: true, object_blocks_subject: true, ..Facts::default() };
        assert_eq!(rule(decide(&a, Action::SeePresence, &b, &blocked)), Some((Rule::ObjectBlocks, true)));
        assert_eq!(rule(decide(&a, Action::Signal, &b, &blocked)), Some((Rule::ObjectBlocks, true)));
        assert_eq!(decide(&a, Action::Signal, &b, &Facts::default()), Decision::Allow);
        let other = jid("eve@y.example");
        assert_eq!(rule(decide(&a, Action::SeePresence, &other, &subscribed)), Some((Rule::TenantIsolation, true)));
    }

    #[test]
    fn subscription_requests_to_someone_who_blocks_you_vanish() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        assert_eq!(decide(&a, Action::Subscribe, &b, &exists()), Decision::Allow);
        let blocked = Facts { object_blocks_subject: true, ..exists() };
        assert_eq!(rule(decide(&a, Action::Subscribe, &b, &blocked)), Some((Rule::ObjectBlocks, true)));
        let none = Facts::default();
        assert_eq!(rule(decide(&a, Action::Subscribe, &b, &none)), Some((Rule::NoSuchUser, false)));
    }

    #[test]
    fn vcards_are_readable_within_the_tenant_except_by_the_blocked() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        assert_eq!(decide(&a, Action::ReadVCard, &b, &exists()), Decision::Allow);
        assert_eq!(decide(&a, Action::ReadVCard, &a, &Facts::default()), Decision::Allow);
        let blocked = Facts { object_blocks_subject: true, ..exists() };
        let Decision::Deny(d) = decide(&a, Action::ReadVCard, &b, &blocked) else { panic!() };
        assert_eq!(d.error.code, ErrorCode::NotFound, "looks like no such user");
        let other = jid("eve@y.example");
        assert_eq!(rule(decide(&a, Action::ReadVCard, &other, &exists())), Some((Rule::TenantIsolation, false)));
    }

    #[test]
    fn archives_are_read_by_their_owner_and_sessions_are_counted() {
        let (a, b) = (jid("alice@x.example"), jid("bob@x.example"));
        assert_eq!(decide(&a, Action::ReadArchive, &a, &Facts::default()), Decision::Allow);
        assert_eq!(rule(decide(&a, Action::ReadArchive, &b, &Facts::default())), Some((Rule::OwnArchiveOnly, false)));
        let one = Facts { open_sessions: 1, max_sessions: 2, ..Facts::default() };
        assert_eq!(decide(&a, Action::OpenSession, &a, &one), Decision::Allow);
        let full = Facts { open_sessions: 2, max_sessions: 2, ..Facts::default() };
        let Decision::Deny(d) = decide(&a, Action::OpenSession, &a, &full) else { panic!() };
        assert_eq!(d.error.code, ErrorCode::ResourceExhausted);
        assert!(d.error.message.contains("the limit is 2"));
    }
}
