//! Distributed traces of messages (OpenTelemetry, when the node exports them). A message's
//! trace id is its server id (xxh3-128 of sender and client id), so every node that handles it
//! — the sender's actor committing it to both archives, the recipient's actor handing it to
//! each device — adds spans to one trace without passing a context between them, and whether it
//! is sampled is decided from the id alone, the same way everywhere. With tracing off (the
//! default) no span is made.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use telex_types::UserJid;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The share of messages traced, as f64 bits; 0 while tracing is off.
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(0);

/// Turns message traces on for `ratio` of the messages (0 turns them off).
pub fn set_sample_ratio(ratio: f64) {
    SAMPLE_RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Whether the message with this server id is traced: its low 64 bits below the ratio.
pub fn sampled(server_id: &str) -> bool {
    let ratio = f64::from_bits(SAMPLE_RATIO.load(Ordering::Relaxed));
    if ratio <= 0.0 {
        return false;
    }
    let Some(low) = server_id.get(16..).filter(|h| h.len() == 16).and_then(|h| u64::from_str_radix(h, 16).ok()) else {
        return false;
    };
    ratio >= 1.0 || (low as f64) < ratio * u64::MAX as f64
}

/// Makes `span` part of the message's trace (a no-op for a disabled span).
pub fn join(span: &tracing::Span, server_id: &str) {
    if span.is_disabled() {
        return;
    }
    let (Ok(trace), Some(Ok(root))) = (TraceId::from_hex(server_id), server_id.get(16..).map(SpanId::from_hex)) else {
        return;
    };
    let parent = SpanContext::new(trace, root, TraceFlags::SAMPLED, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The span of one message's send on the node that commits it, or none when not traced.
pub fn send_span(server_id: &str, from: &UserJid, to: &UserJid) -> tracing::Span {
    if !sampled(server_id) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(target: "telex_trace", "message.send", %server_id, %from, %to);
    join(&span, server_id);
    span
}

/// A message handed to one device's session by its user's actor.
pub fn deliver_span(server_id: &str, user: &UserJid, device: &str, position: u64) -> tracing::Span {
    if !sampled(server_id) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(target: "telex_trace", "message.deliver", %server_id, %user, %device, position);
    join(&span, server_id);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_id_and_the_ratio() {
        let low = "0123456789abcdef0000000000000001";
        let high = "0123456789abcdefffffffffffffff00";
        set_sample_ratio(0.0);
        assert!(!sampled(low));
        set_sample_ratio(0.5);
        assert!(sampled(low) && !sampled(high));
        set_sample_ratio(1.0);
        assert!(sampled(high) && !sampled("not hex"));
        set_sample_ratio(0.0);
    }
}
