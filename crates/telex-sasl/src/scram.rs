//! SCRAM key derivation (RFC 5802 / RFC 7677). The password is turned into salted keys once;
//! only the keys are stored, and they serve both password logins and SASL SCRAM exchanges.

use hmac::{Hmac, Mac};
use pbkdf2::pbkdf2_hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use telex_types::records::{Credentials, ScramKeys};

/// Which SCRAM hash a set of keys is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

pub(crate) fn hmac(hash: Hash, key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    match hash {
        Hash::Sha256 => match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        Hash::Sha1 => match Hmac::<Sha1>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    }
}

pub(crate) fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha1 => Sha1::digest(data).to_vec(),
    }
}

fn salted_password(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match hash {
        Hash::Sha256 => {
            let mut out = [0u8; 32];
            pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
        Hash::Sha1 => {
            let mut out = [0u8; 20];
            pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

/// Derives StoredKey and ServerKey for `password`. CPU-heavy: call it off the async runtime.
pub fn derive(hash: Hash, password: &str, salt: Vec<u8>, iterations: u32) -> ScramKeys {
    let salted = salted_password(hash, password.as_bytes(), &salt, iterations);
    let client_key = hmac(hash, &salted, b"Client Key");
    ScramKeys {
        stored_key: digest(hash, &client_key),
        server_key: hmac(hash, &salted, b"Server Key"),
        salt,
        iterations,
    }
}

/// Fresh credentials with random salts. CPU-heavy.
pub fn new_credentials(password: &str, iterations: u32) -> Credentials {
    use rand::RngCore;
    let salt = |n| {
        let mut s = vec![0u8; n];
        rand::thread_rng().fill_bytes(&mut s);
        s
    };
    Credentials {
        sha256: derive(Hash::Sha256, password, salt(16), iterations),
        sha1: derive(Hash::Sha1, password, salt(16), iterations),
    }
}

/// Whether `password` matches the stored keys, compared in constant time. CPU-heavy.
pub fn verify(hash: Hash, password: &str, keys: &ScramKeys) -> bool {
    let again = derive(hash, password, keys.salt.clone(), keys.iterations);
    again.stored_key.ct_eq(&keys.stored_key).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server signature of a published exchange proves the derived ServerKey is right.
    fn server_signature(hash: Hash, password: &str, salt: &str, auth: &str) -> String {
        use base64::Engine;
        let k = derive(hash, password, base64_decode(salt), 4096);
        base64::engine::general_purpose::STANDARD.encode(hmac(hash, &k.server_key, auth.as_bytes()))
    }

    #[test]
    fn matches_rfc7677_and_rfc5802_test_vectors() {
        let auth256 = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            server_signature(Hash::Sha256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", auth256),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let auth1 = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        assert_eq!(server_signature(Hash::Sha1, "pencil", "QSXCR+Q6sek8bf92", auth1), "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn verify_accepts_only_the_password() {
        let c = new_credentials("s3cret", 4096);
        assert!(verify(Hash::Sha256, "s3cret", &c.sha256));
        assert!(verify(Hash::Sha1, "s3cret", &c.sha1));
        assert!(!verify(Hash::Sha256, "s3cret ", &c.sha256));
        assert_ne!(c.sha256.salt, c.sha1.salt);
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }
}
