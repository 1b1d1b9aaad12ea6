//! SASL (RFC 6120 §6): SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN over the accounts the native API
//! uses (the core's `Directory`). The exchanges themselves are pure (`telex_sasl::sasl`); this
//! carries them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use telex_sasl::sasl::{self, SaslError};
use telex_sasl::scram::Hash;
use telex_session::Directory;
use telex_types::records::AccountRecord;
use telex_types::{Domain, ErrorCode, TelexError, UserJid};

use crate::ns;
use crate::wire::{Wire, WireError};
use crate::xml::{el, Element, Event, Node};

/// The mechanisms offered: PLAIN only where the password cannot be read on the way.
pub fn mechanisms(plain_allowed: bool) -> Vec<&'static str> {
    let mut m = vec!["SCRAM-SHA-256", "SCRAM-SHA-1"];
    if plain_allowed {
        m.push("PLAIN");
    }
    m
}

/// What a stream offers before authentication.
#[derive(Debug, PartialEq, Eq)]
pub struct Offer {
    pub starttls: bool,
    /// Nothing but STARTTLS is allowed yet.
    pub tls_required: bool,
    /// SASL mechanisms offered (none while TLS is required).
    pub mechanisms: Vec<&'static str>,
}

/// The pre-authentication offer: TLS is required off loopback (when `require_tls`), PLAIN is
/// offered only where the password cannot be read on the way (TLS, or loopback).
pub fn offer(require_tls: bool, tls_available: bool, secure: bool, loopback: bool, websocket: bool) -> Offer {
    let tls_required = require_tls && !loopback && !secure;
    Offer {
        starttls: tls_available && !secure && !websocket,
        tls_required,
        mechanisms: if tls_required { Vec::new() } else { mechanisms(secure || loopback) },
    }
}

/// How an authentication attempt ended.
pub enum Outcome {
    Success(UserJid),
    /// The client was told why; it may try again.
    Failed,
    /// The stream must end (the client went away, or sent something that breaks the stream).
    Ended(Option<WireError>),
}

fn failure(condition: &str, text: &str) -> Element {
    let mut children = vec![Node::Element(el(condition, &[], vec![]))];
    if !text.is_empty() {
        children.push(Node::Element(el("text", &[], vec![Node::Text(text.into())])));
    }
    el("failure", &[("xmlns", ns::SASL)], children)
}

/// The user a SASL username names: a localpart of the stream's domain, or a bare JID in it.
fn user_of(name: &str, domain: &Domain) -> Option<UserJid> {
    let jid = if name.contains('@') { name.to_string() } else { format!("{name}@{domain}") };
    UserJid::parse(&jid).ok().filter(|j| j.domain() == domain)
}

/// Carries out one `<auth/>` exchange.
pub async fn authenticate(
    accounts: &dyn Directory,
    wire: &mut Wire,
    auth: &Element,
    domain: &Domain,
    offered: &[&str],
) -> Outcome {
    let plain_allowed = offered.contains(&"PLAIN");
    let mechanism = auth.attr("mechanism").unwrap_or_default();
    let text = auth.text();
    // "=" is an empty initial response (RFC 6120 §6.4.2).
    let text = if text.trim() == "=" { "" } else { text.trim() };
    let Ok(initial) = LENIENT.decode(text) else {
        return fail(wire, "incorrect-encoding", "the initial response is not base64").await;
    };
    let initial = String::from_utf8_lossy(&initial).into_owned();
    match mechanism {
        "PLAIN" if plain_allowed => plain(accounts, wire, &initial, domain).await,
        "SCRAM-SHA-256" if offered.contains(&mechanism) => scram(accounts, wire, Hash::Sha256, &initial, domain).await,
        "SCRAM-SHA-1" if offered.contains(&mechanism) => scram(accounts, wire, Hash::Sha1, &initial, domain).await,
        "PLAIN" if offered.is_empty() || offered.iter().any(|m| m.starts_with("SCRAM")) => {
            fail(wire, "encryption-required", "PLAIN needs an encrypted stream").await
        }
        other => fail(wire, "invalid-mechanism", &format!("{other:?} is not offered")).await,
    }
}

/// Base64 with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

async fn fail(wire: &mut Wire, condition: &str, text: &str) -> Outcome {
    metrics::counter!("telex_xmpp_auth_total", "outcome" => condition.to_string()).increment(1);
    wire.send(&failure(condition, text));
    match wire.flush().await {
        Ok(()) => Outcome::Failed,
        Err(e) => Outcome::Ended(Some(WireError::Io(e))),
    }
}

async fn success(wire: &mut Wire, jid: UserJid, data: Option<String>) -> Outcome {
    metrics::counter!("telex_xmpp_auth_total", "outcome" => "success").increment(1);
    let children = data.map(|d| vec![Node::Text(B64.encode(d))]).unwrap_or_default();
    wire.send(&el("success", &[("xmlns", ns::SASL)], children));
    match wire.flush().await {
        Ok(()) => Outcome::Success(jid),
        Err(e) => Outcome::Ended(Some(WireError::Io(e))),
    }
}

/// The account, unless it is disabled.
fn enabled(account: AccountRecord) -> Result<AccountRecord, TelexError> {
    if account.disabled {
        return Err(TelexError::new(ErrorCode::PermissionDenied, format!("account {} is disabled", account.jid)));
    }
    Ok(account)
}

