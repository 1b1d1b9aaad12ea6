//! The on-disk and on-wire encoding of replicated values: one version byte, then bincode.
//!
//! Bump `VERSION` and keep a decoder for the old one whenever a stored type changes shape.
//! bincode is not self-describing, so the layout of every nested value follows the version
//! byte of the outermost one: [`decode`] makes it known to the types whose layout changed
//! (their `Deserialize` consults [`layout`]) for the duration of the call.
//!
//! Versions: 1, the first; 2, `ArchivedMessage` gained `extras` and `to_device`, and
//! `Command::AppendArchiveWithExtras` was dropped; 3, `RoomRecord` gained `roles`.

use std::cell::Cell;

use serde::{de::DeserializeOwned, Serialize};

use crate::TelexError;

pub const VERSION: u8 = 3;

thread_local! {
    static LAYOUT: Cell<u8> = const { Cell::new(VERSION) };
}

/// The format version of the value being decoded on this thread (the current one otherwise).
pub fn layout() -> u8 {
    LAYOUT.with(Cell::get)
}

/// Restores the previous layout when a decode ends, even by unwinding.
struct LayoutGuard(u8);

impl Drop for LayoutGuard {
    fn drop(&mut self) {
        LAYOUT.with(|l| l.set(self.0));
    }
}

fn with_layout<R>(version: u8, f: impl FnOnce() -> R) -> R {
    let _restore = LayoutGuard(LAYOUT.with(|l| l.replace(version)));
    f()
}

thread_local! {
    static NESTING: Cell<u32> = const { Cell::new(0) };
}

/// How deeply values that contain themselves (`Command::Batch`) may nest: bincode has no
/// recursion limit of its own, and a deep enough payload from a peer would overflow the stack.
pub const MAX_NESTING: u32 = 4;

/// Counts one level of nesting while `f` decodes it; `None` when that is one level too many.
pub(crate) fn nested<R>(f: impl FnOnce() -> R) -> Option<R> {
    let depth = NESTING.with(|n| n.get()) + 1;
    if depth > MAX_NESTING {
        return None;
    }
    NESTING.with(|n| n.set(depth));
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            NESTING.with(|n| n.set(self.0));
        }
    }
    let _restore = Restore(depth - 1);
    Some(f())
}

/// The format version of stored bytes, if they have one.
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    // Serializing plain data into a Vec cannot fail.
    bincode::serialize_into(&mut out, value).expect("bincode into Vec");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TelexError> {
    match bytes.split_first() {
        Some((&v, rest)) if (1..=VERSION).contains(&v) => with_layout(v, || bincode::deserialize(rest))
            .map_err(|e| TelexError::internal(format!("corrupt record: {e}"))),
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
        // Re-encoded today it differs only in the version byte.
        assert_eq!(encode(&cmd)[1..], old[1..]);
        assert_eq!(layout(), VERSION, "the layout is restored after a decode");
    }

    #[test]
    fn deeply_nested_batches_are_refused_not_a_stack_overflow() {
        let mut cmd = Command::CreateTenant { domain: Domain::parse("localhost").unwrap(), at: 1 };
        for _ in 0..MAX_NESTING - 1 {
            cmd = Command::Batch(vec![cmd]);
        }
        assert_eq!(decode::<Command>(&encode(&cmd)).unwrap(), cmd, "as deep as a proposer ever goes, and more");
        let too_deep = Command::Batch(vec![cmd]);
        assert!(decode::<Command>(&encode(&too_deep)).unwrap_err().message.contains("nested"));
        // Hand-made bytes: a batch of one batch of one ... 100,000 deep, in under a megabyte.
        let mut bytes = vec![VERSION];
        for _ in 0..100_000 {
            bytes.extend_from_slice(&15u32.to_le_bytes());
            bytes.extend_from_slice(&1u64.to_le_bytes());
        }
        assert!(decode::<Command>(&bytes).is_err());
        let mut reply = vec![VERSION];
        for _ in 0..100_000 {
            reply.extend_from_slice(&4u32.to_le_bytes());
            reply.extend_from_slice(&1u64.to_le_bytes());
        }
        assert!(decode::<crate::Response>(&reply).is_err(), "replies nest no deeper");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Command>(&[]).is_err());
        assert!(decode::<Command>(&[9, 1, 2]).is_err());
        assert!(decode::<Command>(&[1, 200, 1, 2]).is_err());
    }
}
