//! An authenticated XMPP session fed arbitrary stanzas: the connection logs in for real (SASL
//! PLAIN, bind, initial presence) over an in-memory stream to a session core on in-memory
//! storage, then the input follows as the client's stanzas, then the client's end of stream.
//! Whatever the input, nothing panics (in the connection or in any actor), what the server
//! writes stays bounded, the connection ends once the client has gone, and a stream error is
//! always followed by the server's closing tag.
#![no_main]

use std::time::Duration;

use base64::Engine;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::abort_on_panic;
use telex_session::memory::Memory;
use telex_session::Limits;
use telex_types::UserJid;
use telex_xmpp::{Transport, Xmpp, XmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
/// Most bytes the server may write for one input (its stanzas are bounded, and so is what one
/// input can make it write).
const MAX_OUTPUT: usize = 8 << 20;

async fn session(input: &[u8]) {
    let memory = Memory::default();
    for u in ["alice@localhost", "bob@localhost"] {
        memory.add_user(&UserJid::parse(u).unwrap(), "pw");
    }
    let core = memory.core(Limits::default());
    let xmpp = Xmpp::new(core, XmppConfig::default(), None);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(xmpp.serve(Transport::Tls { io: Box::pin(server), loopback: true }));
    let (mut rd, mut wr) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    assert!(out.len() <= MAX_OUTPUT, "the server wrote more than {MAX_OUTPUT} bytes");
                }
            }
        }
        out
    });
    let creds = base64::engine::general_purpose::STANDARD.encode("\0alice\0pw");
    let login = format!(
        "{OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>{OPEN}\
         <iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fuzz</resource></bind></iq>\
         <presence/>"
    );
    let _ = wr.write_all(login.as_bytes()).await;
    // The server reads the login before the input: it may answer the header only once.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = wr.write_all(input).await;
    let _ = wr.write_all(b"</stream:stream>").await;
    let _ = wr.shutdown().await;
    let ended = tokio::time::timeout(Duration::from_secs(600), serving).await;
    assert!(ended.is_ok(), "the connection did not end");
    let out = reader.await.expect("reader");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("<success"), "the login failed: {text}");
    if let Some(at) = text.find("<stream:error>") {
        assert!(text[at..].contains("</stream:stream>"), "a stream error without the closing tag: {text}");
    }
}

fuzz_target!(|input: &[u8]| {
    abort_on_panic();
    // Paused time: timers (pre-auth deadline, actor ticks) fire as soon as all is idle.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(session(input));
});