/// The failure for an account error: disabled accounts are told so, everything else is
/// `not-authorized` with one text (unknown user and wrong password look alike).
async fn refused(wire: &mut Wire, e: TelexError) -> Outcome {
    match e.code {
        ErrorCode::PermissionDenied => fail(wire, "account-disabled", &e.message).await,
        ErrorCode::Unauthenticated | ErrorCode::NotFound | ErrorCode::InvalidArgument => {
            fail(wire, "not-authorized", "invalid username or password").await
        }
        _ => fail(wire, "temporary-auth-failure", &e.message).await,
    }
}

async fn plain(accounts: &dyn Directory, wire: &mut Wire, initial: &str, domain: &Domain) -> Outcome {
    let mut parts = initial.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return fail(wire, "malformed-request", "PLAIN wants authzid NUL authcid NUL password").await;
    };
    let Some(jid) = user_of(authcid, domain) else {
        return fail(wire, "not-authorized", "invalid username or password").await;
    };
    if !authzid.is_empty() && user_of(authzid, domain).as_ref() != Some(&jid) {
        return fail(wire, "invalid-authzid", "you may only act as yourself").await;
    }
    match accounts.check_password(&jid, password).await {
        Ok(_) => success(wire, jid, None).await,
        Err(e) => refused(wire, e).await,
    }
}

async fn scram(accounts: &dyn Directory, wire: &mut Wire, hash: Hash, initial: &str, domain: &Domain) -> Outcome {
    let first = match sasl::client_first(initial) {
        Ok(f) => f,
        Err(SaslError::Malformed(m)) => return fail(wire, "malformed-request", &m).await,
        Err(SaslError::NotAuthorized) => return fail(wire, "not-authorized", "invalid username or password").await,
    };
    let jid = user_of(&first.username, domain);
    // An unknown or malformed name still gets a challenge, so it looks like a wrong password.
    let lookup = match jid.clone().or_else(|| UserJid::new("nobody", domain.clone()).ok()) {
        Some(j) => j,
        None => return fail(wire, "temporary-auth-failure", "cannot look the user up").await,
    };
    let (account, keys) = match accounts.scram_keys(&lookup, hash).await {
        Ok(k) => k,
        Err(e) => return fail(wire, "temporary-auth-failure", &e.message).await,
    };
    let nonce: String = {
        use rand::Rng;
        let bytes: [u8; 18] = rand::thread_rng().gen();
        B64.encode(bytes)
    };
    let server = sasl::ServerFirst::new(hash, &first, keys, &nonce);
    wire.send(&el("challenge", &[("xmlns", ns::SASL)], vec![Node::Text(B64.encode(server.message()))]));
    if let Err(e) = wire.flush().await {
        return Outcome::Ended(Some(WireError::Io(e)));
    }
    let response = match wire.read().await {
        Ok(Some(Event::Stanza(r))) => r,
        Ok(_) => return Outcome::Ended(None),
        Err(e) => return Outcome::Ended(Some(e)),
    };
    if response.attr("xmlns") != Some(ns::SASL) || response.name != "response" {
        if response.name == "abort" {
            return fail(wire, "aborted", "").await;
        }
        return fail(wire, "malformed-request", "expected <response/>").await;
    }
    let Ok(fin) = LENIENT.decode(response.text().trim()) else {
        return fail(wire, "incorrect-encoding", "the response is not base64").await;
    };
    match server.client_final(&String::from_utf8_lossy(&fin)) {
        Ok(server_final) => match (account, jid) {
            (Some(a), Some(jid)) => match enabled(a) {
                Ok(_) => success(wire, jid, Some(server_final)).await,
                Err(e) => refused(wire, e).await,
            },
            _ => fail(wire, "not-authorized", "invalid username or password").await,
        },
        Err(SaslError::Malformed(m)) => fail(wire, "malformed-request", &m).await,
        Err(SaslError::NotAuthorized) => fail(wire, "not-authorized", "invalid username or password").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_name_users_of_the_stream_domain() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(user_of("alice", &d).unwrap().to_string(), "alice@example.com");
        assert_eq!(user_of("alice@example.com", &d).unwrap().to_string(), "alice@example.com");
        assert!(user_of("alice@other.org", &d).is_none());
        assert!(user_of("", &d).is_none());
    }

    #[test]
    fn tls_is_required_off_loopback_and_plain_needs_tls_or_loopback() {
        // A remote client on plain TCP: STARTTLS, required, nothing else.
        let remote = offer(true, true, false, false, false);
        assert_eq!(remote, Offer { starttls: true, tls_required: true, mechanisms: vec![] });
        // After STARTTLS: every mechanism, PLAIN included.
        let secured = offer(true, true, true, false, false);
        assert_eq!((secured.starttls, secured.tls_required), (false, false));
        assert!(secured.mechanisms.contains(&"PLAIN"));
        // Loopback dev: TLS offered, not required; PLAIN allowed.
        let local = offer(true, true, false, true, false);
        assert_eq!((local.starttls, local.tls_required), (true, false));
        assert!(local.mechanisms.contains(&"PLAIN"));
        // Encryption not required: SCRAM only in the clear.
        let relaxed = offer(false, true, false, false, false);
        assert_eq!(relaxed.mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        // WebSocket has no STARTTLS.
        assert!(!offer(true, true, false, true, true).starttls);
    }

    #[test]
    fn plain_only_when_allowed() {
        assert!(!mechanisms(false).contains(&"PLAIN"));
        assert_eq!(mechanisms(true)[0], "SCRAM-SHA-256");
    }
}
