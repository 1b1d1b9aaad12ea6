//! The on-disk and on-wire encoding of replicated values: one version byte, then bincode.
//!
//! Bump `VERSION` and keep a decoder for the old one whenever a stored type changes shape.

use serde::{de::DeserializeOwned, Serialize};

use crate::TelexError;

pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    // Serializing plain data into a Vec cannot fail.
    bincode::serialize_into(&mut out, value).expect("bincode into Vec");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TelexError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            bincode::deserialize(rest).map_err(|e| TelexError::internal(format!("corrupt record: {e}")))
        }
        Some((v, _)) => Err(TelexError::internal(format!("record has unknown format version {v}"))),
        None => Err(TelexError::internal("corrupt record: empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Domain};

    #[test]
    fn version_one_commands_still_decode() {
        // Bytes written by version 1; must keep decoding as long as old logs may exist.
        let old: &[u8] = &[
            1, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 108, 111, 99, 97, 108, 104, 111, 115, 116, 42, 0, 0, 0, 0, 0, 0, 0,
        ];
        let cmd: Command = decode(old).unwrap();
        assert_eq!(cmd, Command::CreateTenant { domain: Domain::parse("localhost").unwrap(), at: 42 });
        assert_eq!(encode(&cmd), old);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Command>(&[]).is_err());
        assert!(decode::<Command>(&[9, 1, 2]).is_err());
        assert!(decode::<Command>(&[1, 200, 1, 2]).is_err());
    }
}
