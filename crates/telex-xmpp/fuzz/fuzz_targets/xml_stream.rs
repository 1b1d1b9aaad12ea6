//! The XMPP stream parser on arbitrary bytes in arbitrary chunkings: it must never panic, its
//! buffer stays bounded, and the verdict does not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser alone (it depends only on quick-xml), so fuzzing does not build the server.
#[path = "../../src/xml.rs"]
#[allow(dead_code)]
mod xml;

use xml::{Event, Limits, StreamParser};

const LIMITS: Limits = Limits { max_stanza: 4096, max_depth: 16 };

/// Feeds `data` in the given chunk sizes; every event, then the error if any.
fn run(data: &[u8], chunks: &[usize]) -> (Vec<Event>, Option<xml::XmlError>) {
    let mut p = StreamParser::new(LIMITS);
    let mut events = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < data.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, data.len() - at);
        p.feed(&data[at..at + n]);
        at += n;
        loop {
            match p.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        assert!(p.buffered() <= LIMITS.max_stanza + n, "buffer grew past the stanza limit");
    }
    (events, None)
}

fuzz_target!(|input: &[u8]| {
    // The first bytes choose the chunking; the rest is the stream.
    let (head, data) = input.split_at(input.len().min(4));
    let chunks: Vec<usize> = head.iter().map(|b| *b as usize + 1).collect();
    let whole = run(data, &[data.len().max(1)]);
    let split = run(data, if chunks.is_empty() { &[1] } else { &chunks });
    // Same events and the same kind of verdict, whatever the chunking (a stream cut short can
    // only end earlier: an error found later in one chunking is then still pending).
    let same_kind = |a: &Option<xml::XmlError>, b: &Option<xml::XmlError>| match (a, b) {
        (Some(a), Some(b)) => a.condition() == b.condition(),
        (None, None) => true,
        _ => false,
    };
    assert_eq!(whole.0, split.0, "events differ by chunking");
    assert!(same_kind(&whole.1, &split.1), "verdicts differ: {:?} vs {:?}", whole.1, split.1);
});
