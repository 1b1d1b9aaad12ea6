//! What a run measured: latency histograms overall and per second, per-second counts, errors.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// One second of the run.
#[derive(Clone, Debug)]
pub struct Second {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    /// Presence changes seen by subscribers.
    pub presence: u64,
    /// Connections that dropped and logged in again.
    pub reconnects: u64,
    pub delivery: Histogram<u64>,
    pub presence_latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            acked: 0,
            delivered: 0,
            errors: 0,
            presence: 0,
            reconnects: 0,
            delivery: histogram(),
            presence_latency: histogram(),
        }
    }
}

#[derive(Debug)]
pub struct Stats {
    /// Intended send time → arrival at the recipient, µs.
    pub delivery: Histogram<u64>,
    /// Intended send time → the server's acknowledgement, µs.
    pub ack: Histogram<u64>,
    /// Connect to logged in (bound, stream management on), µs: first logins and reconnects.
    pub login: Histogram<u64>,
    pub seconds: Vec<Second>,
    pub errors: BTreeMap<String, u64>,
    pub logins: u64,
    pub login_secs: f64,
    /// When the sending phase began (Unix µs): second 0 of `seconds`. Workers share it.
    pub sending_from_us: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            delivery: histogram(),
            ack: histogram(),
            login: histogram(),
            seconds: Vec::new(),
            errors: BTreeMap::new(),
            logins: 0,
            login_secs: 0.0,
            sending_from_us: 0,
        }
    }
}

