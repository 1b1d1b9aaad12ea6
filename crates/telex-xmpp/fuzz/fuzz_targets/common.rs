//! What every fuzz target here shares.

use std::sync::Once;

/// A panic in any task (the connection's, an actor's) is a finding, not a lost task: abort, so
/// libFuzzer records the input.
pub fn abort_on_panic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::abort();
        }));
    });
}
