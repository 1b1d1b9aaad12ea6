//! The server side of a SASL SCRAM exchange (RFC 5802, RFC 7677), without channel binding,
//! over the stored keys: the password never reaches the server. Pure: the caller looks up the
//! keys, supplies the server nonce, and carries the messages.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;
use telex_types::records::ScramKeys;

use crate::scram::{digest, hmac, Hash};

/// Why an exchange failed; `Malformed` maps to SASL `malformed-request`, the others to
/// `not-authorized` (the same for a wrong password and an unknown user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslError {
    Malformed(String),
    NotAuthorized,
}

/// The parsed client-first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// The SASL username (for XMPP, the localpart or the bare JID), unescaped.
    pub username: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Parses `n,,n=user,r=nonce`. Channel binding (`p=`) is refused: it is not offered.
pub fn client_first(msg: &str) -> Result<ClientFirst, SaslError> {
    let bad = |what: &str| SaslError::Malformed(format!("SCRAM client-first message: {what}"));
    let mut parts = msg.splitn(3, ',');
    let cb = parts.next().ok_or_else(|| bad("empty"))?;
    let authzid = parts.next().ok_or_else(|| bad("no GS2 header"))?;
    let bare = parts.next().ok_or_else(|| bad("no username"))?;
    if cb.starts_with("p=") {
        return Err(bad("channel binding is not offered"));
    }
    if cb != "n" && cb != "y" {
        return Err(bad("bad channel-binding flag"));
    }
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(bad("bad authorization identity"));
    }
    let mut username = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        match attr.split_once('=') {
            Some(("n", v)) => username = Some(unescape_name(v).ok_or_else(|| bad("bad username escape"))?),
            Some(("r", v)) if !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') => {
                nonce = Some(v.to_string())
            }
            Some(("m", _)) => return Err(bad("mandatory extensions are not supported")),
            _ => {}
        }
    }
    Ok(ClientFirst {
        username: username.filter(|u| !u.is_empty()).ok_or_else(|| bad("no username"))?,
        gs2_header: format!("{cb},{authzid},"),
        bare: bare.to_string(),
        nonce: nonce.ok_or_else(|| bad("no nonce"))?,
    })
}

/// `=2C` and `=3D` back to `,` and `=`; any other `=` is an error.
fn unescape_name(v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some((before, after)) = rest.split_once('=') {
        out.push_str(before);
        let (code, tail) = after.split_at_checked(2)?;
        match code {
            "2C" => out.push(','),
            "3D" => out.push('='),
            _ => return None,
        }
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

/// The exchange after the server-first message, waiting for the client's proof.
pub struct ServerFirst {
    hash: Hash,
    keys: ScramKeys,
    auth_prefix: String,
    gs2_header: String,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Starts the server side for `client` with its stored `keys` (for an unknown user, keys
    /// that match no password, so the exchange fails only at the proof, like a wrong password).
    pub fn new(hash: Hash, client: &ClientFirst, keys: ScramKeys, server_nonce: &str) -> ServerFirst {
        let nonce = format!("{}{}", client.nonce, server_nonce);
        let message = format!("r={nonce},s={},i={}", B64.encode(&keys.salt), keys.iterations);
        let auth_prefix = format!("{},{message},", client.bare);
        ServerFirst { hash, keys, auth_prefix, gs2_header: client.gs2_header.clone(), nonce, message }
    }

    /// The server-first message to send.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Checks `c=...,r=...,p=...`; on success, the server-final message (`v=...`).
    pub fn client_final(&self, msg: &str) -> Result<String, SaslError> {
        let bad = |what: &str| SaslError::Malformed(format!("SCRAM client-final message: {what}"));
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or_else(|| bad("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => nonce = Some(v),
                _ => {}
            }
        }
        if binding != Some(B64.encode(&self.gs2_header).as_str()) {
            return Err(bad("channel binding does not match the GS2 header"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(SaslError::NotAuthorized);
        }
        let proof = B64.decode(proof).map_err(|_| bad("proof is not base64"))?;
        let auth = format!("{}{without_proof}", self.auth_prefix);
        let signature = hmac(self.hash, &self.keys.stored_key, auth.as_bytes());
        if proof.len() != signature.len() {
            return Err(SaslError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(digest(self.hash, &client_key).ct_eq(&self.keys.stored_key)) {
            return Err(SaslError::NotAuthorized);
        }
        Ok(format!("v={}", B64.encode(hmac(self.hash, &self.keys.server_key, auth.as_bytes()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::derive;

    fn exchange(hash: Hash, cnonce: &str, snonce: &str, salt: &str, proof: &str) -> Result<String, SaslError> {
        let first = client_first(&format!("n,,n=user,r={cnonce}")).unwrap();
        assert_eq!(first.username, "user");
        let keys = derive(hash, "pencil", B64.decode(salt).unwrap(), 4096);
        let server = ServerFirst::new(hash, &first, keys, snonce);
        assert_eq!(server.message(), format!("r={cnonce}{snonce},s={salt},i=4096"));
        server.client_final(&format!("c=biws,r={cnonce}{snonce},p={proof}"))
    }

    #[test]
    fn rfc7677_sha256_exchange() {
        let ok = exchange(
            Hash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        );
        assert_eq!(ok.unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn rfc5802_sha1_exchange_and_a_bad_proof() {
        let args = ("fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j", "QSXCR+Q6sek8bf92");
        let ok = exchange(Hash::Sha1, args.0, args.1, args.2, "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert_eq!(ok.unwrap(), "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
        let wrong = exchange(Hash::Sha1, args.0, args.1, args.2, "AAX8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert_eq!(wrong.unwrap_err(), SaslError::NotAuthorized);
    }

    #[test]
    fn malformed_messages_are_named() {
        for msg in ["", "n,,r=abc", "p=tls-unique,,n=user,r=abc", "n,,n=us=er,r=abc", "x,,n=user,r=abc"] {
            assert!(matches!(client_first(msg), Err(SaslError::Malformed(_))), "{msg:?}");
        }
        let first = client_first("n,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(first.username, "a,b=c");
        let keys = derive(Hash::Sha256, "pw", vec![1; 16], 4096);
        let server = ServerFirst::new(Hash::Sha256, &first, keys, "xyz");
        assert!(matches!(server.client_final("c=biws,r=abcxyz"), Err(SaslError::Malformed(_))));
        assert_eq!(server.client_final("c=biws,r=other,p=AAAA"), Err(SaslError::NotAuthorized));
        assert!(matches!(server.client_final("c=eSws,r=abcxyz,p=AAAA"), Err(SaslError::Malformed(_))));
    }
}