impl Stats {
    fn second(&mut self, s: usize) -> &mut Second {
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, Second::default);
        }
        &mut self.seconds[s]
    }

    pub fn sent(&mut self, at_sec: usize) {
        self.second(at_sec).sent += 1;
    }

    pub fn acked(&mut self, at_sec: usize, latency_us: u64) {
        self.second(at_sec).acked += 1;
        let _ = self.ack.record(latency_us.max(1));
    }

    pub fn delivered(&mut self, at_sec: usize, latency_us: u64) {
        let s = self.second(at_sec);
        s.delivered += 1;
        let _ = s.delivery.record(latency_us.max(1));
        let _ = self.delivery.record(latency_us.max(1));
    }

    pub fn presence_seen(&mut self, at_sec: usize, latency_us: u64) {
        let s = self.second(at_sec);
        s.presence += 1;
        let _ = s.presence_latency.record(latency_us.max(1));
    }

    pub fn logged_in(&mut self, latency_us: u64) {
        let _ = self.login.record(latency_us.max(1));
    }

    pub fn reconnected(&mut self, at_sec: usize, latency_us: u64) {
        self.second(at_sec).reconnects += 1;
        self.logged_in(latency_us);
    }

    pub fn error(&mut self, at_sec: usize, kind: &str) {
        self.second(at_sec).errors += 1;
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// The measured window's figures (`from..to` seconds of the sending phase).
    pub fn summary(&self, from: usize, to: usize) -> Summary {
        let window = &self.seconds[from.min(self.seconds.len())..to.min(self.seconds.len())];
        let secs = window.len().max(1) as f64;
        let (mut delivery, mut presence) = (histogram(), histogram());
        for s in window {
            delivery.add(&s.delivery).expect("same bounds");
            presence.add(&s.presence_latency).expect("same bounds");
        }
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let per_sec = |f: fn(&Second) -> u64| window.iter().map(f).sum::<u64>() as f64 / secs;
        Summary {
            sent_per_sec: per_sec(|s| s.sent),
            acked_per_sec: per_sec(|s| s.acked),
            delivered_per_sec: per_sec(|s| s.delivered),
            presence_per_sec: per_sec(|s| s.presence),
            presence_p50_ms: ms(&presence, 0.5),
            presence_p99_ms: ms(&presence, 0.99),
            reconnects_per_sec: per_sec(|s| s.reconnects),
            login_p50_ms: ms(&self.login, 0.5),
            login_p99_ms: ms(&self.login, 0.99),
            delivery_p50_ms: ms(&delivery, 0.5),
            delivery_p99_ms: ms(&delivery, 0.99),
            delivery_max_ms: delivery.max() as f64 / 1000.0,
            ack_p50_ms: ms(&self.ack, 0.5),
            ack_p99_ms: ms(&self.ack, 0.99),
            errors: self.errors.clone(),
            logins_per_sec: self.logins as f64 / self.login_secs.max(1e-9),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    pub delivery_max_ms: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub presence_per_sec: f64,
    pub presence_p50_ms: f64,
    pub presence_p99_ms: f64,
    pub reconnects_per_sec: f64,
    /// First logins and reconnects together.
    pub login_p50_ms: f64,
    pub login_p99_ms: f64,
    pub errors: BTreeMap<String, u64>,
    pub logins_per_sec: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_what_counts() {
        let mut s = Stats::default();
        for sec in 0..4 {
            for _ in 0..10 {
                s.sent(sec);
                s.delivered(sec, if sec == 0 { 900_000 } else { 2_000 });
            }
        }
        s.error(2, "timeout");
        let w = s.summary(1, 4);
        assert_eq!(w.sent_per_sec, 10.0);
        assert!((w.delivery_p99_ms - 2.0).abs() < 0.01, "warm-up excluded: {w:?}");
        assert_eq!(w.errors["timeout"], 1);
    }
}

/// A histogram as base64 of the HdrHistogram V2 (deflate) encoding, to pass between processes.
fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing into a Vec");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(s: &str) -> anyhow::Result<Histogram<u64>> {
    use base64::Engine;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    Ok(Deserializer::new().deserialize(&mut &bytes[..])?)
}

impl Stats {
    /// Everything measured, for the parent process to merge.
    pub fn to_json(&self) -> serde_json::Value {
        let seconds: Vec<_> = self
            .seconds
            .iter()
            .map(|s| {
                let counts = [s.sent, s.acked, s.delivered, s.errors, s.presence, s.reconnects];
                serde_json::json!([counts, encode(&s.delivery), encode(&s.presence_latency)])
            })
            .collect();
        serde_json::json!({
            "delivery": encode(&self.delivery),
            "ack": encode(&self.ack),
            "login": encode(&self.login),
            "seconds": seconds,
            "errors": self.errors,
            "logins": self.logins,
            "login_secs": self.login_secs,
            "sending_from_us": self.sending_from_us,
        })
    }

    /// Adds a worker's measurements.
    pub fn merge_json(&mut self, v: &serde_json::Value) -> anyhow::Result<()> {
        let str_of = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
        self.delivery.add(decode(&str_of(&v["delivery"]))?)?;
        self.ack.add(decode(&str_of(&v["ack"]))?)?;
        self.login.add(decode(&str_of(&v["login"]))?)?;
        for (i, s) in v["seconds"].as_array().into_iter().flatten().enumerate() {
            let n = |k: usize| s[0][k].as_u64().unwrap_or(0);
            let mine = self.second(i);
            mine.sent += n(0);
            mine.acked += n(1);
            mine.delivered += n(2);
            mine.errors += n(3);
            mine.presence += n(4);
            mine.reconnects += n(5);
            mine.delivery.add(decode(&str_of(&s[1]))?)?;
            mine.presence_latency.add(decode(&str_of(&s[2]))?)?;
        }
        for (k, n) in v["errors"].as_object().into_iter().flatten() {
            *self.errors.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        self.logins += v["logins"].as_u64().unwrap_or(0);
        self.login_secs = self.login_secs.max(v["login_secs"].as_f64().unwrap_or(0.0));
        self.sending_from_us = self.sending_from_us.max(v["sending_from_us"].as_u64().unwrap_or(0));
        Ok(())
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn workers_merge_into_one_set_of_figures() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for _ in 0..100 {
            a.delivered(0, 1_000);
            b.delivered(1, 9_000);
        }
        b.presence_seen(1, 3_000);
        b.reconnected(1, 40_000);
        a.error(0, "x");
        b.logins = 5;
        let mut all = Stats::default();
        all.merge_json(&a.to_json()).unwrap();
        all.merge_json(&b.to_json()).unwrap();
        assert_eq!(all.delivery.len(), 200);
        assert_eq!((all.seconds[0].delivered, all.seconds[1].delivered), (100, 100));
        assert_eq!(all.errors["x"], 1);
        assert_eq!(all.logins, 5);
        assert_eq!((all.seconds[1].presence, all.seconds[1].reconnects, all.login.len()), (1, 1, 1));
        assert_eq!(all.seconds[1].presence_latency.max(), b.seconds[1].presence_latency.max());
    }
}
