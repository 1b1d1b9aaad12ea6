//! Session tokens: `tx1.<base64url jid>.<id>.<secret>`. The id finds the stored record; only a
//! SHA-256 of the secret is stored, so a copy of the database does not yield usable tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use telex_types::UserJid;

#[derive(Debug)]
pub struct SessionToken {
    pub jid: UserJid,
    pub id: String,
    secret: Vec<u8>,
}

impl SessionToken {
    /// A new random token for `jid` and the hash of its secret to store.
    pub fn generate(jid: &UserJid) -> (SessionToken, [u8; 32]) {
        let mut id = [0u8; 12];
        let mut secret = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        rand::thread_rng().fill_bytes(&mut secret);
        let hash = Sha256::digest(&secret).into();
        let id = id.iter().map(|b| format!("{b:02x}")).collect();
        (SessionToken { jid: jid.clone(), id, secret }, hash)
    }

    pub fn encode(&self) -> String {
        format!("tx1.{}.{}.{}", B64.encode(self.jid.to_string()), self.id, B64.encode(&self.secret))
    }

    /// Parses a token string; `None` for anything malformed.
    pub fn decode(s: &str) -> Option<SessionToken> {
        if s.len() > 2048 {
            return None;
        }
        let mut parts = s.split('.');
        let (Some("tx1"), Some(jid), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let jid = UserJid::parse(std::str::from_utf8(&B64.decode(jid).ok()?).ok()?).ok()?;
        if id.len() != 24 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(SessionToken { jid, id: id.to_string(), secret: B64.decode(secret).ok()? })
    }

    pub fn matches(&self, stored_hash: &[u8; 32]) -> bool {
        let hash: [u8; 32] = Sha256::digest(&self.secret).into();
        hash.ct_eq(stored_hash).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let jid = UserJid::parse("alice@localhost").unwrap();
        let (t, hash) = SessionToken::generate(&jid);
        let s = t.encode();
        let back = SessionToken::decode(&s).unwrap();
        assert_eq!(back.jid, jid);
        assert!(back.matches(&hash));
        let mut forged = s.clone();
        forged.pop();
        forged.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(!SessionToken::decode(&forged).is_some_and(|f| f.matches(&hash)));
        for bad in ["", "tx1", "tx1.a.b.c", "tx2.YQ.000000000000000000000000.AA", &"x".repeat(5000)] {
            assert!(SessionToken::decode(bad).is_none(), "{bad}");
        }
    }
}
