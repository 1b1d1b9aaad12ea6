//! The native API's `Session` stream fed arbitrary bytes as protobuf `ClientFrame`s: each is
//! decoded, converted and handed to a device session on in-memory storage by the same adapter
//! the gRPC service uses (`telex-api`'s stream.rs, included by path: that crate's other parts
//! link RocksDB). Nothing panics, and the session answers or ends with a reason.
#![no_main]

use std::time::Duration;

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::abort_on_panic;
use prost::Message;
use telex_proto::v1 as pb;
use telex_session::memory::Memory;
use telex_session::Limits;
use telex_types::UserJid;

#[path = "../../../telex-api/src/status.rs"]
#[allow(dead_code)]
mod status;
#[path = "../../../telex-api/src/stream.rs"]
#[allow(dead_code)]
mod stream;

/// Splits the input into frames: a length byte, then that many bytes of protobuf.
fn frames(mut input: &[u8]) -> Vec<Result<pb::ClientFrame, tonic::Status>> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = input.split_first() {
        let (frame, rest) = rest.split_at((n as usize).min(rest.len()));
        input = rest;
        if let Ok(f) = pb::ClientFrame::decode(frame) {
            out.push(Ok(f));
        }
    }
    out
}

async fn session(input: &[u8]) {
    let memory = Memory::default();
    let alice = UserJid::parse("alice@localhost").unwrap();
    memory.add_user(&alice, "pw");
    memory.add_user(&UserJid::parse("bob@localhost").unwrap(), "pw");
    let core = memory.core(Limits::default());
    let device = core.open(alice, "fuzz", false).await.expect("a session opens");
    let inbound = futures::stream::iter(frames(input));
    let mut out = stream::ClientStream(stream::Served::new(device, inbound));
    let mut answered = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(f) = out.next().await {
            answered += 1;
            assert!(answered < 1_000_000, "the session does not stop answering");
            if f.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the session neither answered nor ended");
}

fuzz_target!(|input: &[u8]| {
    abort_on_panic();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(session(input));
});
