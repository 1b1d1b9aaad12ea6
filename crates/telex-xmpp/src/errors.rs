//! The one mapping from Telex errors to XMPP stanza error conditions (RFC 6120 §8.3) and from
//! session cut-offs to stream error conditions (RFC 6120 §4.9).

use telex_session::CutOff;
use telex_types::{ErrorCode, TelexError};

use crate::ns;
use crate::xml::{el, Element, Node};

/// The stanza error condition and type for a Telex error code.
pub fn condition(code: ErrorCode) -> (&'static str, &'static str) {
    match code {
        ErrorCode::InvalidArgument => ("bad-request", "modify"),
        ErrorCode::NotFound => ("item-not-found", "cancel"),
        ErrorCode::AlreadyExists => ("conflict", "cancel"),
        ErrorCode::Unauthenticated => ("not-authorized", "auth"),
        ErrorCode::PermissionDenied => ("forbidden", "auth"),
        ErrorCode::ResourceExhausted => ("resource-constraint", "wait"),
        ErrorCode::FailedPrecondition => ("unexpected-request", "cancel"),
        // Retryable: the user's shard is changing leader.
        ErrorCode::Unavailable => ("service-unavailable", "wait"),
        ErrorCode::Internal => ("internal-server-error", "cancel"),
        ErrorCode::PolicyDenied => ("policy-violation", "cancel"),
    }
}

/// The stream error condition for a session the server ended.
pub fn stream_condition(why: &CutOff) -> &'static str {
    match why {
        CutOff::Replaced => "conflict",
        CutOff::Moved | CutOff::ShuttingDown => "system-shutdown",
        CutOff::SlowReader { .. } | CutOff::Kicked | CutOff::Protocol(_) => "policy-violation",
        CutOff::Unreachable(_) => "internal-server-error",
    }
}

/// `<error type='...'><condition/><text>...</text></error>`.
pub fn error_element(kind: &str, condition: &str, text: &str) -> Element {
    let mut children = vec![Node::Element(el(condition, &[("xmlns", ns::STANZAS)], vec![]))];
    if !text.is_empty() {
        children.push(Node::Element(el("text", &[("xmlns", ns::STANZAS)], vec![Node::Text(text.to_string())])));
    }
    el("error", &[("type", kind)], children)
}

/// The `<error/>` for a Telex error, its message as the text.
pub fn stanza_error(e: &TelexError) -> Element {
    let (condition, kind) = condition(e.code);
    error_element(kind, condition, &e.message)
}

/// A stanza error reply to `stanza` (RFC 6120 §8.3.1: the addresses swapped). `me` is the
/// client's full JID; a request without `to` was handled for the user's account, so the reply
/// comes from `account`, the bare JID.
pub fn error_reply(stanza: &Element, me: &str, account: &str, kind: &str, condition: &str, text: &str) -> Element {
    let from = stanza.attr("to").unwrap_or(account);
    let id = stanza.attr("id").unwrap_or_default();
    let error = error_element(kind, condition, text);
    el(&stanza.name, &[("type", "error"), ("id", id), ("from", from), ("to", me)], vec![Node::Element(error)])
}

/// An error reply for a Telex error.
pub fn refused(stanza: &Element, me: &str, account: &str, e: &TelexError) -> Element {
    let (condition, kind) = condition(e.code);
    error_reply(stanza, me, account, kind, condition, &e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_condition_and_retryable_ones_say_wait() {
        for c in ErrorCode::ALL {
            let (condition, kind) = condition(c);
            assert!(!condition.is_empty());
            assert_eq!(kind == "wait", c.retryable(), "{c:?}");
        }
    }

    #[test]
    fn replies_come_from_whom_the_request_was_to() {
        let iq = el("iq", &[("type", "get"), ("id", "1"), ("to", "localhost")], vec![]);
        let r = error_reply(&iq, "a@localhost/pc", "a@localhost", "cancel", "service-unavailable", "");
        assert_eq!(
            (r.attr("from"), r.attr("to"), r.attr("id")),
            (Some("localhost"), Some("a@localhost/pc"), Some("1"))
        );
        let own = el("iq", &[("type", "get"), ("id", "2")], vec![]);
        let r = refused(&own, "a@localhost/pc", "a@localhost", &TelexError::not_found("nothing"));
        assert_eq!(r.attr("from"), Some("a@localhost"));
        assert!(r.child("error").unwrap().child("item-not-found").is_some());
    }
}
