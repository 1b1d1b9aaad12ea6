//! Client histories and the delivery-promise checker (see TESTING.md). Tests record what each
//! send did; after faults heal they read every archive back, and `check` computes the figures.

use std::collections::{BTreeMap, BTreeSet};

/// What one attempt of one send ended as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Acknowledged: durably stored.
    Ok,
    /// Refused before anything could be stored (for example a validation error).
    Fail,
    /// Unknown: timed out, disconnected or "may or may not have happened".
    Info,
}

#[derive(Clone, Debug)]
pub struct SendEvent {
    pub owner: String,
    pub client_id: String,
    pub outcome: Outcome,
}

/// Reads the JSON-lines history `telex-loadtest --history` writes, one stream per sender (each
/// connection's messages are handled in order, so order is checked per sender).
pub fn read_jsonl(text: &str) -> Result<Vec<Vec<SendEvent>>, String> {
    let mut streams: BTreeMap<String, Vec<SendEvent>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let field = |k: &str| v[k].as_str().map(str::to_string).ok_or(format!("line {}: no {k}", i + 1));
        let outcome = match field("outcome")?.as_str() {
            "ok" => Outcome::Ok,
            "fail" => Outcome::Fail,
            "info" => Outcome::Info,
            other => return Err(format!("line {}: outcome {other:?}", i + 1)),
        };
        let e = SendEvent { owner: field("owner")?, client_id: field("client_id")?, outcome };
        streams.entry(field("from").unwrap_or_default()).or_default().push(e);
    }
    Ok(streams.into_values().collect())
}

/// The checker's figures. `acked_lost`, `archive_duplicates` and `phantoms` must be 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub sends: usize,
    pub acked: usize,
    pub acked_lost: usize,
    pub archive_duplicates: usize,
    pub phantoms: usize,
    /// Acknowledged sends of one sequential client stored before a send that client had
    /// acknowledged earlier (the archive order contradicts the order of acknowledgements).
    pub reorders: usize,
    /// Sends never acknowledged whose outcome was unknown: found once, or not at all.
    pub info_found: usize,
    pub info_absent: usize,
}

impl Figures {
    pub fn promise_kept(&self) -> bool {
        self.acked_lost == 0 && self.archive_duplicates == 0 && self.phantoms == 0 && self.reorders == 0
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sends {} acked {} | acked_lost {} archive_duplicates {} phantoms {} reorders {} | info found {} absent {}",
            self.sends,
            self.acked,
            self.acked_lost,
            self.archive_duplicates,
            self.phantoms,
            self.reorders,
            self.info_found,
            self.info_absent
        )
    }
}

/// `events`: every attempt of every send of one client that sends one message at a time (each
/// acknowledged before the next is sent). `archives`: for each archive owner, the client ids
/// of the drained archive in archive order.
pub fn check(events: &[SendEvent], archives: &BTreeMap<String, Vec<String>>) -> Figures {
    check_streams(&[events], archives)
}

/// As `check`, for several such clients sending at the same time: order is checked within
/// each client's stream, everything else over all of them.
pub fn check_streams(streams: &[&[SendEvent]], archives: &BTreeMap<String, Vec<String>>) -> Figures {
    let all: Vec<SendEvent> = streams.iter().flat_map(|s| s.iter().cloned()).collect();
    let mut f = tally(&all, archives);
    f.reorders = streams.iter().map(|s| reorders(s, archives)).sum();
    f
}

/// Adjacent acknowledgements of one sequential client whose archive positions go backwards.
fn reorders(events: &[SendEvent], archives: &BTreeMap<String, Vec<String>>) -> usize {
    let mut acked: Vec<(&str, &str)> = Vec::new();
    for e in events.iter().filter(|e| e.outcome == Outcome::Ok) {
        if !acked.contains(&(e.owner.as_str(), e.client_id.as_str())) {
            acked.push((&e.owner, &e.client_id));
        }
    }
    let position = |owner: &str, id: &str| archives.get(owner)?.iter().position(|x| x == id);
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for (owner, id) in acked {
        let Some(p) = position(owner, id) else { continue };
        if last.get(owner).is_some_and(|prev| *prev > p) {
            n += 1;
        }
        last.insert(owner, p);
    }
    n
}

fn tally(events: &[SendEvent], archives: &BTreeMap<String, Vec<String>>) -> Figures {
    let mut per_send: BTreeMap<(&str, &str), BTreeSet<Outcome>> = BTreeMap::new();
    for e in events {
        per_send.entry((&e.owner, &e.client_id)).or_default().insert(e.outcome);
    }
    let mut f = Figures { sends: per_send.len(), ..Figures::default() };
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (owner, ids) in archives {
        for id in ids {
            *counts.entry((owner, id)).or_default() += 1;
        }
    }
    for (&(owner, id), n) in &counts {
        if *n > 1 {
            f.archive_duplicates += n - 1;
        }
        match per_send.get(&(owner, id)) {
            None => f.phantoms += 1,
            // Only definite refusals: such a send must not appear.
            Some(o) if o.iter().all(|o| *o == Outcome::Fail) => f.phantoms += 1,
            _ => {}
        }
    }
    for (key, outcomes) in &per_send {
        let found = counts.get(key).copied().unwrap_or(0);
        if outcomes.contains(&Outcome::Ok) {
            f.acked += 1;
            if found == 0 {
                f.acked_lost += 1;
            }
        } else if outcomes.contains(&Outcome::Info) {
            if found == 0 {
                f.info_absent += 1;
            } else {
                f.info_found += 1;
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, outcome: Outcome) -> SendEvent {
        SendEvent { owner: "bob".into(), client_id: id.into(), outcome }
    }

    fn archive(ids: &[&str]) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("bob".to_string(), ids.iter().map(|s| s.to_string()).collect())])
    }

    #[test]
    fn a_clean_history_keeps_the_promise() {
        let events = [ev("a", Outcome::Info), ev("a", Outcome::Ok), ev("b", Outcome::Ok), ev("c", Outcome::Info)];
        let f = check(&events, &archive(&["a", "b"]));
        assert!(f.promise_kept(), "{f}");
        assert_eq!((f.sends, f.acked, f.info_absent), (3, 2, 1));
    }

    #[test]
    fn lost_duplicated_and_phantom_messages_are_counted() {
        let events = [ev("a", Outcome::Ok), ev("b", Outcome::Ok), ev("c", Outcome::Fail)];
        let f = check(&events, &archive(&["b", "b", "c", "z"]));
        assert_eq!((f.acked_lost, f.archive_duplicates, f.phantoms), (1, 1, 2), "{f}");
        assert!(!f.promise_kept());
    }

    #[test]
    fn archive_order_must_follow_acknowledgement_order() {
        let events = [ev("a", Outcome::Ok), ev("b", Outcome::Info), ev("b", Outcome::Ok), ev("c", Outcome::Ok)];
        assert_eq!(check(&events, &archive(&["a", "b", "c"])).reorders, 0);
        let f = check(&events, &archive(&["b", "a", "c"]));
        assert_eq!(f.reorders, 1, "{f}");
        assert!(!f.promise_kept());
        // Two clients interleaved in one archive: each stream is in order.
        let other = [ev("x", Outcome::Ok), ev("y", Outcome::Ok)];
        let f = check_streams(&[&events, &other], &archive(&["x", "a", "b", "y", "c"]));
        assert_eq!(f.reorders, 0, "{f}");
    }
}
